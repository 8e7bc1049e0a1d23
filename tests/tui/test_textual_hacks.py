"""Textual's internals are used in one module only, each workaround behind a version guard and a switch."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from sprx_tui import _textual_hacks as hacks

PACKAGE = Path(hacks.__file__).resolve().parent
# Private Textual names this app has relied on, and imports of Textual's private modules.
PRIVATE = re.compile(
    r"from textual\._|import textual\._|\bgc\.(freeze|unfreeze|set_threshold|collect)\b|"
    r"\.(_stop_propagation|_init_mode|_screen_stacks|_get_default_css|_on_timer_update|_batch_count|_render_cell"
    r"|_css_update_count|_refresh_layout|_css_bases|_nodes|_selected|_update_dimensions|_row_locations)\b"
)


def test_no_private_textual_name_outside_the_hacks_module() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "_textual_hacks.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if PRIVATE.search(line):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)


def test_each_workaround_names_its_upstream_report() -> None:
    report = (PACKAGE.parent / "bench" / "UPSTREAM.md").read_text(encoding="utf-8")
    for hack in hacks.HACKS.values():
        anchor = hack.upstream.split("#", 1)[1].split(" ", 1)[0]
        assert f"## {anchor}\n" in report, hack.name
        assert "draft, to file" in hack.upstream


def test_a_workaround_applies_only_on_the_versions_it_was_checked_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hacks, "SWITCHED_OFF", frozenset())
    monkeypatch.setattr(hacks, "TEXTUAL_VERSION", (8, 2, 8))
    assert hacks.active("gc_freeze")
    monkeypatch.setattr(hacks, "TEXTUAL_VERSION", (8, 3, 0))
    assert not hacks.active("gc_freeze")
    monkeypatch.setattr(hacks, "TEXTUAL_VERSION", (9, 0, 0))
    assert not any(hacks.active(name) for name in hacks.HACKS)


def test_a_workaround_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hacks, "TEXTUAL_VERSION", (8, 2, 8))
    monkeypatch.setenv(hacks.OFF_VARIABLE, "gc_freeze, prepare_areas")
    monkeypatch.setattr(hacks, "SWITCHED_OFF", hacks._switched_off())
    assert not hacks.active("gc_freeze") and not hacks.active("prepare_areas") and hacks.active("no_switch_hold")
    heap = hacks.HeapFreeze()
    assert heap.freeze(collect_young=True) is False and not heap.frozen
    monkeypatch.setenv(hacks.OFF_VARIABLE, "all")
    monkeypatch.setattr(hacks, "SWITCHED_OFF", hacks._switched_off())
    assert not any(hacks.active(name) for name in hacks.HACKS)


def test_a_css_source_is_parsed_once_per_process_for_the_same_variables() -> None:
    from textual.css.stylesheet import Stylesheet

    if not hacks.share_css_parse_cache():
        pytest.skip("shared_css_parse is not active on this Textual (or switched off)")
    css = "Static.shared-parse-probe { color: $accent; }"
    first, second = Stylesheet(variables={"accent": "red"}), Stylesheet(variables={"accent": "red"})
    for sheet in (first, second):
        sheet.add_source(css, read_from=("probe", "CSS"))
    assert first.rules[0] is second.rules[0]  # the second sheet did not parse it again
    other = Stylesheet(variables={"accent": "blue"})
    other.add_source(css, read_from=("probe", "CSS"))
    assert other.rules[0] is not first.rules[0]  # other variables: parsed for them
    assert str(other.rules[0].styles.color) != str(first.rules[0].styles.color)
    broken = Stylesheet(variables={"accent": "red"})
    broken.add_source("Static { color: ; }", read_from=("probe", "BROKEN"))
    with pytest.raises(Exception, match="(?i)css|parse|error"):
        broken.parse()


async def test_draw_now_draws_the_change_just_made(monkeypatch: pytest.MonkeyPatch) -> None:
    """The frame draw_now draws holds what the handler changed just before (not passed on to the screen yet)."""
    from textual.app import App, ComposeResult
    from textual.widgets import Static

    from sprx_tui.drawing import draw_now

    if not hacks.active("draw_now"):
        pytest.skip("draw_now is not active on this Textual (or switched off)")

    def text_of(update: Any) -> str:
        if hasattr(update, "chops"):
            return "".join(strip.text for line in update.chops for strip in line.values() if strip is not None)
        return "".join(strip.text for line in getattr(update, "strips", ()) for strip in line)

    class One(App[None]):
        def compose(self) -> ComposeResult:
            yield Static("before", id="text")

        def change(self) -> None:
            self.query_one("#text", Static).update("after")
            draw_now(self.screen)

    frames: list[str] = []
    by_draw_now: list[str] = []
    draw = hacks._draw

    def traced(screen: Any) -> None:
        n = len(frames)
        draw(screen)
        by_draw_now.extend(frames[n:])

    monkeypatch.setattr(hacks, "_draw", traced)
    app = One()
    async with app.run_test() as pilot:
        await pilot.pause()
        original = app._display

        def display(screen: Any, update: Any) -> None:
            if update is not None:
                frames.append(text_of(update))
            original(screen, update)

        app._display = display  # type: ignore[method-assign]
        app.call_later(app.change)
        await pilot.pause()
        assert any("after" in frame for frame in by_draw_now), (frames, by_draw_now)
