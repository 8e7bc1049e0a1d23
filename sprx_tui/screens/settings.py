"""Settings: auto-lock minutes, theme, auto-sync, flag marks, and changing the passphrase (old + new twice)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Checkbox, Input, Label, RadioSet, Rule, Static
from textual.worker import Worker

from sprx_tui.config import AUTO_LOCK_RANGE
from sprx_tui.core.store import CaseStore
from sprx_tui.core.vault import BackoffActive, BadPassphrase, VaultError, WeakPassphrase, check_passphrase_strength
from sprx_tui.messages import PassphraseChanged, PassphraseChangeFailed
from sprx_tui.screens.unlock import show_strength, strength_hint, take_secret, wipe
from sprx_tui.widgets.keys_footer import KeysFooter
from sprx_tui.widgets.status_bar import StatusBar
from sprx_tui.widgets.toggles import RadioChoice, TickBox

if TYPE_CHECKING:
    from sprx_tui.router import Shell


class SettingsScreen(Screen):
    """Ctrl+S saves the settings; the passphrase section has its own button (it runs the KDF twice)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save settings", id="settings.save", priority=True),
        Binding("escape", "close", "Close", id="settings.close"),
    ]
    HELP = "Change a setting and press Ctrl+S. To change your passphrase fill in the three boxes and press Enter."

    def __init__(self) -> None:
        super().__init__()
        self._changing = False

    @property
    def sprx(self) -> Shell:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        config = self.sprx.config
        low, high = AUTO_LOCK_RANGE
        with VerticalScroll(id="settings", classes="pane") as box:
            box.border_title = "Settings"
            yield Label(f"Lock after this many minutes without use ({low}–{high})", classes="field-label")
            yield Input(str(config.auto_lock_minutes), id="auto_lock", restrict=r"\d*", max_length=2, classes="short")
            yield Static("", id="auto_lock-error", classes="field-error")
            yield Label("Theme", classes="field-label")
            with RadioSet(id="theme"):
                yield RadioChoice("Calm (default)", id="theme-default", value=config.theme == "default")
                yield RadioChoice("High contrast", id="theme-high_contrast", value=config.theme == "high_contrast")
            yield TickBox("Sync automatically when online", config.auto_sync, id="auto_sync")
            yield TickBox("Plain text marks for safety flags (no symbols)", config.ascii_marks, id="ascii_marks")
            yield Static("Ctrl+S saves these settings.", classes="hint")
            yield Rule()
            yield Static("Change passphrase", classes="section")
            yield Label("Current passphrase", classes="field-label")
            yield Input(password=True, id="old")
            yield Static("", id="old-error", classes="field-error")
            yield Label("New passphrase", classes="field-label")
            yield Input(password=True, id="new")
            yield Static(strength_hint("")[0], id="new-hint", classes="hint")
            yield Static("", id="new-error", classes="field-error")
            yield Label("New passphrase again", classes="field-label")
            yield Input(password=True, id="again")
            yield Static("", id="again-error", classes="field-error")
            with Horizontal(classes="buttons"):
                yield Button("Change passphrase", id="change", variant="primary")
            yield Static("", id="change-status", classes="muted")
        yield StatusBar()
        yield KeysFooter()

    def on_mount(self) -> None:
        self.query_one("#auto_lock", Input).focus()

    def action_close(self) -> None:
        self.dismiss()

    # -- settings ----------------------------------------------------------------------------------

    def action_save(self) -> None:
        low, high = AUTO_LOCK_RANGE
        field = self.query_one("#auto_lock", Input)
        error = self.query_one("#auto_lock-error", Static)
        try:
            minutes = int(field.value)
        except ValueError:
            minutes = -1
        if not low <= minutes <= high:
            error.update(f"Enter a whole number of minutes from {low} to {high}.")
            field.focus()
            return
        error.update("")
        config = self.sprx.config
        config.auto_lock_minutes = minutes
        pressed = self.query_one("#theme", RadioSet).pressed_button
        config.theme = "high_contrast" if pressed is not None and pressed.id == "theme-high_contrast" else "default"
        config.auto_sync = self.query_one("#auto_sync", Checkbox).value
        config.ascii_marks = self.query_one("#ascii_marks", Checkbox).value
        self.sprx.apply_config()
        if self.sprx.save_config():
            self.notify("Settings saved.")

    # -- passphrase --------------------------------------------------------------------------------

    @on(Input.Changed, "#new")
    def _typing_new(self, event: Input.Changed) -> None:
        show_strength(self, event.value)

    @on(Input.Changed, "#old, #again")
    def _typing(self, event: Input.Changed) -> None:
        self.query_one(f"#{event.input.id}-error", Static).update("")

    @on(Input.Submitted, "#old, #new")
    def _next_field(self, event: Input.Submitted) -> None:
        event.stop()
        self.focus_next()

    @on(Input.Submitted, "#again")
    @on(Button.Pressed, "#change")
    def _change(self, event: Input.Submitted | Button.Pressed) -> None:
        event.stop()
        if self._changing:
            return
        old, new, again = (self.query_one(f"#{name}", Input) for name in ("old", "new", "again"))
        if not old.value:
            self._error("old", "Enter your current passphrase.")
            return
        buf = bytearray(new.value.encode("utf-8"))
        try:
            check_passphrase_strength(buf)
        except WeakPassphrase as exc:
            self._error("new", str(exc))
            return
        finally:
            wipe(buf)
        if new.value != again.value:
            self._error("again", "The two new passphrases are not the same; type the second one again.")
            return
        if new.value == old.value:
            self._error("new", "The new passphrase is the same as the current one; choose a different one.")
            return
        store = self.sprx.store
        if store is None:
            return
        # The current passphrase leaves the screen now; the new one stays typed until the change succeeds.
        old_secret, new_secret = take_secret(old), bytearray(new.value.encode("utf-8"))
        self._changing = True
        self.query_one("#change-status", Static).update("Changing your passphrase; this takes a moment…")
        self.query_one("#change", Button).loading = True
        self._change_passphrase(store, old_secret, new_secret)

    def _error(self, field: str, sentence: str) -> None:
        self.query_one(f"#{field}-error", Static).update(sentence)
        self.query_one(f"#{field}", Input).focus()

    @work(thread=True, exclusive=True, group="vault", exit_on_error=False, name="passphrase")
    def _change_passphrase(self, store: CaseStore, old: bytearray, new: bytearray) -> None:
        try:
            with self.sprx.vault_guard:
                store.vault.change_passphrase(old, new)
            store.service.record_event("PASSPHRASE_CHANGE")
        except (BadPassphrase, BackoffActive) as exc:
            self.post_message(PassphraseChangeFailed("old", str(exc)))
            return
        except WeakPassphrase as exc:
            self.post_message(PassphraseChangeFailed("new", str(exc)))
            return
        except VaultError as exc:
            self.post_message(PassphraseChangeFailed("change-status", str(exc)))
            return
        finally:
            wipe(old)
            wipe(new)
        self.post_message(PassphraseChanged())

    def _done(self) -> None:
        self._changing = False
        self.query_one("#change", Button).loading = False
        self.query_one("#change-status", Static).update("")

    def on_passphrase_changed(self, _message: PassphraseChanged) -> None:
        self._done()
        for name in ("old", "new", "again"):
            self.query_one(f"#{name}", Input).value = ""
        self.query_one("#change-status", Static).update("Your passphrase has been changed.")
        self.notify("Your passphrase has been changed; use the new one next time you unlock.")

    def on_passphrase_change_failed(self, message: PassphraseChangeFailed) -> None:
        self._done()
        if message.field == "change-status":
            self.query_one("#change-status", Static).update(message.sentence)
        else:
            self._error(message.field, message.sentence)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.name == "passphrase" and event.state.name in {"ERROR", "CANCELLED"}:
            self._done()
        self.sprx.worker_failed(event)
