"""The import contracts in pyproject.toml hold today, and they do fail when a forbidden import is added.

``lint-imports`` (import-linter) reads the contracts from pyproject.toml. The second test copies the three
packages into a temporary folder, adds one forbidden import per contract and checks that the linter,
pointed at the copy, names the broken contract.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("sprx_rules", "sync", "sprx_tui")

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed (pip install -e '.[test]')")

# (file to break, the import added, words from the contract's name that the report must show)
BREAKS = [
    ("sprx_rules/nhs.py", "import textual", "sprx_rules"),
    ("sprx_rules/gate.py", "import sqlalchemy", "sprx_rules"),
    ("sync/merge.py", "import sprx_tui.core.store", "never imports the app"),
    ("sync/server/app.py", "import sync.client", "server never imports the laptop"),
    ("sprx_tui/core/queries.py", "import textual.widgets", "core"),
    ("sprx_tui/core/service.py", "import sprx_tui.cli", "core"),
    ("sprx_tui/screens/help.py", "import sprx_tui.app", "screens"),
]


def _lint(where: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(where)}
    return subprocess.run(
        [str(LINT), "--config", str(where / "pyproject.toml"), "--no-cache"],
        cwd=where,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _copy(dest: Path) -> None:
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, dest / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")


def test_the_contracts_hold() -> None:
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " 0 broken." in done.stdout.split("Contracts:")[-1].splitlines()[0]


@pytest.mark.slow  # one of the longest fast-tier tests (3-7 s on 2 busy cores): make test runs it, make check does not
def test_each_contract_fails_when_a_forbidden_import_is_added(tmp_path: Path) -> None:
    _copy(tmp_path)
    assert _lint(tmp_path).returncode == 0
    for rel, line, words in BREAKS:
        target = tmp_path / rel
        original = target.read_text(encoding="utf-8")
        target.write_text(original + f"\n{line}  # added by the test\n", encoding="utf-8")
        try:
            done = _lint(tmp_path)
        finally:
            target.write_text(original, encoding="utf-8")
        assert done.returncode != 0, f"adding `{line}` to {rel} broke no contract"
        broken = [ln for ln in done.stdout.splitlines() if "BROKEN" in ln]
        assert any(words in ln for ln in broken), (rel, line, broken)
