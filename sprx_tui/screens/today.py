"""Today: follow-ups due today, overdue ones, new referrals, people unseen for 28+ days; sync in the status bar."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid
from textual.message import Message
from textual.worker import Worker

from sprx_tui.core.models import REFERRAL_SOURCES
from sprx_tui.core.store import CaseStore
from sprx_tui.drawing import draw_now
from sprx_tui.inert import inert_cells
from sprx_tui.messages import TodayLoaded
from sprx_tui.screens.area import AreaScreen
from sprx_tui.screens.caseload import flag_legend, flag_marks, short_date
from sprx_tui.widgets.fast_table import TextTable
from sprx_tui.widgets.keys_footer import KeysFooter
from sprx_tui.widgets.status_bar import NavBar, StatusBar

if TYPE_CHECKING:
    from sprx_tui.router import Shell

NO_CONTACT_DAYS = 28
LIST_ROWS = 50
"""Rows read per list; the title gives the whole length, the bottom border where to see the rest."""
LOADING_SHOWN_AFTER_SECONDS = 0.25
"""An empty list shows a loading mark only if its read takes longer than this (usually it takes ~50 ms)."""

# (table id, title, columns); a column named in DROPPED is left out when its panel is too narrow (80x24).
PANELS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("due", "Due today", ("Name", "Flags", "For")),
    ("overdue", "Overdue follow-ups", ("Name", "Due", "For")),
    ("referrals", "New referrals", ("Name", "From", "Received", "Urgency")),
    ("quiet", f"No contact for {NO_CONTACT_DAYS}+ days", ("Name", "Last contact", "Days")),
)
DROPPED = {("referrals", "From"): 1}
"""For triage the urgency and the date received matter more than where a referral came from: on a
narrow terminal the source is cut (to LEAST[...] at the least) and then left out before they are."""
LEAST = {("referrals", "From"): 8, ("due", "For"): 8, ("overdue", "For"): 8}
MORE = {  # where a list cut at LIST_ROWS can be seen whole (the panel's bottom border says so)
    "due": "all: F3, by next follow-up",
    "overdue": "all: F3, by next follow-up",
    "referrals": "all: F3, Referred",
    "quiet": "all: F3, by last contact",
}
EMPTY = {
    "due": "Nothing due today.",
    "overdue": "No overdue follow-ups.",
    "referrals": "No referrals waiting.",
    "quiet": "Everyone has been seen recently.",
}


@dataclass
class TodayTotals(Message):
    """The whole lengths of Today's lists, read after them when one of them is cut."""

    totals: dict[str, int]


class TodayTable(TextTable):
    """A compact list on Today; Enter opens the person on the highlighted row."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Open", id="today.open"),
    ]


class TodayScreen(AreaScreen):
    """What needs doing today, each item one Enter away from the person's record."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "refresh", "Refresh", id="today.refresh", show=False),
    ]
    HELP = "Tab moves between the lists; Enter opens the highlighted person."
    AUTO_FOCUS = "#due"

    def __init__(self) -> None:
        super().__init__()
        # row key -> person id, for every table (keys are unique per row, people may repeat).
        self._people: dict[str, str] = {}
        self._reading = False  # a read of the lists is on its way
        self._after_read: Callable[[], None] | None = None
        self._just_read = False  # read for the switch to Today that follows: no second read on resume
        self._cut: dict[str, bool] = {}  # list id -> it has more rows than are shown

    @property
    def sprx(self) -> Shell:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield NavBar("today")
        with Grid(id="today-grid"):
            for table_id, title, columns in PANELS:
                table = TodayTable(id=table_id, cursor_type="row", zebra_stripes=True, classes="pane")
                table.border_title = title
                for column in columns:
                    place = (table_id, column)
                    table.add_column(column, key=column.lower(), drop=DROPPED.get(place), least=LEAST.get(place))
                yield table
        yield StatusBar()
        yield KeysFooter()

    def help_legend(self) -> str:
        """The flag marks' meanings, for F1."""
        return flag_legend(self.sprx.config.ascii_marks)

    def on_screen_resume(self) -> None:
        # At the unlock the lists are read before Today is switched to (read_lists with `then`).
        just_read, self._just_read = self._just_read, False
        if not (self._reading or just_read):
            self.action_refresh()

    def action_refresh(self) -> None:
        store = self.sprx.store
        if store is not None:
            self.read_lists(store)

    def read_lists(self, store: CaseStore, then: Callable[[], None] | None = None) -> None:
        """Read the four lists in a worker and show them; `then` runs once they are shown (or failed).

        The unlock starts this before Today is switched to, so Today first appears with its lists.
        Loading marks appear only on lists still empty after LOADING_SHOWN_AFTER_SECONDS: mounting
        and removing four of them cost more than the read itself (BENCHMARKS.md, App).
        """
        self._reading = True
        self._after_read = then
        self.set_timer(LOADING_SHOWN_AFTER_SECONDS, self._show_loading)
        self._load(store)

    def _show_loading(self) -> None:
        if self._reading:
            for table in self.query(TodayTable):
                table.loading = table.row_count == 0

    def _read_done(self) -> None:
        self._reading = False
        then, self._after_read = self._after_read, None
        if then is not None:
            self._just_read = self.app.screen is not self
            then()

    @work(thread=True, exclusive=True, group="today", exit_on_error=False, name="today")
    def _load(self, store: CaseStore) -> None:
        q = store.queries
        # One row more than is shown says whether a list goes on; only then are the lists counted, after
        # they are on screen (a caseload of usual size never needs it; counting 10,000 people's takes ~20 ms).
        with store.lock:
            loaded = TodayLoaded(
                q.due_today(LIST_ROWS + 1),
                q.overdue(LIST_ROWS + 1),
                q.new_referrals(LIST_ROWS + 1),
                q.no_recent_contact(NO_CONTACT_DAYS, LIST_ROWS + 1),
            )
        self.post_message(loaded)
        lists = (loaded.due_today, loaded.overdue, loaded.new_referrals, loaded.no_recent_contact)
        if any(len(rows) > LIST_ROWS for rows in lists):
            with store.lock:
                totals = q.today_totals(NO_CONTACT_DAYS)
            self.post_message(TodayTotals(totals))

    def on_today_loaded(self, message: TodayLoaded) -> None:
        today = self.sprx.clock().date()
        ascii_only = self.sprx.config.ascii_marks
        self._people.clear()
        rows: dict[str, list[tuple[str, str, tuple[Any, ...]]]] = {
            "due": [
                (f"d:{f.follow_up_id}", f.person_id, (f.name, flag_marks(f.flags, ascii_only), f.reason))
                for f in message.due_today
            ],
            "overdue": [
                (f"o:{f.follow_up_id}", f.person_id, (f.name, short_date(f.due_on, today), f.reason))
                for f in message.overdue
            ],
            "referrals": [
                (
                    f"r:{r.referral_id}",
                    r.person_id,
                    (r.name, REFERRAL_SOURCES.get(r.source, r.source), short_date(r.received_on, today), r.urgency),
                )
                for r in message.new_referrals
            ],
            "quiet": [
                (f"q:{p.id}", p.id, (p.name, short_date(p.last_contact_on, today) or "never", _days(p, today)))
                for p in message.no_recent_contact
            ],
        }
        with self.app.batch_update():
            for table_id, title, _columns in PANELS:
                table = self.query_one(f"#{table_id}", TodayTable)
                keep = table.cursor_row
                table.clear()
                items = rows[table_id][:LIST_ROWS]
                self._cut[table_id] = len(rows[table_id]) > LIST_ROWS
                for key, person_id, cells in items:
                    self._people[key] = person_id
                    # Text, not str: a str cell is parsed as markup (a "[" in a name would be a style tag).
                    table.add_row(*inert_cells(*cells), key=key)
                if not items:
                    table.add_row(Text(EMPTY[table_id], no_wrap=True, end=""), key=f"none:{table_id}")
                # A list that goes on says so, and where to see it whole; its length comes with TodayTotals.
                cut = self._cut[table_id]
                table.border_title = f"{title} ({len(items)}{'+' if cut else ''})"
                table.border_subtitle = f"first {len(items)}; {MORE[table_id]}" if cut else ""
                table.loading = False
                if items:
                    table.move_cursor(row=min(keep, len(items) - 1))
        draw_now(self)
        # A loading widget has no keys; now it has finished, the footer must look again.
        self.refresh_bindings()
        self.sprx.refresh_sync_summary()
        self._read_done()
        # With Today on screen, build the caseload behind it (F3 then only switches), then the records' mode.
        self.call_after_refresh(self.sprx.prepare_area, "caseload")
        self.call_after_refresh(self.sprx.prepare_records)

    def on_today_totals(self, message: TodayTotals) -> None:
        for table_id, title, _columns in PANELS:
            if self._cut.get(table_id) and table_id in message.totals:
                table = self.query_one(f"#{table_id}", TodayTable)
                table.border_title = f"{title} ({message.totals[table_id]:,})"

    @on(TextTable.RowSelected)
    def _open(self, event: TextTable.RowSelected) -> None:
        person_id = self._people.get(event.row_key)
        if person_id:
            # A new referral is opened to be triaged: straight to the Referrals tab.
            tab = "referrals" if event.table.id == "referrals" else None
            self.sprx.open_person(person_id, tab)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.name == "today" and event.state.name == "ERROR":
            for table in self.query(TodayTable):
                table.loading = False
            self._read_done()
        self.sprx.worker_failed(event)


def _days(row: Any, today: dt.date) -> str:
    if row.last_contact_on is None:
        return ""
    return str((today - row.last_contact_on).days)
