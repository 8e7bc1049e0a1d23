"""The laptop's inbound gate: a poisoned row on the server never stops a sync; it is set aside and counted.

A real SQLCipher vault syncs with a real ``sprx-server serve`` (uvicorn on 127.0.0.1). The poison is
written straight into the server's ``record`` / ``conflict`` tables, bypassing the server's own gate,
as an older server version could have left it (issue 9: a goal text "\\ud800" made every laptop in
the scope fail each sync with UnicodeEncodeError; a name holding an OSC title sequence reached the
terminal raw).
"""
# ruff: noqa: F811 - pytest fixtures imported from the harness are redefined as parameters

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from sprx_rules.validate import ValidationError
from sprx_tui.core import sync as laptop_sync
from sprx_tui.core.models import Goal, Person, SyncConflict, SyncOutbox, SyncQuarantine
from sprx_tui.core.service import InvalidInput
from sprx_tui.core.store import CaseStore, open_store
from sprx_tui.core.sync import load_sync_view
from sprx_tui.core.vault import Vault
from sync.merge import SERVER_DEVICE
from sync.server import store as st
from tests.sync.client_harness import PASSPHRASE, VaultTemplate, is_held_event, vault_template  # noqa: F401 - fixture
from tests.sync.server_harness import uvicorn_server

SURROGATE = "\ud800"
OSC_TITLE = "\x1b]0;PWNED\x07"
ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- the server side


@dataclass
class Practice:
    """An admin's handle on the server's store (the same SQLite file the uvicorn process serves)."""

    store: st.ServerStore
    url: str
    people: dict[str, str]  # person id -> goal id

    def person(self, given: str) -> tuple[str, str]:
        pid, gid = str(uuid.uuid4()), str(uuid.uuid4())
        self.store.server_write(
            "person",
            pid,
            {"given_name": given, "family_name": "Example", "consent_social_prescribing": True,
             "consent_gp_sharing": "full", "safety_flags": [], "status": "active"},
            practice_id="P1",
        )  # fmt: skip
        self.store.assign(pid, worker_id="alice")
        self.goal(pid, gid, f"Walk with {given}")
        self.people[pid] = gid
        return pid, gid

    def goal(self, pid: str, gid: str, text: str) -> None:
        self.store.server_write(
            "goal",
            gid,
            {"text": text, "status": "not_started", "position": "a0", "progress_notes": "", "target_on": None},
            practice_id="P1",
            person_id=pid,
        )

    def poison(self, tbl: str, row_id: str, field: str, value: Any) -> None:
        """Put a value into a stored row bypassing the gate, with a new place in the change feed."""
        rec = st.record
        with self.store._write() as conn:
            r = conn.execute(sa.select(rec).where(rec.c.tbl == tbl, rec.c.id == row_id)).one()
            values = json.loads(r.values)
            values[field] = value
            seq = self.store._next_seq(conn)
            conn.execute(
                rec.update().where(rec.c.tbl == tbl, rec.c.id == row_id).values(values=st.canonical(values), seq=seq)
            )
            self.store._log(conn, seq, "record", tbl, row_id, r.person_id, r.practice_id, SERVER_DEVICE, None,
                            self.store.now_ms())  # fmt: skip

    def put_conflict(self, cid: str, pid: str, gid: str, versions: list[str]) -> None:
        """An open goal-text conflict written straight into the server's conflict table."""
        values = [{"v": v, "hlc": (i + 1) << 16, "dev": f"dev-{i}", "seq": i + 1} for i, v in enumerate(versions)]
        with self.store._write() as conn:
            seq = self.store._next_seq(conn)
            conn.execute(st.conflict.delete().where(st.conflict.c.id == cid))
            conn.execute(
                st.conflict.insert().values(
                    id=cid, practice_id="P1", tbl="goal", row_id=gid, person_id=pid, field="text",
                    kind="concurrent_edit", values=st.canonical(values), shown_idx=0, status="open",
                    resolution=None, seq=seq,
                )
            )  # fmt: skip
            self.store._log(conn, seq, "conflict", "goal", cid, pid, "P1", SERVER_DEVICE, None, self.store.now_ms())

    def enrol(self, store: CaseStore) -> None:
        code, _ = self.store.issue_enrol_code("alice")
        laptop_sync.enrol(store, self.url, code, device_name="laptop")


@pytest.fixture
def practice(tmp_path: Path) -> Iterator[Practice]:
    db_url = f"sqlite:///{tmp_path}/server.db"
    admin = st.ServerStore(db_url)
    admin.add_worker("alice", "P1")
    try:
        with uvicorn_server(db_url) as url:
            yield Practice(admin, url, {})
    finally:
        admin.close()


def laptop_vault(template: VaultTemplate, tmp_path: Path) -> tuple[Path, CaseStore]:
    import shutil

    dest = tmp_path / "laptop"
    shutil.copytree(template.path, dest)
    vault = Vault(dest)
    vault.unlock_with_recovery(template.recovery)
    return dest, open_store(vault)


# ---------------------------------------------------------------- what the laptop holds


def rows(store: CaseStore, model: Any) -> dict[str, Any]:
    with Session(store.engine, expire_on_commit=False) as s:
        return {r.id: r for r in s.exec(select(model)).all()}


def quarantine(store: CaseStore) -> list[SyncQuarantine]:
    with Session(store.engine, expire_on_commit=False) as s:
        return list(s.exec(select(SyncQuarantine).order_by(SyncQuarantine.tbl, SyncQuarantine.row_id)).all())


def assert_inert(entries: list[SyncQuarantine]) -> None:
    """Nothing kept about a set-aside row can reach a terminal raw, and the value is not kept whole."""
    for q in entries:
        for text in (q.tbl, q.row_id, q.person_id or "", q.field, q.reason, q.excerpt):
            assert "\x1b" not in text and "\x07" not in text
            assert not any(0xD800 <= ord(ch) <= 0xDFFF for ch in text)
        assert len(q.excerpt) <= laptop_sync.EXCERPT_CHARS
        assert q.reason.endswith(".") and q.field in q.reason.replace(" ", "_")


def run_cli_sync(vault: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "sprx_tui.cli", "--vault", str(vault), "--passphrase-stdin", "sync"],
        input=PASSPHRASE + "\n",
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=ROOT,
        check=False,
    )


# ---------------------------------------------------------------- first sync (snapshot)


@pytest.mark.slow  # syncs over a real uvicorn server
def test_first_sync_sets_poisoned_rows_aside_and_everything_else_arrives(
    practice: Practice, vault_template: VaultTemplate, tmp_path: Path
) -> None:
    good = [practice.person(name) for name in ("Ann", "Bea", "Cal")]
    bad_person, bad_persons_goal = practice.person("Dee")
    _, bad_goal = practice.person("Eve")
    practice.poison("person", bad_person, "family_name", OSC_TITLE)
    practice.poison("goal", bad_goal, "text", SURROGATE)

    path, store = laptop_vault(vault_template, tmp_path)
    practice.enrol(store)
    store.vault.lock()
    # `sprx sync` headless: a success, and the summary says what was set aside.
    done = run_cli_sync(path)
    assert done.returncode == laptop_sync.EXIT_SYNCED, done.stderr
    assert "2 rows from the server were set aside (they hold text that cannot be shown safely)." in done.stdout
    assert "\x1b" not in done.stdout + done.stderr

    vault = Vault(path)
    vault.unlock(bytearray(PASSPHRASE.encode()))
    store = open_store(vault)
    try:
        people, goals = rows(store, Person), rows(store, Goal)
        # Every good row arrived, the poisoned person's own good goal too; the poisoned rows did not.
        assert set(people) == {p for p, _ in good} | {practice_pid(practice, bad_goal)}
        assert set(goals) == {g for _, g in good} | {bad_persons_goal}
        entries = quarantine(store)
        assert [(q.tbl, q.row_id, q.field) for q in entries] == sorted(
            [("goal", bad_goal, "text"), ("person", bad_person, "family_name")]
        )
        assert all(q.server_seq and q.server_seq > 0 for q in entries)
        assert_inert(entries)
        status = laptop_sync.sync_status(store)
        assert status.set_aside == 2
        assert laptop_sync.set_aside_sentence(status.set_aside).startswith("2 rows from the server were set aside")

        # The server's copies are corrected: the next sync applies them like any other change.
        practice.store.server_write("person", bad_person, {"family_name": "Jones"}, practice_id="P1")
        practice.goal(practice_pid(practice, bad_goal), bad_goal, "Walk to the shop")
        r = laptop_sync.sync_now(store)
        assert (r.status, r.exit_code, r.set_aside) == ("synced", 0, 0), r.message
        assert rows(store, Person)[bad_person].family_name == "Jones"
        assert rows(store, Goal)[bad_goal].text == "Walk to the shop"
        assert quarantine(store) == [] and laptop_sync.sync_status(store).set_aside == 0
        assert laptop_sync.set_aside_sentence(0) == ""
    finally:
        vault.lock()


def practice_pid(practice: Practice, gid: str) -> str:
    return next(p for p, g in practice.people.items() if g == gid)


# ---------------------------------------------------------------- incremental pull


@pytest.mark.slow  # syncs over a real uvicorn server
def test_incremental_pull_sets_aside_a_bad_row_version_and_a_bad_conflict_and_goes_on(
    practice: Practice, vault_template: VaultTemplate, tmp_path: Path
) -> None:
    ann, ann_goal = practice.person("Ann")
    bea, _ = practice.person("Bea")
    _, store = laptop_vault(vault_template, tmp_path)
    try:
        practice.enrol(store)
        first = laptop_sync.sync_now(store)
        assert first.status == "synced", first.message
        local_ann = store.service.add_goal(ann, "Find the library")  # local work still waiting to be sent

        # Poison arrives: a bad version of a person this laptop holds, a new goal holding a lone
        # surrogate, and a conflict whose versions hold a screen-clearing escape sequence.
        practice.poison("person", bea, "family_name", OSC_TITLE)
        new_goal = str(uuid.uuid4())
        practice.goal(ann, new_goal, "Swim on Fridays")
        practice.poison("goal", new_goal, "text", SURROGATE)
        good_goal = str(uuid.uuid4())
        practice.goal(ann, good_goal, "Cook with a friend")
        cid = str(uuid.uuid4())
        practice.put_conflict(cid, ann, ann_goal, ["Walk daily", "Walk \x1b[2J daily"])

        r = laptop_sync.sync_now(store)
        assert (r.status, r.exit_code) == ("synced", 0), r.message
        assert r.set_aside == 3
        goals = rows(store, Goal)
        assert good_goal in goals and local_ann.id in goals and new_goal not in goals
        # The copy this laptop already held stays as it was; the bad version is not applied.
        assert rows(store, Person)[bea].family_name == "Example"
        assert rows(store, SyncConflict) == {}
        assert load_sync_view(store).conflicts == []
        with Session(store.engine) as s:
            waiting = s.exec(select(SyncOutbox).where(SyncOutbox.status == "pending")).all()
        assert not [o for o in waiting if not is_held_event(o)]  # only the syncs' own audit events (held)
        entries = quarantine(store)
        assert {(q.tbl, q.row_id, q.field) for q in entries} == {
            ("person", bea, "family_name"),
            ("goal", new_goal, "text"),
            ("sync_conflict", cid, "text"),
        }
        assert_inert(entries)
        bea_entry = next(q for q in entries if q.tbl == "person")
        assert bea_entry.excerpt == "\u241b]0;PWNED\u2407" and bea_entry.person_id == bea
        assert laptop_sync.sync_status(store).set_aside == 3

        # A sync with nothing new keeps the entries (and still succeeds).
        again = laptop_sync.sync_now(store)
        assert (again.status, again.set_aside) == ("synced", 3), again.message

        # Corrected on the server: each later good version applies and clears its entry.
        practice.store.server_write("person", bea, {"family_name": "Jones"}, practice_id="P1")
        practice.goal(ann, new_goal, "Swim on Fridays")
        practice.put_conflict(cid, ann, ann_goal, ["Walk daily", "Walk twice daily"])
        r = laptop_sync.sync_now(store)
        assert (r.status, r.set_aside) == ("conflicts", 0), r.message
        assert rows(store, Person)[bea].family_name == "Jones"
        assert rows(store, Goal)[new_goal].text == "Swim on Fridays"
        assert [v.text for v in load_sync_view(store).conflicts[0].versions] == ["Walk daily", "Walk twice daily"]
        assert quarantine(store) == []
    finally:
        store.vault.lock()


# ---------------------------------------------------------------- local writes go through the same gate


def count(store: CaseStore, table: str) -> int:
    with store.engine.connect() as c:
        return int(c.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar() or 0)  # noqa: S608 - fixed names


def test_a_local_write_the_gate_refuses_names_the_field_and_writes_nothing(
    vault_template: VaultTemplate, tmp_path: Path
) -> None:
    _, store = laptop_vault(vault_template, tmp_path)
    svc = store.service
    try:
        p = svc.add_person(given_name="Ann", family_name="Example")
        g = svc.add_goal(p.id, "Walk to the shop")
        before = {t: count(store, t) for t in ("person", "goal", "sync_outbox", "audit_event")}
        cases = [
            (lambda: svc.add_person(given_name="Ann", family_name="Ex" + SURROGATE), "family_name"),
            (lambda: svc.add_person(given_name="Ann", family_name="Ex", preferred_name=OSC_TITLE), "preferred_name"),
            (lambda: svc.update_person(p.id, preferred_name="A\u202eB"), "preferred_name"),
            (lambda: svc.update_goal(g.id, text="Walk \x1b[2J"), "text"),
            (lambda: svc.add_goal(p.id, "Walk " + SURROGATE), "text"),
        ]
        for write, field in cases:
            with pytest.raises(ValidationError) as exc:
                write()
            assert exc.value.field == field
            # Also what forms catch: errors by field, a plain sentence that does not repeat the value.
            assert isinstance(exc.value, InvalidInput) and set(exc.value.errors) == {field}
            message = str(exc.value)
            assert message.endswith(".") and "\x1b" not in message and SURROGATE not in message
        assert {t: count(store, t) for t in before} == before
        assert rows(store, Person)[p.id].preferred_name is None
        assert rows(store, Goal)[g.id].text == "Walk to the shop"
        # Right-to-left text, emoji and line breaks in notes are ordinary text and pass.
        svc.update_person(p.id, preferred_name="\u0645\u0631\u064a\u0645 \U0001f44b\U0001f3fd")
        svc.update_goal(g.id, text="Walk to the shop\nand back")
    finally:
        store.vault.lock()


# ---------------------------------------------------------------- the count on the Sync screen


@pytest.mark.slow  # syncs over a real uvicorn server
async def test_the_sync_screen_says_how_many_rows_were_set_aside(
    practice: Practice, vault_template: VaultTemplate, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from textual.widgets import Static

    from sprx_tui.app import SprxApp
    from sprx_tui.config import Config
    from sprx_tui.screens.sync import SyncScreen
    from tests.tui.settling import open_area, settle, wait_until

    monkeypatch.setenv("SPRX_CONFIG_DIR", str(tmp_path / "config"))
    _, bad_goal = practice.person("Ann")
    bea, _ = practice.person("Bea")
    practice.poison("goal", bad_goal, "text", SURROGATE)
    _, store = laptop_vault(vault_template, tmp_path)
    practice.enrol(store)
    app = SprxApp(store.vault.path, config=Config(auto_sync=False), store=store)
    app.animation_level = "none"
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_area(pilot, "f6", SyncScreen)
            aside = screen.query_one("#sync-set-aside", Static)
            assert not aside.display  # nothing set aside: no sentence at all
            await pilot.press("s")
            await wait_until(pilot, lambda: app._sync.last is not None and not app._sync.running, what="the sync")
            await settle(pilot, rounds=4)
            assert app._sync.last is not None and app._sync.last.status == "synced", app._sync.last
            assert aside.display
            assert str(aside.render()) == (
                "1 row from the server was set aside (it holds text that cannot be shown safely)."
            )
            assert bea in rows(store, Person)
    finally:
        if store.vault.is_unlocked:
            store.vault.lock()
