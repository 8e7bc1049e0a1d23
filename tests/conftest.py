"""Test-session settings shared by every folder."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ("tests.cpu_report",)  # --cpu-report: CPU per test file and fixture (off unless asked for)

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
other files follow, those with the most selected tests first (pytest-xdist's own order, which its
--loadscope-reorder default applied to every file and so put these few-test files last: the Makefile's
pytest command passes --no-loadscope-reorder, and the order is made here)."""


@pytest.hookimpl(trylast=True)  # after -m and -k have deselected, so the counts are of the tests that run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONG_FILES_FIRST)}
    root = config.rootpath
    counts: dict[str, int] = {}
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        name = _name(item, root)
        counts[name] = counts.get(name, 0) + 1
        first.setdefault(name, i)

    def place(item: pytest.Item) -> tuple[int, int, int]:
        name = _name(item, root)
        return rank.get(name, len(rank)), -counts[name], first[name]

    items.sort(key=place)  # stable: the order within each file is kept


def _name(item: pytest.Item, root: Path) -> str:
    try:
        return item.path.relative_to(root).as_posix()
    except ValueError:
        return str(item.path)


@pytest.fixture(autouse=True)
def _textual_style_cache_emptied() -> Iterator[None]:
    """Let the widgets of a test's apps go when it ends (`sprx_tui._textual_hacks.forget_drawn_lines` says why).

    In a test worker the long-lived heap grew from 176,000 to 430,000 objects within ten app tests, and every
    full collection (the app's own at the unlock screen, two or three per app test) walked them all: 0.3-0.5 s
    of CPU each.
    """
    yield
    empty_textual_style_cache()


def empty_textual_style_cache() -> None:
    """See `_textual_style_cache_emptied`; also for a test that runs many apps (a hypothesis example each)."""
    if "textual" in sys.modules:  # only in workers that imported Textual (the rest need not import it)
        from sprx_tui._textual_hacks import forget_drawn_lines

        forget_drawn_lines()
