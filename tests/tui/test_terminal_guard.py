"""terminal_guard without a terminal: the exit record, a second SIGTERM, Textual's writer dying of EIO."""

from __future__ import annotations

import errno
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sprx_tui import terminal_guard
from sprx_tui.terminal_guard import TerminalGuard, record_exit_event


class Exited(BaseException):
    """os._exit, caught."""


class FakeVault:
    def __init__(self) -> None:
        self.wiped = 0

    def wipe_key(self) -> None:
        self.wiped += 1


class FakeApp:
    def __init__(self) -> None:
        self.vault = FakeVault()
        self.locks: list[str] = []
        self.exits: list[int] = []

    def lock_before_exit(self, reason: str, wait: float) -> bool:
        self.locks.append(reason)
        return True

    def exit(self, result: Any = None, return_code: int = 0) -> None:
        self.exits.append(return_code)


@pytest.fixture
def exits(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    codes: list[int] = []

    def fake_exit(code: int) -> None:
        codes.append(code)
        raise Exited()

    monkeypatch.setattr(terminal_guard.os, "_exit", fake_exit)
    timers: list[threading.Timer] = []
    arm = TerminalGuard._arm_exit_timer

    def arm_and_keep(self: TerminalGuard, code: int) -> None:
        arm(self, code)
        assert self.exit_timer is not None
        timers.append(self.exit_timer)

    monkeypatch.setattr(TerminalGuard, "_arm_exit_timer", arm_and_keep)
    yield codes
    for timer in timers:  # never a real os._exit after the test
        timer.cancel()


def read(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()]


def test_exit_record_only_with_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "record.txt"
    monkeypatch.delenv("SPRX_EXIT_RECORD", raising=False)
    record_exit_event("key_wiped", "SIGTERM", "unlocked")
    assert not path.exists()
    monkeypatch.setenv("SPRX_EXIT_RECORD", str(path))
    record_exit_event("key_wiped", "SIGTERM", "unlocked")
    record_exit_event("exit", 143, "a reason with spaces")
    (event, at, *rest), (event2, at2, *rest2) = read(path)
    assert (event, rest) == ("key_wiped", ["SIGTERM", "unlocked"])
    assert (event2, rest2) == ("exit", ["143", "a_reason_with_spaces"])
    assert float(at) <= float(at2)


def test_sigterm_locks_before_the_exit_and_a_second_ends_it_at_once(
    exits: list[int], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SPRX_EXIT_RECORD", str(tmp_path / "record.txt"))
    app = FakeApp()
    guard = TerminalGuard(app, grace=60.0)  # type: ignore[arg-type]
    monkeypatch.setattr(guard, "_terminal_hung_up", lambda: None)  # pytest's own terminal is fine
    guard._on_signal(signal.SIGTERM, None)
    assert app.locks == ["SIGTERM"] and exits == []  # locked; the app is asked to exit (no loop here)
    guard._on_signal(signal.SIGHUP, None)  # a repeated hangup changes nothing
    assert app.locks == ["SIGTERM"] and exits == []
    with pytest.raises(Exited):
        guard._on_signal(signal.SIGTERM, None)
    assert exits == [143]
    assert [line[0] for line in read(tmp_path / "record.txt")] == ["key_wiped", "exit"]
    assert read(tmp_path / "record.txt")[1][2:] == ["143", "second_SIGTERM"]


def test_a_lost_terminal_exits_right_after_the_lock(exits: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    app = FakeApp()
    guard = TerminalGuard(app, grace=60.0)  # type: ignore[arg-type]
    monkeypatch.setattr(guard, "_terminal_hung_up", lambda: "terminal_hung_up")
    with pytest.raises(Exited):
        guard._on_signal(signal.SIGHUP, None)
    assert app.locks == ["terminal_hung_up"] and exits == [129]


def test_textual_writer_dying_of_eio_counts_as_the_terminal_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    guard = TerminalGuard(FakeApp())  # type: ignore[arg-type]
    lost: list[str] = []
    monkeypatch.setattr(guard, "terminal_lost", lost.append)
    seen: list[BaseException | None] = []
    guard._previous_hook = lambda args: seen.append(args.exc_value)

    def die(exc: BaseException, name: str) -> None:
        def run() -> None:
            raise exc

        thread = threading.Thread(target=run, name=name)
        old = threading.excepthook
        threading.excepthook = guard._thread_died
        try:
            thread.start()
            thread.join()
        finally:
            threading.excepthook = old

    die(OSError(errno.EIO, "Input/output error"), "textual-output")
    assert lost == ["terminal_write_error_EIO"]
    die(OSError(errno.EIO, "Input/output error"), "some-other-thread")
    die(ValueError("not a write error"), "textual-output")
    assert lost == ["terminal_write_error_EIO"]
    assert len(seen) == 2  # the others went to the previous hook as before
