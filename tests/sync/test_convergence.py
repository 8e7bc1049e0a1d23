"""Convergence and no-loss under random edits, sync orders, faults and clock skew (sync-anchors T6/T7).

Real SQLCipher vaults, opened once per test function and wiped between examples (opening a fresh
vault per example costs more than the example itself); one in-process server, reset likewise.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test
from sqlmodel import Session, SQLModel, select

from sprx_tui.core import sync as laptop_sync
from sprx_tui.core.models import (
    Contact,
    ContactAmendment,
    Goal,
    Person,
    PlanAction,
    SyncConflict,
    SyncRejected,
)
from sprx_tui.core.queries import CaseQueries
from sprx_tui.core.service import CaseService
from sprx_tui.core.store import CaseStore, load_actor, open_store
from sprx_tui.core.vault import Vault
from sync import hlc
from sync.server import store as server_tables
from sync.server.app import create_app
from sync.server.store import ServerStore
from tests.sync.client_harness import (
    FaultTransport,
    Laptop,
    SimClock,
    VaultTemplate,
    laptop_dump,
    make_template,
    server_dump,
)

MAX_LAPTOPS = 5
EXAMPLES = int(os.environ.get("SPRX_CONVERGENCE_EXAMPLES", "200"))
"""200 in CI (about two minutes here); bench/bench_convergence.py runs thousands across seeds."""
LAP = st.integers(0, MAX_LAPTOPS - 1)

settings.register_profile(
    "sync-convergence",
    max_examples=200,
    stateful_step_count=15,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TEXTS = ["walk", "swim", "read", "cook", "paint"]
FAULTS = [None, None, None, "drop_after", "reset_after", "duplicate", "drop_before", "offline", "crash_page"]
MVR = {("goal", "text"), ("plan_action", "what")}
_AUDIT_TRIGGER = (
    "CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit_event "
    "BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END"
)


class Pool:
    """Laptop vaults and one server, built once; ``reset`` gives an empty world for each example."""

    def __init__(self, tmp: Path, template: VaultTemplate) -> None:
        self.sim = SimClock()
        self.vaults: list[Vault] = []
        for i in range(MAX_LAPTOPS):
            dest = tmp / f"lap{i}"
            shutil.copytree(template.path, dest)
            vault = Vault(dest)
            vault.unlock_with_recovery(template.recovery)
            open_store(vault)  # migrations, once
            self.vaults.append(vault)
        self.server = ServerStore(f"sqlite:///{tmp}/server.db", now_ms=self.sim.ms)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from fastapi.testclient import TestClient
        self.client = TestClient(create_app(self.server), base_url="http://testserver")
        self.client.__enter__()

    def close(self) -> None:
        self.client.__exit__(None, None, None)
        self.server.close()
        for v in self.vaults:
            v.lock()

    def reset(self, n: int) -> list[Laptop]:
        self.sim.now = dt.datetime(2026, 1, 5, 10, 0, tzinfo=dt.UTC)
        with self.server.engine.begin() as conn:
            for t in reversed(server_tables.md.sorted_tables):
                conn.execute(t.delete())
            conn.execute(
                server_tables.server_meta.insert().values(id=1, epoch="e0", tombstone_watermark=0, seq=0, hlc=0)
            )
        self.server.clock = hlc.HybridClock(self.sim.ms, last=0)
        self.server.add_worker("alice", "P1")
        laptops = []
        for i in range(n):
            store = self._wipe(self.vaults[i])
            lap = Laptop(f"L{i}", store, FaultTransport(self.client._transport), self.sim.laptop(), "alice")
            store.service.clock = lap.clock
            store.queries.clock = lap.clock
            code, _ = self.server.issue_enrol_code("alice")
            laptop_sync.enrol(store, "http://testserver", code, transport=lap.transport, device_name=lap.name)
            laptops.append(lap)
        return laptops

    def _wipe(self, vault: Vault) -> CaseStore:
        engine = vault.engine
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_no_delete")
            for t in reversed(SQLModel.metadata.sorted_tables):
                conn.execute(t.delete())
            conn.exec_driver_sql("DELETE FROM sqlite_sequence")
            conn.exec_driver_sql(_AUDIT_TRIGGER)
            # The outbox's pending counter is one row the migration made: the outbox is empty now, so zero.
            conn.exec_driver_sql("INSERT INTO sync_outbox_pending (id, n) VALUES (1, 0)")
        actor = load_actor(engine)
        import threading

        lock = threading.RLock()
        return CaseStore(vault, engine, actor, CaseService(engine, actor, lock=lock), CaseQueries(engine, lock=lock),
                         lock)  # fmt: skip


@dataclass
class Oracle:
    """Every narrative value ever written, and whether its writer had seen it replaced."""

    live: set[tuple[str, str, str, str]] = field(default_factory=set)
    contacts: set[str] = field(default_factory=set)
    amendments: set[str] = field(default_factory=set)

    def wrote(self, tbl: str, row: str, fld: str, value: str) -> None:
        self.live.add((tbl, row, fld, value))

    def saw(self, tbl: str, row: str, fld: str, values: list[Any]) -> None:
        # A value the writer could see when it wrote over it is replaced knowingly, not lost.
        for v in values:
            self.live.discard((tbl, row, fld, v))


def _ids(lap: Laptop, model: Any, **where: Any) -> list[str]:
    with Session(lap.store.engine) as s:
        q = select(model.id).where(model.deleted == False)  # noqa: E712
        for k, v in where.items():
            q = q.where(getattr(model, k) == v)
        return sorted(s.exec(q).all())


def _pick(items: list[str], i: int) -> str | None:
    return items[i % len(items)] if items else None


class SyncMachine(RuleBasedStateMachine):
    pool: Pool

    def __init__(self) -> None:
        super().__init__()
        self.laps: list[Laptop] = []
        self.oracle = Oracle()

    @initialize(n=st.integers(2, MAX_LAPTOPS))
    def setup(self, n: int) -> None:
        self.laps = self.pool.reset(n)
        a = self.laps[0]
        p = a.service.add_person(given_name="Ann", family_name="Example")
        g = a.service.add_goal(p.id, "walk")
        act = a.service.add_action(g.id, "read")
        c = a.service.record_contact(p.id, mode="phone", notes="first")
        self.oracle.wrote("goal", g.id, "text", "walk")
        self.oracle.wrote("plan_action", act.id, "what", "read")
        self.oracle.contacts.add(c.id)
        for lap in self.laps:
            assert lap.sync().status == "synced"

    def lap(self, i: int) -> Laptop:
        return self.laps[i % len(self.laps)]

    def _known(self, lap: Laptop, tbl: str, row_id: str, fld: str) -> list[Any]:
        row = lap.get(tbl, row_id)
        out = [getattr(row, fld)] if row is not None else []
        for c in lap.conflicts():
            if c.tbl == tbl and c.row_id == row_id and c.field == fld:
                out += [v["v"] for v in c.values_json]
        return out

    def _changes(self, lap: Laptop, tbl: str, row_id: str, fld: str, value: str) -> bool:
        """Whether saving ``value`` writes anything: saving the text already shown commits no change
        (the service writes no outbox row), so it neither replaces nor re-commits a value."""
        row = lap.get(tbl, row_id)
        return row is not None and getattr(row, fld) != value

    # -- edits --

    @rule(i=LAP)
    def create_person(self, i: int) -> None:
        self.lap(i).service.add_person(given_name="Bo", family_name="Example")

    @rule(i=LAP, k=st.integers(0, 99), text=st.sampled_from(TEXTS))
    def add_goal(self, i: int, k: int, text: str) -> None:
        lap = self.lap(i)
        pid = _pick(_ids(lap, Person), k)
        if pid:
            g = lap.service.add_goal(pid, text)
            self.oracle.wrote("goal", g.id, "text", text)

    @rule(i=LAP, k=st.integers(0, 99), text=st.sampled_from(TEXTS))
    def edit_goal_text(self, i: int, k: int, text: str) -> None:
        lap = self.lap(i)
        gid = _pick(_ids(lap, Goal), k)
        if not gid:
            return
        if self._changes(lap, "goal", gid, "text", text):
            self.oracle.saw("goal", gid, "text", self._known(lap, "goal", gid, "text"))
            self.oracle.wrote("goal", gid, "text", text)
        lap.service.update_goal(gid, text=text)

    @rule(i=LAP, k=st.integers(0, 99), status=st.sampled_from(["in_progress", "achieved", "dropped"]))
    def set_goal_status(self, i: int, k: int, status: str) -> None:
        lap = self.lap(i)
        gid = _pick(_ids(lap, Goal), k)
        if gid:
            lap.service.update_goal(gid, status=status)

    @rule(i=LAP, k=st.integers(0, 99), text=st.sampled_from(TEXTS))
    def add_action(self, i: int, k: int, text: str) -> None:
        lap = self.lap(i)
        gid = _pick(_ids(lap, Goal), k)
        if gid:
            act = lap.service.add_action(gid, text)
            self.oracle.wrote("plan_action", act.id, "what", text)

    @rule(i=LAP, k=st.integers(0, 99), text=st.sampled_from(TEXTS))
    def edit_action(self, i: int, k: int, text: str) -> None:
        lap = self.lap(i)
        aid = _pick(_ids(lap, PlanAction), k)
        if not aid:
            return
        if self._changes(lap, "plan_action", aid, "what", text):
            self.oracle.saw("plan_action", aid, "what", self._known(lap, "plan_action", aid, "what"))
            self.oracle.wrote("plan_action", aid, "what", text)
        lap.service.update_action(aid, what=text)

    @rule(i=LAP, k=st.integers(0, 99))
    def delete_action(self, i: int, k: int) -> None:
        lap = self.lap(i)
        aid = _pick(_ids(lap, PlanAction), k)
        if aid:
            self.oracle.saw("plan_action", aid, "what", self._known(lap, "plan_action", aid, "what"))
            lap.service.delete_action(aid)

    @rule(i=LAP, k=st.integers(0, 99))
    def record_contact(self, i: int, k: int) -> None:
        lap = self.lap(i)
        pid = _pick(_ids(lap, Person), k)
        if pid:
            self.oracle.contacts.add(lap.service.record_contact(pid, mode="phone", notes=f"by {lap.name}").id)

    @rule(i=LAP, k=st.integers(0, 99), text=st.sampled_from(TEXTS))
    def amend_contact(self, i: int, k: int, text: str) -> None:
        lap = self.lap(i)
        cid = _pick(_ids(lap, Contact), k)
        if cid:
            self.oracle.amendments.add(lap.service.amend_contact(cid, text).id)

    @rule(i=LAP, k=st.integers(0, 99), choice=st.integers(0, 3))
    def resolve(self, i: int, k: int, choice: int) -> None:
        lap = self.lap(i)
        conflicts = sorted(lap.conflicts(), key=lambda c: c.id)
        if not conflicts:
            return
        c = conflicts[k % len(conflicts)]
        if c.kind == "delete_vs_edit":
            if choice % 2 == 0:  # confirm the delete: the values on screen are replaced knowingly
                for fld in ("what",):
                    self.oracle.saw(c.tbl, c.row_id, fld, self._known(lap, c.tbl, c.row_id, fld))
            laptop_sync.resolve_conflict(lap.store, c.id, choice % 2 == 0)
            return
        values = [v["v"] for v in c.values_json]
        chosen = values[choice % len(values)] if choice < 3 else " + ".join(sorted(values))
        self.oracle.saw(c.tbl, c.row_id, c.field, self._known(lap, c.tbl, c.row_id, c.field))
        laptop_sync.resolve_conflict(lap.store, c.id, chosen)
        self.oracle.wrote(c.tbl, c.row_id, c.field, chosen)

    # -- sync, faults, clocks --

    @rule(i=LAP, fault=st.sampled_from(FAULTS), at=st.integers(1, 6))
    def sync(self, i: int, fault: str | None, at: int) -> None:
        lap = self.lap(i)
        local = laptop_sync.VaultSyncAdapter(lap.store)
        if fault == "offline":
            lap.transport.refused = lambda: True
        elif fault == "crash_page":

            def boom(n: int) -> None:
                if n == at:
                    raise RuntimeError("crash while applying a page")

            local.fail_in_page = boom
        elif fault is not None:
            lap.transport.fail(fault, "/v1/sync/push" if at % 2 else "/v1/sync/", times=1 + at % 2)
        try:
            r = lap.sync(local=local)
        finally:
            lap.transport.refused = lambda: False
            lap.transport.faults.clear()
        assert r.status in ("synced", "conflicts", "offline", "failed"), r.message
        if fault is None:
            assert r.status in ("synced", "conflicts"), r.message

    @rule(seconds=st.integers(1, 120), i=LAP, skew=st.integers(-240, 240))
    def time_passes(self, seconds: int, i: int, skew: int) -> None:
        self.pool.sim.advance(seconds=seconds)
        self.lap(i).clock.skew = dt.timedelta(seconds=skew)  # within the server's 5 minute limit

    # -- quiescence --

    def teardown(self) -> None:
        if not self.laps:
            return
        for _round in range(2):
            for lap in self.laps:
                r = lap.sync()
                assert r.status in ("synced", "conflicts"), r.message
        for lap in self.laps:
            assert not lap.outbox("pending"), lap.name
            # The counter the status bar and the Sync screen read agrees with the outbox it counts.
            pending = len(lap.outbox("pending", held=True))
            assert laptop_sync.VaultSyncAdapter(lap.store).pending_count() == pending, lap.name
        expected = server_dump(_ServerView(self.pool), "alice")
        for lap in self.laps:
            assert laptop_dump(lap.store) == expected, f"{lap.name} differs from the server"
        self._no_loss()

    def _no_loss(self) -> None:
        st_ = self.pool.server
        rec, conf = server_tables.record, server_tables.conflict
        with st_.engine.connect() as conn:
            current = {(r.tbl, r.id): json.loads(r.values) for r in conn.execute(sa.select(rec))}
            in_conflicts = {
                (c.tbl, c.row_id, c.field, json.dumps(v["v"]))
                for c in conn.execute(sa.select(conf))
                for v in json.loads(c.values)
            }
        rejected: set[tuple[str, str, str, str]] = set()
        for lap in self.laps:
            with Session(lap.store.engine) as s:
                for r in s.exec(select(SyncRejected)).all():
                    for f, fc in (r.payload.get("fields") or {}).items():
                        rejected.add((r.tbl, r.row_id, f, json.dumps(fc.get("v"))))
        for tbl, row, fld, v in sorted(self.oracle.live):
            key = (tbl, row, fld, json.dumps(v))
            here = current.get((tbl, row), {}).get(fld) == v
            assert here or key in in_conflicts or key in rejected, f"value lost: {tbl}.{fld} of {row}: {v!r}"
        for cid in self.oracle.contacts:
            assert ("contact", cid) in current, "contact lost"
        for aid in self.oracle.amendments:
            assert ("contact_amendment", aid) in current, "amendment lost"
        for lap in self.laps:
            with Session(lap.store.engine) as s:
                assert {c for c in s.exec(select(Contact.id)).all()} >= self.oracle.contacts
                assert {a for a in s.exec(select(ContactAmendment.id)).all()} >= self.oracle.amendments


@dataclass
class _ServerView:
    """What server_dump needs from a TestServer."""

    pool: Pool

    @property
    def store(self) -> ServerStore:
        return self.pool.server


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    tmp = tmp_path_factory.mktemp("convergence")
    p = Pool(tmp, make_template(tmp / "tpl"))
    yield p
    p.close()


@pytest.mark.slow
def test_laptops_and_server_converge_without_losing_anything(pool: Pool) -> None:
    SyncMachine.pool = pool
    run_state_machine_as_test(
        SyncMachine,
        settings=settings(settings.get_profile("sync-convergence"), max_examples=EXAMPLES),
    )


def test_conflict_row_values_are_kept_in_sync_conflict(pool: Pool) -> None:
    """A quick deterministic run of the machine's own path: two laptops, one conflict, then quiescence."""
    m = SyncMachine.__new__(SyncMachine)
    SyncMachine.pool = pool
    SyncMachine.__init__(m)
    m.setup(2)
    gid = _ids(m.laps[0], Goal)[0]
    m.edit_goal_text(0, 0, "swim")
    m.edit_goal_text(1, 0, "cook")
    m.sync(0, None, 1)
    m.sync(1, None, 1)
    m.teardown()
    cs = m.laps[0].conflicts()
    assert len(cs) == 1 and cs[0].row_id == gid
    with Session(m.laps[1].store.engine) as s:
        assert s.exec(select(SyncConflict)).all()[0].values_json == cs[0].values_json


def test_an_equal_value_typed_on_two_laptops_survives_when_one_of_them_edits_again(pool: Pool) -> None:
    """The case the machine found: two laptops save the same goal text offline, one edits it again.

    The server used to fold the two equal writes into one head credited to the later laptop, whose
    next edit then replaced it as its own older write, and the other laptop's value was lost.
    """
    m = SyncMachine.__new__(SyncMachine)
    SyncMachine.pool = pool
    SyncMachine.__init__(m)
    m.setup(3)
    gid = _ids(m.laps[0], Goal)[0]
    m.edit_goal_text(1, 0, "cook")
    m.edit_goal_text(2, 0, "swim")
    m.edit_goal_text(1, 0, "paint")
    m.edit_goal_text(0, 0, "cook")
    m.edit_goal_text(1, 0, "read")
    m.teardown()  # syncs L0, L1, L2 in turn, checks convergence and that no value was lost
    (c,) = m.laps[0].conflicts()
    assert c.row_id == gid and sorted(v["v"] for v in c.values_json) == ["cook", "read", "swim"]
