"""`sprx-server` admin output never writes a terminal escape or control character it was handed.

A device name is checked by the gate at enrolment, but a server database written by an older version (or edited
by hand) can hold one with an OSC title or clipboard sequence: `device list` and `device revoke` print it with
visible placeholders. A message that quotes what the admin passed (a file name) is printed the same way.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from sync.server import store as server_tables
from sync.server.cli import main
from sync.server.store import ServerStore

EVIL_NAME = "\x1b]0;PWNED\x07\x1b]52;c;SGVsbG8=\x07\x1b[2J\x9b31mEvil\u202e laptop"
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def db(tmp_path: Path) -> list[str]:
    return ["--db", f"sqlite:///{tmp_path}/s.db"]


def enrolled_with_evil_name(db: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """A laptop enrolled as 'laptop', then renamed in the database as an older server could have stored it."""
    assert run(capsys, "init", *db)[0] == 0
    assert run(capsys, "worker", "add", "alice", "--practice", "P1", *db)[0] == 0
    code, out, _ = run(capsys, "enrol-code", "alice", *db)
    enrol_code = out.split(": ")[1].split()[0]
    store = ServerStore(db[1])
    try:
        device_id = str(store.enrol(enrol_code, "laptop")["device_id"])
        with store.engine.begin() as conn:
            conn.execute(
                sa.update(server_tables.device).where(server_tables.device.c.id == device_id).values(name=EVIL_NAME)
            )
    finally:
        store.close()
    return device_id


def test_device_list_prints_an_escape_laden_name_inertly(db: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    device_id = enrolled_with_evil_name(db, capsys)
    code, out, err = run(capsys, "device", "list", *db)
    assert code == 0 and err == ""
    row = next(line for line in out.splitlines() if line.startswith(device_id))
    assert "\x1b" not in out and "\x07" not in out and "\x9b" not in out and "\u202e" not in out
    assert CONTROL.search(out.replace("\t", "").replace("\n", "")) is None
    # The name is still there to read, its escapes as visible placeholders.
    assert "␛]0;PWNED␇␛]52;c;SGVsbG8=␇␛[2J\ufffd31mEvil\ufffd laptop" in row.split("\t")


def test_device_revoke_describes_the_laptop_inertly(db: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    device_id = enrolled_with_evil_name(db, capsys)
    code, out, err = run(capsys, "device", "revoke", device_id, "--yes", *db)
    assert code == 0
    assert "\x1b" not in out + err and "␛]0;PWNED␇" in out


def test_a_failure_quoting_a_file_name_prints_no_escape(
    tmp_path: Path, db: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "\x1b]0;PWNED\x07refs.csv"
    code, out, err = run(capsys, "import-referrals", str(missing), *db)
    assert code == 1 and out == ""
    assert err.strip() and "\x1b" not in err and "\x07" not in err
