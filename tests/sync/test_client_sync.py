"""Laptop sync against the in-process server on real vaults: exactly-once push, resumable pull, conflicts (T1-T17)."""
# ruff: noqa: F811 - pytest fixtures imported from the harness are redefined as parameters

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from sprx_tui.core import sync as laptop_sync
from sprx_tui.core.models import Contact, ContactAmendment, Goal, HlcState, Person, PlanAction, SyncRejected
from sprx_tui.core.service import InvalidInput, NotFound
from sprx_tui.core.store import get_state
from sprx_tui.core.sync.state import write_state
from sync import client as sc
from sync import hlc, schema
from sync.protocol import EXCHANGE_PATH
from sync.server import store as st
from tests.sync.client_harness import (  # noqa: F401 - fixtures
    Laptop,
    Net,
    Recorder,
    net,
    server_count,
    vault_template,
)

DAY = dt.timedelta(days=1)


def person_with_plan(lap, name: str = "Ann") -> tuple[str, str, str]:
    p = lap.service.add_person(given_name=name, family_name="Example", nhs_number="9434765919")
    g = lap.service.add_goal(p.id, "Join the walking group")
    a = lap.service.add_action(g.id, "Phone the group leader")
    return p.id, g.id, a.id


def synced(*laps) -> None:
    for lap in laps:
        r = lap.sync()
        assert r.exit_code in (0, 4), r.message


# ---------------------------------------------------------------- enrolment, first sync, denormalised columns


def test_work_before_enrolment_is_sent_first_and_the_actor_becomes_the_worker(net: Net) -> None:
    a = net.laptop("A", enrol=False)
    pid, gid, _ = person_with_plan(a)
    before = a.outbox("pending")
    assert before and all(o.mutation_id is not None for o in before)
    net.enrol(a)
    assert a.store.actor.user_id == "alice" and a.store.actor.practice_id == "P1"
    assert (
        get_state(
            a.store.engine,
            "device_token",
        )
        is not None
    )
    r = a.sync()
    assert r.status == "synced", r.message
    assert not a.outbox("pending")
    # The server numbered this laptop's changes 1..N with nothing missing, pre-enrolment work first.
    dev = get_state(a.store.engine, "device_id")
    assert server_count(net.server, "applied_mutation", device_id=dev) == a.numbered()
    assert net.server.store.get_record("goal", gid)["values"]["text"] == "Join the walking group"
    assert a.get("person", pid).practice_id == "P1"


def test_second_laptop_receives_the_caseload_with_working_caseload_columns(net: Net) -> None:
    a, b = net.laptop("A"), net.laptop("B")
    pid, gid, aid = person_with_plan(a)
    today = net.clock.now.date()
    a.service.record_contact(pid, mode="phone", notes="First call", follow_up_on=today + 7 * DAY)
    synced(a, b)
    rows, total = b.queries.caseload(text="ann")
    assert total == 1 and rows[0].id == pid
    assert rows[0].last_contact_on == today and rows[0].next_follow_up_on == today + 7 * DAY
    assert [g.goal.text for g in b.queries.plan(pid)] == ["Join the walking group"]
    assert b.dump() == a.dump() == net.server_dump("alice")


def test_http_to_another_machine_is_refused_with_a_sentence(net: Net) -> None:
    lap = net.laptop("A", enrol=False)
    with pytest.raises(laptop_sync.SyncError, match="https://"):
        laptop_sync.enrol(lap.store, "http://192.0.2.10:8443", "AAAAA-BBBBB")
    with pytest.raises(laptop_sync.SyncError, match="enrolment code"):
        laptop_sync.enrol(lap.store, "http://testserver", "WRONG-CODE1", transport=lap.transport)
    assert not laptop_sync.is_enrolled(lap.store)
    assert lap.sync().status == "not_enrolled"


# ---------------------------------------------------------------- T1/T2: lost answers, duplicates, drops


def push_path(a: Laptop, old_server: bool) -> str:
    """Where a laptop's changes go: the one-request exchange, or push for a server without it."""
    if old_server:
        a.transport.old_server()
        return "/v1/sync/push"
    return EXCHANGE_PATH


@pytest.mark.parametrize("old_server", [False, True], ids=["exchange", "old_server"])
@pytest.mark.parametrize("fault", ["drop_after", "reset_after", "duplicate"])
def test_lost_or_repeated_push_applies_each_change_exactly_once(net: Net, fault: str, old_server: bool) -> None:
    a = net.laptop("A")
    synced(a)  # following the feed: the everyday sync, not a first one
    pid = a.service.add_person(given_name="Bea", family_name="Example").id
    for i in range(5):
        a.service.record_contact(pid, mode="phone", notes=f"call {i}")
    n = len(a.outbox("pending"))
    path = push_path(a, old_server)
    a.transport.fail(fault, path, times=2)
    r = a.sync()
    assert r.status == "synced", r.message
    assert not a.outbox("pending")
    # Five contacts on the server, never ten; one ledger entry per mutation id.
    assert server_count(net.server, "record", tbl="contact") == 5
    dev = get_state(a.store.engine, "device_id")
    assert server_count(net.server, "applied_mutation", device_id=dev) == a.numbered() >= n
    # Each injected fault hit a request: lost answers were resent, the duplicate arrived twice.
    assert a.transport.count(path) >= (2 if fault == "duplicate" else 3)


@pytest.mark.parametrize("old_server", [False, True], ids=["exchange", "old_server"])
@pytest.mark.parametrize("fault", ["drop_after", "duplicate"])
def test_a_change_the_server_already_had_is_acked_even_when_its_answer_was_lost(
    net: Net, fault: str, old_server: bool
) -> None:
    """Found by the convergence test: B deletes an action, A deletes it too. A's delete merges as
    "duplicate" on the server; when that answer was lost, the resent push is answered "duplicate" of a
    "duplicate", which the laptop did not count as done: it resent it for ever and every sync failed."""
    a, b = net.laptop("A"), net.laptop("B")
    _pid, _gid, aid = person_with_plan(a)
    synced(a, b, a)
    b.service.delete_action(aid)
    synced(b)
    a.service.delete_action(aid)
    a.transport.fail(fault, push_path(a, old_server), times=1)
    r = a.sync()
    assert r.status == "synced", r.message
    assert not a.outbox("pending")
    synced(a, b)
    assert a.dump() == b.dump() == net.server_dump("alice")


def test_network_down_keeps_every_change_and_says_so(net: Net) -> None:
    a = net.laptop("A")
    pid = a.service.add_person(given_name="Cal", family_name="Example").id
    a.transport.refused = lambda: True
    r = a.sync()
    assert (r.status, r.exit_code) == ("offline", 3)
    assert r.message == "The practice server could not be reached; your changes are kept and will sync later."
    assert r.pending == len(a.outbox("pending")) > 0
    a.transport.refused = lambda: False
    assert a.sync().status == "synced"
    assert net.server.store.get_record("person", pid) is not None


@pytest.mark.parametrize("old_server", [False, True], ids=["exchange", "old_server"])
def test_answers_lost_on_every_retry_give_offline_then_the_same_ids_are_resent(net: Net, old_server: bool) -> None:
    a = net.laptop("A")
    synced(a)
    a.service.add_person(given_name="Dee", family_name="Example")
    a.transport.fail("drop_after", push_path(a, old_server), times=10)
    r = a.sync()
    assert r.status == "offline"
    # The server did apply them; the laptop does not know yet and keeps them pending.
    assert server_count(net.server, "record", tbl="person") == 1
    assert a.outbox("pending")
    a.transport.faults.clear()
    r = a.sync()
    assert r.status == "synced" and not a.outbox("pending")
    assert server_count(net.server, "record", tbl="person") == 1


def test_gap_after_a_server_restore_resends_from_the_expected_id(net: Net) -> None:
    a = net.laptop("A")
    pid = a.service.add_person(given_name="Eve", family_name="Example").id
    for i in range(3):
        a.service.record_contact(pid, mode="phone", notes=f"call {i}")
    synced(a)
    dev = get_state(a.store.engine, "device_id")
    acked = server_count(net.server, "applied_mutation", device_id=dev)
    # The server loses its last three ledger entries (restored from an older backup).
    with net.server.store.engine.begin() as conn:
        conn.execute(
            sa.delete(st.applied_mutation).where(
                st.applied_mutation.c.device_id == dev, st.applied_mutation.c.mutation_id > acked - 3
            )
        )
        conn.execute(sa.update(st.device).where(st.device.c.id == dev).values(last_acked_mutation_id=acked - 3))
    a.service.record_contact(pid, mode="visit" if False else "home_visit", notes="after restore")
    r = a.sync()
    assert r.status == "synced", r.message
    assert not a.outbox("pending")
    assert server_count(net.server, "applied_mutation", device_id=dev) == a.numbered()
    assert server_count(net.server, "record", tbl="contact") == 4


# ---------------------------------------------------------------- T4-lite / T5: crash mid-page, resumable pull


def _big_caseload(a, people: int) -> None:
    with a.service.transaction():
        for i in range(people):
            p = a.service.add_person(given_name=f"P{i:03d}", family_name="Example")
            a.service.add_goal(p.id, f"goal {i}")


def test_crash_inside_a_pull_page_rolls_back_page_and_cursor_together(net: Net) -> None:
    a, b = net.laptop("A"), net.laptop("B")
    synced(b)  # B follows the feed from here
    _big_caseload(a, 30)
    synced(a)
    b.page = 20
    local = laptop_sync.VaultSyncAdapter(b.store)
    before = local.pull_position().cursor

    def boom(n: int) -> None:
        if n == 7:
            raise RuntimeError("power cut")

    local.fail_in_page = boom
    r = laptop_sync.sync_now(b.store, transport=b.transport, local=local, page=20)
    assert r.status == "failed" and "nothing was half-applied" in r.message
    assert local.pull_position().cursor == before  # cursor never ahead of applied data
    with Session(b.store.engine) as s:
        assert s.exec(select(sa.func.count()).select_from(Person)).one() == 0
    pulls = b.transport.count("/v1/sync/pull", EXCHANGE_PATH)
    synced(b)
    # 60 rows in pages of 20: the crashed page is fetched again, nothing else twice.
    assert b.transport.count("/v1/sync/pull", EXCHANGE_PATH) - pulls == 3
    assert b.dump() == a.dump() == net.server_dump("alice")


def test_interrupted_snapshot_resumes_without_refetching_committed_pages(net: Net) -> None:
    a = net.laptop("A")
    _big_caseload(a, 40)
    synced(a)
    ref = net.laptop("R")  # an uninterrupted first sync, for the page count
    ref.page = 25
    synced(ref)
    uninterrupted = ref.transport.count("/v1/sync/snapshot")
    b = net.laptop("B")
    b.page = 25
    # The network goes down after the second snapshot page.
    b.transport.refused = lambda: b.transport.count("/v1/sync/snapshot") >= 2
    assert b.sync().status == "offline"
    with Session(b.store.engine) as s:
        # Committed pages stay (a snapshot sends each table's rows before the people they belong to).
        held = (
            s.exec(select(sa.func.count()).select_from(Goal)).one()
            + s.exec(select(sa.func.count()).select_from(Person)).one()
        )
        assert 0 < held < 80
    b.transport.refused = lambda: False
    synced(b)
    assert b.transport.count("/v1/sync/snapshot") <= uninterrupted + 1
    assert b.dump() == ref.dump() == net.server_dump("alice")


def test_replaying_a_pull_page_changes_nothing(net: Net) -> None:
    a, b = net.laptop("A"), net.laptop("B")
    synced(b)
    pid, gid, _ = person_with_plan(a)
    synced(a, b)
    dump = b.dump()
    page = net.server.client.get(
        "/v1/sync/pull",
        params={"cursor": 0},
        headers={"Authorization": f"Bearer {get_state(b.store.engine, 'device_token')}",
                 "X-Sprx-Protocol": "1", "X-Sprx-Schema": str(schema.SCHEMA_VERSION)},
    ).json()  # fmt: skip
    cursor = laptop_sync.VaultSyncAdapter(b.store).pull_position().cursor
    assert laptop_sync.VaultSyncAdapter(b.store).apply_pull_page({**page, "next_cursor": cursor}) == 0
    assert b.dump() == dump


def test_received_counts_what_came_from_elsewhere_not_this_laptops_own_changes_coming_back(net: Net) -> None:
    a, b = net.laptop("A"), net.laptop("B")
    pid, gid, aid = person_with_plan(a)
    synced(a, b)
    # A's own three rows come back in the same sync's pull (the server's copies): not news.
    a.service.add_goal(pid, "Go to the allotment")
    r = a.sync()
    assert (r.status, r.acked > 0) == ("synced", True)
    assert "received 0 updates" in r.message, r.message
    # B changes one field of the goal, A another: A sends its edit and receives B's (one row, one update),
    # although the row's newest write is A's own.
    b.service.update_goal(gid, target_on=net.clock.now.date() + 30 * DAY)
    b.service.add_goal(pid, "Call the befriending service")
    synced(b)
    net.clock.advance(seconds=5)
    a.service.update_goal(gid, text="Walk twice a week")
    r = a.sync()
    assert "sent 1 change, received 2 updates" in r.message, r.message  # B's goal edit and B's new goal
    assert a.get("goal", gid).text == "Walk twice a week" and a.get("goal", gid).target_on is not None
    assert "received 0 updates" in a.sync().message


# ---------------------------------------------------------------- T9-T12: conflicts and merges


def test_concurrent_goal_text_edits_surface_one_conflict_everywhere_and_resolve(net: Net) -> None:
    a, b = net.laptop("A"), net.laptop("B")
    pid, gid, _ = person_with_plan(a)
    synced(a, b)
    a.service.update_goal(gid, text="Walk on Tuesdays")
    net.clock.advance(seconds=5)
    b.service.update_goal(gid, text="Swim on Fridays")
    synced(a, b, a)
    for lap in (a, b):
        cs = lap.conflicts()
        assert len(cs) == 1 and cs[0].kind == "concurrent_edit" and cs[0].field == "text"
        assert sorted(v["v"] for v in cs[0].values_json) == ["Swim on Fridays", "Walk on Tuesdays"]
        assert lap.get("goal", gid).text == "Swim on Fridays"  # the same display winner everywhere
    assert a.dump() == b.dump() == net.server_dump("alice")
    r = b.sync()
    assert (r.status, r.exit_code, r.conflicts) == ("conflicts", 4, 1)
    cid = b.conflicts()[0].id
    top = max(v["hlc"] for v in b.conflicts()[0].values_json)
    laptop_sync.resolve_conflict(b.store, cid, "Walk on Tuesdays, swim on Fridays")
    resolve = b.outbox("pending")[0]
    assert resolve.op == "resolve" and resolve.conflict_id == cid
    assert resolve.fields["text"]["hlc"] > top
    assert b.get("goal", gid).text == "Walk on Tuesdays, swim on Fridays"
    synced(b, a)
    for lap in (a, b):
        assert lap.conflicts() == []
        assert lap.get("goal", gid).text == "Walk on Tuesdays, swim on Fridays"
    assert a.dump() == b.dump() == net.server_dump("alice")
    with pytest.raises(NotFound):
        laptop_sync.resolve_conflict(b.store, cid, "again")


def test_edits_to_different_fields_and_repeated_edits_never_conflict(net: Net) -> None:
    a, b = net.laptop("A"), net.laptop("B")
    pid, gid, _ = person_with_plan(a)
    synced(a, b)
    a.service.update_goal(gid, text="Walk twice a week")
    a.service.update_goal(gid, text="Walk three times a week")
    b.service.update_goal(gid, target_on=net.clock.now.date() + 30 * DAY)
    synced(a, b, a)
    for lap in (a, b):
        g = lap.get("goal", gid)
        assert (g.text, g.target_on) == ("Walk three times a week", net.clock.now.date() + 30 * DAY)
        assert lap.conflicts() == []
    assert server_count(net.server, "conflict") == 0
    assert a.dump() == b.dump() == net.server_dump("alice")


def test_delete_versus_edit_keeps_the_edit_and_confirming_deletes_everywhere(net: Net) -> None:
    a, b = net.laptop("A"), net.laptop("B")
    pid, gid, aid = person_with_plan(a)
    synced(a, b)
    a.service.delete_action(aid)
    b.service.update_action(aid, what="Phone the group leader on Monday")
    synced(a, b, a)
    for lap in (a, b):
        row = lap.get("plan_action", aid)
        assert not row.deleted and row.what == "Phone the group leader on Monday"
        (c,) = lap.conflicts()
        assert c.kind == "delete_vs_edit"
    assert a.dump() == b.dump() == net.server_dump("alice")
    with pytest.raises(InvalidInput):
        laptop_sync.resolve_conflict(a.store, c.id, "yes")
    laptop_sync.resolve_conflict(a.store, c.id, True)
    synced(a, b)
    for lap in (a, b):
        assert lap.get("plan_action", aid).deleted and lap.conflicts() == []
    assert a.dump() == b.dump() == net.server_dump("alice")


def test_contacts_from_two_laptops_and_an_amendment_all_arrive_without_conflict(net: Net) -> None:
    a, b = net.laptop("A"), net.laptop("B")
    pid, _, _ = person_with_plan(a)
    synced(a, b)
    ca = a.service.record_contact(pid, mode="phone", notes="A's call")
    b.service.record_contact(pid, mode="home_visit", notes="B's visit")
    synced(a, b, a)
    b.service.amend_contact(ca.id, "A's call (10 minutes)", reason="duration")
    synced(b, a)
    for lap in (a, b):
        with Session(lap.store.engine) as s:
            notes = sorted(c.notes for c in s.exec(select(Contact)).all())
            amends = [x.text for x in s.exec(select(ContactAmendment)).all()]
        assert notes == ["A's call", "B's visit"] and amends == ["A's call (10 minutes)"]
        assert lap.conflicts() == []
    assert a.dump() == b.dump() == net.server_dump("alice")


def test_pending_local_edit_wins_locally_over_a_pulled_change_until_sent(net: Net) -> None:
    a, b = net.laptop("A"), net.laptop("B")
    pid, gid, _ = person_with_plan(a)
    synced(a, b)
    a.service.update_goal(gid, status="in_progress")
    synced(a)
    b.service.update_goal(gid, status="achieved")
    # Pull only (as if the push were still on its way): the server's row arrives, the pending edit stays on top.
    local = laptop_sync.VaultSyncAdapter(b.store)
    engine = sc.SyncEngine(
        local,
        sc.Transport("http://testserver", token=get_state(b.store.engine, "device_token"),
                               transport=b.transport),
        get_state(b.store.engine, "device_id"),
    )  # fmt: skip
    engine.pull()
    assert b.get("goal", gid).status == "achieved"
    synced(b, a)
    assert a.get("goal", gid).status == b.get("goal", gid).status == "achieved"


# ---------------------------------------------------------------- T13: clocks


def test_laptop_clock_a_year_ahead_is_corrected_and_nothing_is_lost(net: Net) -> None:
    b = net.laptop("B")
    a = net.laptop("A", skew=dt.timedelta(days=365))
    pid, gid, _ = person_with_plan(a)
    a.service.update_goal(gid, text="Walk every day")
    r = a.sync()
    assert r.status == "synced", r.message
    assert r.report.requeued > 0  # refused as clock_ahead, then queued again with corrected stamps
    assert not a.outbox("pending")
    assert net.server.store.get_record("goal", gid)["values"]["text"] == "Walk every day"
    with Session(a.store.engine) as s:
        last = s.get(HlcState, 1).last
    assert hlc.physical_ms(last) <= net.clock.ms() + hlc.MAX_SKEW_MS
    # New writes now stamp with the corrected clock and go through first time.
    a.service.update_goal(gid, status="in_progress")
    r = a.sync()
    assert r.status == "synced" and r.report.requeued == 0
    synced(b)
    assert b.get("goal", gid).text == "Walk every day" and b.get("goal", gid).status == "in_progress"
    assert a.dump() == b.dump() == net.server_dump("alice")
    # Nothing was rejected for good.
    with Session(a.store.engine) as s:
        assert s.exec(select(SyncRejected)).all() == []


def test_laptop_clock_a_year_behind_still_merges_in_real_order(net: Net) -> None:
    a = net.laptop("A")
    b = net.laptop("B", skew=-dt.timedelta(days=365))
    pid, gid, _ = person_with_plan(a)
    synced(a, b)  # B learns the server's clock and its HLC jumps forward
    a.service.update_goal(gid, status="in_progress")
    synced(a)
    net.clock.advance(minutes=1)
    b.service.update_goal(gid, status="achieved")  # later in real time
    synced(b, a)
    assert a.get("goal", gid).status == b.get("goal", gid).status == "achieved"


# ---------------------------------------------------------------- T15: scope


def test_reassigned_person_is_purged_and_the_new_worker_gets_them(net: Net) -> None:
    a = net.laptop("A", "alice")
    bob = net.laptop("B", "bob")
    pid, gid, _ = person_with_plan(a)
    a.service.record_contact(pid, mode="phone", notes="call")
    synced(a, bob)
    a.service.update_goal(gid, text="Edited after the reassignment")  # pending when it happens
    net.server.store.assign(pid, worker_id="bob")
    r = a.sync()
    assert r.status == "synced" and r.rejected >= 1
    with Session(a.store.engine) as s:
        for model in (Person, Goal, PlanAction, Contact):
            assert s.exec(select(model).where(model.person_id == pid)).all() == []
        rejected = s.exec(select(SyncRejected)).all()
    assert {x.reason_code for x in rejected} == {"out_of_scope"}
    assert any(x.payload["fields"].get("text", {}).get("v") == "Edited after the reassignment" for x in rejected)
    synced(bob)
    assert bob.get("person", pid) is not None and bob.get("goal", gid).text == "Join the walking group"
    assert bob.dump() == net.server_dump("bob")
    assert a.dump() == net.server_dump("alice")


# ---------------------------------------------------------------- T14: resync without losing the outbox


def test_server_restore_forces_a_resync_that_keeps_pending_work(net: Net) -> None:
    a, b = net.laptop("A"), net.laptop("B")
    pid, gid, aid = person_with_plan(a)
    synced(a, b)
    b.service.delete_action(aid)
    synced(b)
    a.service.record_contact(pid, mode="phone", notes="written offline")
    net.server.store.new_epoch()
    r = a.sync()
    assert r.status == "synced", r.message
    assert r.report.resyncs == 1
    assert a.get("plan_action", aid) is None  # gone on the server, so gone here after the snapshot
    assert not a.outbox("pending")
    assert server_count(net.server, "record", tbl="contact") == 1
    assert a.dump() == net.server_dump("alice")


# ---------------------------------------------------------------- T17 and errors


def test_old_client_gets_426_keeps_its_outbox_and_drains_after_the_upgrade(net: Net, tmp_path: Path) -> None:
    a = net.laptop("A")
    synced(a)
    from tests.sync.server_harness import TestServer

    newer = TestServer(net.db_url, clock=net.clock.ms, schema_version=schema.SCHEMA_VERSION + 2)
    try:
        a.transport.inner = newer.client._transport
        pid = a.service.add_person(given_name="Fay", family_name="Example").id
        r = a.sync()
        assert (r.status, r.exit_code) == ("upgrade", 6)
        assert "too old" in r.message
        assert r.pending > 0
        a.service.add_goal(pid, "still works offline")
    finally:
        newer.close()
    a.transport.inner = net.inner
    assert a.sync().status == "synced"
    assert not a.outbox("pending")
    assert net.server.store.get_record("person", pid) is not None


def test_revoked_device_erases_its_local_copy(net: Net) -> None:
    a = net.laptop("A")
    a.service.add_person(given_name="Gus", family_name="Example")
    synced(a)
    path = a.store.vault.path
    net.server.store.revoke_device(get_state(a.store.engine, "device_id"))
    r = a.sync()
    assert (r.status, r.exit_code) == ("revoked", 5)
    assert r.message == "This laptop's access was withdrawn by the practice, so its local copy has been erased."
    assert not path.exists()
    assert not a.store.vault.is_unlocked


def test_unknown_token_is_a_plain_failure(net: Net) -> None:
    a = net.laptop("A")
    with a.store.lock, Session(a.store.engine) as s, s.begin():
        write_state(s, {"device_token": "sprx_not-a-real-token"})
    r = a.sync()
    assert (r.status, r.exit_code) == ("failed", 1)
    assert "new code" in r.message


@pytest.mark.parametrize("missing", ["server_url", "device_id"])
def test_a_token_without_a_server_address_or_device_id_is_a_plain_failure(net: Net, missing: str) -> None:
    a = net.laptop("A")
    pid = a.service.add_person(given_name="Ida", family_name="Example").id
    with a.store.lock, Session(a.store.engine) as s, s.begin():
        write_state(s, {missing: None})
    pending = len(a.outbox("pending"))
    r = a.sync()
    assert (r.status, r.exit_code) == ("failed", 1)
    assert r.message == laptop_sync.INCOMPLETE_ENROLMENT and "enrolment is incomplete" in r.message
    assert len(a.outbox("pending")) == pending > 0  # nothing lost, nothing sent
    assert net.server.store.get_record("person", pid) is None
    assert a.transport.count("/v1/sync/push") == 0


def test_progress_reports_push_totals_and_pull_counts(net: Net) -> None:
    a = net.laptop("A")
    _big_caseload(a, 5)
    rec = Recorder()
    a.sync(progress=rec)
    pushes = [c for c in rec.calls if c[0] == "push"]
    assert pushes[0] == ("push", 0, pushes[0][2]) and pushes[0][2] >= 20
    assert pushes[-1][1] == pushes[-1][2]
    assert any(c[0] == "snapshot" and c[1] == 10 for c in rec.calls)


def test_sync_status_for_the_status_bar(net: Net) -> None:
    a = net.laptop("A")
    a.service.add_person(given_name="Hal", family_name="Example")
    s0 = laptop_sync.sync_status(a.store)
    assert s0.enrolled and s0.pending > 0 and s0.last_sync_at is None
    synced(a)
    s1 = laptop_sync.sync_status(a.store)
    assert s1.pending == 0 and s1.last_status == "synced" and s1.last_successful_sync_at == net.clock.now
    assert json.dumps(s1.last_message)


def _vault_changes(lap: Laptop) -> int:
    """Rows this laptop's one vault connection has written so far (SQLite's total_changes)."""
    raw = lap.store.engine.raw_connection()
    try:
        return int(raw.driver_connection.total_changes)
    finally:
        raw.close()


def test_a_sync_that_moves_nothing_writes_nothing_to_the_vault(net: Net) -> None:
    a, b = net.laptop("A"), net.laptop("B")
    person_with_plan(a)
    synced(a, b)
    synced(a, b)
    before = _vault_changes(b)
    for _ in range(3):
        r = b.sync()
        assert (r.status, r.pulled, r.acked) == ("synced", 0, 0)
    assert _vault_changes(b) == before
    # The in-memory last-sync time still reaches the status bar.
    assert laptop_sync.sync_status(b.store).last_sync_at == r.finished_at
    # Something arriving is written, with the cursor, at once.
    person_with_plan(a)
    synced(a)
    assert b.sync().pulled > 0
    assert _vault_changes(b) > before
