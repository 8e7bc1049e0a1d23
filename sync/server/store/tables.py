"""The server's tables and engine: SQLAlchemy 2 Core, a SQLite file (WAL) by default, PostgreSQL by URL.

Every ``sa.Table`` the server keeps, the hot-path statements built once from them, and ``make_engine``
with the pragmas and locking the store relies on. A change here needs a migration in
sync/server/migrations/versions (tests/sync/test_server_migrations.py fails without one). Files stay
private through ``sync.server.private``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

md = sa.MetaData()
Big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

server_meta = sa.Table(
    "server_meta",
    md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("epoch", sa.String(36), nullable=False),
    sa.Column("tombstone_watermark", Big, nullable=False, default=0),
    sa.Column("seq", Big, nullable=False, default=0),  # the single commit-ordered counter
    sa.Column("hlc", Big, nullable=False, default=0),
)
practice = sa.Table(
    "practice",
    md,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
)
team = sa.Table(
    "team",
    md,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("practice_id", sa.String(64), sa.ForeignKey("practice.id"), nullable=False),
)
worker = sa.Table(
    "worker",
    md,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("practice_id", sa.String(64), sa.ForeignKey("practice.id"), nullable=False),
    sa.Column("team_id", sa.String(64), sa.ForeignKey("team.id"), nullable=True),
    sa.Column("created_at", Big, nullable=False),
    # Added later: the person's name for the admin's lists (never logged; the id is the login), and
    # when the worker was removed (kept, not deleted: their laptops' history refers to them).
    sa.Column("display_name", sa.String(200), nullable=True),
    sa.Column("removed_at", Big, nullable=True),
)
assignment = sa.Table(
    "assignment",
    md,
    sa.Column("person_id", sa.String(64), primary_key=True),
    sa.Column("practice_id", sa.String(64), nullable=False),
    sa.Column("worker_id", sa.String(64), nullable=True, index=True),
    sa.Column("team_id", sa.String(64), nullable=True, index=True),
    sa.Column("seq", Big, nullable=False),
)
assignment_log = sa.Table(
    "assignment_log",
    md,
    sa.Column("seq", Big, primary_key=True, autoincrement=False),
    sa.Column("person_id", sa.String(64), nullable=False),
    sa.Column("practice_id", sa.String(64), nullable=False),
    sa.Column("old_worker_id", sa.String(64), nullable=True),
    sa.Column("old_team_id", sa.String(64), nullable=True),
)
device = sa.Table(
    "device",
    md,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("worker_id", sa.String(64), sa.ForeignKey("worker.id"), nullable=False),
    sa.Column("practice_id", sa.String(64), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("enrolled_at", Big, nullable=False),
    sa.Column("revoked_at", Big, nullable=True),
    sa.Column("last_acked_mutation_id", Big, nullable=False, default=0),
    sa.Column("last_pull_seq", Big, nullable=False, default=0),
    sa.Column("last_seen", Big, nullable=True),
    # Added later: retirement, and what the laptop last said it held unsent (in the baseline, 0001).
    sa.Column("retired_at", Big, nullable=True),
    sa.Column("pending_reported", Big, nullable=True),
    sa.Column("pending_reported_at", Big, nullable=True),
    # When the server first told a revoked (or finished retiring) laptop to erase itself: after that it
    # cannot be restored, only enrolled again.
    sa.Column("erase_told_at", Big, nullable=True),
)
enrol_code = sa.Table(
    "enrol_code",
    md,
    sa.Column("code_sha256", sa.String(64), primary_key=True),
    sa.Column("worker_id", sa.String(64), sa.ForeignKey("worker.id"), nullable=False),
    sa.Column("expires_at", Big, nullable=False),
    sa.Column("used_at", Big, nullable=True),
    sa.Column("device_id", sa.String(64), nullable=True),
)
record = sa.Table(
    "record",
    md,
    sa.Column("tbl", sa.String(64), primary_key=True),
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("practice_id", sa.String(64), nullable=False),
    sa.Column("person_id", sa.String(64), nullable=True, index=True),
    sa.Column("values", sa.Text, nullable=False),
    sa.Column("meta", sa.Text, nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
    sa.Column("seq", Big, nullable=False),
    sa.Column("lookup", sa.String(64), nullable=True),  # NHS number of a person, for duplicates
    sa.Index("ix_record_lookup", "practice_id", "tbl", "lookup"),
    # Snapshot pages walk a table person by person (see ServerStore.snapshot_body).
    sa.Index("ix_record_tbl_person", "tbl", "person_id", "id"),
)
change_log = sa.Table(
    "change_log",
    md,
    sa.Column("seq", Big, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(10), nullable=False),  # record | conflict
    sa.Column("tbl", sa.String(64), nullable=False),
    sa.Column("row_id", sa.String(64), nullable=False),
    sa.Column("person_id", sa.String(64), nullable=True),
    sa.Column("practice_id", sa.String(64), nullable=False),
    sa.Column("origin_device", sa.String(64), nullable=False),
    sa.Column("origin_mutation_id", Big, nullable=True),
    sa.Column("at", Big, nullable=False),
    # One entry per row: the feed carries each row's latest state once, so it stays O(rows).
    sa.UniqueConstraint("kind", "tbl", "row_id", name="uq_change_log_row"),
)
applied_mutation = sa.Table(
    "applied_mutation",
    md,
    sa.Column("device_id", sa.String(64), primary_key=True),
    sa.Column("mutation_id", Big, primary_key=True, autoincrement=False),
    sa.Column("payload_sha256", sa.String(64), nullable=False),
    sa.Column("result", sa.Text, nullable=False),
    sa.Column("applied_at", Big, nullable=False),
)
conflict = sa.Table(
    "conflict",
    md,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("practice_id", sa.String(64), nullable=False),
    sa.Column("tbl", sa.String(64), nullable=False),
    sa.Column("row_id", sa.String(64), nullable=False),
    sa.Column("person_id", sa.String(64), nullable=True),
    sa.Column("field", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("values", sa.Text, nullable=False),
    sa.Column("shown_idx", sa.Integer, nullable=False),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("resolution", sa.Text, nullable=True),
    sa.Column("seq", Big, nullable=False),
    sa.Index("ix_conflict_row", "tbl", "row_id", "status"),
)
quarantine = sa.Table(
    "quarantine",
    md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("device_id", sa.String(64), nullable=False),
    sa.Column("mutation_id", Big, nullable=False),
    sa.Column("reason", sa.String(64), nullable=False),
    sa.Column("detail", sa.Text, nullable=True),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("at", Big, nullable=False),
)
deleted_id = sa.Table(
    "deleted_id",
    md,
    sa.Column("tbl", sa.String(64), primary_key=True),
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("seq", Big, nullable=False),
)

# Hot-path statements built once: building SQLAlchemy constructs per mutation costs more
# than running them.
_b = sa.bindparam
_SEL_RECORD = sa.select(record).where(record.c.tbl == _b("b_tbl"), record.c.id == _b("b_id"))
_SEL_DELETED = sa.select(deleted_id.c.id).where(deleted_id.c.tbl == _b("b_tbl"), deleted_id.c.id == _b("b_id"))
_INS_RECORD = record.insert()
_UPD_RECORD = record.update().where(record.c.tbl == _b("b_tbl"), record.c.id == _b("b_id"))
_INS_LOG = change_log.insert()
_DEL_LOG = change_log.delete().where(
    change_log.c.kind == _b("b_kind"), change_log.c.tbl == _b("b_tbl"), change_log.c.row_id == _b("b_row")
)
_INS_APPLIED = applied_mutation.insert()


def make_engine(url: str) -> Engine:
    """An engine with the pragmas and locking this store relies on."""
    if url.startswith("sqlite"):
        memory = url in ("sqlite://", "sqlite:///:memory:")
        kw: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
        if memory:
            kw["poolclass"] = StaticPool
        engine = sa.create_engine(url, **kw)

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _rec: Any) -> None:
            # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite would defer it).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            if not memory:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # Writers take the write lock up front: a deferred transaction that upgrades later
            # fails with "database is locked" instead of waiting its turn.
            write = conn.get_execution_options().get("sprx_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
