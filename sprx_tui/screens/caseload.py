"""Caseload: one SQL page at a time of the worker's people, filtered as you type, by status, sorted; Enter opens."""

from __future__ import annotations

import datetime as dt
import locale
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.content import Content
from textual.widgets import Input, Static
from textual.worker import Worker, get_current_worker

from sprx_tui import router
from sprx_tui.core.models import SAFETY_FLAGS
from sprx_tui.core.store import CaseStore
from sprx_tui.drawing import draw_now
from sprx_tui.inert import inert_cells
from sprx_tui.messages import CaseloadLoaded
from sprx_tui.screens.area import AreaScreen
from sprx_tui.widgets.fast_table import TextTable
from sprx_tui.widgets.keys_footer import KeysFooter
from sprx_tui.widgets.status_bar import NavBar, StatusBar

if TYPE_CHECKING:
    from sprx_tui.router import Shell

# Rows fetched per query; the table grows a page at a time as the cursor nears the end. About two screens:
# every row added is measured and the table laid out again, so a bigger first page slows each keystroke.
PAGE = 50
LOAD_MORE_MARGIN = 10

# (key, status value, label); "" means every status.
STATUSES: tuple[tuple[str, str, str], ...] = (
    ("0", "", "All"),
    ("1", "referred", "Referred"),
    ("2", "active", "Active"),
    ("3", "discharged", "Discharged"),
    ("4", "declined", "Declined"),
    ("5", "did_not_engage", "Not engaged"),
)
STATUS_LABELS = {value: label for _key, value, label in STATUSES if value}
SORTS: tuple[tuple[str, str], ...] = (
    ("name", "name"),
    ("next_follow_up", "next follow-up"),
    ("last_contact", "last contact"),
    ("status", "status"),
)

# Safety flags as short marks; the ASCII form is for terminals without emoji or UTF-8.
FLAG_MARKS: dict[str, tuple[str, str]] = {
    "do_not_visit_alone": ("⚠ alone", "! alone"),
    "aggression": ("⚠ aggr", "! aggr"),
    "animals": ("🐕", "dog"),
    "access": ("🔑", "key"),
    "smoking": ("🚬", "smoke"),
    "infection": ("☣", "infect"),
}


def utf8_terminal() -> bool:
    encoding = (getattr(sys.stdout, "encoding", None) or locale.getpreferredencoding(False) or "").lower()
    return "utf" in encoding


def flag_marks(flags: Iterable[str], ascii_only: bool = False) -> str:
    """'⚠ alone 🐕' for the caseload; unknown flags show as their own word so nothing is hidden."""
    use_ascii = ascii_only or not utf8_terminal()
    marks = []
    for flag in flags:
        pair = FLAG_MARKS.get(flag)
        marks.append((pair[1] if use_ascii else pair[0]) if pair else flag.replace("_", " "))
    return " ".join(marks)


# (label, key, drop): on a narrow terminal whole columns are left out, lowest `drop` first (Age, then Last
# contact, NHS number, Status), so Name, the safety flags and the next follow-up always show in full.
COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("Name", "name", None),
    ("Flags", "flags", None),
    ("NHS number", "nhs", 3),
    ("Age", "age", 1),
    ("Status", "status", 4),
    ("Last contact", "last", 2),
    ("Next follow-up", "next", None),
)
OVERDUE = "overdue"


def follow_up_date(day: dt.date | None, today: dt.date) -> str:
    """The next follow-up's date, with the word "overdue" after it once it has passed (not by colour alone)."""
    shown = short_date(day, today)
    return f"{shown} {OVERDUE}" if day is not None and day < today else shown


def flag_legend(ascii_only: bool = False) -> str:
    """What each safety-flag mark means, in one paragraph (shown by F1 on the screens that use the marks)."""
    meanings = [
        f"{flag_marks([flag], ascii_only)} {label}" for flag, label in SAFETY_FLAGS.items() if flag in FLAG_MARKS
    ]
    return "Safety flags: " + " · ".join(meanings) + "."


def short_date(day: dt.date | None, today: dt.date) -> str:
    """'30 Nov' this year, '30 Nov 2025' otherwise (never an ambiguous 11/12)."""
    if day is None:
        return ""
    return day.strftime("%d %b") if day.year == today.year else day.strftime("%d %b %Y")


class FilterInput(Input):
    """The caseload filter: Esc clears it (or, when empty, goes back to the table); Down and Enter go to the table."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "leave(True)", "Clear filter", id="caseload.filter_clear"),
        Binding("down", "leave(False)", "To the list", show=False, id="caseload.filter_down"),
    ]

    def action_leave(self, clear: bool) -> None:
        if clear and self.value:
            self.value = ""
            return
        self.screen.set_focus(self.screen.query_one(CaseloadTable))


class CaseloadTable(TextTable):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Open", id="caseload.open"),
    ]


class CaseloadScreen(AreaScreen):
    """The whole caseload, a page at a time: / filters by name, NHS number or postcode; 0–5 status; s sort."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter", id="caseload.filter"),
        Binding("s", "sort", "Sort", id="caseload.sort"),
        Binding("a", "new_person", "New person", id="caseload.new_person", tooltip="Add a person with their referral"),
        *(
            Binding(
                key, f"status('{value}')", f"Show {label.lower()}", id=f"caseload.status_{value or 'all'}", show=False
            )
            for key, value, label in STATUSES
        ),
        Binding("r", "refresh", "Refresh", id="caseload.refresh", show=False),
    ]
    HELP = (
        "/ filters by name, NHS number or postcode. 0–5 choose a status, s changes the order, Enter opens,"
        " a adds a new person."
    )
    AUTO_FOCUS = "#caseload"

    def __init__(self) -> None:
        super().__init__()
        self.status = ""
        self.sort = "name"
        self.text = ""
        self.total = 0
        self._generation = 0
        self._loading_more = False
        self._shown: tuple[tuple[str, tuple[str, ...]], ...] = ()  # the rows on screen: (id, cells) each

    @property
    def sprx(self) -> Shell:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield NavBar("caseload")
        yield FilterInput(id="filter", placeholder="/ Filter by name, NHS number or postcode", classes="pane")
        yield Static(id="status-strip")
        table = CaseloadTable(id="caseload", cursor_type="row", zebra_stripes=True, classes="pane")
        for label, key, drop in COLUMNS:
            table.add_column(label, key=key, drop=drop)
        yield table
        yield StatusBar()
        yield KeysFooter()

    def help_legend(self) -> str:
        """The flag marks' meanings, for F1."""
        return flag_legend(self.sprx.config.ascii_marks)

    def on_mount(self) -> None:
        self._show_strip()
        # Built behind Today (App.prepare_area): have the first page ready before F3 shows it.
        self.reload()

    def on_screen_resume(self) -> None:
        if not self.is_current:
            return  # built behind Today (App.prepare_area): on_mount reads the first page, once
        self.reload()
        # The rows already shown are current unless the reload says otherwise: draw the resumed screen
        # now (while the reload's query runs), not at the next frame.
        self.call_later(draw_now, self)

    # -- loading -----------------------------------------------------------------------------------

    def reload(self) -> None:
        store = self.sprx.store
        if store is None:
            return
        self._generation += 1
        self._loading_more = False
        self._load(store, self.text, self.status, self.sort, 0, self._generation)

    def action_refresh(self) -> None:
        self.reload()

    def _load_more(self) -> None:
        table = self.query_one(CaseloadTable)
        store = self.sprx.store
        if store is None or self._loading_more or table.row_count >= self.total:
            return
        self._loading_more = True
        self._load(store, self.text, self.status, self.sort, table.row_count, self._generation)

    @work(thread=True, exclusive=True, group="caseload", exit_on_error=False, name="caseload")
    def _load(self, store: CaseStore, text: str, status: str, sort: str, offset: int, generation: int) -> None:
        rows, total = store.queries.caseload(text=text, status=status or None, sort=sort, limit=PAGE, offset=offset)
        if not get_current_worker().is_cancelled:
            self.post_message(CaseloadLoaded(rows, total, offset, generation))

    def on_caseload_loaded(self, message: CaseloadLoaded) -> None:
        if message.generation != self._generation:
            return  # an older filter's answer arrived late
        table = self.query_one(CaseloadTable)
        today = self.sprx.clock().date()
        ascii_only = self.sprx.config.ascii_marks
        self.total = message.total
        page = tuple(
            (
                row.id,
                (
                    row.name,
                    flag_marks(row.flags, ascii_only),
                    row.nhs_number or "",
                    "" if row.age is None else str(row.age),
                    STATUS_LABELS.get(row.status, row.status),
                    short_date(row.last_contact_on, today),
                    follow_up_date(row.next_follow_up_on, today),
                ),
            )
            for row in message.rows
        )
        if message.offset == 0 and page == self._shown:
            # The same rows as on screen (coming back to the caseload, or a keystroke that did not
            # change the first page): leave the table alone, so nothing is re-measured or redrawn.
            self._loading_more = False
            self._show_titles()
            draw_now(self)  # whatever else is pending (a scrollbar after a switch), now
            return
        with self.app.batch_update():
            keep_key = None
            if message.offset == 0:
                keep_key = table.cursor_key
                table.clear()
                self._shown = ()
            added = []
            for row_id, cells in page:
                if row_id in table.rows:
                    continue
                # Text, not str: a str cell is parsed as markup on every render (slower, and a "[" in a
                # name would be read as a style tag); escapes and controls in it shown as placeholders.
                table.add_row(*inert_cells(*cells), key=row_id)
                added.append((row_id, cells))
            self._shown += tuple(added)
            if keep_key is not None and keep_key in table.rows:
                table.move_cursor(row=table.get_row_index(keep_key))
        self._loading_more = False
        self._show_titles()
        if self.is_current:
            draw_now(self)

    def _show_titles(self) -> None:
        table = self.query_one(CaseloadTable)
        what = STATUS_LABELS.get(self.status, "Caseload") if self.status else "Caseload"
        order = dict(SORTS).get(self.sort, self.sort)
        title = f"{what} ({self.total}) · by {order}"
        position = table.cursor_row + 1 if table.row_count else 0
        subtitle = f"{position} / {self.total}"
        # Set only when changed: setting a border title repaints the table even with the same text.
        if table.border_title != title:
            table.border_title = title
        if table.border_subtitle != subtitle:
            table.border_subtitle = subtitle

    @on(TextTable.RowHighlighted, "#caseload")
    def _moved(self, event: TextTable.RowHighlighted) -> None:
        self._show_titles()
        table = event.table
        if event.cursor_row >= table.row_count - LOAD_MORE_MARGIN:
            self._load_more()

    @on(TextTable.RowSelected, "#caseload")
    def _open(self, event: TextTable.RowSelected) -> None:
        if event.row_key:
            self.sprx.open_person(event.row_key)

    # -- filter, status, sort ----------------------------------------------------------------------

    def action_new_person(self) -> None:
        """The new-person form; saving adds them with their referral and opens their record."""
        form = router.screen_class("person_form")()
        push = getattr(self.app, "push_record", None)  # with the records, like the person it becomes
        (push if callable(push) else self.app.push_screen)(form)

    def action_filter(self) -> None:
        # Synchronous, unlike Widget.focus(): keys typed straight after "/" must land in the filter.
        self.set_focus(self.query_one(FilterInput))

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.text = event.value
        self.reload()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.query_one(CaseloadTable).focus()

    def action_status(self, value: str) -> None:
        self.status = value
        self._show_strip()
        self.reload()

    def action_sort(self) -> None:
        names = [name for name, _label in SORTS]
        self.sort = names[(names.index(self.sort) + 1) % len(names)] if self.sort in names else names[0]
        self.reload()

    def _show_strip(self) -> None:
        pieces: list[Content | str] = []
        for key, value, label in STATUSES:
            if pieces:
                pieces.append("  ")
            if value == self.status:
                pieces.append(Content.styled(f" {key} {label} ", "reverse bold"))
            else:
                pieces.append(Content.assemble(Content.styled(key, "bold"), f" {label}"))
        pieces.append(Content.styled("   s sort", "dim"))
        self.query_one("#status-strip", Static).update(Content.assemble(*pieces))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.name == "caseload" and event.state.name == "ERROR":
            self._loading_more = False
        self.sprx.worker_failed(event)
