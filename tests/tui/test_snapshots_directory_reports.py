"""SVG snapshots of the directory (opened for a person, a search typed) and the reports: demo data, frozen clock."""

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

SIZES = [(80, 24), (120, 40)]
SIZE_IDS = [f"{w}x{h}" for w, h in SIZES]
THEMES = ["default", "high_contrast"]


@pytest.fixture(autouse=True)
def _config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPRX_CONFIG_DIR", str(tmp_path / "config"))


# Each test gets its own copy of the demo vault (unlocked_store): opening a record writes audit rows that
# are synced, so a shared store would make the status bar's "changes waiting" depend on test order.


def referred_person(store: CaseStore) -> str:
    """The first active person (by name) with a referral reason, so the context line shows one."""
    rows, _ = store.queries.caseload(status="active", sort="name", limit=100)
    return next(r.id for r in rows if any(x.reasons for x in store.queries.referrals(r.id)))


def make_app(store: CaseStore, theme: str) -> SprxApp:
    app = SprxApp(store.vault.path, clock=frozen_clock, config=Config(theme=theme), store=store)
    app.animation_level = "none"
    return app


def directory_for_person(store: CaseStore) -> Callable[[Pilot[Any]], Any]:
    """Open the person's record, f for the directory, search "walk", go to the results and down to a STALE row."""
    person_id = referred_person(store)

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot, rounds=4)
        pilot.app.open_person(person_id)  # type: ignore[attr-defined]
        await settle(pilot, rounds=4)
        await pilot.press("f")
        await settle(pilot, rounds=4)
        await pilot.press(*"walk")
        await settle(pilot, rounds=4)
        await pilot.press("enter", "down", "down")
        await settle(pilot, rounds=4)

    return run_before


async def reports_screen(pilot: Pilot[Any]) -> None:
    await settle(pilot, rounds=4)
    await pilot.press("f5")
    await settle(pilot, rounds=4)


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_directory(snap_compare: Any, unlocked_store: CaseStore, size: tuple[int, int], theme: str) -> None:
    app = make_app(unlocked_store, theme)
    assert snap_compare(app, terminal_size=size, run_before=directory_for_person(unlocked_store))


@pytest.mark.slow  # a search typed, then a snapshot (the colour one stays fast)
def test_directory_no_color(snap_compare: Any, unlocked_store: CaseStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without colour the STALE and INACTIVE marks are still there, as words."""
    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app(unlocked_store, "default")
    assert snap_compare(app, terminal_size=(80, 24), run_before=directory_for_person(unlocked_store))


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_reports(snap_compare: Any, unlocked_store: CaseStore, size: tuple[int, int], theme: str) -> None:
    assert snap_compare(make_app(unlocked_store, theme), terminal_size=size, run_before=reports_screen)
