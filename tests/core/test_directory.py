"""HSDS directory import, search, staleness and per-service uptake, on real SQLCipher vaults."""

from __future__ import annotations

import datetime as dt
import io
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session, select

from sprx_rules.hsds import NEED_KEYWORDS, service_id
from sprx_tui import cli
from sprx_tui.core import directory
from sprx_tui.core.models import REFERRAL_REASONS, AuditEvent, CommunityService
from sprx_tui.core.store import CaseStore
from sprx_tui.core.vault import FLOOR, Vault
from tests.core.failure_injection import failing_at
from tests.rules.test_hsds import malformed_copy
from tests.sample_data import hsds_sample

SAMPLE = hsds_sample()

TODAY = dt.date(2026, 11, 23)


# -- the needs vocabulary ---------------------------------------------------------------------------


def test_keyword_table_speaks_our_needs_vocabulary() -> None:
    for _pattern, category, needs in NEED_KEYWORDS:
        assert category and set(needs) <= set(REFERRAL_REASONS), category


# -- importing into a vault ------------------------------------------------------------------------


def audit_actions(store: CaseStore, action: str) -> list[str]:
    with Session(store.engine) as s:
        return [e.detail for e in s.exec(select(AuditEvent).where(AuditEvent.action == action))]


def directory_count(store: CaseStore) -> int:
    with store.engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM community_service")).scalar_one()


def test_import_then_reimport_updates_without_duplicates(core_store: CaseStore, tmp_path: Path) -> None:
    first = directory.import_hsds(core_store, SAMPLE)
    assert (first.added, first.updated, first.unchanged, first.inactive) == (13, 0, 0, 3)
    assert directory_count(core_store) == 13
    again = directory.import_hsds(core_store, SAMPLE)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 13)

    pkg = tmp_path / "changed"
    shutil.copytree(SAMPLE, pkg)
    (pkg / "services.csv").chmod(0o644)
    body = (pkg / "services.csv").read_text()
    body = body.replace("Shop Assist,,", "Shop Assist Plus,,").replace(
        "Bubbles At The Cross provides low-cost and pay-as-you-can services to anyone needing laundry services "
        "in Example City. ,,,active",
        "Bubbles At The Cross provides low-cost and pay-as-you-can services to anyone needing laundry services "
        "in Example City. ,,,defunct",
    )
    (pkg / "services.csv").write_text(body)
    changed = directory.import_hsds(core_store, pkg)
    assert (changed.added, changed.updated, changed.unchanged) == (0, 2, 11)
    assert directory_count(core_store) == 13
    shop = directory.get_service(core_store, service_id("local", "373c9b87-8606-49c7-8082-02120ddc04e4"))
    assert shop is not None and shop.name == "Shop Assist Plus" and "shop assist plus" in shop.search_text
    bubbles = directory.get_service(core_store, service_id("local", "21a1192b-abb9-45e8-bc52-c81ca4087240"))
    assert bubbles is not None and bubbles.active is False
    assert audit_actions(core_store, "IMPORT") == [
        "directory hsds1 added=13 updated=0 withdrawn=0 unchanged=0 problems=0",
        "directory hsds1 added=0 updated=0 withdrawn=0 unchanged=13 problems=0",
        "directory hsds1 added=0 updated=2 withdrawn=0 unchanged=11 problems=0",
    ]


def test_import_is_one_transaction(core_store: CaseStore) -> None:
    # The IMPORT audit event fails after every row was written.
    with failing_at(core_store.service, "audit"), pytest.raises(RuntimeError, match="injected failure at audit"):
        directory.import_hsds(core_store, SAMPLE)
    assert directory_count(core_store) == 0


# -- search ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def searchable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CaseStore]:
    """The sample plus a small package with addresses and schedules, imported once for the module."""
    root = tmp_path_factory.mktemp("dirsearch")
    pkg = root / "pkg"
    pkg.mkdir()
    (pkg / "services.csv").write_text(
        "id,name,description,status,fees\n"
        "w1,Northfield Walking for Health,Gentle 100% guided walks_ with tea after,active,Free\n"
        "w2,Riverside Strollers,Walking group for new mums,active,Free\n"
        "d1,Money Matters,Debt and budgeting advice,active,Free\n"
        "g1,Hillside Garden Club,Community garden; make friends,active,£2 per session\n"
        "x1,Closed Café,Befriending lunches,inactive,\n"
    )
    (pkg / "services_at_location.csv").write_text(
        "id,service_id,location_id\ns1,w1,l1\ns2,w2,l2\ns3,d1,l1\ns4,g1,l3\ns5,x1,l1\n"
    )
    (pkg / "locations.csv").write_text("id,name\nl1,Northfield Library\nl2,Riverside Hall\nl3,Hillside Church\n")
    (pkg / "physical_addresses.csv").write_text(
        "id,location_id,address_1,city,postal_code\n"
        "a1,l1,1 Beck Street,Northfield,ls61ab\n"
        "a2,l2,2 Mill Lane,Riverside,LS11 9ZZ\n"
        "a3,l3,3 Kiln Road,Hillside,LS6 2CD\n"
    )
    (pkg / "regular_schedules.csv").write_text(
        "id,service_id,weekday,opens_at,closes_at\nr1,w1,2,10:00,12:00\nr2,w1,Thursday,13:00:00,15:00:00\n"
    )
    vault, _ = Vault.create(root / "vault", bytearray(b"walking group on tuesday"), kdf=FLOOR)
    from sprx_tui.core.store import open_store

    store = open_store(vault, clock=lambda: dt.datetime(2026, 11, 23, 10, 30, tzinfo=dt.UTC))
    directory.import_hsds(store, SAMPLE)
    result = directory.import_directory(store, pkg, full=False)  # a second publisher's few: add, withdraw none
    assert result.problems[0].reason.startswith("the file is missing")  # no datapackage.json: defaults used
    yield store
    vault.lock()


def names(rows: list[directory.ServiceRow]) -> list[str]:
    return [r.name for r in rows]


def test_search_by_text_every_word_must_match(searchable: CaseStore) -> None:
    rows, total = directory.search_services(searchable, "walk")
    assert names(rows) == ["Northfield Walking for Health", "Riverside Strollers"] and total == 2
    rows, total = directory.search_services(searchable, "WALK tea")
    assert names(rows) == ["Northfield Walking for Health"] and total == 1
    # Need labels are searchable too: "debt" (from "Money or debt") finds every money-need entry.
    assert names(directory.search_services(searchable, "budgeting")[0]) == ["Money Matters"]
    assert set(names(directory.search_services(searchable, "debt")[0])) == {
        "Money Matters",
        "Grocery Tax Break Donation",
        "Meals To-Go at The Cross",
        "The City's Kitchen",
    }
    # LIKE wildcards typed by the user are literal.
    assert names(directory.search_services(searchable, "100%")[0]) == ["Northfield Walking for Health"]
    assert directory.search_services(searchable, "%")[1] == 1
    assert names(directory.search_services(searchable, "walks_")[0]) == ["Northfield Walking for Health"]
    assert directory.search_services(searchable, "nothing-like-this")[1] == 0


def test_search_filters_and_inactive(searchable: CaseStore) -> None:
    assert names(directory.search_services(searchable, category="walking")[0]) == [
        "Northfield Walking for Health",
        "Riverside Strollers",
    ]
    rows, total = directory.search_services(searchable, need="money")
    assert total == 4 and "Money Matters" in names(rows) and "Grocery Tax Break Donation" in names(rows)
    assert "Closed Café" not in names(directory.search_services(searchable, "befriending")[0])
    rows, _ = directory.search_services(searchable, "befriending", include_inactive=True)
    assert names(rows) == ["Closed Café"] and rows[0].active is False
    # Area matches the area text or the outward code of the postcode (normalised on import).
    assert names(directory.search_services(searchable, area="riverside")[0]) == ["Riverside Strollers"]
    assert names(directory.search_services(searchable, area="LS6")[0]) == [
        "Hillside Garden Club",
        "Money Matters",
        "Northfield Walking for Health",
    ]
    assert names(directory.search_services(searchable, "garden", need="loneliness", area="Hillside")[0]) == [
        "Hillside Garden Club"
    ]
    walk = directory.get_service(searchable, service_id("local", "w1"))
    assert (
        walk is not None
        and walk.postcode == "LS6 1AB"
        and walk.opening_times == "Tuesdays 10:00–12:00; Thursdays 13:00–15:00"
    )
    assert walk.address == "Northfield Library, 1 Beck Street, Northfield" and walk.area == "Northfield"


def test_search_pages_with_a_total(searchable: CaseStore) -> None:
    everything, total = directory.search_services(searchable, include_inactive=True, limit=100)
    assert total == 18 == len(everything)
    assert [r.active for r in everything] == sorted([r.active for r in everything], reverse=True)  # active first
    page, total2 = directory.search_services(searchable, include_inactive=True, limit=5, offset=15)
    assert total2 == 18 and names(page) == names(everything[15:])
    assert directory.search_services(searchable, include_inactive=True, offset=50) == ([], 18)
    assert ("walking", 2) in directory.categories(searchable)
    assert directory.areas(searchable) == ["Hillside", "Northfield", "Riverside"]


def test_staleness(searchable: CaseStore) -> None:
    def svc(verified: dt.date | None) -> CommunityService:
        return CommunityService(id="x", name="x", last_verified=verified)

    assert directory.is_stale(svc(None), TODAY)
    assert not directory.is_stale(svc(TODAY - dt.timedelta(days=183)), TODAY)
    assert directory.is_stale(svc(TODAY - dt.timedelta(days=184)), TODAY)
    rows, _ = directory.search_services(searchable, "kitchen")
    assert rows[0].stale  # verified 2016-08-25
    rows, _ = directory.search_services(searchable, "strollers")
    assert rows[0].stale and rows[0].last_verified is None


# -- uptake ----------------------------------------------------------------------------------------


def test_uptake_against_a_hand_built_caseload(core_store: CaseStore) -> None:
    directory.import_hsds(core_store, SAMPLE)
    svc = core_store.service
    kitchen = service_id("local", "756b5a9d-7d65-4063-b5f2-d08ccf01c55e")
    laundry = service_id("local", "21a1192b-abb9-45e8-bc52-c81ca4087240")
    made = dt.date(2026, 10, 1)
    people = [svc.add_person(given_name=f"Test{i}", family_name="Person").id for i in range(6)]
    plan = [
        # (service, kind, outcome, days to first response)
        (kitchen, "referred", "attended", 2),
        (kitchen, "accompanied", "attended", 4),
        (kitchen, "signposted", "not_attended", 9),
        (kitchen, "referred", "waiting", None),
        (kitchen, "signposted", "pending", None),
        (laundry, "referred", "declined", 1),
    ]
    for pid, (service, kind, outcome, days) in zip(people, plan, strict=True):
        row = svc.refer_to_service(pid, service, kind=kind, need="money", made_on=made)
        if outcome != "pending":
            svc.record_onward_outcome(
                row.id,
                outcome,
                outcome_on=made + dt.timedelta(days=20),
                first_response_on=made + dt.timedelta(days=days) if days is not None else None,
            )
    stats = directory.uptake(core_store)
    assert [u.service_name for u in stats] == ["The City's Kitchen", "Bubbles at The Cross"]
    k = stats[0]
    assert (k.referrals, k.signposted, k.referred, k.accompanied) == (5, 2, 2, 1)
    assert (k.attended, k.not_attended, k.declined, k.waiting, k.pending, k.known_outcome) == (2, 1, 0, 1, 1, 3)
    assert k.attendance_rate == pytest.approx(2 / 3)
    assert k.median_days_to_first_response == 4.0 and k.responses_timed == 3
    (b,) = directory.uptake(core_store, laundry)
    assert (b.referrals, b.declined, b.attendance_rate, b.median_days_to_first_response) == (1, 1, 0.0, 1.0)
    assert directory.uptake(core_store, "no-such-service") == []


# -- the command line ------------------------------------------------------------------------------


@pytest.fixture
def cli_vault(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[int, str, str]]:
    monkeypatch.setattr("sprx_tui.core.db.init_process_security", lambda *_a, **_k: None)
    path = tmp_path / "vault"
    vault, _ = Vault.create(path, bytearray(b"walking group on tuesday"), kdf=FLOOR)
    vault.lock()

    def run(capsys: pytest.CaptureFixture[str], pkg: Path) -> tuple[int, str, str]:
        monkeypatch.setattr("sys.stdin", io.StringIO("walking group on tuesday\n"))
        code = cli.main(["directory", "import", str(pkg), "--vault", str(path), "--passphrase-stdin"])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_cli_import_prints_a_summary_and_each_problem(
    cli_vault: Callable[..., tuple[int, str, str]], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = cli_vault(capsys, SAMPLE)
    assert code == 0
    assert out == (
        "Read an HSDS 1.1 datapackage: 13 added, 0 changed, 0 withdrawn, 0 unchanged.\n"
        "3 services are marked inactive by the publisher.\n"
    )
    code, out, err = cli_vault(capsys, malformed_copy(tmp_path))
    assert code == 0  # something imported, so success even with problems
    assert "services.csv:20: the row has 4 values but the header has 16\n" in err
    # The unusable organisations file is not taken as blank names: those fields are kept, nothing changes.
    assert out.startswith("Read an HSDS 1.1 datapackage: 1 added, 0 changed, 0 withdrawn, 13 unchanged.\n")
    assert "kept as stored: area, eligibility, email, languages, max age, min age, opening times, organisation," in out
    assert "8 problems were found" in out


def test_cli_import_fails_plainly_when_nothing_imports(
    cli_vault: Callable[..., tuple[int, str, str]], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "services.csv").write_text("id,description\n1,no name column\n")
    code, out, err = cli_vault(capsys, empty)
    assert code == 1 and out == ""
    assert "services.csv:1: the column 'name' is missing, so this file was not used" in err
    assert err.strip().endswith("sprx: Nothing could be imported from that package; the problems are listed above.")
    code, out, err = cli_vault(capsys, tmp_path / "nowhere")
    assert (code, err) == (1, "sprx: There is no directory package or file at that path.\n")
    assert "Traceback" not in err
