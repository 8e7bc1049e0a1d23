"""a person's details, communication needs and safety flags are edited in the app

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from alembic import op  # noqa: F401

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# Placeholder reserved so that work in parallel keeps one linear chain of revisions; it is filled
# by the change that needs it (and stays a no-op if that change needs no schema).


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
