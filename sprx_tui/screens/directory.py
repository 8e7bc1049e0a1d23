"""Directory (F4): search services as you type, filter by category, need and area, see uptake, refer or signpost.

Opened with a person (`open_directory_for`, or f on their record) it keeps who you are referring in view at
the top, and r or s then Enter records the onward referral through the service layer. Every search is one SQL
page in an exclusive thread worker; per-service uptake is read once and kept, so a keystroke costs one query.
A "flag a change" note being written is kept across a lock ("directory:flag:<service id>", see sprx_tui.drafts).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.coordinate import Coordinate
from textual.css.query import NoMatches
from textual.events import Mount
from textual.message import Message
from textual.widgets import Button, DataTable, Input, RadioButton, RadioSet, Select, Static
from textual.worker import Worker, get_current_worker

from sprx_rules.hsds import html_to_text
from sprx_rules.hsds3 import age_words
from sprx_rules.validate import format_phone
from sprx_tui import _textual_hacks as hacks
from sprx_tui.core import directory
from sprx_tui.core.models import ONWARD_KINDS, REFERRAL_REASONS, CommunityService, Person
from sprx_tui.core.service import InvalidInput
from sprx_tui.core.store import CaseStore
from sprx_tui.drafts import discard_later
from sprx_tui.inert import inert, visible
from sprx_tui.screens.area import AreaScreen
from sprx_tui.screens.episode import OnwardReferralModal
from sprx_tui.screens.forms import MODAL_CSS, FormField, SaveCancelModal, fmt_date, local, worker_error
from sprx_tui.widgets.keys_footer import KeysFooter
from sprx_tui.widgets.person_header import nhs_display
from sprx_tui.widgets.row_table import RowTable
from sprx_tui.widgets.status_bar import NavBar, StatusBar
from sprx_tui.widgets.toggles import RadioChoice

if TYPE_CHECKING:
    from sprx_tui.router import Shell

PAGE = 100  # rows per query; more are fetched as the cursor nears the end
LOAD_MORE_MARGIN = 10
STALE_MARK = "STALE"
INACTIVE_MARK = "INACTIVE"
SUGGESTION_KINDS = {"closed": "It has closed", "details_changed": "Its details have changed"}


def flag_key(service_id: str) -> str:
    """The draft key of a 'flag a change' note about one service."""
    return f"directory:flag:{service_id}"


# -- messages (past tense: what a worker found or did) ---------------------------------------------


@dataclass
class ServicesFound(Message):
    rows: list[directory.ServiceRow]
    total: int
    offset: int
    generation: int


@dataclass
class FiltersLoaded(Message):
    categories: list[tuple[str, int]]
    areas: list[str]


@dataclass
class UptakeLoaded(Message):
    uptake: dict[str, directory.ServiceUptake]


@dataclass
class ServiceShown(Message):
    service: CommunityService | None
    uptake: directory.ServiceUptake | None


@dataclass
class PersonContextLoaded(Message):
    person: Person | None
    reasons: list[str]


@dataclass
class OnwardReferralMade(Message):
    service_name: str
    kind: str
    person_name: str


@dataclass
class ChangeSuggested(Message):
    service_name: str
    kind: str


# -- text for cells and the detail pane ------------------------------------------------------------


def category_label(code: str) -> str:
    return code.replace("_", " ").capitalize()


def marker(row: directory.ServiceRow | CommunityService, stale: bool) -> Content:
    """The status cell: words, not colour alone, so NO_COLOR and screen readers still show it."""
    if not row.active:
        return Content.styled(INACTIVE_MARK, "bold $text-error")
    if stale:
        return Content.styled(STALE_MARK, "bold $text-warning")
    return Content("")


def uptake_cells(u: directory.ServiceUptake | None) -> tuple[str, str]:
    """Referrals made and the attendance rate (a dash until an outcome is known); the rest is in the details."""
    if u is None:
        return "0", "–"
    return str(u.referrals), f"{100 * u.attendance_rate:.0f}%" if u.attendance_rate is not None else "–"


def fit(text: str, width: int) -> str:
    """Text cut to the column with an ellipsis, so a cropped name never reads as a different one."""
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


# (key, heading, width); None widths share what is left. Category and organisation need a wide terminal.
NARROW_COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("status", "Status", 8),
    ("name", "Service", None),
    ("area", "Area", 12),
    ("verified", "Verified", 10),
    ("refs", "Refs", 4),
    ("attend", "Attend", 6),
)
WIDE_COLUMNS = (*NARROW_COLUMNS, ("category", "Category", 12), ("organisation", "Organisation", None))
MIN_NAME = 24
WIDE_FROM = 110  # table width from which category and organisation columns are shown


def column_plan(table_width: int) -> list[tuple[str, str, int]]:
    """Columns and widths that fill `table_width` (border, scrollbar and cell padding allowed for)."""
    columns = WIDE_COLUMNS if table_width >= WIDE_FROM else NARROW_COLUMNS
    room = table_width - 4 - 2 * len(columns) - sum(w or 0 for _k, _h, w in columns)
    flexible = [k for k, _h, w in columns if w is None]
    name = max(MIN_NAME, room * 3 // 5 if len(flexible) > 1 else room)
    rest = max(12, room - name)
    return [(k, h, w if w is not None else (name if k == "name" else rest)) for k, h, w in columns]


def uptake_sentence(u: directory.ServiceUptake | None) -> str:
    if u is None or not u.referrals:
        return "No referrals or signposts recorded on this laptop yet."
    kinds = ", ".join(f"{n} {ONWARD_KINDS[k].lower()}" for k, n in (
        ("signposted", u.signposted), ("referred", u.referred), ("accompanied", u.accompanied)) if n)  # fmt: skip
    parts = [f"{u.referrals} {'referral' if u.referrals == 1 else 'referrals'} ({kinds})"]
    if u.attendance_rate is not None:
        parts.append(
            f"attendance {100 * u.attendance_rate:.0f}% ({u.attended} of {u.known_outcome} with a known outcome)"
        )
    else:
        parts.append("attendance not known yet")
    if u.median_days_to_first_response is not None:
        parts.append(f"median {u.median_days_to_first_response:g} days to first response ({u.responses_timed} timed)")
    waiting = [f"{n} {w}" for n, w in ((u.waiting, "on a waiting list"), (u.pending, "awaiting outcome")) if n]
    if waiting:
        parts.append(", ".join(waiting))
    return " · ".join(parts)


def detail_content(service: CommunityService, uptake: directory.ServiceUptake | None, today: dt.date) -> Content:
    """Everything a worker needs before referring: warnings first, then contact, eligibility and uptake."""
    # Directory text comes from outside (HSDS, the server): never markup, escapes shown as placeholders.
    lines: list[Content] = [Content.styled(visible(service.name), "bold")]
    kinds = ", ".join(category_label(c) for c in service.categories or [])
    sub = " · ".join(p for p in (service.organisation, kinds, service.area) if p)
    if sub:
        lines.append(Content.styled(visible(sub), "$text-muted"))
    if not service.active:
        why = (
            f"withdrawn from its directory on {fmt_date(service.withdrawn_on)}"
            if service.withdrawn_on
            else "marked inactive in the directory; it may have closed"
        )
        lines.append(Content.styled(f"{INACTIVE_MARK}: {why}. Not offered for referral.", "bold $text-error"))
    if directory.is_stale(service, today):
        when = fmt_date(service.last_verified, "never")
        lines.append(
            Content.styled(
                f"{STALE_MARK}: last verified {when}, over 6 months ago; check the details before referring.",
                "bold $text-warning",
            )
        )
    # Descriptions come from HSDS and may carry HTML; shown as plain text, never as markup.
    description = html_to_text(service.description)
    if description:
        lines += [Content(""), Content(visible(description, multiline=True))]
    rows: list[tuple[str, str]] = [
        ("Uptake", uptake_sentence(uptake)),
        ("Phone", format_phone(service.phone)),
        ("Email", service.email),
        ("Web", service.url),
        ("Address", ", ".join(p for p in (service.address, service.postcode) if p)),
        ("Opening", service.opening_times),
        (
            "Eligibility",
            "; ".join(p for p in (html_to_text(service.eligibility), age_words(service.min_age, service.max_age)) if p),
        ),
        ("Languages", ", ".join(service.languages or [])),
        ("Cost", service.cost),
        ("How to refer", service.referral_route),
        ("Access", service.accessibility),
        ("Needs met", ", ".join(REFERRAL_REASONS.get(n, n) for n in service.needs or [])),
        ("Last verified", fmt_date(service.last_verified, "never")),
    ]
    width = max(len(label) for label, _ in rows) + 2
    lines.append(Content(""))
    for label, value in rows:
        if value:
            shown = Content(visible(value, multiline=True))
            lines.append(Content.assemble(Content.styled(label.ljust(width), "$text-muted"), shown))
    return Content("\n").join(lines)


def selected_key(table: DataTable[Any]) -> str | None:
    if table.row_count == 0:
        return None
    try:
        return table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value
    except Exception:  # noqa: BLE001 - no valid cursor row
        return None


# -- widgets --------------------------------------------------------------------------------------


class SearchInput(Input):
    """The search box: Esc clears it (or, when empty, goes to the results); Down and Enter go to the results."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "leave(True)", "Clear search", id="directory.search_clear"),
        Binding("down", "leave(False)", "To the results", show=False, id="directory.search_down"),
    ]

    def action_leave(self, clear: bool) -> None:
        if clear and self.value:
            self.value = ""
            return
        self.screen.set_focus(self.screen.query_one(ServiceTable))


class ServiceTable(RowTable):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "screen.search", "Search", show=False, id="directory.table_search"),
    ]


class ChoiceSet(RadioSet):
    """Radio buttons where moving is choosing: what is highlighted is what gets sent."""

    def __init__(self, *children: RadioButton, **kwargs: Any) -> None:
        super().__init__(*children, **kwargs)
        self._moving_chooses = False

    def on_mount(self, _event: Mount) -> None:
        # RadioSet's own mount handler (dispatched after this one) moves to the first button: not a choice, so
        # a button that starts pressed (a kept draft) stays pressed and highlighted.
        self.call_next(self._start_choosing)

    def _start_choosing(self) -> None:
        pressed = self.pressed_button
        if pressed is not None:
            hacks.highlight_radio_button(self, pressed)
        self._moving_chooses = True

    def action_next_button(self) -> None:
        super().action_next_button()
        if self._moving_chooses:
            self.action_toggle_button()

    def action_previous_button(self) -> None:
        super().action_previous_button()
        if self._moving_chooses:
            self.action_toggle_button()


class SuggestChangeModal(SaveCancelModal[tuple[str, str] | None]):
    """Tell the directory team a service closed or changed; it goes to the server with the next sync."""

    DEFAULT_CSS = "SuggestChangeModal { align: center middle; }\n" + MODAL_CSS
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Send", priority=True, id="suggest.save"),
        Binding("escape", "cancel", "Cancel", id="suggest.cancel"),
    ]

    def __init__(
        self, service_name: str, *, service_id: str | None = None, prefill: Mapping[str, Any] | None = None
    ) -> None:
        """`service_id` lets what is typed be kept across a lock; `prefill` is a kept draft ("change", "note")."""
        super().__init__()
        self.service_name = service_name
        self.service_id = service_id
        kept = prefill if isinstance(prefill, Mapping) else {}
        change, note = kept.get("change"), kept.get("note")
        self.start_kind = change if isinstance(change, str) and change in SUGGESTION_KINDS else "closed"
        self.start_note = note if isinstance(note, str) else ""
        self.restored = bool(kept)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(inert(f"Flag a change to {self.service_name}"), classes="dialog-title")
            yield Static(
                "The directory team checks it and updates the entry for everyone. "
                "Do not include anyone's personal details.",
                classes="muted",
            )
            with ChoiceSet(id="kind"):
                for kind, text in SUGGESTION_KINDS.items():
                    yield RadioChoice(text, value=kind == self.start_kind, id=f"kind-{kind}")
            yield FormField("What has changed (optional)", Input(self.start_note, id="note"), field="note")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Send (Ctrl+S)", id="save", variant="primary")
                yield Button("Cancel (Esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one(RadioSet).focus()

    def chosen(self) -> str:
        pressed = self.query_one(RadioSet).pressed_button
        return (pressed.id or "kind-closed").removeprefix("kind-") if pressed is not None else "closed"

    def typed(self) -> tuple[str, str]:
        """(kind, note) as the dialog shows them now."""
        if self.is_mounted:
            with contextlib.suppress(NoMatches):  # mounted but not composed yet
                return self.chosen(), self.query_one("#note", Input).value
        return self.start_kind, self.start_note

    def draft(self) -> tuple[str, dict[str, Any]] | None:
        """What to keep if the vault locks now: None until a note is typed (a restored one is always kept)."""
        if self.service_id is None:
            return None
        change, note = self.typed()
        if not self.restored and not note.strip():
            return None
        return flag_key(self.service_id), {
            "kind": "flag",
            "service_id": self.service_id,
            "service_name": self.service_name,
            "change": change,
            "note": note,
        }

    def action_save(self) -> None:
        self.dismiss((self.chosen(), self.query_one("#note", Input).value.strip()))

    def action_cancel(self) -> None:
        if self.restored and self.service_id is not None:
            # Seen after unlock and cancelled: no offer at the next unlock.
            discard_later(self.app, flag_key(self.service_id))
        self.dismiss(None)

    @on(Input.Submitted, "#note")
    def _note_submitted(self) -> None:
        self.action_save()


# -- the screen ------------------------------------------------------------------------------------


class DirectoryScreen(AreaScreen):
    """Community services: search, filters, results with stale and inactive marks, details, refer or signpost."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "search", "Search", id="directory.search", tooltip="Type a name, need, place or postcode"),
        Binding("r", "onward('referred')", "Refer", id="directory.refer", tooltip="Refer the person to this service"),
        Binding("s", "onward('signposted')", "Signpost", id="directory.signpost", tooltip="Signpost the person"),
        Binding(
            "f", "flag", "Flag change", id="directory.flag", tooltip="Tell the directory team it closed or changed"
        ),
        Binding("c", "filter('category')", "Category filter", show=False, id="directory.category"),
        Binding("n", "filter('need')", "Need filter", show=False, id="directory.need"),
        Binding("a", "filter('area')", "Area filter", show=False, id="directory.area"),
        Binding("0", "clear_filters", "Clear filters", show=False, id="directory.clear_filters"),
        Binding("i", "toggle_inactive", "Show or hide inactive", show=False, id="directory.inactive"),
    ]
    HELP = (
        "Type to search by name, need, place or postcode; c, n and a choose a category, need or area; 0 clears them. "
        "STALE means not verified for over 6 months; INACTIVE means it may have closed (i hides those). "
        "Opened from a person's record (f there), r refers and s signposts them, then Enter confirms."
    )
    AUTO_FOCUS = "#search"
    DEFAULT_CSS = """
    DirectoryScreen #for-person { height: auto; padding: 0 1; background: $boost; }
    DirectoryScreen #search-box { height: auto; padding: 0 1; }
    DirectoryScreen #search { width: 1fr; }
    DirectoryScreen #filters { height: 1; }
    DirectoryScreen #filters Select { width: 1fr; margin-right: 1; }
    DirectoryScreen #filters #inactive-note { width: auto; color: $text-muted; }
    DirectoryScreen #results { height: 1fr; }
    DirectoryScreen #detail { height: 1fr; padding: 0 1; }
    """

    def __init__(self, person_id: str | None = None) -> None:
        super().__init__()
        self.person_id = person_id
        self.person: Person | None = None
        self.person_reasons: list[str] = []
        self.text = ""
        self.category: str | None = None
        self.need: str | None = None
        self.area: str | None = None
        self.include_inactive = True
        self.total = 0
        self.rows: dict[str, directory.ServiceRow] = {}
        self.uptake: dict[str, directory.ServiceUptake] = {}
        self.shown: CommunityService | None = None
        self._generation = 0
        self._shown_before = False  # the first resume follows the mount, which read the filters
        self._loading_more = False
        self._columns: list[tuple[str, str, int]] = []

    @property
    def sprx(self) -> Shell:
        return self.app  # type: ignore[return-value]

    @property
    def store(self) -> CaseStore | None:
        return getattr(self.app, "store", None)

    @property
    def today(self) -> dt.date:
        return local(self.sprx.clock()).date()

    # -- layout ------------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield NavBar("directory")
        if self.person_id is not None:
            yield Static("Loading the person…", id="for-person")
        with Vertical(id="search-box", classes="pane"):
            yield SearchInput(id="search", placeholder="/ Search: service name, need, place or postcode", compact=True)
            with Horizontal(id="filters"):
                yield Select[str]([], prompt="Category: any", id="category", compact=True)
                yield Select[str](
                    [(label, code) for code, label in REFERRAL_REASONS.items()],
                    prompt="Need: any",
                    id="need",
                    compact=True,
                )
                yield Select[str]([], prompt="Area: any", id="area", compact=True)
                yield Static("", id="inactive-note")
        yield ServiceTable(id="results", cursor_type="row", zebra_stripes=True, classes="pane")
        with VerticalScroll(id="detail", classes="pane"):
            yield Static("", id="detail-body")
        yield StatusBar()
        yield KeysFooter()

    def on_mount(self) -> None:
        self.query_one("#search-box").border_title = "Search the directory"
        self.query_one("#detail").border_title = "Details"
        self._show_inactive_note()
        self._fit_columns()
        store = self.store
        if store is None:
            return
        self._load_filters(store)
        self._load_uptake(store)
        if self.person_id is not None:
            self._load_person(store, self.person_id)

    def on_screen_resume(self) -> None:
        # The directory may have changed by sync or import since this screen was last shown: the
        # results, and the categories and areas offered as filters (read on mount the first time).
        self.reload()
        if self._shown_before and self.store is not None:
            self._load_filters(self.store)
        self._shown_before = True

    # -- loading -----------------------------------------------------------------------------------

    def reload(self) -> None:
        store = self.store
        if store is None:
            return
        self._generation += 1
        self._loading_more = False
        self._search(store, self.text, self.category, self.need, self.area, self.include_inactive, 0, self._generation)

    def _load_more(self) -> None:
        table = self.query_one(ServiceTable)
        store = self.store
        if store is None or self._loading_more or table.row_count >= self.total:
            return
        self._loading_more = True
        self._search(
            store,
            self.text,
            self.category,
            self.need,
            self.area,
            self.include_inactive,
            table.row_count,
            self._generation,
        )

    @work(thread=True, exclusive=True, group="directory-search", exit_on_error=False, name="directory-search")
    def _search(
        self,
        store: CaseStore,
        text: str,
        category: str | None,
        need: str | None,
        area: str | None,
        include_inactive: bool,
        offset: int,
        generation: int,
    ) -> None:
        worker = get_current_worker()
        with store.lock:
            # Typing fast queues searches behind the lock; one already replaced by a newer keystroke is skipped.
            if worker.is_cancelled:
                return
            rows, total = directory.search_services(
                store, text, category, need, area, include_inactive=include_inactive, limit=PAGE, offset=offset
            )
        if not worker.is_cancelled:
            self.post_message(ServicesFound(rows, total, offset, generation))

    @work(thread=True, group="directory-filters", exit_on_error=False)
    def _load_filters(self, store: CaseStore) -> None:
        self.post_message(FiltersLoaded(directory.categories(store, include_inactive=True), directory.areas(store)))

    @work(thread=True, exclusive=True, group="directory-uptake", exit_on_error=False)
    def _load_uptake(self, store: CaseStore) -> None:
        self.post_message(UptakeLoaded({u.service_id: u for u in directory.uptake(store)}))

    @work(thread=True, exclusive=True, group="directory-detail", exit_on_error=False)
    def _load_detail(self, store: CaseStore, service_id: str) -> None:
        service = directory.get_service(store, service_id)
        found = directory.uptake(store, service_id) if service is not None else []
        if not get_current_worker().is_cancelled:
            self.post_message(ServiceShown(service, found[0] if found else None))

    @work(thread=True, group="directory-person", exit_on_error=False)
    def _load_person(self, store: CaseStore, person_id: str) -> None:
        person = store.queries.person(person_id)
        reasons: list[str] = []
        if person is not None:
            for referral in store.queries.referrals(person_id):
                if referral.status in ("received", "accepted"):
                    reasons += [r for r in referral.reasons or [] if r not in reasons]
        self.post_message(PersonContextLoaded(person, reasons))

    # -- showing what the workers found ------------------------------------------------------------

    @on(ServicesFound)
    def _services_found(self, message: ServicesFound) -> None:
        if message.generation != self._generation:
            return  # an older search's answer arrived late
        table = self.query_one(ServiceTable)
        self.total = message.total
        # (No rows found is never "the same page": the old rows must go.)
        if message.offset == 0 and message.rows and message.rows == list(self.rows.values())[: len(message.rows)]:
            # Another letter, the same first page (typing "walki" → "walkin"): nothing to redraw.
            self._show_titles()
            self._show_selected()
            return
        with self.app.batch_update():
            keep = None
            if message.offset == 0:
                keep = selected_key(table)
                table.clear()
                self.rows = {}
            for row in message.rows:
                if row.id not in self.rows:
                    self.rows[row.id] = row
                    self._add_row(table, row)
            if keep is not None and keep in table.rows:
                table.move_cursor(row=table.get_row_index(keep))
        self._loading_more = False
        self._show_titles()
        self.refresh_bindings()  # refer, signpost and flag need a service on the list
        if message.offset == 0:
            self._show_selected()

    @on(UptakeLoaded)
    def _uptake_loaded(self, message: UptakeLoaded) -> None:
        self.uptake = message.uptake
        table = self.query_one(ServiceTable)
        with self.app.batch_update():
            for key in list(table.rows):
                refs, attend = uptake_cells(self.uptake.get(str(key.value)))
                table.update_cell(key, "refs", refs)
                table.update_cell(key, "attend", attend)

    @on(FiltersLoaded)
    def _filters_loaded(self, message: FiltersLoaded) -> None:
        category = self.query_one("#category", Select)
        area = self.query_one("#area", Select)
        chosen = category.value, area.value
        # Select.set_options empties the choice: a filter the worker chose stays chosen if still offered.
        with self.prevent(Select.Changed):
            category.set_options([(inert(f"{category_label(c)} ({n})"), c) for c, n in message.categories])
            area.set_options([(inert(a), a) for a in message.areas])
            if chosen[0] in {c for c, _n in message.categories}:
                category.value = chosen[0]
            if chosen[1] in message.areas:
                area.value = chosen[1]
        if (category.value, area.value) != chosen:  # a chosen filter is no longer offered: search without it
            self.category = str(category.selection) if category.selection is not None else None
            self.area = str(area.selection) if area.selection is not None else None
            self.reload()

    @on(PersonContextLoaded)
    def _person_loaded(self, message: PersonContextLoaded) -> None:
        banner = self.query_one("#for-person", Static)
        if message.person is None:
            banner.update(Content.styled("That person's record could not be found; you can still search.", "bold"))
            self.person_id = None
            return
        self.person = message.person
        self.person_reasons = message.reasons
        pieces: list[Content | str] = [
            Content.styled("For: ", "bold"),
            Content.styled(visible(message.person.display_name), "bold"),
            f"  ·  {visible(nhs_display(message.person.nhs_number))}",
        ]
        if message.reasons:
            reasons = ", ".join(REFERRAL_REASONS.get(r, r).lower() for r in message.reasons)
            pieces.append("  ·  referred for " + visible(reasons))
        banner.update(Content.assemble(*pieces))

    def _add_row(self, table: ServiceTable, row: directory.ServiceRow) -> None:
        refs, attend = uptake_cells(self.uptake.get(row.id))
        cells: dict[str, str | Content] = {
            "status": marker(row, row.stale),
            "name": row.name,
            "area": row.area,
            "verified": fmt_date(row.last_verified, "never"),
            "refs": refs,
            "attend": attend,
            "category": ", ".join(category_label(c) for c in row.categories),
            "organisation": row.organisation,
        }
        widths = {k: w for k, _h, w in self._columns}
        # Rich Text, not str: DataTable reads a str as markup, and directory text is not ours ("[free]").
        shown = [
            v if isinstance(v, Content) else Text(fit(visible(v), widths[k]), end="")
            for k, v in cells.items()
            if k in widths
        ]
        table.add_row(*shown, key=row.id)

    def on_resize(self) -> None:
        self._fit_columns()

    def _fit_columns(self) -> None:
        """Lay the columns out for the table's width; rows already shown are put back."""
        table = self.query_one(ServiceTable)
        plan = column_plan(table.size.width or self.size.width or self.app.size.width)
        if plan == self._columns:
            return
        self._columns = plan
        keep = selected_key(table)
        with self.app.batch_update():
            table.clear(columns=True)
            for key, heading, width in plan:
                table.add_column(heading, key=key, width=width)
            for row in self.rows.values():
                self._add_row(table, row)
            if keep is not None and keep in table.rows:
                table.move_cursor(row=table.get_row_index(keep))

    def _show_titles(self) -> None:
        table = self.query_one(ServiceTable)
        filters = [
            category_label(self.category) if self.category else "",
            REFERRAL_REASONS.get(self.need, self.need) if self.need else "",
            self.area or "",
        ]
        what = " · ".join(f for f in filters if f)
        noun = "service" if self.total == 1 else "services"
        table.border_title = Content(visible(f"{self.total} {noun}" + (f" · {what}" if what else "")))
        position = table.cursor_row + 1 if table.row_count else 0
        table.border_subtitle = f"{position} / {self.total}"

    def _show_inactive_note(self) -> None:
        note = "" if self.include_inactive else "inactive hidden (i)"
        self.query_one("#inactive-note", Static).update(note)

    @on(DataTable.RowHighlighted, "#results")
    def _moved(self, event: DataTable.RowHighlighted) -> None:
        self._show_titles()
        self._show_selected()
        if event.cursor_row >= event.data_table.row_count - LOAD_MORE_MARGIN:
            self._load_more()

    def _show_selected(self) -> None:
        key = selected_key(self.query_one(ServiceTable))
        body = self.query_one("#detail-body", Static)
        if key is None:
            self.shown = None
            body.update(
                Content.styled("No services match. Try fewer words, or clear the filters with 0.", "$text-muted")
                if self.total == 0
                else ""
            )
            return
        if self.shown is not None and self.shown.id == key:
            return
        store = self.store
        if store is not None:
            self._load_detail(store, key)

    @on(ServiceShown)
    def _service_shown(self, message: ServiceShown) -> None:
        service = message.service
        if service is None:
            return
        if selected_key(self.query_one(ServiceTable)) != service.id:
            return  # the cursor has moved on
        self.shown = service
        if message.uptake is not None:
            self.uptake[service.id] = message.uptake
        self.query_one("#detail-body", Static).update(detail_content(service, message.uptake, self.today))
        self.query_one("#detail").scroll_home(animate=False)

    # -- search and filters ------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in {"onward", "flag"} and not self.rows:
            return None  # no service found: refer, signpost and flag are shown dimmed and do nothing
        return super().check_action(action, parameters)

    def action_search(self) -> None:
        # Synchronous, unlike Widget.focus(): keys typed straight after "/" must land in the box.
        self.set_focus(self.query_one(SearchInput))

    @on(Input.Changed, "#search")
    def _search_changed(self, event: Input.Changed) -> None:
        self.text = event.value
        self.reload()

    @on(Input.Submitted, "#search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.query_one(ServiceTable).focus()

    @on(Select.Changed)
    def _filter_changed(self, event: Select.Changed) -> None:
        value = event.select.selection
        chosen = str(value) if value is not None else None
        if event.select.id == "category":
            self.category = chosen
        elif event.select.id == "need":
            self.need = chosen
        elif event.select.id == "area":
            self.area = chosen
        else:
            return
        self.reload()

    def action_filter(self, which: str) -> None:
        select = self.query_one(f"#{which}", Select)
        select.focus()
        select.expanded = True

    def action_clear_filters(self) -> None:
        for which in ("category", "need", "area"):
            self.query_one(f"#{which}", Select).clear()
        self.category = self.need = self.area = None
        self.reload()

    def action_toggle_inactive(self) -> None:
        self.include_inactive = not self.include_inactive
        self._show_inactive_note()
        self.notify("Inactive services are shown, marked INACTIVE." if self.include_inactive
                    else "Inactive services are hidden.")  # fmt: skip
        self.reload()

    # -- refer, signpost, flag -----------------------------------------------------------------------

    def _highlighted(self) -> directory.ServiceRow | None:
        key = selected_key(self.query_one(ServiceTable))
        row = self.rows.get(key) if key is not None else None
        if row is None:
            sentence = "No services match, so there is none to choose." if not self.rows else "Choose a service first."
            self.notify(sentence, severity="warning")
        return row

    def _need_for(self, row: directory.ServiceRow) -> str | None:
        """The need met: the need filter if this service meets it, else the first of the person's it meets."""
        if self.need and self.need in row.needs:
            return self.need
        return next((r for r in self.person_reasons if r in row.needs), None)

    def action_onward(self, kind: str) -> None:
        """Refer or signpost the person this directory was opened for, after one confirming key."""
        if self.person_id is None:
            self.notify(
                "To refer or signpost someone, open the directory from their record (press f there).",
                severity="warning",
            )
            return
        if self.person is None:
            self.notify("The person's record is still loading; try again in a moment.")
            return
        row = self._highlighted()
        if row is None:
            return
        person_id, person_name, need = self.person_id, self.person.display_name, self._need_for(row)
        verb = "Refer" if kind == "referred" else "Signpost"
        question = f"{verb} {person_name} to {row.name}"
        question += f" for {REFERRAL_REASONS.get(need, need).lower()}?" if need else "?"
        if not row.active:
            self.notify(
                f"{visible(row.name)} is marked inactive (closed or withdrawn from its directory), so it is not "
                "offered for referral or signposting.",
                severity="warning",
                markup=False,
            )
            return
        warnings = []
        if row.stale:
            warnings.append("Its details were last verified over 6 months ago.")
        if warnings:
            question += "\n" + " ".join(warnings)

        store = self.store
        if store is None:
            return
        with store.lock:  # a handful of rows: the person's needs to choose from
            needs = [n for n in store.queries.needs(person_id) if not n.deleted]

        def answered(choice: dict[str, Any] | None) -> None:
            if choice is not None and self.store is not None:
                self._make_onward(self.store, person_id, person_name, row.id, row.name, kind, need, choice)

        self.app.push_screen(OnwardReferralModal(question, needs, kind=kind, start_need=need), answered)

    @work(thread=True, group="directory-write", exit_on_error=False, name="directory-write")
    def _make_onward(
        self,
        store: CaseStore,
        person_id: str,
        person_name: str,
        service_id: str,
        service_name: str,
        kind: str,
        need: str | None,
        choice: dict[str, Any],
    ) -> None:
        """`choice` is the dialog's: the Need row (or "" for none: the guessed category stays), note, consent."""
        store.service.refer_to_service(
            person_id,
            service_id,
            kind=kind,
            need=need,
            need_id=choice.get("need_id") or None,
            notes=choice.get("notes", ""),
            consent=bool(choice.get("consent")),
        )
        self.post_message(OnwardReferralMade(service_name, kind, person_name))

    @on(OnwardReferralMade)
    def _onward_made(self, message: OnwardReferralMade) -> None:
        verb = "referred" if message.kind == "referred" else "signposted"
        self.notify(f"{message.person_name} {verb} to {message.service_name}. It is on their onward referrals.")
        self._after_write()

    def action_flag(self) -> None:
        row = self._highlighted()
        if row is None:
            return
        self.open_flag(row.id, row.name)

    def open_flag(self, service_id: str, service_name: str, prefill: Mapping[str, Any] | None = None) -> None:
        """The 'flag a change' dialog for one service (`prefill`: a note kept across a lock)."""

        def answered(result: tuple[str, str] | None) -> None:
            store = self.store
            if result is not None and store is not None:
                self._suggest(store, service_id, service_name, *result)

        self.app.push_screen(SuggestChangeModal(service_name, service_id=service_id, prefill=prefill), answered)

    @work(thread=True, group="directory-write", exit_on_error=False, name="directory-write")
    def _suggest(self, store: CaseStore, service_id: str, service_name: str, kind: str, note: str) -> None:
        store.service.suggest_directory_change(service_id, kind, note)
        store.service.discard_draft(flag_key(service_id))
        self.post_message(ChangeSuggested(service_name, kind))

    @on(ChangeSuggested)
    def _change_suggested(self, message: ChangeSuggested) -> None:
        what = "has closed" if message.kind == "closed" else "has changed"
        self.notify(
            f"Thank you: you said {message.service_name} {what}. It goes to the directory team at the next sync."
        )
        self._after_write()

    def _after_write(self) -> None:
        store = self.store
        if store is None:
            return
        self.shown = None
        self._load_uptake(store)
        self._show_selected()
        refresh = getattr(self.app, "refresh_sync_summary", None)
        if callable(refresh):
            refresh()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.name == "directory-search" and event.state.name == "ERROR":
            self._loading_more = False
        worker_error(self, event)


def open_directory_for(app: App[Any], person_id: str) -> None:
    """Push the directory over the current screen, keeping `person_id` as the person to refer or signpost."""
    if getattr(app, "store", None) is None:
        return
    # With the person's record, in the records' own history (so F4 still shows the Directory area).
    push = getattr(app, "push_record", None)
    (push if callable(push) else app.push_screen)(DirectoryScreen(person_id))


# -- a "flag a change" note kept across a lock ------------------------------------------------------


def describe_draft(payload: dict[str, Any]) -> str:
    """How the offer after unlock names this draft (a service's name is directory data, not personal)."""
    name = payload.get("service_name")
    return f"an unsent note about a change to {name}" if isinstance(name, str) and name else "an unsent directory note"


def restore_draft(app: App[Any], key: str, payload: dict[str, Any]) -> None:
    """Open the Directory area and the 'flag a change' dialog with what was chosen and typed."""
    service_id = str(payload.get("service_id") or "")
    if payload.get("kind") != "flag" or not service_id:
        raise InvalidInput({"draft": "That unsent directory note does not say which service it is about."})
    name = payload.get("service_name")
    area = getattr(app, "action_area", None)
    if callable(area):
        area("directory")
    screen = next((s for s in reversed(app.screen_stack) if isinstance(s, DirectoryScreen)), None)
    if screen is None:
        screen = DirectoryScreen()
        app.push_screen(screen)
    prefill = {"change": payload.get("change"), "note": payload.get("note") or ""}
    screen.open_flag(service_id, name if isinstance(name, str) and name else "this service", prefill=prefill)
