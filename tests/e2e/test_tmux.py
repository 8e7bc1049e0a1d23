"""End to end in a real terminal: `sprx` in tmux, unlock, caseload filter, open a person, save a contact, lock."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session, select

from sprx_tui.core.models import AuditEvent, Contact
from sprx_tui.core.store import open_store
from sprx_tui.core.vault import Vault

PASSPHRASE = "walking group on tuesday"
NOTE = "Walked to the community cafe together"
TMUX = shutil.which("tmux")
SPRX = Path(sys.executable).with_name("sprx")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(TMUX is None, reason="tmux is not installed, so the real-terminal test cannot run"),
]


class Terminal:
    """One tmux server on a private socket (never the user's), holding one window."""

    def __init__(self, width: int, height: int, command: list[str], env: dict[str, str]) -> None:
        self.socket = f"sprx-e2e-{uuid.uuid4().hex[:8]}"
        exports = " ".join(f"{k}={v}" for k, v in env.items())
        line = f"env {exports} " + " ".join(command)
        self._tmux("new-session", "-d", "-s", "e2e", "-x", str(width), "-y", str(height), line)

    def _tmux(self, *args: str) -> str:
        assert TMUX is not None
        return subprocess.run([TMUX, "-L", self.socket, *args], capture_output=True, text=True, check=True).stdout

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "e2e", *keys)

    def type(self, text: str) -> None:
        self._tmux("send-keys", "-t", "e2e", "-l", text)

    def text(self) -> str:
        try:
            return self._tmux("capture-pane", "-p", "-t", "e2e")
        except subprocess.CalledProcessError:
            return ""  # the app has exited and taken the window with it

    def wait_for(self, needle: str, timeout: float = 60.0, gone: str | None = None) -> str:
        """The screen once it shows `needle` (and no longer shows `gone`, when given)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.text()
            if needle in screen and (gone is None or gone not in screen):
                return screen
            time.sleep(0.25)
        missing = repr(needle) if gone is None else f"{needle!r} without {gone!r}"
        raise AssertionError(f"{missing} did not appear; the screen was:\n{self.text()}")

    def alive(self) -> bool:
        probe = subprocess.run([TMUX or "tmux", "-L", self.socket, "has-session", "-t", "e2e"], capture_output=True)
        return probe.returncode == 0

    def close(self) -> None:
        subprocess.run([TMUX or "tmux", "-L", self.socket, "kill-server"], capture_output=True)


@pytest.fixture(scope="module")
def e2e_vault(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("e2e") / "vault"
    subprocess.run(
        [str(SPRX), "demo", "--vault", str(path), "--people", "20", "--fast-kdf", "--passphrase-stdin", "--quiet"],
        input=PASSPHRASE + "\n",
        text=True,
        check=True,
        capture_output=True,
        timeout=300,
    )
    return path


@pytest.fixture
def terminal(e2e_vault: Path, tmp_path: Path) -> Iterator[Terminal]:
    env = {"SPRX_CONFIG_DIR": str(tmp_path / "config"), "TERM": "xterm-256color", "LANG": "C.UTF-8"}
    term = Terminal(120, 40, [str(SPRX), "--vault", str(e2e_vault)], env)
    try:
        yield term
    finally:
        term.close()


def test_unlock_filter_open_contact_and_lock_in_a_real_terminal(terminal: Terminal, e2e_vault: Path) -> None:
    # Who is in the vault (read before the app starts, with the core API).
    vault = Vault(e2e_vault)
    vault.unlock(bytearray(PASSPHRASE.encode()))
    store = open_store(vault)
    rows, _total = store.queries.caseload(limit=100)
    vault.lock()
    target = rows[0]
    family = target.name.split()[-1]

    terminal.wait_for("Passphrase")
    terminal.type(PASSPHRASE)
    terminal.keys("Enter")
    terminal.wait_for("Due today")

    terminal.keys("F3")
    terminal.wait_for("Caseload (")
    terminal.keys("/")
    terminal.wait_for("esc Clear filter")  # the footer: the filter has the focus
    terminal.type(family.lower())
    screen = terminal.wait_for(f"({sum(1 for r in rows if family in r.name)}) · by name")
    assert target.name in screen
    terminal.keys("Enter")  # from the filter to the list
    terminal.wait_for("⏎ Open")  # the footer: the list has the focus
    terminal.keys("Enter")  # open the highlighted person
    screen = terminal.wait_for("Overview")
    assert target.name in screen

    # A contact, saved through the person screen's `n`.
    terminal.keys("n")
    terminal.wait_for("Ctrl+S saves")
    # The whole form in one burst, as a practised worker types it: every key must land in the field the
    # Tab before it moved to (the app used to hand keys typed behind a Tab to the field being left).
    # Date/time keeps "now"; minutes; p for a phone call; the notes; a follow-up in a week; Ctrl+S.
    terminal.keys("Tab", "30", "Tab", "p", "Tab", NOTE, "Tab", "+7", "C-s")
    terminal.wait_for(NOTE[:30])  # back on the record, the new note at the top of the timeline

    terminal.keys("C-l")
    screen = terminal.wait_for("Locked.")
    for row in rows:
        assert row.name not in screen
        assert row.name.split()[-1] not in screen
        if row.nhs_number:
            assert row.nhs_number not in screen

    terminal.keys("C-q")
    deadline = time.monotonic() + 30
    while terminal.alive() and time.monotonic() < deadline:
        time.sleep(0.25)
    assert not terminal.alive(), "sprx did not exit on Ctrl+Q"

    vault = Vault(e2e_vault)
    vault.unlock(bytearray(PASSPHRASE.encode()))
    try:
        with Session(vault.engine) as s:
            contacts = s.exec(select(Contact).where(Contact.person_id == target.id)).all()
            saved = [(c.mode, c.duration_minutes, c.follow_up_on is not None) for c in contacts if c.notes == NOTE]
            notes = [c.notes for c in contacts]
            actions = [e.action for e in s.exec(select(AuditEvent).order_by(AuditEvent.seq)).all()]
    finally:
        vault.lock()
    assert NOTE in notes
    assert saved == [("phone", 30, True)]
    last_unlock = len(actions) - 1 - actions[::-1].index("UNLOCK")
    assert "VIEW" in actions[last_unlock:] and actions[-1] == "LOCK"
