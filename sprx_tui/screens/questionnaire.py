"""Outcome questionnaires taken with the person: one question at a time in plain words, answered with digit keys.

The laptop is turned towards the person, so the screen shows only the questionnaire: no name, no NHS number, no
safety flags. Answers stay in memory until Save (Ctrl+S on the summary) writes them through the service layer;
a skipped question stays missing, so the measure is stored as incomplete and never scored as if complete.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Digits, OptionList, Static
from textual.widgets.option_list import Option
from textual.worker import Worker, WorkerState

from sprx_rules import outcomes
from sprx_tui.core.models import OutcomeResponse
from sprx_tui.core.service import InvalidInput
from sprx_tui.drafts import discard_later, push_person
from sprx_tui.screens.forms import MODAL_CSS, ConfirmModal, worker_error
from sprx_tui.widgets.keys_footer import KeysFooter
from sprx_tui.widgets.outcome_chart import (
    IMPROVED_MARK,
    IMPROVED_SHORT,
    baseline_row,
    fmt_change,
    fmt_value,
    live_rows,
    scored,
    short_date,
)

# Short names for lists and the command palette; titles are in core/outcomes.py.
SHORT_NAMES: dict[str, str] = {
    "ONS4": "ONS4 well-being",
    "UCLA3": "UCLA loneliness",
    "SWEMWBS": "SWEMWBS wellbeing",
    "HEALTH_USE": "GP and A&E use",
}
TIME_POINT_KEYS: dict[str, str] = {"baseline": "b", "review": "r", "discharge": "d"}


def draft_key(person_id: str, code: str, time_point: str) -> str:
    return f"measure:{person_id}:{code}:{time_point}"


def time_point_label(time_point: str) -> str:
    return time_point.capitalize()


def taken_summary(code: str, rows: Sequence[OutcomeResponse]) -> str:
    """ "Baseline 01/06/2026 · Discharge 20/11/2026*" for one measure; * marks an incomplete one."""
    taken = live_rows(rows, code)
    if not taken:
        return "Not taken yet"
    return " · ".join(f"{time_point_label(r.time_point)} {short_date(r)}{'' if r.complete else '*'}" for r in taken)


def suggest_time_point(code: str, rows: Sequence[OutcomeResponse]) -> str:
    """Baseline until one is recorded, then review (or discharge for measures asked only at the ends)."""
    instrument = outcomes.INSTRUMENTS[code]
    if not any(r.time_point == "baseline" for r in live_rows(rows, code)):
        return "baseline"
    return "review" if "review" in instrument.time_points else "discharge"


def is_scale_to_ten(item: outcomes.Item) -> bool:
    """A 0–10 answer, where "1" may be the start of "10"."""
    return bool(item.options) and item.max_value >= 10


# -- the summary ---------------------------------------------------------------------------------


def _answer_text(item: outcomes.Item, value: int | None) -> str:
    if value is None:
        return "skipped"
    if is_scale_to_ten(item):
        return str(value)  # ONS4: the number is the answer; only the ends of its scale have words
    label = next((o.label for o in item.options if o.value == value), "")
    return f"{value} · {label}" if label else str(value)


def summary_content(
    code: str,
    time_point: str,
    answers: Mapping[str, int | None],
    history: Sequence[OutcomeResponse] | None,
) -> Content:
    """What was answered, the score by the instrument's rules, and the change since baseline where there is one."""
    instrument = outcomes.INSTRUMENTS[code]
    result = outcomes.score(code, {it.id: answers.get(it.id) for it in instrument.items})
    base = baseline_row(live_rows(history, code)) if history is not None and time_point != "baseline" else None
    base_score = scored(base) if base is not None else None
    delta: dict[str, float | int | None] = {}
    better: dict[str, bool | None] = {}
    if base_score is not None:
        delta = outcomes.change(code, base_score, result)
        better = outcomes.improved(code, base_score, result)
    base_figures = base_score.figures() if base_score is not None else {}
    comparing = base_score is not None

    lines: list[Content] = []
    skipped = [instrument.item(i).label for i in result.missing]
    if result.complete:
        count = len(instrument.items)
        lines.append(
            Content.styled("Both questions answered." if count == 2 else f"All {count} questions answered.", "bold")
        )
    else:
        lines.append(
            Content.styled(
                f"Incomplete: {len(skipped)} of {len(instrument.items)} skipped ({', '.join(skipped)}). "
                "It will be stored as incomplete and not scored as complete.",
                "bold $text-warning",
            )
        )
    lines.append(Content(""))

    def row(*cells: tuple[str, int, str]) -> Content:
        return Content.assemble(*(Content.styled(text.ljust(width), style) for text, width, style in cells))

    def change_cells(name: str) -> list[tuple[str, int, str]]:
        if not comparing:
            return []
        mark = better.get(name) is True
        return [
            (fmt_value(base_figures.get(name)), 10, ""),
            (fmt_change(delta.get(name)) + (f" {IMPROVED_MARK}" if mark else ""), 10, "bold" if mark else ""),
        ]

    head_change = [("Baseline", 10, "bold"), ("Change", 10, "bold")] if comparing else []
    per_item = code in ("ONS4", "HEALTH_USE")  # reported item by item: the answers are the scores
    if code == "ONS4":
        lines.append(row(("Question", 20, "bold"), ("Answer", 9, "bold"), ("ONS band", 11, "bold"), *head_change))
    elif per_item:
        lines.append(row(("Question", 20, "bold"), ("Answer", 9, "bold"), *head_change))
    else:
        lines.append(row(("Question", 24, "bold"), ("Answer", 20, "bold")))
    for it in instrument.items:
        value = result.items[it.id]
        answer_style = "$text-warning" if value is None else ""
        if code == "ONS4":
            band = result.bands.get(it.id, "")
            label = it.label + (" ↓" if it.id == "anxiety" else "")
            lines.append(
                row((label, 20, ""), (_answer_text(it, value), 9, answer_style), (band, 11, ""), *change_cells(it.id))
            )
        elif per_item:
            lines.append(
                row((it.label + " ↓", 20, ""), (_answer_text(it, value), 9, answer_style), *change_cells(it.id))
            )
        else:
            lines.append(row((it.label, 24, ""), (_answer_text(it, value), 20, answer_style)))

    if code in ("UCLA3", "SWEMWBS"):
        lines.append(Content(""))
        lines.append(row(("Score", 24, "bold"), ("", 20, ""), *head_change))
        if code == "UCLA3":
            band = f" ({result.bands['total']})" if result.bands.get("total") else ""
            total = fmt_value(result.total) + band if result.complete else "not scored"
            lines.append(row(("Total (3–9) ↓", 24, ""), (total, 20, ""), *change_cells("total")))
        else:
            raw = fmt_value(result.total) if result.complete else "not scored"
            metric = fmt_value(result.metric) if result.complete else "not scored"
            lines.append(row(("Raw score (7–35)", 24, ""), (raw, 20, ""), *change_cells("raw")))
            lines.append(row(("Metric score (7–35)", 24, "bold"), (metric, 20, "bold"), *change_cells("metric")))

    lines.append(Content(""))
    if time_point == "baseline":
        lines.append(Content.styled("This is a baseline: change is shown from the next measure.", "$text-muted"))
    elif history is None:
        lines.append(Content.styled("Looking up the baseline…", "$text-muted"))
    elif base is None:
        lines.append(
            Content.styled("No baseline has been taken for this measure, so no change is shown.", "$text-muted")
        )
    else:
        note = f"Change against the baseline taken {short_date(base)}"
        if not base.complete:
            note += " (incomplete, so totals cannot be compared)"
        lines.append(Content.styled(f"{note}. {IMPROVED_MARK} {IMPROVED_SHORT[code]}.", "$text-muted"))
    if code in ("ONS4", "UCLA3", "HEALTH_USE"):
        lines.append(Content.styled("↓ lower is better", "$text-muted"))
    if code == "ONS4":
        lines.append(Content.styled("Each question is reported on its own; there is no total score.", "$text-muted"))
    return Content("\n").join(lines)


# -- choosing the measure and time point ------------------------------------------------------------


@dataclass
class OutcomeHistoryLoaded(Message):
    rows: list[OutcomeResponse]


class MeasureChooser(ModalScreen[tuple[str, str] | None]):
    """Pick the questionnaire (↑↓ or 1–4) and the time point (b, r, d); Enter starts, Esc cancels."""

    DEFAULT_CSS = (
        """
    MeasureChooser { align: center middle; }
    MeasureChooser OptionList { height: auto; max-height: 12; border: round $panel-lighten-2; }
    MeasureChooser OptionList:focus { border: round $primary; }
    MeasureChooser #time-points { height: 1; margin-top: 1; }
    MeasureChooser #chooser-note { height: auto; color: $text-warning; }
    MeasureChooser .chooser-hint { color: $text-muted; height: auto; }
    """
        + MODAL_CSS
    )
    BINDINGS: ClassVar[list[BindingType]] = [
        *[
            Binding(key, f"time_point('{tp}')", time_point_label(tp), id=f"measure.{tp}")
            for tp, key in TIME_POINT_KEYS.items()
        ],
        Binding("left", "step_time_point(-1)", "Earlier time point", show=False, id="measure.previous_time_point"),
        Binding("right", "step_time_point(1)", "Later time point", show=False, id="measure.next_time_point"),
        *[
            Binding(str(i), f"pick({i - 1})", "Choose that measure", show=False, id=f"measure.pick_{i}")
            for i in range(1, len(outcomes.INSTRUMENTS) + 1)
        ],
        Binding("escape", "cancel", "Cancel", id="measure.cancel"),
    ]
    HELP_TITLE = "Take an outcome measure"

    def __init__(self, person_id: str, code: str | None = None) -> None:
        super().__init__()
        self.person_id = person_id
        self.codes = list(outcomes.INSTRUMENTS)
        self.code = code if code in outcomes.INSTRUMENTS else self.codes[0]
        self.time_point = "baseline"
        self.rows: list[OutcomeResponse] | None = None
        self._chosen_time_point = False  # once b/r/d is pressed the choice sticks when the measure changes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static("Take an outcome measure with the person", classes="dialog-title")
            yield OptionList(*[Option(self._prompt(code), id=code) for code in self.codes], id="measures")
            yield Static("", id="time-points")
            yield Static("", id="chooser-note")
            yield Static("1–4 measure · b r d time point · Enter starts · Esc cancels", classes="chooser-hint")

    def _prompt(self, code: str) -> Content:
        number = self.codes.index(code) + 1
        taken = "…" if self.rows is None else taken_summary(code, self.rows)
        return Content.assemble(
            Content.styled(f"{number}  {outcomes.INSTRUMENTS[code].title}", "bold"),
            "\n   ",
            Content.styled(taken, "$text-muted"),
        )

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        options.highlighted = self.codes.index(self.code)
        options.focus()
        self._show()
        self._load()

    @work(thread=True, exclusive=True, group="measure-history", exit_on_error=False)
    def _load(self) -> None:
        self.post_message(OutcomeHistoryLoaded(self.app.store.queries.outcomes(self.person_id)))

    @on(OutcomeHistoryLoaded)
    def _loaded(self, message: OutcomeHistoryLoaded) -> None:
        self.rows = message.rows
        options = self.query_one(OptionList)
        for i, code in enumerate(self.codes):
            options.replace_option_prompt_at_index(i, self._prompt(code))
        if not self._chosen_time_point:
            self.time_point = suggest_time_point(self.code, self.rows)
        self._show()

    def _show(self) -> None:
        instrument = outcomes.INSTRUMENTS[self.code]
        pieces: list[Content | str] = [Content.styled("Time point  ", "$text-muted")]
        for tp, key in TIME_POINT_KEYS.items():
            allowed = tp in instrument.time_points
            text = f" {key} {time_point_label(tp)} "
            style = "bold reverse" if tp == self.time_point else ("" if allowed else "strike $text-muted")
            pieces.extend([Content.styled(text, style), " "])
        self.query_one("#time-points", Static).update(Content.assemble(*pieces))
        note = self._note()
        note_widget = self.query_one("#chooser-note", Static)
        note_widget.update(note)
        note_widget.display = bool(note)

    def _note(self) -> str:
        instrument = outcomes.INSTRUMENTS[self.code]
        if self.time_point not in instrument.time_points:
            allowed = " and ".join(instrument.time_points)
            return f"{instrument.title} is asked at {allowed} only."
        if self.rows is not None and self.time_point == "baseline":
            base = baseline_row(live_rows(self.rows, self.code))
            if base is not None:
                return f"A baseline was already taken on {short_date(base)}; change is measured from the earliest."
        return ""

    @on(OptionList.OptionHighlighted, "#measures")
    def _measure_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self.code = event.option.id or self.code
        if not self._chosen_time_point and self.rows is not None:
            self.time_point = suggest_time_point(self.code, self.rows)
        self._show()

    @on(OptionList.OptionSelected, "#measures")
    def _measure_selected(self) -> None:
        self.action_start()

    def action_pick(self, index: int) -> None:
        if 0 <= index < len(self.codes):
            self.query_one(OptionList).highlighted = index

    def action_time_point(self, time_point: str) -> None:
        self.time_point = time_point
        self._chosen_time_point = True
        self._show()

    def action_step_time_point(self, step: int) -> None:
        allowed = list(outcomes.INSTRUMENTS[self.code].time_points)
        at = allowed.index(self.time_point) if self.time_point in allowed else 0
        self.action_time_point(allowed[(at + step) % len(allowed)])

    def action_start(self) -> None:
        if self.time_point not in outcomes.INSTRUMENTS[self.code].time_points:
            self.notify(self._note(), severity="warning")
            return
        self.dismiss((self.code, self.time_point))

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            worker_error(self, event)


# -- the questionnaire ----------------------------------------------------------------------------


@dataclass
class QuestionnaireSaved(Message):
    row_id: str
    complete: bool


@dataclass
class QuestionnaireRejected(Message):
    sentence: str


class QuestionnaireScreen(Screen[str | None]):
    """One questionnaire at one time point; dismisses with the stored row's id, or None when nothing was saved."""

    DEFAULT_CSS = """
    QuestionnaireScreen { layout: vertical; }
    QuestionnaireScreen #q-top { height: 1; padding: 0 2; background: $panel; }
    QuestionnaireScreen #q-title { width: 1fr; text-style: bold; }
    QuestionnaireScreen #q-progress { width: auto; text-style: bold; }
    QuestionnaireScreen #q-body { height: 1fr; padding: 1 4 0 4; }
    QuestionnaireScreen #q-instructions { color: $text-muted; margin-bottom: 1; height: auto; }
    QuestionnaireScreen #q-item { text-style: bold; color: $text; margin-bottom: 1; height: auto; }
    QuestionnaireScreen #q-options { height: auto; }
    QuestionnaireScreen #q-number { width: auto; height: 3; margin: 1 0 0 2; }
    QuestionnaireScreen #q-summary { height: auto; }
    QuestionnaireScreen #q-hint { height: auto; padding: 0 4; color: $text-muted; }
    QuestionnaireScreen #q-hint.-warning { color: $text-warning; text-style: bold; }
    QuestionnaireScreen #q-copyright { height: auto; padding: 0 4; color: $text-muted; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        *[
            Binding(
                str(d),
                f"digit({d})",
                "Answer",
                show=d == 0,
                key_display="0-9",
                id=f"questionnaire.digit_{d}",
                tooltip="Answer with that number",
            )
            for d in range(10)
        ],
        Binding("enter", "confirm", "Next", id="questionnaire.confirm", tooltip="Confirm the answer (1 or a count)"),
        Binding(
            "left,backspace", "back", "Back", key_display="←", id="questionnaire.back", tooltip="The previous question"
        ),
        Binding("right", "next", "Forward", show=False, id="questionnaire.next", tooltip="The next question"),
        Binding("s", "skip", "Skip", id="questionnaire.skip", tooltip="Leave this question unanswered"),
        Binding("ctrl+s", "save", "Save", priority=True, id="questionnaire.save", tooltip="Store these answers"),
        Binding("escape", "leave", "Leave", id="questionnaire.leave", tooltip="Leave; asks before losing answers"),
    ]
    HELP = (
        "Answer each question with the number keys. On a 0 to 10 scale, 1 waits for a 0 (to make 10) "
        "or Enter (to answer 1). Counts are typed, then Enter. A skipped question stays unanswered "
        "and the measure is stored as incomplete."
    )

    def __init__(
        self, person_id: str, instrument_code: str, time_point: str, *, draft: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__()
        self.instrument = outcomes.get_instrument(instrument_code)
        if time_point not in self.instrument.time_points:
            raise ValueError(f"{self.instrument.title} is not asked at {time_point}.")
        self.person_id = person_id
        self.code = self.instrument.code
        self.time_point = time_point
        self.index = 0  # the question shown; len(items) is the summary
        self.answers: dict[str, int | None] = {}  # None: skipped
        self.typed = ""  # digits typed but not yet confirmed
        self.history: list[OutcomeResponse] | None = None
        self._saving = False
        self.restored = False  # reopened from answers kept at a lock
        if draft:
            self._resume(draft)

    def _resume(self, kept: Mapping[str, Any]) -> None:
        """Start from answers kept at a lock: only valid answers to this instrument's questions are taken."""
        answers = kept.get("answers")
        if isinstance(answers, Mapping):
            for it in self.items:
                if it.id not in answers:
                    continue
                value = answers[it.id]
                if value is None:
                    self.answers[it.id] = None
                elif isinstance(value, int) and not isinstance(value, bool) and it.min_value <= value <= it.max_value:
                    self.answers[it.id] = value
        index = kept.get("index")
        if isinstance(index, int) and not isinstance(index, bool):
            self.index = max(0, min(index, len(self.items)))
        typed = kept.get("typed")
        if isinstance(typed, str) and typed.isdigit() and len(typed) <= 4 and not self.on_summary:
            self.typed = typed
        self.restored = True

    # -- layout ----------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Horizontal(id="q-top"):
            yield Static(f"{SHORT_NAMES.get(self.code, self.code)} · {time_point_label(self.time_point)}", id="q-title")
            yield Static("", id="q-progress")
        with VerticalScroll(id="q-body"):
            yield Static(self.instrument.instructions, id="q-instructions")
            yield Static("", id="q-item")
            yield Static("", id="q-options")
            yield Digits("", id="q-number")
            yield Static("", id="q-summary")
        yield Static("", id="q-hint")
        if self.instrument.copyright:
            # Its licence asks for this line wherever the items are shown.
            yield Static(self.instrument.copyright, id="q-copyright")
        yield KeysFooter()

    def on_mount(self) -> None:
        self._show()
        self._load_history()

    @property
    def items(self) -> tuple[outcomes.Item, ...]:
        return self.instrument.items

    @property
    def on_summary(self) -> bool:
        return self.index >= len(self.items)

    @property
    def item(self) -> outcomes.Item | None:
        return None if self.on_summary else self.items[self.index]

    def responses(self) -> dict[str, int | None]:
        """Every question, None where it was skipped or not reached."""
        return {it.id: self.answers.get(it.id) for it in self.items}

    def has_answers(self) -> bool:
        return bool(self.answers) or bool(self.typed)

    def draft(self) -> tuple[str, dict[str, Any]] | None:
        """What to keep, encrypted, if the vault locks now (answers so far and where we were); None if none."""
        if not self.has_answers():
            return None
        payload: dict[str, Any] = {
            "kind": "measure",
            "person_id": self.person_id,
            "code": self.code,
            "time_point": self.time_point,
            "answers": dict(self.answers),
            "index": self.index,
            "typed": self.typed,
        }
        return draft_key(self.person_id, self.code, self.time_point), payload

    # -- drawing ---------------------------------------------------------------------------------

    def _show(self, hint: str | None = None, warning: bool = False) -> None:
        item = self.item
        progress = self.query_one("#q-progress", Static)
        number = self.query_one("#q-number", Digits)
        summary = self.query_one("#q-summary", Static)
        for selector in ("#q-instructions", "#q-item", "#q-options"):
            self.query_one(selector).display = item is not None
        summary.display = item is None
        number.display = item is not None
        if item is None:
            progress.update("Summary")
            summary.update(summary_content(self.code, self.time_point, self.responses(), self.history))
        else:
            progress.update(f"Question {self.index + 1} of {len(self.items)}")
            self.query_one("#q-item", Static).update(item.text)
            self.query_one("#q-options", Static).update(self._options(item))
            # The answer pressed, in large digits, so the person sees what was taken down.
            current = self.answers.get(item.id)
            number.update(self.typed or ("" if current is None else str(current)))
        hint_widget = self.query_one("#q-hint", Static)
        hint_widget.update(hint if hint is not None else self._hint(item))
        hint_widget.set_class(warning, "-warning")
        self.refresh_bindings()

    def _chosen(self, item: outcomes.Item) -> int | None:
        if self.typed:
            return int(self.typed)
        return self.answers.get(item.id)

    def _options(self, item: outcomes.Item) -> Content:
        chosen = self._chosen(item)
        if not item.options:
            return Content.styled(f"Type a number from {item.min_value} to {item.max_value}, then press Enter.", "")
        if is_scale_to_ten(item):
            cells: list[Content | str] = []
            for option in item.options:
                style = "bold reverse" if option.value == chosen else "bold $text on $panel"
                cells.extend([Content.styled(f" {option.value:>2} ", style), " "])
            width = len(item.options) * 5 - 1
            low = f"{item.min_value} = {item.options[0].label}"
            high = f"{item.max_value} = {item.options[-1].label}"
            ends = low + " " * max(width - len(low) - len(high), 2) + high
            return Content.assemble(*cells, "\n", Content.styled(ends, "$text-muted"))
        lines: list[Content] = []
        for option in item.options:
            picked = option.value == chosen
            lines.append(
                Content.assemble(
                    Content.styled(f" {option.value} ", "bold reverse" if picked else "bold $text on $panel"),
                    "  ",
                    Content.styled(option.label, "bold" if picked else ""),
                )
            )
        return Content("\n").join(lines)

    def _hint(self, item: outcomes.Item | None) -> str:
        if item is None:
            return "Ctrl+S saves · ← goes back to change an answer · Esc throws these answers away"
        if self.typed and is_scale_to_ten(item):
            return f"You pressed {self.typed}: press 0 to make it 10, or Enter to answer {self.typed}."
        if self.typed:
            return f"Press Enter to answer {self.typed}; Backspace rubs out a digit."
        current = self.answers.get(item.id, ...)
        if current is None:
            return "Skipped. Press a number to answer it, or Enter to go on."
        if current is not ...:
            return f"Answered {current}. Press Enter to keep it, or another number to change it."
        if not item.options:
            return "Type the number, then Enter · ← back · s skips"
        if is_scale_to_ten(item):
            return "Press 0 to 9; for 10 press 1 then 0 · ← back · s skips"
        return f"Press {item.min_value} to {item.max_value} · ← back · s skips"

    # -- answering -------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in {"digit", "skip", "confirm", "next"}:
            return not self.on_summary
        if action == "save":
            return self.on_summary
        return True

    def _answer(self, value: int) -> None:
        item = self.item
        assert item is not None
        self.answers[item.id] = value
        self.typed = ""
        self.index += 1
        self._show()

    def action_digit(self, digit: int) -> None:
        item = self.item
        if item is None:
            return
        if not item.options:
            typed = (self.typed + str(digit)).lstrip("0") or "0"
            if int(typed) > item.max_value:
                self._show(f"The most this can be is {item.max_value}.", warning=True)
                return
            self.typed = typed
            self._show()
            return
        if is_scale_to_ten(item):
            if self.typed:
                combined = int(self.typed + str(digit))
                if item.min_value <= combined <= item.max_value:
                    self._answer(combined)
                    return
                self.typed = ""  # not a two-digit answer: the new digit stands on its own
            if digit == 1:
                self.typed = "1"  # may become 10: wait for 0 or Enter
                self._show()
                return
        if item.min_value <= digit <= item.max_value:
            self._answer(digit)
        else:
            self._show(f"{digit} is not one of the answers: press {item.min_value} to {item.max_value}.", warning=True)

    def action_confirm(self) -> None:
        item = self.item
        if item is None:
            return
        if self.typed:
            self._answer(int(self.typed))
        elif item.id in self.answers:
            self.index += 1
            self._show()
        else:
            self._show("Press a number to answer, or s to skip this question.", warning=True)

    def action_skip(self) -> None:
        item = self.item
        if item is None:
            return
        self.answers[item.id] = None
        self.typed = ""
        self.index += 1
        self._show()

    def action_back(self) -> None:
        if self.typed:
            self.typed = self.typed[:-1]
            self._show()
            return
        if self.index == 0:
            self._show("This is the first question.", warning=True)
            return
        self.index -= 1
        self._show()

    def action_next(self) -> None:
        item = self.item
        if item is None:
            return
        if item.id in self.answers:
            self.index += 1
            self._show()
        else:
            self._show("Answer this question first, or press s to skip it.", warning=True)

    # -- leaving and saving ----------------------------------------------------------------------

    def action_leave(self) -> None:
        if self._saving:
            return
        if not self.has_answers():
            self.dismiss(None)
            return

        def answered(discard: bool | None) -> None:
            if discard:
                if self.restored:
                    # Thrown away on purpose: not offered again at the next unlock.
                    discard_later(self.app, draft_key(self.person_id, self.code, self.time_point))
                self.dismiss(None)

        self.app.push_screen(
            ConfirmModal(
                "Throw away these answers? Nothing has been saved.", yes="Throw away", no="Keep going", danger=True
            ),
            answered,
        )

    def action_save(self) -> None:
        if self._saving or not self.on_summary:
            return
        self._saving = True
        self._show("Saving…")
        self._save(self.responses())

    @work(thread=True, exclusive=True, group="questionnaire-history", exit_on_error=False)
    def _load_history(self) -> None:
        self.post_message(OutcomeHistoryLoaded(self.app.store.queries.outcomes(self.person_id)))

    @on(OutcomeHistoryLoaded)
    def _history_loaded(self, message: OutcomeHistoryLoaded) -> None:
        self.history = message.rows
        if self.on_summary:
            self._show()

    @work(thread=True, group="questionnaire-save", exit_on_error=False)
    def _save(self, responses: dict[str, int | None]) -> None:
        try:
            row = self.app.store.service.record_outcome(self.person_id, self.code, self.time_point, responses)
        except InvalidInput as exc:
            self.post_message(QuestionnaireRejected(str(exc)))
            return
        # The answers are in the record now, so answers kept at a lock are obsolete.
        self.app.store.service.discard_draft(draft_key(self.person_id, self.code, self.time_point))
        self.post_message(QuestionnaireSaved(row.id, row.complete))

    @on(QuestionnaireSaved)
    def _saved(self, message: QuestionnaireSaved) -> None:
        self._saving = False
        what = f"{SHORT_NAMES.get(self.code, self.code)} {self.time_point}"
        self.app.notify(f"{what} saved" + ("" if message.complete else " as incomplete"))
        self.dismiss(message.row_id)

    @on(QuestionnaireRejected)
    def _rejected(self, message: QuestionnaireRejected) -> None:
        self._saving = False
        self._show(f"Not saved: {message.sentence}", warning=True)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            if event.worker.group == "questionnaire-save":
                self._saving = False
                self._show("Not saved; your answers are still here. Press Ctrl+S to try again.", warning=True)
            worker_error(self, event)


# -- command palette --------------------------------------------------------------------------------


class MeasureCommands(Provider):
    """On a person's record: 'Take an outcome measure', and one command per measure and time point."""

    def _commands(self) -> list[tuple[str, Callable[[], Any], str]]:
        if getattr(self.app, "store", None) is None:
            return []
        opener = getattr(self.screen, "open_measure", None)
        if not callable(opener):
            return []
        commands: list[tuple[str, Callable[[], Any], str]] = [
            ("Take an outcome measure", partial(opener), "Choose the questionnaire and time point (m on Outcomes)")
        ]
        for code, instrument in outcomes.INSTRUMENTS.items():
            for tp in instrument.time_points:
                commands.append(
                    (f"Outcome measure: {SHORT_NAMES[code]}, {tp}", partial(opener, code, tp), instrument.title)
                )
        return commands

    async def discover(self) -> Hits:
        # Only the general command; the per-measure ones appear when typing ("ucla", "discharge").
        for title, command, help_text in self._commands()[:1]:
            yield DiscoveryHit(title, command, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, command, help_text in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), command, text=title, help=help_text)


# -- answers kept across a lock ---------------------------------------------------------------------


def _kept_measure(payload: Mapping[str, Any]) -> tuple[str, str]:
    code = str(payload.get("code") or "")
    time_point = str(payload.get("time_point") or "")
    instrument = outcomes.INSTRUMENTS.get(code)
    if instrument is None or time_point not in instrument.time_points:
        raise InvalidInput({"draft": "Those kept answers are for a questionnaire this version does not have."})
    return code, time_point


def describe_draft(payload: dict[str, Any]) -> str:
    """ "an unfinished outcome measure (UCLA loneliness, review: 2 of 3 questions answered)" """
    try:
        code, time_point = _kept_measure(payload)
    except InvalidInput:
        return "an unfinished outcome measure"
    answers = payload.get("answers") if isinstance(payload.get("answers"), dict) else {}
    count = len(outcomes.INSTRUMENTS[code].items)
    answered = sum(1 for value in answers.values() if value is not None)
    return (
        f"an unfinished outcome measure ({SHORT_NAMES.get(code, code)}, {time_point}: "
        f"{answered} of {count} questions answered)"
    )


def restore_draft(app: App[Any], key: str, payload: dict[str, Any]) -> None:
    """Reopen the person on their outcomes and the questionnaire at the same question with the answers so far."""
    code, time_point = _kept_measure(payload)
    person_id = str(payload.get("person_id") or "")
    if not person_id:
        raise InvalidInput({"draft": "Those kept answers do not say whose record they belong to."})
    person = push_person(app, person_id, tab="outcomes")
    person.open_measure(code, time_point, draft=payload)
