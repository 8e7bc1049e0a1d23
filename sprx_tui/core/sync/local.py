"""The vault side of sync: `VaultSyncAdapter`, the `sync.client.LocalStore` the protocol client talks to.

The client (sync/client.py) knows HTTP and the protocol; this adapter knows the SQLCipher vault. It hands
out pending changes and records the server's answers (push), keeps the pull position, takes in the
server's clock, and has each page written by `apply.PageApplier` in the same transaction as the
page's position, so a page and its cursor commit or roll back together. Every method is one short
transaction under ``store.lock``; no lock is held while the client waits on the network.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import delete, insert, update
from sqlmodel import Session, col, select

from sprx_tui.core.models import SYNCED_MODELS, HlcState, SyncOutbox, SyncRejected
from sprx_tui.core.store import CaseStore
from sprx_tui.core.sync.apply import PageApplier, max_hlc
from sprx_tui.core.sync.state import (
    IN_IDS,
    K_AFTER,
    K_BASE,
    K_CURSOR,
    K_EPOCH,
    K_FLAGS,
    K_OFFSET,
    K_PHASE,
    K_PURGE,
    K_STARTED,
    PENDING_COUNT_SQL,
    chunks,
    id_param,
    read_state,
    run_sql,
    save_hlc,
    write_state,
)
from sync import hlc as hlc_mod
from sync.client import AckSummary, PullPosition

CURSOR_LAG = 1000
"""How far an unchanged laptop's stored cursor may trail the server's before an idle pull stores it."""


class VaultSyncAdapter:
    """`sync.client.LocalStore` over the SQLCipher vault. Each method is one transaction under ``store.lock``."""

    def __init__(self, store: CaseStore) -> None:
        self.store = store
        self.engine = store.engine
        self.lock = store.lock
        # One instance serves one sync (the per-vault sync lock keeps others out), so what it read
        # or wrote itself can be kept here instead of being read back before every request.
        self._base_cache: int | None = None
        self._pos: PullPosition | None = None
        self._purge_waiting = False
        self._flags_waiting = False
        self._seen_hlc: int | None = None
        """The newest server HLC seen but not yet merged into the stored clock (see observe_server)."""
        self.news = 0
        """Pulled rows that brought something from elsewhere: this laptop's own changes come back in
        the feed too (the server's copy, with its sequence number) and are not news to the worker."""
        self.set_aside = 0
        """Pulled rows (and conflicts) the inbound gate refused in this sync: kept in sync_quarantine."""
        self.pages = PageApplier(store)
        self.sync_event: Callable[[int], str | None] | None = None
        """Set by the one running the sync: given the rows the sync's last pull page applies, the detail of
        the sync's own SYNC audit event, or None for no event. The event is then written in that page's
        transaction (one commit instead of two, at the end of every sync that received something)."""
        self.sync_event_recorded = False

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        with self.lock, Session(self.engine, expire_on_commit=False) as s, s.begin():
            yield s

    @property
    def device_id(self) -> str:
        return self.store.actor.device_id

    @property
    def fail_in_page(self) -> Callable[[int], None] | None:
        """Tests raise inside a page transaction to prove the page and its cursor roll back together."""
        return self.pages.fail_in_page

    @fail_in_page.setter
    def fail_in_page(self, hook: Callable[[int], None] | None) -> None:
        self.pages.fail_in_page = hook

    def now_ms(self) -> int:
        return int(self.store.service.clock().timestamp() * 1000)

    def _base(self, s: Session) -> int:
        if self._base_cache is None:  # set at enrolment, never changed by a sync
            self._base_cache = int(read_state(s, [K_BASE]).get(K_BASE) or 0)
        return self._base_cache

    # -- push side --

    def pending_count(self) -> int:
        with self.lock, self.engine.connect() as c:
            return int(c.exec_driver_sql(PENDING_COUNT_SQL).scalar() or 0)

    def only_held_pending(self, actions: frozenset[str], lo_hlc: int, hi_hlc: int) -> bool:
        """Whether every pending outbox row (if any) is an audit event of one of ``actions`` stamped within
        [lo_hlc, hi_hlc]: bookkeeping the client holds back (see ``sync.client.HELD_ACTIONS``). One statement
        over the pending rows, instead of reading and decoding each of them as ``pending_mutations`` does."""
        marks_ = ",".join("?" * len(actions))
        sql = (
            "SELECT EXISTS (SELECT 1 FROM sync_outbox WHERE status = 'pending' AND NOT (tbl = 'audit_event' "
            f"AND json_extract(fields, '$.action.v') IN ({marks_}) AND hlc BETWEEN ? AND ?))"
        )
        with self.lock, self.engine.connect() as c:
            return not c.exec_driver_sql(sql, (*sorted(actions), int(lo_hlc), int(hi_hlc))).scalar()

    def pending_mutations(self, limit: int) -> list[dict[str, Any]]:
        with self.lock, Session(self.engine) as s:
            base = self._base(s)
            rows = run_sql(
                s,
                "SELECT mutation_id, tbl, row_id, person_id, op, fields, hlc, conflict_id FROM sync_outbox "
                "WHERE status = 'pending' ORDER BY mutation_id LIMIT ?",
                (int(limit),),
            ).all()
        return [
            {
                "mutation_id": int(mid) - base,
                "tbl": tbl,
                "row_id": row_id,
                "person_id": person_id,
                "op": op,
                "fields": (json.loads(fields) if fields else None) or {},
                "hlc": int(h),
                "conflict_id": conflict_id,
            }
            for mid, tbl, row_id, person_id, op, fields, h, conflict_id in rows
        ]

    def record_acks(self, acks: list[dict[str, Any]], last_sent: int) -> AckSummary:
        summary = AckSummary()
        with self._tx() as s:
            base = self._base(s)
            ahead: list[SyncOutbox] = []
            refresh = False
            wanted: dict[int, dict[str, Any]] = {}
            for ack in acks:
                try:
                    wanted[int(ack["mutation_id"]) + base] = ack
                except (KeyError, TypeError, ValueError):
                    continue
            rows: dict[int, SyncOutbox] = {}
            for ids in chunks(sorted(wanted)):
                for r in s.exec(select(SyncOutbox).where(col(SyncOutbox.mutation_id).in_(ids))).all():
                    rows[int(r.mutation_id or 0)] = r
            for lid, ack in wanted.items():
                row = rows.get(lid)
                if row is None or row.status != "pending":
                    continue
                status = ack.get("status")
                if status == "duplicate":
                    # Already recorded by the server; only a rejection the first time needs more. A change that
                    # merged as "duplicate" the first time (a delete already made elsewhere) is as done as an
                    # applied one: before, its resent answer left it pending for ever and every sync failed.
                    status = "rejected" if ack.get("original_status") == "rejected" else "applied"
                row.attempts += 1
                if status == "applied":
                    row.status = "acked"
                    row.last_error = None
                    summary.acked += 1
                    summary.bookkeeping += row.tbl == "audit_event"
                elif status == "rejected":
                    reason = str(ack.get("reason") or "invalid")
                    if reason == "clock_ahead" and row.last_error != "clock_ahead:requeued":
                        ahead.append(row)
                        continue
                    row.status = "rejected"
                    row.last_error = reason
                    if s.get(SyncRejected, lid) is None:
                        s.add(
                            SyncRejected(
                                mutation_id=lid,
                                tbl=row.tbl,
                                row_id=row.row_id,
                                person_id=row.person_id,
                                reason_code=reason,
                                detail=str(ack.get("detail") or ""),
                                payload={"op": row.op, "fields": row.fields, "conflict_id": row.conflict_id},
                            )
                        )
                    summary.rejected += 1
                    if reason not in ("out_of_scope",):
                        refresh = True
                else:
                    continue
                s.add(row)
            if refresh:
                # The refused value is still in the local row and the server will not send that row
                # again unless it changes: take a fresh snapshot (pending work is kept and re-applied).
                write_state(s, {K_PHASE: "snapshot", K_STARTED: None, K_AFTER: None})
                self._pos = None
            if ahead:
                summary.requeued = self._requeue(s, ahead, last_sent + base)
        return summary

    def _requeue(self, s: Session, ahead: list[SyncOutbox], last_sent_local: int) -> int:
        """Queue clock_ahead rejections again with corrected stamps, keeping the original write order.

        The rejected ids are spent on the server, so the changes get new ids. Rows after the batch
        were never sent: they are renumbered after the re-queued ones, so the server still sees this
        laptop's changes in the order they were made, and every stamp is ticked again in that order.
        """
        for r in ahead:
            r.status = "rejected"
            r.last_error = "clock_ahead:requeued"
            s.add(r)
        s.flush()
        later = list(
            s.exec(
                select(SyncOutbox)
                .where(col(SyncOutbox.mutation_id) > last_sent_local)
                .order_by(col(SyncOutbox.mutation_id))
            ).all()
        )
        if any(r.status != "pending" for r in later):
            later = []  # cannot happen in practice; append after them instead
        items = [
            {
                c: getattr(r, c)
                for c in (
                    "payload_ver",
                    "tbl",
                    "row_id",
                    "person_id",
                    "op",
                    "fields",
                    "hlc",
                    "conflict_id",
                    "created_at",
                )
            }  # fmt: skip
            for r in ahead + later
        ]
        start = later[0].mutation_id if later else None
        table = SyncOutbox.__table__  # type: ignore[attr-defined]
        if start is not None:
            s.execute(delete(table).where(table.c.mutation_id >= start))
        last = int(s.exec(select(HlcState.last).where(HlcState.id == 1)).first() or 0)
        physical = self.now_ms() + self.store.service.hlc_offset_ms
        rows = []
        for i, item in enumerate(items):
            last = hlc_mod.tick(last, physical)
            old_fields = item["fields"] or {}
            fields = {f: {**fc, "hlc": last} for f, fc in old_fields.items()}
            self._restamp(s, item["tbl"], item["row_id"], old_fields, last)
            row = {**item, "fields": fields, "hlc": last, "status": "pending", "attempts": 0, "last_error": None}
            if start is not None:
                row["mutation_id"] = start + i
            rows.append(row)
        s.execute(insert(table), rows)
        save_hlc(s, last)
        return len(ahead)

    def _restamp(self, s: Session, tbl: str, row_id: str, old_fields: dict[str, Any], new_hlc: int) -> None:
        model = SYNCED_MODELS.get(tbl)
        if model is None:
            return
        row = s.get(model, row_id)
        if row is None:
            return
        meta = dict(row.field_meta or {})
        changed = False
        for f, fc in old_fields.items():
            m = meta.get(f)
            if isinstance(m, dict) and m.get("hlc") == fc.get("hlc"):
                meta[f] = {**m, "hlc": new_hlc}
                changed = True
        if changed:
            row.field_meta = meta
            row.row_hlc = max_hlc(meta)
            s.add(row)

    def resend_from(self, mutation_id: int) -> int:
        with self._tx() as s:
            lid = mutation_id + self._base(s)
            table = SyncOutbox.__table__  # type: ignore[attr-defined]
            n = s.execute(
                update(table).where(table.c.mutation_id >= lid, table.c.status != "pending").values(status="pending")
            ).rowcount
            rej = SyncRejected.__table__  # type: ignore[attr-defined]
            s.execute(delete(rej).where(rej.c.mutation_id >= lid))
            return int(n or 0)

    def observe_server(self, offset_ms: int, server_hlc: int | None, server_time_ms: int | None) -> None:
        """Take in the server's clock after a response.

        The server's HLC moves on every response, but a laptop only needs its own clock past it once
        it has received something from the server (an edit made after reading a change must be
        stamped after it). So the HLC is merged into the stored clock in the same transaction as a
        page that brought changes (``_flush_hlc``), and an answer that brought nothing writes nothing.
        A clock found running ahead, or a moved offset, is stored at once.
        """
        service = self.store.service
        old_offset = service.hlc_offset_ms
        service.hlc_offset_ms = offset_ms
        if server_hlc is not None and (self._seen_hlc is None or server_hlc > self._seen_hlc):
            self._seen_hlc = server_hlc
        offset_moved = abs(offset_ms - old_offset) > 1000
        with self.lock, self.engine.connect() as c:
            sql = "SELECT (SELECT last FROM hlc_state WHERE id = 1), (SELECT 1 FROM sync_state WHERE key = ?)"
            row = c.exec_driver_sql(sql, (K_OFFSET,)).one()
        last, have_offset = int(row[0] or 0), row[1]
        ahead = server_time_ms is not None and hlc_mod.physical_ms(last) > server_time_ms + hlc_mod.MAX_SKEW_MS
        if not ahead and not offset_moved and have_offset is not None:
            return
        with self._tx() as s:
            last = int(s.exec(select(HlcState.last).where(HlcState.id == 1)).first() or 0)
            new = last
            if server_time_ms is not None and hlc_mod.physical_ms(last) > server_time_ms + hlc_mod.MAX_SKEW_MS:
                # Our clock ran ahead and the server refused those stamps, so none of them was
                # accepted anywhere: start again from the server's clock (sync-anchors D8).
                new = 0
            if self._seen_hlc is not None and (self._seen_hlc > new or new == 0):
                new = hlc_mod.receive(new, self._seen_hlc, self.now_ms() + offset_ms)
            self._seen_hlc = None
            if new != last:
                save_hlc(s, new)
            if offset_moved or have_offset is None:
                write_state(s, {K_OFFSET: str(offset_ms)})

    def _flush_hlc(self, s: Session) -> None:
        """Merge the newest server HLC seen into the stored clock, inside the caller's transaction."""
        seen = self._seen_hlc
        if seen is None:
            return
        last = int(s.exec(select(HlcState.last).where(HlcState.id == 1)).first() or 0)
        if seen > last:
            save_hlc(s, hlc_mod.receive(last, seen, self.now_ms() + self.store.service.hlc_offset_ms))
        self._seen_hlc = None

    # -- pull side --

    def pull_position(self) -> PullPosition:
        if self._pos is not None:
            return dataclasses.replace(self._pos)
        with self.lock, Session(self.engine) as s:
            st = read_state(s, [K_PHASE, K_CURSOR, K_AFTER, K_EPOCH, K_STARTED, K_PURGE, K_FLAGS])
        return self.prime_position(st)

    def prime_position(self, st: dict[str, str]) -> PullPosition:
        """The pull position from sync_state as just read (the caller's own read of it, at the start of a sync)."""
        self._purge_waiting = bool(st.get(K_PURGE))
        self._flags_waiting = bool(st.get(K_FLAGS))
        self._pos = PullPosition(
            phase=st.get(K_PHASE) or "snapshot",
            cursor=int(st.get(K_CURSOR) or 0),
            after=st.get(K_AFTER) or None,
            epoch=st.get(K_EPOCH) or None,
            started=st.get(K_STARTED) == "1",
        )
        return dataclasses.replace(self._pos)

    def begin_snapshot(self) -> None:
        """Mark every local row (server_seq = -1); the snapshot refreshes what the server still has.

        Rows still marked when the last page arrives are gone from the server or out of scope and
        are removed, unless local work on them is still waiting to be sent.
        """
        self._pos = None
        with self._tx() as s:
            for name in [*SYNCED_MODELS, "community_service"]:
                run_sql(s, f"UPDATE {name} SET server_seq = -1")
            run_sql(s, "UPDATE sync_conflict SET server_seq = -1 WHERE status = 'open'")
            run_sql(s, "UPDATE sync_quarantine SET server_seq = -1")
            write_state(s, {K_PHASE: "snapshot", K_AFTER: None, K_STARTED: "1"})

    def apply_snapshot_page(self, page: dict[str, Any]) -> int:
        self._pos = None
        with self._tx() as s:
            done = self.pages.apply(s, page.get("changes") or [], page.get("conflicts") or [], [])
            values: dict[str, str | None] = {K_EPOCH: str(page.get("server_epoch") or "") or None}
            if page.get("has_more"):
                values[K_AFTER] = str(page.get("after") or "") or None
            else:
                self.pages.finish_snapshot(s)
                values.update({K_PHASE: "pull", K_CURSOR: str(int(page["snapshot_seq"])), K_AFTER: None,
                               K_STARTED: None})  # fmt: skip
            self._flush_hlc(s)
            self._settle_flags(s, done.flagged, last=not page.get("has_more"))
            write_state(s, values)
        self.set_aside += done.set_aside
        return done.rows

    def apply_pull_page(self, page: dict[str, Any]) -> int:
        changes = page.get("changes") or []
        conflicts = page.get("conflicts") or []
        removed = page.get("removed_person_ids") or []
        cursor = int(page["next_cursor"])
        epoch = str(page.get("server_epoch") or "") or None
        pos = self.pull_position()
        idle = (
            not (changes or conflicts or removed or self._purge_waiting or self._flags_waiting) and pos.epoch == epoch
        )
        last = not page.get("has_more")
        event = self.sync_event if last and not self.sync_event_recorded else None
        if idle and 0 <= cursor - pos.cursor < CURSOR_LAG and (event is None or event(0) is None):
            # Nothing arrived: write nothing (a no-op sync costs no fsync). A cursor that only moved
            # past other people's changes is kept until it is CURSOR_LAG behind: the next pull then
            # re-reads at most that many feed entries, all out of scope, by the seq index.
            return 0
        self._pos = None
        # With an event to record, the service's transaction: the event joins it (see CaseService._txn).
        with self.store.service.transaction() if event is not None else self._tx() as s:
            done = self.pages.apply(s, changes, conflicts, removed)
            if changes or conflicts or removed:
                self._flush_hlc(s)
            self._settle_flags(s, done.flagged, last=last)
            write_state(s, {K_CURSOR: str(cursor), K_EPOCH: epoch})
            detail = event(done.rows) if event is not None else None
            if detail is not None:
                self.store.service.record_event("SYNC", detail=detail)
        self.sync_event_recorded = self.sync_event_recorded or detail is not None
        self.news += done.news  # counted once the page is committed (a failed page is fetched again)
        self.set_aside += done.set_aside
        return done.rows

    def _settle_flags(self, s: Session, arrived: frozenset[str], *, last: bool) -> None:
        """Safety flags merge per flag from their history (`CaseService.settle_safety_flags`), once the pull or
        snapshot has brought everything: a person's history may span pages, and a list settled from half of it
        could bring back a flag removed later. Until the last page the people wait in sync_state, so a sync
        cut short settles them the next time. Only people with flag history can need it (without any, the list
        stands as it came), and history arriving later names its person again."""
        if not arrived and not self._flags_waiting:
            return
        waiting: set[str] = set(json.loads(read_state(s, [K_FLAGS]).get(K_FLAGS) or "[]"))
        if arrived:
            sql = f"SELECT DISTINCT person_id FROM safety_flag_change WHERE person_id IN {IN_IDS}"
            waiting.update(r[0] for r in run_sql(s, sql, id_param(sorted(arrived))).all())
        if last and waiting:
            self.store.service.settle_safety_flags(s, waiting)
            waiting = set()
        write_state(s, {K_FLAGS: json.dumps(sorted(waiting)) if waiting else None})
        self._flags_waiting = bool(waiting)


__all__ = ["CURSOR_LAG", "VaultSyncAdapter"]
