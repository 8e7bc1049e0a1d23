"""The laptop's `sprx directory import` of every format, and a full import's withdrawals (real SQLCipher vaults)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from sprx_rules.hsds import service_id
from sprx_tui import cli
from sprx_tui.core import directory
from sprx_tui.core.store import CaseStore
from sprx_tui.core.vault import FLOOR, Vault
from tests.rules.test_directory_formats import CSV, EXAMPLE_ID, FULL_JSON, LIST_JSON, csv_copy, derived
from tests.sample_data import hsds_sample

EXAMPLE = service_id("local", EXAMPLE_ID)


def write_list(path: Path, docs: list[dict]) -> Path:
    path.write_text(json.dumps({"total_items": len(docs), "page_number": 1, "contents": docs}))
    return path


@pytest.mark.parametrize(
    ("path", "fmt", "phone"),
    [(FULL_JSON, "hsds3-json", ""), (CSV, "hsds3-csv", "+44 1234 234567")],
    ids=["oruk-json", "oruk-csv"],
)
def test_each_format_imports_and_reimport_changes_nothing(
    core_store: CaseStore, path: Path, fmt: str, phone: str
) -> None:
    first = directory.import_directory(core_store, path)
    assert (first.format, first.added, first.updated, first.withdrawn, first.problems) == (fmt, 1, 0, 0, [])
    svc = directory.get_service(core_store, EXAMPLE)
    assert svc is not None and svc.postcode == "ABC 1234" and svc.phone == phone
    assert svc.opening_times == "Thursdays and Fridays 10:00–18:00"
    assert (svc.min_age, svc.max_age, svc.languages, svc.source, svc.withdrawn_on) == (12, 100, [], "", None)
    assert svc.cost == "Under 18s and Over 60s: £35 per 1 hour session"
    rows, total = directory.search_services(core_store, "counselling abc1234")
    assert total == 1 and rows[0].id == EXAMPLE
    again = directory.import_directory(core_store, path)
    assert (again.added, again.updated, again.unchanged, again.withdrawn) == (0, 0, 1, 0)


def test_a_list_page_after_the_full_document_keeps_the_detail(core_store: CaseStore) -> None:
    directory.import_directory(core_store, FULL_JSON)
    thin = directory.import_directory(core_store, LIST_JSON)
    assert (thin.updated, thin.unchanged) == (0, 1)
    assert any("kept as stored" in line and "opening times" in line for line in thin.lines)
    svc = directory.get_service(core_store, EXAMPLE)
    assert svc is not None and svc.opening_times == "Thursdays and Fridays 10:00–18:00" and svc.postcode == "ABC 1234"


def test_thin_package_keeps_and_empty_file_clears(core_store: CaseStore, tmp_path: Path) -> None:
    directory.import_directory(core_store, csv_copy(tmp_path, "rich"))
    thin = csv_copy(tmp_path, "thin")
    for f in ("schedules.csv", "schedule.csv"):
        (thin / f).unlink()
    result = directory.import_directory(core_store, thin)
    assert (result.updated, result.unchanged) == (0, 1)
    assert [str(p) for p in result.problems] == ["schedule.csv:0: the file named in datapackage.json is missing"]
    assert result.lines[-1] == "Not in this source, so kept as stored: eligibility, opening times, referral route."
    svc = directory.get_service(core_store, EXAMPLE)
    assert svc is not None and svc.opening_times == "Thursdays and Fridays 10:00–18:00"
    # A schedules file with no rows for the service says it has none: that clears it.
    (thin / "schedule.csv").write_text("id,service_id,freq,byday,opens_at,closes_at\n")
    result = directory.import_directory(core_store, thin)
    assert (result.updated, result.unchanged) == (1, 0)
    svc = directory.get_service(core_store, EXAMPLE)
    assert svc is not None and svc.opening_times == ""


def test_full_import_withdraws_and_the_service_stops_being_offered(core_store: CaseStore, tmp_path: Path) -> None:
    three = write_list(tmp_path / "three.json", derived(3))
    two = write_list(tmp_path / "two.json", derived(2))
    assert directory.import_directory(core_store, three).added == 3
    gone = service_id("local", "ex-3")
    partial = directory.import_directory(core_store, two, full=False)
    assert (partial.withdrawn, partial.unchanged) == (0, 2)
    assert directory.get_service(core_store, gone).active is True  # type: ignore[union-attr]

    result = directory.import_directory(core_store, two)
    assert (result.added, result.updated, result.withdrawn, result.unchanged) == (0, 0, 1, 2)
    assert "1 service is no longer in this source" in result.lines[1]
    svc = directory.get_service(core_store, gone)
    assert svc is not None and svc.active is False and svc.withdrawn_on == core_store.queries.today()
    rows, total = directory.search_services(core_store, "service")
    assert total == 2 and gone not in {r.id for r in rows}
    rows, total = directory.search_services(core_store, "service", include_inactive=True)
    assert total == 3 and not next(r for r in rows if r.id == gone).active
    # The other format's services are the same source: importing the HSDS 1.1 sample in full withdraws them.
    assert directory.import_directory(core_store, hsds_sample()).withdrawn == 2
    # It comes back in a later feed: active again.
    back = directory.import_directory(core_store, three, full=False)
    assert back.updated == 3
    svc = directory.get_service(core_store, gone)
    assert svc is not None and svc.active is True and svc.withdrawn_on is None


def test_a_package_that_yields_nothing_withdraws_nothing(core_store: CaseStore, tmp_path: Path) -> None:
    directory.import_directory(core_store, write_list(tmp_path / "two.json", derived(2)))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "services.csv").write_text("id,name,minimum_age\n")
    result = directory.import_directory(core_store, empty)
    assert (result.imported, result.withdrawn) == (0, 0)


@pytest.fixture
def run_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[int, str, str]]:
    path = tmp_path / "vault"
    vault, _ = Vault.create(path, bytearray(b"walking group on tuesday"), kdf=FLOOR)
    vault.lock()

    def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
        monkeypatch.setattr("sys.stdin", io.StringIO("walking group on tuesday\n"))
        code = cli.main(["directory", "import", *args, "--vault", str(path), "--passphrase-stdin"])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_cli_takes_json_csv_and_datapackage_alike(
    run_cli: Callable[..., tuple[int, str, str]], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run_cli(capsys, str(FULL_JSON))
    assert (code, err) == (0, "")
    assert out == "Read HSDS 3.0 / Open Referral UK JSON: 1 added, 0 changed, 0 withdrawn, 0 unchanged.\n"
    code, out, _ = run_cli(capsys, str(CSV), "--partial")
    assert out.splitlines() == [
        "Read an HSDS 3.0 / Open Referral UK CSV package: 0 added, 1 changed, 0 withdrawn, 0 unchanged.",
        "Partial import: services not in this file were left as they are.",
        "Not in this source, so kept as stored: eligibility, referral route.",
    ]  # the CSV package has the contact's phone the JSON lacks
    code, out, _ = run_cli(capsys, str(hsds_sample()))
    assert code == 0 and out.startswith(
        "Read an HSDS 1.1 datapackage: 13 added, 0 changed, 1 withdrawn, 0 unchanged.\n"
        "1 service is no longer in this source, so marked inactive (withdrawn today); their referrals are kept.\n"
    )
    code, out, err = run_cli(capsys, str(tmp_path / "nowhere"))
    assert (code, err) == (1, "sprx: There is no directory package or file at that path.\n")


def test_a_named_source_is_withdrawn_only_by_its_own_imports(core_store: CaseStore, tmp_path: Path) -> None:
    # A named source keeps its own ids and is withdrawn only by its own full imports.
    two = write_list(tmp_path / "two.json", derived(2))
    council = directory.import_directory(core_store, two, source="council")
    assert council.added == 2 and directory.get_service(core_store, service_id("local", "ex-1", "council"))
    assert directory.import_directory(core_store, FULL_JSON).withdrawn == 0
    one = write_list(tmp_path / "one.json", derived(1))
    assert directory.import_directory(core_store, one, source="council").withdrawn == 1


def test_languages_are_kept_and_searchable(core_store: CaseStore, tmp_path: Path) -> None:
    docs = derived(1)
    docs[0]["languages"] = [{"id": "l1", "name": "Welsh", "code": "cy"}]
    directory.import_directory(core_store, write_list(tmp_path / "one.json", docs))
    svc = directory.get_service(core_store, service_id("local", "ex-1"))
    assert svc is not None and svc.languages == ["Welsh"]
    rows, total = directory.search_services(core_store, "welsh")
    assert total == 1 and rows[0].name == "Service 1"


def test_an_enrolled_laptop_never_withdraws_locally(
    run_cli: Callable[..., tuple[int, str, str]], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from sprx_tui.core.store import open_store, set_state
    from sprx_tui.core.sync.state import K_TOKEN

    assert run_cli(capsys, str(FULL_JSON))[0] == 0
    vault = Vault(tmp_path / "vault")
    vault.unlock(bytearray(b"walking group on tuesday"))
    set_state(open_store(vault).engine, {K_TOKEN: "a-device-token"})
    vault.lock()
    code, out, _ = run_cli(capsys, str(hsds_sample()))
    assert code == 0 and out.startswith(
        "Read an HSDS 1.1 datapackage: 13 added, 0 changed, 0 withdrawn, 0 unchanged.\n"
        "Partial import: services not in this file were left as they are.\n"
    )
    assert "This laptop gets its directory from the practice server, so nothing was withdrawn here.\n" in out


@pytest.mark.slow  # 5,000 services imported
def test_an_import_reports_its_progress_to_the_last_entry(core_store: CaseStore, tmp_path: Path) -> None:
    """`sprx directory import` draws a bar from these reports: reading, then every entry written."""
    heard: list[tuple[str, int, int | None]] = []
    n = 1_200  # more than two batches of inserts
    first = directory.import_directory(
        core_store, write_list(tmp_path / "many.json", derived(n)), progress=lambda *a: heard.append(a)
    )
    assert first.added == n
    assert heard[0] == ("read", 0, None) and heard[1] == ("read", n, n)
    writes = [(done, total) for phase, done, total in heard if phase == "write"]
    assert writes[0] == (0, n) and writes[-1] == (n, n) and len(writes) >= 3
    assert [d for d, _ in writes] == sorted(d for d, _ in writes)  # it only moves forward
    heard.clear()
    fewer = directory.import_directory(
        core_store, write_list(tmp_path / "fewer.json", derived(n - 1)), progress=lambda *a: heard.append(a)
    )
    assert (fewer.withdrawn, fewer.unchanged) == (1, n - 1)
    assert [(d, t) for p, d, t in heard if p == "write"][-1] == (1, 1)  # the withdrawal, reported
