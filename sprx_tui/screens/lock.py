"""What sits behind the unlock screen (an empty backdrop) and the dialog offering back a draft kept at the last lock."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Static

from sprx_tui.inert import inert


class Backdrop(Screen):
    """The locked app's base screen: deliberately empty, so nothing personal can show through."""

    DEFAULT_CSS = """
    Backdrop { background: $background; }
    """


class DraftOfferScreen(ModalScreen[bool | None]):
    """'You have an unsaved contact note for …; restore it?' Enter/y restores, n discards, Esc asks again later.

    The sentence comes from the draft's owning module (`describe_draft`, see sprx_tui/drafts.py); it is shown
    only once the vault is unlocked, so it may name the person.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Restore", id="draft.restore"),
        Binding("n", "answer(False)", "Discard", id="draft.discard"),
        Binding("escape", "later", "Ask later", id="draft.later"),
        Binding("left,right", "app.focus_next", show=False),
    ]

    DEFAULT_CSS = """
    DraftOfferScreen { align: center middle; }
    DraftOfferScreen > Vertical {
        width: 64; max-width: 95%; height: auto;
        border: round $primary; background: $surface; padding: 1 2;
    }
    DraftOfferScreen #draft-question { width: 1fr; margin-bottom: 1; }
    DraftOfferScreen Horizontal { height: auto; align-horizontal: right; }
    DraftOfferScreen Button { margin-left: 2; }
    """

    def __init__(self, sentence: str) -> None:
        super().__init__()
        self.sentence = sentence

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(inert(self.sentence, multiline=True), id="draft-question")
            yield Static("y restore · n discard · Esc ask me next time", classes="hint")
            with Horizontal():
                yield Button("Restore", id="restore", variant="primary")
                yield Button("Discard", id="discard", variant="error")

    def on_mount(self) -> None:
        self.query_one("#restore", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "restore")

    def action_answer(self, restore: bool) -> None:
        self.dismiss(restore)

    def action_later(self) -> None:
        self.dismiss(None)
