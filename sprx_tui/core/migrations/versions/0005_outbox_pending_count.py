"""a pending-changes count kept by triggers, so the status bar never counts the outbox

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# The status bar and the Sync screen show "N changes waiting" at every unlock and every 30 s. Counting
# `sync_outbox WHERE status = 'pending'` walks every pending entry of the status index: on the 10k demo
# vault (never synced, so every demo write is pending) that was 57 ms each time, three times at each
# unlock, holding the store lock while Today's queries waited. One row kept right by the triggers
# below is read in one page. Every change to the outbox is a row insert, a status update or a delete,
# and each fires exactly one of them in the same transaction, so the count cannot drift.
TRIGGERS = {
    "sync_outbox_pending_insert": (
        "AFTER INSERT ON sync_outbox WHEN NEW.status = 'pending' "
        "BEGIN UPDATE sync_outbox_pending SET n = n + 1 WHERE id = 1; END"
    ),
    "sync_outbox_pending_delete": (
        "AFTER DELETE ON sync_outbox WHEN OLD.status = 'pending' "
        "BEGIN UPDATE sync_outbox_pending SET n = n - 1 WHERE id = 1; END"
    ),
    "sync_outbox_pending_update": (
        "AFTER UPDATE OF status ON sync_outbox WHEN (OLD.status = 'pending') != (NEW.status = 'pending') "
        "BEGIN UPDATE sync_outbox_pending SET n = n + (NEW.status = 'pending') - (OLD.status = 'pending') "
        "WHERE id = 1; END"
    ),
}


def upgrade() -> None:
    op.execute("CREATE TABLE sync_outbox_pending (id INTEGER NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (id))")
    op.execute(
        "INSERT INTO sync_outbox_pending (id, n) VALUES (1, (SELECT count(*) FROM sync_outbox WHERE status = 'pending'))"
    )
    for name, body in TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {body}")


def downgrade() -> None:
    for name in reversed(TRIGGERS):
        op.execute(f"DROP TRIGGER {name}")
    op.execute("DROP TABLE sync_outbox_pending")
