"""Sync back-off after many failures: the exponent is capped before the power is computed."""

from __future__ import annotations

import random

import pytest

from sprx_tui import sync_controller
from sync import client

HUGE = 10_000


def test_capped_doubling_doubles_to_the_cap_and_never_overflows() -> None:
    assert [client.capped_doubling(5.0, 300.0, n) for n in range(9)] == [0, 5, 10, 20, 40, 80, 160, 300, 300]
    assert client.capped_doubling(1.0, 300.0, HUGE) == 300.0
    assert client.capped_doubling(1.0, 300.0, 10**18) == 300.0


def test_client_backoff_after_ten_thousand_failures_waits_at_most_the_cap() -> None:
    b = client.Backoff(base=1.0, cap=300.0, rng=lambda: 1.0)
    b.failures = HUGE - 1
    assert b.failure(now=0.0) == pytest.approx(300.0)
    assert b.delay() == pytest.approx(300.0)
    assert not b.due(299.0) and b.due(300.0)


def test_app_backoff_after_ten_thousand_failures_waits_about_the_cap() -> None:
    b = sync_controller.auto_sync_backoff(rng=random.Random(1))
    b.failures = HUGE - 1
    wait = b.failed()
    assert b.ceiling() == 300.0
    assert 0.8 * 300 <= wait <= 1.2 * 300
