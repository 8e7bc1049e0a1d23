"""Server store on SQLAlchemy 2 Core: SQLite file (WAL) by default, PostgreSQL by URL."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from sprx_rules import gate
from sync import merge, schema
from sync import hlc as hlc_mod
from sync.merge import SERVER_DEVICE, Conflict, Mutation, RowState
from sync.schema import TABLES, Kind
from sync.server import private
from sync.server.log import log_event

ENROL_CODE_TTL_MS = 15 * 60 * 1000
ACTIVE_DEVICE_MS = 90 * 24 * 3600 * 1000
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O or 1/I: read aloud over the phone
PERSON_NS = uuid.UUID("2b0e6c1e-8f55-4c39-9a59-6f2f4b7d7f11")

md = sa.MetaData()
Big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

server_meta = sa.Table(
    "server_meta",
    md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("epoch", sa.String(36), nullable=False),
    sa.Column("tombstone_watermark", Big, nullable=False, default=0),
    sa.Column("seq", Big, nullable=False, default=0),  # the single commit-ordered counter
    sa.Column("hlc", Big, nullable=False, default=0),
)
practice = sa.Table(
    "practice",
    md,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
)
team = sa.Table(
    "team",
    md,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("practice_id", sa.String(64), sa.ForeignKey("practice.id"), nullable=False),
)
worker = sa.Table(
    "worker",
    md,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("practice_id", sa.String(64), sa.ForeignKey("practice.id"), nullable=False),
    sa.Column("team_id", sa.String(64), sa.ForeignKey("team.id"), nullable=True),
    sa.Column("created_at", Big, nullable=False),
)
assignment = sa.Table(
    "assignment",
    md,
    sa.Column("person_id", sa.String(64), primary_key=True),
    sa.Column("practice_id", sa.String(64), nullable=False),
    sa.Column("worker_id", sa.String(64), nullable=True, index=True),
    sa.Column("team_id", sa.String(64), nullable=True, index=True),
    sa.Column("seq", Big, nullable=False),
)
assignment_log = sa.Table(
    "assignment_log",
    md,
    sa.Column("seq", Big, primary_key=True, autoincrement=False),
    sa.Column("person_id", sa.String(64), nullable=False),
    sa.Column("practice_id", sa.String(64), nullable=False),
    sa.Column("old_worker_id", sa.String(64), nullable=True),
    sa.Column("old_team_id", sa.String(64), nullable=True),
)
device = sa.Table(
    "device",
    md,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("worker_id", sa.String(64), sa.ForeignKey("worker.id"), nullable=False),
    sa.Column("practice_id", sa.String(64), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("enrolled_at", Big, nullable=False),
    sa.Column("revoked_at", Big, nullable=True),
    sa.Column("last_acked_mutation_id", Big, nullable=False, default=0),
    sa.Column("last_pull_seq", Big, nullable=False, default=0),
    sa.Column("last_seen", Big, nullable=True),
    # Added later (see _add_missing_columns): retirement, and what the laptop last said it held unsent.
    sa.Column("retired_at", Big, nullable=True),
    sa.Column("pending_reported", Big, nullable=True),
    sa.Column("pending_reported_at", Big, nullable=True),
)
enrol_code = sa.Table(
    "enrol_code",
    md,
    sa.Column("code_sha256", sa.String(64), primary_key=True),
    sa.Column("worker_id", sa.String(64), sa.ForeignKey("worker.id"), nullable=False),
    sa.Column("expires_at", Big, nullable=False),
    sa.Column("used_at", Big, nullable=True),
    sa.Column("device_id", sa.String(64), nullable=True),
)
record = sa.Table(
    "record",
    md,
    sa.Column("tbl", sa.String(64), primary_key=True),
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("practice_id", sa.String(64), nullable=False),
    sa.Column("person_id", sa.String(64), nullable=True, index=True),
    sa.Column("values", sa.Text, nullable=False),
    sa.Column("meta", sa.Text, nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
    sa.Column("seq", Big, nullable=False),
    sa.Column("lookup", sa.String(64), nullable=True),  # NHS number of a person, for duplicates
    sa.Index("ix_record_lookup", "practice_id", "tbl", "lookup"),
    # Snapshot pages walk a table person by person (see Store.snapshot_body).
    sa.Index("ix_record_tbl_person", "tbl", "person_id", "id"),
)
change_log = sa.Table(
    "change_log",
    md,
    sa.Column("seq", Big, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(10), nullable=False),  # record | conflict
    sa.Column("tbl", sa.String(64), nullable=False),
    sa.Column("row_id", sa.String(64), nullable=False),
    sa.Column("person_id", sa.String(64), nullable=True),
    sa.Column("practice_id", sa.String(64), nullable=False),
    sa.Column("origin_device", sa.String(64), nullable=False),
    sa.Column("origin_mutation_id", Big, nullable=True),
    sa.Column("at", Big, nullable=False),
    # One entry per row: the feed carries each row's latest state once, so it stays O(rows).
    sa.UniqueConstraint("kind", "tbl", "row_id", name="uq_change_log_row"),
)
applied_mutation = sa.Table(
    "applied_mutation",
    md,
    sa.Column("device_id", sa.String(64), primary_key=True),
    sa.Column("mutation_id", Big, primary_key=True, autoincrement=False),
    sa.Column("payload_sha256", sa.String(64), nullable=False),
    sa.Column("result", sa.Text, nullable=False),
    sa.Column("applied_at", Big, nullable=False),
)
conflict = sa.Table(
    "conflict",
    md,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("practice_id", sa.String(64), nullable=False),
    sa.Column("tbl", sa.String(64), nullable=False),
    sa.Column("row_id", sa.String(64), nullable=False),
    sa.Column("person_id", sa.String(64), nullable=True),
    sa.Column("field", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("values", sa.Text, nullable=False),
    sa.Column("shown_idx", sa.Integer, nullable=False),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("resolution", sa.Text, nullable=True),
    sa.Column("seq", Big, nullable=False),
    sa.Index("ix_conflict_row", "tbl", "row_id", "status"),
)
quarantine = sa.Table(
    "quarantine",
    md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("device_id", sa.String(64), nullable=False),
    sa.Column("mutation_id", Big, nullable=False),
    sa.Column("reason", sa.String(64), nullable=False),
    sa.Column("detail", sa.Text, nullable=True),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("at", Big, nullable=False),
)
deleted_id = sa.Table(
    "deleted_id",
    md,
    sa.Column("tbl", sa.String(64), primary_key=True),
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("seq", Big, nullable=False),
)

# Hot-path statements built once: building SQLAlchemy constructs per mutation costs more
# than running them.
_b = sa.bindparam
_SEL_RECORD = sa.select(record).where(record.c.tbl == _b("b_tbl"), record.c.id == _b("b_id"))
_SEL_DELETED = sa.select(deleted_id.c.id).where(deleted_id.c.tbl == _b("b_tbl"), deleted_id.c.id == _b("b_id"))
_INS_RECORD = record.insert()
_UPD_RECORD = record.update().where(record.c.tbl == _b("b_tbl"), record.c.id == _b("b_id"))
_INS_LOG = change_log.insert()
_DEL_LOG = change_log.delete().where(
    change_log.c.kind == _b("b_kind"), change_log.c.tbl == _b("b_tbl"), change_log.c.row_id == _b("b_row")
)
_INS_APPLIED = applied_mutation.insert()


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


def sha256_hex(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def normalise_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


def _encode_after(d: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(canonical(d).encode()).decode().rstrip("=")


SNAPSHOT_TABLES = [t for t in schema.PULLED_TABLES if t != "person"] + ["person"]
"""Snapshot order: people last, so a laptop already holds each person's contacts and follow-ups when
the person arrives and can set the caseload dates as it inserts the person (no second write)."""


def _decode_after(token: str) -> dict[str, Any]:
    """A snapshot page token: {"s": seq, "n": table, "p": last person id, "i": last id, "e": epoch}.

    Tokens from before the table name was used carry "t", an index into ``schema.PULLED_TABLES``
    (the old order); they are read as the table at that index, so a snapshot in progress across an
    upgrade resumes in the old order and loses nothing.
    """
    try:
        pad = "=" * (-len(token) % 4)
        d = json.loads(base64.urlsafe_b64decode(token + pad))
        # A client can send any token: check the types here, not with assert (stripped under -O).
        if not (
            isinstance(d, dict)
            and {"s", "i", "e"} <= d.keys()
            and type(d["s"]) is int
            and d["s"] >= 0
            and isinstance(d["i"], str)
            and isinstance(d["e"], str)
        ):
            raise ValueError("bad snapshot token")
        if isinstance(d.get("n"), str) and d["n"] in SNAPSHOT_TABLES and isinstance(d.get("p", ""), str):
            d["order"] = SNAPSHOT_TABLES
            d["t"] = SNAPSHOT_TABLES.index(d["n"])
            d["p"] = d.get("p", "")
        elif type(d.get("t")) is int and d["t"] >= 0:
            d["order"] = schema.PULLED_TABLES  # past the last table: an empty last page
        else:
            raise ValueError("bad snapshot token")
        return d
    except Exception as e:
        raise StoreError("invalid_request", "The snapshot page token is not valid.", 400) from e


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


_CHANGE_COLS = (record.c.seq, record.c.tbl, record.c.id, record.c.person_id, record.c["values"], record.c.meta,
                record.c.deleted)  # fmt: skip
_q = json.dumps


def _change_json(r: Any) -> str:
    """A record row in the wire shape of ``protocol.Change``, built from its stored canonical JSON as is."""
    return (
        f'{{"seq":{int(r.seq)},"tbl":{_q(r.tbl)},"id":{_q(r.id)},"person_id":{_q(r.person_id)},'
        f'"values":{r.values},"meta":{r.meta},"deleted":{"true" if r.deleted else "false"}}}'
    )


def _conflict_json(c: Any) -> str:
    """A conflict row in the wire shape of ``ConflictModel``, its stored JSON columns sent as they are."""
    return (
        f'{{"id":{_q(c.id)},"tbl":{_q(c.tbl)},"row_id":{_q(c.row_id)},"person_id":{_q(c.person_id)},'
        f'"field":{_q(c.field)},"kind":{_q(c.kind)},"values":{c.values},"shown_idx":{int(c.shown_idx)},'
        f'"status":{_q(c.status)},"resolution":{c.resolution or "null"},"seq":{int(c.seq)}}}'
    )


def _envelope(changes: list[str], conflicts: list[str], rest: dict[str, Any]) -> bytes:
    """A pull or snapshot response body: pre-encoded changes and conflicts plus the small fields."""
    tail = json.dumps(rest, separators=(",", ":"))[1:]
    return f'{{"changes":[{",".join(changes)}],"conflicts":[{",".join(conflicts)}],{tail}'.encode()


def _add_missing_columns(engine: Engine, table: sa.Table) -> None:
    """Add nullable columns defined since a database was made (create_all adds whole tables only)."""
    have = {c["name"] for c in sa.inspect(engine).get_columns(table.name)}
    missing = [c for c in table.columns if c.name not in have]
    if not missing:
        return
    with engine.begin() as conn:
        for c in missing:
            assert c.nullable, f"{table.name}.{c.name} must be nullable to be added to existing rows"
            kind = c.type.compile(dialect=engine.dialect)
            conn.exec_driver_sql(f'ALTER TABLE {table.name} ADD COLUMN "{c.name}" {kind}')


def make_engine(url: str) -> Engine:
    """An engine with the pragmas and locking this store relies on."""
    if url.startswith("sqlite"):
        memory = url in ("sqlite://", "sqlite:///:memory:")
        kw: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
        if memory:
            kw["poolclass"] = StaticPool
        engine = sa.create_engine(url, **kw)

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _rec: Any) -> None:
            # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite would defer it).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            if not memory:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # Writers take the write lock up front: a deferred transaction that upgrades later
            # fails with "database is locked" instead of waiting its turn.
            write = conn.get_execution_options().get("sprx_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


class Store:
    """All server state. Every sync write goes through one transaction that locks the counter."""

    def __init__(self, url: str, *, now_ms: Callable[[], int] = hlc_mod.wall_ms) -> None:
        self.url = url
        private.prepare_sqlite(url)  # the file (and so its -wal/-shm) is 0600 before SQLite opens it
        self.engine = make_engine(url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self.now_ms = now_ms
        md.create_all(self.engine)
        _add_missing_columns(self.engine, device)
        # create_all adds missing tables only: indexes added since a database was made come here.
        for ix in record.indexes:
            ix.create(self.engine, checkfirst=True)
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

    # ---------------------------------------------------------------- admin

    def add_worker(self, worker_id: str, practice_id: str, team_id: str | None = None) -> None:
        with self._write() as conn:
            if conn.execute(sa.select(worker.c.id).where(worker.c.id == worker_id)).first():
                raise StoreError("exists", f"A worker called {worker_id} already exists.")
            if not conn.execute(sa.select(practice.c.id).where(practice.c.id == practice_id)).first():
                conn.execute(practice.insert().values(id=practice_id, name=practice_id))
            if team_id is not None:
                t = conn.execute(sa.select(team).where(team.c.id == team_id)).first()
                if t is None:
                    conn.execute(team.insert().values(id=team_id, practice_id=practice_id))
                elif t.practice_id != practice_id:
                    raise StoreError("invalid", f"Team {team_id} belongs to another practice.")
            conn.execute(
                worker.insert().values(id=worker_id, practice_id=practice_id, team_id=team_id, created_at=self.now_ms())
            )
        log_event("worker_added", worker_id=worker_id, practice_id=practice_id)

    def get_worker(self, worker_id: str) -> Any:
        with self._read() as conn:
            w = conn.execute(sa.select(worker).where(worker.c.id == worker_id)).first()
        if w is None:
            raise StoreError("not_found", f"There is no worker called {worker_id}.", 404)
        return w

    def issue_enrol_code(self, worker_id: str) -> tuple[str, int]:
        """A one-time enrolment code for a worker and its expiry (ms since the epoch)."""
        self.get_worker(worker_id)
        raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(10))
        expires = self.now_ms() + ENROL_CODE_TTL_MS
        with self._write() as conn:
            conn.execute(
                enrol_code.insert().values(code_sha256=sha256_hex(raw), worker_id=worker_id, expires_at=expires)
            )
        log_event("enrol_code_issued", worker_id=worker_id)
        return f"{raw[:5]}-{raw[5:]}", expires

    def enrol(self, code: str, device_name: str) -> dict[str, Any]:
        try:
            gate.check_device_name(device_name)
        except gate.GateError as exc:
            raise StoreError("invalid_request", str(exc), 422) from None
        now = self.now_ms()
        h = sha256_hex(normalise_code(code))
        token = "sprx_" + secrets.token_urlsafe(32)
        device_id = str(uuid.uuid4())
        with self._write() as conn:
            row = conn.execute(sa.select(enrol_code).where(enrol_code.c.code_sha256 == h)).first()
            if row is None:
                raise StoreError("invalid_code", "That enrolment code is not valid.", 401)
            if row.used_at is not None:
                raise StoreError("code_used", "That enrolment code has already been used.", 401)
            if row.expires_at <= now:
                raise StoreError("code_expired", "That enrolment code has expired.", 401)
            # Conditional update: two laptops racing with one code cannot both win.
            n = conn.execute(
                enrol_code.update()
                .where(enrol_code.c.code_sha256 == h, enrol_code.c.used_at.is_(None))
                .values(used_at=now, device_id=device_id)
            ).rowcount
            if n != 1:
                raise StoreError("code_used", "That enrolment code has already been used.", 401)
            w = conn.execute(sa.select(worker).where(worker.c.id == row.worker_id)).one()
            conn.execute(
                device.insert().values(
                    id=device_id,
                    worker_id=w.id,
                    practice_id=w.practice_id,
                    name=device_name,
                    token_sha256=sha256_hex(token),
                    enrolled_at=now,
                    last_acked_mutation_id=0,
                    last_pull_seq=0,
                    last_seen=now,
                )
            )
            meta = self._meta(conn)
        log_event("device_enrolled", device_id=device_id, worker_id=w.id)
        return {
            "device_id": device_id,
            "token": token,
            "practice_id": w.practice_id,
            "user_id": w.id,
            "server_epoch": meta.epoch,
            "server_hlc": self.clock.now(),
        }

    def revoke_device(self, device_id: str) -> None:
        with self._write() as conn:
            n = conn.execute(
                device.update()
                .where(device.c.id == device_id, device.c.revoked_at.is_(None))
                .values(revoked_at=self.now_ms())
            ).rowcount
            if n == 0:
                exists = conn.execute(sa.select(device.c.id).where(device.c.id == device_id)).first()
                if exists is None:
                    raise StoreError("not_found", f"There is no device {device_id}.", 404)
        log_event("device_revoked", device_id=device_id)

    def retire_device(self, device_id: str) -> None:
        """Retire a laptop: it may still push what it holds; its next pull tells it to erase itself."""
        with self._write() as conn:
            d = conn.execute(sa.select(device).where(device.c.id == device_id)).first()
            if d is None:
                raise StoreError("not_found", f"There is no device {device_id}.", 404)
            if d.revoked_at is not None:
                raise StoreError("revoked", f"Device {device_id} was already revoked; it cannot be retired.", 409)
            if d.retired_at is None:
                conn.execute(device.update().where(device.c.id == device_id).values(retired_at=self.now_ms()))
        log_event("device_retired", device_id=device_id)

    def device_info(self, device_id: str) -> dict[str, Any]:
        """One device as ``list_devices`` shows it; StoreError not_found."""
        for d in self.list_devices(device_id):
            return d
        raise StoreError("not_found", f"There is no device {device_id}.", 404)

    def retired(self, dev: Device, pending: int | None) -> None:
        """Answer a retired laptop's pull or snapshot: always a StoreError (403).

        ``device_retired`` tells it to erase itself once it holds nothing unsent; when it reports nothing
        left (``pending`` 0) the retirement is finished and its token is withdrawn like a revocation. A
        laptop too old to report (``pending`` None) pushes everything before it pulls, so it is told
        ``device_revoked``, which it already understands as "erase now".
        """
        now = self.now_ms()
        vals: dict[str, Any] = {"last_seen": now}
        if pending is not None:
            vals.update(pending_reported=pending, pending_reported_at=now)
        if not pending:
            vals["revoked_at"] = now
        with self.engine.connect() as conn:
            conn.execution_options(sprx_write=True)
            with conn.begin():
                conn.execute(device.update().where(device.c.id == dev.id, device.c.revoked_at.is_(None)).values(**vals))
        if not pending:
            log_event("device_retirement_finished", device_id=dev.id)
        if pending is None:
            raise StoreError("device_revoked", "This device has been revoked.", 403)
        raise StoreError("device_retired", "This device was retired; it erases its copy once everything is sent.", 403)

    def note_pending(self, dev: Device, pending: int) -> None:
        """Keep what a laptop says it holds unsent (the admin sees it before revoking)."""
        now = self.now_ms()
        with self.engine.connect() as conn:
            conn.execution_options(sprx_write=True)
            with conn.begin():
                conn.execute(
                    device.update()
                    .where(device.c.id == dev.id)
                    .values(pending_reported=pending, pending_reported_at=now, last_seen=now)
                )

    def list_devices(self, device_id: str | None = None) -> list[dict[str, Any]]:
        with self._read() as conn:
            q = sa.select(device).order_by(device.c.enrolled_at)
            if device_id is not None:
                q = q.where(device.c.id == device_id)
            rows = conn.execute(q).all()
        return [
            {
                "id": r.id,
                "worker_id": r.worker_id,
                "name": r.name,
                "enrolled_at": r.enrolled_at,
                "revoked_at": r.revoked_at,
                "last_seen": r.last_seen,
                "last_acked_mutation_id": r.last_acked_mutation_id,
                "last_pull_seq": r.last_pull_seq,
                "retired_at": r.retired_at,
                "pending_reported": r.pending_reported,
                "pending_reported_at": r.pending_reported_at,
            }
            for r in rows
        ]

    def authenticate(self, token: str) -> Device:
        """The device a bearer token belongs to; StoreError unauthorised / device_revoked."""
        with self._read() as conn:
            r = conn.execute(
                sa.select(device, worker.c.team_id)
                .join(worker, worker.c.id == device.c.worker_id)
                .where(device.c.token_sha256 == sha256_hex(token))
            ).first()
        if r is None:
            raise StoreError("unauthorised", "The device token is not valid.", 401)
        if r.revoked_at is not None:
            raise StoreError("device_revoked", "This device has been revoked.", 403)
        return Device(
            id=r.id,
            worker_id=r.worker_id,
            practice_id=r.practice_id,
            team_id=r.team_id,
            name=r.name,
            revoked_at=r.revoked_at,
            last_acked_mutation_id=int(r.last_acked_mutation_id),
            last_pull_seq=int(r.last_pull_seq),
            last_seen=int(r.last_seen) if r.last_seen is not None else None,
            retired_at=int(r.retired_at) if r.retired_at is not None else None,
            pending_reported=int(r.pending_reported) if r.pending_reported is not None else None,
        )

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

    def _next_seq(self, conn: Connection) -> int:
        conn.info["sprx_seq"] += 1
        return int(conn.info["sprx_seq"])

    def _assign(
        self,
        conn: Connection,
        person_id: str,
        practice_id: str,
        worker_id: str | None,
        team_id: str | None,
        *,
        backfill: bool = True,
    ) -> None:
        p = conn.execute(
            sa.select(record.c.practice_id).where(record.c.tbl == "person", record.c.id == person_id)
        ).first()
        if p is not None and p.practice_id != practice_id:
            raise StoreError("invalid", "That person belongs to another practice.")
        conn.info.get("sprx_scope", {}).clear()  # scope changes inside this transaction
        old = conn.execute(sa.select(assignment).where(assignment.c.person_id == person_id)).first()
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
            conn.execute(
                assignment.insert().values(
                    person_id=person_id,
                    practice_id=practice_id,
                    worker_id=worker_id,
                    team_id=team_id,
                    seq=s,
                )
            )
        if not backfill:
            return
        # Backfill: re-log the person's rows and open conflicts with fresh seqs so the new
        # owner's next pull carries them. O(rows of this person), never O(database).
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

    # ---------------------------------------------------------------- writes

    def _in_scope(self, conn: Connection, dev: Device, person_id: str) -> bool:
        cache = conn.info.setdefault("sprx_scope", {})
        if (dev.id, person_id) in cache:
            return bool(cache[(dev.id, person_id)])
        who = assignment.c.worker_id == dev.worker_id
        if dev.team_id is not None:
            who = sa.or_(who, assignment.c.team_id == dev.team_id)
        cache[(dev.id, person_id)] = ok = (
            conn.execute(
                sa.select(assignment.c.person_id).where(
                    assignment.c.person_id == person_id,
                    assignment.c.practice_id == dev.practice_id,
                    who,
                )
            ).first()
            is not None
        )
        return ok

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
        """Scope-check, merge and write one mutation; returns its ack (without duplicates)."""
        mid = m.get("mutation_id")

        def rejected(reason: str, detail: str) -> dict[str, Any]:
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

        # The inbound gate first: a value that cannot be stored or shown safely is never applied,
        # and what is kept of it in quarantine is the sentence, not the value.
        refusal = gate.check_mutation(m)
        if refusal is not None:
            return rejected("invalid_value", refusal.sentence)
        tbl, row_id = m["tbl"], m["row_id"]
        ts = TABLES.get(tbl)
        hlcs = [m["hlc"]] + [fc["hlc"] for fc in m["fields"].values() if fc.get("hlc")]
        if dev is not None and any(self.clock.is_too_far_ahead(h) for h in hlcs):
            return rejected("clock_ahead", "The laptop clock is ahead of the server clock.")
        r = conn.execute(_SEL_RECORD, {"b_tbl": tbl, "b_id": row_id}).first()
        state = _row_state(r) if r is not None else None
        auto_assign = False
        if dev is not None and ts is not None:
            if state is not None and state["practice_id"] != practice_id:
                return rejected("out_of_scope", "This record belongs to another practice.")
            if tbl == "person":
                person_id: str | None = row_id
            elif state is not None:
                person_id = state["person_id"]
            else:
                person_id = m.get("person_id")
            if ts.person_scoped and person_id:
                if not self._in_scope(conn, dev, person_id):
                    unassigned = (
                        conn.execute(
                            sa.select(assignment.c.person_id).where(assignment.c.person_id == person_id)
                        ).first()
                        is None
                    )
                    # A worker's own new person (a self-referral made offline) becomes theirs.
                    if tbl == "person" and m["op"] == "insert" and state is None and unassigned:
                        auto_assign = True
                    else:
                        return rejected("out_of_scope", "This person is not on your caseload.")
        if state is None and m["op"] == "insert":
            gone = conn.execute(_SEL_DELETED, {"b_tbl": tbl, "b_id": row_id}).first()
            if gone is not None:
                return rejected("deleted", "This record was deleted and cannot be re-created.")
        open_c = (
            [
                _conflict_dict(c)
                for c in conn.execute(
                    sa.select(conflict).where(
                        conflict.c.tbl == tbl, conflict.c.row_id == row_id, conflict.c.status == "open"
                    )
                ).all()
            ]
            if state is not None
            else []  # a brand-new row has no conflicts: skip the query
        )
        seq = int(conn.info["sprx_seq"]) + 1
        res = merge.apply_mutation(state, m, device_id=origin, seq=seq, open_conflicts=open_c, practice_id=practice_id)
        if res.status == "rejected":
            return rejected(res.reason or "invalid", res.detail or "")
        if dev is not None:
            self.clock.update(max(hlcs))
        if not res.changed or res.state is None:
            return {"mutation_id": mid, "status": res.status,
                    "seq": state["seq"] if state else None, "conflict_ids": [],
                    "reason": None, "detail": None}  # fmt: skip
        assert self._next_seq(conn) == seq
        new = res.state
        lookup = None
        if tbl == "person" and new["values"].get("nhs_number"):
            digits = "".join(ch for ch in str(new["values"]["nhs_number"]) if ch.isdigit())
            lookup = digits or None
        row_vals = {
            "practice_id": new["practice_id"],
            "person_id": new["person_id"],
            "values": canonical(new["values"]),
            "meta": canonical(new["meta"]),
            "deleted": new["deleted"],
            "seq": seq,
            "lookup": lookup,
        }
        if state is None:
            conn.execute(_INS_RECORD, {"tbl": tbl, "id": row_id, **row_vals})
        else:
            conn.execute(_UPD_RECORD, {"b_tbl": tbl, "b_id": row_id, **row_vals})
        if ts is not None and ts.kind is not Kind.PUSH_ONLY:
            self._log(
                conn, seq, "record", tbl, row_id, new["person_id"], practice_id, origin, mid, now, fresh=state is None
            )
        if new["deleted"] and not (state and state["deleted"]):
            conn.execute(deleted_id.insert().values(tbl=tbl, id=row_id, seq=seq))
        elif state is not None and state["deleted"] and not new["deleted"]:
            conn.execute(deleted_id.delete().where(deleted_id.c.tbl == tbl, deleted_id.c.id == row_id))
        conflict_ids = [self._put_conflict(conn, c, practice_id, origin, mid, now) for c in res.conflicts]
        if auto_assign and dev is not None:
            self._assign(conn, row_id, practice_id, dev.worker_id, None, backfill=False)
        if lookup and not new["deleted"]:
            dup = self._check_duplicate_person(conn, new, lookup, origin, mid, now)
            conflict_ids += dup
        return {"mutation_id": mid, "status": "applied", "seq": seq, "conflict_ids": conflict_ids,
                "reason": None, "detail": None}  # fmt: skip

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
        others = conn.execute(
            sa.select(record.c.id).where(
                record.c.practice_id == new["practice_id"],
                record.c.tbl == "person",
                record.c.lookup == lookup,
                record.c.id != new["id"],
                record.c.deleted.is_(False),
            )
        ).all()
        out = []
        for o in others:
            a, b = sorted([o.id, new["id"]])
            cid = str(uuid.uuid5(merge.CONFLICT_NS, f"duplicate_person/{a}/{b}"))
            if conn.execute(sa.select(conflict.c.id).where(conflict.c.id == cid)).first():
                continue
            h = self.clock.now()
            values = [
                {"v": o.id, "hlc": h, "dev": SERVER_DEVICE, "seq": new["seq"]},
                {"v": new["id"], "hlc": h, "dev": origin, "seq": new["seq"]},
            ]
            c = Conflict(
                id=cid, tbl="person", row_id=new["id"], person_id=new["id"], field="nhs_number",
                kind="duplicate_person", values=values, shown_idx=1, status="open",
                resolution=None, seq=new["seq"],
            )  # fmt: skip
            out.append(self._put_conflict(conn, c, new["practice_id"], origin, mid, now))
        return out

    def push(self, dev: Device, mutations: list[Mutation], *, pending: int | None = None) -> dict[str, Any]:
        """Apply a batch exactly once; StoreError gap / mutation_id_reuse leave nothing applied.

        ``pending``: how many changes the laptop holds unsent besides this batch (kept for the admin).
        """
        now = self.now_ms()
        acks: list[dict[str, Any]] = []
        with self._write() as conn:
            d = conn.execute(sa.select(device).where(device.c.id == dev.id)).one()
            if d.revoked_at is not None:
                raise StoreError("device_revoked", "This device has been revoked.", 403)
            last = int(d.last_acked_mutation_id)
            for m in mutations:
                mid = int(m["mutation_id"])
                h = sha256_hex(canonical(m))
                if mid <= last:
                    prior = conn.execute(
                        sa.select(applied_mutation).where(
                            applied_mutation.c.device_id == dev.id,
                            applied_mutation.c.mutation_id == mid,
                        )
                    ).first()
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
                conn.execute(
                    _INS_APPLIED,
                    {
                        "device_id": dev.id,
                        "mutation_id": mid,
                        "payload_sha256": h,
                        "result": canonical(ack),
                        "applied_at": now,
                    },
                )
                acks.append(ack)
                last = mid
            seen: dict[str, Any] = {"last_acked_mutation_id": last, "last_seen": now}
            if pending is not None:
                seen.update(pending_reported=pending, pending_reported_at=now)
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
        r = conn.execute(sa.select(record).where(record.c.tbl == tbl, record.c.id == row_id)).first()
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

    def import_referral(
        self,
        worker_id: str,
        nhs: str,
        person_values: dict[str, Any],
        received_on: str,
        source: str,
        referral_values: dict[str, Any],
    ) -> str:
        """Create or find the person, add the referral, assign to the worker: one transaction.

        Returns "imported" or "exists". Ids are uuid5 of practice + NHS number (+ received
        date + source for the referral), so re-importing a file adds nothing.
        """
        w = self.get_worker(worker_id)
        practice_id = w.practice_id
        ref_id = str(uuid.uuid5(PERSON_NS, f"{practice_id}/{nhs}/{received_on}/{source}"))
        with self._write() as conn:
            found = conn.execute(
                sa.select(record.c.id)
                .where(
                    record.c.practice_id == practice_id,
                    record.c.tbl == "person",
                    record.c.lookup == nhs,
                    record.c.deleted.is_(False),
                )
                .order_by(record.c.id)
            ).first()
            person_id = found.id if found else str(uuid.uuid5(PERSON_NS, f"{practice_id}/{nhs}"))
            if conn.execute(sa.select(record.c.id).where(record.c.tbl == "referral", record.c.id == ref_id)).first():
                return "exists"
            if found is None:
                # A laptop may have corrected these details already; only a new person gets them.
                self.server_write("person", person_id, person_values, practice_id=practice_id, conn=conn)
            self._assign(conn, person_id, practice_id, worker_id, None)
            self.server_write(
                "referral",
                ref_id,
                referral_values,
                practice_id=practice_id,
                person_id=person_id,
                conn=conn,
            )
        log_event("referral_imported", referral_id=ref_id, person_id=person_id)
        return "imported"

    # ---------------------------------------------------------------- reads

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

    def _check_cursor(self, meta: Any, cursor: int, epoch: str | None) -> None:
        if epoch is not None and epoch != meta.epoch:
            raise StoreError("resync_required", "The server was restored; a full resync is needed.", 410)
        if cursor < int(meta.tombstone_watermark) or cursor > int(meta.seq):
            raise StoreError("resync_required", "This laptop is too far behind; a full resync is needed.", 410)

    def pull_query(self, dev: Device, cursor: int, limit: int) -> Any:
        """The feed query: a range scan on the seq primary key, filtered by scope."""
        return (
            sa.select(change_log.c.seq, change_log.c.kind, change_log.c.tbl, change_log.c.row_id)
            .where(
                change_log.c.seq > cursor,
                change_log.c.practice_id == dev.practice_id,
                sa.or_(change_log.c.person_id.is_(None), self._in_scope_of(dev, change_log.c.person_id)),
            )
            .order_by(change_log.c.seq)
            .limit(limit)
        )

    def pull(self, dev: Device, cursor: int, limit: int, epoch: str | None = None) -> dict[str, Any]:
        """Changes after ``cursor`` in the device's scope (the PullResponse shape, as Python values)."""
        return json.loads(self.pull_body(dev, cursor, limit, epoch))  # type: ignore[no-any-return]

    def pull_body(self, dev: Device, cursor: int, limit: int, epoch: str | None = None) -> bytes:
        """The PullResponse as JSON bytes: O(changes), via the seq index.

        Rows and conflicts go out as their stored canonical JSON, never parsed and re-encoded.
        """
        with self._read() as conn:
            meta = self._meta(conn)
            self._check_cursor(meta, cursor, epoch)
            entries = conn.execute(self.pull_query(dev, cursor, limit + 1)).all()
            has_more = len(entries) > limit
            entries = entries[:limit]
            changes, conflicts = self._load(conn, entries)
            lost = sa.or_(
                assignment_log.c.old_worker_id == dev.worker_id,
                assignment_log.c.old_team_id == dev.team_id if dev.team_id is not None else sa.false(),
            )
            removed = conn.execute(
                sa.select(assignment_log.c.person_id)
                .where(
                    assignment_log.c.seq > cursor,
                    assignment_log.c.practice_id == dev.practice_id,
                    lost,
                    sa.not_(self._in_scope_of(dev, assignment_log.c.person_id)),
                )
                .distinct()
            ).scalars()
            removed_ids = sorted(set(removed))
            # With nothing more to send, jump to the snapshot's counter: every seq up to it is
            # committed (the counter is locked by writers), so nothing can appear behind it.
            next_cursor = int(entries[-1].seq) if has_more else int(meta.seq)
            epoch_now, watermark = meta.epoch, int(meta.tombstone_watermark)
        self._seen(dev, pull_seq=cursor)
        return _envelope(
            changes,
            conflicts,
            {
                "removed_person_ids": removed_ids,
                "next_cursor": max(next_cursor, cursor),
                "has_more": has_more,
                "server_epoch": epoch_now,
                "tombstone_watermark": watermark,
                "last_acked_mutation_id": dev.last_acked_mutation_id,
                "server_hlc": self.clock.now(),
                "server_time_ms": self.now_ms(),
            },
        )

    def _load(self, conn: Connection, entries: list[Any]) -> tuple[list[str], list[str]]:
        by_tbl: dict[str, list[str]] = {}
        cids: list[str] = []
        for e in entries:
            if e.kind == "record":
                by_tbl.setdefault(e.tbl, []).append(e.row_id)
            else:
                cids.append(e.row_id)
        rows: dict[tuple[str, str], str] = {}
        for t, ids in by_tbl.items():
            for i in range(0, len(ids), 500):
                q = sa.select(*_CHANGE_COLS).where(record.c.tbl == t, record.c.id.in_(ids[i : i + 500]))
                for r in conn.execute(q):
                    rows[(r.tbl, r.id)] = _change_json(r)
        cs: dict[str, str] = {}
        for i in range(0, len(cids), 500):
            for c in conn.execute(sa.select(conflict).where(conflict.c.id.in_(cids[i : i + 500]))):
                cs[c.id] = _conflict_json(c)
        changes: list[str] = []
        conflicts: list[str] = []
        for e in entries:
            if e.kind == "record" and (e.tbl, e.row_id) in rows:
                changes.append(rows[(e.tbl, e.row_id)])
            elif e.kind == "conflict" and e.row_id in cs:
                conflicts.append(cs[e.row_id])
        return changes, conflicts

    SEEN_EVERY_MS = 60_000
    """A pull that does not move the device's cursor records ``last_seen`` at most this often."""

    def _seen(self, dev: Device, *, pull_seq: int | None = None) -> None:
        """Record when a device was last seen and how far it has pulled (for tombstone GC and the admin list).

        A write transaction queues behind pushes (SQLite: one writer), so an idle device polling an
        unchanged feed writes at most once a minute; a moved cursor is always written, since GC
        relies on ``last_pull_seq``.
        """
        now = self.now_ms()
        moved = pull_seq is not None and pull_seq != dev.last_pull_seq
        if not moved and dev.last_seen is not None and 0 <= now - dev.last_seen < self.SEEN_EVERY_MS:
            return
        vals: dict[str, Any] = {"last_seen": now}
        if pull_seq is not None:
            vals["last_pull_seq"] = pull_seq
        with self.engine.connect() as conn:
            conn.execution_options(sprx_write=True)
            with conn.begin():
                conn.execute(device.update().where(device.c.id == dev.id).values(**vals))

    def snapshot(self, dev: Device, after: str | None, limit: int) -> dict[str, Any]:
        """Keyset-paged copy of everything live in scope (the SnapshotResponse shape, as Python values)."""
        return json.loads(self.snapshot_body(dev, after, limit))  # type: ignore[no-any-return]

    def snapshot_body(self, dev: Device, after: str | None, limit: int) -> bytes:
        """The SnapshotResponse as JSON bytes, for first sync and resync; rows go out as stored."""
        with self._read() as conn:
            meta = self._meta(conn)
            if after is None:
                pos = {"s": int(meta.seq), "t": 0, "i": "", "e": meta.epoch, "order": SNAPSHOT_TABLES}
            else:
                pos = _decode_after(after)
                if pos["e"] != meta.epoch or int(pos["s"]) < int(meta.tombstone_watermark):
                    raise StoreError("resync_required", "The snapshot is out of date; start it again.", 410)
            tables: list[str] = pos["order"]
            by_person = tables is SNAPSHOT_TABLES
            out: list[str] = []
            last_key: tuple[str, str | None, str] | None = None
            ti, last_pid, last_id = int(pos["t"]), str(pos.get("p") or ""), str(pos["i"])
            while ti < len(tables) and len(out) <= limit:
                t = tables[ti]
                ts = TABLES[t]
                where = [record.c.tbl == t, record.c.practice_id == dev.practice_id, record.c.deleted.is_(False)]
                if ts.person_scoped:
                    where.append(self._in_scope_of(dev, record.c.person_id))
                if by_person and ts.person_scoped:
                    # Person by person: a laptop inserts each person's rows next to each other in its
                    # person_id indexes (a few index pages per page of rows instead of most of them).
                    where.append(sa.tuple_(record.c.person_id, record.c.id) > sa.tuple_(last_pid, last_id))
                    order = (record.c.person_id, record.c.id)
                else:
                    where.append(record.c.id > last_id)
                    order = (record.c.id,)
                rows = conn.execute(
                    sa.select(*_CHANGE_COLS).where(*where).order_by(*order).limit(limit + 1 - len(out))
                ).all()
                for r in rows:
                    if len(out) < limit:
                        last_key = (r.tbl, r.person_id, r.id)
                    out.append(_change_json(r))
                if len(out) > limit:
                    break
                ti, last_pid, last_id = ti + 1, "", ""
            has_more = len(out) > limit
            out = out[:limit]
            nxt = None
            if has_more and last_key is not None:
                token: dict[str, Any] = {"s": pos["s"], "i": last_key[2], "e": pos["e"]}
                if by_person:
                    token["n"] = last_key[0]
                    token["p"] = last_key[1] or "" if TABLES[last_key[0]].person_scoped else ""
                else:
                    token["t"] = tables.index(last_key[0])
                nxt = _encode_after(token)
            conflicts: list[str] = []
            if after is None:
                conflicts = [
                    _conflict_json(c)
                    for c in conn.execute(
                        sa.select(conflict).where(
                            conflict.c.practice_id == dev.practice_id,
                            conflict.c.status == "open",
                            self._in_scope_of(dev, conflict.c.person_id),
                        )
                    )
                ]
        self._seen(dev)
        return _envelope(
            out,
            conflicts,
            {
                "after": nxt,
                "snapshot_seq": int(pos["s"]),
                "has_more": has_more,
                "server_epoch": meta.epoch,
                "tombstone_watermark": int(meta.tombstone_watermark),
                "last_acked_mutation_id": dev.last_acked_mutation_id,
                "server_hlc": self.clock.now(),
                "server_time_ms": self.now_ms(),
            },
        )

    # ---------------------------------------------------------------- maintenance

    def gc(self) -> int:
        """Drop sync metadata every active device has pulled past; returns the new watermark."""
        now = self.now_ms()
        with self._write() as conn:
            meta = self._meta(conn)
            low = conn.execute(
                sa.select(sa.func.min(device.c.last_pull_seq)).where(
                    device.c.revoked_at.is_(None), device.c.last_seen >= now - ACTIVE_DEVICE_MS
                )
            ).scalar()
            # Revoked and long-silent devices do not hold tombstones back; they resync.
            wm = int(meta.seq) if low is None else int(low)
            wm = max(wm, int(meta.tombstone_watermark))
            conn.execute(change_log.delete().where(change_log.c.seq <= wm))
            conn.execute(record.delete().where(record.c.deleted.is_(True), record.c.seq <= wm))
            conn.execute(conflict.delete().where(conflict.c.status == "resolved", conflict.c.seq <= wm))
            conn.execute(assignment_log.delete().where(assignment_log.c.seq <= wm))
            conn.execute(server_meta.update().where(server_meta.c.id == 1).values(tombstone_watermark=wm))
        log_event("gc", watermark=wm)
        return wm

    def new_epoch(self) -> str:
        """Mark a restore from backup: every laptop must resync (its outbox is kept)."""
        e = str(uuid.uuid4())
        with self._write() as conn:
            conn.execute(server_meta.update().where(server_meta.c.id == 1).values(epoch=e))
        return e

    def server_info(self) -> dict[str, Any]:
        with self._read() as conn:
            meta = self._meta(conn)
        return {
            "epoch": meta.epoch,
            "seq": int(meta.seq),
            "tombstone_watermark": int(meta.tombstone_watermark),
        }

    def find_person_by_nhs(self, practice_id: str, nhs: str) -> str | None:
        with self._read() as conn:
            r = conn.execute(
                sa.select(record.c.id)
                .where(
                    record.c.practice_id == practice_id,
                    record.c.tbl == "person",
                    record.c.lookup == nhs,
                    record.c.deleted.is_(False),
                )
                .order_by(record.c.id)
            ).first()
        return r.id if r is not None else None

    def get_record(self, tbl: str, row_id: str) -> RowState | None:
        with self._read() as conn:
            r = conn.execute(sa.select(record).where(record.c.tbl == tbl, record.c.id == row_id)).first()
        return _row_state(r) if r is not None else None

    def count(self, table: str) -> int:
        t = md.tables[table]
        with self._read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
