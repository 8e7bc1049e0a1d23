"""Maintenance: tombstone GC once every active laptop has pulled past, a new epoch after a restore, server info."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa

from sync.server.log import log_event
from sync.server.store.base import StoreBase
from sync.server.store.tables import assignment_log, change_log, conflict, device, record, server_meta

ACTIVE_DEVICE_MS = 90 * 24 * 3600 * 1000
"""A device silent for longer than this no longer holds tombstones back; it resyncs when it returns."""


class MaintenanceMixin(StoreBase):
    """Keeping the sync metadata bounded and marking restores."""

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
