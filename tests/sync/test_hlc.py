"""HLC: packing, monotonic tick/receive, counter overflow, the injectable clock."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sync import hlc

ms = st.integers(0, 2**40)
packed = st.builds(hlc.pack, ms, st.integers(0, hlc.COUNTER_MAX))


def test_pack_roundtrip() -> None:
    assert hlc.unpack(hlc.pack(123, 7)) == (123, 7)
    assert hlc.pack(1, 0) > hlc.pack(0, hlc.COUNTER_MAX)


@given(packed, ms)
def test_tick_strictly_increases(last: int, pt: int) -> None:
    t = hlc.tick(last, pt)
    assert t > last
    assert hlc.physical_ms(t) >= pt


@given(packed, packed, ms)
def test_receive_exceeds_both(last: int, remote: int, pt: int) -> None:
    t = hlc.receive(last, remote, pt)
    assert t > last and t > remote and hlc.physical_ms(t) >= pt


def test_counter_overflow_borrows_a_millisecond() -> None:
    t = hlc.tick(hlc.pack(100, hlc.COUNTER_MAX), 100)
    assert hlc.unpack(t) == (101, 0)
    r = hlc.receive(hlc.pack(100, 5), hlc.pack(100, hlc.COUNTER_MAX), 50)
    assert hlc.unpack(r) == (101, 0)


def test_clock_never_goes_back_when_wall_clock_jumps_back() -> None:
    now = [100_000_000]
    c = hlc.HybridClock(lambda: now[0])
    a = c.now()
    now[0] -= 3_600_000  # the wall clock jumps back an hour
    b = c.now()
    assert b > a
    assert c.is_too_far_ahead(hlc.pack(now[0] + hlc.MAX_SKEW_MS + 1, 0))
    assert not c.is_too_far_ahead(hlc.pack(now[0] + hlc.MAX_SKEW_MS, 0))
