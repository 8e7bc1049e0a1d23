"""SQLCipher engine construction, per-connection pragmas and process-wide hardening."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import sqlcipher3
from sqlalchemy import Engine, create_engine
from sqlalchemy.pool import StaticPool

try:  # POSIX only; Windows relies on excluding the app from WER LocalDumps instead
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]

__all__ = [
    "CONNECTION_PRAGMAS",
    "DatabaseOpenError",
    "DatabaseUnavailable",
    "STATEMENT_CACHE_SIZE",
    "WrongKeyOrNotDatabase",
    "checkpoint_and_dispose",
    "init_process_security",
    "make_engine",
    "make_plain_engine",
    "memory_security_enabled",
    "pragma_report",
]

# Order matters only for journal_mode (it must run outside a transaction, which it does here).
CONNECTION_PRAGMAS: tuple[tuple[str, str], ...] = (
    # FILE mode spills sorter/temp tables to unencrypted temp files (measured: plaintext leak).
    ("temp_store", "MEMORY"),
    ("secure_delete", "ON"),
    ("foreign_keys", "ON"),
    ("journal_mode", "WAL"),
    ("synchronous", "FULL"),
    ("busy_timeout", "5000"),
)

# Prepared statements kept per connection: none. With memory security on, every allocation SQLite
# cannot serve from the connection's small-allocation pool (lookaside) goes through SQLCipher's wiping
# allocator, one mlock and one munlock system call each. Statements held in the cache keep their share
# of that pool, so a warmed connection's inserts allocated row by row: a 110,000-row first sync made
# 858,000 mlock calls and its inserts took 9.2 s with 128 cached statements, 1.7 s with none (4.1 s with
# 8). Parsing again costs less than that: with none, the report, caseload search and contact save on the
# 10k vault were as fast or faster (`bench/bench_vault.py stmtcache --sizes 0,4,128`, BENCHMARKS.md).
STATEMENT_CACHE_SIZE = 0

_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26
_PR_SET_DUMPABLE = 4
_HEX_DIGITS = b"0123456789abcdef"

_init_lock = threading.Lock()
_initialised = False
_memsec_requested = False


class DatabaseOpenError(Exception):
    """The database file could not be opened; the message is safe to show."""


class WrongKeyOrNotDatabase(DatabaseOpenError):
    """The key does not decrypt the file, or the file is not an encrypted database."""

    def __init__(self) -> None:
        super().__init__("The database could not be read with this key, or it is not an encrypted database.")


class DatabaseUnavailable(DatabaseOpenError):
    """The file could not be opened or configured at all (permissions, missing folder ...)."""

    def __init__(self) -> None:
        super().__init__("The database file could not be opened.")


class _NoResultRows(logging.Filter):
    """Drop SQLAlchemy's DEBUG records: they carry result rows ("Row %r"), i.e. names and NHS numbers.

    Statements (INFO) still pass, and their bound values are already hidden by ``hide_parameters``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


_ROW_FILTER = _NoResultRows()
# Where the engine and its connections log (SQLAlchemy's `_sqla_logger_namespace`), and their parent.
_ENGINE_LOGGERS = ("sqlalchemy.engine.Engine", "sqlalchemy.engine.Connection", "sqlalchemy.engine")


def _guard_engine_logging() -> None:
    """However logging is configured (even `sqlalchemy.engine` at DEBUG), no result row is ever logged."""
    for name in _ENGINE_LOGGERS:
        logger = logging.getLogger(name)
        if _ROW_FILTER not in logger.filters:
            logger.addFilter(_ROW_FILTER)


def _harden_process() -> None:
    # A core dump or a same-user ptrace would expose the DEK while the vault is unlocked.
    if resource is not None:
        try:
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        except (ValueError, OSError):
            pass
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
        except (OSError, AttributeError):
            pass


def init_process_security(memory_security: bool = True) -> None:
    """Apply process-global SQLCipher settings and anti-dump limits; safe to call repeatedly.

    ``memory_security=False`` exists only for benchmarks that measure its cost, and they must run
    each mode in a separate process: once on, SQLCipher cannot turn it off for this process.
    """
    global _initialised, _memsec_requested
    with _init_lock:
        if _initialised and (_memsec_requested or not memory_security):
            return
        conn = sqlcipher3.connect(":memory:")
        try:
            # SQLCipher logs "hmac check failed" etc. to stderr, which corrupts the TUI.
            conn.execute("PRAGMA cipher_log_level = NONE")
            if memory_security:
                conn.execute("PRAGMA cipher_memory_security = ON")
        finally:
            conn.close()
        if not _initialised:
            _harden_process()
        _initialised = True
        _memsec_requested = _memsec_requested or memory_security


def memory_security_enabled() -> bool:
    """Whether SQLCipher's process-global memory wiping is on."""
    conn = sqlcipher3.connect(":memory:")
    try:
        row = conn.execute("PRAGMA cipher_memory_security").fetchone()
    finally:
        conn.close()
    return row is not None and str(row[0]) == "1"


def _raw_key_spec(dek: bytearray) -> bytearray:
    """Build ``x'<hex>'`` in a bytearray so the key never exists as an immutable str/bytes."""
    spec = bytearray(3 + 2 * len(dek))
    spec[0:2] = b"x'"
    for i, byte in enumerate(dek):
        spec[2 + 2 * i] = _HEX_DIGITS[byte >> 4]
        spec[3 + 2 * i] = _HEX_DIGITS[byte & 0x0F]
    spec[-1] = ord("'")
    return spec


def _wipe(buf: bytearray) -> None:
    buf[:] = bytes(len(buf))


def _apply_pragmas(conn: sqlcipher3.Connection) -> None:
    for name, value in CONNECTION_PRAGMAS:
        conn.execute(f"PRAGMA {name} = {value}").fetchall()


def _classify(exc: sqlcipher3.Error) -> DatabaseOpenError:
    code = getattr(exc, "sqlite_errorcode", None)
    if code in (_SQLITE_NOTADB, _SQLITE_CORRUPT):
        return WrongKeyOrNotDatabase()
    return DatabaseUnavailable()


def _open(db_path: Path, key_provider: Callable[[], bytearray] | None) -> sqlcipher3.Connection:
    # key_provider runs before anything touches the file, so a locked vault never opens it.
    dek = key_provider() if key_provider is not None else None
    conn: sqlcipher3.Connection | None = None
    try:
        try:
            conn = sqlcipher3.connect(str(db_path), check_same_thread=False, cached_statements=STATEMENT_CACHE_SIZE)
        except sqlcipher3.Error:
            raise DatabaseUnavailable() from None
        if dek is not None:
            spec = _raw_key_spec(dek)
            try:
                # set_key calls sqlite3_key directly: no SQL text, no statement cache copy.
                conn.set_key(spec)
            finally:
                _wipe(spec)
        try:
            # A wrong key is silent until the first read, so read now.
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            _apply_pragmas(conn)
        except sqlcipher3.Error as exc:
            raise _classify(exc) from None
    except BaseException:
        if conn is not None:
            conn.close()
        raise
    finally:
        if dek is not None:
            _wipe(dek)
    return conn


def _build_engine(creator: Callable[[], sqlcipher3.Connection]) -> Engine:
    _guard_engine_logging()
    return create_engine(
        # Not "sqlite+pysqlcipher://": that dialect issues PRAGMA key="" itself and fails.
        "sqlite://",
        creator=creator,
        module=sqlcipher3,
        poolclass=StaticPool,
        # Bound values (NHS numbers, names) otherwise appear in exception text and logs.
        hide_parameters=True,
        echo=False,
    )


def make_engine(db_path: Path, key_provider: Callable[[], bytearray]) -> Engine:
    """Engine over an encrypted database, keyed with a 32-byte raw DEK.

    ``key_provider`` returns a fresh bytearray holding the DEK, which the creator wipes after use;
    it must raise when the vault is locked, so SQLAlchemy can never silently reconnect.
    """
    init_process_security()
    path = Path(db_path)
    return _build_engine(lambda: _open(path, key_provider))


def make_plain_engine(db_path: Path) -> Engine:
    """UNENCRYPTED engine with the same module and pragmas.

    Only for the benchmark that compares encrypted with plain storage on identical code; never use
    it for real data.
    """
    init_process_security()
    path = Path(db_path)
    return _build_engine(lambda: _open(path, None))


def checkpoint_and_dispose(engine: Engine) -> None:
    """Fold the WAL back into the database file, truncate it, and close the connection."""
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        engine.dispose()


_REPORTED_PRAGMAS = (
    *(name for name, _ in CONNECTION_PRAGMAS),
    "cipher_version",
    "cipher_memory_security",
    "cipher_log_level",
)


def pragma_report(engine: Engine) -> dict[str, str]:
    """Current value of every security-relevant pragma on the engine's connection."""
    report: dict[str, str] = {}
    with engine.connect() as conn:
        for name in _REPORTED_PRAGMAS:
            row = conn.exec_driver_sql(f"PRAGMA {name}").fetchone()
            report[name] = "" if row is None else str(row[0])
    return report
