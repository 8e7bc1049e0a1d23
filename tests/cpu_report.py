"""`--cpu-report`: where a test run's CPU goes, per test file, fixture and test (loaded by tests/conftest.py).

`make check` is CPU-bound on two cores, and wall times (--durations) mix a test's own work with waiting for
the other workers. With the flag, each test process records `getrusage` CPU (user + system, every thread of
the process, plus the subprocesses it waited for: the CLI, a uvicorn server) around each test's setup, call
and teardown and around each fixture's own setup (its body up to `yield`, without the fixtures it requests),
and the time spent in the cyclic garbage collector (`gc.callbacks`). At the end it prints a table per file,
the costliest fixtures and tests, and per worker how much went to starting up and collecting. Not counted:
children that are not waited for (a PostgreSQL cluster's server processes, daemonised by pg_ctl), and threads
a test leaves running are charged to whatever runs next. Without the flag nothing is registered. Works with
and without pytest-xdist (the figures travel with each test's report to the controlling process).
"""

from __future__ import annotations

import gc
import resource
import time
from collections import defaultdict
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import pytest

_PHASES = ("setup", "call", "teardown")
_FIXTURES = pytest.StashKey[dict[str, list[float]]]()
_PHASE = pytest.StashKey[dict[str, tuple[float, float, float, float]]]()


_gc = {"seconds": 0.0, "full": 0.0, "started": 0.0}
"""Time inside the cyclic garbage collector (all generations, and the full ones alone), by `_gc_timer`."""


def _gc_timer(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc["started"] = time.perf_counter()
        return
    spent = time.perf_counter() - _gc["started"]
    _gc["seconds"] += spent
    if info["generation"] == 2:
        _gc["full"] += spent


def _now() -> tuple[float, float, float, float]:
    """(CPU of this process, CPU of its finished children, wall clock, time in the garbage collector)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime, time.monotonic(), _gc["seconds"]


def _since(start: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    end = _now()
    return end[0] - start[0], end[1] - start[1], end[2] - start[2], end[3] - start[3]


@dataclass
class _File:
    tests: int = 0
    cpu: dict[str, float] = field(default_factory=lambda: dict.fromkeys(_PHASES, 0.0))
    children: float = 0.0
    wall: float = 0.0
    gc: float = 0.0

    @property
    def total(self) -> float:
        return sum(self.cpu.values()) + self.children


class CpuReport:
    """Both halves: the recording (in each process that runs tests) and the table (where the run reports)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.files: dict[str, _File] = defaultdict(_File)
        self.fixtures: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])  # cpu, wall, count
        self.workers: dict[str, dict[str, float]] = {}
        self.tests: dict[str, float] = defaultdict(float)
        self.collected: tuple[float, float, float, float] | None = None
        gc.callbacks.append(_gc_timer)

    # --- recording, in the process that runs the tests ---

    @pytest.hookimpl(hookwrapper=True)
    def pytest_collection(self) -> Generator[None, Any, None]:
        yield
        self.collected = _now()  # since the process started: start-up, plugins, conftests, collection

    @pytest.hookimpl(hookwrapper=True)
    def pytest_fixture_setup(self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> Generator:
        start = _now()
        yield
        spent = _since(start)
        item = getattr(request, "_pyfuncitem", None)
        if item is not None:
            key = f"{fixturedef.argname} ({fixturedef.scope}) {fixturedef.baseid or '<plugin>'}"
            cpu_wall = item.stash.setdefault(_FIXTURES, {}).setdefault(key, [0.0, 0.0])
            cpu_wall[0] += spent[0] + spent[1]
            cpu_wall[1] += spent[2]

    def _phase(self, item: pytest.Item, when: str) -> Generator[None, Any, None]:
        start = _now()
        yield
        item.stash.setdefault(_PHASE, {})[when] = _since(start)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, Any, None]:
        yield from self._phase(item, "setup")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, Any, None]:
        yield from self._phase(item, "call")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Generator[None, Any, None]:
        yield from self._phase(item, "teardown")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator:
        outcome = yield
        report: pytest.TestReport = outcome.get_result()
        spent = item.stash.get(_PHASE, {}).get(call.when)
        if spent is not None:  # the measurements travel with the report (pytest-xdist sends it to the controller)
            report.user_properties.append(("cpu_report", list(spent)))
        if call.when == "setup" and _FIXTURES in item.stash:
            report.user_properties.append(("cpu_report_fixtures", item.stash[_FIXTURES]))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        workeroutput = getattr(session.config, "workeroutput", None)
        if workeroutput is not None:
            total = _now()  # since the process started: its start-up and imports too
            collected = self.collected or (0.0, 0.0, 0.0)
            workeroutput["cpu_report"] = {
                "total": total[0] + total[1],
                "collection": collected[0] + collected[1],
                "gc": _gc["seconds"],
                "gc_full": _gc["full"],
            }

    # --- the table, where the run reports (the controller under pytest-xdist) ---

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        if "cpu_report" not in props:
            return
        own, kids, wall, in_gc = props["cpu_report"]
        entry = self.files[report.nodeid.split("::")[0]]
        entry.cpu[report.when] += own
        entry.children += kids
        entry.wall += wall
        entry.gc += in_gc
        self.tests[report.nodeid] += own + kids
        if report.when == "setup":
            entry.tests += 1
        for key, (cpu, fwall) in props.get("cpu_report_fixtures", {}).items():
            agg = self.fixtures[(report.nodeid.split("::")[0], key)]
            agg[0] += cpu
            agg[1] += fwall
            agg[2] += 1

    @pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: absent with -p no:xdist
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        out = getattr(node, "workeroutput", {}).get("cpu_report")
        if out is not None:
            self.workers[node.gateway.id] = out

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if getattr(self.config, "workeroutput", None) is not None:
            return
        write = terminalreporter.write_line
        top = self.config.getoption("cpu_report_top")
        terminalreporter.section("CPU per test file (s; own process, all threads; children = waited-for subprocesses)")
        write(
            f"{'file':<50} {'tests':>5} {'setup':>6} {'call':>6} {'tdown':>6} {'child':>6} {'total':>6} {'gc':>5}"
            f" {'wall':>6}"
        )
        ranked = sorted(self.files.items(), key=lambda kv: -kv[1].total)
        for name, f in ranked[:top]:
            c = f.cpu
            write(
                f"{name[-50:]:<50} {f.tests:>5} {c['setup']:>6.1f} {c['call']:>6.1f} {c['teardown']:>6.1f} "
                f"{f.children:>6.1f} {f.total:>6.1f} {f.gc:>5.1f} {f.wall:>6.1f}"
            )
        tests_cpu = sum(f.total for f in self.files.values())
        count = sum(f.tests for f in self.files.values())
        in_gc = sum(f.gc for f in self.files.values())
        write(f"{f'all {len(self.files)} files':<50} {count:>5} {'':>27} {tests_cpu:>6.1f} {in_gc:>5.1f}")
        terminalreporter.section("CPU per fixture setup (s; the fixture's own body, summed over its setups)")
        write(f"{'fixture (scope) where defined':<70} {'file':<34} {'n':>4} {'cpu':>7} {'wall':>7}")
        for (file, key), (cpu, wall, n) in sorted(self.fixtures.items(), key=lambda kv: -kv[1][0])[:top]:
            write(f"{key[-70:]:<70} {file.rsplit('/', 1)[-1][-34:]:<34} {int(n):>4} {cpu:>7.1f} {wall:>7.1f}")
        terminalreporter.section("CPU per test (s; setup + call + teardown)")
        for nodeid, cpu in sorted(self.tests.items(), key=lambda kv: -kv[1])[:top]:
            write(f"{cpu:>7.2f}  {nodeid}")
        if self.workers:
            terminalreporter.section("CPU per worker process (s)")
            for name, out in sorted(self.workers.items()):
                write(
                    f"{name}: {out['total']:.1f} in all, of which start-up and collection {out['collection']:.1f};"
                    f" in the garbage collector {out['gc']:.1f} (full collections {out['gc_full']:.1f})"
                )
            write(f"all workers: {sum(o['total'] for o in self.workers.values()):.1f} (tests: {tests_cpu:.1f})")
            own = resource.getrusage(resource.RUSAGE_SELF)
            write(f"this controlling process (collection, reports): {own.ru_utime + own.ru_stime:.1f}")
        elif self.collected is not None:
            total = _now()
            write(
                f"this process: {total[0] + total[1]:.1f} in all, collection {sum(self.collected[:2]):.1f};"
                f" in the garbage collector {_gc['seconds']:.1f} (full collections {_gc['full']:.1f})"
            )


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("cpu-report")
    group.addoption("--cpu-report", action="store_true", help="print the CPU spent per test file and fixture")
    group.addoption("--cpu-report-top", type=int, default=25, help="rows in each --cpu-report table (25)")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("cpu_report"):
        config.pluginmanager.register(CpuReport(config), "sprx-cpu-report")
