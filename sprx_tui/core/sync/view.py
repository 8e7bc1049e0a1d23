"""What the Sync screen (F6) lists, read from the vault: `load_sync_view`, and the words it uses.

No textual here: the screen (sprx_tui/screens/sync.py) calls `load_sync_view(store)` from a thread
worker; it reads everything in one short read under ``store.lock``. The labels turn table, field and
reason codes into plain words, and times are shown in UK time.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy import func
from sqlmodel import Session, col, select

from sprx_tui.core.models import SYNCED_MODELS, Person, SyncOutbox
from sprx_tui.core.store import CaseStore
from sprx_tui.core.sync.run import SyncStatus, open_conflicts, rejected_changes, sync_status
from sprx_tui.core.sync.state import HELD_EVENT_SQL
from sync import hlc as hlc_mod
from sync.merge import DELETED, SERVER_DEVICE

try:
    LONDON: dt.tzinfo = ZoneInfo("Europe/London")
except ZoneInfoNotFoundError:  # pragma: no cover - no tz database
    LONDON = dt.UTC

ENROL_COMMAND = "sprx enrol --server URL --code CODE"

PHASE_LABELS = {"push": "Sending changes", "pull": "Receiving updates", "snapshot": "Receiving the caseload"}

TABLE_LABELS = {
    "person": "Person details",
    "referral": "Referral",
    "contact": "Contact",
    "contact_amendment": "Contact amendment",
    "safety_flag_change": "Safety flag change",
    "follow_up": "Follow-up",
    "what_matters": "What matters",
    "goal": "Goal",
    "plan_action": "Plan action",
    "onward_referral": "Onward referral",
    "need": "Need",
    "outcome_response": "Outcome measure",
    "audit_event": "Activity log",
    "directory_suggestion": "Directory suggestion",
    "community_service": "Directory entry",
}
OP_LABELS = {"insert": "new", "patch": "changed", "delete": "deleted", "resolve": "conflict resolved"}
FIELD_LABELS = {
    ("person", "communication_needs"): "Communication needs",
    ("person", "safety_notes"): "Safety notes",
    ("person", "nhs_number"): "NHS number",
    ("what_matters", "text"): "What matters",
    ("goal", "text"): "Goal",
    ("goal", "progress_notes"): "Goal progress notes",
    ("plan_action", "what"): "Plan action",
    ("onward_referral", "notes"): "Onward referral notes",
    ("need", "description"): "Need",
}
KIND_LABELS = {
    "concurrent_edit": "edited on two laptops",
    "delete_vs_edit": "deleted on one laptop, edited on another",
    "duplicate_person": "two records, one NHS number",
}
REASONS = {
    "out_of_scope": "This person is not assigned to you or your team any more.",
    "clock_ahead": "This laptop's clock was ahead of the practice server's.",
    "deleted": "The record had already been deleted.",
    "id_collision": "Another record already uses the same identifier.",
    "immutable_field": "That part of the record cannot be changed once saved.",
    "unknown_field": "The server does not know that field; update sprx.",
    "unknown_table": "The server does not know this kind of record; update sprx.",
    "not_found": "The record was not found on the practice server.",
    "not_deletable": "This kind of record cannot be deleted.",
    "push_only": "This kind of record can only be sent, not changed.",
    "read_only": "Only the practice can change this record.",
    "person_mismatch": "The change named a different person from its record.",
    "missing_person": "The person this belongs to is not on the practice server.",
    "conflict_closed": "Someone had already resolved this conflict.",
    "invalid": "The practice server could not accept the change as it was.",
    "invalid_value": "A value holds characters that cannot be stored or shown safely, or is too long.",
}


def table_label(tbl: str) -> str:
    return TABLE_LABELS.get(tbl, tbl.replace("_", " ").capitalize())


def field_label(tbl: str, field_name: str) -> str:
    if field_name == DELETED:
        return table_label(tbl)
    return FIELD_LABELS.get((tbl, field_name), f"{table_label(tbl)}: {field_name.replace('_', ' ')}")


def reason_sentence(code: str, detail: str = "") -> str:
    """The server's own sentence when it sent one, otherwise ours for the reason code."""
    detail = (detail or "").strip()
    if detail:
        return detail
    return REASONS.get(code, "The practice server refused this change.")


def local_time(moment: dt.datetime | None) -> dt.datetime | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(LONDON)


def when_text(moment: dt.datetime | None, today: dt.date | None = None) -> str:
    """'10:30' today, '23 Nov 10:30' this year, '23 Nov 2025' otherwise (UK time)."""
    local = local_time(moment)
    if local is None:
        return ""
    if today is not None and local.date() == today:
        return local.strftime("%H:%M")
    if today is not None and local.year != today.year:
        return local.strftime("%d %b %Y")
    return local.strftime("%d %b %H:%M")


def hlc_time(stamp: int | None) -> dt.datetime | None:
    if not stamp:
        return None
    try:
        return dt.datetime.fromtimestamp(hlc_mod.physical_ms(int(stamp)) / 1000, tz=dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None


def short_device(device_id: str) -> str:
    return f"…{device_id[-8:]}" if len(device_id) > 8 else device_id


@dataclass(frozen=True)
class PendingGroup:
    what: str
    change: str
    count: int
    latest: dt.datetime | None


@dataclass(frozen=True)
class RejectedRow:
    mutation_id: int
    what: str
    change: str
    person: str
    reason: str
    when: dt.datetime | None


@dataclass(frozen=True)
class ConflictVersion:
    value: Any
    text: str
    author: str
    device: str
    when: dt.datetime | None
    shown: bool
    mine: bool


@dataclass(frozen=True)
class ConflictView:
    id: str
    kind: str
    tbl: str
    field: str
    what: str
    person_id: str | None
    person: str
    versions: tuple[ConflictVersion, ...]
    context: str = ""
    """For delete-versus-edit: what the record says now; for a duplicate: a note."""

    @property
    def mergeable(self) -> bool:
        return self.kind == "concurrent_edit"

    @property
    def since(self) -> dt.datetime | None:
        times = [v.when for v in self.versions if v.when is not None]
        return max(times) if times else None


@dataclass
class SyncView:
    status: SyncStatus
    pending_total: int = 0
    pending_groups: list[PendingGroup] = field(default_factory=list)
    conflicts: list[ConflictView] = field(default_factory=list)
    rejected: list[RejectedRow] = field(default_factory=list)
    rejected_total: int = 0


def _names(s: Session, person_ids: set[str]) -> dict[str, str]:
    ids = [p for p in person_ids if p]
    if not ids:
        return {}
    rows = s.exec(select(Person).where(col(Person.id).in_(ids))).all()
    return {p.id: p.display_name for p in rows}


def _row_text(s: Session, tbl: str, row_id: str) -> str:
    """A one-line reminder of the record a delete-versus-edit conflict is about (the worker's own words)."""
    model = SYNCED_MODELS.get(tbl)
    row = s.get(model, row_id) if model is not None else None
    if row is None:
        return ""
    for name in ("text", "what", "description", "notes"):
        value = getattr(row, name, None)
        if isinstance(value, str) and value.strip():
            return value
    return ""


def _version(
    value: dict[str, Any], index: int, shown_idx: int, kind: str, me: str, my_user: str, names: dict[str, str]
) -> ConflictVersion:
    dev = str(value.get("dev") or "")
    raw = value.get("v")
    mine = dev == me
    if mine:
        author, device = f"you ({my_user})" if my_user else "you", "this laptop"
    elif dev == SERVER_DEVICE:
        author, device = "the practice server", "practice server"
    else:
        # Conflict values carry the device only; the server does not say which worker used it.
        author, device = "someone on another laptop", f"another laptop ({short_device(dev)})"
    if kind == "delete_vs_edit":
        text = "Delete this record" if raw is True else "Keep this record (with its edits)"
    elif kind == "duplicate_person":
        text = names.get(str(raw), "a person not on this laptop")
    else:
        text = "" if raw is None else str(raw)
    return ConflictVersion(raw, text, author, device, hlc_time(value.get("hlc")), index == shown_idx, mine)


def load_sync_view(store: CaseStore, *, pending_rows: int = 50, rejected_rows: int = 100) -> SyncView:
    """Everything the Sync screen lists; one read under ``store.lock`` (call from a worker thread)."""
    with store.lock:
        status = sync_status(store)
        conflicts = open_conflicts(store)
        rejected = rejected_changes(store)
        me = store.actor.device_id
        my_user = status.user_id or ""
        with Session(store.engine) as s:
            groups = s.exec(
                select(SyncOutbox.tbl, SyncOutbox.op, func.count(), func.max(SyncOutbox.created_at))
                .where(SyncOutbox.status == "pending")
                .where(sa.text(f"NOT {HELD_EVENT_SQL}"))  # the syncs' own audit events: not changes waiting
                .group_by(SyncOutbox.tbl, SyncOutbox.op)
            ).all()
            people: set[str] = {c.person_id or "" for c in conflicts} | {r.person_id or "" for r in rejected}
            for c in conflicts:
                if c.kind == "duplicate_person":
                    people |= {str(v.get("v") or "") for v in c.values_json or []}
            names = _names(s, people)
            contexts = {c.id: _row_text(s, c.tbl, c.row_id) for c in conflicts if c.kind == "delete_vs_edit"}
    pending_groups = sorted(
        (PendingGroup(table_label(t), OP_LABELS.get(op, op), int(n), latest) for t, op, n, latest in groups),
        key=lambda g: (-(g.latest.timestamp() if g.latest else 0), g.what, g.change),
    )
    views = []
    for c in conflicts:
        values = list(c.values_json or [])
        versions = tuple(_version(v, i, c.shown_idx, c.kind, me, my_user, names) for i, v in enumerate(values))
        context = contexts.get(c.id, "")
        if c.kind == "duplicate_person":
            context = (
                "Two people were added with the same NHS number. Choosing one closes this flag on every laptop; "
                "the records are not merged automatically."
            )
        views.append(
            ConflictView(
                c.id,
                c.kind,
                c.tbl,
                c.field,
                field_label(c.tbl, c.field),
                c.person_id,
                names.get(c.person_id or "", ""),
                versions,
                context,
            )
        )
    rows = [
        RejectedRow(
            r.mutation_id,
            table_label(r.tbl),
            OP_LABELS.get(str((r.payload or {}).get("op") or ""), "change"),
            names.get(r.person_id or "", ""),
            reason_sentence(r.reason_code, r.detail),
            r.rejected_at,
        )
        for r in rejected[:rejected_rows]
    ]
    return SyncView(
        status=status,
        pending_total=status.pending,
        pending_groups=pending_groups[:pending_rows],
        conflicts=views,
        rejected=rows,
        rejected_total=len(rejected),
    )


__all__ = [
    "ENROL_COMMAND",
    "LONDON",
    "PHASE_LABELS",
    "ConflictVersion",
    "ConflictView",
    "PendingGroup",
    "RejectedRow",
    "SyncView",
    "field_label",
    "hlc_time",
    "load_sync_view",
    "local_time",
    "reason_sentence",
    "short_device",
    "table_label",
    "when_text",
]
