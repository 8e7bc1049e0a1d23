"""Test-session settings shared by every folder."""

from __future__ import annotations

import pytest

LONG_FILES_FIRST = (
    "tests/sync/test_convergence.py",  # 200 hypothesis examples of laptops syncing with faults: the most CPU
    "tests/tui/test_inert_text.py",  # a hypothesis search through every screen
    "tests/tui/test_drafts.py",
    "tests/tui/test_app_shell.py",
    "tests/tui/test_person.py",
    "tests/e2e/test_sync_e2e.py",
    "tests/tui/test_keys_and_states.py",
    "tests/sync/test_server.py",
    "tests/tui/test_sync_ui.py",
    "tests/e2e/test_terminal_close.py",
    "tests/core/test_cli.py",
    "tests/sync/test_client_sync.py",
    "tests/tui/test_directory_screen.py",
    "tests/tui/test_whole_episode.py",
)
"""The files that take longest (a full run's file times, 20:48 on 7 December 2026: 60-160 s each under four
workers), longest first, handed to the workers first: pytest-xdist (--dist loadfile) gives out whole files in
collection order, so a long file collected late would run alone at the end while the other workers wait. The
rest keep their order. pytest-xdist 3 reorders the files by their number of tests unless told not to, which put
these (few tests each) last: pyproject.toml's addopts pass --no-loadscope-reorder."""


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
