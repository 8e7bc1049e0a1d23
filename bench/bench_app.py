"""The link worker's app, headless under Textual's Pilot, on the 10k vault: unlock, filter, open, save; memory.

Each child process runs one app: `bare` is a plain Textual app showing a DataTable of one screenful
(the yardstick of DESIGN.md section 10), `sprx` is the real SprxApp on a copy of the 10k vault.
The parent alternates them round by round and reports medians and the ratio from one invocation.

`--without each` (or a comma-separated list of names from `sprx_tui._textual_hacks.HACKS`) adds one more
`sprx` child per named workaround, run with that workaround switched off (the environment variable
`SPRX_TEXTUAL_HACKS_OFF`, read by `_textual_hacks` only), alternating with the others in the same rounds;
the table then gives what each one saves on unlock -> caseload, filter, open and save.

What "updated" means here: the moment Textual composes the first screen update after the message
that carries the new data has been dispatched (App._display is called; headless, so nothing is
written to a terminal, but layout and rendering of the lines have happened). A wrapper on
`App._display` and the `run_test(message_hook=...)` callback record those instants inside the app;
the keys are sent with `pilot.press`. Pilot's own idle waits (20 ms steps) happen after the key is
sent and are not part of any figure.
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
    return SimpleNamespace(**fields)


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

    def __init__(self, keep: tuple[type, ...] = ()) -> None:
        self.keep = keep
        self.displays: list[float] = []
        self.display_cpu: dict[float, float] = {}  # process CPU time at each screen update
        self.display_screen: dict[float, str] = {}  # the class name of the screen each update drew
        self.messages: list[tuple[float, Any]] = []
        self.message_cpu: dict[float, float] = {}  # process CPU time at each kept message
        self.recent: collections.deque[str] = collections.deque(maxlen=60)

    def hook_display(self, app: Any) -> None:
        original = app._display

        def display(screen: Any, renderable: Any) -> None:
            if renderable is not None:
                t = _now()
                self.displays.append(t)
                self.display_cpu[t] = time.process_time()
                self.display_screen[t] = drawn_label(screen)
            original(screen, renderable)

        app._display = display

    def on_message(self, message: Any) -> None:
        if isinstance(message, self.keep):
            t = _now()
            self.messages.append((t, _summary(message)))
            self.message_cpu[t] = time.process_time()
        else:
            self.recent.append(type(message).__name__)

    def message_after(self, t0: float, match: Callable[[Any], bool]) -> float | None:
        """When the first message since t0 that `match`es was dispatched (scans back from the newest)."""
        found = None
        for t, message in reversed(self.messages):
            if t < t0:
                break
            if match(message):
                found = t
        return found

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

    async def measured(
        pilot: Any, key: str, match: Callable[[float], Callable[[Any], bool]], screen: str
    ) -> tuple[float, float]:
        """Press `key` on an idle app; ms and process CPU ms until `screen` (a class name) is drawn with
        what the matching message carries.

        `match(t0)` builds the predicate after the key was handled (a filter's generation is known only then).
        """
        await pilot.pause()  # start from an idle app
        c0 = time.process_time()
        t0 = last_key_at[0] = _now()
        send_key(pilot.app, key)
        t_msg = await marks.wait_message(t0, match(t0))
        # The screen already shows what the message carries when the app leaves it alone (the same rows
        # again); then nothing is drawn after it, and the interval ends at the message, or at the first
        # update of that screen if the message came first (data read before the screen was switched to).
        await pilot.pause(0.1)
        if marks.first_display_after(t_msg, screen) is None:
            drawn = await marks.display_after(t0, screen=screen)
            if drawn > t_msg:
                return (drawn - t0) * 1000, (marks.display_cpu[drawn] - c0) * 1000
            return (t_msg - t0) * 1000, (marks.message_cpu[t_msg] - c0) * 1000
        shown = await marks.display_after(t_msg, screen=screen)
        return (shown - t0) * 1000, (marks.display_cpu[shown] - c0) * 1000

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
                pilot, "enter", lambda t0: lambda m: m.kind is TodayLoaded, "TodayScreen"
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
                pilot, "f3", lambda t0: lambda m: m.kind is CaseloadLoaded and m.offset == 0, "CaseloadScreen"
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
                    ms, cpu = await measured(pilot, ch, caseload_page(screen), "CaseloadScreen")
                    keys.append(ms)
                    keys_cpu.append(cpu)
                    by_len.setdefault(min(i + 1, 5), []).append(ms)
                # Escape clears the filter: the whole caseload again.
                ms, _cpu = await measured(pilot, "escape", caseload_page(screen), "CaseloadScreen")
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
            rng = random.Random(args.seed)
            for _ in range(args.opens):
                for _ in range(rng.randint(1, 6)):
                    await pilot.press("down")
                ms, cpu = await measured(pilot, "enter", lambda t0: lambda m: m.kind is PersonLoaded, "PersonScreen")
                await wait_for(lambda: isinstance(app.screen, PersonScreen) and app.screen.person is not None)
                await wait_for(lambda: bool(app.screen.query("#overview-body")))
                opens.append(ms)
                opens_cpu.append(cpu)
                await pilot.press("escape")
                await wait_for(lambda: isinstance(app.screen, CaseloadScreen))
            out["open_person_ms"] = summary(opens)
            out["open_person_each_ms"] = [round(x, 1) for x in opens]
            out["open_person_cpu_ms"] = summary(opens_cpu)

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
                app.screen.query_one("#notes", TextArea).text = f"Phoned as arranged (benchmark save {k})."

                ms, cpu = await measured(pilot, "ctrl+s", new_contact_on_timeline, "PersonScreen")
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
            for k in range(args.new_people):
                await pilot.press("a")
                await wait_for(
                    lambda: isinstance(app.screen, PersonFormScreen) and bool(app.screen.query("#given_name"))
                )
                app.screen.query_one("#given_name", Input).value = "Bench"
                app.screen.query_one("#family_name", Input).value = f"Walkin{k:03d}"
                ms, cpu = await measured(pilot, "ctrl+s", new_person_shown, "PersonScreen")
                t_saved = marks.message_after(last_key_at[0], lambda msg: msg.kind is PersonSaved)
                adds_committed.append((t_saved - last_key_at[0]) * 1000 if t_saved is not None else float("nan"))
                adds.append(ms)
                adds_cpu.append(cpu)
                await wait_for(lambda: isinstance(app.screen, PersonScreen))
                await pilot.press("escape")
                await wait_for(lambda: isinstance(app.screen, CaseloadScreen))
            out["add_person_ms"] = summary(adds)
            out["add_person_cpu_ms"] = summary(adds_cpu)
            out["add_person_committed_ms"] = summary(adds_committed)  # Ctrl+S -> PersonSaved (written)
            # -- discharge: Ctrl+S in the discharge form (goals met) -> the GP summary's preview drawn, in the same
            # dialog: from the key to the first frame after EpisodeEnded that shows the preview (drawn_label)
            ends: list[float] = []
            ends_cpu: list[float] = []
            tried = 0
            while len(ends) < args.discharges:
                tried += 1
                if tried > 50 * args.discharges:
                    # Each round ends episodes on the same vault copy: say so rather than walk the list forever.
                    raise RuntimeError("No open episode left below the cursor to discharge; use fewer rounds.")
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
                    pilot, "ctrl+s", lambda t0: lambda m: m.kind is EpisodeEnded, "DischargeModal+summary"
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
    vault = copy_vault(Path(args.vault), "app-")  # saving contacts writes to it
    load_before = machine()
    without = hacks_named(args.without)
    modes = [*MODES, *(f"sprx-no-{name}" for name in without)]
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    try:
        for r, mode in alternating(modes, args.rounds):
            kind, _, off = mode.partition("-no-")
            argv = [PYTHON, SCRIPT, "child", kind, "--vault", str(vault), "--seed", str(args.seed + r)]
            argv += ["--queries", str(args.queries), "--opens", str(args.opens), "--saves", str(args.saves)]
            argv += ["--new-people", str(args.new_people), "--discharges", str(args.discharges)]
            argv += ["--hacks-off", off]
            run = run_child(argv)
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
    finally:
        shutil.rmtree(vault.parent, ignore_errors=True)
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
        (
            "open a person -> header + overview, p50",
            med("open_person_ms", "p50"),
            med("open_person_cpu_ms", "p50"),
            "",
            "",
        ),
        (
            "open a person, p95",
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
        (
            "add a person -> their record shown, p50",
            med("add_person_ms", "p50"),
            med("add_person_cpu_ms", "p50"),
            "",
            "",
        ),
        (
            "add a person -> their record shown, p95",
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
