"""The Textual App: unlock gate, the five work areas on F2–F6, global keys, auto-lock, drafts kept across a lock.

Screen switching uses Textual *modes*, added when the vault unlocks and removed when it locks. Each area
(today, caseload, directory, reports, sync) has its own mode, and F2-F6 always show that area. People's
records, and the forms and dialogs opened from them, are pushed in one more mode, "records" (`push_record`):
Esc on a record goes back to the area it was opened from, and Esc on an area goes back to a record left
open by an area's key, so F3 → a person → F2 → Esc comes back to the person. While locked only the "gate"
mode exists, holding a blank backdrop and the unlock (or first-run) screen; locking switches there and
removes every other mode, so no screen that showed personal data survives a lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime as dt
import functools
import importlib
import inspect
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

from textual import events, on, work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.notifications import SeverityLevel
from textual.reactive import reactive
from textual.screen import Screen
from textual.timer import Timer
from textual.widget import AwaitMount
from textual.worker import Worker, WorkerState

from sprx_tui import _textual_hacks as hacks
from sprx_tui.commands import PersonProvider, SearchFirstPalette, ShellCommandsProvider
from sprx_tui.config import Config
from sprx_tui.core.models import utcnow
from sprx_tui.core.store import DEMO_MARK, CaseStore, engine_lock, get_state, load_actor
from sprx_tui.core.vault import Locked, Vault, VaultError
from sprx_tui.inert import visible
from sprx_tui.messages import DraftsFound, SyncCountsRead, SyncStatusChanged, VaultLocked, VaultUnlocked
from sprx_tui.router import OpenDirectoryFor, OpenPerson
from sprx_tui.screens.lock import Backdrop, DraftOfferScreen
from sprx_tui.themes import SPRX_DEFAULT, SPRX_HIGH_CONTRAST, SPRX_NO_COLOR, setting_for, theme_name
from sprx_tui.widgets.status_bar import AREAS, SyncSummary

# mode -> (module, class) for the five areas; the last three are written by other parts of the project.
AREA_SCREENS: dict[str, tuple[str, str]] = {
    "today": ("sprx_tui.screens.today", "TodayScreen"),
    "caseload": ("sprx_tui.screens.caseload", "CaseloadScreen"),
    "directory": ("sprx_tui.screens.directory", "DirectoryScreen"),
    "reports": ("sprx_tui.screens.reports", "ReportsScreen"),
    "sync": ("sprx_tui.screens.sync", "SyncScreen"),
}
AREA_LABELS = {mode: label for mode, _key, label in AREAS}
RECORDS_MODE = "records"
KEPT_RECORD = "kept-person-record"  # the installed name of the person screen kept for the next person
SPARE_MODE = "spare"  # a mode never shown: the kept person screen is built on its stack, then taken off it
"""The mode holding people's records (and what is opened from them), so an area's key always shows the area."""
IDLE_CHECK_SECONDS = 5.0
LISTS_WAITED_FOR_SECONDS = 0.25
"""At the unlock, Today is shown when its lists are read, or after this long (then with loading marks)."""
FREEZE_AFTER_UNLOCK_SECONDS = 0.5
FREEZE_RETRY_SECONDS = 1.0
LOCK_WAIT_SECONDS = 30.0
QUIT_CONFIRM_SECONDS = 10.0
"""With changes unsent for over a day, a first Ctrl+Q warns; a second within this long quits."""
IDLE_GC_CHECK_SECONDS = 1.0
IDLE_GC_AFTER_QUIET_SECONDS = 1.5
"""While unlocked, full garbage collections wait for a pause this long in the worker's typing."""
IDLE_GC_AT_MOST_EVERY_SECONDS = 20.0
IDLE_GC_BACKLOG = 100
"""...unless this many middle-generation collections have passed since the last full one (Python's own
rule is 10): then it runs anyway, so memory stays bounded through long unbroken work."""
WAL_AUTOCHECKPOINT_PAGES = 10_000
"""While the app is unlocked SQLite copies its write-ahead log into the database only past this many
pages (~40 MB: a large sync); the app does it in a pause of the typing instead (`_checkpoint_when_idle`).
With SQLite's default of 1,000 pages, roughly every 50th save stopped for 250-475 ms to do it."""
CHECKPOINT_CHECK_SECONDS = 2.0
CHECKPOINT_AFTER_QUIET_SECONDS = 1.5
CHECKPOINT_AT_MOST_EVERY_SECONDS = 20.0
SUMMARY_REFRESH_SECONDS = 30.0
GENERIC_ERROR = "Something went wrong, so that was not done. Your records are safe; please try again."


class FreshContextExecutor(ThreadPoolExecutor):
    """The thread pool of the app's workers, each job run in a context of its own.

    Textual's thread workers set their `active_worker` context variable in the pool thread and never
    reset it, so an idle thread kept its last worker alive, and with it that worker's screen, its
    arguments (the store) and its result (rows of names and NHS numbers), past the lock. Run in a
    new context each time, a job's variables go when it ends.
    """

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return super().submit(contextvars.Context().run, fn, *args, **kwargs)


def plain_sentence(exc: BaseException) -> str:
    """One sentence that is safe to show: our own errors say what happened; anything else gets a generic line."""
    from sprx_tui.core.diskfull import DISK_FULL, is_disk_full
    from sprx_tui.core.service import InvalidInput, ServiceError

    if is_disk_full(exc):
        return DISK_FULL  # a full disk is never "something went wrong", nor damage
    if isinstance(exc, InvalidInput) and getattr(exc, "errors", None):
        return next(iter(exc.errors.values()))
    if isinstance(exc, VaultError | ServiceError):
        return str(exc) or GENERIC_ERROR
    # Other exceptions may carry SQL parameters or file paths (personal data), so their text is never shown.
    return GENERIC_ERROR


def _import_optional(module: str, name: str) -> Any | None:
    """`module.name`, or None when that module is not part of this build; real bugs inside it still raise."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and (module == exc.name or module.startswith(exc.name + ".")):
            return None
        raise
    return getattr(mod, name, None)


class RecordsBackdrop(Backdrop):
    """The base of the records' mode; never shown for long: with no record left on it, the app goes back."""

    def on_screen_resume(self) -> None:
        leave = getattr(self.app, "leave_records", None)
        if callable(leave):
            self.app.call_later(leave)


class SprxApp(App[int]):
    """The link worker's app. Pass `store=` to start unlocked (tests, snapshots)."""

    TITLE = "sprx"
    SUB_TITLE = ""
    CSS_PATH = "app.tcss"
    ENABLE_COMMAND_PALETTE = True
    COMMANDS = App.COMMANDS | {PersonProvider, ShellCommandsProvider}
    # Copying personal data to the clipboard is a governance decision, not a default.
    ALLOW_SELECT = False
    BINDING_GROUP_TITLE = "Everywhere"
    # The locked app lives in the "gate" mode: an empty backdrop with the unlock screen on top.
    MODES: ClassVar[dict[str, str | Callable[[], Screen]]] = {"gate": Backdrop}
    DEFAULT_MODE: ClassVar[str] = "gate"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f1", "help", "Help", id="app.help", tooltip="Keys for this screen"),
        Binding(
            "ctrl+p",
            "command_palette",
            "Commands",
            id="app.palette",
            priority=True,
            show=False,
            tooltip="Search people and commands",
        ),
        Binding(
            "ctrl+l", "lock", "Lock", id="app.lock", priority=True, tooltip="Lock now; nothing personal stays on screen"
        ),
        Binding("escape", "back", "Back", id="app.back", show=False, tooltip="Close this screen"),
        Binding("ctrl+q", "quit", "Quit", id="app.quit", priority=True, show=False, tooltip="Lock and quit"),
        Binding("ctrl+c", "help_quit", show=False, system=True),
        Binding("f2", "area('today')", "Today", id="app.today", priority=True, show=False, tooltip="Today's work"),
        Binding("f3", "area('caseload')", "Caseload", id="app.caseload", priority=True, show=False),
        Binding("f4", "area('directory')", "Directory", id="app.directory", priority=True, show=False),
        Binding("f5", "area('reports')", "Reports", id="app.reports", priority=True, show=False),
        Binding("f6", "area('sync')", "Sync", id="app.sync", priority=True, show=False),
        Binding("f9", "settings", "Settings", id="app.settings", show=False, tooltip="Auto-lock, theme, passphrase"),
    ]

    sync_summary: reactive[SyncSummary] = reactive(SyncSummary, init=False, always_update=True)

    def __init__(
        self,
        vault_path: Path,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
        config: Config | None = None,
        store: CaseStore | None = None,
    ) -> None:
        super().__init__()
        self.vault_path = Path(vault_path)
        self.clock = clock
        self.config = config if config is not None else Config.load()
        self.store: CaseStore | None = None
        self._given_store = store
        # The vault's back-off clock follows the app clock, so a test's fake clock drives both.
        self.vault: Vault = store.vault if store is not None else Vault(self.vault_path, clock=self._epoch)
        # Serialises lock and unlock work, so a slow lock (saving drafts) finishes before the next unlock starts.
        self.vault_guard = threading.Lock()
        self._area_modes: set[str] = set()
        # A record pushed in the records' mode -> the area it was opened from (Esc there goes back to it).
        self._record_origin: weakref.WeakKeyDictionary[Screen, str] = weakref.WeakKeyDictionary()
        self._records_from = "today"  # the area the last record was opened from: where an emptied records' mode returns
        self._last_input = clock()
        self._sync: Any | None = None
        self._heap = hacks.HeapFreeze()
        hacks.share_css_parse_cache()
        self.unlock_prepared = False  # the unlock screen's preparation is done (Today built, styles parsed)
        self._session_refs: list[weakref.ref[Any]] = []  # the last session's store and screens, after a lock
        self._kept_record: Screen[Any] | None = None  # the person screen kept for the next person (record_screen)
        self._freeze_retries = 0
        self._shown_store: CaseStore | None = None  # the store whose unlock has left the unlock screen
        self._last_input_at = time.monotonic()  # real time, for the idle collection (the clock may be fake)
        self._last_full_gc_at = 0.0
        self._idle_gc_timer: Timer | None = None
        self._checkpoint_timer: Timer | None = None
        self._last_checkpoint_at = 0.0
        self.last_checkpoint: tuple[int, int, int] | None = None  # SQLite's (busy, log frames, checkpointed)
        self._draft_offers: list[tuple[str, dict[str, Any], str]] = []
        self.terminal_guard: Any | None = None  # terminal_guard.TerminalGuard, in a real terminal
        self.register_theme(SPRX_DEFAULT)
        self.register_theme(SPRX_HIGH_CONTRAST)
        self.register_theme(SPRX_NO_COLOR)
        self.theme = self.theme_for(self.config.theme)

    def theme_for(self, setting: str) -> str:
        """The Textual theme for a theme setting: with NO_COLOR set, always the black-and-white one."""
        return SPRX_NO_COLOR.name if self.no_color else theme_name(setting)

    def _epoch(self) -> float:
        return self.clock().timestamp()

    # -- start-up ----------------------------------------------------------------------------------

    def on_mount(self) -> None:
        self.title = "sprx"
        self.sub_title = ""
        if self.config.keymap:
            self.set_keymap(self.config.keymap)
        if self.config.load_problem:
            self.notify(self.config.load_problem, severity="warning")
        self.set_interval(IDLE_CHECK_SECONDS, self.check_auto_lock)
        self.set_interval(SUMMARY_REFRESH_SECONDS, self.refresh_sync_summary)
        if not self.is_headless:
            self._install_signal_handlers()
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().set_default_executor(FreshContextExecutor(thread_name_prefix="sprx-worker"))
        if self._given_store is not None:
            store, self._given_store = self._given_store, None
            self.enter_unlocked(store, offer_drafts=False)
        else:
            self.push_screen(self._gate_screen())

    def _gate_screen(self) -> Screen:
        from sprx_tui.screens.unlock import FirstRunScreen, UnlockScreen

        return UnlockScreen() if Vault.exists(self.vault_path) else FirstRunScreen()

    def _install_signal_handlers(self) -> None:
        """SIGTERM, SIGHUP or the terminal gone: lock first, then exit within seconds (terminal_guard).

        Plain signal handlers and a watch thread, not `loop.add_signal_handler`: a dead terminal can
        block this loop for ever, and handlers on it then never ran (issue 15).
        """
        from sprx_tui.terminal_guard import TerminalGuard

        guard = TerminalGuard(self)
        if guard.install():  # False on Windows or off the main thread: auto-lock and Ctrl+L still apply
            self.terminal_guard = guard

    def _terminate(self, sig: int) -> None:
        """Lock (bounded, keeping drafts), then exit with 128 + the signal."""
        self.lock_before_exit("signal")
        self.exit(return_code=128 + int(sig))

    # -- unlock ------------------------------------------------------------------------------------

    @on(VaultUnlocked)
    def _vault_unlocked(self, message: VaultUnlocked) -> None:
        self.enter_unlocked(message.store)

    def enter_unlocked(self, store: CaseStore, *, offer_drafts: bool = True) -> None:
        """Show Today for a freshly opened store; start sync and offer back drafts kept at the last lock.

        When Today was built behind the unlock screen, its lists are read first and Today is switched
        to once they are on it (or after LISTS_WAITED_FOR_SECONDS, with loading marks): one paint
        instead of an empty Today, four loading marks and then the lists. The unlock screen says
        "Unlocking…" meanwhile.
        """
        self.store = store
        self.vault = store.vault
        self._last_input = self.clock()
        today = self._prepared_screen("today")
        read_lists = getattr(today, "read_lists", None)
        if read_lists is None:
            self._show_unlocked(store, offer_drafts)
            self.refresh_sync_summary()
            return
        # Today's read also refreshes the sync counts, after it (one reader of the store at a time).
        show = functools.partial(self._show_unlocked, store, offer_drafts)
        read_lists(store, then=show)
        self.set_timer(LISTS_WAITED_FOR_SECONDS, show)

    def _show_unlocked(self, store: CaseStore, offer_drafts: bool) -> None:
        """Leave the unlock screen for Today (once per unlock: the lists' arrival or the wait's end)."""
        if self.store is not store or self._shown_store is store:
            return  # locked again meanwhile, or already shown
        self._shown_store = store
        while len(self.screen_stack) > 1:
            self.pop_screen()
        self.action_area("today")
        self._start_sync()
        self._start_checkpoints(store)
        if offer_drafts:
            self._find_drafts(store)
        self.set_timer(FREEZE_AFTER_UNLOCK_SECONDS, self._freeze_heap)

    def _prepared_screen(self, mode: str) -> Screen | None:
        """The screen `prepare_area` built for `mode`, if there is one."""
        if mode not in self._area_modes:
            return None
        stack = self._stack_of(mode)
        return stack[0] if stack else None

    def _stack_of(self, mode: str) -> list[Screen]:
        """The screens of `mode` (none if its screen was never built)."""
        try:
            return self.get_screen_stack(mode)
        except KeyError:
            return []

    def on_unmount(self) -> None:
        # However the app ends (quit, a test finishing), leave the collector as it was found.
        self._thaw_heap()

    def _freeze_heap(self) -> None:
        """Take the long-lived objects out of the cyclic collector's walks, and hold full collections
        for a pause in the typing.

        Textual's DOM, its caches and SQLAlchemy's metadata are ~200k objects that live until the lock;
        without this every full collection walks them all and a keystroke stalls for up to ~180 ms
        (BENCHMARKS.md, App). Done twice: at the unlock screen, once its preparation is over (a full
        collection of 50-100 ms otherwise landed inside the unlock), and after the unlock for the
        session's own objects. A lock unfreezes (`_thaw_heap`), so the session's objects are freed;
        the unlock screen's freeze waits until they are gone, so none is ever frozen with them.
        """
        if not self.is_running:
            # Closing (or closed): the warm-up thread or a timer can still call here after on_unmount
            # has thawed the heap, and nothing would thaw it again.
            return
        if self.store is None:
            if not hacks.active("gc_freeze"):
                return
            hacks.HeapFreeze.collect()
            if any(ref() is not None for ref in self._session_refs):
                if self._freeze_retries > 0:  # a lock still finishing holds them: try again shortly
                    self._freeze_retries -= 1
                    self.set_timer(FREEZE_RETRY_SECONDS, self._freeze_before_unlock)
                return
            self._session_refs = []
        # Full (oldest-generation) collections still walked every object made since, 50-150 ms,
        # landing in the middle of a save or a keystroke (save p95 186 ms, 48 ms without them).
        # Young generations are still collected as usual; the full one waits for a pause.
        if not self._heap.freeze(collect_young=self.store is not None):  # before the unlock: collected above
            return
        self._last_full_gc_at = time.monotonic()
        if self._idle_gc_timer is None:
            self._idle_gc_timer = self.set_interval(IDLE_GC_CHECK_SECONDS, self._collect_when_idle)

    def _freeze_before_unlock(self) -> None:
        if self.store is None and not self._heap.frozen:
            self._freeze_heap()

    def _collect_when_idle(self) -> None:
        """A full collection while the worker is not typing (at most every 20 s), or when overdue."""
        if not self._heap.frozen:
            return
        overdue = self._heap.full_collections_waiting() >= IDLE_GC_BACKLOG
        if not overdue and not self._quiet_and_due(
            IDLE_GC_AFTER_QUIET_SECONDS, self._last_full_gc_at, IDLE_GC_AT_MOST_EVERY_SECONDS
        ):
            return
        self._last_full_gc_at = time.monotonic()
        self._heap.collect()

    def _quiet_and_due(self, quiet: float, last_at: float, every: float) -> bool:
        """Whether nothing was typed for `quiet` seconds and `every` seconds passed since `last_at`."""
        now = time.monotonic()
        return now - self._last_input_at >= quiet and now - last_at >= every

    def _thaw_heap(self) -> None:
        """Back to the collector's own settings; the session's objects become collectable again."""
        if self._idle_gc_timer is not None:
            self._idle_gc_timer.stop()
            self._idle_gc_timer = None
        self._heap.thaw()

    def _start_checkpoints(self, store: CaseStore) -> None:
        """Leave the write-ahead log's copying to pauses in the work (see WAL_AUTOCHECKPOINT_PAGES)."""
        self._checkpoint(store, autocheckpoint=WAL_AUTOCHECKPOINT_PAGES)
        self._last_checkpoint_at = time.monotonic()
        if self._checkpoint_timer is None:
            self._checkpoint_timer = self.set_interval(CHECKPOINT_CHECK_SECONDS, self._checkpoint_when_idle)

    def _checkpoint_when_idle(self) -> None:
        """Copy the log into the database while the worker is not typing (at most every 20 s)."""
        store = self.store
        if store is None:
            return
        if not self._quiet_and_due(
            CHECKPOINT_AFTER_QUIET_SECONDS, self._last_checkpoint_at, CHECKPOINT_AT_MOST_EVERY_SECONDS
        ):
            return
        self._last_checkpoint_at = time.monotonic()
        self._checkpoint(store)

    @work(thread=True, group="checkpoint", exclusive=True, exit_on_error=False, name="checkpoint")
    def _checkpoint(self, store: CaseStore, autocheckpoint: int | None = None) -> None:
        """Worker: copy the log into the database (PASSIVE), or only set SQLite's own threshold."""
        try:
            with store.lock, store.engine.connect() as conn:
                if autocheckpoint is not None:
                    conn.exec_driver_sql(f"PRAGMA wal_autocheckpoint = {int(autocheckpoint)}").fetchall()
                    return
                row = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except Exception:  # noqa: BLE001 - locked meanwhile: the lock checkpoints and truncates the log itself
            return
        if row is not None:
            self.last_checkpoint = (int(row[0]), int(row[1]), int(row[2]))

    def _stop_checkpoints(self) -> None:
        if self._checkpoint_timer is not None:
            self._checkpoint_timer.stop()
            self._checkpoint_timer = None

    def _start_sync(self) -> None:
        try:
            controller_class = _import_optional("sprx_tui.sync_controller", "SyncController")
            if controller_class is None:
                return
            self._sync = controller_class(self)
            self._sync.start()
        except Exception as exc:  # sync trouble must never stop the worker using their records
            self._sync = None
            self.show_error(exc)

    def _stop_sync(self) -> None:
        controller, self._sync = self._sync, None
        if controller is not None:
            with contextlib.suppress(Exception):
                controller.stop()

    # -- areas and screens -------------------------------------------------------------------------

    def action_area(self, mode: str) -> None:
        """Switch to one of the five areas (F2–F6), creating its screen the first time."""
        if self.store is None or not self._add_area(mode):
            return
        self.switch_mode(mode)
        self.sub_title = AREA_LABELS[mode]

    def switch_mode(self, mode: str) -> AwaitMount:
        """Textual's switch, without its 50 ms hold on drawing when the screen was built ahead.

        Textual holds every screen update for 50 ms at a mode switch (`delay_update`), to hide a new
        screen's first, unstyled layout. A screen built by `prepare_area` is already composed, styled
        and laid out, so there is nothing to hide and the hold only delayed Today and the caseload.
        """
        with hacks.no_update_hold(self, screen_exists=bool(self._stack_of(mode))):
            return super().switch_mode(mode)

    def _add_area(self, mode: str, *, quiet: bool = False) -> bool:
        """Register an area's mode (once per unlock); False, having said why, if it cannot be shown."""
        if mode in self._area_modes:
            return True
        module, name = AREA_SCREENS[mode]
        screen_class = self._optional_part(module, name, f"{AREA_LABELS[mode].lower()} screen", quiet=quiet)
        if screen_class is None:
            return False
        self.add_mode(mode, functools.partial(self._new_area_screen, screen_class))
        self._area_modes.add(mode)
        return True

    def _new_area_screen(self, screen_class: type[Screen]) -> Screen:
        """An area's screen, marked as styled for the app's current CSS.

        Its widgets are styled as they mount, like any pushed screen's. Unmarked, Textual restyles the
        whole app (every screen of every area) for each new area's screen: 76 ms for the caseload
        built behind Today, on the UI thread just after the unlock (BENCHMARKS.md, App). A change of
        the CSS afterwards (a theme) still restyles it when it is next shown.
        """
        screen = screen_class()
        hacks.mark_new_screen_styled(self, screen)
        return screen

    def prepare_area(self, mode: str, *, before_unlock: bool = False) -> None:
        """Build an area's screen behind the current one, so that its key only has to switch to it.

        Composing a screen and restyling the app for it (Textual re-parses every stylesheet for each
        new screen) was most of the cost of the first F2 and F3 (BENCHMARKS.md, App). So the unlock
        screen has Today built while the passphrase is typed, and Today has the caseload built once
        its lists are on screen. Today, prepared before the unlock, holds nothing personal (no vault
        is open; the unlock has it read its lists before switching to it); the caseload, prepared
        after it, reads its first page meanwhile; a lock removes both with the other areas. This
        uses Textual's mode set-up without switching; if that ever changes, the key builds the
        screen as before.
        """
        if self.store is None and not before_unlock:
            return
        if self.current_mode == mode or not self._add_area(mode, quiet=True):
            return
        if self._stack_of(mode):
            return
        with contextlib.suppress(Exception):
            if not hacks.init_mode(self, mode):
                return
            for screen in self._stack_of(mode):
                mark_styled = getattr(screen, "mark_styled", None)
                if mark_styled is not None:
                    mark_styled()  # styled as it mounts, behind the current screen

    def prepare_for_unlock(self) -> None:
        """While the unlock screen waits: build Today and import what the first minutes will need."""
        if self.store is not None:
            return
        self.prepare_area("today", before_unlock=True)
        threading.Thread(target=self._warm_up, name="sprx-warm", daemon=True).start()

    def _warm_up(self) -> None:
        """Thread: import the screens of the first minutes, then let the UI thread finish the preparation."""
        _import_quietly(WARM_MODULES)
        with contextlib.suppress(Exception):
            # Otherwise done inside the unlock: the ORM's mappers are configured at the first query
            # (~25 ms), and the newest schema revision is read from the migration scripts (~8 ms).
            from sqlalchemy.orm import configure_mappers

            from sprx_tui.core import migrations

            configure_mappers()
            migrations.head_revision()
        with contextlib.suppress(Exception):  # the app may have exited meanwhile
            self.call_from_thread(self._warmed_up)

    def _warmed_up(self) -> None:
        """The unlock screen's preparation is over: freeze the heap (see _freeze_heap).

        (Parsing the default CSS of the screens' widget classes here, through a private Textual call,
        saved under 20 ms on the app benchmark and was removed: bench/HISTORY.md, App.)
        """
        if self.store is not None:
            return
        self._freeze_retries = 5
        self._freeze_before_unlock()
        self.unlock_prepared = True

    def open_person(self, person_id: str, tab: str | None = None) -> None:
        """Push the person's record onto the current area."""
        if self.store is None:
            return
        screen = self.record_screen(person_id, tab)
        if screen is not None:
            self.push_record(screen)

    def record_screen(self, person_id: str, tab: str | None = None, loaded: Any = None) -> Screen[Any] | None:
        """The screen to show a person's record on: the one kept for the next person, when it is free.

        Building a person screen (its tabs, six panes and footer keys, about 35 widgets) was about half of
        opening a record (bench/HISTORY.md, App). The first screen built is installed, so that closing it keeps
        it; it empties itself as it leaves every stack (`PersonScreen._blank`) and is given the next person
        (`reuse_for`). While it is on a stack (a record open under another), a new one is made for the other.
        A lock forgets it with the session (`_forget_kept_record`). None if the person screen is missing.
        """
        screen_class = self._optional_part("sprx_tui.screens.person", "PersonScreen", "person record")
        if screen_class is None:
            return None
        kept = self._kept_record
        if kept is not None and not self.on_a_stack(kept):
            reuse = getattr(kept, "reuse_for", None)
            if callable(reuse) and reuse(person_id, tab, loaded=loaded):
                return kept
            self._forget_kept_record()  # closed before its tabs were built: the new screen is kept instead
        kwargs: dict[str, Any] = {}
        with contextlib.suppress(TypeError, ValueError):
            parameters = inspect.signature(screen_class).parameters
            kwargs.update({k: v for k, v in (("tab", tab), ("loaded", loaded)) if v is not None and k in parameters})
        screen = screen_class(person_id, **kwargs)
        if self._kept_record is None and hasattr(screen, "reuse_for"):
            self.install_screen(screen, KEPT_RECORD)
            self._kept_record = screen
        return screen

    def on_a_stack(self, screen: Screen[Any]) -> bool:
        """Whether `screen` is on the stack of any mode (shown, or under another screen)."""
        return any(screen in self._stack_of(mode) for mode in ("gate", SPARE_MODE, *self._area_modes))

    def _forget_kept_record(self) -> None:
        """The kept person screen uninstalled, and removed once off every stack (at a lock, with the session)."""
        kept, self._kept_record = self._kept_record, None
        if kept is None:
            return
        if self.store is None:  # a lock: the unlock screen's heap freeze waits until it is freed
            self._session_refs.append(weakref.ref(kept))
        with contextlib.suppress(Exception):
            self.uninstall_screen(kept)
            if not self.on_a_stack(kept) and kept.is_attached:
                kept.remove()

    def push_record(self, screen: Screen) -> None:
        """Push a person's record (or the directory opened for them) in the records' own mode.

        The records have a screen stack of their own, apart from the five areas: F2-F6 then always show
        their area, never a record left on top of it, and the records stay one Esc away. Esc on a
        record goes back to where it was opened from; Esc on an area, when records were left open by
        an area's key, goes back to the last of them.
        """
        if self.store is None:
            return
        origin = self.current_mode
        if origin != RECORDS_MODE:
            self._add_records_mode()
            if origin in AREA_SCREENS:
                self._records_from = origin
            self.switch_mode(RECORDS_MODE)
        self._record_origin[screen] = origin
        self.push_screen(screen)

    def _add_records_mode(self) -> None:
        if RECORDS_MODE not in self._area_modes:
            self.add_mode(RECORDS_MODE, RecordsBackdrop)
            self._area_modes.add(RECORDS_MODE)

    def prepare_records(self) -> None:
        """Build the records' mode (an empty backdrop: nothing personal) behind the current screen, so the
        first person opened after an unlock pays neither the mode's set-up nor Textual's 50 ms drawing hold
        for a new mode's screen (first open 177 ms, later ones 30-50 ms, in bench_app on the 10k vault)."""
        if self.store is None or RECORDS_MODE in self._area_modes:
            return
        self._add_records_mode()
        with contextlib.suppress(Exception):
            hacks.init_mode(self, RECORDS_MODE)
        self.call_after_refresh(self._prepare_kept_record)

    def _prepare_kept_record(self) -> None:
        """Build the person screen kept for the next person (`record_screen`) behind the current screen, holding
        no one, so that the first record opened after an unlock is given a built screen as later ones are.

        Textual builds a screen when it is pushed; pushed onto the stack of a mode never shown (SPARE_MODE),
        it is composed and mounted there, and that mode is then removed (the screen, installed, is kept).
        """
        if self.store is None or self._kept_record is not None:
            return
        screen = self.record_screen("")
        if screen is None or screen is not self._kept_record:
            return
        try:
            self.add_mode(SPARE_MODE, Backdrop)
        except Exception:  # still there from a build that did not finish: built at the first open instead
            return
        if not hacks.init_mode(self, SPARE_MODE):  # built at the first open instead
            self.remove_mode(SPARE_MODE)
            return
        self.run_worker(self._build_kept_record(screen), group="kept-record", exit_on_error=False)

    async def _build_kept_record(self, screen: Screen[Any]) -> None:
        try:
            await self.push_screen(screen, mode=SPARE_MODE)  # composed and mounted, never shown
        finally:
            with contextlib.suppress(Exception):
                await self.remove_mode(SPARE_MODE)

    def leave_records(self) -> None:
        """With no record left in the records' mode, show the area they were opened from."""
        if self.store is None or self.current_mode != RECORDS_MODE or len(self.screen_stack) > 1:
            return
        self.action_area(self._records_from)

    def _records_open(self) -> bool:
        return len(self._stack_of(RECORDS_MODE)) > 1

    @on(OpenPerson)
    def _open_person_asked(self, message: OpenPerson) -> None:
        self.open_person(message.person_id, message.tab)

    @on(OpenDirectoryFor)
    def _open_directory_asked(self, message: OpenDirectoryFor) -> None:
        self.open_directory_for(message.person_id)

    def open_directory_for(self, person_id: str) -> None:
        """Push the directory onto the current area, keeping `person_id` as the person to refer or signpost."""
        if self.store is None:
            return
        opener = self._optional_part("sprx_tui.screens.directory", "open_directory_for", "directory screen")
        if opener is not None:
            opener(self, person_id)  # pushed with the records (push_record)

    def _optional_part(self, module: str, name: str, what: str, *, quiet: bool = False) -> Any | None:
        """A class or function from a part of the app that may be missing; None, having said why, if so."""
        try:
            part = _import_optional(module, name)
        except Exception as exc:
            if not quiet:
                self.show_error(exc)
            return None
        if part is None and not quiet:
            self.notify(f"The {what} is not available in this version.")
        return part

    def action_back(self) -> None:
        if self.store is None:
            return
        if len(self.screen_stack) > 1:
            top = self.screen
            self.pop_screen()
            origin = self._record_origin.pop(top, None)
            if self.current_mode == RECORDS_MODE and origin in AREA_SCREENS:
                self.action_area(origin)  # back to the area the record was opened from
            return
        if self.current_mode != RECORDS_MODE and self._records_open():
            self.switch_mode(RECORDS_MODE)  # back to the record an area's key was pressed on

    def action_command_palette(self) -> None:
        """The command palette, with Enter acting on the search of what was typed (`SearchFirstPalette`)."""
        if self.use_command_palette and not SearchFirstPalette.is_open(self):
            self.push_screen(SearchFirstPalette(id="--command-palette"))

    def action_help(self) -> None:
        from sprx_tui.screens.help import HelpScreen

        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss()
            return
        self.push_screen(HelpScreen.for_screen(self.screen))

    def action_settings(self) -> None:
        from sprx_tui.screens.settings import SettingsScreen

        if self.store is None or isinstance(self.screen, SettingsScreen):
            return
        self.push_screen(SettingsScreen())

    def action_lock(self) -> None:
        warning = self._unsent_warning()
        self.lock_now("manual")
        if warning:
            self.notify(warning, severity="warning", timeout=15)

    def _unsent_warning(self) -> str | None:
        """A plain sentence when changes have waited unsent for over a day (shown on quit and on lock)."""
        if self.store is None:
            return None
        try:
            from sprx_tui.core.sync import unsent_overdue

            n = unsent_overdue(self.store, self.clock())
        except Exception:  # noqa: BLE001 - a warning must never stop a lock or a quit
            return None
        if not n:
            return None
        waits = "1 change has" if n == 1 else f"{n} changes have"
        return (
            f"{waits} waited more than a day to be sent to the practice server; "
            "sync when you can (F6), so they are not lost if this laptop is."
        )

    def _quit_after_warning(self) -> bool:
        """False (having warned) on a first Ctrl+Q with changes unsent for over a day; a second one quits."""
        warning = self._unsent_warning()
        last = getattr(self, "_quit_warned_at", None)
        if warning is None or (last is not None and time.monotonic() - last < QUIT_CONFIRM_SECONDS):
            return True
        self._quit_warned_at = time.monotonic()
        self.notify(warning + " Press Ctrl+Q again to quit anyway.", severity="warning", timeout=QUIT_CONFIRM_SECONDS)
        return False

    def action_new_person(self) -> None:
        """The new-person form (a self-referral, a walk-in) with the records; saving opens the person in its place."""
        if self.store is None:
            return
        screen_class = self._optional_part("sprx_tui.screens.person_form", "PersonFormScreen", "new person form")
        if screen_class is not None:
            self.push_record(screen_class())  # so the record that replaces it is a record too (F2-F6 show areas)

    def action_toggle_theme(self) -> None:
        self.config.theme = "default" if self.config.theme == "high_contrast" else "high_contrast"
        self.theme = self.theme_for(self.config.theme)
        self.save_config()

    def apply_config(self) -> None:
        """Make the current config take effect (after the settings screen saved it)."""
        self.theme = self.theme_for(self.config.theme)
        self.set_keymap(self.config.keymap)
        if self._sync is not None and hasattr(self._sync, "config_changed"):
            with contextlib.suppress(Exception):
                self._sync.config_changed()

    def save_config(self) -> bool:
        try:
            self.config.save()
        except OSError:
            self.notify("Your settings could not be saved; they apply until you quit.", severity="warning")
            return False
        return True

    def watch_theme(self, theme: str) -> None:
        # Keep the config in step if the theme changed elsewhere (e.g. TEXTUAL_THEME); saved on next save.
        if theme != SPRX_NO_COLOR.name:  # NO_COLOR's theme is the terminal's choice, never saved as the worker's
            self.config.theme = setting_for(theme)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in {"area", "lock", "settings", "toggle_theme"}:
            return self.store is not None
        if action == "back":
            return self.store is not None and (len(self.screen_stack) > 1 or self._records_open())
        return True

    # -- palette -----------------------------------------------------------------------------------

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Textual's commands minus Screenshot (it writes patient data to disk) and the all-themes picker."""
        for command in super().get_system_commands(screen):
            if command.title in {"Screenshot", "Theme"}:
                continue
            if self.store is None and command.title != "Quit":
                continue
            yield command

    # -- idle and locking --------------------------------------------------------------------------

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key | events.MouseEvent) and not event.is_forwarded:
            self._last_input = self.clock()
            self._last_input_at = time.monotonic()
        await super().on_event(event)

    def check_auto_lock(self) -> bool:
        """Lock if nothing was typed or clicked for the configured minutes; True if it locked."""
        if self.store is None:
            return False
        idle = (self.clock() - self._last_input).total_seconds()
        if idle >= self.config.auto_lock_minutes * 60:
            self.lock_now("idle")
            return True
        return False

    def _collect_drafts(self) -> list[tuple[str, dict[str, Any]]]:
        """Ask every open screen, in every area, for unsaved text to keep."""
        stacks: Iterable[list[Screen]] = [self._stack_of(mode) for mode in ("gate", *self._area_modes)]
        drafts: list[tuple[str, dict[str, Any]]] = []
        for stack in stacks:
            for screen in stack:
                draft = getattr(screen, "draft", None)
                if not callable(draft):
                    continue
                try:
                    result = draft()
                except Exception:  # noqa: S112 - a broken screen must not stop the lock
                    continue
                if result:
                    key, payload = result
                    drafts.append((str(key), dict(payload)))
        return drafts

    def lock_now(self, reason: str = "manual") -> None:
        """Lock at once: the screen clears now; drafts, audit and key wiping finish in a thread."""
        store = self.store
        drafts = self._collect_drafts() if store is not None else []
        self._stop_sync()
        self._stop_checkpoints()
        self.store = None
        self._show_locked()
        if store is not None:
            self._lock_worker(store, drafts, reason)
        if reason == "idle":
            self.notify(f"Locked after {self.config.auto_lock_minutes} minutes without use.")

    def lock_sync(self, reason: str) -> None:
        """Lock and wait for it (quit, SIGTERM): nothing may be left unlocked when the process ends."""
        store = self.store
        drafts = self._collect_drafts() if store is not None else []
        self._stop_sync()
        self._stop_checkpoints()
        self.store = None
        self._thaw_heap()
        if store is not None:
            self._lock_store(store, drafts, reason)
        self.lock_vault_when_free()

    def lock_vault_when_free(self, timeout: float = LOCK_WAIT_SECONDS) -> None:
        """Lock the vault once lock or unlock work in flight is done (it holds `vault_guard`).

        Quitting straight after Ctrl+L used to lock the vault from the UI thread while the lock's
        worker was still writing its audit row and checkpointing on the same connection: the worker's
        writes could be lost. Locking waits for it now (a hung worker only delays the exit by `timeout`).
        """
        got = self.vault_guard.acquire(timeout=timeout)
        try:
            with contextlib.suppress(Exception):
                engine = self.vault.engine if self.vault.is_unlocked else None
                if engine is None:
                    self.vault.lock()
                else:
                    # Like the lock's worker: wait for any query or write in flight on the one connection.
                    with engine_lock(engine):
                        self.vault.lock()
        finally:
            if got:
                self.vault_guard.release()

    def _show_locked(self) -> None:
        self._thaw_heap()  # the session's objects (records on screen included) become collectable again
        self._session_refs += [weakref.ref(s) for mode in self._area_modes for s in self._stack_of(mode)]
        self._session_refs += [weakref.ref(s) for s in self.screen_stack[1:]]
        if self._shown_store is not None:
            self._session_refs.append(weakref.ref(self._shown_store))
        self._shown_store = None
        self._draft_offers = []
        self.clear_notifications()
        self.sync_summary = SyncSummary()
        self.title = "sprx"
        self.sub_title = ""
        if self.current_mode != "gate":
            self.switch_mode("gate")
        for mode in list(self._area_modes):
            with contextlib.suppress(Exception):
                self.remove_mode(mode)
        self._area_modes.clear()
        with contextlib.suppress(Exception):
            self.remove_mode(SPARE_MODE)  # a kept screen still being built
        self._forget_kept_record()  # after the modes: it is on no stack now, so it can be uninstalled
        while len(self.screen_stack) > 1:
            self.pop_screen()
        self.push_screen(self._gate_screen())
        hacks.forget_drawn_lines()  # Textual keeps the lines last drawn by up to 1,024 widgets, gone or not

    @work(thread=True, group="vault", exit_on_error=False, name="lock")
    def _lock_worker(self, store: CaseStore, drafts: list[tuple[str, dict[str, Any]]], reason: str) -> None:
        saved = self._lock_store(store, drafts, reason)
        self.post_message(VaultLocked(saved))

    def _lock_store(self, store: CaseStore, drafts: list[tuple[str, dict[str, Any]]], reason: str) -> int:
        saved = 0
        with self.vault_guard:
            try:
                saved = self._keep_drafts_and_audit(store, drafts, reason)
            finally:
                # Wait for any query in flight, then close the database and wipe the key.
                with store.lock:
                    store.vault.lock()
        return saved

    @staticmethod
    def _keep_drafts_and_audit(store: CaseStore, drafts: list[tuple[str, dict[str, Any]]], reason: str) -> int:
        """Save the drafts and the LOCK audit row (before the vault locks); how many drafts were saved."""
        saved = 0
        for key, payload in drafts:
            try:
                store.service.save_draft(key, payload)
                saved += 1
            except Exception:  # noqa: S112 - keep locking: a lost draft beats an open vault
                continue
        with contextlib.suppress(Exception):
            store.service.record_event("LOCK", detail=reason)
        return saved

    def lock_before_exit(self, reason: str, wait: float = 1.0) -> bool:
        """Lock now, whatever the screen is doing (SIGTERM, SIGHUP, the terminal gone); True if it was unlocked.

        Called by terminal_guard from a signal handler on the UI thread (perhaps in the middle of a
        drawing, or blocked on a dead terminal), or from its watch thread. Draws nothing, and every wait
        is bounded by `wait` seconds: drafts (UI thread only) and the LOCK audit row are kept if the lock
        or unlock in flight (`vault_guard`) and the query in flight on the one connection finish in time;
        the key is wiped either way (`Vault.wipe_key`, leaving a still busy connection to the process's end).
        """
        was_unlocked = self.vault.is_unlocked
        store, self.store = self.store, None
        on_ui_thread = threading.current_thread() is threading.main_thread()
        drafts = self._collect_drafts() if store is not None and on_ui_thread else []
        got_guard = self.vault_guard.acquire(timeout=wait)
        try:
            engine = store.engine if store is not None else None
            with contextlib.suppress(Locked):
                engine = engine or self.vault.engine
            connection = engine_lock(engine) if engine is not None else None
            if connection is not None and not connection.acquire(timeout=wait):
                self.vault.wipe_key()
                if store is not None:
                    store.vault.wipe_key()
                return was_unlocked
            try:
                if store is not None:
                    self._keep_drafts_and_audit(store, drafts, reason)
                    store.vault.lock()
                self.vault.lock()
            finally:
                if connection is not None:
                    connection.release()
        finally:
            if got_guard:
                self.vault_guard.release()
        return was_unlocked

    @on(VaultLocked)
    def _vault_locked(self, message: VaultLocked) -> None:
        if message.drafts_saved:
            self.notify("Your unsaved work was kept safely; it will be offered back when you unlock.")

    async def action_quit(self) -> None:
        if not self._quit_after_warning():
            return
        self.lock_sync("quit")
        self.exit(return_code=0)

    # -- drafts ------------------------------------------------------------------------------------

    @work(thread=True, group="drafts", exit_on_error=False)
    def _find_drafts(self, store: CaseStore) -> None:
        from sprx_tui import drafts

        keys = store.service.list_drafts()
        offers: list[tuple[str, dict[str, Any], str]] = []
        for key in keys:
            payload = store.service.load_draft(key)
            if payload is None:
                continue
            person_id = str(payload.get("person_id") or "")
            person = store.queries.person(person_id) if person_id else None
            name = person.display_name if person is not None else None
            offers.append((key, payload, drafts.offer_sentence(drafts.describe(key, payload), name)))
        if offers:
            self.post_message(DraftsFound(offers))

    @on(DraftsFound)
    def _drafts_found(self, message: DraftsFound) -> None:
        if self.store is None:
            return
        self._draft_offers = list(message.drafts)
        self._offer_next_draft()

    def _offer_next_draft(self) -> None:
        if not self._draft_offers or self.store is None:
            return
        key, payload, sentence = self._draft_offers.pop(0)

        def answered(restore: bool | None) -> None:
            if self.store is None:
                return
            if restore is True:
                self._restore_draft(key, payload)
            elif restore is False:
                self._discard_draft(self.store, key)
            # None (Esc): keep it and offer it again at the next unlock.
            self._offer_next_draft()

        self.push_screen(DraftOfferScreen(sentence), answered)

    def _restore_draft(self, key: str, payload: dict[str, Any]) -> None:
        """Hand the draft to its owning module (by key prefix: "contact:", "measure:", "plan:", ...)."""
        from sprx_tui import drafts

        try:
            restore = drafts.draft_handler(key, "restore_draft")
            if restore is None:
                self.notify("This version cannot reopen that unsaved work; it is kept and offered again next time.")
                return
            restore(self, key, payload)
        except Exception as exc:
            self.show_error(exc)

    @work(thread=True, group="drafts", exit_on_error=False)
    def _discard_draft(self, store: CaseStore, key: str) -> None:
        store.service.discard_draft(key)

    # -- sync status -------------------------------------------------------------------------------

    def refresh_sync_summary(self) -> None:
        """Re-read pending and conflict counts (cheap); the sync controller's own reports take precedence."""
        if self.store is not None:
            self._load_sync_summary(self.store)

    @work(thread=True, group="summary", exclusive=True, exit_on_error=False)
    def _load_sync_summary(self, store: CaseStore) -> None:
        with store.lock:
            pending = store.queries.pending_changes()
            conflicts = store.queries.open_conflicts()
            # core.sync writes "last_successful_sync_at"; "last_sync_ok_at" is the name in the app brief.
            last_ok = get_state(store.engine, "last_successful_sync_at") or get_state(store.engine, "last_sync_ok_at")
            enrolled = bool(get_state(store.engine, "device_token"))
            demo = not enrolled and bool(get_state(store.engine, DEMO_MARK))  # a demo is never enrolled
            if enrolled:
                # Enrolled from the command line while the app was open: write as the practice's worker
                # and device from now on (the enrolment re-labelled the rows written before it).
                actor = load_actor(store.engine)
                if actor != store.actor:
                    store.actor = store.service.actor = actor
        # Only counts: the state and its detail are decided when this is handled, not now (a sync may finish first).
        self.post_message(SyncCountsRead(store, pending, conflicts, last_ok, enrolled, demo))

    @on(SyncCountsRead)
    def _sync_counts_read(self, message: SyncCountsRead) -> None:
        if self.store is None or message.store is not self.store:
            return  # locked (or locked and unlocked again) since the counts were read
        current = self.sync_summary
        state, detail = current.state, current.detail  # the sync controller's latest report
        if not state or state == "not_enrolled" or not message.enrolled:
            # No report yet, enrolled from the command line meanwhile, or no longer enrolled.
            fresh = "offline" if message.enrolled else "not_enrolled"
            state, detail = fresh, detail if fresh == state else ""
        self.sync_summary = SyncSummary(
            state, message.pending, message.conflicts, message.last_success, detail, demo=message.demo
        )

    @on(SyncStatusChanged)
    def _sync_status_changed(self, message: SyncStatusChanged) -> None:
        if self.store is None:
            return
        self.sync_summary = SyncSummary(
            message.state,
            message.pending,
            message.conflicts,
            message.last_success,
            message.detail,
            demo=self.sync_summary.demo,
        )

    # -- errors ------------------------------------------------------------------------------------

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """Every notification is plain text: a name or a server's words in it are never markup, never escapes."""
        message, title = visible(message, multiline=True), visible(title)
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    def show_error(self, exc: BaseException) -> None:
        """A plain notification, never a traceback and never personal data."""
        self.notify(plain_sentence(exc), severity="error", timeout=8)

    def worker_failed(self, event: Worker.StateChanged) -> None:
        """The one place worker errors become messages (screens forward their StateChanged here)."""
        if event.state != WorkerState.ERROR:
            return
        error = event.worker.error
        if error is None:
            return
        # Workers caught by a lock fail on the closed database; that is expected, not news.
        if isinstance(error, Locked) or (self.store is None and event.worker.group != "vault"):
            return
        self.show_error(error)

    @on(Worker.StateChanged)
    def _app_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.worker_failed(event)


WARM_MODULES = (
    "sprx_tui.screens.caseload",
    "sprx_tui.screens.person",
    "sprx_tui.screens.contact",
    "sprx_tui.screens.forms",
    "sprx_tui.screens.referral",
    "sprx_tui.screens.plan",
    "sprx_tui.screens.lock",
    "sprx_tui.screens.help",
    "sprx_tui.widgets.timeline",
    "sprx_tui.widgets.goal_list",
    "sprx_tui.widgets.person_header",
    "sprx_tui.sync_controller",
    "sprx_tui.core.sync",
)
"""Imported in the background while the unlock screen waits (~150 ms that the unlock used to pay)."""


def _import_quietly(modules: Iterable[str]) -> None:
    for name in modules:
        with contextlib.suppress(Exception):  # a missing optional part is reported where it is used
            importlib.import_module(name)


def run_app(vault_path: Path) -> int:
    """Run the app on the vault folder (created on first run); returns the exit code for `sprx`."""
    app = SprxApp(vault_path)
    try:
        result = app.run()
    finally:
        # Whatever happened, the vault is never left unlocked by a finished process.
        was_unlocked = app.vault.is_unlocked
        app.lock_vault_when_free()
        if app.terminal_guard is not None:
            app.terminal_guard.finished(was_unlocked)
    code = int(app.return_code) if app.return_code not in (None, 0) else int(result or 0)
    if app.terminal_guard is not None:
        from sprx_tui.terminal_guard import record_exit_event

        record_exit_event("exit", code, "returned")
    return code
