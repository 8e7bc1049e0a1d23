"""The link worker's app, headless under Textual's Pilot, on the 10k vault: unlock, filter, open, save; memory.

Each child process runs one app: `bare` is a plain Textual app showing a DataTable of one screenful
(the yardstick of DESIGN.md section 10), `sprx` is the real SprxApp on a copy of the 10k vault.
The parent alternates them round by round and reports medians and the ratio from one invocation.

`--without each` (or a comma-separated list of names from `sprx_tui._textual_hacks.HACKS`) adds one more
`sprx` child per named workaround, run with that workaround switched off (the environment variable
`SPRX_TEXTUAL_HACKS_OFF`, read by `_textual_hacks` only), alternating with the others in the same rounds;
the table then gives what each one saves on unlock -> caseload, filter, open and save.

What "shown" means here: the first frame Textual composes (App._display is called; headless, so nothing
is written to a terminal) after the message that carries the new data has been dispatched, *that shows
that data*. A wrapper on `App._display` keeps the text of every frame (the updates applied to a 120x40
grid of characters, as a terminal would) and, at each frame, runs the interval's check on it: in the
region the compositor laid out for the widget (its visible map), the data the message carried - the
opened person's name in the header and their address in the overview, the saved contact's note in the
timeline, the filtered rows' names and total in the caseload table, each Today list's first name, the
preview's first words. A frame drawn after the message without the data (a widget's update not yet
passed on to its screen) does not end the interval. When the screen already showed the data (the same
rows again) nothing is drawn; the interval then ends at the message. The time the bench spends keeping
and checking frames is taken out of every interval (wall and CPU). The `run_test(message_hook=...)`
callback records the messages; the keys are sent as Pilot does, without its idle waits.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from common import (
    DEMO_PASSPHRASE,
    PYTHON,
    VAULT_10K,
    alternating,
    command_line,
    copy_vault,
    emit_json,
    machine,
    median,
    peak_rss_since_reset_mb,
    print_table,
    reset_peak_rss,
    rss_mb,
    run_child,
    scratch_dir,
    self_peak_rss_mb,
    summary,
)

SCRIPT = str(Path(__file__).resolve())
SIZE = (120, 40)
MODES = ("bare", "sprx")
OFF_VARIABLE = "SPRX_TEXTUAL_HACKS_OFF"  # read by sprx_tui._textual_hacks
MEASURES = (  # (key in a child's JSON, p95 sub-key or None, label) for the with/without comparison
    ("unlock_to_caseload_ms", None, "unlock -> caseload"),
    ("filter_keystroke_ms", "p95", "filter p95"),
    ("open_person_ms", "p95", "open p95"),
    ("save_contact_ms", "p95", "save p95"),
    ("open_person_header_ms", "p95", "open: header p95"),
    ("add_person_ms", "p95", "add person p95"),
    ("discharge_ms", "p95", "discharge p95"),
)
_now = time.perf_counter


def send_key(app: Any, key: str) -> None:
    """Post one key to the app exactly as Pilot.press does, without Pilot's waits for idle afterwards.

    Pilot's waits (20 ms sleeps, and a round trip to every widget on the screen) would otherwise run on
    the UI thread inside the very interval being measured.
    """
    import unicodedata

    from textual import events
    from textual.keys import REPLACED_KEYS, _character_to_key, _get_unicode_name_from_key

    if len(key) == 1 and not key.isalnum():
        key = _character_to_key(key)
    try:
        char: str | None = unicodedata.lookup(_get_unicode_name_from_key(REPLACED_KEYS.get(key, key)))
    except KeyError:
        char = key if len(key) == 1 else None
    event = events.Key(key, char)
    event.set_sender(app)
    app._driver.send_message(event)


def _summary(message: Any) -> SimpleNamespace:
    """What the measurements need from a message, without keeping the message (and the rows it carries)."""
    fields: dict[str, Any] = {"kind": type(message)}
    for name in ("generation", "offset", "contact_id", "person_id"):
        if hasattr(message, name):
            fields[name] = getattr(message, name)
    if getattr(message, "person", None) is not None:
        fields["person_id"] = message.person.id
    if hasattr(message, "entries"):
        fields["contact_ids"] = frozenset(e.contact.id for e in message.entries)
    if hasattr(message, "total") and hasattr(message, "rows"):  # a caseload page: what the table must show
        fields["total"] = message.total
        fields["names"] = tuple(row.name for row in message.rows)
    if hasattr(message, "due_today"):  # Today's lists: each one's first name
        lists = (message.due_today, message.overdue, message.new_referrals, message.no_recent_contact)
        fields["first_names"] = tuple(rows[0].name if rows else None for rows in lists)
    if type(message).__name__ == "EpisodeEnded":
        fields["preview_words"] = next((line.strip() for line in message.text.splitlines() if line.strip()), "")
    return SimpleNamespace(**fields)


class Frame:
    """The text of the last frame drawn: every update handed to App._display applied to a grid of characters,
    as a terminal would (a wide character takes two cells: its own and an empty one)."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.width, self.height = size
        self.cells = [[" "] * self.width for _ in range(self.height)]

    def _put(self, y: int, x: int, text: str) -> None:
        if not 0 <= y < self.height or x >= self.width:
            return
        row = self.cells[y]
        if text.isascii():
            text = text[: self.width - x]
            row[x : x + len(text)] = text
            return
        from rich.cells import cell_len

        for ch in text:
            if x >= self.width:
                break
            row[x] = ch
            if cell_len(ch) == 2 and x + 1 < self.width:
                x += 1
                row[x] = ""
            x += 1

    def apply(self, update: Any) -> None:
        kind = type(update).__name__
        if kind == "LayoutUpdate":  # a whole region: lines of strips
            region = update.region
            for y, line in enumerate(update.strips, region.y):
                x = region.x
                for strip in line:
                    self._put(y, x, strip.text)
                    x += strip.cell_length
        elif kind == "ChopsUpdate":  # changed spans of lines: {x: strip} per line
            for y, _x1, _x2 in update.spans:
                for x, strip in update.chops[y].items():
                    if strip is not None:
                        self._put(y, x, strip.text)

    def lines(self, region: Any) -> list[str]:
        """The frame's text in `region` (a textual.geometry.Region), a line a row."""
        return ["".join(row[region.x : region.right]) for row in self.cells[region.y : region.bottom]]


def shown_region(screen: Any, selector: str, frame: Frame) -> list[str] | None:
    """The frame's text where the compositor put the widget `selector` of `screen` (None: not laid out, or
    not visible in this frame)."""
    try:
        widget = screen.query_one(selector)
    except Exception:
        return None
    placed = screen._compositor.visible_widgets.get(widget)
    if placed is None:
        return None
    region, clip = placed
    return frame.lines(region.intersection(clip))


def rows_shown(lines: list[str], names: tuple[str, ...], total: int) -> bool:
    """Whether a table's text shows a caseload page: its total in the title, and its rows' names (the first
    8 characters, as a narrow column may cut them) on consecutive lines (three, or as many as fit)."""
    if not lines or f"({total})" not in lines[0]:
        return False
    if not names:
        return True
    keys = [name[:8] for name in names]
    # Every place a line's name could sit in the page is tried: names repeat (two "Alan Abbot"s), so the first
    # key found in a scrolled table's top line need not be the row it shows.
    for i, line in enumerate(lines[1:], 1):
        for j, key in enumerate(keys):
            if key in line:
                following = min(2, len(keys) - j - 1, len(lines) - 2 - i)
                if all(keys[j + k] in lines[i + k] for k in range(1, following + 1)):
                    return True
    return False


def contains(lines: list[str] | None, words: str) -> bool:
    return lines is not None and bool(words) and any(words in line for line in lines)


def drawn_label(screen: Any) -> str:
    """The class name of a screen being drawn, with "+summary" when it is the discharge dialog drawing the GP
    summary's preview (its second step, filled in and shown in the same dialog, no screen change): the preview's
    text is laid out in this frame's map (hidden, it was in none) and holds what the worker sent."""
    name = type(screen).__name__
    if name == "DischargeModal" and getattr(screen, "ended", None) is not None:
        text = screen.query_one("#preview-text")
        if text in screen._compositor.visible_widgets and str(text.render()).strip():
            return name + "+summary"
    return name


class Marks:
    """Instants recorded inside the app: every screen update, and each message of the `keep` types as it is
    dispatched. Other messages are only named in a short ring (for error reports): holding every message
    would hold every row the app loaded, and grow the very memory and GC work being measured."""

    def __init__(self, keep: tuple[type, ...] = (), size: tuple[int, int] = SIZE) -> None:
        self.keep = keep
        self.displays: list[float] = []
        self.display_cpu: dict[float, float] = {}  # process CPU time at each screen update
        self.display_screen: dict[float, str] = {}  # the class name of the screen each update drew
        self.messages: list[tuple[float, Any]] = []
        self.message_cpu: dict[float, float] = {}  # process CPU time at each kept message
        self.recent: collections.deque[str] = collections.deque(maxlen=60)
        self.frame = Frame(size)
        # The check of the interval being measured: (t0, the message it waits for, whether a frame shows
        # what that message carried); the first frame after the message that passes it, when it came.
        self.expecting: tuple[float, Callable[[Any], bool], Callable[[Any, Any], bool]] | None = None
        self.shown_at: float | None = None
        self.partly: Callable[[Any, Any], bool] | None = None  # a first part of it (the person's header)
        self.partly_at: float | None = None
        # Wall and CPU seconds the bench itself spent in the hook (keeping and checking frames), so far, and
        # at each frame and kept message: taken out of the intervals.
        self.overhead = [0.0, 0.0]
        self.overhead_at: dict[float, tuple[float, float]] = {}

    def hook_display(self, app: Any) -> None:
        original = app._display

        def display(screen: Any, renderable: Any) -> None:
            if renderable is not None:
                t = _now()
                c = time.process_time()
                self.displays.append(t)
                self.display_cpu[t] = c
                self.overhead_at[t] = (self.overhead[0], self.overhead[1])
                self.frame.apply(renderable)
                self.display_screen[t] = drawn_label(screen)
                if self.expecting is not None and self.shown_at is None and self.check(screen):
                    self.shown_at = t
                if self.partly is not None and self.partly_at is None and self.check(screen, self.partly):
                    self.partly_at = t
                self.overhead[0] += _now() - t
                self.overhead[1] += time.process_time() - c
            original(screen, renderable)

        app._display = display

    def expect(
        self,
        t0: float,
        match: Callable[[Any], bool],
        shows: Callable[[Any, Any], bool],
        partly: Callable[[Any, Any], bool] | None = None,
    ) -> None:
        """From now on, look in each frame for what the first message since t0 that `match`es carried (and
        for the first part of it, `partly`, if given)."""
        self.expecting = (t0, match, shows)
        self.shown_at = None
        self.partly = partly
        self.partly_at = None

    def check(self, screen: Any, shows: Callable[[Any, Any], bool] | None = None) -> bool:
        """Whether the frame just kept shows what the awaited message carried (False before it came)."""
        if self.expecting is None:
            return False
        shows = shows or self.expecting[2]
        message = self.awaited()
        if message is None:
            return False
        try:
            return bool(shows(screen, message))
        except Exception:  # a widget not there (yet): not shown
            return False

    def awaited(self) -> Any:
        """The first message since the expected key that matches (as message_after), or None."""
        if self.expecting is None:
            return None
        t0, match, _shows = self.expecting
        found = self._first_after(t0, match)
        return None if found is None else found[1]

    def on_message(self, message: Any) -> None:
        if isinstance(message, self.keep):
            t = _now()
            self.messages.append((t, _summary(message)))
            self.message_cpu[t] = time.process_time()
            self.overhead_at[t] = (self.overhead[0], self.overhead[1])
        else:
            self.recent.append(type(message).__name__)

    def _first_after(self, t0: float, match: Callable[[Any], bool]) -> tuple[float, Any] | None:
        """The first message since t0 that `match`es, with when it was dispatched (scans back from the newest)."""
        found = None
        for t, message in reversed(self.messages):
            if t < t0:
                break
            if match(message):
                found = (t, message)
        return found

    def message_after(self, t0: float, match: Callable[[Any], bool]) -> float | None:
        """When the first message since t0 that `match`es was dispatched."""
        found = self._first_after(t0, match)
        return None if found is None else found[0]

    async def wait_message(self, t0: float, match: Callable[[Any], bool], timeout: float = 30.0) -> float:
        deadline = _now() + timeout
        while True:
            t = self.message_after(t0, match)
            if t is not None:
                return t
            if _now() > deadline:
                kept = [m.kind.__name__ for _, m in self.messages[-20:]]
                raise TimeoutError(f"the app never received the expected message; kept: {kept}, others: {self.recent}")
            await asyncio.sleep(0.001)

    def first_display_after(self, t: float, screen: str | None = None) -> float | None:
        """The first screen update after instant t (of a screen of that class name, if given), or None."""
        found = None
        for d in reversed(self.displays):
            if d <= t:
                break
            if screen is None or self.display_screen.get(d) == screen:
                found = d
        return found

    async def display_after(self, t: float, timeout: float = 10.0, screen: str | None = None) -> float:
        """The first screen update composed after instant t, of `screen` if given (waiting for it if need be)."""
        deadline = _now() + timeout
        while True:
            later = self.first_display_after(t, screen)
            if later is not None:
                return later
            if _now() > deadline:
                raise TimeoutError("no screen update followed")
            await asyncio.sleep(0.001)


# =========================================================================================
# child: a bare Textual app with one screenful of table
# =========================================================================================


def child_bare(args: argparse.Namespace) -> None:
    from textual.app import App, ComposeResult
    from textual.widgets import DataTable, Footer

    marks = Marks()
    rows_at: list[float] = []
    columns = ("Name", "Flags", "NHS number", "Age", "Status", "Last contact", "Next follow-up")
    screenful = [
        (f"Person {i:05d}", "", f"999 {i:03d} {i:04d}", str(20 + i), "Active", "02 Nov", "30 Nov")
        for i in range(SIZE[1] - 2)
    ]

    class Bare(App[None]):
        def compose(self) -> ComposeResult:
            yield DataTable(id="table", cursor_type="row", zebra_stripes=True)
            yield Footer()

        def on_mount(self) -> None:
            table = self.query_one(DataTable)
            table.add_columns(*columns)
            table.add_rows(screenful)
            rows_at.append(_now())

    async def run() -> dict[str, Any]:
        c0 = time.process_time()
        t0 = _now()
        app = Bare()
        marks.hook_display(app)
        async with app.run_test(size=SIZE) as pilot:
            while not rows_at:
                await asyncio.sleep(0.001)
            shown = await marks.display_after(rows_at[0])
            cpu = time.process_time() - c0
            await pilot.pause()
        return {"start_to_table_ms": round((shown - t0) * 1000, 2), "cpu_ms": round(cpu * 1000, 2)}

    result = asyncio.run(run())
    emit_json({"mode": "bare", **result, "peak_rss_mb": round(self_peak_rss_mb(), 1)})


# =========================================================================================
# child: the real app on a copy of the 10k vault
# =========================================================================================


def _filter_mix(rows: list[tuple[str, str, str | None, str | None]], n: int, seed: int) -> list[str]:
    """What a worker types into the caseload filter: names, NHS numbers with spaces, postcodes, misses."""
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < n:
        given, family, nhs, postcode = rng.choice(rows)
        kind = rng.choices(["name", "given+family", "nhs", "postcode", "miss"], [35, 15, 25, 20, 5])[0]
        if kind == "name":
            text = rng.choice([given, family])[: rng.randint(2, 5)]
        elif kind == "given+family":
            text = f"{given[:3]} {family[:3]}"
        elif kind == "nhs" and nhs:
            text = f"{nhs[:3]} {nhs[3:6]} {nhs[6:]}"
        elif kind == "postcode" and postcode:
            text = postcode
        elif kind == "miss":
            text = "zzq"
        else:
            continue
        out.append(text.lower())
    return out


def child_sprx(args: argparse.Namespace) -> None:
    config_dir = scratch_dir("app-config-")  # the app's settings go here, never to the user's folder
    os.environ["SPRX_CONFIG_DIR"] = str(config_dir)
    os.environ[OFF_VARIABLE] = args.hacks_off  # before sprx_tui is imported: _textual_hacks reads it once
    from sqlmodel import Session, select
    from textual.widgets import Input, TextArea

    from sprx_tui.app import SprxApp
    from sprx_tui.config import Config
    from sprx_tui.core import vault as vault_module
    from sprx_tui.core.models import Person
    from sprx_tui.messages import CaseloadLoaded, TodayLoaded, VaultUnlocked
    from sprx_tui.screens.caseload import CaseloadScreen, CaseloadTable
    from sprx_tui.screens.contact import ContactContextLoaded, ContactSaved, ContactScreen
    from sprx_tui.screens.episode import DischargeModal, EpisodeEnded
    from sprx_tui.screens.person import PersonLoaded, PersonScreen, TimelineLoaded
    from sprx_tui.screens.person_form import PersonFormScreen, PersonSaved
    from sprx_tui.screens.today import TodayScreen

    # The KDF runs inside the unlock worker; time it there so it can be taken out of "unlock".
    kdf_ms: list[float] = []
    kdf_cpu_ms: list[float] = []  # process CPU while it ran (the UI thread is idle meanwhile)
    kdf_spans: list[tuple[float, float]] = []
    derive = vault_module._derive_kek

    def timed_derive(*a: Any, **kw: Any) -> Any:
        c, t = time.process_time(), _now()
        try:
            return derive(*a, **kw)
        finally:
            kdf_spans.append((t, _now()))
            kdf_ms.append((_now() - t) * 1000)
            kdf_cpu_ms.append((time.process_time() - c) * 1000)

    vault_module._derive_kek = timed_derive

    marks = Marks(
        keep=(
            VaultUnlocked,
            TodayLoaded,
            CaseloadLoaded,
            PersonLoaded,
            TimelineLoaded,
            ContactContextLoaded,
            ContactSaved,
            PersonSaved,
            EpisodeEnded,
        )
    )
    from sprx_tui import _textual_hacks

    out: dict[str, Any] = {"mode": "sprx", "hacks_off": sorted(_textual_hacks.SWITCHED_OFF)}

    async def wait_for(cond: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = _now() + timeout
        while not cond():
            if _now() > deadline:
                raise TimeoutError("condition never became true")
            await asyncio.sleep(0.001)

    last_key_at = [0.0]
    partly_ms: list[float | None] = [None]

    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()

    async def measured(
        pilot: Any,
        key: str,
        match: Callable[[float], Callable[[Any], bool]],
        shows: Callable[[Any, Any], bool],
        partly: Callable[[Any, Any], bool] | None = None,
        what: str = "",
    ) -> tuple[float, float]:
        """Press `key` on an idle app; ms and process CPU ms until the first frame after the matching message
        that shows what it carried (`shows(screen, message)` on that frame: see Marks.check), less the time the
        bench spent keeping and checking frames meanwhile.

        `match(t0)` builds the predicate after the key was handled (a filter's generation is known only then).
        With `partly`, the ms to the first frame that passes it (a first part of what `shows` checks) are left
        in partly_ms[0].
        """
        await pilot.pause()  # start from an idle app
        profiling = profiler is not None and what == args.profile
        if profiling:
            profiler.enable()
        c0 = time.process_time()
        t0 = last_key_at[0] = _now()
        o0 = tuple(marks.overhead)
        predicate = match(t0)
        marks.expect(t0, predicate, shows, partly)
        partly_ms[0] = None
        send_key(pilot.app, key)
        t_msg = await marks.wait_message(t0, predicate)

        def interval(t_end: float, cpu_end: float) -> tuple[float, float]:
            wall_over, cpu_over = marks.overhead_at[t_end]
            return (
                (t_end - t0 - (wall_over - o0[0])) * 1000,
                (cpu_end - c0 - (cpu_over - o0[1])) * 1000,
            )

        try:
            deadline = _now() + 0.1
            while marks.shown_at is None and _now() < deadline:
                await asyncio.sleep(0.001)
            if marks.shown_at is None and marks.check(pilot.app.screen):
                # The last frame drawn already shows what the message carried (the same rows again): the app
                # leaves the screen alone and draws nothing, so the data is shown when the message comes.
                return interval(t_msg, marks.message_cpu[t_msg])
            deadline = _now() + 10.0
            while marks.shown_at is None:
                if _now() > deadline:
                    raise TimeoutError(
                        f"no frame showed what {key!r} brought ({marks.awaited()!r}); the last frame:\n"
                        + "\n".join("".join(row) for row in marks.frame.cells)
                    )
                await asyncio.sleep(0.001)
            shown = marks.shown_at
            if partly is not None and marks.partly_at is not None:
                partly_ms[0] = interval(marks.partly_at, marks.display_cpu[marks.partly_at])[0]
            return interval(shown, marks.display_cpu[shown])
        finally:
            if profiling:
                profiler.disable()
            marks.expecting = marks.partly = None

    # What each interval's frame must show, in the region the compositor gave the widget (see Marks.check).
    def caseload_shown(screen: Any, msg: Any) -> bool:
        return rows_shown(shown_region(screen, "#caseload", marks.frame) or [], msg.names, msg.total)

    def today_shown(screen: Any, msg: Any) -> bool:
        if not isinstance(screen, TodayScreen):
            return False
        for table_id, name in zip(("due", "overdue", "referrals", "quiet"), msg.first_names, strict=True):
            lines = shown_region(screen, f"#{table_id}", marks.frame)
            if lines is None or (name is not None and not contains(lines, name[:8])):
                return False
        return True

    def header_shown(screen: Any, msg: Any) -> bool:
        """The person's name in the header."""
        if not isinstance(screen, PersonScreen) or screen.person is None or screen.person.id != msg.person_id:
            return False
        return contains(shown_region(screen, "#person-header", marks.frame), screen.person.display_name[:12])

    def person_shown(screen: Any, msg: Any) -> bool:
        """The person's name in the header, and their address (or "Not recorded") in the overview."""
        if not header_shown(screen, msg):
            return False
        person = screen.person
        address = ", ".join(p for p in (person.address, person.postcode) if p) or "Not recorded"
        return contains(shown_region(screen, "#overview-body", marks.frame), address[:12])

    def contact_shown(note: str) -> Callable[[Any, Any], bool]:
        return lambda screen, msg: (
            isinstance(screen, PersonScreen) and contains(shown_region(screen, "#timeline", marks.frame), note)
        )

    def preview_shown(screen: Any, msg: Any) -> bool:
        return isinstance(screen, DischargeModal) and contains(
            shown_region(screen, "#preview-text", marks.frame), msg.preview_words[:16]
        )

    def new_contact_on_timeline(t0: float) -> Callable[[Any], bool]:
        def match(msg: Any) -> bool:
            if msg.kind is not TimelineLoaded:
                return False
            saved = [x for tx, x in marks.messages[-400:] if tx >= t0 and x.kind is ContactSaved]
            return bool(saved) and saved[-1].contact_id in msg.contact_ids

        return match

    def new_person_shown(t0: float) -> Callable[[Any], bool]:
        def match(msg: Any) -> bool:
            if msg.kind is not PersonLoaded:
                return False
            saved = [x for tx, x in marks.messages[-400:] if tx >= t0 and x.kind is PersonSaved]
            return bool(saved) and saved[-1].person_id == msg.person_id

        return match

    def caseload_page(screen: Any) -> Callable[[float], Callable[[Any], bool]]:
        # Read the generation when a message arrives: the key may not have reached the filter yet.
        return lambda t0: lambda m: m.kind is CaseloadLoaded and m.offset == 0 and m.generation == screen._generation

    async def add_person_by_keys(pilot: Any) -> dict[str, Any]:
        """Add one person with a self-referral from the caseload as a worker would, key by key; count the keys.

        F3 (to the caseload, counted though the caseload is already shown), a, the given name, Tab, the family
        name, Ctrl+S: the referral source starts at "Self-referral", so choosing it takes no key.
        """
        app = pilot.app
        given, family = "Keyed", "Walkin"
        keys = ["f3", "a", *given, "tab", *family, "ctrl+s"]
        await pilot.press(keys[0], keys[1])
        await wait_for(lambda: isinstance(app.screen, PersonFormScreen) and bool(app.screen.query("#given_name")))
        await pilot.press(*keys[2:])
        await wait_for(lambda: isinstance(app.screen, PersonScreen) and app.screen.person is not None)
        person = app.screen.person
        referrals = app.store.queries.referrals(person.id)
        assert (person.given_name, person.family_name) == (given, family), (person.given_name, person.family_name)
        assert [r.source for r in referrals] == ["self"], referrals
        await pilot.press("escape")
        await wait_for(lambda: isinstance(app.screen, CaseloadScreen))
        return {"keys": len(keys) - len(given) - len(family), "typed_characters": len(given) + len(family)}

    async def run() -> None:
        t_start = _now()
        app = SprxApp(Path(args.vault), config=Config())
        app.animation_level = "none"
        marks.hook_display(app)
        async with app.run_test(size=SIZE, message_hook=marks.on_message) as pilot:
            # -- start -> unlock screen, then unlock (KDF excluded) -> Today, F3 -> caseload
            await wait_for(lambda: app.screen.query("#passphrase"))
            out["start_to_unlock_screen_ms"] = round((marks.displays[-1] - t_start) * 1000, 1)
            t_screen = _now()
            await pilot.press(*DEMO_PASSPHRASE)
            # A person takes seconds to type a passphrase; the unlock screen uses them to prepare (Today
            # built, modules imported, styles parsed, the heap frozen). Enter comes once that is done,
            # as it would for a person, and how long it took is reported.
            await wait_for(lambda: app.unlock_prepared, timeout=10.0)
            out["unlock_screen_prepared_ms"] = round((_now() - t_screen) * 1000, 1)
            today_ms, today_cpu = await measured(
                pilot, "enter", lambda t0: lambda m: m.kind is TodayLoaded, today_shown
            )
            await wait_for(lambda: isinstance(app.screen, TodayScreen))
            kdf = sum(kdf_ms)
            out["kdf_ms"] = round(kdf, 1)
            out["unlock_to_today_ms"] = round(today_ms - kdf, 1)
            out["kdf_cpu_ms"] = round(sum(kdf_cpu_ms), 1)
            out["unlock_to_today_cpu_ms"] = round(today_cpu - sum(kdf_cpu_ms), 1)
            out["peak_rss_through_unlock_mb"] = round(self_peak_rss_mb(), 1)  # Argon2id's 64 MiB included
            # Where Enter -> Today went: Enter -> KDF start, KDF end -> store open (VaultUnlocked), -> Today's
            # lists read (TodayLoaded), -> Today drawn.
            t_enter = last_key_at[0]
            k0, k1 = kdf_spans[-1]
            t_open = marks.message_after(t_enter, lambda m: m.kind is VaultUnlocked) or k1
            t_lists = marks.message_after(t_enter, lambda m: m.kind is TodayLoaded) or t_open
            t_drawn = t_enter + (today_ms / 1000)
            out["unlock_split_ms"] = {
                "enter_to_kdf": round((k0 - t_enter) * 1000, 1),
                "kdf_end_to_store_open": round((t_open - k1) * 1000, 1),
                "to_lists_read": round((t_lists - t_open) * 1000, 1),
                "to_today_drawn": round((t_drawn - t_lists) * 1000, 1),
            }
            reset = reset_peak_rss()
            caseload_ms, caseload_cpu = await measured(
                pilot, "f3", lambda t0: lambda m: m.kind is CaseloadLoaded and m.offset == 0, caseload_shown
            )
            out["f3_to_caseload_ms"] = round(caseload_ms, 1)
            out["f3_to_caseload_cpu_ms"] = round(caseload_cpu, 1)
            out["unlock_to_caseload_ms"] = round(out["unlock_to_today_ms"] + caseload_ms, 1)
            screen = app.screen
            assert isinstance(screen, CaseloadScreen), type(screen)
            table = screen.query_one(CaseloadTable)
            await wait_for(lambda: table.row_count > 0)
            out["caseload_total"] = screen.total
            out["rss_with_caseload_mb"] = round(rss_mb(), 1)

            # -- the caseload filter: every keystroke of a realistic mix, measured to the updated table
            store = app.store
            with store.lock, Session(store.engine) as s:
                columns = (Person.given_name, Person.family_name, Person.nhs_number, Person.postcode)
                people = list(s.exec(select(*columns).order_by(Person.id)).all())
            await pilot.press("slash")
            await wait_for(lambda: isinstance(app.focused, Input))
            keys: list[float] = []
            keys_cpu: list[float] = []
            by_len: dict[int, list[float]] = {}
            clears: list[float] = []
            for text in _filter_mix(people, args.queries, args.seed):
                for i, ch in enumerate(text):
                    ms, cpu = await measured(pilot, ch, caseload_page(screen), caseload_shown)
                    keys.append(ms)
                    keys_cpu.append(cpu)
                    by_len.setdefault(min(i + 1, 5), []).append(ms)
                # Escape clears the filter: the whole caseload again.
                ms, _cpu = await measured(pilot, "escape", caseload_page(screen), caseload_shown)
                clears.append(ms)
            out["filter_keystroke_ms"] = summary(keys)
            out["filter_keystroke_cpu_ms"] = summary(keys_cpu)
            out["filter_keystroke_ms_by_length"] = {str(k): summary(v) for k, v in sorted(by_len.items())}
            out["filter_clear_ms"] = summary(clears)

            # -- open a person (Enter on a caseload row) -> header and overview on screen; Esc back
            await pilot.press("escape")  # leave the (empty) filter for the table
            await wait_for(lambda: isinstance(app.focused, CaseloadTable))
            opens: list[float] = []
            opens_cpu: list[float] = []
            headers: list[float] = []  # the same opens, to the first frame with the name in the header
            rng = random.Random(args.seed)
            for _ in range(args.opens):
                for _ in range(rng.randint(1, 6)):
                    await pilot.press("down")
                ms, cpu = await measured(
                    pilot,
                    "enter",
                    lambda t0: lambda m: m.kind is PersonLoaded,
                    person_shown,
                    partly=header_shown,
                    what="open",
                )
                headers.append(partly_ms[0] if partly_ms[0] is not None else ms)
                await wait_for(lambda: isinstance(app.screen, PersonScreen) and app.screen.person is not None)
                await wait_for(lambda: bool(app.screen.query("#overview-body")))
                opens.append(ms)
                opens_cpu.append(cpu)
                await pilot.press("escape")
                await wait_for(lambda: isinstance(app.screen, CaseloadScreen))
            out["open_person_ms"] = summary(opens)
            out["open_person_each_ms"] = [round(x, 1) for x in opens]
            out["open_person_cpu_ms"] = summary(opens_cpu)
            out["open_person_header_ms"] = summary(headers)

            # -- save a contact: Ctrl+S in the contact form -> the new contact on the person's timeline
            saves: list[float] = []
            saves_cpu: list[float] = []
            committed: list[float] = []
            for k in range(args.saves):
                await pilot.press("down")
                await pilot.press("enter")
                await wait_for(lambda: isinstance(app.screen, PersonScreen) and app.screen.person is not None)
                person_screen = app.screen
                t = _now()
                await pilot.press("n")
                await marks.wait_message(t, lambda m: m.kind is ContactContextLoaded)
                await wait_for(lambda: isinstance(app.screen, ContactScreen))
                # The note names this process and save, so that no earlier save of this run (or of the vault given
                # with --vault, if it was saved into) can pass for this one on the timeline.
                note = f"benchmark save {os.getpid()}.{k}"
                app.screen.query_one("#notes", TextArea).text = f"Phoned as arranged ({note})."

                ms, cpu = await measured(pilot, "ctrl+s", new_contact_on_timeline, contact_shown(note), what="save")
                t_saved = marks.message_after(last_key_at[0], lambda msg: msg.kind is ContactSaved)
                committed.append((t_saved - last_key_at[0]) * 1000 if t_saved is not None else float("nan"))
                saves.append(ms)
                saves_cpu.append(cpu)
                await wait_for(lambda s=person_screen: app.screen is s)
                await pilot.press("escape")
                await wait_for(lambda: isinstance(app.screen, CaseloadScreen))
            out["save_contact_ms"] = summary(saves)
            out["save_contact_each_ms"] = [round(x, 1) for x in saves]
            out["save_contact_cpu_ms"] = summary(saves_cpu)
            out["save_contact_committed_ms"] = summary(committed)  # Ctrl+S -> ContactSaved (written, fsynced)

            # -- add a person (a self-referral) from the caseload: keys counted once, then Ctrl+S timed
            out["add_person_keys"] = await add_person_by_keys(pilot)
            adds: list[float] = []
            adds_cpu: list[float] = []
            adds_committed: list[float] = []
            adds_header: list[float] = []  # the same saves, to the first frame with the name in the header
            for k in range(args.new_people):
                await pilot.press("a")
                await wait_for(
                    lambda: isinstance(app.screen, PersonFormScreen) and bool(app.screen.query("#given_name"))
                )
                app.screen.query_one("#given_name", Input).value = "Bench"
                app.screen.query_one("#family_name", Input).value = f"Walkin{k:03d}"
                ms, cpu = await measured(
                    pilot, "ctrl+s", new_person_shown, person_shown, partly=header_shown, what="add"
                )
                adds_header.append(partly_ms[0] if partly_ms[0] is not None else ms)
                t_saved = marks.message_after(last_key_at[0], lambda msg: msg.kind is PersonSaved)
                adds_committed.append((t_saved - last_key_at[0]) * 1000 if t_saved is not None else float("nan"))
                adds.append(ms)
                adds_cpu.append(cpu)
                await wait_for(lambda: isinstance(app.screen, PersonScreen))
                await pilot.press("escape")
                await wait_for(lambda: isinstance(app.screen, CaseloadScreen))
            out["add_person_ms"] = summary(adds)
            out["add_person_cpu_ms"] = summary(adds_cpu)
            out["add_person_header_ms"] = summary(adds_header)
            out["add_person_committed_ms"] = summary(adds_committed)  # Ctrl+S -> PersonSaved (written)
            # -- discharge: Ctrl+S in the discharge form (goals met) -> the GP summary's preview drawn, in the same
            # dialog: from the key to the first frame after EpisodeEnded that shows the preview's first words.
            # Only the Active people are listed (2), so that episodes still open are near the top.
            t_active = _now()
            await pilot.press("2")
            await marks.wait_message(
                t_active, lambda m: m.kind is CaseloadLoaded and m.offset == 0 and m.generation == screen._generation
            )
            await pilot.pause()
            ends: list[float] = []
            ends_cpu: list[float] = []
            tried = 0
            while len(ends) < args.discharges:
                tried += 1
                if tried > 50 * args.discharges:
                    # Say so rather than walk the list forever.
                    raise RuntimeError("No open episode left below the cursor to discharge; use fewer --discharges.")
                await pilot.press("down")
                await pilot.press("enter")
                await wait_for(lambda: isinstance(app.screen, PersonScreen) and app.screen.person is not None)
                person_screen = app.screen
                if person_screen.person.status not in ("referred", "active"):
                    await pilot.press("escape")  # this one's episode has ended already
                    await wait_for(lambda: isinstance(app.screen, CaseloadScreen))
                    continue
                await pilot.press("D")
                await wait_for(lambda: isinstance(app.screen, DischargeModal) and bool(app.screen.query("#words")))
                ms, cpu = await measured(
                    pilot, "ctrl+s", lambda t0: lambda m: m.kind is EpisodeEnded, preview_shown, what="discharge"
                )
                ends.append(ms)
                ends_cpu.append(cpu)
                await wait_for(lambda: isinstance(app.screen, DischargeModal) and app.screen.summary is not None)
                await pilot.press("escape")  # not now
                await wait_for(lambda s=person_screen: app.screen is s)
                await pilot.press("escape")
                await wait_for(lambda: isinstance(app.screen, CaseloadScreen))
            out["discharge_ms"] = summary(ends)
            out["discharge_cpu_ms"] = summary(ends_cpu)
            out["peak_rss_after_unlock_mb"] = round(peak_rss_since_reset_mb(), 1) if reset else None
            await pilot.press("ctrl+l")
            await pilot.pause()

    try:
        asyncio.run(run())
    finally:
        shutil.rmtree(config_dir, ignore_errors=True)
    if profiler is not None:
        Path(args.profile_out).parent.mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(args.profile_out)
        print(f"profile of the {args.profile} intervals: {args.profile_out}", file=sys.stderr)
    emit_json(out)


# =========================================================================================
# parent
# =========================================================================================


def hacks_named(spec: str) -> list[str]:
    """The workarounds `--without` names ("each": all of them), checked against _textual_hacks.HACKS."""
    if not spec:
        return []
    from sprx_tui._textual_hacks import HACKS

    names = (
        [n for n, h in HACKS.items() if h.speed]
        if spec == "each"
        else [n.strip() for n in spec.split(",") if n.strip()]
    )
    unknown = [n for n in names if n not in HACKS and n != "all"]
    if unknown:
        raise SystemExit(f"unknown workaround(s) {unknown}; known: {', '.join(HACKS)}, all")
    return names


def run_parent(args: argparse.Namespace) -> None:
    load_before = machine()
    without = hacks_named(args.without)
    modes = [*MODES, *(f"sprx-no-{name}" for name in without)]
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    for r, mode in alternating(modes, args.rounds):
        kind, _, off = mode.partition("-no-")
        # Each child on a fresh copy of the vault: a child saves contacts, adds people and ends episodes,
        # so on a shared copy later rounds started from a different vault (and ran out of open episodes).
        vault = copy_vault(Path(args.vault), "app-") if kind == "sprx" else Path(args.vault)
        argv = [PYTHON, SCRIPT, "child", kind, "--vault", str(vault), "--seed", str(args.seed + r)]
        argv += ["--queries", str(args.queries), "--opens", str(args.opens), "--saves", str(args.saves)]
        argv += ["--new-people", str(args.new_people), "--discharges", str(args.discharges)]
        argv += ["--hacks-off", off]
        try:
            run = run_child(argv)
        finally:
            if kind == "sprx":
                shutil.rmtree(vault.parent, ignore_errors=True)
        if run.returncode != 0:
            sys.stderr.write(run.stdout[-3000:] + run.stderr[-6000:])
            raise SystemExit(f"{mode} child failed (exit {run.returncode})")
        data = run.json()
        data["child_wall_s"] = round(run.wall_s, 1)
        data["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
        results[mode].append(data)
        brief = (
            f"start->table {data['start_to_table_ms']:.0f} ms"
            if mode == "bare"
            else f"unlock->caseload {data['unlock_to_caseload_ms']:.0f} ms, "
            f"filter p95 {data['filter_keystroke_ms']['p95']:.1f} ms, "
            f"open p95 {data['open_person_ms']['p95']:.0f} ms, save p95 {data['save_contact_ms']['p95']:.0f} ms"
        )
        print(f"  round {r + 1}/{args.rounds} {mode:<5} {brief}", file=sys.stderr, flush=True)
        if kind == "sprx" and off and data.get("hacks_off") != [off] and off != "all":
            raise SystemExit(f"{mode}: the child ran with {data.get('hacks_off')} switched off")
    bare = median(d["start_to_table_ms"] for d in results["bare"])
    bare_cpu = median(d["cpu_ms"] for d in results["bare"])
    sprx = results["sprx"]

    def med(key: str, sub: str | None = None) -> float:
        return median(d[key][sub] if sub else d[key] for d in sprx)

    def per_round(key: str) -> str:
        return " ".join(f"{d[key]['p95']:.0f}" for d in sprx)

    unlock = med("unlock_to_caseload_ms")
    unlock_cpu = med("unlock_to_today_cpu_ms") + med("f3_to_caseload_cpu_ms")
    rows = [
        ("bare Textual app: start -> table of one screenful", bare, bare_cpu, "", "yardstick"),
        ("sprx: start -> unlock screen", med("start_to_unlock_screen_ms"), "", "", ""),
        ("sprx: unlock screen shown -> its preparation done (typing)", med("unlock_screen_prepared_ms"), "", "", ""),
        ("sprx: KDF (Argon2id floor, --fast-kdf)", med("kdf_ms"), med("kdf_cpu_ms"), "", "taken out below"),
        ("sprx: Enter -> Today shown (KDF excluded)", med("unlock_to_today_ms"), med("unlock_to_today_cpu_ms"), "", ""),
        ("sprx: F3 -> caseload shown", med("f3_to_caseload_ms"), med("f3_to_caseload_cpu_ms"), "", ""),
        ("sprx: unlock -> caseload (the two above)", unlock, unlock_cpu, "<= 300", f"{unlock / bare:.2f}x bare (<= 2)"),
        (
            "filter keystroke -> table updated, p50",
            med("filter_keystroke_ms", "p50"),
            med("filter_keystroke_cpu_ms", "p50"),
            "",
            "",
        ),
        (
            "filter keystroke -> table updated, p95",
            med("filter_keystroke_ms", "p95"),
            med("filter_keystroke_cpu_ms", "p95"),
            "<= 50",
            per_round("filter_keystroke_ms"),
        ),
        ("open a person -> name in the header, p50", med("open_person_header_ms", "p50"), "", "", ""),
        (
            "open a person -> name in the header, p95",
            med("open_person_header_ms", "p95"),
            "",
            "",
            per_round("open_person_header_ms"),
        ),
        (
            "open a person -> header + overview, p50",
            med("open_person_ms", "p50"),
            med("open_person_cpu_ms", "p50"),
            "",
            "",
        ),
        (
            "open a person -> header + overview, p95",
            med("open_person_ms", "p95"),
            med("open_person_cpu_ms", "p95"),
            "<= 100",
            per_round("open_person_ms"),
        ),
        ("save a contact: Ctrl+S -> written (p50)", med("save_contact_committed_ms", "p50"), "", "", ""),
        (
            "save a contact -> on the timeline, p50",
            med("save_contact_ms", "p50"),
            med("save_contact_cpu_ms", "p50"),
            "",
            "",
        ),
        (
            "save a contact -> on the timeline, p95",
            med("save_contact_ms", "p95"),
            med("save_contact_cpu_ms", "p95"),
            "<= 50",
            per_round("save_contact_ms"),
        ),
        ("add a person (self-referral): Ctrl+S -> written (p50)", med("add_person_committed_ms", "p50"), "", "", ""),
        ("add a person -> name in the header, p50", med("add_person_header_ms", "p50"), "", "", ""),
        (
            "add a person -> name in the header, p95",
            med("add_person_header_ms", "p95"),
            "",
            "",
            per_round("add_person_header_ms"),
        ),
        (
            "add a person -> header + overview, p50",
            med("add_person_ms", "p50"),
            med("add_person_cpu_ms", "p50"),
            "",
            "",
        ),
        (
            "add a person -> header + overview, p95",
            med("add_person_ms", "p95"),
            med("add_person_cpu_ms", "p95"),
            "<= 50",
            per_round("add_person_ms"),
        ),
        (
            "discharge -> the GP summary preview shown, p50",
            med("discharge_ms", "p50"),
            med("discharge_cpu_ms", "p50"),
            "",
            "",
        ),
        (
            "discharge -> the GP summary preview shown, p95",
            med("discharge_ms", "p95"),
            med("discharge_cpu_ms", "p95"),
            "<= 50",
            per_round("discharge_ms"),
        ),
        (
            "keys to add a person with a self-referral (plus the name)",
            sprx[0]["add_person_keys"]["keys"],
            "",
            "",
            "F3 a, given name Tab family name, Ctrl+S",
        ),
        ("peak RSS through unlock, MB (Argon2id included)", med("peak_rss_through_unlock_mb"), "", "", ""),
        ("peak RSS after unlock: caseload, filter, open, save, MB", med("peak_rss_after_unlock_mb"), "", "", ""),
        ("RSS with the caseload shown, MB", med("rss_with_caseload_mb"), "", "", ""),
        ("peak RSS of the bare app, MB", median(d["peak_rss_mb"] for d in results["bare"]), "", "", ""),
    ]
    people = sprx[0]["caseload_total"]
    print(f"\nApp, headless (Pilot), {SIZE[0]}x{SIZE[1]}, {people} people; medians over {args.rounds} rounds")
    print_table(["measure", "wall ms", "CPU ms", "target", "note (p95 per round)"], rows)
    savings = compare_without(results, without, bare)
    emit_json(
        {
            "bench": "app",
            "command": command_line(),
            "machine": load_before,
            "load_after": machine()["loadavg_1m"],
            "people": people,
            "bare_start_to_table_ms": bare,
            "unlock_to_caseload_ms": unlock,
            "ratio_unlock_to_bare": round(unlock / bare, 2),
            "filter_keystroke_p95_ms": med("filter_keystroke_ms", "p95"),
            "open_person_p95_ms": med("open_person_ms", "p95"),
            "open_person_header_p95_ms": med("open_person_header_ms", "p95"),
            "save_contact_p95_ms": med("save_contact_ms", "p95"),
            "add_person_p95_ms": med("add_person_ms", "p95"),
            "add_person_keys": sprx[0]["add_person_keys"]["keys"],
            "discharge_p95_ms": med("discharge_ms", "p95"),
            "peak_rss_after_unlock_mb": med("peak_rss_after_unlock_mb"),
            "savings_ms": savings,
            "runs": results,
        }
    )


def compare_without(results: dict[str, list[dict[str, Any]]], without: list[str], bare: float) -> dict[str, Any]:
    """Medians of each run without one workaround, and what the workaround saves (without - with)."""
    if not without:
        return {}

    def med(runs: list[dict[str, Any]], key: str, sub: str | None) -> float:
        return median(d[key][sub] if sub else d[key] for d in runs)

    base = {label: med(results["sprx"], key, sub) for key, sub, label in MEASURES}
    rows: list[tuple[Any, ...]] = [("all workarounds on", *(f"{base[label]:.1f}" for *_k, label in MEASURES), "")]
    savings: dict[str, Any] = {}
    for name in without:
        runs = results[f"sprx-no-{name}"]
        values = {label: med(runs, key, sub) for key, sub, label in MEASURES}
        saved = {label: round(values[label] - base[label], 1) for label in values}
        savings[name] = {"without": values, "saved": saved}
        cells = [f"{values[label]:.1f} ({saved[label]:+.1f})" for *_k, label in MEASURES]
        ratio = values["unlock -> caseload"] / bare
        rows.append((f"without {name}", *cells, f"{ratio:.2f}x bare"))
    print("\nWithout each workaround (same rounds; medians; in brackets: what it saves, without - with)")
    print_table(["run", *(label + " ms" for *_k, label in MEASURES), "unlock vs bare"], rows)
    return savings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("run", "child"):
        p = sub.add_parser(name)
        if name == "child":
            p.add_argument("kind", choices=MODES)
            p.add_argument("--hacks-off", default="", help="workarounds switched off in this child")
            p.add_argument(
                "--profile",
                choices=("open", "save", "add", "discharge"),
                help="cProfile only these intervals (the bench's own frame checks included); stats to --profile-out",
            )
            p.add_argument("--profile-out", default="bench/out/app.prof")
        p.add_argument("--vault", default=str(VAULT_10K))
        p.add_argument("--rounds", type=int, default=3)
        p.add_argument("--queries", type=int, default=40, help="filter texts typed per round (each key measured)")
        p.add_argument("--opens", type=int, default=20)
        p.add_argument("--saves", type=int, default=15)
        p.add_argument("--new-people", type=int, default=10, help="people added (Ctrl+S in the new-person form)")
        p.add_argument("--discharges", type=int, default=8, help="episodes ended (Ctrl+S in the discharge form)")
        p.add_argument("--seed", type=int, default=1)
        if name == "run":
            p.add_argument(
                "--without",
                default="",
                help="also run the app without each named workaround of sprx_tui._textual_hacks (or 'each')",
            )
    args = parser.parse_args(argv)
    if args.cmd == "child":
        {"bare": child_bare, "sprx": child_sprx}[args.kind](args)
    else:
        run_parent(args)


if __name__ == "__main__":
    main()
