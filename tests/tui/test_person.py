"""The person record, contact entry, referral triage and the plan editor, driven by keys against a real vault."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select
from textual.app import App
from textual.binding import Binding
from textual.pilot import Pilot
from textual.widgets import Input, Static, TextArea

from sprx_tui.core.models import (
    SNOMED_REFERRAL_ACCEPTED,
    SNOMED_SP_DECLINED,
    AuditEvent,
    Contact,
)
from sprx_tui.core.store import CaseStore
from sprx_tui.screens.contact import ContactScreen, ModePicker, draft_key, restore_draft
from sprx_tui.screens.episode import DeclineModal
from sprx_tui.screens.forms import ConfirmModal, local
from sprx_tui.screens.person import PersonScreen
from sprx_tui.screens.plan import PlanFormModal, PlanScreen
from sprx_tui.widgets.goal_list import GoalList
from sprx_tui.widgets.person_header import PersonHeader
from sprx_tui.widgets.timeline import ContactTimeline
from tests.tui.conftest import FROZEN_NOW, frozen_clock
from tests.tui.settling import settle, wait_until

SIZE = (120, 40)


@pytest.fixture(autouse=True)
def _config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The app shell reads its settings file; never the developer's own."""
    monkeypatch.setenv("SPRX_CONFIG_DIR", str(tmp_path / "config"))


class PersonTestApp(App[None]):
    """Just enough of the app shell for these screens: a store, a clock, open_person and Esc back."""

    BINDINGS = [Binding("escape", "back", "Back", id="test.back")]

    def __init__(self, store: CaseStore) -> None:
        super().__init__()
        self.store = store
        self.clock = frozen_clock

    def open_person(self, person_id: str, tab: str | None = None) -> None:
        self.push_screen(PersonScreen(person_id, tab=tab))

    def action_back(self) -> None:
        if len(self.screen_stack) > 1:
            self.pop_screen()


def make_app(store: CaseStore) -> App[Any]:
    """The real app shell when it exists, started unlocked on this store; else the small stand-in."""
    try:
        from sprx_tui.app import SprxApp
    except ImportError:
        app: App[Any] = PersonTestApp(store)
    else:
        app = SprxApp(store.vault.path, clock=frozen_clock, store=store)
    app.animation_level = "none"
    return app


async def open_person(app: App[Any], pilot: Pilot[Any], person_id: str) -> PersonScreen:
    await settle(pilot)
    app.open_person(person_id)  # type: ignore[attr-defined]
    await settle(pilot)
    assert isinstance(app.screen, PersonScreen)
    return app.screen


async def type_text(pilot: Pilot[Any], text: str) -> None:
    await pilot.press(*text)


def demo_person(store: CaseStore, *, status: str, flagged: bool = False) -> str:
    rows, _ = store.queries.caseload(status=status, limit=100)
    for row in rows:
        if bool(row.flags) == flagged:
            return row.id
    raise AssertionError(f"no {status} demo person (flagged={flagged})")


def view_events(store: CaseStore, person_id: str) -> int:
    with Session(store.engine) as s:
        return len(
            s.exec(select(AuditEvent).where(AuditEvent.person_id == person_id, AuditEvent.action == "VIEW")).all()
        )


# -- the record ----------------------------------------------------------------------------------


async def test_open_person_shows_header_and_records_one_view(unlocked_store: CaseStore) -> None:
    person = unlocked_store.service.add_person(
        given_name="Iris",
        family_name="Testwell",
        nhs_number="9990000018",
        date_of_birth=dt.date(1950, 12, 1),
        safety_flags=["animals", "do_not_visit_alone"],
        safety_notes="Two dogs; ask for them to be shut away.",
        preferred_contact="phone",
        interpreter_language="Polish",
        consent_social_prescribing=True,
        consent_gp_sharing="codes_only",
    )
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_person(app, pilot, person.id)
        header = screen.query_one(PersonHeader)
        assert "Iris Testwell" in header.identity_text
        assert "75 years" in header.identity_text  # 01/12/1950 on 23/11/2026
        assert "NHS 999 000 0018" in header.identity_text
        # Communication needs sit beside the safety flags (issue 10).
        assert header.flags_text == "⚠ Do not visit alone · Animals in the home   Needs: Polish interpreter"
        assert "Two dogs" in header.notes_text
        overview = str(screen.query_one("#overview-body").content)
        assert "Polish" in overview and "Codes only" in overview and "Phone" in overview
        # Every tab keeps the header in view; the view is audited once per opening, not per tab.
        for key in "rcwouv":
            await pilot.press(key)
            await settle(pilot)
            assert screen.query_one(PersonHeader).region.height >= 3
        assert view_events(unlocked_store, person.id) == 1


async def test_only_the_first_tab_loads_eagerly(unlocked_store: CaseStore) -> None:
    person_id = demo_person(unlocked_store, status="active")
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_person(app, pilot, person_id)
        assert not screen.query(ContactTimeline)  # not built, not asked for
        await pilot.press("3")
        await settle(pilot)
        assert screen.query_one("TabbedContent").active == "contacts"
        assert screen.query_one(ContactTimeline).option_count > 0
        # Focus moves after the next refresh (a pane built just now must be laid out first).
        await wait_until(pilot, lambda: screen.query_one(ContactTimeline).has_focus, what="the timeline's focus")


# -- the whole journey: referral → accept with first contact → plan → follow-up cleared by a contact ---


@pytest.mark.slow  # the whole journey through many screens
async def test_referral_accept_plan_and_contact_clears_follow_up(unlocked_store: CaseStore) -> None:
    svc = unlocked_store.service
    q = unlocked_store.queries
    person = svc.add_person(given_name="Rhea", family_name="Journey", date_of_birth=dt.date(1961, 5, 5))
    referral = svc.receive_referral(person.id, source="gp", reasons=["loneliness"], referral_text="Lonely since move.")
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_person(app, pilot, person.id)
        await pilot.press("r")
        await settle(pilot)
        await pilot.press("a")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, ContactScreen) and form.referral_id == referral.id
        assert "Accept referral from GP" in str(form.query_one("#form-title").content)
        # A practised worker: the date box is selected, so typing replaces "now"; Tab, minutes, mode key, notes.
        await type_text(pilot, "23/11/2026 09:00")
        await pilot.press("tab", *"45", "tab", "p", "tab")
        await type_text(pilot, "First call.")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is screen
        stored = next(r for r in q.referrals(person.id) if r.id == referral.id)
        assert stored.status == "accepted"
        assert stored.snomed_code == SNOMED_REFERRAL_ACCEPTED
        first = q.timeline(person.id)[0].contact
        assert (first.mode, first.duration_minutes, first.referral_id) == ("phone", 45, referral.id)
        assert local(first.occurred_at).strftime("%d/%m/%Y %H:%M") == "23/11/2026 09:00"
        assert first.notes == "First call."
        assert screen.query_one("TabbedContent").active == "contacts"
        assert "Active" in screen.query_one(PersonHeader).identity_text

        # The plan, by keys only.
        await pilot.press("p")
        await settle(pilot)
        assert isinstance(app.screen, PlanScreen)
        plan = app.screen
        await pilot.press("w")
        await type_text(pilot, "Someone to talk to")
        await pilot.press("ctrl+s")
        await settle(pilot)
        await pilot.press("a")
        await type_text(pilot, "Walk group")
        await pilot.press("tab", *"+30", "enter")
        await settle(pilot)
        await pilot.press("t")
        await type_text(pilot, "Find it")
        await pilot.press("tab")  # the who box starts as "person", selected, so typing replaces it
        await type_text(pilot, "link worker")
        await pilot.press("tab", *"+7", "enter")
        await settle(pilot)
        await pilot.press("a")
        await type_text(pilot, "Gas bill")
        await pilot.press("enter", "enter")
        await settle(pilot)
        assert plan.query_one(GoalList).selected == ("goal", q.plan(person.id)[1].goal.id)
        await pilot.press("K")  # the new goal moves above the first
        await settle(pilot)
        await pilot.press("s")  # not started → in progress
        await settle(pilot)
        await pilot.press("down", "down", "space")  # the action under the walking goal is done
        await settle(pilot)

        goals = q.plan(person.id)
        assert [g.goal.text for g in goals] == ["Gas bill", "Walk group"]
        assert goals[0].goal.status == "in_progress"
        assert goals[1].goal.target_on == FROZEN_NOW.date() + dt.timedelta(days=30)
        [action] = goals[1].actions
        assert (action.what, action.who, action.done) == ("Find it", "link worker", True)
        assert action.due_on == FROZEN_NOW.date() + dt.timedelta(days=7)
        [matters] = q.what_matters(person.id)
        assert matters.text == "Someone to talk to"

        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is screen
        await pilot.press("w")
        await settle(pilot)
        assert "Gas bill" in str(screen.query_one(GoalList).get_option_at_index(0).prompt)

        # A follow-up falls due; the next contact clears it and tops the timeline.
        svc.set_follow_up(person.id, FROZEN_NOW.date(), reason="Check walking group")
        assert [f.due_on for f in q.follow_ups(person.id)] == [FROZEN_NOW.date()]
        await pilot.press("n")
        await settle(pilot)
        await pilot.press("tab", *"30", "tab", "h", "tab")
        await type_text(pilot, "Walked together.")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is screen
        assert q.follow_ups(person.id) == []
        timeline = screen.query_one(ContactTimeline)
        assert screen.query_one("TabbedContent").active == "contacts"
        top = str(timeline.get_option_at_index(0).prompt)
        assert "Walked together." in top and "Home visit" in top
        assert timeline.option_count == 2


# -- triage and corrections -------------------------------------------------------------------------


async def test_decline_referral_with_reason(unlocked_store: CaseStore) -> None:
    person_id = demo_person(unlocked_store, status="referred")
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        await open_person(app, pilot, person_id)
        await pilot.press("r")
        await settle(pilot)
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, DeclineModal)
        await pilot.press("end", "ctrl+s")  # "Other" with no words: refused with a sentence, dialog stays
        assert "Chosen: Other" in str(app.screen.query_one("#chosen").content)
        assert "Give a reason" in str(app.screen.query_one("#error-reason").content)
        await pilot.press("home", "down", "ctrl+s")  # a coded reason stands for itself
        await settle(pilot)
        assert isinstance(app.screen, PersonScreen)
        [referral] = unlocked_store.queries.referrals(person_id)
        assert referral.status == "declined"
        assert referral.snomed_code == SNOMED_SP_DECLINED
        assert (referral.decline_code, referral.decline_reason) == (
            "other_service",
            "Already supported by another service",
        )
        assert "Declined" in str(app.screen.query_one("#referral-detail").content)


async def test_amend_keeps_the_original_and_shows_the_amendment(unlocked_store: CaseStore) -> None:
    person_id = demo_person(unlocked_store, status="active")
    before = unlocked_store.queries.timeline(person_id)[0].contact
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_person(app, pilot, person_id)
        await pilot.press("c")
        await settle(pilot)
        await pilot.press("m")
        await type_text(pilot, "Son there")
        await pilot.press("tab")
        await type_text(pilot, "Missed")
        await pilot.press("enter")
        await settle(pilot)
        entry = unlocked_store.queries.timeline(person_id)[0]
        assert entry.contact.id == before.id and entry.contact.notes == before.notes
        assert [(a.text, a.reason) for a in entry.amendments] == [("Son there", "Missed")]
        shown = str(screen.query_one(ContactTimeline).get_option_at_index(0).prompt)
        assert before.notes in shown and "Amended" in shown and "Son there" in shown


async def test_entered_in_error_is_marked_not_deleted(unlocked_store: CaseStore) -> None:
    person_id = demo_person(unlocked_store, status="active")
    count = len(unlocked_store.queries.timeline(person_id))
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_person(app, pilot, person_id)
        await pilot.press("c")
        await settle(pilot)
        await pilot.press("down", "e")
        await type_text(pilot, "Wrong person")
        await pilot.press("enter")
        await settle(pilot)
        entries = unlocked_store.queries.timeline(person_id)
        assert len(entries) == count
        marked = entries[1].contact
        assert marked.entered_in_error and marked.error_reason == "Wrong person"
        with Session(unlocked_store.engine) as s:
            assert s.get(Contact, marked.id) is not None
        timeline = screen.query_one(ContactTimeline)
        assert timeline.selected_contact_id == marked.id
        shown = str(timeline.get_option_at_index(1).prompt)
        assert "ENTERED IN ERROR" in shown and "Wrong person" in shown
        await pilot.press("e")  # a second time is refused in words
        await pilot.pause()
        assert isinstance(app.screen, PersonScreen)


# -- contact form: errors, keys, drafts ---------------------------------------------------------------


async def _open_form(app: App[Any], pilot: Pilot[Any], person_id: str) -> ContactScreen:
    await open_person(app, pilot, person_id)
    await pilot.press("n")
    await settle(pilot)
    assert isinstance(app.screen, ContactScreen)
    return app.screen


async def _replace(pilot: Pilot[Any], form: ContactScreen, selector: str, text: str) -> None:
    """Put `text` in a box (set directly: what is checked here is the validation, not the typing)."""
    form.query_one(selector, Input).value = text
    await pilot.pause()


REJECTED = [
    ("#when", "24/11/2026 09:00", "The contact date and time cannot be in the future."),
    ("#when", "31/02/2026 09:00", "Contact date is not a real calendar date; check the day and month."),
    ("#when", "yesterday", "Contact date must be a date written like 22/11/2026 or 2026-11-22."),
    ("#follow_up", "01/11/2026", "The follow-up date must be on or after the contact date."),
]


@pytest.mark.slow  # every form, one bad value at a time
async def test_rejected_values_are_explained_and_typing_kept(unlocked_store: CaseStore) -> None:
    person_id = demo_person(unlocked_store, status="active")
    before = len(unlocked_store.queries.timeline(person_id))
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        form = await _open_form(app, pilot, person_id)
        form.query_one("#notes").focus()
        await type_text(pilot, "Kept notes")
        for field, typed, sentence in REJECTED:
            await _replace(pilot, form, field, typed)
            await pilot.press("ctrl+s")
            await settle(pilot)
            assert app.screen is form, typed
            error_id = "#error-when" if field == "#when" else "#error-follow_up"
            assert str(form.query_one(error_id).content) == sentence
            assert form.query_one(field).has_focus  # the cursor goes to the field to fix
            form.query_one("#notes").focus()
            assert form.query_one("#notes", TextArea).text == "Kept notes"
            assert form.query_one(field, Input).value == typed
            await _replace(pilot, form, field, "23/11/2026 09:00" if field == "#when" else "")
        assert len(unlocked_store.queries.timeline(person_id)) == before
        # Fixed values save, and the sentences go.
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, PersonScreen)
        assert len(unlocked_store.queries.timeline(person_id)) == before + 1
        assert unlocked_store.queries.timeline(person_id)[0].contact.notes == "Kept notes"


async def test_mode_keys_and_escape_asks_before_discarding(unlocked_store: CaseStore) -> None:
    person_id = demo_person(unlocked_store, status="active")
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        form = await _open_form(app, pilot, person_id)
        picker = form.query_one(ModePicker)
        assert picker.value == "home_visit"
        picker.focus()
        await pilot.press("v")
        assert picker.value == "video"
        await pilot.press("right")
        assert picker.value == "clinic"
        await pilot.press("tab")
        await type_text(pilot, "Half")
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("n")
        await pilot.pause()
        assert app.screen is form and form.query_one("#notes", TextArea).text == "Half"
        await pilot.press("escape", "y")
        await pilot.pause()
        assert isinstance(app.screen, PersonScreen)


@pytest.mark.slow  # locks and unlocks through the screen
async def test_draft_then_restore_prefills_and_discards_on_save(unlocked_store: CaseStore) -> None:
    person_id = demo_person(unlocked_store, status="active")
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        form = await _open_form(app, pilot, person_id)
        assert form.draft() is None  # nothing typed yet
        await pilot.press("tab", *"20", "tab", "c", "tab")
        await type_text(pilot, "Before lock")
        form.query_one("#follow_up").focus()
        await type_text(pilot, "+7")
        key, payload = form.draft()  # type: ignore[misc]
        assert key == draft_key(person_id) == f"contact:{person_id}"
        assert payload == {
            "kind": "contact",
            "person_id": person_id,
            "when": "23/11/2026 10:30",
            "mode": "clinic",
            "duration": "20",
            "notes": "Before lock",
            "follow_up": "+7",
            "did_not_attend": False,
        }
    # What the app does around a lock: keep the draft encrypted, later offer it back.
    unlocked_store.service.save_draft(key, payload)
    before = len(unlocked_store.queries.timeline(person_id))
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        restore_draft(app, key, unlocked_store.service.load_draft(key) or {})
        await settle(pilot)
        form = app.screen
        assert isinstance(form, ContactScreen)
        assert form.query_one("#notes", TextArea).text == "Before lock"
        assert form.query_one(ModePicker).value == "clinic"
        assert form.query_one("#duration", Input).value == "20"
        assert form.query_one("#follow_up", Input).value == "+7"
        assert form.draft() is not None  # still unsaved work if it locked again now
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, PersonScreen) and app.screen.person_id == person_id
        assert unlocked_store.service.load_draft(key) is None
        newest = unlocked_store.queries.timeline(person_id)[0].contact
        assert len(unlocked_store.queries.timeline(person_id)) == before + 1
        assert (newest.notes, newest.mode, newest.duration_minutes) == ("Before lock", "clinic", 20)
        assert newest.follow_up_on == FROZEN_NOW.date() + dt.timedelta(days=7)


async def test_onward_outcome_and_plan_delete_with_confirmation(unlocked_store: CaseStore) -> None:
    q = unlocked_store.queries
    rows, _ = q.caseload(status="active", limit=100)
    person_id = next(r.id for r in rows if q.onward_referrals(r.id) and q.plan(r.id))
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_person(app, pilot, person_id)
        await pilot.press("o")
        await settle(pilot)
        await pilot.press("t")
        await pilot.pause()
        await pilot.press("end", "enter")  # the last outcome: declined
        await settle(pilot)
        assert q.onward_referrals(person_id)[0].outcome == "declined"
        assert "Declined" in str(screen.query_one("#onward-table").get_row_at(0))
        goals_before = len(q.plan(person_id))
        await pilot.press("p")
        await settle(pilot)
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("n")  # kept
        await settle(pilot)
        assert len(q.plan(person_id)) == goals_before
        await pilot.press("d", "y")
        await settle(pilot)
        assert len(q.plan(person_id)) == goals_before - 1


async def test_plan_form_explains_a_bad_date(unlocked_store: CaseStore) -> None:
    person = unlocked_store.service.add_person(given_name="Una", family_name="Plain")
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        await open_person(app, pilot, person.id)
        await pilot.press("p")
        await settle(pilot)
        await pilot.press("a")
        await type_text(pilot, "Walk daily")
        await pilot.press("tab", *"soon", "enter")
        await pilot.pause()
        assert isinstance(app.screen, PlanFormModal)
        assert "Target date must be a date" in str(app.screen.query_one("#error-target_on").content)
        assert unlocked_store.queries.plan(person.id) == []


async def test_a_saved_contact_shows_at_once_and_a_late_older_read_never_replaces_it(
    unlocked_store: CaseStore,
) -> None:
    """The form builds the contacts tab behind itself and its save reads the timeline: no second read."""
    from sprx_tui.screens.person import TimelineLoaded

    person_id = demo_person(unlocked_store, status="active")
    before = unlocked_store.queries.timeline(person_id)
    app = make_app(unlocked_store)
    async with app.run_test(size=(120, 40)) as pilot:
        form = await _open_form(app, pilot, person_id)
        person_screen = app.screen_stack[-2]
        assert isinstance(person_screen, PersonScreen)
        assert person_screen._ready["contacts"].is_set()  # built while the form was open
        form.query_one("#notes", TextArea).text = "Walked to the community garden together."
        await pilot.pause()
        reads: list[int] = []
        original = person_screen._load_tab
        person_screen._load_tab = lambda tab, keep=None: (reads.append(1), original(tab, keep))  # type: ignore[method-assign]
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is person_screen and person_screen.active_tab == "contacts"
        assert not reads  # the timeline came with the save; only header and referrals were read again
        newest = next(e.contact for e in person_screen.timeline if e.contact.notes.startswith("Walked to the"))
        assert person_screen.query_one(ContactTimeline).selected_contact_id == newest.id
        # A read that began before the save (older number) arrives late: it is dropped.
        person_screen.post_message(TimelineLoaded(before, read=person_screen._timeline_reads - 1))
        await settle(pilot)
        assert newest.id in [e.contact.id for e in person_screen.timeline]
        assert len(person_screen.timeline) == len(before) + 1


async def test_keys_typed_faster_than_the_app_reads_them_land_in_the_field_tab_moved_to(
    unlocked_store: CaseStore,
) -> None:
    """A fast typist, or a busy moment, queues keys behind a Tab. Textual hands a key to the focused
    widget's own queue and reads the next key at once, so keys typed behind a Tab used to go to the field
    being left: the notes were lost, or their letters changed the contact's mode (h p v c m)."""
    from textual import events

    person_id = demo_person(unlocked_store, status="active")
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        form = await _open_form(app, pilot, person_id)

        def burst(*keys: str) -> None:  # posted together, as a terminal delivers keys read in one go
            for key in keys:
                character = key if len(key) == 1 else None
                app.post_message(events.Key("space" if key == " " else key, character))

        burst("tab", "4", "5", "tab", "h", "tab", *"phoned Viv", "tab", "+", "7")
        await settle(pilot)
        assert form.query_one("#duration", Input).value == "45"
        assert form.query_one(ModePicker).value == "home_visit"
        assert form.query_one("#notes", TextArea).text == "phoned Viv"
        assert form.query_one("#follow_up", Input).value == "+7"


# -- one record screen for one person after another (SprxApp.record_screen) --------------------------


def shown_text(screen: PersonScreen) -> str:
    """Every piece of text the screen holds: statics, table cells, timeline and list entries, borders."""
    from textual.widgets import DataTable, OptionList, Static

    parts: list[str] = []
    for widget in screen.walk_children(with_self=False):
        parts += [str(widget.border_title or ""), str(widget.border_subtitle or "")]
        if isinstance(widget, Static):
            parts.append(str(widget.content))
        elif isinstance(widget, DataTable):
            parts += [str(cell) for row_key in widget.rows for cell in widget.get_row(row_key)]
        elif isinstance(widget, OptionList):
            parts += [str(option.prompt) for option in widget.options]
    return "\n".join(parts)


def _two_people(store: CaseStore) -> tuple[Any, Any]:
    svc = store.service
    first = svc.add_person(
        given_name="Ada",
        family_name="Firstperson",
        address="1 Reuse Lane",
        safety_flags=["animals"],
        safety_notes="Large dog in the garden.",
        consent_social_prescribing=True,
    )
    svc.record_contact(first.id, mode="phone", notes="Talked about the allotment group.")
    svc.add_goal(first.id, "Join the allotment group")
    second = svc.add_person(given_name="Bea", family_name="Secondperson", consent_social_prescribing=True)
    return first, second


async def test_a_kept_record_screen_shows_nothing_of_the_last_person(unlocked_store: CaseStore) -> None:
    """Closing a record empties the kept screen; the next person opened on it never sees the last one's
    details, and reads made for the last one that arrive late are dropped."""
    from sprx_tui.screens.person import PersonLoaded, TimelineLoaded

    first, second = _two_people(unlocked_store)
    first_timeline = unlocked_store.queries.timeline(first.id)
    first_words = ("Firstperson", "Reuse Lane", "Large dog", "allotment", "Animals")
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_person(app, pilot, first.id)
        for key in "rcwou":  # every tab built and filled with the first person
            await pilot.press(key)
            await settle(pilot)
        text = shown_text(screen)
        assert all(word in text for word in ("Firstperson", "Reuse Lane", "Large dog", "allotment")), text
        old_visit = screen._visit

        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is not screen
        # Closed: nothing of the person stays in the screen kept for the next one.
        assert screen.person is None
        assert not any(word in shown_text(screen) for word in first_words), shown_text(screen)
        assert not screen.query(ContactTimeline) and not screen.query(GoalList)

        app.open_person(second.id)  # type: ignore[attr-defined]
        assert app.screen is screen  # the same screen, given the next person ...
        assert not any(word in shown_text(screen) for word in first_words)  # ... and blank before any read
        await settle(pilot)
        assert "Secondperson" in screen.query_one(PersonHeader).identity_text
        assert screen.active_tab == "overview"
        # Late reads made for the first person: not shown.
        screen.post_message(PersonLoaded(unlocked_store.queries.person(first.id), [], visit=old_visit))
        screen.post_message(TimelineLoaded(first_timeline, read=screen._timeline_reads + 5, visit=old_visit))
        await pilot.press("c")
        await settle(pilot)
        assert screen.person is not None and screen.person.id == second.id
        assert not any(word in shown_text(screen) for word in first_words), shown_text(screen)
        assert screen.query_one(ContactTimeline).option_count == 0
        # Each opening is audited once, for the person it showed.
        assert view_events(unlocked_store, first.id) == 1
        assert view_events(unlocked_store, second.id) == 1


async def test_a_record_opened_over_the_kept_one_gets_its_own_screen(unlocked_store: CaseStore) -> None:
    first, second = _two_people(unlocked_store)
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        kept = await open_person(app, pilot, first.id)
        other = await open_person(app, pilot, second.id)  # the first record is still open beneath
        assert other is not kept
        assert "Secondperson" in other.query_one(PersonHeader).identity_text
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is kept
        assert "Firstperson" in kept.query_one(PersonHeader).identity_text
        assert "Reuse Lane" in str(kept.query_one("#overview-body", Static).content)


async def test_a_lock_forgets_the_kept_record_screen(unlocked_store: CaseStore) -> None:
    import gc
    import weakref

    from sprx_tui import app as app_module

    first, _second = _two_people(unlocked_store)
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_person(app, pilot, first.id)
        kept = weakref.ref(screen)
        del screen
        await pilot.press("escape")
        await settle(pilot)
        assert app.is_screen_installed(app_module.KEPT_RECORD)
        app.lock_now()  # type: ignore[attr-defined]
        await settle(pilot)
        assert not app.is_screen_installed(app_module.KEPT_RECORD)
        await wait_until(pilot, lambda: (gc.collect(), kept() is None)[1], what="the kept screen to be freed")


async def test_a_kept_screen_that_cannot_take_the_next_person_is_replaced(unlocked_store: CaseStore) -> None:
    """A kept screen closed before its tabs were built cannot be reused: the next one made is kept instead."""
    first, second = _two_people(unlocked_store)
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app._forget_kept_record()  # type: ignore[attr-defined]  # the one built ahead: gone
        never_shown = app.record_screen(first.id)  # type: ignore[attr-defined]  # kept, never pushed, so never built
        assert app.is_screen_installed(never_shown)
        screen = await open_person(app, pilot, second.id)
        assert screen is not never_shown and "Secondperson" in screen.query_one(PersonHeader).identity_text
        assert not app.is_screen_installed(never_shown) and app.is_screen_installed(screen)


async def test_the_kept_record_screen_is_built_ahead_after_the_unlock(unlocked_store: CaseStore) -> None:
    """Built behind Today for no one, on a mode never shown, then taken off it: the first record opened is
    given a built screen."""
    from textual.widgets import TabbedContent

    from sprx_tui import app as app_module

    _first, second = _two_people(unlocked_store)
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:

        def built() -> bool:
            kept = app._kept_record  # type: ignore[attr-defined]
            return kept is not None and kept.query_one_optional(TabbedContent) is not None

        await wait_until(pilot, built, what="the kept record screen built")
        await wait_until(pilot, lambda: not app._stack_of(app_module.SPARE_MODE), what="the spare mode removed")  # type: ignore[attr-defined]
        kept = app._kept_record  # type: ignore[attr-defined]
        assert kept.person is None and kept.query_one(PersonHeader).person is None
        assert not app.on_a_stack(kept)  # type: ignore[attr-defined]
        screen = await open_person(app, pilot, second.id)
        assert screen is kept
        assert "Secondperson" in screen.query_one(PersonHeader).identity_text
