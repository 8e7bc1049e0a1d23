"""Soak the sync convergence property (tests/sync/test_convergence.py) for thousands of examples.

CI runs the state machine for 200 examples. This runs it for many more, once per seed, each in its
own pytest process (real SQLCipher vaults, the in-process server, injected faults and clock skew),
and prints one line per seed plus a summary; it exits non-zero if any seed finds a failure.

Usage: ``.venv/bin/python bench/bench_convergence.py [--examples 2000] [--seeds 1 2 3] [--json FILE]``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST = "tests/sync/test_convergence.py::test_laptops_and_server_converge_without_losing_anything"


def run_seed(seed: int, examples: int, timeout: float) -> dict[str, object]:
    env = {**os.environ, "SPRX_CONVERGENCE_EXAMPLES": str(examples)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TEST, f"--hypothesis-seed={seed}"]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        out, rc = p.stdout + p.stderr, p.returncode
    except subprocess.TimeoutExpired as exc:
        out, rc = str(exc.stdout or "") + "\ntimed out", -1
    wall = time.perf_counter() - t0
    failure = None
    if rc != 0:
        m = re.search(r"^E\s+(AssertionError: .*)$", out, re.MULTILINE)
        failure = m.group(1) if m else out.strip().splitlines()[-1] if out.strip() else "no output"
    return {"seed": seed, "examples": examples, "passed": rc == 0, "seconds": round(wall, 1), "failure": failure,
            "tail": out[-3000:] if rc != 0 else ""}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=2000, help="examples per seed (CI uses 200)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--timeout", type=float, default=6 * 3600, help="seconds per seed")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    results = []
    for seed in args.seeds:
        r = run_seed(seed, args.examples, args.timeout)
        results.append(r)
        verdict = "passed" if r["passed"] else f"FAILED: {r['failure']}"
        print(f"seed {seed}: {args.examples} examples in {r['seconds']} s, {verdict}", flush=True)
        if not r["passed"]:
            print(r["tail"], file=sys.stderr)
    total = sum(int(r["examples"]) for r in results if r["passed"])  # type: ignore[call-overload]
    print(f"{sum(r['passed'] for r in results)}/{len(results)} seeds passed, {total} examples, "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0 if all(r["passed"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
