"""`sprx-server backup` and `restore`, and laptops after a restore losing nothing.

- a SQLite backup taken while laptops push is a consistent, private (0600), self-contained file;
- PostgreSQL goes through pg_dump/pg_restore, with one sentence when pg_dump is missing;
- restore goes only into an empty store, and refuses anything that is not a backup;
- end to end (real uvicorn, real SQLCipher vaults): sync, back up, more edits and syncs, restore the
  backup into a fresh store, sync again: the server has every change exactly once.
"""

from __future__ import annotations

import shutil
import sqlite3
import stat
import threading
import types
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from sprx_tui.core import sync as laptop_sync
from sprx_tui.core.models import SyncOutbox
from sprx_tui.core.store import CaseStore, open_store
from sprx_tui.core.vault import Vault
from sync.server import backup as backup_mod
from sync.server.cli import main
from sync.server.store import ServerStore, md
from tests.sync.client_harness import (  # noqa: F401
    VaultTemplate,
    is_held_event,
    laptop_dump,
    server_dump,
    vault_template,
)
from tests.sync.server_harness import create_database, free_port, uvicorn_server


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def mutation(mid: int, row_id: str, hlc: int) -> dict:
    return {"mutation_id": mid, "tbl": "person", "row_id": row_id, "person_id": None, "op": "insert",
            "fields": {"given_name": {"v": f"N{mid}", "hlc": hlc}}, "hlc": hlc, "conflict_id": None}  # fmt: skip


def rows(url: str) -> dict[str, list[tuple]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                t.name: [tuple(r) for r in conn.execute(sa.select(t).order_by(*t.primary_key.columns))]
                for t in md.sorted_tables
            }
    finally:
        engine.dispose()


def test_a_sqlite_backup_while_laptops_push_is_consistent_and_private(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/server.db"
    assert run(capsys, "init", "--db", url)[0] == 0
    store = ServerStore(url, create=False)
    store.add_worker("asmith", "P1")
    code, _ = store.issue_enrol_code("asmith")
    dev = store.authenticate(store.enrol(code, "laptop")["token"])
    stop = threading.Event()
    pushed = [0]

    def pusher() -> None:  # a laptop pushing one change after another in a second thread
        while not stop.is_set():
            mid = pushed[0] + 1
            store.push(dev, [mutation(mid, f"p-{mid}", (store.now_ms() << 16) + mid)])
            pushed[0] = mid

    t = threading.Thread(target=pusher)
    t.start()
    try:
        backups = []
        for i in range(5):
            out = tmp_path / "backups" / f"b{i}.db"
            code, msg, err = run(capsys, "backup", "--db", url, "--out", str(out))
            assert code == 0 and msg.startswith(f"Backed up {tmp_path}/server.db to {out}"), err
            backups.append(out)
    finally:
        stop.set()
        t.join()
    store.close()
    assert pushed[0] > 0
    seen = set()
    for b in backups:
        assert stat.S_IMODE(b.stat().st_mode) == 0o600
        assert not Path(str(b) + "-wal").exists()
        con = sqlite3.connect(b)
        try:
            assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one self-contained file
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            acked = con.execute("SELECT last_acked_mutation_id FROM device").fetchone()[0]
            # One transaction's state: the ledger, the records and the counter agree.
            assert con.execute("SELECT count(*) FROM applied_mutation").fetchone()[0] == acked
            assert con.execute("SELECT count(*) FROM record WHERE tbl = 'person'").fetchone()[0] == acked
            seq, max_log = con.execute("SELECT seq, (SELECT max(seq) FROM change_log) FROM server_meta").fetchone()
            assert max_log is None or seq >= max_log
            seen.add(acked)
        finally:
            con.close()
    assert len(seen) > 1  # the backups were taken while the pushes went on
    # A backup never overwrites a file.
    code, _, err = run(capsys, "backup", "--db", url, "--out", str(backups[0]))
    assert (
        code == 1
        and err.strip() == f"{backups[0]} already exists; a backup never overwrites a file, so choose a new name."
    )


def test_restore_goes_only_into_an_empty_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/server.db"
    assert run(capsys, "init", "--db", url)[0] == 0
    assert run(capsys, "worker", "add", "asmith", "--practice", "P1", "--db", url)[0] == 0
    out = tmp_path / "server.backup"
    assert run(capsys, "backup", "--db", url, "--out", str(out))[0] == 0
    before = rows(url)
    # Not into a store with data in it, this one or another.
    code, _, err = run(capsys, "restore", "--from", str(out), "--db", url)
    assert code == 1 and "is not empty" in err and "restore only into a new, empty store" in err
    assert rows(url) == before
    # Not from something that is not a backup, nor from a file that is not there.
    (tmp_path / "notes.txt").write_text("hello")
    code, _, err = run(capsys, "restore", "--from", str(tmp_path / "notes.txt"), "--db", f"sqlite:///{tmp_path}/n.db")
    assert code == 1 and "is not a sprx-server backup" in err
    code, _, err = run(capsys, "restore", "--from", str(tmp_path / "nope"), "--db", f"sqlite:///{tmp_path}/n.db")
    assert code == 1 and err.strip() == f"There is no backup file {tmp_path}/nope."
    assert not (tmp_path / "n.db").exists()
    # Into a new path, and into a store just made by init.
    for target in (tmp_path / "new" / "server.db", tmp_path / "fresh.db"):
        t_url = f"sqlite:///{target}"
        if target.name == "fresh.db":
            assert run(capsys, "init", "--db", t_url)[0] == 0
        code, msg, err = run(capsys, "restore", "--from", str(out), "--db", t_url)
        assert code == 0, err
        assert "Every laptop will resync" in msg
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
        after = rows(t_url)
        assert {k: v for k, v in after.items() if k != "server_meta"} == {
            k: v for k, v in before.items() if k != "server_meta"
        }
        assert after["server_meta"][0][1] != before["server_meta"][0][1]  # a new epoch: laptops resync
        code, msg, _ = run(capsys, "db", "current", "--db", t_url)
        assert code == 0


@pytest.mark.postgres
def test_postgresql_backup_and_restore(pg_base: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = create_database(pg_base, "b_" + uuid.uuid4().hex[:12])
    assert run(capsys, "init", "--db", url)[0] == 0
    assert run(capsys, "worker", "add", "asmith", "--practice", "P1", "--db", url)[0] == 0
    assert run(capsys, "enrol-code", "asmith", "--db", url)[0] == 0
    out = tmp_path / "pg.backup"
    code, msg, err = run(capsys, "backup", "--db", url, "--out", str(out))
    assert code == 0, err
    assert "@" not in msg and "postgres://" not in msg  # never the URL
    assert out.read_bytes()[:5] == b"PGDMP" and stat.S_IMODE(out.stat().st_mode) == 0o600
    before = rows(url)
    code, _, err = run(capsys, "restore", "--from", str(out), "--db", url)
    assert code == 1 and "is not empty" in err
    for made_by_init in (False, True):  # a new database, and one `init` has just filled
        fresh = create_database(pg_base, "r_" + uuid.uuid4().hex[:12])
        if made_by_init:
            assert run(capsys, "init", "--db", fresh)[0] == 0
        code, _, err = run(capsys, "restore", "--from", str(out), "--db", fresh)
        assert code == 0, err
        after = rows(fresh)
        assert {k: v for k, v in after.items() if k != "server_meta"} == {
            k: v for k, v in before.items() if k != "server_meta"
        }
        assert after["server_meta"][0][1] != before["server_meta"][0][1]  # a new epoch
        assert run(capsys, "db", "current", "--db", fresh)[0] == 0
    # A SQLite backup does not go into PostgreSQL.
    sq = f"sqlite:///{tmp_path}/s.db"
    assert run(capsys, "init", "--db", sq)[0] == 0
    assert run(capsys, "backup", "--db", sq, "--out", str(tmp_path / "s.backup"))[0] == 0
    other = create_database(pg_base, "x_" + uuid.uuid4().hex[:12])
    code, _, err = run(capsys, "restore", "--from", str(tmp_path / "s.backup"), "--db", other)
    assert code == 1 and "is a backup of a sqlite store" in err


def test_a_missing_pg_dump_is_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(backup_mod, "PG_BIN_GLOB", str(tmp_path / "no-postgresql" / "*" / "bin"))
    code, _, err = run(capsys, "backup", "--db", "postgresql+psycopg://sprx:secret@127.0.0.1:1/sprx", "--out",
                       str(tmp_path / "b"))  # fmt: skip
    assert code == 1
    assert err.strip() == (
        "pg_dump is not installed; install the PostgreSQL client tools (the postgresql-client package) "
        "of the server's version or newer."
    )
    assert not (tmp_path / "b").exists()


# ---------------------------------------------------------------- end to end: restore, re-sync, lose nothing


def laptop(tmp: Path, template: VaultTemplate, name: str, url: str, admin: ServerStore) -> CaseStore:
    dest = tmp / f"vault-{name}"
    shutil.copytree(template.path, dest)
    vault = Vault(dest)
    vault.unlock_with_recovery(template.recovery)
    store = open_store(vault)
    code, _ = admin.issue_enrol_code("alice")
    laptop_sync.enrol(store, url, code, device_name=name)  # real HTTP to 127.0.0.1
    return store


def synced(*stores: CaseStore) -> None:
    for s in stores:
        r = laptop_sync.sync_now(s)
        assert r.status == "synced", r.message


def record_ids(url: str) -> dict[tuple[str, str], str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rec = md.tables["record"]
            return {(r.tbl, r.id): r.values for r in conn.execute(sa.select(rec).where(rec.c.deleted.is_(False)))}
    finally:
        engine.dispose()


@pytest.fixture
def two_stores(tmp_path: Path) -> Iterator[tuple[str, str]]:
    yield f"sqlite:///{tmp_path}/live.db", f"sqlite:///{tmp_path}/restored/server.db"


@pytest.mark.slow  # two real uvicorn servers, two SQLCipher laptops
def test_laptops_resend_what_a_restored_server_lacks_and_nothing_is_lost(
    tmp_path: Path,
    two_stores: tuple[str, str],
    vault_template: VaultTemplate,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    live, restored = two_stores
    port = free_port()  # the laptops keep the server's address: the restored server comes back on it
    assert run(capsys, "init", "--db", live)[0] == 0
    admin = ServerStore(live, create=False)
    admin.add_worker("alice", "P1")
    with uvicorn_server(live, port=port) as url:
        a = laptop(tmp_path, vault_template, "A", url, admin)
        b = laptop(tmp_path, vault_template, "B", url, admin)
        ann = a.service.add_person(given_name="Ann", family_name="Example")
        a.service.add_goal(ann.id, "Join the walking group")
        synced(a, b)
        code, _, err = run(capsys, "backup", "--db", live, "--out", str(tmp_path / "nightly.backup"))
        assert code == 0, err
        # After the backup: edits on both laptops, all synced (the live server acks them) ...
        a.service.record_contact(ann.id, mode="phone", notes="Called after the backup")
        bo = b.service.add_person(given_name="Bo", family_name="Sample")
        b.service.add_goal(bo.id, "Try the choir")
        synced(a, b)
        a.service.update_person(ann.id, phone="01134960000")
        synced(a, b, a)
        before_loss = record_ids(live)
        # ... and one that is still waiting on laptop B when the server is lost.
        b.service.record_contact(bo.id, mode="home_visit", notes="Written while the server was down")
    admin.close()
    assert any("Called after the backup" in v for v in before_loss.values())

    # The server is lost; the backup goes into a fresh store, served at the same address.
    code, msg, err = run(capsys, "restore", "--from", str(tmp_path / "nightly.backup"), "--db", restored)
    assert code == 0, err
    assert not any("Called after the backup" in v for v in record_ids(restored).values())
    server = ServerStore(restored, create=False)
    view = types.SimpleNamespace(store=server)  # what server_dump reads
    try:
        with uvicorn_server(restored, port=port):
            for lap in (a, b):
                r = laptop_sync.sync_now(lap)
                assert r.status == "synced", r.message
                assert r.report is not None and r.report.resyncs == 1
                # The laptop sent what the restored server lacked before the snapshot replaced its copy, so
                # its own changes never left it: its copy and the server's agree as soon as it has synced.
                assert laptop_dump(lap) == server_dump(view, "alice")  # type: ignore[arg-type]
            for lap in (a, b):  # a second round brings each laptop the other's re-sent changes
                assert laptop_sync.sync_now(lap).status == "synced"
            after = record_ids(restored)
        # Every change the live server had is back, with the same values; plus B's unsent contact.
        assert {k: v for k, v in after.items() if k in before_loss} == before_loss
        extra = {k: v for k, v in after.items() if k not in before_loss and k[0] != "audit_event"}  # and its audit
        assert [k[0] for k in extra] == ["contact"] and "Written while the server was down" in next(
            iter(extra.values())
        )
        # Exactly once: one ledger entry per laptop change, no duplicate rows, nothing pending or refused.
        with server.engine.connect() as conn:
            applied = md.tables["applied_mutation"]
            for d in conn.execute(sa.select(md.tables["device"])).all():
                n = conn.execute(
                    sa.select(sa.func.count()).select_from(applied).where(applied.c.device_id == d.id)
                ).scalar_one()
                assert n == d.last_acked_mutation_id
            assert conn.execute(sa.select(sa.func.count()).select_from(md.tables["quarantine"])).scalar_one() == 0
        for lap in (a, b):
            with Session(lap.engine) as s:
                left = s.exec(select(SyncOutbox).where(SyncOutbox.status != "acked")).all()
            assert [o for o in left if not is_held_event(o)] == []  # only the syncs' own audit events wait (held)
            assert laptop_dump(lap) == server_dump(view, "alice")  # type: ignore[arg-type]
    finally:
        server.close()
        for lap in (a, b):
            lap.vault.lock()
