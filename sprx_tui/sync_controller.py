"""Sync inside the app: the background controller that runs `sprx_tui.core.sync.sync_now` for the unlocked vault.

`SyncController(app)` is started by the App when the vault unlocks and stopped when it locks. It runs
`sync_now` in a thread worker (never on the UI thread), reports the state to the status bar with
`SyncStatusChanged`, and streams progress to any attached view (the Sync screen) with `SyncStarted`,
`SyncProgress` and `SyncFinished` (sprx_tui/messages.py). With the auto-sync setting on and the laptop
enrolled it syncs at unlock, then on a timer: every minute while the server answers, and after a
failure with exponential back-off (`auto_sync_backoff`: 5 s doubling to 5 minutes, ±20 % jitter; the
same `sync.client.Backoff` the transport's retries use). The schedule is driven by a one-second tick
that compares a monotonic clock with the next due time, so new writes never trigger a retry storm and
a test can move the clock instead of sleeping. Only one sync runs at a time. A revoked laptop is
crypto-erased by `sync_now`; the controller then locks the app to the gate and says so in a dialog
(`RevokedScreen`) that stays until it is read.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from textual.message import Message
from textual.timer import Timer

from sprx_tui.core.sync import SyncStatus, close_transport, sync_now, sync_status
from sprx_tui.core.sync.view import PHASE_LABELS
from sprx_tui.messages import SyncFinished, SyncOutcome, SyncProgress, SyncStarted, SyncStatusChanged
from sprx_tui.screens.revoked import RevokedScreen
from sync.client import Backoff

if TYPE_CHECKING:
    from sprx_tui.core.store import CaseStore

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


def auto_sync_backoff(rng: random.Random | None = None) -> Backoff:
    """The app's schedule after failed syncs: 5 s, 10 s, 20 s … up to 5 minutes, each ±20 %."""
    return Backoff(BACKOFF_START, BACKOFF_CAP, jitter=JITTER, rng=(rng or random.Random()).random)


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
        self.backoff = backoff or auto_sync_backoff(self.rng)
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
        if self._store is not None:
            close_transport(self._store)  # the kept-alive sync connection goes with the store
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
            status = sync_status(store)
        except Exception:  # noqa: BLE001 - locked or closed under us: nothing to report
            return
        if self._current(generation):
            self.app.call_later(self._status_read, generation, status)

    def _status_read(self, generation: int, status: SyncStatus) -> None:
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
            result = sync_now(store, progress=partial(self._progress, generation))
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
                status = sync_status(store)
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
        """The practice withdrew this laptop: sync_now has crypto-erased the vault; lock and say so plainly."""
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


__all__ = [
    "BACKOFF_CAP",
    "BACKOFF_START",
    "HEALTHY_SECONDS",
    "JITTER",
    "SyncController",
    "auto_sync_backoff",
]
