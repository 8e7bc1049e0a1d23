"""make the audit trail append-only inside SQLite and index the caseload's sort keys

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The audit trail must be append-only even against code that bypasses the service layer.
    op.execute(
        "CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit_event "
        "BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END"
    )
    op.execute(
        "CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit_event "
        "BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END"
    )
    # Caseload sorts by family name and by next follow-up; indexes keep paging instant at 10k people.
    op.create_index("ix_person_family_name", "person", ["family_name", "given_name"])
    op.create_index("ix_person_next_follow_up", "person", ["next_follow_up_on"])
    op.create_index("ix_person_last_contact", "person", ["last_contact_on"])


def downgrade() -> None:
    op.drop_index("ix_person_last_contact", "person")
    op.drop_index("ix_person_next_follow_up", "person")
    op.drop_index("ix_person_family_name", "person")
    op.execute("DROP TRIGGER IF EXISTS audit_no_delete")
    op.execute("DROP TRIGGER IF EXISTS audit_no_update")
