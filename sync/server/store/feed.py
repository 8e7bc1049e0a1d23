"""Feed and snapshot: what a laptop pulls (the change feed after its cursor) and its first full copy, page by page.

Both answer with JSON bytes built from the rows' stored canonical JSON, never parsed and re-encoded.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync import schema
from sync.schema import TABLES
from sync.server.store.base import Device, StoreError, canonical
from sync.server.store.scope import ScopeMixin
from sync.server.store.tables import assignment_log, change_log, conflict, record

SeenLater = list[tuple[str, dict[str, Any]]]
"""Device ids and the last-seen values a pull leaves its caller to write after answering."""


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


_CHANGE_COLS = (record.c.seq, record.c.tbl, record.c.id, record.c.person_id, record.c["values"], record.c.meta,
                record.c.deleted)  # fmt: skip
_q = json.dumps


def _change_json(r: Any, raw_meta: bool = False) -> str:
    """A record row in the wire shape of ``protocol.Change``, built from its stored canonical JSON as is.

    ``raw_meta``: the metadata as one JSON string holding its canonical JSON text (a snapshot asked
    with ``meta=raw``), so a laptop can store it as received instead of parsing and re-encoding it.
    """
    meta = _q(r.meta) if raw_meta else r.meta
    return (
        f'{{"seq":{int(r.seq)},"tbl":{_q(r.tbl)},"id":{_q(r.id)},"person_id":{_q(r.person_id)},'
        f'"values":{r.values},"meta":{meta},"deleted":{"true" if r.deleted else "false"}}}'
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


class FeedMixin(ScopeMixin):
    """Pull (the change feed in a device's scope) and snapshot (keyset-paged copy of everything in it)."""

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

    def pull_body(
        self, dev: Device, cursor: int, limit: int, epoch: str | None = None, *, seen_later: SeenLater | None = None
    ) -> bytes:
        """The PullResponse as JSON bytes: O(changes), via the seq index.

        Rows and conflicts go out as their stored canonical JSON, never parsed and re-encoded. With
        ``seen_later``, the device's pull position and time are put there for the caller to write after
        answering (``note_seen``) instead of before.
        """
        with self._read() as conn:
            meta = self._meta(conn)
            self._check_cursor(meta, cursor, epoch)
            # At the feed's tip nothing can follow the cursor: answered from it alone (the usual idle poll).
            page = None if cursor == int(meta.seq) else self._feed_page(conn, dev, cursor, limit, meta)
        if page is None:
            return self._nothing_new(dev, cursor, meta, seen_later)
        changes, conflicts, removed_ids, has_more, next_cursor = page
        self._seen(dev, pull_seq=cursor, later=seen_later)
        return _envelope(
            changes,
            conflicts,
            {
                "removed_person_ids": removed_ids,
                "next_cursor": max(next_cursor, cursor),
                "has_more": has_more,
                "server_epoch": meta.epoch,
                "tombstone_watermark": int(meta.tombstone_watermark),
                "last_acked_mutation_id": dev.last_acked_mutation_id,
                "server_hlc": self.clock.now(),
                "server_time_ms": self.now_ms(),
            },
        )

    def _feed_page(
        self, conn: Connection, dev: Device, cursor: int, limit: int, meta: Any
    ) -> tuple[list[str], list[str], list[str], bool, int]:
        """Changes, conflicts and removals after ``cursor`` in the device's scope, inside the caller's read."""
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
        # With nothing more to send, jump to the snapshot's counter: every seq up to it is
        # committed (the counter is locked by writers), so nothing can appear behind it.
        next_cursor = int(entries[-1].seq) if has_more else int(meta.seq)
        return changes, conflicts, sorted(set(removed)), has_more, next_cursor

    def _nothing_new(self, dev: Device, cursor: int, meta: Any, seen_later: SeenLater | None = None) -> bytes:
        """A pull at the feed's tip: no change, conflict or removal can be after the counter."""
        self._seen(dev, pull_seq=cursor, later=seen_later)
        return _envelope(
            [],
            [],
            {
                "removed_person_ids": [],
                "next_cursor": cursor,
                "has_more": False,
                "server_epoch": meta.epoch,
                "tombstone_watermark": int(meta.tombstone_watermark),
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

    def _seen(self, dev: Device, *, pull_seq: int | None = None, later: SeenLater | None = None) -> None:
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
        if later is not None:
            later.append((dev.id, vals))
            return
        self._note_seen(dev.id, vals)

    def note_seen(self, seen: SeenLater) -> None:
        """Write what ``pull_body(..., seen_later=...)`` left to write. Written late or not at all (a crash in
        between), a position is only older than the device's: tombstone GC keeps more, never less."""
        for device_id, vals in seen:
            self._note_seen(device_id, vals)

    def snapshot(self, dev: Device, after: str | None, limit: int) -> dict[str, Any]:
        """Keyset-paged copy of everything live in scope (the SnapshotResponse shape, as Python values)."""
        return json.loads(self.snapshot_body(dev, after, limit))  # type: ignore[no-any-return]

    def snapshot_body(self, dev: Device, after: str | None, limit: int, *, raw_meta: bool = False) -> bytes:
        """The SnapshotResponse as JSON bytes, for first sync and resync; rows go out as stored.

        ``raw_meta``: each row's metadata as a JSON string of its stored text (see ``_change_json``).
        """
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
                    out.append(_change_json(r, raw_meta))
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
