"""The directory screen shows postcode, opening times and eligibility from every format, and refuses to refer
to a withdrawn service."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from textual.content import Content

from sprx_rules.directory import read_directory
from sprx_rules.hsds import service_id
from sprx_tui.core import directory
from sprx_tui.core.models import CommunityService
from sprx_tui.core.store import CaseStore
from sprx_tui.screens.directory import DirectoryScreen, detail_content
from sprx_tui.screens.forms import ConfirmModal
from tests.rules.test_directory_formats import CSV, FULL_JSON, derived
from tests.tui.settling import settle
from tests.tui.test_directory_screen import SIZE, detail_text, directory_for, make_app, move_to, person_without_onward

TODAY = dt.date(2026, 12, 7)


def hsds1_package(tmp_path: Path) -> Path:
    pkg = tmp_path / "hsds1"
    pkg.mkdir()
    (pkg / "services.csv").write_text("id,name,description,status\nw1,Beck Walkers,Gentle walks,active\n")
    (pkg / "services_at_location.csv").write_text("id,service_id,location_id\ns1,w1,l1\n")
    (pkg / "locations.csv").write_text("id,name\nl1,Northfield Library\n")
    (pkg / "physical_addresses.csv").write_text(
        "id,location_id,address_1,city,postal_code\na1,l1,1 Beck St,Leeds,ls61ab\n"
    )
    (pkg / "regular_schedules.csv").write_text("id,service_id,weekday,opens_at,closes_at\nr1,w1,2,10:00,12:00\n")
    (pkg / "eligibility.csv").write_text("id,service_id,eligibility\ne1,w1,Adults over 50\n")
    return pkg


def rows_of(text: str) -> dict[str, str]:
    """The detail's "Label   value" lines as label -> value."""
    out = {}
    for line in text.splitlines():
        label, _, value = line.partition("  ")
        if value.strip():
            out[label.strip()] = value.strip()
    return out


def shown(path: Path) -> str:
    [rec], _problems, _fmt = read_directory(path)
    values = {f: getattr(rec, f) for f in rec.FIELDS}
    content = detail_content(CommunityService(id=rec.id, **values), None, TODAY)
    assert isinstance(content, Content)
    return content.plain


@pytest.mark.parametrize("fmt", ["oruk-json", "oruk-csv", "hsds1"])
def test_detail_shows_postcode_opening_times_and_eligibility(fmt: str, tmp_path: Path) -> None:
    path = {"oruk-json": FULL_JSON, "oruk-csv": CSV}.get(fmt) or hsds1_package(tmp_path)
    rows = rows_of(shown(path))
    if fmt == "hsds1":
        assert rows["Address"] == "Northfield Library, 1 Beck St, Leeds, LS6 1AB"
        assert (rows["Opening"], rows["Eligibility"]) == ("Tuesdays 10:00–12:00", "Adults over 50")
    else:
        assert rows["Address"].startswith("MyCity Civic Center, 1-30 Main Street") and rows["Address"].endswith(
            ", ABC 1234"
        )
        assert (rows["Opening"], rows["Eligibility"]) == ("Thursdays and Fridays 10:00–18:00", "Ages 12 to 100")


@pytest.mark.slow  # one of the longest fast-tier tests (3-7 s on 2 busy cores): make test runs it, make check does not
async def test_a_withdrawn_service_is_not_offered_for_referral(unlocked_store: CaseStore, tmp_path: Path) -> None:
    (tmp_path / "three.json").write_text(json.dumps(derived(3)))
    (tmp_path / "two.json").write_text(json.dumps(derived(2)))
    directory.import_directory(unlocked_store, tmp_path / "three.json", source="test")
    assert directory.import_directory(unlocked_store, tmp_path / "two.json", source="test").withdrawn == 1
    gone = service_id(unlocked_store.actor.practice_id, "ex-3", "test")
    person_id = person_without_onward(unlocked_store)
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        screen = await directory_for(app, pilot, person_id)
        assert isinstance(screen, DirectoryScreen)
        await pilot.press(*"service 3")
        await settle(pilot, rounds=4)
        assert gone in screen.rows and not screen.rows[gone].active
        await move_to(pilot, screen, gone)
        assert "withdrawn from its directory on" in detail_text(screen)
        await pilot.press("r")
        await settle(pilot, rounds=4)
        assert not isinstance(app.screen, ConfirmModal)
        assert any("not offered for referral" in str(n.message) for n in app._notifications)
    assert unlocked_store.queries.onward_referrals(person_id) == []
