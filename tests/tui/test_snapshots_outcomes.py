"""SVG snapshots of the outcome questionnaire and the outcomes tab: synthetic person, fixed answers, frozen clock."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from sprx_tui.app import SprxApp
from sprx_tui.config import Config
from sprx_tui.core.store import CaseStore, open_store
from sprx_tui.screens.person import PersonScreen
from tests.tui.conftest import frozen_clock, quick_unlock
from tests.tui.settling import settle

SIZES = [(80, 24), (120, 40)]
THEMES = ["default", "high_contrast"]
START, REVIEW, END = dt.date(2026, 6, 1), dt.date(2026, 9, 1), dt.date(2026, 11, 20)


@pytest.fixture(autouse=True)
def _config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPRX_CONFIG_DIR", str(tmp_path / "config"))


@pytest.fixture(scope="module")
def outcome_store(demo_vault_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CaseStore]:
    """The demo vault plus one synthetic person with fixed measures (one of them incomplete). Nothing saves here."""
    dest = tmp_path_factory.mktemp("outcome-snapshots") / "vault"
    shutil.copytree(demo_vault_template, dest)
    vault = quick_unlock(dest)
    store = open_store(vault, clock=frozen_clock)
    svc = store.service
    person = svc.add_person(given_name="Olive", family_name="Sample", date_of_birth=dt.date(1948, 2, 2))

    def ons4(a: int, b: int, c: int, d: int) -> dict[str, int | None]:
        return {"life_satisfaction": a, "worthwhile": b, "happiness": c, "anxiety": d}

    measures: list[tuple[str, str, dt.date, dict[str, int | None]]] = [
        ("ONS4", "baseline", START, ons4(4, 5, 3, 7)),
        ("ONS4", "review", REVIEW, ons4(6, 6, 5, 5)),
        ("ONS4", "discharge", END, ons4(8, 7, 7, 3)),
        ("UCLA3", "baseline", START, {"companionship": 3, "left_out": 3, "isolated": 2}),
        ("UCLA3", "review", REVIEW, {"companionship": 2, "left_out": None, "isolated": 2}),
        ("UCLA3", "discharge", END, {"companionship": 1, "left_out": 2, "isolated": 1}),
        ("SWEMWBS", "baseline", START, dict(zip(SWEMWBS_IDS, (2, 3, 2, 3, 3, 2, 3), strict=True))),
        ("SWEMWBS", "discharge", END, dict(zip(SWEMWBS_IDS, (4, 4, 3, 4, 4, 3, 4), strict=True))),
        ("HEALTH_USE", "baseline", START, {"gp_appointments": 5, "ae_attendances": 2}),
        ("HEALTH_USE", "discharge", END, {"gp_appointments": 2, "ae_attendances": 0}),
    ]
    for code, time_point, taken_on, responses in measures:
        svc.record_outcome(person.id, code, time_point, responses, taken_on=taken_on)
    store.snapshot_person_id = person.id  # type: ignore[attr-defined]
    yield store
    vault.lock()


SWEMWBS_IDS = ("optimistic", "useful", "relaxed", "problems", "thinking", "close", "own_mind")


def make_app(store: CaseStore, theme: str) -> SprxApp:
    app = SprxApp(store.vault.path, clock=frozen_clock, config=Config(theme=theme), store=store)
    app.animation_level = "none"
    return app


def on_outcomes(store: CaseStore, measure: tuple[str, str] | None = None, *keys: str) -> Callable[[Pilot[Any]], Any]:
    """Open the person on the outcomes tab; optionally start a questionnaire and press `keys`."""
    person_id: str = store.snapshot_person_id  # type: ignore[attr-defined]

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        pilot.app.open_person(person_id, tab="outcomes")  # type: ignore[attr-defined]
        await settle(pilot)
        if measure is not None:
            screen = pilot.app.screen
            assert isinstance(screen, PersonScreen)
            screen.open_measure(*measure)
            await settle(pilot)
        for key in keys:
            await pilot.press(key)
            await settle(pilot)

    return run_before


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_outcomes_tab(snap_compare: Any, outcome_store: CaseStore, size: tuple[int, int], theme: str) -> None:
    app = make_app(outcome_store, theme)
    assert snap_compare(app, terminal_size=size, run_before=on_outcomes(outcome_store))


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_questionnaire_ons4_item(
    snap_compare: Any, outcome_store: CaseStore, size: tuple[int, int], theme: str
) -> None:
    # Answered 7, then back: the first question with 7 chosen.
    run_before = on_outcomes(outcome_store, ("ONS4", "discharge"), "7", "left")
    assert snap_compare(make_app(outcome_store, theme), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_questionnaire_swemwbs_item(
    snap_compare: Any, outcome_store: CaseStore, size: tuple[int, int], theme: str
) -> None:
    run_before = on_outcomes(outcome_store, ("SWEMWBS", "discharge"), "4")
    assert snap_compare(make_app(outcome_store, theme), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_questionnaire_summary(snap_compare: Any, outcome_store: CaseStore, size: tuple[int, int], theme: str) -> None:
    # A review with one question skipped: incomplete, with change against the baseline of 01/06/2026.
    run_before = on_outcomes(outcome_store, ("ONS4", "review"), "8", "s", "1", "enter", "2")
    assert snap_compare(make_app(outcome_store, theme), terminal_size=size, run_before=run_before)
