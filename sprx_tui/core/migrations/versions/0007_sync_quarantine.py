"""rows from the server that the inbound gate refused are set aside in sync_quarantine

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# A pulled row whose text cannot be stored or shown safely (a lone surrogate, an escape sequence,
# a value of the wrong type, as an older server could have kept) is not applied: where it is and
# why are kept here, never the value, and the sync goes on (sprx_rules.gate, core.sync.apply).


def upgrade() -> None:
    op.create_table(
        "sync_quarantine",
        sa.Column("tbl", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("row_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("person_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("field", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("excerpt", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("server_seq", sa.Integer(), nullable=True),
        sa.Column("set_aside_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("tbl", "row_id"),
    )
    op.create_index("ix_sync_quarantine_person_id", "sync_quarantine", ["person_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_sync_quarantine_person_id", "sync_quarantine")
    op.drop_table("sync_quarantine")
