"""The end of an episode and the referral dialogs around it: discharge with a reason, the GP closing
summary's preview and export, an onward referral's need, note and consent, and withdrawing one."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.message import Message
from textual.widgets import Button, Input, OptionList, Static
from textual.widgets.option_list import Option
from textual.worker import Worker, WorkerState

from sprx_tui.core.export import CONSENT_REFUSED, LEAVING_WARNING, check_gp_summary_target
from sprx_tui.core.models import DECLINE_REASONS, DISCHARGE_REASONS, REFERRAL_REASONS, WITHDRAW_REASONS, Need
from sprx_tui.core.service import ServiceError
from sprx_tui.drafts import KeptFieldsModal
from sprx_tui.inert import inert
from sprx_tui.screens.forms import MODAL_CSS, FormField, SaveCancelModal, show_errors, worker_error
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
        with Vertical(classes="dialog", id="choice"):
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


@dataclass
class EpisodeEnded(Message):
    """The discharge dialog's worker ended the episode: the GP closing summary's preview, the sharing it was
    made for, and the reason's words."""

    text: str
    sharing: str
    reason: str


class DischargeModal(ReasonChoiceModal):
    """End the episode: a reason, a note, and the offer of a final outcome measure first (Ctrl+T); then, in the
    same dialog, the GP closing summary's preview and where to write it.

    The second step (`GpSummaryPreview`) is composed hidden with the first, so that once the episode has ended
    only its text is filled in and the two steps swap places in one frame: popping this dialog and pushing a
    summary dialog cost about 100 ms of restyling and compositing on the 10k vault. The episode is ended by
    this dialog's own worker, so the record underneath gets no message meanwhile (Textual repaints the whole
    dialog after any message to the screen beneath it). Results: `MEASURE` (first step, Ctrl+T), None (the
    first step cancelled, or the summary not written now), or `(WRITE, path)`; `ended` says whether the
    episode ended here.
    """

    DEFAULT_CSS = CHOICE_CSS.format(name="DischargeModal") + MODAL_CSS
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+t", "measure_first", "Final measure", priority=True, id="discharge.measure"),
    ]
    MEASURE = ("measure", "")
    WRITE = "write"
    BUSY_SHOWN_AFTER = 0.1
    """Seconds before Save is shown disabled while the episode is being ended (usually the preview is up first)."""

    def __init__(
        self,
        person_name: str,
        sharing: str,
        *,
        end_episode: Callable[[str, str], tuple[str, str]] | None = None,
        default_path: str = "",
        **kwargs: Any,
    ) -> None:
        """`end_episode(code, note)` ends the episode and returns the GP summary's preview text and the sharing
        it was made for; it runs in a worker thread while the dialog stays up, then the preview is shown in the
        dialog. Without it, Ctrl+S dismisses with (code, note)."""
        self.end_episode = end_episode
        self.sharing = sharing
        self.default_path = default_path
        self.ended: str | None = None  # the reason's words, once the episode has ended in this dialog
        self._saving = False
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

    def compose(self) -> ComposeResult:
        yield from super().compose()
        if self.end_episode is not None:
            # Foreseen from the consent known now; `show_summary` composes it anew if the summary says otherwise.
            refusal = CONSENT_REFUSED if self.sharing == "none" else ""
            summary = GpSummaryPreview(refusal, self.sharing, self.default_path, classes="dialog", id="summary")
            summary.display = False
            yield summary

    def extra(self) -> ComposeResult:
        yield Button("Take a final outcome measure first (Ctrl+T)", id="measure")

    @property
    def summary(self) -> GpSummaryPreview | None:
        """The second step, once it is shown (None before)."""
        return self.query_one("#summary", GpSummaryPreview) if self.ended is not None else None

    async def show_summary(self, preview: str, sharing: str, ended: str) -> None:
        """The episode has ended (`ended`: the reason's words): the first step gives way to the preview."""
        with self.app.batch_update():
            self.query_one("#choice").display = False
            await self.query_one("#summary", GpSummaryPreview).show(preview, sharing, self.default_path, ended)
        self.ended = ended
        self._saving = False
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "measure_first" and self.ended is not None:
            return False  # the episode has ended: too late for a final measure
        return super().check_action(action, parameters)

    def action_save(self) -> None:
        summary = self.summary
        if summary is not None:
            path = summary.checked_path()
            if path:
                self.dismiss((self.WRITE, path))
            return
        if self.end_episode is None:
            super().action_save()
            return
        errors = self.check()
        choice = self.query_one("#choice")
        if errors or choice.query(".-invalid"):  # else there is no sentence to show or clear (no relayout)
            show_errors(choice, errors)
        if errors or self.saving:
            return
        self.saving = True
        self.run_worker(
            partial(self._end, self.end_episode, self.code, self.words.strip()),
            thread=True,
            group="discharge",
            exit_on_error=False,
        )

    def _end(self, end_episode: Callable[[str, str], tuple[str, str]], code: str, note: str) -> None:
        preview, sharing = end_episode(code, note)
        self.post_message(EpisodeEnded(preview, sharing, DISCHARGE_REASONS[code]))

    @on(EpisodeEnded)
    async def _episode_ended(self, message: EpisodeEnded) -> None:
        await self.show_summary(message.text, message.sharing, message.reason)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.saving = False  # the episode did not end: the dialog and its note stay
            worker_error(self, event)

    @property
    def saving(self) -> bool:
        return self._saving

    @saving.setter
    def saving(self, value: bool) -> None:
        """While the episode is being ended Save and Esc do nothing, and Save is shown disabled after
        `BUSY_SHOWN_AFTER` (no frame is spent on it meanwhile); a failure enables it again (nothing is lost)."""
        self._saving = value
        if value:
            self.set_timer(self.BUSY_SHOWN_AFTER, self._show_busy)
        else:
            self.query_one("#choice #save", Button).disabled = False

    def _show_busy(self) -> None:
        if self._saving:
            self.query_one("#choice #save", Button).disabled = True

    def action_cancel(self) -> None:
        if not self.saving:  # the write under way is not undone by Esc; its outcome is shown here
            super().action_cancel()

    def action_measure_first(self) -> None:
        if self.ended is None and not self.saving:
            self.dismiss(self.MEASURE)

    @on(Button.Pressed, "#measure")
    def _measure_pressed(self) -> None:
        self.action_measure_first()

    @on(Input.Submitted, "#path")
    def _path_submitted(self) -> None:
        self.action_save()


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


class GpSummaryPreview(Vertical):
    """Exactly what the GP closing summary will hold, then where to write it: the body of the summary's dialog.

    Shared by `GpSummaryModal` (an episode that had ended already) and the second step of `DischargeModal`,
    which composes it hidden and fills it in with `show` once the episode has ended (no screen change).
    With no consent to share, only the refusal sentence is shown and there is only a Close button.
    """

    DEFAULT_CSS = """
    GpSummaryPreview #preview { height: auto; max-height: 14; border: round $panel; padding: 0 1; }
    .-short GpSummaryPreview #preview { max-height: 8; }
    GpSummaryPreview .muted { color: $text-muted; height: auto; }
    """
    SCOPED_CSS = False  # the short-terminal rule looks at the screen's class
    TITLE = "GP closing summary: exactly what will leave"

    def __init__(
        self, preview: str, sharing: str, default_path: str, *, ended: str | None = None, **kwargs: Any
    ) -> None:
        """`ended`: the reason, when the episode was ended just now (said at the top)."""
        super().__init__(**kwargs)
        self.preview = preview
        self.sharing = sharing
        self.default_path = default_path
        self.ended = ended
        self.refused = is_refusal(preview)

    def title_words(self) -> str:
        return f"Episode ended ({self.ended}). {self.TITLE}" if self.ended else self.TITLE

    def compose(self) -> ComposeResult:
        yield Static(self.title_words(), classes="dialog-title", id="summary-title")
        yield Static(f"Sharing: {SHARING_WORDS.get(self.sharing, '')}", classes="muted", id="summary-sharing")
        with VerticalScroll(id="preview"):
            yield Static(inert(self.preview, multiline=True), id="preview-text")
        if self.refused:
            yield Static("Nothing will be written.", classes="muted")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Close (Esc)", id="cancel", variant="primary")
            return
        written = "Written as a FHIR document and a letter (.txt) beside it. "
        yield Static(written + LEAVING_WARNING, classes="muted")
        yield FormField("Save to (a new file)", Input(self.default_path, id="path"), field="path")
        with Horizontal(classes="dialog-buttons"):
            yield Button("Write (Ctrl+S)", id="save", variant="primary")
            yield Button("Not now (Esc)", id="cancel")

    def focus_first(self) -> None:
        """The path to write to, or Close when nothing can be written."""
        self.query_one("#cancel" if self.refused else "#path").focus()

    async def show(self, preview: str, sharing: str, default_path: str, ended: str | None) -> None:
        """Fill in what was composed ahead (the title, sharing words and path were known before the preview)
        and show it. Only when the refusal was not foreseen (or foreseen wrongly) is the body composed anew."""
        refused = is_refusal(preview)
        self.preview, self.default_path, self.ended = preview, default_path, ended
        if refused != self.refused:
            self.refused, self.sharing = refused, sharing
            await self.recompose()
        else:
            if sharing != self.sharing:  # changed meanwhile (say, by sync)
                self.sharing = sharing
                self.query_one("#summary-sharing", Static).update(f"Sharing: {SHARING_WORDS.get(sharing, '')}")
            self.query_one("#summary-title", Static).update(self.title_words())
            self.query_one("#preview-text", Static).update(inert(preview, multiline=True))
            if not refused:
                self.query_one("#path", Input).value = default_path
        self.display = True
        # Focused once it is drawn: a change of focus repaints the whole screen, and done now that repaint
        # takes the next frame, and the preview (laid out a moment later) the one after it.
        self.call_after_refresh(self.focus_first)

    def checked_path(self) -> str | None:
        """The path to write to, or None with the sentence under the field (nothing to write when refused)."""
        if self.refused:
            return None
        path = self.query_one("#path", Input).value.strip()
        problem = "Say where to save the summary." if not path else ""
        if path:
            try:
                check_gp_summary_target(path)
            except ServiceError as exc:
                problem = str(exc)
        show_errors(self, {"path": problem} if problem else {})
        return None if problem else path


def is_refusal(preview: str) -> bool:
    return preview.strip() == CONSENT_REFUSED


class GpSummaryModal(SaveCancelModal[str | None]):
    """The GP closing summary of an episode that had ended already: the preview, then where to write it
    (the path, or None)."""

    DEFAULT_CSS = "GpSummaryModal { align: center middle; }\n" + SHORT_CSS.format(name="GpSummaryModal") + MODAL_CSS
    VERTICAL_BREAKPOINTS = SHORT_BREAKPOINTS
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Write", priority=True, id="gp_summary.save"),
        Binding("escape", "cancel", "Not now", id="gp_summary.cancel"),
    ]

    def __init__(self, preview: str, sharing: str, default_path: str) -> None:
        super().__init__()
        self.summary = GpSummaryPreview(preview, sharing, default_path, classes="dialog", id="summary")

    @property
    def refused(self) -> bool:
        return self.summary.refused

    def compose(self) -> ComposeResult:
        yield self.summary

    def on_mount(self) -> None:
        self.summary.focus_first()

    def action_save(self) -> None:
        path = self.summary.checked_path()
        if path:
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
