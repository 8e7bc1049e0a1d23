"""The end of an episode and the referral dialogs around it: discharge with a reason, the GP closing
summary's preview and export, an onward referral's need, note and consent, and withdrawing one."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.widgets import Button, Input, OptionList, Static
from textual.widgets.option_list import Option

from sprx_tui.core.export import CONSENT_REFUSED, LEAVING_WARNING, check_gp_summary_target
from sprx_tui.core.models import DECLINE_REASONS, DISCHARGE_REASONS, REFERRAL_REASONS, WITHDRAW_REASONS, Need
from sprx_tui.core.service import ServiceError
from sprx_tui.drafts import KeptFieldsModal
from sprx_tui.inert import inert
from sprx_tui.screens.forms import MODAL_CSS, FormField, SaveCancelModal, show_errors
from sprx_tui.widgets.toggles import TickBox

SHARING_WORDS = {
    "full": "Full: codes, dates and counts, and their name, goals, services used and outcome measures.",
    "codes_only": "Codes only: NHS number, date of birth, SNOMED CT codes, dates and counts. No name, no words.",
    "none": "Nothing: they have not agreed to share information with their GP.",
}

SHORT_CSS = """
{name} .dialog {{ overflow-y: auto; }}
{name}.-short .dialog {{ padding: 0 1; }}
{name}.-short .dialog-title {{ margin-bottom: 0; }}
{name}.-short Input {{ border: none !important; height: 1 !important; padding: 0 1; }}
{name}.-short Button {{ border: none !important; height: 1 !important; min-width: 0; }}
{name}.-short .dialog-buttons {{ margin-top: 0; }}
"""
"""On a short terminal (under 30 rows, 80x24 say) fields and buttons take one line each, so all of a dialog
shows; taller terminals keep the bordered look. A dialog that still does not fit scrolls."""

SHORT_BREAKPOINTS = [(0, "-short"), (30, "-tall")]

CHOICE_CSS = (
    """
{name} {{ align: center middle; }}
{name} OptionList {{ height: auto; max-height: 8; margin-bottom: 1; }}
{name}.-short OptionList {{ margin-bottom: 0; }}
{name} .chosen {{ height: auto; color: $text-muted; }}
{name} .muted {{ color: $text-muted; height: auto; }}
"""
    + SHORT_CSS
)

SHARING_SHORT = {"full": "the full summary", "codes_only": "codes only", "none": "nothing"}


class ReasonChoiceModal(SaveCancelModal[tuple[str, str] | None]):
    """Choose a reason from a short coded list (arrows, Enter moves on) and add words: (code, words) or None.

    The chosen reason is also said in words under the list ("Chosen: ..."), not only by the highlight.
    Words are required when the code is in `words_required` (always "other").
    """

    DEFAULT_CSS = CHOICE_CSS.format(name="ReasonChoiceModal") + MODAL_CSS
    VERTICAL_BREAKPOINTS = SHORT_BREAKPOINTS
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save", priority=True, id="reason_choice.save"),
        Binding("escape", "cancel", "Cancel", id="reason_choice.cancel"),
    ]

    def __init__(
        self,
        title: str,
        reasons: Mapping[str, str],
        *,
        intro: str = "",
        words_label: str = "In a few words",
        save_label: str = "Save",
        words_required: Sequence[str] = ("other",),
        start: str | None = None,
        words: str = "",
    ) -> None:
        super().__init__()
        self.title_text = title
        self.reasons = dict(reasons)
        self.intro = intro
        self.words_label = words_label
        self.save_label = save_label
        self.words_required = set(words_required)
        self.start = start if start in self.reasons else next(iter(self.reasons))
        self.start_words = words

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(inert(self.title_text, multiline=True), classes="dialog-title")
            if self.intro:
                yield Static(inert(self.intro, multiline=True), classes="muted")
            yield OptionList(*[Option(inert(label), id=code) for code, label in self.reasons.items()], id="reasons")
            yield Static("", classes="chosen", id="chosen")
            yield FormField(self.words_label, Input(self.start_words, id="words", max_length=500), field="words")
            yield from self.extra()
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.save_label} (Ctrl+S)", id="save", variant="primary")
                yield Button("Cancel (Esc)", id="cancel")

    def extra(self) -> ComposeResult:
        """More fields between the words and the buttons (subclasses)."""
        yield from ()

    def on_mount(self) -> None:
        options = self.query_one("#reasons", OptionList)
        options.highlighted = list(self.reasons).index(self.start)
        options.focus()
        self._say_chosen()

    @property
    def code(self) -> str:
        with contextlib.suppress(NoMatches):
            options = self.query_one("#reasons", OptionList)
            if options.highlighted is not None:
                return list(self.reasons)[options.highlighted]
        return self.start

    @property
    def words(self) -> str:
        with contextlib.suppress(NoMatches):
            return self.query_one("#words", Input).value
        return self.start_words

    @on(OptionList.OptionHighlighted, "#reasons")
    def _say_chosen(self) -> None:
        self.query_one("#chosen", Static).update(f"Chosen: {self.reasons[self.code]}")

    @on(OptionList.OptionSelected, "#reasons")
    def _chosen(self) -> None:
        self.query_one("#words", Input).focus()

    @on(Input.Submitted, "#words")
    def _words_submitted(self) -> None:
        self.action_save()

    def check(self) -> dict[str, str]:
        """The sentences for what is missing (field -> sentence)."""
        if self.code in self.words_required and not self.words.strip():
            return {"words": "Say in a few words why, as the reason is 'Other'."}
        return {}

    def result(self) -> Any:
        return self.code, self.words.strip()

    def action_save(self) -> None:
        errors = self.check()
        if show_errors(self, errors) or errors:
            return
        self.dismiss(self.result())


class DischargeModal(ReasonChoiceModal):
    """End the episode: a reason, a note, and the offer of a final outcome measure first (Ctrl+T)."""

    DEFAULT_CSS = CHOICE_CSS.format(name="DischargeModal") + MODAL_CSS
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+t", "measure_first", "Final measure", priority=True, id="discharge.measure"),
    ]
    MEASURE = ("measure", "")

    def __init__(
        self, person_name: str, sharing: str, *, on_save: Callable[[str, str], None] | None = None, **kwargs: Any
    ) -> None:
        """`on_save(code, note)` ends the episode while the dialog stays up; the caller replaces it with the
        GP summary's preview in one step (one screen change, not two). Without it, Ctrl+S dismisses."""
        self.on_save = on_save
        intro = (
            "Open referrals close and follow-ups are cancelled. The GP closing summary is offered next "
            f"(sharing: {SHARING_SHORT.get(sharing, sharing)})."
        )
        super().__init__(
            f"End {person_name}'s episode",
            DISCHARGE_REASONS,
            intro=intro,
            words_label="Note (needed for Other)",
            save_label="Discharge",
            **kwargs,
        )

    def extra(self) -> ComposeResult:
        yield Button("Take a final outcome measure first (Ctrl+T)", id="measure")

    def action_save(self) -> None:
        if self.on_save is None:
            super().action_save()
            return
        errors = self.check()
        if show_errors(self, errors) or errors or self.saving:
            return
        self.saving = True
        self.on_save(self.code, self.words.strip())

    @property
    def saving(self) -> bool:
        return self.query_one("#save", Button).disabled

    @saving.setter
    def saving(self, value: bool) -> None:
        """While the episode is being ended, Save is disabled; a failure enables it again (nothing is lost)."""
        self.query_one("#save", Button).disabled = value

    def action_measure_first(self) -> None:
        self.dismiss(self.MEASURE)

    @on(Button.Pressed, "#measure")
    def _measure_pressed(self) -> None:
        self.action_measure_first()


class WithdrawOnwardModal(ReasonChoiceModal):
    """Withdraw an onward referral made wrongly: it stays in the record, marked withdrawn."""

    DEFAULT_CSS = CHOICE_CSS.format(name="WithdrawOnwardModal") + MODAL_CSS

    def __init__(self, about: str) -> None:
        super().__init__(
            "Withdraw the onward referral",
            WITHDRAW_REASONS,
            intro=f"{about}\nIt stays in their record, shown as withdrawn, and is left out of uptake figures.",
            save_label="Withdraw",
        )


class OnwardReferralModal(ReasonChoiceModal):
    """Refer or signpost: which of the person's needs it addresses, a short note, and their consent.

    Returns {"need_id": id or "", "notes": words, "consent": bool}. The person's agreement is asked for
    every referral; a signpost may go without it.
    """

    DEFAULT_CSS = CHOICE_CSS.format(name="OnwardReferralModal") + MODAL_CSS
    NO_NEED = "-"

    def __init__(self, question: str, needs: Sequence[Need], *, kind: str, start_need: str | None = None) -> None:
        reasons = {n.id: need_words(n) for n in needs}
        reasons[self.NO_NEED] = "No particular need"
        start = next((n.id for n in needs if n.category == start_need), self.NO_NEED)
        super().__init__(
            question,
            reasons,
            intro="The need it addresses:",
            words_label="Short note for the record (optional)",
            save_label="Refer" if kind == "referred" else "Signpost" if kind == "signposted" else "Save",
            words_required=(),
            start=start,
        )
        self.kind = kind

    def extra(self) -> ComposeResult:
        yield TickBox("The person agreed to this referral", id="consent")

    def check(self) -> dict[str, str]:
        if self.kind == "referred" and not self.query_one("#consent", TickBox).value:
            return {"words": "Tick that the person agreed before referring them; signposting needs no agreement."}
        return {}

    def result(self) -> dict[str, Any]:
        need = "" if self.code == self.NO_NEED else self.code
        return {"need_id": need, "notes": self.words.strip(), "consent": self.query_one("#consent", TickBox).value}


def need_words(need: Need) -> str:
    label = REFERRAL_REASONS.get(need.category, need.category)
    status = {"open": "", "met": " (met)", "unmet": " (no service found)"}.get(need.status, "")
    return label + status + (f": {need.description}" if need.description else "")


class GpSummaryModal(SaveCancelModal[str | None]):
    """Exactly what the GP closing summary will hold, then where to write it: the path, or None.

    With no consent to share, only the refusal sentence is shown and nothing can be written.
    """

    DEFAULT_CSS = (
        "GpSummaryModal { align: center middle; }\n"
        "GpSummaryModal #preview { height: auto; max-height: 14; border: round $panel; padding: 0 1; }\n"
        "GpSummaryModal.-short #preview { max-height: 8; }\n"
        "GpSummaryModal .muted { color: $text-muted; height: auto; }\n"
        + SHORT_CSS.format(name="GpSummaryModal")
        + MODAL_CSS
    )
    VERTICAL_BREAKPOINTS = SHORT_BREAKPOINTS
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Write", priority=True, id="gp_summary.save"),
        Binding("escape", "cancel", "Not now", id="gp_summary.cancel"),
    ]

    def __init__(self, preview: str, sharing: str, default_path: str, *, ended: str | None = None) -> None:
        """`ended`: the reason, when the episode was ended just now (said at the top)."""
        super().__init__()
        self.ended = ended
        self.preview = preview
        self.sharing = sharing
        self.default_path = default_path
        self.refused = preview.strip() == CONSENT_REFUSED

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            title = "GP closing summary: exactly what will leave"
            if self.ended:
                title = f"Episode ended ({self.ended}). {title}"
            yield Static(title, classes="dialog-title")
            yield Static(f"Sharing: {SHARING_WORDS.get(self.sharing, '')}", classes="muted")
            with VerticalScroll(id="preview"):
                yield Static(inert(self.preview, multiline=True), id="preview-text")
            if self.refused:
                yield Static("Nothing will be written.", classes="muted")
                with Horizontal(classes="dialog-buttons"):
                    yield Button("Close (Esc)", id="cancel", variant="primary")
                return
            written = "Written as a FHIR document and a letter (.txt) beside it. "
            yield Static(written + LEAVING_WARNING, classes="muted")
            yield FormField(
                "Save to (a new file)",
                Input(self.default_path, id="path"),
                field="path",
            )
            with Horizontal(classes="dialog-buttons"):
                yield Button("Write (Ctrl+S)", id="save", variant="primary")
                yield Button("Not now (Esc)", id="cancel")

    def on_mount(self) -> None:
        target = "#cancel" if self.refused else "#path"
        self.query_one(target).focus()

    def action_save(self) -> None:
        if self.refused:
            return
        path = self.query_one("#path", Input).value.strip()
        problem = "Say where to save the summary." if not path else ""
        if path:
            try:
                check_gp_summary_target(path)
            except ServiceError as exc:
                problem = str(exc)
        show_errors(self, {"path": problem} if problem else {})
        if not problem:
            self.dismiss(path)

    @on(Input.Submitted, "#path")
    def _submitted(self) -> None:
        self.action_save()


class DeclineModal(KeptFieldsModal):
    """Decline a referral: a reason from the short coded list and words (needed for Other); kept across a lock."""

    DEFAULT_CSS = CHOICE_CSS.format(name="DeclineModal") + MODAL_CSS

    def __init__(self, *args: Any, prefill: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, prefill=prefill, **kwargs)
        kept = (prefill or {}).get("code")
        self.start_code = kept if isinstance(kept, str) and kept in DECLINE_REASONS else "not_wanted"
        self.baseline = {**self.baseline, "code": self.start_code}
        self.restored = self.restored or kept is not None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(inert(self.title_text), classes="dialog-title")
            if self.intro:
                yield Static(inert(self.intro, multiline=True), classes="dialog-intro muted")
            yield OptionList(*[Option(label, id=code) for code, label in DECLINE_REASONS.items()], id="codes")
            yield Static("", classes="chosen", id="chosen")
            for name, label, value in self.fields:
                yield FormField(label, Input(value, id=name), field=name)
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.save_label} (Ctrl+S)", id="save", variant="primary")
                yield Button("Cancel (Esc)", id="cancel")

    def on_mount(self) -> None:
        options = self.query_one("#codes", OptionList)
        options.highlighted = list(DECLINE_REASONS).index(self.start_code)
        options.focus()
        self._say_chosen()

    @on(OptionList.OptionHighlighted, "#codes")
    def _say_chosen(self) -> None:
        self.query_one("#chosen", Static).update(f"Chosen: {DECLINE_REASONS[self.code]}")

    @on(OptionList.OptionSelected, "#codes")
    def _chosen(self) -> None:
        self.query_one("#reason", Input).focus()

    @property
    def code(self) -> str:
        with contextlib.suppress(NoMatches):
            options = self.query_one("#codes", OptionList)
            if options.highlighted is not None:
                return list(DECLINE_REASONS)[options.highlighted]
        return self.start_code

    def values(self) -> dict[str, str]:
        return {**super().values(), "code": self.code}

    def typed(self) -> dict[str, str]:
        return {**super().typed(), "code": self.code}

    def action_save(self) -> None:
        # Words are needed only for "Other"; the other reasons' labels stand for themselves.
        self.required = {"reason": "Give a reason for declining the referral."} if self.code == "other" else {}
        super().action_save()
