"""directory services keep what HSDS 3.0 / Open Referral UK publish

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# A directory entry keeps the languages, age limits and source an HSDS 3.0 / Open Referral UK feed
# publishes, and the day a full import of its source no longer held it (withdrawn_on; it is then
# inactive, never deleted). Existing rows read as before: no languages, no age limits, the default source.

_COLUMNS = ("languages", "min_age", "max_age", "withdrawn_on", "source")


def upgrade() -> None:
    # Plain ADD COLUMN, never a batch (a batch may copy the table and lose its indexes).
    op.add_column("community_service", sa.Column("languages", sa.JSON(), nullable=False, server_default="[]"))
    op.add_column("community_service", sa.Column("min_age", sa.Integer(), nullable=True))
    op.add_column("community_service", sa.Column("max_age", sa.Integer(), nullable=True))
    op.add_column("community_service", sa.Column("withdrawn_on", sa.Date(), nullable=True))
    op.add_column(
        "community_service",
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default=""),
    )


def downgrade() -> None:
    for name in reversed(_COLUMNS):
        op.drop_column("community_service", name)  # SQLite 3.35+ drops a column in place
