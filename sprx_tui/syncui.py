"""Sync inside the app: a background controller and the view data the Sync screen (F6) shows.

`SyncController(app)` is started by the App when the vault unlocks and stopped when it locks. It runs
`core.syncstore.sync_now` in a thread worker (never on the UI thread), reports the state to the status bar
with `SyncStatusChanged`, and streams progress to any attached view (the Sync screen). With the
auto-sync setting on and the laptop enrolled it syncs at unlock, then on a timer: every minute while the
server answers, and after a failure with exponential back-off (5 s doubling to 5 minutes, ±20 % jitter).
The schedule is driven by a one-second tick that compares a monotonic clock with the next due time, so
new writes never trigger a retry storm and a test can move the clock instead of sleeping. Only one sync
runs at a time. A revoked laptop is crypto-erased by syncstore; the controller then locks the app to the
gate and says so in a dialog that stays until it is read.

`load_sync_view(store)` reads everything the Sync screen lists in one short read under ``store.lock``.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func
from sqlmodel import Session, col, select
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import Button, Static

from sprx_tui.core import syncstore
from sprx_tui.core.models import SYNCED_MODELS, Person, SyncOutbox
from sprx_tui.inert import inert
from sprx_tui.messages import SyncStatusChanged
from sync import hlc as hlc_mod
from sync.client import capped_doubling
from sync.merge import DELETED, SERVER_DEVICE

if TYPE_CHECKING:
    from sprx_tui.core.store import CaseStore

try:
    LONDON: dt.tzinfo = ZoneInfo("Europe/London")
except ZoneInfoNotFoundError:  # pragma: no cover - no tz database
    LONDON = dt.UTC

# -- the schedule ---------------------------------------------------------------------------------

TICK_SECONDS = 1.0
"""How often the controller looks at the clock (the schedule's resolution)."""
HEALTHY_SECONDS = 60.0
"""Between automatic syncs while the server answers."""
BACKOFF_START = 5.0
BACKOFF_CAP = 300.0
JITTER = 0.2
"""± this fraction on every wait, so laptops that lost the server together do not return together."""
PROGRESS_EVERY = 0.15
"""At most this often (seconds) a progress report goes to the screen and status bar."""

ENROL_COMMAND = "sprx enrol --server URL --code CODE"

PHASE_LABELS = {"push": "Sending changes", "pull": "Receiving updates", "snapshot": "Receiving the caseload"}


class Backoff:
    """Exponential back-off with ±jitter: 5 s, 10 s, 20 s … up to 5 minutes, each ±20 %."""

    def __init__(
        self,
        start: float = BACKOFF_START,
        cap: float = BACKOFF_CAP,
        jitter: float = JITTER,
        rng: random.Random | None = None,
    ) -> None:
        self.start = start
        self.cap = cap
        self.jitter = jitter
        self.rng = rng or random.Random()  # noqa: S311 - timing jitter, not security
        self.failures = 0

    def ceiling(self) -> float:
        """The un-jittered wait after the current number of failures."""
        return capped_doubling(self.start, self.cap, self.failures)

    def failed(self) -> float:
        """Count one more failure; the jittered wait before the next try."""
        self.failures += 1
        return self.jittered(self.ceiling())

    def jittered(self, seconds: float) -> float:
        return seconds * (1.0 + self.rng.uniform(-self.jitter, self.jitter))

    def reset(self) -> None:
        self.failures = 0


# -- messages to the Sync screen (the App handles SyncStatusChanged) -----------------------------------


@dataclass
class SyncStarted(Message):
    """A sync began (manual or automatic)."""

    manual: bool


@dataclass
class SyncProgress(Message):
    """phase is push / pull / snapshot; total is None while the size is unknown."""

    phase: str
    done: int
    total: int | None


@dataclass
class SyncFinished(Message):
    outcome: SyncOutcome


@dataclass(frozen=True)
class SyncOutcome:
    """One finished sync, as the app shows it (no personal data)."""

    status: str
    """syncstore status: synced | conflicts | offline | revoked | upgrade | failed | busy | not_enrolled"""
    message: str
    state: str
    """Status-bar state (sprx_tui.messages.SYNC_STATES)."""
    pending: int = 0
    conflicts: int = 0
    rejected: int = 0
    last_success: str | None = None
    manual: bool = False

    @property
    def ok(self) -> bool:
        return self.status in ("synced", "conflicts")


STATE_FOR_STATUS = {
    "synced": "synced",
    "conflicts": "synced",
    "offline": "offline",
    "upgrade": "failed",
    "failed": "failed",
    "not_enrolled": "not_enrolled",
}
SHORT_DETAIL = {"upgrade": "update needed (F6)", "failed": "details on F6"}
UNEXPECTED = "Sync stopped because of an unexpected problem; your changes are kept and will be sent later."


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


# -- the controller -----------------------------------------------------------------------------------


class SyncController:
    """Background and on-demand sync for one unlocked store; `stop()` at lock makes it forget that store."""

    def __init__(
        self,
        app: Any,
        *,
        now: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        healthy_seconds: float = HEALTHY_SECONDS,
        backoff: Backoff | None = None,
    ) -> None:
        self.app = app
        self.now = now
        self.rng = rng or random.Random()  # noqa: S311 - timing jitter, not security
        self.healthy_seconds = healthy_seconds
        self.backoff = backoff or Backoff(rng=self.rng)
        self.state = ""
        self.detail = ""
        self.enrolled: bool | None = None
        self.running = False
        self.next_at: float | None = None
        self.delays: list[float] = []
        """The waits chosen after each sync, newest last (the last 20)."""
        self.last: SyncOutcome | None = None
        self.progress: tuple[str, int, int | None] | None = None
        self.runs = 0
        self._store: CaseStore | None = None
        self._timer: Timer | None = None
        self._generation = 0
        self._views: list[Any] = []
        self._progress_at = 0.0
        self._before = ("", "")
        self._guard = threading.Lock()

    # -- life cycle --

    @property
    def auto(self) -> bool:
        return bool(getattr(self.app.config, "auto_sync", True))

    @property
    def active(self) -> bool:
        return self._store is not None and self.app.store is self._store

    def start(self) -> None:
        store = self.app.store
        if store is None:
            return
        self._generation += 1
        self._store = store
        self._timer = self.app.set_interval(TICK_SECONDS, self.tick, name="sync-schedule")
        self.app.run_worker(
            partial(self._read_status, store, self._generation),
            name="sync-status",
            group="sync",
            thread=True,
            exit_on_error=False,
        )

    def stop(self) -> None:
        """Cancel the schedule and forget the store (it is being closed); a sync in flight is ignored."""
        with self._guard:
            self._generation += 1
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self._store = None
        self._views.clear()
        self.running = False
        self.next_at = None
        self.progress = None

    def config_changed(self) -> None:
        """The auto-sync setting may have changed: start or stop the schedule."""
        if not self.auto:
            self.next_at = None
        elif self.enrolled and not self.running and self.next_at is None:
            self.next_at = self.now()

    # -- views (the Sync screen) --

    def attach(self, view: Any) -> None:
        if view not in self._views:
            self._views.append(view)

    def detach(self, view: Any) -> None:
        if view in self._views:
            self._views.remove(view)

    def _tell_views(self, message_factory: Callable[[], Message]) -> None:
        for view in list(self._views):
            view.post_message(message_factory())

    # -- the schedule --

    def seconds_to_next(self) -> float | None:
        if self.next_at is None or self.running:
            return None
        return max(0.0, self.next_at - self.now())

    def tick(self) -> None:
        """Called every second by the timer: correct the status bar, and sync when the time has come."""
        if not self.active:
            return
        self._keep_status_bar()
        if self.running or not self.auto or not self.enrolled:
            return
        if self.next_at is None:
            self.next_at = self.now()
        if self.now() >= self.next_at:
            self._launch(manual=False)

    def sync_now(self) -> bool:
        """Start a sync at once (the Sync screen's key); False if one is already running or the app is locked."""
        if not self.active or self.running:
            return False
        self._launch(manual=True)
        return True

    def _schedule(self, outcome: SyncOutcome) -> None:
        if outcome.status == "not_enrolled":
            self.next_at = None
            return
        if outcome.status == "busy":
            # A sync from an earlier unlock (or `sprx sync`) still holds the vault: look again shortly.
            delay = self.backoff.jittered(BACKOFF_START)
        elif outcome.ok:
            self.backoff.reset()
            delay = self.backoff.jittered(self.healthy_seconds)
        else:
            delay = self.backoff.failed()
        self.delays = [*self.delays[-19:], delay]
        self.next_at = self.now() + delay if self.auto else None

    # -- running a sync --

    def _launch(self, *, manual: bool) -> None:
        store = self._store
        if store is None:
            return
        self.running = True
        self.next_at = None
        self.progress = None
        self.runs += 1
        self._before = (self.state, self.detail)
        self._set_state("syncing", "")
        self._tell_views(lambda: SyncStarted(manual))
        self.app.run_worker(
            partial(self._work, store, self._generation, manual),
            name="sync",
            group="sync",
            thread=True,
            exit_on_error=False,
        )

    def _current(self, generation: int) -> bool:
        with self._guard:
            return generation == self._generation

    def _read_status(self, store: CaseStore, generation: int) -> None:
        """Worker: enrolment and counts at unlock; the first automatic sync follows at once."""
        try:
            status = syncstore.sync_status(store)
        except Exception:  # noqa: BLE001 - locked or closed under us: nothing to report
            return
        if self._current(generation):
            self.app.call_later(self._status_read, generation, status)

    def _status_read(self, generation: int, status: syncstore.SyncStatus) -> None:
        if not self._current(generation) or not self.active:
            return
        # A token without a server address cannot sync (a damaged enrolment): no automatic tries.
        self.enrolled = status.enrolled and bool(status.server_url)
        if not status.enrolled:
            state = "not_enrolled"
        elif status.last_status in ("synced", "conflicts"):
            state = "synced"
        elif status.last_status in ("upgrade", "failed"):
            state = "failed"
        else:
            state = "offline"
        if not self.running:
            self.state = state
            self.detail = SHORT_DETAIL.get(status.last_status or "", "") if state == "failed" else ""
            self._post_status(status.pending, status.conflicts, _iso(status.last_successful_sync_at))
            if self.enrolled and self.auto:
                self._launch(manual=False)

    def _progress(self, generation: int, phase: str, done: int, total: int | None) -> None:
        """Called on the sync thread; throttled, never blocks it."""
        if not self._current(generation):
            return
        first = self.progress is None or self.progress[0] != phase
        self.progress = (phase, done, total)
        moment = time.monotonic()
        if not first and moment - self._progress_at < PROGRESS_EVERY and not (total is not None and done >= total):
            return
        self._progress_at = moment
        self._tell_views(lambda: SyncProgress(phase, done, total))
        label = PHASE_LABELS.get(phase, phase).lower()
        if total:
            detail = f"{label} {done} of {total}"
        else:
            detail = f"{label}, {done} so far" if done else label
        summary = self.app.sync_summary
        self.app.post_message(
            SyncStatusChanged("syncing", summary.pending, summary.conflicts, summary.last_success, detail)
        )

    def _work(self, store: CaseStore, generation: int, manual: bool) -> None:
        """Worker: one sync, then the counts for the status bar; the result goes back to the UI thread."""
        try:
            result = syncstore.sync_now(store, progress=partial(self._progress, generation))
        except Exception:  # noqa: BLE001 - the vault was locked mid-sync, or a bug: a sentence, never a traceback
            if self._current(generation):
                outcome = SyncOutcome("failed", UNEXPECTED, "failed", manual=manual)
                self.app.call_later(self._finished, generation, outcome)
            return
        if result.status in ("revoked", "retired"):
            # The vault is gone whatever happened meanwhile (even a lock): always say so.
            self.app.call_later(self._revoked, result.message, self._current(generation))
            return
        else:
            try:
                status = syncstore.sync_status(store)
                pending, conflicts, rejected = status.pending, status.conflicts, status.rejected
                last_success = _iso(status.last_successful_sync_at)
            except Exception:  # noqa: BLE001 - locked just after the sync: the generation check drops it
                pending, conflicts, rejected, last_success = result.pending, result.conflicts, 0, None
            outcome = SyncOutcome(
                result.status,
                result.message,
                STATE_FOR_STATUS.get(result.status, "failed"),
                pending,
                conflicts,
                rejected,
                last_success,
                manual,
            )
        if self._current(generation):
            self.app.call_later(self._finished, generation, outcome)

    def _finished(self, generation: int, outcome: SyncOutcome) -> None:
        if not self._current(generation):
            return
        self.running = False
        self.progress = None
        before = self.app.sync_summary.conflicts
        self.last = outcome
        if outcome.status == "busy":
            self._set_state(*self._before)
        else:
            self.enrolled = outcome.status != "not_enrolled"
            self.state = outcome.state
            self.detail = SHORT_DETAIL.get(outcome.status, "")
            self._post_status(outcome.pending, outcome.conflicts, outcome.last_success)
        self._schedule(outcome)
        self._tell_views(lambda: SyncFinished(outcome))
        if outcome.ok and not outcome.manual and outcome.conflicts > before:
            self.app.notify(
                "A change made on another laptop needs you to choose which version to keep (F6).",
                severity="warning",
                timeout=10,
            )

    def _revoked(self, sentence: str, current: bool) -> None:
        """The practice withdrew this laptop: syncstore has crypto-erased the vault; lock and say so plainly."""
        app = self.app
        self.running = False
        if current and app.store is not None:
            app.lock_now("revoked")
        app.push_screen(RevokedScreen(sentence))

    # -- the status bar --

    def _set_state(self, state: str, detail: str) -> None:
        self.state, self.detail = state, detail
        summary = self.app.sync_summary
        self._post_status(summary.pending, summary.conflicts, summary.last_success)

    def _post_status(self, pending: int, conflicts: int, last_success: str | None) -> None:
        self.app.post_message(SyncStatusChanged(self.state, pending, conflicts, last_success, self.detail))

    def _keep_status_bar(self) -> None:
        """The App's 30-second count refresh keeps whatever state it saw; put ours back if it was stale."""
        summary = self.app.sync_summary
        if not self.state or self.running:
            return
        if summary.state == "syncing" or (summary.state == self.state and summary.detail != self.detail):
            self._post_status(summary.pending, summary.conflicts, summary.last_success)
        elif self.state == "not_enrolled" and summary.state == "offline":
            # Enrolled from the command line while the app was open: start syncing.
            self.enrolled = True
            self.state = "offline"
            self.next_at = self.now() if self.auto else None


class RevokedScreen(ModalScreen[None]):
    """Shown over the gate after a revoked laptop erased its copy; stays until the person has read it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter,escape", "close", "Close", id="revoked.close"),
    ]
    DEFAULT_CSS = """
    RevokedScreen { align: center middle; }
    RevokedScreen > Vertical {
        width: 64; max-width: 95%; height: auto;
        border: thick $error; background: $surface; padding: 1 2;
    }
    RevokedScreen #revoked-title { text-style: bold; color: $error; margin-bottom: 1; }
    RevokedScreen #revoked-text { margin-bottom: 1; }
    """

    def __init__(self, sentence: str) -> None:
        super().__init__()
        self.sentence = sentence

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("This laptop can no longer sync", id="revoked-title")
            yield Static(inert(self.sentence, multiline=True), id="revoked-text")
            yield Static(
                "The encrypted records and their key were deleted from this laptop. If you think this is a "
                "mistake, ask your practice admin for a new enrolment code.",
                classes="hint",
            )
            yield Button("I understand", id="revoked-ok", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#revoked-ok", Button).focus()

    def on_button_pressed(self, _event: Button.Pressed) -> None:
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)


# -- what the Sync screen lists -------------------------------------------------------------------------

TABLE_LABELS = {
    "person": "Person details",
    "referral": "Referral",
    "contact": "Contact",
    "contact_amendment": "Contact amendment",
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
    status: syncstore.SyncStatus
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
        status = syncstore.sync_status(store)
        conflicts = syncstore.open_conflicts(store)
        rejected = syncstore.rejected_changes(store)
        me = store.actor.device_id
        my_user = status.user_id or ""
        with Session(store.engine) as s:
            groups = s.exec(
                select(SyncOutbox.tbl, SyncOutbox.op, func.count(), func.max(SyncOutbox.created_at))
                .where(SyncOutbox.status == "pending")
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
    "BACKOFF_CAP",
    "BACKOFF_START",
    "ENROL_COMMAND",
    "HEALTHY_SECONDS",
    "JITTER",
    "Backoff",
    "ConflictVersion",
    "ConflictView",
    "PendingGroup",
    "RejectedRow",
    "RevokedScreen",
    "SyncController",
    "SyncFinished",
    "SyncOutcome",
    "SyncProgress",
    "SyncStarted",
    "SyncView",
    "load_sync_view",
]
