"""SVG snapshots of the Sync screen and a conflict side by side: synthetic demo data, frozen clock.

A real server hands out random device ids and stamps with the real time, so for pixel-stable pictures the
vault's sync bookkeeping (enrolment, last sync, one open conflict, two refused changes) is written here with
fixed ids and times. The behaviour behind it is covered against a real server in test_sync_ui.py. Auto-sync is
off so nothing tries to reach the (made-up) server address.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, col, select
from textual.pilot import Pilot
from textual.widgets import DataTable

from sprx_tui.app import SprxApp
from sprx_tui.config import Config
from sprx_tui.core.models import Goal, Person, SyncConflict, SyncRejected
from sprx_tui.core.store import DEMO_MARK, CaseStore, open_store, set_state
from sync import hlc as hlc_mod
from tests.tui.conftest import FROZEN_NOW, frozen_clock, quick_unlock
from tests.tui.settling import settle, wait_until

SIZES = [(80, 24), (120, 40)]
THEMES = ["default", "high_contrast"]
OTHER_LAPTOP = "6f0c2b9e-3d1a-4e57-9b08-2c4d5e6f7a81"


@pytest.fixture(autouse=True)
def _config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPRX_CONFIG_DIR", str(tmp_path / "config"))


def _open_copy(template: Path, dest: Path) -> CaseStore:
    shutil.copytree(template, dest)
    vault = quick_unlock(dest)
    return open_store(vault, clock=frozen_clock)


def _stamp(minutes_before: int) -> int:
    moment = FROZEN_NOW - dt.timedelta(minutes=minutes_before)
    return hlc_mod.pack(int(moment.timestamp() * 1000), 0)


@pytest.fixture(scope="module")
def sync_store(demo_vault_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CaseStore]:
    store = _open_copy(demo_vault_template, tmp_path_factory.mktemp("sync-snapshots") / "vault")
    last = (FROZEN_NOW - dt.timedelta(minutes=45)).isoformat()
    set_state(
        store.engine,
        {
            "server_url": "https://sprx.practice.example:8443",
            "device_token": "snapshot-token",
            "user_id": "alice",
            "practice_id": "P1",
            "last_sync_at": last,
            "last_successful_sync_at": last,
            "last_sync_status": "conflicts",
            "last_sync_message": "Synced, but 1 conflict needs a person to choose which version to keep.",
        },
    )
    with store.lock, Session(store.engine) as s, s.begin():
        # Ids are random per session; names and texts come from the seeded demo, so pick by those.
        by_name = (col(Person.family_name), col(Person.given_name))
        people = s.exec(select(Person).where(Person.deleted == False).order_by(*by_name)).all()  # noqa: E712
        goal = s.exec(
            select(Goal).join(Person, col(Person.id) == col(Goal.person_id)).order_by(*by_name, col(Goal.text))
        ).first()
        assert goal is not None
        s.add(
            SyncConflict(
                id="c0ffee00-0000-4000-8000-000000000001",
                tbl="goal",
                row_id=goal.id,
                person_id=goal.person_id,
                field="text",
                values_json=[
                    {"v": goal.text, "hlc": _stamp(25), "dev": store.actor.device_id, "seq": 40},
                    {
                        "v": "Go to the Tuesday walking group with her neighbour",
                        "hlc": _stamp(18),
                        "dev": OTHER_LAPTOP,
                        "seq": 41,
                    },
                ],  # fmt: skip
                shown_idx=1,
                server_seq=42,
            )
        )
        s.add(
            SyncRejected(
                mutation_id=900001,
                tbl="contact",
                row_id="r1",
                person_id=people[0].id,
                reason_code="out_of_scope",
                payload={"op": "insert"},
                rejected_at=FROZEN_NOW - dt.timedelta(minutes=44),
            )
        )
        s.add(
            SyncRejected(
                mutation_id=900002,
                tbl="goal",
                row_id="r2",
                person_id=people[1].id,
                reason_code="conflict_closed",
                detail="This conflict is already resolved or does not exist.",
                payload={"op": "resolve"},
                rejected_at=FROZEN_NOW - dt.timedelta(minutes=44),
            )
        )
    yield store
    store.vault.lock()


@pytest.fixture(scope="module")
def plain_store(demo_vault_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CaseStore]:
    store = _open_copy(demo_vault_template, tmp_path_factory.mktemp("sync-snapshots-plain") / "vault")
    # A vault for real work that is not enrolled yet: the screen explains how to enrol (a demo vault never can).
    with store.lock, store.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM sync_state WHERE key = ?", (DEMO_MARK,))
    yield store
    store.vault.lock()


def make_app(store: CaseStore, theme: str = "default") -> SprxApp:
    app = SprxApp(store.vault.path, clock=frozen_clock, config=Config(theme=theme, auto_sync=False), store=store)
    app.animation_level = "none"
    return app


async def on_sync(pilot: Pilot[Any]) -> None:
    await settle(pilot)
    await pilot.press("f6")
    await settle(pilot)
    # The lists arrive from a worker; tables size their columns when idle after that.
    await wait_until(pilot, lambda: getattr(pilot.app.screen, "view", None) is not None, what="the sync screen's lists")
    await pilot.pause()
    await settle(pilot)


async def on_conflict(pilot: Pilot[Any]) -> None:
    await on_sync(pilot)
    pilot.app.screen.query_one("#conflicts", DataTable).focus()
    await pilot.press("enter")
    await settle(pilot)


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_sync_screen(snap_compare: Any, sync_store: CaseStore, size: tuple[int, int], theme: str) -> None:
    assert snap_compare(make_app(sync_store, theme), terminal_size=size, run_before=on_sync)


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_conflict_side_by_side(snap_compare: Any, sync_store: CaseStore, size: tuple[int, int]) -> None:
    assert snap_compare(make_app(sync_store), terminal_size=size, run_before=on_conflict)


def test_conflict_side_by_side_high_contrast(snap_compare: Any, sync_store: CaseStore) -> None:
    assert snap_compare(make_app(sync_store, "high_contrast"), terminal_size=(80, 24), run_before=on_conflict)


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_sync_screen_not_enrolled(snap_compare: Any, plain_store: CaseStore, size: tuple[int, int]) -> None:
    assert snap_compare(make_app(plain_store), terminal_size=size, run_before=on_sync)
