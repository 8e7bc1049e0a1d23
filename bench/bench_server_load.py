"""Server load: 50 concurrent devices pushing and pulling against real uvicorn; exactly-once checked from the ledger.

Each device (25 workers x 2 laptops, every laptop its own enrolment and token) pushes BATCHES batches of
BATCH insert mutations (people and their contacts) and pulls after every push, so each laptop also
receives its partner laptop's rows. Some batches are deliberately sent twice (a lost response) and some
overlap the previous batch (a retry that also carries new work). Afterwards the server database is
checked: every mutation in the ledger exactly once, row and feed counts equal to the unique mutations,
nothing rejected, every laptop holding exactly its worker's rows. Throughput is reported against a raw
bulk insert (executemany, one transaction) of the same rows into a fresh database of the same kind,
in the same run.

Usage: ``.venv/bin/python bench/bench_server_load.py [--db sqlite|postgres|both] [--http]``;
``--db postgres --processes 4 --devices 200`` runs four ``sprx-server serve`` processes on one PostgreSQL
with the devices split among them round-robin (every ledger still checked gap-free, exactly once).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import ssl
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_sync  # noqa: E402  (bench/ is not a package)

OUT = ROOT / "bench" / "out"
PRACTICE = "P1"


def build_bodies(device_id: str, dev_index: int, batches: int, batch: int) -> list[list[dict[str, Any]]]:
    """The device's mutations in push order: people, each followed by its contacts, ids from 1."""
    from sync import hlc as hlc_mod

    per_person = 10
    out: list[list[dict[str, Any]]] = []
    mid = 0
    h = hlc_mod.pack(hlc_mod.wall_ms(), 0)
    person = ""
    for _ in range(batches):
        muts = []
        for _ in range(batch):
            mid += 1
            h += 1
            if (mid - 1) % per_person == 0:
                person = str(uuid.uuid5(bench_sync.NS, f"load/{device_id}/{mid}"))
                fields = bench_sync.person_values(dev_index * 1_000 + mid // per_person, 300_000)
                m = {"mutation_id": mid, "tbl": "person", "row_id": person, "person_id": person, "op": "insert"}
            else:
                fields = bench_sync.contact_values(mid)
                row = str(uuid.uuid5(bench_sync.NS, f"load/{device_id}/{mid}"))
                m = {"mutation_id": mid, "tbl": "contact", "row_id": row, "person_id": person, "op": "insert"}
            m["fields"] = {f: {"v": v, "hlc": h} for f, v in fields.items()}
            m["hlc"] = h
            muts.append(m)
        out.append(muts)
    return out


class Device(threading.Thread):
    def __init__(self, url: str, verify: Any, code: str, index: int, args: argparse.Namespace, go: threading.Event):
        super().__init__(daemon=True)
        import httpx

        from tests.sync.server_harness import version_headers

        self.http = httpx.Client(base_url=url, verify=verify, timeout=600)
        body = self.http.post("/v1/devices/enrol", json={"code": code, "device_name": f"load-{index}"}).json()
        self.device_id = body["device_id"]
        self.http.headers.update({"Authorization": f"Bearer {body['token']}", **version_headers()})
        self.batches = build_bodies(self.device_id, index, args.batches, args.batch)
        self.go = go
        self.cursor = 0
        self.rows: set[tuple[str, str]] = set()
        self.acks: dict[str, int] = {}
        self.original: dict[str, int] = {}
        self.push_ms: list[float] = []
        self.pull_ms: list[float] = []
        self.requests = 0
        self.error: str | None = None
        self.resent = 0

    def _push(self, muts: list[dict[str, Any]]) -> None:
        from sync import protocol, schema

        body = {"device_id": self.device_id, "protocol_version": protocol.PROTOCOL_VERSION,
                "schema_version": schema.SCHEMA_VERSION, "mutations": muts}  # fmt: skip
        t0 = time.perf_counter()
        r = self.http.post("/v1/sync/push", json=body)
        self.push_ms.append((time.perf_counter() - t0) * 1000)
        self.requests += 1
        if r.status_code != 200:
            raise RuntimeError(f"push {r.status_code}: {r.text[:200]}")
        for a in r.json()["acks"]:
            self.acks[a["status"]] = self.acks.get(a["status"], 0) + 1
            if a["status"] == "duplicate":
                self.original[str(a.get("original_status"))] = self.original.get(str(a.get("original_status")), 0) + 1

    def _pull(self) -> None:
        while True:
            t0 = time.perf_counter()
            r = self.http.get("/v1/sync/pull", params={"cursor": self.cursor, "limit": 1000})
            self.pull_ms.append((time.perf_counter() - t0) * 1000)
            self.requests += 1
            r.raise_for_status()
            page = r.json()
            self.rows.update((c["tbl"], c["id"]) for c in page["changes"])
            self.cursor = page["next_cursor"]
            if not page["has_more"]:
                return

    def run(self) -> None:
        self.go.wait()
        try:
            for b, muts in enumerate(self.batches):
                if b % 4 == 2:
                    # A retry after a lost response that also carries new work: last 10 of the
                    # previous batch again, then this batch.
                    again = self.batches[b - 1][-10:]
                    self.resent += len(again)
                    self._push(again + muts)
                else:
                    self._push(muts)
                if b % 3 == 1:
                    self.resent += len(muts)
                    self._push(muts)  # the whole batch again, as if its response had been lost
                self._pull()
        except Exception as e:  # noqa: BLE001 - reported, and the run fails verification
            self.error = f"{type(e).__name__}: {e}"


def verify_server(db_url: str, devices: list[Device], pairs: dict[str, list[Device]], total: int) -> dict[str, Any]:
    """Exactly-once, from the server's own tables."""
    import sqlalchemy as sa

    from sync.server import store as s

    st = s.ServerStore(db_url)
    try:
        with st.engine.connect() as c:
            n = {t: int(c.execute(sa.select(sa.func.count()).select_from(s.md.tables[t])).scalar_one())
                 for t in ("applied_mutation", "record", "change_log", "quarantine", "conflict")}  # fmt: skip
            per_dev = {
                r.device_id: (int(r.n), int(r.lo), int(r.hi))
                for r in c.execute(
                    sa.select(
                        s.applied_mutation.c.device_id,
                        sa.func.count().label("n"),
                        sa.func.min(s.applied_mutation.c.mutation_id).label("lo"),
                        sa.func.max(s.applied_mutation.c.mutation_id).label("hi"),
                    ).group_by(s.applied_mutation.c.device_id)
                )
            }
            acked = dict(c.execute(sa.select(s.device.c.id, s.device.c.last_acked_mutation_id)).all())
            owner = {
                (r.tbl, r.id): r.worker_id
                for r in c.execute(
                    sa.select(s.record.c.tbl, s.record.c.id, s.assignment.c.worker_id).join(
                        s.assignment, s.assignment.c.person_id == s.record.c.person_id
                    )
                )
            }
    finally:
        st.close()
    per = total // len(devices)
    checks = {
        "ledger_rows_equal_unique_mutations": n["applied_mutation"] == total,
        "record_rows_equal_unique_mutations": n["record"] == total,
        "feed_rows_equal_records": n["change_log"] == n["record"],
        "nothing_rejected": n["quarantine"] == 0,
        "no_conflicts": n["conflict"] == 0,
        "every_device_ledger_1_to_n_once": all(per_dev.get(d.device_id) == (per, 1, per) for d in devices),
        "every_device_last_acked_n": all(acked.get(d.device_id) == per for d in devices),
        "duplicates_all_originally_applied": all(set(d.original) <= {"applied"} for d in devices),
        "duplicate_acks_equal_resent": sum(d.acks.get("duplicate", 0) for d in devices)
        == sum(d.resent for d in devices),
        "applied_acks_equal_unique_mutations": sum(d.acks.get("applied", 0) for d in devices) == total,
        "no_client_errors": all(d.error is None for d in devices),
    }
    wrong = 0
    for w, devs in pairs.items():
        mine = {k for k, v in owner.items() if v == w}
        wrong += sum(d.rows != mine for d in devs)
    checks["every_device_pulled_exactly_its_worker_rows"] = wrong == 0
    return {"counts": n, "checks": checks, "ok": all(checks.values())}


def raw_bulk_insert(src_url: str, dst_url: str) -> dict[str, Any]:
    """The same rows, copied with one executemany per table in one transaction into a fresh DB."""
    import sqlalchemy as sa

    from sync.server import store as s

    src = s.ServerStore(src_url)
    with src.engine.connect() as c:
        rows = {t: [dict(r._mapping) for r in c.execute(sa.select(s.md.tables[t]))]
                for t in ("record", "change_log", "applied_mutation")}  # fmt: skip
    src.close()
    out: dict[str, Any] = {}
    for label, tables in (("record_only", ["record"]), ("record+feed+ledger", list(rows))):
        dst = s.ServerStore(dst_url)
        with dst.engine.begin() as c:
            for t in tables:
                c.execute(s.md.tables[t].delete())
        t0 = time.perf_counter()
        with dst.engine.begin() as c:
            for t in tables:
                c.execute(s.md.tables[t].insert(), rows[t])
        dt_s = time.perf_counter() - t0
        dst.close()
        out[label] = {"rows": len(rows["record"]), "seconds": dt_s, "rows_per_s": len(rows["record"]) / dt_s}
    return out


def run_once(kind: str, db_url: str, bulk_url: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from sync.server.store import ServerStore

    st = ServerStore(db_url)
    codes = []
    workers = [f"lw{i:02d}" for i in range(args.devices // 2)]
    for w in workers:
        st.add_worker(w, PRACTICE)
    for i in range(args.devices):
        codes.append(st.issue_enrol_code(workers[i // 2])[0])
    st.close()
    cert = key = None
    verify: Any = True
    if not args.http:
        cert, key = bench_sync.make_cert(work)
        verify = ssl.create_default_context(cafile=str(cert))
    procs = max(1, args.processes)
    logs = [work / f"server-load-{kind}-{k}.log" for k in range(procs)]
    with contextlib.ExitStack() as servers:
        # Several server processes on one database (each `sprx-server serve` on its own port): the
        # devices are split among them round-robin, as a reverse proxy would.
        urls = [servers.enter_context(bench_sync.serve(db_url, cert, key, log)) for log in logs]
        go = threading.Event()
        devs = [Device(urls[i % procs], verify, codes[i], i, args, go) for i in range(args.devices)]
        pairs: dict[str, list[Device]] = {}
        for i, d in enumerate(devs):
            pairs.setdefault(workers[i // 2], []).append(d)
        for d in devs:
            d.start()
        load0 = os.getloadavg()[0]
        pids = [bench_sync.SERVER_PID[u] for u in urls]
        cpu0 = sum(bench_sync.proc_cpu_s(pid) for pid in pids)
        t0 = time.perf_counter()
        go.set()
        for d in devs:
            d.join()
        wall = time.perf_counter() - t0
        server_cpu = sum(bench_sync.proc_cpu_s(pid) for pid in pids) - cpu0
        for d in devs:  # after everyone has pushed: each laptop catches up on its partner's last rows
            d._pull()
    total = args.devices * args.batches * args.batch
    res: dict[str, Any] = {
        "db": kind,
        "server_processes": procs,
        "transport": "http" if args.http else "https",
        "devices": args.devices,
        "unique_mutations": total,
        "resent_mutations": sum(d.resent for d in devs),
        "requests": sum(d.requests for d in devs),
        "wall_s": wall,
        "mutations_per_s": total / wall,
        "server_process_cpu_s": server_cpu,
        "server_cpu_ms_per_mutation": 1000 * server_cpu / total,
        "push_ms_p50": statistics.median([x for d in devs for x in d.push_ms]),
        "push_ms_p95": sorted(x for d in devs for x in d.push_ms)[int(0.95 * sum(len(d.push_ms) for d in devs))],
        "pull_ms_p50": statistics.median([x for d in devs for x in d.pull_ms]),
        "errors": [d.error for d in devs if d.error][:3],
        "loadavg_1m_at_start": load0,
        "loadavg_1m_at_end": os.getloadavg()[0],
        "server_ms": bench_sync.server_times(logs[0]),
    }
    res["verify"] = verify_server(db_url, devs, pairs, total)
    if not args.no_bulk:
        res["raw_bulk_insert"] = raw_bulk_insert(db_url, bulk_url)
        res["bulk_vs_sync"] = {k: v["rows_per_s"] / res["mutations_per_s"] for k, v in res["raw_bulk_insert"].items()}
    print(f"{kind}: {json.dumps(res)}", file=sys.stderr)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=50, help="even: two laptops per worker")
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--batch", type=int, default=50, help="mutations per push (a multiple of 10)")
    ap.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--http", action="store_true", help="plain HTTP on loopback instead of HTTPS")
    ap.add_argument("--json", type=Path, default=OUT / "bench_server_load.json")
    ap.add_argument("--processes", type=int, default=1,
                    help="server processes on the one database, devices split round-robin (PostgreSQL)")  # fmt: skip
    ap.add_argument("--no-bulk", action="store_true", help="skip the raw bulk insert comparison")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="load-work-", dir=OUT))
    results: dict[str, Any] = {"argv": sys.argv[1:], "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    if args.db in ("sqlite", "both"):
        results["sqlite"] = run_once("sqlite", f"sqlite:///{work}/server.db", f"sqlite:///{work}/bulk.db", args, work)
    if args.db in ("postgres", "both"):
        from tests.sync.server_harness import create_database, find_pg_bin, postgres_cluster

        if find_pg_bin() is None:
            results["postgres"] = "PostgreSQL is not installed here."
        else:
            with postgres_cluster() as base:
                results["postgres"] = run_once(
                    "postgres", create_database(base, "load"), create_database(base, "bulk"), args, work
                )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    ok = all(isinstance(v, dict) and v["verify"]["ok"] for k, v in results.items() if k in ("sqlite", "postgres"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
