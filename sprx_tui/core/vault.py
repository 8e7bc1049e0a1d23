"""The encrypted vault: key file, Argon2id/AES-GCM envelope keys, unlock, lock and recovery."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import math
import os
import stat
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from sprx_tui.core import db
from sprx_tui.core.errors import VaultError  # noqa: F401 - re-exported: vault.VaultError is the usual name

__all__ = [
    "FLOOR",
    "BackoffActive",
    "BadPassphrase",
    "BadRecoveryKey",
    "DatabaseCorrupt",
    "EmptyPassphrase",
    "KdfParams",
    "KeyFileCorrupt",
    "Locked",
    "Vault",
    "VaultError",
    "VaultExists",
    "VaultNotFound",
    "VaultUnwritable",
    "WeakPassphrase",
    "calibrate_kdf",
    "check_passphrase_strength",
]

DB_NAME = "sprx.db"
KEY_NAME = "sprx.key"
KEY_FILE_VERSION = 1
MIN_PASSPHRASE_CHARS = 12
BACKOFF_FREE_FAILURES = 3
BACKOFF_CAP_SECONDS = 300.0
# The back-off doubles per failure; past this exponent it is at the cap anyway (2 ** 9 s > 300 s). Capped
# before the power is computed: a key file counting 1027 failures made 2.0 ** 1024 raise OverflowError.
_BACKOFF_MAX_EXPONENT = math.ceil(math.log2(BACKOFF_CAP_SECONDS))

_KEY_LEN = 32
_SALT_LEN = 16
_NONCE_LEN = 12
_CT_LEN = _KEY_LEN + 16  # AES-GCM appends a 16-byte tag
_RECOVERY_CHARS = 52  # 256 bits of base32, without padding
_MAX_KEY_FILE_BYTES = 64 * 1024
# Upper bounds stop an edited key file from making unlock allocate absurd memory or spin forever.
_MAX_M_KIB = 4 * 1024 * 1024
_MAX_T = 64
_CALIBRATION_MAX_M_KIB = 1024 * 1024
_B32_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_B32_INDEX = {c: i for i, c in enumerate(_B32_ALPHABET)}

# Only entries of 12+ characters matter: anything shorter already fails the length rule.
_COMMON_PASSPHRASES: frozenset[bytes] = frozenset(
    {
        b"password1234",
        b"password12345",
        b"password123456",
        b"passwordpassword",
        b"passw0rd1234",
        b"p@ssw0rd1234",
        b"123456789012",
        b"1234567890123",
        b"12345678901234",
        b"123456123456",
        b"qwerty123456",
        b"qwertyqwerty",
        b"qwertyuiop12",
        b"qwertyuiop123",
        b"qwertyuiopasdf",
        b"1q2w3e4r5t6y",
        b"1qaz2wsx3edc",
        b"asdfghjkl123",
        b"zxcvbnm12345",
        b"abc123abc123",
        b"iloveyou1234",
        b"letmeinletmein",
        b"welcome12345",
        b"changeme1234",
        b"administrator",
        b"football1234",
        b"monkey123456",
        b"trustno1trustno1",
        b"correcthorsebatterystaple",
        b"correct horse battery staple",
    }
)


# --- errors -------------------------------------------------------------------------------------


class BadPassphrase(VaultError):
    """The passphrase did not unwrap the data key (or the slot was tampered with)."""

    default_message = "That passphrase is not right for this vault."

    def __init__(self, message: str | None = None, *, retry_after: float = 0.0) -> None:
        self.retry_after = float(retry_after)
        if message is None and self.retry_after > 0:
            message = f"That passphrase is not right; wait {_plural_seconds(self.retry_after)} before trying again."
        super().__init__(message)


class EmptyPassphrase(BadPassphrase):
    """Nothing was entered; never counted as a failed attempt."""

    default_message = "Enter your passphrase."


class BadRecoveryKey(BadPassphrase):
    """The recovery key is malformed or does not belong to this vault."""

    default_message = "That recovery key is not right for this vault."


class BackoffActive(VaultError):
    """Too many recent failures; the KDF was not run."""

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)
        super().__init__(f"Too many wrong passphrases; wait {_plural_seconds(self.seconds)} before trying again.")


class Locked(VaultError):
    default_message = "The vault is locked; unlock it with your passphrase to continue."


class VaultExists(VaultError):
    default_message = "A vault already exists here, so nothing was created or overwritten."


class VaultNotFound(VaultError):
    default_message = "No vault was found in this folder."


class KeyFileCorrupt(VaultError):
    default_message = "The key file has been altered or damaged, so the vault cannot be unlocked."


class DatabaseCorrupt(VaultError):
    default_message = "The encrypted database is damaged or is not a sprx vault, so it was not opened."


class VaultUnwritable(VaultError):
    default_message = "The vault folder cannot be written to; check that it exists and that you may change it."


class WeakPassphrase(VaultError):
    default_message = "That passphrase is too weak."


def _plural_seconds(seconds: float) -> str:
    n = max(1, math.ceil(seconds))
    return f"{n} second" if n == 1 else f"{n} seconds"


# --- small helpers ------------------------------------------------------------------------------


def _wipe(buf: bytearray | None) -> None:
    if buf is not None:
        buf[:] = bytes(len(buf))


def _random_secret(n: int) -> bytearray:
    """Random bytes straight into a bytearray, so no immutable copy of the secret exists."""
    buf = bytearray(n)
    if os.name == "posix":
        try:
            with open("/dev/urandom", "rb", buffering=0) as f:
                if f.readinto(buf) == n:
                    return buf
        except OSError:
            pass
    buf[:] = os.urandom(n)
    return buf


def _canonical(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode("ascii")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def check_passphrase_strength(passphrase: bytearray) -> None:
    """Raise WeakPassphrase unless the UTF-8 passphrase is long enough and not a known weak one."""
    if len(passphrase) == 0:
        raise WeakPassphrase("Choose a passphrase; it cannot be empty.")
    # Count characters, not bytes, without decoding into an unwipeable str.
    chars = sum(1 for b in passphrase if b & 0xC0 != 0x80)
    if chars < MIN_PASSPHRASE_CHARS:
        raise WeakPassphrase(f"Your passphrase must be at least {MIN_PASSPHRASE_CHARS} characters long.")
    lowered = passphrase.lower()
    try:
        if len(set(lowered)) == 1 or any(lowered == common for common in _COMMON_PASSPHRASES):
            raise WeakPassphrase("That passphrase is too easy to guess; try three or four random words.")
    finally:
        _wipe(lowered)


def _format_recovery(key: bytearray) -> str:
    # The recovery key is shown once and then discarded by the caller; a str is unavoidable here.
    text = base64.b32encode(bytes(key)).decode("ascii").rstrip("=")
    return "-".join(text[i : i + 4] for i in range(0, len(text), 4))


def _parse_recovery(text: str) -> bytearray:
    """Decode grouped base32 into a bytearray (case-insensitive, dashes and spaces ignored)."""
    out = bytearray(_KEY_LEN)
    acc = bits = n = count = 0
    try:
        for ch in text:
            if ch in "- \t\r\n":
                continue
            value = _B32_INDEX.get(ch.upper())
            count += 1
            if value is None or count > _RECOVERY_CHARS:
                raise BadRecoveryKey("That recovery key is not in the right format.")
            acc = ((acc << 5) | value) & 0x1FFF
            bits += 5
            if bits >= 8:
                bits -= 8
                out[n] = (acc >> bits) & 0xFF
                n += 1
        if count != _RECOVERY_CHARS or acc & ((1 << bits) - 1):
            raise BadRecoveryKey("That recovery key is not in the right format.")
    except BaseException:
        _wipe(out)
        raise
    return out


# --- KDF ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost: memory ``m`` in KiB, iterations ``t``, lanes ``p``."""

    m: int
    t: int
    p: int

    def at_least_floor(self) -> bool:
        return self.m >= FLOOR.m and self.t >= FLOOR.t and self.p >= FLOOR.p

    def as_json(self) -> dict[str, Any]:
        return {"alg": "argon2id", "m": self.m, "t": self.t, "p": self.p}


# RFC 9106 second recommendation; nothing weaker is ever written.
FLOOR = KdfParams(65536, 3, 4)


def _derive_kek(passphrase: bytearray, salt: bytes, kdf: KdfParams) -> bytearray:
    kek = bytearray(_KEY_LEN)
    Argon2id(salt=salt, length=_KEY_LEN, iterations=kdf.t, lanes=kdf.p, memory_cost=kdf.m).derive_into(passphrase, kek)
    return kek


def _time_derive(kdf: KdfParams) -> float:
    probe = bytearray(b"calibration passphrase")
    start = time.perf_counter()
    kek = _derive_kek(probe, os.urandom(_SALT_LEN), kdf)
    elapsed = time.perf_counter() - start
    _wipe(kek)
    return elapsed


def calibrate_kdf(target: tuple[float, float] = (0.5, 1.0), *, max_rounds: int = 8) -> KdfParams:
    """Argon2id parameters that take ``target`` seconds here: grow memory (to 1 GiB), then t."""
    low, high = target
    goal = (low + high) / 2
    params = FLOOR
    for _ in range(max_rounds):
        elapsed = max(_time_derive(params), 1e-6)
        if low <= elapsed <= high:
            return params
        factor = goal / elapsed
        if elapsed > high:
            if params == FLOOR:
                return params  # slow machine: the floor is still the floor
            m = max(FLOOR.m, int(params.m * factor) // 1024 * 1024)
            t = params.t if m > FLOOR.m else max(FLOOR.t, math.floor(params.t * factor))
        elif params.m < _CALIBRATION_MAX_M_KIB:
            m = min(_CALIBRATION_MAX_M_KIB, math.ceil(params.m * factor / 1024) * 1024)
            t = params.t
        else:
            m = params.m
            t = min(_MAX_T, max(params.t + 1, math.ceil(params.t * factor)))
        new = KdfParams(m, t, params.p)
        if new == params:
            return params
        params = new
    return params


# --- key file -----------------------------------------------------------------------------------


@dataclass
class _PassphraseSlot:
    kdf: KdfParams
    salt: bytes = field(repr=False)
    nonce: bytes = field(repr=False)
    ct: bytes = field(repr=False)


@dataclass
class _RecoverySlot:
    nonce: bytes = field(repr=False)
    ct: bytes = field(repr=False)


@dataclass
class _KeyFile:
    db_id: str
    passphrase: _PassphraseSlot
    recovery: _RecoverySlot
    failures: int = 0
    last_failure: float = 0.0

    def passphrase_aad(self, kdf: KdfParams, salt: bytes) -> bytes:
        return _canonical(
            {
                "v": KEY_FILE_VERSION,
                "db_id": self.db_id,
                "slot": "passphrase",
                "kdf": kdf.as_json(),
                "salt": _b64(salt),
            }
        )

    def recovery_aad(self) -> bytes:
        return _canonical({"v": KEY_FILE_VERSION, "db_id": self.db_id, "slot": "recovery"})

    def to_bytes(self) -> bytes:
        p, r = self.passphrase, self.recovery
        doc = {
            "v": KEY_FILE_VERSION,
            "db_id": self.db_id,
            "slots": [
                {
                    "slot": "passphrase",
                    "kdf": p.kdf.as_json(),
                    "salt": _b64(p.salt),
                    "nonce": _b64(p.nonce),
                    "ct": _b64(p.ct),
                },
                {"slot": "recovery", "nonce": _b64(r.nonce), "ct": _b64(r.ct)},
            ],
            "failures": {"count": self.failures, "last": self.last_failure},
        }
        return json.dumps(doc, indent=1).encode("ascii") + b"\n"

    @classmethod
    def parse(cls, raw: bytes) -> _KeyFile:
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise KeyFileCorrupt("The key file is damaged and cannot be read.") from None
        if not isinstance(doc, dict):
            raise KeyFileCorrupt()
        version = doc.get("v")
        if isinstance(version, bool) or not isinstance(version, int) or version != 1:
            raise KeyFileCorrupt("The key file was made by an unknown version of sprx.")
        _expect_keys(doc, {"v", "db_id", "slots", "failures"})
        db_id = doc["db_id"]
        if not (isinstance(db_id, str) and len(db_id) == 32 and _is_lower_hex(db_id)):
            raise KeyFileCorrupt()
        slots = doc["slots"]
        if not isinstance(slots, list) or len(slots) != 2:
            raise KeyFileCorrupt()
        by_name = {s.get("slot"): s for s in slots if isinstance(s, dict)}
        if set(by_name) != {"passphrase", "recovery"}:
            raise KeyFileCorrupt()
        ps, rs = by_name["passphrase"], by_name["recovery"]
        _expect_keys(ps, {"slot", "kdf", "salt", "nonce", "ct"})
        _expect_keys(rs, {"slot", "nonce", "ct"})
        m, t, p = _parse_kdf(ps["kdf"])
        count, last = _parse_failures(doc["failures"])
        return cls(
            db_id=db_id,
            passphrase=_PassphraseSlot(
                kdf=KdfParams(m, t, p),
                salt=_b64_field(ps["salt"], _SALT_LEN),
                nonce=_b64_field(ps["nonce"], _NONCE_LEN),
                ct=_b64_field(ps["ct"], _CT_LEN),
            ),
            recovery=_RecoverySlot(nonce=_b64_field(rs["nonce"], _NONCE_LEN), ct=_b64_field(rs["ct"], _CT_LEN)),
            failures=count,
            last_failure=last,
        )


def _parse_kdf(kdf_doc: Any) -> tuple[int, int, int]:
    """Argon2id's memory (KiB), passes and lanes, refused if weaker than we ever write or absurd."""
    if not isinstance(kdf_doc, dict):
        raise KeyFileCorrupt()
    _expect_keys(kdf_doc, {"alg", "m", "t", "p"})
    if kdf_doc["alg"] != "argon2id":
        raise KeyFileCorrupt()
    m, t, p = (_int(kdf_doc[k]) for k in ("m", "t", "p"))
    if m < FLOOR.m or t < FLOOR.t:
        # Lower cost than we ever write: someone is making offline guessing cheaper.
        raise KeyFileCorrupt("The key file's security settings have been weakened, so it was refused.")
    if m > _MAX_M_KIB or t > _MAX_T or not 1 <= p <= 16 or m < 8 * p:
        raise KeyFileCorrupt()
    return m, t, p


def _parse_failures(failures: Any) -> tuple[int, float]:
    """The count of wrong passphrases and when the last one was typed (for the back-off)."""
    if not isinstance(failures, dict):
        raise KeyFileCorrupt()
    _expect_keys(failures, {"count", "last"})
    count = _int(failures["count"])
    last = failures["last"]
    if isinstance(last, bool) or not isinstance(last, int | float):
        raise KeyFileCorrupt()
    if count < 0 or not math.isfinite(last) or last < 0:
        raise KeyFileCorrupt()
    return count, float(last)


def _expect_keys(obj: dict[str, Any], keys: set[str]) -> None:
    if set(obj) != keys:
        raise KeyFileCorrupt()


def _is_lower_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise KeyFileCorrupt()
    return value


def _b64_field(value: Any, length: int) -> bytes:
    if not isinstance(value, str):
        raise KeyFileCorrupt()
    try:
        data = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise KeyFileCorrupt() from None
    if len(data) != length:
        raise KeyFileCorrupt()
    return data


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` (mode 0600) so a crash leaves the old or the new file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _wrap(key: bytearray, dek: bytearray, aad: bytes) -> tuple[bytes, bytes]:
    nonce = os.urandom(_NONCE_LEN)
    ct = bytearray(_CT_LEN)
    AESGCM(key).encrypt_into(nonce, dek, aad, ct)
    return nonce, bytes(ct)


def _unwrap(key: bytearray, nonce: bytes, ct: bytes, aad: bytes) -> bytearray:
    """The DEK, or InvalidTag; the output buffer is wiped on failure."""
    dek = bytearray(_KEY_LEN)
    try:
        AESGCM(key).decrypt_into(nonce, ct, aad, dek)
    except BaseException:
        _wipe(dek)
        raise
    return dek


# --- the vault ----------------------------------------------------------------------------------


class Vault:
    """A directory holding ``sprx.db`` (SQLCipher) and ``sprx.key`` (wrapped data key)."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self._path = Path(path)
        self._clock = clock
        self._dek: bytearray | None = None
        self._engine: Engine | None = None
        # Bumped on every lock/unlock so engines from an earlier session can never reconnect.
        self._generation = 0
        self._db_id: str | None = None
        self._last_activity = 0.0
        self._state = threading.RLock()
        self.failed_attempts_before_unlock = 0

    def __repr__(self) -> str:
        return f"<Vault {'unlocked' if self.is_unlocked else 'locked'}>"

    # -- paths and state --

    @property
    def path(self) -> Path:
        return self._path

    @property
    def db_path(self) -> Path:
        return self._path / DB_NAME

    @property
    def key_path(self) -> Path:
        return self._path / KEY_NAME

    @property
    def db_id(self) -> str:
        if self._db_id is None:
            self._db_id = self._read_key_file().db_id
        return self._db_id

    @property
    def is_unlocked(self) -> bool:
        return self._engine is not None and self._dek is not None

    @property
    def engine(self) -> Engine:
        engine = self._engine
        if engine is None:
            raise Locked()
        return engine

    @staticmethod
    def exists(path: Path) -> bool:
        """Whether anything vault-like (key file or database) is already at ``path``."""
        p = Path(path)
        return (p / KEY_NAME).exists() or (p / DB_NAME).exists()

    # -- creation --

    @classmethod
    def create(
        cls,
        path: Path,
        passphrase: bytearray,
        *,
        kdf: KdfParams | None = None,
        clock: Callable[[], float] = time.time,
    ) -> tuple[Vault, str]:
        """Make a new vault; returns it unlocked plus the recovery key, to be shown once."""
        check_passphrase_strength(passphrase)
        if kdf is not None and not (kdf.at_least_floor() and kdf.p <= 16 and kdf.m <= _MAX_M_KIB):
            raise ValueError("KDF parameters must not be below the floor")
        vault = cls(path, clock=clock)
        directory = vault.path
        if not directory.parent.is_dir():
            raise VaultUnwritable("The folder for the vault does not exist.")
        if directory.exists() and not directory.is_dir():
            raise VaultUnwritable("The vault location is a file, not a folder.")
        if vault.key_path.exists() or vault.db_path.exists():
            raise VaultExists()
        made_dir = False
        try:
            if not directory.exists():
                directory.mkdir(mode=0o700)
                made_dir = True
            directory.chmod(0o700)
            # O_EXCL makes a concurrent create fail here instead of sharing one database.
            os.close(os.open(vault.db_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            raise VaultExists() from None
        except OSError:
            if made_dir:
                with contextlib.suppress(OSError):
                    directory.rmdir()
            raise VaultUnwritable() from None

        kdf = kdf or calibrate_kdf()
        dek = _random_secret(_KEY_LEN)
        recovery = _random_secret(_KEY_LEN)
        db_id = uuid.uuid4().hex
        try:
            vault._create_database(dek, db_id)
            salt = os.urandom(_SALT_LEN)
            keyfile = _KeyFile(
                db_id=db_id,
                passphrase=_PassphraseSlot(kdf=kdf, salt=salt, nonce=b"", ct=b""),
                recovery=_RecoverySlot(nonce=b"", ct=b""),
            )
            kek = _derive_kek(passphrase, salt, kdf)
            try:
                nonce, ct = _wrap(kek, dek, keyfile.passphrase_aad(kdf, salt))
            finally:
                _wipe(kek)
            keyfile.passphrase.nonce, keyfile.passphrase.ct = nonce, ct
            keyfile.recovery.nonce, keyfile.recovery.ct = _wrap(recovery, dek, keyfile.recovery_aad())
            if vault.key_path.exists():
                raise VaultExists()
            vault._write_key_file(keyfile)
            recovery_text = _format_recovery(recovery)
            vault._open_session(keyfile, dek)
        except BaseException as exc:
            _wipe(dek)
            vault._remove_files(keep_key=isinstance(exc, VaultExists))
            if made_dir:
                with contextlib.suppress(OSError):
                    directory.rmdir()
            if isinstance(exc, VaultError | KeyboardInterrupt):
                raise
            from sprx_tui.core.diskfull import DiskFull, is_disk_full

            if is_disk_full(exc, directory):
                raise DiskFull() from None
            if isinstance(exc, OSError | SQLAlchemyError | db.DatabaseOpenError):
                raise VaultUnwritable() from None
            raise
        finally:
            _wipe(recovery)
        return vault, recovery_text

    def _create_database(self, dek: bytearray, db_id: str) -> None:
        engine = db.make_engine(self.db_path, lambda: bytearray(dek))
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql("CREATE TABLE vault_meta (k TEXT PRIMARY KEY, v TEXT)")
                conn.exec_driver_sql("INSERT INTO vault_meta (k, v) VALUES ('db_id', ?)", (db_id,))
            db.checkpoint_and_dispose(engine)
        finally:
            engine.dispose()

    def _remove_files(self, *, keep_key: bool) -> None:
        names = [DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", f"{DB_NAME}-journal"]
        if not keep_key:
            names.append(KEY_NAME)
        for name in names:
            with contextlib.suppress(OSError):
                (self._path / name).unlink()

    # -- key file I/O --

    def _read_key_file(self) -> _KeyFile:
        key_path = self.key_path
        if not key_path.exists():
            if self.db_path.exists():
                raise KeyFileCorrupt(
                    "The key file is missing, so this vault cannot be unlocked; ask your practice IT lead for help."
                )
            raise VaultNotFound()
        try:
            if not stat.S_ISREG(key_path.stat().st_mode):
                raise KeyFileCorrupt()
            with open(key_path, "rb") as f:
                raw = f.read(_MAX_KEY_FILE_BYTES + 1)
        except OSError:
            raise KeyFileCorrupt("The key file cannot be read.") from None
        if len(raw) > _MAX_KEY_FILE_BYTES:
            raise KeyFileCorrupt()
        return _KeyFile.parse(raw)

    def _write_key_file(self, keyfile: _KeyFile) -> None:
        try:
            _atomic_write(self.key_path, keyfile.to_bytes())
        except OSError as exc:
            from sprx_tui.core.diskfull import DiskFull, is_disk_full

            if is_disk_full(exc):
                raise DiskFull() from None
            raise VaultUnwritable("The key file could not be saved.") from None

    def _save_failures(self, keyfile: _KeyFile) -> None:
        # Back-off only slows online guessing; failing to persist it (no permission, a full disk) must not
        # hide the real error.
        with contextlib.suppress(VaultError):
            self._write_key_file(keyfile)

    # -- back-off --

    def _backoff_remaining(self, keyfile: _KeyFile) -> float:
        if keyfile.failures < BACKOFF_FREE_FAILURES:
            return 0.0
        exponent = min(keyfile.failures - BACKOFF_FREE_FAILURES, _BACKOFF_MAX_EXPONENT)
        wait = min(2.0**exponent, BACKOFF_CAP_SECONDS)
        now = self._clock()
        if now < keyfile.last_failure:
            # The clock went backwards; restart the wait from now rather than lock out for hours.
            keyfile.last_failure = now
            self._save_failures(keyfile)
        return max(0.0, wait - (now - keyfile.last_failure))

    def _check_backoff(self, keyfile: _KeyFile) -> None:
        remaining = self._backoff_remaining(keyfile)
        if remaining > 0:
            raise BackoffActive(remaining)

    def _unwrap_with_passphrase(
        self, keyfile: _KeyFile, passphrase: bytearray, deriving: Callable[[], None] | None = None
    ) -> bytearray:
        """The DEK; on a wrong passphrase records the failure and raises BadPassphrase."""
        if not passphrase:
            raise EmptyPassphrase()
        self._check_backoff(keyfile)
        slot = keyfile.passphrase
        if deriving is not None:
            deriving()
        kek = _derive_kek(passphrase, slot.salt, slot.kdf)
        try:
            dek: bytearray | None = _unwrap(kek, slot.nonce, slot.ct, keyfile.passphrase_aad(slot.kdf, slot.salt))
        except InvalidTag:
            dek = None
        finally:
            _wipe(kek)
        if dek is not None:
            return dek
        keyfile.failures += 1
        keyfile.last_failure = self._clock()
        self._save_failures(keyfile)
        raise BadPassphrase(retry_after=self._backoff_remaining(keyfile))

    @staticmethod
    def _unwrap_with_recovery(keyfile: _KeyFile, recovery_key: str) -> bytearray:
        key = _parse_recovery(recovery_key)
        try:
            return _unwrap(key, keyfile.recovery.nonce, keyfile.recovery.ct, keyfile.recovery_aad())
        except InvalidTag:
            raise BadRecoveryKey() from None
        finally:
            _wipe(key)

    def _reset_failures(self, keyfile: _KeyFile) -> None:
        self.failed_attempts_before_unlock = keyfile.failures
        if keyfile.failures:
            keyfile.failures = 0
            keyfile.last_failure = 0.0
            self._save_failures(keyfile)

    # -- unlock / lock --

    def unlock(self, passphrase: bytearray, *, deriving: Callable[[], None] | None = None) -> None:
        """Unlock with the passphrase (the caller owns and should wipe the buffer).

        ``deriving`` is called as the key derivation starts (after the key file was read and the back-off
        checked): the derivation releases the GIL for its whole length, so an app can redraw meanwhile.
        """
        if not passphrase:
            raise EmptyPassphrase()
        with self._state:
            self.lock()
            keyfile = self._read_key_file()
            dek = self._unwrap_with_passphrase(keyfile, passphrase, deriving)
            self._reset_failures(keyfile)
            self._open_session(keyfile, dek)

    def unlock_with_recovery(self, recovery_key: str) -> None:
        """Unlock with the recovery key shown at creation (any case, dashes/spaces ignored)."""
        with self._state:
            self.lock()
            keyfile = self._read_key_file()
            dek = self._unwrap_with_recovery(keyfile, recovery_key)
            self._reset_failures(keyfile)
            self._open_session(keyfile, dek)

    def _key_provider(self, generation: int) -> Callable[[], bytearray]:
        def provide() -> bytearray:
            dek = self._dek
            if dek is None or self._generation != generation:
                raise Locked()
            return bytearray(dek)

        return provide

    def _open_session(self, keyfile: _KeyFile, dek: bytearray) -> None:
        """Take ownership of ``dek``, open the engine and prove it is this vault's database."""
        if not self.db_path.is_file():
            _wipe(dek)
            raise DatabaseCorrupt("The vault's database file is missing.")
        self._dek = dek
        self._generation += 1
        engine = db.make_engine(self.db_path, self._key_provider(self._generation))
        try:
            with engine.connect() as conn:
                row = conn.exec_driver_sql("SELECT v FROM vault_meta WHERE k = 'db_id'").fetchone()
        except (db.DatabaseOpenError, SQLAlchemyError) as exc:
            self._abort_session(engine)
            from sprx_tui.core.diskfull import DiskFull, is_disk_full

            # Opening creates the WAL files; with no space left that fails, which is not damage.
            if is_disk_full(exc, self.path):
                raise DiskFull() from None
            raise DatabaseCorrupt() from None
        except BaseException:
            self._abort_session(engine)
            raise
        if row is None or row[0] != keyfile.db_id:
            self._abort_session(engine)
            raise KeyFileCorrupt("The key file belongs to a different vault.")
        self._engine = engine
        self._db_id = keyfile.db_id
        self.touch()

    def _abort_session(self, engine: Engine) -> None:
        engine.dispose()
        dek, self._dek = self._dek, None
        self._generation += 1
        _wipe(dek)

    def lock(self) -> None:
        """Checkpoint, close the database and wipe the key. Safe to call at any time, repeatedly."""
        with self._state:
            engine, self._engine = self._engine, None
            if engine is not None:
                # Locking must always succeed; a failed checkpoint only leaves an encrypted WAL.
                with contextlib.suppress(Exception):
                    db.checkpoint_and_dispose(engine)
                engine.dispose()
            dek, self._dek = self._dek, None
            self._generation += 1
            _wipe(dek)

    def wipe_key(self) -> None:
        """Wipe the key in place at once, without waiting for the database (the process is ending).

        For when the one connection is busy in another thread and cannot be closed in time: no new
        connection can open (the key provider sees the new generation), and the open one goes with the
        process. Takes no lock, so it never waits; `lock()` still closes everything if called later.
        """
        dek = self._dek
        self._generation += 1
        self._dek = None
        _wipe(dek)

    def touch(self) -> None:
        """Record user activity, postponing auto-lock."""
        self._last_activity = self._clock()

    @property
    def idle_seconds(self) -> float:
        return max(0.0, self._clock() - self._last_activity)

    def maybe_autolock(self, idle_timeout: float) -> bool:
        """Lock if unlocked and idle for at least ``idle_timeout`` seconds; True if it locked."""
        if self.is_unlocked and self.idle_seconds >= idle_timeout:
            self.lock()
            return True
        return False

    # -- passphrase management (the database file is never touched) --

    def change_passphrase(self, old: bytearray, new: bytearray, *, kdf: KdfParams | None = None) -> None:
        """Rewrap the data key under a new passphrase; ``kdf`` None keeps the current cost."""
        check_passphrase_strength(new)
        with self._state:
            keyfile = self._read_key_file()
            dek = self._unwrap_with_passphrase(keyfile, old)
            try:
                self._rewrap_passphrase(keyfile, dek, new, kdf)
            finally:
                _wipe(dek)

    def reset_passphrase_with_recovery(
        self, recovery_key: str, new: bytearray, *, kdf: KdfParams | None = None
    ) -> None:
        """Set a new passphrase using the recovery key (for a forgotten passphrase)."""
        check_passphrase_strength(new)
        with self._state:
            keyfile = self._read_key_file()
            dek = self._unwrap_with_recovery(keyfile, recovery_key)
            try:
                self._rewrap_passphrase(keyfile, dek, new, kdf)
            finally:
                _wipe(dek)

    def _rewrap_passphrase(self, keyfile: _KeyFile, dek: bytearray, new: bytearray, kdf: KdfParams | None) -> None:
        kdf = kdf or keyfile.passphrase.kdf
        if not kdf.at_least_floor():
            raise ValueError("KDF parameters must not be below the floor")
        salt = os.urandom(_SALT_LEN)
        kek = _derive_kek(new, salt, kdf)
        try:
            nonce, ct = _wrap(kek, dek, keyfile.passphrase_aad(kdf, salt))
        finally:
            _wipe(kek)
        keyfile.passphrase = _PassphraseSlot(kdf=kdf, salt=salt, nonce=nonce, ct=ct)
        keyfile.failures = 0
        keyfile.last_failure = 0.0
        self._write_key_file(keyfile)

    # -- maintenance --

    def integrity_check(self) -> list[str]:
        """Problems found by SQLCipher's page HMAC check and SQLite's quick_check; [] means ok."""
        problems: list[str] = []
        with self.engine.connect() as conn:
            try:
                rows = conn.exec_driver_sql("PRAGMA cipher_integrity_check").fetchall()
                problems.extend(str(r[0]) for r in rows)
            except SQLAlchemyError:
                problems.append("The encrypted pages could not be checked.")
            try:
                rows = conn.exec_driver_sql("PRAGMA quick_check").fetchall()
                problems.extend(str(r[0]) for r in rows if r[0] != "ok")
            except SQLAlchemyError:
                problems.append("The database structure is damaged.")
        return problems

    def crypto_erase(self) -> None:
        """Destroy the wrapped keys and delete the database (device revoked or reset)."""
        with self._state:
            self.lock()
            key_path = self.key_path
            try:
                if key_path.exists():
                    # Best effort only: SSDs and journalling file systems may keep old blocks.
                    # Without the key file the encrypted database is unreadable either way.
                    size = key_path.stat().st_size
                    with open(key_path, "r+b", buffering=0) as f:
                        f.write(os.urandom(max(size, 1)))
                        os.fsync(f.fileno())
                    key_path.unlink()
                self._remove_files(keep_key=False)
                for stray in self._path.glob(f".{KEY_NAME}.*.tmp"):
                    stray.unlink()
            except OSError:
                raise VaultUnwritable("The vault could not be completely erased.") from None
            with contextlib.suppress(OSError):
                self._path.rmdir()
            self._db_id = None
