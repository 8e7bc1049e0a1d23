"""The everyday sync in one request (protocol.EXCHANGE_PATH): push and pull together, the sync's own audit
event held for the next request, and a server from before the exchange still syncing (issue 14)."""

# ruff: noqa: F811 - pytest fixtures imported from the harness are redefined as parameters
from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from sprx_tui.core import sync as laptop_sync
from sprx_tui.core.store import get_state, open_store
from sprx_tui.core.sync.view import load_sync_view
from sprx_tui.core.vault import Vault
from sync import client as sc
from sync import protocol, schema
from sync.server import store as st
from sync.server.limits import KIB, Limits
from sync.server.store import ServerStore
from tests.sync.client_harness import (  # noqa: F401 - fixtures
    Laptop,
    Net,
    VaultTemplate,
    net,
    server_count,
    vault_template,
)
from tests.sync.server_harness import TestServer, uvicorn_server

SYNC_PATHS = ("/v1/sync/push", "/v1/sync/pull", "/v1/sync/snapshot", protocol.EXCHANGE_PATH)


def requests_of(lap: Laptop, fn) -> list[tuple[str, str]]:  # noqa: ANN001
    """The sync requests ``fn()`` made (method, path)."""
    before = len(lap.transport.sent)
    fn()
    return [x for x in lap.transport.sent[before:] if x[1] in SYNC_PATHS]


def ok(lap: Laptop) -> laptop_sync.SyncResult:
    r = lap.sync()
    assert r.status == "synced", r.message
    return r


@pytest.fixture
def pair(net: Net) -> tuple[Laptop, Laptop, list[str]]:
    """Two laptops of one worker, both following the feed, with ten people between them."""
    a, b = net.laptop("A"), net.laptop("B")
    with a.service.transaction():
        people = [a.service.add_person(given_name=f"P{i}", family_name="Example").id for i in range(10)]
    ok(a), ok(b), ok(a)
    return a, b, people


def contacts(lap: Laptop, people: list[str], note: str) -> None:
    with lap.service.transaction():
        for pid in people:
            lap.service.record_contact(pid, mode="phone", notes=note)


def test_a_no_op_sync_is_one_request_that_writes_nothing(pair: tuple[Laptop, Laptop, list[str]]) -> None:
    a, b, _ = pair
    ok(b)
    for _ in range(3):
        assert requests_of(b, lambda: ok(b)) == [("POST", protocol.EXCHANGE_PATH)]
    assert ok(b).report.requests == 1


def test_ten_changes_from_another_laptop_arrive_in_one_request(pair: tuple[Laptop, Laptop, list[str]]) -> None:
    a, b, people = pair
    ok(b)
    contacts(a, people, "Walked to the allotment")
    ok(a)
    got: list[laptop_sync.SyncResult] = []
    held = len(b.held_events())
    assert requests_of(b, lambda: got.append(ok(b))) == [("POST", protocol.EXCHANGE_PATH)]
    assert got[0].pulled >= 10 and "received 10 updates" in got[0].message
    # The sync's own audit event is kept for the next request; it is not a change waiting to be sent.
    assert len(b.held_events()) == held + 1 and got[0].pending == 0
    # Written with the page it describes (one transaction), saying what the sync moved.
    assert b.held_events()[-1].fields["detail"]["v"] == "sent=0 rejected=0 received=10"
    assert laptop_sync.sync_status(b.store).pending == 0
    view = load_sync_view(b.store)
    assert (view.pending_total, view.pending_groups) == (0, [])  # nothing listed as waiting on the Sync screen
    assert b.dump() == a.dump() == b.dump()


def test_local_changes_and_the_feed_go_in_one_request(net: Net, pair: tuple[Laptop, Laptop, list[str]]) -> None:
    a, b, people = pair
    ok(b)
    contacts(a, people[:5], "From A")
    ok(a)
    contacts(b, people[5:], "From B")
    got: list[laptop_sync.SyncResult] = []
    assert requests_of(b, lambda: got.append(ok(b))) == [("POST", protocol.EXCHANGE_PATH)]
    r = got[0]
    assert r.acked - r.report.bookkeeping == 5 and not b.outbox("pending")
    dev = get_state(b.store.engine, "device_id")
    assert server_count(net.server, "applied_mutation", device_id=dev) == b.numbered()
    ok(a)
    assert a.dump() == b.dump()


def test_held_audit_event_rides_the_next_change_and_sending_it_records_no_new_one(
    net: Net, pair: tuple[Laptop, Laptop, list[str]]
) -> None:
    a, b, people = pair
    ok(b)
    contacts(a, people, "one")
    ok(a)
    ok(b)
    held = b.held_events()
    assert held
    # A no-op sync leaves them held (no request of its own, no new event).
    assert ok(b).report.pushed == 0 and b.held_events() == held
    # With a change of its own the laptop sends them along, in the same one request.
    contacts(b, people[:1], "two")
    r = ok(b)
    assert r.report.requests == 1 and r.report.acked == r.report.pushed and r.report.pushed - r.report.bookkeeping == 1
    assert {e.mutation_id for e in held} <= {o.mutation_id for o in b.outbox("acked")}
    assert not b.outbox("pending") and len(b.held_events()) == 1  # this sync's own event, held in turn
    # Left alone past sc.HOLD_MS, it goes by itself, and sending only bookkeeping records no new event.
    net.clock.advance(milliseconds=sc.HOLD_MS + 1000)
    r = ok(b)
    assert (r.report.pushed, r.report.bookkeeping, r.report.requests) == (1, 1, 1)  # that one event
    assert not b.outbox("pending", held=True)
    assert ok(b).report.pushed == 0 and not b.outbox("pending", held=True)
    dev = get_state(b.store.engine, "device_id")
    assert server_count(net.server, "applied_mutation", device_id=dev) == len(b.outbox())


def test_a_server_without_the_exchange_still_syncs_with_push_and_pull(net: Net) -> None:
    a, b = net.laptop("A"), net.laptop("B")
    a.transport.old_server()
    b.transport.old_server()
    with a.service.transaction():
        people = [a.service.add_person(given_name=f"P{i}", family_name="Example").id for i in range(10)]
    ok(a), ok(b), ok(a)
    contacts(a, people, "From A")
    contacts(b, people[:3], "From B")
    ok(a), ok(b), ok(a)
    assert a.dump() == b.dump() == net.server_dump("alice")
    assert not a.outbox("pending") and not b.outbox("pending")
    sent = {p for _m, p in a.transport.sent + b.transport.sent}
    assert {"/v1/sync/push", "/v1/sync/pull"} <= sent
    assert server_count(net.server, "record", tbl="contact") == 13


def test_the_laptop_remembers_a_server_without_the_exchange(net: Net) -> None:
    a = net.laptop("A")
    ok(a)
    a.transport.old_server()
    t = sc.Transport("http://testserver", token=get_state(a.store.engine, "device_token"), transport=a.transport)
    eng = sc.SyncEngine(laptop_sync.VaultSyncAdapter(a.store), t, get_state(a.store.engine, "device_id"))
    eng.run()
    eng2 = sc.SyncEngine(laptop_sync.VaultSyncAdapter(a.store), t, get_state(a.store.engine, "device_id"))
    before = a.transport.count(protocol.EXCHANGE_PATH)
    eng2.run()
    assert a.transport.count(protocol.EXCHANGE_PATH) == before  # asked once, not at every sync
    assert eng2.report.requests == 1  # the pull alone: nothing to push


def test_an_exchange_over_the_push_size_limit_is_sent_again_in_smaller_pushes(
    tmp_path: Path, vault_template: VaultTemplate
) -> None:
    """The exchange is bounded as a push is (413 before a byte is read); the laptop falls back to pushes of
    halving size, so nothing is refused for being sent together."""
    n = Net(
        tmp_path, vault_template, limits=Limits(body_paths={"/v1/devices/enrol": 64 * KIB, "/v1/sync/push": 16 * KIB})
    )
    try:
        lap = n.laptop("A")
        ok(lap)
        with lap.service.transaction():
            for i in range(40):
                p = lap.service.add_person(given_name=f"Person{i}", family_name="Example")
                lap.service.record_contact(p.id, mode="phone", notes="n" * 400)
        ok(lap)
        assert not lap.outbox("pending")
        assert lap.transport.count(protocol.EXCHANGE_PATH) >= 1 and lap.transport.count("/v1/sync/push") > 2
        assert lap.dump() == n.server_dump("alice")
    finally:
        n.close()


# ---------------------------------------------------------------- the server's side of the exchange


def exchange_body(lap, mutations: list, cursor: int = 0, **kw) -> dict:  # noqa: ANN001
    return {"device_id": lap.device_id, "protocol_version": protocol.PROTOCOL_VERSION,
            "schema_version": schema.SCHEMA_VERSION, "mutations": mutations, "cursor": cursor, **kw}  # fmt: skip


@pytest.fixture
def server(tmp_path: Path) -> Iterator[TestServer]:
    s = TestServer(f"sqlite:///{tmp_path}/server.db")
    s.worker("alice")
    yield s
    s.close()


def test_the_exchange_answers_as_push_then_pull(server: TestServer) -> None:
    lap = server.laptop("alice")
    pid = "0190c5a0-0000-7000-8000-000000000001"
    m = lap.mutation("person", pid, "insert", {"given_name": "Ann", "family_name": "Example"}, person_id=pid)
    r = server.client.post(protocol.EXCHANGE_PATH, json=exchange_body(lap, [m]), headers=lap.headers)
    assert r.status_code == 200, r.text
    body = protocol.ExchangeResponse.model_validate(r.json())
    assert body.push is not None and [a.status for a in body.push.acks] == ["applied"]
    assert [c.id for c in body.pull.changes] == [pid] and body.pull.last_acked_mutation_id == 1
    # Sent again (an answer lost): a duplicate of itself, applied once.
    again = server.client.post(protocol.EXCHANGE_PATH, json=exchange_body(lap, [m]), headers=lap.headers).json()
    assert again["push"]["acks"][0]["status"] == "duplicate"
    assert server.store.count("applied_mutation") == 1
    # Nothing to push: no push part; at the feed's tip, an empty page answered from the cursor.
    tip = body.pull.next_cursor
    idle = server.client.post(protocol.EXCHANGE_PATH, json=exchange_body(lap, [], tip), headers=lap.headers).json()
    assert idle["push"] is None and idle["pull"]["changes"] == [] and idle["pull"]["next_cursor"] == tip
    # The device's pull position was written with the push, as a pull would.
    with server.store.engine.connect() as c:
        assert c.execute(sa.select(st.device.c.last_pull_seq)).scalar() == tip


def test_the_exchange_keeps_the_push_checks(server: TestServer) -> None:
    lap = server.laptop("alice")
    other = server.laptop("alice", "other")
    m = lap.mutation("person", "0190c5a0-0000-7000-8000-000000000002", "insert", {"given_name": "Bo"})
    m["mutation_id"] = 3  # 1 and 2 never sent
    r = server.client.post(protocol.EXCHANGE_PATH, json=exchange_body(lap, [m]), headers=lap.headers)
    assert (r.status_code, r.json()["error"], r.json()["expected"]) == (409, "gap", 1)
    r = server.client.post(protocol.EXCHANGE_PATH, json=exchange_body(other, []), headers=lap.headers)
    assert (r.status_code, r.json()["error"]) == (403, "forbidden")
    r = server.client.post(
        protocol.EXCHANGE_PATH, json=exchange_body(lap, [], protocol_version=-5), headers=lap.headers
    )
    assert (r.status_code, r.json()["error"]) == (426, "client_too_old")
    r = server.client.post(protocol.EXCHANGE_PATH, json=exchange_body(lap, [], epoch="another"), headers=lap.headers)
    assert (r.status_code, r.json()["error"]) == (410, "resync_required")
    assert server.store.count("applied_mutation") == 0


def test_a_retired_laptop_is_told_before_anything_of_its_exchange_is_done(server: TestServer) -> None:
    """Retirement finishes on a pull that reports nothing left; an exchange does nothing for a retired laptop,
    which then pushes and pulls separately (the pull seeing what its push left)."""
    lap = server.laptop("alice")
    server.store.retire_device(lap.device_id)
    m = lap.mutation("person", "0190c5a0-0000-7000-8000-000000000003", "insert", {"given_name": "Cy"})
    r = server.client.post(protocol.EXCHANGE_PATH, json=exchange_body(lap, [m]),
                           headers={**lap.headers, protocol.PENDING_HEADER: "0"})  # fmt: skip
    assert (r.status_code, r.json()["error"]) == (403, "device_retired")
    assert server.store.count("applied_mutation") == 0
    info = server.store.device_info(lap.device_id)
    assert info["revoked_at"] is None  # not finished by an exchange


# ---------------------------------------------------------------- a real server over HTTP


@pytest.mark.slow  # a real uvicorn server
def test_over_real_http_no_op_and_incremental_syncs_are_one_request_each(
    tmp_path: Path, vault_template: VaultTemplate
) -> None:
    db_url = f"sqlite:///{tmp_path}/server.db"
    admin = ServerStore(db_url)
    admin.add_worker("alice", "P1")
    stores = []
    try:
        with uvicorn_server(db_url) as url:
            for name in ("A", "B"):
                dest = tmp_path / f"vault-{name}"
                shutil.copytree(vault_template.path, dest)
                vault = Vault(dest)
                vault.unlock_with_recovery(vault_template.recovery)
                store = open_store(vault)
                laptop_sync.enrol(store, url, admin.issue_enrol_code("alice")[0], device_name=name)
                stores.append(store)
            a, b = stores
            with a.service.transaction():
                people = [a.service.add_person(given_name=f"P{i}", family_name="Example").id for i in range(10)]
            for s in (a, b, a, b):
                assert laptop_sync.sync_now(s).status == "synced"
            with a.service.transaction():
                for pid in people:
                    a.service.record_contact(pid, mode="phone", notes="Walked to the allotment")
            r = laptop_sync.sync_now(a)
            assert r.report is not None and (r.report.requests, r.acked - r.report.bookkeeping) == (1, 10)
            r = laptop_sync.sync_now(b)
            assert r.report is not None and r.report.requests == 1 and "received 10 updates" in r.message
            r = laptop_sync.sync_now(b)
            assert r.report is not None and (r.report.requests, r.pulled, r.pending) == (1, 0, 0)
    finally:
        for s in stores:
            laptop_sync.close_transport(s)
            if s.vault.is_unlocked:
                s.vault.lock()
        admin.close()
