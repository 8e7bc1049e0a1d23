"""Test-session settings shared by every folder."""

from __future__ import annotations

import pytest

LONG_FILES_FIRST = (
    "tests/sync/test_convergence.py",  # 200 hypothesis examples of laptops syncing with faults: about 3 min
    "tests/tui/test_inert_text.py",  # a hypothesis search through every screen: about 2.5 min
    "tests/e2e/test_terminal_close.py",
    "tests/tui/test_whole_episode.py",
)
"""The files that take longest, handed to the workers first: pytest-xdist (--dist loadfile) gives out whole
files in collection order, so a long file collected late would run alone at the end while the other
workers wait. The rest keep their order."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONG_FILES_FIRST)}
    root = config.rootpath

    def place(item: pytest.Item) -> int:
        try:
            name = item.path.relative_to(root).as_posix()
        except ValueError:
            return len(rank)
        return rank.get(name, len(rank))

    items.sort(key=place)  # stable: the order within each file, and of the other files, is kept
