"""A DataTable whose one-line plain-text cells are drawn without a Rich render per cell.

DataTable renders every visible cell through Rich (`Styled(Padding(cell))` -> `render_lines`) and
throws the whole cell cache away on any change (its key holds the table's update count). A caseload
filter changes the table on every keystroke, so each one re-rendered ~250 cells; that was the largest
single cost of a keystroke (BENCHMARKS.md, App). For a cell that is a plain `Text` (no spans, no
style) in a one-line row, the result of that render is known: the padding, the text cut or padded to
the column's width in terminal cells, all in the cell's style. This builds that one segment directly.
Anything else (header, row labels, styled or multi-line cells) goes through DataTable's own path.
"""

from __future__ import annotations

from typing import Any

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual._types import SegmentLines
from textual.widgets import DataTable

from sprx_tui import _textual_hacks as hacks
from sprx_tui.inert import visible


class _FixedStyles:
    """A component's styles with its Rich style worked out once (see FastTextTable.render_lines)."""

    __slots__ = ("_styles", "rich_style")

    def __init__(self, styles: Any) -> None:
        self._styles = styles
        self.rich_style = styles.rich_style

    def __getattr__(self, name: str) -> Any:
        return getattr(self._styles, name)


class FastTextTable(DataTable):
    """DataTable with a fast path for plain one-line Text cells; looks exactly the same."""

    _render_memo: dict[Any, Any] | None = None

    def render_lines(self, crop: Any) -> Any:
        # Within one drawing nothing can restyle the table, yet DataTable asks for its own Rich style and
        # its header and row components' on every line, and each answer walks every ancestor's colours:
        # half of drawing Today's lists (BENCHMARKS.md, App). Worked out once per drawing instead.
        self._render_memo = {}
        try:
            return super().render_lines(crop)
        finally:
            self._render_memo = None

    @property
    def rich_style(self) -> Style:
        memo = self._render_memo
        if memo is None:
            return super().rich_style
        style = memo.get(None)
        if style is None:
            style = memo[None] = super().rich_style
        return style

    def get_component_styles(self, *names: str) -> Any:
        memo = self._render_memo
        if memo is None:
            return super().get_component_styles(*names)
        styles = memo.get(names)
        if styles is None:
            styles = memo[names] = _FixedStyles(super().get_component_styles(*names))
        return styles

    def _render_cell(
        self,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool = False,
        hover: bool = False,
    ) -> SegmentLines:
        if row_index < 0 or column_index < 0:  # header and row labels
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        row_key = self._row_locations.get_key(row_index)
        column_key = self._column_locations.get_key(column_index)
        key: Any = (
            row_key,
            column_key,
            base_style,
            cursor,
            hover,
            self._show_hover_cursor,
            self._update_count,
            self._pseudo_class_state,
        )
        cached = self._cell_render_cache.get(key)
        if cached is not None:
            return cached
        row = self.rows.get(row_key) if row_key is not None else None
        value = self._data.get(row_key, {}).get(column_key) if row_key is not None else None
        pad = self.cell_padding
        if (
            row is None
            or row.height != 1
            or not isinstance(value, Text)
            or value.spans
            or value.style
            or value.justify not in (None, "default", "left")
            or value.overflow not in (None, "fold", "crop")
            or "\n" in value.plain
            or width <= 2 * pad
        ):
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        is_fixed = row_index < self.fixed_rows or column_index < self.fixed_columns
        component_style, post_style = self._get_styles_to_render_cell(
            False,
            False,
            is_fixed,
            hover,
            cursor,
            self.show_cursor,
            self._show_hover_cursor,
            self.cursor_foreground_priority == "css",
            self.cursor_background_priority == "css",
        )
        style = base_style + Style.from_meta({"row": row_index, "column": column_index}) + component_style
        # Cells are record text: any escape or control character still in one is drawn as a placeholder.
        text = set_cell_size(visible(value.plain), width - 2 * pad)
        lines: SegmentLines = [[Segment(f"{' ' * pad}{text}{' ' * pad}", style + post_style)]]
        self._cell_render_cache[key] = lines
        return lines

    def measure_now(self) -> None:
        """Measure rows just added now, rather than when the table next idles.

        A table filled on a screen built behind the current one can be drawn (by the switch to it)
        before it idles: its columns would be drawn at their headers' widths.
        """
        if self._require_update_dimensions:
            self._require_update_dimensions = False
            new_rows = self._new_rows.copy()
            self._new_rows.clear()
            self._update_dimensions(new_rows)

    def _update_dimensions(self, new_rows: Any) -> None:
        columns = self.ordered_columns
        widths = [column.get_render_width(self) for column in columns]
        # A plain one-line Text cell's width is the cell length of its text: what Rich's measure of it
        # returns, without a measure per cell (~30 ms for Today's ~500 rows). Other rows go the usual way.
        others = []
        for row_key in new_rows:
            row = self.rows.get(row_key)
            values = self._data.get(row_key, {})
            if (
                row is None
                or row_key not in self._row_locations
                or row.label is not None
                or row.height != 1
                or not all(isinstance(values.get(column.key), Text) for column in columns)
            ):
                others.append(row_key)
                continue
            for column in columns:
                plain = values[column.key].plain
                width = max(map(cell_len, plain.split("\n"))) if "\n" in plain else cell_len(plain)
                if width > column.content_width:
                    column.content_width = width
        super()._update_dimensions(others)
        if widths != [column.get_render_width(self) for column in self.ordered_columns]:
            # DataTable keeps rows and cells already drawn at the old widths (its caches are keyed
            # by its update count, which a measurement does not change): drop them.
            self._clear_caches()
            self.refresh()


if not hacks.active("fast_table"):  # measuring: DataTable's own drawing and measuring

    class FastTextTable(DataTable):  # type: ignore[no-redef]
        def measure_now(self) -> None:
            pass
