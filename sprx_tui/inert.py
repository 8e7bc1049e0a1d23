"""Text from records, the directory or the server, made inert for the screen: never markup, never raw escapes.

A `str` given to a Static, a DataTable cell, a notification or a palette hit is read as markup: a name
`Jones [/bold]` would stop the app with a MarkupError, `[@click=app.quit]` would become a live action.
And whatever is stored is written to the terminal as it is: an ESC in a name is the start of a terminal
command (a changed window title, a clipboard write). `inert()` gives such text as plain `Text` with every
escape, control and bidi character shown as a visible placeholder (`sprx_rules.gate.visible`); for `Content`
built with a style, wrap the value in `visible()` (`Content.styled(visible(name), "bold")`).
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

from sprx_rules.gate import visible

__all__ = ["inert", "inert_cells", "inert_lines", "visible"]


def inert(value: Any, *, multiline: bool = False, no_wrap: bool | None = None) -> Text:
    """`value` as plain Text shown exactly as written; `None` is empty, other values are shown with `str()`.

    Single-line unless `multiline`, which keeps line breaks and tabs.
    """
    return Text(visible(value, multiline=multiline), no_wrap=no_wrap, end="")


def inert_cells(*values: Any) -> list[Text]:
    """A DataTable row's cells, each inert and not wrapped (what DataTable does with a str in a one-line row)."""
    return [inert(value, no_wrap=True) for value in values]


def inert_lines(*lines: Any) -> Text:
    """Single-line values, each inert, one per line."""
    return Text("\n", end="").join(inert(line) for line in lines)
