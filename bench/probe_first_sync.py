"""Where the real laptop's first sync spends its time, and the statement-cache experiment.

    .venv/bin/python bench/probe_first_sync.py sync [--statement-cache N] [--capture bench/out/inserts.pkl]
    .venv/bin/python bench/probe_first_sync.py replay bench/out/inserts.pkl [--statement-cache N]
        [--memory-security off]
    strace -f -c .venv/bin/python bench/probe_first_sync.py replay bench/out/inserts.pkl   # mlock/munlock counts

`sync` runs the shipped client (`RealLaptop` of bench_sync.py: vault created, reopened, enrolled with
a pinned certificate) against a copy of bench_sync.py's cached 110,000-row server (built on first use,
~200 s) over HTTPS, and prints wall / laptop CPU / server CPU and the time spent per kind of SQL
statement. `--capture` keeps the bulk inserts' statements and rows (synthetic demo data) so that
`replay` can run exactly the same inserts into a fresh vault, one transaction per page, without the
network or the rest of the sync. One run per invocation: compare modes by running it again.
"""

from __future__ import annotations

import argparse
import os
import pickle
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import DEMO_PASSPHRASE, scratch_dir, set_memory_security  # noqa: E402


def _configure(statement_cache: int | None) -> None:
    from sprx_tui.core import db

    if statement_cache is not None:
        db.STATEMENT_CACHE_SIZE = statement_cache


def _statement_times(engine: Any, capture: list[tuple[str, list[Any]]] | None) -> dict[str, list[float]]:
    """Per kind of statement (first three words): [count, seconds]; bulk inserts kept if asked."""
    from sqlalchemy import event

    times: dict[str, list[float]] = {}

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn: Any, _cursor: Any, _statement: str, _params: Any, _context: Any, _many: bool) -> None:
        conn.info["probe_t0"] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def _after(conn: Any, _cursor: Any, statement: str, params: Any, _context: Any, many: bool) -> None:
        kind = " ".join(statement.split()[:3])[:60] + (" (executemany)" if many else "")
        entry = times.setdefault(kind, [0, 0.0])
        entry[0] += 1
        entry[1] += time.perf_counter() - conn.info["probe_t0"]
        if many and capture is not None:
            capture.append((statement, list(params)))

    return times


def cmd_sync(args: argparse.Namespace) -> int:
    import bench_sync as b

    set_memory_security(True)
    _configure(args.statement_cache)
    work = scratch_dir("probe-sync")
    try:
        cert, key = b.make_cert(work)
        db_url, _ = b.server_db("caseload-10000x10", lambda u: b.load_via_push(u, "w_caseload", "cl", 10000, 10),
                                False, work)  # fmt: skip
        code = b.issue_code(db_url, "w_caseload")
        with b.serve(db_url, cert, key, work / "server.log") as url:
            laptop = b.RealLaptop(url, str(cert), work / "vault")
            laptop.enrol(code)
            capture: list[tuple[str, list[Any]]] | None = [] if args.capture else None
            times = _statement_times(laptop.store.engine, capture)
            pid = b.SERVER_PID[url]
            s0, c0, t0 = b.proc_cpu_s(pid), time.process_time(), time.perf_counter()
            rows = laptop.first_sync()
            wall, cpu, server = time.perf_counter() - t0, time.process_time() - c0, b.proc_cpu_s(pid) - s0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"first sync: {rows} rows, wall {wall:.2f} s, laptop CPU {cpu:.2f} s, server CPU {server:.2f} s, "
            f"peak RSS {rss:.0f} MB, statement cache {args.statement_cache}, load {os.getloadavg()[0]:.2f}"
        )
        for kind, (count, seconds) in sorted(times.items(), key=lambda kv: -kv[1][1])[:12]:
            print(f"  {seconds:7.2f} s  {count:5d}  {kind}")
        if capture is not None:
            Path(args.capture).write_bytes(pickle.dumps(capture))
            print(f"kept {len(capture)} bulk inserts in {args.capture}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    set_memory_security(args.memory_security == "on")
    _configure(args.statement_cache)
    from sprx_tui.core.store import open_store
    from sprx_tui.core.vault import FLOOR, Vault

    inserts: list[tuple[str, list[Any]]] = pickle.loads(Path(args.capture).read_bytes())
    work = scratch_dir("probe-replay")
    try:
        # As bench_sync's RealLaptop: created and migrated, then reopened, as `sprx init` then `sprx sync`.
        vault, _ = Vault.create(work / "vault", bytearray(DEMO_PASSPHRASE.encode()), kdf=FLOOR)
        open_store(vault)
        vault.lock()
        vault.unlock(bytearray(DEMO_PASSPHRASE.encode()))
        engine = open_store(vault).engine
        per_table: dict[str, float] = {}
        c0, t0 = time.process_time(), time.perf_counter()
        for statement, rows in inserts:
            table = statement.split()[2]
            with engine.begin() as conn:
                t = time.perf_counter()
                conn.exec_driver_sql(statement, rows)
                per_table[table] = per_table.get(table, 0.0) + time.perf_counter() - t
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        vault.lock()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    tables = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in per_table.items())
    print(f"replay: {tables}; total wall {wall:.2f} s, CPU {cpu:.2f} s; memory security {args.memory_security}, "
          f"statement cache {args.statement_cache}")  # fmt: skip
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sync = sub.add_parser("sync", help="time the real laptop's first sync of 110,000 rows")
    sync.add_argument("--statement-cache", type=int, default=None, help="override db.STATEMENT_CACHE_SIZE")
    sync.add_argument("--capture", help="keep the bulk inserts in this file, for replay")
    replay = sub.add_parser("replay", help="run captured bulk inserts into a fresh vault")
    replay.add_argument("capture")
    replay.add_argument("--statement-cache", type=int, default=None, help="override db.STATEMENT_CACHE_SIZE")
    replay.add_argument("--memory-security", choices=("on", "off"), default="on")
    args = parser.parse_args()
    return cmd_sync(args) if args.cmd == "sync" else cmd_replay(args)


if __name__ == "__main__":
    raise SystemExit(main())
