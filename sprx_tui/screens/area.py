"""The base of the five area screens (F2-F6), which the app switches between rather than pushes."""

from __future__ import annotations

import contextlib

from textual import events
from textual.screen import Screen


class AreaScreen(Screen):
    """An area's screen: kept while the vault is unlocked, switched to with its key.

    Textual restyles a screen from scratch each time its mode is switched to. When nothing its styles
    depend on has changed since it was last shown (the app's CSS, the theme, whether the terminal
    has focus), that restyle changes nothing, yet it marks the screen's widgets for a new layout:
    about 40 ms of each F2/F3 (BENCHMARKS.md, App). Then the screen is shown as it was styled.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._styled_for: tuple[object, ...] | None = None

    def _style_inputs(self) -> tuple[object, ...]:
        app = self.app
        return (app._css_update_count, app.theme, app.app_focus, self._css_update_count)

    def mark_styled(self) -> None:
        """Record that the screen is styled for the app as it is now (it was built ahead, or is leaving)."""
        self._styled_for = self._style_inputs()

    def _on_screen_suspend(self) -> None:
        self.mark_styled()

    def _on_screen_resume(self, event: events.ScreenResume) -> None:
        # Runs before Screen's own handler, which reads the flag (handlers run down the class tree).
        if self._styled_for is not None and self._styled_for == self._style_inputs():
            event.refresh_styles = False

    def lay_out_behind(self) -> None:
        """Lay out this screen while another is shown (built ahead, its rows just added).

        Otherwise its widgets get their sizes only when it is first shown, and each one resized then
        asks for another layout: two full passes at the switch instead of one drawing.
        """
        if self.is_attached and not self.is_current:
            with contextlib.suppress(Exception):
                self._refresh_layout(self.app.size)
