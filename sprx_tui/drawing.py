"""Drawing a screen's pending changes at once, when the data the worker is waiting for has arrived."""

from __future__ import annotations

import contextlib

from textual.screen import Screen


def draw_now(screen: Screen) -> None:
    """Lay out and draw `screen`'s pending changes now rather than at its next frame.

    Textual draws on a 1/60 s grid: a change made just after a frame waits up to 16.7 ms for the
    next one, which was a third of the budget of a filter keystroke or a save (BENCHMARKS.md, App).
    This is what the frame would do, done at once; call it when rows a person is waiting for have
    just been put on screen (tables measured first: see FastTextTable.measure_now). Nothing happens
    on a screen that is not shown, or inside a batch of updates.
    """
    if screen.is_current and not screen.app._batch_count:
        with contextlib.suppress(Exception):  # at worst the next frame draws it, as before
            screen._on_timer_update()
