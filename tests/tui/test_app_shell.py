"""Pilot tests for the app shell: first run, unlock and back-off, Today, caseload, keys, palette, locking, drafts."""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import json
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select
from textual.command import CommandList
from textual.screen import Screen
from textual.widgets import Input, Static, TabbedContent

from sprx_tui import app as app_module
from sprx_tui.app import SprxApp
from sprx_tui.config import Config
from sprx_tui.core import vault as vault_module
from sprx_tui.core.models import AuditEvent
from sprx_tui.core.store import CaseStore, open_store
from sprx_tui.core.vault import FLOOR, Locked, Vault
from sprx_tui.screens import caseload as caseload_module
from sprx_tui.screens import today as today_module
from sprx_tui.screens.caseload import CaseloadScreen
from sprx_tui.screens.help import HelpScreen
from sprx_tui.screens.lock import DraftOfferScreen
from sprx_tui.screens.settings import SettingsScreen
from sprx_tui.screens.today import TodayScreen
from sprx_tui.screens.unlock import FirstRunScreen, RecoveryKeyScreen, UnlockScreen
from sprx_tui.widgets.fast_table import TextTable
from tests.tui.conftest import FROZEN_NOW, PASSPHRASE, frozen_clock
from tests.tui.settling import settle, wait_until

SIZE = (120, 40)


class FakeClock:
    """An app clock the test moves forward by hand (idle lock, back-off)."""

    def __init__(self, now: dt.datetime = FROZEN_NOW) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += dt.timedelta(**kwargs)


@pytest.fixture(autouse=True)
def _config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test writes its settings to its own folder, never the user's."""
    folder = tmp_path / "config"
    monkeypatch.setenv("SPRX_CONFIG_DIR", str(folder))
    return folder


def make_app(vault: Path, *, store: CaseStore | None = None, clock: Any = frozen_clock, **config: Any) -> SprxApp:
    app = SprxApp(vault, clock=clock, config=Config(**config), store=store)
    app.animation_level = "none"
    return app


def screen_text(app: SprxApp) -> str:
    """Everything drawn on the terminal right now, as plain text."""
    svg = app.export_screenshot()
    parts = re.findall(r"<text[^>]*>(.*?)</text>", svg, flags=re.S)
    return html.unescape(" ".join(re.sub(r"<[^>]+>", "", p) for p in parts)).replace("\xa0", " ")


def palette_hits(app: SprxApp) -> int:
    """How many commands the open command palette lists."""
    return app.screen.query_one(CommandList).option_count


async def type_text(pilot: Any, text: str) -> None:
    await pilot.press(*text)


def audit_actions(store: CaseStore) -> list[tuple[str, str]]:
    with Session(store.engine) as s:
        return [(e.action, e.detail) for e in s.exec(select(AuditEvent).order_by(AuditEvent.seq)).all()]


def reopen(vault_path: Path, passphrase: str = PASSPHRASE) -> CaseStore:
    vault = Vault(vault_path)
    vault.unlock(bytearray(passphrase.encode()))
    return open_store(vault, clock=frozen_clock)


async def unlock(app: SprxApp, pilot: Any, passphrase: str = PASSPHRASE, *, typed: bool = False) -> None:
    if typed:
        await type_text(pilot, passphrase)
    else:
        app.screen.query_one("#passphrase", Input).value = passphrase
    await pilot.press("enter")
    await settle(pilot)


# -- first run ------------------------------------------------------------------------------------


@pytest.mark.slow  # creates a vault and unlocks it through the screens
async def test_first_run_creates_vault_and_requires_the_recovery_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vault_module, "calibrate_kdf", lambda *a, **k: FLOOR)
    path = tmp_path / "not-yet" / "new-vault"  # like the default location on a new laptop
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, FirstRunScreen)
        await type_text(pilot, "short one")
        assert "Too short" in str(app.screen.query_one("#new-hint", Static).content)
        await pilot.press("enter")
        assert "at least 12 characters" in str(app.screen.query_one("#new-error", Static).content)
        assert app.screen.query_one("#new", Input).value == "short one"  # kept what was typed

        app.screen.query_one("#new", Input).value = ""
        await type_text(pilot, "password1234")
        await pilot.press("enter")
        assert "too easy to guess" in str(app.screen.query_one("#new-error", Static).content)

        app.screen.query_one("#new", Input).value = ""
        await type_text(pilot, "kettle harbour violet moss")
        assert "Strong" in str(app.screen.query_one("#new-hint", Static).content)
        await pilot.press("enter")
        assert app.focused is app.screen.query_one("#again", Input)
        await type_text(pilot, "kettle harbour violet mos")
        await pilot.press("enter")
        assert "not the same" in str(app.screen.query_one("#again-error", Static).content)
        await pilot.press("s", "enter")
        await settle(pilot)

        assert isinstance(app.screen, RecoveryKeyScreen)
        key_text = str(app.screen.query_one("#recovery-key", Static).content)
        groups = re.findall(r"[A-Z2-7]{4}", key_text)
        assert len(groups) == 13
        # The passphrase boxes were emptied once the vault existed.
        assert all(not i.value for i in app.screen_stack[-2].query(Input))
        await pilot.press("escape")  # cannot skip
        assert isinstance(app.screen, RecoveryKeyScreen)
        await type_text(pilot, "AAAA" if groups[-1] != "AAAA" else "BBBB")
        await pilot.press("enter")
        assert "does not match" in str(app.screen.query_one("#confirm-error", Static).content)
        app.screen.query_one("#confirm", Input).value = ""
        await type_text(pilot, groups[-1].lower())
        await pilot.press("enter")
        await settle(pilot)

        assert isinstance(app.screen, TodayScreen)
        assert app.store is not None
        assert ("UNLOCK", "first run") in audit_actions(app.store)
        store_vault = app.store.vault
        # The recovery key really unlocks this vault.
        await pilot.press("ctrl+l")
        await settle(pilot)
    assert not store_vault.is_unlocked
    check = Vault(path)
    check.unlock_with_recovery("-".join(groups))
    check.lock()


# -- unlock -------------------------------------------------------------------------------------


async def test_today_lists_are_capped_with_their_whole_length_and_where_the_rest_is(
    demo_vault: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = reopen(demo_vault)
    totals = store.queries.today_totals()
    first_referral = store.queries.new_referrals(limit=1)[0]
    assert totals["referrals"] > 1, "the demo data should have several referrals waiting"
    monkeypatch.setattr(today_module, "LIST_ROWS", 1)
    app = make_app(demo_vault, store=store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table = app.screen.query_one("#referrals", TextTable)
        assert table.row_count == 1
        assert table.border_title == f"New referrals ({totals['referrals']:,})"
        assert "F3" in str(table.border_subtitle)
        assert first_referral.name in screen_text(app)


@pytest.mark.slow  # one of the few tests that unlock through the screen (the real key derivation)
async def test_unlock_shows_today_with_due_items(demo_vault: Path) -> None:
    expected = reopen(demo_vault)
    due = expected.queries.due_today()
    overdue = expected.queries.overdue()
    referrals = expected.queries.new_referrals()
    expected.vault.lock()
    assert due and overdue and referrals, "the demo data should have something due today"

    app = make_app(demo_vault)
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, UnlockScreen)
        assert app.focused is app.screen.query_one("#passphrase", Input)
        await unlock(app, pilot, typed=True)
        assert isinstance(app.screen, TodayScreen)
        table = app.screen.query_one("#due", TextTable)
        assert table.row_count == len(due)
        assert table.border_title == f"Due today ({len(due)})"
        assert app.screen.query_one("#overdue", TextTable).row_count == len(overdue)
        assert app.screen.query_one("#referrals", TextTable).row_count == len(referrals)
        text = screen_text(app)
        assert due[0].name in text
        assert "demo vault" in text, text  # the status bar
        assert app.title == "sprx"
        # Enter on a row opens that person.
        app.screen.query_one("#due", TextTable).focus()
        await pilot.pause()
        opened: list[tuple[str, str | None]] = []
        real_open = app.open_person
        app.open_person = lambda pid, tab=None: (opened.append((pid, tab)), real_open(pid, tab))  # type: ignore[method-assign]
        await pilot.press("enter")
        await settle(pilot)
        assert opened == [(due[0].person_id, None)]
        assert app.screen.query_one(TabbedContent).active == "overview"
        # A new referral opens on the Referrals tab, to be triaged.
        await pilot.press("escape")
        await settle(pilot)
        app.screen.query_one("#referrals", TextTable).focus()
        await pilot.press("enter")
        await settle(pilot)
        assert opened[-1] == (referrals[0].person_id, "referrals")
        assert app.screen.query_one(TabbedContent).active == "referrals"
        actions = [a for a, _ in audit_actions(app.store)]
        assert "UNLOCK" in actions


@pytest.mark.slow  # unlocks through the screen
async def test_wrong_passphrase_says_so_then_backs_off(demo_vault: Path) -> None:
    clock = FakeClock()
    app = make_app(demo_vault, clock=clock)
    async with app.run_test(size=SIZE) as pilot:
        await unlock(app, pilot, "not the right words")
        message = str(app.screen.query_one("#message", Static).content)
        assert message == "That passphrase is not right for this vault."
        assert app.screen.query_one("#passphrase", Input).value == ""
        assert app.store is None
        await unlock(app, pilot, "still not the right words")
        await unlock(app, pilot, "wrong for the third time")
        message = str(app.screen.query_one("#message", Static).content)
        assert "wait 1 second" in message
        assert "try again in 1 second" in str(app.screen.query_one("#countdown", Static).content)
        assert app.screen.query_one("#passphrase", Input).disabled
        assert "Traceback" not in screen_text(app)

    # A fresh start of the app still honours the back-off stored in the key file.
    app = make_app(demo_vault, clock=clock)
    async with app.run_test(size=SIZE) as pilot:
        await unlock(app, pilot)
        assert "Too many wrong passphrases" in str(app.screen.query_one("#message", Static).content)
        assert app.store is None
        clock.advance(seconds=5)
        # The on-screen countdown ticks each real second and reads the (fake) clock: wait for its next tick.
        countdown = app.screen.query_one("#countdown", Static)
        await wait_until(pilot, lambda: "try again now" in str(countdown.content), what="the countdown's tick")
        assert app.focused is app.screen.query_one("#passphrase", Input)
        await unlock(app, pilot, typed=True)
        assert isinstance(app.screen, TodayScreen)
        actions = audit_actions(app.store)
        assert ("UNLOCK_FAIL", "count=3") in actions
        assert actions[-1][0] == "UNLOCK" or ("UNLOCK", "") in actions


# -- caseload -----------------------------------------------------------------------------------


async def caseload(app: SprxApp, pilot: Any) -> TextTable:
    await pilot.press("f3")
    await settle(pilot)
    assert isinstance(app.screen, CaseloadScreen)
    return app.screen.query_one("#caseload", TextTable)


def names_in(table: TextTable) -> list[str]:
    return [str(table.get_row_at(i)[0]) for i in range(table.row_count)]


@pytest.mark.slow  # types three filters key by key
async def test_caseload_filters_by_name_nhs_number_and_postcode(unlocked_store: CaseStore, demo_vault: Path) -> None:
    rows, total = unlocked_store.queries.caseload(limit=100)
    target = next(r for r in rows if r.postcode and r.nhs_number)
    family = target.name.split()[-1]
    app = make_app(demo_vault, store=unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        table = await caseload(app, pilot)
        assert table.row_count == total
        assert table.border_subtitle == f"1 / {total}"

        await pilot.press("slash")
        assert isinstance(app.focused, Input)
        await type_text(pilot, family.lower())
        await settle(pilot)
        shown = names_in(table)
        assert target.name in shown
        assert all(family in n for n in shown)
        assert table.border_subtitle == f"1 / {len(shown)}"

        await pilot.press("escape")  # clears the filter
        await settle(pilot)
        assert table.row_count == total

        await type_text(pilot, target.nhs_number)  # typed with its spaces, "999 123 4567"
        await settle(pilot)
        assert names_in(table) == [target.name]

        app.screen.query_one("#filter", Input).value = ""
        await type_text(pilot, target.postcode.lower())  # "ls21 2xs"
        await settle(pilot)
        assert target.name in names_in(table)
        assert table.row_count < total

        # Enter in the filter goes to the list; Enter on the list opens the person.
        await pilot.press("enter")
        assert app.focused is table
        opened: list[str] = []
        real_open = app.open_person
        app.open_person = lambda pid, tab=None: (opened.append(pid), real_open(pid, tab))  # type: ignore[method-assign]
        table.move_cursor(row=names_in(table).index(target.name))
        await pilot.press("enter")
        await settle(pilot)
        assert opened == [target.id]
        try:
            from sprx_tui.screens.person import PersonScreen
        except ImportError:  # pragma: no cover - the person screen lands in the same release
            pytest.skip("PersonScreen is not in this tree yet; the push attempt was checked above")
        assert isinstance(app.screen, PersonScreen)
        assert app.screen.person_id == target.id
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, CaseloadScreen)


async def test_caseload_status_filter_and_sort(unlocked_store: CaseStore, demo_vault: Path) -> None:
    counts = unlocked_store.queries.status_counts()
    app = make_app(demo_vault, store=unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        table = await caseload(app, pilot)
        await pilot.press("2")
        await settle(pilot)
        assert table.row_count == counts["active"]
        assert {str(table.get_row_at(i)[4]) for i in range(table.row_count)} == {"Active"}
        assert table.border_title.startswith(f"Active ({counts['active']})")
        await pilot.press("1")
        await settle(pilot)
        assert table.row_count == counts["referred"]
        await pilot.press("0")
        await settle(pilot)
        assert table.row_count == sum(counts.values())
        await pilot.press("s")
        await settle(pilot)
        assert "by next follow-up" in table.border_title
        dates = [unlocked_store.queries.caseload(sort="next_follow_up", limit=5)[0][0].name]
        assert names_in(table)[0] == dates[0]


async def test_caseload_loads_one_page_at_a_time(
    unlocked_store: CaseStore, demo_vault: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(caseload_module, "PAGE", 10)
    monkeypatch.setattr(caseload_module, "LOAD_MORE_MARGIN", 2)
    calls: list[tuple[int, int]] = []
    real = unlocked_store.queries.caseload

    def spy(**kwargs: Any) -> Any:
        calls.append((kwargs["limit"], kwargs["offset"]))
        return real(**kwargs)

    unlocked_store.queries.caseload = spy  # type: ignore[method-assign]
    app = make_app(demo_vault, store=unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        table = await caseload(app, pilot)
        assert table.row_count == 10
        assert table.border_subtitle == "1 / 30"
        assert all(limit == 10 for limit, _ in calls)
        for _ in range(8):
            await pilot.press("down")
        await settle(pilot)
        assert table.row_count == 20
        assert (10, 10) in calls
        assert table.border_subtitle == "9 / 30"


# -- locking ------------------------------------------------------------------------------------


async def test_ctrl_l_locks_and_leaves_nothing_personal_on_screen(unlocked_store: CaseStore, demo_vault: Path) -> None:
    app = make_app(demo_vault, store=unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        store = app.store
        assert store is not None
        rows, _ = store.queries.caseload(limit=100)
        await caseload(app, pilot)
        assert rows[0].name in screen_text(app)
        app.notify(f"Saved a contact for {rows[0].name}")  # a toast with a name must go too
        engine = store.engine
        await pilot.press("ctrl+l")
        await settle(pilot)
        assert app.store is None
        assert isinstance(app.screen, UnlockScreen)
        assert len(app.screen_stack) == 2
        assert not store.vault.is_unlocked
        with pytest.raises(Exception) as excinfo:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        assert isinstance(excinfo.value, Locked) or "locked" in str(excinfo.value).lower()
        text = screen_text(app)
        for row in rows:
            assert row.name not in text
            assert row.name.split()[-1] not in text
            assert not row.nhs_number or row.nhs_number not in text
        assert app.title == "sprx" and app.sub_title == ""
        # F3 does nothing while locked.
        await pilot.press("f3")
        assert isinstance(app.screen, UnlockScreen)
        await unlock(app, pilot)
        assert isinstance(app.screen, TodayScreen)
        assert ("LOCK", "manual") in audit_actions(app.store)


async def test_idle_auto_lock_follows_the_clock(unlocked_store: CaseStore, demo_vault: Path) -> None:
    clock = FakeClock()
    app = make_app(demo_vault, store=unlocked_store, clock=clock, auto_lock_minutes=5)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.store is not None
        clock.advance(minutes=4)
        assert app.check_auto_lock() is False
        await pilot.press("down")  # activity restarts the idle time
        clock.advance(minutes=4)
        assert app.check_auto_lock() is False
        clock.advance(minutes=1, seconds=1)
        assert app.check_auto_lock() is True
        await settle(pilot)
        assert app.store is None
        assert isinstance(app.screen, UnlockScreen)


async def test_quit_locks_the_vault(unlocked_store: CaseStore, demo_vault: Path) -> None:
    app = make_app(demo_vault, store=unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        vault = app.store.vault
        await pilot.press("ctrl+q")
        await pilot.pause()
    assert not vault.is_unlocked
    assert app.return_code == 0


class WatchedLock:
    """A stand-in for the app's vault_guard that counts the threads waiting for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = threading.Lock()
        self.waiting = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        with self._count:
            self.waiting += 1
        try:
            return self._lock.acquire(blocking, timeout)
        finally:
            with self._count:
                self.waiting -= 1

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> WatchedLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


async def test_quitting_straight_after_ctrl_l_waits_for_the_lock_to_finish(
    unlocked_store: CaseStore, demo_vault: Path
) -> None:
    """Ctrl+L locks in a worker; Ctrl+Q at once used to lock the vault under it, losing its audit row."""
    app = make_app(demo_vault, store=unlocked_store)
    guard = app.vault_guard = WatchedLock()  # type: ignore[assignment]
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        vault = app.store.vault
        with guard:  # hold the lock's worker at its start, as a busy machine would
            await pilot.press("ctrl+l")
            await pilot.pause()
            quit_done = asyncio.get_running_loop().run_in_executor(None, app.lock_sync, "quit")
            # Both the lock's worker and the quit are now queued behind the guard.
            await wait_until(pilot, lambda: guard.waiting == 2, what="the lock and the quit to wait for the guard")
            assert not quit_done.done()  # the quit waits for the lock in flight
        await quit_done
        await settle(pilot)
    assert not vault.is_unlocked
    store = reopen(demo_vault)
    try:
        actions = [action for action, _detail in audit_actions(store)]
    finally:
        store.vault.lock()
    assert actions[-1] == "LOCK"  # the session's lock was recorded (reopening records nothing)
    assert actions.count("LOCK") == 1  # once: the quit found the vault already locked


class DraftingScreen(Screen):
    """Stands in for the contact screen: it has unsaved text to keep."""

    def __init__(self, person_id: str) -> None:
        super().__init__()
        self.person_id = person_id

    def compose(self) -> Any:
        yield Static("typing a note")

    def draft(self) -> tuple[str, dict[str, Any]]:
        return f"contact:{self.person_id}", {"kind": "contact", "person_id": self.person_id, "notes": "Half a note"}


@pytest.mark.slow  # unlocks through the screen, twice
async def test_drafts_are_kept_across_a_lock_and_offered_back(
    demo_vault: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    restored: list[tuple[str, dict[str, Any]]] = []
    import sprx_tui.screens.contact as contact_module

    monkeypatch.setattr(contact_module, "restore_draft", lambda app, key, payload: restored.append((key, payload)))
    app = make_app(demo_vault, store=reopen(demo_vault))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        person = app.store.queries.caseload(limit=1)[0][0]
        await app.push_screen(DraftingScreen(person.id))
        await pilot.press("ctrl+l")
        await settle(pilot)
        assert app.store is None
        assert "kept safely" in " ".join(n.message for n in app._notifications)

        await unlock(app, pilot)
        assert isinstance(app.screen, DraftOfferScreen)
        question = str(app.screen.query_one("#draft-question", Static).content)
        assert question == f"You have an unsaved contact note for {person.name}; restore it?"
        await pilot.press("y")
        await settle(pilot)
        payload = {"kind": "contact", "person_id": person.id, "notes": "Half a note"}
        assert restored == [(f"contact:{person.id}", payload)]
        # Restoring does not discard it: the contact screen discards it when the note is saved.
        assert app.store.service.list_drafts() == [f"contact:{person.id}"]

        # Saying no discards it for good.
        await pilot.press("ctrl+l")
        await settle(pilot)
        await unlock(app, pilot)
        assert isinstance(app.screen, DraftOfferScreen)
        await pilot.press("n")
        await settle(pilot)
        assert app.store.service.list_drafts() == []


# -- keys, help, palette --------------------------------------------------------------------------


async def test_keymap_override_rebinds_by_id(unlocked_store: CaseStore, demo_vault: Path) -> None:
    app = make_app(demo_vault, store=unlocked_store, keymap={"caseload.filter": "f", "app.lock": "ctrl+k"})
    async with app.run_test(size=SIZE) as pilot:
        await caseload(app, pilot)
        await pilot.press("slash")
        assert not isinstance(app.focused, Input)
        await pilot.press("f")
        assert isinstance(app.focused, Input)
        await pilot.press("escape", "f1")
        rows = app.screen.rows
        assert ("This screen", "f", "Filter") in [(w, k, what) for w, k, what, _ in rows]
        await pilot.press("escape", "ctrl+l")
        assert app.store is not None
        await pilot.press("ctrl+k")
        await settle(pilot)
        assert app.store is None


async def test_f1_lists_the_current_screens_keys(unlocked_store: CaseStore, demo_vault: Path) -> None:
    app = make_app(demo_vault, store=unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        today_rows = {(w, what) for w, _k, what, _ in app.screen.rows}
        assert ("This screen", "Open") in today_rows
        assert ("Everywhere", "Lock") in today_rows
        assert ("This screen", "Filter") not in today_rows
        await pilot.press("escape")
        assert isinstance(app.screen, TodayScreen)

        await caseload(app, pilot)
        await pilot.press("f1")
        rows = {(w, k, what) for w, k, what, _ in app.screen.rows}
        assert ("This screen", "/", "Filter") in rows
        assert ("This screen", "s", "Sort") in rows
        assert ("Everywhere", "f3", "Caseload") in {(w, k.lower(), what) for w, k, what in rows}
        text = screen_text(app)
        assert "Keys: Caseload" in text and "Filter" in text
        await pilot.press("f1")
        assert isinstance(app.screen, CaseloadScreen)


@pytest.mark.slow  # one of the longest fast-tier tests (3-7 s on 2 busy cores): make test runs it, make check does not
async def test_palette_has_no_screenshot_and_finds_people(unlocked_store: CaseStore, demo_vault: Path) -> None:
    person = unlocked_store.queries.caseload(limit=1)[0][0]
    app = make_app(demo_vault, store=unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Screenshot" not in titles and "Quit" in titles
        await pilot.press("ctrl+p")
        await type_text(pilot, "screensh")
        await settle(pilot)  # the palette's search is a worker
        assert "Screenshot" not in screen_text(app)
        opened: list[str] = []
        app.open_person = lambda pid, tab=None: opened.append(pid)  # type: ignore[method-assign]
        app.screen.query_one(Input).value = ""
        await type_text(pilot, person.nhs_number)
        await settle(pilot)
        await wait_until(pilot, lambda: f"Open {person.name}" in screen_text(app), what="the person in the palette")
        await pilot.press("enter")
        await pilot.pause()
        assert opened == [person.id]


@pytest.mark.slow  # one of the longest fast-tier tests (3-7 s on 2 busy cores): make test runs it, make check does not
async def test_palette_offers_lock_and_area_switching(unlocked_store: CaseStore, demo_vault: Path) -> None:
    app = make_app(demo_vault, store=unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p")
        await type_text(pilot, "go to caseload")
        await settle(pilot)
        await wait_until(pilot, lambda: palette_hits(app) > 0, what="the command in the palette")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, CaseloadScreen)
        await pilot.press("ctrl+p")
        await type_text(pilot, "lock now")
        await settle(pilot)
        await wait_until(pilot, lambda: palette_hits(app) > 0, what="the command in the palette")
        await pilot.press("enter")
        await settle(pilot)
        assert app.store is None


async def test_missing_area_screens_say_so(unlocked_store: CaseStore, demo_vault: Path, monkeypatch: Any) -> None:
    monkeypatch.setitem(app_module.AREA_SCREENS, "directory", ("sprx_tui.screens.no_such_directory", "DirectoryScreen"))
    app = make_app(demo_vault, store=unlocked_store)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("f4")
        await pilot.pause()
        assert isinstance(app.screen, TodayScreen)
        assert "The directory screen is not available in this version." in [n.message for n in app._notifications]


# -- settings, themes, colour -----------------------------------------------------------------------


async def test_settings_explain_bad_values_and_save(
    unlocked_store: CaseStore, demo_vault: Path, _config_dir: Path
) -> None:
    app = make_app(demo_vault, store=unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("f9")
        assert isinstance(app.screen, SettingsScreen)
        field = app.screen.query_one("#auto_lock", Input)
        field.value = "90"
        await pilot.press("ctrl+s")
        assert "from 1 to 60" in str(app.screen.query_one("#auto_lock-error", Static).content)
        assert field.value == "90"
        field.value = "10"
        app.screen.query_one("#theme-high_contrast").value = True
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.config.auto_lock_minutes == 10
        assert app.theme == "sprx-high-contrast"
        saved = json.loads((_config_dir / "config.json").read_text())
        assert saved["auto_lock_minutes"] == 10 and saved["theme"] == "high_contrast"
        assert PASSPHRASE not in json.dumps(saved)
        await pilot.press("escape")
        assert isinstance(app.screen, TodayScreen)


@pytest.mark.slow  # one of the longest fast-tier tests (3-7 s on 2 busy cores): make test runs it, make check does not
async def test_change_passphrase_from_settings(unlocked_store: CaseStore, demo_vault: Path) -> None:
    app = make_app(demo_vault, store=unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("f9")
        screen = app.screen
        new = "heron lantern bicycle orchard"
        screen.query_one("#old", Input).value = "the wrong old passphrase"
        screen.query_one("#new", Input).value = new
        screen.query_one("#again", Input).value = new
        screen.query_one("#again", Input).focus()
        await pilot.press("enter")
        await settle(pilot)
        assert "not right" in str(screen.query_one("#old-error", Static).content)
        assert screen.query_one("#new", Input).value == new  # kept
        screen.query_one("#old", Input).value = PASSPHRASE
        screen.query_one("#again", Input).value = new + "x"
        screen.query_one("#again", Input).focus()
        await pilot.press("enter")
        assert "not the same" in str(screen.query_one("#again-error", Static).content)
        screen.query_one("#again", Input).value = new
        await pilot.press("enter")
        await settle(pilot)
        assert "has been changed" in str(screen.query_one("#change-status", Static).content)
        assert all(not screen.query_one(f"#{n}", Input).value for n in ("old", "new", "again"))
    unlocked_store.vault.lock()
    check = Vault(demo_vault)
    check.unlock(bytearray(new.encode()))
    check.lock()


async def test_palette_toggles_theme_and_it_persists(
    unlocked_store: CaseStore, demo_vault: Path, _config_dir: Path
) -> None:
    app = make_app(demo_vault, store=unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        assert app.theme == "sprx"
        app.action_toggle_theme()
        await pilot.pause()
        assert app.theme == "sprx-high-contrast"
    assert Config.load(_config_dir / "config.json").theme == "high_contrast"


def test_no_color_is_honoured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from textual.filter import Monochrome

    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app(tmp_path / "v")
    assert app.no_color
    assert any(isinstance(f, Monochrome) for f in app._filters)


def test_config_ignores_bad_values_and_keeps_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auto_lock_minutes": "lots", "theme": "neon", "server_url": "https://x.test"}))
    config = Config.load(path)
    assert config.auto_lock_minutes == 5 and config.theme == "default"
    config.save()
    assert json.loads(path.read_text())["server_url"] == "https://x.test"
    path.write_text("{not json")
    assert Config.load(path).load_problem


def test_high_contrast_theme_meets_aaa() -> None:
    from textual.color import Color

    from sprx_tui.themes import SPRX_DEFAULT, SPRX_HIGH_CONTRAST

    def luminance(c: Color) -> float:
        def channel(v: int) -> float:
            x = v / 255
            return x / 12.92 if x <= 0.03928 else ((x + 0.055) / 1.055) ** 2.4

        r, g, b = c.rgb
        return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)

    def ratio(a: str, b: str) -> float:
        hi, lo = sorted((luminance(Color.parse(a)), luminance(Color.parse(b))), reverse=True)
        return (hi + 0.05) / (lo + 0.05)

    t = SPRX_HIGH_CONTRAST
    for colour in (t.foreground, t.primary, t.error, t.warning, t.success, t.accent):
        assert ratio(colour, t.background) >= 7.0, colour
    d = SPRX_DEFAULT
    for colour in (d.foreground, d.primary, d.error, d.warning, d.success):
        assert ratio(colour, d.background) >= 4.5, colour


@pytest.mark.slow  # unlocks with the recovery key through the screen
async def test_forgotten_passphrase_uses_the_recovery_key(tmp_path: Path) -> None:
    path = tmp_path / "vault"
    vault, recovery = Vault.create(path, bytearray(PASSPHRASE.encode()), kdf=FLOOR)
    vault.lock()
    new = "otter meadow lantern quiet"
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f8")
        screen = app.screen
        screen.query_one("#recovery", Input).value = "ABCD-EFGH"
        screen.query_one("#new", Input).value = new
        screen.query_one("#again", Input).value = new
        screen.query_one("#again", Input).focus()
        await pilot.press("enter")
        await settle(pilot)
        assert "not in the right format" in str(screen.query_one("#recovery-error", Static).content)
        assert screen.query_one("#new", Input).value == new
        screen.query_one("#recovery", Input).value = recovery.lower()
        screen.query_one("#again", Input).focus()
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, TodayScreen)
        assert "PASSPHRASE_RESET" in [a for a, _ in audit_actions(app.store)]
        await pilot.press("ctrl+l")
        await settle(pilot)
    check = Vault(path)
    check.unlock(bytearray(new.encode()))
    check.lock()


async def test_status_bar_follows_sync_reports(
    unlocked_store: CaseStore, demo_vault: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sprx_tui.app as app_module
    from sprx_tui.messages import SyncStatusChanged
    from sprx_tui.widgets.status_bar import StatusBar

    def bar() -> str:
        return app.screen.query_one(StatusBar).render().plain  # type: ignore[union-attr]

    # This test posts the sync controller's reports itself, so the app's own timers are held: the counts'
    # 30 s re-read and the controller's 1 s tick (which takes an "offline" report on this never-enrolled
    # vault for an enrolment made from the command line and syncs, which says "demo vault" again). On a
    # busy machine each landed between a report below and its check.
    import sprx_tui.sync_controller as controller_module

    monkeypatch.setattr(app_module, "SUMMARY_REFRESH_SECONDS", 3600.0)
    monkeypatch.setattr(controller_module, "TICK_SECONDS", 3600.0)
    app = make_app(demo_vault, store=unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        # Today's load ends with a count refresh; a refresh landing after the reports below would rightly
        # say "not enrolled" again (this vault is not), so wait for start-up to finish, however slow.
        for _ in range(50):
            await settle(pilot)
            tables = app.screen.query(TextTable)
            if isinstance(app.screen, TodayScreen) and tables and not any(t.loading for t in tables):
                break
        await settle(pilot)
        # A demo vault can never be enrolled: no "changes waiting" that will never be sent.
        assert bar() == "Sync: demo vault, made-up people, never sent anywhere"
        app.post_message(SyncStatusChanged("synced", 2, 1, "2026-11-23T09:12:00+00:00"))
        await pilot.pause()
        assert bar() == "Sync: synced at 09:12 · 2 changes waiting · 1 conflict to resolve (F6)"
        app.post_message(SyncStatusChanged("offline", 0, 0, "2026-11-22T16:40:00+00:00"))
        await pilot.pause()
        assert bar() == "Sync: offline, last synced 22 Nov 16:40"


async def test_sigterm_keeps_drafts_and_locks(unlocked_store: CaseStore, demo_vault: Path) -> None:
    import signal

    app = make_app(demo_vault, store=unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        person = app.store.queries.caseload(limit=1)[0][0]
        vault = app.store.vault
        await app.push_screen(DraftingScreen(person.id))
        app._terminate(signal.SIGTERM)
        await pilot.pause()
    assert app.return_code == 128 + signal.SIGTERM
    assert not vault.is_unlocked
    store = reopen(demo_vault)
    try:
        assert store.service.list_drafts() == [f"contact:{person.id}"]
        assert ("LOCK", "signal") in audit_actions(store)
    finally:
        store.vault.lock()


async def test_status_bar_reads_enrolment_and_last_sync_from_the_vault(
    unlocked_store: CaseStore, demo_vault: Path
) -> None:
    from sprx_tui.core.store import set_state
    from sprx_tui.widgets.status_bar import StatusBar

    set_state(
        unlocked_store.engine,
        {"device_token": "opaque-test-token", "last_successful_sync_at": "2026-11-23T08:05:00+00:00"},
    )
    pending = unlocked_store.queries.pending_changes()
    app = make_app(demo_vault, store=unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        text = app.screen.query_one(StatusBar).render().plain  # type: ignore[union-attr]
        assert text == f"Sync: offline, last synced 08:05 · {pending} changes waiting"


async def test_late_count_refresh_keeps_the_latest_sync_state_and_detail(
    unlocked_store: CaseStore, demo_vault: Path
) -> None:
    """The 30-second count refresh may finish after a sync did: it brings counts, never an older state."""
    from sprx_tui.core.store import set_state
    from sprx_tui.messages import SyncCountsRead
    from sprx_tui.widgets.status_bar import StatusBar, SyncSummary

    last = "2026-11-23T08:05:00+00:00"
    set_state(
        unlocked_store.engine,
        {"device_token": "opaque-test-token", "server_url": "https://sprx.practice.example:8443"},
    )
    pending = unlocked_store.queries.pending_changes()
    app = make_app(demo_vault, store=unlocked_store, auto_sync=False)  # the address is made up
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app._stop_sync()  # this test plays the controller's part itself
        app.sync_summary = SyncSummary("syncing", 0, 0, None, "sending changes 2 of 9")
        counts_posted = threading.Event()
        real_post = app.post_message

        def post(message: Any) -> bool:
            posted = real_post(message)
            if isinstance(message, SyncCountsRead):
                counts_posted.set()
            return posted

        app.post_message = post  # type: ignore[method-assign]
        with unlocked_store.lock:  # the count worker starts while a sync is running, and waits for the database
            app.refresh_sync_summary()
            await pilot.pause()
            set_state(unlocked_store.engine, {"last_successful_sync_at": last})
        # Block the event loop until the worker's counts are queued, so they arrive after the sync's end below.
        assert counts_posted.wait(30), "the count worker never reported"
        app.sync_summary = SyncSummary("failed", 0, 0, None, "details on F6")  # the sync ended, as reported
        await settle(pilot)
        assert app.sync_summary == SyncSummary("failed", pending, 0, last, "details on F6")
        text = app.screen.query_one(StatusBar).render().plain  # type: ignore[union-attr]
        assert text == f"Sync: sync failed: details on F6 · {pending} changes waiting"

        # Enrolled from the command line while the app was open: the refresh notices (no detail carried over).
        app.sync_summary = SyncSummary("not_enrolled", 0, 0, None, "")
        app.refresh_sync_summary()
        await settle(pilot)
        assert app.sync_summary == SyncSummary("offline", pending, 0, last, "")
        # ... and the app writes as the enrolled worker and device from then on, not as the laptop it was.
        from sprx_tui.core.service import Actor

        set_state(unlocked_store.engine, {"device_id": "device-from-enrol", "user_id": "alice", "practice_id": "P1"})
        app.refresh_sync_summary()
        await settle(pilot)
        assert unlocked_store.actor == unlocked_store.service.actor == Actor("alice", "device-from-enrol", "P1")


async def test_write_ahead_log_is_copied_in_a_pause_not_inside_a_save(
    unlocked_store: CaseStore, demo_vault: Path
) -> None:
    """SQLite's own checkpoint (every 1,000 log pages) stopped about every 50th save for 250-475 ms."""
    import time

    app = make_app(demo_vault, store=unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        store = app.store
        assert store is not None
        with store.lock, store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == app_module.WAL_AUTOCHECKPOINT_PAGES
        person_id = store.queries.caseload(limit=1)[0][0].id
        await asyncio.to_thread(store.service.record_contact, person_id, mode="phone", notes="Checkpoint test.")
        # The worker is typing: not now.
        app._last_input_at = time.monotonic()
        app._last_checkpoint_at -= app_module.CHECKPOINT_AT_MOST_EVERY_SECONDS
        app.last_checkpoint = None
        app._checkpoint_when_idle()
        await settle(pilot)
        assert app.last_checkpoint is None
        # A pause: the log written by the save is copied into the database.
        app._last_input_at -= app_module.CHECKPOINT_AFTER_QUIET_SECONDS
        app._checkpoint_when_idle()
        await settle(pilot)
        assert app.last_checkpoint is not None
        busy, log_frames, copied = app.last_checkpoint
        assert busy == 0 and log_frames > 0 and copied == log_frames
        # ...and not again straight away.
        app.last_checkpoint = None
        app._checkpoint_when_idle()
        await settle(pilot)
        assert app.last_checkpoint is None
        await pilot.press("ctrl+l")
        await settle(pilot)
        assert app._checkpoint_timer is None


def drawn_lines() -> list[Any]:
    """Every line Textual has drawn that is still alive (a Strip: the text of one row of a widget).

    Frozen objects (the app freezes its heap) are not listed by gc.get_objects: thawed for the look, then
    frozen again, so the app's own freeze is as it was."""
    import gc

    from textual.strip import Strip

    frozen = gc.get_freeze_count() > 0
    gc.unfreeze()
    try:
        return [o for o in gc.get_objects() if isinstance(o, Strip)]
    finally:
        if frozen:
            gc.freeze()


@pytest.mark.slow  # unlocks through the screen, twice
@pytest.mark.own_heap
async def test_heap_is_frozen_while_unlocked_and_released_by_the_lock(demo_vault: Path) -> None:
    """gc.freeze keeps full collections from stalling keystrokes; a lock or exit must undo it, and the
    session's objects (the store, the screens with their rows) must be freed by the lock: idle worker
    threads used to keep their last worker, and so its screen and arguments, alive (FreshContextExecutor)."""
    import gc
    import time
    import weakref

    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)  # Python's defaults, whatever an earlier test's app left
    own = gc.get_threshold()
    app = make_app(demo_vault)
    async with app.run_test(size=SIZE) as pilot:
        await unlock(app, pilot, typed=True)
        await wait_until(pilot, lambda: gc.get_freeze_count() > 0, what="the heap freeze after the unlock")
        # Full collections wait for a pause in the typing; young generations are collected as usual.
        assert gc.get_threshold()[:2] == own[:2] and gc.get_threshold()[2] > own[2]
        full_before = gc.get_stats()[2]["collections"]
        app._last_full_gc_at -= app_module.IDLE_GC_AT_MOST_EVERY_SECONDS  # the last one was long ago
        app._last_input_at = time.monotonic()  # but the worker is typing: not now
        app._collect_when_idle()
        assert gc.get_stats()[2]["collections"] == full_before
        app._last_input_at -= app_module.IDLE_GC_AFTER_QUIET_SECONDS  # a pause: now
        app._collect_when_idle()
        assert gc.get_stats()[2]["collections"] == full_before + 1
        app._collect_when_idle()  # and not again straight away
        assert gc.get_stats()[2]["collections"] == full_before + 1
        session = [weakref.ref(app.store), weakref.ref(app.screen)]
        shown = [row.name for row in app.store.queries.due_today(limit=50)]
        assert shown and all(any(n in s.text for s in drawn_lines()) for n in shown[:3])  # Today was drawn
        await pilot.press("ctrl+l")
        await settle(pilot)
        # The lock thaws the heap; the unlock screen freezes it again once its preparation is done, but
        # only after the session's objects are gone: none of them may be kept out of the collector.
        await wait_until(pilot, lambda: app._heap.frozen, what="the unlock screen's heap freeze")
        gc.collect()
        assert [ref() for ref in session] == [None, None]
        # Nor any line drawn in it (Textual kept the last 1,024 widgets' lines: _textual_hacks.forget_drawn_lines).
        assert [s.text for s in drawn_lines() if any(n in s.text for n in shown)] == []
        await unlock(app, pilot, typed=True)
        await wait_until(pilot, lambda: gc.get_freeze_count() > 0, what="the heap freeze after the unlock")
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == own
    # A freeze asked for after the exit (the warm-up thread finishing late, a timer) is refused.
    app._freeze_retries = 1
    app._freeze_heap()
    assert gc.get_freeze_count() == 0
    gc.set_threshold(*before)
