"""One way for the app tests to wait until the app is quiet."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from textual.pilot import Pilot
from textual.screen import Screen
from textual.worker import WorkerCancelled


async def settle(pilot: Pilot[Any], rounds: int = 3) -> None:
    """Wait for the app's workers and for the messages they post (a handler may start another worker).

    A worker cancelled because a newer worker of its exclusive group replaced it is normal: the sync
    summary, for one, is re-read both on a timer and after events, and the two can overlap. The newer
    worker is waited for in the same round. A worker that failed still fails the test (WorkerFailed).
    """
    app = pilot.app
    for _ in range(rounds):
        for worker in list(app.workers):
            try:
                await worker.wait()
            except WorkerCancelled:
                pass
        await pilot.pause()


async def wait_until(pilot: Pilot[Any], condition: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    """Let the app run until `condition()` holds: a worker's result, a message handled, a timer's tick, a thread's
    effect. Never a fixed sleep: each round is `pilot.pause()`, which returns as soon as the process is idle."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what or 'the app'}"
        await pilot.pause()


S = TypeVar("S", bound=Screen[Any])


async def open_area(pilot: Pilot[Any], key: str, screen_class: type[S]) -> S:
    """Press an area's key (F2-F6) once the app is quiet, and return the screen it shows."""
    await settle(pilot, rounds=4)
    await pilot.press(key)
    await settle(pilot, rounds=4)
    assert isinstance(pilot.app.screen, screen_class)
    return pilot.app.screen
