"""Issue 10 items 5, 6 and 8: keys do what they say, every state in words as well as colour, the smaller items."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sprx_tui.app import SprxApp
from sprx_tui.config import Config
from sprx_tui.core.store import CaseStore
from sprx_tui.screens.caseload import CaseloadScreen
from sprx_tui.screens.person import PersonScreen
from sprx_tui.screens.today import TodayScreen
from tests.tui.conftest import frozen_clock
from tests.tui.settling import settle, wait_until

SIZE = (120, 40)


@pytest.fixture(autouse=True)
def _config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "config"
    monkeypatch.setenv("SPRX_CONFIG_DIR", str(folder))
    return folder


def make_app(store: CaseStore, **config: Any) -> SprxApp:
    app = SprxApp(store.vault.path, clock=frozen_clock, config=Config(**config), store=store)
    app.animation_level = "none"
    return app


async def press(pilot: Any, *keys: str) -> None:
    await settle(pilot, rounds=2)
    await pilot.press(*keys)
    await settle(pilot, rounds=2)


# -- 5. keys do what they say --------------------------------------------------------------------------


async def test_area_keys_show_their_area_over_a_record_and_esc_comes_back(unlocked_store: CaseStore) -> None:
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "f3")
        assert isinstance(app.screen, CaseloadScreen)
        await press(pilot, "enter")
        person = app.screen
        assert isinstance(person, PersonScreen)
        await press(pilot, "f2")
        assert isinstance(app.screen, TodayScreen)
        await press(pilot, "f3")
        assert isinstance(app.screen, CaseloadScreen)  # the area, not the person opened from it
        await press(pilot, "escape")
        assert app.screen is person  # the record is still one Esc away
        await press(pilot, "escape")
        assert isinstance(app.screen, CaseloadScreen)  # where it was opened from
        await press(pilot, "escape")
        assert isinstance(app.screen, CaseloadScreen)  # nothing further back


async def test_a_person_opened_from_the_palette_does_not_hide_today(unlocked_store: CaseStore) -> None:
    person_id = unlocked_store.queries.caseload(limit=1)[0][0].id
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, TodayScreen)
        app.open_person(person_id)  # what the palette's hit calls
        await settle(pilot)
        record = app.screen
        assert isinstance(record, PersonScreen)
        await press(pilot, "f2")
        assert isinstance(app.screen, TodayScreen)
        await press(pilot, "escape")
        assert app.screen is record
        await press(pilot, "escape")
        assert isinstance(app.screen, TodayScreen)
        await press(pilot, "ctrl+l")
        await wait_until(pilot, lambda: app.store is None, what="the lock")
        assert not any(isinstance(s, PersonScreen) for s in app.screen_stack)
        assert "records" not in app._area_modes


async def test_a_directory_search_with_no_matches_clears_the_list_and_refers_nobody(unlocked_store: CaseStore) -> None:
    from textual.widgets import DataTable, Static

    from sprx_tui.screens.directory import DirectoryScreen
    from sprx_tui.screens.forms import ConfirmModal

    rows, _ = unlocked_store.queries.caseload(status="active", sort="name", limit=1)
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.open_directory_for(rows[0].id)
        await settle(pilot, rounds=4)
        screen = app.screen
        assert isinstance(screen, DirectoryScreen)
        await pilot.press(*"walk")
        await settle(pilot, rounds=4)
        table = screen.query_one("#results", DataTable)
        assert table.row_count > 0
        await pilot.press(*"zzqx")
        await settle(pilot, rounds=4)
        assert table.row_count == 0 and screen.rows == {}
        detail = screen.query_one("#detail-body", Static).render().plain  # type: ignore[union-attr]
        assert detail.startswith("No services match")
        for key in ("r", "s"):
            await press(pilot, "enter", key)  # to the (empty) list, then refer or signpost
            assert app.screen is screen and not isinstance(app.screen, ConfirmModal)
        assert unlocked_store.queries.onward_referrals(rows[0].id) == []


async def test_home_end_and_page_keys_move_in_every_list(unlocked_store: CaseStore) -> None:
    from textual.widgets import DataTable

    from sprx_tui.screens.directory import DirectoryScreen
    from sprx_tui.widgets.fast_table import TextTable

    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "f4")
        assert isinstance(app.screen, DirectoryScreen)
        services = app.screen.query_one("#results", DataTable)
        services.focus()
        loaded = services.row_count
        await press(pilot, "end")
        assert loaded > 3 and services.cursor_row == loaded - 1  # the last row read (then the next page is read)
        await press(pilot, "home")
        assert services.cursor_row == 0
        await press(pilot, "pagedown")
        assert services.cursor_row > 0
        await press(pilot, "f3")
        people = app.screen.query_one("#caseload", TextTable)
        people.focus()
        await press(pilot, "end")
        assert people.cursor_row == people.row_count - 1
        await press(pilot, "home")
        assert people.cursor_row == 0
        await press(pilot, "f1")
        keys = app.screen.query_one("#help-keys", DataTable)
        await press(pilot, "end")
        assert keys.cursor_row == keys.row_count - 1 > 0
        await press(pilot, "home")
        assert keys.cursor_row == 0
