"""A person's outcome measures: per measure the time points taken, the figures, change since baseline and a trend."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from textual.containers import VerticalScroll
from textual.content import Content
from textual.widget import Widget
from textual.widgets import Static

from sprx_rules import outcomes
from sprx_rules.validate import ValidationError
from sprx_tui.core.models import OutcomeResponse
from sprx_tui.inert import visible

# Eight heights for one reading; a trend is one small bar per time point, so it reads without colour (NO_COLOR).
BLOCKS = "▁▂▃▄▅▆▇█"
MISSING_MARK = "·"
IMPROVED_MARK = "✓"
LOWER_IS_BETTER = "↓"
TREND_POINTS = 6  # the most recent measures drawn in a trend
BAR_WIDTH = 2  # characters per measure in a trend: wide enough to read as a bar


@dataclass(frozen=True)
class Figure:
    """One reported number of a measure: its name in `OutcomeScore.figures()`, label, range and direction."""

    name: str
    label: str
    low: int
    high: int | None  # None: counts, scaled to the largest value seen
    lower_is_better: bool = False


FIGURES: dict[str, tuple[Figure, ...]] = {
    "ONS4": tuple(
        Figure(item.id, item.label, item.min_value, item.max_value, item.id == "anxiety")
        for item in outcomes.ONS4.items
    ),
    "UCLA3": (Figure("total", "Total (3–9)", 3, 9, True),),
    "SWEMWBS": (Figure("metric", "Metric (7–35)", 7, 35), Figure("raw", "Raw (7–35)", 7, 35)),
    "HEALTH_USE": tuple(Figure(item.id, item.label, 0, None, True) for item in outcomes.HEALTH_USE.items),
}

# What the improvement mark means per measure, in a few words (the full text is IMPROVEMENT_DEFINITIONS).
IMPROVED_SHORT = {
    "ONS4": "improved by 1 point or more",
    "UCLA3": "loneliness down by 1 point or more",
    "SWEMWBS": f"metric up by {outcomes.SWEMWBS_MEANINGFUL_CHANGE:g} points or more",
    "HEALTH_USE": "fewer than at baseline",
}


# -- choosing what to compare ----------------------------------------------------------------------


def live_rows(rows: Iterable[OutcomeResponse], code: str) -> list[OutcomeResponse]:
    """One measure's rows in the order taken, leaving out deleted ones and those entered in error."""
    chosen = [r for r in rows if r.instrument == code and not r.deleted and not r.entered_in_error]
    return sorted(chosen, key=lambda r: (r.taken_on, r.created_at, r.id))


def baseline_row(rows: Sequence[OutcomeResponse]) -> OutcomeResponse | None:
    """The baseline change is measured from: the earliest complete one (as the reports pair them), else the earliest."""
    baselines = [r for r in rows if r.time_point == "baseline"]
    complete = [r for r in baselines if r.complete]
    return (complete or baselines or [None])[0]


def compared_row(rows: Sequence[OutcomeResponse], baseline: OutcomeResponse | None) -> OutcomeResponse | None:
    """The later measure compared with the baseline: the latest complete review or discharge, else the latest one."""
    if baseline is None:
        return None
    later = [
        r
        for r in rows
        if r.time_point != "baseline" and (r.taken_on, r.created_at) >= (baseline.taken_on, baseline.created_at)
    ]
    complete = [r for r in later if r.complete]
    return (complete or later or [None])[-1]


def scored(row: OutcomeResponse) -> outcomes.OutcomeScore | None:
    """Score a stored row from its answers; None if the answers cannot be scored (bad data from elsewhere)."""
    try:
        return outcomes.score(row.instrument, {k: v for k, v in (row.responses or {}).items()})
    except (ValidationError, ValueError, KeyError):
        return None


def figures_of(row: OutcomeResponse | None) -> dict[str, float | int | None]:
    result = scored(row) if row is not None else None
    return result.figures() if result is not None else {}


def changes(
    code: str, baseline: OutcomeResponse | None, later: OutcomeResponse | None
) -> tuple[dict[str, float | int | None], dict[str, bool | None]]:
    """(later minus baseline, improved?) per figure, from the core's rules; empty when there is nothing to compare."""
    before = scored(baseline) if baseline is not None else None
    after = scored(later) if later is not None else None
    if before is None or after is None:
        return {}, {}
    return outcomes.change(code, before, after), outcomes.improved(code, before, after)


# -- formatting --------------------------------------------------------------------------------------


def fmt_value(value: float | int | None) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def fmt_change(value: float | int | None) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:+.2f}" if value else "0.00"
    return f"{value:+d}" if value else "0"


def trend(values: Sequence[float | int | None], low: float, high: float, bar: int = BAR_WIDTH) -> str:
    """One bar per value, its height scaled over low..high; a missing value is dots. E.g. "▃▃ ▅▅ ▇▇"."""
    span = max(high - low, 1)
    glyphs = []
    for value in values:
        if value is None:
            glyphs.append(MISSING_MARK * bar)
            continue
        level = round((min(max(value, low), high) - low) / span * (len(BLOCKS) - 1))
        glyphs.append(BLOCKS[level] * bar)
    return " ".join(glyphs)


def short_date(row: OutcomeResponse) -> str:
    return row.taken_on.strftime("%d/%m/%Y")


# -- the card ------------------------------------------------------------------------------------------


LABEL_WIDTH = 18
COLUMN_WIDTH = 11
CHANGE_WIDTH = 9


class OutcomeMeasureCard(Widget):
    """One measure: a column per time point (as many as fit), change since baseline and a trend per figure."""

    DEFAULT_CSS = """
    OutcomeMeasureCard {
        height: auto;
        border: round $panel-lighten-2;
        border-title-color: $foreground;
        border-title-style: bold;
        border-subtitle-color: $foreground-muted;
        padding: 0 1;
    }
    """

    def __init__(self, code: str, rows: Sequence[OutcomeResponse], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.code = code
        self.rows = live_rows(rows, code)
        self.hidden_in_error = sum(1 for r in rows if r.instrument == code and r.entered_in_error and not r.deleted)
        self.instrument = outcomes.INSTRUMENTS[code]
        self.border_title = self.instrument.title
        taken = len(self.rows)
        self.border_subtitle = f"{taken} taken"

    def render(self) -> Content:
        return self.chart_content(self.content_size.width or 76)

    def chart_content(self, width: int) -> Content:
        code = self.code
        figures = FIGURES[code]
        rows = self.rows
        base = baseline_row(rows)
        later = compared_row(rows, base)
        delta, better = changes(code, base, later)
        values = [figures_of(r) for r in rows]
        points = values[-TREND_POINTS:]
        trend_width = max((BAR_WIDTH + 1) * len(points) - 1, len("Trend"))

        room = max(width - LABEL_WIDTH - CHANGE_WIDTH - trend_width, COLUMN_WIDTH)
        max_columns = max(room // COLUMN_WIDTH, 1)
        shown = list(range(len(rows)))
        if len(shown) > max_columns:
            # Keep the baseline in view, then as many of the latest measures as fit.
            first = next((i for i, r in enumerate(rows) if r is base), None) if max_columns > 1 else None
            others = [i for i in shown if i != first]
            shown = sorted(
                ([first] if first is not None else []) + others[len(others) - (max_columns - (first is not None)) :]
            )
        hidden = len(rows) - len(shown)

        def cell(text: str, style: str = "") -> Content:
            # Time points and figures are stored values: shown as written, never as escapes.
            return Content.styled(visible(text)[: COLUMN_WIDTH - 1].ljust(COLUMN_WIDTH), style)

        head: list[Content | str] = [" " * LABEL_WIDTH]
        dates: list[Content | str] = [" " * LABEL_WIDTH]
        for i in shown:
            row = rows[i]
            label = row.time_point.capitalize() + ("" if row.complete else "*")
            head.append(cell(label, "bold" if row.complete else "bold $text-warning"))
            dates.append(cell(short_date(row), "$text-muted"))
        head.append(Content.styled("Change".ljust(CHANGE_WIDTH), "bold"))
        head.append(Content.styled("Trend", "bold"))
        lines: list[Content] = [Content.assemble(*head), Content.assemble(*dates)]

        counts_high = max([1] + [int(v) for fig in values for v in fig.values() if isinstance(v, int)])
        for figure in figures:
            label = figure.label + (f" {LOWER_IS_BETTER}" if figure.lower_is_better else "")
            parts: list[Content | str] = [label[: LABEL_WIDTH - 1].ljust(LABEL_WIDTH)]
            for i in shown:
                parts.append(cell(fmt_value(values[i].get(figure.name))))
            change_text = fmt_change(delta.get(figure.name)) if delta else "–"
            mark = better.get(figure.name) is True
            parts.append(Content.styled(change_text, "bold" if mark else ""))
            parts.append(
                Content.styled(
                    (f" {IMPROVED_MARK}" if mark else "").ljust(CHANGE_WIDTH - len(change_text)), "bold $text-success"
                )
            )
            high = figure.high if figure.high is not None else counts_high
            parts.append(Content(trend([p.get(figure.name) for p in points], figure.low, high)))
            lines.append(Content.assemble(*parts))

        lines.extend(self._notes(base, later, hidden))
        if self.instrument.copyright:
            lines.append(Content.styled(self.instrument.copyright, "$text-muted"))
        return Content("\n").join(lines)

    def _notes(self, base: OutcomeResponse | None, later: OutcomeResponse | None, hidden: int) -> list[Content]:
        notes: list[Content] = []
        if any(not r.complete for r in self.rows):
            notes.append(
                Content.styled(
                    "* incomplete: some questions were skipped, so it is not scored as complete", "$text-warning"
                )
            )
        if base is None:
            notes.append(Content.styled("No baseline yet, so no change can be shown.", "$text-muted"))
        elif later is None:
            notes.append(
                Content.styled(f"Baseline taken {short_date(base)}; change shows after a later measure.", "$text-muted")
            )
        else:
            notes.append(
                Content.styled(
                    f"Change: {later.time_point} {short_date(later)} against baseline {short_date(base)}"
                    f" · {IMPROVED_MARK} {IMPROVED_SHORT[self.code]}",
                    "$text-muted",
                )
            )
        if hidden:
            notes.append(
                Content.styled(
                    f"{hidden} more measure(s) not shown as columns; the trend draws the latest {TREND_POINTS}.",
                    "$text-muted",
                )
            )
        if self.hidden_in_error:
            notes.append(Content.styled(f"{self.hidden_in_error} entered in error, left out.", "$text-muted"))
        if any(f.lower_is_better for f in FIGURES[self.code]):
            notes.append(Content.styled(f"{LOWER_IS_BETTER} lower is better", "$text-muted"))
        return notes


class OutcomesPanel(VerticalScroll):
    """The outcomes tab: one card per measure taken, in the order the instruments are listed."""

    DEFAULT_CSS = """
    OutcomesPanel { height: 1fr; padding: 0 0 0 1; }
    OutcomesPanel > .outcomes-empty { color: $text-muted; padding: 1 0; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.border_title = "Outcome measures"

    async def show_outcomes(self, rows: Sequence[OutcomeResponse]) -> None:
        codes = [code for code in outcomes.INSTRUMENTS if any(r.instrument == code and not r.deleted for r in rows)]
        await self.remove_children()
        if not codes:
            await self.mount(
                Static(
                    "No outcome measures yet. Press m to take a baseline with the person.",
                    classes="outcomes-empty",
                )
            )
        else:
            await self.mount_all(OutcomeMeasureCard(code, rows, id=f"outcome-{code.lower()}") for code in codes)
        taken = sum(1 for r in rows if not r.deleted and not r.entered_in_error)
        self.border_subtitle = f"{taken} taken"

    def plain_text(self) -> str:
        """What the cards say, as text (for tests and screen readers)."""
        return "\n".join(
            card.chart_content(card.content_size.width or 76).plain for card in self.query(OutcomeMeasureCard)
        )
