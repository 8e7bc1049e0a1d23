"""HSDS directory import, search, staleness and per-service uptake, on real SQLCipher vaults."""

from __future__ import annotations

import datetime as dt
import io
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session, select

from sprx_tui import cli
from sprx_tui.core import directory
from sprx_tui.core.hsds import NEED_KEYWORDS, Problem, html_to_text, parse_datapackage, service_id
from sprx_tui.core.models import REFERRAL_REASONS, AuditEvent, CommunityService
from sprx_tui.core.store import CaseStore
from sprx_tui.core.vault import FLOOR, Vault
from tests.core.failure_injection import failing_at
from tests.sample_data import hsds_sample

SAMPLE = hsds_sample()

INACTIVE = {"Food Safety Program", "Dear Teacher Skills Refresh", "Wash & Go at The Cross"}
TODAY = dt.date(2026, 11, 23)


def by_name(services: list) -> dict:
    return {s.name: s for s in services}


# -- parsing the Open Referral sample ---------------------------------------------------------------


def test_sample_parses_completely() -> None:
    services, problems = parse_datapackage(SAMPLE)
    assert problems == []
    assert len(services) == 13
    named = by_name(services)
    assert {s.name for s in services if not s.active} == INACTIVE
    # HTML lists become one readable line; no markup survives anywhere.
    teacher = named["Dear Teacher Skills Refresh"].description
    assert teacher.endswith("free refresher courses in Digital Skills; Childhood Development; Languages: Spanish")
    assert all("<" not in s.description and ">" not in s.description for s in services)
    # Embedded quotes are kept as written.
    assert 'take a prepaid slip from our "Feed the City" wall.' in named["Meals To-Go at The Cross"].description
    assert named["The City's Kitchen"].name == "The City's Kitchen"
    # Joins: organisation, location (address), phone by service, location and organisation.
    helpline = named["Never Homeless Helpline"]
    assert helpline.organisation == "Sanctuary Example City"
    assert helpline.address == "Sanctuary on 5th Street"
    assert helpline.email == "neverhomeless@example.com"
    assert helpline.needs == ["housing"]
    assert named["Bubbles at The Cross"].phone == "(223) 4567 12534"  # the service's own line
    assert named["Dear Teacher Skills Refresh"].phone == "(0123) 4567 8900 ext 42"  # its location's line
    assert named["Meals To-Go at The Cross"].phone == "(223) 346 12361"  # the organisation's voice line
    assert (
        named["Shop Assist"].referral_route
        == "Call our offices to apply or for more information. Waiting time: 28 days"
    )
    # The sample logs changes per organisation only: that date is the entry's last verification.
    assert {s.last_verified for s in services} == {dt.date(2016, 8, 25)}
    assert named["Al-Anon Family Group"].needs == ["carer_strain", "substance_use"]
    assert "food" in named["The City's Kitchen"].categories and named["The City's Kitchen"].needs == ["money"]


def test_ids_are_deterministic_per_practice() -> None:
    a, _ = parse_datapackage(SAMPLE, practice_id="P1")
    b, _ = parse_datapackage(SAMPLE, practice_id="P1")
    c, _ = parse_datapackage(SAMPLE, practice_id="P2")
    assert [s.id for s in a] == [s.id for s in b]
    assert a[0].id == service_id("P1", "c89eb05c-62dd-4b64-b494-0cc347b6ea7f")
    assert not {s.id for s in a} & {s.id for s in c}


def test_keyword_table_speaks_our_needs_vocabulary() -> None:
    for _pattern, category, needs in NEED_KEYWORDS:
        assert category and set(needs) <= set(REFERRAL_REASONS), category


def test_html_to_text_is_safe_and_plain() -> None:
    raw = (
        '<p>Tea &amp; chat &quot;every&quot; Tuesday&nbsp;&#8211; it&#39;s free</p><script>alert("x")</script>'
        "<style>p{}</style>\x1b[31mred\x1b[0m<br/>ok\u202e"
    )
    out = html_to_text(raw)
    assert out == 'Tea & chat "every" Tuesday \u2013 it\'s free [31mred [0m ok'
    assert "\x1b" not in out and "alert" not in out
    assert html_to_text("x" * 5000).endswith("…") and len(html_to_text("x" * 5000)) == 4000


# -- a malformed copy ---------------------------------------------------------------------------------


def malformed_copy(tmp_path: Path) -> Path:
    pkg = tmp_path / "broken"
    shutil.copytree(SAMPLE, pkg)
    for f in pkg.iterdir():
        f.chmod(0o644)
    (pkg / "datapackage.json").write_text(
        '{\n  "name": "x",\n  "resources": [\n    {"name": , "path": "x.csv"}\n  ]\n}\n'
    )  # broken JSON
    # organizations.csv loses its name column: organisation names cannot be used.
    orgs = (pkg / "organizations.csv").read_text().splitlines(keepends=True)
    (pkg / "organizations.csv").write_text("id,nom,description\n" + "".join(orgs[1:2]))
    services = (pkg / "services.csv").read_text()
    services += (
        "aaaaaaaa-0000-4000-8000-000000000001,,,,,No name here,,,active,,,,,,,\n"  # line 19: no name
        "aaaaaaaa-0000-4000-8000-000000000002,x,too,few\n"  # line 20: wrong field count
        'c89eb05c-62dd-4b64-b494-0cc347b6ea7f,,,Duplicate,,"dup",,,active,,,,,,,\n'  # line 21: repeated id
        "aaaaaaaa-0000-4000-8000-000000000003,,,Odd status,,desc,,,closing soon,,,,,,,\n"  # line 22
        ",,,No id,,desc,,,active,,,,,,,\n"  # line 23
    )
    (pkg / "services.csv").write_text(services)
    meta = (pkg / "metadata.csv").read_text().splitlines(keepends=True)
    meta.insert(2, "m1,1899600a-649c-11e6-8b77-86f30ca893d3,not a date,create,name,,x,y\n")  # line 3
    (pkg / "metadata.csv").write_text("".join(meta))
    return pkg


def test_malformed_package_reports_lines_and_imports_the_rest(tmp_path: Path) -> None:
    services, problems = parse_datapackage(malformed_copy(tmp_path))
    lines = [str(p) for p in problems]
    assert lines == [
        "datapackage.json:4: the file is not valid JSON, so the usual HSDS file names were used",
        "metadata.csv:3: the last_action_date is not a date",
        "organizations.csv:1: the column 'name' is missing, so this file was not used",
        "services.csv:19: the service has no name",
        "services.csv:20: the row has 4 values but the header has 16",
        "services.csv:21: the service id appears more than once; only the first was used",
        "services.csv:22: the status is not one HSDS defines, so the service is marked inactive",
        "services.csv:23: the service has no id",
    ]
    assert all(isinstance(p, Problem) for p in problems)
    named = by_name(services)
    assert len(services) == 14  # the 13 good ones and the odd-status one
    assert named["Odd status"].active is False
    assert named["Never Homeless Helpline"].organisation == ""  # its organisation file was unusable
    assert named["Never Homeless Helpline"].address == "Sanctuary on 5th Street"  # the rest still joined


def test_resource_paths_outside_the_folder_are_refused(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    shutil.copytree(SAMPLE, pkg)
    (pkg / "datapackage.json").chmod(0o644)
    desc = json.loads((pkg / "datapackage.json").read_text())
    for res in desc["resources"]:
        if res["name"] == "organization":
            res["path"] = "../../etc/passwd"
    (pkg / "datapackage.json").write_text(json.dumps(desc))
    services, problems = parse_datapackage(pkg)
    assert [str(p) for p in problems] == [
        "datapackage.json:0: the path of resource 'organization' is outside the folder"
    ]
    assert len(services) == 13  # fell back to organizations.csv beside it
    assert by_name(services)["Shop Assist"].organisation == "Example City Silvers"


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
        "directory hsds added=13 updated=0 unchanged=0 problems=0",
        "directory hsds added=0 updated=0 unchanged=13 problems=0",
        "directory hsds added=0 updated=2 unchanged=11 problems=0",
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
    result = directory.import_hsds(store, pkg)
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
    assert walk is not None and walk.postcode == "LS6 1AB" and walk.opening_times == "Tue 10:00-12:00, Thu 13:00-15:00"
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
    assert out == "Imported 13 services: 13 added, 0 updated, 0 unchanged (3 marked inactive).\n"
    code, out, err = cli_vault(capsys, malformed_copy(tmp_path))
    assert code == 0  # something imported, so success even with problems
    assert "services.csv:20: the row has 4 values but the header has 16\n" in err
    # The unusable organisations file leaves organisation names empty this time: 13 updated.
    assert out.startswith("Imported 14 services: 1 added, 13 updated, 0 unchanged (4 marked inactive).")
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
    assert (code, err) == (1, "sprx: There is no datapackage folder at that path.\n")
    assert "Traceback" not in err


def test_windows_1252_and_broken_quoting_are_reported_not_fatal(tmp_path: Path) -> None:
    pkg = tmp_path / "excel"
    pkg.mkdir()
    (pkg / "services.csv").write_bytes(
        b"id,name,description,status\n"
        b"s1,Caf\xe9 Connect,Tea \x96 and chat,active\n"
        b's2,Quoted,"never closed,active\n'
        b"s3,After,never read,active\n"
    )
    services, problems = parse_datapackage(pkg)
    assert [str(p) for p in problems] == [
        "datapackage.json:0: the file is missing, so the usual HSDS file names were used",
        "services.csv:0: the file is not UTF-8, so it was read as Windows-1252 text",
        "services.csv:3: the CSV cannot be read from this line on (broken quoting)",
    ]
    assert [(s.name, s.description) for s in services] == [("Café Connect", "Tea \u2013 and chat")]
