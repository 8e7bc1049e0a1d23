"""sprx_rules stays pure: no UI, no database, no HTTP, nothing from either side, and short functions."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "sprx_rules"
FORBIDDEN = ("textual", "rich", "sqlalchemy", "sqlmodel", "httpx", "fastapi", "starlette", "sprx_tui", "sync")
LIMIT = 25


def _modules() -> list[str]:
    return sorted(f"sprx_rules.{p.stem}" for p in RULES.glob("*.py") if p.stem != "__init__")


def test_no_rules_module_imports_a_forbidden_package() -> None:
    hits = []
    for path in sorted(RULES.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            hits += [f"{path.name}:{node.lineno} {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert hits == []


def test_importing_every_rules_module_loads_no_forbidden_package() -> None:
    """In a fresh interpreter, so nothing imported by other tests hides a transitive import."""
    mods = _modules()
    assert {"sprx_rules.gate", "sprx_rules.hsds", "sprx_rules.nhs", "sprx_rules.outcomes"} <= set(mods)
    code = (
        f"import sys, {', '.join(mods)}; print(sorted({{m.split('.')[0] for m in sys.modules}} & set({FORBIDDEN!r})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_no_function_is_above_the_complexity_limit() -> None:
    radon = pytest.importorskip("radon.complexity")
    over = []
    for path in sorted(RULES.rglob("*.py")):
        for block in radon.cc_visit(path.read_text(encoding="utf-8")):
            for fn in getattr(block, "methods", None) or [block]:
                if fn.complexity > LIMIT:
                    over.append(f"{path.name}:{fn.lineno} {fn.fullname} = {fn.complexity}")
    assert over == []
