"""Scope: which people a laptop may see and change (assignment to its worker or team), and reassignment."""

from __future__ import annotations

from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync.merge import SERVER_DEVICE
from sync.schema import TABLES, Kind
from sync.server.log import log_event
from sync.server.store.base import Device, StoreBase, StoreError
from sync.server.store.tables import assignment, assignment_log, conflict, record, team, worker

# Built once (an import assigns a person per row: bench/bench_import.py).
_SEL_PERSON_PRACTICE = sa.select(record.c.practice_id).where(
    record.c.tbl == "person", record.c.id == sa.bindparam("b_id")
)
_SEL_ASSIGNMENT = sa.select(assignment).where(assignment.c.person_id == sa.bindparam("b_id"))


class Assigned(NamedTuple):
    """A person's assignment: to a worker or a team, in a practice."""

    practice_id: str
    worker_id: str | None
    team_id: str | None


class ScopeMixin(StoreBase):
    """A person is in a device's scope when assigned to its worker or its worker's team."""

    def assign(self, person_id: str, *, worker_id: str | None = None, team_id: str | None = None) -> None:
        """Assign a person to a worker or a team; the new owner gets a backfill on next pull."""
        if (worker_id is None) == (team_id is None):
            raise StoreError("invalid", "Give exactly one of a worker or a team.")
        with self._write() as conn:
            if worker_id is not None:
                w = conn.execute(sa.select(worker).where(worker.c.id == worker_id)).first()
                if w is None:
                    raise StoreError("not_found", f"There is no worker called {worker_id}.", 404)
                practice_id = w.practice_id
            else:
                t = conn.execute(sa.select(team).where(team.c.id == team_id)).first()
                if t is None:
                    raise StoreError("not_found", f"There is no team called {team_id}.", 404)
                practice_id = t.practice_id
            self._assign(conn, person_id, practice_id, worker_id, team_id)
        log_event("person_assigned", person_id=person_id, worker_id=worker_id, team_id=team_id)

    def _assign(
        self,
        conn: Connection,
        person_id: str,
        practice_id: str,
        worker_id: str | None,
        team_id: str | None,
        *,
        backfill: bool = True,
        practice_known: bool = False,
    ) -> None:
        """Give a person to a worker or team inside ``conn``; the old owner is logged so its laptop drops them.

        ``backfill`` re-sends the person's rows to the new owner (off for a worker's own new person).
        ``practice_known``: the caller has just written the person in ``practice_id`` (a push's new person).
        """
        if not practice_known:
            self._flush_deferred(conn)  # the person may be a row a push has not written yet
            p = conn.execute(_SEL_PERSON_PRACTICE, {"b_id": person_id}).first()
            if p is not None and p.practice_id != practice_id:
                raise StoreError("invalid", "That person belongs to another practice.")
        conn.info.get("sprx_scope", {}).clear()  # scope changes inside this transaction
        old = self._assignment(conn, person_id)
        if old is not None and (old.worker_id, old.team_id) == (worker_id, team_id):
            return
        s = self._next_seq(conn)
        if old is not None:
            conn.execute(
                assignment_log.insert().values(
                    seq=s,
                    person_id=person_id,
                    practice_id=practice_id,
                    old_worker_id=old.worker_id,
                    old_team_id=old.team_id,
                )
            )
            conn.execute(
                assignment.update()
                .where(assignment.c.person_id == person_id)
                .values(worker_id=worker_id, team_id=team_id, seq=s, practice_id=practice_id)
            )
        else:
            new = {"person_id": person_id, "practice_id": practice_id, "worker_id": worker_id, "team_id": team_id,
                   "seq": s}  # fmt: skip
            defer = conn.info.get("sprx_defer")
            if defer is not None and "sprx_assigned" in conn.info:
                # A push: written with its new rows (`_flush_deferred`); its scope checks read `sprx_assigned`.
                defer["assignment"].append(new)
            else:
                conn.execute(assignment.insert().values(**new))
        known = conn.info.get("sprx_assigned")
        if known is not None:
            known[person_id] = Assigned(practice_id, worker_id, team_id)
        if backfill:
            self._backfill(conn, person_id, practice_id)

    def _assignment(self, conn: Connection, person_id: str) -> Assigned | None:
        """Who a person is assigned to: from the push's read-ahead (`_read_assignments`) when it covers them."""
        known = conn.info.get("sprx_assigned")
        if known is not None and person_id in known:
            return known[person_id]
        r = conn.execute(_SEL_ASSIGNMENT, {"b_id": person_id}).first()
        return Assigned(r.practice_id, r.worker_id, r.team_id) if r is not None else None

    def _read_assignments(self, conn: Connection, person_ids: list[str]) -> None:
        """The assignments of a batch's people in one read per 500 (a push's scope checks then ask no more),
        kept in the transaction's ``sprx_assigned`` and kept current by ``_assign``."""
        known: dict[str, Assigned | None] = dict.fromkeys(person_ids)
        a = assignment.c
        for k in range(0, len(person_ids), 500):
            chunk = person_ids[k : k + 500]
            q = sa.select(a.person_id, a.practice_id, a.worker_id, a.team_id).where(a.person_id.in_(chunk))
            for r in conn.execute(q):
                known[r.person_id] = Assigned(r.practice_id, r.worker_id, r.team_id)
        conn.info["sprx_assigned"] = known

    def _backfill(self, conn: Connection, person_id: str, practice_id: str) -> None:
        """Re-log the person's rows and open conflicts with fresh seqs so the new owner's next pull carries them.

        O(rows of this person), never O(database).
        """
        pulled = [t for t, ts in TABLES.items() if ts.kind is not Kind.PUSH_ONLY]
        rows = conn.execute(
            sa.select(record.c.tbl, record.c.id)
            .where(record.c.person_id == person_id, record.c.tbl.in_(pulled))
            .order_by(record.c.tbl, record.c.id)
        ).all()
        now = self.now_ms()
        for r in rows:
            s = self._next_seq(conn)
            conn.execute(record.update().where(record.c.tbl == r.tbl, record.c.id == r.id).values(seq=s))
            self._log(conn, s, "record", r.tbl, r.id, person_id, practice_id, SERVER_DEVICE, None, now)
        for c in conn.execute(
            sa.select(conflict.c.id, conflict.c.tbl).where(
                conflict.c.person_id == person_id, conflict.c.status == "open"
            )
        ).all():
            s = self._next_seq(conn)
            conn.execute(conflict.update().where(conflict.c.id == c.id).values(seq=s))
            self._log(conn, s, "conflict", c.tbl, c.id, person_id, practice_id, SERVER_DEVICE, None, now)

    def _in_scope(self, conn: Connection, dev: Device, person_id: str) -> bool:
        """Is this person assigned to the device's worker or team? Cached for the transaction."""
        cache = conn.info.setdefault("sprx_scope", {})
        if (dev.id, person_id) in cache:
            return bool(cache[(dev.id, person_id)])
        a = self._assignment(conn, person_id)
        cache[(dev.id, person_id)] = ok = (
            a is not None
            and a.practice_id == dev.practice_id
            and (a.worker_id == dev.worker_id or (dev.team_id is not None and a.team_id == dev.team_id))
        )
        return ok

    def _in_scope_of(self, dev: Device, person_col: Any) -> Any:
        """``EXISTS`` (assignment of this person to the device's worker or team), correlated on ``person_col``.

        One primary-key lookup in ``assignment`` per candidate row, where ``IN (SELECT ...)`` makes
        the database materialise the whole scope for every query (O(caseload) per pull).
        """
        who = assignment.c.worker_id == dev.worker_id
        if dev.team_id is not None:
            who = sa.or_(who, assignment.c.team_id == dev.team_id)
        return sa.exists(
            sa.select(sa.literal(1)).where(
                assignment.c.person_id == person_col, assignment.c.practice_id == dev.practice_id, who
            )
        )
