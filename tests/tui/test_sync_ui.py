"""The in-app sync: Sync screen, status bar, conflicts resolved side by side, back-off, revocation.

Every test talks to a real `sprx-server` (uvicorn on 127.0.0.1, plain http to loopback) with real SQLCipher
vaults enrolled through `core.sync.enrol`. The schedule's clock is a fake monotonic clock the test moves, so
back-off is checked without sleeping; the network failures are real (nothing listens on the port).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import random
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from textual.widgets import DataTable, TextArea

from sprx_tui import sync_controller
from sprx_tui.app import SprxApp
from sprx_tui.config import Config
from sprx_tui.core import sync as laptop_sync
from sprx_tui.core.store import CaseStore, get_state, open_store
from sprx_tui.core.sync import view as sync_view
from sprx_tui.core.vault import FLOOR, Vault
from sprx_tui.screens.forms import ConfirmModal
from sprx_tui.screens.help import HelpScreen, key_rows
from sprx_tui.screens.revoked import RevokedScreen
from sprx_tui.screens.sync import ConflictScreen, MergeScreen, SyncScreen
from sprx_tui.sync_controller import SyncController, auto_sync_backoff
from sync.server import store as server_tables
from sync.server.store import ServerStore
from tests.sync.server_harness import free_port, uvicorn_server
from tests.tui.conftest import PASSPHRASE, frozen_clock
from tests.tui.settling import settle, wait_until

SIZE = (120, 40)


@pytest.fixture(autouse=True)
def _config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPRX_CONFIG_DIR", str(tmp_path / "config"))


# -- a real server and laptops ----------------------------------------------------------------------


@dataclass
class Server:
    base: str
    admin: ServerStore

    def worker(self) -> str:
        name = f"w{uuid.uuid4().hex[:8]}"
        self.admin.add_worker(name, "P1")
        return name

    def code(self, worker: str) -> str:
        return self.admin.issue_enrol_code(worker)[0]

    def conflict(self, conflict_id: str) -> Any:
        with self.admin.engine.connect() as conn:
            return conn.execute(
                sa.select(server_tables.conflict).where(server_tables.conflict.c.id == conflict_id)
            ).first()

    def record(self, tbl: str, row_id: str) -> dict[str, Any] | None:
        rec = server_tables.record
        with self.admin.engine.connect() as conn:
            row = conn.execute(sa.select(rec.c["values"]).where(rec.c.tbl == tbl, rec.c.id == row_id)).first()
        return json.loads(row[0]) if row else None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    url = f"sqlite:///{tmp_path_factory.mktemp('sync-ui-server')}/server.db"
    admin = ServerStore(url)  # creates the schema before the server process opens the file
    try:
        with uvicorn_server(url) as base:
            yield Server(base, admin)
    finally:
        admin.close()


@pytest.fixture(scope="module")
def empty_vault(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sync-ui-template") / "vault"
    vault, _ = Vault.create(path, bytearray(PASSPHRASE.encode()), kdf=FLOOR)
    open_store(vault, clock=frozen_clock)
    vault.lock()
    return path


@pytest.fixture
def laptops(empty_vault: Path, tmp_path: Path) -> Iterator[Callable[[str], CaseStore]]:
    """Open a fresh copy of an empty vault per name (all with the frozen clock); locked at the end."""
    opened: list[CaseStore] = []

    def make(name: str) -> CaseStore:
        dest = tmp_path / name
        shutil.copytree(empty_vault, dest)
        vault = Vault(dest)
        vault.unlock(bytearray(PASSPHRASE.encode()))
        store = open_store(vault, clock=frozen_clock)
        opened.append(store)
        return store

    yield make
    for store in opened:
        with contextlib.suppress(Exception):
            store.vault.lock()


def enrol(store: CaseStore, base: str, server: Server, worker: str) -> None:
    laptop_sync.enrol(store, base, server.code(worker), device_name="test laptop")


def synced(*stores: CaseStore) -> None:
    for store in stores:
        result = laptop_sync.sync_now(store)
        assert result.ok, result.message


def make_app(store: CaseStore, **config: Any) -> SprxApp:
    app = SprxApp(store.vault.path, clock=frozen_clock, config=Config(**config), store=store)
    app.animation_level = "none"
    return app


async def until(pilot: Any, condition: Callable[[], bool], timeout: float = 30.0) -> None:
    await wait_until(pilot, condition, timeout)
    await settle(pilot, rounds=1)


def status_line(app: SprxApp) -> str:
    from sprx_tui.widgets.status_bar import StatusBar

    return str(app.screen.query_one(StatusBar).render())


def title(app: SprxApp, table_id: str) -> str:
    return str(app.screen.query_one(f"#{table_id}", DataTable).border_title)


def texts(app: SprxApp, selector: str) -> str:
    return " ".join(str(w.render()) for w in app.screen.query(selector))


class FakeMonotonic:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def fake_schedule(monkeypatch: pytest.MonkeyPatch, clock: FakeMonotonic) -> None:
    """The app builds its controller itself; give it the test's clock and a seeded jitter."""
    monkeypatch.setattr(
        sync_controller, "SyncController", functools.partial(SyncController, now=clock, rng=random.Random(4))
    )


# -- pure schedule ------------------------------------------------------------------------------------


def test_backoff_doubles_from_five_seconds_to_five_minutes_with_twenty_percent_jitter() -> None:
    b = auto_sync_backoff(rng=random.Random(1))
    waits = [b.failed() for _ in range(9)]
    ceilings = [5, 10, 20, 40, 80, 160, 300, 300, 300]
    for wait, ceiling in zip(waits, ceilings, strict=True):
        assert 0.8 * ceiling <= wait <= 1.2 * ceiling
    assert len({round(w, 6) for w in waits[-3:]}) == 3  # jittered, not the same number three times
    b.reset()
    assert b.failures == 0 and 4.0 <= b.failed() <= 6.0


# -- not enrolled ---------------------------------------------------------------------------------------


async def test_not_enrolled_screen_explains_how_to_enrol(laptops: Callable[[str], CaseStore]) -> None:
    store = laptops("solo")
    store.service.add_person(given_name="Nia", family_name="Example")
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("f6")
        await settle(pilot)
        assert isinstance(app.screen, SyncScreen)
        summary = texts(app, "#sync-summary Static")
        assert "not enrolled with a practice server" in summary
        assert "sprx enrol --server URL --code CODE" in summary
        assert "kept and sent first" in summary
        assert title(app, "pending").startswith("Waiting to be sent (") and not title(app, "pending").endswith("(0)")
        assert "not enrolled" in status_line(app)
        await pilot.press("s")
        await settle(pilot)
        assert app._sync.runs == 0  # nothing to sync with
        assert any("not enrolled" in n.message for n in app._notifications)


async def test_a_demo_vault_says_it_can_never_be_enrolled(laptops: Callable[[str], CaseStore]) -> None:
    from sprx_tui.core.demo import build_demo

    store = laptops("demo")
    build_demo(store, people=2, services=3)
    with pytest.raises(laptop_sync.SyncError, match="demo vault of made-up people"):
        laptop_sync.enrol(store, "https://127.0.0.1:9", "ABCD-EFGH")  # refused before any connection
    assert not laptop_sync.is_enrolled(store)
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("f6")
        await settle(pilot)
        summary = texts(app, "#sync-summary Static")
        assert "demo vault of made-up people" in summary and "nothing in it ever leaves this laptop" in summary
        assert "sprx enrol" not in summary
        assert title(app, "pending").startswith("Changes kept in this demo vault (")
        assert status_line(app) == "Sync: demo vault, made-up people, never sent anywhere"


# -- sync now ----------------------------------------------------------------------------------------


@pytest.mark.slow  # a real uvicorn server for the module, and syncs over it
async def test_sync_now_from_the_screen_sends_everything_and_updates_the_status_bar(
    server: Server, laptops: Callable[[str], CaseStore]
) -> None:
    store = laptops("a")
    worker = server.worker()
    enrol(store, server.base, server, worker)
    person = store.service.add_person(given_name="Ada", family_name="Example")
    goal = store.service.add_goal(person.id, "Walk to the shop")
    app = make_app(store, auto_sync=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("f6")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, SyncScreen)
        before = screen.view.pending_total
        assert before >= 2 and title(app, "pending") == f"Waiting to be sent ({before})"
        assert f"{before} changes waiting" in status_line(app)
        assert server.base in texts(app, "#sync-server")
        assert "Automatic sync is off" in texts(app, "#sync-last")

        await pilot.press("s")
        await until(pilot, lambda: app._sync.last is not None and not app._sync.running)
        await settle(pilot)
        assert app._sync.last.status == "synced", app._sync.last.message
        assert "push" in screen.phases_seen
        assert screen.view.pending_total == 0
        assert title(app, "pending") == "Waiting to be sent (0)"
        line = status_line(app)
        assert "synced at 10:30" in line and "waiting" not in line  # the frozen clock's 10:30 UTC = 10:30 GMT
        assert "Synced: sent" in texts(app, "#sync-message")
        assert any(n.message.startswith("Synced") for n in app._notifications)
    assert server.record("goal", goal.id)["text"] == "Walk to the shop"


@pytest.mark.slow  # a real uvicorn server for the module, and syncs over it
async def test_background_sync_at_unlock_and_keys_listed_in_help(
    server: Server, laptops: Callable[[str], CaseStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeMonotonic()
    fake_schedule(monkeypatch, clock)
    store = laptops("bg")
    enrol(store, server.base, server, server.worker())
    store.service.add_person(given_name="Bea", family_name="Example")
    app = make_app(store)  # auto-sync on (the default)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app._sync is not None and app._sync.last is not None)
        controller = app._sync
        assert controller.last.status == "synced" and not controller.last.manual
        assert "synced at" in status_line(app)
        assert 48 <= controller.delays[-1] <= 72  # a minute (±20 %) until the next one
        # A new write does not start a sync; the timer does, when its time comes.
        store.service.add_person(given_name="Cai", family_name="Example")
        controller.tick()
        await settle(pilot)
        assert controller.runs == 1
        clock.t += controller.delays[-1]
        controller.tick()
        await until(pilot, lambda: controller.runs == 2 and not controller.running)
        assert laptop_sync.sync_status(store).pending == 0

        # The setting (F9) turns the schedule off and on again.
        app.config.auto_sync = False
        app.apply_config()
        assert controller.next_at is None
        clock.t += 3600
        controller.tick()
        await settle(pilot)
        assert controller.runs == 2
        app.config.auto_sync = True
        app.apply_config()
        controller.tick()
        await until(pilot, lambda: controller.runs == 3 and not controller.running)

        await pilot.press("f6")
        await settle(pilot)
        assert "next automatic sync" in texts(app, "#sync-last")
        rows = key_rows(app.screen)
        described = {what for _where, _keys, what, _tip in rows}
        assert "Sync now" in described and "Resolve" not in described  # nothing to resolve yet
        await pilot.press("f1")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)


# -- conflicts --------------------------------------------------------------------------------------


def make_conflict(server: Server, laptops: Callable[[str], CaseStore]) -> tuple[CaseStore, CaseStore, str]:
    """Two laptops of one worker edit the same goal text offline; returns (a, b, goal id) with the conflict open."""
    worker = server.worker()
    a, b = laptops("a"), laptops("b")
    enrol(a, server.base, server, worker)
    enrol(b, server.base, server, worker)
    person = a.service.add_person(given_name="Eve", family_name="Example")
    goal = a.service.add_goal(person.id, "Walk on Tuesdays")
    synced(a, b)
    a.service.update_goal(goal.id, text="Walk with the group on Tuesdays")
    b.service.update_goal(goal.id, text="Swim at the leisure centre on Fridays")
    synced(a, b, a)
    assert len(laptop_sync.open_conflicts(a)) == len(laptop_sync.open_conflicts(b)) == 1
    return a, b, goal.id


async def open_first_conflict(app: SprxApp, pilot: Any) -> ConflictScreen:
    await settle(pilot)
    await pilot.press("f6")
    await settle(pilot)
    assert title(app, "conflicts") == "Conflicts to resolve (1)"
    assert "1 conflict to resolve (F6)" in status_line(app)
    app.screen.query_one("#conflicts", DataTable).focus()
    await pilot.pause()
    assert "Resolve" in {what for _where, _keys, what, _tip in key_rows(app.screen)}
    await pilot.press("enter")
    await settle(pilot)
    assert isinstance(app.screen, ConflictScreen)
    return app.screen


@pytest.mark.slow  # a real uvicorn server for the module, and syncs over it
async def test_conflict_side_by_side_merged_text_reaches_the_server(
    server: Server, laptops: Callable[[str], CaseStore]
) -> None:
    a, b, goal_id = make_conflict(server, laptops)
    cid = laptop_sync.open_conflicts(a)[0].id
    user = get_state(a.engine, "user_id")
    app = make_app(a, auto_sync=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_first_conflict(app, pilot)
        boxes = list(screen.query(".version"))
        assert len(boxes) == 2
        assert [str(box.border_title) for box in boxes] == ["1 · left", "2 · right"]
        shown = {texts(app, f"#version-{i} .version-text") for i in (1, 2)}
        assert shown == {"Walk with the group on Tuesdays", "Swim at the leisure centre on Fridays"}
        metas = [texts(app, f"#version-{i} .version-meta") for i in (1, 2)]
        mine = next(m for m in metas if "this laptop" in m)
        theirs = next(m for m in metas if "this laptop" not in m)
        # The time is the edit's hybrid logical clock, which follows the server's clock when a laptop is behind.
        when = re.compile(r"When: (\d\d \w{3} )?\d\d:\d\d$")
        assert f"By: you ({user})" in mine and when.search(mine)
        assert "another laptop (…" in theirs and when.search(theirs)
        assert "Goal for Eve Example was changed on two laptops" in texts(app, "#conflict-title")

        await pilot.press("m")
        await settle(pilot)
        assert isinstance(app.screen, MergeScreen)
        area = app.screen.query_one("#merged", TextArea)
        assert "Walk with the group on Tuesdays" in area.text and "Swim at the leisure centre" in area.text
        await pilot.press("f7")  # the TextArea's select-all
        await pilot.press(*"Walk on Tuesdays and swim on Fridays")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, SyncScreen)
        await until(pilot, lambda: app.sync_summary.conflicts == 0)
        assert title(app, "conflicts") == "Conflicts to resolve (0)"
        assert "conflict" not in status_line(app)

        await pilot.press("s")
        await until(pilot, lambda: app._sync.last is not None and not app._sync.running)
        assert app._sync.last.status == "synced", app._sync.last.message
    row = server.conflict(cid)
    assert row.status == "resolved"
    assert json.loads(row.resolution)["v"] == "Walk on Tuesdays and swim on Fridays"
    assert server.record("goal", goal_id)["text"] == "Walk on Tuesdays and swim on Fridays"
    synced(b)
    assert laptop_sync.open_conflicts(b) == []


@pytest.mark.slow  # a real uvicorn server for the module, and syncs over it
async def test_conflict_keep_right_with_confirmation(server: Server, laptops: Callable[[str], CaseStore]) -> None:
    a, _b, goal_id = make_conflict(server, laptops)
    app = make_app(a, auto_sync=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_first_conflict(app, pilot)
        described = {what for _where, _keys, what, _tip in key_rows(screen)}
        assert {"Keep left", "Keep right", "Write merged text", "Back"} <= described
        right = texts(app, "#version-2 .version-text")
        await pilot.press("2")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("n")  # changed my mind: nothing happens
        await settle(pilot)
        assert app.screen is screen and len(laptop_sync.open_conflicts(a)) == 1
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("y")
        await until(pilot, lambda: isinstance(app.screen, SyncScreen) and app.sync_summary.conflicts == 0)
        outbox_ops = [row.op for row in _pending(a)]
        assert "resolve" in outbox_ops
        await pilot.press("s")
        await until(pilot, lambda: app._sync.last is not None and not app._sync.running)
    assert server.record("goal", goal_id)["text"] == right


@pytest.mark.slow  # a real uvicorn server for the module, and syncs over it
async def test_deleted_on_one_laptop_edited_on_another_confirm_the_delete(
    server: Server, laptops: Callable[[str], CaseStore]
) -> None:
    worker = server.worker()
    a, b = laptops("a"), laptops("b")
    enrol(a, server.base, server, worker)
    enrol(b, server.base, server, worker)
    person = a.service.add_person(given_name="Dee", family_name="Example")
    goal = a.service.add_goal(person.id, "Join the choir")
    action = a.service.add_action(goal.id, "Phone the choir leader")
    synced(a, b)
    a.service.delete_action(action.id)
    b.service.update_action(action.id, what="Phone the choir leader on Monday")
    synced(a, b, a)
    app = make_app(a, auto_sync=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_first_conflict(app, pilot)
        assert "Plan action for Dee Example was deleted on one laptop and changed on another" in texts(
            app, "#conflict-title"
        )
        assert "The record says: Phone the choir leader on Monday" in texts(app, "#conflict-context")
        described = {what for _where, _keys, what, _tip in key_rows(screen)}
        assert {"Keep left", "Keep right", "Back"} <= described and "Write merged text" not in described
        sides = [texts(app, f"#version-{i} .version-text") for i in (1, 2)]
        assert sorted(sides) == ["Delete this record", "Keep this record (with its edits)"]
        await pilot.press("m")  # no merged text for a delete: nothing happens
        await settle(pilot)
        assert app.screen is screen
        await pilot.press("1" if sides[0] == "Delete this record" else "2")
        await settle(pilot)
        assert "Delete this record on every laptop?" in texts(app, "#question")
        await pilot.press("y")
        await until(pilot, lambda: isinstance(app.screen, SyncScreen) and app.sync_summary.conflicts == 0)
        await pilot.press("s")
        await until(pilot, lambda: app._sync.last is not None and not app._sync.running)
        assert app._sync.last.status == "synced", app._sync.last.message
    synced(b)
    assert laptop_sync.open_conflicts(b) == []
    with server.admin.engine.connect() as conn:
        rec = server_tables.record
        deleted = conn.execute(
            sa.select(rec.c.deleted).where(rec.c.tbl == "plan_action", rec.c.id == action.id)
        ).scalar_one()
    assert deleted


def _pending(store: CaseStore) -> list[Any]:
    from sqlmodel import Session, select

    from sprx_tui.core.models import SyncOutbox

    with store.lock, Session(store.engine) as s:
        return list(s.exec(select(SyncOutbox).where(SyncOutbox.status == "pending")).all())


# -- offline, back-off, back online -----------------------------------------------------------------------


@contextlib.contextmanager
def server_on(db_url: str, port: int) -> Iterator[str]:
    """`sprx-server serve` on a fixed port (so it can be stopped and started again at the same address)."""
    cmd = [sys.executable, "-m", "sync.server.cli", "serve", "--db", db_url, "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, "server exited early"
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow  # starts and stops sprx-server in a subprocess
async def test_offline_backs_off_on_a_timer_then_syncs_when_the_server_returns(
    tmp_path: Path, laptops: Callable[[str], CaseStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    db_url = f"sqlite:///{tmp_path}/own-server.db"
    admin = ServerStore(db_url)
    admin.add_worker("olu", "P1")
    port = free_port()
    store = laptops("off")
    with server_on(db_url, port) as base:
        laptop_sync.enrol(store, base, admin.issue_enrol_code("olu")[0], device_name="test laptop")
    store.service.add_person(given_name="Ola", family_name="Example")
    clock = FakeMonotonic()
    fake_schedule(monkeypatch, clock)
    app = make_app(store)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app._sync is not None and app._sync.last is not None)
            controller = app._sync
            assert controller.last.status == "offline" and controller.state == "offline"
            assert "offline" in status_line(app) and "changes waiting" in status_line(app)
            waits = [controller.delays[-1]]
            for _ in range(3):
                # Not yet due: the tick does nothing, whatever is written meanwhile.
                store.service.add_person(given_name="Pat", family_name="Example")
                clock.t += waits[-1] * 0.5
                controller.tick()
                await settle(pilot)
                runs = controller.runs
                clock.t += waits[-1] * 0.5 + 0.01
                controller.tick()
                await until(pilot, lambda runs=runs: controller.runs == runs + 1 and not controller.running)
                assert controller.last.status == "offline"
                waits.append(controller.delays[-1])
            for wait, ceiling in zip(waits, (5, 10, 20, 40), strict=True):
                assert 0.8 * ceiling <= wait <= 1.2 * ceiling, waits
            assert waits == sorted(waits) and controller.backoff.failures == 4

            await pilot.press("f6")
            await settle(pilot)
            assert "Now: offline" in texts(app, "#sync-last")
            assert "could not be reached" in texts(app, "#sync-message")

            with server_on(db_url, port):
                clock.t += waits[-1] + 0.01
                runs = controller.runs
                controller.tick()
                await until(pilot, lambda: controller.runs == runs + 1 and not controller.running)
                assert controller.last.status == "synced", controller.last.message
            assert controller.backoff.failures == 0 and 48 <= controller.delays[-1] <= 72
            assert "synced at" in status_line(app) and "waiting" not in status_line(app)
            assert app.screen.view is not None and app.screen.view.pending_total == 0
    finally:
        admin.close()


# -- revoked, lock ------------------------------------------------------------------------------------------


@pytest.mark.slow  # a real uvicorn server for the module, and syncs over it
async def test_revoked_laptop_erases_itself_locks_and_says_so(
    server: Server, laptops: Callable[[str], CaseStore]
) -> None:
    store = laptops("rev")
    enrol(store, server.base, server, server.worker())
    store.service.add_person(given_name="Rae", family_name="Example")
    synced(store)
    server.admin.revoke_device(get_state(store.engine, "device_id"))
    path = store.vault.path
    app = make_app(store, auto_sync=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("f6")
        await settle(pilot)
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, RevokedScreen))
        assert app.store is None and app._sync is None
        assert "access was withdrawn by the practice" in texts(app, "#revoked-text")
        assert not Vault.exists(path)
        await pilot.press("enter")
        await settle(pilot)
        assert not isinstance(app.screen, RevokedScreen)


class SilentServer:
    """Accepts connections on a port and never answers, until closed (a sync stays in flight meanwhile)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen()
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                self.accepted.append(conn)

    def close(self) -> None:
        for conn in self.accepted:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


@pytest.mark.slow  # starts and stops sprx-server in a subprocess
async def test_lock_during_a_sync_stops_the_schedule_and_ignores_the_sync(
    tmp_path: Path, laptops: Callable[[str], CaseStore]
) -> None:
    db_url = f"sqlite:///{tmp_path}/own-server.db"
    admin = ServerStore(db_url)
    admin.add_worker("lou", "P1")
    port = free_port()
    store = laptops("lock")
    with server_on(db_url, port) as base:
        laptop_sync.enrol(store, base, admin.issue_enrol_code("lou")[0], device_name="test laptop")
    admin.close()
    store.service.add_person(given_name="Sam", family_name="Example")
    silent = SilentServer(port)
    app = make_app(store, auto_sync=False)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            controller = app._sync
            assert controller is not None and controller._timer is not None
            await pilot.press("f6")
            await settle(pilot)
            await pilot.press("s")
            await wait_until(pilot, lambda: bool(silent.accepted), 10, what="the sync to reach the server")
            assert controller.running  # waiting for an answer that does not come
            await pilot.press("ctrl+l")
            await pilot.pause()
            assert app.store is None and app._sync is None
            assert controller._timer is None and controller._store is None and not controller.running
            silent.close()  # the sync thread now fails on the network, then on the closed vault
            await settle(pilot)
            assert controller.last is None  # its result was dropped, not shown
            assert app.sync_summary.state == ""
            assert not [n for n in app._notifications if n.severity == "error"]
            controller.tick()  # a stray tick after the lock touches nothing
            assert controller.runs == 1
            assert not store.vault.is_unlocked
    finally:
        silent.close()


@pytest.mark.slow  # starts and stops sprx-server in a subprocess
async def test_never_two_syncs_at_once(tmp_path: Path, laptops: Callable[[str], CaseStore]) -> None:
    db_url = f"sqlite:///{tmp_path}/own-server.db"
    admin = ServerStore(db_url)
    admin.add_worker("tio", "P1")
    port = free_port()
    store = laptops("two")
    with server_on(db_url, port) as base:
        laptop_sync.enrol(store, base, admin.issue_enrol_code("tio")[0], device_name="test laptop")
    admin.close()
    store.service.add_person(given_name="Tam", family_name="Example")
    silent = SilentServer(port)
    app = make_app(store, auto_sync=False)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await pilot.press("f6")
            await settle(pilot)
            await pilot.press("s")
            await wait_until(pilot, lambda: bool(silent.accepted), 10, what="the sync to reach the server")
            await pilot.press("s")
            await pilot.pause()
            assert app._sync.runs == 1
            assert any(n.message == "A sync is already running." for n in app._notifications)
            # `sprx sync` or any other caller on the same vault is turned away too, at once.
            assert laptop_sync.sync_now(store).status == "busy"
            # Progress so far: the push has started (0 sent) and waits for the server's answer.
            await wait_until(pilot, lambda: "sending changes 0 of" in status_line(app), what="the push's progress")
            pending = laptop_sync.sync_status(store).pending
            assert f"syncing… sending changes 0 of {pending}" in status_line(app)
            assert app.screen.query_one("#sync-progress-row").has_class("-running")
            assert texts(app, "#sync-phase") == f"Sending changes: 0 of {pending}"
            silent.close()
            await until(pilot, lambda: app._sync.last is not None and not app._sync.running)
            assert app._sync.last.status == "offline" and app._sync.runs == 1
            assert "offline" in status_line(app)
            assert not app.screen.query_one("#sync-progress-row").has_class("-running")
    finally:
        silent.close()


def test_controller_stop_before_start_is_harmless() -> None:
    class NoApp:
        store = None
        config = Config()

    c = SyncController(NoApp())
    c.start()
    c.stop()
    c.tick()
    assert not c.sync_now() and c.runs == 0


def test_view_labels_reasons_and_times() -> None:
    assert sync_view.reason_sentence("out_of_scope") == "This person is not assigned to you or your team any more."
    assert sync_view.reason_sentence("invalid", "The laptop clock is ahead.") == "The laptop clock is ahead."
    assert sync_view.field_label("goal", "text") == "Goal"
    assert sync_view.field_label("goal", "_deleted") == "Goal"
    moment = dt.datetime(2026, 7, 1, 9, 5, tzinfo=dt.UTC)
    assert sync_view.when_text(moment, dt.date(2026, 7, 1)) == "10:05"  # British Summer Time
    assert sync_view.when_text(moment, dt.date(2026, 7, 2)) == "01 Jul 10:05"
    assert sync_view.when_text(moment, dt.date(2027, 1, 2)) == "01 Jul 2026"
