"""Several `sprx-server serve` processes on one PostgreSQL: devices split between them round-robin push and
pull at once (with resent batches), and every change is applied exactly once, every ledger gap-free.

A reduced size of ``bench/bench_server_load.py --db postgres --processes 4 --devices 200``.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import uuid
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from sync import hlc as hlc_mod
from sync import protocol, schema
from sync.server import store as st
from tests.sync.server_harness import create_database, uvicorn_server, version_headers

PROCESSES = 2
DEVICES = 8
"""Two laptops per worker, split between the processes round-robin (so a worker's two laptops use both)."""
BATCHES = 4
BATCH = 20
"""Mutations per push: two people, each followed by nine contacts."""


def _batches(device_id: str, index: int) -> list[list[dict[str, Any]]]:
    out: list[list[dict[str, Any]]] = []
    mid, h, person = 0, hlc_mod.pack(hlc_mod.wall_ms(), 0), ""
    for _ in range(BATCHES):
        muts = []
        for _ in range(BATCH):
            mid += 1
            h += 1
            row = str(uuid.uuid5(uuid.NAMESPACE_URL, f"mp/{device_id}/{mid}"))
            if (mid - 1) % 10 == 0:
                person = row
                fields: dict[str, Any] = {"given_name": "Person", "family_name": f"Number {index}-{mid}"}
                m = {"mutation_id": mid, "tbl": "person", "row_id": row, "person_id": row, "op": "insert"}
            else:
                fields = {"mode": "phone", "notes": f"Call {mid}.", "occurred_at": "2025-03-03T10:00:00+00:00"}
                m = {"mutation_id": mid, "tbl": "contact", "row_id": row, "person_id": person, "op": "insert"}
            m["fields"] = {f: {"v": v, "hlc": h} for f, v in fields.items()}
            m["hlc"] = h
            muts.append(m)
        out.append(muts)
    return out


class _Laptop(threading.Thread):
    def __init__(self, url: str, code: str, index: int, go: threading.Event) -> None:
        super().__init__(daemon=True)
        self.http = httpx.Client(base_url=url, timeout=120)
        body = self.http.post("/v1/devices/enrol", json={"code": code, "device_name": f"mp-{index}"}).json()
        self.device_id = body["device_id"]
        self.http.headers.update({"Authorization": f"Bearer {body['token']}", **version_headers()})
        self.batches = _batches(self.device_id, index)
        self.go = go
        self.cursor = 0
        self.rows: set[str] = set()
        self.acks: dict[str, int] = {}
        self.resent = 0
        self.error: str | None = None

    def push(self, muts: list[dict[str, Any]]) -> None:
        body = {"device_id": self.device_id, "protocol_version": protocol.PROTOCOL_VERSION,
                "schema_version": schema.SCHEMA_VERSION, "mutations": muts}  # fmt: skip
        r = self.http.post("/v1/sync/push", json=body)
        r.raise_for_status()
        for a in r.json()["acks"]:
            self.acks[a["status"]] = self.acks.get(a["status"], 0) + 1

    def pull(self) -> None:
        while True:
            r = self.http.get("/v1/sync/pull", params={"cursor": self.cursor, "limit": 1000})
            r.raise_for_status()
            page = r.json()
            self.rows.update(c["id"] for c in page["changes"])
            self.cursor = page["next_cursor"]
            if not page["has_more"]:
                return

    def run(self) -> None:
        self.go.wait()
        try:
            for b, muts in enumerate(self.batches):
                self.push(muts)
                if b % 2 == 1:
                    self.resent += len(muts)
                    self.push(muts)  # as if the answer had been lost
                self.pull()
        except Exception as e:  # noqa: BLE001 - reported by the assertions below
            self.error = f"{type(e).__name__}: {e}"


@pytest.mark.slow
@pytest.mark.postgres
def test_two_server_processes_on_one_postgres_apply_every_change_exactly_once(pg_base: str) -> None:
    db = create_database(pg_base, "mp_" + uuid.uuid4().hex[:12])
    store = st.ServerStore(db)
    workers = [f"mw{i}" for i in range(DEVICES // 2)]
    for w in workers:
        store.add_worker(w, "P1")
    codes = [store.issue_enrol_code(workers[i // 2])[0] for i in range(DEVICES)]
    store.close()
    with contextlib.ExitStack() as stack:
        urls = [stack.enter_context(uvicorn_server(db)) for _ in range(PROCESSES)]
        go = threading.Event()
        laptops = [_Laptop(urls[i % PROCESSES], codes[i], i, go) for i in range(DEVICES)]
        for lap in laptops:
            lap.start()
        go.set()
        for lap in laptops:
            lap.join(300)
        for lap in laptops:  # everyone has pushed: each catches up on its partner's last rows
            lap.pull()
    assert [lap.error for lap in laptops if lap.error] == []
    per = BATCHES * BATCH
    total = DEVICES * per
    store = st.ServerStore(db)
    try:
        with store.engine.connect() as c:
            count = {t: int(c.execute(sa.select(sa.func.count()).select_from(st.md.tables[t])).scalar_one())
                     for t in ("applied_mutation", "record", "change_log", "quarantine", "conflict")}  # fmt: skip
            ledgers = {
                r.device_id: (int(r.n), int(r.lo), int(r.hi))
                for r in c.execute(
                    sa.select(
                        st.applied_mutation.c.device_id,
                        sa.func.count().label("n"),
                        sa.func.min(st.applied_mutation.c.mutation_id).label("lo"),
                        sa.func.max(st.applied_mutation.c.mutation_id).label("hi"),
                    ).group_by(st.applied_mutation.c.device_id)
                )
            }
            seqs = [int(s) for (s,) in c.execute(sa.select(st.record.c.seq).order_by(st.record.c.seq))]
            owner = dict(
                c.execute(
                    sa.select(st.record.c.id, st.assignment.c.worker_id).join(
                        st.assignment, st.assignment.c.person_id == st.record.c.person_id
                    )
                ).all()
            )
    finally:
        store.close()
    assert count == {"applied_mutation": total, "record": total, "change_log": total, "quarantine": 0, "conflict": 0}
    # Every device's ledger holds 1..n, each once: gap-free, exactly once, whichever process took each push.
    assert ledgers == {lap.device_id: (per, 1, per) for lap in laptops}
    assert sum(lap.acks.get("applied", 0) for lap in laptops) == total
    assert sum(lap.acks.get("duplicate", 0) for lap in laptops) == sum(lap.resent for lap in laptops) > 0
    # One feed, one counter: every record has its own seq.
    assert len(set(seqs)) == total
    for i, lap in enumerate(laptops):
        assert lap.rows == {rid for rid, w in owner.items() if w == workers[i // 2]}


@pytest.mark.postgres
def test_reports_run_against_a_read_only_copy_of_the_store(pg_base: str) -> None:
    """A read replica refuses every write: opening the store and reporting must not need one."""
    name = "ro_" + uuid.uuid4().hex[:12]
    db = create_database(pg_base, name)
    store = st.ServerStore(db)
    store.add_worker("rw1", "P1")
    store.close()
    admin = sa.create_engine(pg_base + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    admin.dispose()
    for args in (["report", "--db", db, "--practice", "P1"], ["device", "list", "--db", db]):
        p = subprocess.run([sys.executable, "-m", "sync.server.cli", *args],
                           capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
        assert p.returncode == 0, (args[0], p.stderr[-2000:])
    with pytest.raises(sa.exc.InternalError):  # it really is read-only
        st.ServerStore(db).add_worker("rw2", "P1")
