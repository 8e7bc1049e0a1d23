"""Running a sync: `sync_now` (one at a time per vault), its result and status, and what a sync leaves to a person.

Public API for the app and the command line (all of it is safe to call from a Textual thread worker;
every database step takes ``store.lock`` for one short transaction and no lock is held while waiting
on the network):

- ``sync_now(store, progress=None) -> SyncResult`` (a second caller gets status "busy" at once; never
  raises for network or server trouble; a revoked or retired laptop is crypto-erased)
- ``sync_status(store) -> SyncStatus`` (cheap; for the status bar) and ``unsent_overdue(store, now)``
- ``resolve_conflict``, ``open_conflicts``, ``rejected_changes``, ``set_aside_count`` / ``set_aside_sentence``
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlmodel import Session, col, select

from sprx_tui.core.diskfull import DISK_FULL, is_disk_full
from sprx_tui.core.models import SyncConflict, SyncOutbox, SyncRejected, utcnow
from sprx_tui.core.store import CaseStore
from sprx_tui.core.sync.local import VaultSyncAdapter
from sprx_tui.core.sync.state import (
    HELD_EVENT_SQL,
    K_CERT,
    K_DEMO,
    K_DEVICE,
    K_EPOCH,
    K_LAST_AT,
    K_LAST_MESSAGE,
    K_LAST_OK,
    K_LAST_STATUS,
    K_OFFSET,
    K_PIN,
    K_PRACTICE,
    K_TOKEN,
    K_URL,
    K_USER,
    PENDING_COUNT_SQL,
    read_state,
    write_state,
)
from sync import client as sc
from sync.client import SyncError

INCOMPLETE_ENROLMENT = (
    "This laptop's enrolment is incomplete (the practice server's address or this laptop's id is missing), "
    "so it cannot sync; your changes are kept. Ask your practice admin to help you enrol it again."
)

# The exit code `sprx sync` returns for each outcome (SyncResult.exit_code); the command line explains them.
EXIT_SYNCED = 0
EXIT_FAILED = 1
EXIT_OFFLINE = 3
EXIT_CONFLICTS = 4
EXIT_REVOKED = 5
EXIT_UPGRADE = 6


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


_KEYS: dict[str, str] = {}


def _vault_key(store: CaseStore) -> str:
    """The vault's resolved path: the key of its sync lock, kept transport and last-sync status (resolved once)."""
    path = str(store.vault.path)
    key = _KEYS.get(path)
    if key is None:
        key = _KEYS[path] = str(Path(path).resolve())
    return key


_SYNC_LOCKS: dict[str, threading.Lock] = {}
_SYNC_LOCKS_GUARD = threading.Lock()


def _sync_lock(store: CaseStore) -> threading.Lock:
    key = _vault_key(store)
    with _SYNC_LOCKS_GUARD:
        return _SYNC_LOCKS.setdefault(key, threading.Lock())


SYNC_EVENTS_COUNTED_UP_TO = 1000
"""With more changes than this waiting, the few sync events among them are not counted out (it reads each one)."""
_SYNC_EVENTS_SQL = f"SELECT count(*) FROM sync_outbox WHERE status = 'pending' AND {HELD_EVENT_SQL}"
"""Pending audit events about syncs themselves: bookkeeping, not changes waiting (see sync.client.HELD_ACTIONS)."""
_COUNTS_SQL = (
    f"SELECT ({PENDING_COUNT_SQL}), (SELECT count(*) FROM sync_conflict WHERE status = 'open'), "
    "(SELECT count(*) FROM sync_rejected), (SELECT count(*) FROM sync_quarantine), "
    f"CASE WHEN ({PENDING_COUNT_SQL}) BETWEEN 1 AND {SYNC_EVENTS_COUNTED_UP_TO} THEN ({_SYNC_EVENTS_SQL}) ELSE 0 END"
)
"""Pending (less the syncs' own audit events), open conflicts, rejected and set aside, in one statement (every
sync ends with it)."""


def _all_counts(store: CaseStore) -> tuple[int, int, int, int]:
    with store.lock, store.engine.connect() as c:
        row = c.exec_driver_sql(_COUNTS_SQL).one()
    return max(0, int(row[0] or 0) - int(row[4] or 0)), int(row[1] or 0), int(row[2] or 0), int(row[3] or 0)


def _counts(store: CaseStore) -> tuple[int, int, int]:
    pending, conflicts, rejected, _aside = _all_counts(store)
    return pending, conflicts, rejected


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
_STORED_LAST: dict[tuple[str, int], tuple[weakref.ref[CaseStore], str | None, str | None]] = {}
"""Per vault (path and open store): the last-sync status and time its sync_state holds, as last read or written
here, so an everyday sync need not read them back to find it has nothing to write. An entry holds a weak
reference to its store and counts only for that very store (a later store can be given a closed one's id()).
Another process syncing the same vault meanwhile (``sprx sync`` beside the app) is noticed at the latest
LAST_SYNC_PERSIST_S later, when the time is due to be written anyway: the staleness a restart could already show."""
LAST_SYNC_PERSIST_S = 600
"""A run of unchanged syncs writes its time to the vault at most this often."""


def _record_last_sync(store: CaseStore, values: dict[str, str | None], *, moved: bool) -> None:
    """Keep the last-sync status; write it to the vault only when it says something new.

    A sync that ended as the stored one did would otherwise cost a write transaction (an fsync)
    just for the time and the sentence: a tenth of an everyday sync. Those are kept in memory, which
    sync_status reads, and written when the status changes or when the stored time is more than
    LAST_SYNC_PERSIST_S old (so a restart shows at most that much staleness). Whether data moved
    (``moved``) does not matter: what moved is already committed, each page with its position.
    """
    key = _vault_key(store)
    known = _stored_last(store, key)
    if known is not None and not _due(known[0], known[1], values):
        _LAST_SYNC[key] = dict(values)
        return
    try:
        with store.lock, Session(store.engine) as s, s.begin():
            stored = read_state(s, values)
            if _due(stored.get(K_LAST_STATUS), stored.get(K_LAST_AT), values):
                write_state(s, values)
                _LAST_SYNC.pop(key, None)
                _STORED_LAST[(key, id(store))] = (weakref.ref(store), values.get(K_LAST_STATUS), values.get(K_LAST_AT))
                return
            _STORED_LAST[(key, id(store))] = (weakref.ref(store), stored.get(K_LAST_STATUS), stored.get(K_LAST_AT))
    except Exception as exc:
        if not is_disk_full(exc, store.vault.path):
            raise
        # No room to write it (the sync said so): kept in memory, which sync_status reads, until there is.
    _LAST_SYNC[key] = dict(values)


def _stored_last(store: CaseStore, key: str) -> tuple[str | None, str | None] | None:
    """What this store's vault holds as its last sync, as last read or written here; None if not known."""
    entry = _STORED_LAST.get((key, id(store)))
    if entry is None:
        return None
    if entry[0]() is not store:  # a store since closed had this id(): its knowledge is not this one's
        del _STORED_LAST[(key, id(store))]
        return None
    return entry[1], entry[2]


def _due(old_status: str | None, old_at: str | None, values: dict[str, str | None]) -> bool:
    """Whether the last-sync keys are to be written: a new status, or the stored time LAST_SYNC_PERSIST_S old."""
    fresh = False
    if old_at and values.get(K_LAST_AT):
        try:
            age = dt.datetime.fromisoformat(str(values[K_LAST_AT])) - dt.datetime.fromisoformat(old_at)
            fresh = dt.timedelta(0) <= age < dt.timedelta(seconds=LAST_SYNC_PERSIST_S)
        except ValueError:
            fresh = False
    return old_status != values.get(K_LAST_STATUS) or not fresh


def sync_status(store: CaseStore) -> SyncStatus:
    """Enrolment, last sync and the pending / conflict / rejected counts (one short read)."""
    with store.lock, Session(store.engine) as s:
        keys = [K_URL, K_TOKEN, K_USER, K_PRACTICE, K_LAST_AT, K_LAST_OK, K_LAST_STATUS, K_LAST_MESSAGE, K_DEMO]
        st = read_state(s, keys)
    newer = _LAST_SYNC.get(_vault_key(store))
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
        if not read_state(s, [K_TOKEN]).get(K_TOKEN):
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


def plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


_TRANSPORTS: dict[str, tuple[tuple[str | None, ...], sc.Transport]] = {}
"""Per vault: the transport of its last sync and what it was made for (url, token, pin, certificate).

Kept between syncs so the app's background sync (and a run of `sync_now` calls) reuses one kept-alive
HTTPS connection instead of a new TLS handshake each time. Only ever used under the vault's sync lock.
"""
_TRANSPORTS_GUARD = threading.Lock()


def _kept_transport(store: CaseStore, cfg: dict[str, str | None], now_ms: Callable[[], int]) -> sc.Transport:
    """The vault's kept transport when it was made for this enrolment; else a new one (the old one closed)."""
    key = _vault_key(store)
    want = (cfg.get(K_URL), cfg.get(K_TOKEN), cfg.get(K_PIN), cfg.get(K_CERT))
    with _TRANSPORTS_GUARD:
        kept = _TRANSPORTS.pop(key, None)
    if kept is not None:
        if kept[0] == want:
            kept[1].now_ms = now_ms
            _keep_transport(store, want, kept[1])
            return kept[1]
        kept[1].close()
    t = sc.Transport(str(cfg[K_URL]), token=cfg[K_TOKEN], pin=cfg.get(K_PIN), cert_pem=cfg.get(K_CERT), now_ms=now_ms)
    _keep_transport(store, want, t)
    return t


def _keep_transport(store: CaseStore, want: tuple[str | None, ...], t: sc.Transport) -> None:
    with _TRANSPORTS_GUARD:
        _TRANSPORTS[_vault_key(store)] = (want, t)


def _transport_for(
    store: CaseStore, cfg: dict[str, str], transport: httpx.BaseTransport | None, now_ms: Callable[[], int]
) -> sc.Transport:
    """The vault's kept transport; with an injected one (in-process tests), a client for this sync only."""
    if transport is None:
        return _kept_transport(store, dict(cfg), now_ms)
    return sc.Transport(cfg[K_URL], token=cfg[K_TOKEN], pin=cfg.get(K_PIN), cert_pem=cfg.get(K_CERT),
                        transport=transport, now_ms=now_ms)  # fmt: skip


_GONE: dict[type[SyncError], str] = {sc.DeviceRevoked: "revoked", sc.DeviceRetired: "retired"}
"""The status of a sync that ended with the laptop's local copy erased."""


def close_transport(store: CaseStore) -> None:
    """Close the vault's kept sync connection (at lock, at quit, after an erase); the next sync opens a new one."""
    with _TRANSPORTS_GUARD:
        kept = _TRANSPORTS.pop(_vault_key(store), None)
    if kept is not None:
        kept[1].close()


def sync_now(
    store: CaseStore,
    progress: sc.Progress | None = None,
    *,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
    local: VaultSyncAdapter | None = None,
    page: int = sc.PAGE,
    pipeline: bool = True,
) -> SyncResult:
    """Push pending changes, then pull the caseload; never raises for network or server trouble.

    ``pipeline=False`` fetches and applies a first sync's pages strictly in turn instead of fetching
    ahead (the result is the same; tests compare the two).

    ``progress(phase, done, total)`` is called from the calling thread ("push" has a total; "pull"
    and "snapshot" pass None). After status "revoked" or "retired" the vault is erased and the store is dead.
    """
    lock = _sync_lock(store)
    if not lock.acquire(blocking=False):
        return SyncResult("busy", EXIT_FAILED, "A sync is already running.")
    try:
        return _sync_locked(store, progress, transport, sleep, local, page, pipeline)
    finally:
        lock.release()


def _sync_locked(
    store: CaseStore,
    progress: sc.Progress | None,
    transport: httpx.BaseTransport | None,
    sleep: Callable[[float], None],
    local: VaultSyncAdapter | None,
    page: int,
    pipeline: bool = True,
) -> SyncResult:
    with store.lock, store.engine.connect() as c:
        state = {k: v for k, v in c.exec_driver_sql("SELECT key, value FROM sync_state").all()}
    cfg = {k: state[k] for k in (K_URL, K_TOKEN, K_DEVICE, K_USER, K_PRACTICE, K_PIN, K_CERT, K_EPOCH, K_OFFSET)
           if k in state}  # fmt: skip
    if not cfg.get(K_TOKEN):
        return SyncResult("not_enrolled", EXIT_FAILED, sc.NotEnrolled.message)
    if not cfg.get(K_URL) or not cfg.get(K_DEVICE):
        # A damaged enrolment (a token without the server's address or this laptop's id) cannot sync.
        return SyncResult("failed", EXIT_FAILED, INCOMPLETE_ENROLMENT)
    local = local or VaultSyncAdapter(store)
    local.news = 0
    local.sync_event_recorded = False
    local.prime_position(state)  # the same read: the pull position needs no second one
    if cfg.get(K_OFFSET):
        store.service.hlc_offset_ms = int(cfg[K_OFFSET])
    t = _transport_for(store, cfg, transport, local.now_ms)
    engine = sc.SyncEngine(local, t, cfg[K_DEVICE], progress=progress, sleep=sleep, page=page, pipeline=pipeline)

    def sync_event(rows: int) -> str | None:
        """The SYNC audit event's detail when this sync moved anything (``rows``: the last page's, not yet in
        the report); None for none. Bookkeeping sent alone records none, so it never makes more of itself."""
        r = engine.report
        received = r.pulled + r.snapshot_rows + rows
        if not (r.acked - r.bookkeeping or r.rejected or received):
            return None
        return f"sent={r.acked + r.rejected} rejected={r.rejected} received={received}"

    local.sync_event = sync_event
    status, code, message = "synced", EXIT_SYNCED, ""
    try:
        engine.run()
        # Usually written with the sync's last page already; sent with the next request that sends anything
        # else, or within sc.HOLD_MS, not in a request of its own at the end of every sync.
        detail = None if local.sync_event_recorded else sync_event(0)
        if detail is not None:
            store.service.record_event("SYNC", detail=detail)
    except (sc.DeviceRevoked, sc.DeviceRetired) as exc:
        # Retired, not lost: the engine raises that only once the outbox is empty (everything was sent).
        close_transport(store)
        t.close()
        _erase(store)
        return SyncResult(_GONE[type(exc)], EXIT_REVOKED, str(exc), report=engine.report)
    except sc.UpgradeNeeded as exc:
        status, code, message = "upgrade", EXIT_UPGRADE, str(exc)
    except sc.Offline as exc:
        status, code, message = "offline", EXIT_OFFLINE, str(exc)
    except SyncError as exc:
        status, code, message = "failed", EXIT_FAILED, str(exc)
        close_transport(store)  # e.g. a certificate or token the server no longer accepts: start afresh
    except Exception as exc:  # noqa: BLE001 - a worker thread must get a sentence, not a traceback
        # Every page and every acknowledgement is its own transaction, so a failure leaves nothing half-applied.
        status, code = "failed", EXIT_FAILED
        message = f"Sync stopped because of an unexpected problem ({type(exc).__name__}); nothing was half-applied."
        if is_disk_full(exc, store.vault.path):
            message = DISK_FULL
    finally:
        if transport is not None:
            t.close()
    r = engine.report
    pending, conflicts, rejected_total, set_aside = _all_counts(store)
    if status == "synced":
        sent = r.acked - r.bookkeeping
        # Received: what came from elsewhere (this laptop's own changes come back in the feed too).
        parts = [f"Synced: sent {plural(sent, 'change')}, received {plural(local.news + r.snapshot_rows, 'update')}"]
        if r.rejected:
            parts.append(f"{plural(r.rejected, 'change was', 'changes were')} refused and kept for review")
        message = "; ".join(parts) + "."
        if conflicts:
            status, code = "conflicts", EXIT_CONFLICTS
            message = (
                f"Synced, but {plural(conflicts, 'conflict needs', 'conflicts need')} a person to choose "
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
        set_aside=set_aside,
    )


def _erase(store: CaseStore) -> None:
    """Device revoked: lock and crypto-erase the local copy (practice policy, DESIGN.md section 7)."""
    _STORED_LAST.pop((_vault_key(store), id(store)), None)
    with store.lock:
        try:
            store.vault.crypto_erase()
        except Exception:  # noqa: BLE001 - erase as much as possible; the key is already gone or going
            store.vault.lock()


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


__all__ = [
    "EXIT_CONFLICTS",
    "EXIT_FAILED",
    "EXIT_OFFLINE",
    "EXIT_REVOKED",
    "EXIT_SYNCED",
    "EXIT_UPGRADE",
    "INCOMPLETE_ENROLMENT",
    "LAST_SYNC_PERSIST_S",
    "UNSENT_WARN_AFTER",
    "SyncResult",
    "close_transport",
    "SyncStatus",
    "open_conflicts",
    "plural",
    "rejected_changes",
    "resolve_conflict",
    "set_aside_count",
    "set_aside_sentence",
    "sync_now",
    "sync_status",
    "unsent_overdue",
]
