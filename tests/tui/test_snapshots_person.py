"""SVG snapshots of the person record, contact form and plan editor: synthetic demo data, frozen clock."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from sprx_tui.app import SprxApp
from sprx_tui.config import Config
from sprx_tui.core.store import CaseStore, open_store
from tests.tui.conftest import frozen_clock, quick_unlock
from tests.tui.settling import settle

SIZES = [(80, 24), (120, 40)]
SIZE_IDS = [f"{w}x{h}" for w, h in SIZES]


@pytest.fixture(autouse=True)
def _config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPRX_CONFIG_DIR", str(tmp_path / "config"))


@pytest.fixture(scope="module")
def person_store(demo_vault_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CaseStore]:
    """A private copy of the demo vault where one person's timeline shows an amendment and an error."""
    dest = tmp_path_factory.mktemp("person-snapshots") / "vault"
    shutil.copytree(demo_vault_template, dest)
    vault = quick_unlock(dest)
    store = open_store(vault, clock=frozen_clock)
    entries = store.queries.timeline(flagged_person(store))
    store.service.amend_contact(entries[0].contact.id, "Son was also there and agreed to help.", "Detail missed")
    store.service.mark_entered_in_error(entries[1].contact.id, "Recorded on the wrong person")
    yield store
    vault.lock()


def flagged_person(store: CaseStore) -> str:
    """The first active person (by name) with a home-visit safety flag and a plan."""
    rows, _ = store.queries.caseload(status="active", sort="name", limit=100)
    return next(r.id for r in rows if r.flags and store.queries.plan(r.id))


def make_app(store: CaseStore, theme: str = "default") -> SprxApp:
    app = SprxApp(store.vault.path, clock=frozen_clock, config=Config(theme=theme), store=store)
    app.animation_level = "none"
    return app


def on_person(store: CaseStore, *keys: str, typed: tuple[tuple[str, str], ...] = ()) -> Callable[[Pilot[Any]], Any]:
    """Open the flagged person, press `keys`, then type (selector, text) pairs and settle."""
    person_id = flagged_person(store)

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        pilot.app.open_person(person_id)  # type: ignore[attr-defined]
        await settle(pilot)
        for key in keys:
            await pilot.press(key)
            await settle(pilot)
        for selector, text in typed:
            if selector == "ctrl+s":
                await pilot.press("ctrl+s")
            else:
                pilot.app.screen.query_one(selector).focus()
                await pilot.pause()
                await pilot.press(*text)
            await settle(pilot)
        # A pane built by a key press takes focus after the next refresh; let that land before the picture
        # (each pause() ends with a screen update).
        for _ in range(2):
            await pilot.pause()
        await settle(pilot)

    return run_before


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
@pytest.mark.parametrize(("tab", "key"), [("overview", "v"), ("contacts", "c"), ("plan", "w")])
def test_person_record(snap_compare: Any, person_store: CaseStore, size: tuple[int, int], tab: str, key: str) -> None:
    assert snap_compare(make_app(person_store), terminal_size=size, run_before=on_person(person_store, key))


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_person_record_high_contrast(snap_compare: Any, person_store: CaseStore, size: tuple[int, int]) -> None:
    app = make_app(person_store, theme="high_contrast")
    assert snap_compare(app, terminal_size=size, run_before=on_person(person_store, "c"))


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_contact_form_empty(snap_compare: Any, person_store: CaseStore, size: tuple[int, int]) -> None:
    assert snap_compare(make_app(person_store), terminal_size=size, run_before=on_person(person_store, "n"))


@pytest.mark.slow  # the contact form filled in, at each size
@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_contact_form_with_error(snap_compare: Any, person_store: CaseStore, size: tuple[int, int]) -> None:
    run_before = on_person(
        person_store,
        "n",
        typed=(("#when", "24/11/2026 09:00"), ("#notes", "Typed notes stay."), ("ctrl+s", "")),
    )
    assert snap_compare(make_app(person_store), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_plan_editor(snap_compare: Any, person_store: CaseStore, size: tuple[int, int]) -> None:
    assert snap_compare(make_app(person_store), terminal_size=size, run_before=on_person(person_store, "p"))
