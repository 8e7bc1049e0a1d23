"""Unsaved work kept across a lock: type, Ctrl+L, unlock, accept the offer, find the text back, save, draft gone.

Every test drives the real app on a real SQLCipher vault: the lock really closes the database and wipes the key,
and the kept text is looked for in the vault's raw bytes while locked (it must not be there in the clear).
"""

from __future__ import annotations

import datetime as dt
import html
import re
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, col, select
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static, TextArea

from sprx_rules import outcomes
from sprx_tui.app import SprxApp
from sprx_tui.config import Config
from sprx_tui.core import directory
from sprx_tui.core.models import DirectorySuggestion, Goal, SyncConflict
from sprx_tui.core.store import CaseStore, open_store, set_state
from sprx_tui.drafts import KeptFieldsModal
from sprx_tui.screens.contact import ContactScreen, draft_key
from sprx_tui.screens.directory import DirectoryScreen, SuggestChangeModal
from sprx_tui.screens.lock import DraftOfferScreen
from sprx_tui.screens.person import PersonScreen
from sprx_tui.screens.plan import PlanFormModal, PlanScreen
from sprx_tui.screens.questionnaire import QuestionnaireScreen
from sprx_tui.screens.sync import ConflictScreen, MergeScreen, SyncScreen
from sprx_tui.screens.today import TodayScreen
from sprx_tui.screens.unlock import UnlockScreen
from sprx_tui.widgets.goal_list import GoalList
from sync import hlc as hlc_mod
from tests.tui.conftest import FROZEN_NOW, PASSPHRASE, frozen_clock, quick_unlock
from tests.tui.settling import settle

# Every test here locks and unlocks through the screen, where drafts are offered back.
pytestmark = pytest.mark.slow

SIZE = (120, 40)


@pytest.fixture(autouse=True)
def _config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPRX_CONFIG_DIR", str(tmp_path / "config"))


def make_app(vault: Path, **config: Any) -> SprxApp:
    """The real app, started on the vault already unlocked (the unlocks after a lock go through the screen)."""
    opened = quick_unlock(vault)
    app = SprxApp(vault, clock=frozen_clock, config=Config(**config), store=open_store(opened, clock=frozen_clock))
    app.animation_level = "none"
    return app


async def started(app: SprxApp, pilot: Pilot[Any]) -> CaseStore:
    """The store the app was started with, once the app is quiet."""
    await settle(pilot)
    assert app.store is not None
    return app.store


async def unlock(app: SprxApp, pilot: Pilot[Any]) -> CaseStore:
    assert isinstance(app.screen, UnlockScreen)
    app.screen.query_one("#passphrase", Input).value = PASSPHRASE
    await pilot.press("enter")
    await settle(pilot)
    assert app.store is not None
    return app.store


async def open_person(app: SprxApp, pilot: Pilot[Any], person_id: str, *keys: str) -> PersonScreen:
    app.open_person(person_id)
    await settle(pilot)
    screen = app.screen
    assert isinstance(screen, PersonScreen)
    for key in keys:
        await pilot.press(key)
        await settle(pilot)
    return screen


def vault_bytes(vault: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(vault.rglob("*")) if p.is_file())


async def lock(app: SprxApp, pilot: Pilot[Any], vault: Path, *secrets: str) -> None:
    """Ctrl+L; then nothing typed is on screen, and none of it is readable in the vault's files."""
    await pilot.press("ctrl+l")
    await settle(pilot)
    assert app.store is None and isinstance(app.screen, UnlockScreen)
    assert "kept safely" in " ".join(n.message for n in app._notifications)
    raw = vault_bytes(vault)
    assert len(raw) > 100_000  # the database is really there
    for secret in secrets:
        assert secret.encode() not in raw, secret
        assert secret not in screen_text(app)


def screen_text(app: SprxApp) -> str:
    svg = app.export_screenshot()
    parts = re.findall(r"<text[^>]*>(.*?)</text>", svg, flags=re.S)
    return html.unescape(" ".join(re.sub(r"<[^>]+>", "", p) for p in parts)).replace("\xa0", " ")


async def unlock_to_offer(app: SprxApp, pilot: Pilot[Any], sentence: str) -> CaseStore:
    store = await unlock(app, pilot)
    offer = app.screen
    assert isinstance(offer, DraftOfferScreen)
    assert str(offer.query_one("#draft-question", Static).content) == sentence
    return store


async def accept(app: SprxApp, pilot: Pilot[Any]) -> None:
    await pilot.press("y")
    await settle(pilot)


def stack_types(app: SprxApp) -> list[str]:
    return [type(s).__name__ for s in app.screen_stack]


# -- the contact note (keys written by earlier versions: "contact:<person id>") -----------------------


async def test_contact_note_comes_back_after_unlock_and_saving_discards_it(demo_vault: Path) -> None:
    secret = "Marker-contact-7Q2 hallway rug loose"
    app = make_app(demo_vault)
    async with app.run_test(size=SIZE) as pilot:
        store = await started(app, pilot)
        person = store.service.add_person(given_name="Nora", family_name="Draftwell")
        await open_person(app, pilot, person.id, "n")
        form = app.screen
        assert isinstance(form, ContactScreen)
        await pilot.press("tab", *"25", "tab", "p", "tab")
        await pilot.press(*secret)
        await lock(app, pilot, demo_vault, secret, person.id)

        store = await unlock_to_offer(app, pilot, "You have an unsaved contact note for Nora Draftwell; restore it?")
        assert store.service.list_drafts() == [draft_key(person.id)] == [f"contact:{person.id}"]
        assert (store.service.load_draft(draft_key(person.id)) or {})["notes"] == secret
        await accept(app, pilot)
        form = app.screen
        assert isinstance(form, ContactScreen)
        assert stack_types(app)[-3:] == ["RecordsBackdrop", "PersonScreen", "ContactScreen"]
        assert form.query_one("#notes", TextArea).text == secret
        assert form.query_one("#duration", Input).value == "25"
        assert form.query_one("#mode").value == "phone"  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, PersonScreen) and app.screen.person_id == person.id
        assert store.service.list_drafts() == []
        newest = store.queries.timeline(person.id)[0].contact
        assert (newest.notes, newest.mode, newest.duration_minutes) == (secret, "phone", 25)


async def test_discarding_a_restored_contact_note_deletes_its_draft(demo_vault: Path) -> None:
    app = make_app(demo_vault)
    async with app.run_test(size=SIZE) as pilot:
        store = await started(app, pilot)
        person = store.service.add_person(given_name="Dora", family_name="Discard")
        await open_person(app, pilot, person.id, "n")
        app.screen.query_one("#notes").focus()
        await pilot.press(*"Not worth keeping")
        await lock(app, pilot, demo_vault)
        store = await unlock(app, pilot)
        await accept(app, pilot)
        assert app.screen.query_one("#notes", TextArea).text == "Not worth keeping"
        await pilot.press("escape", "y")  # "Discard this contact? What you typed will be lost." yes
        await settle(pilot)
        assert isinstance(app.screen, PersonScreen)
        assert store.service.list_drafts() == []
        assert store.queries.timeline(person.id) == []


# -- the questionnaire ---------------------------------------------------------------------------------


async def test_questionnaire_reopens_at_the_same_question_with_the_answers(demo_vault: Path) -> None:
    app = make_app(demo_vault)
    async with app.run_test(size=SIZE) as pilot:
        store = await started(app, pilot)
        person = store.service.add_person(given_name="Olive", family_name="Measure", date_of_birth=dt.date(1948, 2, 2))
        await open_person(app, pilot, person.id, "u", "m", "2", "enter")  # UCLA loneliness, baseline
        q = app.screen
        assert isinstance(q, QuestionnaireScreen) and (q.code, q.time_point) == ("UCLA3", "baseline")
        await pilot.press("2", "s")  # "some of the time", then skip the second question
        assert q.index == 2
        key = f"measure:{person.id}:UCLA3:baseline"
        await lock(app, pilot, demo_vault, key, '"answers"')

        store = await unlock_to_offer(
            app,
            pilot,
            "You have an unfinished outcome measure (UCLA loneliness, baseline: 1 of 3 questions answered) "
            "for Olive Measure; restore it?",
        )
        assert store.service.list_drafts() == [key]
        await accept(app, pilot)
        q = app.screen
        assert isinstance(q, QuestionnaireScreen)
        assert stack_types(app)[-3:] == ["RecordsBackdrop", "PersonScreen", "QuestionnaireScreen"]
        assert (q.code, q.time_point, q.index) == ("UCLA3", "baseline", 2)
        assert q.answers == {"companionship": 2, "left_out": None}
        assert str(q.query_one("#q-progress", Static).content) == "Question 3 of 3"
        assert str(q.query_one("#q-item", Static).content) == outcomes.UCLA3.items[2].text
        await pilot.press("3")
        assert q.on_summary
        await pilot.press("ctrl+s")
        await settle(pilot)
        person_screen = app.screen
        assert isinstance(person_screen, PersonScreen)
        assert person_screen.query_one("TabbedContent").active == "outcomes"
        [row] = [r for r in store.queries.outcomes(person.id) if r.instrument == "UCLA3"]
        assert row.responses == {"companionship": 2, "left_out": None, "isolated": 3}
        assert not row.complete
        assert store.service.list_drafts() == []


async def test_throwing_away_a_restored_questionnaire_deletes_its_draft(demo_vault: Path) -> None:
    app = make_app(demo_vault)
    async with app.run_test(size=SIZE) as pilot:
        store = await started(app, pilot)
        person = store.service.add_person(given_name="Ivy", family_name="Leaves")
        await open_person(app, pilot, person.id, "u", "m", "enter")  # ONS4 baseline
        await pilot.press("7")
        await lock(app, pilot, demo_vault)
        store = await unlock(app, pilot)
        await accept(app, pilot)
        q = app.screen
        assert isinstance(q, QuestionnaireScreen) and q.answers == {"life_satisfaction": 7} and q.index == 1
        await pilot.press("escape", "y")  # "Throw away these answers?" yes
        await settle(pilot)
        assert isinstance(app.screen, PersonScreen)
        assert store.service.list_drafts() == []
        assert store.queries.outcomes(person.id) == []


# -- the plan editor ---------------------------------------------------------------------------------


async def test_new_goal_text_comes_back_and_saving_adds_the_goal(demo_vault: Path) -> None:
    secret = "Marker-goal-3K9 join the choir"
    app = make_app(demo_vault)
    async with app.run_test(size=SIZE) as pilot:
        store = await started(app, pilot)
        person = store.service.add_person(given_name="Gail", family_name="Planner")
        await open_person(app, pilot, person.id, "p", "a")
        assert isinstance(app.screen, PlanFormModal)
        await pilot.press(*secret, "tab", *"+14")
        await lock(app, pilot, demo_vault, secret)

        store = await unlock_to_offer(app, pilot, "You have an unsaved new goal for Gail Planner; restore it?")
        assert store.service.list_drafts() == [f"plan:{person.id}:goal:new"]
        await accept(app, pilot)
        form = app.screen
        assert isinstance(form, PlanFormModal)
        assert stack_types(app)[-4:] == ["RecordsBackdrop", "PersonScreen", "PlanScreen", "PlanFormModal"]
        assert form.query_one("#text", Input).value == secret
        assert form.query_one("#target_on", Input).value == "+14"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, PlanScreen)
        [goal] = store.queries.plan(person.id)
        assert (goal.goal.text, goal.goal.target_on) == (secret, frozen_clock().date() + dt.timedelta(days=14))
        assert store.service.list_drafts() == []
        assert secret in str(app.screen.query_one(GoalList).get_option_at_index(0).prompt)


async def test_edited_action_comes_back_and_saving_updates_that_action(demo_vault: Path) -> None:
    secret = "Marker-action-5T1 ring the befriending line"
    app = make_app(demo_vault)
    async with app.run_test(size=SIZE) as pilot:
        store = await started(app, pilot)
        person = store.service.add_person(given_name="Ada", family_name="Actions")
        goal = store.service.add_goal(person.id, "Feel less alone")
        action = store.service.add_action(goal.id, "Find a group", who="person")
        await open_person(app, pilot, person.id, "p", "down", "e")
        form = app.screen
        assert isinstance(form, PlanFormModal) and form.query_one("#what", Input).value == "Find a group"
        await pilot.press(*secret, "tab", *"link worker")
        await lock(app, pilot, demo_vault, secret)

        store = await unlock_to_offer(
            app, pilot, "You have an unsaved change to an action for Ada Actions; restore it?"
        )
        assert store.service.list_drafts() == [f"plan:{person.id}:action:edit:{action.id}"]
        await accept(app, pilot)
        form = app.screen
        assert isinstance(form, PlanFormModal)
        assert (form.query_one("#what", Input).value, form.query_one("#who", Input).value) == (secret, "link worker")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, PlanScreen)
        [stored] = store.queries.plan(person.id)[0].actions
        assert (stored.id, stored.what, stored.who) == (action.id, secret, "link worker")
        assert store.service.list_drafts() == []


async def test_cancelling_a_restored_plan_form_deletes_its_draft(demo_vault: Path) -> None:
    app = make_app(demo_vault)
    async with app.run_test(size=SIZE) as pilot:
        store = await started(app, pilot)
        person = store.service.add_person(given_name="Wendy", family_name="Matters")
        await open_person(app, pilot, person.id, "p", "w")
        await pilot.press(*"Seeing my grandchildren")
        await lock(app, pilot, demo_vault)
        store = await unlock_to_offer(
            app, pilot, "You have an unsaved 'what matters' entry for Wendy Matters; restore it?"
        )
        await accept(app, pilot)
        assert app.screen.query_one("#text", Input).value == "Seeing my grandchildren"
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, PlanScreen)
        assert store.service.list_drafts() == []
        assert store.queries.what_matters(person.id) == []


# -- referral decline, contact amendment and entered in error -------------------------------------------


async def test_decline_reason_comes_back_and_declining_discards_it(demo_vault: Path) -> None:
    secret = "Marker-decline-8H4 moving to Leeds"
    app = make_app(demo_vault)
    async with app.run_test(size=SIZE) as pilot:
        store = await started(app, pilot)
        person = store.service.add_person(given_name="Rita", family_name="Referred")
        referral = store.service.receive_referral(person.id, source="gp", reasons=["loneliness"])
        await open_person(app, pilot, person.id, "r", "d")
        assert isinstance(app.screen, KeptFieldsModal)
        await pilot.press("down", "enter", *secret)  # a coded reason, then the words
        await lock(app, pilot, demo_vault, secret)

        store = await unlock_to_offer(
            app, pilot, "You have an unsaved reason for declining a referral for Rita Referred; restore it?"
        )
        assert store.service.list_drafts() == [f"referral:{person.id}:decline:{referral.id}"]
        await accept(app, pilot)
        modal = app.screen
        assert isinstance(modal, KeptFieldsModal)
        assert stack_types(app)[-3:] == ["RecordsBackdrop", "PersonScreen", "DeclineModal"]
        assert modal.query_one("#reason", Input).value == secret
        assert "From GP, received 23/11/2026" in str(modal.query_one(".dialog-intro", Static).content)
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, PersonScreen)
        [stored] = store.queries.referrals(person.id)
        assert (stored.status, stored.decline_reason, stored.decline_code) == ("declined", secret, "other_service")
        assert store.service.list_drafts() == []


async def test_amendment_and_in_error_reason_come_back(demo_vault: Path) -> None:
    correction, why, reason = "Marker-amend-2W6 daughter", "Marker-why-4R1", "Marker-error-9P3 wrong person"
    app = make_app(demo_vault)
    async with app.run_test(size=SIZE) as pilot:
        store = await started(app, pilot)
        person = store.service.add_person(given_name="Alma", family_name="Amends")
        first = store.service.record_contact(person.id, mode="phone", notes="Spoke about the lunch club.")
        await open_person(app, pilot, person.id, "c", "m")
        assert isinstance(app.screen, KeptFieldsModal)
        await pilot.press(*correction, "tab", *why)
        await lock(app, pilot, demo_vault, correction, why)

        store = await unlock_to_offer(
            app, pilot, "You have an unsaved amendment to a contact for Alma Amends; restore it?"
        )
        await accept(app, pilot)
        modal = app.screen
        assert isinstance(modal, KeptFieldsModal)
        assert (modal.query_one("#text", Input).value, modal.query_one("#reason", Input).value) == (correction, why)
        await pilot.press("ctrl+s")
        await settle(pilot)
        person_screen = app.screen
        assert isinstance(person_screen, PersonScreen)
        entry = store.queries.timeline(person.id)[0]
        assert entry.contact.id == first.id and entry.contact.notes == "Spoke about the lunch club."
        assert [(a.text, a.reason) for a in entry.amendments] == [(correction, why)]
        assert store.service.list_drafts() == []

        await pilot.press("e")
        await settle(pilot)
        assert isinstance(app.screen, KeptFieldsModal)
        await pilot.press(*reason)
        await lock(app, pilot, demo_vault, reason)
        store = await unlock_to_offer(
            app,
            pilot,
            "You have an unsaved reason for marking a contact as entered in error for Alma Amends; restore it?",
        )
        assert store.service.list_drafts() == [f"contact:{person.id}:in_error:{first.id}"]
        await accept(app, pilot)
        assert app.screen.query_one("#reason", Input).value == reason
        await pilot.press("enter")
        await settle(pilot)
        marked = store.queries.timeline(person.id)[0].contact
        assert marked.entered_in_error and marked.error_reason == reason
        assert store.service.list_drafts() == []


# -- several drafts, and kinds this version cannot reopen ----------------------------------------------


async def test_two_drafts_are_offered_in_turn_and_stack_in_order(demo_vault: Path) -> None:
    app = make_app(demo_vault)
    async with app.run_test(size=SIZE) as pilot:
        store = await started(app, pilot)
        first = store.service.add_person(given_name="Bea", family_name="First")
        second = store.service.add_person(given_name="Cal", family_name="Second")
        # A questionnaire open on Today's stack and a plan form on the caseload's stack.
        await open_person(app, pilot, first.id, "u", "m", "enter")
        await pilot.press("4")
        await pilot.press("f3")
        await settle(pilot)
        await open_person(app, pilot, second.id, "p", "a")
        await pilot.press(*"Cook a meal")
        await lock(app, pilot, demo_vault)

        store = await unlock_to_offer(
            app,
            pilot,
            "You have an unfinished outcome measure (ONS4 well-being, baseline: 1 of 4 questions answered) "
            "for Bea First; restore it?",
        )
        await accept(app, pilot)
        offer = app.screen
        assert isinstance(offer, DraftOfferScreen)  # the second offer sits on top of the first restored form
        assert str(offer.query_one("#draft-question", Static).content) == (
            "You have an unsaved new goal for Cal Second; restore it?"
        )
        await accept(app, pilot)
        assert stack_types(app)[-6:] == [
            "RecordsBackdrop",  # records are kept apart from the areas' screens (F2 still shows Today)
            "PersonScreen",
            "QuestionnaireScreen",
            "PersonScreen",
            "PlanScreen",
            "PlanFormModal",
        ]
        assert app.screen.query_one("#text", Input).value == "Cook a meal"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert [g.goal.text for g in store.queries.plan(second.id)] == ["Cook a meal"]
        await pilot.press("escape")
        await settle(pilot)
        await pilot.press("escape")
        await settle(pilot)
        q = app.screen
        assert isinstance(q, QuestionnaireScreen) and q.answers == {"life_satisfaction": 4}
        assert store.service.list_drafts() == [f"measure:{first.id}:ONS4:baseline"]


async def test_a_kind_this_version_cannot_reopen_is_kept(demo_vault: Path) -> None:
    app = make_app(demo_vault)
    async with app.run_test(size=SIZE) as pilot:
        store = await started(app, pilot)
        store.service.save_draft("future:thing", {"kind": "future", "text": "from a newer version"})
        await pilot.press("ctrl+l")
        await settle(pilot)
        store = await unlock_to_offer(app, pilot, "You have some unsaved work; restore it?")
        await accept(app, pilot)
        assert isinstance(app.screen, TodayScreen)
        assert "cannot reopen" in " ".join(n.message for n in app._notifications)
        assert store.service.list_drafts() == ["future:thing"]


# -- a sync conflict's merged text ---------------------------------------------------------------------

OTHER_LAPTOP = "6f0c2b9e-3d1a-4e57-9b08-2c4d5e6f7a81"
CONFLICT_ID = "c0ffee00-0000-4000-8000-0000000000d1"


def _stamp(minutes_before: int) -> int:
    return hlc_mod.pack(int((FROZEN_NOW - dt.timedelta(minutes=minutes_before)).timestamp() * 1000), 0)


def write_conflict(vault_path: Path) -> tuple[str, str, str]:
    """Enrol the (locked) vault with a made-up server and open one goal-text conflict, as test_snapshots_sync
    does without a server; returns (goal id, person id, the other laptop's text)."""
    vault = quick_unlock(vault_path)
    store = open_store(vault, clock=frozen_clock)
    theirs = "Go to the Tuesday walking group with her neighbour"
    try:
        set_state(
            store.engine,
            {"server_url": "https://sprx.practice.example:8443", "device_token": "drafts-token", "user_id": "alice"},
        )
        with store.lock, Session(store.engine) as s, s.begin():
            goal = s.exec(select(Goal).order_by(col(Goal.text))).first()
            assert goal is not None
            s.add(
                SyncConflict(
                    id=CONFLICT_ID,
                    tbl="goal",
                    row_id=goal.id,
                    person_id=goal.person_id,
                    field="text",
                    values_json=[
                        {"v": goal.text, "hlc": _stamp(25), "dev": store.actor.device_id, "seq": 40},
                        {"v": theirs, "hlc": _stamp(18), "dev": OTHER_LAPTOP, "seq": 41},
                    ],
                    shown_idx=1,
                    server_seq=42,
                )
            )
            ids = (goal.id, goal.person_id)
    finally:
        vault.lock()
    return ids[0], ids[1], theirs


async def open_merge_editor(app: SprxApp, pilot: Pilot[Any]) -> MergeScreen:
    await pilot.press("f6")
    await settle(pilot)
    sync_screen = app.screen
    assert isinstance(sync_screen, SyncScreen) and sync_screen.view is not None
    sync_screen.query_one("#conflicts", DataTable).focus()
    await pilot.press("enter")
    await settle(pilot)
    assert isinstance(app.screen, ConflictScreen)
    await pilot.press("m")
    await settle(pilot)
    editor = app.screen
    assert isinstance(editor, MergeScreen)
    return editor


async def test_merged_text_comes_back_after_unlock_and_resolving_discards_it(demo_vault: Path) -> None:
    secret = "Marker-merge-6V3 walking group on Tuesdays and swimming on Fridays"
    goal_id, person_id, theirs = write_conflict(demo_vault)
    app = make_app(demo_vault, auto_sync=False)  # the server address is made up: nothing may try to reach it
    async with app.run_test(size=SIZE) as pilot:
        store = await started(app, pilot)
        name = store.queries.person(person_id).display_name  # type: ignore[union-attr]
        editor = await open_merge_editor(app, pilot)
        assert theirs in editor.query_one("#merged", TextArea).text
        assert editor.draft() is None  # nothing typed yet: nothing to keep
        await pilot.press("f7", *secret)  # select all, then type over it
        await lock(app, pilot, demo_vault, secret)

        store = await unlock_to_offer(
            app, pilot, f"You have an unsaved merged goal (resolving a sync conflict) for {name}; restore it?"
        )
        key = f"sync:{CONFLICT_ID}"
        assert store.service.list_drafts() == [key]
        assert (store.service.load_draft(key) or {})["text"] == secret
        await accept(app, pilot)
        editor = app.screen
        assert isinstance(editor, MergeScreen)
        assert app.current_mode == "sync"
        assert stack_types(app)[-3:] == ["SyncScreen", "ConflictScreen", "MergeScreen"]
        assert editor.query_one("#merged", TextArea).text == secret
        conflict_screen = app.screen_stack[-2]
        assert isinstance(conflict_screen, ConflictScreen) and conflict_screen.conflict is not None
        assert conflict_screen.conflict.id == CONFLICT_ID and len(conflict_screen.conflict.versions) == 2
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, SyncScreen)
        assert store.service.list_drafts() == []
        with Session(store.engine) as s:
            conflict = s.get(SyncConflict, CONFLICT_ID)
            goal = s.get(Goal, goal_id)
            assert conflict is not None and goal is not None
            assert (conflict.status, goal.text) == ("resolved", secret)


async def test_cancelling_a_restored_merge_deletes_its_draft_and_keeps_the_conflict(demo_vault: Path) -> None:
    write_conflict(demo_vault)
    app = make_app(demo_vault, auto_sync=False)
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await open_merge_editor(app, pilot)
        await pilot.press("f7", *"Not worth keeping")
        await lock(app, pilot, demo_vault)
        store = await unlock(app, pilot)
        await accept(app, pilot)
        assert app.screen.query_one("#merged", TextArea).text == "Not worth keeping"
        await pilot.press("escape")
        await settle(pilot)
        conflict_screen = app.screen
        assert isinstance(conflict_screen, ConflictScreen)  # the versions, to choose one another way
        assert [v.text for v in conflict_screen.conflict.versions][1].startswith("Go to the Tuesday")  # type: ignore[union-attr]
        assert store.service.list_drafts() == []
        with Session(store.engine) as s:
            assert s.get(SyncConflict, CONFLICT_ID).status == "open"  # type: ignore[union-attr]


# -- the directory's "flag a change" note ---------------------------------------------------------------


async def flag_dialog(app: SprxApp, pilot: Pilot[Any], service_id: str) -> SuggestChangeModal:
    await pilot.press("f4")
    await settle(pilot)
    screen = app.screen
    assert isinstance(screen, DirectoryScreen)
    table = screen.query_one("#results", DataTable)
    table.focus()
    table.move_cursor(row=table.get_row_index(service_id))
    await settle(pilot)
    await pilot.press("f")
    await settle(pilot)
    modal = app.screen
    assert isinstance(modal, SuggestChangeModal)
    return modal


async def test_directory_change_note_comes_back_and_sending_discards_it(demo_vault: Path) -> None:
    secret = "Marker-flag-1D8 now meets on Fridays"
    app = make_app(demo_vault)
    async with app.run_test(size=SIZE) as pilot:
        store = await started(app, pilot)
        service = directory.search_services(store, limit=5)[0][2]
        modal = await flag_dialog(app, pilot, service.id)
        assert modal.draft() is None  # nothing typed yet
        await pilot.press("down", "tab", *secret)  # "its details have changed", then the note
        await lock(app, pilot, demo_vault, secret)

        store = await unlock_to_offer(
            app, pilot, f"You have an unsent note about a change to {service.name}; restore it?"
        )
        assert store.service.list_drafts() == [f"directory:flag:{service.id}"]
        await accept(app, pilot)
        modal = app.screen
        assert isinstance(modal, SuggestChangeModal)
        assert app.current_mode == "directory"
        assert stack_types(app)[-2:] == ["DirectoryScreen", "SuggestChangeModal"]
        assert modal.query_one("#note", Input).value == secret
        assert modal.chosen() == "details_changed"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, DirectoryScreen)
        assert store.service.list_drafts() == []
        with Session(store.engine) as s:
            suggestions = s.exec(select(DirectorySuggestion)).all()
        assert [(x.service_id, x.kind, x.note) for x in suggestions] == [(service.id, "details_changed", secret)]


async def test_cancelling_a_restored_directory_note_deletes_its_draft(demo_vault: Path) -> None:
    app = make_app(demo_vault)
    async with app.run_test(size=SIZE) as pilot:
        store = await started(app, pilot)
        service = directory.search_services(store, limit=5)[0][1]
        await flag_dialog(app, pilot, service.id)
        await pilot.press("tab", *"Closed for good")
        await lock(app, pilot, demo_vault)
        store = await unlock(app, pilot)
        await accept(app, pilot)
        assert app.screen.query_one("#note", Input).value == "Closed for good"
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, DirectoryScreen)
        assert store.service.list_drafts() == []
        with Session(store.engine) as s:
            assert s.exec(select(DirectorySuggestion)).all() == []
