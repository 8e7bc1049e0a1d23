"""Today's new referrals in triage order (urgent, soon, routine) from one index

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from alembic import op
from sqlalchemy import text

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Today lists new referrals urgent first (queries.URGENCY_RANK). Sorting by that expression with
# ix_referral_new (status, deleted, received_on) read and sorted every waiting referral with its
# person's row: 32-42 ms on the 10,000-person demo vault (1,273 waiting), inside the unlock. With the
# rank in the index, in the same words as the query, the first 51 entries are the first 51 rows.
# It also answers the count of waiting referrals (status, deleted), so ix_referral_new goes.
URGENCY_RANK = "CASE urgency WHEN 'urgent' THEN 0 WHEN 'soon' THEN 1 ELSE 2 END"


def upgrade() -> None:
    op.create_index("ix_referral_triage", "referral", ["status", "deleted", text(URGENCY_RANK), "received_on"])
    op.drop_index("ix_referral_new", "referral")


def downgrade() -> None:
    op.create_index("ix_referral_new", "referral", ["status", "deleted", "received_on"])
    op.drop_index("ix_referral_triage", "referral")
