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
    with op.batch_alter_table("worker") as batch:
        batch.add_column(sa.Column("display_name", sa.String(200), nullable=True))
        batch.add_column(sa.Column("removed_at", Big, nullable=True))
    with op.batch_alter_table("device") as batch:
        batch.add_column(sa.Column("erase_told_at", Big, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("device") as batch:
        batch.drop_column("erase_told_at")
    with op.batch_alter_table("worker") as batch:
        batch.drop_column("removed_at")
        batch.drop_column("display_name")
