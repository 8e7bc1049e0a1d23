"""The one-line bars every main screen carries: the area tabs (top) and the sync status bar (bottom)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from textual.app import RenderResult
from textual.content import Content
from textual.widgets import Static

from sprx_tui.inert import visible

try:
    _LONDON: dt.tzinfo = ZoneInfo("Europe/London")
except ZoneInfoNotFoundError:  # pragma: no cover - no tz database
    _LONDON = dt.UTC

# (mode, key, label) in the order the tabs are shown.
AREAS: tuple[tuple[str, str, str], ...] = (
    ("today", "F2", "Today"),
    ("caseload", "F3", "Caseload"),
    ("directory", "F4", "Directory"),
    ("reports", "F5", "Reports"),
    ("sync", "F6", "Sync"),
)


@dataclass(frozen=True)
class SyncSummary:
    """View state for the status bar (counts and a state word; never personal data)."""

    state: str = ""
    pending: int = 0
    conflicts: int = 0
    last_success: str | None = None
    detail: str = ""
    demo: bool = False
    """A demo vault: never enrolled, so its changes are never sent (no count of changes waiting)."""


def _clock_time(iso: str | None, today: dt.date | None = None) -> str | None:
    if not iso:
        return None
    try:
        moment = dt.datetime.fromisoformat(iso)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    local = moment.astimezone(_LONDON)
    if today is not None and local.date() != today:
        return local.strftime("%d %b %H:%M")
    return local.strftime("%H:%M")


def describe_sync(summary: SyncSummary, today: dt.date | None = None) -> list[tuple[str, str]]:
    """(text, style class) parts: 'synced at 09:12', '3 changes waiting', '1 conflict to resolve'."""
    when = _clock_time(summary.last_success, today)
    state = summary.state
    if not state:
        return []
    if state == "not_enrolled" and summary.demo:
        return [("demo vault, made-up people, never sent anywhere", "")]
    if state == "not_enrolled":
        word = "not enrolled"
    elif state == "syncing":
        word = "syncing…" + (f" {summary.detail}" if summary.detail else "")
    elif state == "synced":
        word = f"synced at {when}" if when else "synced"
    elif state == "failed":
        word = "sync failed" + (f": {summary.detail}" if summary.detail else "")
    else:
        word = "offline" + (f", last synced {when}" if when else "")
    parts = [(word, "warning" if state == "failed" else "")]
    if summary.pending:
        noun = "change" if summary.pending == 1 else "changes"
        parts.append((f"{summary.pending} {noun} waiting", ""))
    if summary.conflicts:
        noun = "conflict" if summary.conflicts == 1 else "conflicts"
        parts.append((f"{summary.conflicts} {noun} to resolve (F6)", "error"))
    return parts


class StatusBar(Static):
    """Bottom line: sync state, pending changes and open conflicts, from the App's `sync_summary`."""

    DEFAULT_CSS = """
    StatusBar {
        height: 1;
        width: 1fr;
        background: $panel;
        color: $foreground;
        padding: 0 1;
    }
    """

    def on_mount(self) -> None:
        if hasattr(self.app, "sync_summary"):
            self.watch(self.app, "sync_summary", self._summary_changed)

    def _summary_changed(self, _summary: SyncSummary) -> None:
        self.refresh()

    def render(self) -> RenderResult:
        summary: SyncSummary = getattr(self.app, "sync_summary", SyncSummary())
        clock = getattr(self.app, "clock", None)
        today = clock().astimezone(_LONDON).date() if clock else None
        parts = describe_sync(summary, today)
        if not parts:
            return Content("")
        pieces: list[Content | str] = [Content.styled("Sync: ", "bold")]
        for i, (text, style) in enumerate(parts):
            if i:
                pieces.append(" · ")
            colour = {"error": "$error bold", "warning": "$warning"}.get(style, "")
            text = visible(text)  # a detail can quote the server
            pieces.append(Content.styled(text, colour) if colour else text)
        return Content.assemble(*pieces)


class NavBar(Static):
    """Top line: where you are, and the keys for the other areas."""

    DEFAULT_CSS = """
    NavBar {
        height: 1;
        width: 1fr;
        background: $panel;
        color: $foreground;
        padding: 0 1;
    }
    """

    def __init__(self, current: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.current = current

    def render(self) -> RenderResult:
        pieces: list[Content | str] = [Content.styled("sprx", "bold $primary"), "  "]
        for mode, key, label in AREAS:
            if mode == self.current:
                pieces.append(Content.styled(f" {key} {label} ", "reverse bold"))
            else:
                pieces.append(Content.assemble(Content.styled(f" {key}", "bold"), f" {label} "))
        return Content.assemble(*pieces)
