"""The base of the five area screens (F2-F6), which the app switches between rather than pushes."""

from __future__ import annotations

from sprx_tui import _textual_hacks as hacks


class AreaScreen(hacks.KeepStylesOnResume):
    """An area's screen: kept while the vault is unlocked, switched to with its key.

    Textual restyles a screen from scratch each time its mode is switched to. When nothing its styles
    depend on has changed since it was last shown (the app's CSS, the theme, whether the terminal
    has focus), that restyle changes nothing, yet it marks the screen's widgets for a new layout:
    about 40 ms of each F2/F3 (BENCHMARKS.md, App). Then the screen is shown as it was styled
    (`_textual_hacks.KeepStylesOnResume`; Textual's own restyle where that workaround is off).
    """
