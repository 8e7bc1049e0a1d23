"""Shared benchmark helpers: timing, percentiles, per-process memory security, child runs with peak RSS."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / "out"  # git-ignored
PYTHON = sys.executable
SPRX = str(Path(sys.executable).with_name("sprx"))
VAULT_10K = OUT / "vault-10k"
DEMO_PASSPHRASE = "walking group on tuesday"
JSON_PREFIX = "JSON "

if str(ROOT) not in sys.path:  # scripts run as `python bench/x.py`; the package lives in the repo root
    sys.path.insert(0, str(ROOT))


# -- numbers -----------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolated percentile (numpy's default), p in [0, 100]."""
    if not values:
        raise ValueError("no values")
    xs = sorted(values)
    if len(xs) == 1:
        return float(xs[0])
    k = (len(xs) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return float(xs[lo] + (xs[hi] - xs[lo]) * (k - lo))


def summary(values: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99, mean, min, max and n of a sample (units are the caller's)."""
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), 3),
        "p95": round(percentile(values, 95), 3),
        "p99": round(percentile(values, 99), 3),
        "mean": round(statistics.fmean(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def ms_since(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


class Stopwatch:
    """Collects one wall-clock duration and one CPU duration (this process, ms) per `with` block.

    On a shared machine the CPU figure is the steadier one: it excludes time spent waiting for a
    core that another engineer's job holds, but also excludes waiting for fsync.
    """

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.cpu: list[float] = []

    def __enter__(self) -> Stopwatch:
        self._c0 = time.process_time()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.samples.append(ms_since(self._t0))
        self.cpu.append((time.process_time() - self._c0) * 1000.0)


# -- memory security (process-global in SQLCipher: one mode per process) ------------------


def set_memory_security(on: bool) -> None:
    """Fix this process's SQLCipher memory security before any engine exists.

    `make_engine`/`make_plain_engine` call `init_process_security()` (default ON) themselves, which
    would silently turn memory security back on after `init_process_security(False)`; for the OFF
    mode we therefore pin the module function to a no-op. `assert_memory_security` checks the result.
    """
    from sprx_tui.core import db

    db.init_process_security(on)
    if not on:
        db.init_process_security = lambda memory_security=True: None  # type: ignore[assignment]


def assert_memory_security(on: bool) -> bool:
    from sprx_tui.core import db

    actual = db.memory_security_enabled()
    if actual != on:
        raise SystemExit(f"memory security is {'on' if actual else 'off'}, expected {'on' if on else 'off'}")
    return actual


# -- deterministic clock ---------------------------------------------------------------------


class StepClock:
    """A clock that starts at a fixed instant and moves 1 s per reading: same data on every run."""

    def __init__(self, start: dt.datetime | None = None, step: dt.timedelta = dt.timedelta(seconds=1)) -> None:
        self.now = start or dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
        self.step = step

    def __call__(self) -> dt.datetime:
        self.now += self.step
        return self.now


# -- scratch space ---------------------------------------------------------------------------


def scratch_dir(prefix: str) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=OUT))


def copy_vault(src: Path, prefix: str) -> Path:
    """Copy a (locked) vault directory so a benchmark can write without touching the shared one."""
    if not (src / "sprx.key").exists():
        raise SystemExit(f"There is no vault at {src}; build it first (see bench/README.md).")
    dest = scratch_dir(prefix) / "vault"
    shutil.copytree(src, dest)
    return dest


# -- child processes -------------------------------------------------------------------------


@dataclass
class ChildRun:
    argv: list[str]
    returncode: int
    wall_s: float
    user_s: float
    sys_s: float
    max_rss_mb: float  # peak resident set of that one child (Linux reports ru_maxrss in KiB)
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        """The last `JSON {...}` line the child printed."""
        for line in reversed(self.stdout.splitlines()):
            if line.startswith(JSON_PREFIX):
                return json.loads(line[len(JSON_PREFIX) :])
        raise RuntimeError(f"no JSON line from {' '.join(self.argv)}:\n{self.stdout[-2000:]}\n{self.stderr[-4000:]}")


def run_child(argv: Sequence[str], *, stdin: str | None = None, env: dict[str, str] | None = None) -> ChildRun:
    """Run one child to completion and return its wall time and its own rusage (via wait4)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as inp:
        if stdin is not None:
            inp.write(stdin.encode())
            inp.seek(0)
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            list(argv), stdin=inp, stdout=out, stderr=err, cwd=ROOT, env={**os.environ, **(env or {})}
        )
        # wait4 gives this child's rusage alone; RUSAGE_CHILDREN would be the max over every child so far.
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return ChildRun(
            argv=list(argv),
            returncode=proc.returncode,
            wall_s=wall,
            user_s=usage.ru_utime,
            sys_s=usage.ru_stime,
            max_rss_mb=usage.ru_maxrss / 1024.0,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
        )


def self_peak_rss_mb() -> float:
    if resource is None:  # pragma: no cover
        return float("nan")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _status_kb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def rss_mb() -> float:
    """Current resident set of this process (Linux VmRSS), MB; NaN elsewhere."""
    kb = _status_kb("VmRSS")
    return float("nan") if kb is None else kb / 1024.0


def reset_peak_rss() -> bool:
    """Start a new peak (Linux: writing 5 to clear_refs resets VmHWM); False where that is not possible.

    Unlocking runs Argon2id with 64 MiB or more, so a process's lifetime peak mostly shows the KDF;
    resetting after the unlock shows what the work itself needs.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_since_reset_mb() -> float:
    """Peak resident set since `reset_peak_rss` (Linux VmHWM), MB; NaN elsewhere."""
    kb = _status_kb("VmHWM")
    return float("nan") if kb is None else kb / 1024.0


def alternating(modes: Sequence[str], rounds: int) -> list[tuple[int, str]]:
    """Round r runs the modes rotated by r, so no mode always runs first (or right after another)."""
    order: list[tuple[int, str]] = []
    for r in range(rounds):
        k = r % len(modes)
        order.extend((r, m) for m in [*modes[k:], *modes[:k]])
    return order


# -- reporting -------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """Context a reader needs to judge a figure: cores, load, versions, commit."""
    import sqlcipher3

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    conn = sqlcipher3.connect(":memory:")
    try:
        cipher = conn.execute("PRAGMA cipher_version").fetchone()[0]
    finally:
        conn.close()
    return {
        "cpus": os.cpu_count(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "cpu_pressure_some_avg60": cpu_pressure(),
        "python": platform.python_version(),
        "sqlcipher": cipher,
        "commit": commit,
        "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def cpu_pressure() -> float | None:
    """Share of the last minute in which some runnable task waited for a CPU (Linux PSI), in %."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    fields = dict(part.split("=") for part in line.split()[1:])
    return float(fields.get("avg60", "nan"))


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def emit_json(payload: dict[str, Any]) -> None:
    print(JSON_PREFIX + json.dumps(payload, sort_keys=True, default=str), flush=True)


def command_line() -> str:
    return " ".join([".venv/bin/python", *[_rel(a) for a in sys.argv]])


def _rel(arg: str) -> str:
    try:
        return str(Path(arg).resolve().relative_to(ROOT)) if Path(arg).exists() else arg
    except ValueError:
        return arg


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    result = fn()
    return ms_since(t0), result
