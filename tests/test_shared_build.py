"""The run-wide build of session fixtures (tests/shared_build.py): built once, read by every later caller."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.shared_build import built_once


def test_a_fixture_is_built_once_and_every_caller_reads_the_same(tmp_path_factory: pytest.TempPathFactory) -> None:
    builds: list[Path] = []

    def build(folder: Path) -> dict[str, str]:
        builds.append(folder)
        (folder / "made").write_text("once")
        return {"key": "value"}

    first = built_once(tmp_path_factory, "shared-build-test", build)
    again = built_once(tmp_path_factory, "shared-build-test", build)
    assert len(builds) == 1
    assert first == again == (builds[0], {"key": "value"})
    assert (first[0] / "made").read_text() == "once"
