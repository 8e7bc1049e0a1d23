"""New person (palette and caseload `a`) and update details (`i` on a person), driven by keys on a real vault."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select
from textual.command import CommandList
from textual.widgets import Checkbox, Input

from sprx_tui.app import SprxApp
from sprx_tui.commands import SearchFirstPalette
from sprx_tui.config import Config
from sprx_tui.core.models import AuditEvent, Person, Referral, SafetyFlagChange, SyncOutbox
from sprx_tui.core.store import CaseStore
from sprx_tui.screens.caseload import CaseloadScreen
from sprx_tui.screens.forms import ConfirmModal
from sprx_tui.screens.person import PersonScreen
from sprx_tui.screens.person_form import NEW_KEY, PersonFormScreen, details_key, restore_draft
from sprx_tui.widgets.person_header import PersonHeader
from tests.tui.conftest import frozen_clock
from tests.tui.settling import open_area, settle, wait_until

SIZE = (120, 40)


@pytest.fixture(autouse=True)
def _config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPRX_CONFIG_DIR", str(tmp_path / "config"))


def make_app(store: CaseStore) -> SprxApp:
    app = SprxApp(store.vault.path, clock=frozen_clock, config=Config(), store=store)
    app.animation_level = "none"
    return app


def people_named(store: CaseStore, family: str) -> list[Person]:
    with Session(store.engine) as s:
        return list(s.exec(select(Person).where(Person.family_name == family)).all())


def first_command(app: SprxApp) -> str:
    """The first line of the palette's top hit ("" while it has none)."""
    found = app.screen.query(CommandList)
    if not found or found.first().option_count == 0:
        return ""
    prompt = found.first().get_option_at_index(0).prompt
    return str(getattr(prompt, "plain", prompt))


def count(store: CaseStore, model: Any) -> int:
    with Session(store.engine) as s:
        return len(s.exec(select(model)).all())


async def fill_new_person(pilot: Any, given: str, family: str, nhs: str = "") -> None:
    """Given name, Tab, family name; the NHS number set straight into its box when given."""
    await pilot.press(*given, "tab", *family)
    if nhs:
        pilot.app.screen.query_one("#nhs_number", Input).value = nhs


async def save_and_wait_for_person(pilot: Any, app: SprxApp) -> PersonScreen:
    await pilot.press("ctrl+s")
    await wait_until(pilot, lambda: isinstance(app.screen, PersonScreen), what="the new person's record")
    await settle(pilot)
    return app.screen  # type: ignore[return-value]


@pytest.mark.slow  # one of the longest fast-tier tests (3-7 s on 2 busy cores): make test runs it, make check does not
async def test_new_person_from_the_palette_is_a_self_referral_and_is_in_the_caseload_filter(
    unlocked_store: CaseStore,
) -> None:
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p", *"new person")
        await wait_until(pilot, lambda: first_command(app).startswith("New person"), what="the command")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, PersonFormScreen), what="the form")
        await fill_new_person(pilot, "Zofia", "Quillfeather")
        screen = await save_and_wait_for_person(pilot, app)
        [person] = people_named(unlocked_store, "Quillfeather")
        assert screen.person_id == person.id
        assert "Zofia Quillfeather" in app.screen.query_one(PersonHeader).identity_text
        [referral] = unlocked_store.queries.referrals(person.id)
        assert (referral.source, referral.status) == ("self", "received")
        await pilot.press("escape")
        caseload = await open_area(pilot, "f3", CaseloadScreen)
        await pilot.press("slash", *"quillf")
        await wait_until(pilot, lambda: caseload.total == 1, what="the filtered caseload")
        assert list(caseload.query_one("#caseload").rows) == [person.id]


async def test_enter_typed_before_the_palette_has_searched_runs_the_command_searched_for(
    unlocked_store: CaseStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "new person" and Enter typed faster than the search: the Enter waits for the search, then opens the form.

    The people search (SQL in a thread) is held until the keys are in, as on a busy laptop. Textual's own palette
    would have answered the Enter from the list still on screen: the empty search's, every command."""
    release = threading.Event()
    searched = unlocked_store.queries.search

    def held_search(text: str, limit: int = 20) -> Any:
        release.wait(10)
        return searched(text, limit)

    monkeypatch.setattr(unlocked_store.queries, "search", held_search)
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p")
        await wait_until(pilot, lambda: first_command(app) != "", what="the palette's commands")
        await pilot.press(*"new person", "enter")
        await pilot.pause()
        assert isinstance(app.screen, SearchFirstPalette), "the Enter ran something before the search was done"
        release.set()
        await wait_until(pilot, lambda: isinstance(app.screen, PersonFormScreen), what="the new-person form")


@pytest.mark.slow  # one of the longest fast-tier tests (3-7 s on 2 busy cores): make test runs it, make check does not
async def test_new_person_from_the_caseload_key_a(unlocked_store: CaseStore) -> None:
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        await open_area(pilot, "f3", CaseloadScreen)
        await pilot.press("a")
        await wait_until(pilot, lambda: isinstance(app.screen, PersonFormScreen), what="the form")
        await fill_new_person(pilot, "Ivo", "Brackenridge", nhs="943 476 5870")
        app.screen.query_one("#flag_animals", Checkbox).value = True
        await save_and_wait_for_person(pilot, app)
        [person] = people_named(unlocked_store, "Brackenridge")
        assert (person.nhs_number, person.safety_flags) == ("9434765870", ["animals"])
        assert "Animals in the home" in app.screen.query_one(PersonHeader).flags_text
        await pilot.press("escape")
        await settle(pilot)
        caseload = app.screen
        assert isinstance(caseload, CaseloadScreen)
        await pilot.press("slash", *"bracken")
        await wait_until(pilot, lambda: caseload.total == 1, what="the filtered caseload")


@pytest.mark.slow  # the new-person form typed key by key
async def test_invalid_nhs_number_is_one_sentence_on_its_field_and_nothing_is_saved(unlocked_store: CaseStore) -> None:
    people, referrals = count(unlocked_store, Person), count(unlocked_store, Referral)
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        await open_area(pilot, "f3", CaseloadScreen)
        await pilot.press("a")
        await wait_until(pilot, lambda: isinstance(app.screen, PersonFormScreen), what="the form")
        form = app.screen
        await fill_new_person(pilot, "Ivo", "Brackenridge", nhs="943 476 5871")
        await pilot.press("ctrl+s")
        field = form.query_one("#field-nhs_number")
        await wait_until(pilot, lambda: field.has_class("-invalid"), what="the sentence under the NHS number")
        sentence = field.error  # type: ignore[attr-defined]
        assert sentence.endswith(".") and sentence.count(".") == 1 and "NHS number" in sentence
        assert app.screen is form and form.query_one("#given_name", Input).value == "Ivo"  # nothing lost
        assert (count(unlocked_store, Person), count(unlocked_store, Referral)) == (people, referrals)
        assert form.draft() is not None and form.draft()[0] == NEW_KEY  # kept if the vault locks now


async def test_duplicate_nhs_number_is_warned_naming_who_holds_it(unlocked_store: CaseStore) -> None:
    holder = next(p for p in unlocked_store.queries.caseload(limit=30)[0] if p.nhs_number)
    people = count(unlocked_store, Person)
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.action_new_person()
        await wait_until(pilot, lambda: isinstance(app.screen, PersonFormScreen), what="the form")
        form = app.screen
        await fill_new_person(pilot, "Ivo", "Brackenridge", nhs=holder.nhs_number)
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), what="the duplicate warning")
        question = str(app.screen.query_one("#question").render())
        assert holder.name in question and holder.nhs_number in question
        assert count(unlocked_store, Person) == people  # warned before anything is saved
        await pilot.press("n")
        await wait_until(pilot, lambda: app.screen is form, what="back to the form")
        assert holder.name in form.query_one("#field-nhs_number").error  # type: ignore[attr-defined]
        await pilot.press("ctrl+s", "y")
        await wait_until(pilot, lambda: isinstance(app.screen, PersonScreen), what="saved anyway")
        assert len(people_named(unlocked_store, "Brackenridge")) == 1


async def test_update_phone_and_add_then_remove_a_safety_flag_with_reasons(unlocked_store: CaseStore) -> None:
    person, _ = unlocked_store.service.new_person(
        referral_source="self", given_name="Ivo", family_name="Brackenridge", phone="01632 960001"
    )
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.open_person(person.id)
        await wait_until(pilot, lambda: isinstance(app.screen, PersonScreen), what="the record")
        await settle(pilot)
        record = app.screen
        await pilot.press("i")
        await wait_until(pilot, lambda: isinstance(app.screen, PersonFormScreen), what="the details form")
        form = app.screen
        assert form.query_one("#phone", Input).value == "01632 960001"
        form.query_one("#phone", Input).value = "01632 960002"
        form.query_one("#flag_animals", Checkbox).value = True
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: form.query_one("#field-flag_reason").has_class("-invalid"), what="reason")
        assert unlocked_store.queries.person(person.id).phone == "+441632960001"  # nothing saved without it
        form.query_one("#flag_reason", Input).value = "Large dog seen on the visit"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: app.screen is record, what="back on the record")
        await wait_until(
            pilot, lambda: "Animals in the home" in record.query_one(PersonHeader).flags_text, what="the flag shown"
        )
        await settle(pilot)
        overview = str(record.query_one("#overview-body").render())
        assert "added 23/11/2026 by" in overview and "Large dog seen on the visit" in overview

        await pilot.press("i")
        await wait_until(pilot, lambda: isinstance(app.screen, PersonFormScreen), what="the details form again")
        form = app.screen
        form.query_one("#flag_animals", Checkbox).value = False
        form.query_one("#flag_reason", Input).value = "Dog rehomed"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: app.screen is record, what="back on the record")
        await wait_until(
            pilot, lambda: "No home-visit safety flags" in record.query_one(PersonHeader).flags_text, what="cleared"
        )
    saved = unlocked_store.queries.person(person.id)
    assert (saved.phone, saved.safety_flags) == ("+441632960002", [])
    with Session(unlocked_store.engine) as s:
        changes = s.exec(select(SafetyFlagChange).where(SafetyFlagChange.person_id == person.id)).all()
        assert sorted((c.change, c.reason) for c in changes) == [
            ("added", "Large dog seen on the visit"),
            ("removed", "Dog rehomed"),
        ]
        patches = s.exec(select(SyncOutbox).where(SyncOutbox.row_id == person.id, SyncOutbox.op == "patch")).all()
        assert [sorted(p.fields) for p in patches] == [["phone", "safety_flags"], ["safety_flags"]]
        audit = s.exec(select(AuditEvent).where(AuditEvent.person_id == person.id)).all()
        details = {(a.record_type, a.detail) for a in audit}
        assert ("person", "phone,safety_flags") in details and ("person", "safety_flags") in details
        assert {("safety_flag_change", "added animals"), ("safety_flag_change", "removed animals")} <= details


@pytest.mark.slow  # one of the longest fast-tier tests (3-7 s on 2 busy cores): make test runs it, make check does not
async def test_a_half_typed_new_person_is_restored_from_its_draft(unlocked_store: CaseStore) -> None:
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.action_new_person()
        await wait_until(pilot, lambda: isinstance(app.screen, PersonFormScreen), what="the form")
        await fill_new_person(pilot, "Ivo", "Brackenridge")
        key, payload = app.screen.draft()  # type: ignore[misc]
        assert key == NEW_KEY and payload["values"]["family_name"] == "Brackenridge"
        app.pop_screen()
        await settle(pilot)
        restore_draft(app, key, payload)
        await wait_until(
            pilot,
            lambda: [i.value for i in app.screen.query("#family_name").results(Input)] == ["Brackenridge"],
            what="the restored form, filled",
        )
        assert details_key("p1") == "person:p1:details"


async def test_details_show_stored_text_inertly_and_saving_leaves_it_as_it_was(unlocked_store: CaseStore) -> None:
    """A multi-line address and needs (as an import or another laptop may store them) are shown with visible marks in
    the one-line boxes, never raw line breaks; changing only the phone writes only the phone."""
    person, _ = unlocked_store.service.new_person(
        referral_source="gp",
        given_name="Ivo",
        family_name="Brackenridge",
        address="1 Mill Lane\nEastgate",
        communication_needs="Large print\tplease\nNo phone calls",
    )
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.open_person(person.id)
        await wait_until(pilot, lambda: isinstance(app.screen, PersonScreen), what="the record")
        await settle(pilot)
        record = app.screen
        await pilot.press("i")
        await wait_until(pilot, lambda: bool(app.screen.query("#address")), what="the details form")
        form = app.screen
        assert form.query_one("#address", Input).value == "1 Mill Lane\u240aEastgate"
        assert form.query_one("#communication_needs", Input).value == "Large print\u2409please\u240aNo phone calls"
        form.query_one("#phone", Input).value = "01632 960003"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: app.screen is record, what="back on the record")
    saved = unlocked_store.queries.person(person.id)
    assert (saved.address, saved.communication_needs) == (
        "1 Mill Lane\nEastgate",
        "Large print\tplease\nNo phone calls",
    )
    with Session(unlocked_store.engine) as s:
        patches = s.exec(select(SyncOutbox).where(SyncOutbox.row_id == person.id, SyncOutbox.op == "patch")).all()
        assert [sorted(p.fields) for p in patches] == [["phone"]]
