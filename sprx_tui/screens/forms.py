"""Shared form parts: a labelled field with its error line, UK date entry, and yes/no and reason dialogs."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
from collections.abc import Iterable, Mapping
from typing import TypeVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.suggester import SuggestFromList
from textual.widget import Widget
from textual.widgets import Button, Input, Label, Static
from textual.worker import Worker

from sprx_rules.validate import ValidationError, parse_date
from sprx_tui.formats import LOCAL_TZ, fmt_date, fmt_datetime, local  # noqa: F401 - screens import them from here too
from sprx_tui.inert import inert

_TIME = re.compile(r"(\d{1,2})[:.](\d{2})")
_DAYS_FROM_TODAY = re.compile(r"\+\s*(\d{1,3})\s*([dw]?)", re.IGNORECASE)


KEYS_WAIT_SECONDS = 0.5
"""The longest a form's save waits for its fields to handle the keys typed before it."""


# -- keys typed faster than they are handled --------------------------------------------------------


class KeysInOrder(Screen):
    """A form whose keys land in the field they were typed for, however fast they come.

    Textual hands a key to the focused widget's own queue and reads the next one at once. Tab is acted on
    only when it comes back up unhandled, so keys typed behind a Tab in one burst (a practised typist, a
    busy moment) went to the field being left: the contact form lost notes, and their letters changed
    its mode (commit e0b0d91). Here Tab and Shift+Tab are priority keys, acted on as they are read, so
    the keys after them go to the next field; and Ctrl+S (a priority key too) first waits until every
    field has handled the keys already handed to it (`keys_handled`), so a save sees all that was typed.
    Only forms that lost keys take this part (ContactScreen); elsewhere keys go as Textual sends them.
    """

    BINDINGS = [
        Binding("tab", "app.focus_next", "Next field", show=False, priority=True),
        Binding("shift+tab", "app.focus_previous", "Previous field", show=False, priority=True),
    ]

    async def keys_handled(self, timeout: float = KEYS_WAIT_SECONDS) -> None:
        """Wait until each field of the form has handled every key already handed to it."""
        loop = asyncio.get_running_loop()
        waits: list[asyncio.Future[None]] = []
        for widget in self.query("*"):
            if not widget.can_focus:
                continue
            done: asyncio.Future[None] = loop.create_future()
            # A callback queued behind the keys runs once they are handled (each widget works in order).
            if widget.call_later(lambda done=done: done.done() or done.set_result(None)):
                waits.append(done)
        if waits:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waits), timeout)


# -- dates and times -----------------------------------------------------------------------------


def parse_when(text: str, now: dt.datetime, field: str = "when") -> dt.datetime:
    """Parse "23/11/2026 14:30" (time optional) as UK local time; return an aware UTC moment.

    A date without a time means now when it is today and midday otherwise.
    """
    parts = (text or "").split()
    if not parts:
        raise ValidationError(field, "The contact date is empty; enter it like 23/11/2026 14:30.")
    day = _date_or_error(parts[0], field, "contact_date")
    if len(parts) > 2:
        raise ValidationError(field, "Write the contact date and time like 23/11/2026 14:30.")
    now_local = local(now)
    if len(parts) == 2:
        match = _TIME.fullmatch(parts[1])
        if not match or int(match[1]) > 23 or int(match[2]) > 59:
            raise ValidationError(field, "The time must be written on the 24-hour clock, like 14:30.")
        clock = dt.time(int(match[1]), int(match[2]))
    elif day == now_local.date():
        clock = now_local.time().replace(second=0, microsecond=0)
    else:
        clock = dt.time(12, 0)
    return dt.datetime.combine(day, clock, LOCAL_TZ).astimezone(dt.UTC)


def parse_day(text: str, today: dt.date, field: str, label_field: str | None = None) -> dt.date | None:
    """An optional date: blank is None, "+7" is a week from today ("+2w" two weeks), else 23/11/2026."""
    s = (text or "").strip()
    if not s:
        return None
    if match := _DAYS_FROM_TODAY.fullmatch(s):
        days = int(match[1]) * (7 if match[2].lower() == "w" else 1)
        return today + dt.timedelta(days=days)
    return _date_or_error(s, field, label_field or field)


def _date_or_error(text: str, field: str, label_field: str) -> dt.date:
    try:
        return parse_date(text, label_field)
    except ValidationError as exc:
        # Re-key to the form field so the sentence lands under the right input.
        raise ValidationError(field, exc.message) from None


# -- a labelled field with its error line --------------------------------------------------------


class FormField(Vertical):
    """A label, the input and an error line under it that is shown only when there is an error."""

    DEFAULT_CSS = """
    FormField {
        height: auto;
        width: 1fr;
        & > .form-field-label { color: $text-muted; padding: 0 1; height: 1; }
        & > .form-field-error { color: $text-error; padding: 0 1; display: none; height: auto; }
        &.-invalid > .form-field-error { display: block; }
        &.-invalid > Input, &.-invalid > TextArea { border: tall $error; }
    }
    """

    def __init__(self, label: str, control: Widget, *, field: str, id: str | None = None) -> None:
        super().__init__(id=id or f"field-{field}")
        self.label = label
        self.control = control
        self.field = field

    def compose(self) -> ComposeResult:
        yield Label(self.label, classes="form-field-label")
        yield self.control
        yield Static("", classes="form-field-error", id=f"error-{self.field}")

    def set_error(self, message: str | None) -> None:
        error = self.query_one(".form-field-error", Static)
        if error.content != (message or ""):  # a form saved with no error shown lays nothing out again
            error.update(message or "")
        self.set_class(bool(message), "-invalid")

    @property
    def error(self) -> str:
        return str(self.query_one(".form-field-error", Static).content) if self.has_class("-invalid") else ""


def show_errors(root: Widget, errors: Mapping[str, str], aliases: Mapping[str, str] | None = None) -> list[str]:
    """Put each sentence under its field; returns the sentences that had no field to go to."""
    aliases = aliases or {}
    fields = {f.field: f for f in root.query(FormField)}
    for f in fields.values():
        f.set_error(None)
    leftover: list[str] = []
    for name, sentence in errors.items():
        target = fields.get(aliases.get(name, name))
        if target is None:
            leftover.append(sentence)
        else:
            target.set_error(sentence)
    return leftover


def worker_error(widget: Widget, event: Worker.StateChanged) -> None:
    """Hand a failed worker to the app's one error path (it ignores failures caused by a lock)."""
    forward = getattr(widget.app, "worker_failed", None)
    if callable(forward):
        forward(event)
    elif event.worker.error is not None:
        report_error(widget, event.worker.error)


def report_error(widget: Widget, exc: BaseException) -> None:
    """Tell the user in one plain sentence; never a traceback, never the record's content."""
    show = getattr(widget.app, "show_error", None)
    if callable(show):
        show(exc)
        return
    from sprx_tui.core.diskfull import DISK_FULL, is_disk_full
    from sprx_tui.core.service import ServiceError

    if is_disk_full(exc):
        message = DISK_FULL
    elif isinstance(exc, ServiceError | ValidationError):
        message = str(exc)
    else:
        message = "That did not work; please try again."
    widget.notify(message, severity="error")


# -- dialogs -------------------------------------------------------------------------------------

MODAL_CSS = """
.dialog {
    width: 70;
    max-width: 100%;
    height: auto;
    max-height: 100%;
    border: thick $primary;
    background: $surface;
    padding: 1 2;
}
.dialog > .dialog-title { text-style: bold; width: 1fr; margin-bottom: 1; }
.dialog .dialog-buttons { height: auto; align-horizontal: right; margin-top: 1; }
.dialog .dialog-buttons Button { margin-left: 1; }
"""


class ConfirmModal(ModalScreen[bool]):
    """Ask a yes/no question; `y` or Enter on Yes says yes, `n` or Esc says no."""

    DEFAULT_CSS = "ConfirmModal { align: center middle; }\n" + MODAL_CSS
    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no"),
        Binding("left,up", "app.focus_previous", "Previous button", show=False, id="confirm.previous"),
        Binding("right,down", "app.focus_next", "Next button", show=False, id="confirm.next"),
    ]

    def __init__(self, question: str, *, yes: str = "Yes", no: str = "No", danger: bool = False) -> None:
        super().__init__()
        self.question = question
        self.yes_label = yes
        self.no_label = no
        self.danger = danger

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(inert(self.question, multiline=True), classes="dialog-title", id="question")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.yes_label} (y)", id="yes", variant="error" if self.danger else "primary")
                yield Button(f"{self.no_label} (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no" if self.danger else "#yes", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


ResultT = TypeVar("ResultT")


class SaveCancelModal(ModalScreen[ResultT]):
    """A dialog whose Save and Cancel buttons (#save, #cancel) do what Ctrl+S and Esc do: its own
    ``action_save``, and ``action_cancel`` (close with no result, unless a subclass does more, e.g. forget a
    kept draft), so the mouse and the keys never differ."""

    def action_save(self) -> None:
        raise NotImplementedError

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#save")
    def _save_pressed(self) -> None:
        self.action_save()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()


class TextFieldsModal(SaveCancelModal[dict[str, str] | None]):
    """A small dialog of one-line inputs (e.g. a reason); Enter on the last field or Ctrl+S saves.

    `required` maps a field to the sentence shown when it is left blank.
    """

    DEFAULT_CSS = "TextFieldsModal { align: center middle; }\n" + MODAL_CSS
    BINDINGS = [
        Binding("ctrl+s", "save", "Save", priority=True, id="dialog.save"),
        Binding("escape", "cancel", "Cancel", id="dialog.cancel"),
    ]

    def __init__(
        self,
        title: str,
        fields: Iterable[tuple[str, str, str]],
        *,
        required: Mapping[str, str] | None = None,
        save_label: str = "Save",
        intro: str = "",
        suggestions: Mapping[str, list[str]] | None = None,
    ) -> None:
        super().__init__()
        self.title_text = title
        self.fields = list(fields)  # (name, label, initial value)
        self.required = dict(required or {})
        self.save_label = save_label
        self.intro = intro
        self.suggestions = dict(suggestions or {})

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(inert(self.title_text), classes="dialog-title")
            if self.intro:
                yield Static(inert(self.intro, multiline=True), classes="dialog-intro")
            for name, label, value in self.fields:
                words = self.suggestions.get(name)
                suggester = SuggestFromList(words, case_sensitive=False) if words else None
                yield FormField(label, Input(value, id=name, suggester=suggester), field=name)
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.save_label} (Ctrl+S)", id="save", variant="primary")
                yield Button("Cancel (Esc)", id="cancel")

    def values(self) -> dict[str, str]:
        return {name: self.query_one(f"#{name}", Input).value for name, _label, _value in self.fields}

    def action_save(self) -> None:
        values = self.values()
        errors = {name: sentence for name, sentence in self.required.items() if not values.get(name, "").strip()}
        if show_errors(self, errors) or errors:
            return
        self.dismiss({k: v.strip() for k, v in values.items()})

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        inputs = list(self.query(Input))
        if event.input is inputs[-1]:
            self.action_save()
        else:
            self.focus_next()
