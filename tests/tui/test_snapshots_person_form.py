"""SVG snapshots of the person form: a new person (empty, and with an NHS number refused), a person's details."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from sprx_tui.app import SprxApp
from sprx_tui.config import Config
from sprx_tui.core.store import CaseStore
from sprx_tui.screens.person_form import PersonFormScreen
from tests.tui.conftest import frozen_clock
from tests.tui.settling import settle, wait_until
from tests.tui.test_snapshots_person import flagged_person

SIZES = [(80, 24), (120, 40)]
SIZE_IDS = [f"{w}x{h}" for w, h in SIZES]


@pytest.fixture(autouse=True)
def _config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPRX_CONFIG_DIR", str(tmp_path / "config"))


def make_app(store: CaseStore) -> SprxApp:
    app = SprxApp(store.vault.path, clock=frozen_clock, config=Config(), store=store)
    app.animation_level = "none"
    return app


def new_person(*, invalid_nhs: bool = False) -> Callable[[Pilot[Any]], Any]:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        pilot.app.action_new_person()  # type: ignore[attr-defined]
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, PersonFormScreen), what="the form")
        await settle(pilot)
        if invalid_nhs:
            await pilot.press(*"Zofia", "tab", *"Quillfeather")
            pilot.app.screen.query_one("#nhs_number", Input).value = "943 476 5871"
            await pilot.press("ctrl+s")
            form = pilot.app.screen
            await wait_until(pilot, lambda: form.query_one("#field-nhs_number").has_class("-invalid"), what="error")
            await settle(pilot)
            pilot.app.clear_notifications()
        for _ in range(2):
            await pilot.pause()

    return run_before


def details_of(store: CaseStore, *, scroll_to_flags: bool = False) -> Callable[[Pilot[Any]], Any]:
    person_id = flagged_person(store)

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        pilot.app.open_person(person_id)  # type: ignore[attr-defined]
        await settle(pilot)
        await pilot.press("i")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, PersonFormScreen), what="the details form")
        await settle(pilot)
        if scroll_to_flags:
            pilot.app.screen.query_one("#flag_reason").focus()  # the flags and their reason in view
            await settle(pilot)
        for _ in range(2):
            await pilot.pause()

    return run_before


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_new_person_form(snap_compare: Any, unlocked_store: CaseStore, size: tuple[int, int]) -> None:
    assert snap_compare(make_app(unlocked_store), terminal_size=size, run_before=new_person())


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_new_person_form_with_a_refused_nhs_number(
    snap_compare: Any, unlocked_store: CaseStore, size: tuple[int, int]
) -> None:
    assert snap_compare(make_app(unlocked_store), terminal_size=size, run_before=new_person(invalid_nhs=True))


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_person_details_form(snap_compare: Any, unlocked_store: CaseStore, size: tuple[int, int]) -> None:
    assert snap_compare(make_app(unlocked_store), terminal_size=size, run_before=details_of(unlocked_store))


@pytest.mark.parametrize("theme", ["high_contrast", "no_color"])
def test_person_details_form_in_the_other_themes(
    snap_compare: Any, unlocked_store: CaseStore, theme: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The details of a flagged person at 80x24: ticked and unticked boxes read the same without colour."""
    if theme == "no_color":
        monkeypatch.setenv("NO_COLOR", "1")
    app = SprxApp(
        unlocked_store.vault.path,
        clock=frozen_clock,
        config=Config(theme="high_contrast" if theme == "high_contrast" else "default"),
        store=unlocked_store,
    )
    app.animation_level = "none"
    assert app.no_color == (theme == "no_color")
    assert snap_compare(app, terminal_size=(80, 24), run_before=details_of(unlocked_store, scroll_to_flags=True))
