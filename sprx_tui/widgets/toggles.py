"""Tick boxes and radio choices that say their state in characters, not only in colour.

Textual draws a Checkbox as "▐X▌" whether ticked or not, and every RadioButton as "▐●▌": only the colour
of the X or the dot changes. Here a tick box reads `[x]` or `[ ]` and a radio choice `(•)` or `( )`,
through the toggle button's public BUTTON_LEFT / BUTTON_INNER / BUTTON_RIGHT class variables. The
brackets are drawn in the readable text colour (Textual draws its half-block sides in the button's
background colour, which would hide them), so they belong to BUTTON_INNER and the sides are empty.
"""

from __future__ import annotations

from textual.widgets import Checkbox, RadioButton

TOGGLE_CSS = """
    & > .toggle--button { color: $foreground; background: $surface; text-style: none; }
    &.-on > .toggle--button { color: $text-success; background: $surface; text-style: bold; }
    &:ansi > .toggle--button { color: ansi_default; background: ansi_default; text-style: none; }
    &:ansi.-on > .toggle--button { color: ansi_default; background: ansi_default; text-style: bold; }
"""


class TickBox(Checkbox):
    """A Checkbox shown as `[x]` when ticked and `[ ]` when not."""

    DEFAULT_CSS = "TickBox {" + TOGGLE_CSS + "}"
    BUTTON_LEFT = ""
    BUTTON_RIGHT = ""

    @property
    def BUTTON_INNER(self) -> str:  # type: ignore[override]  # noqa: N802 - Textual's name for it
        return "[x]" if self.value else "[ ]"


class RadioChoice(RadioButton):
    """A RadioButton shown as `(•)` when chosen and `( )` when not."""

    DEFAULT_CSS = "RadioChoice {" + TOGGLE_CSS + "}"
    BUTTON_LEFT = ""
    BUTTON_RIGHT = ""

    @property
    def BUTTON_INNER(self) -> str:  # type: ignore[override]  # noqa: N802 - Textual's name for it
        return "(•)" if self.value else "( )"
