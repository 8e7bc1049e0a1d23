"""In a real terminal, a name holding terminal escapes is drawn as visible placeholders and never sent to the terminal.

`sprx` runs in tmux with `pipe-pane` recording every byte the app writes. A person's stored name (written straight
into the vault, as an import or an older server could have left it) sets the window title and writes the clipboard
(OSC 0 and OSC 52) and clears the screen (CSI 2J). The app shows that person in the caseload and on their record:
no title or clipboard sequence from the name appears in the raw output, the pane title stays as it was, tmux's
paste buffers stay empty, and the name is on screen with its escapes as placeholders (ESC as ␛, BEL as ␇).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sprx_tui.core.store import open_store
from sprx_tui.core.vault import Vault
from tests.e2e.test_tmux import PASSPHRASE, SPRX, TMUX, Terminal

GIVEN = "\x1b]0;PWNED\x07Evil"
FAMILY = "\x1b]52;c;SGVsbG8=\x07\x1b[2J\x1b[31mSmith"
SHOWN = "␛]0;PWNED␇Evil ␛]52;c;SGVsbG8=␇␛[2J␛[31mSmith"
TITLE = "sprx-e2e-title"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(TMUX is None, reason="tmux is not installed, so the real-terminal test cannot run"),
]


class RecordedTerminal(Terminal):
    """The e2e terminal, with the app's raw output recorded from its first byte."""

    def __init__(self, width: int, height: int, command: list[str], env: dict[str, str], log: Path) -> None:
        # The app waits for a go file, so pipe-pane is recording before it writes anything.
        self.go = log.with_suffix(".go")
        inner = " ".join(shlex.quote(part) for part in command)
        script = f"while [ ! -e {shlex.quote(str(self.go))} ]; do sleep 0.05; done; exec {inner}"
        super().__init__(width, height, ["sh", "-c", shlex.quote(script)], env)
        self._tmux("select-pane", "-t", "e2e", "-T", TITLE)
        self._tmux("pipe-pane", "-o", "-t", "e2e", f"cat >> {shlex.quote(str(log))}")
        self.go.touch()

    def pane_title(self) -> str:
        return self._tmux("display-message", "-p", "-t", "e2e", "#{pane_title}").strip()

    def buffers(self) -> str:
        return self._tmux("list-buffers")


def _log_holding(log: Path, needle: bytes, timeout: float = 30.0) -> bytes:
    """The pipe-pane log once it holds ``needle`` (it is written a little behind the screen)."""
    deadline = time.monotonic() + timeout
    while True:
        raw = log.read_bytes() if log.exists() else b""
        if needle in raw or time.monotonic() > deadline:
            return raw
        time.sleep(0.05)


@pytest.fixture
def poisoned_vault(tmp_path: Path) -> tuple[Path, str]:
    """A demo vault where one person's name holds OSC title and clipboard sequences; (vault, their NHS number)."""
    path = tmp_path / "vault"
    subprocess.run(
        [str(SPRX), "demo", "--vault", str(path), "--people", "12", "--fast-kdf", "--passphrase-stdin", "--quiet"],
        input=PASSPHRASE + "\n",
        text=True,
        check=True,
        capture_output=True,
        timeout=300,
    )
    vault = Vault(path)
    vault.unlock(bytearray(PASSPHRASE.encode()))
    try:
        store = open_store(vault)
        with store.lock, store.engine.begin() as conn:
            person_id, nhs = conn.exec_driver_sql(
                "SELECT id, nhs_number FROM person WHERE nhs_number IS NOT NULL ORDER BY id LIMIT 1"
            ).one()
            conn.exec_driver_sql(
                "UPDATE person SET given_name = ?, family_name = ?, preferred_name = NULL WHERE id = ?",
                (GIVEN, FAMILY, person_id),
            )
    finally:
        vault.lock()
    return path, str(nhs)


@pytest.fixture
def terminal(poisoned_vault: tuple[Path, str], tmp_path: Path) -> Iterator[tuple[RecordedTerminal, Path]]:
    log = tmp_path / "raw.log"
    env = {"SPRX_CONFIG_DIR": str(tmp_path / "config"), "TERM": "xterm-256color", "LANG": "C.UTF-8"}
    term = RecordedTerminal(120, 40, [str(SPRX), "--vault", str(poisoned_vault[0])], env, log)
    try:
        yield term, log
    finally:
        term.close()


def test_escape_sequences_in_a_name_never_reach_the_terminal(
    terminal: tuple[RecordedTerminal, Path], poisoned_vault: tuple[Path, str]
) -> None:
    term, log = terminal
    _vault, nhs = poisoned_vault
    term.wait_for("Passphrase")
    term.type(PASSPHRASE)
    term.keys("Enter")
    term.wait_for("Due today")

    # The caseload, filtered to this person by NHS number (the name itself is not typed).
    term.keys("F3")
    term.wait_for("Caseload (")
    term.keys("/")
    term.wait_for("esc Clear filter")  # the footer: the filter has the focus
    term.type(nhs)
    screen = term.wait_for("(1) · by name")
    assert SHOWN in screen
    term.keys("Enter")  # from the filter to the list
    term.wait_for("⏎ Open")  # the footer: the list has the focus
    term.keys("Enter")  # open the person
    screen = term.wait_for("Overview")
    assert SHOWN in screen  # the header: the name as written, escapes as placeholders
    # pipe-pane writes a little behind the screen and in order: once the lock screen drawn after the
    # record is in the log, everything drawn for the record is too.
    term.keys("C-l")
    term.wait_for("Locked.")
    raw = _log_holding(log, b"Locked.")
    assert raw, "pipe-pane recorded nothing"
    # Every "PWNED" written is inside the placeholder text "␛]0;PWNED␇", never after a real ESC ].
    assert "␛]0;PWNED␇".encode() in raw
    assert raw.count(b"PWNED") == raw.count("␛]0;PWNED␇".encode())
    for sequence in (b"\x1b]0;", b"\x1b]2;", b"\x1b]52;c;SGVsbG8", b"\x1b[2J"):
        assert sequence not in raw, f"{sequence!r} from the name reached the terminal"
    # Any OSC the app itself wrote (a pointer shape) is not one that sets a title or the clipboard.
    assert not re.search(rb"\x1b\](?:0|1|2|52);", raw)
    assert term.pane_title() == TITLE
    assert term.buffers() == ""  # no OSC 52 reached tmux's clipboard
