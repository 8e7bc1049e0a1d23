"""A table of plain one-line text cells, drawn a line at a time through Textual's public line API.

Today's lists and the caseload show rows of short plain text that change on every keystroke of the
filter. DataTable renders each visible cell through Rich and re-measures every added row cell by cell,
which was the largest single cost of a keystroke (BENCHMARKS.md, App); it used to be sped up by
overriding DataTable's private cell renderer. This is a `ScrollView` instead (as Toolong's log view
is): a row's width in each column is the cell length of its text, known as it is added, and
`render_line` draws one row as one segment - the text cut or padded to each column, in the row's style.

Cells are always inert: whatever a cell holds (a `Text`'s plain text, or a str, never read as markup)
is drawn with escapes and control characters as visible placeholders (`inert.visible`).

The API is the part of DataTable's the screens use (add_column, add_row, clear, move_cursor, row_count,
cursor_row, rows, get_row_index, get_row_at; RowHighlighted and RowSelected), with row keys as strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from sprx_tui.inert import visible

CELL_PADDING = 1


@dataclass
class _Column:
    label: str
    key: str
    width: int  # in terminal cells, without padding
    drop: int | None = None  # left out when too narrow, lowest first; None: always shown
    least: int | None = None  # may be cut (ending in an ellipsis) down to this width before any is left out


ELLIPSIS = "…"


def _plain(cell: object) -> str:
    """A cell's text as it is drawn: inert, on one line."""
    text = cell.plain if isinstance(cell, Text) else str(cell)
    return visible(text)  # a line break too is shown as a placeholder


class TextTable(ScrollView, can_focus=True):
    """Rows of plain one-line text under a header; a row cursor; Enter selects the row."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "text-table--header",
        "text-table--cursor",
        "text-table--even-row",
        "text-table--odd-row",
    }
    # DataTable's look, so the two kinds of table sit side by side.
    DEFAULT_CSS = """
    TextTable {
        background: $surface;
        color: $foreground;
        height: auto;
        max-height: 100%;
        &:focus {
            background-tint: $foreground 5%;
            & > .text-table--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
            & > .text-table--header { background-tint: $foreground 5%; }
        }
        &:dark > .text-table--even-row { background: $surface-darken-1 40%; }
        & > .text-table--header { text-style: bold; background: $panel; color: $foreground; }
        &:ansi > .text-table--header { background: ansi_bright_blue; color: ansi_default; }
        & > .text-table--odd-row { }
        & > .text-table--even-row { background: $surface-lighten-1 50%; }
        & > .text-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Select", show=False),
        Binding("up", "cursor_up", "Cursor up", show=False),
        Binding("down", "cursor_down", "Cursor down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "first", "First row", show=False),
        Binding("end", "last", "Last row", show=False),
    ]

    cursor_row: reactive[int] = reactive(0, init=False)

    class _RowMessage(Message):
        """A row of the table: which table, which row (index and key)."""

        def __init__(self, table: TextTable, cursor_row: int, row_key: str) -> None:
            super().__init__()
            self.table = table
            self.cursor_row = cursor_row
            self.row_key = row_key

        @property
        def control(self) -> TextTable:
            return self.table

    class RowHighlighted(_RowMessage):
        """The cursor moved to a row."""

    class RowSelected(_RowMessage):
        """Enter (or a click) on a row."""

    def __init__(
        self,
        *,
        zebra_stripes: bool = False,
        cursor_type: str = "row",
        name: str | None = None,
        id: str | None = None,  # noqa: A002 - Textual's name for it
        classes: str | None = None,
        disabled: bool = False,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes, disabled=disabled)
        if cursor_type != "row":
            raise ValueError("TextTable has a row cursor only")
        self.zebra_stripes = zebra_stripes
        self._columns: list[_Column] = []
        self.rows: dict[str, tuple[str, ...]] = {}  # row key -> its cells, as drawn; in order
        self._keys: list[str] = []
        self._fitted: tuple[tuple[int, tuple[int, ...]], list[tuple[int, int]]] | None = None  # see `shown_columns`

    # -- content -----------------------------------------------------------------------------------

    def add_column(
        self, label: str, *, key: str | None = None, drop: int | None = None, least: int | None = None
    ) -> str:
        """A column; with `drop`, it is left out when the table is too narrow for all (lowest `drop` first);
        with `least`, its text may first be cut down to that width (ending in an ellipsis).

        So a narrow terminal loses whole columns the screen chose, never the end of a date in a cut column.
        """
        key = key if key is not None else label
        self._columns.append(_Column(_plain(label), key, cell_len(_plain(label)), drop, least))
        for row_key, cells in self.rows.items():
            self.rows[row_key] = (*cells, "")
        self._resized()
        return key

    def add_columns(self, *labels: str) -> list[str]:
        return [self.add_column(label) for label in labels]

    def add_row(self, *cells: object, key: str | None = None) -> str:
        key = key if key is not None else str(len(self._keys))
        if key in self.rows:
            raise ValueError(f"a row with key {key!r} is already in the table")
        texts = tuple(_plain(cell) for cell in cells[: len(self._columns)])
        texts += ("",) * (len(self._columns) - len(texts))
        for column, text in zip(self._columns, texts, strict=True):
            width = cell_len(text)
            if width > column.width:
                column.width = width
        self.rows[key] = texts
        self._keys.append(key)
        self._resized()
        return key

    def add_rows(self, rows: list[tuple[object, ...]]) -> list[str]:
        return [self.add_row(*cells) for cells in rows]

    def clear(self) -> None:
        """Remove every row (the columns stay, at their widths); the cursor goes back to the first row."""
        self.rows.clear()
        self._keys.clear()
        self.set_reactive(TextTable.cursor_row, 0)
        self.scroll_to(0, 0, animate=False, immediate=True)
        self._resized()

    @property
    def column_widths(self) -> list[int]:
        """Each column's width in terminal cells, without its padding."""
        return [column.width for column in self._columns]

    @property
    def row_count(self) -> int:
        return len(self._keys)

    @property
    def cursor_key(self) -> str | None:
        """The key of the row under the cursor (None when the table is empty)."""
        return self._keys[self.cursor_row] if 0 <= self.cursor_row < len(self._keys) else None

    def get_row_index(self, key: str) -> int:
        try:
            return self._keys.index(key)
        except ValueError:
            raise KeyError(key) from None

    def get_row_at(self, index: int) -> list[str]:
        return list(self.rows[self._keys[index]])

    def _resized(self) -> None:
        width = sum(column.width + 2 * CELL_PADDING for column in self._columns)
        if self.is_mounted:
            region = self.scrollable_content_region.width
            width = sum(w + 2 * CELL_PADDING for _i, w in self.shown_columns(region)) if region > 0 else width
        self.virtual_size = Size(width, len(self._keys) + 1)  # + the header
        self.refresh()

    def on_resize(self) -> None:
        self._resized()

    def shown_columns(self, width: int) -> list[tuple[int, int]]:
        """(column index, width) of the columns drawn in `width` cells.

        Columns with a `least` width are cut towards it first; if that is not enough, columns with a
        `drop` number are left out, lowest first, until the rest fit; if they still do not, the last one
        shown is cut, ending in an ellipsis.
        """
        key = (width, tuple(column.width for column in self._columns))
        if self._fitted is not None and self._fitted[0] == key:
            return self._fitted[1]
        shown = list(enumerate(self._columns))
        fitted = _shrunk(shown, width)
        for order in sorted({c.drop for c in self._columns if c.drop is not None}):
            if _total(fitted) <= width:
                break
            shown = [(i, column) for i, column in shown if column.drop != order]
            fitted = _shrunk(shown, width)
        excess = _total(fitted) - width
        if excess > 0 and fitted:
            last, last_width = fitted[-1]
            fitted[-1] = (last, max(1, last_width - excess))
        self._fitted = (key, fitted)
        return fitted

    # -- cursor ------------------------------------------------------------------------------------

    def move_cursor(self, *, row: int | None = None, animate: bool = False) -> None:
        if row is None or not self._keys:
            return
        self.cursor_row = max(0, min(row, len(self._keys) - 1))

    def validate_cursor_row(self, row: int) -> int:
        return max(0, min(row, len(self._keys) - 1)) if self._keys else 0

    def watch_cursor_row(self, old: int, new: int) -> None:
        self._scroll_to_row(new)
        self.refresh()
        key = self.cursor_key
        if key is not None:
            self.post_message(self.RowHighlighted(self, new, key))

    def _scroll_to_row(self, row: int) -> None:
        rows_shown = max(1, self.scrollable_content_region.height - 1)
        top = round(self.scroll_y)
        if row < top:
            self.scroll_to(y=row, animate=False)
        elif row >= top + rows_shown:
            self.scroll_to(y=row - rows_shown + 1, animate=False)

    def action_cursor_up(self) -> None:
        self.move_cursor(row=self.cursor_row - 1)

    def action_cursor_down(self) -> None:
        self.move_cursor(row=self.cursor_row + 1)

    def action_page_up(self) -> None:
        self.move_cursor(row=self.cursor_row - max(1, self.scrollable_content_region.height - 1))

    def action_page_down(self) -> None:
        self.move_cursor(row=self.cursor_row + max(1, self.scrollable_content_region.height - 1))

    def action_first(self) -> None:
        self.move_cursor(row=0)

    def action_last(self) -> None:
        self.move_cursor(row=len(self._keys) - 1)

    def action_select_cursor(self) -> None:
        key = self.cursor_key
        if key is not None:
            self.post_message(self.RowSelected(self, self.cursor_row, key))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None or offset.y < 1:
            return
        row = round(self.scroll_y) + offset.y - 1
        if 0 <= row < len(self._keys):
            self.move_cursor(row=row)
            self.action_select_cursor()

    # -- drawing -----------------------------------------------------------------------------------

    def _line(self, cells: tuple[str, ...], shown: list[tuple[int, int]]) -> str:
        pad = " " * CELL_PADDING
        return "".join(f"{pad}{_fit(cells[i], width)}{pad}" for i, width in shown)

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        shown = self.shown_columns(width)
        base = self.rich_style
        scroll_x = round(self.scroll_x)
        if y == 0:
            style = base + self.get_component_rich_style("text-table--header")
            labels = tuple(column.label for column in self._columns)
            strip = Strip([Segment(self._line(labels, shown), style)])
            return strip.crop_extend(scroll_x, scroll_x + width, style)
        row = round(self.scroll_y) + y - 1
        if not 0 <= row < len(self._keys):
            return Strip.blank(width, base)
        style = base
        if self.zebra_stripes:
            style += self.get_component_rich_style("text-table--odd-row" if row % 2 else "text-table--even-row")
        if row == self.cursor_row:
            style += self.get_component_rich_style("text-table--cursor")
        style += Style.from_meta({"row": row})
        strip = Strip([Segment(self._line(self.rows[self._keys[row]], shown), style)])
        return strip.crop_extend(scroll_x, scroll_x + width, style)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self.refresh()


def _fit(text: str, width: int) -> str:
    """`text` padded or cut to `width` cells; a cut text ends in an ellipsis, so it never reads as whole."""
    if cell_len(text) <= width:
        return set_cell_size(text, width)
    return set_cell_size(text, width - 1) + ELLIPSIS if width > 1 else set_cell_size(text, width)


def _total(fitted: list[tuple[int, int]]) -> int:
    return sum(width + 2 * CELL_PADDING for _i, width in fitted)


def _shrunk(shown: list[tuple[int, _Column]], width: int) -> list[tuple[int, int]]:
    """(index, width) of `shown`, the columns with a `least` width cut (in order) until they fit, if they can."""
    fitted = [(i, column.width) for i, column in shown]
    excess = _total(fitted) - width
    for n, (i, column) in enumerate(shown):
        if excess <= 0:
            break
        if column.least is not None and column.width > column.least:
            cut = min(excess, column.width - column.least)
            fitted[n] = (i, column.width - cut)
            excess -= cut
    return fitted
