"""covering indexes for the report (10k people in under a second) and for directory search

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Synced rows carry ~1 KB of sync metadata each, so a table scan of 83k contacts decrypts ~100 MB;
# these indexes let the report read a few MB instead. Measured on a 10,000-person demo vault:
# contacts 0.9 s -> 0.05 s, people by status 0.2 s -> 3 ms, paired outcome scores 0.35 s -> 0.14 s;
# whole report 5.5 s -> 0.6-0.8 s. Directory search at 5,000 services: p95 27 ms -> 14 ms.
INDEXES = [
    ("ix_person_report", "person", ["deleted", "status"]),
    ("ix_referral_report", "referral", ["deleted", "source", "status", "reasons"]),
    ("ix_contact_report", "contact", ["deleted", "entered_in_error", "person_id", "mode", "did_not_attend"]),
    (
        "ix_outcome_report",
        "outcome_response",
        ["time_point", "instrument", "person_id", "complete", "entered_in_error", "deleted", "taken_on", "id", "score"],
    ),
    (
        "ix_community_service_search",
        "community_service",
        ["active", "name", "id", "search_text", "categories", "needs", "area", "postcode"],
    ),
]


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _columns in reversed(INDEXES):
        op.drop_index(name, table)
