"""The directory screen against a real vault: search as you type, filters, marks, refer, signpost and flag a change."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Select, Static

from sprx_tui.app import SprxApp
from sprx_tui.config import Config
from sprx_tui.core import directory
from sprx_tui.core.directory import import_hsds, search_text_for
from sprx_tui.core.models import CommunityService, DirectorySuggestion, SyncOutbox
from sprx_tui.core.store import CaseStore
from sprx_tui.screens.directory import (
    INACTIVE_MARK,
    STALE_MARK,
    DirectoryScreen,
    SuggestChangeModal,
    column_plan,
    detail_content,
    open_directory_for,
)
from sprx_tui.screens.episode import OnwardReferralModal
from sprx_tui.screens.forms import ConfirmModal, FormField
from sprx_tui.screens.person import PersonScreen
from tests.sample_data import hsds_sample
from tests.tui.conftest import FROZEN_NOW, frozen_clock
from tests.tui.settling import open_area, settle, wait_until

SIZE = (120, 40)
SAMPLE = hsds_sample()


@pytest.fixture(autouse=True)
def _config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPRX_CONFIG_DIR", str(tmp_path / "config"))


def make_app(store: CaseStore) -> SprxApp:
    app = SprxApp(store.vault.path, clock=frozen_clock, config=Config(), store=store)
    app.animation_level = "none"
    return app


def results(screen: DirectoryScreen) -> DataTable[Any]:
    return screen.query_one("#results", DataTable)


def row_ids(screen: DirectoryScreen) -> list[str]:
    table = results(screen)
    return [str(table.coordinate_to_cell_key((i, 0)).row_key.value) for i in range(table.row_count)]


def cell_text(table: DataTable[Any], row_id: str, column: str) -> str:
    value = table.get_cell(row_id, column)
    return getattr(value, "plain", str(value))


def detail_text(screen: DirectoryScreen) -> str:
    return screen.query_one("#detail-body", Static).render().plain  # type: ignore[union-attr]


def person_without_onward(store: CaseStore) -> str:
    rows, _ = store.queries.caseload(status="active", sort="name", limit=100)
    return next(r.id for r in rows if not store.queries.onward_referrals(r.id))


async def open_directory(app: SprxApp, pilot: Pilot[Any]) -> DirectoryScreen:
    return await open_area(pilot, "f4", DirectoryScreen)


async def directory_for(app: SprxApp, pilot: Pilot[Any], person_id: str) -> DirectoryScreen:
    """Open the person's record, then the directory from it with the record's own key (f)."""
    await settle(pilot, rounds=4)
    app.open_person(person_id)
    await settle(pilot, rounds=4)
    assert isinstance(app.screen, PersonScreen)
    await pilot.press("f")
    await settle(pilot, rounds=4)
    assert isinstance(app.screen, DirectoryScreen)
    return app.screen


async def move_to(pilot: Pilot[Any], screen: DirectoryScreen, row_id: str) -> None:
    table = results(screen)
    table.focus()
    table.move_cursor(row=table.get_row_index(row_id))
    await settle(pilot, rounds=4)


# -- search, refer, signpost ------------------------------------------------------------------------


@pytest.mark.slow  # a search typed key by key, then a referral
async def test_search_then_refer_the_person_in_two_keys(unlocked_store: CaseStore) -> None:
    q = unlocked_store.queries
    person_id = person_without_onward(unlocked_store)
    person = q.person(person_id)
    assert person is not None
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        screen = await directory_for(app, pilot, person_id)
        banner = str(screen.query_one("#for-person", Static).render())
        assert banner.startswith(f"For: {person.display_name}") and "NHS " in banner
        # The search box has the keyboard: typing searches at once, every word must match.
        assert isinstance(app.focused, Input)
        await pilot.press(*"walk")
        await settle(pilot, rounds=4)
        expected, total = directory.search_services(unlocked_store, "walk", include_inactive=True, limit=100)
        assert row_ids(screen) == [r.id for r in expected]
        assert results(screen).border_title.startswith(f"{total} services")
        target = next(r for r in expected if r.active)
        await pilot.press("enter")  # to the results
        await move_to(pilot, screen, target.id)
        assert target.name in detail_text(screen)
        await pilot.press("r")
        await settle(pilot, rounds=4)
        assert isinstance(app.screen, OnwardReferralModal)
        assert f"Refer {person.display_name} to {target.name}" in str(app.screen.query_one(".dialog-title").render())
        # A referral needs the person's agreement: without the tick, one sentence and nothing saved.
        await pilot.press("ctrl+s")
        await settle(pilot, rounds=2)
        assert isinstance(app.screen, OnwardReferralModal)
        assert "Tick that the person agreed" in app.screen.query_one(FormField).error
        await pilot.press("enter", *"Tuesdays", "tab", "space", "ctrl+s")  # the need, a note, the tick
        await settle(pilot, rounds=4)
        assert app.screen is screen
        onward = q.onward_referrals(person_id)
        assert [(o.service_id, o.kind, o.outcome) for o in onward] == [(target.id, "referred", "pending")]
        assert (onward[0].notes, onward[0].consent) == ("Tuesdays", True)
        assert onward[0].made_on == FROZEN_NOW.date()
        referrals = directory.uptake(unlocked_store, target.id)[0].referrals
        assert referrals >= 1 and cell_text(results(screen), target.id, "refs") == str(referrals)
        assert "1 referred" in detail_text(screen)
        # Back on the record, the onward referrals tab shows the new row.
        await pilot.press("escape")
        await settle(pilot, rounds=4)
        assert isinstance(app.screen, PersonScreen)
        await pilot.press("o")
        await settle(pilot, rounds=4)
        table = app.screen.query_one("#onward-table", DataTable)
        assert table.row_count == 1 and target.name in str(table.get_row_at(0))


@pytest.mark.slow  # a long walk through the app
async def test_signpost_with_the_need_filter(unlocked_store: CaseStore) -> None:
    q = unlocked_store.queries
    person_id = person_without_onward(unlocked_store)
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        screen = await directory_for(app, pilot, person_id)
        await pilot.press("enter")  # from the search box to the results
        await pilot.press("n")  # the need filter opens; typing finds the option
        await pilot.pause()
        await pilot.press(*"Lone", "enter")
        await settle(pilot, rounds=4)
        assert screen.query_one("#need", Select).value == "loneliness"
        expected, _ = directory.search_services(unlocked_store, need="loneliness", include_inactive=True, limit=100)
        assert row_ids(screen) == [r.id for r in expected] and expected
        assert all("loneliness" in r.needs for r in expected)
        target = next(r for r in expected if r.active)
        await move_to(pilot, screen, target.id)
        await pilot.press("s", "ctrl+s")  # signposting needs no agreement ticked
        await settle(pilot, rounds=4)
        onward = q.onward_referrals(person_id)
        assert [(o.service_id, o.kind, o.need) for o in onward] == [(target.id, "signposted", "loneliness")]
        # 0 clears every filter.
        await pilot.press("0")
        await settle(pilot, rounds=4)
        assert screen.query_one("#need", Select).selection is None
        everything = directory.search_services(unlocked_store, include_inactive=True)[1]
        assert results(screen).row_count == min(100, everything)


@pytest.mark.slow  # a search typed key by key
async def test_refer_needs_a_person_and_cancel_records_nothing(unlocked_store: CaseStore) -> None:
    person_id = person_without_onward(unlocked_store)
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_directory(app, pilot)
        assert screen.person_id is None
        assert not screen.query("#for-person")
        await pilot.press("enter", "r")
        await settle(pilot, rounds=4)
        assert not isinstance(app.screen, ConfirmModal)
        assert any("open the directory from their record" in n.message for n in app._notifications)
        # Opened for a person by the app-level helper: n (or Esc) in the dialog records nothing.
        open_directory_for(app, person_id)
        await settle(pilot, rounds=4)
        assert isinstance(app.screen, DirectoryScreen) and app.screen.person_id == person_id
        await pilot.press("enter", "s")
        await settle(pilot, rounds=4)
        assert isinstance(app.screen, OnwardReferralModal)
        await pilot.press("escape")
        await settle(pilot, rounds=4)
        assert unlocked_store.queries.onward_referrals(person_id) == []


@pytest.mark.slow  # a long walk through the app
async def test_app_opens_the_directory_for_a_person_and_the_record_palette_offers_it(
    unlocked_store: CaseStore,
) -> None:
    person_id = person_without_onward(unlocked_store)
    person = unlocked_store.queries.person(person_id)
    assert person is not None
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, rounds=4)
        app.open_directory_for(person_id)
        await settle(pilot, rounds=4)
        screen = app.screen
        assert isinstance(screen, DirectoryScreen) and screen.person_id == person_id
        assert app.current_mode == "records"  # pushed with the records, like a person's record (F2 shows Today)
        assert str(screen.query_one("#for-person", Static).render()).startswith(f"For: {person.display_name}")
        app.pop_screen()
        await settle(pilot, rounds=4)

        app.open_person(person_id)
        await settle(pilot, rounds=4)
        assert isinstance(app.screen, PersonScreen)
        await pilot.press("ctrl+p")
        await pilot.press(*"find a service")
        await settle(pilot)  # the palette's search is a worker
        found = app.screen.query("CommandList")
        await wait_until(pilot, lambda: bool(found.first().option_count), what="the palette's hits")
        assert "Find a service for this person" in str(found.first().get_option_at_index(0).prompt)
        await pilot.press("enter")
        await settle(pilot, rounds=4)
        screen = app.screen
        assert isinstance(screen, DirectoryScreen) and screen.person_id == person_id
        assert [type(s).__name__ for s in app.screen_stack[-3:]] == [
            "RecordsBackdrop",
            "PersonScreen",
            "DirectoryScreen",
        ]

    locked = make_app(unlocked_store)
    async with locked.run_test(size=SIZE) as pilot:
        await settle(pilot, rounds=4)
        locked.store = None  # as after a lock: nothing opens
        locked.open_directory_for(person_id)
        await pilot.pause()
        assert not isinstance(locked.screen, DirectoryScreen)


# -- marks, details and the suggestion ----------------------------------------------------------------


@pytest.mark.slow  # imports the directory and walks every entry
async def test_stale_and_inactive_entries_are_marked_in_words(
    unlocked_store: CaseStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows, _ = directory.search_services(unlocked_store, include_inactive=True, limit=500)
    stale = next(r for r in rows if r.active and r.stale)
    inactive = next(r for r in rows if not r.active)
    fresh = next(r for r in rows if r.active and not r.stale)
    monkeypatch.setenv("NO_COLOR", "1")  # the marks are words, so they survive a terminal without colour
    app = make_app(unlocked_store)
    assert app.no_color
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_directory(app, pilot)
        await pilot.press(*stale.name.split()[-1].lower())  # narrow the search so the rows are on screen
        await settle(pilot, rounds=4)
        table = results(screen)
        for row in (stale, inactive, fresh):
            if row.id not in table.rows:
                await pilot.press(*["backspace"] * 20)
                await pilot.press(*row.name.lower())
                await settle(pilot, rounds=4)
            want = {stale.id: STALE_MARK, inactive.id: INACTIVE_MARK, fresh.id: ""}[row.id]
            assert cell_text(table, row.id, "status") == want
            await move_to(pilot, screen, row.id)
            text = detail_text(screen)
            assert (f"{STALE_MARK}: last verified" in text) == row.stale
            assert (f"{INACTIVE_MARK}: marked inactive" in text) == (not row.active)
            # What is on the terminal, not just in the widget: the word is drawn.
            if want:
                assert want in app.export_screenshot()
            screen.query_one("#search", Input).focus()
            await pilot.pause()
        # Esc clears the search, Esc again goes to the results, where i hides inactive entries.
        await pilot.press("escape", "escape", "i")
        await settle(pilot, rounds=4)
        assert not screen.include_inactive
        assert "inactive hidden" in str(screen.query_one("#inactive-note", Static).render())
        assert screen.rows and all(r.active for r in screen.rows.values())
        assert len(screen.rows) == min(100, directory.search_services(unlocked_store)[1])


async def test_flag_a_change_is_stored_for_the_server(unlocked_store: CaseStore) -> None:
    rows, _ = directory.search_services(unlocked_store, limit=5)
    target = rows[2]
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_directory(app, pilot)
        await move_to(pilot, screen, target.id)
        await pilot.press("f")
        await settle(pilot, rounds=4)
        assert isinstance(app.screen, SuggestChangeModal)
        await pilot.press("down", "tab", *"Now meets on Fridays", "ctrl+s")
        await settle(pilot, rounds=4)
        assert app.screen is screen
    with Session(unlocked_store.engine) as s:
        suggestions = s.exec(select(DirectorySuggestion)).all()
        outbox = s.exec(select(SyncOutbox).where(SyncOutbox.tbl == "directory_suggestion")).all()
    assert [(x.service_id, x.kind, x.note, x.person_id) for x in suggestions] == [
        (target.id, "details_changed", "Now meets on Fridays", None)
    ]
    assert [o.row_id for o in outbox] == [suggestions[0].id]


async def test_html_in_descriptions_is_shown_as_plain_text(unlocked_store: CaseStore) -> None:
    result = import_hsds(unlocked_store, SAMPLE)
    assert result.imported > 0
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_directory(app, pilot)
        await pilot.press(*"dear teacher")
        await settle(pilot, rounds=4)
        assert results(screen).row_count == 1
        await pilot.press("enter")
        await settle(pilot, rounds=4)
        text = detail_text(screen)
        assert "refresher courses" in text
        assert "<" not in text and "&lt;" not in text


async def test_square_brackets_in_names_are_text_not_markup(unlocked_store: CaseStore) -> None:
    service = CommunityService(
        id="brackets",
        name="Zebra [and] Chat [/b]",
        organisation="[bold]Pals[/bold]",
        categories=["arts"],
        area="Eastgate",
        last_verified=FROZEN_NOW.date(),
    )
    service.search_text = search_text_for(service)
    with unlocked_store.service.transaction() as s:  # as a sync pull writes the cache
        s.add(service)
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_directory(app, pilot)
        await pilot.press(*"zebra")
        await settle(pilot, rounds=4)
        assert row_ids(screen) == ["brackets"]
        assert cell_text(results(screen), "brackets", "name") == "Zebra [and] Chat [/b]"
        assert cell_text(results(screen), "brackets", "organisation") == "[bold]Pals[/bold]"
        assert "Zebra [and] Chat [/b]" in detail_text(screen)


def test_detail_strips_html_that_arrives_by_sync() -> None:
    """A description written straight into the cache (as a sync pull does) is still rendered as text."""
    service = CommunityService(
        id="x",
        name="Knit & Natter",
        description="<p>Bring <b>wool</b> &amp; needles.</p><script>alert(1)</script>",
        last_verified=dt.date(2026, 11, 1),
    )
    text = detail_content(service, None, dt.date(2026, 11, 23)).plain
    assert "Bring wool & needles." in text
    assert "<" not in text and "alert" not in text
    assert STALE_MARK not in text


def test_columns_fill_the_width_and_drop_extras_when_narrow() -> None:
    wide = column_plan(118)
    narrow = column_plan(80)
    assert [k for k, _h, _w in wide][-2:] == ["category", "organisation"]
    assert "organisation" not in [k for k, _h, _w in narrow]
    # Widths plus two cells of padding per column, the border and scrollbar, make the table's width.
    assert sum(w + 2 for _k, _h, w in wide) + 4 == 118
    assert sum(w + 2 for _k, _h, w in narrow) + 4 == 80


async def test_filters_offer_what_arrived_while_away_and_keep_the_chosen_one(unlocked_store: CaseStore) -> None:
    """The categories and areas offered are read again when the directory is shown again (a sync or an
    import may have brought new ones); a category the worker chose stays chosen."""
    from sqlmodel import Session

    from sprx_tui.core.models import CommunityService

    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_directory(app, pilot)
        category = screen.query_one("#category", Select)
        first = directory.categories(unlocked_store, include_inactive=True)[0][0]
        category.value = first
        await settle(pilot, rounds=4)
        assert screen.category == first
        await pilot.press("f3")
        await settle(pilot, rounds=4)
        with unlocked_store.lock, Session(unlocked_store.engine) as s:  # as a sync would bring it
            s.add(CommunityService(id="svc-new", name="Canal Towpath Rangers", categories=["canal_volunteering"],
                                   area="Lockside"))  # fmt: skip
            s.commit()
        assert await open_directory(app, pilot) is screen
        offered = [value for _label, value in category._options]
        assert "canal_volunteering" in offered
        assert "Lockside" in [value for _label, value in screen.query_one("#area", Select)._options]
        assert category.value == first and screen.category == first
