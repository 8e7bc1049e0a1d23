"""Sync benchmarks (DESIGN.md section 10) against real uvicorn over loopback HTTPS, beside the PouchDB peer.

Scenarios, all in one session so the ratios compare like with like on this shared machine:

* caseload: a server holding PEOPLE people x CONTACTS contacts for one worker (loaded through the
  real push path from a scripted device, batches of <= 500); a fresh laptop enrols, first-syncs it
  (time and peak RSS of the client process), pushes 100 edits right after, then no-op and
  incremental syncs.
* scale: two servers, one holding 10k rows (the worker's 1,000 people x 9 contacts) and one holding
  the same 10k rows plus ~990k rows of another worker's caseload (bulk SQL, see ``bulk_rows``);
  a laptop of each syncs 10 changes pushed by another device through the real push path, reps
  alternating between the servers so machine noise hits both alike.

Usage: ``.venv/bin/python bench/bench_sync.py [--client scripted|real|both] [--skip-peer]``.

``--quick --json FILE``: the PouchDB peer and the shipped client (real vault) in alternating rounds
(>= 3) on a 2,000-person practice; for first_sync, push_100, incremental_10 and noop the medians of
both, their ratio and the load average of each round (about 5 minutes here).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import sqlite3
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
CACHE = OUT / "sync-cache"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

NS = uuid.UUID("0b6c2d7e-5a1f-4d0e-9c3b-8e2f1a6d4c90")
PRACTICE = "P1"
NOTE = "Home visit {}: discussed walking group, befriending and debt advice; follow up in two weeks."
PY = sys.executable
NHS_BASE = {"cl": 0, "sc": 150_000, "ot": 200_000}
"""Each caseload tag draws from its own slice of test NHS numbers (no accidental duplicate-person flags)."""


def rid(tag: str, kind: str, *parts: int) -> str:
    """Deterministic ids, so the orchestrator, loader and client agree without talking."""
    return str(uuid.uuid5(NS, f"{tag}/{kind}/" + "/".join(map(str, parts))))


def nhs_number(i: int) -> str:
    """The i-th Modulus 11-valid NHS number in the 999 test range (synthetic, never a real person)."""
    # Two candidates per index: if 2i has no valid check digit, 2i+1 (weight-2 digit +1) has one.
    for n in (999_000_000 + 2 * i, 999_000_001 + 2 * i):
        digits = f"{n:09d}"
        check = 11 - sum(int(d) * (10 - k) for k, d in enumerate(digits)) % 11
        check = 0 if check == 11 else check
        if check != 10:
            return digits + str(check)
    raise AssertionError("unreachable: one of two neighbours always has a check digit")


def person_values(p: int, base: int = 0) -> dict[str, Any]:
    return {
        "nhs_number": nhs_number(base + p),
        "given_name": "Person",
        "family_name": f"Number {p}",
        "status": "active",
    }


def contact_values(c: int) -> dict[str, Any]:
    return {"mode": "home_visit", "notes": NOTE.format(c), "occurred_at": "2025-03-03T10:00:00+00:00",
            "duration_minutes": 30, "author": "bench"}  # fmt: skip


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1048576


# --------------------------------------------------------------------------- server data


def _reset(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def _checkpoint(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def load_via_push(db_url: str, worker: str, tag: str, people: int, contacts: int) -> dict[str, float]:
    """PEOPLE people with CONTACTS contacts each, pushed by a scripted device of WORKER (real push path)."""
    from sync import hlc as hlc_mod
    from tests.sync.server_harness import TestServer

    ts = TestServer(db_url, clock=hlc_mod.wall_ms)
    try:
        if worker not in {d for d in _workers(ts.store)}:
            ts.worker(worker, PRACTICE)
        lap = ts.laptop(worker, f"loader-{tag}")
        per = 1 + contacts
        group = max(1, 500 // per)  # whole people per batch, so person rows precede their contacts
        t0 = time.perf_counter()
        for start in range(0, people, group):
            batch = []
            for p in range(start, min(people, start + group)):
                pid = rid(tag, "person", p)
                batch.append(lap.mutation("person", pid, "insert", person_values(p, NHS_BASE[tag])))
                for c in range(contacts):
                    batch.append(
                        lap.mutation("contact", rid(tag, "contact", p, c), "insert", contact_values(c), person_id=pid)
                    )
            r = lap.push(batch)
            r.raise_for_status()
            bad = [a for a in r.json()["acks"] if a["status"] != "applied"]
            if bad:
                raise RuntimeError(f"loader push rejected: {bad[:2]}")
        return {"rows": people * per, "seconds": time.perf_counter() - t0}
    finally:
        ts.close()


def _workers(store: Any) -> list[str]:
    import sqlalchemy as sa

    from sync.server.store import worker

    with store.engine.connect() as c:
        return list(c.execute(sa.select(worker.c.id)).scalars())


def bulk_rows(db_url: str, worker: str, tag: str, people: int, contacts: int) -> dict[str, float]:
    """SHORTCUT for the 1M-row server: rows written straight into ``record``/``change_log``/``assignment``
    with the server's own SQLAlchemy tables in ONE transaction (executemany), bypassing merge and the
    ledger. The shapes (values/meta JSON, one feed entry per row, seq from server_meta) are what the
    push path writes; only the per-row merge work is skipped, which is what makes 1M rows take a
    minute instead of half an hour. Nothing here is timed as sync work."""
    import sqlalchemy as sa

    from sync import hlc as hlc_mod
    from sync.server.store import ServerStore, assignment, canonical, change_log, record, server_meta

    st = ServerStore(db_url)
    try:
        if worker not in _workers(st):
            st.add_worker(worker, PRACTICE)
        t0 = time.perf_counter()
        now = hlc_mod.wall_ms()
        h = hlc_mod.pack(now - 3_600_000, 0)
        with st.engine.begin() as conn:
            seq = int(conn.execute(sa.select(server_meta.c.seq).where(server_meta.c.id == 1)).scalar_one())
            recs: list[dict[str, Any]] = []
            logs: list[dict[str, Any]] = []
            asg: list[dict[str, Any]] = []

            def flush() -> None:
                if recs:
                    conn.execute(record.insert(), recs)
                    conn.execute(change_log.insert(), logs)
                if asg:
                    conn.execute(assignment.insert(), asg)
                recs.clear(), logs.clear(), asg.clear()

            def add(tbl: str, row_id: str, pid: str, values: dict[str, Any], lookup: str | None) -> None:
                nonlocal seq
                seq += 1
                meta = {f: {"hlc": h, "dev": "bulk", "seq": seq} for f in values}
                recs.append({"tbl": tbl, "id": row_id, "practice_id": PRACTICE, "person_id": pid,
                             "values": canonical(values), "meta": canonical(meta), "deleted": False,
                             "seq": seq, "lookup": lookup})  # fmt: skip
                logs.append({"seq": seq, "kind": "record", "tbl": tbl, "row_id": row_id, "person_id": pid,
                             "practice_id": PRACTICE, "origin_device": "bulk", "origin_mutation_id": None,
                             "at": now})  # fmt: skip

            for p in range(people):
                pid = rid(tag, "person", p)
                seq += 1
                asg.append({"person_id": pid, "practice_id": PRACTICE, "worker_id": worker, "team_id": None,
                            "seq": seq})  # fmt: skip
                pv = person_values(p, NHS_BASE[tag])
                add("person", pid, pid, pv, pv["nhs_number"])
                for c in range(contacts):
                    add("contact", rid(tag, "contact", p, c), pid, contact_values(c), None)
                if len(recs) >= 20_000:
                    flush()
            flush()
            conn.execute(server_meta.update().where(server_meta.c.id == 1).values(seq=seq))
        return {"rows": people * (1 + contacts), "seconds": time.perf_counter() - t0}
    finally:
        st.close()


def server_db(name: str, build: Any, rebuild: bool, work: Path) -> tuple[str, dict[str, Any]]:
    """A private copy of a cached server database, building it the first time."""
    CACHE.mkdir(parents=True, exist_ok=True)
    cached = CACHE / f"{name}.db"
    info_path = CACHE / f"{name}.json"
    if rebuild or not cached.exists() or not info_path.exists():
        _reset(cached)
        info = build(f"sqlite:///{cached}")
        _checkpoint(cached)
        info_path.write_text(json.dumps(info))
    dest = work / f"{name}.db"
    _reset(dest)
    shutil.copyfile(cached, dest)
    return f"sqlite:///{dest}", json.loads(info_path.read_text())


def issue_code(db_url: str, worker: str) -> str:
    from sync.server.store import ServerStore

    st = ServerStore(db_url)
    try:
        return st.issue_enrol_code(worker)[0]
    finally:
        st.close()


def count_rows(db_url: str) -> int:
    from sync.server.store import ServerStore

    st = ServerStore(db_url)
    try:
        return st.count("record")
    finally:
        st.close()


def make_cert(work: Path) -> tuple[Path, Path]:
    d = work / "tls"
    subprocess.run([PY, "-m", "sync.server.cli", "tls-cert", "--out", str(d)], check=True, capture_output=True)
    return d / "server.crt", d / "server.key"


# --------------------------------------------------------------------------- scripted laptop


class Writer:
    """Another enrolled device of the same worker: makes the 10 changes through the real push path."""

    def __init__(self, url: str, cafile: str, code: str) -> None:
        import httpx

        from tests.sync.server_harness import version_headers

        self.http = httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=cafile), timeout=120)
        body = self.http.post("/v1/devices/enrol", json={"code": code, "device_name": "writer"}).json()
        self.device_id, self.token = body["device_id"], body["token"]
        self.headers = {"Authorization": f"Bearer {self.token}", **version_headers()}
        self.mid = 0
        self.last_hlc = int(body["server_hlc"])

    def change(self, person_ids: list[str], status: str) -> None:
        from sync import hlc as hlc_mod
        from sync import protocol, schema

        muts = []
        for pid in person_ids:
            self.mid += 1
            self.last_hlc = hlc_mod.tick(self.last_hlc, hlc_mod.wall_ms())
            muts.append({"mutation_id": self.mid, "tbl": "person", "row_id": pid, "person_id": pid, "op": "patch",
                         "fields": {"status": {"v": status, "hlc": self.last_hlc}}, "hlc": self.last_hlc})  # fmt: skip
        body = {"device_id": self.device_id, "protocol_version": protocol.PROTOCOL_VERSION,
                "schema_version": schema.SCHEMA_VERSION, "mutations": muts}  # fmt: skip
        r = self.http.post("/v1/sync/push", json=body, headers=self.headers)
        r.raise_for_status()
        acks = r.json()["acks"]
        if len(acks) != len(muts) or any(a["status"] != "applied" for a in acks):
            raise RuntimeError(f"writer push not applied: {acks[:2]}")


class ScriptedLaptop:
    """A minimal laptop: httpx + an SQLCipher file of raw rows, an outbox and a cursor.

    Stand-in until the real client lands: same requests, page-per-transaction commits, but rows stay
    JSON blobs (no domain tables, no local merge), so it measures transport + server + storage.
    """

    def __init__(self, url: str, cafile: str, path: Path) -> None:
        import sqlcipher3

        self.url = url
        self.ctx = ssl.create_default_context(cafile=cafile)
        _reset(path)
        self.db = sqlcipher3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA key=\"x'" + "ab" * 32 + "'\"")
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "temp_store=MEMORY", "secure_delete=ON"):
            self.db.execute(f"PRAGMA {pragma}")
        self.db.executescript(
            """
            CREATE TABLE row (tbl TEXT, id TEXT, person_id TEXT, vals TEXT, meta TEXT, seq INTEGER,
                              deleted INTEGER, PRIMARY KEY (tbl, id));
            CREATE TABLE state (k TEXT PRIMARY KEY, v TEXT);
            CREATE TABLE outbox (mutation_id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT, status TEXT);
            """
        )
        self.headers: dict[str, str] = {}
        self.device_id = ""
        self.cursor = 0
        self.epoch = ""

    def _client(self) -> Any:
        import httpx

        return httpx.Client(base_url=self.url, verify=self.ctx, timeout=300, headers=self.headers)

    def enrol(self, code: str) -> None:
        from tests.sync.server_harness import version_headers

        with self._client() as http:
            body = http.post("/v1/devices/enrol", json={"code": code, "device_name": "bench laptop"}).json()
        self.device_id = body["device_id"]
        self.headers = {"Authorization": f"Bearer {body['token']}", **version_headers()}
        self.epoch = body["server_epoch"]

    def _apply(self, changes: list[dict[str, Any]], state: dict[str, str]) -> None:
        self.db.execute("BEGIN")
        self.db.executemany(
            "INSERT OR REPLACE INTO row VALUES (?,?,?,?,?,?,?)",
            [
                (
                    c["tbl"],
                    c["id"],
                    c["person_id"],
                    json.dumps(c["values"]),
                    json.dumps(c["meta"]),
                    c["seq"],
                    int(c["deleted"]),
                )
                for c in changes
            ],  # fmt: skip
        )
        self.db.executemany("INSERT OR REPLACE INTO state VALUES (?,?)", list(state.items()))
        self.db.execute("COMMIT")

    def _pull(self, http: Any) -> int:
        n = 0
        while True:
            r = http.get("/v1/sync/pull", params={"cursor": self.cursor, "limit": 1000, "epoch": self.epoch})
            r.raise_for_status()
            page = r.json()
            if page["changes"]:
                self._apply(page["changes"], {"cursor": str(page["next_cursor"])})
            n += len(page["changes"])
            self.cursor = page["next_cursor"]
            if not page["has_more"]:
                return n

    def first_sync(self) -> int:
        n, after = 0, None
        with self._client() as http:
            while True:
                params: dict[str, Any] = {"limit": 1000}
                if after:
                    params["after"] = after
                r = http.get("/v1/sync/snapshot", params=params)
                r.raise_for_status()
                page = r.json()
                state = {"snapshot_after": page["after"] or "", "cursor": str(page["snapshot_seq"])}
                self._apply(page["changes"], state)
                n += len(page["changes"])
                if not page["has_more"]:
                    break
                after = page["after"]
            self.cursor = page["snapshot_seq"]
            n += self._pull(http)
        return n

    def jump_to_tip(self) -> None:
        """Start at the server's tip without copying the rows (for the all-in-scope 1M variant only)."""
        with self._client() as http:
            self.cursor = http.get("/v1/sync/snapshot", params={"limit": 1}).json()["snapshot_seq"]

    def edit(self, contact_ids: list[tuple[str, str]]) -> None:
        """Queue one contact amendment per contact (the domain's way of changing a note)."""
        self.db.execute("BEGIN")
        for i, (cid, pid) in enumerate(contact_ids):
            body = {"tbl": "contact_amendment", "row_id": str(uuid.uuid4()), "person_id": pid, "op": "insert",
                    "fields": {"contact_id": {"v": cid}, "text": {"v": f"Amended note {i}."},
                               "reason": {"v": "typo"}, "author": {"v": "bench"},
                               "amended_at": {"v": "2025-03-04T09:00:00+00:00"}}}  # fmt: skip
            self.db.execute("INSERT INTO outbox (body, status) VALUES (?, 'pending')", (json.dumps(body),))
        self.db.execute("COMMIT")

    def push(self) -> int:
        from sync import hlc as hlc_mod
        from sync import protocol, schema

        sent = 0
        with self._client() as http:
            while True:
                rows = self.db.execute(
                    "SELECT mutation_id, body FROM outbox WHERE status='pending' ORDER BY mutation_id LIMIT 500"
                ).fetchall()
                if not rows:
                    return sent
                h = hlc_mod.pack(hlc_mod.wall_ms(), 0)
                muts = []
                for mid, body in rows:
                    m = json.loads(body)
                    m["mutation_id"], m["hlc"] = mid, h
                    for fc in m["fields"].values():
                        fc["hlc"] = h
                    muts.append(m)
                body = {"device_id": self.device_id, "protocol_version": protocol.PROTOCOL_VERSION,
                        "schema_version": schema.SCHEMA_VERSION, "mutations": muts}  # fmt: skip
                r = http.post("/v1/sync/push", json=body)
                r.raise_for_status()
                acks = r.json()["acks"]
                if any(a["status"] not in ("applied", "duplicate") for a in acks):
                    raise RuntimeError(f"push rejected: {acks[:2]}")
                self.db.execute("BEGIN")
                self.db.executemany(
                    "UPDATE outbox SET status='acked' WHERE mutation_id=?", [(a["mutation_id"],) for a in acks]
                )
                self.db.execute("COMMIT")
                sent += len(acks)

    def sync(self) -> int:
        """What a periodic sync does: push the outbox, then pull."""
        self.push()
        with self._client() as http:
            return self._pull(http)

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM row").fetchone()[0])


# --------------------------------------------------------------------------- real laptop (sync/client.py)


def real_client_available() -> bool:
    try:
        import sprx_tui.core.sync  # noqa: F401
        import sync.client  # noqa: F401
    except ImportError:
        return False
    return True


class RealLaptop:
    """The shipped client: a real SQLCipher vault (memory security on, as the app runs), enrolled with
    ``core.sync.enrol`` (certificate pinned) and synced with ``core.sync.sync_now``."""

    def __init__(self, url: str, cafile: str, path: Path) -> None:
        from sprx_tui.core.store import open_store
        from sprx_tui.core.vault import FLOOR, Vault

        self.url, self.cafile = url, cafile
        shutil.rmtree(path, ignore_errors=True)
        # As a worker does it: `sprx init` makes and migrates the vault, then `sprx enrol` / `sprx sync`
        # unlock it again. (With a statement cache, bulk inserts on the connection that ran the
        # migrations were 2-3x slower; see "The statement cache" in BENCHMARKS.md.)
        vault, _ = Vault.create(path, bytearray(b"walking group on tuesday"), kdf=FLOOR)
        open_store(vault)
        vault.lock()
        vault.unlock(bytearray(b"walking group on tuesday"))
        self.store = open_store(vault)
        self.push_phase_s = 0.0
        self.last: Any = None

    def enrol(self, code: str) -> None:
        from sprx_tui.core.sync import enrol

        enrol(self.store, self.url, code, ca_cert=self.cafile, device_name="bench laptop")

    def sync(self) -> int:
        """sync_now, with the end of its push phase noted from the progress callback."""
        from sprx_tui.core.sync import sync_now

        t0 = time.perf_counter()
        events: list[tuple[str, float]] = []

        def progress(phase: str, _done: int, _total: int | None) -> None:
            events.append((phase, time.perf_counter() - t0))

        r = sync_now(self.store, progress=progress)
        if not r.ok:
            raise RuntimeError(f"sync_now: {r.status}: {r.message}")
        # The first push phase ends with its last progress call before the pull reports anything.
        first_other = next((i for i, (ph, _t) in enumerate(events) if ph != "push"), len(events))
        self.push_phase_s = events[first_other - 1][1] if first_other else 0.0
        self.last = r
        return int(r.pulled)

    def first_sync(self) -> int:
        return self.sync()

    def edit(self, contact_ids: list[tuple[str, str]]) -> None:
        for i, (cid, _pid) in enumerate(contact_ids):
            self.store.service.amend_contact(cid, text=f"Amended note {i}.", reason="typo")

    def push(self) -> int:
        self.sync()
        return int(self.last.acked)

    def count(self) -> int:
        from sqlalchemy import text

        with self.store.lock, self.store.engine.connect() as c:
            q = text("SELECT (SELECT count(*) FROM person) + (SELECT count(*) FROM contact)")
            return int(c.execute(q).scalar())


# --------------------------------------------------------------------------- client process


class Timed:
    """Wall time plus CPU seconds of this laptop process and of the server process, for one step."""

    def __init__(self, server_pid: int | None) -> None:
        self.pid = server_pid

    def __enter__(self) -> Timed:
        self.s0 = proc_cpu_s(self.pid) if self.pid else 0.0
        self.c0, self.w0 = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.wall = time.perf_counter() - self.w0
        self.client_cpu = time.process_time() - self.c0
        self.server_cpu = (proc_cpu_s(self.pid) - self.s0) if self.pid else 0.0

    def as_dict(self, name: str) -> dict[str, float]:
        return {
            f"{name}_s": self.wall,
            f"{name}_client_cpu_s": self.client_cpu,
            f"{name}_server_cpu_s": self.server_cpu,
        }


def client_process(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs in its own process so peak RSS is the laptop's alone."""
    impl = RealLaptop if spec["impl"] == "real" else ScriptedLaptop
    work = Path(spec["work"])
    out: dict[str, Any] = {"impl": spec["impl"], "rss_start_mb": round(rss_mb(), 1)}
    if spec["scenario"] == "caseload":
        srv = spec["servers"][0]
        lap = impl(srv["url"], srv["cafile"], work / f"laptop-{spec['impl']}")
        lap.enrol(srv["code"])
        with Timed(srv["pid"]) as t:
            n = lap.first_sync()
        out.update(t.as_dict("first_sync"))
        out["first_sync_rows"] = lap.count()
        out["first_sync_reported"] = n
        out["peak_rss_mb"] = round(peak_rss_mb(), 1)
        # 100 edits right after the large first sync, then push them (edits themselves untimed).
        lap.edit([(rid(srv["tag"], "contact", i, 0), rid(srv["tag"], "person", i)) for i in range(100)])
        with Timed(srv["pid"]) as t:
            lap.push()
        out.update(t.as_dict("push_100"))
        if isinstance(lap, RealLaptop):
            # sync_now = one exchange: the 100 edits pushed and their rows pulled back with server seqs (an
            # older server: push, then pull); the sync's own audit event waits for the next request.
            out["push_100_push_phase_s"] = lap.push_phase_s
            out["push_100_mutations_acked"] = int(lap.last.report.acked)
            out["push_100_rows_pulled_back"] = int(lap.last.pulled)
            out["push_100_requests"] = int(lap.last.report.requests)
        # The same again a few times (different contacts), for a median that one noisy moment cannot set.
        again: dict[str, list[float]] = {}
        for k in range(1, 5):
            lap.edit([(rid(srv["tag"], "contact", 100 * k + i, 0), rid(srv["tag"], "person", 100 * k + i))
                      for i in range(100)])  # fmt: skip
            with Timed(srv["pid"]) as t:
                lap.push()
            for key, v in t.as_dict("push_100_again").items():
                again.setdefault(key, []).append(v)
        out.update({f"{k}_median": statistics.median(v) for k, v in again.items()})
        writer = Writer(srv["url"], srv["cafile"], srv["writer_code"])
        out.update(_incr_noop([(lap, writer, srv)], spec["reps"])[0])
        out["peak_rss_end_mb"] = round(peak_rss_mb(), 1)
        return out
    # scale: alternate reps between the servers
    pairs = []
    for srv in spec["servers"]:
        lap = impl(srv["url"], srv["cafile"], work / f"laptop-{spec['impl']}-{srv['name']}")
        lap.enrol(srv["code"])
        with Timed(srv["pid"]) as t:
            if srv.get("jump"):
                lap.jump_to_tip()
                n = 0
            else:
                n = lap.first_sync()
        out.update({f"{srv['name']}_{k}": v for k, v in t.as_dict("first_sync").items()})
        out[f"{srv['name']}_first_sync_rows"] = n
        pairs.append((lap, Writer(srv["url"], srv["cafile"], srv["writer_code"]), srv))
    for srv, res in zip(spec["servers"], _incr_noop(pairs, spec["reps"]), strict=True):
        out.update({f"{srv['name']}_{k}": v for k, v in res.items()})
    return out


def _incr_noop(pairs: list[tuple[Any, Writer, dict[str, Any]]], reps: int) -> list[dict[str, Any]]:
    keys = ("incremental_10", "noop")
    got: list[dict[str, list[float]]] = [{} for _ in pairs]
    seen: list[list[int]] = [[] for _ in pairs]
    for rep in range(reps + 1):  # rep 0 warms up connections and caches; not counted
        for i, (lap, writer, srv) in enumerate(pairs):
            pids = [rid(srv["tag"], "person", 10 * rep + k) for k in range(10)]
            writer.change(pids, "discharged" if rep % 2 == 0 else "active")
            with Timed(srv["pid"]) as inc:
                n = lap.sync()
            with Timed(srv["pid"]) as noop:
                lap.sync()
            if rep:
                for key, t in zip(keys, (inc, noop), strict=True):
                    for k, v in t.as_dict(key).items():
                        got[i].setdefault(k, []).append(v)
                seen[i].append(n)
    out = []
    for i in range(len(pairs)):
        d: dict[str, Any] = {f"{k}_median": statistics.median(v) for k, v in got[i].items()}
        # Server CPU is read in 10 ms clock ticks: the mean over all reps resolves it better.
        d.update({f"{k}_mean": statistics.fmean(v) for k, v in got[i].items() if "cpu" in k})
        d["incremental_10_all_s"] = [round(x, 4) for x in got[i]["incremental_10_s"]]
        d["noop_all_s"] = [round(x, 4) for x in got[i]["noop_s"]]
        d["incremental_changes_seen"] = seen[i]
        out.append(d)
    return out


def run_client(spec: dict[str, Any]) -> dict[str, Any]:
    p = subprocess.run([PY, __file__, "_client"], input=json.dumps(spec), capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"client process failed:\n{p.stderr[-4000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- orchestration


@contextlib.contextmanager
def serve(db_url: str, cert: Path | None, key: Path | None, log: Path) -> Iterator[str]:
    """`sprx-server serve` (real uvicorn) on a free loopback port; its log goes to a file.

    Not tests.sync.server_harness.uvicorn_server: that pipes stderr without reading it, and the server logs
    one line per request, so a long benchmark fills the pipe and the server blocks on write.
    """
    import httpx

    from tests.sync.server_harness import free_port

    port = free_port()
    cmd = [str(Path(PY).parent / "sprx-server"), "serve", "--db", db_url, "--host", "127.0.0.1", "--port", str(port)]
    if cert and key:
        cmd += ["--tls-cert", str(cert), "--tls-key", str(key)]
    url = f"{'https' if cert else 'http'}://127.0.0.1:{port}"
    verify: Any = ssl.create_default_context(cafile=str(cert)) if cert else True
    with open(log, "ab") as lf:
        proc = subprocess.Popen(cmd, stdout=lf, stderr=lf)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited early; see {log}")
            try:
                if httpx.get(url + "/healthz", verify=verify, timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.1)
        SERVER_PID[url] = proc.pid
        yield url
    finally:
        SERVER_PID.pop(url, None)
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


SERVER_PID: dict[str, int] = {}
"""pid of the server behind each running URL, so the client can read the server's CPU time."""


def proc_cpu_s(pid: int) -> float:
    """user + system CPU seconds of a process (from /proc), a load-independent cost measure."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_times(log: Path) -> dict[str, dict[str, float]]:
    """Median/p95 server-side handling time per path, from the server's own access log (ms)."""
    by: dict[str, list[float]] = {}
    for line in log.read_text(errors="replace").splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if isinstance(ev, dict) and ev.get("event") == "http":
            by.setdefault(f"{ev['method']} {ev['path']}", []).append(float(ev["ms"]))
    return {
        k: {"n": len(v), "median_ms": statistics.median(v), "p95_ms": sorted(v)[int(0.95 * (len(v) - 1))]}
        for k, v in by.items()
    }


def scenario_caseload(args: argparse.Namespace, work: Path, cert: Path, key: Path, impls: list[str]) -> dict[str, Any]:
    tag, w = "cl", "w_caseload"
    name = f"caseload-{args.people}x{args.contacts}"
    db_url, info = server_db(name, lambda u: load_via_push(u, w, tag, args.people, args.contacts), args.rebuild, work)
    res: dict[str, Any] = {"server_rows": count_rows(db_url), "load": info}
    for impl in impls:
        # A fresh copy per client so each one first-syncs the same untouched server.
        db_url, _ = server_db(name, lambda u: {}, False, work)
        log = work / f"server-caseload-{impl}.log"
        with serve(db_url, cert, key, log) as url:
            srv = {"name": "caseload", "url": url, "cafile": str(cert), "tag": tag, "code": issue_code(db_url, w),
                   "writer_code": issue_code(db_url, w), "pid": SERVER_PID[url]}  # fmt: skip
            res[impl] = run_client({"impl": impl, "scenario": "caseload", "servers": [srv], "work": str(work),
                                    "reps": args.reps})  # fmt: skip
        res[impl]["server_ms"] = server_times(log)
        print(f"caseload/{impl}: {json.dumps(res[impl])}", file=sys.stderr)
    return res


def scenario_scale(args: argparse.Namespace, work: Path, cert: Path, key: Path, impls: list[str]) -> dict[str, Any]:
    # The worker's own caseload: 1,000 people x 9 contacts = 10,000 rows on both servers.
    tag, w = "sc", "w_scale"
    small, _ = server_db("scale-10k", lambda u: load_via_push(u, w, tag, 1000, 9), args.rebuild, work)
    other = max(0, args.big_rows - 10_000) // 10  # another worker's people x (1 + 9 contacts)

    def build_big(u: str) -> dict[str, Any]:
        b = bulk_rows(u, "w_other", "ot", other, 9)
        a = load_via_push(u, w, tag, 1000, 9)
        return {"bulk": b, "push": a}

    big, big_info = server_db(f"scale-{args.big_rows}", build_big, args.rebuild, work)
    res: dict[str, Any] = {"rows_small": count_rows(small), "rows_big": count_rows(big), "big_build": big_info}
    for impl in impls:
        logs = {"s10k": work / f"server-s10k-{impl}.log", "s1m": work / f"server-s1m-{impl}.log"}
        with serve(small, cert, key, logs["s10k"]) as u_small, serve(big, cert, key, logs["s1m"]) as u_big:
            servers = []
            for name, u, db in (("s10k", u_small, small), ("s1m", u_big, big)):
                servers.append({"name": name, "url": u, "cafile": str(cert), "tag": tag, "code": issue_code(db, w),
                                "writer_code": issue_code(db, w), "pid": SERVER_PID[u]})  # fmt: skip
            if impl == "scripted" and not args.no_wide:
                # Variant: a laptop whose own scope is the other worker's ~990k rows, started at the tip.
                servers.append({"name": "s1m_wide", "url": u_big, "cafile": str(cert), "tag": "ot", "jump": True,
                                "pid": SERVER_PID[u_big],
                                "code": issue_code(big, "w_other"),
                                "writer_code": issue_code(big, "w_other")})  # fmt: skip
            res[impl] = run_client({"impl": impl, "scenario": "scale", "servers": servers, "work": str(work),
                                    "reps": args.reps})  # fmt: skip
        res[impl]["server_ms"] = {k: server_times(v) for k, v in logs.items()}
        print(f"scale/{impl}: {json.dumps(res[impl])}", file=sys.stderr)
    return res


def render(r: dict[str, Any]) -> str:
    """The figures of one run as a Markdown table (what BENCHMARKS.md quotes)."""

    def ms(x: float | None) -> str:
        return "-" if x is None else (f"{x * 1000:.0f} ms" if x < 10 else f"{x:.1f} s")

    peer = r.get("peer", {})
    cl = r.get("caseload", {})
    sc = r.get("scale", {})
    lines = ["| measure | target | PouchDB (same run) | sprx scripted laptop | sprx real laptop (vault) |",
             "|---|---|---|---|---|"]  # fmt: skip

    def row(label: str, target: str, peer_v: str, key: str, src: dict[str, Any], fmt: Any = ms) -> None:
        vals = [fmt(src[i][key]) if i in src and key in src[i] else "-" for i in ("scripted", "real")]
        lines.append(f"| {label} | {target} | {peer_v} | {vals[0]} | {vals[1]} |")

    p_first = peer.get("first_sync_s")
    row(f"first sync, {cl.get('server_rows', 0):,} rows (wall)", "<= 0.5x peer", ms(p_first), "first_sync_s", cl)
    for impl in ("scripted", "real"):
        if impl in cl and p_first:
            cl[impl]["_ratio"] = cl[impl]["first_sync_s"] / p_first
    row("  ratio sprx / PouchDB", "<= 0.5", "1", "_ratio", cl, lambda v: f"{v:.2f}")
    cpu = [
        f"{cl[i]['first_sync_client_cpu_s']:.1f} s / {cl[i]['first_sync_server_cpu_s']:.1f} s" if i in cl else "-"
        for i in ("scripted", "real")
    ]
    p_cpu = peer.get("cpu_first_sync_s")
    peer_cpu = f"{p_cpu:.1f} s (one process)" if p_cpu else "-"
    lines.append(f"|   CPU: laptop / server | | {peer_cpu} | {cpu[0]} | {cpu[1]} |")
    if p_cpu:
        for impl in ("scripted", "real"):
            if impl in cl:
                cl[impl]["_cpu_ratio"] = (
                    cl[impl]["first_sync_client_cpu_s"] + cl[impl]["first_sync_server_cpu_s"]
                ) / p_cpu
        row("  ratio CPU (laptop + server) / PouchDB", "<= 0.5", "1", "_cpu_ratio", cl, lambda v: f"{v:.2f}")
    row("peak client RSS", "<= 250 MB", f"{peer.get('client_process_rss_mb', '-')} MB (whole node process)",
        "peak_rss_mb", cl, lambda v: f"{v:.0f} MB")  # fmt: skip
    row("push of 100 edits after first sync", "<= 0.5 s", ms(peer.get("push_100_s")), "push_100_s", cl)
    p_push_cpu = f"{peer['cpu_push_100_s']:.1f} s" if "cpu_push_100_s" in peer else "-"
    push_cpu = [
        f"{cl[i]['push_100_client_cpu_s'] * 1000:.0f} ms / {cl[i]['push_100_server_cpu_s'] * 1000:.0f} ms"
        if i in cl
        else "-"
        for i in ("scripted", "real")
    ]
    lines.append(f"|   CPU: laptop / server | | {p_push_cpu} | {push_cpu[0]} | {push_cpu[1]} |")
    row("  the same, 4 more times (median)", "<= 0.5 s", "-", "push_100_again_s_median", cl)
    row("incremental, 10 changes (median)", "<= 50 ms", ms(peer.get("incremental_10_s")),
        "incremental_10_s_median", cl)  # fmt: skip

    def cpu_row(prefix: str, src: dict[str, Any]) -> None:
        vals = []
        for i in ("scripted", "real"):
            x = src.get(i, {})
            agg = "mean" if f"{prefix}_server_cpu_s_mean" in x else "median"
            vals.append(
                f"{x[f'{prefix}_client_cpu_s_{agg}'] * 1000:.0f} ms / {x[f'{prefix}_server_cpu_s_{agg}'] * 1000:.0f} ms"
                if f"{prefix}_client_cpu_s_{agg}" in x
                else "-"
            )
        lines.append(f"|   CPU: laptop / server (mean) | | - | {vals[0]} | {vals[1]} |")

    cpu_row("incremental_10", cl)
    row("no-op sync (median)", "<= 20 ms", ms(peer.get("noop_s")), "noop_s_median", cl)
    cpu_row("noop", cl)
    for name, label in (("s10k", "10k-row server"), ("s1m", "1M-row server")):
        row(f"incremental, 10 changes, {label}", "<= 50 ms", "-", f"{name}_incremental_10_s_median", sc)
    for impl in ("scripted", "real"):
        if impl in sc:
            sc[impl]["_r"] = sc[impl]["s1m_incremental_10_s_median"] / sc[impl]["s10k_incremental_10_s_median"]
            x = sc[impl]
            agg = "mean" if "s1m_incremental_10_server_cpu_s_mean" in x else "median"
            cpu_1m = x[f"s1m_incremental_10_client_cpu_s_{agg}"] + x[f"s1m_incremental_10_server_cpu_s_{agg}"]
            cpu_10k = x[f"s10k_incremental_10_client_cpu_s_{agg}"] + x[f"s10k_incremental_10_server_cpu_s_{agg}"]
            x["_rc"] = cpu_1m / max(1e-9, cpu_10k)
    row("  ratio 1M / 10k (wall)", "<= 1.2", "-", "_r", sc, lambda v: f"{v:.2f}")
    row("  ratio 1M / 10k (client+server CPU)", "<= 1.2", "-", "_rc", sc, lambda v: f"{v:.2f}")
    row("no-op sync, 10k-row server (median)", "<= 20 ms", "-", "s10k_noop_s_median", sc)
    row("no-op sync, 1M-row server (median)", "<= 20 ms", "-", "s1m_noop_s_median", sc)
    if "scripted" in sc and "s1m_wide_incremental_10_s_median" in sc["scripted"]:
        w = sc["scripted"]
        lines.append(f"| incremental, 10 changes, 1M rows all in the laptop's scope | <= 50 ms | - | "
                     f"{ms(w['s1m_wide_incremental_10_s_median'])} | - |")  # fmt: skip
    return "\n".join(lines)


QUICK_MEASURES = (
    ("first_sync", "first_sync_s", "first_sync_s"),
    ("push_100", "push_100_s", "push_100_s"),
    ("incremental_10", "incremental_10_s_median", "incremental_10_s"),
    ("noop", "noop_s_median", "noop_s"),
)
"""(measure, key in our client's figures, key in the peer's figures)."""


def scenario_quick(args: argparse.Namespace, work: Path, cert: Path, key: Path) -> dict[str, Any]:
    """The peer and the shipped client in alternating rounds on one practice; medians and ratios.

    Round r runs the peer first when r is even and ours first when it is odd, so a load trend over the
    run falls on both alike. Each round of ours first-syncs a fresh copy of the same server database.
    """
    import peer_pouchdb

    tag, w = "cl", "w_caseload"
    name = f"caseload-{args.people}x{args.contacts}"
    db_url, info = server_db(name, lambda u: load_via_push(u, w, tag, args.people, args.contacts), args.rebuild, work)
    rounds: list[dict[str, Any]] = []
    for r in range(args.rounds):
        rnd: dict[str, Any] = {"round": r, "loadavg_start": os.getloadavg()}
        for side in ("peer", "ours") if r % 2 == 0 else ("ours", "peer"):
            if side == "peer":
                rnd["peer"] = peer_pouchdb.run(args.people, args.contacts)
                continue
            db_url, _ = server_db(name, lambda u: {}, False, work)
            log = work / f"server-quick-{r}.log"
            with serve(db_url, cert, key, log) as url:
                srv = {"name": "caseload", "url": url, "cafile": str(cert), "tag": tag, "code": issue_code(db_url, w),
                       "writer_code": issue_code(db_url, w), "pid": SERVER_PID[url]}  # fmt: skip
                rnd["ours"] = run_client({"impl": "real", "scenario": "caseload", "servers": [srv],
                                          "work": str(work), "reps": args.reps})  # fmt: skip
        rnd["loadavg_end"] = os.getloadavg()
        print(f"quick round {r}: " + json.dumps({m: [rnd["ours"][k], rnd["peer"][pk]] for m, k, pk in QUICK_MEASURES})
              + f" load {rnd['loadavg_start'][0]:.2f}", file=sys.stderr)  # fmt: skip
        rounds.append(rnd)
    summary: dict[str, Any] = {}
    for m, k, pk in QUICK_MEASURES:
        ours = statistics.median(x["ours"][k] for x in rounds)
        peer = statistics.median(x["peer"][pk] for x in rounds)
        summary[m] = {"ours_s": ours, "peer_s": peer, "ratio": ours / peer if peer else None,
                      "ours_all_s": [round(x["ours"][k], 4) for x in rounds],
                      "peer_all_s": [round(x["peer"][pk], 4) for x in rounds]}  # fmt: skip
    return {"server_rows": count_rows(db_url), "load": info, "people": args.people, "contacts": args.contacts,
            "rounds": rounds, "summary": summary}  # fmt: skip


def render_quick(r: dict[str, Any]) -> str:
    q = r["quick"]
    loads = [x["loadavg_start"][0] for x in q["rounds"]]
    lines = [f"quick: {q['server_rows']:,} rows ({q['people']:,} people), {len(q['rounds'])} alternating rounds, "
             f"1-min load {min(loads):.1f}-{max(loads):.1f} (start {r['loadavg_start'][0]:.2f}, "
             f"end {r['loadavg_end'][0]:.2f})", "",
             "| measure | sprx (median) | PouchDB (median) | ratio |", "|---|---|---|---|"]  # fmt: skip
    for m, v in q["summary"].items():
        ratio = "-" if v["ratio"] is None else f"{v['ratio']:.2f}"
        lines.append(f"| {m} | {v['ours_s'] * 1000:.0f} ms | {v['peer_s'] * 1000:.0f} ms | {ratio} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description="sprx sync benchmarks vs the PouchDB peer")
    ap.add_argument("--people", type=int, default=10_000)
    ap.add_argument("--contacts", type=int, default=10)
    ap.add_argument("--big-rows", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--client", choices=["scripted", "real", "both"], default="both")
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--only", choices=["caseload", "scale"], default=None)
    ap.add_argument("--no-wide", action="store_true", help="skip the all-in-scope 1M variant")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the cached server databases")
    ap.add_argument("--json", type=Path, default=OUT / "bench_sync.json")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (databases, server logs)")
    ap.add_argument("--render", type=Path, help="only print the Markdown table of an earlier run's JSON")
    quick_help = "peer and the shipped client in alternating rounds on 2,000 people (<= 10 minutes)"
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds for --quick (at least 3)")
    args = ap.parse_args()
    if args.render:
        got = json.loads(args.render.read_text())
        print(render_quick(got) if "quick" in got else render(got))
        return 0
    if args.quick:
        return main_quick(args)

    impls = ["scripted", "real"] if args.client == "both" else [args.client]
    if "real" in impls and not real_client_available():
        print("The real client (sync/client.py, sprx_tui/core/sync/) is not there yet; scripted only.",
              file=sys.stderr)  # fmt: skip
        impls = [i for i in impls if i != "real"]
    OUT.mkdir(parents=True, exist_ok=True)
    # A private work dir per run: two runs side by side must not delete each other's databases.
    work = Path(tempfile.mkdtemp(prefix="sync-work-", dir=OUT))
    cert, key = make_cert(work)
    results: dict[str, Any] = {"argv": sys.argv[1:], "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                               "loadavg_start": os.getloadavg()}  # fmt: skip
    if not args.skip_peer:
        import peer_pouchdb

        results["peer"] = peer_pouchdb.run(args.people, args.contacts)
        print(f"peer: {json.dumps(results['peer'])}", file=sys.stderr)
    if args.only in (None, "caseload"):
        results["caseload"] = scenario_caseload(args, work, cert, key, impls)
    if args.only in (None, "scale"):
        results["scale"] = scenario_scale(args, work, cert, key, impls)
    results["loadavg_end"] = os.getloadavg()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    print(render(results))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def main_quick(args: argparse.Namespace) -> int:
    if "--people" not in sys.argv:
        args.people = 2000
    if "--reps" not in sys.argv:
        args.reps = 5
    args.rounds = max(3, args.rounds)
    if "--json" not in sys.argv:
        args.json = OUT / "bench_sync_quick.json"
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="sync-quick-", dir=OUT))
    cert, key = make_cert(work)
    results: dict[str, Any] = {"argv": sys.argv[1:], "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                               "loadavg_start": os.getloadavg()}  # fmt: skip
    try:
        results["quick"] = scenario_quick(args, work, cert, key)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    results["loadavg_end"] = os.getloadavg()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1))
    print(render_quick(results))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["_client"]:
        print(json.dumps(client_process(json.loads(sys.stdin.read()))))
        sys.exit(0)
    sys.exit(main())
