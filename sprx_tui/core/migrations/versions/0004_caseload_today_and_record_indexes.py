"""indexes for the caseload (filter, count, every sort), Today, a person's referrals and saving a contact

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from alembic import op
from sqlalchemy import text

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Measured on the 10,000-person demo vault (memory security on; BENCHMARKS.md "Vault and core").
# Person, referral and follow-up rows each carry ~1 KB of per-field sync metadata, so every row a
# query touches costs a page decrypt; these indexes answer the hot queries from index entries.
#
# Caseload: the filter matches `search_text` and counts the matches. Through 0003 both read whole
# person rows and every sort but one sorted in a temporary b-tree (filter p95 1.2 s). Each index
# below holds a sort key first, then everything the filter and the count test (deleted, status,
# search_text): a page is the first N matching entries, the count never reads a row. The keys are
# the expressions `queries.SORT_SQL` orders by, written identically so that SQLite can use them.
NEXT_FOLLOW_UP = "coalesce(next_follow_up_on, '9999-12-31')"
LAST_CONTACT = "coalesce(last_contact_on, '0000-01-01')"
NAME = ["family_name", "given_name", "id"]
INDEXES: list[tuple[str, str, list[str]]] = [
    ("ix_person_caseload_name", "person", [*NAME, "deleted", "status", "search_text"]),
    ("ix_person_caseload_status", "person", ["status", *NAME, "deleted", "search_text"]),
    ("ix_person_caseload_next", "person", [NEXT_FOLLOW_UP, *NAME, "deleted", "status", "search_text"]),
    ("ix_person_caseload_last", "person", [LAST_CONTACT, *NAME, "deleted", "status", "search_text"]),
    # Saving a contact looks up the person's open follow-ups (to clear the due ones and find the next).
    # SQLite used ix_follow_up_status_due and walked every open follow-up of the practice, so each
    # save, and each demo person, got slower as the caseload grew (`sprx demo --people 10000`: 66 min).
    # Three equality columns, so the planner prefers it to ix_follow_up_due (status, deleted) below.
    ("ix_follow_up_person_open", "follow_up", ["person_id", "status", "deleted", "due_on"]),
    # A person's referrals: SQLite chose ix_referral_report (deleted = 0) and read all 10,000 (100 ms
    # per person opened; 0.4 ms with this index).
    ("ix_referral_person", "referral", ["person_id", "deleted", "received_on"]),
    # Today's new referrals, in date order (40 ms -> 4 ms).
    ("ix_referral_new", "referral", ["status", "deleted", "received_on"]),
    # Today's due and overdue follow-ups with the names they are listed under, from two indexes and
    # no rows (due today 53 ms -> 8 ms). Replaces ix_follow_up_status_due.
    ("ix_follow_up_due", "follow_up", ["status", "deleted", "due_on", "person_id", "reason", "id"]),
    ("ix_person_names", "person", ["id", "deleted", "family_name", "given_name", "preferred_name", "safety_flags"]),
]
# Prefixes of the indexes above; dropping them saves a write per change.
SUPERSEDED: list[tuple[str, str, list[str]]] = [
    ("ix_person_family_name", "person", ["family_name", "given_name"]),
    ("ix_person_next_follow_up", "person", ["next_follow_up_on"]),
    ("ix_person_last_contact", "person", ["last_contact_on"]),
    ("ix_follow_up_status_due", "follow_up", ["status", "due_on"]),
]


def _columns(columns: list[str]) -> list:
    return [text(c) if "(" in c else c for c in columns]


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, _columns(columns))
    for name, table, _cols in SUPERSEDED:
        op.drop_index(name, table)


def downgrade() -> None:
    for name, table, columns in reversed(SUPERSEDED):
        op.create_index(name, table, columns)
    for name, table, _cols in reversed(INDEXES):
        op.drop_index(name, table)
