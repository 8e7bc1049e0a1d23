"""Server side: HSDS import into practice-wide records laptops pull, and the practice report (SQLite, PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from sprx_rules.hsds import service_id
from sprx_rules.report import Period, Report, quarter, report_to_dict
from sprx_tui.core import reports
from sprx_tui.core.models import SYNCED_MODELS
from sprx_tui.core.store import open_store
from sprx_tui.core.vault import FLOOR, Vault
from sprx_tui.core.wire import row_values
from sync.schema import TABLES
from sync.server.cli import main as server_main
from sync.server.directory import DirectoryError, import_directory, import_hsds
from sync.server.report import build_practice_report
from sync.server.store import record
from tests.sample_data import hsds_sample
from tests.sync.server_harness import TestServer

SAMPLE = hsds_sample()
NOW = dt.datetime(2026, 11, 23, 10, 30, tzinfo=dt.UTC)


def directory_rows(server: TestServer) -> list[sa.Row]:
    with server.store.engine.connect() as conn:
        return conn.execute(sa.select(record).where(record.c.tbl == "community_service").order_by(record.c.id)).all()


def test_import_reaches_laptops_and_reimport_updates_in_place(server: TestServer, tmp_path: Path) -> None:
    server.worker("w1", "P1")
    server.worker("w2", "P2")
    laptop = server.laptop("w1")
    result = import_hsds(server.store, SAMPLE, "P1")
    assert (result.added, result.updated, result.unchanged, result.problems) == (13, 0, 0, [])

    rows = directory_rows(server)
    assert len(rows) == 13
    assert {r.practice_id for r in rows} == {"P1"} and {r.person_id for r in rows} == {None}
    kitchen = next(r for r in rows if r.id == service_id("P1", "756b5a9d-7d65-4063-b5f2-d08ccf01c55e"))
    values = json.loads(kitchen.values)
    assert values["name"] == "The City's Kitchen" and values["active"] is True
    assert values["last_verified"] == "2016-08-25" and values["needs"] == ["money"]
    assert set(values) == set(TABLES["community_service"].fields)

    pulled = [c for c in laptop.pull_all()["changes"] if c["tbl"] == "community_service"]
    assert len(pulled) == 13
    assert {c["values"]["name"] for c in pulled if not c["values"]["active"]} == {
        "Food Safety Program", "Dear Teacher Skills Refresh", "Wash & Go at The Cross",
    }  # fmt: skip

    again = import_hsds(server.store, SAMPLE, "P1")
    assert (again.added, again.updated, again.unchanged) == (0, 0, 13)
    assert laptop.pull_all()["changes"] == []  # nothing changed, nothing to pull

    pkg = tmp_path / "changed"
    shutil.copytree(SAMPLE, pkg)
    (pkg / "services.csv").chmod(0o644)
    (pkg / "services.csv").write_text((pkg / "services.csv").read_text().replace("Shop Assist,,", "Shop Assist Plus,,"))
    changed = import_hsds(server.store, pkg, "P1")
    assert (changed.added, changed.updated, changed.unchanged) == (0, 1, 12)
    assert len(directory_rows(server)) == 13
    (update,) = laptop.pull_all()["changes"]
    assert update["values"]["name"] == "Shop Assist Plus"

    # Another practice importing the same package gets its own entries, invisible to P1's laptops.
    other = import_hsds(server.store, SAMPLE, "P2")
    assert other.added == 13 and len(directory_rows(server)) == 26
    assert laptop.pull_all()["changes"] == []


def test_bad_rows_are_reported_and_the_rest_imported(sqlite_server: TestServer, tmp_path: Path) -> None:
    pkg = tmp_path / "bad"
    shutil.copytree(SAMPLE, pkg)
    (pkg / "services.csv").chmod(0o644)
    with (pkg / "services.csv").open("a") as fh:
        fh.write("x1,,,,,no name,,,active,,,,,,,\n")
    n, errors = import_directory(sqlite_server.store, pkg, "P1")
    assert n == 13 and errors == [(19, "services.csv: the service has no name")]
    with pytest.raises(DirectoryError, match="no directory package"):
        import_hsds(sqlite_server.store, tmp_path / "nowhere", "P1")


REPORT_TABLES = ("person", "referral", "contact", "outcome_response", "need", "onward_referral")
PERIODS = (quarter("2026Q3"), quarter("2026Q4"), Period(dt.date(2026, 9, 10), dt.date(2026, 9, 15)))
BY_PERIOD: dict[Period, Report] = {}  # the laptop's report for each period, filled by local_caseload


@pytest.fixture(scope="module")
def local_caseload(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Report, list[tuple]]]:
    """The hand-built caseload of tests/core/test_reports.py, its laptop report, and its synced rows."""
    from tests.core.test_reports import build_caseload

    vault, _ = Vault.create(
        tmp_path_factory.mktemp("local") / "vault", bytearray(b"walking group on tuesday"), kdf=FLOOR
    )
    local = open_store(vault, clock=lambda: NOW)
    build_caseload(local)
    mine = reports.build_report(local)
    for period in PERIODS:
        BY_PERIOD[period] = reports.build_report(local, period=period)
    rows = []
    with Session(local.engine) as s:
        for tbl in REPORT_TABLES:
            for row in s.exec(select(SYNCED_MODELS[tbl])):
                person_id = row.id if tbl == "person" else row.person_id
                rows.append((tbl, row.id, person_id, row_values(row, TABLES[tbl])))
    vault.lock()
    yield mine, rows


def test_practice_report_gives_the_laptop_report_figures(
    server: TestServer, local_caseload: tuple[Report, list[tuple]]
) -> None:
    mine, rows = local_caseload
    # Put the laptop's rows into the server's records, as a completed sync would.
    with server.store._write() as conn:
        for tbl, row_id, person_id, values in rows:
            server.store.server_write(tbl, row_id, values, practice_id="P1", person_id=person_id, conn=conn)
    theirs = build_practice_report(server.store, "P1", today=NOW.date())
    assert theirs.scope == "practice P1"
    theirs.scope = mine.scope
    assert report_to_dict(theirs) == report_to_dict(mine)
    # Every section has figures, so this is not a comparison of empty reports.
    assert mine.people == 7 and mine.contacts.total == 25 and mine.uptake.onward_referrals == 5
    assert all(o.paired == 4 for o in mine.outcomes) and mine.unmet_needs == {"housing": 2, "money": 1}
    # By period too, the same figures (a week of September worked out by hand in tests/core/test_reports.py).
    for period, laptop in BY_PERIOD.items():
        server_side = build_practice_report(server.store, "P1", today=NOW.date(), period=period)
        server_side.scope = laptop.scope
        assert report_to_dict(server_side) == report_to_dict(laptop), period
    week = BY_PERIOD[PERIODS[2]]
    assert (week.contacts.total, week.people, week.unmet_needs) == (5, 2, {"housing": 1, "money": 1})
    assert BY_PERIOD[PERIODS[1]].episodes_ended["goals_met"] == 4
    empty = build_practice_report(server.store, "P9")
    assert empty.people == 0 and empty.contacts.mean is None


def test_server_cli_import_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path}/s.db"
    assert server_main(["init", "--db", db]) == 0
    assert server_main(["worker", "add", "w1", "--practice", "P1", "--team", "T1", "--db", db]) == 0
    capsys.readouterr()
    assert server_main(["import-directory", str(SAMPLE), "--db", db, "--practice", "P1"]) == 0
    out, _err = capsys.readouterr()
    assert out == "Read an HSDS 1.1 datapackage: 13 added, 0 changed, 0 withdrawn, 0 unchanged.\n"
    assert server_main(["report", "--db", db, "--practice", "P1"]) == 0
    out, _err = capsys.readouterr()
    assert out.startswith("Caseload and outcomes: practice P1,")
    assert "Caseload by status (0 people)" in out and "Sync: 0 open conflicts" in out


def test_server_cli_report_for_a_quarter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path}/s.db"
    assert server_main(["init", "--db", db]) == 0
    assert server_main(["worker", "add", "alice", "--practice", "P1", "--team", "T1", "--db", db]) == 0
    capsys.readouterr()
    assert server_main(["report", "--db", db, "--practice", "P1", "--quarter", "2026Q3"]) == 0
    out, _err = capsys.readouterr()
    assert "Period: 2026 Q3 (1 July 2026 to 30 September 2026)" in out and "Caseload by status (0 people)" in out
    assert server_main(["report", "--db", db, "--practice", "P1", "--from", "2026-09-30", "--to", "2026-07-01"]) != 0
    out, err = capsys.readouterr()
    assert out == "" and err == "The period ends before it starts; check the --from and --to dates.\n"
