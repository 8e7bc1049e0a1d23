"""An unlocked vault made ready for work: schema migrated, identity loaded, service and queries bound."""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlmodel import Session

from sprx_tui.core import migrations
from sprx_tui.core.diskfull import disk_full_as_sentence
from sprx_tui.core.ids import uuid7
from sprx_tui.core.models import SyncState, utcnow
from sprx_tui.core.queries import CaseQueries
from sprx_tui.core.service import Actor, CaseService
from sprx_tui.core.vault import Vault

LOCAL_PRACTICE = "local"
LOCAL_USER = "link-worker"

# One lock per engine: its single SQLCipher connection is shared by every thread and every store opened
# on it, and a session closing without the lock would roll back another thread's open transaction.
_ENGINE_LOCKS: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()
_ENGINE_LOCKS_GUARD = threading.Lock()


def engine_lock(engine: Engine) -> threading.RLock:
    """The lock every reader and writer of this engine holds for the length of a session."""
    with _ENGINE_LOCKS_GUARD:
        lock = _ENGINE_LOCKS.get(engine)
        if lock is None:
            lock = _ENGINE_LOCKS[engine] = threading.RLock()
        return lock


@contextlib.contextmanager
def _locked_session(engine: Engine) -> Iterator[Session]:
    with engine_lock(engine), Session(engine) as s:
        yield s


DEMO_MARK = "demo_vault"
"""sync_state key of a vault filled by core.demo.build_demo: never enrolled (core.sync.enrol refuses it)."""


def get_state(engine: Engine, key: str) -> str | None:
    with _locked_session(engine) as s:
        row = s.get(SyncState, key)
        return row.value if row else None


def set_state(engine: Engine, values: dict[str, str]) -> None:
    with _locked_session(engine) as s, s.begin():
        for key, value in values.items():
            row = s.get(SyncState, key) or SyncState(key=key, value=value)
            row.value = value
            s.add(row)


def load_actor(engine: Engine) -> Actor:
    """Who this laptop writes as; a device id is made once, before any enrolment."""
    device = get_state(engine, "device_id")
    if device is None:
        device = uuid7()
        set_state(engine, {"device_id": device})
    return Actor(
        user_id=get_state(engine, "user_id") or LOCAL_USER,
        device_id=device,
        practice_id=get_state(engine, "practice_id") or LOCAL_PRACTICE,
    )


@dataclass
class CaseStore:
    vault: Vault
    engine: Engine
    actor: Actor
    service: CaseService
    queries: CaseQueries
    lock: threading.RLock


def open_store(vault: Vault, *, clock: Callable[[], dt.datetime] = utcnow) -> CaseStore:
    """Migrate the unlocked vault to the current schema and bind the service and queries."""
    engine = vault.engine
    # Migrating, or the first device id, writes: with no space left that is a full disk, not a damaged vault.
    with disk_full_as_sentence(vault.path):
        with engine_lock(engine):
            migrations.upgrade(engine)
        actor = load_actor(engine)
    lock = engine_lock(engine)
    return CaseStore(
        vault=vault,
        engine=engine,
        actor=actor,
        service=CaseService(engine, actor, clock=clock, lock=lock),
        queries=CaseQueries(engine, clock=clock, lock=lock),
        lock=lock,
    )


def open_unlocked(vault: Vault, *, clock: Callable[[], dt.datetime] = utcnow, detail: str = "") -> CaseStore:
    """Open the store of a vault just unlocked and audit the unlock (and the failed tries before it).

    Any failure locks the vault again before it is raised; a damaged database may refuse that lock's
    checkpoint, which must not hide the cause. ``detail`` says where the unlock came from (e.g. "cli").
    """
    try:
        store = open_store(vault, clock=clock)
        failures = getattr(vault, "failed_attempts_before_unlock", 0)
        if failures:
            store.service.record_event("UNLOCK_FAIL", detail=f"count={failures}")
        store.service.record_event("UNLOCK", detail=detail)
    except BaseException:
        with contextlib.suppress(Exception):
            vault.lock()
        raise
    return store
