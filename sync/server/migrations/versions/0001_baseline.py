"""Baseline: the server store as it was before migrations (git commit cebbe3a, sync/server/store/tables.py).

Written out by hand rather than generated, so that it stays what it is when tables.py moves on. A store
made before migrations existed is brought to exactly this schema and stamped with this revision by
``sync.server.migrate.upgrade`` (it adds the device columns and record indexes that ``create_all`` never
added to an older file), so every later revision starts from one known shape.

Revision ID: 0001
Revises:
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# 64-bit on PostgreSQL; on SQLite INTEGER (so an INTEGER PRIMARY KEY stays the rowid).
Big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "server_meta",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("epoch", sa.String(36), nullable=False),
        sa.Column("tombstone_watermark", Big, nullable=False),
        sa.Column("seq", Big, nullable=False),
        sa.Column("hlc", Big, nullable=False),
    )
    op.create_table(
        "practice",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
    )
    op.create_table(
        "team",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("practice_id", sa.String(64), sa.ForeignKey("practice.id"), nullable=False),
    )
    op.create_table(
        "worker",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("practice_id", sa.String(64), sa.ForeignKey("practice.id"), nullable=False),
        sa.Column("team_id", sa.String(64), sa.ForeignKey("team.id"), nullable=True),
        sa.Column("created_at", Big, nullable=False),
    )
    op.create_table(
        "assignment",
        sa.Column("person_id", sa.String(64), primary_key=True),
        sa.Column("practice_id", sa.String(64), nullable=False),
        sa.Column("worker_id", sa.String(64), nullable=True),
        sa.Column("team_id", sa.String(64), nullable=True),
        sa.Column("seq", Big, nullable=False),
    )
    op.create_index("ix_assignment_worker_id", "assignment", ["worker_id"])
    op.create_index("ix_assignment_team_id", "assignment", ["team_id"])
    op.create_table(
        "assignment_log",
        sa.Column("seq", Big, primary_key=True, autoincrement=False),
        sa.Column("person_id", sa.String(64), nullable=False),
        sa.Column("practice_id", sa.String(64), nullable=False),
        sa.Column("old_worker_id", sa.String(64), nullable=True),
        sa.Column("old_team_id", sa.String(64), nullable=True),
    )
    op.create_table(
        "device",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("worker_id", sa.String(64), sa.ForeignKey("worker.id"), nullable=False),
        sa.Column("practice_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("enrolled_at", Big, nullable=False),
        sa.Column("revoked_at", Big, nullable=True),
        sa.Column("last_acked_mutation_id", Big, nullable=False),
        sa.Column("last_pull_seq", Big, nullable=False),
        sa.Column("last_seen", Big, nullable=True),
        sa.Column("retired_at", Big, nullable=True),
        sa.Column("pending_reported", Big, nullable=True),
        sa.Column("pending_reported_at", Big, nullable=True),
    )
    op.create_table(
        "enrol_code",
        sa.Column("code_sha256", sa.String(64), primary_key=True),
        sa.Column("worker_id", sa.String(64), sa.ForeignKey("worker.id"), nullable=False),
        sa.Column("expires_at", Big, nullable=False),
        sa.Column("used_at", Big, nullable=True),
        sa.Column("device_id", sa.String(64), nullable=True),
    )
    op.create_table(
        "record",
        sa.Column("tbl", sa.String(64), primary_key=True),
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("practice_id", sa.String(64), nullable=False),
        sa.Column("person_id", sa.String(64), nullable=True),
        sa.Column("values", sa.Text, nullable=False),
        sa.Column("meta", sa.Text, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("seq", Big, nullable=False),
        sa.Column("lookup", sa.String(64), nullable=True),
    )
    op.create_index("ix_record_person_id", "record", ["person_id"])
    op.create_index("ix_record_lookup", "record", ["practice_id", "tbl", "lookup"])
    op.create_index("ix_record_tbl_person", "record", ["tbl", "person_id", "id"])
    op.create_table(
        "change_log",
        sa.Column("seq", Big, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("tbl", sa.String(64), nullable=False),
        sa.Column("row_id", sa.String(64), nullable=False),
        sa.Column("person_id", sa.String(64), nullable=True),
        sa.Column("practice_id", sa.String(64), nullable=False),
        sa.Column("origin_device", sa.String(64), nullable=False),
        sa.Column("origin_mutation_id", Big, nullable=True),
        sa.Column("at", Big, nullable=False),
        sa.UniqueConstraint("kind", "tbl", "row_id", name="uq_change_log_row"),
    )
    op.create_table(
        "applied_mutation",
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("mutation_id", Big, primary_key=True, autoincrement=False),
        sa.Column("payload_sha256", sa.String(64), nullable=False),
        sa.Column("result", sa.Text, nullable=False),
        sa.Column("applied_at", Big, nullable=False),
    )
    op.create_table(
        "conflict",
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
    )
    op.create_index("ix_conflict_row", "conflict", ["tbl", "row_id", "status"])
    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("mutation_id", Big, nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("at", Big, nullable=False),
    )
    op.create_table(
        "deleted_id",
        sa.Column("tbl", sa.String(64), primary_key=True),
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("seq", Big, nullable=False),
    )


def downgrade() -> None:
    for name in (
        "deleted_id",
        "quarantine",
        "conflict",
        "applied_mutation",
        "change_log",
        "record",
        "enrol_code",
        "device",
        "assignment_log",
        "assignment",
        "worker",
        "team",
        "practice",
        "server_meta",
    ):
        op.drop_table(name)
