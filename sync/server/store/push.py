"""Push and merge: a laptop's batch applied exactly once, each mutation gated, scope-checked, merged and logged.

Refused mutations go to quarantine (capped, see ``quarantine_payload``); conflicts, including two people
with one NHS number, are stored and sent out through the feed. ``server_write`` is the admin's write
through the same path, as device "server".
"""

from __future__ import annotations

import json
import uuid
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sprx_rules import gate
from sync import merge
from sync.merge import SERVER_DEVICE, Conflict, Mutation, RowState
from sync.schema import TABLES, Kind
from sync.server.log import log_event
from sync.server.store.base import Device, StoreError, _conflict_dict, _row_state, canonical, sha256_hex
from sync.server.store.scope import ScopeMixin
from sync.server.store.tables import (
    _INS_APPLIED,
    _INS_RECORD,
    _SEL_DELETED,
    _SEL_RECORD,
    _UPD_RECORD,
    applied_mutation,
    conflict,
    deleted_id,
    device,
    quarantine,
    record,
    server_meta,
)

QUARANTINE_PAYLOAD_MAX = 4096
"""At most this many characters of a refused mutation are kept in quarantine (its ids and field names
first); a value over it is cut short and marked, so a huge refused value is never stored whole."""


def quarantine_payload(m: Any) -> str:
    """What quarantine keeps of a refused mutation: all of it when small, else a marked summary."""
    whole = canonical(m)
    if len(whole) <= QUARANTINE_PAYLOAD_MAX:
        return whole
    fields = m.get("fields") if isinstance(m, dict) else None
    names = [str(f)[:64] for f in fields][:50] if isinstance(fields, dict) else []
    summary: dict[str, Any] = {
        k: (v[:64] if isinstance(v, str) else v)
        for k, v in (m.items() if isinstance(m, dict) else ())
        if k in ("mutation_id", "tbl", "row_id", "person_id", "op", "hlc", "conflict_id")
    }
    summary.update({"field_names": names, "truncated": True, "payload_chars": len(whole)})
    room = QUARANTINE_PAYLOAD_MAX - len(canonical({**summary, "payload_head": ""}))
    # canonical() is ASCII; quoting it again at most doubles it (each quote or backslash gains one).
    summary["payload_head"] = whole[: max(0, room // 2)]
    return canonical(summary)


class _LedgerRow(NamedTuple):
    """A ledger row written earlier in the same batch (read back from the batch, not the database)."""

    payload_sha256: str
    result: str


class _Refused(Exception):
    """A step of ``_apply`` refused the mutation: its reason code and the sentence kept in quarantine."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def _ack(mid: Any, status: str, seq: int | None, conflict_ids: list[str]) -> dict[str, Any]:
    return {"mutation_id": mid, "status": status, "seq": seq, "conflict_ids": conflict_ids,
            "reason": None, "detail": None}  # fmt: skip


def _person_of(m: Mutation, stored: bool, stored_person: str | None) -> str | None:
    """The person a mutation's row belongs to: the row itself for a person, else as stored (``stored``: the row is
    stored, under ``stored_person``), else as sent."""
    if m["tbl"] == "person":
        return m["row_id"]
    if stored:
        return stored_person
    return m.get("person_id")


def _nhs_lookup(tbl: str, new: RowState) -> str | None:
    """A person's NHS number as digits, kept in ``record.lookup`` to find duplicates and imports."""
    if tbl == "person":
        return _digits(new["values"].get("nhs_number"))
    return None


def _follow_nhs(conn: Connection, person_id: str, lookup: str | None) -> None:
    """The push's read-ahead of people by NHS number (``sprx_nhs``) follows a write of a person: under ``lookup``
    now (None: under none, or deleted), under no other."""
    nhs = conn.info.get("sprx_nhs")
    if nhs is None:
        return
    for ids in nhs.values():
        ids.discard(person_id)
    if lookup and lookup in nhs:
        nhs[lookup].add(person_id)


def _digits(value: Any) -> str | None:
    if not value:
        return None
    return "".join(ch for ch in str(value) if ch.isdigit()) or None


class PushMixin(ScopeMixin):
    """Writes: every sync write and admin write goes through ``_apply`` inside one ``_write`` transaction."""

    def _apply(
        self,
        conn: Connection,
        m: Mutation,
        *,
        origin: str,
        practice_id: str,
        dev: Device | None,
        now: int,
    ) -> dict[str, Any]:
        """Scope-check, merge and write one mutation; returns its ack (without duplicates).

        ``dev`` is the pushing laptop, or None for the server's own writes (no clock or scope checks).
        Each check raises ``_Refused``; a refused mutation is quarantined and acked as rejected.
        """
        try:
            return self._apply_checked(conn, m, origin=origin, practice_id=practice_id, dev=dev, now=now)
        except _Refused as refused:
            return self._quarantine(conn, m, refused.reason, refused.detail, origin=origin, now=now)

    def _apply_checked(
        self,
        conn: Connection,
        m: Mutation,
        *,
        origin: str,
        practice_id: str,
        dev: Device | None,
        now: int,
    ) -> dict[str, Any]:
        """The steps of ``_apply``, in order: gate, clock, scope, deleted, merge, write, conflicts."""
        mid = m.get("mutation_id")
        # The inbound gate first: a value that cannot be stored or shown safely is never applied,
        # and what is kept of it in quarantine is the sentence, not the value. (A push runs it for
        # its whole batch before it takes the write lock: ``sprx_gate``.)
        gated = conn.info.get("sprx_gate", {})
        refusal = gated[id(m)] if id(m) in gated else gate.check_mutation(m)
        if refusal is not None:
            raise _Refused("invalid_value", refusal.sentence)
        tbl, row_id = m["tbl"], m["row_id"]
        hlcs = self._check_clock(m, dev)
        r = self._current_row(conn, tbl, row_id)
        state = _row_state(r) if r is not None else None
        auto_assign = dev is not None and self._check_scope(conn, m, state, dev, practice_id)
        if state is None and m["op"] == "insert":
            self._check_not_deleted(conn, tbl, row_id)
        # A brand-new row has no conflicts: skip the query.
        open_c = self._open_conflicts(conn, tbl, row_id) if state is not None else []
        seq = int(conn.info["sprx_seq"]) + 1
        res = merge.apply_mutation(state, m, device_id=origin, seq=seq, open_conflicts=open_c, practice_id=practice_id)
        if res.status == "rejected":
            raise _Refused(res.reason or "invalid", res.detail or "")
        if dev is not None:
            self.clock.update(max(hlcs))
        if not res.changed or res.state is None:
            return _ack(mid, res.status, state["seq"] if state else None, [])
        assert self._next_seq(conn) == seq
        new = res.state
        lookup = self._write_row(conn, m, state, new, seq, origin=origin, practice_id=practice_id, now=now)
        conflict_ids = [self._put_conflict(conn, c, practice_id, origin, mid, now) for c in res.conflicts]
        if auto_assign and dev is not None:
            self._assign(conn, row_id, practice_id, dev.worker_id, None, backfill=False, practice_known=True)
        if tbl == "person":
            _follow_nhs(conn, row_id, None if new["deleted"] else lookup)
        if lookup and not new["deleted"]:
            conflict_ids += self._check_duplicate_person(conn, new, lookup, origin, mid, now)
        return _ack(mid, "applied", seq, conflict_ids)

    def _quarantine(
        self, conn: Connection, m: Mutation, reason: str, detail: str, *, origin: str, now: int
    ) -> dict[str, Any]:
        """Keep a refused mutation in quarantine (capped, see ``quarantine_payload``) and ack it as rejected."""
        mid = m.get("mutation_id")
        conn.execute(
            quarantine.insert().values(
                device_id=origin,
                mutation_id=mid or 0,
                reason=reason,
                detail=detail[:1000],
                payload=quarantine_payload(m),
                at=now,
            )
        )
        log_event("mutation_rejected", device_id=origin, mutation_id=mid, reason=reason)
        return {"mutation_id": mid, "status": "rejected", "seq": None, "conflict_ids": [],
                "reason": reason, "detail": detail}  # fmt: skip

    def _check_clock(self, m: Mutation, dev: Device | None) -> list[int]:
        """The mutation's HLCs; a laptop's must not be too far ahead of the server's clock."""
        hlcs = [m["hlc"]] + [fc["hlc"] for fc in m["fields"].values() if fc.get("hlc")]
        if dev is not None and any(self.clock.is_too_far_ahead(h) for h in hlcs):
            raise _Refused("clock_ahead", "The laptop clock is ahead of the server clock.")
        return hlcs

    def _check_scope(
        self, conn: Connection, m: Mutation, state: RowState | None, dev: Device, practice_id: str
    ) -> bool:
        """Refuse a change outside the laptop's practice or caseload; True when the person is to be assigned to it.

        A worker's own new person (a self-referral made offline), not yet assigned to anyone, becomes theirs.
        """
        tbl = m["tbl"]
        ts = TABLES.get(tbl)
        if ts is None:
            return False  # merge refuses an unknown table
        if state is not None and state["practice_id"] != practice_id:
            raise _Refused("out_of_scope", "This record belongs to another practice.")
        person_id = _person_of(m, state is not None, state["person_id"] if state is not None else None)
        if not ts.person_scoped or not person_id or self._in_scope(conn, dev, person_id):
            return False
        unassigned = self._assignment(conn, person_id) is None
        if tbl == "person" and m["op"] == "insert" and state is None and unassigned:
            return True
        raise _Refused("out_of_scope", "This person is not on your caseload.")

    def _current_row(self, conn: Connection, tbl: str, row_id: str) -> Any:
        """The stored row, from the batch's one read when it was there (each entry used once: a second
        change to the same row in the batch reads what the first one wrote)."""
        known = conn.info.get("sprx_rows")
        if known is not None and (tbl, row_id) in known:
            return known.pop((tbl, row_id))
        self._flush_deferred(conn)
        return conn.execute(_SEL_RECORD, {"b_tbl": tbl, "b_id": row_id}).first()

    def _check_not_deleted(self, conn: Connection, tbl: str, row_id: str) -> None:
        """A deleted row's id is never used again."""
        known = conn.info.get("sprx_deleted")
        if known is not None and (tbl, row_id) in known:
            gone = known.pop((tbl, row_id))
        else:
            gone = conn.execute(_SEL_DELETED, {"b_tbl": tbl, "b_id": row_id}).first() is not None
        if gone:
            raise _Refused("deleted", "This record was deleted and cannot be re-created.")

    def _read_ahead(self, conn: Connection, mutations: list[Mutation], practice_id: str) -> None:
        """The batch's stored rows and tombstones in one read each (not one round trip per mutation); then its
        people's assignments (`_read_assignments`) and the practice's people under each NHS number it carries."""
        keys = list({(str(m["tbl"]), str(m["row_id"])) for m in mutations})
        rows: dict[tuple[str, str], Any] = dict.fromkeys(keys)
        deleted: dict[tuple[str, str], bool] = dict.fromkeys(keys, False)
        by_tbl: dict[str, list[str]] = {}
        for t, i in keys:
            by_tbl.setdefault(t, []).append(i)
        for t, ids in by_tbl.items():
            for k in range(0, len(ids), 500):
                chunk = ids[k : k + 500]
                for r in conn.execute(sa.select(record).where(record.c.tbl == t, record.c.id.in_(chunk))):
                    rows[(t, r.id)] = r
                q = sa.select(deleted_id.c.id).where(deleted_id.c.tbl == t, deleted_id.c.id.in_(chunk))
                for (i,) in conn.execute(q):
                    deleted[(t, i)] = True
        conn.info["sprx_rows"] = rows
        conn.info["sprx_deleted"] = deleted
        people: set[str] = set()
        lookups: set[str] = set()
        for m in mutations:
            stored = rows[(str(m["tbl"]), str(m["row_id"]))]
            person = _person_of(m, stored is not None, stored.person_id if stored is not None else None)
            if person:
                people.add(str(person))
            if m["tbl"] == "person":
                sent = (m.get("fields") or {}).get("nhs_number")
                # The number it is sent with and the one it has now: the merge keeps one of them.
                numbers = (_digits(sent.get("v")) if isinstance(sent, dict) else None, stored and stored.lookup)
                lookups.update(n for n in numbers if n)
        self._read_assignments(conn, sorted(people))
        nhs: dict[str, set[str]] = {k: set() for k in lookups}
        ordered = sorted(lookups)
        for k in range(0, len(ordered), 500):
            q = sa.select(record.c.id, record.c.lookup).where(
                record.c.practice_id == practice_id,
                record.c.tbl == "person",
                record.c.lookup.in_(ordered[k : k + 500]),
                record.c.deleted.is_(False),
            )
            for r in conn.execute(q):
                nhs[r.lookup].add(r.id)
        conn.info["sprx_nhs"] = nhs

    def _open_conflicts(self, conn: Connection, tbl: str, row_id: str) -> list[Conflict]:
        q = sa.select(conflict).where(conflict.c.tbl == tbl, conflict.c.row_id == row_id, conflict.c.status == "open")
        return [_conflict_dict(c) for c in conn.execute(q).all()]

    def _write_row(
        self,
        conn: Connection,
        m: Mutation,
        state: RowState | None,
        new: RowState,
        seq: int,
        *,
        origin: str,
        practice_id: str,
        now: int,
    ) -> str | None:
        """Store the merged row, its feed entry and its tombstone; returns a person's NHS number digits (lookup)."""
        tbl, row_id = m["tbl"], m["row_id"]
        lookup = _nhs_lookup(tbl, new)
        row_vals = {
            "practice_id": new["practice_id"],
            "person_id": new["person_id"],
            "values": canonical(new["values"]),
            "meta": canonical(new["meta"]),
            "deleted": new["deleted"],
            "seq": seq,
            "lookup": lookup,
        }
        defer = conn.info.get("sprx_defer")
        if state is None and defer is not None:
            defer["record"].append({"tbl": tbl, "id": row_id, **row_vals})  # see _flush_deferred
        elif state is None:
            conn.execute(_INS_RECORD, {"tbl": tbl, "id": row_id, **row_vals})
        else:
            conn.execute(_UPD_RECORD, {"b_tbl": tbl, "b_id": row_id, **row_vals})
        ts = TABLES.get(tbl)
        if ts is not None and ts.kind is not Kind.PUSH_ONLY:
            mid = m.get("mutation_id")
            self._log(
                conn, seq, "record", tbl, row_id, new["person_id"], practice_id, origin, mid, now, fresh=state is None
            )
        if new["deleted"] and not (state and state["deleted"]):
            conn.execute(deleted_id.insert().values(tbl=tbl, id=row_id, seq=seq))
        elif state is not None and state["deleted"] and not new["deleted"]:
            conn.execute(deleted_id.delete().where(deleted_id.c.tbl == tbl, deleted_id.c.id == row_id))
        return lookup

    def _put_conflict(
        self,
        conn: Connection,
        c: Conflict,
        practice_id: str,
        origin: str,
        mid: int | None,
        now: int,
    ) -> str:
        # Each conflict change takes its own seq so a feed page never splits one seq.
        s = self._next_seq(conn)
        vals = {
            "practice_id": practice_id,
            "tbl": c["tbl"],
            "row_id": c["row_id"],
            "person_id": c["person_id"],
            "field": c["field"],
            "kind": c["kind"],
            "values": canonical(c["values"]),
            "shown_idx": c["shown_idx"],
            "status": c["status"],
            "resolution": canonical(c["resolution"]) if c["resolution"] is not None else None,
            "seq": s,
        }
        if conn.execute(sa.select(conflict.c.id).where(conflict.c.id == c["id"])).first():
            conn.execute(conflict.update().where(conflict.c.id == c["id"]).values(**vals))
        else:
            conn.execute(conflict.insert().values(id=c["id"], **vals))
        self._log(conn, s, "conflict", c["tbl"], c["id"], c["person_id"], practice_id, origin, mid, now)
        log_event("conflict", conflict_id=c["id"], kind=c["kind"], status=c["status"])
        return c["id"]

    def _check_duplicate_person(
        self, conn: Connection, new: RowState, lookup: str, origin: str, mid: int | None, now: int
    ) -> list[str]:
        """Two people with one NHS number in a practice: flag for a person, never merge."""
        nhs = conn.info.get("sprx_nhs")
        if nhs is not None and lookup in nhs:
            others = sorted(nhs[lookup] - {new["id"]})  # the push's read-ahead (`_read_ahead`)
        else:
            self._flush_deferred(conn)
            others = [
                r.id
                for r in conn.execute(
                    sa.select(record.c.id).where(
                        record.c.practice_id == new["practice_id"],
                        record.c.tbl == "person",
                        record.c.lookup == lookup,
                        record.c.id != new["id"],
                        record.c.deleted.is_(False),
                    )
                )
            ]
        out = []
        for other in others:
            a, b = sorted([other, new["id"]])
            cid = str(uuid.uuid5(merge.CONFLICT_NS, f"duplicate_person/{a}/{b}"))
            if conn.execute(sa.select(conflict.c.id).where(conflict.c.id == cid)).first():
                continue
            h = self.clock.now()
            values = [
                {"v": other, "hlc": h, "dev": SERVER_DEVICE, "seq": new["seq"]},
                {"v": new["id"], "hlc": h, "dev": origin, "seq": new["seq"]},
            ]
            c = Conflict(
                id=cid, tbl="person", row_id=new["id"], person_id=new["id"], field="nhs_number",
                kind="duplicate_person", values=values, shown_idx=1, status="open",
                resolution=None, seq=new["seq"],
            )  # fmt: skip
            out.append(self._put_conflict(conn, c, new["practice_id"], origin, mid, now))
        return out

    def push(
        self, dev: Device, mutations: list[Mutation], *, pending: int | None = None, pull_seq: int | None = None
    ) -> dict[str, Any]:
        """Apply a batch exactly once; StoreError gap / mutation_id_reuse leave nothing applied.

        ``pending``: how many changes the laptop holds unsent besides this batch (kept for the admin).
        ``pull_seq``: the cursor of the pull that follows in the same exchange, recorded in this
        transaction (so that pull has nothing of its own to write; see ``FeedMixin._seen``).
        """
        now = self.now_ms()
        acks: list[dict[str, Any]] = []
        # What depends on the batch alone is worked out before the write lock is taken.
        hashes = [sha256_hex(canonical(m)) for m in mutations]
        gated = {id(m): gate.check_mutation(m) for m in mutations}
        ledger: list[dict[str, Any]] = []
        with self._write() as conn:
            d = conn.execute(sa.select(device).where(device.c.id == dev.id)).one()
            if d.revoked_at is not None:
                raise StoreError("device_revoked", "This device has been revoked.", 403)
            last = int(d.last_acked_mutation_id)
            conn.info["sprx_gate"] = gated
            if any(int(m["mutation_id"]) > last for m in mutations):
                self._read_ahead(conn, [m for m in mutations if int(m["mutation_id"]) > last], dev.practice_id)
            conn.info["sprx_defer"] = {"record": [], "log": [], "assignment": []}
            for m, h in zip(mutations, hashes, strict=True):
                mid = int(m["mutation_id"])
                if mid <= last:
                    prior = (
                        next((x for x in ledger if x["mutation_id"] == mid), None)
                        or conn.execute(
                            sa.select(applied_mutation).where(
                                applied_mutation.c.device_id == dev.id,
                                applied_mutation.c.mutation_id == mid,
                            )
                        ).first()
                    )
                    if isinstance(prior, dict):
                        prior = _LedgerRow(prior["payload_sha256"], prior["result"])
                    if prior is not None and prior.payload_sha256 != h:
                        raise StoreError(
                            "mutation_id_reuse",
                            f"Mutation {mid} was already used for a different change.",
                            409,
                        )
                    ack = json.loads(prior.result) if prior is not None else {"mutation_id": mid}
                    # What the first application did: applied (a merge that found it already there counts as
                    # applied) or rejected. Laptops of the last release read "duplicate" here as not done.
                    first = ack.get("status")
                    ack["original_status"] = "rejected" if first == "rejected" else "applied"
                    ack["status"] = "duplicate"
                    acks.append(ack)
                    continue
                if mid != last + 1:
                    raise StoreError(
                        "gap",
                        f"Mutation {mid} arrived before mutation {last + 1}.",
                        409,
                        expected=last + 1,
                    )
                ack = self._apply(conn, m, origin=dev.id, practice_id=dev.practice_id, dev=dev, now=now)
                ledger.append(
                    {
                        "device_id": dev.id,
                        "mutation_id": mid,
                        "payload_sha256": h,
                        "result": canonical(ack),
                        "applied_at": now,
                    }  # fmt: skip
                )
                acks.append(ack)
                last = mid
            self._flush_deferred(conn)
            conn.info.pop("sprx_defer", None)
            if ledger:  # the batch's ledger rows in one statement, in the same transaction
                conn.execute(_INS_APPLIED, ledger)
            conn.info.pop("sprx_rows", None)
            conn.info.pop("sprx_deleted", None)
            conn.info.pop("sprx_assigned", None)
            conn.info.pop("sprx_nhs", None)
            conn.info.pop("sprx_gate", None)
            seen: dict[str, Any] = {"last_acked_mutation_id": last, "last_seen": now}
            if pending is not None:
                seen.update(pending_reported=pending, pending_reported_at=now)
            if pull_seq is not None:
                seen["last_pull_seq"] = pull_seq
            conn.execute(device.update().where(device.c.id == dev.id).values(**seen))
            server_hlc = self.clock.now()
            conn.execute(server_meta.update().where(server_meta.c.id == 1).values(hlc=server_hlc))
        log_event("push", device_id=dev.id, mutations=len(mutations), last_acked=last)
        return {
            "acks": acks,
            "last_acked_mutation_id": last,
            "server_hlc": server_hlc,
            "server_time_ms": now,
        }

    def server_write(
        self,
        tbl: str,
        row_id: str,
        values: dict[str, Any],
        *,
        practice_id: str,
        person_id: str | None = None,
        conn: Connection | None = None,
    ) -> dict[str, Any]:
        """An admin write (import) through the same merge and change feed, as device "server".

        Values go through the inbound gate first: a refused value raises StoreError naming the field.
        """
        refusal = gate.check_values(tbl, values, row_id)
        if refusal is not None:
            raise StoreError("invalid_value", refusal.sentence, 422)
        if conn is None:
            with self._write() as c:
                return self.server_write(tbl, row_id, values, practice_id=practice_id, person_id=person_id, conn=c)
        r = conn.execute(_SEL_RECORD, {"b_tbl": tbl, "b_id": row_id}).first()
        h = self.clock.now()
        if r is None:
            fields = {f: {"v": v, "hlc": h} for f, v in values.items()}
            op = "insert"
        else:
            st = _row_state(r)
            fields = {
                f: {"v": v, "hlc": h, "base_seq": st["meta"].get(f, {}).get("seq")}
                for f, v in values.items()
                if canonical(st["values"].get(f)) != canonical(v)
            }
            if not fields:
                return {"status": "duplicate", "seq": st["seq"]}
            op = "patch"
        m = Mutation(
            mutation_id=0, tbl=tbl, row_id=row_id, person_id=person_id, op=op,
            fields=fields, hlc=h,  # type: ignore[typeddict-item]
        )  # fmt: skip
        ack = self._apply(conn, m, origin=SERVER_DEVICE, practice_id=practice_id, dev=None, now=self.now_ms())
        conn.execute(server_meta.update().where(server_meta.c.id == 1).values(hlc=self.clock.last))
        return ack
