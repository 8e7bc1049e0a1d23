"""`sprx-server backup --out FILE` and `sprx-server restore --from FILE`.

SQLite: SQLite's online backup API copies the whole database in one step inside one read transaction,
so the copy is consistent while laptops push (WAL lets the writers carry on); the copy is a single
self-contained file (rollback journal, no -wal), checked before it is given its name. PostgreSQL:
``pg_dump --format=custom``, restored with ``pg_restore``. A backup file is 0600 from the moment it
exists and never overwrites another file.

A restore goes only into an empty store (a new SQLite path, a new database, or one just made by
``init``), brings the schema up to this release, and gives the store a new epoch: every laptop then
resyncs at its next sync, and before it replaces its copy it sends again every change the restored
store has not got (``sync.client.SyncEngine`` compares the server's ``last_acked_mutation_id`` with
its own), so nothing a laptop synced after the backup is lost. Changes made on the server itself
after the backup (imports, assignments, new workers and enrolments) are not on any laptop: redo them.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from sync.server import migrate, private
from sync.server.config import ConfigError
from sync.server.setup import describe

SQLITE_MAGIC = b"SQLite format 3\x00"
PGDUMP_MAGIC = b"PGDMP"
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
"""Where Debian and Ubuntu keep each PostgreSQL version's tools, when they are not on PATH."""
DATA_TABLES = ("practice", "worker", "device", "enrol_code", "record", "change_log", "applied_mutation", "conflict")
"""A store with a row in any of these is not empty (``init`` leaves only server_meta and alembic_version)."""


class BackupError(ConfigError):
    """A backup or restore that cannot be done: one sentence; nothing was changed."""


# ---------------------------------------------------------------- files


@contextlib.contextmanager
def _new_private_file(final: Path) -> Iterator[Path]:
    """A 0600 temporary file next to ``final``, renamed to it only when the block succeeds."""
    if final.exists():
        raise BackupError(f"{final} already exists; a backup never overwrites a file, so choose a new name.")
    try:
        private.make_private_dir(final.parent)
        tmp = final.with_name(f".{final.name}.partial")
        with private.private_umask():
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, private.FILE_MODE)
        os.close(fd)
    except OSError as e:
        raise BackupError(f"Cannot write {final} ({e.strerror}).") from None
    try:
        yield tmp
        os.chmod(tmp, private.FILE_MODE)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def _kind_of(path: Path) -> str:
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except FileNotFoundError:
        raise BackupError(f"There is no backup file {path}.") from None
    except OSError as e:
        raise BackupError(f"Cannot read {path} ({e.strerror}).") from None
    if head.startswith(SQLITE_MAGIC):
        return "sqlite"
    if head.startswith(PGDUMP_MAGIC):
        return "postgresql"
    raise BackupError(f"{path} is not a sprx-server backup (neither a SQLite file nor a pg_dump archive).")


# ---------------------------------------------------------------- PostgreSQL tools


def find_tool(name: str) -> str:
    """pg_dump or pg_restore on PATH, else the newest under /usr/lib/postgresql; BackupError if neither."""
    found = shutil.which(name)
    if found:
        return found
    cands = sorted(glob.glob(f"{PG_BIN_GLOB}/{name}"), key=lambda p: (len(p), p))
    if cands:
        return cands[-1]
    raise BackupError(
        f"{name} is not installed; install the PostgreSQL client tools (the postgresql-client package) "
        "of the server's version or newer."
    )


def _pg_args(url: str) -> tuple[list[str], dict[str, str]]:
    """libpq connection options for a psycopg URL: the password goes in the environment, never argv."""
    u = make_url(url)
    env = {**os.environ}
    args = ["--dbname", str(u.database or "")]
    if u.host:
        args += ["--host", u.host]
    if u.port:
        args += ["--port", str(u.port)]
    if u.username:
        args += ["--username", u.username]
    if u.password:
        env["PGPASSWORD"] = str(u.password)
    for key, value in u.query.items():
        if key in ("sslmode", "sslrootcert", "sslcert", "sslkey"):
            env["PG" + key.upper()] = str(value if isinstance(value, str) else value[0])
    args.append("--no-password")
    return args, env


def _run_tool(cmd: list[str], env: dict[str, str], what: str) -> None:
    try:
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=24 * 3600)
    except OSError as e:
        raise BackupError(f"Cannot run {cmd[0]} ({e.strerror}).") from None
    if r.returncode != 0:
        first = next((ln.strip() for ln in r.stderr.splitlines() if ln.strip()), "no message")
        raise BackupError(f"{what} failed: {first.removeprefix(Path(cmd[0]).name + ': ')}")


# ---------------------------------------------------------------- backup


def backup(url: str, out: Path) -> str:
    """Write a consistent copy of the store to ``out`` (0600); returns a sentence saying what was written."""
    path = private.sqlite_path(url)
    if url.startswith("sqlite"):
        if path is None:
            raise BackupError("Only a SQLite store in a file can be backed up.")
        if not path.is_file():
            raise BackupError(f"There is no server store at {path}; nothing was backed up.")
        with _new_private_file(out) as tmp:
            _sqlite_copy(path, tmp)
        return f"Backed up {path} to {out} ({out.stat().st_size:,} bytes, readable by this user only)."
    tool = find_tool("pg_dump")
    args, env = _pg_args(url)
    with _new_private_file(out) as tmp:
        _run_tool([tool, "--format=custom", "--file", str(tmp), *args], env, "pg_dump")
    return f"Backed up {describe(url)} to {out} ({out.stat().st_size:,} bytes, readable by this user only)."


def _sqlite_copy(src_path: Path, dst_path: Path) -> None:
    """Copy one SQLite database into another file with the online backup API, then check the copy."""
    try:
        src = sqlite3.connect(src_path, timeout=30)
        try:
            dst = sqlite3.connect(dst_path)
            try:
                src.backup(dst)  # all pages in one step: one read transaction, so one consistent state
                dst.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file
                ok = dst.execute("PRAGMA quick_check").fetchone()
                if not ok or ok[0] != "ok":
                    raise BackupError(f"The copy of {src_path} failed its integrity check; nothing was written.")
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.DatabaseError as e:
        raise BackupError(f"Cannot copy {src_path} ({e}).") from None


# ---------------------------------------------------------------- restore


def _is_empty(url: str) -> tuple[bool, str]:
    """Whether the store holds no data (missing, no tables, or just made by init); what it holds if not."""
    from sync.server.store.tables import make_engine, md

    path = private.sqlite_path(url)
    if path is not None and not path.exists():
        return True, ""
    engine = make_engine(url)
    try:
        names = set(sa.inspect(engine).get_table_names())
        held = []
        with engine.connect() as conn:
            for t in DATA_TABLES:
                if t in names:
                    n = conn.execute(sa.select(sa.func.count()).select_from(md.tables[t])).scalar_one()
                    if n:
                        held.append(f"{n} {t.replace('_', ' ')} row(s)")
        others = names - set(md.tables) - {migrate.VERSION_TABLE}
        if others and not held:
            held.append(f"tables sprx did not make ({', '.join(sorted(others)[:3])})")
        return not held, ", ".join(held[:3])
    finally:
        engine.dispose()


def restore(url: str, src: Path) -> list[str]:
    """Restore ``src`` into the empty store at ``url``; the lines to print."""
    kind = _kind_of(src)
    target = "sqlite" if url.startswith("sqlite") else "postgresql"
    if kind != target:
        raise BackupError(f"{src} is a backup of a {kind} store; restore it into a {kind} store, not {target}.")
    try:
        empty, held = _is_empty(url)
    except SQLAlchemyError:
        raise BackupError(f"Cannot open {describe(url)}; check the URL and access.") from None
    if not empty:
        raise BackupError(f"The store at {describe(url)} is not empty ({held}); restore only into a new, empty store.")
    if kind == "sqlite":
        _restore_sqlite(url, src)
    else:
        tool = find_tool("pg_restore")
        args, env = _pg_args(url)
        cmd = [tool, "--clean", "--if-exists", "--no-owner", "--no-privileges", "--single-transaction",
               "--exit-on-error", *args, str(src)]  # fmt: skip
        _run_tool(cmd, env, "pg_restore")
    return _after_restore(url, src)


def _restore_sqlite(url: str, src: Path) -> None:
    path = private.sqlite_path(url)
    if path is None:
        raise BackupError("Restore a SQLite backup into a SQLite file (sqlite:////path/to/server.db).")
    try:
        private.make_private_dir(path.parent)
    except OSError as e:
        raise BackupError(f"Cannot create {path.parent} ({e.strerror}).") from None
    tmp = path.with_name(f".{path.name}.restoring")
    tmp.unlink(missing_ok=True)
    try:
        with private.private_umask():
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, private.FILE_MODE))
        _sqlite_copy(src, tmp)
        con = sqlite3.connect(tmp)
        try:
            con.execute("PRAGMA journal_mode=WAL")
        finally:
            con.close()
        for side in private.SQLITE_SIDE_FILES:  # an empty store made by init, and its -wal/-shm
            Path(str(path) + side).unlink(missing_ok=True)
        os.replace(tmp, path)
        os.chmod(path, private.FILE_MODE)
    finally:
        tmp.unlink(missing_ok=True)
        for side in private.SQLITE_SIDE_FILES:
            Path(str(tmp) + side).unlink(missing_ok=True)


def _after_restore(url: str, src: Path) -> list[str]:
    """Bring the restored schema to this release and start a new epoch (every laptop resyncs)."""
    from sync.server.store import ServerStore
    from sync.server.store.tables import make_engine

    lines = [f"Restored {src} into {describe(url)}."]
    engine = make_engine(url)
    try:
        st = migrate.status(engine)
        if st.state in (migrate.LEGACY, migrate.BEHIND):
            before, after = migrate.upgrade(engine)
            lines.append(f"Upgraded its schema from {before} to {after}.")
        elif st.state != migrate.CURRENT:
            migrate.check(engine)
    except migrate.SchemaError as e:
        raise BackupError(e.message) from None
    finally:
        engine.dispose()
    store = ServerStore(url, create=False)
    try:
        store.new_epoch()
        info = store.server_info()
    finally:
        store.close()
    lines.append(
        "Every laptop will resync at its next sync and first send again what this backup lacks "
        f"(new epoch {info['epoch'][:8]}); redo any imports or assignments made on the server since the backup."
    )
    return lines
