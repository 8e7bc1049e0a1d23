"""The gate: unlock (with back-off countdown), first-run vault creation, and recovery key confirmation."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Center, Vertical
from textual.screen import ModalScreen, Screen
from textual.timer import Timer
from textual.widgets import Input, Label, Static
from textual.worker import Worker

from sprx_tui.core.store import CaseStore, open_store, open_unlocked
from sprx_tui.core.vault import (
    MIN_PASSPHRASE_CHARS,
    Vault,
    VaultError,
    WeakPassphrase,
    check_passphrase_strength,
)
from sprx_tui.messages import (
    RecoveryFailed,
    UnlockFailed,
    UnlockStarted,
    VaultCreated,
    VaultCreateFailed,
    VaultUnlocked,
)
from sprx_tui.widgets.keys_footer import KeysFooter

if TYPE_CHECKING:
    from sprx_tui.router import Shell


def wipe(buf: bytearray) -> None:
    buf[:] = bytes(len(buf))


def take_secret(field: Input) -> bytearray:
    """The typed passphrase as a wipeable bytearray; the Input is emptied so the text leaves the screen."""
    secret = bytearray(field.value.encode("utf-8"))
    field.value = ""
    return secret


def strength_hint(text: str) -> tuple[str, str]:
    """(sentence, level) for the passphrase being typed; level is "", "weak", "ok" or "strong"."""
    if not text:
        return (f"Use three or four random words: at least {MIN_PASSPHRASE_CHARS} characters.", "")
    chars = len(text)
    if chars < MIN_PASSPHRASE_CHARS:
        return (f"Too short: {chars} of at least {MIN_PASSPHRASE_CHARS} characters.", "weak")
    buf = bytearray(text.encode("utf-8"))
    try:
        check_passphrase_strength(buf)
    except WeakPassphrase as exc:
        return (str(exc), "weak")
    finally:
        wipe(buf)
    if chars >= 20 and len(text.split()) >= 3:
        return ("Strong: long, and made of several words.", "strong")
    return ("Acceptable. Another random word or two would make it stronger.", "ok")


def show_strength(screen: Screen, value: str) -> None:
    """Update a new-passphrase form's hint (#new-hint) as the worker types, and clear its error (#new-error)."""
    sentence, level = strength_hint(value)
    hint = screen.query_one("#new-hint", Static)
    hint.update(sentence)
    hint.set_class(level == "weak", "-weak")
    hint.set_class(level == "strong", "-strong")
    screen.query_one("#new-error", Static).update("")


def unlock_and_open(
    vault: Vault,
    secret: bytearray,
    clock: Callable[[], dt.datetime],
    deriving: Callable[[], None] | None = None,
) -> CaseStore:
    """Unlock, open the store and audit the unlock (and any failures before it). Runs in a thread."""
    vault.unlock(secret, deriving=deriving)
    return open_unlocked(vault, clock=clock)


class UnlockScreen(Screen):
    """Type the passphrase, press Enter. Wrong passphrases say so plainly and show the back-off countdown."""

    AUTO_FOCUS = "#passphrase"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "submit", "Unlock", id="unlock.submit", show=True),
        # Typed while the app starts, before the terminal is in raw mode, Enter reaches the app as a newline
        # (the terminal's line discipline turns CR into LF): Textual reads that as ctrl+j, and it was lost.
        Binding("ctrl+j", "submit", "Unlock", id="unlock.submit_newline", show=False),
        Binding("f8", "forgotten", "Forgotten passphrase", id="unlock.recovery", priority=True),
    ]
    HELP = "Type your passphrase and press Enter. F8 if you have forgotten it (you need your recovery key)."

    def __init__(self) -> None:
        super().__init__()
        self._busy = False
        self._wait_left = 0
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        with Center(id="gate-outer"), Vertical(id="gate", classes="gate"):
            yield Static("sprx", classes="brand")
            yield Static("Social prescribing records. Locked.", classes="muted")
            yield Label("Passphrase", classes="field-label")
            yield Input(password=True, id="passphrase", placeholder="Type your passphrase, then Enter")
            yield Static("", id="message", classes="field-error")
            yield Static("", id="countdown", classes="muted")
        yield KeysFooter()

    @property
    def sprx(self) -> Shell:
        return self.app  # type: ignore[return-value]

    def on_mount(self) -> None:
        # Once this screen is drawn, build Today behind it (nothing personal: no vault is open yet).
        prepare = getattr(self.app, "prepare_for_unlock", None)
        if prepare is not None:
            self.call_after_refresh(prepare)

    def action_submit(self) -> None:
        self._submit()

    def action_forgotten(self) -> None:
        if not self._busy:
            self.app.push_screen(RecoveryResetScreen())

    @on(Input.Submitted, "#passphrase")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._submit()

    def _submit(self) -> None:
        field = self.query_one("#passphrase", Input)
        if self._busy or self._wait_left > 0:
            return
        secret = take_secret(field)
        if not secret:
            self._say("Enter your passphrase.")
            return
        self._busy = True  # further Enters are ignored from here
        # The worker first, the screen after. Its thread starts only once this screen's queue is empty,
        # and disabling the field restyles the screen (10-20 ms here), so "Unlocking…" waits for the
        # word that the key derivation has started (`UnlockStarted`) and is drawn while it runs (it
        # releases the GIL): Enter -> Today is that much shorter.
        self._unlock(secret)

    def on_unlock_started(self, _message: UnlockStarted) -> None:
        if not self._busy:
            return
        self._say("")
        self.query_one("#countdown", Static).update("Unlocking…")
        self.query_one("#passphrase", Input).disabled = True

    @work(thread=True, exclusive=True, group="vault", exit_on_error=False, name="unlock")
    def _unlock(self, secret: bytearray) -> None:
        app = self.sprx
        try:
            with app.vault_guard:
                store = unlock_and_open(app.vault, secret, app.clock, lambda: self.post_message(UnlockStarted()))
        except VaultError as exc:
            wait = float(getattr(exc, "seconds", 0.0) or getattr(exc, "retry_after", 0.0) or 0.0)
            self.post_message(UnlockFailed(str(exc), wait))
            return
        finally:
            wipe(secret)
        app.post_message(VaultUnlocked(store))

    def on_unlock_failed(self, message: UnlockFailed) -> None:
        self._busy = False
        self._say(message.sentence)
        self._wait_left = math.ceil(message.wait_seconds) if message.wait_seconds > 0 else 0
        if self._wait_left:
            self._tick(first=True)
            self._timer = self.set_interval(1.0, self._tick)
        else:
            self._ready()

    def _tick(self, first: bool = False) -> None:
        if not first:
            self._wait_left -= 1
        countdown = self.query_one("#countdown", Static)
        if self._wait_left > 0:
            unit = "second" if self._wait_left == 1 else "seconds"
            countdown.update(f"You can try again in {self._wait_left} {unit}.")
            return
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        countdown.update("You can try again now.")
        self._ready(keep_countdown=True)

    def _ready(self, keep_countdown: bool = False) -> None:
        field = self.query_one("#passphrase", Input)
        field.disabled = False
        field.focus()
        if not keep_countdown:
            self.query_one("#countdown", Static).update("")

    def _say(self, sentence: str) -> None:
        self.query_one("#message", Static).update(sentence)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.name == "unlock" and event.state.name in {"ERROR", "CANCELLED"}:
            self._busy = False
            self._ready()
        self.sprx.worker_failed(event)


class FirstRunScreen(Screen):
    """No vault yet: choose a passphrase (twice, with a strength hint), then create the encrypted vault."""

    AUTO_FOCUS = "#new"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "submit", "Next", id="firstrun.submit", show=True),
        Binding("ctrl+j", "submit", "Next", id="firstrun.submit_newline", show=False),  # see UnlockScreen
    ]
    HELP = "Choose a passphrase, type it twice and press Enter. Ctrl+Q quits without creating anything."

    def __init__(self) -> None:
        super().__init__()
        self._busy = False

    def compose(self) -> ComposeResult:
        with Center(id="gate-outer"), Vertical(id="gate", classes="gate"):
            yield Static("Welcome to sprx", classes="brand")
            yield Static(
                "This laptop has no records yet. Choose a passphrase to protect them; "
                "you will type it every time you unlock.",
                classes="intro",
            )
            with Vertical(id="form"):
                yield Label("Passphrase", classes="field-label")
                yield Input(password=True, id="new", placeholder="Three or four random words")
                yield Static(strength_hint("")[0], id="new-hint", classes="hint")
                yield Static("", id="new-error", classes="field-error")
                yield Label("Type it again", classes="field-label")
                yield Input(password=True, id="again")
                yield Static("", id="again-error", classes="field-error")
            yield Static("", id="status", classes="muted")
        yield KeysFooter()

    @property
    def sprx(self) -> Shell:
        return self.app  # type: ignore[return-value]

    @on(Input.Changed, "#new")
    def _typing(self, event: Input.Changed) -> None:
        show_strength(self, event.value)

    @on(Input.Changed, "#again")
    def _typing_again(self) -> None:
        self.query_one("#again-error", Static).update("")

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()

    def action_submit(self) -> None:
        if self._busy:
            return
        new = self.query_one("#new", Input)
        again = self.query_one("#again", Input)
        if self.focused is new and not again.value:
            if self._check_new(new):
                again.focus()
            return
        if not self._check_new(new):
            new.focus()
            return
        if new.value != again.value:
            self.query_one("#again-error", Static).update(
                "The two passphrases are not the same; type the second one again."
            )
            again.focus()
            return
        secret = bytearray(new.value.encode("utf-8"))
        self._busy = True
        self.query_one("#form").loading = True
        self.query_one("#status", Static).update("Setting up encryption on this laptop; this takes a moment…")
        self._create(secret)

    def _check_new(self, new: Input) -> bool:
        buf = bytearray(new.value.encode("utf-8"))
        try:
            check_passphrase_strength(buf)
        except WeakPassphrase as exc:
            self.query_one("#new-error", Static).update(str(exc))
            return False
        finally:
            wipe(buf)
        return True

    @work(thread=True, exclusive=True, group="vault", exit_on_error=False, name="create")
    def _create(self, secret: bytearray) -> None:
        app = self.sprx
        try:
            try:
                # The default vault lives in the user data folder, which a new laptop may not have yet.
                app.vault_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            except OSError:
                self.post_message(VaultCreateFailed("The folder for the vault could not be created.", "status"))
                return
            with app.vault_guard:
                vault, recovery = Vault.create(app.vault_path, secret, kdf=None)
                try:
                    store = open_store(vault, clock=app.clock)
                    store.service.record_event("UNLOCK", detail="first run")
                except BaseException:
                    vault.lock()
                    raise
        except VaultError as exc:
            field = "new" if isinstance(exc, WeakPassphrase) else "status"
            self.post_message(VaultCreateFailed(str(exc), field))
            return
        finally:
            wipe(secret)
        self.post_message(VaultCreated(vault, store, recovery))

    def on_vault_create_failed(self, message: VaultCreateFailed) -> None:
        self._busy = False
        self.query_one("#form").loading = False
        target = "#new-error" if message.field == "new" else "#status"
        self.query_one(target, Static).update(message.sentence)
        self.query_one("#new", Input).focus()

    def on_vault_created(self, message: VaultCreated) -> None:
        for field in self.query(Input):
            field.value = ""
        self.query_one("#form").loading = False
        self.query_one("#status", Static).update("")
        app = self.sprx
        app.vault = message.vault
        store = message.store

        def stored(_confirmed: bool | None) -> None:
            app.post_message(VaultUnlocked(store))

        self.app.push_screen(RecoveryKeyScreen(message.recovery_key), stored)
        message.recovery_key = ""

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.name == "create" and event.state.name in {"ERROR", "CANCELLED"}:
            self._busy = False
            self.query_one("#form").loading = False
            self.query_one("#status", Static).update("")
        self.sprx.worker_failed(event)


class RecoveryKeyScreen(ModalScreen[bool]):
    """Shown once: the recovery key, and a deliberate confirmation (type its last group) that it is written down."""

    AUTO_FOCUS = "#confirm"
    BINDINGS: ClassVar[list[BindingType]] = [
        # No way to skip: Esc does nothing here, so the key cannot be dismissed by accident.
        Binding("escape", "nothing", show=False, id="recovery.escape"),
    ]

    def __init__(self, recovery_key: str) -> None:
        super().__init__()
        groups = recovery_key.split("-")
        self._last_group = groups[-1].upper()
        # Two lines of groups are easier to copy by hand than one long line.
        half = (len(groups) + 1) // 2
        self._lines = ["-".join(groups[:half]), "-".join(groups[half:])]

    def compose(self) -> ComposeResult:
        with Vertical(id="recovery", classes="gate"):
            yield Static("Your recovery key", classes="brand")
            yield Static("\n".join(self._lines), id="recovery-key")
            yield Static(
                "Write this key on paper and keep it somewhere safe, away from this laptop. "
                "It is the only way back in if you forget your passphrase, and it will not be shown again.",
                classes="intro",
            )
            yield Static("To confirm you have stored it, type its last group of 4 characters:", classes="field-label")
            yield Input(id="confirm", max_length=4, restrict=r"[A-Za-z2-7]*", placeholder="last 4 characters")
            yield Static("", id="confirm-error", classes="field-error")

    def action_nothing(self) -> None:
        self.query_one("#confirm-error", Static).update(
            "Please type the last group of the key to confirm you have stored it."
        )

    @on(Input.Submitted, "#confirm")
    def _confirm(self, event: Input.Submitted) -> None:
        event.stop()
        if event.value.strip().upper() == self._last_group:
            self._lines = []
            self.dismiss(True)
            return
        self.query_one("#confirm-error", Static).update(
            "That does not match the last group of the key; check what you wrote down and type it again."
        )


class RecoveryResetScreen(Screen):
    """Forgotten passphrase: the recovery key plus a new passphrase (twice) sets the new one and unlocks."""

    AUTO_FOCUS = "#recovery"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back to unlock", id="recovery.back"),
    ]
    HELP = "Type the recovery key you wrote down when sprx was set up, then a new passphrase twice."

    def __init__(self) -> None:
        super().__init__()
        self._busy = False

    @property
    def sprx(self) -> Shell:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        with Center(id="gate-outer"), Vertical(id="gate", classes="gate"):
            yield Static("Forgotten passphrase", classes="brand")
            yield Static("Use the recovery key from when sprx was set up to choose a new passphrase.", classes="intro")
            with Vertical(id="form"):
                yield Label("Recovery key", classes="field-label")
                yield Input(id="recovery", placeholder="XXXX-XXXX-…", max_length=80)
                yield Static("", id="recovery-error", classes="field-error")
                yield Label("New passphrase", classes="field-label")
                yield Input(password=True, id="new")
                yield Static(strength_hint("")[0], id="new-hint", classes="hint")
                yield Static("", id="new-error", classes="field-error")
                yield Label("New passphrase again", classes="field-label")
                yield Input(password=True, id="again")
                yield Static("", id="again-error", classes="field-error")
            yield Static("", id="status", classes="muted")
        yield KeysFooter()

    def action_back(self) -> None:
        if not self._busy:
            self.dismiss()

    @on(Input.Changed, "#new")
    def _typing(self, event: Input.Changed) -> None:
        show_strength(self, event.value)

    @on(Input.Changed, "#recovery, #again")
    def _typing_other(self, event: Input.Changed) -> None:
        self.query_one(f"#{event.input.id}-error", Static).update("")

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self._busy:
            return
        recovery, new, again = (self.query_one(f"#{n}", Input) for n in ("recovery", "new", "again"))
        if event.input is not again and not again.value:
            self.focus_next()
            return
        if not recovery.value.strip():
            self._error("recovery", "Type the recovery key you wrote down.")
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
            self._error("again", "The two passphrases are not the same; type the second one again.")
            return
        self._busy = True
        self.query_one("#form").loading = True
        self.query_one("#status", Static).update("Setting your new passphrase; this takes a moment…")
        self._reset(recovery.value, bytearray(new.value.encode("utf-8")))

    def _error(self, field: str, sentence: str) -> None:
        self.query_one(f"#{field}-error", Static).update(sentence)
        self.query_one(f"#{field}", Input).focus()

    @work(thread=True, exclusive=True, group="vault", exit_on_error=False, name="recovery")
    def _reset(self, recovery_key: str, new: bytearray) -> None:
        app = self.sprx
        try:
            with app.vault_guard:
                app.vault.reset_passphrase_with_recovery(recovery_key, new)
                store = unlock_and_open(app.vault, new, app.clock)
                store.service.record_event("PASSPHRASE_RESET")
        except VaultError as exc:
            field = "new" if isinstance(exc, WeakPassphrase) else "recovery"
            self.post_message(RecoveryFailed(str(exc), field))
            return
        finally:
            wipe(new)
        app.post_message(VaultUnlocked(store))

    def on_recovery_failed(self, message: RecoveryFailed) -> None:
        self._busy = False
        self.query_one("#form").loading = False
        self.query_one("#status", Static).update("")
        self._error(message.field, message.sentence)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.name == "recovery" and event.state.name in {"ERROR", "CANCELLED"}:
            self._busy = False
            self.query_one("#form").loading = False
            self.query_one("#status", Static).update("")
        self.sprx.worker_failed(event)
