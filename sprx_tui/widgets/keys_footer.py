"""The footer of key bindings, rebuilt only when the keys it shows change."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.reactive import Reactive
from textual.widgets import Footer

if TYPE_CHECKING:
    from textual.app import ComposeResult
    from textual.screen import Screen

KeysShown = tuple[tuple[object, ...], ...]


class KeysFooter(Footer):
    """Textual's Footer, without rebuilding itself when nothing it shows has changed.

    Textual's Footer removes and re-mounts every key widget whenever the screen's bindings *might*
    have changed: each focus move, each screen switch, each `refresh_bindings`. Most of those leave
    the same keys with the same labels, and each rebuild restyles a dozen widgets, about 10 ms on the
    person screen here, which landed inside saving a contact and opening a person (BENCHMARKS.md,
    App). This footer compares what it would show with what it shows and rebuilds only on a
    difference, so the keys on screen are always the current ones.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._keys_shown: KeysShown | None = None

    def _keys_to_show(self, screen: Screen) -> KeysShown:
        """Everything of the screen's bindings that the footer's keys are built from."""
        app = self.app
        shown = []
        for key, (_node, binding, enabled, tooltip) in screen.active_bindings.items():
            if binding.show or key == app.COMMAND_PALETTE_BINDING:
                group = binding.group
                shown.append(
                    (
                        binding.key,
                        binding.action,
                        binding.description,
                        binding.tooltip,
                        binding.show,
                        None if group is None else (group.description, group.compact),
                        enabled,
                        tooltip,
                        app.get_key_display(binding),
                    )
                )
        return (self.show_command_palette, app.ENABLE_COMMAND_PALETTE, self.compact, *shown)  # type: ignore[return-value]

    def bindings_changed(self, screen: Screen) -> None:
        if not screen.app.app_focus or not (self.is_attached and screen is self.screen):
            super().bindings_changed(screen)
            return
        keys = self._keys_to_show(screen)
        if keys == self._keys_shown and self._bindings_ready:
            return
        self._keys_shown = keys
        super().bindings_changed(screen)

    def compose(self) -> ComposeResult:
        """Footer's keys, each made to start as compact as the footer (no restyle as each one mounts).

        A FooterKey starts compact (its `compact` reactive defaults to True), so as it mounts its watcher adds
        the "-compact" class and then, bound to this footer's `compact` (False), removes it again: two
        restyles of each key, the footer's costliest part (about a fifth of the work after a person's header
        is shown, cProfile on bench_app's opens). Given the footer's value before it mounts, each key is
        styled once, and the binding that follows finds nothing to change.
        """
        for widget in super().compose():
            compact = getattr(type(widget), "compact", None)
            # The command palette's key is not bound to the footer's `compact`: it stays as Textual makes it.
            if isinstance(compact, Reactive) and not widget.has_class("-command-palette"):
                widget.set_reactive(compact, self.compact)
                widget.set_class(self.compact, "-compact", update=False)
            yield widget
