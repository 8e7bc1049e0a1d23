"""End to end over real processes: `sprx-server serve` with TLS, the admin CLI, `sprx enrol` / `sprx sync`, SIGKILL."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlmodel import Session, select

from sprx_tui.core.models import Contact, Goal, Person, Referral, SyncConflict, SyncOutbox
from sprx_tui.core.store import CaseStore, get_state, open_store
from sprx_tui.core.vault import Vault
from tests.sync.client_harness import is_held_event

PASSPHRASE = "walking group on tuesday"
# One world (server + laptops) is built per module and each test goes on from the last: keep them on one worker.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("sync_e2e")]


def nhs_999(serial: int) -> str:
    """A valid NHS number in the 999 test range (Modulus 11)."""
    for n in range(serial, serial + 100):
        body = f"999{n:06d}"
        total = sum(int(d) * w for d, w in zip(body, range(10, 1, -1), strict=True))
        check = 11 - total % 11
        if check == 11:
            check = 0
        if check != 10:
            return body + str(check)
    raise ValueError("no valid number")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(*args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )


def admin(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    r = run("-m", "sync.server.cli", *args, "--db", db)
    assert r.returncode == 0, r.stderr
    return r


def sprx(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return run("-m", "sprx_tui.cli", *args, "--passphrase-stdin", stdin=PASSPHRASE + "\n", timeout=timeout)


@dataclass
class ServerProc:
    db: str
    port: int
    cert: Path
    key: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sync.server.cli", "serve", "--db", self.db, "--host", "127.0.0.1",
             "--port", str(self.port), "--tls-cert", str(self.cert), "--tls-key", str(self.key)],
            stdout=out, stderr=out,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-2000:]
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("server did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None


@dataclass
class World:
    tmp: Path
    db: str
    db_file: Path
    server: ServerProc
    url: str
    vaults: dict[str, Path] = field(default_factory=dict)

    def open(self, name: str) -> CaseStore:
        vault = Vault(self.vaults[name])
        vault.unlock(bytearray(PASSPHRASE.encode()))
        return open_store(vault)

    def server_rows(self, sql: str, *params: object) -> list[tuple]:
        with sqlite3.connect(self.db_file, timeout=30) as conn:
            return conn.execute(sql, params).fetchall()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("e2e")
    r = run("-m", "sync.server.cli", "tls-cert", "--out", str(tmp / "tls"))
    assert r.returncode == 0, r.stderr
    db_file = tmp / "server.db"
    db = f"sqlite:///{db_file}"
    admin(db, "init")  # only init makes a store (issue 11)
    admin(db, "worker", "add", "alice", "--practice", "P1")
    server = ServerProc(db, free_port(), tmp / "tls" / "server.crt", tmp / "tls" / "server.key", tmp / "server.log")
    server.start()
    w = World(tmp, db, db_file, server, f"https://127.0.0.1:{server.port}")
    try:
        for name in ("A", "B"):
            path = tmp / f"vault-{name}"
            r = sprx("init", "--vault", str(path), "--fast-kdf")
            assert r.returncode == 0, r.stderr
            code = admin(db, "enrol-code", "alice").stdout.split("\n")[0].split()[-1]
            r = sprx("enrol", "--vault", str(path), "--server", w.url, "--code", code, "--ca-cert", str(server.cert))
            assert r.returncode == 0, r.stderr
            assert "pinned" in r.stdout
            w.vaults[name] = path
        yield w
    finally:
        server.stop()


def test_imported_referral_reaches_the_assigned_laptop(world: World) -> None:
    nhs = nhs_999(1234)
    today = dt.date.today()
    csv = world.tmp / "referrals.csv"
    csv.write_text(
        "nhs_number,given_name,family_name,date_of_birth,postcode,phone,source,referrer_name,received_on,"
        "reasons,urgency,referral_text,worker\n"
        f"{nhs},Iris,Example,1950-04-02,LS1 4AB,07700 900123,gp,Dr Test,{today.isoformat()},"
        "loneliness;money,routine,Synthetic referral for the e2e test,alice\n"
    )
    r = admin(world.db, "import-referrals", str(csv))
    assert "Imported 1 referral" in r.stdout
    r = sprx("sync", "--vault", str(world.vaults["A"]))
    assert r.returncode == 0, r.stderr
    assert "Synced" in r.stdout
    store = world.open("A")
    try:
        with Session(store.engine) as s:
            (person,) = s.exec(select(Person).where(Person.nhs_number == nhs)).all()
            (referral,) = s.exec(select(Referral).where(Referral.person_id == person.id)).all()
        assert (person.given_name, person.family_name, referral.source) == ("Iris", "Example", "gp")
        rows, total = store.queries.caseload(text="iris")
        assert total == 1
    finally:
        store.vault.lock()


def test_conflicting_offline_edits_show_one_conflict_on_both_laptops(world: World) -> None:
    a = world.open("A")
    try:
        (pid,) = [p.id for p in a.queries.caseload(text="iris")[0]]
        gid = a.service.add_goal(pid, "Join the lunch club").id
    finally:
        a.vault.lock()
    for name in ("A", "B"):
        assert sprx("sync", "--vault", str(world.vaults[name])).returncode == 0
    for name, text in (("A", "Lunch club on Wednesdays"), ("B", "Lunch club and the library")):
        store = world.open(name)
        try:
            store.service.update_goal(gid, text=text)
        finally:
            store.vault.lock()
    codes = [sprx("sync", "--vault", str(world.vaults[n])).returncode for n in ("A", "B", "A")]
    assert codes[-1] == 4, codes  # synced, but a person must choose
    seen = []
    for name in ("A", "B"):
        store = world.open(name)
        try:
            with Session(store.engine) as s:
                cs = s.exec(select(SyncConflict).where(SyncConflict.status == "open")).all()
                goal = s.get(Goal, gid)
            seen.append(([c.id for c in cs], goal.text))
            assert sorted(v["v"] for v in cs[0].values_json) == [
                "Lunch club and the library",
                "Lunch club on Wednesdays",
            ]
        finally:
            store.vault.lock()
    assert seen[0] == seen[1] and len(seen[0][0]) == 1
    r = sprx("sync", "--vault", str(world.vaults["B"]))
    assert r.returncode == 4 and "conflict" in r.stdout


def test_server_killed_mid_sync_loses_nothing_and_duplicates_nothing(world: World) -> None:
    store = world.open("A")
    n = 1200
    try:
        (pid,) = [p.id for p in store.queries.caseload(text="iris")[0]]
        with store.service.transaction():
            for i in range(n):
                store.service.record_contact(pid, mode="phone", notes=f"bulk call {i}")
        device = get_state(store.engine, "device_id")
    finally:
        store.vault.lock()
    before = world.server_rows("SELECT count(*) FROM applied_mutation WHERE device_id = ?", device)[0][0]
    proc = subprocess.Popen(
        [sys.executable, "-m", "sprx_tui.cli", "sync", "--vault", str(world.vaults["A"]), "--passphrase-stdin"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdin is not None
    proc.stdin.write(PASSPHRASE + "\n")
    proc.stdin.close()
    # Kill the server as soon as the first batch has been committed, while the laptop is still pushing.
    deadline = time.monotonic() + 120
    applied = before
    while time.monotonic() < deadline and proc.poll() is None:
        applied = world.server_rows("SELECT count(*) FROM applied_mutation WHERE device_id = ?", device)[0][0]
        if applied > before:
            break
        time.sleep(0.01)
    world.server.kill()
    proc.wait(180)
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert proc.returncode in (3, 1), (proc.returncode, err)  # offline: kept for later
    assert "changes are kept" in err
    killed_at = world.server_rows("SELECT count(*) FROM applied_mutation WHERE device_id = ?", device)[0][0]
    assert before < killed_at < before + 2 * n, "the server was not killed part-way through the push"
    world.server.start()
    r = sprx("sync", "--vault", str(world.vaults["A"]))
    assert r.returncode in (0, 4), r.stderr
    store = world.open("A")
    try:
        with Session(store.engine) as s:
            pending = s.exec(select(SyncOutbox).where(SyncOutbox.status == "pending")).all()
            outbox = len(s.exec(select(SyncOutbox.mutation_id)).all())
            local_bulk = len(s.exec(select(Contact.id).where(Contact.notes.like("bulk call %"))).all())
        # Every change was sent; only the last sync's own audit event may wait, for the next request
        # (sync.client.HELD_ACTIONS).
        held = [r for r in pending if is_held_event(r)]
        assert [r for r in pending if not is_held_event(r)] == [] and len(held) <= 1
    finally:
        store.vault.lock()
    server_bulk = world.server_rows(
        "SELECT count(*) FROM record WHERE tbl = 'contact' AND json_extract(\"values\", '$.notes') LIKE 'bulk call %'"
    )[0][0]
    assert local_bulk == server_bulk == n
    applied = world.server_rows("SELECT count(*) FROM applied_mutation WHERE device_id = ?", device)[0][0]
    assert applied == outbox - len(held)  # each change applied once, none twice


def test_wrong_certificate_is_refused_before_anything_is_sent(world: World) -> None:
    world.server.stop()
    r = run("-m", "sync.server.cli", "tls-cert", "--out", str(world.tmp / "tls2"))
    assert r.returncode == 0
    admin(f"sqlite:///{world.tmp / 'impostor.db'}", "init")
    impostor = ServerProc(
        f"sqlite:///{world.tmp / 'impostor.db'}",
        world.server.port,
        world.tmp / "tls2" / "server.crt",
        world.tmp / "tls2" / "server.key",
        world.tmp / "impostor.log",
    )
    impostor.start()
    try:
        store = world.open("A")
        try:
            store.service.record_contact(store.queries.caseload(text="iris")[0][0].id, mode="phone", notes="secret")
        finally:
            store.vault.lock()
        r = sprx("sync", "--vault", str(world.vaults["A"]))
    finally:
        impostor.stop()
        world.server.start()
    assert r.returncode == 1
    assert "certificate is not the one recorded at enrolment" in r.stderr
    assert r.stderr.count("\n") == 1  # one plain sentence, no traceback
    # The impostor never saw an HTTP request, let alone a body.
    assert '"event": "http"' not in impostor.log.read_text()


def test_revoked_laptop_exits_5_and_its_vault_is_erased(world: World) -> None:
    store = world.open("B")
    try:
        device = get_state(store.engine, "device_id")
    finally:
        store.vault.lock()
    r = admin(world.db, "device", "revoke", device, "--yes")
    assert "Revoked" in r.stdout
    r = sprx("sync", "--vault", str(world.vaults["B"]))
    assert r.returncode == 5, r.stderr
    assert r.stderr.strip() == (
        "sprx: This laptop's access was withdrawn by the practice, so its local copy has been erased."
    )
    assert not world.vaults["B"].exists()
    assert os.path.exists(world.vaults["A"])


def test_a_demo_vault_is_never_enrolled_and_its_code_stays_usable(world: World) -> None:
    """Made-up people must not reach a practice's records: `sprx enrol` refuses a demo vault before
    it contacts the server, so the one-time code is not spent and no device is registered."""
    path = world.tmp / "vault-demo"
    r = sprx("demo", "--vault", str(path), "--people", "3", "--fast-kdf", "--quiet")
    assert r.returncode == 0, r.stderr
    devices = world.server_rows("SELECT count(*) FROM device")[0][0]
    code = admin(world.db, "enrol-code", "alice").stdout.split("\n")[0].split()[-1]
    r = sprx("enrol", "--vault", str(path), "--server", world.url, "--code", code, "--ca-cert", str(world.server.cert))
    assert r.returncode != 0
    assert "demo vault of made-up people" in r.stderr and "Traceback" not in r.stderr
    assert world.server_rows("SELECT count(*) FROM device")[0][0] == devices
    r = sprx("sync", "--vault", str(path))
    assert r.returncode != 0 and "not enrolled" in (r.stdout + r.stderr).lower()
    # The code was not spent: a real vault enrols with it.
    real = world.tmp / "vault-real-after-demo"
    assert sprx("init", "--vault", str(real), "--fast-kdf").returncode == 0
    r = sprx("enrol", "--vault", str(real), "--server", world.url, "--code", code, "--ca-cert", str(world.server.cert))
    assert r.returncode == 0, r.stderr
    assert world.server_rows("SELECT count(*) FROM device")[0][0] == devices + 1
