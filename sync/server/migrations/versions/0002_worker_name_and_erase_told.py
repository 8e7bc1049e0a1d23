"""Worker display name and removal, and when a laptop was told to erase itself (issue 11's admin commands).

Three nullable columns, so every existing row stays as it was.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("worker", sa.Column("display_name", sa.String(200), nullable=True))
    op.add_column("worker", sa.Column("removed_at", Big, nullable=True))
    op.add_column("device", sa.Column("erase_told_at", Big, nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN on both (SQLite 3.35+): a batch copy of worker would break device's foreign key.
    op.drop_column("device", "erase_told_at")
    op.drop_column("worker", "removed_at")
    op.drop_column("worker", "display_name")
