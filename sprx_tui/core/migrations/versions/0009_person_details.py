"""a person's details, communication needs and safety flags are edited in the app

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# A person gains the Accessible Information Standard needs beside an interpreter (hearing, sight, easy
# read; the words stay in communication_needs), and every safety flag added or removed is kept with its
# reason, who and when (safety_flag_change, append-only and synced). The new person columns default to
# false, so existing rows read as before.

_NEEDS = ("hearing_need", "sight_need", "easy_read")


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    # Plain ADD COLUMN, never a batch: a batch may copy the table, and SQLite's reflection cannot carry the
    # caseload's expression indexes (migration 0004) across a copy.
    for name in _NEEDS:
        op.add_column("person", sa.Column(name, sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "safety_flag_change",
        sa.Column("id", text(length=36), nullable=False),
        sa.Column("practice_id", text(), nullable=False),
        sa.Column("person_id", text(), nullable=False),
        sa.Column("row_hlc", sa.Integer(), nullable=False),
        sa.Column("field_meta", sa.JSON(), nullable=False),
        sa.Column("server_seq", sa.Integer(), nullable=True),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("created_by", text(), nullable=False),
        sa.Column("created_on_device", text(), nullable=False),
        sa.Column("flag", text(), nullable=False),
        sa.Column("change", text(), nullable=False),
        sa.Column("reason", text(), nullable=False),
        sa.Column("author", text(), nullable=False),
        sa.Column("changed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_safety_flag_change_person_id", "safety_flag_change", ["person_id"], unique=False)
    op.create_index("ix_safety_flag_change_person", "safety_flag_change", ["person_id", "changed_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_safety_flag_change_person", "safety_flag_change")
    op.drop_index("ix_safety_flag_change_person_id", "safety_flag_change")
    op.drop_table("safety_flag_change")
    for name in reversed(_NEEDS):
        op.drop_column("person", name)  # SQLite 3.35+ drops a column in place
