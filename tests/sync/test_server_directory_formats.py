"""`sprx-server import-directory` of Open Referral UK JSON and CSV, and a withdrawal reaching a laptop by sync."""

from __future__ import annotations

import json
from pathlib import Path

from sprx_rules.hsds import service_id
from sync.schema import TABLES
from sync.server.directory import import_path
from tests.rules.test_directory_formats import CSV, EXAMPLE_ID, FULL_JSON, LIST_JSON, derived
from tests.sync.server_harness import TestServer
from tests.sync.test_directory_feed import directory


def test_oruk_json_and_csv_on_the_server(sqlite_server: TestServer) -> None:
    sqlite_server.worker("w1", "P1")
    first = import_path(sqlite_server.store, FULL_JSON, "P1")
    assert (first.format, first.added, first.problems) == ("hsds3-json", 1, [])
    values = directory(sqlite_server)[service_id("P1", EXAMPLE_ID)]
    assert set(values) == set(TABLES["community_service"].fields)
    assert values["postcode"] == "ABC 1234" and values["opening_times"] == "Thursdays and Fridays 10:00–18:00"
    assert (values["min_age"], values["max_age"], values["withdrawn_on"], values["source"]) == (12, 100, None, "")
    # The list page lacks the detail: nothing changes. The CSV package adds the contact's phone.
    thin = import_path(sqlite_server.store, LIST_JSON, "P1")
    assert (thin.updated, thin.unchanged) == (0, 1)
    csv = import_path(sqlite_server.store, CSV, "P1")
    assert (csv.format, csv.updated, csv.unchanged) == ("hsds3-csv", 1, 0)
    assert directory(sqlite_server)[service_id("P1", EXAMPLE_ID)]["phone"] == "+44 1234 234567"
    again = import_path(sqlite_server.store, CSV, "P1")
    assert (again.added, again.updated, again.unchanged, again.withdrawn) == (0, 0, 1, 0)


def test_withdrawal_reaches_the_laptop(sqlite_server: TestServer, tmp_path: Path) -> None:
    sqlite_server.worker("w1", "P1")
    laptop = sqlite_server.laptop("w1")
    three, two = tmp_path / "three.json", tmp_path / "two.json"
    three.write_text(json.dumps(derived(3)))
    two.write_text(json.dumps(derived(2)))
    assert import_path(sqlite_server.store, three, "P1").added == 3
    first = [c for c in laptop.pull_all()["changes"] if c["tbl"] == "community_service"]
    assert len(first) == 3
    result = import_path(sqlite_server.store, two, "P1")
    assert (result.withdrawn, result.unchanged) == (1, 2)
    assert result.lines[1].startswith("1 service is no longer in this source, so marked inactive")
    pulled = [c for c in laptop.pull_all()["changes"] if c["tbl"] == "community_service"]
    gone = next(c for c in pulled if c["id"] == service_id("P1", "ex-3"))
    assert gone["values"]["active"] is False and gone["values"]["withdrawn_on"]
    assert gone["values"]["name"] == "Service 3"  # never deleted
    partial = import_path(sqlite_server.store, tmp_path / "two.json", "P1", full=False)
    assert (partial.withdrawn, partial.unchanged) == (0, 2)
