"""Run the PouchDB replication peer (vendored in bench/peers/pouchdb-sync) and return its JSON figures."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

PEER_SRC = Path(__file__).resolve().parent / "peers" / "pouchdb-sync"
OUT = Path(__file__).resolve().parent / "out"
PEER_DIR = OUT / "pouchdb-sync"


def prepare(src: Path = PEER_SRC, dest: Path = PEER_DIR) -> Path:
    """Copy the peer into bench/out (git-ignored) and install its packages once."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("bench.js", "package.json", "README.md"):
        target = dest / name
        if target.exists():
            target.chmod(0o644)  # the source is read-only; a re-copy must be able to overwrite
        shutil.copyfile(src / name, target)
    if not (dest / "node_modules" / "pouchdb").is_dir():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=dest, check=True, capture_output=True)
    return dest


def _cpu_s(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(people: int = 10_000, per_person: int = 10, timeout: float = 1800.0) -> dict[str, Any]:
    """`node bench.js PEOPLE PER_PERSON` in the prepared copy; the parsed JSON line it prints.

    The node process's CPU time is sampled from /proc every 50 ms, and the CPU spent in its first
    sync and in its push of 100 edits is read off those samples (the phases run back to back, so
    each window is placed by the phase times the peer itself prints, counted back from its exit).
    That gives a load-independent figure next to the wall times on a shared machine.
    """
    dest = prepare()
    err_path = dest / "stderr.txt"
    with open(err_path, "w") as err:
        proc = subprocess.Popen(
            ["node", "bench.js", str(people), str(per_person)], cwd=dest, stdout=subprocess.PIPE, stderr=err, text=True
        )
    samples: list[tuple[float, float]] = []

    def sample() -> None:
        while proc.poll() is None:
            c = _cpu_s(proc.pid)
            if c is not None:
                samples.append((time.perf_counter(), c))
            time.sleep(0.05)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    line, printed_at = None, 0.0
    assert proc.stdout is not None
    for raw in proc.stdout:  # the JSON line is printed before the peer tidies up its temp dir
        if raw.strip().startswith("{"):
            line, printed_at = raw.strip(), time.perf_counter()
    proc.wait(timeout)
    th.join()
    if proc.returncode != 0:
        raise RuntimeError(f"the peer failed: {err_path.read_text()[-2000:]}")
    if line is None:
        raise RuntimeError("the peer printed no JSON line")
    out: dict[str, Any] = json.loads(line)
    out["command"] = f"cd bench/out/pouchdb-sync && node bench.js {people} {per_person}"
    if samples:
        end = printed_at

        def cpu_at(t: float) -> float:
            return next((c for w, c in samples if w >= t), samples[-1][1])

        push_end = end
        push_start = push_end - out["push_100_s"]
        first_end = push_start - out["noop_s"] - out["incremental_10_s"]
        first_start = first_end - out["first_sync_s"]
        out["cpu_first_sync_s"] = round(cpu_at(first_end) - cpu_at(first_start), 2)
        out["cpu_push_100_s"] = round(cpu_at(push_end) - cpu_at(push_start), 2)
        out["cpu_total_s"] = samples[-1][1]
        out["wall_total_s"] = round(samples[-1][0] - samples[0][0], 1)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--people", type=int, default=10_000)
    ap.add_argument("--contacts", type=int, default=10, help="contacts per person")
    args = ap.parse_args()
    print(json.dumps(run(args.people, args.contacts)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
