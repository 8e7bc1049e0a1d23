"""Revocation that loses nothing by accident: *retire* (the laptop sends what it holds, then erases itself)
and *revoke* (lost or stolen: erased at once, nothing accepted), end to end with a real uvicorn server on
127.0.0.1 and real SQLCipher vaults; and `sprx-server device revoke` shows what it knows and asks first."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import Session, func, select

from sprx_tui.core import sync as laptop_sync
from sprx_tui.core.models import SyncOutbox
from sprx_tui.core.store import CaseStore, get_state, open_store
from sprx_tui.core.vault import Vault
from sync import protocol
from sync.server import store as tables
from sync.server.cli import main
from sync.server.store import ServerStore
from tests.sync.client_harness import VaultTemplate, vault_template  # noqa: F401 - fixture
from tests.sync.server_harness import TestServer, uvicorn_server, version_headers

RETIRED = "This laptop was retired by the practice; everything it held was sent, and its local copy has been erased."
REVOKED = "This laptop's access was withdrawn by the practice, so its local copy has been erased."


@dataclass
class Practice:
    tmp: Path
    db_url: str
    url: str
    admin: ServerStore
    template: VaultTemplate

    def laptop(self, name: str, worker: str = "alice") -> CaseStore:
        dest = self.tmp / f"vault-{name}"
        shutil.copytree(self.template.path, dest)
        vault = Vault(dest)
        vault.unlock_with_recovery(self.template.recovery)
        store = open_store(vault)
        code, _ = self.admin.issue_enrol_code(worker)
        laptop_sync.enrol(store, self.url, code, device_name=name)  # real HTTP to 127.0.0.1
        return store

    def server_text(self) -> str:
        """Every stored row's values, as the server holds them (plain JSON)."""
        with self.admin.engine.connect() as conn:
            return "\n".join(r.values for r in conn.execute(sa.select(tables.record.c["values"])))

    def cli(self, *args: str) -> tuple[int, str, str]:
        r = subprocess.run(
            [sys.executable, "-m", "sync.server.cli", *args, "--db", self.db_url],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        return r.returncode, r.stdout, r.stderr


@pytest.fixture
def practice(tmp_path: Path, vault_template: VaultTemplate) -> Iterator[Practice]:  # noqa: F811
    db_url = f"sqlite:///{tmp_path}/server.db"
    admin = ServerStore(db_url)
    admin.add_worker("alice", "P1")
    with uvicorn_server(db_url) as url:
        yield Practice(tmp_path, db_url, url, admin, vault_template)
    admin.close()


def pending(store: CaseStore) -> int:
    with Session(store.engine) as s:
        return int(s.exec(select(func.count()).select_from(SyncOutbox).where(SyncOutbox.status == "pending")).one())


@pytest.mark.slow  # a real uvicorn server and sprx in subprocesses
def test_retire_sends_the_pending_notes_then_erases_the_laptop(practice: Practice) -> None:
    store = practice.laptop("A")
    path = store.vault.path
    p = store.service.add_person(given_name="Ann", family_name="Example")
    assert laptop_sync.sync_now(store).status == "synced"
    device_id = get_state(store.engine, "device_id")
    # Written after the last sync: these exist only on the laptop.
    store.service.record_contact(p.id, mode="phone", notes="Walked to the allotment together")
    store.service.add_goal(p.id, "Join the Thursday choir")
    assert pending(store) >= 2
    code, out, err = practice.cli("device", "retire", device_id, "--yes")
    assert code == 0, err
    assert "Retired device" in out and "sends what it holds" in out

    r = laptop_sync.sync_now(store)

    assert (r.status, r.exit_code, r.message) == ("retired", 5, RETIRED)
    assert not path.exists() and not store.vault.is_unlocked
    held = practice.server_text()
    assert "Walked to the allotment together" in held and "Join the Thursday choir" in held
    d = practice.admin.device_info(device_id)
    assert d["retired_at"] is not None and d["revoked_at"] is not None  # finished: the token is withdrawn
    assert d["pending_reported"] == 0
    code, out, _ = practice.cli("device", "list")
    assert "retired " in out and "erased " in out


@pytest.mark.slow  # a real uvicorn server and sprx in subprocesses
def test_revoke_erases_at_once_and_accepts_nothing(practice: Practice) -> None:
    store = practice.laptop("B")
    path = store.vault.path
    p = store.service.add_person(given_name="Bea", family_name="Example")
    assert laptop_sync.sync_now(store).status == "synced"
    device_id = get_state(store.engine, "device_id")
    store.service.record_contact(p.id, mode="home_visit", notes="Note written on the stolen laptop")
    assert pending(store) >= 1
    code, out, err = practice.cli("device", "revoke", device_id, "--yes")
    assert code == 0, err
    assert "Revoked device" in out

    r = laptop_sync.sync_now(store)

    assert (r.status, r.exit_code, r.message) == ("revoked", 5, REVOKED)
    assert not path.exists() and not store.vault.is_unlocked
    assert "Note written on the stolen laptop" not in practice.server_text()
    assert "Bea" in practice.server_text()  # what it sent before the revocation stays


@pytest.mark.slow  # a real uvicorn server and sprx in subprocesses
def test_sprx_sync_says_retired_and_exits_5(practice: Practice) -> None:
    """The command line gives the retired sentence (and the exit code of an erased laptop)."""
    store = practice.laptop("C")
    store.service.add_person(given_name="Cy", family_name="Example")
    device_id = get_state(store.engine, "device_id")
    vault_path = store.vault.path
    store.vault.lock()
    assert practice.cli("device", "retire", device_id, "--yes")[0] == 0
    r = subprocess.run(
        [sys.executable, "-m", "sprx_tui.cli", "sync", "--vault", str(vault_path), "--passphrase-stdin"],
        input="walking group on tuesday\n", capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert r.returncode == 5, r.stderr
    assert r.stderr.strip() == f"sprx: {RETIRED}"
    assert not vault_path.exists()
    assert "Cy" in practice.server_text()


# -- the admin command ----------------------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[TestServer]:
    s = TestServer(f"sqlite:///{tmp_path}/s.db")
    yield s
    s.close()


def _report_pending(server: TestServer, token: str, n: int) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", protocol.PENDING_HEADER: str(n), **version_headers()}
    return server.client.get("/v1/sync/pull", params={"cursor": 0}, headers=headers)


@pytest.mark.slow  # a real uvicorn server and sprx in subprocesses
def test_device_revoke_shows_what_it_knows_and_refuses_without_yes_when_no_one_can_answer(
    server: TestServer,
) -> None:
    server.worker("alice")
    lap = server.laptop("alice", name="Front desk laptop")
    with server.store.engine.begin() as conn:  # as an older server, before the gate, could have stored it
        conn.execute(tables.device.update().values(name="Front desk \x1b]0;pwned\x07laptop"))
    assert _report_pending(server, lap.token, 7).status_code == 200
    db = server.store.url
    for cmd, refusal in (("revoke", "Nothing was revoked."), ("retire", "Nothing was retired.")):
        r = subprocess.run(
            [sys.executable, "-m", "sync.server.cli", "device", cmd, lap.device_id, "--db", db],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert r.returncode == 1
        assert r.stderr.strip() == f"{refusal} Run it again at a terminal to be asked, or add --yes."
        assert lap.device_id in r.stdout and "alice" in r.stdout
        assert "Changes waiting on the laptop: 7" in r.stdout
        assert "Last seen:" in r.stdout and "never" not in r.stdout.split("Last seen:")[1].splitlines()[0]
        assert "\x1b" not in r.stdout  # the device name is shown inert
    assert "the 7 change(s) waiting on it will be lost" in r.stdout or cmd == "retire"
    d = server.store.device_info(lap.device_id)
    assert d["revoked_at"] is None and d["retired_at"] is None


def test_device_revoke_asks_at_a_terminal(server: TestServer, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # noqa: ANN001
    server.worker("alice")
    lap = server.laptop("alice")
    db = ["--db", server.store.url]

    class Tty:
        closed = False

        def __init__(self, answer: str) -> None:
            self.answer = answer

        def isatty(self) -> bool:
            return True

        def readline(self) -> str:
            return self.answer

    monkeypatch.setattr("sys.stdin", Tty("n\n"))
    monkeypatch.setattr("builtins.input", lambda _prompt: "n")
    assert main(["device", "revoke", lap.device_id, *db]) == 1
    assert capsys.readouterr().err.strip() == "Nothing was revoked."
    assert server.store.device_info(lap.device_id)["revoked_at"] is None
    monkeypatch.setattr("builtins.input", lambda _prompt: "yes")
    assert main(["device", "revoke", lap.device_id, *db]) == 0
    assert "Revoked device" in capsys.readouterr().out
    assert server.store.device_info(lap.device_id)["revoked_at"] is not None
    # Revoked already: said so, nothing asked; a revoked laptop cannot be retired.
    assert main(["device", "revoke", lap.device_id, *db]) == 0
    assert "already revoked" in capsys.readouterr().out
    assert main(["device", "retire", lap.device_id, "--yes", *db]) == 1
    assert "cannot be retired" in capsys.readouterr().err


def test_a_retired_laptop_may_push_and_is_told_on_pull(server: TestServer) -> None:
    server.worker("alice")
    lap = server.laptop("alice")
    server.store.retire_device(lap.device_id)
    pid = "22222222-2222-4222-8222-222222222222"
    r = lap.push([lap.mutation("person", pid, "insert", {"given_name": "Dee", "family_name": "Example"})])
    assert r.status_code == 200 and r.json()["acks"][0]["status"] == "applied"
    # Still holding changes (one saved during the sync): told it is retired, but not finished yet.
    r = _report_pending(server, lap.token, 2)
    assert (r.status_code, r.json()["error"]) == (403, "device_retired")
    assert server.store.device_info(lap.device_id)["revoked_at"] is None
    assert lap.push([lap.mutation("person", pid, "patch", {"given_name": "Dee-Ann"}, base=None)]).status_code == 200
    r = _report_pending(server, lap.token, 0)
    assert (r.status_code, r.json()["error"]) == (403, "device_retired")
    assert server.store.device_info(lap.device_id)["revoked_at"] is not None
    assert lap.push([]).json()["error"] == "device_revoked"


def test_a_laptop_too_old_to_report_is_told_revoked_after_its_push(server: TestServer) -> None:
    """Old laptops push everything before they pull and know only device_revoked: that erases them."""
    server.worker("alice")
    lap = server.laptop("alice")
    server.store.retire_device(lap.device_id)
    r = server.client.get("/v1/sync/snapshot", headers=lap.headers)
    assert (r.status_code, r.json()["error"]) == (403, "device_revoked")
    assert server.store.device_info(lap.device_id)["revoked_at"] is not None


def test_push_records_what_the_laptop_still_holds(server: TestServer) -> None:
    server.worker("alice")
    lap = server.laptop("alice")
    pid = "33333333-3333-4333-8333-333333333333"
    body = {
        "device_id": lap.device_id,
        "protocol_version": protocol.PROTOCOL_VERSION,
        "schema_version": protocol.schema.SCHEMA_VERSION,
        "mutations": [lap.mutation("person", pid, "insert", {"given_name": "Eli", "family_name": "Example"})],
    }
    r = server.client.post("/v1/sync/push", json=body, headers={**lap.headers, protocol.PENDING_HEADER: "41"})
    assert r.status_code == 200
    assert server.store.device_info(lap.device_id)["pending_reported"] == 41
    # Without the header (an older laptop) nothing changes and nothing fails.
    assert lap.push([]).status_code == 200
    assert json.loads(json.dumps(server.store.device_info(lap.device_id)))["pending_reported"] == 41
