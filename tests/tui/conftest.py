"""Fixtures for the app tests: one synthetic demo vault per session, copied per test, and a frozen clock.

Copies are unlocked with the template's recovery key (`quick_unlock`): the same public unlock the
recovery screen uses, without the passphrase's Argon2id derivation (about 0.2 s of CPU each). Tests of
the passphrase unlock itself go through the unlock screen.
"""

from __future__ import annotations

import datetime as dt
import gc
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sprx_tui.core.demo import build_demo
from sprx_tui.core.store import CaseStore, open_store
from sprx_tui.core.vault import FLOOR, Vault
from tests.shared_build import built_once

PASSPHRASE = "walking group on tuesday"
FROZEN_NOW = dt.datetime(2026, 11, 23, 10, 30, tzinfo=dt.UTC)  # a Monday morning
_RECOVERY: dict[str, str] = {}
"""The session template's recovery key (one template per test process)."""


def frozen_clock() -> dt.datetime:
    return FROZEN_NOW


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The fast tier takes each snapshot once, at 120x40 in the default theme; other sizes and themes are slow."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or not item.path.name.startswith("test_snapshots_"):
            continue
        size, theme = callspec.params.get("size", (120, 40)), callspec.params.get("theme", "default")
        if tuple(size) != (120, 40) or theme != "default":
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _heap_before_the_test_frozen(request: pytest.FixtureRequest) -> None:
    """Full garbage collections during an app test walk what the test made, not the whole worker's heap.

    A test worker holds every module it collected and whatever earlier tests left in caches (230,000 objects
    after collection, several times that later). Each full collection in an app test walked all of it (0.2-0.5 s
    of CPU), and app tests ran one or two: the app's own `gc.freeze` (`SprxApp._freeze_heap`) covers only the
    unlocked time, and its thaw at the exit hands everything back to the collector. So what is alive when an
    app test starts is frozen first, after collecting the last test's garbage: a full collection when the heap
    is still frozen (it walks only what was made since), the young generations when an app's thaw undid the
    freeze (the next app's thaw releases the rest). Only when collections run changes, not what they free.
    A test marked `own_heap` examines the collector itself and starts with nothing frozen.
    """
    if request.node.get_closest_marker("own_heap"):
        gc.unfreeze()
        return
    if gc.get_freeze_count():
        gc.collect()
    else:
        gc.collect(1)
    gc.freeze()


@pytest.fixture(autouse=True)
def _no_cursor_blink(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deterministic snapshots: the input cursor never blinks."""
    from textual.widgets import Input, TextArea

    monkeypatch.setattr(Input, "_toggle_cursor", lambda self: None, raising=False)
    monkeypatch.setattr(TextArea, "_toggle_cursor_blink_visible", lambda self: None, raising=False)


@pytest.fixture(scope="session")
def demo_vault_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 30-person synthetic demo vault built once per test run (`built_once`) with the frozen clock."""

    def build(folder: Path) -> dict[str, str]:
        vault, recovery = Vault.create(folder / "vault", bytearray(PASSPHRASE.encode()), kdf=FLOOR)
        store = open_store(vault, clock=frozen_clock)
        build_demo(store, people=30, seed=7)
        vault.lock()
        return {"recovery": recovery}

    folder, facts = built_once(tmp_path_factory, "tui-demo-vault", build)
    _RECOVERY["template"] = facts["recovery"]
    return folder / "vault"


def quick_unlock(path: Path) -> Vault:
    """Unlock a copy of the session's demo vault template with its recovery key (no KDF run)."""
    vault = Vault(path)
    vault.unlock_with_recovery(_RECOVERY["template"])
    return vault


@pytest.fixture
def demo_vault(demo_vault_template: Path, tmp_path: Path) -> Path:
    """A private copy of the demo vault (locked) for one test."""
    dest = tmp_path / "vault"
    shutil.copytree(demo_vault_template, dest)
    return dest


@pytest.fixture
def unlocked_store(demo_vault: Path) -> Iterator[CaseStore]:
    vault = quick_unlock(demo_vault)
    store = open_store(vault, clock=frozen_clock)
    yield store
    vault.lock()


@pytest.fixture
def open_demo(demo_vault: Path) -> Callable[[], CaseStore]:
    """Unlock the copied demo vault on demand (for tests that start at the unlock screen)."""

    def _open() -> CaseStore:
        vault = quick_unlock(demo_vault)
        return open_store(vault, clock=frozen_clock)

    return _open
