"""Contact entry: a home-visit note in under a minute of keys, kept as a draft across a lock; amend and in-error."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.events import Key
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Checkbox, Input, Static, TextArea
from textual.worker import Worker, WorkerState

from sprx_rules.validate import ValidationError
from sprx_tui.core.models import CONTACT_MODES, REFERRAL_SOURCES, Person, Referral
from sprx_tui.core.service import InvalidInput
from sprx_tui.drafts import KeptFieldsModal, discard_later, push_person
from sprx_tui.inert import inert, visible
from sprx_tui.screens.forms import (
    ConfirmModal,
    FormField,
    KeysInOrder,
    fmt_date,
    local,
    parse_day,
    parse_when,
    show_errors,
    worker_error,
)
from sprx_tui.widgets.keys_footer import KeysFooter
from sprx_tui.widgets.person_header import PersonHeader
from sprx_tui.widgets.toggles import TickBox

# One key per mode, shown next to its name; community uses "m" (meeting) because "c" is clinic.
MODE_KEYS: dict[str, str] = {"home_visit": "h", "phone": "p", "video": "v", "clinic": "c", "community": "m"}
MODE_SHORT: dict[str, str] = {
    "home_visit": "Home visit",
    "phone": "Phone",
    "video": "Video",
    "clinic": "Clinic",
    "community": "Community",
}
DEFAULT_MODE = "home_visit"

# Where the service's field names land in this form.
FIELD_ALIASES = {"occurred_at": "when", "duration_minutes": "duration", "follow_up_on": "follow_up"}


def draft_key(person_id: str) -> str:
    return f"contact:{person_id}"


class ModePicker(Widget, can_focus=True):
    """How the contact happened: one key per mode (h p v c m), or left and right."""

    DEFAULT_CSS = """
    ModePicker {
        height: 3;
        width: 1fr;
        border: tall $border-blurred;
        background: $surface;
        padding: 0 1;
    }
    ModePicker:focus { border: tall $border; background-tint: $foreground 5%; }
    """
    BINDINGS = [
        Binding("left", "step(-1)", "Previous mode", show=False, id="contact.mode_previous"),
        Binding("right", "step(1)", "Next mode", show=False, id="contact.mode_next"),
    ]
    HELP = "Press **h** home visit, **p** phone, **v** video, **c** clinic or **m** community meeting."

    value: reactive[str] = reactive(DEFAULT_MODE)

    def render(self) -> Content:
        pieces: list[Content | str] = []
        for i, mode in enumerate(CONTACT_MODES):
            if i:
                pieces.append(" ")
            text = f" {MODE_KEYS.get(mode, '?')} {MODE_SHORT.get(mode, mode)} "
            pieces.append(Content.styled(text, "bold reverse $text-primary" if mode == self.value else ""))
        return Content.assemble(*pieces)

    def action_step(self, offset: int) -> None:
        modes = list(CONTACT_MODES)
        self.value = modes[(modes.index(self.value) + offset) % len(modes)]

    def on_key(self, event: Key) -> None:
        for mode, key in MODE_KEYS.items():
            if event.character == key:
                self.value = mode
                event.stop()
                event.prevent_default()
                return


@dataclass
class ContactSaved(Message):
    contact_id: str
    timeline: list[Any] | None = None  # the person's timeline read just after the save (TimelineEntry rows)
    person: Person | None = None  # the person read just after the save (last contact, next follow-up, status)


@dataclass
class ContactRejected(Message):
    errors: dict[str, str]


@dataclass
class ContactContextLoaded(Message):
    person: Person | None
    referral: Referral | None


class ContactScreen(KeysInOrder, Screen[str | None]):
    """New contact for a person; with `referral_id` it is the first contact that accepts that referral.

    Typed in one burst by a practised worker: keys behind a Tab land in the next field (KeysInOrder).
    """

    DEFAULT_CSS = """
    ContactScreen { layout: vertical; }
    ContactScreen #form-title { height: auto; padding: 0 1; text-style: bold; color: $text-primary; }
    ContactScreen #contact-form { height: 1fr; padding: 0 1; }
    ContactScreen .form-row { height: auto; }
    ContactScreen #field-when { width: 28; }
    ContactScreen #field-duration { width: 22; }
    ContactScreen #field-follow_up { width: 1fr; max-width: 48; }
    ContactScreen #field-did_not_attend { width: 1fr; }
    ContactScreen #field-notes { height: 1fr; }
    ContactScreen #notes { height: 1fr; min-height: 3; }
    ContactScreen #field-did_not_attend > Checkbox { margin-top: 0; }
    ContactScreen .contact-hint { color: $text-muted; padding: 1 1 0 1; width: 1fr; }
    """
    BINDINGS = [
        Binding("ctrl+s", "save", "Save", priority=True, id="contact.save"),
        Binding("escape", "cancel", "Cancel", id="contact.cancel"),
    ]
    AUTO_FOCUS = "#when"

    def __init__(
        self,
        person_id: str,
        *,
        referral_id: str | None = None,
        prefill: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.person_id = person_id
        self.referral_id = referral_id
        self.prefill = dict(prefill or {})  # typed values to start from (a restored draft)
        self._saving = False
        self._defaults: dict[str, Any] = {}
        # After a save: the person's timeline, new contact included, read by the save's own worker so
        # the person screen can show it at once instead of asking again.
        self.saved_timeline: list[Any] | None = None
        # Set by the screen below (PersonScreen) to show the save there, while the form is still on top, and
        # close the form itself: the first frame after the form then shows the new contact. None: closed here.
        self.hand_over: Callable[[ContactSaved, ContactScreen], None] | None = None

    # -- layout ---------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        # Values go in at construction so the first box is selected on focus and typing replaces "now".
        self._defaults = {
            "when": local(self.app.clock()).strftime("%d/%m/%Y %H:%M"),
            "mode": DEFAULT_MODE,
            "duration": "",
            "notes": "",
            "follow_up": "",
            "did_not_attend": False,
        }
        start = {**self._defaults, **{k: v for k, v in self.prefill.items() if k in self._defaults}}
        picker = ModePicker(id="mode")
        picker.value = start["mode"] if start["mode"] in CONTACT_MODES else DEFAULT_MODE
        yield PersonHeader(id="person-header")
        yield Static(inert(self._title(None)), id="form-title")
        with Vertical(id="contact-form"):
            with Horizontal(classes="form-row"):
                yield FormField(
                    "Date and time",
                    Input(str(start["when"] or ""), placeholder="dd/mm/yyyy HH:MM", id="when", max_length=20),
                    field="when",
                )
                yield FormField(
                    "Minutes",
                    Input(
                        str(start["duration"] or ""),
                        placeholder="optional, e.g. 45",
                        id="duration",
                        restrict=r"\d*",
                        max_length=4,
                    ),
                    field="duration",
                )
                yield Static("Ctrl+S saves · Esc cancels", classes="contact-hint")
            yield FormField("How it happened (press the letter, or ← →)", picker, field="mode")
            yield FormField(
                "Notes",
                TextArea(visible(start["notes"], multiline=True), id="notes", soft_wrap=True, tab_behavior="focus"),
                field="notes",
            )
            with Horizontal(classes="form-row"):
                yield FormField(
                    "Follow-up: date, +7 or +2w (optional)",
                    Input(str(start["follow_up"] or ""), placeholder="optional", id="follow_up", max_length=20),
                    field="follow_up",
                )
                yield FormField(
                    "Attendance",
                    TickBox("Did not attend", bool(start["did_not_attend"]), id="did_not_attend"),
                    field="did_not_attend",
                )
        yield KeysFooter()

    def _title(self, referral: Referral | None) -> str:
        if self.referral_id is None:
            return "New contact"
        if referral is None:
            return "Accept referral: first contact"
        received = fmt_date(referral.received_on)
        if referral.source == "self":
            return f"Accept the self-referral (received {received}): first contact"
        source = REFERRAL_SOURCES.get(referral.source, referral.source)
        return f"Accept referral from {source} (received {received}): first contact"

    def on_mount(self) -> None:
        self._load_context()

    # -- reading the form -------------------------------------------------------------------------

    def values(self) -> dict[str, Any]:
        """Everything typed, exactly as typed."""
        return {
            "when": self.query_one("#when", Input).value,
            "mode": self.query_one(ModePicker).value,
            "duration": self.query_one("#duration", Input).value,
            "notes": self.query_one("#notes", TextArea).text,
            "follow_up": self.query_one("#follow_up", Input).value,
            "did_not_attend": self.query_one("#did_not_attend", Checkbox).value,
        }

    @property
    def from_draft(self) -> bool:
        """Opened with a contact note kept at a lock (as opposed to a blank form)."""
        return self.prefill.get("kind", "contact") == "contact" and bool(self.prefill)

    def has_typed(self) -> bool:
        if not self.is_mounted or not self._defaults:
            return bool(self.prefill)
        return self.values() != self._defaults

    def draft(self) -> tuple[str, dict[str, Any]] | None:
        """What to keep, encrypted, if the vault locks now; None when nothing was typed."""
        if not self.has_typed():
            return None
        values = self.values() if self.is_mounted and self._defaults else dict(self.prefill)
        payload: dict[str, Any] = {"kind": "contact", "person_id": self.person_id, **values}
        if self.referral_id:
            payload["referral_id"] = self.referral_id
        return draft_key(self.person_id), payload

    def cleaned(self) -> tuple[dict[str, Any], dict[str, str]]:
        """The service's keyword arguments, and a sentence for each field that is wrong."""
        typed = self.values()
        now = self.app.clock()
        errors: dict[str, str] = {}
        out: dict[str, Any] = {"mode": typed["mode"], "notes": typed["notes"].strip()}
        out["did_not_attend"] = bool(typed["did_not_attend"])
        occurred: dt.datetime | None = None
        try:
            occurred = parse_when(typed["when"], now, "when")
            if occurred > now + dt.timedelta(minutes=5):
                errors["when"] = "The contact date and time cannot be in the future."
            out["occurred_at"] = occurred
        except ValidationError as exc:
            errors["when"] = exc.message
        duration = typed["duration"].strip()
        # A blank box saves no minutes: stored as 0, which the timeline and the FHIR export read as
        # "not recorded" (never shown as "0 min"). A worker who did not time a visit is not made to guess.
        minutes = int(duration) if duration.isdigit() else 0
        if minutes > 24 * 60:
            errors["duration"] = "The duration must be between 0 and 1440 minutes."
        out["duration_minutes"] = minutes
        try:
            follow_up = parse_day(typed["follow_up"], local(now).date(), "follow_up", "follow_up_date")
            if follow_up is not None and occurred is not None and follow_up < local(occurred).date():
                errors["follow_up"] = "The follow-up date must be on or after the contact date."
            out["follow_up_on"] = follow_up
        except ValidationError as exc:
            errors["follow_up"] = exc.message
        return out, errors

    # -- actions ----------------------------------------------------------------------------------

    async def action_save(self) -> None:
        if self._saving:
            return
        await self.keys_handled()  # keys typed just before Ctrl+S may still be on their way to a field
        if self._saving or not self.is_attached:
            return
        fields, errors = self.cleaned()
        show_errors(self, errors, FIELD_ALIASES)
        if errors:
            self.notify("Please check the highlighted fields; nothing was saved yet.", severity="warning")
            self._focus_first_error(errors)
            return
        self._saving = True
        self._save(fields)

    def _focus_first_error(self, errors: dict[str, str]) -> None:
        for name in ("when", "duration", "mode", "notes", "follow_up"):
            if name in errors:
                self.query_one(f"#{name}").focus()
                return

    def action_cancel(self) -> None:
        if not self.has_typed():
            self.dismiss(None)
            return

        def answered(discard: bool | None) -> None:
            if discard:
                if self.from_draft:
                    # The worker has seen the kept text and chose to lose it: no offer at the next unlock.
                    discard_later(self.app, draft_key(self.person_id))
                self.dismiss(None)

        self.app.push_screen(
            ConfirmModal(
                "Discard this contact? What you typed will be lost.", yes="Discard", no="Keep typing", danger=True
            ),
            answered,
        )

    # -- workers and their messages ------------------------------------------------------------

    @work(thread=True, exclusive=True, group="contact-context", exit_on_error=False)
    def _load_context(self) -> None:
        store = self.app.store
        person = store.queries.person(self.person_id)
        referral = None
        if self.referral_id:
            referral = next((r for r in store.queries.referrals(self.person_id) if r.id == self.referral_id), None)
        self.post_message(ContactContextLoaded(person, referral))

    @on(ContactContextLoaded)
    def _context_loaded(self, message: ContactContextLoaded) -> None:
        if message.person is not None:
            self.query_one(PersonHeader).show_person(message.person, local(self.app.clock()).date())
        self.query_one("#form-title", Static).update(inert(self._title(message.referral)))

    @work(thread=True, group="contact-save", exit_on_error=False)
    def _save(self, fields: dict[str, Any]) -> None:
        service = self.app.store.service
        try:
            if self.referral_id:
                contact = service.accept_referral(self.referral_id, **fields)
            else:
                contact = service.record_contact(self.person_id, **fields)
        except InvalidInput as exc:
            self.post_message(ContactRejected(dict(exc.errors)))
            return
        # The typed note is now in the record, so a kept draft of it is obsolete.
        service.discard_draft(draft_key(self.person_id))
        queries = self.app.store.queries
        self.post_message(ContactSaved(contact.id, queries.timeline(self.person_id), queries.person(self.person_id)))

    @on(ContactRejected)
    def _rejected(self, message: ContactRejected) -> None:
        self._saving = False
        leftover = show_errors(self, message.errors, FIELD_ALIASES)
        for sentence in leftover:
            self.notify(sentence, severity="error")
        self._focus_first_error({FIELD_ALIASES.get(k, k): v for k, v in message.errors.items()})

    @on(ContactSaved)
    def _saved(self, message: ContactSaved) -> None:
        self._saving = False
        self.saved_timeline = message.timeline
        if self.hand_over is not None:
            self.hand_over(message, self)  # it says "Contact saved" once the record shows the contact
        else:
            self.app.notify("Contact saved")
            self.dismiss(message.contact_id)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            if event.worker.group == "contact-save":
                self._saving = False
            worker_error(self, event)


# -- amend and entered in error ----------------------------------------------------------------


def amend_key(person_id: str, contact_id: str) -> str:
    return f"contact:{person_id}:amend:{contact_id}"


def in_error_key(person_id: str, contact_id: str) -> str:
    return f"contact:{person_id}:in_error:{contact_id}"


def amend_contact_modal(
    person_id: str | None = None,
    contact_id: str | None = None,
    *,
    prefill: dict[str, Any] | None = None,
    about: str = "",
) -> KeptFieldsModal:
    """Ask for the correction and why; the original note is never changed. Kept as a draft across a lock.

    `about` names the contact it changes (`timeline.contact_summary`: date, mode, the note's first words).
    """
    return KeptFieldsModal(
        "Amend contact",
        [("text", "Correction (added under the original note)", ""), ("reason", "Why (optional)", "")],
        required={"text": "Write the correction before saving the amendment."},
        save_label="Add amendment",
        intro=_naming(about, "The original note stays as it was; the amendment is shown beneath it."),
        draft_key=amend_key(person_id, contact_id) if person_id and contact_id else None,
        draft_payload={"kind": "amend", "person_id": person_id, "contact_id": contact_id},
        prefill=prefill,
    )


def entered_in_error_modal(
    person_id: str | None = None,
    contact_id: str | None = None,
    *,
    prefill: dict[str, Any] | None = None,
    about: str = "",
) -> KeptFieldsModal:
    """Ask why the contact was entered in error; it stays in the record, marked. Kept as a draft across a lock.

    `about` names the contact it changes, as for `amend_contact_modal`.
    """
    return KeptFieldsModal(
        "Mark contact as entered in error",
        [("reason", "Reason", "")],
        required={"reason": "Say why this contact was entered in error."},
        save_label="Mark in error",
        intro=_naming(about, "The contact is kept, struck through, with your reason; nothing is deleted."),
        draft_key=in_error_key(person_id, contact_id) if person_id and contact_id else None,
        draft_payload={"kind": "in_error", "person_id": person_id, "contact_id": contact_id},
        prefill=prefill,
    )


def _naming(about: str, intro: str) -> str:
    """The dialog's intro, starting with the contact it changes (shown inert: the note is the worker's text)."""
    return f"Contact: {about}\n{intro}" if about else intro


# -- drafts kept across a lock -------------------------------------------------------------------


def describe_draft(payload: dict[str, Any]) -> str:
    """How the offer after unlock names this draft."""
    kind = payload.get("kind", "contact")
    if kind == "amend":
        return "an unsaved amendment to a contact"
    if kind == "in_error":
        return "an unsaved reason for marking a contact as entered in error"
    if payload.get("referral_id"):
        return "an unsaved first contact (accepting a referral)"
    return "an unsaved contact note"


def restore_draft(app: App[Any], key: str, payload: dict[str, Any]) -> None:
    """Open the person and the form filled with the kept draft; saving discards the draft.

    Handles contact notes ("contact:<person id>", also from earlier versions), amendments and
    entered-in-error reasons ("contact:<person id>:amend|in_error:<contact id>").
    """
    kind = str(payload.get("kind") or "contact")
    key_parts = key.split(":")
    person_id = str(payload.get("person_id") or (key_parts[1] if len(key_parts) > 1 else ""))
    if not person_id:
        raise InvalidInput({"draft": "That unsaved work does not say whose record it belongs to."})
    if kind in ("amend", "in_error"):
        contact_id = str(payload.get("contact_id") or "")
        if not contact_id:
            raise InvalidInput({"draft": "That unsaved work does not say which contact it belongs to."})
        person = push_person(app, person_id, tab="contacts")
        values = payload.get("values") if isinstance(payload.get("values"), dict) else {}
        if kind == "amend":
            person.open_amend_form(contact_id, prefill=values)
        else:
            person.open_in_error_form(contact_id, prefill=values)
        return
    person = push_person(app, person_id)
    referral_id = payload.get("referral_id")
    person.open_contact_form(referral_id=str(referral_id) if referral_id else None, prefill=payload)
