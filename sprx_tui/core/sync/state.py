"""The vault's own record of sync: the ``sync_state`` keys, and the small SQL helpers every sync step shares.

Everything here runs inside a caller's transaction (a ``Session``), except `read_config`, which takes the
store's lock for one short read. Table names passed to `run_sql` come from SYNCED_MODELS only, never from input.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from sprx_tui.core.models import HlcState
from sprx_tui.core.store import DEMO_MARK, CaseStore
from sync.client import HELD_ACTIONS

# sync_state keys (all inside the encrypted vault)
K_URL = "server_url"
K_TOKEN = "device_token"  # noqa: S105 - a key name, not a secret
K_DEVICE = "device_id"
K_USER = "user_id"
K_PRACTICE = "practice_id"
K_PIN = "server_cert_sha256"
K_CERT = "server_cert_pem"
K_EPOCH = "server_epoch"
K_CURSOR = "pull_cursor"
K_PHASE = "sync_phase"
K_AFTER = "snapshot_after"
K_STARTED = "snapshot_started"
K_BASE = "mutation_base"
K_OFFSET = "server_clock_offset_ms"
K_PURGE = "purge_pending"
K_FLAGS = "safety_flags_to_settle"  # people whose flag history arrived in a pull not yet finished
K_ENROLLED = "enrolled_at"
K_LAST_AT = "last_sync_at"
K_LAST_STATUS = "last_sync_status"
K_LAST_MESSAGE = "last_sync_message"
K_LAST_OK = "last_successful_sync_at"
K_DEMO = DEMO_MARK  # written by core.demo.build_demo

CHUNK = 500
"""Ids per ``IN (...)`` list when an ORM query needs one."""


def read_state(s: Session, keys: Iterable[str]) -> dict[str, str]:
    wanted = set(keys)
    # The table is a few dozen short rows: one driver-level read beats an ORM query per call.
    return {k: v for k, v in s.connection().exec_driver_sql("SELECT key, value FROM sync_state").all() if k in wanted}


def write_state(s: Session, values: dict[str, str | None]) -> None:
    """Set (or delete, for None) sync_state keys; keys already holding that value are not written."""
    current = read_state(s, values)
    conn = s.connection()
    for key, value in values.items():
        if current.get(key) == value:
            continue
        if value is None:
            conn.exec_driver_sql("DELETE FROM sync_state WHERE key = ?", (key,))
        else:
            conn.exec_driver_sql(
                "INSERT INTO sync_state (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )


def read_config(store: CaseStore) -> dict[str, str]:
    """The enrolment: server address, token, device, user, practice, certificate pin, epoch and clock offset."""
    with store.lock, Session(store.engine) as s:
        return read_state(s, [K_URL, K_TOKEN, K_DEVICE, K_USER, K_PRACTICE, K_PIN, K_CERT, K_EPOCH, K_OFFSET])


def run_sql(s: Session, statement: str, params: tuple[Any, ...] = ()) -> Any:
    """Driver-level SQL for the per-table bulk statements: no SQLAlchemy compile on a fresh engine.

    Table names come from SYNCED_MODELS only, never from input.
    """
    return s.connection().exec_driver_sql(statement, params)


def marks(n: int) -> str:
    return ",".join("?" * n)


PENDING_COUNT_SQL = "SELECT n FROM sync_outbox_pending WHERE id = 1"
"""The outbox's pending count, kept by triggers (migration 0005) instead of counted."""

HELD_EVENT_SQL = "(tbl = 'audit_event' AND coalesce(json_extract(fields, '$.action.v') IN ({}), 0))".format(
    ",".join(f"'{a}'" for a in sorted(HELD_ACTIONS))
)
"""An outbox row that is an audit event about a sync itself (sync.client.HELD_ACTIONS): bookkeeping that waits
for the next request, left out of every count of changes waiting."""

IN_IDS = "(SELECT value FROM json_each(?))"
"""An id list of any length bound as ONE JSON text parameter: one statement, no chunks of ``?`` marks."""


def id_param(ids: Iterable[str]) -> tuple[str]:
    """The one parameter that goes with `IN_IDS`."""
    return (json.dumps(list(ids)),)


def chunks(items: list[Any], n: int = CHUNK) -> Iterator[list[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def save_hlc(s: Session, last: int) -> None:
    """Store the hybrid logical clock's newest stamp (one row, id 1)."""
    s.execute(
        sqlite_insert(HlcState.__table__)  # type: ignore[attr-defined]
        .values(id=1, last=last)
        .on_conflict_do_update(index_elements=["id"], set_={"last": last})
    )
