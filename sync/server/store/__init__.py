"""The server's store: all sync state, in SQLAlchemy 2 Core over a SQLite file (WAL) or PostgreSQL.

``ServerStore`` is one class made of one mixin per job, each in its own module:

- ``tables``: the ``sa.Table`` definitions, hot-path statements and ``make_engine``
- ``base``: ``StoreError``, ``Device``, and the transaction helpers every job writes through
  (``_write`` locks the seq counter row, ``_read``, ``_next_seq``, ``_log`` for the change feed)
- ``accounts``: workers, enrolment codes, enrol, revoke and retire, ``authenticate``, the device list
- ``scope``: assignment of people to workers and teams, and who may see whom
- ``push``: exactly-once push, ``_apply`` (gate, clock, scope, merge, write), conflicts, quarantine,
  duplicate people, ``server_write``
- ``feed``: pull (change feed) and snapshot pages with their tokens
- ``imports``: referrals from the practice's file (the file readers are ``sync.server.importer``
  and ``sync.server.directory``)
- ``admin``: the admin command's checks and lists: practices and teams that must exist, workers listed
  and removed, people found, enrolment codes listed and cancelled, a device restored
- ``maintenance``: tombstone GC, a new epoch after a restore, server info

Tables and helpers are re-exported here, so ``from sync.server.store import record`` keeps working.
"""

from __future__ import annotations

from sync.server.store.accounts import CODE_ALPHABET, ENROL_CODE_TTL_MS, AccountsMixin, normalise_code
from sync.server.store.admin import AdminMixin
from sync.server.store.base import Device, StoreBase, StoreError, canonical, sha256_hex
from sync.server.store.feed import SNAPSHOT_TABLES, FeedMixin
from sync.server.store.imports import PERSON_NS, ImportsMixin
from sync.server.store.maintenance import ACTIVE_DEVICE_MS, MaintenanceMixin
from sync.server.store.push import QUARANTINE_PAYLOAD_MAX, PushMixin, quarantine_payload
from sync.server.store.scope import ScopeMixin
from sync.server.store.tables import (
    Big,
    applied_mutation,
    assignment,
    assignment_log,
    change_log,
    conflict,
    deleted_id,
    device,
    enrol_code,
    make_engine,
    md,
    practice,
    quarantine,
    record,
    server_meta,
    team,
    worker,
)


class ServerStore(
    AdminMixin, ImportsMixin, PushMixin, FeedMixin, ScopeMixin, AccountsMixin, MaintenanceMixin, StoreBase
):
    """All server state. Every sync write goes through one transaction that locks the counter (``_write``)."""


__all__ = [
    "ACTIVE_DEVICE_MS",
    "CODE_ALPHABET",
    "ENROL_CODE_TTL_MS",
    "PERSON_NS",
    "QUARANTINE_PAYLOAD_MAX",
    "SNAPSHOT_TABLES",
    "Big",
    "Device",
    "ServerStore",
    "StoreError",
    "applied_mutation",
    "assignment",
    "assignment_log",
    "canonical",
    "change_log",
    "conflict",
    "deleted_id",
    "device",
    "enrol_code",
    "make_engine",
    "md",
    "normalise_code",
    "practice",
    "quarantine",
    "quarantine_payload",
    "record",
    "server_meta",
    "sha256_hex",
    "team",
    "worker",
]
