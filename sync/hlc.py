"""Hybrid logical clock (Kulkarni et al. 2014) packed into one integer: (l_ms << 16) | c."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

COUNTER_BITS = 16
COUNTER_MAX = (1 << COUNTER_BITS) - 1
MAX_SKEW_MS = 5 * 60 * 1000
"""The server refuses HLCs whose physical part is more than this far ahead of its own clock."""


def pack(l_ms: int, c: int) -> int:
    """Pack a (milliseconds, counter) pair; the counter must fit in 16 bits."""
    if l_ms < 0 or not 0 <= c <= COUNTER_MAX:
        raise ValueError("HLC part out of range")
    return (l_ms << COUNTER_BITS) | c


def unpack(h: int) -> tuple[int, int]:
    """The (milliseconds, counter) pair of a packed HLC."""
    return h >> COUNTER_BITS, h & COUNTER_MAX


def physical_ms(h: int) -> int:
    """The physical (milliseconds) part of a packed HLC."""
    return h >> COUNTER_BITS


def _carry(l_ms: int, c: int) -> int:
    # A counter overflow borrows the next millisecond rather than wrapping, so the clock
    # still never goes backwards (it runs at most 1 ms ahead per 65,536 events in one ms).
    if c > COUNTER_MAX:
        return pack(l_ms + 1, 0)
    return pack(l_ms, c)


def tick(last: int, physical_ms: int) -> int:
    """Timestamp a local or send event; always strictly greater than ``last``."""
    l_ms, c = unpack(last)
    new_l = max(l_ms, physical_ms)
    return _carry(new_l, c + 1 if new_l == l_ms else 0)


def receive(last: int, remote: int, physical_ms: int) -> int:
    """Merge a remote timestamp; the result is strictly greater than ``last`` and ``remote``."""
    l_ms, c = unpack(last)
    rl, rc = unpack(remote)
    new_l = max(l_ms, rl, physical_ms)
    if new_l == l_ms == rl:
        new_c = max(c, rc) + 1
    elif new_l == l_ms:
        new_c = c + 1
    elif new_l == rl:
        new_c = rc + 1
    else:
        new_c = 0
    return _carry(new_l, new_c)


def wall_ms() -> int:
    """The system wall clock in milliseconds (the default physical clock)."""
    return time.time_ns() // 1_000_000


class HybridClock:
    """A thread-safe HLC with an injectable physical clock (tests pass a fake one)."""

    def __init__(self, now_ms: Callable[[], int] = wall_ms, last: int = 0) -> None:
        self._now_ms = now_ms
        self._last = last
        self._lock = threading.Lock()

    @property
    def last(self) -> int:
        return self._last

    def physical(self) -> int:
        return self._now_ms()

    def now(self) -> int:
        """Tick for a local event and return the new timestamp."""
        with self._lock:
            self._last = tick(self._last, self._now_ms())
            return self._last

    def update(self, remote: int) -> int:
        """Receive-merge a remote timestamp and return the new local timestamp."""
        with self._lock:
            self._last = receive(self._last, remote, self._now_ms())
            return self._last

    def is_too_far_ahead(self, remote: int) -> bool:
        """True when ``remote`` is more than MAX_SKEW_MS ahead of the physical clock."""
        return physical_ms(remote) > self._now_ms() + MAX_SKEW_MS
