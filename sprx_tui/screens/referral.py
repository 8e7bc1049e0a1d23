"""Referral triage (accept with the first contact, decline with a reason) and recording an onward referral's outcome."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from sprx_tui.core.models import ONWARD_OUTCOMES, REFERRAL_SOURCES, Referral
from sprx_tui.screens.contact import ContactScreen
from sprx_tui.screens.forms import MODAL_CSS, TextFieldsModal, fmt_date

COMMON_DECLINE_REASONS = [
    "Does not want support at present.",
    "Already supported by another service.",
    "Moved away from the area.",
    "Needs are clinical; referred back to the GP.",
    "Could not be contacted after three attempts.",
]


def referral_summary(referral: Referral) -> str:
    source = REFERRAL_SOURCES.get(referral.source, referral.source)
    return f"From {source}, received {fmt_date(referral.received_on)}"


def accept_referral_form(person_id: str, referral_id: str) -> ContactScreen:
    """Accepting a referral is recording its first contact: the contact form, in accept mode."""
    return ContactScreen(person_id, referral_id=referral_id)


def decline_referral_modal(referral: Referral) -> TextFieldsModal:
    """Ask for the reason; start typing for the common ones (→ accepts the suggestion)."""
    return TextFieldsModal(
        "Decline referral",
        [("reason", "Reason for declining", "")],
        required={"reason": "Give a reason for declining the referral."},
        save_label="Decline",
        intro=referral_summary(referral) + ". The GP record is sent the 'social prescribing declined' code.",
        suggestions={"reason": COMMON_DECLINE_REASONS},
    )


class OnwardOutcomeModal(ModalScreen[str | None]):
    """Pick what happened with an onward referral: arrows (or Home/End) and Enter."""

    DEFAULT_CSS = "OnwardOutcomeModal { align: center middle; }\n" + MODAL_CSS
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="onward_outcome.cancel")]

    def __init__(self, service_name: str, current: str) -> None:
        super().__init__()
        self.service_name = service_name
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(f"Outcome of the referral to {self.service_name}", classes="dialog-title")
            yield OptionList(*[Option(label, id=key) for key, label in ONWARD_OUTCOMES.items()], id="outcomes")

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        keys = list(ONWARD_OUTCOMES)
        options.highlighted = keys.index(self.current) if self.current in keys else 0
        options.focus()

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
