"""A person's details: add a new person with the referral that brings them, or update an existing person's.

One form for both. New: name, date of birth, NHS number (optional, validated, a duplicate warned before
saving with who holds it), address, phone, communication needs, safety flags, consent, and where the
referral came from ("Self-referral" first); saving adds the person and the referral in one transaction and
opens them. Update: the same boxes filled from the record (shown inertly); saving writes only the fields
that changed, so each merges on its own when synced; a safety flag added or removed needs a reason, kept
with who and when. Typed text is kept as a draft across a lock (`person:new`, `person:<id>:details`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Checkbox, Input, Select, Static
from textual.worker import Worker, WorkerState

from sprx_rules import nhs
from sprx_rules.validate import ValidationError, format_phone
from sprx_tui import router
from sprx_tui.core.models import REFERRAL_SOURCES, SAFETY_FLAGS, Person
from sprx_tui.core.service import InvalidInput
from sprx_tui.drafts import clean_text_values, discard_later, push_person
from sprx_tui.inert import inert, visible
from sprx_tui.screens.forms import ConfirmModal, FormField, KeysInOrder, fmt_date, show_errors, worker_error
from sprx_tui.screens.person import PersonLoaded  # the message only; the screen is opened through the router
from sprx_tui.widgets.keys_footer import KeysFooter
from sprx_tui.widgets.toggles import TickBox

NEW_KEY = "person:new"
GP_SHARING_CHOICES: tuple[tuple[str, str], ...] = (
    ("Full record", "full"),
    ("Codes only", "codes_only"),
    ("Nothing shared", "none"),
)
# "Self-referral" first: the walk-in and the self-referral are why a person is added here.
SOURCE_CHOICES: tuple[tuple[str, str], ...] = (
    ("Self-referral", "self"),
    *((label, code) for code, label in REFERRAL_SOURCES.items() if code != "self"),
)
TEXT_FIELDS = (
    "given_name",
    "family_name",
    "date_of_birth",
    "nhs_number",
    "phone",
    "address",
    "postcode",
    "interpreter_language",
    "communication_needs",
)
OPTIONAL_TEXT = frozenset(TEXT_FIELDS) - {"given_name", "family_name"}
NEED_BOXES = (("hearing_need", "Hearing"), ("sight_need", "Sight"), ("easy_read", "Easy read"))
FORM_ORDER = (*TEXT_FIELDS, "safety_flags", "flag_reason", "consent_gp_sharing", "referral_source")


def details_key(person_id: str) -> str:
    return f"person:{person_id}:details"


def person_values(person: Person | None) -> dict[str, Any]:
    """The form's values for a person as recorded (empty boxes for a new one)."""
    if person is None:
        values: dict[str, Any] = dict.fromkeys(TEXT_FIELDS, "")
        values |= {name: False for name, _label in NEED_BOXES}
        values |= {f"flag_{flag}": False for flag in SAFETY_FLAGS}
        values |= {
            "flag_reason": "",
            "consent_social_prescribing": False,
            "consent_gp_sharing": "full",
            "referral_source": "self",
            "referral_text": "",
        }
        return values
    # Shown inertly: a line break or an escape in a stored value appears as a visible mark (␊, ␛), never raw.
    values = {name: visible(getattr(person, name)) for name in TEXT_FIELDS}
    values["date_of_birth"] = fmt_date(person.date_of_birth, "")
    if person.phone:
        values["phone"] = visible(format_phone(person.phone))
    if person.nhs_number:
        try:
            values["nhs_number"] = nhs.format_nhs_number(person.nhs_number)
        except ValidationError:
            pass
    values |= {name: bool(getattr(person, name)) for name, _label in NEED_BOXES}
    values |= {f"flag_{flag}": flag in (person.safety_flags or []) for flag in SAFETY_FLAGS}
    values |= {
        "flag_reason": "",
        "consent_social_prescribing": bool(person.consent_social_prescribing),
        "consent_gp_sharing": person.consent_gp_sharing or "full",
    }
    return values


# -- messages -------------------------------------------------------------------------------------


@dataclass
class DuplicateFound(Message):
    """The NHS number typed is already held by these people: (id, name) each."""

    nhs_number: str
    holders: list[tuple[str, str]]


@dataclass
class PersonSaved(Message):
    person_id: str
    changed: tuple[str, ...]
    loaded: PersonLoaded | None = None  # a new person as the save's worker read them back


@dataclass
class PersonRejected(Message):
    errors: dict[str, str]


# -- the form ---------------------------------------------------------------------------------------


class PersonFormScreen(KeysInOrder, Screen[str | None]):
    """New person (with their referral) when `person` is None, else that person's details to update."""

    DEFAULT_CSS = """
    PersonFormScreen { layout: vertical; }
    PersonFormScreen #form-title { height: auto; padding: 0 1; text-style: bold; color: $text-primary; }
    PersonFormScreen #person-form { height: 1fr; padding: 0 1; }
    PersonFormScreen .form-row { height: auto; }
    PersonFormScreen .form-section { color: $text-primary; text-style: bold; padding: 1 1 0 1; height: auto; }
    PersonFormScreen .boxes { height: auto; padding: 0 1; }
    PersonFormScreen .boxes Checkbox { width: auto; margin-right: 2; }
    PersonFormScreen #flags {
        layout: grid; grid-size: 3; grid-columns: 27 1fr 1fr; grid-rows: 1; height: auto; padding: 0;
    }
    PersonFormScreen #flags Checkbox { width: 1fr; margin-right: 0; padding: 0; }
    PersonFormScreen #field-consent_social_prescribing Checkbox { margin: 1 1 0 1; }
    PersonFormScreen Select { width: 1fr; }
    PersonFormScreen #field-date_of_birth, PersonFormScreen #field-postcode { width: 22; }
    PersonFormScreen #field-nhs_number { width: 26; }
    PersonFormScreen .form-hint { color: $text-muted; padding: 0 1; height: auto; }
    """
    BINDINGS = [
        Binding("ctrl+s", "save", "Save", priority=True, id="person_form.save"),
        Binding("escape", "cancel", "Cancel", id="person_form.cancel"),
    ]
    AUTO_FOCUS = "#given_name"
    HELP_TITLE = "Person details"
    HELP = (
        "Tab moves to the next box, Space ticks a box, Enter opens a list. Only the names are needed; the referral"
        " starts as a self-referral. A safety flag added or removed needs a reason. Ctrl+S saves, Esc cancels."
    )

    def __init__(self, person: Person | None = None, *, prefill: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.person = person
        self.person_id = person.id if person is not None else None
        self.baseline = person_values(person)
        self.prefill = dict(prefill or {})
        self._saving = False

    @property
    def is_new(self) -> bool:
        return self.person is None

    @property
    def draft_key(self) -> str:
        return NEW_KEY if self.person_id is None else details_key(self.person_id)

    # -- layout -----------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        start = {**self.baseline, **self._restored()}
        if self.is_new:
            title = "New person and their referral"
        else:
            title = f"Details of {visible(self.person.display_name if self.person else '')}"

        def box(name: str, label: str, *, placeholder: str = "", max_length: int = 0) -> FormField:
            control = Input(str(start[name]), placeholder=placeholder, id=name, max_length=max_length)
            return FormField(label, control, field=name)

        yield Static(inert(title), id="form-title")
        with VerticalScroll(id="person-form"):
            with Horizontal(classes="form-row"):
                yield box("given_name", "Given name", max_length=200)
                yield box("family_name", "Family name", max_length=200)
                yield box("date_of_birth", "Date of birth", placeholder="dd/mm/yyyy", max_length=10)
            with Horizontal(classes="form-row"):
                yield box("nhs_number", "NHS number (optional)", placeholder="10 digits", max_length=16)
                yield box("phone", "Phone", placeholder="optional", max_length=40)
            with Horizontal(classes="form-row"):
                yield box("address", "Address", placeholder="optional", max_length=1000)
                yield box("postcode", "Postcode", placeholder="optional", max_length=16)
            yield Static("Communication needs", classes="form-section")
            with Horizontal(classes="form-row"):
                yield box("interpreter_language", "Interpreter language", placeholder="none", max_length=100)
                yield box("communication_needs", "Other needs (words)", placeholder="optional", max_length=4000)
            with Horizontal(classes="boxes", id="needs"):
                for name, label in NEED_BOXES:
                    yield TickBox(label, bool(start[name]), id=name, compact=True)
            yield Static("Home-visit safety flags", classes="form-section")
            flags = [
                TickBox(label, bool(start[f"flag_{flag}"]), id=f"flag_{flag}", compact=True)
                for flag, label in SAFETY_FLAGS.items()
            ]
            yield FormField(
                "Tick each that applies", Horizontal(*flags, classes="boxes", id="flags"), field="safety_flags"
            )
            yield box(
                "flag_reason",
                "Why a flag was added or removed" + (" (optional here)" if self.is_new else ""),
                placeholder="kept with the flag, with your name and the date",
                max_length=2000,
            )
            yield Static("Consent", classes="form-section")
            with Horizontal(classes="form-row"):
                yield FormField(
                    "Social prescribing",
                    TickBox(
                        "Agrees to social prescribing",
                        bool(start["consent_social_prescribing"]),
                        id="consent_social_prescribing",
                        compact=True,
                    ),
                    field="consent_social_prescribing",
                )
                yield FormField(
                    "Sharing with the GP",
                    Select(
                        GP_SHARING_CHOICES,
                        value=_choice(start["consent_gp_sharing"], GP_SHARING_CHOICES, "full"),
                        allow_blank=False,
                        id="consent_gp_sharing",
                    ),
                    field="consent_gp_sharing",
                )
            if self.is_new:
                yield Static("Referral", classes="form-section")
                with Horizontal(classes="form-row"):
                    yield FormField(
                        "Where it came from",
                        Select(
                            SOURCE_CHOICES,
                            value=_choice(start["referral_source"], SOURCE_CHOICES, "self"),
                            allow_blank=False,
                            id="referral_source",
                        ),
                        field="referral_source",
                    )
                    yield box("referral_text", "What they would like help with", placeholder="optional")
            yield Static("Ctrl+S saves · Esc cancels · Tab moves on", classes="form-hint")
        yield KeysFooter()

    def _restored(self) -> dict[str, Any]:
        """A kept draft's values, each of the type its box holds (text or a tick)."""
        if not self.prefill:
            return {}
        texts = clean_text_values(self.prefill, [n for n, v in self.baseline.items() if isinstance(v, str)])
        ticks = {
            k: v for k, v in self.prefill.items() if isinstance(self.baseline.get(k), bool) and isinstance(v, bool)
        }
        return {**texts, **ticks}

    # -- reading the form ---------------------------------------------------------------------------

    def values(self) -> dict[str, Any]:
        """Everything in the form, exactly as typed or ticked."""
        out: dict[str, Any] = {}
        # One walk of the form for all its boxes: a query per box walked the whole screen each time
        # (23 boxes, about 3 ms a walk: some 75 ms of every save).
        boxes = {w.id: w for w in self.query("Input, Checkbox, Select") if w.id in self.baseline}
        for name, start in self.baseline.items():
            widget = boxes.get(name)
            if isinstance(widget, Input):
                out[name] = widget.value
            elif isinstance(widget, Checkbox):
                out[name] = widget.value
            elif isinstance(widget, Select):
                out[name] = widget.value if isinstance(widget.value, str) else start
            else:
                out[name] = start
        return out

    def typed(self) -> dict[str, Any]:
        if self.is_mounted and next(iter(self.query("#given_name")), None) is not None:
            return self.values()
        return {**self.baseline, **self._restored()}

    def has_typed(self) -> bool:
        return self.typed() != self.baseline

    def draft(self) -> tuple[str, dict[str, Any]] | None:
        """What to keep, encrypted, if the vault locks now; None when nothing was changed."""
        if not self.has_typed():
            return None
        payload: dict[str, Any] = {"kind": "new" if self.is_new else "details", "values": self.typed()}
        if self.person_id:
            payload["person_id"] = self.person_id
        return self.draft_key, payload

    def fields(self, typed: dict[str, Any] | None = None) -> dict[str, Any]:
        """The person's fields for the service (blank optional boxes are None), from ``typed`` (the form's
        `values`, read now when not given)."""
        typed = self.values() if typed is None else typed
        out: dict[str, Any] = {}
        for name in TEXT_FIELDS:
            if self.person is not None and typed[name] == self.baseline[name]:
                # Left as shown: the record's own value (not its inert or formatted form), so it is no change.
                out[name] = getattr(self.person, name)
                continue
            text = str(typed[name]).strip()
            out[name] = text or (None if name in OPTIONAL_TEXT else "")
        for name, _label in NEED_BOXES:
            out[name] = bool(typed[name])
        out["safety_flags"] = [flag for flag in SAFETY_FLAGS if typed[f"flag_{flag}"]]
        out["consent_social_prescribing"] = bool(typed["consent_social_prescribing"])
        out["consent_gp_sharing"] = typed["consent_gp_sharing"]
        return out

    # -- saving -------------------------------------------------------------------------------------

    async def action_save(self) -> None:
        if self._saving:
            return
        await self.keys_handled()
        if self._saving or not self.is_attached:
            return
        self._saving = True
        typed = self.values()
        self._save(self.fields(typed), typed, confirmed=False)

    @work(thread=True, group="person-form-save", exit_on_error=False)
    def _save(self, fields: dict[str, Any], typed: dict[str, Any], *, confirmed: bool) -> None:
        store = self.app.store
        service = store.service
        try:
            if not confirmed and fields.get("nhs_number"):
                try:
                    digits = nhs.normalise_nhs_number(fields["nhs_number"])
                except ValidationError as exc:
                    raise InvalidInput({"nhs_number": exc.message}) from None
                holders = store.queries.people_with_nhs_number(digits, other_than=self.person_id)
                if holders:
                    self.post_message(DuplicateFound(digits, holders))
                    return
            if self.person_id is None:
                person, _referral = service.new_person(
                    referral_source=str(typed.get("referral_source") or ""),
                    referral_text=str(typed.get("referral_text") or "").strip() or None,
                    flag_reason=str(typed.get("flag_reason") or ""),
                    **fields,
                )
                person_id, changed = person.id, tuple(fields)
            else:
                person_id = self.person_id
                changed = tuple(service.update_person_details(person_id, fields, str(typed.get("flag_reason") or "")))
        except InvalidInput as exc:
            self.post_message(PersonRejected(dict(exc.errors)))
            return
        service.discard_draft(self.draft_key)
        loaded = None
        if self.person_id is None:
            # Read back here, in the save's own worker, so their record opens without a read of its own.
            loaded = PersonLoaded(store.queries.person(person_id), store.queries.safety_flag_history(person_id))
        self.post_message(PersonSaved(person_id, changed, loaded))

    @on(DuplicateFound)
    def _duplicate_found(self, message: DuplicateFound) -> None:
        names = ", ".join(name for _id, name in message.holders)
        number = nhs.format_nhs_number(message.nhs_number)
        question = (
            f"NHS number {number} is already held by {names}. Save anyway? "
            "Two records with one number are flagged for the practice to check."
        )

        def answered(yes: bool | None) -> None:
            if yes:
                typed = self.values()
                self._save(self.fields(typed), typed, confirmed=True)
            else:
                self._saving = False
                show_errors(self, {"nhs_number": f"This NHS number is already held by {names}."})
                self.query_one("#nhs_number").focus()

        self.app.push_screen(ConfirmModal(question, yes="Save anyway", no="Go back", danger=True), answered)

    @on(PersonRejected)
    def _rejected(self, message: PersonRejected) -> None:
        self._saving = False
        for sentence in show_errors(self, message.errors):
            self.notify(sentence, severity="error")
        self.notify("Please check the highlighted fields; nothing was saved yet.", severity="warning")
        for name in FORM_ORDER:
            if name in message.errors:
                target = next(iter(self.query(f"#{name}" if name != "safety_flags" else "#flags Checkbox")), None)
                if target is not None:
                    target.focus()
                    target.scroll_visible()
                return

    @on(PersonSaved)
    def _saved(self, message: PersonSaved) -> None:
        self._saving = False
        if self.is_new:
            self.app.notify("Person added with their referral")
            # Their record takes the form's place in one step (no redraw of the screen beneath in between).
            record = router.person_screen(self.app, message.person_id, loaded=message.loaded)
            self.app.switch_screen(record)
            return
        self.app.notify("Details saved" if message.changed else "Nothing had changed; nothing was saved")
        self.dismiss(message.person_id)

    def action_cancel(self) -> None:
        if not self.has_typed():
            self.dismiss(None)
            return

        def answered(discard: bool | None) -> None:
            if discard:
                if self.prefill:
                    discard_later(self.app, self.draft_key)
                self.dismiss(None)

        what = "this new person" if self.is_new else "these changes"
        self.app.push_screen(
            ConfirmModal(f"Discard {what}? What you typed will be lost.", yes="Discard", no="Keep typing", danger=True),
            answered,
        )

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.focus_next()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            if event.worker.group == "person-form-save":
                self._saving = False
            worker_error(self, event)


def _choice(value: Any, choices: tuple[tuple[str, str], ...], default: str) -> str:
    return value if isinstance(value, str) and value in {code for _label, code in choices} else default


# -- drafts kept across a lock -------------------------------------------------------------------------


def describe_draft(payload: dict[str, Any]) -> str:
    if payload.get("kind") == "details":
        return "unsaved changes to their details"
    return "an unsaved new person"


def restore_draft(app: App[Any], key: str, payload: dict[str, Any]) -> None:
    """Open the form again with what was typed: a new person's, or a person's details over their record."""
    values = payload.get("values") if isinstance(payload.get("values"), dict) else {}
    if payload.get("kind") != "details":
        push = getattr(app, "push_record", None)  # with the records, like the person it becomes
        (push if callable(push) else app.push_screen)(PersonFormScreen(prefill=values))
        return
    person_id = str(payload.get("person_id") or "")
    if not person_id:
        raise InvalidInput({"draft": "That unsaved work does not say whose record it belongs to."})
    screen = push_person(app, person_id)
    screen.open_details(prefill=values)  # type: ignore[attr-defined]
