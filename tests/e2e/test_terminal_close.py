"""The terminal going away while sprx is unlocked: it locks and exits, always, within seconds (issue 15).

A real `sprx` in tmux on a demo vault: unlock, open a person, make the screen redraw hard (the window
resized over and over, keys arriving), then the terminal goes: the tmux server killed at a random moment
(its pseudo-terminal's master closed, as when a terminal window is closed), or SIGTERM / SIGHUP sent to
the app. Each time the process must be gone within 5 s, `sprx check` must find the vault clean, and the
app's exit record (SPRX_EXIT_RECORD, terminal_guard.record_exit_event) must show the key wiped, with
the vault still unlocked when the lock began, before the process ended.

Before the fix, closing the terminal left the process alive for ever in some rounds (Textual's writer
thread hang, bench/repro_writer_thread_hang.py): run against the app as it was (697badd~1), 8 closing
rounds left one process running past 5 s, and the first SIGTERM to an app blocked on its terminal never
locked.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import test_tmux
from tests.e2e.test_tmux import PASSPHRASE, SPRX, TMUX, Terminal

e2e_vault = test_tmux.e2e_vault  # the same demo vault fixture (module scope: built once here too)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(TMUX is None, reason="tmux is not installed, so the real-terminal test cannot run"),
]

GONE_WITHIN = 5.0
CLOSE_ROUNDS = 6


class AppTerminal(Terminal):
    """The tmux terminal, plus the app's process id and a storm of redraws."""

    def pid(self) -> int:
        return int(self._tmux("list-panes", "-t", "e2e", "-F", "#{pane_pid}").split()[0])

    def server_pid(self) -> int:
        return int(self._tmux("display-message", "-p", "-t", "e2e", "#{pid}").strip())

    def set_option(self, *args: str) -> None:
        self._tmux("set-option", "-t", "e2e", *args)

    def dead_status(self, timeout: float = 10.0) -> int | None:
        """The app's exit status, once tmux has seen it exit (needs remain-on-exit)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                dead, status = self._tmux("list-panes", "-t", "e2e", "-F", "#{pane_dead} #{pane_dead_status}").split()
            except (subprocess.CalledProcessError, ValueError):
                dead, status = "0", ""
            if dead == "1":
                return int(status)
            time.sleep(0.05)
        return None

    def storm(self, stop: threading.Event) -> threading.Thread:
        """Resize the window back and forth and send keys, until `stop` (or tmux goes)."""

        def run() -> None:
            sizes = [(120, 40), (100, 30), (132, 44), (90, 35)]
            n = 0
            while not stop.is_set():
                w, h = sizes[n % len(sizes)]
                n += 1
                try:
                    self._tmux("resize-window", "-t", "e2e", "-x", str(w), "-y", str(h))
                    self._tmux("send-keys", "-t", "e2e", "Down", "Up")
                except subprocess.CalledProcessError:
                    return  # tmux is gone

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread


def gone(pid: int) -> bool:
    """No such process, or only its zombie (nobody may reap it once tmux is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in {"Z", "X"}


def wait_gone(pid: int, timeout: float = GONE_WITHIN) -> float | None:
    """When (time.monotonic) the process was seen gone, or None if it outlived `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gone(pid):
            return time.monotonic()
        time.sleep(0.02)
    return None


def records(path: Path) -> list[tuple[str, float, list[str]]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        event, at, *rest = line.split()
        out.append((event, float(at), rest))
    return out


def check_vault(vault: Path) -> None:
    done = subprocess.run(
        [str(SPRX), "check", "--vault", str(vault), "--passphrase-stdin"],
        input=PASSPHRASE + "\n",
        text=True,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def assert_locked_before_exit(record: Path, ended: float, reasons: set[str]) -> None:
    """The first record is the key wiped for one of `reasons`, with the vault unlocked, before `ended`."""
    lines = records(record)
    assert lines, "the app recorded no key wipe before it ended"
    event, at, rest = lines[0]
    assert event == "key_wiped", lines
    assert rest[0] in reasons, lines
    assert rest[1] == "unlocked", lines  # the round did test an unlocked app
    assert at <= ended, lines
    exits = [at for event, at, _ in lines if event == "exit"]
    assert all(at <= e for e in exits), lines


@pytest.fixture
def start_app(e2e_vault: Path, tmp_path: Path) -> Iterator[object]:
    """Start sprx in a fresh tmux, unlock, open a person: (terminal, pid, record file)."""
    terminals: list[AppTerminal] = []

    def start(name: str, *, keep_pane: bool = False) -> tuple[AppTerminal, int, Path]:
        record = tmp_path / f"exit-{name}.txt"
        env = {
            "SPRX_CONFIG_DIR": str(tmp_path / "config"),
            "TERM": "xterm-256color",
            "LANG": "C.UTF-8",
            "SPRX_EXIT_RECORD": str(record),
        }
        term = AppTerminal(120, 40, [str(SPRX), "--vault", str(e2e_vault)], env)
        terminals.append(term)
        if keep_pane:
            term.set_option("-w", "remain-on-exit", "on")
        pid = term.pid()
        term.wait_for("Passphrase")
        term.type(PASSPHRASE)
        term.keys("Enter")
        term.wait_for("Due today")
        term.keys("F3")
        # The caseload's footer with its list focused (Today's footer also starts "⏎ Open", so that alone let
        # Enter reach Today before F3 had switched).
        term.wait_for("⏎ Open  / Filter")
        term.keys("Enter")
        term.wait_for("Overview")
        return term, pid, record

    yield start
    for term in terminals:
        term.close()


def test_closing_the_terminal_locks_and_exits_every_time(start_app, e2e_vault: Path) -> None:
    rng = random.Random(int(os.environ.get("SPRX_E2E_SEED", "0")) or None)
    failures: list[str] = []
    for round_no in range(CLOSE_ROUNDS):
        term, pid, record = start_app(f"close-{round_no}")
        stop = threading.Event()
        storm = term.storm(stop)
        time.sleep(rng.uniform(0.05, 1.5))
        closed = time.monotonic()
        term.close()  # kill the tmux server: the pane's pseudo-terminal goes, as a closed window's does
        ended = wait_gone(pid)
        stop.set()
        storm.join(timeout=5)
        if ended is None:
            os.kill(pid, signal.SIGKILL)
            failures.append(f"round {round_no}: still running {GONE_WITHIN} s after the terminal closed")
            continue
        assert_locked_before_exit(record, ended, {"terminal_hung_up", "SIGHUP"} | {"app_finished"})
        check_vault(e2e_vault)
        print(f"round {round_no}: gone {ended - closed:.2f} s after the close; {records(record)}")
    assert not failures, failures


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_locks_and_exits(start_app, e2e_vault: Path, sig: signal.Signals) -> None:
    term, pid, record = start_app(sig.name, keep_pane=True)
    stop = threading.Event()
    storm = term.storm(stop)
    time.sleep(0.5)
    sent = time.monotonic()
    os.kill(pid, sig)
    ended = wait_gone(pid)
    stop.set()
    storm.join(timeout=5)
    if ended is None:
        os.kill(pid, signal.SIGKILL)
        pytest.fail(f"still running {GONE_WITHIN} s after {sig.name}")
    print(f"{sig.name}: gone {ended - sent:.2f} s after the signal; {records(record)}")
    assert_locked_before_exit(record, ended, {sig.name})
    status = term.dead_status()
    if status is None:  # tmux 3.3 may see the terminal close before the exit and then keep no status
        status = next(int(rest[0]) for event, _at, rest in records(record) if event == "exit")
    assert status == 128 + sig
    check_vault(e2e_vault)


def test_a_second_sigterm_ends_it_at_once(start_app, e2e_vault: Path) -> None:
    """A terminal that stops reading (tmux stopped) blocks the app's loop on its full output: the first
    SIGTERM still locks at once, but the app cannot finish drawing its exit; the second ends it now."""
    term, pid, record = start_app("twice")
    server = term.server_pid()
    os.kill(server, signal.SIGSTOP)  # the terminal stops reading what the app writes
    try:
        for _ in range(200):  # full redraws (Textual re-reads the size on SIGWINCH) fill the pty and the queue
            os.kill(pid, signal.SIGWINCH)
            time.sleep(0.005)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 2.0
        while not records(record) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert records(record), "the first SIGTERM did not lock within 2 s"
        assert not gone(pid), "the app exited on the first SIGTERM: its loop was not blocked, nothing tested"
        sent = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        ended = wait_gone(pid, timeout=1.0)
    finally:
        os.kill(server, signal.SIGCONT)
    if ended is None:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("still running 1 s after the second SIGTERM")
    print(f"second SIGTERM: gone {ended - sent:.3f} s after it; {records(record)}")
    assert ended - sent < 0.5
    assert_locked_before_exit(record, ended, {"SIGTERM"})
    assert ("exit", ["143", "second_SIGTERM"]) in [(e, rest) for e, _at, rest in records(record)]
    check_vault(e2e_vault)
