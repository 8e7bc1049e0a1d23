"""SQL statements and process time of one push in the server's store, in-process (no HTTP).

    .venv/bin/python bench/probe_push.py [--db sqlite|postgres|both] [--pushes 20] [--batch 50]

One worker's laptop pushes the batches `bench_server_load.py` sends (a new person, then nine contacts of
theirs, repeated) straight into `ServerStore.push`, on a fresh SQLite file or a database in a throwaway
PostgreSQL cluster. Prints the statements of one push by kind (an SQLAlchemy cursor listener on the
store's engine) and the median process time per push over the rest: what the write lock is held for.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench_server_load as bl  # noqa: E402


@contextlib.contextmanager
def _database(kind: str) -> Iterator[str]:
    if kind == "sqlite":
        bl.OUT.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="probe-push-", dir=bl.OUT) as d:
            yield f"sqlite:///{d}/server.db"
        return
    from tests.sync.server_harness import create_database, find_pg_bin, postgres_cluster

    if find_pg_bin() is None:
        raise SystemExit("PostgreSQL is not installed (no initdb): run with --db sqlite")
    with postgres_cluster() as base:
        yield create_database(base, "probe_push")


def probe(kind: str, pushes: int, batch: int) -> dict[str, Any]:
    from sqlalchemy import event

    from sync.server.store import ServerStore

    with _database(kind) as url:
        store = ServerStore(url)
        try:
            store.add_worker("w1", bl.PRACTICE)
            code, _ = store.issue_enrol_code("w1")
            dev = store.authenticate(store.enrol(code, "laptop")["token"])
            counted: collections.Counter[str] = collections.Counter()
            watch = [False]

            @event.listens_for(store.engine, "before_cursor_execute")
            def _count(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
                if watch[0]:
                    counted[" ".join(statement.split())[:100]] += 1

            cpu: list[float] = []
            for i, body in enumerate(bl.build_bodies(dev.id, 0, pushes, batch)):
                watch[0] = i == 1  # the second push: the store has rows, the caches are warm
                t = time.process_time()
                store.push(dev, body)
                if i:
                    cpu.append((time.process_time() - t) * 1000)
                watch[0] = False
        finally:
            store.close()
    return {"db": kind, "statements": sum(counted.values()), "by_kind": dict(counted.most_common()),
            "push_cpu_ms_median": statistics.median(cpu)}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--pushes", type=int, default=20)
    ap.add_argument("--batch", type=int, default=50)
    args = ap.parse_args()
    for kind in ["sqlite", "postgres"] if args.db == "both" else [args.db]:
        got = probe(kind, args.pushes, args.batch)
        print(f"{kind}: {got['statements']} statements in one push of {args.batch}; "
              f"process time per push, median of {args.pushes - 1}: {got['push_cpu_ms_median']:.1f} ms")  # fmt: skip
        for stmt, n in got["by_kind"].items():
            print(f"  {n:4d}  {stmt}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
