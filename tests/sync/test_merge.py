"""Merge algebra (sync-anchors T8-T12): order independence, idempotence, conflicts, append-only."""

from __future__ import annotations

import copy
import itertools
import json
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.merge import DELETED, Conflict, Mutation, RowState, apply_mutation

H0 = 1_700_000_000_000 << 16
FIELDS = ["text", "status", "target_on", "progress_notes"]


def base_goal() -> RowState:
    meta = {f: {"hlc": H0, "dev": "X", "seq": 5} for f in FIELDS}
    return RowState(
        tbl="goal",
        id="g1",
        person_id="p1",
        practice_id="P",
        values={"text": "t0", "status": "not_started", "target_on": "2025-01-01", "progress_notes": "n0"},
        meta=meta,  # type: ignore[typeddict-item]
        deleted=False,
        seq=10,
    )


class Replica:
    """A tiny server-side harness: one row, its conflicts, a seq counter."""

    def __init__(self, state: RowState | None, seq: int = 10) -> None:
        self.state = copy.deepcopy(state)
        self.conflicts: dict[str, Conflict] = {}
        self.seq = seq

    def apply(self, m: Mutation, dev: str) -> Any:
        self.seq += 1
        r = apply_mutation(
            self.state,
            m,
            device_id=dev,
            seq=self.seq,
            open_conflicts=[c for c in self.conflicts.values() if c["status"] == "open"],
            practice_id="P",
        )
        if r.status == "applied":
            self.state = r.state
            for c in r.conflicts:
                self.conflicts[c["id"]] = c
        return r

    def canon(self) -> Any:
        s = self.state
        assert s is not None
        meta = {f: (m["hlc"], m["dev"]) for f, m in s["meta"].items() if f != DELETED}
        opened = sorted(
            (
                c["field"],
                c["kind"],
                sorted((json.dumps(h["v"]), h["hlc"], h["dev"]) for h in c["values"]),
                json.dumps(c["values"][c["shown_idx"]]["v"]),
            )
            for c in self.conflicts.values()
            if c["status"] == "open"
        )
        return (s["deleted"], s["values"], meta, opened)


def patch(fields: dict[str, Any], hlc: int, base: int | None = 10, mid: int = 1) -> Mutation:
    return Mutation(
        mutation_id=mid,
        tbl="goal",
        row_id="g1",
        person_id="p1",
        op="patch",
        fields={f: {"v": v, "hlc": hlc, "base_seq": base} for f, v in fields.items()},
        hlc=hlc,
    )


def delete(hlc: int, base: int = 10) -> Mutation:
    return Mutation(
        mutation_id=1,
        tbl="goal",
        row_id="g1",
        person_id="p1",
        op="delete",
        fields={DELETED: {"v": True, "hlc": hlc, "base_seq": base}},
        hlc=hlc,
    )


values_st = {
    "text": st.sampled_from(["a", "b", "c"]),
    "status": st.sampled_from(["in_progress", "achieved", "dropped"]),
    "target_on": st.sampled_from(["2025-02-01", "2025-03-01"]),
    "progress_notes": st.sampled_from(["x", "y"]),
}


@st.composite
def concurrent_mutation(draw: st.DrawFn) -> Mutation:
    hlc = H0 + ((1 + draw(st.integers(0, 3))) << 16) + draw(st.integers(0, 2))
    if draw(st.integers(0, 4)) == 0:
        return delete(hlc)
    chosen = draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=4, unique=True))
    return patch({f: draw(values_st[f]) for f in chosen}, hlc)


@settings(max_examples=400, deadline=None)
@given(st.lists(concurrent_mutation(), min_size=3, max_size=3))
@pytest.mark.slow  # a large hypothesis run
def test_any_arrival_order_of_three_concurrent_mutations_converges(muts: list[Mutation]) -> None:
    devs = ["A", "B", "C"]
    results = set()
    for perm in itertools.permutations(range(3)):
        rep = Replica(base_goal())
        for i in perm:
            rep.apply(muts[i], devs[i])
        results.add(json.dumps(rep.canon(), sort_keys=True))
    assert len(results) == 1, results


@settings(max_examples=200, deadline=None)
@given(st.lists(concurrent_mutation(), min_size=1, max_size=3))
def test_applying_a_mutation_twice_equals_once(muts: list[Mutation]) -> None:
    once, twice = Replica(base_goal()), Replica(base_goal())
    for i, m in enumerate(muts):
        once.apply(m, f"D{i}")
        twice.apply(m, f"D{i}")
        twice.apply(m, f"D{i}")
    assert once.canon() == twice.canon()


def test_merge_never_reads_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom() -> float:
        raise AssertionError("merge read the clock")

    monkeypatch.setattr(time, "time", boom)
    monkeypatch.setattr(time, "time_ns", boom)
    rep = Replica(base_goal())
    rep.apply(patch({"text": "a"}, H0 + (1 << 16)), "A")
    rep.apply(patch({"text": "b"}, H0 + (2 << 16)), "B")
    rep.apply(delete(H0 + (3 << 16)), "C")


def test_t9_concurrent_text_edits_keep_both_values_and_resolve() -> None:
    rep = Replica(base_goal())
    assert rep.apply(patch({"text": "walk on Tuesdays"}, H0 + (1 << 16)), "A").status == "applied"
    r = rep.apply(patch({"text": "join the choir"}, H0 + (2 << 16)), "B")
    assert len(r.conflicts) == 1
    c = r.conflicts[0]
    assert c["kind"] == "concurrent_edit" and c["status"] == "open"
    assert {h["v"] for h in c["values"]} == {"walk on Tuesdays", "join the choir"}
    # Display winner is the LWW winner by (hlc, device).
    assert rep.state is not None and rep.state["values"]["text"] == "join the choir"
    assert c["values"][c["shown_idx"]]["v"] == "join the choir"
    res = Mutation(
        mutation_id=2,
        tbl="goal",
        row_id="g1",
        person_id="p1",
        op="resolve",
        fields={"text": {"v": "walk on Tuesdays", "hlc": H0 + (1 << 16), "base_seq": 12}},
        hlc=H0 + (1 << 16),
        conflict_id=c["id"],
    )
    r2 = rep.apply(res, "B")
    assert r2.status == "applied"
    closed = r2.conflicts[0]
    assert closed["status"] == "resolved"
    assert rep.state["values"]["text"] == "walk on Tuesdays"
    # The resolving HLC dominates every value it replaced, even from a slow clock.
    assert rep.state["meta"]["text"]["hlc"] > H0 + (2 << 16)
    # Resolving again is refused, never applied twice.
    assert rep.apply(res, "A").reason == "conflict_closed"


def test_t10_different_fields_and_same_device_twice_never_conflict() -> None:
    rep = Replica(base_goal())
    rep.apply(patch({"text": "a"}, H0 + (1 << 16)), "A")
    rep.apply(patch({"target_on": "2026-01-01"}, H0 + (2 << 16)), "B")
    rep.apply(patch({"text": "a2"}, H0 + (3 << 16)), "A")  # same laptop, still offline base
    assert rep.state is not None
    assert rep.state["values"]["text"] == "a2"
    assert rep.state["values"]["target_on"] == "2026-01-01"
    assert not rep.conflicts


def test_edit_that_saw_the_conflict_closes_it() -> None:
    rep = Replica(base_goal())
    rep.apply(patch({"text": "a"}, H0 + (1 << 16)), "A")
    rep.apply(patch({"text": "b"}, H0 + (2 << 16)), "B")
    assert rep.state is not None
    rep.apply(patch({"text": "merged"}, H0 + (3 << 16), base=rep.state["meta"]["text"]["seq"]), "C")
    assert rep.state["values"]["text"] == "merged"
    assert all(c["status"] == "resolved" for c in rep.conflicts.values())


@pytest.mark.parametrize("order", ["delete_first", "edit_first"])
def test_t11_delete_vs_edit_keeps_row_live_then_confirm_tombstones(order: str) -> None:
    rep = Replica(base_goal())
    d, e = delete(H0 + (1 << 16)), patch({"text": "edited"}, H0 + (2 << 16))
    for m, dev in [(d, "A"), (e, "B")] if order == "delete_first" else [(e, "B"), (d, "A")]:
        assert rep.apply(m, dev).status == "applied"
    assert rep.state is not None and rep.state["deleted"] is False
    assert rep.state["values"]["text"] == "edited"
    (c,) = [c for c in rep.conflicts.values() if c["status"] == "open"]
    assert c["kind"] == "delete_vs_edit"
    confirm = Mutation(
        mutation_id=3,
        tbl="goal",
        row_id="g1",
        op="resolve",
        fields={DELETED: {"v": True, "hlc": H0 + (5 << 16)}},
        hlc=H0 + (5 << 16),
        conflict_id=c["id"],
    )
    assert rep.apply(confirm, "A").status == "applied"
    assert rep.state["deleted"] is True
    assert not [c for c in rep.conflicts.values() if c["status"] == "open"]


def test_plain_delete_tombstones_and_id_cannot_come_back() -> None:
    rep = Replica(base_goal())
    rep.apply(delete(H0 + (1 << 16)), "A")
    assert rep.state is not None and rep.state["deleted"]
    ins = Mutation(
        mutation_id=9, tbl="goal", row_id="g1", person_id="p1", op="insert",
        fields={"text": {"v": "again"}}, hlc=H0 + (9 << 16),
    )  # fmt: skip
    assert rep.apply(ins, "A").reason == "deleted"
    # An edit made after seeing the delete is refused, not resurrected.
    assert rep.apply(patch({"text": "late"}, H0 + (9 << 16), base=11), "B").reason == "deleted"


def contact_insert(notes: str, row: str = "c1") -> Mutation:
    f = {"notes": notes, "mode": "home_visit", "occurred_at": "2025-05-01T10:00:00"}
    return Mutation(
        mutation_id=1,
        tbl="contact",
        row_id=row,
        person_id="p1",
        op="insert",
        fields={k: {"v": v, "hlc": H0} for k, v in f.items()},
        hlc=H0,
    )


def test_t12_contacts_are_append_only() -> None:
    rep = Replica(None)
    assert rep.apply(contact_insert("visit"), "A").status == "applied"
    assert rep.apply(contact_insert("visit"), "A").status == "duplicate"
    r = rep.apply(contact_insert("different body"), "B")
    assert (r.status, r.reason) == ("rejected", "id_collision")
    assert rep.state is not None and rep.state["values"]["notes"] == "visit"
    bad = Mutation(
        mutation_id=2, tbl="contact", row_id="c1", person_id="p1", op="patch",
        fields={"notes": {"v": "rewritten", "hlc": H0 + 1}}, hlc=H0 + 1,
    )  # fmt: skip
    assert apply_mutation(rep.state, bad, device_id="A", seq=99, open_conflicts=[]).reason == ("immutable_field")
    ok = Mutation(
        mutation_id=3, tbl="contact", row_id="c1", person_id="p1", op="patch",
        fields={"entered_in_error": {"v": True, "hlc": H0 + 2}}, hlc=H0 + 2,
    )  # fmt: skip
    assert rep.apply(ok, "A").status == "applied"
    assert rep.state["values"]["notes"] == "visit"
    d = Mutation(
        mutation_id=4, tbl="contact", row_id="c1", person_id="p1", op="delete",
        fields={}, hlc=H0 + 3,
    )  # fmt: skip
    assert rep.apply(d, "A").reason == "not_deletable"
    assert not rep.conflicts


@pytest.mark.parametrize(
    ("tbl", "op", "fields", "reason"),
    [
        ("nope", "insert", {}, "unknown_table"),
        ("goal", "insert", {"secret": {"v": 1}}, "unknown_field"),
        ("community_service", "insert", {"name": {"v": "x"}}, "read_only"),
        ("goal", "patch", {"text": {"v": "x"}}, "not_found"),
    ],
)
def test_rejections(tbl: str, op: str, fields: dict[str, Any], reason: str) -> None:
    m = Mutation(mutation_id=1, tbl=tbl, row_id="r", person_id="p1", op=op, fields=fields, hlc=H0)
    r = apply_mutation(None, m, device_id="A", seq=1, open_conflicts=[])
    assert (r.status, r.reason) == ("rejected", reason)


def test_an_equal_value_from_another_device_survives_when_one_writer_moves_on() -> None:
    """Two laptops type the same words offline; one of them then edits again without seeing the other.

    The shared value is one head (no conflict between equal texts), but it is still the other
    laptop's live write: the later edit replaces only its own device's write, so the value stays.
    """
    for order in ([0, 1, 2], [1, 2, 0], [1, 0, 2]):
        rep = Replica(base_goal())
        muts = [
            (patch({"text": "cook"}, H0 + (1 << 16)), "A"),
            (patch({"text": "cook"}, H0 + (2 << 16)), "B"),
            (patch({"text": "paint"}, H0 + (3 << 16)), "B"),
        ]
        for i in order:
            assert rep.apply(*muts[i]).status == "applied"
        (c,) = [c for c in rep.conflicts.values() if c["status"] == "open"]
        assert sorted(h["v"] for h in c["values"]) == ["cook", "paint"], order
        cook = next(h for h in c["values"] if h["v"] == "cook")
        assert (cook["dev"], cook.get("also")) == ("A", None)


def test_equal_values_from_two_devices_are_one_head_that_remembers_both() -> None:
    rep = Replica(base_goal())
    rep.apply(patch({"text": "cook"}, H0 + (1 << 16)), "A")
    rep.apply(patch({"text": "cook"}, H0 + (2 << 16)), "B")
    assert not rep.conflicts  # the same words: nothing for a person to choose
    assert rep.state is not None
    meta = rep.state["meta"]["text"]
    assert meta["dev"] == "B" and [w["dev"] for w in meta.get("also", [])] == ["A"]
    # A later edit by A alone leaves B's unseen "cook" live.
    rep.apply(patch({"text": "swim"}, H0 + (3 << 16)), "A")
    (c,) = rep.conflicts.values()
    assert sorted(h["v"] for h in c["values"]) == ["cook", "swim"]
    # An edit made after seeing the value (base past it) replaces it for everyone.
    rep.apply(patch({"text": "read"}, H0 + (4 << 16), base=rep.seq), "C")
    assert rep.state["values"]["text"] == "read"
    assert all(c["status"] == "resolved" for c in rep.conflicts.values())


def test_a_value_over_the_size_limit_is_refused_with_a_plain_reason() -> None:
    from sync.merge import MAX_VALUE_BYTES

    rep = Replica(base_goal())
    big = "x" * (MAX_VALUE_BYTES + 1)
    r = rep.apply(patch({"progress_notes": big}, H0 + (1 << 16)), "A")
    assert (r.status, r.reason) == ("rejected", "too_large")
    assert r.detail is not None and "progress_notes" in r.detail and "64 KiB" in r.detail
    assert rep.state is not None and rep.state["values"]["progress_notes"] == "n0"
    # At the limit is fine, and escaped characters count as they travel (JSON, UTF-8).
    fits = "y" * (MAX_VALUE_BYTES - 2)
    assert rep.apply(patch({"progress_notes": fits}, H0 + (2 << 16)), "A").status == "applied"
    wide = "\U0001f600" * (MAX_VALUE_BYTES // 12 + 1)  # 12 bytes each once escaped
    assert rep.apply(patch({"progress_notes": wide}, H0 + (3 << 16)), "A").reason == "too_large"
    ins = Mutation(
        mutation_id=1, tbl="contact", row_id="c9", person_id="p1", op="insert",
        fields={"notes": {"v": big, "hlc": H0}, "mode": {"v": "phone", "hlc": H0}}, hlc=H0,
    )  # fmt: skip
    assert apply_mutation(None, ins, device_id="A", seq=1, open_conflicts=[]).reason == "too_large"


def test_unknown_field_names_are_cut_short_in_the_reason() -> None:
    name = "x" * 5000 + "\n\x1b[2J"
    m = Mutation(mutation_id=1, tbl="goal", row_id="g1", person_id="p1", op="patch",
                 fields={name: {"v": 1, "hlc": H0}}, hlc=H0)  # fmt: skip
    r = apply_mutation(base_goal(), m, device_id="A", seq=11, open_conflicts=[])
    assert r.reason == "unknown_field"
    assert r.detail is not None and len(r.detail) < 80 and "\x1b" not in r.detail and "…" in r.detail
