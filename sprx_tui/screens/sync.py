"""Sync (F6): state and progress, changes waiting, changes the server refused, and conflicts to resolve side by side.

The screen reads through `sprx_tui.core.sync.load_sync_view` in a thread worker and asks the app's
`SyncController` to run a sync (it never runs one itself, so there is never more than one). Enter on a
conflict opens `ConflictScreen`: every version side by side with who, which laptop and when; 1/2 keep the
left or right version, m writes a merged text. The choice goes through `core.sync.resolve_conflict`, so
it is itself a change that syncs.

A merged text being written is kept (encrypted, in the vault) if the vault locks: `MergeScreen.draft()` gives
"sync:<conflict id>", and `restore_draft` reopens the Sync area, the conflict and the editor after unlock.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, DataTable, ProgressBar, Static, TextArea
from textual.worker import Worker

from sprx_tui.core.service import InvalidInput, NotFound
from sprx_tui.core.store import CaseStore
from sprx_tui.core.sync import resolve_conflict, set_aside_sentence
from sprx_tui.core.sync.view import (
    ENROL_COMMAND,
    PHASE_LABELS,
    ConflictView,
    SyncView,
    load_sync_view,
    local_time,
    when_text,
)
from sprx_tui.drafts import discard_later
from sprx_tui.inert import inert, inert_cells, inert_lines, visible
from sprx_tui.messages import SyncFinished, SyncProgress, SyncStarted
from sprx_tui.screens.area import AreaScreen
from sprx_tui.screens.forms import MODAL_CSS, ConfirmModal, SaveCancelModal
from sprx_tui.widgets.keys_footer import KeysFooter
from sprx_tui.widgets.row_table import RowTable
from sprx_tui.widgets.status_bar import NavBar, StatusBar

if TYPE_CHECKING:
    from sprx_tui.router import Shell
    from sprx_tui.sync_controller import SyncController

STATE_WORDS = {
    "synced": "synced",
    "syncing": "syncing",
    "offline": "offline (the practice server could not be reached)",
    "failed": "the last sync failed",
    "not_enrolled": "not enrolled",
}


class SyncViewLoaded(Message):
    def __init__(self, view: SyncView) -> None:
        super().__init__()
        self.view = view


class ConflictResolved(Message):
    def __init__(self, conflict_id: str) -> None:
        super().__init__()
        self.conflict_id = conflict_id


class ConflictLoaded(Message):
    """A conflict opened by id (a kept merged text) was read; None when it is no longer open."""

    def __init__(self, conflict_id: str, conflict: ConflictView | None) -> None:
        super().__init__()
        self.conflict_id = conflict_id
        self.conflict = conflict


def draft_key(conflict_id: str) -> str:
    return f"sync:{conflict_id}"


def merge_title(what: str) -> str:
    return f"Write the {what.lower()} to keep"


def _controller(app: Any) -> SyncController | None:
    return getattr(app, "_sync", None)


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _wait_text(seconds: float) -> str:
    if seconds < 1.5:
        return "any moment"
    if seconds < 90:
        return f"in {round(seconds)} s"
    return f"in about {round(seconds / 60)} min"


class ConflictTable(RowTable):
    """Open conflicts; Enter shows the versions side by side."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Resolve", id="sync.resolve", tooltip="See both versions and choose"),
    ]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "select_cursor":
            return self.row_count > 0
        return super().check_action(action, parameters)


DEMO_SENTENCE = (
    "This is a demo vault of made-up people. It cannot be enrolled with a practice server, so "
    "nothing in it ever leaves this laptop."
)
"""What the Sync screen says of a demo vault, and what `s` says there (it offers no sync)."""


class SyncScreen(AreaScreen):
    """Everything about sync on one screen; `s` runs one now."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "sync_now", "Sync now", id="sync.now", tooltip="Send waiting changes and fetch updates now"),
        Binding("r", "refresh", "Refresh", id="sync.refresh", show=False, tooltip="Read the lists again"),
    ]
    HELP = (
        "s syncs now. Tab moves between the lists. Enter on a conflict shows every version side by side, "
        "so you can keep one or write a text that combines them."
    )
    HELP_TITLE = "Sync"
    AUTO_FOCUS = "#conflicts"

    DEFAULT_CSS = """
    SyncScreen #sync-summary { height: auto; padding: 0 1; }
    SyncScreen #sync-summary Static { width: 1fr; }
    SyncScreen #sync-progress-row { height: 1; display: none; }
    SyncScreen #sync-progress-row.-running { display: block; }
    SyncScreen #sync-phase { width: auto; min-width: 28; padding-right: 1; }
    SyncScreen #sync-progress { width: 1fr; }
    SyncScreen #sync-message.-problem { color: $warning; }
    SyncScreen #sync-enrol { color: $foreground; }
    SyncScreen #sync-enrol-command { text-style: bold; color: $accent; }
    SyncScreen #conflicts { height: auto; min-height: 4; max-height: 35%; }
    SyncScreen #pending { height: 1fr; min-height: 5; }
    SyncScreen #rejected { height: auto; min-height: 4; max-height: 30%; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.view: SyncView | None = None
        self.phases_seen: list[str] = []
        self._conflicts: dict[str, ConflictView] = {}

    @property
    def sprx(self) -> Shell:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield NavBar("sync")
        with Vertical(id="sync-summary", classes="pane") as box:
            box.border_title = "Sync"
            yield Static("", id="sync-server")
            yield Static("", id="sync-enrol")
            yield Static("", id="sync-enrol-command")
            yield Static("", id="sync-last")
            yield Static("", id="sync-message")
            yield Static("", id="sync-set-aside")
            with Horizontal(id="sync-progress-row"):
                yield Static("", id="sync-phase")
                yield ProgressBar(id="sync-progress", show_eta=False)
        conflicts = ConflictTable(id="conflicts", cursor_type="row", zebra_stripes=True, classes="pane")
        conflicts.border_title = "Conflicts to resolve"
        # Fixed widths: a table that sizes itself only when idle can be caught half-drawn.
        for label, width in (("Person", 20), ("What", 20), ("Conflict", 16), ("Latest", 12)):
            conflicts.add_column(label, key=label.lower(), width=width)
        yield conflicts
        rejected = RowTable(id="rejected", cursor_type="row", zebra_stripes=True, classes="pane")
        rejected.border_title = "Refused by the server"
        for label, width in (("What", 16), ("Why", 60), ("When", 12), ("Person", 20), ("Change", 18)):
            rejected.add_column(label, key=label.lower(), width=width)
        yield rejected
        pending = RowTable(id="pending", cursor_type="row", zebra_stripes=True, classes="pane")
        pending.border_title = "Waiting to be sent"
        for label, width in (("What", 20), ("Change", 18), ("How many", 8), ("Latest", 12)):
            pending.add_column(label, key=label.lower(), width=width)
        yield pending
        yield StatusBar()
        yield KeysFooter()

    def on_mount(self) -> None:
        for name in ("#sync-enrol", "#sync-enrol-command", "#sync-set-aside"):
            self.query_one(name).display = False
        self.set_interval(1.0, self._show_schedule, name="sync-screen-clock")
        controller = _controller(self.app)
        if controller is not None:
            controller.attach(self)
            if controller.running:
                self._show_running(True)

    def on_unmount(self) -> None:
        controller = _controller(self.app)
        if controller is not None:
            controller.detach(self)

    def on_screen_resume(self) -> None:
        controller = _controller(self.app)
        if controller is not None:
            controller.attach(self)
        self.action_refresh()

    # -- loading -----------------------------------------------------------------------------------

    def action_refresh(self) -> None:
        store = self.sprx.store
        if store is None:
            return
        self._load(store)

    @work(thread=True, exclusive=True, group="sync-screen", exit_on_error=False, name="sync-view")
    def _load(self, store: CaseStore) -> None:
        self.post_message(SyncViewLoaded(load_sync_view(store)))

    def on_sync_view_loaded(self, message: SyncViewLoaded) -> None:
        self.view = view = message.view
        today = local_time(self.sprx.clock()).date()
        self._show_summary(view)
        self._conflicts = {c.id: c for c in view.conflicts}
        with self.app.batch_update():
            table = self.query_one("#conflicts", DataTable)
            keep = table.cursor_row
            table.clear()
            for c in view.conflicts:
                kind = {
                    "concurrent_edit": f"{len(c.versions)} versions",
                    "delete_vs_edit": "deleted + edited",
                    "duplicate_person": "same NHS number",
                }.get(c.kind, c.kind)
                table.add_row(*inert_cells(c.person or "—", c.what, kind, when_text(c.since, today)), key=c.id)
            table.border_subtitle = "" if view.conflicts else "nothing to resolve"
            table.border_title = f"Conflicts to resolve ({len(view.conflicts)})"
            if view.conflicts:
                table.move_cursor(row=min(keep, len(view.conflicts) - 1))

            pending = self.query_one("#pending", DataTable)
            pending.clear()
            for i, g in enumerate(view.pending_groups):
                cells = inert_cells(g.what, g.change, str(g.count), when_text(g.latest, today))
                pending.add_row(*cells, key=f"p{i}")
            pending.border_subtitle = "" if view.pending_groups else "nothing waiting"
            if view.status.demo:  # never enrolled, so never sent
                pending.border_title = f"Changes kept in this demo vault ({view.pending_total})"
            else:
                pending.border_title = f"Waiting to be sent ({view.pending_total})"

            rejected = self.query_one("#rejected", DataTable)
            rejected.clear()
            for r in view.rejected:
                cells = inert_cells(r.what, r.reason, when_text(r.when, today), r.person, r.change)
                rejected.add_row(*cells, key=str(r.mutation_id))
            rejected.border_subtitle = "" if view.rejected else "nothing refused"
            # Conflicts and refusals come from a server: a laptop that never enrolled has none to show.
            table.display = view.status.enrolled or bool(view.conflicts)
            rejected.display = view.status.enrolled or bool(view.rejected)
            if self.focused is not None and not self.focused.display:
                pending.focus()
            rejected.border_title = f"Refused by the server ({view.rejected_total})"
        self.refresh_bindings()

    def _show_summary(self, view: SyncView) -> None:
        status = view.status
        server = self.query_one("#sync-server", Static)
        enrol = self.query_one("#sync-enrol", Static)
        command = self.query_one("#sync-enrol-command", Static)
        if status.enrolled:
            who = f" as {status.user_id}" if status.user_id else ""
            server.update(inert(f"Practice server: {status.server_url or 'unknown'} (enrolled{who})"))
            enrol.display = command.display = False
        elif status.demo:
            server.update(DEMO_SENTENCE)
            enrol.display = command.display = False
        else:
            server.update("This laptop is not enrolled with a practice server, so your changes stay on it for now.")
            enrol.update(
                "To enrol, ask your practice admin for a one-time enrolment code (valid 15 minutes). Quit sprx, "
                "then run this in a terminal and open sprx again; changes made before enrolment are kept and "
                "sent first:"
            )
            command.update(f"  {ENROL_COMMAND}")
            enrol.display = command.display = True
        self._show_last(view)
        message = self.query_one("#sync-message", Static)
        controller = _controller(self.app)
        last = controller.last if controller is not None else None
        text = last.message if last is not None else (status.last_message or "")
        problem = (last.status if last is not None else status.last_status) in ("offline", "failed", "upgrade")
        if not status.enrolled:
            text, problem = "", False
        message.update(inert(text, multiline=True))
        message.display = bool(text)
        message.set_class(problem, "-problem")
        # Rows the inbound gate refused on this laptop: said in one sentence, only when there are any.
        aside = self.query_one("#sync-set-aside", Static)
        aside.update(set_aside_sentence(status.set_aside))
        aside.display = status.set_aside > 0

    def _show_last(self, view: SyncView | None = None) -> None:
        view = view or self.view
        if view is None:
            return
        status = view.status
        today = local_time(self.sprx.clock()).date()
        controller = _controller(self.app)
        state = self.sprx.sync_summary.state or ("synced" if status.last_status in ("synced", "conflicts") else "")
        if controller is not None and controller.state:
            state = controller.state if not controller.running else "syncing"
        parts = []
        if status.last_successful_sync_at is not None:
            parts.append(f"Last synced: {when_text(status.last_successful_sync_at, today)}")
        elif status.enrolled:
            parts.append("Not synced yet")
        if status.enrolled:
            parts.append(f"Now: {STATE_WORDS.get(state, state or 'waiting')}")
            if not self.sprx.config.auto_sync:
                parts.append("Automatic sync is off (F9 settings)")
            elif controller is not None and not controller.running:
                wait = controller.seconds_to_next()
                if wait is not None:
                    parts.append(f"next automatic sync {_wait_text(wait)}")
        self.query_one("#sync-last", Static).update(" · ".join(parts))
        self.query_one("#sync-last", Static).display = bool(parts)

    def _show_schedule(self) -> None:
        if self.is_current:
            self._show_last()

    # -- running a sync ----------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        status = self.view.status if self.view is not None else None
        if action == "sync_now" and status is not None and status.demo and not status.enrolled:
            return False  # a demo vault is never sent anywhere: no "Sync now" in the footer
        return super().check_action(action, parameters)

    def action_sync_now(self) -> None:
        controller = _controller(self.app)
        if self.sprx.store is None:
            return
        if controller is None:
            self.notify("Sync is not available right now; lock and unlock to try again.", severity="warning")
            return
        if self.view is not None and self.view.status.demo and not self.view.status.enrolled:
            self.notify(DEMO_SENTENCE)  # the same words as the screen: no enrolment to suggest
            return
        if self.view is not None and not self.view.status.enrolled:
            self.notify(f"This laptop is not enrolled yet; use `{ENROL_COMMAND}` first.", severity="warning")
            return
        if not controller.sync_now():
            self.notify("A sync is already running.")

    def _show_running(self, running: bool) -> None:
        row = self.query_one("#sync-progress-row")
        row.set_class(running, "-running")
        if running:
            self.query_one("#sync-phase", Static).update("Starting…")
            self.query_one("#sync-progress", ProgressBar).update(total=None, progress=0)

    def on_sync_started(self, _message: SyncStarted) -> None:
        self._show_running(True)
        self._show_last()

    def on_sync_progress(self, message: SyncProgress) -> None:
        if message.phase not in self.phases_seen:
            self.phases_seen.append(message.phase)
        if not self.query_one("#sync-progress-row").has_class("-running"):
            self._show_running(True)
        label = PHASE_LABELS.get(message.phase, message.phase)
        bar = self.query_one("#sync-progress", ProgressBar)
        if message.total:
            self.query_one("#sync-phase", Static).update(f"{label}: {message.done} of {message.total}")
            bar.update(total=message.total, progress=message.done)
        elif message.total == 0:
            self.query_one("#sync-phase", Static).update(f"{label}: none waiting")
            bar.update(total=1, progress=1)
        else:
            self.query_one("#sync-phase", Static).update(f"{label}: {message.done}")
            bar.update(total=None)

    def on_sync_finished(self, message: SyncFinished) -> None:
        self._show_running(False)
        if message.outcome.manual:
            severity = "information" if message.outcome.ok else "warning"
            self.notify(message.outcome.message, severity=severity)
        self.action_refresh()

    # -- conflicts ---------------------------------------------------------------------------------

    @on(DataTable.RowSelected, "#conflicts")
    def _open_conflict(self, event: DataTable.RowSelected) -> None:
        conflict = self._conflicts.get(str(event.row_key.value))
        if conflict is not None:
            self.app.push_screen(ConflictScreen(conflict))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.sprx.worker_failed(event)


class MergeScreen(SaveCancelModal[str | None]):
    """Write the text to keep (it starts with every version); Ctrl+S keeps it, Esc goes back."""

    DEFAULT_CSS = (
        "MergeScreen { align: center middle; }\n"
        + MODAL_CSS
        + """
    MergeScreen .dialog { width: 90; height: 80%; }
    MergeScreen TextArea { height: 1fr; }
    MergeScreen #merge-error { color: $error; text-style: bold; height: auto; }
    """
    )
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Keep this text", id="merge.save", priority=True),
        Binding("escape", "cancel", "Cancel", id="merge.cancel"),
    ]
    HELP = "Edit the text so it says what should be kept, then press Ctrl+S."

    def __init__(
        self,
        title: str,
        text: str,
        *,
        draft_key: str | None = None,
        draft_payload: Mapping[str, Any] | None = None,
        restored: bool = False,
    ) -> None:
        super().__init__()
        self.title_text = title
        self.text = visible(text, multiline=True)  # versions come from other laptops; an editor draws escapes raw
        self.draft_key = draft_key
        self.draft_payload = dict(draft_payload or {})
        self.restored = restored

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(inert(self.title_text), classes="dialog-title")
            yield Static(
                "It starts with every version; edit it to say what should be kept. F7 selects all the text.",
                classes="hint",
            )
            yield TextArea(self.text, id="merged", soft_wrap=True, show_line_numbers=False)
            yield Static("", id="merge-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Keep this text (Ctrl+S)", id="save", variant="primary")
                yield Button("Cancel (Esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#merged", TextArea).focus()

    def typed(self) -> str:
        if self.is_mounted:
            with contextlib.suppress(NoMatches):  # mounted but not composed yet
                return self.query_one("#merged", TextArea).text
        return self.text

    def draft(self) -> tuple[str, dict[str, Any]] | None:
        """What to keep if the vault locks now: None while the text is as the editor started it (or blank).

        A restored text is always kept again, so an older copy in the vault is never offered instead.
        """
        if self.draft_key is None:
            return None
        text = self.typed()
        if not self.restored and (text == self.text or not text.strip()):
            return None
        return self.draft_key, {**self.draft_payload, "text": text}

    def action_save(self) -> None:
        text = self.query_one("#merged", TextArea).text.strip()
        if not text:
            self.query_one("#merge-error", Static).update("Write the text to keep, or press Esc to go back.")
            return
        self.dismiss(text)

    def action_cancel(self) -> None:
        if self.restored and self.draft_key is not None:
            # The worker has seen the kept text and chose to leave it: no offer at the next unlock.
            discard_later(self.app, self.draft_key)
        self.dismiss(None)


class ConflictScreen(Screen):
    """Every version of one conflicting value side by side; keep one, or write a merged text."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("1", "keep(0)", "Keep left", id="conflict.keep_left"),
        Binding("2", "keep(1)", "Keep right", id="conflict.keep_right"),
        Binding("3", "keep(2)", "Keep version 3", id="conflict.keep_3", show=False),
        Binding("4", "keep(3)", "Keep version 4", id="conflict.keep_4", show=False),
        Binding("5", "keep(4)", "Keep version 5", id="conflict.keep_5", show=False),
        Binding("m", "merge", "Write merged text", id="conflict.merge"),
        Binding("escape", "back", "Back", id="conflict.back"),
    ]
    HELP = (
        "Each box is one version of the same text, with who changed it, on which laptop and when. "
        "1 keeps the left one, 2 the right one, m lets you write one that combines them. "
        "Your choice is sent to the other laptops at the next sync."
    )
    HELP_TITLE = "Conflict"

    DEFAULT_CSS = """
    ConflictScreen #conflict-head { height: auto; padding: 0 1; }
    ConflictScreen #conflict-title { text-style: bold; color: $primary; }
    ConflictScreen #conflict-context { color: $foreground-muted; }
    ConflictScreen #versions { height: 1fr; }
    ConflictScreen .version { width: 1fr; height: 1fr; padding: 0 1; }
    ConflictScreen .version-meta { color: $foreground-muted; margin-bottom: 1; }
    ConflictScreen .version-text { width: 1fr; }
    ConflictScreen #conflict-loading { padding: 0 1; }
    """

    def __init__(self, conflict: ConflictView | None = None, *, conflict_id: str | None = None) -> None:
        """From the Sync screen's list (`conflict`), or by id alone (a kept merged text), read in a worker."""
        super().__init__()
        if conflict is None and not conflict_id:
            raise ValueError("ConflictScreen needs a conflict or its id")
        self.conflict = conflict
        self.conflict_id: str = conflict.id if conflict is not None else str(conflict_id)
        self._busy = False

    @property
    def sprx(self) -> Shell:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        c = self.conflict
        today = local_time(self.sprx.clock()).date()
        yield NavBar("sync")
        if c is None:
            yield Static("Reading the conflict…", id="conflict-loading")
            yield StatusBar()
            yield KeysFooter()
            return
        whose = f" for {c.person}" if c.person else ""
        kind = {
            "concurrent_edit": "was changed on two laptops at the same time",
            "delete_vs_edit": "was deleted on one laptop and changed on another",
            "duplicate_person": "is recorded twice with one NHS number",
        }.get(c.kind, "needs a decision")
        with Vertical(id="conflict-head"):
            yield Static(inert(f"{c.what}{whose} {kind}."), id="conflict-title")
            if c.kind == "concurrent_edit":
                hint = "Both versions are kept until you choose: 1 keeps the left, 2 the right, m combines them."
            else:
                hint = "1 chooses the left, 2 the right."
            yield Static(hint, classes="hint")
            if c.context:
                label = "The record says: " if c.kind == "delete_vs_edit" else ""
                yield Static(inert(f"{label}{c.context}", multiline=True), id="conflict-context")
        count = len(c.versions)
        with Horizontal(id="versions"):
            for i, v in enumerate(c.versions):
                side = {0: "left", count - 1: "right"}.get(i, "") if count == 2 else ""
                box = VerticalScroll(classes="pane version", id=f"version-{i + 1}")
                box.border_title = f"{i + 1} · {side}" if side else f"{i + 1}"
                if v.shown:
                    box.border_subtitle = "shown now"
                with box:
                    when = when_text(v.when, today) or "unknown"
                    meta = inert_lines(f"By: {v.author}", f"On: {v.device}", f"When: {when}")
                    yield Static(meta, classes="version-meta")
                    yield Static(inert(v.text, multiline=True), classes="version-text")
        yield StatusBar()
        yield KeysFooter()

    def on_mount(self) -> None:
        if self.conflict is None:
            store = self.sprx.store
            if store is not None:
                self._load(store, self.conflict_id)
            return
        self.query(".version").first().focus()

    @work(thread=True, exclusive=True, group="conflict-load", exit_on_error=False, name="conflict-load")
    def _load(self, store: CaseStore, conflict_id: str) -> None:
        found = next((c for c in load_sync_view(store).conflicts if c.id == conflict_id), None)
        self.post_message(ConflictLoaded(conflict_id, found))

    async def on_conflict_loaded(self, message: ConflictLoaded) -> None:
        if message.conflict is None:
            self.query_one("#conflict-loading", Static).update(
                "This conflict is no longer open: it was resolved, perhaps on another laptop. Press Esc to go back."
            )
            return
        self.conflict = message.conflict
        await self.recompose()
        if self.is_current:
            self.query(".version").first().focus()
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "keep":
            index = int(parameters[0]) if parameters else 0  # type: ignore[call-overload]
            return self.conflict is not None and index < len(self.conflict.versions)
        if action == "merge":
            return self.conflict is not None and self.conflict.mergeable
        return True

    def action_back(self) -> None:
        self.dismiss()

    def action_keep(self, index: int) -> None:
        if self._busy or self.conflict is None or index >= len(self.conflict.versions):
            return
        version = self.conflict.versions[index]
        count = len(self.conflict.versions)
        side = {0: "left", 1: "right"}.get(index, f"number {index + 1}") if count == 2 else f"number {index + 1}"
        if self.conflict.kind == "delete_vs_edit":
            question = "Delete this record on every laptop?" if version.value is True else "Keep this record?"
        else:
            question = f"Keep the {side} version? The other version is replaced on every laptop at the next sync."

        def answered(yes: bool | None) -> None:
            if yes:
                self._resolve(version.value)

        self.app.push_screen(ConfirmModal(question, yes="Keep it"), answered)

    def action_merge(self) -> None:
        c = self.conflict
        if self._busy or c is None or not c.mergeable:
            return
        texts = [v.text for v in c.versions]
        start = "\n\n".join(dict.fromkeys(t for t in texts if t.strip()))
        about: dict[str, Any] = {"kind": "merge", "conflict_id": c.id, "what": c.what}
        if c.person_id:
            about["person_id"] = c.person_id
        self.open_merge(start, about)

    def open_merge(self, text: str, about: Mapping[str, Any], *, restored: bool = False) -> MergeScreen:
        """Push the merged-text editor; `about` is the draft payload without the text (what, person)."""

        def written(merged: str | None) -> None:
            if merged:
                self._resolve(merged)

        editor = MergeScreen(
            merge_title(str(about.get("what") or "text")),
            text,
            draft_key=draft_key(self.conflict_id),
            draft_payload=about,
            restored=restored,
        )
        self.app.push_screen(editor, written)
        return editor

    def _resolve(self, value: Any) -> None:
        store = self.sprx.store
        if store is None:
            return
        self._busy = True
        self._save(store, self.conflict_id, value)

    @work(thread=True, exclusive=True, group="sync-resolve", exit_on_error=False, name="resolve")
    def _save(self, store: CaseStore, conflict_id: str, value: Any) -> None:
        try:
            resolve_conflict(store, conflict_id, value)
        except NotFound:
            store.service.discard_draft(draft_key(conflict_id))  # closed meanwhile: a kept text has no use
            raise
        store.service.discard_draft(draft_key(conflict_id))
        self.post_message(ConflictResolved(conflict_id))

    def on_conflict_resolved(self, _message: ConflictResolved) -> None:
        self._busy = False
        self.notify("Your choice is saved; it reaches the other laptops at the next sync.")
        self.sprx.refresh_sync_summary()
        self.dismiss()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.name == "resolve" and event.state.name in {"ERROR", "CANCELLED"}:
            self._busy = False
        self.sprx.worker_failed(event)


# -- a merged text kept across a lock ----------------------------------------------------------------


def describe_draft(payload: dict[str, Any]) -> str:
    """How the offer after unlock names this draft: "an unsaved merged goal (resolving a sync conflict)"."""
    what = payload.get("what")
    noun = what.lower().replace(": ", " ") if isinstance(what, str) and what.strip() else "text"
    return f"an unsaved merged {noun} (resolving a sync conflict)"


def restore_draft(app: App[Any], key: str, payload: dict[str, Any]) -> None:
    """Open the Sync area, the conflict (read in the background) and the editor with the text written so far."""
    conflict_id = str(payload.get("conflict_id") or key.partition(":")[2])
    text = payload.get("text")
    if payload.get("kind") != "merge" or not conflict_id or not isinstance(text, str):
        raise InvalidInput({"draft": "That unsaved merged text does not say which conflict it belongs to."})
    about: dict[str, Any] = {"kind": "merge", "conflict_id": conflict_id}
    for name in ("what", "person_id"):
        if isinstance(payload.get(name), str):
            about[name] = payload[name]
    area = getattr(app, "action_area", None)
    if callable(area):
        area("sync")
    screen = ConflictScreen(conflict_id=conflict_id)
    app.push_screen(screen)
    screen.open_merge(text, about, restored=True)
