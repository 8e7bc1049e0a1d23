"""The person's header: name, age, NHS number and home-visit safety flags, always in view on their record."""

from __future__ import annotations

import datetime as dt

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Static

from sprx_rules.nhs import format_nhs_number
from sprx_rules.validate import ValidationError
from sprx_tui.core.models import SAFETY_FLAGS, Person
from sprx_tui.core.queries import age_on
from sprx_tui.inert import visible

# Flags that change whether or how to visit at all are shown as errors; the rest as warnings.
DANGER_FLAGS = frozenset({"do_not_visit_alone", "aggression"})

# The Accessible Information Standard needs a person may have beside an interpreter (Person's own columns).
COMMUNICATION_NEEDS = {"hearing_need": "Hearing", "sight_need": "Sight", "easy_read": "Easy read"}

STATUS_LABELS = {
    "referred": "Referred",
    "active": "Active",
    "discharged": "Discharged",
    "declined": "Declined",
    "did_not_engage": "Did not engage",
}


def nhs_display(number: str | None) -> str:
    if not number:
        return "No NHS number"
    try:
        return f"NHS {format_nhs_number(number)}"
    except ValidationError:
        return f"NHS {number}"


def same_content(shown: object, content: Content | str) -> bool:
    """Whether a Static showing `shown` already shows `content`: the same text with the same styles (Content's
    own == compares the text only)."""
    if isinstance(shown, Content) and isinstance(content, Content):
        return shown.plain == content.plain and list(shown.spans) == list(content.spans)
    return type(shown) is type(content) and shown == content


def identity_line(person: Person, today: dt.date) -> Content:
    """ "Ada Abbot · 82 years · NHS 999 123 4567 · Active" with the name in bold."""
    age = age_on(person.date_of_birth, today)
    parts: list[Content] = [Content.styled(visible(person.display_name), "bold")]
    if person.preferred_name and person.preferred_name != person.given_name:
        parts.append(Content.styled(f" ({visible(person.given_name)})", "$text-muted"))
    details = [f"{age} years" if age is not None else "Age not known", nhs_display(person.nhs_number)]
    details.append(STATUS_LABELS.get(person.status, person.status))
    parts.append(Content(visible("  ·  " + "  ·  ".join(details))))
    return Content.assemble(*parts)


def flags_line(person: Person) -> Content:
    """Every safety flag, danger ones first, e.g. "⚠ Do not visit alone · Animals in the home"."""
    flags = sorted(person.safety_flags or [], key=lambda f: (f not in DANGER_FLAGS, f))
    if not flags:
        return Content.styled("No home-visit safety flags recorded", "$text-muted")
    pieces: list[Content | str] = [Content.styled("⚠ ", "bold $text-error")]
    for i, flag in enumerate(flags):
        if i:
            pieces.append(" · ")
        style = "bold $text-error" if flag in DANGER_FLAGS else "bold $text-warning"
        pieces.append(Content.styled(visible(SAFETY_FLAGS.get(flag, str(flag).replace("_", " "))), style))
    return Content.assemble(*pieces)


def needs_line(person: Person) -> Content:
    """ "Needs: Polish interpreter · Hearing · Easy read", shown beside the flags; empty when none are recorded."""
    parts = [f"{person.interpreter_language} interpreter"] if person.interpreter_language else []
    parts += [label for name, label in COMMUNICATION_NEEDS.items() if getattr(person, name, False)]
    if not parts and not person.communication_needs:
        return Content("")
    if person.communication_needs and not parts:
        parts.append("see overview")
    return Content.assemble(Content.styled("Needs: ", "bold"), Content(visible(" · ".join(parts))))


class PersonHeader(Vertical):
    """Who this is and how to visit safely; shown on the record, the contact form and the plan editor."""

    DEFAULT_CSS = """
    PersonHeader {
        height: auto;
        padding: 0 1;
        background: $boost;
        border-bottom: solid $primary;
        & > #identity { height: 1; }
        & > #flags { height: auto; }
        & > #safety-notes { height: auto; color: $text-warning; display: none; }
        &.-has-notes > #safety-notes { display: block; }
        &.-flagged > #flags { text-style: bold; }
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.person: Person | None = None

    def compose(self) -> ComposeResult:
        yield Static("Loading…", id="identity")
        yield Static("", id="flags")
        yield Static("", id="safety-notes")

    def show_person(self, person: Person, today: dt.date) -> None:
        """Show `person`; a line that reads and looks as it did is left alone (no repaint, no layout)."""
        self.person = person
        needs = needs_line(person)
        line = Content.assemble(flags_line(person), "   ", needs) if needs.plain else flags_line(person)
        notes = (person.safety_notes or "").strip()
        shown = Content(visible(f"Safety notes: {notes}", multiline=True)) if notes else ""
        for selector, content in (
            ("#identity", identity_line(person, today)),
            ("#flags", line),
            ("#safety-notes", shown),
        ):
            static = self.query_one(selector, Static)
            if not same_content(static.content, content):
                static.update(content)
        self.set_class(bool(notes), "-has-notes")
        self.set_class(bool(person.safety_flags), "-flagged")

    def clear(self) -> None:
        """Show no one (the record screen is kept for the next person: `PersonScreen._blank`)."""
        self.person = None
        for selector, content in (("#identity", "Loading…"), ("#flags", ""), ("#safety-notes", "")):
            self.query_one(selector, Static).update(content)
        self.set_class(False, "-has-notes")
        self.set_class(False, "-flagged")

    @property
    def identity_text(self) -> str:
        return str(self.query_one("#identity", Static).content)

    @property
    def flags_text(self) -> str:
        return str(self.query_one("#flags", Static).content)

    @property
    def notes_text(self) -> str:
        return str(self.query_one("#safety-notes", Static).content)
