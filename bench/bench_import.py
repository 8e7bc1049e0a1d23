"""Time `sprx-server import-referrals` on a synthetic referral file (issue 11: 3,000 rows took 67 s).

Usage: ``.venv/bin/python bench/bench_import.py [--rows 3000] [--profile]``

Builds a fresh SQLite store in a temporary folder, adds the worker, writes ROWS synthetic referrals
(NHS numbers in the 999 test range, made-up names) and runs the real command in-process, twice: the
first run imports every row, the second finds every row already present. ``--profile`` prints the
top of a cProfile of the first run. The last line is ``JSON {...}`` (bench/README.md): wall and CPU
seconds of both runs and the load average at the start and the end; compare CPU across runs.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import tempfile
import time
from pathlib import Path

from sprx_rules.nhs import nhs_check_digit
from sync.server.cli import main
from sync.server.importer import COLUMNS
from sync.server.store import ServerStore


def synthetic_nhs(count: int) -> list[str]:
    """The first ``count`` valid NHS numbers in the 999 test range (never a real person's)."""
    out: list[str] = []
    n = 0
    while len(out) < count:
        first = f"999{n:06d}"
        check = nhs_check_digit(first)
        if check is not None:
            out.append(f"{first}{check}")
        n += 1
    return out


def write_csv(path: Path, rows: int) -> None:
    lines = [",".join(COLUMNS)]
    for i, nhs in enumerate(synthetic_nhs(rows)):
        lines.append(
            f"{nhs},Given{i},Family{i % 97},1950-01-{1 + i % 28:02d},LS1 4AP,,gp,Dr Test,"
            f"2025-03-{1 + i % 28:02d},loneliness;housing,routine,Synthetic referral {i},asmith"
        )
    path.write_text("\n".join(lines) + "\n")


def run(argv: list[str]) -> tuple[int, float, float]:
    """Exit status, wall seconds and CPU seconds of one in-process run (CPU is steadier on a busy machine)."""
    out = io.StringIO()
    t0, c0 = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(argv)
    return code, time.perf_counter() - t0, time.process_time() - c0


def bench(rows: int, profile: bool) -> None:
    start = {"load_start": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/s.db"
        csv = Path(tmp) / "refs.csv"
        write_csv(csv, rows)
        ServerStore(url).close()  # a store at the newest schema, as `sprx-server init` makes it
        assert run(["worker", "add", "asmith", "--practice", "P1", "--db", url])[0] == 0
        argv = ["import-referrals", str(csv), "--db", url]
        prof = cProfile.Profile() if profile else None
        if prof:
            prof.enable()
        code, first, first_cpu = run(argv)
        if prof:
            prof.disable()
        code2, again, again_cpu = run(argv)
        print(
            f"{rows} rows: first import {first:.1f} s wall, {first_cpu:.1f} s CPU "
            f"({1000 * first_cpu / rows:.2f} ms CPU a row, exit {code})"
        )
        print(f"re-import (all already present): {again:.1f} s wall, {again_cpu:.1f} s CPU (exit {code2})")
        import common  # beside this script; imported here so tests can import the generator alone

        emit = {"rows": rows, "first_wall_s": first, "first_cpu_s": first_cpu, "again_wall_s": again}
        emit |= {"again_cpu_s": again_cpu, "loadavg_1m_end": round(os.getloadavg()[0], 2)}
        common.emit_json({**start, **emit, "command": common.command_line()})
        if prof:
            pstats.Stats(prof).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    bench(a.rows, a.profile)
