"""The server store's schema under Alembic (sync/server/migrations), on SQLite and PostgreSQL.

``sprx-server init`` builds a new store by running every migration; ``sprx-server db upgrade`` brings an
older one to this release's schema (a store made before migrations existed is first completed to the
baseline and stamped with it); ``db current`` says where a store stands. Everything else refuses a store
that is not exactly at this release's revision (``check``), naming the command to run.

In-process stores built by tests and benchmarks (``ServerStore(url)`` on an empty database) are made
with ``create_all`` and stamped at head: quicker than running the scripts, and a test
(tests/sync/test_server_migrations.py) proves the two give the same schema.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

HERE = Path(__file__).parent / "migrations"
BASELINE = "0001"
VERSION_TABLE = "alembic_version"

EMPTY, LEGACY, BEHIND, CURRENT, AHEAD = "empty", "legacy", "behind", "current", "ahead"


class SchemaError(Exception):
    """The store's schema is not the one this release runs on: one sentence naming what to do."""

    def __init__(self, state: str, message: str) -> None:
        super().__init__(message)
        self.state = state
        self.message = message


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    return cfg


@functools.cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head_revision() -> str:
    """The newest revision shipped with this code."""
    head = _scripts().get_current_head()
    assert head is not None
    return head


def known_revisions() -> set[str]:
    return {s.revision for s in _scripts().walk_revisions()}


def current_revision(bind: Engine | Connection) -> str | None:
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            return current_revision(conn)
    return MigrationContext.configure(bind).get_current_revision()


@dataclass(frozen=True)
class Status:
    state: str
    """empty (no tables), legacy (made before migrations), behind, current or ahead (a newer release's)."""
    revision: str | None
    head: str


def status(engine: Engine) -> Status:
    names = set(sa.inspect(engine).get_table_names())
    head = head_revision()
    if VERSION_TABLE not in names:
        return Status(LEGACY if "server_meta" in names else EMPTY, None, head)
    rev = current_revision(engine)
    if rev is None:
        return Status(LEGACY if "server_meta" in names else EMPTY, None, head)
    if rev == head:
        return Status(CURRENT, rev, head)
    return Status(BEHIND if rev in known_revisions() else AHEAD, rev, head)


def check(engine: Engine) -> None:
    """Raise SchemaError unless the store is at this release's revision."""
    st = status(engine)
    if st.state == CURRENT:
        return
    if st.state == EMPTY:
        raise SchemaError(EMPTY, "The server store has not been created; run `sprx-server init` first.")
    if st.state == AHEAD:
        raise SchemaError(
            AHEAD,
            f"The server store is at schema revision {st.revision}, newer than this sprx-server knows; "
            "run the sprx-server release that upgraded it.",
        )
    raise SchemaError(
        st.state,
        "The server store was made by an older sprx-server; run `sprx-server db upgrade` (after a backup).",
    )


BASELINE_TABLES = (
    "server_meta", "practice", "team", "worker", "assignment", "assignment_log", "device", "enrol_code",
    "record", "change_log", "applied_mutation", "conflict", "quarantine", "deleted_id",
)  # fmt: skip
BASELINE_DEVICE_COLUMNS = ("retired_at", "pending_reported", "pending_reported_at")
"""Columns older stores gained by ALTER TABLE when opened, before migrations existed: the baseline has them."""


def _complete_legacy(conn: Connection) -> None:
    """A store made before migrations: add what an older file may lack, up to the baseline and no further.

    Before migrations the store grew on open: tables by ``create_all``, the device columns above by
    ALTER TABLE, the record indexes by ``checkfirst``. The worker and device tables have been there
    from the first version, so a missing table is created as it is now (it has no later columns).
    """
    from sync.server.store.tables import md, record

    have_tables = set(sa.inspect(conn).get_table_names())
    missing = [md.tables[n] for n in BASELINE_TABLES if n not in have_tables]
    md.create_all(conn, tables=missing)
    have = {c["name"] for c in sa.inspect(conn).get_columns("device")}
    big = sa.BigInteger().with_variant(sa.Integer(), "sqlite").compile(dialect=conn.dialect)
    for name in BASELINE_DEVICE_COLUMNS:
        if name not in have:
            conn.exec_driver_sql(f'ALTER TABLE device ADD COLUMN "{name}" {big}')
    for ix in record.indexes:
        ix.create(conn, checkfirst=True)


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Bring the store to ``revision`` in one transaction; returns (revision before, revision after).

    An empty database gets every migration (what ``init`` does); a store made before migrations is
    completed to the baseline, stamped, then upgraded.
    """
    st = status(engine)
    if st.state == AHEAD:
        check(engine)
    cfg = _config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        if st.state == LEGACY:
            _complete_legacy(conn)
            MigrationContext.configure(conn).stamp(_scripts(), BASELINE)
        command.upgrade(cfg, revision)
        after = current_revision(conn)
    assert after is not None
    return st.revision if st.state != LEGACY else "pre-migration", after


def create_at_head(engine: Engine) -> None:
    """An empty database made at head by ``create_all`` and stamped (tests, benchmarks); see the module note."""
    from sync.server.store.tables import md

    with engine.begin() as conn:
        md.create_all(conn)
        MigrationContext.configure(conn).stamp(_scripts(), "head")
