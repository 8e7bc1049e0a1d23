"""episodes end with a discharge; onward referrals carry need, note, consent and withdrawal

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from alembic import op  # noqa: F401

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# Placeholder reserved so that work in parallel keeps one linear chain of revisions; it is filled
# by the change that needs it (and stays a no-op if that change needs no schema).


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
