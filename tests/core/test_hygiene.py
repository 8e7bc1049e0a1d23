"""Import and source hygiene: the core never pulls in the UI, and no shipped code can write a plaintext copy."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHIPPED = ("sprx_rules", "sprx_tui", "sync", "bench")
# Either call makes an unencrypted copy of the vault (ATTACH ... KEY '' then sqlcipher_export).
PLAINTEXT_EXPORT = re.compile(r"sqlcipher_export\s*\(|KEY\s+''|KEY\s+\"\"", re.IGNORECASE)

CORE_MODULES = (
    "sprx_tui.core.service, sprx_tui.core.queries, sprx_tui.core.demo, sprx_tui.core.export, sprx_tui.cli, "
    "sync.schema, sync.merge, sync.protocol"
)


def test_core_imports_neither_textual_nor_rich() -> None:
    code = f"import {CORE_MODULES}; import sys; print(any(m.split('.')[0] in ('textual','rich') for m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_the_check_itself_sees_textual() -> None:
    """The same one-liner reports True once textual is imported, so the test above can fail."""
    code = "import textual.app; import sys; print(any(m.split('.')[0] in ('textual','rich') for m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.stdout.strip() == "True", done.stderr


def _offenders(paths: list[Path]) -> list[str]:
    hits = []
    for path in paths:
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if PLAINTEXT_EXPORT.search(line):
                hits.append(f"{path.relative_to(REPO)}:{number}")
    return hits


def test_no_shipped_source_makes_a_plaintext_copy() -> None:
    sources = [
        p
        for top in SHIPPED
        if (REPO / top).is_dir()
        for p in (REPO / top).rglob("*")
        if p.suffix in (".py", ".sql", ".tcss", ".toml", ".cfg", ".mako") and "__pycache__" not in p.parts
    ]
    sources += [p for p in REPO.glob("*.py")]
    assert len(sources) > 20
    assert _offenders(sources) == []


def test_the_source_scan_would_catch_it() -> None:
    # Test code may decrypt on purpose, and test_leaks.py does (its detector's positive control).
    assert _offenders([REPO / "tests" / "core" / "test_leaks.py"])
    for line in ("conn.execute(\"ATTACH DATABASE 'p.db' AS plain KEY ''\")", "SELECT sqlcipher_export ('plain')"):
        assert PLAINTEXT_EXPORT.search(line)
    assert not PLAINTEXT_EXPORT.search("conn.set_key(spec)  # raw key, never SQL text")
