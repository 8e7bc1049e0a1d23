"""The dialog after the practice withdrew (revoked) or retired this laptop and its copy was erased."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from sprx_tui.inert import inert


class RevokedScreen(ModalScreen[None]):
    """Shown over the gate after a revoked laptop erased its copy; stays until the person has read it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter,escape", "close", "Close", id="revoked.close"),
    ]
    DEFAULT_CSS = """
    RevokedScreen { align: center middle; }
    RevokedScreen > Vertical {
        width: 64; max-width: 95%; height: auto;
        border: thick $error; background: $surface; padding: 1 2;
    }
    RevokedScreen #revoked-title { text-style: bold; color: $error; margin-bottom: 1; }
    RevokedScreen #revoked-text { margin-bottom: 1; }
    """

    def __init__(self, sentence: str) -> None:
        super().__init__()
        self.sentence = sentence

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("This laptop can no longer sync", id="revoked-title")
            yield Static(inert(self.sentence, multiline=True), id="revoked-text")
            yield Static(
                "The encrypted records and their key were deleted from this laptop. If you think this is a "
                "mistake, ask your practice admin for a new enrolment code.",
                classes="hint",
            )
            yield Button("I understand", id="revoked-ok", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#revoked-ok", Button).focus()

    def on_button_pressed(self, _event: Button.Pressed) -> None:
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)
