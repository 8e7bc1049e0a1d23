"""Every reliance on Textual's internals, in one place, each with the upstream issue it works around.

Keep this module small: prefer Textual's public API, and when something here is no longer needed (the
upstream issue fixed in the version we require), delete it. Nothing else in `sprx_tui` may use a private
Textual name (`textual._*`, `obj._something` on a Textual object) or change the garbage collector.

Each workaround has a name (`HACKS`), the Textual versions it was checked on, and a draft upstream report
in bench/UPSTREAM.md ("draft, to file": there is no GitHub access from where these were written; once filed,
put the URL next to the name). `active(name)` is False - and the caller falls back to Textual's public
behaviour - when the running Textual is outside that range, or when the environment variable
`SPRX_TEXTUAL_HACKS_OFF` names it (a comma-separated list, or `all`). That variable is read here only; it
is how `bench/bench_app.py` measures the app with and without each workaround in the same run.

Removed because they saved under 20 ms on that benchmark (bench/HISTORY.md, App, 2026-12-07): warm_css
(DOMNode._get_default_css to parse the widgets' CSS ahead) and lay_out_behind (Screen._refresh_layout on a
screen not shown). Gone for a public API: FastTextTable's
DataTable overrides, replaced by a public line-API table (widgets/fast_table.py); and the app-wide key
order wait on Key._stop_propagation, replaced by the contact form's own Tab and save (screens/forms.py).
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import textual
from textual import events
from textual.screen import Screen

TEXTUAL_TESTED = ("8.",)
"""Textual release prefixes the writer-thread check was made against (textual.__version__)."""

OFF_VARIABLE = "SPRX_TEXTUAL_HACKS_OFF"


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:3]:
        match = re.match(r"\d+", piece)
        parts.append(int(match.group()) if match else 0)
    return tuple(parts)


TEXTUAL_VERSION = _version(str(getattr(textual, "__version__", "0")))


@dataclass(frozen=True)
class Hack:
    name: str
    verified: tuple[tuple[int, ...], tuple[int, ...]]  # [from, to) Textual versions it was checked on
    upstream: str  # the issue it works around (a heading of bench/UPSTREAM.md until filed)
    speed: bool = True  # a speed-up (measured by bench_app.py --without each); else a behaviour fix


_CHECKED_ON_8_2 = ((8, 2, 0), (8, 3, 0))

HACKS: dict[str, Hack] = {
    hack.name: hack
    for hack in (
        Hack("gc_freeze", _CHECKED_ON_8_2, "UPSTREAM.md#gc-freeze (draft, to file)"),
        Hack("prepare_areas", _CHECKED_ON_8_2, "UPSTREAM.md#prepare-areas (draft, to file)"),
        Hack("draw_now", _CHECKED_ON_8_2, "UPSTREAM.md#draw-now (draft, to file)"),
        Hack("no_switch_hold", _CHECKED_ON_8_2, "UPSTREAM.md#no-switch-hold (draft, to file)"),
        Hack("keep_area_styles", _CHECKED_ON_8_2, "UPSTREAM.md#keep-area-styles (draft, to file)"),
        Hack("radio_highlight", _CHECKED_ON_8_2, "UPSTREAM.md#radio-highlight (draft, to file)", speed=False),
        Hack("shared_css_parse", _CHECKED_ON_8_2, "UPSTREAM.md#shared-css-parse (draft, to file)"),
        Hack("forget_drawn_lines", _CHECKED_ON_8_2, "UPSTREAM.md#styles-cache-lru (draft, to file)", speed=False),
    )
}


def _switched_off() -> frozenset[str]:
    names = {n.strip() for n in os.environ.get(OFF_VARIABLE, "").split(",") if n.strip()}
    return frozenset(HACKS) if "all" in names else frozenset(names)


SWITCHED_OFF = _switched_off()


def active(name: str) -> bool:
    """Whether the workaround `name` applies: verified on this Textual, and not switched off."""
    hack = HACKS[name]
    low, high = hack.verified
    return low <= TEXTUAL_VERSION < high and name not in SWITCHED_OFF


def textual_is_tested() -> bool:
    return str(getattr(textual, "__version__", "")).startswith(TEXTUAL_TESTED)


# -- the terminal's writer thread (sprx issue 15) --------------------------------------------------
#
# Upstream: "App never exits when the terminal goes away: WriterThread.stop() blocks forever on a full
# queue once the writer thread has died (EIO)" - a DRAFT, not yet filed (no GitHub access from where it
# was written): the text and a bare-Textual reproduction are in bench/repro_writer_thread_hang.py.
# Once filed, put its URL here.
#
# Textual's LinuxDriver writes to the terminal from a thread named "textual-output"
# (textual/drivers/_writer_thread.py). When the terminal goes away its write raises OSError (EIO, EPIPE)
# and the thread ends; the loop then blocks on the thread's full queue, forever. We do not patch the
# driver: sprx_tui.terminal_guard only *notices* that thread dying of a write error (through the public
# threading.excepthook) and locks and exits. The thread's name is the one internal detail used.

OUTPUT_THREAD_NAME = "textual-output"


def is_terminal_writer(thread: threading.Thread | None) -> bool:
    """Whether `thread` is Textual's terminal writer (by its name; any thread on an untested Textual
    whose name says output, so that a renamed thread is still noticed)."""
    if thread is None:
        return False
    if textual_is_tested():
        return thread.name == OUTPUT_THREAD_NAME
    return "output" in thread.name


# -- gc_freeze: long-lived objects out of the collector's walks -------------------------------------
#
# Upstream: bench/UPSTREAM.md "gc-freeze" (draft, to file): Textual's DOM, style caches and compositor
# keep ~200k long-lived objects; every full collection walks them all, and one lands inside a keystroke
# or a save (50-180 ms here). Not Textual's private API, but a process-wide change made for it.
# Fallback: the collector's own settings.


class HeapFreeze:
    """gc.freeze() the long-lived heap and hold full collections for a pause in the typing."""

    def __init__(self) -> None:
        self.frozen = False
        self._thresholds: tuple[int, int, int] | None = None

    def freeze(self, *, collect_young: bool) -> bool:
        """Freeze what is alive (after collecting the young generations, if asked); False when switched off."""
        if not active("gc_freeze"):
            return False
        if collect_young:
            gc.collect(1)
        gc.freeze()
        self.frozen = True
        if self._thresholds is None:
            self._thresholds = gc.get_threshold()
            young, middle, _old = self._thresholds
            gc.set_threshold(young, middle, 1_000_000)
        return True

    @staticmethod
    def full_collections_waiting() -> int:
        """How many middle-generation collections have passed since the last full one."""
        return gc.get_count()[2]

    @staticmethod
    def collect() -> None:
        gc.collect()

    def thaw(self) -> None:
        """Back to the collector's own settings; the frozen objects become collectable again."""
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            self._thresholds = None
        if self.frozen:
            gc.unfreeze()
            self.frozen = False


# -- prepare_areas: a mode's screen built behind the current one ------------------------------------
#
# Upstream: bench/UPSTREAM.md "prepare-areas" (draft, to file): App has no public way to build a mode's
# screen without switching to it (`_init_mode` is private). Fallback: the screen is built by its key.


def init_mode(app: Any, mode: str) -> bool:
    """Build `mode`'s screen stack now, without switching to it; False if not done."""
    init = getattr(app, "_init_mode", None)
    if not active("prepare_areas") or init is None:
        return False
    init(mode)
    return True


# -- no_switch_hold: no 50 ms hold on drawing when switching to a screen built ahead ------------------
#
# Upstream: bench/UPSTREAM.md "no-switch-hold" (draft, to file): App.switch_mode always calls
# delay_update() (50 ms without drawing) to hide a new screen's unstyled first layout, even when the
# mode's screen already exists and is laid out. Relies on switch_mode calling self.delay_update().


@contextlib.contextmanager
def no_update_hold(app: Any, screen_exists: bool) -> Iterator[None]:
    """Within this block App.delay_update does nothing, if the screen switched to already exists."""
    if not (screen_exists and active("no_switch_hold")):
        yield
        return
    app.delay_update = _no_hold  # an instance attribute, shadowing the method for this block only
    try:
        yield
    finally:
        with contextlib.suppress(AttributeError):
            del app.delay_update


def _no_hold(delay: float = 0.05) -> None:
    return None


# -- keep_area_styles: an area's screen styled once, not again at every switch ------------------------
#
# Upstream: bench/UPSTREAM.md "keep-area-styles" (draft, to file): a mode's screen is restyled from
# scratch each time it is switched to, and a new mode's screen restyles the whole app, even when nothing
# its styles depend on changed (`Screen._css_update_count` against `App._css_update_count`; ScreenResume's
# refresh_styles). Fallback: Textual's restyles.


def mark_new_screen_styled(app: Any, screen: Screen) -> None:
    """A screen about to be installed as a mode's: styled as its widgets mount, not by a whole-app restyle."""
    if active("keep_area_styles") and hasattr(app, "_css_update_count"):
        screen._css_update_count = app._css_update_count


class KeepStylesOnResume(Screen):
    """A screen switched back to is shown as it was styled, when nothing its styles depend on changed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._styled_for: tuple[object, ...] | None = None

    def _style_inputs(self) -> tuple[object, ...]:
        app = self.app
        return (getattr(app, "_css_update_count", None), app.theme, app.app_focus, self._css_update_count)

    def mark_styled(self) -> None:
        """Record that the screen is styled for the app as it is now (it was built ahead, or is leaving)."""
        if active("keep_area_styles"):
            self._styled_for = self._style_inputs()

    def _on_screen_suspend(self) -> None:
        self.mark_styled()

    def _on_screen_resume(self, event: events.ScreenResume) -> None:
        # Runs before Screen's own handler, which reads the flag (handlers run down the class tree).
        if active("keep_area_styles") and self._styled_for is not None and self._styled_for == self._style_inputs():
            event.refresh_styles = False


# -- draw_now: draw a screen's pending changes at once, not at the next 1/60 s frame --------------------
#
# Upstream: bench/UPSTREAM.md "draw-now" (draft, to file): no public "flush the screen now"; a change
# made just after a frame waits up to 16.7 ms. Fallback: the next frame draws it.
#
# A widget changed by a handler only *marks* itself (Widget.refresh sets `_repaint_required` /
# `_layout_required` / `_scroll_required`) and hands the request to its screen, by message, when it next goes
# idle (Widget._check_refresh). Calling Screen._on_timer_update straight away drew a frame without those
# widgets' changes (18 of 18 calls on the person screen found some not passed on), so the data waited for the
# next frame anyway. Here each marked widget hands its request on now (its _check_refresh, as at its idle),
# and the frame is drawn by a callback queued on the screen behind those messages.


def _pending(widget: Any) -> bool:
    return bool(
        getattr(widget, "_repaint_required", False)
        or getattr(widget, "_layout_required", False)
        or getattr(widget, "_scroll_required", False)
    )


def draw_now(screen: Screen) -> None:
    if not active("draw_now"):
        return
    if not screen.is_current or getattr(screen.app, "_batch_count", 1):
        return
    with contextlib.suppress(Exception):  # at worst the next frame draws it
        for widget in screen.walk_children(with_self=False):
            if _pending(widget):
                widget._check_refresh()
        screen.call_later(_draw, screen)


def _draw(screen: Screen) -> None:
    if screen.is_current and not getattr(screen.app, "_batch_count", 1):
        screen._on_timer_update()


# -- radio_highlight: a RadioSet's highlight on its pressed button ----------------------------------
#
# Upstream: bench/UPSTREAM.md "radio-highlight" (draft, to file): RadioSet moves its highlight to the
# first button on mount, whatever button is pressed, and has no public way to move the highlight
# (`RadioSet._selected`). A behaviour fix, not a speed-up. Fallback: the highlight starts on the first
# button (the pressed one stays pressed).


def highlight_radio_button(radio_set: Any, button: Any) -> None:
    """Move `radio_set`'s highlight to `button` (one of its buttons) without pressing it."""
    if not active("radio_highlight"):
        return
    with contextlib.suppress(Exception):
        radio_set._selected = list(radio_set.query_children()).index(button)


# -- shared_css_parse: a CSS source parsed once per process, not again at every reparse ----------------
#
# Upstream: bench/UPSTREAM.md "shared-css-parse" (draft, to file): App.refresh_css() - run by a new mode's
# screen (App._init_mode, switch_mode) and by a theme change - re-parses *every* CSS source in a fresh
# Stylesheet, whose own parse cache (`Stylesheet._parse_cache`, 64 entries) starts empty; with this app's
# ~90 sources each refresh re-tokenizes them all. The parse depends only on the source, where it was read
# from, its flags and the CSS variables, so one cache serves every Stylesheet (and every App) of the
# process. Relies on Stylesheet._parse_rules(css, read_from, is_default_rules, tie_breaker, scope) and
# Stylesheet._variables. Fallback: Textual's own per-Stylesheet cache.

_PARSED_LIMIT = 4096
_parsed: dict[tuple[Any, ...], Any] = {}
_variables_key: list[Any] = [None, None]  # [the variables dict last seen, its hashable form]


def share_css_parse_cache() -> bool:
    """Install the process-wide CSS parse cache (once); False when switched off or not possible."""
    from textual.css.stylesheet import Stylesheet

    if not active("shared_css_parse"):
        return False
    original = getattr(Stylesheet, "_parse_rules", None)
    if original is None:
        return False
    if getattr(original, "sprx_shared", False):
        return True

    def _parse_rules(
        self: Any,
        css: str,
        read_from: Any,
        is_default_rules: bool = False,
        tie_breaker: int = 0,
        scope: str = "",
    ) -> Any:
        variables = self._variables
        if _variables_key[0] is not variables:
            _variables_key[:] = [variables, frozenset(variables.items())]
        key = (css, read_from, is_default_rules, tie_breaker, scope, _variables_key[1])
        rules = _parsed.get(key)
        if rules is None:
            rules = original(self, css, read_from, is_default_rules, tie_breaker, scope)
            if len(_parsed) >= _PARSED_LIMIT:
                _parsed.clear()
            _parsed[key] = rules
        return rules

    _parse_rules.sprx_shared = True  # type: ignore[attr-defined]
    Stylesheet._parse_rules = _parse_rules  # type: ignore[method-assign]
    return True


# -- drawn lines kept by an lru_cache on a method (UPSTREAM.md#styles-cache-lru) ---------------------------


def forget_drawn_lines() -> None:
    """Let go of the lines Textual drew for widgets that are gone.

    Textual 8's ``StylesCache.get_inner_outer`` is an ``lru_cache(1024)`` on a method, so its key holds the
    ``StylesCache`` itself: the last 1,024 widgets' style caches stay alive, each with the lines it last drew
    (``Strip`` objects: the names and notes that were on screen). The app empties it at a lock, so no drawn
    line of the session outlives it; the tests, after each app test (full collections walked ~250,000 such
    objects in a test worker). Emptying costs only a few colour pairs, worked out again at the next draw.
    """
    if not active("forget_drawn_lines"):
        return
    from textual._styles_cache import StylesCache

    cache_clear = getattr(getattr(StylesCache, "get_inner_outer", None), "cache_clear", None)
    if cache_clear is not None:
        cache_clear()
