"""Harness for the client sync tests: laptops on real SQLCipher vaults, an in-process server, injected faults."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from sprx_tui.core import sync as laptop_sync
from sprx_tui.core.models import SYNCED_MODELS, SyncConflict, SyncOutbox
from sprx_tui.core.store import CaseStore, open_store
from sprx_tui.core.vault import FLOOR, Vault
from sprx_tui.core.wire import row_values
from sync.client import HELD_ACTIONS
from sync.protocol import EXCHANGE_PATH
from sync.schema import TABLES
from sync.server import store as server_tables
from tests.shared_build import built_once
from tests.sync.server_harness import TestServer

PASSPHRASE = "walking group on tuesday"
START = dt.datetime(2026, 1, 5, 10, 0, tzinfo=dt.UTC)


class SimClock:
    """One wall clock for the server and every laptop; a laptop may run skewed from it."""

    def __init__(self, start: dt.datetime = START) -> None:
        self.now = start

    def ms(self) -> int:
        return int(self.now.timestamp() * 1000)

    def advance(self, **delta: float) -> None:
        self.now = self.now + dt.timedelta(**delta)

    def laptop(self, skew: dt.timedelta | None = None) -> LaptopClock:
        return LaptopClock(self, skew or dt.timedelta(0))


@dataclass
class LaptopClock:
    sim: SimClock
    skew: dt.timedelta

    def __call__(self) -> dt.datetime:
        return self.sim.now + self.skew


class FaultTransport(httpx.BaseTransport):
    """Wraps the in-process transport: drop a request before it is sent, drop the answer after the
    server committed, send a request twice, or raise inside the exchange; counts what went through."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.faults: list[tuple[str, str]] = []  # (path prefix, kind), consumed in order
        self.sent: list[tuple[str, str]] = []  # (method, path) that reached the server
        self.refused: Callable[[], bool] = lambda: False  # e.g. lambda: True = network down
        self.absent: set[str] = set()
        """Paths answered 404 as a server from before them would (e.g. ``protocol.EXCHANGE_PATH``)."""

    def fail(self, kind: str, path: str = "/v1/", times: int = 1) -> None:
        self.faults += [(path, kind)] * times

    def _take(self, path: str) -> str | None:
        for i, (prefix, kind) in enumerate(self.faults):
            if path.startswith(prefix):
                del self.faults[i]
                return kind
        return None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if self.refused():
            raise httpx.ConnectError("injected: network down", request=request)
        if path in self.absent:
            self.sent.append((request.method, path))
            return httpx.Response(404, json={"error": "not_found", "message": "There is nothing at that address."})
        kind = self._take(path)
        if kind == "drop_before":
            raise httpx.ConnectError("injected: connection refused", request=request)
        self.sent.append((request.method, path))
        if kind == "drop_after":
            self.inner.handle_request(request).read()
            raise httpx.ReadTimeout("injected: answer lost", request=request)
        if kind == "reset_after":
            self.inner.handle_request(request).read()
            raise httpx.RemoteProtocolError("injected: connection reset", request=request)
        if kind == "duplicate":
            self.inner.handle_request(request).read()
            self.sent.append((request.method, path))
        return self.inner.handle_request(request)

    def count(self, *paths: str) -> int:
        """Requests that reached the server at any of these paths."""
        return sum(1 for _m, p in self.sent if p in paths)

    def old_server(self) -> None:
        """Answer as a server without the one-request exchange: 404 there, so push and pull go separately."""
        self.absent.add(EXCHANGE_PATH)


def is_held_event(r: SyncOutbox) -> bool:
    """An audit event a sync records about itself (sent with the next request, see sync.client.HELD_ACTIONS)."""
    action = (r.fields or {}).get("action")
    return r.tbl == "audit_event" and isinstance(action, dict) and action.get("v") in HELD_ACTIONS


@dataclass
class Laptop:
    name: str
    store: CaseStore
    transport: FaultTransport
    clock: LaptopClock
    worker: str
    page: int = 1000

    @property
    def service(self) -> Any:
        return self.store.service

    @property
    def queries(self) -> Any:
        return self.store.queries

    def sync(self, **kw: Any) -> laptop_sync.SyncResult:
        kw.setdefault("page", self.page)
        return laptop_sync.sync_now(self.store, transport=self.transport, sleep=lambda _s: None, **kw)

    def outbox(self, status: str | None = None, *, held: bool = False) -> list[SyncOutbox]:
        """Outbox rows (of a status). ``outbox("pending")`` is the work still to send: the audit events a
        sync records about itself, which wait for the next request (`sync.client.HELD_ACTIONS`), are not
        in it unless ``held=True``; ``held_events()`` lists them."""
        with Session(self.store.engine) as s:
            q = select(SyncOutbox)
            if status:
                q = q.where(SyncOutbox.status == status)
            rows = list(s.exec(q.order_by(SyncOutbox.mutation_id)).all())
        if status == "pending" and not held:
            rows = [r for r in rows if not is_held_event(r)]
        return rows

    def numbered(self) -> int:
        """Outbox rows sent or to be sent now: every mutation id the server should hold after a sync."""
        return len(self.outbox()) - len(self.held_events())

    def held_events(self) -> list[SyncOutbox]:
        """Pending audit events about syncs (bookkeeping held for the next request)."""
        return [r for r in self.outbox("pending", held=True) if is_held_event(r)]

    def get(self, tbl: str, row_id: str) -> Any:
        with Session(self.store.engine, expire_on_commit=False) as s:
            return s.get(SYNCED_MODELS[tbl], row_id)

    def conflicts(self, status: str = "open") -> list[SyncConflict]:
        with Session(self.store.engine) as s:
            return list(s.exec(select(SyncConflict).where(SyncConflict.status == status)).all())

    def dump(self) -> str:
        return laptop_dump(self.store)


@dataclass
class VaultTemplate:
    path: Path
    recovery: str


class Net:
    """One in-process server and any number of laptops enrolled with it."""

    def __init__(self, tmp: Path, template: VaultTemplate, clock: SimClock | None = None, **app_kw: Any) -> None:
        self.tmp = tmp
        self.template = template
        self.clock = clock or SimClock()
        self.db_url = f"sqlite:///{tmp}/server.db"
        self.server = TestServer(self.db_url, clock=self.clock.ms, **app_kw)
        # Entered, the TestClient keeps one event-loop thread instead of starting one per request.
        self.server.client.__enter__()
        self.laptops: list[Laptop] = []
        self.workers: set[str] = set()

    @property
    def inner(self) -> httpx.BaseTransport:
        return self.server.client._transport  # the ASGI app in-process, no sockets

    def worker(self, name: str, team: str | None = None) -> str:
        if name not in self.workers:
            self.server.worker(name, team_id=team)
            self.workers.add(name)
        return name

    def open_vault(self, name: str, skew: dt.timedelta | None = None) -> tuple[CaseStore, LaptopClock]:
        dest = self.tmp / name
        shutil.copytree(self.template.path, dest)
        vault = Vault(dest)
        # The recovery slot unwraps without Argon2, which keeps each laptop cheap to open.
        vault.unlock_with_recovery(self.template.recovery)
        clock = self.clock.laptop(skew)
        return open_store(vault, clock=clock), clock

    def laptop(self, name: str, worker: str = "alice", *, skew: dt.timedelta | None = None,
               enrol: bool = True) -> Laptop:  # fmt: skip
        self.worker(worker)
        store, clock = self.open_vault(name, skew)
        lap = Laptop(name, store, FaultTransport(self.inner), clock, worker)
        if enrol:
            self.enrol(lap)
        self.laptops.append(lap)
        return lap

    def enrol(self, lap: Laptop) -> None:
        code, _ = self.server.store.issue_enrol_code(lap.worker)
        laptop_sync.enrol(lap.store, "http://testserver", code, transport=lap.transport, device_name=lap.name)

    def server_dump(self, worker: str) -> str:
        return server_dump(self.server, worker)

    def close(self) -> None:
        for lap in self.laptops:
            if lap.store.vault.is_unlocked:
                lap.store.vault.lock()
        self.server.client.__exit__(None, None, None)
        self.server.close()


# ---------------------------------------------------------------- canonical dumps


def _canon(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def laptop_dump(store: CaseStore) -> str:
    """Live synced rows (every synced field, wire form) and open conflicts, as sorted JSON."""
    rows = []
    with Session(store.engine) as s:
        for tbl, model in sorted(SYNCED_MODELS.items()):
            spec = TABLES[tbl]
            for r in s.exec(select(model).where(model.deleted == False)).all():  # noqa: E712
                rows.append({"tbl": tbl, "id": r.id, "person_id": r.person_id, "values": row_values(r, spec)})
        conflicts = [
            {
                "id": c.id,
                "tbl": c.tbl,
                "row_id": c.row_id,
                "field": c.field,
                "kind": c.kind,
                "values": c.values_json,
                "shown_idx": c.shown_idx,
            }  # fmt: skip
            for c in s.exec(select(SyncConflict).where(SyncConflict.status == "open")).all()
        ]
    rows.sort(key=lambda r: (r["tbl"], r["id"]))
    conflicts.sort(key=lambda c: c["id"])
    return _canon({"rows": rows, "conflicts": conflicts})


def server_dump(server: TestServer, worker: str) -> str:
    """The same shape from the server, for the people in one worker's scope."""
    st = server.store
    rec, conf, asg = server_tables.record, server_tables.conflict, server_tables.assignment
    with st.engine.connect() as conn:
        scope = {r.person_id for r in conn.execute(sa.select(asg.c.person_id).where(asg.c.worker_id == worker))}
        rows = []
        for r in conn.execute(sa.select(rec).where(rec.c.deleted.is_(False), rec.c.tbl.in_(list(SYNCED_MODELS)))):
            if r.person_id not in scope:
                continue
            values = json.loads(r.values)
            spec = TABLES[r.tbl]
            rows.append({"tbl": r.tbl, "id": r.id, "person_id": r.person_id,
                         "values": {f: values.get(f) for f in spec.fields}})  # fmt: skip
        conflicts = [
            {
                "id": c.id,
                "tbl": c.tbl,
                "row_id": c.row_id,
                "field": c.field,
                "kind": c.kind,
                "values": json.loads(c.values),
                "shown_idx": c.shown_idx,
            }  # fmt: skip
            for c in conn.execute(sa.select(conf).where(conf.c.status == "open"))
            if c.person_id in scope
        ]
    rows.sort(key=lambda r: (r["tbl"], r["id"]))
    conflicts.sort(key=lambda c: c["id"])
    return _canon({"rows": rows, "conflicts": conflicts})


def server_count(server: TestServer, table: str, **where: Any) -> int:
    t = server_tables.md.tables[table]
    with server.store.engine.connect() as conn:
        q = sa.select(sa.func.count()).select_from(t)
        for k, v in where.items():
            q = q.where(t.c[k] == v)
        return int(conn.execute(q).scalar_one())


# ---------------------------------------------------------------- fixtures


def make_template(path: Path) -> VaultTemplate:
    vault, recovery = Vault.create(path, bytearray(PASSPHRASE.encode()), kdf=FLOOR)
    open_store(vault)
    vault.lock()
    return VaultTemplate(path, recovery)


@pytest.fixture(scope="session")
def vault_template(tmp_path_factory: pytest.TempPathFactory) -> VaultTemplate:
    """An empty migrated vault, made once per test run (Argon2 at the floor; `built_once`), copied per laptop."""
    folder, facts = built_once(
        tmp_path_factory, "sync-empty-vault", lambda f: {"recovery": make_template(f / "vault").recovery}
    )
    return VaultTemplate(folder / "vault", facts["recovery"])


@pytest.fixture
def net(vault_template: VaultTemplate, tmp_path: Path) -> Iterator[Net]:
    n = Net(tmp_path, vault_template)
    yield n
    n.close()


@dataclass
class Recorder:
    """Progress callback that remembers what it was told."""

    calls: list[tuple[str, int, int | None]] = field(default_factory=list)

    def __call__(self, phase: str, done: int, total: int | None) -> None:
        self.calls.append((phase, done, total))


def test_harness_dumps_match_after_a_plain_sync(net: Net) -> None:
    a = net.laptop("A")
    p = a.service.add_person(given_name="Ann", family_name="Example")
    a.service.add_goal(p.id, "Walk to the shop")
    assert a.sync().status == "synced"
    assert a.sync().status == "synced"
    assert a.dump() == net.server_dump("alice")
    assert '"Walk to the shop"' in a.dump()
