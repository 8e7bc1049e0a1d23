"""Server sync over HTTP (in-process), on SQLite and PostgreSQL: sync-anchors T1-T3, T9-T17."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sync import hlc
from sync.server.store import ACTIVE_DEVICE_MS, ENROL_CODE_TTL_MS
from tests.sync.server_harness import FakeClock, Laptop, TestServer, version_headers

NHS = "9434765919"


def new_person(lap: Laptop, nhs: str | None = None) -> str:
    pid = str(uuid.uuid4())
    fields: dict[str, Any] = {"given_name": "Test", "family_name": "Person", "phone": "0100"}
    if nhs:
        fields["nhs_number"] = nhs
    r = lap.push([lap.mutation("person", pid, "insert", fields)])
    assert r.json()["acks"][0]["status"] == "applied", r.json()
    return pid


def acks(r: Any) -> list[dict[str, Any]]:
    assert r.status_code == 200, r.text
    return r.json()["acks"]


def counts(server: TestServer) -> tuple[int, ...]:
    s = server.store
    return tuple(s.count(t) for t in ("record", "change_log", "applied_mutation", "conflict"))


# ---------------------------------------------------------------- enrolment and auth


def test_enrol_code_is_single_use_and_expires(server: TestServer) -> None:
    server.worker("alice")
    code, expires = server.store.issue_enrol_code("alice")
    assert expires == server.clock() + ENROL_CODE_TTL_MS
    r = server.client.post("/v1/devices/enrol", json={"code": code.lower(), "device_name": "L1"})
    assert r.status_code == 201
    body = r.json()
    assert body["user_id"] == "alice" and body["practice_id"] == "P1" and body["token"]
    # Only a hash of the token is stored.
    with server.store.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT token_sha256 FROM device")).scalar_one()
    assert body["token"] not in stored and len(stored) == 64
    again = server.client.post("/v1/devices/enrol", json={"code": code, "device_name": "L2"})
    assert (again.status_code, again.json()["error"]) == (401, "code_used")
    code2, _ = server.store.issue_enrol_code("alice")
    assert isinstance(server.clock, FakeClock)
    server.clock.advance(ENROL_CODE_TTL_MS + 1)
    late = server.client.post("/v1/devices/enrol", json={"code": code2, "device_name": "L3"})
    assert (late.status_code, late.json()["error"]) == (401, "code_expired")
    bad = server.client.post("/v1/devices/enrol", json={"code": "AAAAA-BBBBB", "device_name": "x"})
    assert (bad.status_code, bad.json()["error"]) == (401, "invalid_code")


def test_t16_invalid_token_401_and_replay_with_valid_token_is_duplicate(
    server: TestServer,
) -> None:
    server.worker("alice")
    a = server.laptop("alice")
    pid = str(uuid.uuid4())
    body = {"device_id": a.device_id, "protocol_version": 1, "schema_version": 1,
            "mutations": [a.mutation("person", pid, "insert", {"given_name": "X"})]}  # fmt: skip
    bad = server.client.post("/v1/sync/push", json=body, headers={"Authorization": "Bearer nope"})
    assert (bad.status_code, bad.json()["error"]) == (401, "unauthorised")
    none = server.client.post("/v1/sync/push", json=body)
    assert none.status_code == 401
    first = server.client.post("/v1/sync/push", json=body, headers=a.headers)
    before = counts(server)
    replay = server.client.post("/v1/sync/push", json=body, headers=a.headers)
    assert replay.json()["acks"][0]["status"] == "duplicate"
    assert replay.json()["acks"][0]["seq"] == first.json()["acks"][0]["seq"]
    assert counts(server) == before


def test_replay_of_a_change_that_merged_as_duplicate_says_it_was_applied(server: TestServer) -> None:
    """A second delete of a row merges as "duplicate"; its replay must not answer "duplicate of duplicate"."""
    server.worker("alice")
    a, b = server.laptop("alice"), server.laptop("alice", "second")
    pid, gid = str(uuid.uuid4()), str(uuid.uuid4())
    made = a.push(
        [
            a.mutation("person", pid, "insert", {"given_name": "X"}, person_id=pid),
            a.mutation("goal", gid, "insert", {"text": "Walk"}, person_id=pid),
        ]
    )
    assert [ack["status"] for ack in made.json()["acks"]] == ["applied", "applied"]
    b_delete = b.mutation("goal", gid, "delete", person_id=pid)
    again = [a.mutation("goal", gid, "delete", person_id=pid, hlc=b_delete["hlc"] - 1)]  # the older delete
    assert b.push([b_delete]).json()["acks"][0]["status"] == "applied"
    first = a.push(again).json()["acks"][0]
    assert first["status"] == "duplicate" and first.get("original_status") is None
    replay = a.push(again).json()["acks"][0]
    assert (replay["status"], replay["original_status"]) == ("duplicate", "applied")


def test_revoked_device_gets_device_revoked(server: TestServer) -> None:
    server.worker("alice")
    a = server.laptop("alice")
    server.store.revoke_device(a.device_id)
    r = a.push([])
    assert (r.status_code, r.json()["error"]) == (403, "device_revoked")
    p = server.client.get("/v1/sync/pull", headers=a.headers)
    assert (p.status_code, p.json()["error"]) == (403, "device_revoked")


def test_body_device_must_match_token(server: TestServer) -> None:
    server.worker("alice")
    a, b = server.laptop("alice"), server.laptop("alice", "second")
    r = a.push([], device_id=b.device_id)
    assert (r.status_code, r.json()["error"]) == (403, "forbidden")


def test_malformed_bodies_are_422_not_500(server: TestServer) -> None:
    server.worker("alice")
    a = server.laptop("alice")
    cases: list[Any] = [
        {"device_id": a.device_id},
        {"device_id": a.device_id, "protocol_version": 1, "schema_version": 1, "mutations": [{}]},
        {"device_id": a.device_id, "protocol_version": 1, "schema_version": 1,
         "mutations": [{"mutation_id": 1, "tbl": "goal", "row_id": "r", "op": "explode",
                        "fields": {}, "hlc": 1}]},
        {"device_id": a.device_id, "protocol_version": 1, "schema_version": 1,
         "mutations": [a.mutation("goal", "r", "insert", {"text": "x"})] * 501},
        [1, 2, 3],
    ]  # fmt: skip
    for body in cases:
        r = server.client.post("/v1/sync/push", json=body, headers=a.headers)
        assert r.status_code == 422, r.text
        assert r.json()["error"] == "invalid_request"
    r = server.client.post(
        "/v1/sync/push", content=b"{not json", headers={**a.headers, "Content-Type": "application/json"}
    )
    assert r.status_code == 422
    r = server.client.get("/v1/sync/pull", params={"cursor": "abc"}, headers=a.headers)
    assert r.status_code == 422
    r = server.client.post("/v1/devices/enrol", json={"code": 5})
    assert r.status_code == 422


# ---------------------------------------------------------------- exactly once


def test_t1_t2_replayed_batch_applies_once(server: TestServer) -> None:
    server.worker("alice")
    a = server.laptop("alice")
    pid = new_person(a)
    batch = [a.mutation("contact", str(uuid.uuid4()), "insert", {"notes": f"n{i}"}, person_id=pid)
             for i in range(5)]  # fmt: skip
    first = a.push(batch)  # T2: pretend this response was lost after the commit
    after_first = counts(server)
    for _ in range(4):
        again = acks(a.push(batch))
        assert [x["status"] for x in again] == ["duplicate"] * 5
        assert [x["seq"] for x in again] == [x["seq"] for x in first.json()["acks"]]
    assert counts(server) == after_first
    with server.store.engine.connect() as conn:
        n = conn.execute(sa.text("SELECT count(*) FROM record WHERE tbl='contact'")).scalar_one()
    assert n == 5


def test_t1_identical_concurrent_requests_apply_once(server: TestServer) -> None:
    server.worker("alice")
    a = server.laptop("alice")
    pid = new_person(a)
    batch = [a.mutation("contact", str(uuid.uuid4()), "insert", {"notes": "x"}, person_id=pid)
             for _ in range(10)]  # fmt: skip
    results: list[int] = []

    def go() -> None:
        results.append(a.push(batch).status_code)

    ts = [threading.Thread(target=go) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert results == [200] * 4
    with server.store.engine.connect() as conn:
        n = conn.execute(sa.text("SELECT count(*) FROM record WHERE tbl='contact'")).scalar_one()
        led = conn.execute(sa.text("SELECT count(*) FROM applied_mutation")).scalar_one()
    assert n == 10 and led == 11


def test_t3_gap_and_reuse(server: TestServer) -> None:
    server.worker("alice")
    a = server.laptop("alice")
    pid = new_person(a)  # mutation 1
    before = counts(server)
    a.next_mid = 3
    gap = a.push([a.mutation("goal", "g", "insert", {"text": "t"}, person_id=pid)])
    assert gap.status_code == 409
    assert gap.json()["error"] == "gap" and gap.json()["expected"] == 2
    assert counts(server) == before
    # A batch that starts well but has a gap in the middle applies nothing either.
    a.next_mid = 2
    ok = a.mutation("goal", "g1", "insert", {"text": "t"}, person_id=pid)
    a.next_mid = 4
    r = a.push([ok, a.mutation("goal", "g2", "insert", {"text": "t"}, person_id=pid)])
    assert r.status_code == 409 and counts(server) == before
    a.next_mid = 1
    reuse = a.push([a.mutation("person", str(uuid.uuid4()), "insert", {"given_name": "Z"})])
    assert (reuse.status_code, reuse.json()["error"]) == (409, "mutation_id_reuse")
    assert counts(server) == before


def test_concurrent_pushes_from_many_devices_apply_exactly_once(server: TestServer) -> None:
    laps = []
    for i in range(6):
        server.worker(f"w{i}")
        laps.append(server.laptop(f"w{i}"))
    pids = [new_person(lap) for lap in laps]
    errors: list[str] = []

    def work(lap: Laptop, pid: str) -> None:
        for _ in range(5):
            batch = [lap.mutation("contact", str(uuid.uuid4()), "insert", {"notes": "n"},
                                  person_id=pid) for _ in range(4)]  # fmt: skip
            for _ in range(2):  # every batch is sent twice, as after a lost response
                r = lap.push(batch)
                if r.status_code != 200:
                    errors.append(r.text)

    ts = [threading.Thread(target=work, args=(lap, pid)) for lap, pid in zip(laps, pids, strict=True)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    with server.store.engine.connect() as conn:
        n = conn.execute(sa.text("SELECT count(*) FROM record WHERE tbl='contact'")).scalar_one()
        seqs = conn.execute(sa.text("SELECT seq FROM change_log ORDER BY seq")).scalars().all()
    assert n == 6 * 5 * 4
    assert len(seqs) == len(set(seqs))
    # Each laptop's pull sees only its own person.
    for lap, pid in zip(laps, pids, strict=True):
        got = lap.pull_all()
        assert {c["person_id"] for c in got["changes"]} == {pid}
        assert len(got["changes"]) == 1 + 20


# ---------------------------------------------------------------- merge through the server


def test_t9_conflict_visible_identically_and_resolution_closes_it(server: TestServer) -> None:
    server.worker("alice", team_id="T")
    server.worker("bob", team_id="T")
    a, b = server.laptop("alice"), server.laptop("bob")
    pid = new_person(a)
    server.store.assign(pid, team_id="T")
    acks(a.push([a.mutation("goal", "g1", "insert", {"text": "start"}, person_id=pid)]))
    a.pull_all(), b.pull_all()
    base = a.rows[("goal", "g1")]["meta"]["text"]["seq"]
    acks(a.push([a.mutation("goal", "g1", "patch", {"text": "A words"}, person_id=pid, base=base)]))
    rb = acks(b.push([b.mutation("goal", "g1", "patch", {"text": "B words"}, person_id=pid, base=base)]))
    assert len(rb[0]["conflict_ids"]) == 1
    pa, pb = a.pull_all(), b.pull_all()
    ca = [c for c in pa["conflicts"] if c["status"] == "open"]
    cb = [c for c in pb["conflicts"] if c["status"] == "open"]
    assert len(ca) == 1 and ca == cb
    assert {v["v"] for v in ca[0]["values"]} == {"A words", "B words"}
    assert a.rows[("goal", "g1")]["values"] == b.rows[("goal", "g1")]["values"]
    shown = ca[0]["values"][ca[0]["shown_idx"]]["v"]
    assert a.rows[("goal", "g1")]["values"]["text"] == shown
    res = b.mutation("goal", "g1", "resolve", {"text": "B words, agreed"}, person_id=pid,
                     conflict_id=ca[0]["id"])  # fmt: skip
    assert acks(b.push([res]))[0]["status"] == "applied"
    pa = a.pull_all()
    assert [c["status"] for c in pa["conflicts"]] == ["resolved"]
    assert a.rows[("goal", "g1")]["values"]["text"] == "B words, agreed"
    assert a.rows[("goal", "g1")]["meta"]["text"]["hlc"] > max(v["hlc"] for v in ca[0]["values"])


def test_t10_no_false_conflicts(server: TestServer) -> None:
    server.worker("alice", team_id="T")
    server.worker("bob", team_id="T")
    a, b = server.laptop("alice"), server.laptop("bob")
    pid = new_person(a)
    server.store.assign(pid, team_id="T")
    acks(a.push([a.mutation("goal", "g1", "insert", {"text": "t", "target_on": "2025-01-01"},
                            person_id=pid)]))  # fmt: skip
    a.pull_all(), b.pull_all()
    base = a.rows[("goal", "g1")]["meta"]["text"]["seq"]
    acks(a.push([a.mutation("goal", "g1", "patch", {"text": "t2"}, person_id=pid, base=base),
                 a.mutation("goal", "g1", "patch", {"text": "t3"}, person_id=pid, base=base)]))  # fmt: skip
    acks(b.push([b.mutation("goal", "g1", "patch", {"target_on": "2026-01-01"}, person_id=pid,
                            base=base)]))  # fmt: skip
    a.pull_all(), b.pull_all()
    assert a.rows[("goal", "g1")]["values"] == {"text": "t3", "target_on": "2026-01-01"}
    assert server.store.count("conflict") == 0


def test_t11_delete_vs_edit_over_http(server: TestServer) -> None:
    server.worker("alice", team_id="T")
    server.worker("bob", team_id="T")
    a, b = server.laptop("alice"), server.laptop("bob")
    pid = new_person(a)
    server.store.assign(pid, team_id="T")
    acks(a.push([a.mutation("plan_action", "x1", "insert", {"what": "call"}, person_id=pid)]))
    a.pull_all(), b.pull_all()
    seq = a.rows[("plan_action", "x1")]["seq"]
    acks(a.push([a.mutation("plan_action", "x1", "delete", {"_deleted": True}, person_id=pid,
                            base=seq)]))  # fmt: skip
    acks(b.push([b.mutation("plan_action", "x1", "patch", {"what": "call Tuesday"},
                            person_id=pid, base=seq)]))  # fmt: skip
    pa = a.pull_all()
    row = a.rows[("plan_action", "x1")]
    assert row["deleted"] is False and row["values"]["what"] == "call Tuesday"
    (c,) = [c for c in pa["conflicts"] if c["status"] == "open"]
    assert c["kind"] == "delete_vs_edit"
    acks(a.push([a.mutation("plan_action", "x1", "resolve", {"_deleted": True}, person_id=pid,
                            conflict_id=c["id"])]))  # fmt: skip
    b.pull_all()
    assert b.rows[("plan_action", "x1")]["deleted"] is True


def test_t12_contacts_append_only_over_http(server: TestServer) -> None:
    server.worker("alice", team_id="T")
    server.worker("bob", team_id="T")
    a, b = server.laptop("alice"), server.laptop("bob")
    pid = new_person(a)
    server.store.assign(pid, team_id="T")
    acks(a.push([a.mutation("contact", "c1", "insert", {"notes": "visit A"}, person_id=pid)]))
    acks(b.push([b.mutation("contact", "c2", "insert", {"notes": "visit B"}, person_id=pid)]))
    acks(b.push([b.mutation("contact_amendment", "am1", "insert",
                            {"contact_id": "c1", "text": "correction"}, person_id=pid)]))  # fmt: skip
    col = acks(b.push([b.mutation("contact", "c1", "insert", {"notes": "other"}, person_id=pid)]))
    assert (col[0]["status"], col[0]["reason"]) == ("rejected", "id_collision")
    a.pull_all()
    assert a.rows[("contact", "c1")]["values"]["notes"] == "visit A"
    assert ("contact", "c2") in a.rows and ("contact_amendment", "am1") in a.rows
    assert server.store.count("conflict") == 0
    assert server.store.count("quarantine") == 1


def test_duplicate_nhs_number_is_flagged_not_merged(server: TestServer) -> None:
    server.worker("alice")
    a = server.laptop("alice")
    p1 = new_person(a, NHS)
    p2 = new_person(a, "943 476 5919")
    pulled = a.pull_all()
    (c,) = pulled["conflicts"]
    assert c["kind"] == "duplicate_person" and {v["v"] for v in c["values"]} == {p1, p2}
    assert ("person", p1) in a.rows and ("person", p2) in a.rows


def test_two_new_people_with_one_nhs_number_in_one_push_are_flagged(server: TestServer) -> None:
    server.worker("alice")
    a = server.laptop("alice")
    p1, p2 = str(uuid.uuid4()), str(uuid.uuid4())
    out = acks(a.push([a.mutation("person", p, "insert", {"given_name": "Twin", "nhs_number": NHS}) for p in (p1, p2)]))
    assert [x["status"] for x in out] == ["applied", "applied"]
    assert out[0]["conflict_ids"] == [] and len(out[1]["conflict_ids"]) == 1
    (c,) = a.pull_all()["conflicts"]
    assert c["kind"] == "duplicate_person" and {v["v"] for v in c["values"]} == {p1, p2}


_NHS_POOL = ["9434765900", "943 476 5919", "9434765927"]
_PEOPLE = [str(uuid.UUID(int=i + 1)) for i in range(4)]


@st.composite
def _person_ops(draw: st.DrawFn) -> list[tuple[str, int, int | None]]:
    """New people and changes of their NHS numbers (a laptop cannot delete a person), in any order."""
    ops: list[tuple[str, int, int | None]] = []
    added: set[int] = set()
    for _ in range(draw(st.integers(1, 10))):
        who = draw(st.integers(0, len(_PEOPLE) - 1))
        nhs = draw(st.one_of(st.none(), st.integers(0, len(_NHS_POOL) - 1)))
        ops.append(("patch" if who in added else "insert", who, nhs))
        added.add(who)
    return ops


def _duplicates_after(
    ops: list[tuple[str, int, int | None]], server: TestServer, *, batch: bool
) -> set[frozenset[int]]:
    """The pairs of people flagged as duplicates after ``ops``, by their index in the ops; in a practice of its own
    on the shared server, so each example starts from nobody."""
    practice = f"P-{uuid.uuid4().hex[:12]}"
    worker = server.worker(f"w-{uuid.uuid4().hex[:12]}", practice)
    a = server.laptop(worker)
    people = {who: str(uuid.uuid4()) for _op, who, _nhs in ops}
    index = {pid: who for who, pid in people.items()}
    muts = []
    for op, who, nhs in ops:
        fields: dict[str, Any] = {"given_name": f"P{who}", "family_name": "Example"} if op == "insert" else {}
        fields["nhs_number"] = _NHS_POOL[nhs] if nhs is not None else None
        muts.append(a.mutation("person", people[who], op, fields))
    for part in [muts] if batch else [[m] for m in muts]:
        got = acks(a.push(part))
        assert all(x["status"] == "applied" for x in got), (ops, got)
    with server.store.engine.connect() as conn:
        flagged = conn.execute(
            sa.text("SELECT \"values\" FROM conflict WHERE kind = 'duplicate_person' AND status = 'open'")
        ).scalars()
        pairs = [{v["v"] for v in json.loads(values)} for values in flagged]
    return {frozenset(index[p] for p in pair) for pair in pairs if pair <= index.keys()}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_person_ops())
@example(ops=[("insert", 0, 0), ("insert", 1, 0)])  # two new people with one number
@example(ops=[("insert", 0, 0), ("patch", 0, 1), ("insert", 1, 0)])  # renumbered before another takes the number
@example(ops=[("insert", 0, None), ("insert", 1, 2), ("patch", 0, 2)])  # numbered after the other came
def test_duplicate_people_are_found_the_same_within_one_push_as_one_change_a_push(
    ops: list[tuple[str, int, int | None]], sqlite_server: TestServer
) -> None:
    """A push reads the practice's people by the NHS numbers it carries once, then follows its own writes: people
    added and renumbered within one batch are flagged as duplicates exactly as with one change a push."""
    batched = _duplicates_after(ops, sqlite_server, batch=True)
    assert batched == _duplicates_after(ops, sqlite_server, batch=False)


def test_t13_clock_ahead_rejected_then_accepted(server: TestServer) -> None:
    server.worker("alice")
    a = server.laptop("alice")
    year = 365 * 24 * 3600 * 1000
    future = hlc.pack(server.clock() + year, 0)
    r = acks(a.push([a.mutation("person", "p-f", "insert", {"given_name": "F"}, hlc=future)]))
    assert (r[0]["status"], r[0]["reason"]) == ("rejected", "clock_ahead")
    ok = acks(a.push([a.mutation("person", "p-f", "insert", {"given_name": "F"})]))
    assert ok[0]["status"] == "applied"
    # A laptop a year behind still merges; its HLC is just older.
    past = hlc.pack(server.clock() - year, 0)
    assert acks(a.push([a.mutation("person", "p-f", "patch", {"phone": "1"}, hlc=past)]))[0]["status"] == "applied"
    assert hlc.physical_ms(server.store.clock.last) <= server.clock() + hlc.MAX_SKEW_MS


# ---------------------------------------------------------------- scope, GC, versions


def test_t15_scope_quarantine_and_reassignment(server: TestServer) -> None:
    server.worker("alice")
    server.worker("bob")
    a, b = server.laptop("alice"), server.laptop("bob")
    pa, pb = new_person(a), new_person(b)
    acks(a.push([a.mutation("goal", "ga", "insert", {"text": "a"}, person_id=pa)]))
    out = acks(a.push([a.mutation("goal", "gx", "insert", {"text": "x"}, person_id=pb)]))
    assert (out[0]["status"], out[0]["reason"]) == ("rejected", "out_of_scope")
    assert server.store.count("quarantine") == 1
    got = a.pull_all()
    assert {c["person_id"] for c in got["changes"]} == {pa}
    # Oracle: the store holds rows for both people; alice saw only hers.
    with server.store.engine.connect() as conn:
        persons = set(conn.execute(sa.text("SELECT DISTINCT person_id FROM record")).scalars())
    assert persons == {pa, pb}
    b.pull_all()
    server.store.assign(pa, worker_id="bob")
    moved = a.pull_all()
    assert moved["removed_person_ids"] == [pa]
    assert not [k for k, v in a.rows.items() if v["person_id"] == pa]
    back = b.pull_all()
    assert {(c["tbl"], c["id"]) for c in back["changes"]} == {("person", pa), ("goal", "ga")}
    late = acks(a.push([a.mutation("goal", "ga", "patch", {"text": "late"}, person_id=pa)]))
    assert late[0]["reason"] == "out_of_scope"


def test_one_push_reads_its_peoples_assignments_once_and_scope_holds_within_the_batch(server: TestServer) -> None:
    """A batch of new people with their records, and records of someone else's person: the scope checks of the
    whole batch read the assignments once, and still refuse exactly what is out of scope."""
    server.worker("alice")
    server.worker("bob")
    a, b = server.laptop("alice"), server.laptop("bob")
    pb = new_person(b)
    mine = [str(uuid.uuid4()) for _ in range(3)]
    batch = []
    for i, pid in enumerate(mine):
        batch.append(a.mutation("person", pid, "insert", {"given_name": f"New{i}", "family_name": "Person"}))
        batch.append(a.mutation("goal", f"g{i}", "insert", {"text": f"goal {i}"}, person_id=pid))
    batch.append(a.mutation("goal", "gx", "insert", {"text": "not mine"}, person_id=pb))
    # The same id as bob's person: not a new person of alice's, so not hers to take.
    batch.append(a.mutation("person", pb, "insert", {"given_name": "Taken", "family_name": "Over"}))
    reads: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if "FROM assignment" in statement:
            reads.append(statement)

    sa.event.listen(server.store.engine, "before_cursor_execute", note)
    try:
        out = acks(a.push(batch))
    finally:
        sa.event.remove(server.store.engine, "before_cursor_execute", note)
    assert [x["status"] for x in out] == ["applied"] * 6 + ["rejected", "rejected"]
    assert [x["reason"] for x in out[6:]] == ["out_of_scope", "out_of_scope"]
    assert len(reads) == 1, reads
    got = a.pull_all()
    assert {c["person_id"] for c in got["changes"]} == set(mine)
    assert {c["person_id"] for c in b.pull_all()["changes"]} == {pb}


def test_t14_gc_resync_and_no_resurrection(server: TestServer) -> None:
    assert isinstance(server.clock, FakeClock)
    server.worker("alice", team_id="T")
    server.worker("bob", team_id="T")
    a, b = server.laptop("alice"), server.laptop("bob")
    gone = server.laptop("bob", "stolen")
    pid = new_person(a)
    server.store.assign(pid, team_id="T")
    acks(a.push([a.mutation("goal", "g1", "insert", {"text": "t"}, person_id=pid)]))
    a.pull_all(), b.pull_all()
    a.pull_all(), b.pull_all()  # second pulls record both cursors on the server
    # The stolen laptop never pulled; once revoked it must not pin the watermark at 0.
    server.store.revoke_device(gone.device_id)
    assert server.store.gc() == min(a.cursor, b.cursor) > 0
    seq = b.rows[("goal", "g1")]["seq"]
    acks(b.push([b.mutation("goal", "g1", "delete", {"_deleted": True}, person_id=pid, base=seq)]))
    b.pull_all()
    b.pull_all()  # the second pull records b's cursor past the delete
    # alice goes quiet for more than 90 days: she no longer holds tombstones back either.
    server.clock.advance(ACTIVE_DEVICE_MS + 1)
    b.pull_all()
    wm = server.store.gc()
    assert wm >= b.cursor > 0
    assert server.store.get_record("goal", "g1") is None
    r = server.client.get("/v1/sync/pull", params={"cursor": a.cursor}, headers=a.headers)
    assert (r.status_code, r.json()["error"]) == (410, "resync_required")
    snap = server.client.get("/v1/sync/snapshot", headers=a.headers).json()
    assert ("goal", "g1") not in {(c["tbl"], c["id"]) for c in snap["changes"]}
    assert snap["snapshot_seq"] >= wm
    again = acks(a.push([a.mutation("goal", "g1", "insert", {"text": "t"}, person_id=pid)]))
    assert (again[0]["status"], again[0]["reason"]) == ("rejected", "deleted")
    stale = acks(a.push([a.mutation("goal", "g1", "patch", {"text": "u"}, person_id=pid, base=1)]))
    assert stale[0]["status"] == "rejected"
    r = server.client.get("/v1/sync/pull", params={"cursor": snap["snapshot_seq"]}, headers=a.headers)
    assert r.status_code == 200
    e = server.client.get("/v1/sync/pull", params={"cursor": snap["snapshot_seq"], "epoch": "other"}, headers=a.headers)
    assert e.status_code == 410


def test_snapshot_pages_by_keyset(server: TestServer) -> None:
    server.worker("alice")
    a = server.laptop("alice")
    pid = new_person(a)
    acks(a.push([a.mutation("goal", f"g{i:02}", "insert", {"text": "t"}, person_id=pid)
                 for i in range(7)]))  # fmt: skip
    seen: list[tuple[str, str]] = []
    after = None
    while True:
        params = {"limit": 3, **({"after": after} if after else {})}
        page = server.client.get("/v1/sync/snapshot", params=params, headers=a.headers).json()
        seen += [(c["tbl"], c["id"]) for c in page["changes"]]
        after = page["after"]
        if not page["has_more"]:
            break
    assert len(seen) == 8 and len(set(seen)) == 8


def test_t17_schema_and_protocol_versions(db_url: str) -> None:
    s = TestServer(db_url, schema_version=3, protocol_version=3)
    try:
        s.worker("alice")
        a = s.laptop("alice")
        for sch, status, err in [(3, 200, None), (2, 200, None), (1, 426, "client_too_old"),
                                 (4, 426, "server_too_old")]:  # fmt: skip
            r = a.push([], schema_version=sch, protocol_version=3)
            assert r.status_code == status, r.text
            if err:
                assert r.json()["error"] == err
            g = s.client.get(
                "/v1/sync/pull",
                headers={"Authorization": f"Bearer {a.token}", **version_headers(3, sch)},  # fmt: skip
            )
            assert g.status_code == status
        r = a.push([], schema_version=3, protocol_version=1)
        assert r.json()["error"] == "client_too_old"
        missing = s.client.get("/v1/sync/pull", headers={"Authorization": f"Bearer {a.token}"})
        assert missing.status_code == 422
    finally:
        s.close()


@pytest.mark.slow  # fills a large server database to measure the pull
def test_pull_cost_follows_changes_not_database(server: TestServer) -> None:
    server.worker("alice")
    server.worker("bob")
    a, b = server.laptop("alice"), server.laptop("bob")
    pb = new_person(b)
    for _ in range(6):  # 3,000 rows belonging to someone else
        acks(b.push([b.mutation("contact", str(uuid.uuid4()), "insert", {"notes": "n"},
                                person_id=pb) for _ in range(500)]))  # fmt: skip
    a.pull_all()
    pa = new_person(a)
    acks(a.push([a.mutation("goal", f"g{i}", "insert", {"text": "t"}, person_id=pa)
                 for i in range(9)]))  # fmt: skip
    got = a.pull_all()
    assert len(got["changes"]) == 10
    store = server.store
    dev = store.authenticate(a.token)
    q = store.pull_query(dev, a.cursor - 10, 501)
    with store.engine.connect() as conn:
        if store.is_sqlite:
            sql = str(q.compile(store.engine, compile_kwargs={"literal_binds": True}))
            plan = " ".join(r[-1] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
            assert "SEARCH change_log USING INTEGER PRIMARY KEY" in plan, plan
        else:
            conn.exec_driver_sql("ANALYZE")
            sql = str(q.compile(store.engine, compile_kwargs={"literal_binds": True}))
            plan = conn.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + sql).scalar_one()
            touched = _pg_rows(plan[0]["Plan"], "change_log")
            assert touched < 100, touched


def _pg_rows(node: dict[str, Any], rel: str) -> int:
    n = 0
    if node.get("Relation Name") == rel:
        n += int(node.get("Actual Rows", 0)) + int(node.get("Rows Removed by Filter", 0))
    for child in node.get("Plans", []):
        n += _pg_rows(child, rel)
    return n


def test_server_writes_use_the_same_feed(server: TestServer) -> None:
    server.worker("alice")
    a = server.laptop("alice")
    a.pull_all()
    server.store.server_write("community_service", "svc1", {"name": "Walking group", "active": True}, practice_id="P1")
    got = a.pull_all()
    assert [(c["tbl"], c["id"]) for c in got["changes"]] == [("community_service", "svc1")]
    assert got["changes"][0]["meta"]["name"]["dev"] == "server"
    r = acks(a.push([a.mutation("community_service", "svc1", "patch", {"name": "x"})]))
    assert (r[0]["status"], r[0]["reason"]) == ("rejected", "read_only")
    sug = acks(a.push([a.mutation("directory_suggestion", "s1", "insert",
                                  {"service_id": "svc1", "note": "closed"})]))  # fmt: skip
    assert sug[0]["status"] == "applied"
    assert a.pull_all()["changes"] == []  # push-only rows never come back


def test_logs_carry_ids_not_personal_data(server: TestServer, caplog: Any) -> None:
    import logging

    server.worker("alice")
    a = server.laptop("alice")
    with caplog.at_level(logging.INFO, logger="sprx.server"):
        pid = str(uuid.uuid4())
        acks(a.push([a.mutation("person", pid, "insert", {"given_name": "Zebedee", "nhs_number": NHS})]))
        acks(a.push([a.mutation("goal", "gx", "insert", {"text": "x"}, person_id="someone-else")]))
        a.pull_all()
    text = caplog.text
    assert "push" in text and a.device_id in text
    assert "Zebedee" not in text and NHS not in text and "cursor=" not in text


def test_snapshot_sends_each_persons_rows_together_and_people_last(server: TestServer) -> None:
    import base64
    import json

    server.worker("alice")
    a = server.laptop("alice")
    people = [new_person(a) for _ in range(3)]
    for pid in people:
        acks(a.push([a.mutation("goal", str(uuid.uuid4()), "insert", {"text": "t"}, person_id=pid)
                     for _ in range(4)]))  # fmt: skip
    seen: list[tuple[str, str | None, str]] = []
    after = None
    while True:
        params = {"limit": 5, **({"after": after} if after else {})}
        page = server.client.get("/v1/sync/snapshot", params=params, headers=a.headers).json()
        seen += [(c["tbl"], c["person_id"], c["id"]) for c in page["changes"]]
        after = page["after"]
        if not page["has_more"]:
            break
    goals = [s for s in seen if s[0] == "goal"]
    assert goals == sorted(goals, key=lambda s: (s[1], s[2])) and len(goals) == 12
    assert [s[0] for s in seen[-3:]] == ["person"] * 3 and len(set(seen)) == 15
    # A token from before the by-person order (table index into the old order) still resumes:
    # the rest of the snapshot in the old order, nothing skipped.
    epoch = server.store.server_info()["epoch"]
    old = {"s": server.store.server_info()["seq"], "t": 0, "i": "", "e": epoch}
    token = base64.urlsafe_b64encode(json.dumps(old).encode()).decode().rstrip("=")
    page = server.client.get("/v1/sync/snapshot", params={"after": token, "limit": 100}, headers=a.headers).json()
    assert {(c["tbl"], c["id"]) for c in page["changes"]} == {(t, i) for t, _p, i in seen}
    assert [c["tbl"] for c in page["changes"]][:3] == ["person"] * 3  # the old order: people first


def test_pull_bodies_carry_stored_json_as_is(server: TestServer) -> None:
    """Rows go out as stored: a head's other writers ("also") pass through; absent parts stay absent."""
    server.worker("alice")
    a, b = server.laptop("alice", "A"), server.laptop("alice", "B")
    pid = new_person(a)
    acks(a.push([a.mutation("goal", "g1", "insert", {"text": "walk"}, person_id=pid)]))
    base = server.store.get_record("goal", "g1")["meta"]["text"]["seq"]  # type: ignore[index]
    acks(a.push([a.mutation("goal", "g1", "patch", {"text": "cook"}, person_id=pid, base=base)]))
    acks(b.push([b.mutation("goal", "g1", "patch", {"text": "cook"}, person_id=pid, base=base)]))
    raw = server.client.get("/v1/sync/pull", params={"cursor": 0, "limit": 500}, headers=a.headers)
    assert raw.status_code == 200 and '"also":null' not in raw.text.replace(" ", "")
    got = a.pull_all()
    goal = [c for c in got["changes"] if c["id"] == "g1"][-1]
    assert goal["values"]["text"] == "cook" and not got["conflicts"]
    text = goal["meta"]["text"]
    assert {text["dev"], *(w["dev"] for w in text["also"])} == {a.device_id, b.device_id}
    stored = server.store.get_record("goal", "g1")
    assert stored is not None and goal["meta"] == stored["meta"] and goal["values"] == stored["values"]


@pytest.mark.slow  # a real uvicorn subprocess flooded with log lines
def test_uvicorn_server_log_never_blocks_the_server(tmp_path: Any) -> None:
    """The helper used to pipe the server's output without reading it: after ~64 KB of access log
    the server blocked on its next log line and every client hung."""
    import httpx

    from tests.sync.server_harness import uvicorn_server

    log = tmp_path / "server.log"
    with uvicorn_server(f"sqlite:///{tmp_path}/s.db", log=log) as base, httpx.Client(base_url=base, timeout=10) as c:
        for _ in range(1500):  # ~150 KB of access log, well past a pipe buffer
            assert c.get("/healthz").status_code == 200
    assert log.stat().st_size > 100_000
