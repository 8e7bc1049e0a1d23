"""Sync for the encrypted vault: the `LocalStore` behind `sync.client`, enrolment, and `sprx enrol` / `sprx sync`.

Public API for the app (all of it is safe to call from a Textual thread worker; every database step
takes ``store.lock`` for one short transaction and no lock is held while waiting on the network):

- ``enrol(store, server_url, code, ca_cert=None) -> Enrolment``
- ``sync_now(store, progress=None) -> SyncResult`` (one sync at a time per vault; a second caller gets
  status "busy" at once)
- ``sync_status(store) -> SyncStatus`` (cheap; for the status bar)
- ``resolve_conflict(store, conflict_id, chosen_value)``, ``open_conflicts(store)``, ``rejected_changes(store)``
- ``cli_enrol(args)`` and ``cli_sync(args)`` for the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import platform
import sys
import threading
import time
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic_core import PydanticUndefined
from sqlalchemy import delete, func, insert, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from sprx_rules import gate
from sprx_tui.core.diskfull import DISK_FULL, is_disk_full
from sprx_tui.core.models import (
    SYNCED_MODELS,
    CommunityService,
    HlcState,
    Person,
    SyncConflict,
    Synced,
    SyncOutbox,
    SyncQuarantine,
    SyncRejected,
    utcnow,
)
from sprx_tui.core.service import Actor, search_text_for
from sprx_tui.core.store import DEMO_MARK, CaseStore
from sprx_tui.core.wire import from_wire
from sync import client as sc
from sync import hlc as hlc_mod
from sync.client import (
    AckSummary,
    Enrolment,
    PullPosition,
    SyncError,
)
from sync.merge import DELETED
from sync.schema import TABLES

# sync_state keys (all inside the encrypted vault)
K_URL = "server_url"
K_TOKEN = "device_token"  # noqa: S105 - a key name, not a secret
K_DEVICE = "device_id"
K_USER = "user_id"
K_PRACTICE = "practice_id"
K_PIN = "server_cert_sha256"
K_CERT = "server_cert_pem"
K_EPOCH = "server_epoch"
K_CURSOR = "pull_cursor"
K_PHASE = "sync_phase"
K_AFTER = "snapshot_after"
K_STARTED = "snapshot_started"
K_BASE = "mutation_base"
K_OFFSET = "server_clock_offset_ms"
K_PURGE = "purge_pending"
K_ENROLLED = "enrolled_at"
K_LAST_AT = "last_sync_at"
K_LAST_STATUS = "last_sync_status"
K_LAST_MESSAGE = "last_sync_message"
K_LAST_OK = "last_successful_sync_at"
K_DEMO = DEMO_MARK  # written by core.demo.build_demo

INCOMPLETE_ENROLMENT = (
    "This laptop's enrolment is incomplete (the practice server's address or this laptop's id is missing), "
    "so it cannot sync; your changes are kept. Ask your practice admin to help you enrol it again."
)
EXIT_SYNCED = 0
EXIT_FAILED = 1
EXIT_OFFLINE = 3
EXIT_CONFLICTS = 4
EXIT_REVOKED = 5
EXIT_UPGRADE = 6

EXIT_CODES_HELP = """exit codes:
  0  synced
  1  other failure (the message says what; changes are kept)
  3  the practice server could not be reached; changes are kept and will sync later
  4  synced, but conflicts need a person to choose which version to keep
  5  this laptop's access was withdrawn (revoked) or it was retired (after sending everything) by the
     practice; its local copy has been erased
  6  this version of sprx (or the server) needs an update before syncing; changes are kept"""

_CHUNK = 500
CURSOR_LAG = 1000
"""How far an unchanged laptop's stored cursor may trail the server's before an idle pull stores it."""
_EPOCH_DT = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


# ---------------------------------------------------------------- small state helpers


def _state(s: Session, keys: Iterable[str]) -> dict[str, str]:
    wanted = set(keys)
    # The table is a few dozen short rows: one driver-level read beats an ORM query per call.
    return {k: v for k, v in s.connection().exec_driver_sql("SELECT key, value FROM sync_state").all() if k in wanted}


def _put(s: Session, values: dict[str, str | None]) -> None:
    """Set (or delete, for None) sync_state keys; keys already holding that value are not written."""
    current = _state(s, values)
    conn = s.connection()
    for key, value in values.items():
        if current.get(key) == value:
            continue
        if value is None:
            conn.exec_driver_sql("DELETE FROM sync_state WHERE key = ?", (key,))
        else:
            conn.exec_driver_sql(
                "INSERT INTO sync_state (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )


def _sql(s: Session, statement: str, params: tuple[Any, ...] = ()) -> Any:
    """Driver-level SQL for the per-table bulk statements: no SQLAlchemy compile on a fresh engine.

    Table names come from SYNCED_MODELS only, never from input.
    """
    return s.connection().exec_driver_sql(statement, params)


def _marks(n: int) -> str:
    return ",".join("?" * n)


PENDING_COUNT_SQL = "SELECT n FROM sync_outbox_pending WHERE id = 1"
"""The outbox's pending count, kept by triggers (migration 0005) instead of counted."""

_IN_IDS = "(SELECT value FROM json_each(?))"
"""An id list of any length bound as ONE JSON text parameter: one statement, no chunks of ``?`` marks."""


def _ids(ids: Iterable[str]) -> tuple[str]:
    return (json.dumps(list(ids)),)


def _chunks(items: list[Any], n: int = _CHUNK) -> Iterator[list[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _base_type(annotation: Any) -> Any:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if args else annotation
    return annotation


def _defaults(model: type[Synced] | type[CommunityService]) -> Callable[[], dict[str, Any]]:
    """Column defaults for a bulk insert, so a row the server sent without some field still fits."""
    fixed: dict[str, Any] = {}
    factories: dict[str, Callable[[], Any]] = {}
    for name, info in model.model_fields.items():
        if info.default_factory is not None:
            factories[name] = info.default_factory  # type: ignore[assignment]
        elif info.default is not PydanticUndefined:
            fixed[name] = info.default
        else:
            kind = _base_type(info.annotation)
            fixed[name] = {
                dt.datetime: _EPOCH_DT,
                dt.date: _EPOCH_DT.date(),
                "dt.datetime": _EPOCH_DT,
                "dt.date": _EPOCH_DT.date(),
                int: 0,
                "int": 0,
                bool: False,
                "bool": False,
            }.get(kind, "")

    def make() -> dict[str, Any]:
        out = dict(fixed)
        for name, f in factories.items():
            out[name] = f()
        return out

    return make


_DEFAULTS = {name: _defaults(m) for name, m in SYNCED_MODELS.items()}


def _local_value(model: type[Any], field: str, value: Any) -> Any:
    v = from_wire(model, field, value)
    if isinstance(v, dt.datetime) and v.tzinfo is not None:
        # SQLite keeps wall time only: store UTC so it reads back as the same instant.
        v = v.astimezone(dt.UTC)
    return v


def _max_hlc(meta: dict[str, Any]) -> int:
    top = 0
    for m in meta.values():
        if isinstance(m, dict):
            h = m.get("hlc") or 0
            if h > top:
                top = h
    return int(top)


# ---------------------------------------------------------------- the LocalStore


def _written_elsewhere(meta: Any, known_seq: int, device_id: str) -> bool:
    """Whether a pulled row carries a write this laptop has not seen: a field (or the deletion) written
    by another device after the server version this laptop last held. A row whose only new writes are
    this laptop's own is its change coming back."""
    if not isinstance(meta, dict) or not meta:
        return True  # nothing to tell by: count it
    for m in meta.values():
        if isinstance(m, dict) and m.get("dev") != device_id and int(m.get("seq") or 0) > known_seq:
            return True
    return False


class VaultSyncStore:
    """`sync.client.LocalStore` over the SQLCipher vault. Each method is one transaction under ``store.lock``."""

    def __init__(self, store: CaseStore) -> None:
        self.store = store
        self.engine = store.engine
        self.lock = store.lock
        # Tests raise inside a page transaction to prove the page and its cursor roll back together.
        self.fail_in_page: Callable[[int], None] | None = None
        # One instance serves one sync (the per-vault sync lock keeps others out), so what it read
        # or wrote itself can be kept here instead of being read back before every request.
        self._base_cache: int | None = None
        self._pos: PullPosition | None = None
        self._purge_waiting = False
        self._seen_hlc: int | None = None
        """The newest server HLC seen but not yet merged into the stored clock (see observe_server)."""
        self.news = 0
        """Pulled rows that brought something from elsewhere: this laptop's own changes come back in
        the feed too (the server's copy, with its sequence number) and are not news to the worker."""
        self._page_news = 0
        self.set_aside = 0
        """Pulled rows (and conflicts) the inbound gate refused in this sync: kept in sync_quarantine."""
        self._page_aside: list[dict[str, Any]] = []
        self._page_cleared: list[tuple[str, str]] = []
        self._held: set[tuple[str, str]] = set()
        """(tbl, row_id) of the quarantine entries when the page began."""

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        with self.lock, Session(self.engine, expire_on_commit=False) as s, s.begin():
            yield s

    @property
    def device_id(self) -> str:
        return self.store.actor.device_id

    def now_ms(self) -> int:
        return int(self.store.service.clock().timestamp() * 1000)

    def _base(self, s: Session) -> int:
        if self._base_cache is None:  # set at enrolment, never changed by a sync
            self._base_cache = int(_state(s, [K_BASE]).get(K_BASE) or 0)
        return self._base_cache

    # -- push side --

    def pending_count(self) -> int:
        with self.lock, self.engine.connect() as c:
            return int(c.exec_driver_sql(PENDING_COUNT_SQL).scalar() or 0)

    def pending_mutations(self, limit: int) -> list[dict[str, Any]]:
        with self.lock, Session(self.engine) as s:
            base = self._base(s)
            rows = _sql(
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
            for ids in _chunks(sorted(wanted)):
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
                _put(s, {K_PHASE: "snapshot", K_STARTED: None, K_AFTER: None})
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
        _save_hlc(s, last)
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
            row.row_hlc = _max_hlc(meta)
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
            last = int(c.exec_driver_sql("SELECT last FROM hlc_state WHERE id = 1").scalar() or 0)
            have_offset = c.exec_driver_sql("SELECT 1 FROM sync_state WHERE key = ?", (K_OFFSET,)).first()
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
                _save_hlc(s, new)
            if offset_moved or have_offset is None:
                _put(s, {K_OFFSET: str(offset_ms)})

    def _flush_hlc(self, s: Session) -> None:
        """Merge the newest server HLC seen into the stored clock, inside the caller's transaction."""
        seen = self._seen_hlc
        if seen is None:
            return
        last = int(s.exec(select(HlcState.last).where(HlcState.id == 1)).first() or 0)
        if seen > last:
            _save_hlc(s, hlc_mod.receive(last, seen, self.now_ms() + self.store.service.hlc_offset_ms))
        self._seen_hlc = None

    # -- pull side --

    def pull_position(self) -> PullPosition:
        if self._pos is not None:
            return dataclasses.replace(self._pos)
        with self.lock, Session(self.engine) as s:
            st = _state(s, [K_PHASE, K_CURSOR, K_AFTER, K_EPOCH, K_STARTED, K_PURGE])
        self._purge_waiting = bool(st.get(K_PURGE))
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
                _sql(s, f"UPDATE {name} SET server_seq = -1")
            _sql(s, "UPDATE sync_conflict SET server_seq = -1 WHERE status = 'open'")
            _sql(s, "UPDATE sync_quarantine SET server_seq = -1")
            _put(s, {K_PHASE: "snapshot", K_AFTER: None, K_STARTED: "1"})

    def apply_snapshot_page(self, page: dict[str, Any]) -> int:
        self._pos = None
        with self._tx() as s:
            n = self._apply(s, page.get("changes") or [], page.get("conflicts") or [], [])
            values: dict[str, str | None] = {K_EPOCH: str(page.get("server_epoch") or "") or None}
            if page.get("has_more"):
                values[K_AFTER] = str(page.get("after") or "") or None
            else:
                self._finish_snapshot(s)
                values.update({K_PHASE: "pull", K_CURSOR: str(int(page["snapshot_seq"])), K_AFTER: None,
                               K_STARTED: None})  # fmt: skip
            self._flush_hlc(s)
            _put(s, values)
        self.set_aside += len(self._page_aside)
        return n

    def apply_pull_page(self, page: dict[str, Any]) -> int:
        changes = page.get("changes") or []
        conflicts = page.get("conflicts") or []
        removed = page.get("removed_person_ids") or []
        cursor = int(page["next_cursor"])
        epoch = str(page.get("server_epoch") or "") or None
        pos = self.pull_position()
        idle = not (changes or conflicts or removed or self._purge_waiting) and pos.epoch == epoch
        if idle and 0 <= cursor - pos.cursor < CURSOR_LAG:
            # Nothing arrived: write nothing (a no-op sync costs no fsync). A cursor that only moved
            # past other people's changes is kept until it is CURSOR_LAG behind: the next pull then
            # re-reads at most that many feed entries, all out of scope, by the seq index.
            return 0
        self._pos = None
        with self._tx() as s:
            n = self._apply(s, changes, conflicts, removed)
            if changes or conflicts or removed:
                self._flush_hlc(s)
            _put(s, {K_CURSOR: str(cursor), K_EPOCH: epoch})
        self.news += self._page_news  # counted once the page is committed (a failed page is fetched again)
        self.set_aside += len(self._page_aside)
        return n

    # -- applying server state --

    def _pending_by_row(self, s: Session, keys: set[tuple[str, str]]) -> dict[tuple[str, str], list[SyncOutbox]]:
        if not keys:
            return {}
        out: dict[tuple[str, str], list[SyncOutbox]] = {}
        # Pending work is small (what this laptop wrote since the last push): load it whole.
        for r in s.exec(
            select(SyncOutbox).where(SyncOutbox.status == "pending").order_by(col(SyncOutbox.mutation_id))
        ).all():
            if (r.tbl, r.row_id) in keys:
                out.setdefault((r.tbl, r.row_id), []).append(r)
        return out

    def _apply(
        self,
        s: Session,
        changes: list[dict[str, Any]],
        conflicts: list[dict[str, Any]],
        removed: list[str],
    ) -> int:
        practice = self.store.actor.practice_id
        keys = {(c["tbl"], c["id"]) for c in changes} | {(c["tbl"], c["row_id"]) for c in conflicts}
        pending = self._pending_by_row(s, keys)
        touched: set[str] = set()
        dated: set[str] = set()  # people whose caseload dates depend on rows of this page
        applied = 0
        self._page_news = 0
        self._page_aside, self._page_cleared = [], []
        # One read per page (the table is empty unless something was set aside): a later good version clears it.
        self._held = {(t, r) for t, r in _sql(s, "SELECT tbl, row_id FROM sync_quarantine").all()}
        held = self._held
        me = self.device_id
        by_tbl: dict[str, list[dict[str, Any]]] = {}
        for c in changes:
            by_tbl.setdefault(c["tbl"], []).append(c)
        for tbl, items in by_tbl.items():
            if tbl == "community_service":
                n = self._apply_directory(s, items, practice)
                applied += n
                self._page_news += n  # the directory is written on the server (imports), never here
                continue
            model = SYNCED_MODELS.get(tbl)
            spec = TABLES.get(tbl)
            if model is None or spec is None:
                continue  # a table this version does not know yet
            ids = [c["id"] for c in items]
            present = {r[0] for r in _sql(s, f"SELECT id FROM {tbl} WHERE id IN {_IN_IDS}", _ids(ids))}
            existing: dict[str, Synced] = {}
            for chunk in _chunks([i for i in ids if i in present]):
                for r in s.exec(select(model).where(col(model.id).in_(chunk))).all():
                    existing[r.id] = r
            bulk = _bulk(tbl, self.engine.dialect)
            base = bulk.template()
            fresh: list[tuple[Any, ...]] = []
            for c in items:
                seq = int(c["seq"])
                row = existing.get(c["id"])
                if row is not None and row.server_seq is not None and row.server_seq >= 0 and seq <= row.server_seq:
                    continue  # already applied (a replayed page)
                refusal = _row_refusal(tbl, c)
                if refusal is not None:
                    self._set_aside(s, tbl, c, refusal, seq, row)
                    continue
                if held and (tbl, c["id"]) in held:
                    self._page_cleared.append((tbl, c["id"]))
                person_id = c.get("person_id") or (c["id"] if tbl == "person" else "")
                touched.add(person_id)
                if tbl in _DATED:
                    dated.add(person_id)
                applied += 1
                known = row.server_seq if row is not None and row.server_seq is not None else -1
                self._page_news += _written_elsewhere(c.get("meta"), known, me)
                if self.fail_in_page is not None:
                    self.fail_in_page(applied)
                if row is None and (tbl, c["id"]) not in pending:
                    # Not held here and no local work on it: a plain insert, no merge (the bulk path).
                    fresh.append(bulk.row(base, c, practice, person_id, seq))
                    continue
                values = {
                    f: _local_value(model, f, v)
                    for f, v in (c.get("values") or {}).items()
                    if f in spec.fields and f in model.model_fields
                }
                meta = dict(c.get("meta") or {})
                if row is None:
                    # Local work for a row this laptop no longer holds: rebuild it, then re-apply the work.
                    d = _DEFAULTS[tbl]()
                    d.update(id=c["id"], practice_id=practice, person_id=person_id)
                    row = model(**d)
                for f, v in values.items():
                    setattr(row, f, v)
                row.field_meta = meta
                row.deleted = bool(c.get("deleted"))
                row.server_seq = seq
                row.person_id = person_id
                self._reapply(row, model, pending.get((tbl, row.id), []))
                row.row_hlc = _max_hlc(row.field_meta)
                if isinstance(row, Person):
                    row.search_text = search_text_for(row)
                s.add(row)
            if fresh:
                if tbl == "person":
                    fresh = bulk.fill_person_dates(s, fresh)
                s.connection().exec_driver_sql(bulk.sql, fresh)
        s.flush()
        self._apply_conflicts(s, conflicts, pending)
        self._write_quarantine(s)
        self._purge(s, removed, touched)
        self._refresh_people(s, dated)
        return applied

    def _set_aside(
        self, s: Session, tbl: str, c: dict[str, Any], refusal: gate.Refusal, seq: int, row: Any = None
    ) -> None:
        """Keep a refused row out of the vault: where it is and why go to sync_quarantine, not its value.

        A copy this laptop already holds stays as it was (in a snapshot it is kept, not removed as gone).
        """
        values = c.get("values")
        value = values.get(refusal.field) if isinstance(values, dict) else None
        person_id = c.get("person_id") or (c.get("id") if tbl == "person" else None)
        self._page_aside.append(_quarantine_entry(tbl, c.get("id"), person_id, refusal, value, seq,
                                                  self.store.service.clock()))  # fmt: skip
        if row is not None and row.server_seq == -1:
            row.server_seq = None
            s.add(row)

    def _write_quarantine(self, s: Session) -> None:
        """Record this page's set-aside rows and drop the entries of rows that arrived good."""
        table = SyncQuarantine.__table__  # type: ignore[attr-defined]
        if self._page_aside:
            stmt = sqlite_insert(table)
            keep = ("person_id", "field", "reason", "excerpt", "server_seq", "set_aside_at")
            s.execute(
                stmt.on_conflict_do_update(
                    index_elements=["tbl", "row_id"], set_={k: getattr(stmt.excluded, k) for k in keep}
                ),
                self._page_aside,
            )
        for tbl, row_id in self._page_cleared:
            s.execute(delete(table).where(table.c.tbl == tbl, table.c.row_id == row_id))

    def _reapply(self, row: Synced, model: type[Synced], pending: list[SyncOutbox]) -> None:
        """Pending local work wins locally until the server has acknowledged it (sync-anchors D2)."""
        if not pending:
            return
        spec = TABLES[model.__tablename__]  # type: ignore[index]
        meta = dict(row.field_meta or {})
        for ob in pending:
            fields = ob.fields or {}
            if ob.op in ("insert", "patch"):
                for f, fc in fields.items():
                    if f in spec.fields and f in model.model_fields:
                        setattr(row, f, _local_value(model, f, fc.get("v")))
                        meta[f] = self._pending_meta(ob, fc)
            elif ob.op == "delete":
                row.deleted = True
            elif ob.op == "resolve":
                for f, fc in fields.items():
                    if f == DELETED:
                        if fc.get("v") is True:
                            row.deleted = True
                    elif f in spec.fields and f in model.model_fields:
                        setattr(row, f, _local_value(model, f, fc.get("v")))
                        meta[f] = self._pending_meta(ob, fc)
        row.field_meta = meta

    def _pending_meta(self, ob: SyncOutbox, fc: dict[str, Any]) -> dict[str, Any]:
        return {"hlc": int(fc.get("hlc") or ob.hlc), "dev": self.device_id, "seq": fc.get("base_seq")}

    def _apply_directory(self, s: Session, items: list[dict[str, Any]], practice: str) -> int:
        from sprx_tui.core.directory import search_text_for as service_search_text

        n = 0
        for c in items:
            row = s.get(CommunityService, c["id"])
            seq = int(c["seq"])
            if row is not None and row.server_seq is not None and row.server_seq >= 0 and seq <= row.server_seq:
                continue
            refusal = None if c.get("deleted") else _row_refusal("community_service", c)
            if refusal is not None:
                self._set_aside(s, "community_service", c, refusal, seq, row)
                continue
            if ("community_service", c["id"]) in self._held:
                self._page_cleared.append(("community_service", c["id"]))
            n += 1
            if c.get("deleted"):
                if row is not None:
                    s.delete(row)
                continue
            if row is None:
                row = CommunityService(id=c["id"], name="")
            for f, v in (c.get("values") or {}).items():
                if f in CommunityService.model_fields and f in TABLES["community_service"].fields:
                    setattr(row, f, _local_value(CommunityService, f, v))
            if row.categories is None:
                row.categories = []
            if row.needs is None:
                row.needs = []
            row.practice_id = practice
            row.server_seq = seq
            row.search_text = service_search_text(row)
            s.add(row)
        return n

    def _apply_conflicts(
        self, s: Session, conflicts: list[dict[str, Any]], pending: dict[tuple[str, str], list[SyncOutbox]]
    ) -> None:
        resolving = {ob.conflict_id for obs in pending.values() for ob in obs if ob.op == "resolve"}
        now = self.store.service.clock()
        for c in conflicts:
            refusal = _conflict_refusal(c)
            if refusal is not None:
                # Its versions are shown on the Sync screen: set aside like a row (the row itself is checked too).
                seq = int(c.get("seq") or 0)
                entry = _quarantine_entry("sync_conflict", c.get("id"), c.get("person_id"), refusal, None, seq, now)
                self._page_aside.append(entry)
                continue
            if ("sync_conflict", c["id"]) in self._held:
                self._page_cleared.append(("sync_conflict", c["id"]))
            row = s.get(SyncConflict, c["id"]) or SyncConflict(
                id=c["id"], tbl=c["tbl"], row_id=c["row_id"], field=c["field"]
            )
            row.tbl = c["tbl"]
            row.row_id = c["row_id"]
            row.person_id = c.get("person_id")
            row.field = c["field"]
            row.kind = c.get("kind") or "concurrent_edit"
            row.values_json = list(c.get("values") or [])
            row.shown_idx = int(c.get("shown_idx") or 0)
            row.status = c.get("status") or "open"
            row.resolution = c.get("resolution")
            row.server_seq = int(c.get("seq") or 0)
            if row.status == "open" and row.id in resolving:
                row.status = "resolved"  # this laptop's choice is on its way
            s.add(row)

    def _purge(self, s: Session, removed: list[str], arrived: set[str]) -> None:
        """Remove people taken off this worker's caseload, once nothing of theirs waits to be sent."""
        st = _state(s, [K_PURGE])
        waiting = set(json.loads(st.get(K_PURGE) or "[]"))
        if not removed and not waiting:
            return
        # Rows arriving for a person mean they are back in scope: no purge for them.
        todo = (waiting - arrived) | set(removed)
        busy = set(
            s.exec(
                select(SyncOutbox.person_id)
                .where(SyncOutbox.status == "pending", col(SyncOutbox.person_id).in_(list(todo)))
                .distinct()
            ).all()
        )
        now = sorted(todo - busy)
        if now:
            for name in [*SYNCED_MODELS, "sync_conflict", "sync_quarantine"]:
                _sql(s, f"DELETE FROM {name} WHERE person_id IN {_IN_IDS}", _ids(now))
        later = sorted(todo & busy)
        _put(s, {K_PURGE: json.dumps(later) if later else None})

    def _finish_snapshot(self, s: Session) -> None:
        busy = {
            (t, r)
            for t, r in s.exec(select(SyncOutbox.tbl, SyncOutbox.row_id).where(SyncOutbox.status == "pending")).all()
        }
        touched: set[str] = set()
        for name in SYNCED_MODELS:
            stale = _sql(s, f"SELECT id, person_id FROM {name} WHERE server_seq = -1").all()
            if not stale:
                continue
            gone = [r[0] for r in stale if (name, r[0]) not in busy]
            touched.update(r[1] for r in stale)
            if gone:
                _sql(s, f"DELETE FROM {name} WHERE id IN {_IN_IDS}", _ids(gone))
            # Rows kept for pending work are unacknowledged again.
            _sql(s, f"UPDATE {name} SET server_seq = NULL WHERE server_seq = -1")
        _sql(s, "DELETE FROM community_service WHERE server_seq = -1")
        _sql(s, "DELETE FROM sync_quarantine WHERE server_seq = -1")  # rows the server no longer sends
        _sql(
            s,
            "UPDATE sync_conflict SET status = 'resolved', resolution = ?, server_seq = NULL WHERE server_seq = -1",
            (json.dumps({"by": "server"}),),
        )
        self._refresh_people(s, touched)

    def _refresh_people(self, s: Session, person_ids: set[str]) -> None:
        """Keep the caseload's denormalised dates right for rows that came from the server.

        Only people whose dates actually change are written: each write also rewrites the caseload
        indexes that carry the dates.
        """
        ids = sorted(p for p in person_ids if p)
        if ids:
            _sql(
                s,
                f"WITH d AS (SELECT p.id AS id, ({_LAST_CONTACT_SQL}) AS lc, ({_NEXT_FOLLOW_UP_SQL}) AS nf "
                f"  FROM person p WHERE p.id IN {_IN_IDS}) "
                "UPDATE person SET last_contact_on = d.lc, next_follow_up_on = d.nf FROM d WHERE person.id = d.id "
                "AND (person.last_contact_on IS NOT d.lc OR person.next_follow_up_on IS NOT d.nf)",
                _ids(ids),
            )


_LAST_CONTACT_SQL = "SELECT substr(max(c.occurred_at), 1, 10) FROM contact c WHERE c.person_id = p.id AND c.deleted = 0"
_NEXT_FOLLOW_UP_SQL = (
    "SELECT min(f.due_on) FROM follow_up f WHERE f.person_id = p.id AND f.status = 'open' AND f.deleted = 0"
)
_DATED = frozenset({"contact", "follow_up"})
"""Tables whose rows set a person's caseload dates (last contact, next follow-up)."""


EXCERPT_CHARS = 40
"""At most this much of a refused value is kept in sync_quarantine, made visible (``gate.visible``)."""


def _row_refusal(tbl: str, c: dict[str, Any]) -> gate.Refusal | None:
    """The inbound gate on one pulled row: its ids, then every value it carries (one ``check_values``)."""
    row_id = str(c.get("id"))
    r = gate.check_identifier(c.get("id"), table=tbl, row_id=row_id, field="id") or gate.check_identifier(
        c.get("person_id"), table=tbl, row_id=row_id, field="person_id"
    )
    if r is not None:
        return r
    values = c.get("values")
    if values is None:
        return None
    if not isinstance(values, dict):
        return gate.Refusal(tbl, row_id, "values", "is not a set of values")
    return gate.check_values(tbl, values, row_id)


def _conflict_refusal(c: dict[str, Any]) -> gate.Refusal | None:
    """The inbound gate on one pulled conflict: its ids and every version the Sync screen would show."""
    tbl, row_id, fld = str(c.get("tbl")), str(c.get("row_id")), str(c.get("field"))
    for name in ("id", "tbl", "row_id", "person_id", "field"):
        if (r := gate.check_identifier(c.get(name), table=tbl, row_id=row_id, field=name)) is not None:
            return r
    values = c.get("values")
    if not isinstance(values, list):
        return gate.Refusal(tbl, row_id, fld, "has versions that are not a list")
    resolution = c.get("resolution")
    versions = [*values, resolution] if isinstance(resolution, dict) else values
    for v in versions:
        if not isinstance(v, dict):
            return gate.Refusal(tbl, row_id, fld, "has a version that cannot be read")
        if (r := gate.check_identifier(v.get("dev"), table=tbl, row_id=row_id, field="device")) is not None:
            return r
        r = None
        if c.get("kind", "concurrent_edit") == "concurrent_edit":
            r = gate.check_value(tbl, fld, v.get("v"), row_id)
        elif isinstance(v.get("v"), str):  # duplicate_person: a person id
            r = gate.check_identifier(v.get("v"), table=tbl, row_id=row_id, field=fld)
        if r is not None:
            return r
    return None


def _quarantine_entry(
    tbl: str, row_id: Any, person_id: Any, refusal: gate.Refusal, value: Any, seq: int, now: dt.datetime
) -> dict[str, Any]:
    """A sync_quarantine row: every text in it made visible, the value cut to an excerpt."""
    if value is None:
        excerpt = ""
    else:
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        excerpt = gate.visible(text[:EXCERPT_CHARS])
    return {
        "tbl": gate.visible(tbl)[:64],
        "row_id": gate.visible(row_id)[:200],
        "person_id": gate.visible(person_id)[:200] if person_id else None,
        "field": gate.visible(refusal.field)[:64],
        "reason": gate.visible(refusal.sentence)[:500],
        "excerpt": excerpt,
        "server_seq": seq,
        "set_aside_at": now,
    }


class _Bulk:
    """Plain inserts of server rows into one local table, for rows the laptop does not hold yet.

    Built once per table: the column order, a converter per synced field (wire value to what
    SQLAlchemy's own bind processor for that column stores, so rows read back exactly as ORM-written
    ones), and the column defaults; then one driver-level ``executemany`` per page instead of a
    model or a compiled statement per row.
    """

    def __init__(self, tbl: str, dialect: Any) -> None:
        model = SYNCED_MODELS[tbl]
        spec = TABLES[tbl]
        table = model.__table__  # type: ignore[attr-defined]
        self.tbl = tbl
        self.dialect = dialect
        self.columns = [c.name for c in table.columns]
        self.index = {name: i for i, name in enumerate(self.columns)}
        self.processors = [c.type.dialect_impl(dialect).bind_processor(dialect) for c in table.columns]
        self.sql = (
            f"INSERT INTO {table.name} ({', '.join(chr(34) + c + chr(34) for c in self.columns)}) "
            f"VALUES ({_marks(len(self.columns))})"
        )
        self.defaults = _DEFAULTS[tbl]
        # field -> (column position, converter or None)
        self.fields: dict[str, tuple[int, Callable[[Any], Any] | None]] = {}
        for f in spec.fields:
            if f not in model.model_fields or f not in self.index:
                continue
            i = self.index[f]
            kind = _base_type(model.model_fields[f].annotation)
            wire: Callable[[Any], Any] | None = None
            if kind in (dt.datetime, "dt.datetime"):
                wire = _to_utc_datetime
            elif kind in (dt.date, "dt.date"):
                wire = _to_date
            proc = self.processors[i]
            # The bind processor sees None too (JSON stores None as 'null', as the ORM does).
            if wire is None:
                self.fields[f] = (i, proc)
            elif proc is None:
                self.fields[f] = (i, _none_safe(wire))
            else:
                self.fields[f] = (i, _compose(_none_safe(wire), proc))
        self.meta_proc = self.processors[self.index["field_meta"]]
        self.bool_proc = self.processors[self.index["deleted"]]

    def template(self) -> list[Any]:
        """Stored forms of the column defaults, made once per page (created_at: the page's time)."""
        d = self.defaults()
        return [p(d.get(n)) if p is not None else d.get(n) for n, p in zip(self.columns, self.processors, strict=True)]

    def row(self, base: list[Any], c: dict[str, Any], practice: str, person_id: str, seq: int) -> tuple[Any, ...]:
        out = list(base)
        fields = self.fields
        values = c.get("values") or {}
        for f, v in values.items():
            spot = fields.get(f)
            if spot is not None:
                i, conv = spot
                out[i] = conv(v) if conv is not None else v
        meta = c.get("meta") or {}
        ix = self.index
        out[ix["id"]] = c["id"]
        out[ix["practice_id"]] = practice
        out[ix["person_id"]] = person_id
        out[ix["field_meta"]] = self.meta_proc(meta) if self.meta_proc is not None else meta
        out[ix["row_hlc"]] = _max_hlc(meta)
        out[ix["server_seq"]] = seq
        deleted = bool(c.get("deleted"))
        out[ix["deleted"]] = self.bool_proc(deleted) if self.bool_proc is not None else deleted
        if self.tbl == "person":
            out[ix["search_text"]] = search_text_for(
                types.SimpleNamespace(**{k: values.get(k) for k in _SEARCH_FIELDS})  # type: ignore[arg-type]
            )
        return tuple(out)

    def fill_person_dates(self, s: Session, people: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Caseload dates of new people from contacts and follow-ups already here (a snapshot sends those first)."""
        ix = self.index
        i_id, i_last, i_next = ix["id"], ix["last_contact_on"], ix["next_follow_up_on"]
        ids = [r[i_id] for r in people]
        last: dict[str, str] = dict(
            _sql(
                s,
                "SELECT person_id, substr(max(occurred_at), 1, 10) FROM contact "
                f"WHERE person_id IN {_IN_IDS} AND deleted = 0 GROUP BY person_id",
                _ids(ids),
            ).all()
        )
        nxt: dict[str, str] = dict(
            _sql(
                s,
                "SELECT person_id, min(due_on) FROM follow_up "
                f"WHERE person_id IN {_IN_IDS} AND status = 'open' AND deleted = 0 GROUP BY person_id",
                _ids(ids),
            ).all()
        )
        if not last and not nxt:
            return people
        p_last, p_next = self.processors[i_last], self.processors[i_next]
        out = []
        for r in people:
            lc, nf = last.get(r[i_id]), nxt.get(r[i_id])
            if lc or nf:
                row = list(r)
                d_lc = dt.date.fromisoformat(lc) if lc else None
                d_nf = dt.date.fromisoformat(nf[:10]) if nf else None
                row[i_last] = p_last(d_lc) if p_last is not None else d_lc
                row[i_next] = p_next(d_nf) if p_next is not None else d_nf
                r = tuple(row)
            out.append(r)
        return out


def _compose(first: Callable[[Any], Any], then: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda v: then(first(v))


def _none_safe(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda v: None if v is None else convert(v)


_SEARCH_FIELDS = ("given_name", "family_name", "preferred_name", "nhs_number", "postcode")
"""What search_text_for reads from a person."""


def _to_utc_datetime(v: Any) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(v)
    # SQLite keeps wall time only: store UTC so it reads back as the same instant.
    return parsed.astimezone(dt.UTC) if parsed.tzinfo else parsed


def _to_date(v: Any) -> dt.date:
    return dt.date.fromisoformat(v[:10])


_BULK: dict[tuple[str, int], _Bulk] = {}


def _bulk(tbl: str, dialect: Any) -> _Bulk:
    b = _BULK.get((tbl, id(dialect)))
    if b is None or b.dialect is not dialect:
        b = _BULK[(tbl, id(dialect))] = _Bulk(tbl, dialect)
    return b


def _save_hlc(s: Session, last: int) -> None:
    s.execute(
        sqlite_insert(HlcState.__table__)  # type: ignore[attr-defined]
        .values(id=1, last=last)
        .on_conflict_do_update(index_elements=["id"], set_={"last": last})
    )


# ---------------------------------------------------------------- enrolment


def _config(store: CaseStore) -> dict[str, str]:
    with store.lock, Session(store.engine) as s:
        return _state(s, [K_URL, K_TOKEN, K_DEVICE, K_USER, K_PRACTICE, K_PIN, K_CERT, K_EPOCH, K_OFFSET])


def is_enrolled(store: CaseStore) -> bool:
    return bool(_config(store).get(K_TOKEN))


def is_demo(store: CaseStore) -> bool:
    """A vault filled by `sprx demo`: its people are made up and must never reach a practice server."""
    with store.lock, Session(store.engine) as s:
        return bool(_state(s, [K_DEMO]).get(K_DEMO))


DEMO_NOT_ENROLLED = (
    "This is a demo vault of made-up people, so it cannot be enrolled: its records would go into the "
    "practice's real ones. Enrol the vault you use for real work instead."
)


def enrol(
    store: CaseStore,
    server_url: str,
    code: str,
    ca_cert: Path | str | None = None,
    *,
    device_name: str | None = None,
    transport: httpx.BaseTransport | None = None,
) -> Enrolment:
    """Enrol this vault with a practice server; raises SyncError (plain sentence) on failure.

    HTTPS by default (plain http only to this computer). The server's certificate is checked
    against ``ca_cert`` (or the system store) and its SHA-256 is pinned in the vault; the token,
    device id and pin never leave the encrypted database. Writes made before enrolment are kept
    and sent first.
    """
    if is_enrolled(store):
        raise SyncError("This laptop is already enrolled with a practice server.")
    if is_demo(store):
        raise SyncError(DEMO_NOT_ENROLLED)
    url = server_url.rstrip("/") if transport is not None else sc.check_server_url(server_url)
    ca_pem = None
    if ca_cert is not None:
        try:
            ca_pem = Path(ca_cert).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError):
            raise SyncError("The certificate file could not be read.") from None
        if "BEGIN CERTIFICATE" not in ca_pem:
            raise SyncError("The certificate file is not a PEM certificate.")
    name = (device_name or f"sprx on {platform.node() or 'a laptop'}")[:100]
    try:
        e = sc.enrol_device(url, code, name, ca_pem=ca_pem, transport=transport)
    except ValueError:
        raise SyncError("The certificate file is not a usable certificate.") from None
    if url.startswith("https://") and transport is None and not e.pin:
        raise sc.CertificateMismatch("The practice server's certificate could not be read, so nothing was stored.")
    with store.lock, Session(store.engine) as s, s.begin():
        first_pending = s.exec(select(func.min(SyncOutbox.mutation_id)).where(SyncOutbox.status == "pending")).one()
        top = s.exec(select(func.max(SyncOutbox.mutation_id))).one()
        # The server numbers this device's changes 1, 2, 3 ...: everything not yet sent (including
        # work done before enrolment) is numbered from 1.
        base = (int(first_pending) - 1) if first_pending is not None else int(top or 0)
        _put(
            s,
            {
                K_URL: url, K_TOKEN: e.token, K_DEVICE: e.device_id, K_USER: e.user_id,
                K_PRACTICE: e.practice_id, K_PIN: e.pin or None, K_CERT: e.cert_pem or None,
                K_EPOCH: e.server_epoch, K_PHASE: "snapshot", K_CURSOR: "0", K_AFTER: None, K_STARTED: None,
                K_BASE: str(base), K_ENROLLED: utcnow().isoformat(),
            },
        )  # fmt: skip
        # Rows written before enrolment belong to the practice now.
        for name in SYNCED_MODELS:
            _sql(s, f"UPDATE {name} SET practice_id = ?", (e.practice_id,))
        last = int(s.exec(select(HlcState.last).where(HlcState.id == 1)).first() or 0)
        if e.server_hlc:
            _save_hlc(s, hlc_mod.receive(last, e.server_hlc, int(store.service.clock().timestamp() * 1000)))
    actor = Actor(user_id=e.user_id, device_id=e.device_id, practice_id=e.practice_id)
    store.actor = actor
    store.service.actor = actor
    store.service.record_event("ENROL", detail="enrolled")
    return e


# ---------------------------------------------------------------- sync_now


@dataclass(frozen=True)
class SyncResult:
    """What one sync did. ``message`` is one plain sentence for the status line."""

    status: str
    """synced | conflicts | offline | revoked | retired | upgrade | failed | busy | not_enrolled"""
    exit_code: int
    message: str
    pushed: int = 0
    acked: int = 0
    rejected: int = 0
    """Changes the server refused in this sync (kept in sync_rejected)."""
    pulled: int = 0
    conflicts: int = 0
    """Open conflicts after this sync."""
    pending: int = 0
    """Changes still waiting to be sent."""
    rejected_total: int = 0
    finished_at: dt.datetime = dataclasses.field(default_factory=utcnow)
    report: sc.SyncReport | None = None
    set_aside: int = 0
    """Rows from the server set aside after this sync (the inbound gate refused them; see set_aside_sentence)."""

    @property
    def ok(self) -> bool:
        return self.status in ("synced", "conflicts")


@dataclass(frozen=True)
class SyncStatus:
    enrolled: bool
    server_url: str | None
    user_id: str | None
    practice_id: str | None
    last_sync_at: dt.datetime | None
    last_successful_sync_at: dt.datetime | None
    last_status: str | None
    last_message: str | None
    pending: int
    conflicts: int
    rejected: int
    demo: bool = False
    """A demo vault of made-up people: it can never be enrolled (see enrol)."""
    set_aside: int = 0
    """Rows from the server set aside because the inbound gate refused them (sync_quarantine)."""


_SYNC_LOCKS: dict[str, threading.Lock] = {}
_SYNC_LOCKS_GUARD = threading.Lock()


def _sync_lock(store: CaseStore) -> threading.Lock:
    key = str(Path(store.vault.path).resolve())
    with _SYNC_LOCKS_GUARD:
        return _SYNC_LOCKS.setdefault(key, threading.Lock())


def _counts(store: CaseStore) -> tuple[int, int, int]:
    with store.lock, Session(store.engine) as s:
        pending = s.connection().exec_driver_sql(PENDING_COUNT_SQL).scalar() or 0
        conflicts = s.exec(select(func.count()).select_from(SyncConflict).where(SyncConflict.status == "open")).one()
        rejected = s.exec(select(func.count()).select_from(SyncRejected)).one()
    return int(pending), int(conflicts), int(rejected)


def set_aside_count(store: CaseStore) -> int:
    """How many rows (and conflicts) from the server are set aside in sync_quarantine."""
    with store.lock, store.engine.connect() as c:
        return int(c.exec_driver_sql("SELECT count(*) FROM sync_quarantine").scalar() or 0)


def set_aside_sentence(n: int) -> str:
    """One plain sentence about rows set aside, for the Sync screen and `sprx sync`; empty for none."""
    if n <= 0:
        return ""
    if n == 1:
        return "1 row from the server was set aside (it holds text that cannot be shown safely)."
    return f"{n} rows from the server were set aside (they hold text that cannot be shown safely)."


_LAST_SYNC: dict[str, dict[str, str | None]] = {}
"""Per vault: the newest last-sync keys not yet written to it (see _record_last_sync)."""
LAST_SYNC_PERSIST_S = 600
"""A run of unchanged syncs writes its time to the vault at most this often."""


def _record_last_sync(store: CaseStore, values: dict[str, str | None], *, moved: bool) -> None:
    """Keep the last-sync status; write it to the vault only when it says something new.

    A sync that moved nothing and ended as the stored one did would otherwise cost a write
    transaction (an fsync) just for the time and the sentence. Those are kept in memory, which
    sync_status reads, and written when the status changes, when data moved, or when the stored
    time is more than LAST_SYNC_PERSIST_S old (so a restart shows at most that much staleness).
    """
    key = str(Path(store.vault.path).resolve())
    try:
        with store.lock, Session(store.engine) as s, s.begin():
            stored = _state(s, values)
            old_at = stored.get(K_LAST_AT)
            fresh = False
            if old_at and values.get(K_LAST_AT):
                try:
                    age = dt.datetime.fromisoformat(str(values[K_LAST_AT])) - dt.datetime.fromisoformat(old_at)
                    fresh = dt.timedelta(0) <= age < dt.timedelta(seconds=LAST_SYNC_PERSIST_S)
                except ValueError:
                    fresh = False
            if moved or stored.get(K_LAST_STATUS) != values.get(K_LAST_STATUS) or not fresh:
                _put(s, values)
                _LAST_SYNC.pop(key, None)
                return
    except Exception as exc:
        if not is_disk_full(exc, store.vault.path):
            raise
        # No room to write it (the sync said so): kept in memory, which sync_status reads, until there is.
    _LAST_SYNC[key] = dict(values)


def sync_status(store: CaseStore) -> SyncStatus:
    """Enrolment, last sync and the pending / conflict / rejected counts (one short read)."""
    with store.lock, Session(store.engine) as s:
        keys = [K_URL, K_TOKEN, K_USER, K_PRACTICE, K_LAST_AT, K_LAST_OK, K_LAST_STATUS, K_LAST_MESSAGE, K_DEMO]
        st = _state(s, keys)
    newer = _LAST_SYNC.get(str(Path(store.vault.path).resolve()))
    if newer and st.get(K_TOKEN):
        st.update({k: v for k, v in newer.items() if v is not None})
    pending, conflicts, rejected = _counts(store)

    def when(key: str) -> dt.datetime | None:
        return dt.datetime.fromisoformat(st[key]) if st.get(key) else None

    return SyncStatus(
        enrolled=bool(st.get(K_TOKEN)),
        server_url=st.get(K_URL),
        user_id=st.get(K_USER),
        practice_id=st.get(K_PRACTICE),
        last_sync_at=when(K_LAST_AT),
        last_successful_sync_at=when(K_LAST_OK),
        last_status=st.get(K_LAST_STATUS),
        last_message=st.get(K_LAST_MESSAGE),
        pending=pending,
        conflicts=conflicts,
        rejected=rejected,
        demo=bool(st.get(K_DEMO)),
        set_aside=set_aside_count(store),
    )


UNSENT_WARN_AFTER = dt.timedelta(days=1)
"""The app warns on quit and on lock when changes have waited unsent longer than this."""


def unsent_overdue(store: CaseStore, now: dt.datetime) -> int:
    """How many changes wait unsent when the oldest has waited over a day; 0 otherwise or when not enrolled."""
    with store.lock, Session(store.engine) as s:
        if not _state(s, [K_TOKEN]).get(K_TOKEN):
            return 0
        oldest = s.exec(
            select(SyncOutbox.created_at)
            .where(SyncOutbox.status == "pending")
            .order_by(col(SyncOutbox.mutation_id))
            .limit(1)
        ).first()
        if oldest is None:
            return 0
        if oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=dt.UTC)
        if now.tzinfo is None:
            now = now.replace(tzinfo=dt.UTC)
        if now - oldest <= UNSENT_WARN_AFTER:
            return 0
        return int(s.connection().exec_driver_sql(PENDING_COUNT_SQL).scalar() or 0)


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def sync_now(
    store: CaseStore,
    progress: sc.Progress | None = None,
    *,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
    local: VaultSyncStore | None = None,
    page: int = sc.PAGE,
) -> SyncResult:
    """Push pending changes, then pull the caseload; never raises for network or server trouble.

    ``progress(phase, done, total)`` is called from the calling thread ("push" has a total; "pull"
    and "snapshot" pass None). After status "revoked" or "retired" the vault is erased and the store is dead.
    """
    lock = _sync_lock(store)
    if not lock.acquire(blocking=False):
        return SyncResult("busy", EXIT_FAILED, "A sync is already running.")
    try:
        return _sync_locked(store, progress, transport, sleep, local, page)
    finally:
        lock.release()


def _sync_locked(
    store: CaseStore,
    progress: sc.Progress | None,
    transport: httpx.BaseTransport | None,
    sleep: Callable[[float], None],
    local: VaultSyncStore | None,
    page: int,
) -> SyncResult:
    cfg = _config(store)
    if not cfg.get(K_TOKEN):
        return SyncResult("not_enrolled", EXIT_FAILED, sc.NotEnrolled.message)
    if not cfg.get(K_URL) or not cfg.get(K_DEVICE):
        # A damaged enrolment (a token without the server's address or this laptop's id) cannot sync.
        return SyncResult("failed", EXIT_FAILED, INCOMPLETE_ENROLMENT)
    local = local or VaultSyncStore(store)
    local.news = 0
    if cfg.get(K_OFFSET):
        store.service.hlc_offset_ms = int(cfg[K_OFFSET])
    t = sc.Transport(
        cfg[K_URL],
        token=cfg[K_TOKEN],
        pin=cfg.get(K_PIN),
        cert_pem=cfg.get(K_CERT),
        transport=transport,
        now_ms=local.now_ms,
    )
    engine = sc.SyncEngine(local, t, cfg[K_DEVICE], progress=progress, sleep=sleep, page=page)
    status, code, message = "synced", EXIT_SYNCED, ""
    try:
        engine.run()
        r = engine.report
        if r.acked or r.rejected or r.pulled or r.snapshot_rows:
            store.service.record_event(
                "SYNC",
                detail=f"sent={r.acked + r.rejected} rejected={r.rejected} received={r.pulled + r.snapshot_rows}",
            )
            engine.push()
    except sc.DeviceRevoked as exc:
        t.close()
        _erase(store)
        return SyncResult("revoked", EXIT_REVOKED, str(exc), report=engine.report)
    except sc.DeviceRetired as exc:
        # Retired, not lost: the engine raises this only once the outbox is empty (everything was sent).
        t.close()
        _erase(store)
        return SyncResult("retired", EXIT_REVOKED, str(exc), report=engine.report)
    except sc.UpgradeNeeded as exc:
        status, code, message = "upgrade", EXIT_UPGRADE, str(exc)
    except sc.Offline as exc:
        status, code, message = "offline", EXIT_OFFLINE, str(exc)
    except SyncError as exc:
        status, code, message = "failed", EXIT_FAILED, str(exc)
    except Exception as exc:  # noqa: BLE001 - a worker thread must get a sentence, not a traceback
        # Every page and every acknowledgement is its own transaction, so a failure leaves nothing half-applied.
        status, code = "failed", EXIT_FAILED
        message = f"Sync stopped because of an unexpected problem ({type(exc).__name__}); nothing was half-applied."
        if is_disk_full(exc, store.vault.path):
            message = DISK_FULL
    finally:
        t.close()
    r = engine.report
    pending, conflicts, rejected_total = _counts(store)
    if status == "synced":
        sent = r.acked - r.bookkeeping
        # Received: what came from elsewhere (this laptop's own changes come back in the feed too).
        parts = [f"Synced: sent {_plural(sent, 'change')}, received {_plural(local.news + r.snapshot_rows, 'update')}"]
        if r.rejected:
            parts.append(f"{_plural(r.rejected, 'change was', 'changes were')} refused and kept for review")
        message = "; ".join(parts) + "."
        if conflicts:
            status, code = "conflicts", EXIT_CONFLICTS
            message = (
                f"Synced, but {_plural(conflicts, 'conflict needs', 'conflicts need')} a person to choose "
                "which version to keep."
            )
    now = store.service.clock()
    values: dict[str, str | None] = {K_LAST_AT: now.isoformat(), K_LAST_STATUS: status, K_LAST_MESSAGE: message}
    if status in ("synced", "conflicts"):
        values[K_LAST_OK] = now.isoformat()
    _record_last_sync(store, values, moved=bool(r.acked or r.rejected or r.pulled or r.snapshot_rows))
    return SyncResult(
        status,
        code,
        message,
        pushed=r.pushed,
        acked=r.acked,
        rejected=r.rejected,
        pulled=r.pulled + r.snapshot_rows,
        conflicts=conflicts,
        pending=pending,
        rejected_total=rejected_total,
        finished_at=now,
        report=r,
        set_aside=set_aside_count(store),
    )


def _erase(store: CaseStore) -> None:
    """Device revoked: lock and crypto-erase the local copy (practice policy, DESIGN.md section 7)."""
    with store.lock:
        try:
            store.vault.crypto_erase()
        except Exception:  # noqa: BLE001 - erase as much as possible; the key is already gone or going
            store.vault.lock()


# ---------------------------------------------------------------- conflicts and rejections


def resolve_conflict(store: CaseStore, conflict_id: str, chosen_value: Any) -> SyncConflict:
    """Keep ``chosen_value`` (a version's text, a merged text, or True/False for delete-versus-edit).

    Writes the value locally and queues a ``resolve`` change that dominates every value in the
    conflict; the next sync closes the conflict on every laptop.
    """
    return store.service.resolve_conflict(conflict_id, chosen_value)


def open_conflicts(store: CaseStore) -> list[SyncConflict]:
    """Open conflicts, oldest first, with every concurrent value in ``values_json``."""
    with store.lock, Session(store.engine, expire_on_commit=False) as s:
        return list(
            s.exec(
                select(SyncConflict).where(SyncConflict.status == "open").order_by(col(SyncConflict.server_seq))
            ).all()
        )


def rejected_changes(store: CaseStore) -> list[SyncRejected]:
    """Changes the server refused (kept, never dropped), newest first."""
    with store.lock, Session(store.engine, expire_on_commit=False) as s:
        return list(s.exec(select(SyncRejected).order_by(col(SyncRejected.mutation_id).desc())).all())


# ---------------------------------------------------------------- command line


def cli_enrol(args: argparse.Namespace) -> int:
    """`sprx enrol --server URL --code CODE [--ca-cert FILE]`: enrol this vault with the practice server."""
    from sprx_tui.cli import CliError, unlock_store

    try:
        url = sc.check_server_url(args.server)
    except SyncError as exc:
        raise CliError(str(exc)) from None
    ca = getattr(args, "ca_cert", None)
    if ca is not None and not Path(ca).is_file():
        raise CliError("The certificate file could not be found.")
    store = unlock_store(args)
    try:
        e = enrol(store, url, args.code, ca_cert=ca)
    except SyncError as exc:
        raise CliError(str(exc)) from None
    finally:
        store.vault.lock()
    print(f"This laptop is enrolled with {url} as {e.user_id}; run `sprx sync` to fetch the caseload.")
    if e.pin:
        print(f"Server certificate pinned (SHA-256 {e.pin}).")
    return 0


class _Bars:
    """One tqdm bar at a time on stderr (phases run one after another); off when stderr is not a terminal."""

    LABELS = {"push": "Sending changes", "pull": "Receiving updates", "snapshot": "Receiving caseload"}

    def __init__(self) -> None:
        self.bar: Any = None
        self.phase: str | None = None

    def __call__(self, phase: str, done: int, total: int | None) -> None:
        from tqdm import tqdm

        if phase != self.phase or self.bar is None:
            self.close()
            self.phase = phase
            # disable=None: tqdm switches itself off when stderr is not a terminal (scripts, CI logs).
            self.bar = tqdm(total=total, desc=self.LABELS.get(phase, phase), unit=" rows", file=sys.stderr,
                            leave=False, disable=None)  # fmt: skip
        if total is not None and self.bar.total != total:
            self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar = None


def cli_sync(args: argparse.Namespace) -> int:
    """`sprx sync`: push this laptop's changes and pull the caseload, with a progress bar on stderr.

    Exit codes: 0 synced; 1 other failure; 3 the practice server could not be reached (changes are
    kept); 4 synced but conflicts need a person; 5 this laptop's access was withdrawn and its local
    copy erased; 6 an update is needed before syncing (changes are kept).
    """
    from sprx_tui.cli import unlock_store

    store = unlock_store(args)
    bars = _Bars()
    try:
        result = sync_now(store, progress=bars)
    finally:
        bars.close()
        if store.vault.is_unlocked:
            store.vault.lock()
    if result.exit_code in (EXIT_SYNCED, EXIT_CONFLICTS):
        print(result.message)
        if result.pending:
            print(f"{_plural(result.pending, 'change is', 'changes are')} still waiting to be sent.")
        if result.set_aside:
            print(set_aside_sentence(result.set_aside))
    else:
        print(f"sprx: {result.message}", file=sys.stderr)
    return result.exit_code


__all__ = [
    "EXIT_CODES_HELP",
    "SyncResult",
    "SyncStatus",
    "VaultSyncStore",
    "cli_enrol",
    "cli_sync",
    "enrol",
    "is_enrolled",
    "open_conflicts",
    "rejected_changes",
    "resolve_conflict",
    "set_aside_count",
    "set_aside_sentence",
    "sync_now",
    "sync_status",
]
