"""F1 help: the keys of the current screen, read from its live bindings (so a custom keymap shows), then global ones."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Static

from sprx_tui.inert import inert
from sprx_tui.widgets.row_table import RowTable

EVERYWHERE = "Everywhere"
HERE = "This screen"
MOVING = "Moving around"
ORDER = {HERE: 0, EVERYWHERE: 1, MOVING: 2}


def screen_title(screen: Screen) -> str:
    title = getattr(screen, "HELP_TITLE", None)
    if title:
        return str(title)
    name = type(screen).__name__.removesuffix("Screen")
    return name or "This screen"


def key_rows(screen: Screen) -> list[tuple[str, str, str, str]]:
    """(where, keys, what it does, more) for every enabled binding with a description, this screen's first."""
    app = screen.app
    grouped: dict[tuple[str, str], list[str]] = {}
    tips: dict[tuple[str, str], str] = {}
    for key, active in screen.active_bindings.items():
        binding = active.binding
        if binding.system or not binding.description or not active.enabled:
            continue
        # Our bindings carry ids; Textual's own (cursor keys, copy, focus) do not and are listed last.
        where = EVERYWHERE if active.node is app else HERE if binding.id else MOVING
        group = (where, binding.description)
        display = binding.key_display or app.get_key_display(Binding(key, binding.action))
        grouped.setdefault(group, [])
        if display not in grouped[group]:
            grouped[group].append(display)
        tips[group] = binding.tooltip or ""
    rows = [(where, ", ".join(keys), what, tips[(where, what)]) for (where, what), keys in grouped.items()]
    rows.sort(key=lambda r: ORDER[r[0]])
    return rows


class HelpScreen(ModalScreen[None]):
    """A table of keys for the screen below; Esc or F1 closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,f1", "dismiss", "Close help", id="help.close"),
    ]
    HELP_TITLE = "Help"

    def __init__(self, title: str, about: str, rows: list[tuple[str, str, str, str]], legend: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.about = about
        self.rows = rows
        self.legend = legend

    @classmethod
    def for_screen(cls, screen: Screen) -> HelpScreen:
        about = str(getattr(type(screen), "HELP", "") or "")
        legend = getattr(screen, "help_legend", None)  # what the screen's marks mean (the safety-flag symbols)
        return cls(f"Keys: {screen_title(screen)}", about, key_rows(screen), legend() if callable(legend) else "")

    def compose(self) -> ComposeResult:
        with Vertical(id="help", classes="pane"):
            if self.about:
                yield Static(self.about, id="help-about")
            table = RowTable(id="help-keys", cursor_type="row", zebra_stripes=True)
            table.add_columns("Key", "What it does", "Where")
            for where, keys, what, _tip in self.rows:
                table.add_row(keys, what, where)
            yield table
            if self.legend:
                yield Static(inert(self.legend, multiline=True), id="help-legend")
            yield Static("Esc closes · Ctrl+P searches every command", classes="hint")

    def on_mount(self) -> None:
        help_box = self.query_one("#help")
        help_box.border_title = self.title_text
        self.query_one(DataTable).focus()
