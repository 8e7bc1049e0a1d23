"""The app warns on lock and on quit when changes have waited unsent for over a day (issue 9, part 5)."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from sqlmodel import Session

from sprx_tui.app import SprxApp
from sprx_tui.config import Config
from sprx_tui.core import sync as laptop_sync
from sprx_tui.core.store import CaseStore, open_store
from sprx_tui.core.sync.state import K_TOKEN, write_state
from sprx_tui.core.vault import Vault
from tests.sync.client_harness import VaultTemplate, vault_template  # noqa: F401 - fixture
from tests.tui.settling import settle, wait_until

START = dt.datetime(2026, 1, 5, 10, 0, tzinfo=dt.UTC)
WARNING = "waited more than a day to be sent to the practice server"


@pytest.fixture(autouse=True)
def _config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPRX_CONFIG_DIR", str(tmp_path / "config"))


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> dt.datetime:
        return self.now


def enrolled_store(tmp_path: Path, template: VaultTemplate, clock: Clock) -> CaseStore:
    dest = tmp_path / "vault"
    shutil.copytree(template.path, dest)
    vault = Vault(dest)
    vault.unlock_with_recovery(template.recovery)
    store = open_store(vault, clock=clock)
    # Enrolled as far as the warning cares (a token); no server is contacted in these tests.
    with store.lock, Session(store.engine) as s, s.begin():
        write_state(s, {K_TOKEN: "sprx_test-token"})
    store.service.add_person(given_name="Ann", family_name="Example")
    return store


def make_app(store: CaseStore, clock: Clock) -> SprxApp:
    app = SprxApp(store.vault.path, clock=clock, config=Config(auto_sync=False), store=store)
    app.animation_level = "none"
    return app


def messages(app: SprxApp) -> list[str]:
    return [str(n.message) for n in app._notifications]


def test_unsent_overdue_counts_only_after_a_day(tmp_path: Path, vault_template: VaultTemplate) -> None:  # noqa: F811
    clock = Clock()
    store = enrolled_store(tmp_path, vault_template, clock)
    try:
        assert laptop_sync.unsent_overdue(store, START + dt.timedelta(hours=23)) == 0
        assert laptop_sync.unsent_overdue(store, START + dt.timedelta(hours=25)) >= 1
        with store.lock, Session(store.engine) as s, s.begin():
            write_state(s, {K_TOKEN: None})
        assert laptop_sync.unsent_overdue(store, START + dt.timedelta(days=3)) == 0  # not enrolled: nothing to send
    finally:
        store.vault.lock()


@pytest.mark.slow  # enrols and syncs a laptop first, then locks and unlocks
async def test_lock_warns_when_changes_waited_over_a_day(tmp_path: Path, vault_template: VaultTemplate) -> None:  # noqa: F811
    clock = Clock()
    store = enrolled_store(tmp_path, vault_template, clock)
    clock.now = START + dt.timedelta(hours=2)
    app = make_app(store, clock)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+l")
        await settle(pilot)
        assert app.store is None
        assert not any(WARNING in m for m in messages(app))  # two hours: no warning
    clock.now = START + dt.timedelta(days=2)
    store = open_store(_unlocked(tmp_path, vault_template), clock=clock)
    app = make_app(store, clock)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+l")
        await settle(pilot)
        assert app.store is None  # the lock happened; the warning is said over the unlock screen
        assert any(WARNING in m for m in messages(app)), messages(app)


async def test_quit_warns_first_and_quits_on_the_second_press(tmp_path: Path, vault_template: VaultTemplate) -> None:  # noqa: F811
    clock = Clock()
    store = enrolled_store(tmp_path, vault_template, clock)
    clock.now = START + dt.timedelta(days=2)
    app = make_app(store, clock)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+q")
        await settle(pilot)
        assert app.is_running and app.store is not None
        assert any(WARNING in m and "Ctrl+Q again" in m for m in messages(app)), messages(app)
        await pilot.press("ctrl+q")
        await wait_until(pilot, lambda: app.return_code is not None, what="the quit")
    assert app.return_code == 0
    assert not store.vault.is_unlocked


def _unlocked(tmp_path: Path, template: VaultTemplate) -> Vault:
    vault = Vault(tmp_path / "vault")
    vault.unlock_with_recovery(template.recovery)
    return vault
