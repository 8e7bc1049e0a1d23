"""A person's record: the safety header always in view; tabs for overview, referrals, contacts, plan, onward."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.await_remove import AwaitRemove
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.coordinate import Coordinate
from textual.lazy import Lazy
from textual.message import Message
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import DataTable, Static, TabbedContent, TabPane
from textual.worker import Worker, WorkerState

from sprx_rules.validate import format_phone
from sprx_tui import _textual_hacks as hacks
from sprx_tui import router
from sprx_tui.core import export
from sprx_tui.core.models import (
    DISCHARGE_REASONS,
    ONWARD_KINDS,
    ONWARD_OUTCOMES,
    REFERRAL_REASONS,
    REFERRAL_SOURCES,
    SAFETY_FLAGS,
    SNOMED_REFERRAL_ACCEPTED,
    Need,
    OnwardReferral,
    OutcomeResponse,
    Person,
    Referral,
    SafetyFlagChange,
    WhatMatters,
)
from sprx_tui.core.queries import GoalWithActions, TimelineEntry
from sprx_tui.drafts import discard_later
from sprx_tui.drawing import draw_now
from sprx_tui.inert import inert, inert_cells, visible
from sprx_tui.screens.contact import ContactSaved, ContactScreen, amend_contact_modal, entered_in_error_modal
from sprx_tui.screens.episode import DischargeModal, GpSummaryModal, WithdrawOnwardModal, need_words
from sprx_tui.screens.forms import fmt_date, local, worker_error
from sprx_tui.screens.questionnaire import MeasureChooser, MeasureCommands, QuestionnaireScreen
from sprx_tui.screens.referral import OnwardOutcomeModal, accept_referral_form, decline_reason_modal, referral_summary
from sprx_tui.widgets.goal_list import GoalList, WhatMattersList
from sprx_tui.widgets.keys_footer import KeysFooter
from sprx_tui.widgets.outcome_chart import OutcomesPanel
from sprx_tui.widgets.person_header import COMMUNICATION_NEEDS, PersonHeader, same_content
from sprx_tui.widgets.row_table import RowTable
from sprx_tui.widgets.timeline import ContactTimeline, contact_summary

# (pane id, tab title with its letter underlined, letter)
TABS: list[tuple[str, str, str]] = [
    ("overview", "O[u]v[/u]erview", "v"),
    ("referrals", "[u]R[/u]eferrals", "r"),
    ("contacts", "[u]C[/u]ontacts", "c"),
    ("plan", "[u]W[/u]hat matters + plan", "w"),
    ("onward", "[u]O[/u]nward", "o"),
    ("outcomes", "O[u]u[/u]tcomes", "u"),
]
TAB_IDS = [t[0] for t in TABS]

CONTACT_PREFERENCES = {"phone": "Phone", "text": "Text message", "email": "Email", "letter": "Letter", "visit": "Visit"}
GP_SHARING = {"full": "Full record", "codes_only": "Codes only", "none": "Nothing shared"}
URGENCY = {"routine": "Routine", "soon": "Soon", "urgent": "Urgent"}
REFERRAL_STATUS = {"received": "To triage", "accepted": "Accepted", "declined": "Declined", "closed": "Closed"}

# Actions that only make sense on one tab; hidden from the footer elsewhere.
TAB_ACTIONS = {
    "accept_referral": "referrals",
    "decline_referral": "referrals",
    "amend_contact": "contacts",
    "entered_in_error": "contacts",
    "onward_outcome": "onward",
    "withdraw_onward": "onward",
    "take_measure": "outcomes",
}


# -- messages (past tense: what the worker found or did) ----------------------------------------


@dataclass
class ForVisit(Message):
    """What a worker read or did for one opening of a person (`PersonScreen._visit`); None: the current one.
    The kept screen shows people one after another, and a late message for an earlier one is not shown."""

    visit: int | None = field(default=None, kw_only=True)


@dataclass
class PersonLoaded(ForVisit):
    person: Person | None
    flag_history: list[SafetyFlagChange] = field(default_factory=list)


@dataclass
class ReferralsLoaded(ForVisit):
    referrals: list[Referral]


@dataclass
class TimelineLoaded(ForVisit):
    entries: list[TimelineEntry]
    keep: str | None = None
    read: int = 0  # which read of the timeline this is (PersonScreen._timeline_reads); older ones are dropped
    # A contact form's save, shown while the form is still on top (see PersonScreen._hand_over_save): the
    # person read with it, and (the form, the new contact's id) to close once the record shows it.
    person: Person | None = None
    close: tuple[Screen[Any], str] | None = None


@dataclass
class PlanLoaded(ForVisit):
    what_matters: list[WhatMatters]
    goals: list[GoalWithActions]


@dataclass
class OnwardReferralsLoaded(ForVisit):
    onward: list[OnwardReferral]
    needs: list[Need] = field(default_factory=list)


@dataclass
class OutcomesLoaded(ForVisit):
    outcomes: list[OutcomeResponse]


@dataclass
class SummaryPreviewed(ForVisit):
    """The GP closing summary of an episode that had ended already, as it would be written (or the refusal
    sentence). An episode ended in the discharge dialog is previewed there (`DischargeModal`)."""

    text: str


@dataclass
class RecordChanged(ForVisit):
    """A write finished: reload these parts of the record and say what happened."""

    parts: tuple[str, ...]
    notice: str
    keep: str | None = None


# -- rendering helpers ----------------------------------------------------------------------------


def communication_needs_text(person: Person) -> str:
    """ "Interpreter: Polish · Hearing · Easy read" (with the words recorded), or "" when none are recorded."""
    parts = [f"Interpreter: {person.interpreter_language}"] if person.interpreter_language else []
    parts += [label for name, label in COMMUNICATION_NEEDS.items() if getattr(person, name, False)]
    if person.communication_needs:
        parts.append(person.communication_needs)
    return " · ".join(parts)


def flag_history_lines(person: Person, history: Sequence[SafetyFlagChange]) -> list[tuple[str, str]]:
    """Each current safety flag with who added it, when and why (the latest addition of it)."""
    rows = []
    for flag in person.safety_flags or []:
        added = next((h for h in history if h.flag == flag and h.change == "added"), None)
        # A flag this version does not know arrived from elsewhere: its name is shown inertly, as any record text.
        label = SAFETY_FLAGS.get(flag) or visible(flag.replace("_", " "))
        if added is None:
            rows.append((label, "recorded before flag history was kept"))
        else:
            when = fmt_date(local(added.changed_at).date())
            why = f": {added.reason}" if added.reason else ""
            rows.append((label, f"added {when} by {added.author or 'unknown'}{why}"))
    return rows


def overview_content(person: Person, today: dt.date, flag_history: Sequence[SafetyFlagChange] = ()) -> Content:
    """Contact details, communication needs and consent, one labelled line each; each safety flag's who/when."""

    def yes_no(value: bool) -> str:
        return "Yes" if value else "No"

    rows: list[tuple[str, str]] = [
        ("Address", ", ".join(p for p in (person.address, person.postcode) if p) or "Not recorded"),
        ("Phone", format_phone(person.phone) if person.phone else "Not recorded"),
        ("Email", person.email or "Not recorded"),
        (
            "Preferred contact",
            CONTACT_PREFERENCES.get(person.preferred_contact or "", person.preferred_contact or "") or "Not recorded",
        ),
        ("Communication needs", communication_needs_text(person) or "None recorded"),
        ("GP practice", person.gp_practice or "Not recorded"),
        ("Date of birth", fmt_date(person.date_of_birth, "Not recorded")),
        ("Consent: social prescribing", yes_no(person.consent_social_prescribing)),
        ("Consent: sharing with the GP", GP_SHARING.get(person.consent_gp_sharing, person.consent_gp_sharing)),
        ("Last contact", fmt_date(person.last_contact_on, "None yet")),
        ("Next follow-up", _follow_up_text(person.next_follow_up_on, today)),
    ]
    rows += [(f"Safety flag: {label}", text) for label, text in flag_history_lines(person, flag_history)]
    width = max(len(label) for label, _ in rows) + 2
    lines = [
        Content.assemble(Content.styled(label.ljust(width), "$text-muted"), Content(visible(value, multiline=True)))
        for label, value in rows
    ]
    return Content("\n").join(lines)


def _follow_up_text(due: dt.date | None, today: dt.date) -> str:
    if due is None:
        return "None due"
    if due < today:
        return f"{fmt_date(due)} (overdue)"
    if due == today:
        return f"{fmt_date(due)} (today)"
    return fmt_date(due)


def _code_name(referral: Referral) -> str:
    return " (referral to social prescribing service)" if referral.snomed_code == SNOMED_REFERRAL_ACCEPTED else ""


def referral_detail(referral: Referral) -> Content:
    parts: list[Content | str] = [
        Content.styled(visible(REFERRAL_SOURCES.get(referral.source, referral.source)), "bold"),
        f" · {visible(referral.referrer_name)}" if referral.referrer_name else "",
        "\n",
        Content(visible(referral.referral_text or "No referral text.", multiline=True)),
    ]
    if referral.status == "received":
        parts.append(Content.styled("\nPress a to accept with the first contact, d to decline.", "$text-muted"))
    if referral.decline_reason:
        parts.append(Content.styled(f"\nDeclined: {visible(referral.decline_reason, multiline=True)}", "$text-warning"))
    if referral.status == "closed" and referral.closed_on:
        why = DISCHARGE_REASONS.get(referral.close_reason or "", "Other")
        note = f" ({visible(referral.close_note, multiline=True)})" if referral.close_note else ""
        parts.append(Content.styled(f"\nEpisode ended {fmt_date(referral.closed_on)}: {why}{note}", "bold"))
    elif referral.status == "accepted":
        parts.append(Content.styled("\nPress D to end the episode (discharge).", "$text-muted"))
    if referral.snomed_code:
        parts.append(
            # Recorded here; whether it reaches the GP record is the practice server's (a demo vault sends nothing).
            Content.styled(
                f"\nRecorded as SNOMED CT {visible(referral.snomed_code)}{_code_name(referral)}", "$text-muted"
            )
        )
    return Content.assemble(*parts)


def selected_row_key(table: DataTable[Any]) -> str | None:
    if table.row_count == 0:
        return None
    try:
        return table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value
    except Exception:  # noqa: BLE001 - no valid cursor row
        return None


# -- the screen -------------------------------------------------------------------------------------


ONWARD_WIDE_FROM = 110
"""Below this many columns the onward referrals table leaves out Kind and cuts the service and need."""
ONWARD_NARROW_FIXED = 54
"""Made, Outcome and On (10 + 17 + 10), the cells' padding (10), the pane's padding, border and scrollbar (6),
and one spare column."""
ONWARD_LEAST = 8


class PersonScreen(hacks.KeepStylesOnResume):
    """One person's record. Only the header and the first tab load at once; other tabs load when shown.

    The app keeps one of these for the next person (`SprxApp.record_screen`): built once, it is emptied
    of its person as it leaves every screen stack (`_blank`) and shows the next one (`reuse_for`) without
    building its tabs and footer again. Every read is tagged with the opening it was made for (`_visit`),
    and a read made for an earlier opening is never shown.
    Shown again, it is not restyled when nothing its styles depend on has changed since it was last shown
    (`_textual_hacks.KeepStylesOnResume`, as the area screens): CPU p50 3-4 ms less an open, 5-12 ms less a person
    added (`bench_app.py child sprx --hacks-off keep_area_styles`, alternating).
    """

    DEFAULT_CSS = """
    PersonScreen { layout: vertical; }
    PersonScreen > TabbedContent { height: 1fr; }
    PersonScreen TabPane { padding: 0 1; height: 1fr; }
    PersonScreen #overview-scroll { height: 1fr; }
    PersonScreen DataTable { height: auto; max-height: 1fr; border: round $panel; }
    PersonScreen DataTable:focus { border: round $primary; }
    PersonScreen #referral-detail { height: auto; padding: 0 1; }
    PersonScreen #plan-pane-body { height: 1fr; }
    PersonScreen #plan-pane-body > WhatMattersList { max-height: 40%; }
    PersonScreen #plan-pane-body > GoalList { height: auto; max-height: 1fr; }
    PersonScreen .tab-hint { color: $text-muted; height: 1; padding: 0 1; }
    """

    BINDINGS = [
        Binding("n", "new_contact", "New contact", id="person.new_contact", tooltip="Record a contact"),
        Binding("p", "edit_plan", "Plan", id="person.edit_plan", tooltip="Open the plan editor"),
        Binding("a", "accept_referral", "Accept", id="person.accept_referral", tooltip="Accept with the first contact"),
        Binding("d", "decline_referral", "Decline", id="person.decline_referral", tooltip="Decline with a reason"),
        Binding("m", "amend_contact", "Amend", id="person.amend_contact", tooltip="Add an amendment to the contact"),
        Binding("e", "entered_in_error", "In error", id="person.entered_in_error", tooltip="Mark entered in error"),
        Binding("t", "onward_outcome", "Outcome", id="person.onward_outcome", tooltip="Record what happened"),
        Binding("x", "withdraw_onward", "Withdraw", id="person.withdraw_onward", tooltip="Withdraw one made wrongly"),
        Binding("D", "discharge", "Discharge", id="person.discharge", tooltip="End the episode; the GP summary next"),
        Binding("m", "take_measure", "Measure", id="person.take_measure", tooltip="Take an outcome questionnaire"),
        Binding("f", "find_service", "Find a service", id="person.find_service", show=False),
        Binding("i", "edit_details", "Details", id="person.edit_details", tooltip="Update their details and flags"),
        *[
            Binding(
                str(i),
                f"show_tab('{pane}')",
                f"{Content.from_markup(title).plain} tab",
                show=False,
                id=f"person.tab_{pane}",
            )
            for i, (pane, title, _letter) in enumerate(TABS, start=1)
        ],
        *[
            Binding(
                letter,
                f"show_tab('{pane}')",
                f"{Content.from_markup(title).plain} tab",
                show=False,
                id=f"person.tab_{pane}_letter",
            )
            for pane, title, letter in TABS
        ],
    ]

    COMMANDS = {MeasureCommands}
    # Focus as it was on a new screen, also on the kept one: nothing focused when a person is first shown (a new
    # screen's tabs were not mounted yet when it was shown), the first focusable widget when the screen is
    # shown again after a form with nothing focused (see on_screen_resume).
    AUTO_FOCUS = ""

    def __init__(self, person_id: str, tab: str | None = None, *, loaded: PersonLoaded | None = None) -> None:
        """`loaded`: the person as a worker has just read them (after adding them), so the header needs no read."""
        super().__init__()
        self.person_id = person_id
        self._preloaded = loaded if loaded is not None and loaded.person is not None else None
        self.initial_tab = tab if tab in TAB_IDS else "overview"
        self.person: Person | None = None
        self.flag_history: list[SafetyFlagChange] = []
        self.referrals: list[Referral] = []
        self.timeline: list[TimelineEntry] = []
        self.onward: list[OnwardReferral] = []
        self._loaded: set[str] = set()  # tabs whose data has been asked for at least once
        self._ready: dict[str, asyncio.Event] = {}  # tabs whose widgets are built (set once mounted)
        self._viewed = False
        self._stale = False  # the plan editor may have changed the record
        self._footer_tab = ""  # the tab whose keys the footer shows
        self._timeline_reads = 0  # numbers each read of the timeline, so a late older one never wins
        self._shown_save: str | None = None  # a saved contact shown before its form closed (_show_save)
        self._onward_narrow = False  # the onward table without its Kind column (a narrow terminal)
        self._visit = 0  # which opening of a person this is (reuse_for counts them); reads carry it
        self._built: set[str] = set()  # tabs whose widgets exist
        self._clearing: list[AwaitRemove] = []  # tabs' widgets being removed by _blank
        self._first_show = True  # the next ScreenResume shows a person for the first time (no focus given)

    # -- layout ----------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield PersonHeader(id="person-header")
        # The header (who, and how to visit safely) paints first; the tabs are mounted a frame later.
        with Lazy(TabbedContent(initial=self.initial_tab, id="tabs")):
            for pane, title, _letter in TABS:
                with TabPane(title, id=pane):
                    # Only the first tab's widgets exist at first; the others are built when first shown.
                    if pane == self.initial_tab:
                        self._built.add(pane)
                        yield from self._pane_widgets(pane)
        yield KeysFooter()

    @staticmethod
    def _pane_widgets(tab: str) -> list[Widget]:
        if tab == "overview":
            return [VerticalScroll(Static("", id="overview-body"), id="overview-scroll")]
        if tab == "referrals":
            return [
                RowTable(id="referrals-table", cursor_type="row", zebra_stripes=True, classes="pane"),
                Static("", id="referral-detail"),
            ]
        if tab == "contacts":
            return [ContactTimeline(id="timeline")]
        if tab == "plan":
            body = Vertical(
                WhatMattersList(id="what-matters"),
                GoalList(id="goals"),
                Static("Press p to edit the plan.", classes="tab-hint"),
                id="plan-pane-body",
            )
            return [body]
        if tab == "onward":
            return [
                RowTable(id="onward-table", cursor_type="row", zebra_stripes=True, classes="pane"),
                Static("", id="onward-needs", classes="tab-hint"),
                Static(
                    "Press t (or Enter) to record what happened, x to withdraw one made wrongly.", classes="tab-hint"
                ),
            ]
        return [
            OutcomesPanel(id="outcomes-panel", classes="pane"),
            Static("Press m to take a measure with the person (baseline, review or discharge).", classes="tab-hint"),
        ]

    def _set_up_pane(self, tab: str) -> None:
        """Columns and content that need the widgets mounted."""
        if tab == "overview" and self.person is not None:
            self.query_one("#overview-body", Static).update(
                overview_content(self.person, self.today, self.flag_history)
            )
        elif tab == "referrals":
            table = self.query_one("#referrals-table", DataTable)
            table.add_columns("Received", "From", "Reasons", "Urgency")
            table.add_column("Status", width=10)
        elif tab == "onward":
            table = self.query_one("#onward-table", DataTable)
            # On a narrow terminal (80x24) the dates and the outcome stay whole: Kind is left out, and the
            # service and the need are cut (ending in an ellipsis) to share what is left.
            self._onward_narrow = self.size.width < ONWARD_WIDE_FROM
            if self._onward_narrow:
                room = max(2 * ONWARD_LEAST, self.size.width - ONWARD_NARROW_FIXED)
                table.add_column("Service", width=room - room * 2 // 5)
                table.add_columns("Made")
                table.add_column("Need", width=room * 2 // 5)
                table.add_columns("Outcome", "On")
            else:
                table.add_columns("Service", "Kind", "Made", "Need", "Outcome", "On")

    async def _ensure_pane(self, tab: str, *, load: bool = True) -> None:
        """Build a tab's widgets the first time it is shown (twice-called safely), then load its data."""
        ready = self._ready.get(tab)
        if ready is not None:
            await ready.wait()
            return
        if tab not in TAB_IDS:
            return
        ready = self._ready[tab] = asyncio.Event()
        if tab not in self._built:  # the first tab's widgets came with the tabs themselves
            for removal in self._clearing:  # an earlier person's widgets of the same ids go first
                await removal
            self._clearing.clear()
            self._built.add(tab)
            await self.query_one(f"TabPane#{tab}", TabPane).mount_all(self._pane_widgets(tab))
        self._set_up_pane(tab)
        ready.set()
        if load:
            self._load_tab(tab)

    def on_mount(self) -> None:
        self._start()

    def _start(self) -> None:
        """Show the header from the person the screen was given, or read them."""
        if not self.person_id:  # built ahead, for no one yet (SprxApp._prepare_kept_record)
            return
        preloaded = self._preloaded
        if preloaded is not None and preloaded.person is not None and preloaded.person.id == self.person_id:
            preloaded.visit = self._visit
            self.post_message(preloaded)
            return
        self._load_person()

    def on_screen_resume(self) -> None:
        if self._first_show:
            self._first_show = False
        elif self.focused is None and self.focus_chain:
            self.set_focus(self.focus_chain[0])  # as Textual's own auto focus ("*") did
        if self._stale:
            self._stale = False
            self.reload("header", *self._loaded)

    def on_screen_suspend(self) -> None:
        on_a_stack = getattr(self.app, "on_a_stack", None)
        if callable(on_a_stack) and not on_a_stack(self):
            self._blank()  # closed, and kept for the next person: nothing of this one stays in it

    # -- one screen for one person after another ---------------------------------------------------------

    def reuse_for(self, person_id: str, tab: str | None = None, *, loaded: PersonLoaded | None = None) -> bool:
        """Make this screen, which is on no screen stack, show `person_id` when next pushed; False if it cannot
        (its tabs not built yet, or a tab still being built: then a new screen is made instead)."""
        tabs = self.query_one_optional(TabbedContent)
        if tabs is None or not self.is_running or any(not ready.is_set() for ready in self._ready.values()):
            return False
        self._blank()
        self._visit += 1
        self.person_id = person_id
        self._preloaded = loaded if loaded is not None and loaded.person is not None else None
        self.initial_tab = tab if tab in TAB_IDS else "overview"
        self._footer_tab = ""
        tabs.active = self.initial_tab
        self.set_focus(None)  # as on a new screen: nothing focused until a key or a tab moves it (AUTO_FOCUS)
        self._first_show = True
        self.call_later(self._ensure_pane, self.initial_tab)  # as the first TabActivated does on a new screen
        self.refresh_bindings()
        self._start()
        return True

    def _blank(self) -> None:
        """Forget the person shown: the header and overview emptied, every other tab's widgets removed (built
        again when next shown), and reads still in flight made stale (`_timeline_reads`; `_visit` at reuse)."""
        self.person = None
        self.flag_history = []
        self.referrals = []
        self.timeline = []
        self.onward = []
        self._loaded = set()
        self._viewed = False
        self._stale = False
        self._shown_save = None
        self._timeline_reads += 1
        header = self.query_one_optional(PersonHeader)
        if header is not None and header.person is not None:  # called again on a blank screen: nothing to redraw
            header.clear()
        overview = self.query_one_optional("#overview-body", Static)
        if overview is not None and str(overview.content):
            overview.update("")
        scroll = self.query_one_optional("#overview-scroll", VerticalScroll)
        if scroll is not None:
            scroll.scroll_home(animate=False, immediate=True)
        for tab in [t for t in self._built if t != "overview"]:
            pane = self.query_one_optional(f"TabPane#{tab}", TabPane)
            if pane is not None:
                self._clearing.append(pane.remove_children())
            self._built.discard(tab)
            self._ready.pop(tab, None)

    def _stale_read(self, message: ForVisit) -> bool:
        """A read made for an earlier person shown on this screen."""
        return message.visit is not None and message.visit != self._visit

    # -- loading ---------------------------------------------------------------------------------

    @property
    def store(self) -> Any:
        return self.app.store

    @property
    def today(self) -> dt.date:
        return local(self.app.clock()).date()

    def _load_person(self) -> None:
        self._read_person(self.store, self.person_id, self._visit)

    @work(thread=True, exclusive=True, group="person-header", exit_on_error=False)
    def _read_person(self, store: Any, person_id: str, visit: int) -> None:
        q = store.queries
        person = q.person(person_id)
        history = q.safety_flag_history(person_id) if person is not None and person.safety_flags else []
        self.post_message(PersonLoaded(person, history, visit=visit))

    @work(thread=True, group="person-view", exit_on_error=False)
    def _record_view(self, store: Any, person_id: str) -> None:
        # Who looked at whose record is audited once per opening, never per tab.
        store.service.record_view(person_id)

    def _tab_loader(self, tab: str) -> tuple[Widget, Callable[[], ForVisit]] | None:
        q = self.store.queries
        pid = self.person_id
        loaders: dict[str, tuple[str, Callable[[], ForVisit]]] = {
            "referrals": ("#referrals-table", lambda: ReferralsLoaded(q.referrals(pid))),
            "contacts": ("#timeline", lambda: TimelineLoaded(q.timeline(pid))),
            "plan": ("#plan-pane-body", lambda: PlanLoaded(q.what_matters(pid), q.plan(pid))),
            "onward": ("#onward-table", lambda: OnwardReferralsLoaded(q.onward_referrals(pid), q.needs(pid))),
            "outcomes": ("#outcomes-panel", lambda: OutcomesLoaded(q.outcomes(pid))),
        }
        if tab not in loaders:
            return None
        selector, fetch = loaders[tab]
        return self.query_one(selector), fetch

    def _load_tab(self, tab: str, keep: str | None = None) -> None:
        """Fetch one tab's data in a thread; the overview comes with the person, so it needs nothing."""
        loader = self._tab_loader(tab)
        self._loaded.add(tab)
        if loader is None:
            return
        widget, fetch = loader
        if tab == "contacts":
            self._timeline_reads += 1
        read = self._timeline_reads
        visit = self._visit

        def run() -> None:
            message = fetch()
            if isinstance(message, TimelineLoaded):
                message.keep = keep
                message.read = read
            message.visit = visit
            self.post_message(message)

        widget.loading = True
        self.run_worker(run, thread=True, exclusive=True, group=f"person-tab-{tab}", exit_on_error=False)

    def reload(self, *parts: str, keep: str | None = None) -> None:
        """Reload the header and any of the tabs already shown; tabs never shown stay unloaded."""
        for part in dict.fromkeys(parts):
            if part == "header":
                self._load_person()
            elif part in self._loaded:
                self._load_tab(part, keep=keep)

    @on(TabbedContent.TabActivated)
    async def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        tab = event.pane.id or ""
        if tab in TAB_ACTIONS.values() or self._footer_tab in TAB_ACTIONS.values():
            # Only when the tab's own keys (accept, amend, ...) appear or go: each refresh rebuilds the footer.
            self.refresh_bindings()
        self._footer_tab = tab
        await self._ensure_pane(tab)

    # -- showing what the workers found ------------------------------------------------------------

    @on(PersonLoaded)
    def _person_loaded(self, message: PersonLoaded) -> None:
        if self._stale_read(message):
            return
        if message.person is None:
            self.notify("That person's record could not be found; it may have been removed.", severity="error")
            return
        self.person = message.person
        self.flag_history = message.flag_history
        self.query_one(PersonHeader).show_person(message.person, self.today)
        if not self._viewed:
            # After the header is on screen: the audit write (a commit) must not delay the first paint.
            self._viewed = True
            self._record_view(self.store, self.person_id)
        overview = self.query_one_optional("#overview-body", Static)
        if overview is not None:
            overview.update(overview_content(message.person, self.today, self.flag_history))
        draw_now(self)

    @on(ReferralsLoaded)
    def _referrals_loaded(self, message: ReferralsLoaded) -> None:
        if self._stale_read(message):
            return
        self.referrals = message.referrals
        table = self.query_one("#referrals-table", DataTable)
        keep = selected_row_key(table)
        table.clear()
        for r in message.referrals:
            reasons = ", ".join(REFERRAL_REASONS.get(x, x) for x in r.reasons or [])
            status = REFERRAL_STATUS.get(r.status, r.status)
            status = visible(status)
            status_cell = Content.styled(status, "bold $text-warning") if r.status == "received" else Content(status)
            cells = inert_cells(
                fmt_date(r.received_on),
                REFERRAL_SOURCES.get(r.source, r.source),
                reasons,
                URGENCY.get(r.urgency, r.urgency),
            )
            table.add_row(*cells, status_cell, key=r.id)
        table.loading = False
        table.border_title = "Referrals"
        self._restore_cursor(table, keep)
        self._show_referral_detail()

    @on(DataTable.RowHighlighted, "#referrals-table")
    def _show_referral_detail(self) -> None:
        key = selected_row_key(self.query_one("#referrals-table", DataTable))
        referral = next((r for r in self.referrals if r.id == key), None)
        detail = self.query_one("#referral-detail", Static)
        detail.update(referral_detail(referral) if referral else "No referrals recorded.")

    @on(TimelineLoaded)
    async def _timeline_loaded(self, message: TimelineLoaded) -> None:
        if self._stale_read(message):
            return
        if message.close is not None:
            await self._show_save(message)
            return
        if message.read < self._timeline_reads:
            return  # a read started before a newer one (a save's); the newer one is, or will be, shown
        self.timeline = message.entries
        timeline = self.query_one(ContactTimeline)
        timeline.show_entries(message.entries, keep=message.keep)
        timeline.loading = False
        draw_now(self)

    @on(PlanLoaded)
    def _plan_loaded(self, message: PlanLoaded) -> None:
        if self._stale_read(message):
            return
        self.query_one(WhatMattersList).show_rows(message.what_matters)
        self.query_one(GoalList).show_plan(message.goals)
        self.query_one("#plan-pane-body").loading = False

    @on(OnwardReferralsLoaded)
    def _onward_loaded(self, message: OnwardReferralsLoaded) -> None:
        if self._stale_read(message):
            return
        self.onward = message.onward
        table = self.query_one("#onward-table", DataTable)
        keep = selected_row_key(table)
        table.clear()
        for o in message.onward:
            withdrawn = o.withdrawn_on is not None
            cells = inert_cells(
                o.service_name,
                ONWARD_KINDS.get(o.kind, o.kind),
                fmt_date(o.made_on),
                REFERRAL_REASONS.get(o.need or "", o.need or ""),
                "WITHDRAWN" if withdrawn else ONWARD_OUTCOMES.get(o.outcome, o.outcome),
                fmt_date(o.withdrawn_on if withdrawn else o.outcome_on),
            )
            if self._onward_narrow:
                del cells[1]  # Kind (see _set_up_pane)
                for cut in (cells[0], cells[2]):
                    cut.overflow = "ellipsis"
            table.add_row(*cells, key=o.id)
        table.loading = False
        table.border_title = "Onward referrals"
        needs = [n for n in message.needs if not n.deleted]
        self.query_one("#onward-needs", Static).update(
            inert("Needs: " + "; ".join(need_words(n) for n in needs))
            if needs
            else "No needs recorded yet: add them in the plan (p, then n)."
        )
        gone = sum(1 for o in message.onward if o.withdrawn_on is not None)
        table.border_subtitle = f"{len(message.onward)} made" + (f", {gone} withdrawn" if gone else "")
        self._restore_cursor(table, keep)

    @on(OutcomesLoaded)
    async def _outcomes_loaded(self, message: OutcomesLoaded) -> None:
        if self._stale_read(message):
            return
        panel = self.query_one(OutcomesPanel)
        await panel.show_outcomes(message.outcomes)
        panel.loading = False

    @staticmethod
    def _restore_cursor(table: DataTable[Any], keep: str | None) -> None:
        if keep is None:
            return
        if keep in table.rows:
            table.move_cursor(row=table.get_row_index(keep))

    # -- actions ---------------------------------------------------------------------------------

    @property
    def active_tab(self) -> str:
        tabs = self.query_one_optional(TabbedContent)
        return tabs.active if tabs is not None else ""

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        tab = TAB_ACTIONS.get(action)
        if tab is not None and self.active_tab != tab:
            return False
        return True

    async def action_show_tab(self, tab: str) -> None:
        """Switch tab and put the keyboard on its list."""
        tabs = self.query_one_optional(TabbedContent)
        if tabs is None:  # the tabs mount a frame after the header
            return
        tabs.active = tab
        await self._ensure_pane(tab)
        focus = {
            "referrals": "#referrals-table",
            "contacts": "#timeline",
            "plan": "#goals",
            "onward": "#onward-table",
            "outcomes": "#outcomes-panel",
        }.get(tab)
        target = self.query_one(focus) if focus else tabs.query_one("ContentTabs")
        # After the refresh: a pane built just now is not focusable until it has been laid out.
        self.call_after_refresh(self._focus_when_ready, target, self.focused, 10)

    def _focus_when_ready(self, target: Widget, was: Widget | None, tries: int) -> None:
        """Focus `target` once it can take focus, unless the worker has moved focus in the meantime."""
        if target.has_focus or tries <= 0 or not target.is_attached:
            return
        if self.focused is not was and self.focused is not None:
            return  # the worker moved on; do not steal focus back
        target.focus()
        if not target.has_focus:
            self.set_timer(0.02, lambda: self._focus_when_ready(target, was, tries - 1))

    def action_new_contact(self) -> None:
        """Record a contact with this person (also offered in the command palette)."""
        self.open_contact_form()

    def open_contact_form(self, *, referral_id: str | None = None, prefill: dict[str, Any] | None = None) -> None:
        if referral_id:
            screen = accept_referral_form(self.person_id, referral_id)
        else:
            screen = ContactScreen(self.person_id)
        if prefill is not None:
            screen.prefill = dict(prefill)
        screen.hand_over = self._hand_over_save
        self.app.push_screen(
            screen, lambda contact_id: self._contact_closed(contact_id, screen.saved_timeline, bool(referral_id))
        )
        # While the worker writes the note, build the contacts tab behind the form (once per screen), so
        # that after a save only the new timeline is loaded and shown.
        if self.query_one_optional(TabbedContent) is not None:
            self.call_later(self._ensure_pane, "contacts")

    async def _contact_closed(
        self, contact_id: str | None, timeline: list[TimelineEntry] | None = None, accepted: bool = True
    ) -> None:
        """After the form: show the new contact; re-read the header, and the referrals if one was accepted."""
        if contact_id is None:
            return
        if contact_id == self._shown_save:  # shown already, with the person read after the save
            self._shown_save = None
            if accepted:
                self.reload("referrals")
            timeline = self.query_one(ContactTimeline)
            if not timeline.has_focus:  # it could not take focus behind the form
                self.call_after_refresh(self._focus_when_ready, timeline, self.focused, 10)
            return
        others = ("header", "referrals") if accepted else ("header",)
        # The new contact is shown at the top of the timeline, which is built and loaded if it was not.
        if timeline is not None and self.query_one_optional(TabbedContent) is not None:
            # The save's worker read the timeline already; the tab was most likely built behind the form.
            await self._ensure_pane("contacts", load=False)
            self._loaded.add("contacts")
            self._timeline_reads += 1
            self.post_message(TimelineLoaded(timeline, keep=contact_id, read=self._timeline_reads, visit=self._visit))
            self.reload(*others)
        else:
            self.reload(*others, "contacts", keep=contact_id)
        await self.action_show_tab("contacts")

    def _hand_over_save(self, saved: ContactSaved, form: Screen[Any]) -> None:
        """The contact form saved: show the save here, behind the form, then close it (in `_show_save`)."""
        if saved.timeline is None:
            self.notify("Contact saved")
            form.dismiss(saved.contact_id)
            return
        self._timeline_reads += 1
        read = self._timeline_reads
        close = (form, saved.contact_id)
        message = TimelineLoaded(saved.timeline, saved.contact_id, read, saved.person, close, visit=self._visit)
        self.post_message(message)

    async def _show_save(self, message: TimelineLoaded) -> None:
        """Put a save on this screen while the form is still on top: the new timeline with the highlight on
        the new contact, the contacts tab shown and focused, the header and overview where the person read
        after the save changed them. Then close the form, so the first frame drawn after it (one layout of
        this screen, as it resumes) shows all of it, and nothing else is read again."""
        assert message.close is not None
        form, contact_id = message.close
        if self.query_one_optional(TabbedContent) is None or message.read < self._timeline_reads:
            self.notify("Contact saved")
            form.dismiss(contact_id)  # the tabs are not mounted yet, or a newer read came: _contact_closed
            return
        await self._ensure_pane("contacts", load=False)
        self._loaded.add("contacts")
        if message.person is not None and message.person.id == self.person_id:
            self._show_person(message.person)
        self.timeline = message.entries
        timeline = self.query_one(ContactTimeline)
        timeline.show_entries(message.entries, keep=contact_id)
        timeline.loading = False
        self.query_one(TabbedContent).active = "contacts"
        self.set_focus(timeline, scroll_visible=False)
        self._shown_save = contact_id
        form.dismiss(contact_id)
        draw_now(self)  # this screen is current now: draw it with all of the above in one frame
        # The toast after that frame: mounted now, it would be laid out and drawn in it (twice: on the form
        # first, then again here as this screen resumes).
        self.call_after_refresh(self.notify, "Contact saved")

    def _show_person(self, person: Person) -> None:
        """A person read again (their flags unchanged): the header and the overview, each only if it changed."""
        self.person = person
        self.query_one(PersonHeader).show_person(person, self.today)
        overview = self.query_one_optional("#overview-body", Static)
        if overview is not None:
            content = overview_content(person, self.today, self.flag_history)
            if not same_content(overview.content, content):
                overview.update(content)

    def action_take_measure(self) -> None:
        """Choose a questionnaire and time point, then take it with the person."""
        self.open_measure()

    def open_measure(
        self, code: str | None = None, time_point: str | None = None, draft: dict[str, Any] | None = None
    ) -> None:
        """The questionnaire itself when both are given (from the palette, or a kept draft), else the chooser first."""
        if code is not None and time_point is not None:
            screen = QuestionnaireScreen(self.person_id, code, time_point, draft=draft)
            self.app.push_screen(screen, self._measure_closed)
            return

        def chosen(choice: tuple[str, str] | None) -> None:
            if choice is not None:
                self.open_measure(*choice)

        self.app.push_screen(MeasureChooser(self.person_id, code), chosen)

    async def _measure_closed(self, row_id: str | None) -> None:
        if row_id is None:
            return
        self.reload("outcomes")  # when the tab has been shown; otherwise showing it loads it
        await self.action_show_tab("outcomes")

    def action_edit_plan(self) -> None:
        self.open_plan()

    def open_plan(self) -> Any:
        """Push the plan editor (it is returned so a kept draft can reopen one of its forms)."""
        self._stale = True
        screen = router.screen_class("plan")(self.person_id)  # type: ignore[call-arg]
        self.app.push_screen(screen)
        return screen

    def action_edit_details(self) -> None:
        """Their details in the person form, filled from the record (also offered in the command palette)."""
        self.open_details()

    def open_details(self, prefill: dict[str, Any] | None = None) -> None:
        """Push the details form; `prefill` is what was typed before a lock. Saving reloads the header."""
        person = self.person or self.store.queries.person(self.person_id)
        if person is None:
            self.notify("That person's record could not be found; it may have been removed.", severity="error")
            return
        screen = router.screen_class("person_form")(person, prefill=prefill)  # type: ignore[call-arg]

        def closed(saved: str | None) -> None:
            if saved is not None:
                self.reload("header")

        self.app.push_screen(screen, closed)

    def action_find_service(self) -> None:
        """The directory, keeping this person as the one to refer or signpost (r or s there)."""
        self._stale = True
        self.app.post_message(router.OpenDirectoryFor(self.person_id))

    def _selected_referral(self) -> Referral | None:
        table = self.query_one_optional("#referrals-table", DataTable)
        key = selected_row_key(table) if table is not None else None
        return next((r for r in self.referrals if r.id == key), None)

    def _undecided_referral(self) -> Referral | None:
        referral = self._selected_referral()
        if referral is None:
            self.notify("Choose a referral first.", severity="warning")
            return None
        if referral.status != "received":
            self.notify("This referral has already been decided.", severity="warning")
            return None
        return referral

    def action_accept_referral(self) -> None:
        referral = self._undecided_referral()
        if referral is not None:
            self.open_contact_form(referral_id=referral.id)

    def action_decline_referral(self) -> None:
        referral = self._undecided_referral()
        if referral is not None:
            self.open_decline_form(referral.id, referral_summary(referral))

    def open_decline_form(self, referral_id: str, summary: str, prefill: dict[str, Any] | None = None) -> None:
        """The decline dialog; `prefill` is a reason kept at a lock. Declining discards that draft."""
        modal = decline_reason_modal(self.person_id, referral_id, summary, prefill=prefill)

        def answered(values: dict[str, str] | None) -> None:
            if values:
                self._write(
                    lambda: self.store.service.decline_referral(
                        referral_id, values.get("reason", ""), code=values.get("code") or "other"
                    ),
                    ("header", "referrals"),
                    "Referral declined",
                    draft_key=modal.draft_key,
                )
            elif modal.restored and modal.draft_key:
                discard_later(self.app, modal.draft_key)

        self.app.push_screen(modal, answered)

    def _selected_contact(self) -> TimelineEntry | None:
        timeline = self.query_one_optional(ContactTimeline)
        contact_id = timeline.selected_contact_id if timeline is not None else None
        entry = next((e for e in self.timeline if e.contact.id == contact_id), None)
        if entry is None:
            self.notify("Choose a contact first.", severity="warning")
        return entry

    def _contact_named(self, contact_id: str) -> str:
        """The contact a dialog changes, named in one line; read now if the timeline is not (a restored draft)."""
        entries = self.timeline
        if not any(e.contact.id == contact_id for e in entries) and self.store is not None:
            with self.store.lock:
                entries = self.store.queries.timeline(self.person_id)
        entry = next((e for e in entries if e.contact.id == contact_id), None)
        return contact_summary(entry.contact) if entry is not None else ""

    def action_amend_contact(self) -> None:
        entry = self._selected_contact()
        if entry is not None:
            self.open_amend_form(entry.contact.id)

    def open_amend_form(self, contact_id: str, prefill: dict[str, Any] | None = None) -> None:
        """The amendment dialog; `prefill` is text kept at a lock. Saving discards that draft."""
        modal = amend_contact_modal(self.person_id, contact_id, prefill=prefill, about=self._contact_named(contact_id))

        def answered(values: dict[str, str] | None) -> None:
            if values:
                self._write(
                    lambda: self.store.service.amend_contact(contact_id, values["text"], values.get("reason", "")),
                    ("contacts",),
                    "Amendment added",
                    keep=contact_id,
                    draft_key=modal.draft_key,
                )
            elif modal.restored and modal.draft_key:
                discard_later(self.app, modal.draft_key)

        self.app.push_screen(modal, answered)

    def action_entered_in_error(self) -> None:
        entry = self._selected_contact()
        if entry is None:
            return
        if entry.contact.entered_in_error:
            self.notify("This contact is already marked as entered in error.", severity="warning")
            return
        self.open_in_error_form(entry.contact.id)

    def open_in_error_form(self, contact_id: str, prefill: dict[str, Any] | None = None) -> None:
        """The entered-in-error dialog; `prefill` is a reason kept at a lock. Saving discards that draft."""
        modal = entered_in_error_modal(
            self.person_id, contact_id, prefill=prefill, about=self._contact_named(contact_id)
        )

        def answered(values: dict[str, str] | None) -> None:
            if values:
                self._write(
                    lambda: self.store.service.mark_entered_in_error(contact_id, values["reason"]),
                    ("contacts", "header"),
                    "Contact marked as entered in error",
                    keep=contact_id,
                    draft_key=modal.draft_key,
                )
            elif modal.restored and modal.draft_key:
                discard_later(self.app, modal.draft_key)

        self.app.push_screen(modal, answered)

    @on(DataTable.RowSelected, "#onward-table")
    def _onward_row_chosen(self) -> None:
        self.action_onward_outcome()

    def action_onward_outcome(self) -> None:
        table = self.query_one_optional("#onward-table", DataTable)
        key = selected_row_key(table) if table is not None else None
        onward = next((o for o in self.onward if o.id == key), None)
        if onward is None:
            self.notify("Choose an onward referral first.", severity="warning")
            return
        if onward.withdrawn_on is not None:
            self.notify("This onward referral was withdrawn, so it has no outcome to record.", severity="warning")
            return

        def answered(outcome: str | None) -> None:
            if outcome:
                self._write(
                    lambda: self.store.service.record_onward_outcome(onward.id, outcome),
                    ("onward",),
                    "Outcome recorded",
                )

        self.app.push_screen(OnwardOutcomeModal(onward.service_name, onward.outcome), answered)

    def action_withdraw_onward(self) -> None:
        table = self.query_one_optional("#onward-table", DataTable)
        key = selected_row_key(table) if table is not None else None
        onward = next((o for o in self.onward if o.id == key), None)
        if onward is None:
            self.notify("Choose an onward referral first.", severity="warning")
            return
        if onward.withdrawn_on is not None:
            self.notify("This onward referral was already withdrawn.", severity="warning")
            return
        about = (
            f"{onward.service_name}, {ONWARD_KINDS.get(onward.kind, onward.kind).lower()} on {fmt_date(onward.made_on)}"
        )

        def answered(result: tuple[str, str] | None) -> None:
            if result:
                code, words = result
                self._write(
                    lambda: self.store.service.withdraw_onward_referral(onward.id, code, words),
                    ("onward",),
                    "Onward referral withdrawn; it stays in the record",
                    keep=onward.id,
                )

        self.app.push_screen(WithdrawOnwardModal(about), answered)

    # -- the end of the episode, and the GP closing summary -------------------------------------------

    def action_discharge(self) -> None:
        """End the episode with a reason (a final measure first, if wanted), then offer the GP summary."""
        self.open_discharge()

    def open_discharge(self) -> None:
        person = self.person
        if person is None:
            self.notify("The person's record is still loading; try again in a moment.")
            return
        if person.status in ("discharged", "declined", "did_not_engage"):
            # Ended already: the summary can still be made (say, after the final measure came in).
            self._preview_summary(self.store, self.person_id)
            return

        store, person_id = self.store, self.person_id

        def answered(result: tuple[str, str] | None) -> None:
            if result == DischargeModal.MEASURE:
                self._measure_then_discharge()
                return
            if modal.ended is not None:  # ended in the dialog; its second step, the summary, was closed
                self._record_changed(RecordChanged(("header", "referrals"), f"Episode ended: {modal.ended}"))
                if result is not None and result[0] == DischargeModal.WRITE:
                    self._write_summary(store, person_id, result[1])

        modal = DischargeModal(
            person.display_name,
            person.consent_gp_sharing,
            end_episode=lambda reason, note: self._end_episode(store, person_id, reason, note),
            default_path=self._summary_path(),
        )
        self.app.push_screen(modal, answered)

    def _measure_then_discharge(self) -> None:
        def measured(_row_id: str | None) -> None:
            self.reload("outcomes")
            self.open_discharge()

        def chosen(choice: tuple[str, str] | None) -> None:
            if choice is None:
                self.open_discharge()
                return
            self.app.push_screen(QuestionnaireScreen(self.person_id, *choice), measured)

        self.app.push_screen(MeasureChooser(self.person_id, None), chosen)

    @staticmethod
    def _end_episode(store: Any, person_id: str, reason: str, note: str) -> tuple[str, str]:
        """End the episode; the GP summary's preview and the sharing it was made for (run by the discharge
        dialog's worker thread). The record under the dialog is re-read when it closes."""
        store.service.discharge(person_id, reason, note)
        summary = export.closing_summary(store, person_id, audit=False)
        sharing = "none" if isinstance(summary, str) else summary["consent"]
        return export.render_closing_summary(summary), sharing

    def _preview_summary(self, store: Any, person_id: str) -> None:
        self._read_summary(store, person_id, self._visit)

    @work(thread=True, group="person-summary", exit_on_error=False)
    def _read_summary(self, store: Any, person_id: str, visit: int) -> None:
        # The preview is shown, not sent: audited only when it is written.
        summary = export.closing_summary(store, person_id, audit=False)
        self.post_message(SummaryPreviewed(export.render_closing_summary(summary), visit=visit))

    def _summary_path(self) -> str:
        return f"~/gp-summary-{self.today.isoformat()}.fhir.json"  # no name or number in a file name

    @on(SummaryPreviewed)
    def _summary_previewed(self, message: SummaryPreviewed) -> None:
        if self._stale_read(message):
            return
        person = self.person
        sharing = person.consent_gp_sharing if person is not None else "full"
        default = self._summary_path()
        store, person_id = self.store, self.person_id

        def answered(path: str | None) -> None:
            if path:
                self._write_summary(store, person_id, path)

        self.app.push_screen(GpSummaryModal(message.text, sharing, default), answered)

    @work(thread=True, group="person-summary-write", exit_on_error=False)
    def _write_summary(self, store: Any, person_id: str, path: str) -> None:
        written, letter = export.write_gp_summary(store, person_id, Path(path).expanduser())
        self.post_message(RecordChanged((), f"GP summary written to {written}, the letter to {letter}. Not encrypted."))

    # -- writes ------------------------------------------------------------------------------------

    def _write(
        self,
        change: Callable[[], object],
        parts: Sequence[str],
        notice: str,
        keep: str | None = None,
        draft_key: str | None = None,
    ) -> None:
        """Run one service call in a thread, then reload the parts it touched (and drop the form's kept draft)."""
        store, visit = self.store, self._visit

        def run() -> None:
            change()
            if draft_key:
                store.service.discard_draft(draft_key)
            self.post_message(RecordChanged(tuple(parts), notice, keep, visit=visit))

        # Not exclusive: a queued write must never be cancelled by the next one.
        self.run_worker(run, thread=True, group="person-write", exit_on_error=False)

    @on(RecordChanged)
    def _record_changed(self, message: RecordChanged) -> None:
        self.notify(message.notice)  # said even if another person is shown by now: it was done
        if not self._stale_read(message):
            self.reload(*message.parts, keep=message.keep)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            for widget in self.query("DataTable, ContactTimeline, #plan-pane-body, PersonHeader, OutcomesPanel"):
                widget.loading = False
            worker_error(self, event)
