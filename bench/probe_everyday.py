"""Laptop CPU (process time) per everyday sync, with an optional cProfile of the laptop side.

    .venv/bin/python bench/probe_everyday.py [--reps 30] [--sql] [--profile first|incremental|noop] [--top 40]

Against a copy of bench_sync.py's cached 2,000-person server (the --quick practice; built on first
use) over loopback HTTPS, the shipped client (`RealLaptop`) first-syncs, then repeats: another device
patches 10 people (`Writer`), the laptop syncs (incremental) and syncs again (no-op). Prints the median
and mean laptop process time, wall time and server CPU per kind of sync, and the server's own handling
time of the exchange (its access log). Process time is the measure a shared, busy machine disturbs
least. ``--sql``: laptop process time per SQL statement of the incremental (or profiled) sync.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench_sync as bs  # noqa: E402

TAG, WORKER = "cl", "w_caseload"
SQL_ON = [False]


def _time_sql(engine: Any, per_sql: dict[str, list[float]]) -> None:
    from sqlalchemy import event

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
        conn.info["_t0"] = time.process_time()

    @event.listens_for(engine, "after_cursor_execute")
    def _after(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
        if SQL_ON[0]:
            per_sql.setdefault(" ".join(statement.split()), []).append(time.process_time() - conn.info["_t0"])


def _run(args: argparse.Namespace, work: Path, prof: cProfile.Profile | None,
         per_sql: dict[str, list[float]]) -> dict[str, list[tuple[float, float, float]]]:  # fmt: skip
    cert, key = bs.make_cert(work)
    build = lambda u: bs.load_via_push(u, WORKER, TAG, args.people, 10)  # noqa: E731
    db_url, _ = bs.server_db(f"caseload-{args.people}x10", build, False, work)
    got: dict[str, list[tuple[float, float, float]]] = {"incremental": [], "noop": []}
    with bs.serve(db_url, cert, key, work / "server.log") as url:
        pid = bs.SERVER_PID[url]
        lap = bs.RealLaptop(url, str(cert), work / "laptop")
        lap.enrol(bs.issue_code(db_url, WORKER))
        writer = bs.Writer(url, str(cert), bs.issue_code(db_url, WORKER))
        with bs.Timed(pid) as t:
            if prof is not None and args.profile == "first":
                prof.enable()  # the writer's thread only: the page fetcher's thread is not in the profile
            lap.first_sync()
            if prof is not None and args.profile == "first":
                prof.disable()
        print(f"first sync: wall {t.wall:.2f} s, laptop CPU {t.client_cpu:.2f} s, server CPU {t.server_cpu:.2f} s")
        if args.sql:
            _time_sql(lap.store.engine, per_sql)
        for rep in range(args.reps + 2):  # the first two warm up
            writer.change([bs.rid(TAG, "person", (10 * rep + k) % args.people) for k in range(10)],
                          "discharged" if rep % 2 == 0 else "active")  # fmt: skip
            for kind in ("incremental", "noop"):
                counted = rep >= 2
                on = prof is not None and kind == args.profile and counted
                SQL_ON[0] = counted and kind == (args.profile or "incremental")
                with bs.Timed(pid) as t:
                    if on:
                        prof.enable()
                    n = lap.sync()
                    if on:
                        prof.disable()
                if kind == "incremental" and n < 10:
                    raise RuntimeError(f"incremental pulled {n}")
                if counted:
                    got[kind].append((t.client_cpu, t.wall, t.server_cpu))
    ex = bs.server_times(work / "server.log").get("POST /v1/sync/exchange", {})
    print(f"server handling of the exchange: median {ex.get('median_ms', 0):.1f} ms (n={ex.get('n', 0)})")
    return got


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--people", type=int, default=2000)
    ap.add_argument("--profile", choices=["first", "incremental", "noop"], default=None)
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--sql", action="store_true", help="laptop process time per SQL statement")
    args = ap.parse_args()
    prof = cProfile.Profile(time.process_time) if args.profile else None
    per_sql: dict[str, list[float]] = {}
    bs.OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="probe-everyday-", dir=bs.OUT))
    try:
        got = _run(args, work, prof, per_sql)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for kind, xs in got.items():
        cpu, wall, srv = ([x[i] * 1000 for x in xs] for i in range(3))
        print(f"{kind}: laptop CPU median {statistics.median(cpu):.2f} ms mean {statistics.fmean(cpu):.2f} ms; "
              f"wall median {statistics.median(wall):.2f} ms; server CPU mean {statistics.fmean(srv):.2f} ms "
              f"(n={len(xs)})")  # fmt: skip
    for q, ts in sorted(per_sql.items(), key=lambda kv: -sum(kv[1])):
        print(f"{sum(ts) * 1000 / args.reps:7.3f} ms/sync {len(ts) / args.reps:5.1f}x  {q[:150]}")
    if prof is not None:
        st = pstats.Stats(prof)
        st.sort_stats("cumulative").print_stats(args.top)
        st.sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
