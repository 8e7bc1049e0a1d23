"""End to end in a real terminal: Ctrl+P "New person", fill, save, and find them in the caseload filter."""
# ruff: noqa: F811 - pytest fixtures imported from test_tmux are redefined as parameters

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlmodel import Session, select

from sprx_tui.core.models import Person, Referral
from sprx_tui.core.vault import Vault
from tests.e2e.test_tmux import PASSPHRASE, TMUX, Terminal, e2e_vault, terminal  # noqa: F401 - fixtures

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(TMUX is None, reason="tmux is not installed, so the real-terminal test cannot run"),
]


def test_new_person_from_the_palette_is_saved_opened_and_found_by_the_caseload_filter(
    terminal: Terminal, e2e_vault: Path
) -> None:
    terminal.wait_for("Passphrase")
    terminal.type(PASSPHRASE)
    terminal.keys("Enter")
    terminal.wait_for("Due today")

    terminal.keys("C-p")
    terminal.wait_for("Commands")
    terminal.type("new person")
    # The empty palette lists every command, this one's help included; Enter before the search for
    # "new person" has replaced that list would run whichever command was highlighted.
    terminal.wait_for("Add a person with their referral", gone="Lock now")
    terminal.keys("Enter")
    terminal.wait_for("New person and their referral")
    terminal.type("Zofia")
    terminal.keys("Tab")
    terminal.type("Quillfeather")
    terminal.keys("Tab", "Tab")
    terminal.type("943 476 5870")
    terminal.keys("C-s")
    screen = terminal.wait_for("Zofia Quillfeather  ·")  # their record's header
    assert "NHS 943 476 5870" in screen and "Referred" in screen

    terminal.keys("Escape")  # back to Today, where the palette was opened
    terminal.wait_for("Due today")
    terminal.keys("F3")
    terminal.wait_for("Caseload (")
    terminal.keys("/")
    terminal.wait_for("esc Clear filter")  # the footer: the filter has the focus
    terminal.type("quillf")
    screen = terminal.wait_for("(1) · by name")
    assert "Zofia Quillfeather" in screen and "943 476 5870" in screen

    terminal.keys("C-q")
    deadline = time.monotonic() + 30
    while terminal.alive() and time.monotonic() < deadline:  # polls the condition: sprx has exited
        time.sleep(0.25)
    assert not terminal.alive(), "sprx did not exit on Ctrl+Q"
    vault = Vault(e2e_vault)
    vault.unlock(bytearray(PASSPHRASE.encode()))
    try:
        with Session(vault.engine) as s:
            [person] = s.exec(select(Person).where(Person.family_name == "Quillfeather")).all()
            [referral] = s.exec(select(Referral).where(Referral.person_id == person.id)).all()
    finally:
        vault.lock()
    assert (person.nhs_number, referral.source) == ("9434765870", "self")
