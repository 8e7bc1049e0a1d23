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


@pytest.mark.slow  # one of the longest fast-tier tests (3-7 s on 2 busy cores): make test runs it, make check does not
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


@pytest.mark.slow  # one of the longest fast-tier tests (3-7 s on 2 busy cores): make test runs it, make check does not
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
        offered = {b.binding.action for b in screen.active_bindings.values() if b.enabled}
        assert not offered & {"onward('referred')", "onward('signposted')", "flag"}  # dimmed in the footer
        for key in ("r", "s"):
            await press(pilot, "enter", key)  # to the (empty) list, then refer or signpost
            assert app.screen is screen and not isinstance(app.screen, ConfirmModal)
        assert unlocked_store.queries.onward_referrals(rows[0].id) == []


@pytest.mark.slow  # one of the longest fast-tier tests (3-7 s on 2 busy cores): make test runs it, make check does not
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


# -- 6. every state in words as well as colour -----------------------------------------------------------


async def test_tick_boxes_and_radio_choices_show_their_state_in_characters(unlocked_store: CaseStore) -> None:
    from textual.widgets import Checkbox, RadioButton

    from sprx_tui.screens.settings import SettingsScreen

    app = make_app(unlocked_store, auto_sync=True, ascii_marks=False)
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "f9")
        screen = app.screen
        assert isinstance(screen, SettingsScreen)

        def shown(widget: Checkbox | RadioButton) -> str:
            return widget.render().plain  # type: ignore[union-attr]

        calm, high = (
            screen.query_one("#theme-default", RadioButton),
            screen.query_one("#theme-high_contrast", RadioButton),
        )
        assert shown(calm).startswith("(•) Calm") and shown(high).startswith("( ) High contrast")
        auto, marks = screen.query_one("#auto_sync", Checkbox), screen.query_one("#ascii_marks", Checkbox)
        assert shown(auto).startswith("[x] Sync") and shown(marks).startswith("[ ] Plain text")
        marks.toggle()
        high.toggle()
        await pilot.pause()
        assert shown(marks).startswith("[x] Plain text")
        assert shown(high).startswith("(•) High") and shown(calm).startswith("( ) Calm")


@pytest.mark.slow  # one of the longest fast-tier tests (3-7 s on 2 busy cores): make test runs it, make check does not
async def test_the_contact_m_and_e_act_on_is_marked_and_named_in_their_dialogs(unlocked_store: CaseStore) -> None:
    from textual.widgets import Static

    from sprx_tui.drafts import KeptFieldsModal
    from sprx_tui.widgets.timeline import MARK, ContactTimeline

    rows, _ = unlocked_store.queries.caseload(status="active", limit=100)
    person_id = next(r.id for r in rows if len(unlocked_store.queries.timeline(r.id)) >= 2)
    entries = unlocked_store.queries.timeline(person_id)
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.open_person(person_id)
        await press(pilot, "c")
        timeline = app.screen.query_one(ContactTimeline)

        def marked() -> list[str]:
            return [str(timeline.get_option(e.contact.id).prompt).split("\n")[0] for e in entries if e.contact.id]

        assert marked()[0].startswith(MARK) and not any(line.startswith(MARK) for line in marked()[1:])
        await press(pilot, "down")
        assert timeline.selected_contact_id == entries[1].contact.id
        assert marked()[1].startswith(MARK) and not marked()[0].startswith(MARK)
        for key in ("m", "e"):
            await press(pilot, key)
            dialog = app.screen
            assert isinstance(dialog, KeptFieldsModal)
            intro = dialog.query_one(".dialog-intro", Static).render().plain  # type: ignore[union-attr]
            second = entries[1].contact
            assert intro.startswith("Contact: ") and second.notes.split()[0] in intro
            assert second.occurred_at.strftime("%d") in intro
            await press(pilot, "escape")


# -- 8. the smaller items ------------------------------------------------------------------------------------


@pytest.mark.slow  # one of the longest fast-tier tests (3-7 s on 2 busy cores): make test runs it, make check does not
async def test_an_enter_typed_before_the_unlock_screen_appears_unlocks(demo_vault: Path) -> None:
    """Typed before the terminal is in raw mode, Enter arrives as a newline (CR becomes LF): ctrl+j to Textual."""
    from textual.widgets import Input

    from sprx_tui.screens.unlock import UnlockScreen
    from tests.tui.conftest import PASSPHRASE

    app = SprxApp(demo_vault, clock=frozen_clock, config=Config())
    app.animation_level = "none"
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, UnlockScreen), what="the unlock screen")
        app.screen.query_one("#passphrase", Input).value = PASSPHRASE
        await pilot.press("ctrl+j")
        await wait_until(pilot, lambda: isinstance(app.screen, TodayScreen), what="Today after the unlock")
        assert app.store is not None
        await press(pilot, "ctrl+l")


def screen_text(app: SprxApp) -> str:
    import html
    import re

    svg = app.export_screenshot()
    parts = re.findall(r"<text[^>]*>(.*?)</text>", svg, flags=re.S)
    return html.unescape(" ".join(re.sub(r"<[^>]+>", "", p) for p in parts)).replace("\xa0", " ")


def shown_labels(table: Any) -> list[str]:
    width = table.scrollable_content_region.width
    return [table._columns[i].label for i, _w in table.shown_columns(width)]


async def test_at_80x24_lists_drop_whole_columns_and_the_caseload_says_overdue(unlocked_store: CaseStore) -> None:
    from sprx_tui.widgets.fast_table import TextTable

    today = frozen_clock().date()
    rows, _ = unlocked_store.queries.caseload(sort="name", limit=100)
    late = [r for r in rows if r.next_follow_up_on is not None and r.next_follow_up_on < today]
    assert late
    app = make_app(unlocked_store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        referrals = app.screen.query_one("#referrals", TextTable)
        assert shown_labels(referrals) == ["Name", "Received", "Urgency"]
        await press(pilot, "f3")
        table = app.screen.query_one("#caseload", TextTable)
        assert shown_labels(table) == ["Name", "Flags", "NHS number", "Status", "Next follow-up"]
        cells = table.rows[late[0].id]
        assert cells[-1] == late[0].next_follow_up_on.strftime("%d %b") + " overdue"
        assert cells[-1] in screen_text(app)  # drawn whole, not cut to "04"
    async with make_app(unlocked_store).run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert shown_labels(pilot.app.screen.query_one("#referrals", TextTable)) == [
            "Name",
            "From",
            "Received",
            "Urgency",
        ]
        await press(pilot, "f3")
        assert len(shown_labels(pilot.app.screen.query_one("#caseload", TextTable))) == 7


@pytest.mark.slow  # one of the longest fast-tier tests (3-7 s on 2 busy cores): make test runs it, make check does not
async def test_a_blank_minutes_box_saves_no_minutes_and_none_are_shown(unlocked_store: CaseStore) -> None:
    from sprx_tui.core import fhir
    from sprx_tui.screens.contact import ContactScreen
    from sprx_tui.widgets.timeline import ContactTimeline

    rows, _ = unlocked_store.queries.caseload(status="active", limit=1)
    person_id = rows[0].id
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.open_person(person_id)
        await press(pilot, "n")
        assert isinstance(app.screen, ContactScreen)
        await pilot.press("tab", "tab", "h", "tab", *"Phoned about the garden group.")
        await press(pilot, "ctrl+s")
        contact = unlocked_store.queries.timeline(person_id)[0].contact
        assert contact.notes == "Phoned about the garden group." and contact.duration_minutes == 0
        top = str(app.screen.query_one(ContactTimeline).get_option(contact.id).prompt).split("\n")[0]
        assert "Home visit" in top and "min" not in top  # not "0 min": no time was recorded
        encounter = fhir.encounter(contact)
        assert "length" not in encounter and "end" not in encounter["period"]  # the export says none either


async def test_the_sync_screen_of_a_demo_vault_says_one_thing(unlocked_store: CaseStore) -> None:
    from sprx_tui.screens.sync import DEMO_SENTENCE, SyncScreen

    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await press(pilot, "f6")
        screen = app.screen
        assert isinstance(screen, SyncScreen)
        await wait_until(pilot, lambda: screen.view is not None, what="the sync view")
        await settle(pilot)
        from textual.widgets import Static

        assert str(screen.query_one("#sync-server", Static).render()) == DEMO_SENTENCE
        assert "sprx enrol" not in screen_text(app)
        assert "sync_now" not in {b.binding.action for b in screen.active_bindings.values() if b.enabled}
        await press(pilot, "s")
        said = " ".join(n.message for n in app._notifications)
        assert "sprx enrol" not in said and "not enrolled" not in said


def test_an_accepted_referral_is_said_to_be_coded_not_sent() -> None:
    from sprx_tui.core.models import SNOMED_REFERRAL_ACCEPTED, Referral
    from sprx_tui.screens.person import referral_detail

    referral = Referral(person_id="p", source="gp", status="accepted", snomed_code=SNOMED_REFERRAL_ACCEPTED)
    shown = referral_detail(referral).plain
    assert f"Recorded as SNOMED CT {SNOMED_REFERRAL_ACCEPTED}" in shown
    assert "sent" not in shown  # nothing is sent from here (a demo vault sends nothing at all)


def _contrast(a: Any, b: Any) -> float:
    def luminance(c: Any) -> float:
        def channel(v: int) -> float:
            x = v / 255
            return x / 12.92 if x <= 0.03928 else ((x + 0.055) / 1.055) ** 2.4

        r, g, b_ = c.rgb
        return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b_)

    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def line_contrast(widget: Any, y: int, *, monochrome: bool) -> float:
    """The lowest text-on-background contrast of one drawn line of `widget`, as the terminal shows it."""
    from textual.color import Color

    strip = widget.render_line(y)
    worst = 99.0
    for segment in strip:
        style = segment.style
        if style is None or not segment.text.strip() or style.color is None or style.bgcolor is None:
            continue
        fg, bg = Color.from_rich_color(style.color), Color.from_rich_color(style.bgcolor)
        if monochrome:  # what Textual's Monochrome filter (NO_COLOR) draws
            fg, bg = fg.monochrome, bg.monochrome
        worst = min(worst, _contrast(fg, bg))
    assert worst < 99.0, "nothing drawn on that line"
    return worst


@pytest.mark.slow  # one of the longest fast-tier tests (3-7 s on 2 busy cores): make test runs it, make check does not
@pytest.mark.parametrize("theme", ["no_color", "high_contrast"])
async def test_selected_and_focused_styles_keep_their_contrast(
    unlocked_store: CaseStore, monkeypatch: pytest.MonkeyPatch, theme: str
) -> None:
    from textual.widgets import Checkbox, DataTable

    from sprx_tui.widgets.fast_table import TextTable
    from sprx_tui.widgets.timeline import ContactTimeline

    no_color = theme == "no_color"
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    app = make_app(unlocked_store, theme="default" if no_color else "high_contrast")
    async with app.run_test(size=SIZE) as pilot:
        assert app.no_color is no_color
        await press(pilot, "f3")
        table = app.screen.query_one("#caseload", TextTable)
        assert table.has_focus
        assert line_contrast(table, 1, monochrome=no_color) >= 7.0  # the selected row, focused
        await press(pilot, "slash")
        assert not table.has_focus
        assert line_contrast(table, 1, monochrome=no_color) >= 4.5  # the selected row, not focused
        await press(pilot, "escape", "down", "enter")
        await press(pilot, "c")
        timeline = app.screen.query_one(ContactTimeline)
        assert timeline.has_focus and timeline.option_count
        assert line_contrast(timeline, 0, monochrome=no_color) >= 7.0  # the contact m and e act on
        await press(pilot, "f4")
        services = app.screen.query_one("#results", DataTable)
        services.focus()
        await press(pilot, "down")
        assert line_contrast(services, 2, monochrome=no_color) >= 7.0  # a selected service (a DataTable row)
        await press(pilot, "f9")
        box = app.screen.query_one("#auto_sync", Checkbox)
        box.focus()
        await pilot.pause()
        assert line_contrast(box, 0, monochrome=no_color) >= 4.5  # a focused tick box and its label


@pytest.mark.slow  # one of the longest fast-tier tests (3-7 s on 2 busy cores): make test runs it, make check does not
async def test_help_explains_the_flag_marks_where_they_are_shown(unlocked_store: CaseStore) -> None:
    from textual.widgets import Static

    from sprx_tui.screens.caseload import FLAG_MARKS
    from sprx_tui.screens.help import HelpScreen

    for ascii_only in (False, True):
        app = make_app(unlocked_store, ascii_marks=ascii_only)
        async with app.run_test(size=(80, 24)) as pilot:
            for area in ("f2", "f3"):
                await press(pilot, area, "f1")
                assert isinstance(app.screen, HelpScreen)
                legend = str(app.screen.query_one("#help-legend", Static).render())
                for unicode_mark, ascii_mark in FLAG_MARKS.values():
                    assert (ascii_mark if ascii_only else unicode_mark) in legend
                assert "Do not visit alone" in legend and "Animals in the home" in legend
                await press(pilot, "escape")


@pytest.mark.slow  # one of the longest fast-tier tests (3-7 s on 2 busy cores): make test runs it, make check does not
async def test_a_new_person_is_a_record_too_so_area_keys_still_show_their_area(unlocked_store: CaseStore) -> None:
    from textual.widgets import Input

    from sprx_tui.screens.person_form import PersonFormScreen

    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "f3", "a")
        assert isinstance(app.screen, PersonFormScreen)
        app.screen.query_one("#given_name", Input).value = "Wren"
        app.screen.query_one("#family_name", Input).value = "Hollowmere"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, PersonScreen), what="the new person's record")
        record = app.screen
        await press(pilot, "f3")
        assert isinstance(app.screen, CaseloadScreen)
        await press(pilot, "f2")
        assert isinstance(app.screen, TodayScreen)
        await press(pilot, "escape")
        assert app.screen is record
        await press(pilot, "escape")
        assert isinstance(app.screen, CaseloadScreen)  # where the form was opened


@pytest.mark.slow  # one of the longest fast-tier tests (3-7 s on 2 busy cores): make test runs it, make check does not
async def test_today_keeps_its_focus_and_tab_order_after_a_person(unlocked_store: CaseStore) -> None:
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        order = ["due", "overdue", "referrals", "quiet"]
        await press(pilot, "tab", "tab")
        assert app.focused is not None and app.focused.id == "referrals"
        for back in ("escape", "f2"):  # Esc back from the person, or Today's key over them
            await press(pilot, "enter")
            assert isinstance(app.screen, PersonScreen)
            await press(pilot, back)
            assert isinstance(app.screen, TodayScreen)
            assert app.focused is not None and app.focused.id == "referrals"  # where the person was opened
            seen = []
            for _ in order:
                await press(pilot, "tab")
                seen.append(app.focused.id if app.focused is not None else None)
            assert seen == ["quiet", "due", "overdue", "referrals"]
            if back == "f2":
                await press(pilot, "escape")  # the record left open by F2
                assert isinstance(app.screen, PersonScreen)
                await press(pilot, "escape")
                assert isinstance(app.screen, TodayScreen) and app.focused is not None
                assert app.focused.id == "referrals"


async def test_a_newline_typed_before_the_first_run_screen_appears_moves_on(tmp_path: Path) -> None:
    from textual.widgets import Input

    from sprx_tui.screens.unlock import FirstRunScreen

    app = SprxApp(tmp_path / "new-vault", clock=frozen_clock, config=Config())
    app.animation_level = "none"
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, FirstRunScreen), what="the first-run screen")
        app.screen.query_one("#new", Input).value = "otter meadow lantern quiet"
        await pilot.press("ctrl+j")
        await pilot.pause()
        assert app.focused is app.screen.query_one("#again", Input)  # as Enter does: on to the second box


@pytest.mark.slow  # one of the longest fast-tier tests (3-7 s on 2 busy cores): make test runs it, make check does not
async def test_at_80x24_onward_referrals_keep_their_dates_and_outcome(unlocked_store: CaseStore) -> None:
    from sprx_tui.core.models import ONWARD_OUTCOMES
    from sprx_tui.formats import fmt_date

    rows, _ = unlocked_store.queries.caseload(status="active", sort="name", limit=100)
    person_id, onward = next(
        (r.id, made[0]) for r in rows if (made := unlocked_store.queries.onward_referrals(r.id)) and made[0].outcome_on
    )
    for size, kind_shown in (((80, 24), False), (SIZE, True)):
        app = make_app(unlocked_store)
        async with app.run_test(size=size) as pilot:
            await settle(pilot)
            app.open_person(person_id)
            await press(pilot, "o")
            text = screen_text(app)
            assert fmt_date(onward.made_on) in text and fmt_date(onward.outcome_on) in text
            assert ONWARD_OUTCOMES[onward.outcome] in text
            assert ("Kind" in text) is kind_shown
