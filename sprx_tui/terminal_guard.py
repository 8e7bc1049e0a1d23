"""Lock first, then exit within seconds: SIGTERM, SIGHUP, or the terminal gone (sprx issue 15).

When the terminal goes away (window closed, tmux session killed, ssh dropped) Textual can leave the
event loop blocked for ever on its dead writer thread's full queue (bench/repro_writer_thread_hang.py).
Handlers added with `loop.add_signal_handler` run *on* that loop, so they never ran: the process lived
on, ignoring SIGTERM and SIGHUP, perhaps with the key in memory. So this guard does not depend on the
loop:

- SIGTERM and SIGHUP have plain `signal.signal` handlers. Python runs them on the main thread between
  two bytecodes, and also while the main thread waits on a lock (a blocked `Queue.put` included). The
  handler locks at once (`SprxApp.lock_before_exit`: drafts and the LOCK audit row kept if the vault's
  one connection is free within `LOCK_WAIT_SECONDS`; the key wiped and the database closed either way),
  before anything is drawn or the driver is shut down. Only then does it ask the app to exit, and it
  starts a timer that ends the process (`os._exit`) if that has not happened within
  `EXIT_GRACE_SECONDS`.
- A second SIGTERM ends the process at once. A second SIGHUP is ignored: a hangup often comes twice
  (the kernel's and tmux's own), and the first is already ending the process.
- A watch thread notices the terminal going away without a signal: the terminal's file descriptor
  reporting a hangup or an error (poll), or Textual's writer thread ending with a write error (EIO,
  EPIPE; seen through `threading.excepthook`). It sends SIGHUP to the main thread, whose handler does
  the above and then exits at once (there is no terminal to restore). If that handler has not locked
  within `LOCK_WAIT_SECONDS + 0.5` s (the main thread stuck where Python cannot run a handler), the watch
  thread locks itself and ends the process.

Exit status: 128 + the signal (143 for SIGTERM, 129 for SIGHUP and for a lost terminal).

`record_exit_event` is the test hook (SPRX_EXIT_RECORD).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import select
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

from sprx_tui._textual_hacks import is_terminal_writer

if TYPE_CHECKING:
    from sprx_tui.router import Shell

EXIT_GRACE_SECONDS = 2.0
"""After the lock, how long the app may take to shut its screen down before the process just ends."""
LOCK_WAIT_SECONDS = 1.0
"""How long the lock at exit waits for work in flight on the vault's connection (then wipes the key anyway)."""
WATCH_SECONDS = 0.1
"""How often the watch thread looks at the terminal."""
TERMINAL_ERRNOS = frozenset({errno.EIO, errno.EPIPE, errno.ENXIO, errno.EBADF, errno.ENOTTY})
"""Write errors that mean the terminal has gone."""

EXIT_RECORD_ENV = "SPRX_EXIT_RECORD"


def record_exit_event(event: str, *fields: object) -> None:
    """Test hook: with SPRX_EXIT_RECORD=<path> set, append `<event> <time.monotonic()> <fields...>` to it.

    Written after the key is wiped (`key_wiped <t> <reason> <unlocked|locked>`: whether the vault was
    unlocked when the lock began) and just before the process ends (`exit <t> <status> <why>`), so
    the end-to-end tests can check the order. One os.write on an O_APPEND descriptor: safe in a signal
    handler, and whole lines even from two threads. Does nothing without the variable; never raises.
    """
    path = os.environ.get(EXIT_RECORD_ENV)
    if not path:
        return
    line = " ".join([event, f"{time.monotonic():.6f}", *(str(f).replace(" ", "_") for f in fields)]) + "\n"
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


class TerminalGuard:
    """Installed by the app in a real terminal (not headless); see the module docstring."""

    SIGNALS = (signal.SIGTERM, signal.SIGHUP)

    def __init__(self, app: Shell, *, grace: float = EXIT_GRACE_SECONDS, lock_wait: float = LOCK_WAIT_SECONDS) -> None:
        self.app = app
        self.grace = grace
        self.lock_wait = lock_wait
        self.exit_code: int | None = None  # set when the exit began
        self._lost: str | None = None  # why the terminal is taken to be gone
        self._locked = threading.Event()
        self._lock_started = threading.Lock()
        self._stop_watch = threading.Event()
        self._previous: dict[int, Any] = {}
        self._previous_hook: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main_ident = threading.main_thread().ident
        self._terminal_fds: list[int] = []
        self._watch: threading.Thread | None = None
        self.exit_timer: threading.Timer | None = None  # ends the process if the app's exit takes too long

    # -- setting up --

    def install(self) -> bool:
        """From the main thread, with the app's loop running. False (nothing changed) elsewhere."""
        if threading.current_thread() is not threading.main_thread():
            return False
        with contextlib.suppress(RuntimeError):
            self._loop = asyncio.get_running_loop()
        try:
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._on_signal)
        except (ValueError, OSError, AttributeError):  # not a POSIX main thread
            self._restore_signals()
            return False
        self._previous_hook = threading.excepthook
        threading.excepthook = self._thread_died
        self._terminal_fds = [fd for fd in (0, 1, 2) if _isatty(fd)]
        self._watch = threading.Thread(target=self._watch_terminal, name="sprx-terminal-watch", daemon=True)
        self._watch.start()
        return True

    def uninstall(self) -> None:
        """The app has finished normally: stop watching, give the signals back."""
        self._stop_watch.set()
        if threading.excepthook == self._thread_died:
            threading.excepthook = self._previous_hook or threading.__excepthook__
        if threading.current_thread() is threading.main_thread():
            self._restore_signals()

    def finished(self, was_unlocked: bool) -> None:
        """The app has returned and the vault is locked (run_app): record it, stop watching."""
        record_exit_event("key_wiped", "app_finished", "unlocked" if was_unlocked else "locked")
        self.uninstall()

    def _restore_signals(self) -> None:
        for sig, handler in self._previous.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()

    # -- the signal handler (main thread) --

    def _on_signal(self, signum: int, _frame: object) -> None:
        code = 128 + int(signum)
        if self.exit_code is not None:
            if signum == signal.SIGTERM:  # asked twice: no more waiting for anything
                self._exit_now(code, "second_SIGTERM")
            return  # a repeated hangup: the first is already ending the process
        self.exit_code = code
        lost = self._lost or self._terminal_hung_up()
        self._arm_exit_timer(code)
        self.lock(lost or signal.Signals(signum).name)
        if lost is not None:
            self._exit_now(code, lost)  # no terminal to restore or draw on
        self._ask_app_to_exit(code)

    def lock(self, reason: str) -> None:
        """Wipe the key and close the database now (once; later calls return at once)."""
        if not self._lock_started.acquire(blocking=False):
            return
        was_unlocked: bool | None = None
        try:
            was_unlocked = self.app.lock_before_exit(reason, self.lock_wait)
        except BaseException:  # noqa: BLE001 - the key must go whatever failed above
            with contextlib.suppress(BaseException):
                self.app.vault.wipe_key()
        finally:
            self._locked.set()
        record_exit_event("key_wiped", reason, {True: "unlocked", False: "locked", None: "failed"}[was_unlocked])

    def _arm_exit_timer(self, code: int) -> None:
        timer = threading.Timer(self.grace, self._exit_now, args=(code, "exit_took_too_long"))
        timer.name = "sprx-exit-timer"
        timer.daemon = True
        timer.start()
        self.exit_timer = timer

    def _ask_app_to_exit(self, code: int) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self.app.exit, None, code)

    def _exit_now(self, code: int, why: str) -> None:
        """End the process now, from any thread: the key wiped first if the lock never got to it."""
        if not self._locked.is_set():
            with contextlib.suppress(BaseException):
                self.app.vault.wipe_key()
            record_exit_event("key_wiped", why, "forced")
        record_exit_event("exit", code, why)
        os._exit(code)

    # -- noticing the terminal gone (other threads) --

    def _thread_died(self, args: threading.ExceptHookArgs) -> None:
        exc = args.exc_value
        if is_terminal_writer(args.thread) and isinstance(exc, OSError) and exc.errno in TERMINAL_ERRNOS:
            # Textual's writer could not write to the terminal. Nothing to print it on, either.
            self.terminal_lost(f"terminal_write_error_{errno.errorcode.get(exc.errno or 0, exc.errno)}")
            return
        hook = self._previous_hook or threading.__excepthook__
        hook(args)

    def _terminal_hung_up(self) -> str | None:
        """ "terminal_hung_up" if the terminal's descriptor reports a hangup or an error (poll, no wait)."""
        poller = select.poll()
        for fd in self._terminal_fds:
            poller.register(fd, select.POLLHUP | select.POLLERR)
        try:
            events = poller.poll(0)
        except (OSError, ValueError):
            return None
        if any(mask & (select.POLLHUP | select.POLLERR | select.POLLNVAL) for _fd, mask in events):
            return "terminal_hung_up"
        return None

    def _watch_terminal(self) -> None:
        while not self._stop_watch.wait(WATCH_SECONDS):
            if self.exit_code is not None:
                return  # already on its way out, bounded by the exit timer
            lost = self._terminal_hung_up()
            if lost is not None:
                self.terminal_lost(lost)
                return

    def terminal_lost(self, why: str) -> None:
        """From any thread: have the main thread lock and exit; do it here if it cannot."""
        if self.exit_code is not None or self._lost is not None:
            return
        self._lost = why
        if self._main_ident is not None:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                signal.pthread_kill(self._main_ident, signal.SIGHUP)
        if threading.get_ident() == self._main_ident:
            return  # the handler runs as soon as this returns
        if not self._locked.wait(self.lock_wait + 0.5):
            # The main thread is stuck where no Python handler can run: lock from here and end it.
            self.exit_code = 128 + signal.SIGHUP
            self.lock(why + "_from_watch")
            self._exit_now(128 + signal.SIGHUP, why)


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False
