"""What every part of the server store shares: its error, the device it serves, and one place for transactions.

``StoreBase`` opens the engine and holds ``_write`` (one transaction that locks the seq counter row),
``_read``, the in-transaction seq counter (``_next_seq``) and the change-feed writer (``_log``). The
per-job mixins of ``ServerStore`` build on it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
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
    make_engine,
    md,
    record,
    server_meta,
)


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
        self.now_ms = now_ms
        try:
            if create and migrate.status(self.engine).state == migrate.EMPTY:
                migrate.create_at_head(self.engine)
            migrate.check(self.engine)
        except migrate.SchemaError as e:
            self.engine.dispose()
            raise StoreError(f"schema_{e.state}", e.message, 503) from None
        with self._write() as conn:
            row = conn.execute(sa.select(server_meta).where(server_meta.c.id == 1)).first()
            if row is None:
                conn.execute(
                    server_meta.insert().values(id=1, epoch=str(uuid.uuid4()), tombstone_watermark=0, seq=0, hlc=0)
                )
                last_hlc = 0
            else:
                last_hlc = int(row.hlc)
        self.clock = hlc_mod.HybridClock(now_ms, last=last_hlc)

    def close(self) -> None:
        self.engine.dispose()

    # ---------------------------------------------------------------- transactions

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
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
                yield conn
                if start is not None and conn.info["sprx_seq"] != start:
                    conn.execute(server_meta.update().where(server_meta.c.id == 1).values(seq=conn.info["sprx_seq"]))

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            if not self.is_sqlite:
                conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    def _meta(self, conn: Connection) -> Any:
        return conn.execute(sa.select(server_meta).where(server_meta.c.id == 1)).one()

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
        conn.execute(
            _INS_LOG,
            {
                "seq": seq,
                "kind": kind,
                "tbl": tbl,
                "row_id": row_id,
                "person_id": person_id,
                "practice_id": practice_id,
                "origin_device": origin,
                "origin_mutation_id": mutation_id,
                "at": now,
            },
        )

    def get_record(self, tbl: str, row_id: str) -> RowState | None:
        with self._read() as conn:
            r = conn.execute(sa.select(record).where(record.c.tbl == tbl, record.c.id == row_id)).first()
        return _row_state(r) if r is not None else None

    def count(self, table: str) -> int:
        t = md.tables[table]
        with self._read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
