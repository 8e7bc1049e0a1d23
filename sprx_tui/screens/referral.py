"""Referral triage (accept with the first contact, decline with a reason) and recording an onward referral's outcome."""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from sprx_tui.core.models import ONWARD_OUTCOMES, REFERRAL_SOURCES, Referral
from sprx_tui.core.service import InvalidInput
from sprx_tui.drafts import push_person
from sprx_tui.inert import inert
from sprx_tui.screens.contact import ContactScreen
from sprx_tui.screens.episode import DeclineModal
from sprx_tui.screens.forms import MODAL_CSS, fmt_date


def referral_summary(referral: Referral) -> str:
    source = REFERRAL_SOURCES.get(referral.source, referral.source)
    return f"From {source}, received {fmt_date(referral.received_on)}"


def accept_referral_form(person_id: str, referral_id: str) -> ContactScreen:
    """Accepting a referral is recording its first contact: the contact form, in accept mode."""
    return ContactScreen(person_id, referral_id=referral_id)


def decline_key(person_id: str, referral_id: str) -> str:
    return f"referral:{person_id}:decline:{referral_id}"


def decline_referral_modal(referral: Referral, *, prefill: dict[str, Any] | None = None) -> DeclineModal:
    """Ask for the reason from the coded list, with words (needed for Other). Kept across a lock."""
    return decline_reason_modal(referral.person_id, referral.id, referral_summary(referral), prefill=prefill)


def decline_reason_modal(
    person_id: str, referral_id: str, summary: str, *, prefill: dict[str, Any] | None = None
) -> DeclineModal:
    """The decline dialog from ids and the referral's one-line summary (which a kept draft carries)."""
    return DeclineModal(
        "Decline referral",
        [("reason", "In a few words (needed for Other)", "")],
        save_label="Decline",
        intro=summary + ". The GP record is sent the 'social prescribing declined' code.",
        draft_key=decline_key(person_id, referral_id),
        draft_payload={"kind": "decline", "person_id": person_id, "referral_id": referral_id, "summary": summary},
        prefill=prefill,
    )


# -- drafts kept across a lock -------------------------------------------------------------------


def describe_draft(payload: dict[str, Any]) -> str:
    """How the offer after unlock names this draft."""
    return "an unsaved reason for declining a referral"


def restore_draft(app: App[Any], key: str, payload: dict[str, Any]) -> None:
    """Open the person on their referrals and the decline dialog with the reason typed so far."""
    person_id = str(payload.get("person_id") or "")
    referral_id = str(payload.get("referral_id") or "")
    if payload.get("kind") != "decline" or not person_id or not referral_id:
        raise InvalidInput({"draft": "That unsaved reason does not say which referral it belongs to."})
    values = payload.get("values") if isinstance(payload.get("values"), dict) else {}
    summary = str(payload.get("summary") or "A referral")
    person = push_person(app, person_id, tab="referrals")
    person.open_decline_form(referral_id, summary, prefill=values)


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
            yield Static(inert(f"Outcome of the referral to {self.service_name}"), classes="dialog-title")
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
