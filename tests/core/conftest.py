"""Shared fixtures for the core tests: real SQLCipher vaults (FLOOR KDF), a settable clock, row counters."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from sprx_tui.core.store import CaseStore, open_store
from sprx_tui.core.vault import FLOOR, Vault
from tests.shared_build import built_once

CORE_PASSPHRASE = "walking group on tuesday"
CORE_FROZEN_NOW = dt.datetime(2026, 11, 23, 10, 30, tzinfo=dt.UTC)  # a Monday morning


class CoreClock:
    """A clock the test sets by hand (it may go backwards, as laptop clocks do)."""

    def __init__(self, now: dt.datetime = CORE_FROZEN_NOW) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> dt.datetime:
        self.now = self.now + dt.timedelta(**delta)
        return self.now


@dataclass(frozen=True)
class CoreVaultTemplate:
    path: Path
    recovery: str


def core_pw(value: str = CORE_PASSPHRASE) -> bytearray:
    return bytearray(value.encode())


@pytest.fixture(scope="session")
def core_empty_template(tmp_path_factory: pytest.TempPathFactory) -> CoreVaultTemplate:
    """An empty vault migrated to head, built once per test run (`built_once`) and left locked."""

    def build(folder: Path) -> dict[str, str]:
        vault, recovery = Vault.create(folder / "vault", core_pw(), kdf=FLOOR)
        open_store(vault)
        vault.lock()
        return {"recovery": recovery}

    folder, facts = built_once(tmp_path_factory, "core-empty-vault", build)
    return CoreVaultTemplate(folder / "vault", facts["recovery"])


@pytest.fixture
def core_clock() -> CoreClock:
    return CoreClock()


@pytest.fixture
def core_open_copy(
    core_empty_template: CoreVaultTemplate, tmp_path: Path
) -> Iterator[Callable[[Callable[[], dt.datetime]], CaseStore]]:
    """Open a private copy of the empty vault with a given clock; locked again after the test."""
    opened: list[Vault] = []

    def _open(clock: Callable[[], dt.datetime]) -> CaseStore:
        dest = tmp_path / f"vault{len(opened)}"
        shutil.copytree(core_empty_template.path, dest)
        vault = Vault(dest)
        # The recovery slot unwraps without Argon2, which keeps per-test stores cheap.
        vault.unlock_with_recovery(core_empty_template.recovery)
        opened.append(vault)
        return open_store(vault, clock=clock)

    yield _open
    for vault in opened:
        if vault.is_unlocked:
            vault.lock()


@pytest.fixture
def core_store(core_open_copy: Callable[..., CaseStore], core_clock: CoreClock) -> CaseStore:
    """A fresh, empty, unlocked store on a real SQLCipher file, driven by `core_clock`."""
    return core_open_copy(core_clock)


def core_count_rows(engine: Engine, *tables: str) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in tables}


@pytest.fixture
def core_counts() -> Callable[..., dict[str, int]]:
    """Row counts of the named tables (the failure-injection tests compare before and after)."""
    return core_count_rows


def core_add_directory_service(store: CaseStore, service_id: str = "svc-walk", name: str = "Walking group") -> str:
    """Put one entry in the cached directory (the server owns it; the laptop only caches it)."""
    from sqlmodel import Session

    from sprx_tui.core.models import CommunityService

    with Session(store.engine) as s, s.begin():
        s.add(
            CommunityService(
                id=service_id,
                name=name,
                categories=["walking"],
                needs=["physical_activity"],
                last_verified=CORE_FROZEN_NOW.date(),
            )
        )
    return service_id


@pytest.fixture
def core_directory() -> Callable[..., str]:
    return core_add_directory_service


@dataclass(frozen=True)
class CoreCliDemo:
    path: Path
    recovery: str
    stdout: str
    stderr: str
    returncode: int


CORE_CLI_DEMO_PEOPLE = 6


def core_sprx(
    args: list[str], stdin: str = CORE_PASSPHRASE + "\n", timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run the installed `sprx` console script as a real process (no SPRX_* settings leak in)."""
    sprx = str(Path(sys.executable).with_name("sprx"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPRX_")}
    return subprocess.run([sprx, *args], input=stdin, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="session")
def core_cli_demo(tmp_path_factory: pytest.TempPathFactory) -> CoreCliDemo:
    """A small demo vault made by `sprx demo` in a subprocess, once per test run (`built_once`); copy it before
    changing it."""

    def build(folder: Path) -> dict[str, Any]:
        done = core_sprx(
            [
                "demo",
                "--vault",
                str(folder / "vault"),
                "--people",
                str(CORE_CLI_DEMO_PEOPLE),
                "--passphrase-stdin",
                "--fast-kdf",
            ]
        )
        return {"stdout": done.stdout, "stderr": done.stderr, "returncode": done.returncode}

    folder, done = built_once(tmp_path_factory, "core-cli-demo", build)
    # The recovery key is printed once, indented, between blank lines.
    keys = [line.strip() for line in done["stdout"].splitlines() if line.startswith("    ")]
    return CoreCliDemo(folder / "vault", keys[0] if keys else "", done["stdout"], done["stderr"], done["returncode"])
