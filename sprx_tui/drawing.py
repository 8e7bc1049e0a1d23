"""Drawing a screen's pending changes at once, when the data the worker is waiting for has arrived."""

from __future__ import annotations

from textual.screen import Screen

from sprx_tui import _textual_hacks as hacks


def draw_now(screen: Screen) -> None:
    """Lay out and draw `screen`'s pending changes now rather than at its next frame.

    Textual draws on a 1/60 s grid: a change made just after a frame waits up to 16.7 ms for the
    next one, which was a third of the budget of a filter keystroke or a save (BENCHMARKS.md, App).
    This is what the frame would do, done as soon as the handler that calls it returns, and with the
    widgets it changed (`_textual_hacks.draw_now`: each changed widget hands its update to the screen
    first; the next frame draws it where that workaround is off). Call it when rows a person is
    waiting for have just been put on screen. Nothing happens on a screen that is not shown, or inside
    a batch of updates.
    """
    hacks.draw_now(screen)
