"""Horizontal text bar charts: the bar is made of characters, so the picture survives NO_COLOR and screen readers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from textual.app import RenderResult
from textual.content import Content
from textual.geometry import Size
from textual.widget import Widget

from sprx_tui.inert import visible

# Eighths of a cell, so a bar of 3.4 cells does not look the same as one of 3.
_EIGHTHS = " ▏▎▍▌▋▊▉"
_FULL = "█"
MAX_LABEL = 30


@dataclass(frozen=True)
class Bar:
    """One line of a chart: what it is, how long its bar is, and the figure shown after it."""

    label: str
    value: float
    figure: str


def bar_text(value: float, scale: float, width: int, ascii_only: bool = False) -> str:
    """The bar for `value` out of `scale` in `width` cells; any value above zero shows at least a sliver."""
    if width <= 0 or scale <= 0 or value <= 0:
        return ""
    cells = min(value / scale, 1.0) * width
    if ascii_only:
        return "#" * max(1, round(cells))
    whole = int(cells)
    eighths = int(round((cells - whole) * 8))
    if eighths == 8:
        whole, eighths = whole + 1, 0
    text = _FULL * whole + (_EIGHTHS[eighths] if eighths else "")
    return text or _EIGHTHS[1]


class BarChart(Widget):
    """Label, bar, figure, one line per Bar; bars share one scale (the largest value unless `scale` is given)."""

    DEFAULT_CSS = """
    BarChart {
        height: auto;
        width: 1fr;
    }
    """

    def __init__(
        self,
        bars: Sequence[Bar] = (),
        *,
        scale: float | None = None,
        empty: str = "None recorded.",
        ascii_only: bool = False,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.bars: list[Bar] = list(bars)
        self.scale = scale
        self.empty = empty
        self.ascii_only = ascii_only

    def show(self, bars: Sequence[Bar], *, scale: float | None = None) -> None:
        """Replace the bars (and the scale) and redraw."""
        self.bars = list(bars)
        self.scale = scale
        self.refresh(layout=True)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return max(1, len(self.bars))

    def lines(self, width: int) -> list[Content]:
        """The chart at `width` cells, a Content per bar (also what tests read)."""
        if not self.bars:
            return [Content.styled(self.empty, "$text-muted")]
        label_w = min(max(len(b.label) for b in self.bars), MAX_LABEL, max(8, width // 2))
        figure_w = max(len(b.figure) for b in self.bars)
        bar_w = max(4, width - label_w - figure_w - 2)
        scale = self.scale if self.scale is not None else max((b.value for b in self.bars), default=0.0)
        out = []
        for b in self.bars:
            label = visible(b.label)  # labels can be codes from records: shown as written, never escapes
            label = label if len(label) <= label_w else label[: label_w - 1] + "…"
            bar = bar_text(b.value, scale, bar_w, self.ascii_only)
            out.append(
                Content.assemble(
                    label.ljust(label_w),
                    " ",
                    b.figure.rjust(figure_w),
                    " ",
                    Content.styled(bar, "$primary"),
                )
            )
        return out

    def render(self) -> RenderResult:
        return Content("\n").join(self.lines(self.content_region.width or 60))

    @property
    def plain(self) -> str:
        """The chart as plain text at its current width."""
        return "\n".join(line.plain for line in self.lines(self.content_region.width or 60))
