"""FastTextTable draws and measures like DataTable; KeysFooter shows the current keys, rebuilt only on change."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Input

from sprx_tui.drawing import draw_now
from sprx_tui.widgets.fast_table import FastTextTable
from sprx_tui.widgets.keys_footer import KeysFooter

ROWS = [
    ("Ada Abbot", "🐕 ⚠", "999 106 0537", "Next contact"),
    ("[b]not markup[/b]", "", "", "A reason long enough to be cut by nothing at all"),
    ("Zoë Ōkubo-Łukasiewicz", "语言 🐕🐕 语言", "943 476 5919", ""),
    ("", "", "", "x"),
]
COLUMNS = ("Name", "Flags", "NHS number", "For")


def lines_of(table: DataTable[Any]) -> list[str]:
    return ["".join(segment.text for segment in strip) for strip in table.render_lines(table.region.reset_offset)]


class Tables(App[None]):
    def compose(self) -> ComposeResult:
        for table_class, table_id in ((DataTable, "plain"), (FastTextTable, "fast")):
            table = table_class(id=table_id, cursor_type="row", zebra_stripes=True)
            table.styles.height = 8
            for column in COLUMNS:
                table.add_column(column, key=column)
            yield table

    def fill(self) -> None:
        for table in self.query(DataTable):
            for i, cells in enumerate(ROWS):
                table.add_row(*(Text(cell, no_wrap=True, end="") for cell in cells), key=str(i))


async def test_fast_table_measures_and_draws_like_data_table() -> None:
    app = Tables()
    async with app.run_test(size=(120, 20)) as pilot:
        app.fill()
        await pilot.pause()
        plain, fast = app.query_one("#plain", DataTable), app.query_one("#fast", FastTextTable)
        assert [c.content_width for c in fast.ordered_columns] == [c.content_width for c in plain.ordered_columns]
        assert fast.virtual_size == plain.virtual_size
        assert lines_of(fast) == lines_of(plain)
        assert "[b]not markup[/b]" in "\n".join(lines_of(fast))


class Behind(Screen[None]):
    def compose(self) -> ComposeResult:
        table = FastTextTable(id="behind")
        for column in COLUMNS:
            table.add_column(column, key=column)
        yield table


class TwoModes(App[None]):
    MODES: ClassVar[dict[str, Any]] = {"front": Screen, "behind": Behind}

    def on_mount(self) -> None:
        self.switch_mode("front")


async def test_a_table_filled_behind_and_shown_at_once_is_drawn_at_its_measured_widths() -> None:
    """DataTable kept cells drawn before its idle-time measurement: names were cut to the header's width."""
    app = TwoModes()
    async with app.run_test(size=(120, 20)) as pilot:
        app._init_mode("behind")
        await pilot.pause()
        table = app._screen_stacks["behind"][0].query_one(FastTextTable)
        for i, cells in enumerate(ROWS):
            table.add_row(*(Text(cell, no_wrap=True, end="") for cell in cells), key=str(i))
        table.measure_now()
        app.switch_mode("behind")  # draws at once, before the table idles
        assert "Zoë Ōkubo-Łukasiewicz" in "\n".join(lines_of(table))
        await pilot.pause()
        assert "Zoë Ōkubo-Łukasiewicz" in "\n".join(lines_of(table))


class Opener(FastTextTable):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("enter", "select_cursor", "Open", id="test.open")]


class Keys(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("f7", "noop", "Seven", id="test.seven")]

    def compose(self) -> ComposeResult:
        yield Input(id="a")
        yield Input(id="b")
        yield Opener(id="t")
        yield KeysFooter()

    def action_noop(self) -> None:
        pass


class Footed(App[None]):
    def on_mount(self) -> None:
        self.push_screen(Keys())


async def test_keys_footer_rebuilds_only_when_the_keys_change() -> None:
    app = Footed()
    async with app.run_test(size=(120, 20)) as pilot:
        await pilot.pause()
        footer = app.screen.query_one(KeysFooter)
        rebuilds = 0
        real = footer.recompose

        async def counted() -> None:
            nonlocal rebuilds
            rebuilds += 1
            await real()

        footer.recompose = counted  # type: ignore[method-assign]
        app.screen.query_one("#a").focus()
        await pilot.pause()
        shown = [key.description for key in footer.query("FooterKey")]
        assert "Seven" in shown
        before = rebuilds
        app.screen.query_one("#b").focus()  # another Input: the same keys
        await pilot.pause()
        await pilot.pause()
        assert rebuilds == before
        app.screen.query_one("#t").focus()  # a table brings its own keys
        await pilot.pause()
        await pilot.pause()
        assert rebuilds == before + 1
        assert "Open" in [key.description for key in footer.query("FooterKey")]
        draw_now(app.screen)  # nothing to draw, nothing breaks
