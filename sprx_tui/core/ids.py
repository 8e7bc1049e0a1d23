"""Client-generated identifiers: UUIDv7 (time-ordered, so retries can never duplicate a row)."""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_seq = 0


def uuid7(now_ms: int | None = None) -> str:
    """A UUIDv7 string (RFC 9562): 48-bit Unix ms, 12-bit counter for order within a ms, random tail."""
    global _last_ms, _seq
    with _lock:
        ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        if ms <= _last_ms:
            ms = _last_ms
            _seq += 1
            if _seq > 0xFFF:  # counter exhausted within one ms: borrow the next ms
                ms += 1
                _seq = 0
        else:
            _seq = int.from_bytes(os.urandom(2), "big") & 0x3FF
        _last_ms = ms
        seq = _seq
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | seq << 64 | 0b10 << 62 | rand
    return str(uuid.UUID(int=value))


def stable_id(namespace: str, *parts: str) -> str:
    """A deterministic id for rows that must be the same on every import (uuid5)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "sprx:" + namespace + ":" + "\x1f".join(parts)))
