"""The one pure, deterministic merge of a pushed mutation into a row (used by server and client)."""

from __future__ import annotations

import copy
import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, TypedDict

from sync.schema import TABLES, Kind, Rule, TableSpec

SERVER_DEVICE = "server"
"""Device id stamped on server-originated writes (admin imports, directory)."""

DELETED = "_deleted"
"""Pseudo-field: a delete's base_seq rides here; a delete_vs_edit conflict is resolved on it."""

CONFLICT_NS = uuid.UUID("6f1d7c52-3f0e-4f7e-9d8a-5b3c1e2a9d40")

MAX_VALUE_BYTES = 64 * 1024
"""Largest value one field may carry (its JSON encoding, UTF-8). A bigger one is refused as
``too_large``: kept and shown on the laptop, never applied, and it does not hold up the queue."""
SHOWN_NAME_CHARS = 40
"""Field names from a request are quoted in rejection details at most this long."""

Status = Literal["applied", "duplicate", "rejected"]


class Writer(TypedDict):
    hlc: int
    dev: str
    seq: int


class FieldMeta(TypedDict):
    hlc: int
    dev: str
    seq: int
    also: NotRequired[list[Writer]]
    """Narrative fields only: other devices that wrote the same value concurrently (see ``_apply_mvr``)."""


class RowState(TypedDict):
    tbl: str
    id: str
    person_id: str | None
    practice_id: str
    values: dict[str, Any]
    meta: dict[str, FieldMeta]
    deleted: bool
    seq: int


class FieldChange(TypedDict):
    v: Any
    hlc: NotRequired[int]
    base_seq: NotRequired[int | None]


class Mutation(TypedDict):
    mutation_id: int
    tbl: str
    row_id: str
    person_id: NotRequired[str | None]
    op: str
    fields: dict[str, FieldChange]
    hlc: int
    conflict_id: NotRequired[str | None]


class ConflictValue(TypedDict):
    v: Any
    hlc: int
    dev: str
    seq: int
    also: NotRequired[list[Writer]]
    """Other devices that wrote this same value concurrently; absent when there are none."""


class Conflict(TypedDict):
    id: str
    tbl: str
    row_id: str
    person_id: str | None
    field: str
    kind: str  # concurrent_edit | delete_vs_edit | duplicate_person
    values: list[ConflictValue]
    shown_idx: int
    status: str  # open | resolved
    resolution: dict[str, Any] | None
    seq: int


@dataclass
class MergeResult:
    status: Status
    state: RowState | None
    reason: str | None = None
    detail: str | None = None
    changed: bool = False
    conflicts: list[Conflict] = field(default_factory=list)
    """Conflicts opened, updated or closed by this mutation (full new copies)."""


def conflict_id(tbl: str, row_id: str, fld: str, seq: int) -> str:
    """Deterministic id of the conflict opened on a field at a given server seq."""
    return str(uuid.uuid5(CONFLICT_NS, f"{tbl}/{row_id}/{fld}/{seq}"))


def _shown(name: str) -> str:
    """A field name from the wire, safe to quote in a sentence: printable and at most SHOWN_NAME_CHARS."""
    clean = "".join(ch if ch.isprintable() else "?" for ch in name[: SHOWN_NAME_CHARS + 1])
    return clean if len(clean) <= SHOWN_NAME_CHARS else clean[: SHOWN_NAME_CHARS - 1] + "…"


def _too_large(v: Any) -> bool:
    if isinstance(v, str) and len(v) <= MAX_VALUE_BYTES // 12:
        return False  # even with every character escaped as a surrogate pair it fits: no need to encode
    return isinstance(v, str | list | dict) and len(_key(v).encode()) > MAX_VALUE_BYTES


def _key(v: Any) -> str:
    # Canonical JSON so equal values compare equal whatever their dict key order.
    return json.dumps(v, sort_keys=True, separators=(",", ":"))


def _order(h: ConflictValue | FieldMeta) -> tuple[int, str]:
    return (h["hlc"], h["dev"])


def _reject(state: RowState | None, reason: str, detail: str) -> MergeResult:
    return MergeResult("rejected", state, reason, detail)


def _field_hlc(fc: FieldChange, m: Mutation) -> int:
    return int(fc.get("hlc") or m["hlc"])


def _base(fc: FieldChange | None, m: Mutation) -> int:
    if fc is not None and fc.get("base_seq") is not None:
        return int(fc["base_seq"] or 0)
    top = m.get("base_seq")  # type: ignore[misc]
    return int(top) if isinstance(top, int) else 0


def _mk_conflict(st: RowState, fld: str, kind: str, values: list[ConflictValue], seq: int, shown: int) -> Conflict:
    return Conflict(
        id=conflict_id(st["tbl"], st["id"], fld, seq),
        tbl=st["tbl"],
        row_id=st["id"],
        person_id=st["person_id"],
        field=fld,
        kind=kind,
        values=values,
        shown_idx=shown,
        status="open",
        resolution=None,
        seq=seq,
    )


def _close(c: Conflict, resolution: dict[str, Any], seq: int) -> Conflict:
    c = copy.deepcopy(c)
    c["status"] = "resolved"
    c["resolution"] = resolution
    c["seq"] = seq
    return c


class _Ctx:
    """Working copy of one merge: state, the row's open conflicts, and what changed."""

    def __init__(self, st: RowState, open_conflicts: list[Conflict], dev: str, seq: int) -> None:
        self.st = st
        self.dev = dev
        self.seq = seq
        self.open = {
            (c["field"], c["kind"]): copy.deepcopy(c)
            for c in open_conflicts
            if c["tbl"] == st["tbl"] and c["row_id"] == st["id"] and c["status"] == "open"
        }
        self.touched: dict[str, Conflict] = {}
        self.changed = False

    def put(self, c: Conflict) -> None:
        self.touched[c["id"]] = c
        if c["status"] == "open":
            self.open[(c["field"], c["kind"])] = c
        else:
            self.open.pop((c["field"], c["kind"]), None)

    def result(self) -> MergeResult:
        if self.changed:
            self.st["seq"] = self.seq
        return MergeResult("applied", self.st, changed=self.changed, conflicts=list(self.touched.values()))


def _apply_lww(cx: _Ctx, fld: str, v: Any, hlc: int) -> None:
    meta = cx.st["meta"].get(fld)
    if meta is not None and (hlc, cx.dev) <= _order(meta):
        return  # an older write loses; nothing to store
    cx.st["values"][fld] = v
    cx.st["meta"][fld] = FieldMeta(hlc=hlc, dev=cx.dev, seq=cx.seq)
    cx.changed = True


def _writers(h: ConflictValue | FieldMeta) -> list[Writer]:
    """Every write a head stands for: its shown writer first, then the other devices that wrote the same value."""
    return [Writer(hlc=h["hlc"], dev=h["dev"], seq=h["seq"]), *h.get("also", [])]


def _head(v: Any, writers: list[Writer]) -> ConflictValue:
    """One head from the writers of one value: the newest writer is shown, one entry per device."""
    newest: dict[str, Writer] = {}
    for w in writers:
        if w["dev"] not in newest or (w["hlc"], w["seq"]) > (newest[w["dev"]]["hlc"], newest[w["dev"]]["seq"]):
            newest[w["dev"]] = w
    ordered = sorted(newest.values(), key=_order)
    top = ordered[-1]
    h = ConflictValue(v=v, hlc=top["hlc"], dev=top["dev"], seq=top["seq"])
    if len(ordered) > 1:
        h["also"] = [Writer(hlc=w["hlc"], dev=w["dev"], seq=w["seq"]) for w in ordered[:-1]]
    return h


def _apply_mvr(cx: _Ctx, fld: str, v: Any, hlc: int, base: int) -> None:
    st = cx.st
    existing = cx.open.get((fld, "concurrent_edit"))
    heads = _field_heads(st, fld, existing)
    key = _key(v)
    if any(_key(h["v"]) == key and any(w["dev"] == cx.dev and w["hlc"] == hlc for w in _writers(h)) for h in heads):
        return  # this exact write is already a head
    # A write is superseded when the writer had seen it (its seq <= base) or when it is an older
    # write of the same device: one laptop's edits are causally ordered, never concurrent.
    # Equal values are one head (no conflict between two people who typed the same words), but
    # the head remembers each device that wrote it: a later edit by one of them replaces only
    # that device's write, and the value stays while another device's unseen write of it is live.
    by_value: dict[str, tuple[Any, list[Writer]]] = {}
    for h in heads:
        alive = [w for w in _writers(h) if not (w["seq"] <= base or (w["dev"] == cx.dev and w["hlc"] <= hlc))]
        if alive:
            by_value.setdefault(_key(h["v"]), (h["v"], []))[1].extend(alive)
    by_value.setdefault(key, (v, []))[1].append(Writer(hlc=hlc, dev=cx.dev, seq=cx.seq))
    # The head set depends only on the set of writes, never on their arrival order.
    heads2 = sorted((_head(val, ws) for val, ws in by_value.values()), key=_order)
    winner = heads2[-1]
    old_meta = st["meta"].get(fld)
    before = existing["values"] if existing is not None else heads
    winner_moved = (
        old_meta is None or _order(old_meta) != _order(winner) or _key(st["values"].get(fld)) != _key(winner["v"])
    )
    if before == heads2 and not winner_moved:
        return
    st["values"][fld] = winner["v"]
    meta = FieldMeta(hlc=winner["hlc"], dev=winner["dev"], seq=cx.seq)
    if len(heads2) == 1 and winner.get("also"):
        meta["also"] = winner["also"]
    st["meta"][fld] = meta
    cx.changed = True
    _put_heads(cx, fld, existing, heads2)


def _field_heads(st: RowState, fld: str, existing: Conflict | None) -> list[ConflictValue]:
    """A field's live values: the open concurrent_edit conflict's, else its one stored value (if ever written)."""
    if existing is not None:
        return list(existing["values"])
    if fld not in st["meta"]:
        return []
    m = st["meta"][fld]
    heads = [ConflictValue(v=st["values"].get(fld), hlc=m["hlc"], dev=m["dev"], seq=m["seq"])]
    if m.get("also"):
        heads[0]["also"] = list(m["also"])
    return heads


def _put_heads(cx: _Ctx, fld: str, existing: Conflict | None, heads2: list[ConflictValue]) -> None:
    """Open or widen the concurrent_edit conflict while two or more values are live; close it at one."""
    if len(heads2) > 1:
        if existing is None:
            c = _mk_conflict(cx.st, fld, "concurrent_edit", heads2, cx.seq, len(heads2) - 1)
        else:
            c = copy.deepcopy(existing)
            c["values"] = heads2
            c["shown_idx"] = len(heads2) - 1
            c["seq"] = cx.seq
        cx.put(c)
    elif existing is not None:
        winner = heads2[-1]
        res = {"v": winner["v"], "hlc": winner["hlc"], "dev": winner["dev"], "by": "edit"}
        cx.put(_close(existing, res, cx.seq))


def _note_keep(cx: _Ctx, keep: ConflictValue, delete: ConflictValue) -> None:
    """Open or widen the delete_vs_edit conflict: the newest delete and the newest keep."""
    existing = cx.open.get((DELETED, "delete_vs_edit"))
    if existing is not None:
        dels = [h for h in existing["values"] if h["v"] is True] + [delete]
        keeps = [h for h in existing["values"] if h["v"] is False] + [keep]
    else:
        dels, keeps = [delete], [keep]
    d = max(dels, key=_order)
    k = max(keeps, key=_order)
    values = [d, k]
    if existing is not None:
        if existing["values"] == values:
            return
        c = copy.deepcopy(existing)
        c["values"] = values
        c["shown_idx"] = 1
        c["seq"] = cx.seq
    else:
        c = _mk_conflict(cx.st, DELETED, "delete_vs_edit", values, cx.seq, 1)
    cx.put(c)
    cx.changed = True


def _insert(state: RowState | None, m: Mutation, ts: TableSpec, dev: str, seq: int, practice_id: str) -> MergeResult:
    fields = m["fields"]
    if state is not None:
        if state["deleted"]:
            return _reject(state, "deleted", "This record was deleted and cannot be re-created.")
        immut = [f for f, r in ts.fields.items() if r is Rule.IMMUTABLE]
        compare = immut if immut else list(fields)
        same = all(_key(fields[f]["v"] if f in fields else None) == _key(state["values"].get(f)) for f in compare)
        if same:
            return MergeResult("duplicate", state)
        return _reject(state, "id_collision", "A different record already has this id.")
    if ts.name == "person":
        person_id: str | None = m["row_id"]
    elif ts.person_scoped:
        person_id = m.get("person_id")
        # Audit events such as "unlocked" belong to no person; every other scoped row needs one.
        if not person_id and ts.kind is not Kind.PUSH_ONLY:
            return _reject(None, "missing_person", "This record needs a person.")
    else:
        person_id = None
    st = RowState(
        tbl=ts.name,
        id=m["row_id"],
        person_id=person_id,
        practice_id=practice_id,
        values={f: fc["v"] for f, fc in fields.items()},
        meta={f: FieldMeta(hlc=_field_hlc(fc, m), dev=dev, seq=seq) for f, fc in fields.items()},
        deleted=False,
        seq=seq,
    )
    return MergeResult("applied", st, changed=True)


def _patch(cx: _Ctx, m: Mutation, ts: TableSpec) -> MergeResult:
    st = cx.st
    fields = m["fields"]
    for f, fc in fields.items():
        if ts.rule(f) is Rule.IMMUTABLE and _key(fc["v"]) != _key(st["values"].get(f)):
            return _reject(st, "immutable_field", f"The field {f} cannot be changed.")
    if ts.kind is Kind.PUSH_ONLY:
        return _reject(st, "push_only", "This record cannot be changed once sent.")
    base = min((_base(fc, m) for fc in fields.values()), default=0)
    dmeta = st["meta"].get(DELETED)
    revived = False
    if st["deleted"]:
        # An edit made without seeing the delete is concurrent with it: keep the row live and
        # ask a person, so an edit is never silently lost. An edit after the delete is refused.
        if dmeta is None or dmeta["dev"] == cx.dev or base >= dmeta["seq"]:
            return _reject(st, "deleted", "This record was deleted.")
        st["deleted"] = False
        revived = True
    for f, fc in fields.items():
        rule = ts.rule(f)
        if rule is Rule.LWW:
            _apply_lww(cx, f, fc["v"], _field_hlc(fc, m))
        elif rule is Rule.MVR:
            _apply_mvr(cx, f, fc["v"], _field_hlc(fc, m), _base(fc, m))
    if revived and not cx.changed:
        st["deleted"] = True  # the edit changed nothing visible: the delete stands
        return _reject(st, "deleted", "This record was deleted.")
    if dmeta is not None and dmeta["dev"] != cx.dev and base < dmeta["seq"] and cx.changed:
        edited = [_field_hlc(fc, m) for f, fc in fields.items() if ts.rule(f) is not Rule.IMMUTABLE]
        keep = ConflictValue(v=False, hlc=max(edited), dev=cx.dev, seq=cx.seq)
        delete = ConflictValue(v=True, hlc=dmeta["hlc"], dev=dmeta["dev"], seq=dmeta["seq"])
        _note_keep(cx, keep, delete)
    return cx.result()


def _tombstone(cx: _Ctx, hlc: int) -> None:
    cx.st["deleted"] = True
    cx.st["meta"][DELETED] = FieldMeta(hlc=hlc, dev=cx.dev, seq=cx.seq)
    cx.changed = True
    for c in list(cx.open.values()):
        cx.put(_close(c, {"deleted": True, "by": "delete"}, cx.seq))


def _delete(cx: _Ctx, m: Mutation, ts: TableSpec) -> MergeResult:
    st = cx.st
    if not ts.deletable:
        return _reject(st, "not_deletable", "This kind of record cannot be deleted.")
    fc = m["fields"].get(DELETED)
    base = _base(fc, m)
    hlc = _field_hlc(fc, m) if fc else int(m["hlc"])
    if st["deleted"]:
        dmeta = st["meta"].get(DELETED)
        if dmeta is not None and (hlc, cx.dev) > _order(dmeta):
            # Two laptops deleted the same row: remember the newest delete, as LWW would.
            st["meta"][DELETED] = FieldMeta(hlc=hlc, dev=cx.dev, seq=cx.seq)
            cx.changed = True
            return cx.result()
        return MergeResult("duplicate", st)
    # Edits this device had not seen when it deleted: the field winners plus any open
    # concurrent heads. Their newest one is the "keep" side of the conflict.
    seen: list[ConflictValue] = [
        ConflictValue(v=False, hlc=w["hlc"], dev=w["dev"], seq=w["seq"])
        for f, fm in st["meta"].items()
        if f != DELETED
        for w in _writers(fm)
    ]
    for c in cx.open.values():
        if c["kind"] == "concurrent_edit":
            writers = [w for h in c["values"] for w in _writers(h)]
            seen += [ConflictValue(v=False, hlc=w["hlc"], dev=w["dev"], seq=w["seq"]) for w in writers]
    dve = cx.open.get((DELETED, "delete_vs_edit"))
    if dve is not None and any(h["v"] is True and _order(h) >= (hlc, cx.dev) for h in dve["values"]):
        return MergeResult("duplicate", st)  # this delete (or a newer one) is already recorded
    concurrent = [h for h in seen if h["seq"] > base and h["dev"] != cx.dev]
    if not concurrent:
        _tombstone(cx, hlc)
        return cx.result()
    st["meta"][DELETED] = FieldMeta(hlc=hlc, dev=cx.dev, seq=cx.seq)
    keep = max(concurrent, key=_order)
    keep = ConflictValue(v=False, hlc=keep["hlc"], dev=keep["dev"], seq=keep["seq"])
    _note_keep(cx, keep, ConflictValue(v=True, hlc=hlc, dev=cx.dev, seq=cx.seq))
    cx.changed = True
    return cx.result()


def _resolve(cx: _Ctx, m: Mutation) -> MergeResult:
    st = cx.st
    cid = m.get("conflict_id")
    target = next((c for c in cx.open.values() if c["id"] == cid), None)
    if target is None:
        return _reject(st, "conflict_closed", "This conflict is already resolved or does not exist.")
    fields = m["fields"]
    fc = fields.get(target["field"]) or (next(iter(fields.values())) if fields else None)
    if fc is None:
        return _reject(st, "invalid", "A resolution needs the chosen value.")
    # The resolving write must dominate every value it replaces, whatever the laptop's clock.
    hlc = max(_field_hlc(fc, m), max((h["hlc"] for h in target["values"]), default=0) + 1)
    res = {"v": fc["v"], "hlc": hlc, "dev": cx.dev, "seq": cx.seq, "by": "resolve"}
    if target["kind"] == "concurrent_edit":
        st["values"][target["field"]] = fc["v"]
        st["meta"][target["field"]] = FieldMeta(hlc=hlc, dev=cx.dev, seq=cx.seq)
        cx.put(_close(target, res, cx.seq))
        cx.changed = True
    elif target["kind"] == "delete_vs_edit":
        if fc["v"] is True:
            cx.put(_close(target, res, cx.seq))
            _tombstone(cx, hlc)
        else:
            # Keeping the row ends the delete; later edits are ordinary edits again.
            st["meta"].pop(DELETED, None)
            cx.put(_close(target, res, cx.seq))
            cx.changed = True
    else:
        cx.put(_close(target, res, cx.seq))
        cx.changed = True
    return cx.result()


def _refuse_fields(state: RowState | None, m: Mutation, ts: TableSpec, device_id: str) -> MergeResult | None:
    """A refusal for who may write the table and which fields it carries (known, not too large), or None."""
    if ts.kind is Kind.SERVER and device_id != SERVER_DEVICE:
        return _reject(state, "read_only", "The services directory is maintained on the server.")
    op = m.get("op")
    fields = m.get("fields") or {}
    if op != "resolve":
        for f in fields:
            if f not in ts.fields and not (op == "delete" and f == DELETED):
                return _reject(state, "unknown_field", f"The field {_shown(f)} does not sync.")
    for f, fc in fields.items():
        if _too_large(fc.get("v") if isinstance(fc, dict) else None):
            return _reject(
                state,
                "too_large",
                f"The field {_shown(f)} is too long to sync (over {MAX_VALUE_BYTES // 1024} KiB); "
                "shorten it and save again.",
            )
    return None


def _refuse_change(state: RowState, m: Mutation, ts: TableSpec) -> MergeResult | None:
    """A refusal for a change to an existing row (another person's, sent-once, immutable fields), or None."""
    pid = m.get("person_id")
    if pid and state["person_id"] and pid != state["person_id"]:
        return _reject(state, "person_mismatch", "This record belongs to a different person.")
    if ts.kind is Kind.PUSH_ONLY:
        return _reject(state, "push_only", "This record cannot be changed once sent.")
    fields = m.get("fields") or {}
    if m.get("op") == "patch" and ts.kind is Kind.APPEND:
        for f in fields:
            if ts.rule(f) is Rule.IMMUTABLE and _key(fields[f]["v"]) != _key(state["values"].get(f)):
                return _reject(state, "immutable_field", f"The field {f} cannot be changed.")
    return None


def apply_mutation(
    state: RowState | None,
    m: Mutation,
    *,
    device_id: str,
    seq: int,
    open_conflicts: list[Conflict],
    practice_id: str = "",
) -> MergeResult:
    """Merge one mutation into a row's state; pure and deterministic (no clock, no I/O).

    ``seq`` is the server sequence this change will carry; ``open_conflicts`` are the row's
    open conflicts. The input state is never modified.
    """
    ts = TABLES.get(m.get("tbl", ""))
    if ts is None:
        return _reject(state, "unknown_table", "This kind of record does not sync.")
    refused = _refuse_fields(state, m, ts, device_id)
    if refused is not None:
        return refused
    op = m.get("op")
    if op == "insert":
        return _insert(state, m, ts, device_id, seq, practice_id)
    if op not in ("patch", "delete", "resolve"):
        return _reject(state, "invalid", "Unknown operation.")
    if state is None:
        return _reject(None, "not_found", "This record does not exist on the server.")
    refused = _refuse_change(state, m, ts)
    if refused is not None:
        return refused
    cx = _Ctx(copy.deepcopy(state), open_conflicts, device_id, seq)
    if op == "patch":
        return _patch(cx, m, ts)
    if op == "delete":
        return _delete(cx, m, ts)
    return _resolve(cx, m)
