"""SVG snapshots with NO_COLOR set, at 80x24: Today, the Caseload and a person's contacts read without colour.

With NO_COLOR the app draws in its black-and-white theme (themes.SPRX_NO_COLOR) through Textual's Monochrome
filter: the selected row reversed and bold, overdue follow-ups and the highlighted contact marked in words
and characters. Synthetic data, frozen clock.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from sprx_tui.app import SprxApp
from sprx_tui.config import Config
from sprx_tui.core.store import CaseStore
from tests.tui.conftest import frozen_clock
from tests.tui.settling import settle
from tests.tui.test_snapshots_person import flagged_person, person_store  # noqa: F401 - a fixture

SIZE = (80, 24)


@pytest.fixture(autouse=True)
def _no_color(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPRX_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("NO_COLOR", "1")


def make_app(store: CaseStore) -> SprxApp:
    app = SprxApp(store.vault.path, clock=frozen_clock, config=Config(), store=store)
    app.animation_level = "none"
    assert app.no_color
    return app


def then(*keys: str, person: Callable[[], str] | None = None) -> Callable[[Pilot[Any]], Any]:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        if person is not None:
            pilot.app.open_person(person())  # type: ignore[attr-defined]
            await settle(pilot)
        for key in keys:
            await pilot.press(key)
            await settle(pilot)
        for _ in range(2):
            await pilot.pause()
        await settle(pilot)

    return run_before


def test_today_no_color(snap_compare: Any, person_store: CaseStore) -> None:  # noqa: F811
    assert snap_compare(make_app(person_store), terminal_size=SIZE, run_before=then())


def test_caseload_no_color(snap_compare: Any, person_store: CaseStore) -> None:  # noqa: F811
    assert snap_compare(make_app(person_store), terminal_size=SIZE, run_before=then("f3"))


def test_person_contacts_no_color(snap_compare: Any, person_store: CaseStore) -> None:  # noqa: F811
    run_before = then("c", "down", person=lambda: flagged_person(person_store))
    assert snap_compare(make_app(person_store), terminal_size=SIZE, run_before=run_before)
