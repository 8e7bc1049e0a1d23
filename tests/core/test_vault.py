"""Tests for the encrypted vault and SQLCipher engine, on real files (security-anchors table)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlcipher3
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError, IntegrityError
from sqlmodel import Session

from sprx_tui.core import db, vault
from sprx_tui.core.vault import (
    FLOOR,
    BackoffActive,
    BadPassphrase,
    BadRecoveryKey,
    DatabaseCorrupt,
    EmptyPassphrase,
    KdfParams,
    KeyFileCorrupt,
    Locked,
    Vault,
    VaultExists,
    VaultNotFound,
    VaultUnwritable,
    WeakPassphrase,
)

REPO = Path(__file__).resolve().parents[2]
PASSPHRASE = b"quiet otter mends blue kettles"
NEW_PASSPHRASE = b"seven lanterns hum near docks"
MARKER = b"ZQXMARKERJANEDOE"
NHS = b"9434765919"
ROWS = 500
PAGE = 4096


def pw(value: bytes = PASSPHRASE) -> bytearray:
    return bytearray(value)


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Made:
    path: Path
    recovery: str


def _insert_rows(engine, count: int = ROWS, start: int = 0, repeat: int = 4) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, name TEXT, nhs TEXT, body TEXT)"
        )
        conn.exec_driver_sql(
            "INSERT INTO notes (id, name, nhs, body) VALUES (?, ?, ?, ?)",
            [
                (
                    i,
                    f"{MARKER.decode()} {i}",
                    NHS.decode(),
                    "lives alone, likes gardening " * repeat,
                )
                for i in range(start, start + count)
            ],
        )


def _row_count(v: Vault) -> int:
    with v.engine.connect() as conn:
        return conn.exec_driver_sql("SELECT count(*) FROM notes").scalar_one()


def _edit_key_file(path: Path, edit) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


@pytest.fixture(scope="module", autouse=True)
def vault_process_security() -> None:
    db.init_process_security(True)


@pytest.fixture(scope="module")
def vault_base(tmp_path_factory: pytest.TempPathFactory) -> Made:
    """One vault with ROWS marker rows, created once per module and left locked."""
    path = tmp_path_factory.mktemp("base") / "vault"
    v, recovery = Vault.create(path, pw(), kdf=FLOOR)
    _insert_rows(v.engine)
    v.lock()
    return Made(path, recovery)


@pytest.fixture
def vault_copy(vault_base: Made, tmp_path: Path) -> Made:
    """A private, locked copy of the base vault that a test may change or damage."""
    dest = tmp_path / "vault"
    shutil.copytree(vault_base.path, dest)
    return Made(dest, vault_base.recovery)


# --- 1, 2, 4: files on disk ----------------------------------------------------------------------


def test_files_have_no_plaintext_while_open_and_after_lock(vault_copy: Made) -> None:
    v = Vault(vault_copy.path)
    v.unlock(pw())
    _insert_rows(v.engine, start=ROWS)  # these pages live in the WAL until checkpoint
    files = [v.db_path, Path(f"{v.db_path}-wal"), Path(f"{v.db_path}-shm")]
    assert all(f.exists() for f in files)
    assert Path(f"{v.db_path}-wal").stat().st_size > 0
    for f in files:
        data = f.read_bytes()
        assert MARKER not in data, f.name
        assert NHS not in data, f.name
        assert b"CREATE TABLE" not in data, f.name
    v.lock()
    data = v.db_path.read_bytes()
    assert not data.startswith(b"SQLite format 3")
    assert data.count(MARKER) == 0 and data.count(NHS) == 0
    for name in ("-wal", "-shm"):
        extra = Path(f"{v.db_path}{name}")
        assert not extra.exists() or MARKER not in extra.read_bytes()
    v.unlock(pw())
    assert _row_count(v) == 2 * ROWS
    v.lock()


def test_plain_sqlite_cannot_open(vault_copy: Made) -> None:
    conn = sqlite3.connect(vault_copy.path / "sprx.db")
    try:
        with pytest.raises(sqlite3.DatabaseError, match="file is not a database"):
            conn.execute("SELECT * FROM sqlite_master").fetchall()
    finally:
        conn.close()


def test_wrong_raw_key_raises_databaseerror(vault_copy: Made, capfd) -> None:
    conn = sqlcipher3.connect(str(vault_copy.path / "sprx.db"))
    try:
        conn.set_key(bytearray(b"x'" + os.urandom(32).hex().encode() + b"'"))
        with pytest.raises(sqlcipher3.DatabaseError) as info:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        assert info.value.sqlite_errorcode == 26
    finally:
        conn.close()
    assert capfd.readouterr().err == ""


def test_key_file_and_directory_permissions(vault_base: Made) -> None:
    assert stat.S_IMODE(vault_base.path.stat().st_mode) == 0o700
    assert stat.S_IMODE((vault_base.path / "sprx.key").stat().st_mode) == 0o600
    assert not list(vault_base.path.glob(".*tmp")), "atomic write left a temp file"
    doc = json.loads((vault_base.path / "sprx.key").read_text())
    assert doc["v"] == 1 and len(doc["db_id"]) == 32
    assert [s["slot"] for s in doc["slots"]] == ["passphrase", "recovery"]
    assert doc["slots"][0]["kdf"] == {"alg": "argon2id", "m": 65536, "t": 3, "p": 4}
    assert doc["failures"] == {"count": 0, "last": 0.0}


# --- 3 and friends: passphrase failures ----------------------------------------------------------


def test_wrong_passphrase_fails_cleanly(vault_copy: Made, capfd) -> None:
    v = Vault(vault_copy.path)
    with pytest.raises(BadPassphrase) as info:
        v.unlock(pw(b"not the right passphrase at all"))
    assert info.value.retry_after == 0
    assert str(info.value) == "That passphrase is not right for this vault."
    assert not v.is_unlocked
    assert v._dek is None and v._engine is None
    with pytest.raises(Locked):
        _ = v.engine
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


def test_empty_passphrase_is_not_counted(vault_copy: Made) -> None:
    v = Vault(vault_copy.path)
    with pytest.raises(EmptyPassphrase, match="Enter your passphrase"):
        v.unlock(bytearray())
    assert json.loads(v.key_path.read_text())["failures"]["count"] == 0


@pytest.mark.parametrize(
    ("passphrase", "fragment"),
    [
        (b"", "cannot be empty"),
        (b"short one", "at least 12 characters"),
        (
            "\u00e9t\u00e9 \u00e0 l\u2019eau".encode(),
            "at least 12 characters",
        ),  # 11 chars, 16 bytes
        (b"Password1234", "too easy to guess"),
        (b"aaaaaaaaaaaaaaaa", "too easy to guess"),
    ],
)
def test_weak_passphrase_refused_at_create(tmp_path: Path, passphrase: bytes, fragment: str):
    with pytest.raises(WeakPassphrase, match=fragment):
        Vault.create(tmp_path / "v", bytearray(passphrase), kdf=FLOOR)
    assert not (tmp_path / "v").exists()


def test_create_refuses_kdf_below_floor(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        Vault.create(tmp_path / "v", pw(), kdf=KdfParams(65536, 3, 1))
    assert not (tmp_path / "v").exists()


def test_backoff_with_fake_clock_persists_and_resets(vault_copy: Made, monkeypatch) -> None:
    clock = FakeClock()
    v = Vault(vault_copy.path, clock=clock)
    wrong = pw(b"definitely not my passphrase")
    for attempt in range(1, 4):
        with pytest.raises(BadPassphrase) as info:
            v.unlock(wrong)
        assert info.value.retry_after == (1.0 if attempt == 3 else 0.0)
    assert "wait 1 second" in str(info.value)

    calls = []
    real_derive = vault._derive_kek
    monkeypatch.setattr(vault, "_derive_kek", lambda *a: calls.append(1) or real_derive(*a))
    with pytest.raises(BackoffActive) as backoff:
        v.unlock(pw())  # even the right passphrase waits
    assert backoff.value.seconds == pytest.approx(1.0)
    assert calls == [], "the KDF must not run during back-off"

    clock.now += 1.0
    with pytest.raises(BadPassphrase) as info:
        v.unlock(wrong)
    assert info.value.retry_after == pytest.approx(2.0)

    # A new Vault object (e.g. after restarting the app) sees the stored counter.
    v2 = Vault(vault_copy.path, clock=clock)
    clock.now += 1.0
    with pytest.raises(BackoffActive) as backoff:
        v2.unlock(pw())
    assert backoff.value.seconds == pytest.approx(1.0)
    doc = json.loads(v2.key_path.read_text())
    assert doc["failures"]["count"] == 4

    clock.now += 1.0
    v2.unlock(pw())
    assert v2.failed_attempts_before_unlock == 4
    assert json.loads(v2.key_path.read_text())["failures"]["count"] == 0
    v2.lock()


def test_deriving_hook_is_called_as_the_derivation_starts_and_never_during_back_off(
    vault_copy: Made, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app redraws its unlock screen on this call, while the KDF runs (the KDF releases the GIL)."""
    clock = FakeClock()
    v = Vault(vault_copy.path, clock=clock)
    order: list[str] = []
    real_derive = vault._derive_kek
    monkeypatch.setattr(vault, "_derive_kek", lambda *a: order.append("kdf") or real_derive(*a))
    for _ in range(3):
        with pytest.raises(BadPassphrase):
            v.unlock(pw(b"definitely not my passphrase"), deriving=lambda: order.append("hook"))
    assert order == ["hook", "kdf"] * 3  # wrong passphrases too: the screen says "Unlocking…" for each
    order.clear()
    with pytest.raises(BackoffActive):
        v.unlock(pw(), deriving=lambda: order.append("hook"))
    assert order == [], "nothing is derived (nor announced) during the back-off"
    clock.now += 1.0
    v.unlock(pw(), deriving=lambda: order.append("hook"))
    assert order == ["hook", "kdf"]
    v.lock()


def test_backoff_is_capped_and_survives_clock_going_back(vault_copy: Made) -> None:
    clock = FakeClock()
    _edit_key_file(
        vault_copy.path / "sprx.key",
        lambda d: d.update(failures={"count": 40, "last": clock.now + 3600}),
    )
    v = Vault(vault_copy.path, clock=clock)
    with pytest.raises(BackoffActive) as info:
        v.unlock(pw())
    assert info.value.seconds == pytest.approx(300.0)
    clock.now += 300
    v.unlock(pw())
    assert v.failed_attempts_before_unlock == 40
    v.lock()


@pytest.mark.parametrize("count", [1027, 10**9])
def test_a_huge_failure_count_keeps_the_wait_at_the_cap(vault_copy: Made, count: int) -> None:
    """2.0 ** (count - 3) overflowed from 1027 failures on: every unlock raised OverflowError."""
    clock = FakeClock()
    _edit_key_file(vault_copy.path / "sprx.key", lambda d: d.update(failures={"count": count, "last": clock.now}))
    v = Vault(vault_copy.path, clock=clock)
    with pytest.raises(BackoffActive) as waiting:
        v.unlock(pw())
    assert waiting.value.seconds == pytest.approx(300.0)
    clock.now += 300
    with pytest.raises(BadPassphrase) as wrong:
        v.unlock(pw(b"definitely not my passphrase"))
    assert str(wrong.value) == "That passphrase is not right; wait 300 seconds before trying again."
    assert json.loads(v.key_path.read_text())["failures"]["count"] == count + 1
    clock.now += 300
    v.unlock(pw())
    assert v.failed_attempts_before_unlock == count + 1
    assert json.loads(v.key_path.read_text())["failures"]["count"] == 0
    v.lock()


# --- 5: lock, auto-lock, no silent reconnect -----------------------------------------------------


def test_autolock_and_no_silent_reconnect(vault_copy: Made) -> None:
    clock = FakeClock()
    v = Vault(vault_copy.path, clock=clock)
    v.unlock(pw())
    engine = v.engine
    assert repr(v) == "<Vault unlocked>"
    clock.now += 299
    assert v.maybe_autolock(300) is False
    v.touch()
    clock.now += 301
    assert v.maybe_autolock(300) is True
    assert not v.is_unlocked and repr(v) == "<Vault locked>"
    with pytest.raises(Locked):
        _ = v.engine
    with pytest.raises(Locked):
        with engine.connect() as conn:
            conn.execute(text("SELECT count(*) FROM notes"))
    with pytest.raises(Locked), Session(engine) as session:
        session.exec(text("SELECT 1"))
    v.lock()  # idempotent
    # An engine from an earlier session stays dead even after a new unlock.
    v.unlock(pw())
    with pytest.raises(Locked):
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    assert _row_count(v) == ROWS
    v.lock()
    assert not Path(f"{v.db_path}-wal").exists() or Path(f"{v.db_path}-wal").stat().st_size == 0


# --- 6, 7, 8: passphrase change and recovery -----------------------------------------------------


def test_passphrase_change_does_not_touch_db(vault_copy: Made) -> None:
    v = Vault(vault_copy.path)
    before = v.db_path.read_bytes()
    mtime = v.db_path.stat().st_mtime_ns
    v.change_passphrase(pw(), pw(NEW_PASSPHRASE))
    assert v.db_path.stat().st_mtime_ns == mtime
    after = v.db_path.read_bytes()
    assert after[:PAGE] == before[:PAGE] and after == before
    with pytest.raises(BadPassphrase):
        v.unlock(pw())
    v.unlock(pw(NEW_PASSPHRASE))
    assert _row_count(v) == ROWS
    assert v.failed_attempts_before_unlock == 1
    v.lock()


def test_change_passphrase_rejects_weak_new_and_wrong_old(vault_copy: Made) -> None:
    v = Vault(vault_copy.path)
    before = v.key_path.read_bytes()
    with pytest.raises(WeakPassphrase):
        v.change_passphrase(pw(), pw(b"tooshort"))
    assert v.key_path.read_bytes() == before
    with pytest.raises(BadPassphrase):
        v.change_passphrase(pw(b"this is not the old one"), pw(NEW_PASSPHRASE))
    v.unlock(pw())
    v.lock()


def test_recovery_key_unlocks(vault_copy: Made) -> None:
    recovery = vault_copy.recovery
    groups = recovery.split("-")
    assert len(groups) == 13 and all(len(g) == 4 for g in groups)
    assert len(recovery.replace("-", "")) == 52
    v = Vault(vault_copy.path)
    v.unlock_with_recovery(" " + recovery.lower().replace("-", " ") + " ")
    assert _row_count(v) == ROWS
    v.lock()


def test_bad_recovery_keys(vault_copy: Made) -> None:
    v = Vault(vault_copy.path)
    good = vault_copy.recovery.replace("-", "")
    flipped = ("B" if good[0] == "A" else "A") + good[1:]
    with pytest.raises(BadRecoveryKey, match="not right for this vault"):
        v.unlock_with_recovery(flipped)
    for bad in ("", good[:-1], good + "A", good[:-1] + "1"):
        with pytest.raises(BadRecoveryKey, match="right format"):
            v.unlock_with_recovery(bad)
    assert not v.is_unlocked


def test_recovery_still_works_after_passphrase_change(vault_copy: Made) -> None:
    v = Vault(vault_copy.path)
    v.change_passphrase(pw(), pw(NEW_PASSPHRASE))
    v.unlock_with_recovery(vault_copy.recovery)
    assert _row_count(v) == ROWS
    v.lock()


def test_reset_passphrase_with_recovery(vault_copy: Made) -> None:
    v = Vault(vault_copy.path)
    before = v.db_path.read_bytes()
    v.reset_passphrase_with_recovery(vault_copy.recovery.lower(), pw(NEW_PASSPHRASE))
    assert v.db_path.read_bytes() == before
    v.unlock(pw(NEW_PASSPHRASE))
    assert _row_count(v) == ROWS
    v.lock()


# --- 9 and key-file damage -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["slots"][0]["kdf"].update(m=131072),
        lambda d: d["slots"][0]["kdf"].update(t=4),
        lambda d: d["slots"][0]["kdf"].update(p=2),
    ],
    ids=["m", "t", "p"],
)
def test_keyfile_param_tamper_rejected(vault_copy: Made, edit) -> None:
    _edit_key_file(vault_copy.path / "sprx.key", edit)
    v = Vault(vault_copy.path)
    with pytest.raises(BadPassphrase):
        v.unlock(pw())
    assert not v.is_unlocked
    # The recovery slot is independent, so the data is still reachable.
    v.unlock_with_recovery(vault_copy.recovery)
    assert _row_count(v) == ROWS
    v.lock()


def _set_slot(index: int, **fields):
    return lambda d: d["slots"][index].update(fields)


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        ("missing", "key file is missing"),
        ("truncated", "damaged and cannot be read"),
        ("not_json", "damaged and cannot be read"),
        ("empty", "damaged and cannot be read"),
        ("downgrade_m", "weakened"),
        ("downgrade_t", "weakened"),
        ("version", "unknown version"),
        ("short_salt", "altered or damaged"),
        ("short_ct", "altered or damaged"),
        ("bad_b64", "altered or damaged"),
        ("extra_field", "altered or damaged"),
        ("p_zero", "altered or damaged"),
        ("huge_m", "altered or damaged"),
        ("bool_count", "altered or damaged"),
        ("no_recovery", "altered or damaged"),
    ],
)
def test_key_file_damage_is_reported_plainly(vault_copy: Made, damage: str, fragment: str):
    key = vault_copy.path / "sprx.key"
    raw = key.read_bytes()
    edits = {
        "downgrade_m": lambda d: d["slots"][0]["kdf"].update(m=32768),
        "downgrade_t": lambda d: d["slots"][0]["kdf"].update(t=2),
        "version": lambda d: d.update(v=2),
        "short_salt": _set_slot(0, salt="AAAA"),
        "short_ct": _set_slot(1, ct="AAAA"),
        "bad_b64": _set_slot(0, nonce="!!!!not base64!!"),
        "extra_field": lambda d: d.update(note="hi"),
        "p_zero": lambda d: d["slots"][0]["kdf"].update(p=0),
        "huge_m": lambda d: d["slots"][0]["kdf"].update(m=1 << 40),
        "bool_count": lambda d: d["failures"].update(count=True),
        "no_recovery": lambda d: d["slots"].pop(),
    }
    if damage == "missing":
        key.unlink()
    elif damage == "truncated":
        key.write_bytes(raw[: len(raw) // 2])
    elif damage == "not_json":
        key.write_bytes(b"\x00\xffthis is not json")
    elif damage == "empty":
        key.write_bytes(b"")
    else:
        _edit_key_file(key, edits[damage])
    v = Vault(vault_copy.path)
    with pytest.raises(KeyFileCorrupt) as info:
        v.unlock(pw())
    message = str(info.value)
    assert fragment in message
    assert str(vault_copy.path) not in message and "\n" not in message
    assert message.endswith(".") and message.count(". ") == 0
    assert not v.is_unlocked


def test_key_file_from_same_dek_but_other_db_id(vault_copy: Made) -> None:
    v = Vault(vault_copy.path)
    v.unlock(pw())
    with v.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE vault_meta SET v = 'ffffffffffffffffffffffffffffffff'")
    v.lock()
    with pytest.raises(KeyFileCorrupt, match="belongs to a different vault"):
        v.unlock(pw())
    assert not v.is_unlocked and v._dek is None


# --- 10 and database damage ----------------------------------------------------------------------


def _flip(path: Path, offset: int) -> bytes:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    return bytes(data)


def test_tamper_detected(vault_copy: Made, capfd) -> None:
    db_path = vault_copy.path / "sprx.db"
    assert db_path.stat().st_size >= 8 * PAGE
    # Pages 1-3 are the schema, vault_meta and its index; page 6 holds note rows.
    damaged = _flip(db_path, 5 * PAGE + 100)
    v = Vault(vault_copy.path)
    v.unlock(pw())
    problems = v.integrity_check()
    assert problems and any("page 6" in p for p in problems)
    with pytest.raises(DatabaseError):
        with v.engine.connect() as conn:
            conn.exec_driver_sql("SELECT name FROM notes").fetchall()
    v.lock()
    assert db_path.read_bytes() == damaged, "nothing may be overwritten"
    assert capfd.readouterr().err == ""


def test_integrity_check_clean_vault(vault_copy: Made) -> None:
    v = Vault(vault_copy.path)
    v.unlock(pw())
    assert v.integrity_check() == []
    v.lock()
    with pytest.raises(Locked):
        v.integrity_check()


def test_flipped_first_page_is_database_corrupt(vault_copy: Made, capfd) -> None:
    db_path = vault_copy.path / "sprx.db"
    damaged = _flip(db_path, 200)
    v = Vault(vault_copy.path)
    with pytest.raises(DatabaseCorrupt) as info:
        v.unlock(pw())
    assert "damaged" in str(info.value)
    assert not v.is_unlocked and v._dek is None
    assert db_path.read_bytes() == damaged
    assert capfd.readouterr().err == ""


def test_plain_sqlite_file_in_place_of_vault_db(vault_copy: Made, capfd) -> None:
    db_path = vault_copy.path / "sprx.db"
    db_path.unlink()
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE vault_meta (k TEXT PRIMARY KEY, v TEXT)")
    conn.commit()
    conn.close()
    before = db_path.read_bytes()
    with pytest.raises(DatabaseCorrupt):
        Vault(vault_copy.path).unlock(pw())
    assert db_path.read_bytes() == before
    assert capfd.readouterr().err == ""


def test_database_missing_but_key_present(vault_copy: Made) -> None:
    (vault_copy.path / "sprx.db").unlink()
    with pytest.raises(DatabaseCorrupt, match="database file is missing"):
        Vault(vault_copy.path).unlock(pw())
    assert not (vault_copy.path / "sprx.db").exists(), "unlock must not create an empty db"


def test_unlock_empty_folder_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(VaultNotFound):
        Vault(tmp_path).unlock(pw())
    assert Vault.exists(tmp_path) is False


# --- create: refusal, unwritable places, erase ---------------------------------------------------


def test_second_create_refused_nothing_overwritten(vault_copy: Made) -> None:
    key_before = (vault_copy.path / "sprx.key").read_bytes()
    db_before = (vault_copy.path / "sprx.db").read_bytes()
    assert Vault.exists(vault_copy.path)
    with pytest.raises(VaultExists):
        Vault.create(vault_copy.path, pw(NEW_PASSPHRASE), kdf=FLOOR)
    assert (vault_copy.path / "sprx.key").read_bytes() == key_before
    assert (vault_copy.path / "sprx.db").read_bytes() == db_before
    (vault_copy.path / "sprx.key").unlink()  # a lone database is still refused
    with pytest.raises(VaultExists):
        Vault.create(vault_copy.path, pw(NEW_PASSPHRASE), kdf=FLOOR)
    assert (vault_copy.path / "sprx.db").read_bytes() == db_before


def test_create_in_missing_parent(tmp_path: Path) -> None:
    with pytest.raises(VaultUnwritable) as info:
        Vault.create(tmp_path / "nope" / "vault", pw(), kdf=FLOOR)
    assert "nope" not in str(info.value)
    assert not (tmp_path / "nope").exists()


def test_create_where_parent_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(VaultUnwritable):
        Vault.create(tmp_path / "file" / "vault", pw(), kdf=FLOOR)


@pytest.mark.parametrize("which", ["parent", "vault_dir"])
def test_create_in_read_only_directory(tmp_path: Path, which: str) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    target = ro / "vault" if which == "parent" else ro
    ro.chmod(0o500)
    try:
        probe = ro / "probe"
        try:
            probe.touch()
        except PermissionError:
            pass
        else:
            probe.unlink()
            pytest.skip(
                "running as root: chmod 0500 does not stop writes (parent-is-a-file "
                "test covers VaultUnwritable instead)"
            )
        with pytest.raises(VaultUnwritable):
            Vault.create(target, pw(), kdf=FLOOR)
    finally:
        ro.chmod(0o700)
    assert not (ro / "sprx.key").exists() and not (ro / "sprx.db").exists()


def test_crypto_erase(vault_copy: Made) -> None:
    v = Vault(vault_copy.path)
    v.unlock(pw())
    v.crypto_erase()
    assert not v.is_unlocked
    assert not vault_copy.path.exists()
    assert not Vault.exists(vault_copy.path)


def test_create_then_reopen(tmp_path: Path) -> None:
    v, recovery = Vault.create(tmp_path / "fresh", pw(), kdf=FLOOR)
    assert v.is_unlocked
    with v.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT v FROM vault_meta").scalar_one() == v.db_id
    v.lock()
    v2 = Vault(tmp_path / "fresh")
    assert v2.db_id == v.db_id
    v2.unlock_with_recovery(recovery)
    v2.lock()


# --- 11: temp files ------------------------------------------------------------------------------


def _etilqs_fds() -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if "etilqs" in target:
            found.append(target)
    return found


def _spill_sort(engine) -> list[str]:
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        raw.execute("PRAGMA cache_size = 2")
        cur = raw.execute("SELECT name, body FROM notes ORDER BY random()")
        cur.fetchone()
        seen = _etilqs_fds()
        cur.fetchall()
        raw.execute("PRAGMA cache_size = -2000")
    return seen


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs Linux /proc")
def test_temp_store_memory_no_temp_files(vault_copy: Made) -> None:
    v = Vault(vault_copy.path)
    v.unlock(pw())
    # The sorter spills only past about 1 MB (250 pages), so sort about 3 MB.
    _insert_rows(v.engine, count=2500, start=ROWS, repeat=40)
    assert db.pragma_report(v.engine)["temp_store"] == "2"
    assert _spill_sort(v.engine) == []
    v.lock()


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs Linux /proc")
def test_temp_store_file_would_leak_detector_works(tmp_path: Path) -> None:
    """Negative control: with temp_store=FILE the same sort spills, so the check above can fail."""
    engine = db.make_plain_engine(tmp_path / "plain.db")
    _insert_rows(engine, count=2500, repeat=40)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA temp_store = FILE")
    try:
        assert _spill_sort(engine), "expected a plaintext etilqs temp file in FILE mode"
    finally:
        db.checkpoint_and_dispose(engine)


# --- 12, 13, 16: memory, pragmas, process flags --------------------------------------------------

_RESIDUE_SCRIPT = r"""
import binascii, ctypes, gc, json, re, sys
from pathlib import Path
from sprx_tui.core import db
from sprx_tui.core.vault import Vault

db.init_process_security(True)
v = Vault(Path(sys.argv[1]))
v.unlock(bytearray(sys.argv[2].encode()))
with v.engine.connect() as conn:
    rows = conn.exec_driver_sql("SELECT count(*) FROM notes").scalar_one()
probe_raw = bytes(v._dek)  # the test's own probe copies: one raw, one hex
probe_hex = binascii.hexlify(probe_raw)
v.lock()
gc.collect()

CHUNK = 4 << 20
buf = bytearray(CHUNK)
buf_start = ctypes.addressof(ctypes.c_char.from_buffer(buf))
buf_end = buf_start + CHUNK
overlap = len(probe_hex) - 1
counts = {"raw": 0, "hex": 0}

def scan(f, start, end):
    pos = start
    while pos < end:
        n = min(CHUNK, end - pos)
        f.seek(pos)
        try:
            got = f.readinto(memoryview(buf)[:n])
        except OSError:
            return
        if not got:
            return
        advance = got if pos + got >= end else max(1, got - overlap)
        for name, needle in (("raw", probe_raw), ("hex", probe_hex)):
            i = buf.find(needle, 0, got)
            while i != -1 and i < advance:
                counts[name] += 1
                i = buf.find(needle, i + 1, got)
        pos += advance

regions = []
for line in open("/proc/self/maps"):
    m = re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S+)", line)
    if m and m.group(3)[0] == "r" and "[vvar" not in line and "[vsyscall" not in line:
        regions.append((int(m.group(1), 16), int(m.group(2), 16)))
with open("/proc/self/mem", "rb", buffering=0) as f:
    for start, end in regions:
        # skip the scan buffer itself: it holds whatever chunk was read last
        if start < buf_end and buf_start < end:
            scan(f, start, max(start, buf_start))
            scan(f, min(end, buf_end), end)
        else:
            scan(f, start, end)
print(json.dumps({"rows": rows, **counts}))
"""


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux /proc")
def test_no_key_residue_in_memory_after_lock(vault_copy: Made) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _RESIDUE_SCRIPT, str(vault_copy.path), PASSPHRASE.decode()],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=True,
    )
    counts = json.loads(result.stdout)
    assert counts["rows"] == ROWS
    assert counts["raw"] <= 1, counts
    assert counts["hex"] <= 1, counts
    assert result.stderr == ""


EXPECTED_PRAGMAS = {
    "temp_store": "2",
    "secure_delete": "1",
    "foreign_keys": "1",
    "journal_mode": "wal",
    "synchronous": "2",
    "busy_timeout": "5000",
    "cipher_memory_security": "1",
    "cipher_log_level": "NONE",
}


@pytest.fixture(scope="module")
def vault_pragmas(vault_base: Made) -> dict[str, str]:
    v = Vault(vault_base.path)
    v.unlock(pw())
    try:
        return db.pragma_report(v.engine)
    finally:
        v.lock()


@pytest.mark.parametrize(("name", "expected"), sorted(EXPECTED_PRAGMAS.items()))
def test_process_flags_and_pragmas(vault_pragmas: dict[str, str], name: str, expected: str):
    assert vault_pragmas[name] == expected


def test_cipher_version_is_sqlcipher_4(vault_pragmas: dict[str, str]) -> None:
    assert vault_pragmas["cipher_version"].startswith("4.")


def test_memory_security_on_and_init_idempotent() -> None:
    db.init_process_security(True)
    db.init_process_security(False)  # cannot turn it off once on
    assert db.memory_security_enabled() is True


def test_plain_engine_has_same_pragmas_and_is_plain(tmp_path: Path) -> None:
    engine = db.make_plain_engine(tmp_path / "plain.db")
    report = db.pragma_report(engine)
    for name in ("temp_store", "secure_delete", "foreign_keys", "journal_mode", "synchronous"):
        assert report[name] == EXPECTED_PRAGMAS[name]
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x)")
    db.checkpoint_and_dispose(engine)
    assert (tmp_path / "plain.db").read_bytes().startswith(b"SQLite format 3")


_FLAGS_SCRIPT = r"""
import ctypes, json, resource
from sprx_tui.core import db
db.init_process_security(True)
libc = ctypes.CDLL(None)
print(json.dumps({"dumpable": libc.prctl(3, 0, 0, 0, 0),
                  "core": list(resource.getrlimit(resource.RLIMIT_CORE)),
                  "memsec": db.memory_security_enabled()}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux-only")
def test_process_hardening_no_core_not_dumpable() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _FLAGS_SCRIPT],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=True,
    )
    flags = json.loads(result.stdout)
    assert flags == {"dumpable": 0, "core": [0, 0], "memsec": True}


# --- 14: logs and exceptions ---------------------------------------------------------------------


def test_logs_and_exceptions_hold_no_personal_data_or_keys(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd
) -> None:
    path = tmp_path / f"client {MARKER.decode()}"
    v, recovery = Vault.create(path, pw(), kdf=FLOOR)
    dek_hex = bytes(v._dek).hex()
    texts: list[str] = []
    caplog.set_level(logging.DEBUG)
    with v.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE people (nhs TEXT UNIQUE, name TEXT)")
        conn.exec_driver_sql("INSERT INTO people VALUES (?, ?)", (NHS.decode(), MARKER.decode()))
    with pytest.raises(IntegrityError) as integrity:
        with v.engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO people VALUES (?, ?)", (NHS.decode(), MARKER.decode()))
    texts.append("".join(traceback.format_exception(integrity.value)))
    v.lock()
    errors: list[BaseException] = []
    for action in (
        lambda: v.unlock(pw(b"the wrong passphrase, sadly")),
        lambda: v.unlock_with_recovery(recovery[:-1]),
        lambda: v.engine,
        lambda: Vault.create(path, pw(), kdf=FLOOR),
        lambda: Vault(tmp_path / "missing").unlock(pw()),
        lambda: Vault.create(path / "x" / "y", pw(), kdf=FLOOR),
    ):
        try:
            action()
        except vault.VaultError as exc:
            errors.append(exc)
            texts.append("".join(traceback.format_exception(exc)))
            texts.append(str(exc))
            assert exc.__cause__ is None
    assert len(errors) == 6
    texts.append(repr(v))
    texts.append(caplog.text)
    captured = capfd.readouterr()
    texts.extend([captured.out, captured.err])
    blob = "\n".join(texts)
    for secret in (MARKER.decode(), NHS.decode(), dek_hex, dek_hex.upper(), PASSPHRASE.decode()):
        assert secret not in blob
    assert recovery not in blob and recovery.replace("-", "") not in blob
    for exc in errors:
        assert "\n" not in str(exc) and str(exc).endswith(".")


# --- calibration ---------------------------------------------------------------------------------


def test_calibrate_kdf_scales_memory_then_time(monkeypatch) -> None:
    def fake_time(params: KdfParams) -> float:
        return 0.1 * (params.m / FLOOR.m) * (params.t / FLOOR.t)

    monkeypatch.setattr(vault, "_time_derive", fake_time)
    result = vault.calibrate_kdf((0.5, 1.0))
    assert 0.5 <= fake_time(result) <= 1.0
    assert result.t == FLOOR.t and result.m > FLOOR.m and result.p == FLOOR.p
    # A fast machine hits the 1 GiB cap and then raises t.
    monkeypatch.setattr(vault, "_time_derive", lambda p: 0.001 * (p.m / FLOOR.m) * p.t)
    fast = vault.calibrate_kdf((0.5, 1.0))
    assert fast.m == 1024 * 1024 and fast.t > FLOOR.t
    # A slow machine never goes below the floor.
    monkeypatch.setattr(vault, "_time_derive", lambda p: 5.0)
    assert vault.calibrate_kdf((0.5, 1.0)) == FLOOR


def test_calibrate_kdf_real_derive_never_below_floor() -> None:
    result = vault.calibrate_kdf((0.0, 60.0))
    assert result == FLOOR
