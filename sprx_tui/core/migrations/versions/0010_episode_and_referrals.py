"""episodes end with a discharge; onward referrals carry need, note, consent and withdrawal

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# A referral records how its episode ended (closed_on, close_reason, close_note: the discharge) and a
# coded reason when declined at triage (decline_code, beside the free-text decline_reason). An onward
# referral names the Need row it addresses, whether the person consented, and a withdrawal with its
# reason. Every new column is nullable or has a default, so existing rows read as before.

_REFERRAL = ("decline_code", "close_reason", "close_note")


def upgrade() -> None:
    # Plain ADD COLUMN, never batch mode: recreating a table would drop ix_referral_triage, an index on
    # an expression that Alembic cannot reflect.
    text = sqlmodel.sql.sqltypes.AutoString
    for name in _REFERRAL:
        op.add_column("referral", sa.Column(name, text(), nullable=True))
    op.add_column("referral", sa.Column("closed_on", sa.Date(), nullable=True))
    op.add_column("onward_referral", sa.Column("need_id", text(), nullable=True))
    op.add_column("onward_referral", sa.Column("consent", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("onward_referral", sa.Column("withdrawn_on", sa.Date(), nullable=True))
    op.add_column("onward_referral", sa.Column("withdrawn_reason", text(), nullable=True))


def downgrade() -> None:
    # SQLite's own DROP COLUMN (3.35+), for the same reason: no table is recreated.
    for name in ("withdrawn_reason", "withdrawn_on", "consent", "need_id"):
        op.execute(f"ALTER TABLE onward_referral DROP COLUMN {name}")
    for name in ("closed_on", *reversed(_REFERRAL)):
        op.execute(f"ALTER TABLE referral DROP COLUMN {name}")
