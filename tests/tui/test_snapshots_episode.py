"""SVG snapshots of the end of an episode: the discharge dialog and the GP closing summary's preview
(codes only: no name), at 80x24 and 120x40. Synthetic people, frozen clock."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from sprx_tui.core.store import CaseStore, open_store
from sprx_tui.core.vault import Vault
from sprx_tui.screens.episode import DischargeModal
from tests.tui.conftest import FROZEN_NOW, PASSPHRASE, frozen_clock
from tests.tui.settling import settle, wait_until
from tests.tui.test_snapshots_person import SIZE_IDS, SIZES, make_app


@pytest.fixture(autouse=True)
def _config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPRX_CONFIG_DIR", str(tmp_path / "config"))


@pytest.fixture(scope="module")
def episode_store(demo_vault_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CaseStore]:
    """Synthetic people of our own: one in an episode, one discharged who shares codes only, and one in an
    episode who shares codes only for each size of the discharge-then-preview snapshot (it ends theirs)."""
    dest = tmp_path_factory.mktemp("episode-snapshots") / "vault"
    shutil.copytree(demo_vault_template, dest)
    vault = Vault(dest)
    vault.unlock(bytearray(PASSPHRASE.encode()))
    store = open_store(vault, clock=frozen_clock)
    svc = store.service
    people = (
        ("Active", "full", "9434765919"),
        ("Closed", "codes_only", "9449305552"),
        ("Endingsmall", "codes_only", "9434765900"),
        ("Endinglarge", "codes_only", "9434765927"),
    )
    for given, consent, nhs in people:
        p = svc.add_person(
            given_name=given,
            family_name="Snapshotperson",
            nhs_number=nhs,
            date_of_birth=dt.date(1950, 1, 2),
            consent_gp_sharing=consent,
        )
        r = svc.receive_referral(p.id, source="self", reasons=["loneliness"], received_on=dt.date(2026, 10, 1))
        svc.accept_referral(r.id, mode="phone", occurred_at=FROZEN_NOW - dt.timedelta(days=30))
        if given == "Closed":
            svc.discharge(p.id, "moved_away")
    yield store
    vault.lock()


def person_named(store: CaseStore, given: str) -> str:
    rows, _ = store.queries.caseload(text=f"{given} snapshotperson", limit=5)
    return rows[0].id


def press_d(
    store: CaseStore, given: str, *keys: str, then: Callable[[Pilot[Any]], Awaitable[None]] | None = None
) -> Callable[[Pilot[Any]], Any]:
    """Open the person named `given`, press D, then `keys` (and `then`, if given) before the snapshot."""
    person_id = person_named(store, given)

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        pilot.app.open_person(person_id)  # type: ignore[attr-defined]
        await settle(pilot)
        await wait_until(pilot, lambda: getattr(pilot.app.screen, "person", None) is not None, what="the person")
        await pilot.press("D")
        await wait_until(pilot, lambda: "Modal" in type(pilot.app.screen).__name__, what="the dialog")
        for key in keys:
            await pilot.press(key)
        if then is not None:
            await then(pilot)
        for _ in range(2):
            await pilot.pause()
        await settle(pilot)

    return run_before


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_discharge_dialog(snap_compare: Any, episode_store: CaseStore, size: tuple[int, int]) -> None:
    run_before = press_d(episode_store, "Active", "end", "ctrl+s")  # "Other" without a note: the sentence shows
    assert snap_compare(make_app(episode_store), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_gp_summary_preview_codes_only(snap_compare: Any, episode_store: CaseStore, size: tuple[int, int]) -> None:
    run_before = press_d(episode_store, "Closed")  # ended already: D offers the summary
    assert snap_compare(make_app(episode_store), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_discharge_then_its_preview_in_the_same_dialog(
    snap_compare: Any, episode_store: CaseStore, size: tuple[int, int]
) -> None:
    """Ctrl+S in the discharge dialog (goals met): the episode ends and the dialog's second step shows the
    GP closing summary's preview (codes only: no name), the path, Write and Not now."""

    async def preview_shown(pilot: Pilot[Any]) -> None:
        dialog = pilot.app.screen
        assert isinstance(dialog, DischargeModal)
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: dialog.summary is not None, what="the preview")
        await wait_until(pilot, lambda: pilot.app.focused is dialog.query_one("#path"), what="the path focused")

    given = "Endingsmall" if size == SIZES[0] else "Endinglarge"
    run_before = press_d(episode_store, given, then=preview_shown)
    assert snap_compare(make_app(episode_store), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("theme", ["high_contrast", "no_color"])
def test_discharge_dialog_without_colour_cues(
    snap_compare: Any, episode_store: CaseStore, theme: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """80x24, high contrast and NO_COLOR: the chosen reason is said in words ("Chosen: Moved away")."""
    if theme == "no_color":
        monkeypatch.setenv("NO_COLOR", "1")
    app = make_app(episode_store, theme="high_contrast" if theme == "high_contrast" else "default")
    assert app.no_color == (theme == "no_color")
    run_before = press_d(episode_store, "Active", "down")
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
