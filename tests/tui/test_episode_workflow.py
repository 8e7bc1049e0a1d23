"""A person's episode to its end, by keys: an onward referral with its need and consent, withdrawn; then
discharge at each level of consent, the GP summary previewed and written, validated as a FHIR document."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input

from sprx_tui.core import reports
from sprx_tui.core.export import CONSENT_REFUSED
from sprx_tui.core.store import CaseStore
from sprx_tui.screens.directory import DirectoryScreen
from sprx_tui.screens.episode import (
    DischargeModal,
    GpSummaryModal,
    GpSummaryPreview,
    OnwardReferralModal,
    WithdrawOnwardModal,
)
from sprx_tui.screens.forms import FormField
from sprx_tui.screens.person import PersonScreen
from tests.tui.conftest import FROZEN_NOW
from tests.tui.settling import settle, wait_until
from tests.tui.test_person import make_app, open_person

SIZE = (120, 40)


@pytest.fixture(autouse=True)
def _config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPRX_CONFIG_DIR", str(tmp_path / "config"))


def new_person(store: CaseStore, consent: str) -> str:
    """A self-referral accepted with a first contact, a need, and a baseline measure; sharing as given."""
    svc = store.service
    p = svc.add_person(
        given_name="Wren",
        family_name=f"Testsharer-{consent}",
        nhs_number={"full": "9434765919", "codes_only": "9449305552", "none": "9999958125"}[consent],
        date_of_birth=dt.date(1951, 3, 4),
        consent_gp_sharing=consent,
    )
    r = svc.receive_referral(p.id, source="self", reasons=["loneliness"], received_on=dt.date(2026, 11, 2))
    svc.accept_referral(r.id, mode="phone", occurred_at=FROZEN_NOW - dt.timedelta(days=14), notes="First call.")
    svc.record_need(p.id, "loneliness", "Wants company on weekdays")
    return p.id


async def open_discharge(app: Any, pilot: Pilot[Any], person_id: str) -> tuple[Any, DischargeModal]:
    """Open the person and press D: their screen and the discharge dialog."""
    screen = await open_person(app, pilot, person_id)
    await pilot.press("D")
    await wait_until(pilot, lambda: isinstance(app.screen, DischargeModal), what="the discharge dialog")
    return screen, app.screen


async def discharge(app: Any, pilot: Pilot[Any], person_id: str, *keys: str) -> GpSummaryPreview:
    """On the person: D, choose with `keys`, Ctrl+S; the GP summary preview follows in the same dialog, its
    first step hidden and a final measure no longer offered."""
    screen, modal = await open_discharge(app, pilot, person_id)
    await pilot.press(*keys, "ctrl+s")
    await wait_until(pilot, lambda: modal.summary is not None, what="the summary preview")
    assert app.screen is modal and modal.summary is not None and modal.summary.display
    assert not modal.query_one("#choice").display
    await pilot.press("ctrl+t")  # too late for a final measure: nothing happens
    assert app.screen is modal
    assert screen.person is not None
    return modal.summary


def preview_text(summary: GpSummaryModal | GpSummaryPreview) -> str:
    return str(summary.query_one("#preview-text").render())


@pytest.mark.slow  # a referral made and withdrawn through the dialogs
async def test_onward_referral_with_need_and_consent_then_withdrawn(unlocked_store: CaseStore) -> None:
    person_id = new_person(unlocked_store, "full")
    before = reports.build_report(unlocked_store).uptake
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        await open_person(app, pilot, person_id)
        await pilot.press("f")  # the directory, for this person
        await wait_until(pilot, lambda: isinstance(app.screen, DirectoryScreen), what="the directory")
        await wait_until(pilot, lambda: bool(app.screen.rows), what="the directory's first results")
        directory = app.screen
        await pilot.press("enter", "r")  # to the results, refer the first service
        await wait_until(pilot, lambda: isinstance(app.screen, OnwardReferralModal), what="the referral dialog")
        modal = app.screen
        # The person's need is offered by its words; the chosen one is said in words too.
        options = [str(modal.query_one("#reasons").get_option_at_index(i).prompt) for i in range(2)]
        assert options == ["Loneliness or isolation: Wants company on weekdays", "No particular need"]
        await pilot.press("home")
        assert "Chosen: Loneliness or isolation" in str(modal.query_one("#chosen").render())
        await pilot.press("enter", *"Meets Tuesdays", "tab", "space", "ctrl+s")
        await wait_until(pilot, lambda: app.screen is directory, what="the referral saved")
        [onward] = unlocked_store.queries.onward_referrals(person_id)
        [need] = unlocked_store.queries.needs(person_id)
        assert (onward.need_id, onward.need, onward.notes, onward.consent) == (
            need.id,
            "loneliness",
            "Meets Tuesdays",
            True,
        )
        assert reports.build_report(unlocked_store).uptake.onward_referrals == before.onward_referrals + 1

        # Withdrawn from the person's Onward tab: kept, shown as withdrawn, out of uptake.
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, PersonScreen))
        await pilot.press("o")
        await settle(pilot)
        await pilot.press("x")
        await wait_until(pilot, lambda: isinstance(app.screen, WithdrawOnwardModal), what="the withdraw dialog")
        assert onward.service_name in str(app.screen.query_one(".muted").render())
        await pilot.press("end", "ctrl+s")  # "Other" needs words
        assert "Say in a few words" in app.screen.query_one("FormField").error
        await pilot.press("home", "ctrl+s")  # made in error
        await wait_until(pilot, lambda: isinstance(app.screen, PersonScreen), what="the withdrawal saved")
        table = app.screen.query_one("#onward-table", DataTable)
        await wait_until(pilot, lambda: "WITHDRAWN" in str(table.get_row_at(0)), what="the row marked withdrawn")
        assert table.border_subtitle == "1 made, 1 withdrawn"
    [kept] = unlocked_store.queries.onward_referrals(person_id)
    assert (kept.withdrawn_on, kept.withdrawn_reason) == (FROZEN_NOW.date(), "Made in error")
    after = reports.build_report(unlocked_store).uptake
    assert (after.onward_referrals, after.withdrawn) == (before.onward_referrals, before.withdrawn + 1)


async def test_discharge_with_full_consent_writes_the_document_and_letter(
    unlocked_store: CaseStore, tmp_path: Path
) -> None:
    from fhir.resources.R4B.bundle import Bundle

    person_id = new_person(unlocked_store, "full")
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        modal = await discharge(app, pilot, person_id)  # the first reason: goals met
        text = preview_text(modal)
        assert "Name: Wren Testsharer-full" in text and "Reason the episode ended: Goals met" in text
        assert "First call." not in text
        path = modal.query_one("#path", Input)
        assert path.value == "~/gp-summary-2026-11-23.fhir.json"
        path.value = str(tmp_path / "wren.fhir.json")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: (tmp_path / "wren.txt").exists(), what="the letter written")
        await wait_until(pilot, lambda: isinstance(app.screen, PersonScreen))
        assert unlocked_store.queries.person(person_id).status == "discharged"  # type: ignore[union-attr]
    bundle = json.loads((tmp_path / "wren.fhir.json").read_text())
    parsed = Bundle.model_validate(bundle)
    assert parsed.type == "document" and bundle["entry"][0]["resource"]["resourceType"] == "Composition"
    # The letter is what the preview showed.
    assert text in (tmp_path / "wren.txt").read_text()


async def test_discharge_codes_only_shows_and_writes_no_names(unlocked_store: CaseStore, tmp_path: Path) -> None:
    from fhir.resources.R4B.bundle import Bundle

    person_id = new_person(unlocked_store, "codes_only")
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        modal = await discharge(app, pilot, person_id, "down")  # moved away
        text = preview_text(modal)
        assert "Wren" not in text and "Testsharer" not in text and "Wants company" not in text
        assert "NHS number: 9449305552" in text and "Reason the episode ended: Moved away" in text
        assert "Codes only" in str(modal.query_one(".muted").render())
        # A folder that does not exist: one sentence under the box, the dialog and the path stay.
        missing = str(tmp_path / "no-such-folder" / "codes.fhir.json")
        modal.query_one("#path", Input).value = missing
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is modal.screen and modal.query_one("#path", Input).value == missing
        assert modal.query_one(FormField).error.startswith("The folder for the export does not exist")
        modal.query_one("#path", Input).value = str(tmp_path / "codes.fhir.json")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: (tmp_path / "codes.txt").exists(), what="the letter written")
    raw = (tmp_path / "codes.fhir.json").read_text()
    assert Bundle.model_validate(json.loads(raw)).type == "document"
    assert "Wren" not in raw and "Testsharer" not in raw and "Wren" not in (tmp_path / "codes.txt").read_text()


async def test_discharge_without_consent_shows_only_the_refusal(unlocked_store: CaseStore, tmp_path: Path) -> None:
    person_id = new_person(unlocked_store, "none")
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        modal = await discharge(app, pilot, person_id, "end", "enter", *"Chose to stop")
        assert preview_text(modal) == CONSENT_REFUSED
        assert not modal.query("#path") and not modal.query("#save")
        await pilot.press("ctrl+s")  # nothing to write
        assert app.screen is modal.screen
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, PersonScreen))
    [referral] = unlocked_store.queries.referrals(person_id)
    assert (referral.close_reason, referral.close_note) == ("other", "Chose to stop")
    assert not list(tmp_path.rglob("*.json")) and not list(tmp_path.rglob("*.txt"))


@pytest.mark.slow  # a plan and a referral through their forms
async def test_a_need_added_in_the_plan_is_offered_and_shown_as_written(unlocked_store: CaseStore) -> None:
    from sprx_tui.screens.episode import ReasonChoiceModal
    from sprx_tui.screens.plan import PlanScreen

    person_id = new_person(unlocked_store, "full")
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        await open_person(app, pilot, person_id)
        await pilot.press("p")
        await wait_until(pilot, lambda: isinstance(app.screen, PlanScreen), what="the plan")
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, ReasonChoiceModal), what="the need dialog")
        await pilot.press("down", "enter", *"[b]debt[/b] letters")  # low mood, in their words (markup stays text)
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: len(unlocked_store.queries.needs(person_id)) == 2, what="the need saved")
        await wait_until(pilot, lambda: isinstance(app.screen, PlanScreen))
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, PersonScreen))
        await pilot.press("o")
        needs = app.screen.query_one("#onward-needs")
        await wait_until(pilot, lambda: "Low mood" in str(needs.render()), what="the needs line")
        assert "Low mood or anxiety: [b]debt[/b] letters" in str(needs.render())
    [_first, added] = sorted(unlocked_store.queries.needs(person_id), key=lambda n: n.id)
    assert (added.category, added.description, added.status) == ("low_mood", "[b]debt[/b] letters", "open")


async def test_a_discharge_that_fails_keeps_the_dialog_and_its_note(unlocked_store: CaseStore) -> None:
    person_id = new_person(unlocked_store, "full")
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        _screen, modal = await open_discharge(app, pilot, person_id)
        await pilot.press("enter", *"Moving to Wales")
        unlocked_store.service.discharge(person_id, "moved_away")  # ended elsewhere meanwhile (say, by sync)
        await pilot.press("ctrl+s")
        await wait_until(
            pilot, lambda: any("already ended" in n.message for n in app._notifications), what="the sentence"
        )
        await wait_until(pilot, lambda: not modal.saving, what="Save enabled again")
        assert app.screen is modal and modal.words == "Moving to Wales"


async def test_consent_withdrawn_while_the_dialog_was_open_shows_only_the_refusal(
    unlocked_store: CaseStore, tmp_path: Path
) -> None:
    """The dialog's second step is composed for the consent known when it opened (full here); the summary made
    after the discharge decides: consent withdrawn meanwhile (say, by sync) shows the refusal, nothing to write."""
    person_id = new_person(unlocked_store, "full")
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        _screen, modal = await open_discharge(app, pilot, person_id)
        unlocked_store.service.update_person(person_id, consent_gp_sharing="none")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: modal.summary is not None, what="the summary preview")
        summary = modal.summary
        assert preview_text(summary) == CONSENT_REFUSED
        assert not summary.query("#path") and not summary.query("#save")
        assert "Nothing:" in str(summary.query_one(".muted").render())
        await wait_until(pilot, lambda: app.focused is summary.query_one("#cancel"), what="Close focused")
        await pilot.press("ctrl+s")  # nothing to write
        assert app.screen is modal
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, PersonScreen))
    assert not list(tmp_path.rglob("*.json"))
