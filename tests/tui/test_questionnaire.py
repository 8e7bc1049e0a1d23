"""Outcome questionnaires driven by keys against a real vault: baseline then discharge, skip, back, Esc, palette."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import Digits

from sprx_rules import outcomes
from sprx_tui.app import SprxApp
from sprx_tui.core.models import OutcomeResponse
from sprx_tui.core.store import CaseStore
from sprx_tui.screens.forms import ConfirmModal
from sprx_tui.screens.person import PersonScreen
from sprx_tui.screens.questionnaire import (
    MeasureChooser,
    QuestionnaireScreen,
    suggest_time_point,
    summary_content,
)
from sprx_tui.widgets.outcome_chart import (
    OutcomeMeasureCard,
    OutcomesPanel,
    baseline_row,
    compared_row,
    live_rows,
    trend,
)
from tests.tui.conftest import FROZEN_NOW, frozen_clock
from tests.tui.settling import settle, wait_until

SIZE = (100, 32)


@pytest.fixture(autouse=True)
def _config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPRX_CONFIG_DIR", str(tmp_path / "config"))


def make_app(store: CaseStore) -> SprxApp:
    app = SprxApp(store.vault.path, clock=frozen_clock, store=store)
    app.animation_level = "none"
    return app


async def press(app: App[Any], pilot: Pilot[Any], *keys: str) -> None:
    for key in keys:
        await pilot.press(key)
        await settle(pilot)


def new_person(store: CaseStore) -> str:
    person = store.service.add_person(given_name="Olive", family_name="Measure", date_of_birth=dt.date(1948, 2, 2))
    return person.id


async def open_outcomes(app: SprxApp, pilot: Pilot[Any], person_id: str) -> PersonScreen:
    await settle(pilot)
    app.open_person(person_id)
    await settle(pilot)
    await press(app, pilot, "u")
    screen = app.screen
    assert isinstance(screen, PersonScreen)
    assert screen.query_one("TabbedContent").active == "outcomes"
    return screen


def text_of(screen: Any, selector: str) -> str:
    content = screen.query_one(selector).content
    return content.plain if hasattr(content, "plain") else str(content)


def stored(store: CaseStore, person_id: str, code: str) -> list[OutcomeResponse]:
    return [r for r in store.queries.outcomes(person_id) if r.instrument == code]


# -- the journey: baseline, then a discharge with a skipped question ---------------------------------


@pytest.mark.slow  # two whole questionnaires through the screens
async def test_baseline_then_discharge_with_back_and_skip(unlocked_store: CaseStore) -> None:
    person_id = new_person(unlocked_store)
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        person = await open_outcomes(app, pilot, person_id)
        assert "No outcome measures yet" in text_of(person.query_one(OutcomesPanel), ".outcomes-empty")

        # m opens the chooser: ONS4 is first, and with no baseline yet the time point is baseline.
        await press(app, pilot, "m")
        chooser = app.screen
        assert isinstance(chooser, MeasureChooser)
        assert (chooser.code, chooser.time_point) == ("ONS4", "baseline")
        await press(app, pilot, "enter")
        q = app.screen
        assert isinstance(q, QuestionnaireScreen) and (q.code, q.time_point) == ("ONS4", "baseline")
        assert text_of(q, "#q-progress") == "Question 1 of 4"
        assert text_of(q, "#q-item") == outcomes.ONS4.items[0].text
        # Nothing personal is on the screen turned towards the person.
        assert not q.query("PersonHeader")

        await press(app, pilot, "4", "5")
        assert text_of(q, "#q-progress") == "Question 3 of 4"
        # 1 waits: it may be the start of 10. Enter answers 1.
        await press(app, pilot, "1")
        assert q.index == 2 and "press 0 to make it 10" in text_of(q, "#q-hint")
        await press(app, pilot, "enter", "7")
        assert q.on_summary
        summary = text_of(q, "#q-summary")
        assert "All 4 questions answered." in summary
        assert "Life satisfaction   4        low" in summary
        assert "Happiness           1        low" in summary
        assert "Anxiety ↓           7        high" in summary
        assert "This is a baseline" in summary
        await press(app, pilot, "ctrl+s")
        assert app.screen is person
        rows = stored(unlocked_store, person_id, "ONS4")
        assert len(rows) == 1
        base = rows[0]
        assert (base.time_point, base.complete, base.taken_on) == ("baseline", True, FROZEN_NOW.date())
        assert base.responses == {"life_satisfaction": 4, "worthwhile": 5, "happiness": 1, "anxiety": 7}
        assert base.score["bands"] == {
            "life_satisfaction": "low",
            "worthwhile": "medium",
            "happiness": "low",
            "anxiety": "high",
        }

        # The discharge: the chooser now suggests review; d picks discharge.
        await press(app, pilot, "m")
        chooser = app.screen
        assert isinstance(chooser, MeasureChooser) and chooser.time_point == "review"
        assert "Baseline 23/11/2026" in chooser.query_one("#measures").get_option_at_index(0).prompt.plain
        await press(app, pilot, "d", "enter")
        q = app.screen
        assert isinstance(q, QuestionnaireScreen) and q.time_point == "discharge"
        # 1 then 0 is ten; back shows it chosen; 8 replaces it.
        await press(app, pilot, "1", "0")
        assert q.answers == {"life_satisfaction": 10}
        await press(app, pilot, "left")
        assert q.index == 0 and "Answered 10" in text_of(q, "#q-hint")
        await press(app, pilot, "8")
        assert q.answers["life_satisfaction"] == 8 and q.index == 1
        # Skip worthwhile, answer the rest.
        await press(app, pilot, "s", "6", "3")
        assert q.on_summary
        summary = text_of(q, "#q-summary")
        assert "Incomplete: 1 of 4 skipped (Worthwhile)" in summary
        assert "not scored as complete" in summary
        assert "Life satisfaction   8        high       4         +4 ✓" in summary
        assert "Worthwhile          skipped             5         –" in summary
        assert "Anxiety ↓           3        low        7         -4 ✓" in summary
        assert "Change against the baseline taken 23/11/2026" in summary
        await press(app, pilot, "ctrl+s")
        assert app.screen is person

        rows = stored(unlocked_store, person_id, "ONS4")
        discharge = next(r for r in rows if r.time_point == "discharge")
        assert discharge.complete is False
        assert discharge.responses == {"life_satisfaction": 8, "worthwhile": None, "happiness": 6, "anxiety": 3}
        assert discharge.score["missing"] == ["worthwhile"]
        assert "worthwhile" not in discharge.score["bands"]

        # The tab shows both, the discharge marked incomplete, with change since baseline and a trend.
        card = person.query_one("#outcome-ons4", OutcomeMeasureCard)
        text = card.chart_content(90).plain
        assert "Baseline   Discharge*" in text
        assert "* incomplete" in text
        assert "Life satisfaction 4          8          +4 ✓" in text
        assert "Worthwhile        5          –          –" in text
        assert "Change: discharge 23/11/2026 against baseline 23/11/2026" in text


async def test_swemwbs_scores_raw_to_metric_and_shows_copyright(unlocked_store: CaseStore) -> None:
    person_id = new_person(unlocked_store)
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        await open_outcomes(app, pilot, person_id)
        await press(app, pilot, "m", "3")
        assert isinstance(app.screen, MeasureChooser) and app.screen.code == "SWEMWBS"
        await press(app, pilot, "enter")
        q = app.screen
        assert isinstance(q, QuestionnaireScreen) and q.code == "SWEMWBS"
        copyright_line = text_of(q, "#q-copyright")
        assert copyright_line == outcomes.SWEMWBS.copyright
        assert "© NHS Health Scotland, University of Warwick and University of Edinburgh, 2008" in copyright_line
        assert "None of the time" in text_of(q, "#q-options")
        # 6 is not an answer on a 1-5 scale: it is explained and nothing moves on.
        await press(app, pilot, "6")
        assert q.index == 0 and q.query_one("#q-hint").has_class("-warning")
        assert "press 1 to 5" in text_of(q, "#q-hint")
        await press(app, pilot, "3", "3", "3", "3", "3", "4", "4")
        assert q.on_summary
        summary = text_of(q, "#q-summary")
        assert "Raw score (7–35)        23" in summary
        assert "Metric score (7–35)     20.73" in summary
        assert q.query_one("#q-copyright").display
        await press(app, pilot, "ctrl+s")
        row = stored(unlocked_store, person_id, "SWEMWBS")[0]
        assert (row.complete, row.score["total"], row.score["metric"]) == (True, 23, 20.73)


@pytest.mark.slow  # one of the longest fast-tier tests (3-7 s on 2 busy cores): make test runs it, make check does not
async def test_health_use_counts_are_typed_then_entered(unlocked_store: CaseStore) -> None:
    person_id = new_person(unlocked_store)
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        await open_outcomes(app, pilot, person_id)
        await press(app, pilot, "m", "4")
        chooser = app.screen
        assert isinstance(chooser, MeasureChooser)
        # Health use is asked at baseline and discharge only; review is refused with a sentence.
        await press(app, pilot, "r", "enter")
        assert app.screen is chooser
        assert "asked at baseline and discharge only" in text_of(chooser, "#chooser-note")
        await press(app, pilot, "b", "enter")
        q = app.screen
        assert isinstance(q, QuestionnaireScreen) and q.code == "HEALTH_USE"
        await press(app, pilot, "1", "2", "3")  # 123 is over the most (99): refused, 12 kept
        assert q.typed == "12" and "most this can be is 99" in text_of(q, "#q-hint")
        assert q.query_one("#q-number", Digits).value == "12"
        await press(app, pilot, "backspace", "4", "enter")
        assert q.answers == {"gp_appointments": 14}
        await press(app, pilot, "enter")  # nothing typed: asks for a number, does not move
        assert q.index == 1 and "Press a number" in text_of(q, "#q-hint")
        await press(app, pilot, "0", "enter")
        summary = text_of(q, "#q-summary")
        assert "Both questions answered." in summary
        assert "GP appointments ↓   14" in summary and "A&E attendances ↓   0" in summary
        await press(app, pilot, "ctrl+s")
        row = stored(unlocked_store, person_id, "HEALTH_USE")[0]
        assert row.responses == {"gp_appointments": 14, "ae_attendances": 0} and row.complete


@pytest.mark.slow  # one of the longest fast-tier tests (3-7 s on 2 busy cores): make test runs it, make check does not
async def test_escape_asks_before_throwing_answers_away(unlocked_store: CaseStore) -> None:
    person_id = new_person(unlocked_store)
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        person = await open_outcomes(app, pilot, person_id)
        person.open_measure("UCLA3", "baseline")
        await settle(pilot)
        q = app.screen
        assert isinstance(q, QuestionnaireScreen)
        # No answers yet: Esc simply leaves.
        await press(app, pilot, "escape")
        assert app.screen is person

        person.open_measure("UCLA3", "baseline")
        await settle(pilot)
        q = app.screen
        assert isinstance(q, QuestionnaireScreen)
        await press(app, pilot, "2", "escape")
        assert isinstance(app.screen, ConfirmModal)
        assert "Throw away these answers" in text_of(app.screen, "#question")
        await press(app, pilot, "n")
        assert app.screen is q and q.answers == {"companionship": 2}
        # From the summary too, and this time yes: nothing is stored.
        await press(app, pilot, "3", "1")
        assert q.on_summary and "Total (3–9) ↓           6 (lonely)" in text_of(q, "#q-summary")
        await press(app, pilot, "escape")
        assert isinstance(app.screen, ConfirmModal)
        await press(app, pilot, "y")
        assert app.screen is person
        assert stored(unlocked_store, person_id, "UCLA3") == []


async def test_incomplete_ucla_is_stored_unscored(unlocked_store: CaseStore) -> None:
    person_id = new_person(unlocked_store)
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        person = await open_outcomes(app, pilot, person_id)
        person.open_measure("UCLA3", "baseline")
        await settle(pilot)
        await press(app, pilot, "3", "s", "2")
        q = app.screen
        assert isinstance(q, QuestionnaireScreen) and q.on_summary
        summary = text_of(q, "#q-summary")
        assert "Total (3–9) ↓           not scored" in summary
        assert "Left out                skipped" in summary
        await press(app, pilot, "ctrl+s")
        row = stored(unlocked_store, person_id, "UCLA3")[0]
        assert row.complete is False and row.score["total"] is None and row.score["bands"] == {}
        text = person.query_one("#outcome-ucla3", OutcomeMeasureCard).chart_content(90).plain
        assert "Baseline*" in text and "Total (3–9) ↓     –          –" in text


@pytest.mark.slow  # one of the longest fast-tier tests (3-7 s on 2 busy cores): make test runs it, make check does not
async def test_command_palette_starts_a_measure(unlocked_store: CaseStore) -> None:
    person_id = new_person(unlocked_store)
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.open_person(person_id)
        await settle(pilot)
        await press(app, pilot, "ctrl+p")
        await pilot.press(*"ucla loneliness, discharge")
        await settle(pilot)  # the palette's search is a worker
        hits = app.screen.query("CommandList")
        await wait_until(pilot, lambda: bool(hits.first().option_count), what="the palette's hits")
        await press(app, pilot, "enter")
        q = app.screen
        assert isinstance(q, QuestionnaireScreen)
        assert (q.code, q.time_point) == ("UCLA3", "discharge")


# -- the pure parts ------------------------------------------------------------------------------------


def _row(code: str, time_point: str, day: int, responses: dict[str, int | None]) -> OutcomeResponse:
    result = outcomes.score(code, responses)
    return OutcomeResponse(
        id=f"r{day:02d}{time_point}",
        practice_id="p",
        person_id="x",
        instrument=code,
        time_point=time_point,
        taken_on=dt.date(2026, 1, day),
        responses=responses,
        complete=result.complete,
        score={},
        created_at=dt.datetime(2026, 1, day, tzinfo=dt.UTC),
    )


def test_baseline_is_the_earliest_complete_one_and_change_uses_the_latest_complete() -> None:
    ucla = "UCLA3"
    rows = [
        _row(ucla, "baseline", 1, {"companionship": 3, "left_out": None, "isolated": 3}),
        _row(ucla, "baseline", 2, {"companionship": 3, "left_out": 3, "isolated": 2}),
        _row(ucla, "review", 10, {"companionship": 2, "left_out": 2, "isolated": 2}),
        _row(ucla, "discharge", 20, {"companionship": 1, "left_out": None, "isolated": 1}),
    ]
    live = live_rows(rows, ucla)
    base = baseline_row(live)
    assert base is not None and base.taken_on.day == 2
    later = compared_row(live, base)
    assert later is not None and later.time_point == "review"  # the discharge is incomplete
    assert suggest_time_point(ucla, rows) == "review"
    assert suggest_time_point("HEALTH_USE", []) == "baseline"
    assert suggest_time_point("HEALTH_USE", [_row("HEALTH_USE", "baseline", 1, {"gp_appointments": 1})]) == "discharge"


def test_trend_scales_over_the_range_and_marks_missing() -> None:
    assert trend([0, 5, 10], 0, 10) == "▁▁ ▅▅ ██"
    assert trend([3, None, 9], 3, 9, bar=1) == "▁ · █"
    assert trend([40], 7, 35) == "██"  # out of range is clamped, never an error


def test_summary_says_when_no_baseline_exists() -> None:
    answers = {"companionship": 1, "left_out": 1, "isolated": 2}
    text = summary_content("UCLA3", "review", answers, []).plain
    assert "No baseline has been taken for this measure" in text
    assert "Total (3–9) ↓           4 (not lonely)" in text
    assert "Baseline" not in text.split("\n")[2]  # no baseline and change columns


def test_card_keeps_the_baseline_column_and_the_latest_when_space_is_short() -> None:
    rows = [_row("UCLA3", "baseline", 1, {"companionship": 3, "left_out": 3, "isolated": 3})]
    rows += [
        _row("UCLA3", "review", day, {"companionship": 3, "left_out": 2, "isolated": level})
        for day, level in ((5, 3), (9, 2), (13, 2), (17, 1))
    ]
    rows.append(_row("UCLA3", "discharge", 21, {"companionship": 1, "left_out": 1, "isolated": 1}))
    narrow = OutcomeMeasureCard("UCLA3", rows).chart_content(70).plain.split("\n")
    # 70 is the card's width at 80 columns: the baseline and the latest; the trend still draws the last six.
    assert narrow[0].split() == ["Baseline", "Discharge", "Change", "Trend"]
    assert narrow[1].split() == ["01/01/2026", "21/01/2026"]
    assert narrow[2].split() == ["Total", "(3–9)", "↓", "9", "3", "-6", "✓", "██", "▇▇", "▆▆", "▆▆", "▅▅", "▁▁"]
    assert "4 more measure(s) not shown as columns; the trend draws the latest 6." in narrow
    wide = OutcomeMeasureCard("UCLA3", rows).chart_content(116).plain.split("\n")
    assert wide[0].split()[:6] == ["Baseline", "Review", "Review", "Review", "Review", "Discharge"]
    assert not any("not shown" in line for line in wide)
