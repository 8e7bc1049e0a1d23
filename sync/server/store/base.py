"""What every part of the server store shares: its error, the device it serves, and one place for transactions.

``StoreBase`` opens the engine and holds ``_write`` (one transaction that locks the seq counter row),
``_read``, the in-transaction seq counter (``_next_seq``) and the change-feed writer (``_log``). The
per-job mixins of ``ServerStore`` build on it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync import hlc as hlc_mod
from sync.merge import Conflict, RowState
from sync.server import migrate, private
from sync.server.store.tables import (
    _DEL_LOG,
    _INS_LOG,
    _INS_RECORD,
    assignment,
    device,
    make_engine,
    md,
    record,
    server_meta,
)

_META = sa.select(server_meta).where(server_meta.c.id == 1)
"""Built once: every pull and push reads it."""


class StoreError(Exception):
    """A failure with a machine code and a plain sentence for people."""

    def __init__(self, code: str, message: str, status: int = 400, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.extra = extra


@dataclass(frozen=True)
class Device:
    id: str
    worker_id: str
    practice_id: str
    team_id: str | None
    name: str
    revoked_at: int | None
    last_acked_mutation_id: int
    last_pull_seq: int
    last_seen: int | None = None
    retired_at: int | None = None
    pending_reported: int | None = None


def sha256_hex(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _row_state(r: Any) -> RowState:
    return RowState(
        tbl=r.tbl,
        id=r.id,
        person_id=r.person_id,
        practice_id=r.practice_id,
        values=json.loads(r.values),
        meta=json.loads(r.meta),
        deleted=bool(r.deleted),
        seq=int(r.seq),
    )


def _conflict_dict(r: Any) -> Conflict:
    return Conflict(
        id=r.id,
        tbl=r.tbl,
        row_id=r.row_id,
        person_id=r.person_id,
        field=r.field,
        kind=r.kind,
        values=json.loads(r.values),
        shown_idx=int(r.shown_idx),
        status=r.status,
        resolution=json.loads(r.resolution) if r.resolution else None,
        seq=int(r.seq),
    )


class StoreBase:
    """The engine, the clock and the transaction helpers every job of the store writes through."""

    def __init__(self, url: str, *, now_ms: Callable[[], int] = hlc_mod.wall_ms, create: bool = True) -> None:
        """Open the store at ``url``; it must be at this release's schema revision (StoreError otherwise).

        ``create``: an empty database is built at the newest schema (tests and benchmarks). The admin
        command passes False: only ``sprx-server init`` makes a store, and a missing SQLite file is refused.
        """
        self.url = url
        if not create and (path := private.sqlite_path(url)) is not None and not path.is_file():
            raise StoreError("no_store", f"There is no server store at {path}; create it with `sprx-server init`.")
        private.prepare_sqlite(url)  # the file (and so its -wal/-shm) is 0600 before SQLite opens it
        self.engine = make_engine(url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._write_turn = threading.RLock()
        self._seen_guard = threading.Lock()
        self._seen_later: dict[str, dict[str, Any]] = {}
        """Device seen-updates left to the write transaction in progress in this process (see ``_note_seen``)."""
        self.now_ms = now_ms
        try:
            if create and migrate.status(self.engine).state == migrate.EMPTY:
                migrate.create_at_head(self.engine)
            migrate.check(self.engine)
        except migrate.SchemaError as e:
            self.engine.dispose()
            raise StoreError(f"schema_{e.state}", e.message, 503) from None
        # Read first: a store that has its counter row needs no write to open (so reports can run
        # against a read-only replica of a PostgreSQL store).
        with self._read() as conn:
            row = conn.execute(sa.select(server_meta.c.hlc).where(server_meta.c.id == 1)).first()
        if row is None:
            with self._write() as conn:
                row = conn.execute(sa.select(server_meta.c.hlc).where(server_meta.c.id == 1)).first()
                if row is None:
                    conn.execute(
                        server_meta.insert().values(id=1, epoch=str(uuid.uuid4()), tombstone_watermark=0, seq=0, hlc=0)
                    )
        self.clock = hlc_mod.HybridClock(now_ms, last=int(row.hlc) if row is not None else 0)

    def close(self) -> None:
        self.engine.dispose()

    # ---------------------------------------------------------------- transactions

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        # Writers of this process queue here, each woken as soon as the one before commits, instead of
        # each holding a pooled connection while it waits on the database's lock (SQLite's busy handler
        # polls with growing sleeps; PostgreSQL's row lock holds a connection per waiter). Other server
        # processes on the same database still take turns by the database's lock.
        with self._write_turn, self.engine.connect() as conn:
            conn.execution_options(sprx_write=True)
            with conn.begin():
                # One counter row, locked for the whole transaction (SQLite: BEGIN IMMEDIATE):
                # seqs are handed out in commit order, so a reader never sees N+1 before N.
                q = sa.select(server_meta.c.seq).where(server_meta.c.id == 1)
                if not self.is_sqlite:
                    q = q.with_for_update()
                start = conn.execute(q).scalar()
                # The counter is kept in memory for the transaction and written back once.
                conn.info["sprx_seq"] = int(start or 0)
                conn.info["sprx_scope"] = {}
                # Read-ahead of an earlier transaction on this pooled connection (one that failed) never carries over.
                for key in ("sprx_rows", "sprx_deleted", "sprx_gate", "sprx_defer", "sprx_assigned", "sprx_nhs"):
                    conn.info.pop(key, None)
                yield conn
                self._flush_seen(conn)
                if start is not None and conn.info["sprx_seq"] != start:
                    conn.execute(server_meta.update().where(server_meta.c.id == 1).values(seq=conn.info["sprx_seq"]))

    def _note_seen(self, device_id: str, vals: dict[str, Any]) -> None:
        """Write a device's last-seen time and pull position; never wait behind this process's writers.

        When a write transaction of this process is in progress (a push), the values are handed to it
        and committed with it instead of queueing behind it (SQLite has one writer). Lost only if that
        transaction fails, which leaves them older: safe, since GC only keeps more for an older position.
        """
        if not self._write_turn.acquire(blocking=False):
            with self._seen_guard:
                self._seen_later.setdefault(device_id, {}).update(vals)
            return
        try:
            with self.engine.connect() as conn:
                conn.execution_options(sprx_write=True)
                with conn.begin():
                    conn.execute(device.update().where(device.c.id == device_id).values(**vals))
                    self._flush_seen(conn)
        finally:
            self._write_turn.release()

    def _flush_seen(self, conn: Connection) -> None:
        with self._seen_guard:
            later, self._seen_later = self._seen_later, {}
        for device_id, vals in later.items():
            conn.execute(device.update().where(device.c.id == device_id).values(**vals))

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            if not self.is_sqlite:
                conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    def _meta(self, conn: Connection) -> Any:
        return conn.execute(_META).one()

    def _next_seq(self, conn: Connection) -> int:
        conn.info["sprx_seq"] += 1
        return int(conn.info["sprx_seq"])

    def _log(
        self,
        conn: Connection,
        seq: int,
        kind: str,
        tbl: str,
        row_id: str,
        person_id: str | None,
        practice_id: str,
        origin: str,
        mutation_id: int | None,
        now: int,
        *,
        fresh: bool = False,
    ) -> None:
        if not fresh:  # a brand-new row has no earlier feed entry to replace
            conn.execute(_DEL_LOG, {"b_kind": kind, "b_tbl": tbl, "b_row": row_id})
        params = {
            "seq": seq,
            "kind": kind,
            "tbl": tbl,
            "row_id": row_id,
            "person_id": person_id,
            "practice_id": practice_id,
            "origin_device": origin,
            "origin_mutation_id": mutation_id,
            "at": now,
        }
        defer = conn.info.get("sprx_defer") if fresh else None
        if defer is not None:
            defer["log"].append(params)  # see _flush_deferred
        else:
            conn.execute(_INS_LOG, params)

    def _flush_deferred(self, conn: Connection) -> None:
        """Write the new rows and feed entries a push held back (one statement each), before anything reads them.

        Inside a push, inserts of brand-new rows wait in ``conn.info["sprx_defer"]`` and go to the
        database as one multi-row insert: the same transaction, a fraction of the round trips under
        the write lock. Every read of ``record`` in the push path flushes them first.
        """
        defer = conn.info.get("sprx_defer")
        if not defer:
            return
        if defer["record"]:
            conn.execute(_INS_RECORD, defer["record"])
            defer["record"] = []
        if defer["log"]:
            conn.execute(_INS_LOG, defer["log"])
            defer["log"] = []
        if defer.get("assignment"):
            conn.execute(assignment.insert(), defer["assignment"])
            defer["assignment"] = []

    def get_record(self, tbl: str, row_id: str) -> RowState | None:
        with self._read() as conn:
            r = conn.execute(sa.select(record).where(record.c.tbl == tbl, record.c.id == row_id)).first()
        return _row_state(r) if r is not None else None

    def count(self, table: str) -> int:
        t = md.tables[table]
        with self._read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
