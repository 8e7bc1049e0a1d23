"""`sprx demo --people N`: wall time and peak memory of the real command, plus a profile of the generator."""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from common import (
    DEMO_PASSPHRASE,
    SPRX,
    command_line,
    emit_json,
    machine,
    print_table,
    run_child,
    scratch_dir,
    self_peak_rss_mb,
    set_memory_security,
)


def _dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file()) / 1e6


def run_cli(people: int, keep: Path | None) -> dict[str, Any]:
    """Run the real CLI in a child; its own peak RSS comes from wait4 (one child, not all children)."""
    work = scratch_dir(f"demo-{people}-")
    vault = keep or work / "vault"
    argv = [SPRX, "demo", "--vault", str(vault), "--people", str(people), "--fast-kdf", "--passphrase-stdin", "--quiet"]
    try:
        run = run_child(argv, stdin=DEMO_PASSPHRASE + "\n")
        if run.returncode != 0:
            raise SystemExit(f"sprx demo failed (exit {run.returncode}): {run.stderr[-2000:]}")
        return {
            "people": people,
            "wall_s": round(run.wall_s, 1),
            "user_s": round(run.user_s, 1),
            "sys_s": round(run.sys_s, 1),
            "max_rss_mb": round(run.max_rss_mb, 1),
            "ms_per_person": round(run.wall_s * 1000 / people, 1),
            "vault_mb": round(_dir_mb(vault), 1),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)  # with --keep the vault lives outside `work`


_TIME_FIELDS = {
    "Elapsed (wall clock) time (h:mm:ss or m:ss)": "wall",
    "User time (seconds)": "user_s",
    "System time (seconds)": "sys_s",
    "Maximum resident set size (kbytes)": "max_rss_kb",
    "Percent of CPU this job got": "cpu_percent",
    "Command being timed": "command",
    "Exit status": "exit_status",
}


def parse_time_file(path: Path) -> dict[str, Any]:
    """Read the output of `/usr/bin/time -v -o FILE ...` (GNU time)."""
    out: dict[str, Any] = {}
    for line in path.read_text().splitlines():
        key, _, value = line.strip().rpartition(": ")
        if key in _TIME_FIELDS:
            out[_TIME_FIELDS[key]] = value.strip().strip('"')
    if "wall" in out:
        parts = [float(p) for p in out["wall"].split(":")]
        seconds = 0.0
        for p in parts:
            seconds = seconds * 60 + p
        out["wall_s"] = round(seconds, 1)
    if "max_rss_kb" in out:
        out["max_rss_mb"] = round(int(out["max_rss_kb"]) / 1024, 1)
    people = re.search(r"--people (\d+)", out.get("command", ""))
    if people and "wall_s" in out:
        out["people"] = int(people.group(1))
        out["ms_per_person"] = round(out["wall_s"] * 1000 / out["people"], 1)
    return out


def profile_generator(people: int, batch_report: int, profile: bool = True) -> dict[str, Any]:
    """build_demo in this process (under cProfile unless `profile` is False), timing every batch of people.

    Without the profiler the per-batch figures show how the cost per person grows with vault size.
    """
    set_memory_security(True)  # what the CLI does
    from sprx_tui.core.demo import build_demo
    from sprx_tui.core.store import open_store
    from sprx_tui.core.vault import FLOOR, Vault

    work = scratch_dir("demo-profile-")
    try:
        secret = bytearray(DEMO_PASSPHRASE.encode())
        vault, _ = Vault.create(work / "vault", secret, kdf=FLOOR)
        store = open_store(vault)
        batches: list[float] = []
        done = [0]
        last = [time.perf_counter()]

        def progress(n: int) -> None:
            now = time.perf_counter()
            batches.append((now - last[0]) * 1000 / n)  # ms per person in this batch
            last[0] = now
            done[0] += n

        profiler = cProfile.Profile() if profile else None
        c0 = time.process_time()
        t0 = time.perf_counter()
        if profiler:
            profiler.enable()
        build_demo(store, people=people, progress=progress)
        if profiler:
            profiler.disable()
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0
        vault.lock()
        buf = io.StringIO()
        if profiler:
            stats = pstats.Stats(profiler, stream=buf)
            stats.sort_stats("cumulative").print_stats(40)
            stats.sort_stats("tottime").print_stats(20)
        step = max(1, len(batches) // batch_report)
        return {
            "people": people,
            "profiled": profile,
            "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1),
            "ms_per_person": round(wall * 1000 / people, 1),
            "ms_per_person_by_batch": [round(b, 1) for b in batches[::step]],
            "peak_rss_mb": round(self_peak_rss_mb(), 1),
            "profile": buf.getvalue(),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, nargs="+", default=[10000], help="run `sprx demo` for each size")
    parser.add_argument("--keep", type=Path, help="keep the vault here (only with one size)")
    parser.add_argument(
        "--time-file", type=Path, help="also report a previous `/usr/bin/time -v -o FILE sprx demo` run"
    )
    parser.add_argument("--profile", type=int, metavar="N", help="profile build_demo in-process for N people instead")
    parser.add_argument(
        "--growth", type=int, metavar="N", help="build N people in-process without a profiler; ms/person by batch"
    )
    parser.add_argument("--no-cli", action="store_true", help="only report --time-file / --profile")
    args = parser.parse_args(argv)

    ctx = machine()
    if args.profile or args.growth:
        prof = profile_generator(args.profile or args.growth, batch_report=20, profile=bool(args.profile))
        print(prof.pop("profile"))
        how = "under cProfile" if args.profile else "no profiler"
        print(f"build_demo, {prof['people']} people, {how}: {prof['wall_s']} s wall, {prof['cpu_s']} s CPU")
        print("ms per person by batch (growth shows per-write cost rising with vault size):")
        print("  " + " ".join(f"{x:.0f}" for x in prof["ms_per_person_by_batch"]))
        ctx["load_after"] = machine()["loadavg_1m"]
        emit_json(
            {
                "bench": "demo.profile" if args.profile else "demo.growth",
                "command": command_line(),
                "machine": ctx,
                **prof,
            }
        )
        return

    rows: list[dict[str, Any]] = []
    if args.time_file:
        rec = parse_time_file(args.time_file)
        rec["source"] = f"/usr/bin/time -v ({args.time_file.name})"
        rows.append(rec)
    if not args.no_cli:
        if args.keep and len(args.people) != 1:
            raise SystemExit("--keep needs exactly one --people size")
        for n in args.people:
            rec = run_cli(n, args.keep)
            rec["source"] = "this run (wait4 rusage)"
            rows.append(rec)
            print(f"  {n} people: {rec['wall_s']} s, peak RSS {rec['max_rss_mb']} MB", file=sys.stderr, flush=True)
    print("\nsprx demo --people N --fast-kdf (memory security on, as the CLI runs it)")
    print_table(
        ["people", "wall s", "ms/person", "user s", "sys s", "peak RSS MB", "vault MB", "source"],
        [
            (
                r.get("people", "?"),
                r.get("wall_s", "?"),
                r.get("ms_per_person", "?"),
                r.get("user_s", "?"),
                r.get("sys_s", "?"),
                r.get("max_rss_mb", "?"),
                r.get("vault_mb", "-"),
                r["source"],
            )
            for r in rows
        ],
    )
    ctx["load_after"] = machine()["loadavg_1m"]
    emit_json({"bench": "demo.cli", "command": command_line(), "machine": ctx, "runs": rows})


if __name__ == "__main__":
    main()
