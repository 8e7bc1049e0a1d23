"""SVG snapshots of the shell screens (unlock, Today, Caseload, Help, Settings): synthetic data, frozen clock."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
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
THEMES = ["default", "high_contrast"]


@pytest.fixture(autouse=True)
def _config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPRX_CONFIG_DIR", str(tmp_path / "config"))


@pytest.fixture(scope="module")
def snapshot_vault(demo_vault_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("snapshots") / "vault"
    shutil.copytree(demo_vault_template, dest)
    return dest


@pytest.fixture(scope="module")
def snapshot_store(snapshot_vault: Path) -> Iterator[CaseStore]:
    """One unlocked store shared by the data screens; nothing here writes to it."""
    vault = quick_unlock(snapshot_vault)
    yield open_store(vault, clock=frozen_clock)
    vault.lock()


def make_app(vault: Path, theme: str, store: CaseStore | None = None) -> SprxApp:
    app = SprxApp(vault, clock=frozen_clock, config=Config(theme=theme), store=store)
    app.animation_level = "none"
    return app


def press_then_settle(*keys: str) -> Any:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        if keys:
            await pilot.press(*keys)
        await settle(pilot)

    return run_before


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_unlock_screen(snap_compare: Any, snapshot_vault: Path, size: tuple[int, int], theme: str) -> None:
    assert snap_compare(make_app(snapshot_vault, theme), terminal_size=size)


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_today(
    snap_compare: Any, snapshot_vault: Path, snapshot_store: CaseStore, size: tuple[int, int], theme: str
) -> None:
    app = make_app(snapshot_vault, theme, snapshot_store)
    assert snap_compare(app, terminal_size=size, run_before=press_then_settle())


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_caseload(
    snap_compare: Any, snapshot_vault: Path, snapshot_store: CaseStore, size: tuple[int, int], theme: str
) -> None:
    app = make_app(snapshot_vault, theme, snapshot_store)
    assert snap_compare(app, terminal_size=size, run_before=press_then_settle("f3"))


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_help_on_caseload(
    snap_compare: Any, snapshot_vault: Path, snapshot_store: CaseStore, size: tuple[int, int], theme: str
) -> None:
    app = make_app(snapshot_vault, theme, snapshot_store)
    assert snap_compare(app, terminal_size=size, run_before=press_then_settle("f3", "f1"))


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_settings(
    snap_compare: Any, snapshot_vault: Path, snapshot_store: CaseStore, size: tuple[int, int], theme: str
) -> None:
    app = make_app(snapshot_vault, theme, snapshot_store)
    assert snap_compare(app, terminal_size=size, run_before=press_then_settle("f9"))
