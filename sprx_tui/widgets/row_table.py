"""A DataTable whose Home and End move the row cursor, as they do in every other list of the app."""

from __future__ import annotations

from typing import Any

from textual.widgets import DataTable


class RowTable(DataTable[Any]):
    """Textual's DataTable with a row cursor only scrolls sideways on Home and End; here they go to the
    first and the last row (PgUp and PgDn already move the cursor a page)."""

    def action_scroll_home(self) -> None:
        if self.cursor_type == "row" and self.show_cursor and self.row_count:
            self.move_cursor(row=0)
            return
        super().action_scroll_home()

    def action_scroll_end(self) -> None:
        if self.cursor_type == "row" and self.show_cursor and self.row_count:
            self.move_cursor(row=self.row_count - 1)
            return
        super().action_scroll_end()
