"""Session fixtures built once per test run, not once per pytest-xdist worker.

`make check` runs four workers; each used to build its own demo vault template, empty vault template and
`sprx demo` vault (Argon2 at the floor, migrations, demo data: seconds of CPU each, four times over on two
cores). `built_once` builds into a folder shared by the run's workers, under a file lock: the first worker
builds, the others wait for it and read what it wrote. This is pytest-xdist's documented way to run a
session fixture once ("Making session-scoped fixtures execute only once"). The folder lives in the run's
own temporary root, so no run ever reuses another's build. What is built is read only: every test copies it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def _run_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.getbasetemp()
    # Under xdist each worker's base is a folder of the run's base (.../pytest-N/popen-gw0); alone, it is the run's.
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def built_once(
    tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], dict[str, Any]]
) -> tuple[Path, dict[str, Any]]:
    """The folder `build(folder)` filled for this run, and the JSON-able facts it returned (a recovery key...)."""
    root = _run_root(tmp_path_factory)
    folder = root / f"built-{name}"
    done = root / f"built-{name}.json"
    with open(root / f"built-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            facts = build(folder)
            done.write_text(json.dumps(facts))
        return folder, json.loads(done.read_text())
