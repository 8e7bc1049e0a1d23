"""Every directory format sprx reads, from the vendored Open Referral UK examples and the HSDS 1.1 sample.

The examples (tests/data/oruk-uk-profile-examples, CC BY-SA 4.0, see its README) hold one service;
more are derived from it here (new ids and names) where a case needs several.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from sprx_rules.directory import detect_format, plan_import, read_directory, report_lines
from sprx_rules.hsds import HsdsError, ServiceRecord, schedule_words, service_id
from sprx_rules.hsds3 import age_words, parse_json_value
from tests.sample_data import hsds_sample

ORUK = Path(__file__).resolve().parents[1] / "data" / "oruk-uk-profile-examples"
FULL_JSON = ORUK / "json" / "service_full.json"
LIST_JSON = ORUK / "json" / "service_list.json"
CSV = ORUK / "csv"
EXAMPLE_ID = "ac148810-d857-441c-9679-408f346de14b"
TODAY = dt.date(2026, 12, 7)


def full_doc() -> dict[str, Any]:
    return json.loads(FULL_JSON.read_text())


def derived(n: int, *, drop: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """n services made from the example: ids ex-1..ex-n, names 'Service 1'..; keys in drop removed."""
    out = []
    for i in range(1, n + 1):
        d = copy.deepcopy(full_doc())
        d["id"], d["name"] = f"ex-{i}", f"Service {i}"
        for k in drop:
            d.pop(k, None)
        out.append(d)
    return out


def csv_copy(tmp_path: Path, name: str = "pkg", *, descriptor: bool = True) -> Path:
    pkg = tmp_path / name
    shutil.copytree(CSV, pkg)
    for f in pkg.iterdir():
        f.chmod(0o644)
    if not descriptor:
        (pkg / "datapackage.json").unlink()
    return pkg


def check_example(rec: ServiceRecord, *, phone: str) -> None:
    """One field of each kind the issue lists, as the example publishes it."""
    assert rec.source_id == EXAMPLE_ID and rec.id == service_id("local", EXAMPLE_ID)
    assert rec.organisation == "Example Organization Inc."
    assert rec.name == "Community Counselling"
    assert rec.description.startswith("Counselling Services provided by trained professionals.")
    assert rec.active is True
    assert rec.url == "http://example.com/counselling" and rec.email == "email@example.com"
    assert rec.phone == phone
    assert rec.address.startswith("MyCity Civic Center, 1-30 Main Street") and rec.postcode == "ABC 1234"
    assert rec.area.startswith("The service is available to all residents of the MyCity area.")
    assert rec.opening_times == "Thursdays and Fridays 10:00–18:00"
    assert (rec.min_age, rec.max_age) == (12, 100)
    assert rec.cost == "Under 18s and Over 60s: £35 per 1 hour session"
    assert "mental_health" in rec.categories and rec.needs == ["low_mood"]
    assert rec.accessibility.startswith("The building is equipped with induction loops")
    assert rec.last_verified == dt.date(2023, 3, 15)


def test_service_full_json() -> None:
    records, problems, fmt = read_directory(FULL_JSON)
    assert (fmt, len(records), problems) == ("hsds3-json", 1, [])
    check_example(records[0], phone="")  # the example's contact has no phone
    assert records[0].categories[0] == "name"  # its one taxonomy term is called "name"
    assert records[0].present is not None and "opening_times" in records[0].present


def test_service_list_page_states_only_what_it_holds() -> None:
    records, problems, fmt = read_directory(LIST_JSON)
    assert (fmt, len(records), problems) == ("hsds3-json", 1, [])
    rec = records[0]
    assert rec.name == "Community Counselling" and rec.organisation == "Example Organization Inc."
    assert (rec.min_age, rec.max_age) == (12, 100)
    # A list item has no locations or schedules: those fields are absent, not empty.
    assert rec.present is not None
    assert {"opening_times", "address", "postcode", "area", "languages"}.isdisjoint(rec.present)
    assert {"name", "organisation", "url", "email", "active", "min_age"} <= rec.present


@pytest.mark.parametrize("descriptor", [True, False], ids=["with-datapackage", "without-datapackage"])
def test_oruk_csv_package(tmp_path: Path, descriptor: bool) -> None:
    pkg = csv_copy(tmp_path, descriptor=descriptor)
    records, problems, fmt = read_directory(pkg)
    assert (fmt, len(records), problems) == ("hsds3-csv", 1, [])
    check_example(records[0], phone="+44 1234 234567")  # through contacts.csv -> phones.csv
    # Without the descriptor the standard's file names are used: addresses.csv has address_2.
    assert ("MyVillage" in records[0].address) is (not descriptor)


def test_folder_of_json_files(tmp_path: Path) -> None:
    folder = tmp_path / "feed"
    folder.mkdir()
    (folder / "page-1.json").write_text(json.dumps({"total_items": 3, "page_number": 1, "contents": derived(2)}))
    (folder / "page-2.json").write_text(json.dumps({"total_items": 3, "page_number": 2, "contents": derived(3)[2:]}))
    (folder / "taxonomy.json").write_text(json.dumps({"id": "t", "name": "a taxonomy", "version": "1"}))
    records, problems, fmt = read_directory(folder)
    assert fmt == "hsds3-json" and [r.source_id for r in records] == ["ex-1", "ex-2", "ex-3"]
    assert [str(p) for p in problems] == ["taxonomy.json:0: the file holds no HSDS 3.0 services, so it was skipped"]


def test_hsds_1_1_datapackage_still_reads() -> None:
    records, problems, fmt = read_directory(hsds_sample())
    assert (fmt, len(records), problems) == ("hsds1", 13, [])
    kitchen = next(r for r in records if r.name == "The City's Kitchen")
    assert kitchen.needs == ["money"] and kitchen.present is not None and "opening_times" not in kitchen.present


def test_languages_eligibility_and_unknown_fields() -> None:
    doc = full_doc()
    doc["languages"] = [{"id": "l1", "name": "Welsh", "code": "cy"}, {"id": "l2", "code": "pl"}]
    doc["eligibility_description"] = "<p>People registered with a GP in MyCity</p>"
    doc["colour"] = "green"  # not part of the standard
    doc["schedules"].append({"id": "s2", "freq": "WEEKLY", "byday": "TU", "opens_at": "10:00", "closes_at": "12:00"})
    problems: list[Any] = []
    [rec] = parse_json_value(doc, "x.json", "local", "", problems)
    assert rec.languages == ["Welsh", "pl"]
    assert rec.eligibility == "People registered with a GP in MyCity"
    assert rec.opening_times == "Thursdays and Fridays 10:00–18:00; Tuesdays 10:00–12:00"
    assert [str(p) for p in problems] == [
        "x.json:0: the field 'colour' of services is not part of HSDS 3.0 or Open Referral UK, so it was ignored"
    ]


def test_a_bad_row_is_reported_and_the_rest_read(tmp_path: Path) -> None:
    pkg = csv_copy(tmp_path, descriptor=False)
    services = [line for line in (pkg / "services.csv").read_text().splitlines() if line.strip()]
    header = services[0].split(",")
    extra = dict.fromkeys(header, "")
    extra.update(id="s2", name="Bad Age Club", status="active", minimum_age="twelve")
    services.append(",".join(extra[h] for h in header))
    (pkg / "services.csv").write_text("\n".join(services) + "\n")
    (pkg / "cost_options.csv").write_text(
        f"id,service_id,option,amount,amount_description,discount\nc1,{EXAMPLE_ID},Adults,3.5,per session,10%\n"
    )
    records, problems, _ = read_directory(pkg)
    assert [r.source_id for r in records] == [EXAMPLE_ID] and records[0].cost == "Adults: £3.50 per session"
    assert [str(p) for p in problems] == [
        "cost_options.csv:1: the column 'discount' is not an HSDS 3.0 column, so it was ignored",
        "services.csv:3: the service was skipped: the field 'minimum_age' is not a whole number",
    ]


def test_not_a_directory_is_one_plain_sentence(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(HsdsError, match="not a directory package"):
        detect_format(tmp_path / "notes.txt")
    (tmp_path / "org.json").write_text(json.dumps({"id": "o", "name": "An organisation", "website": "x"}))
    with pytest.raises(HsdsError, match="not an HSDS 3.0 service"):
        read_directory(tmp_path / "org.json")
    with pytest.raises(HsdsError, match="no directory package"):
        read_directory(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("schedule", "words"),
    [
        ({"freq": "WEEKLY", "byday": "TU", "opens_at": "10:00:00", "closes_at": "12:00:00"}, "Tuesdays 10:00–12:00"),
        ({"freq": "WEEKLY", "byday": "MO,TU,WE,TH,FR", "opens_at": "9:00", "closes_at": "17:00"},
         "Weekdays 09:00–17:00"),
        ({"freq": "WEEKLY", "interval": 2, "byday": "MO", "opens_at": "13:30"}, "Every other Monday from 13:30"),
        ({"freq": "MONTHLY", "byday": "1TU", "opens_at": "18:00", "closes_at": "20:00"},
         "First Tuesday of the month 18:00–20:00"),
        ({"freq": "MONTHLY", "byday": "-1FR"}, "Last Friday of the month"),
        ({"description": "By appointment"}, "By appointment"),
    ],
)  # fmt: skip
def test_schedules_in_words(schedule: dict[str, Any], words: str) -> None:
    doc = full_doc()
    doc["schedules"] = [{"id": "s", **schedule}]
    doc.pop("service_at_locations")
    [rec] = parse_json_value(doc, "x.json", "local", "", [])
    assert rec.opening_times == words


def test_words_helpers() -> None:
    assert schedule_words(["Sat", "Sun"], "10:00", "16:00") == "Saturdays and Sundays 10:00–16:00"
    assert age_words(18, None) == "Ages 18 and over" and age_words(None, 25) == "Ages up to 25"
    assert age_words(12, 100) == "Ages 12 to 100" and age_words(None, None) == ""


# -- what an import changes -------------------------------------------------------------------------


def records_of(docs: list[dict[str, Any]], source: str = "") -> list[ServiceRecord]:
    return parse_json_value(docs, "feed.json", "P1", source, [])


def stored(records: list[ServiceRecord]) -> dict[str, dict[str, Any]]:
    return {r.id: r.values() for r in records}


def test_full_import_withdraws_partial_does_not() -> None:
    before = stored(records_of(derived(3)))
    now = records_of(derived(2))
    plan = plan_import(now, before, full=True, source="", today=TODAY)
    gone = service_id("P1", "ex-3")
    assert (plan.added, plan.changed, plan.withdrawn, plan.unchanged) == (0, 0, 1, 2)
    assert plan.withdrawals == [(gone, {"active": False, "withdrawn_on": "2026-12-07"})]
    assert report_lines(plan, "hsds3-json")[:2] == [
        "Read HSDS 3.0 / Open Referral UK JSON: 0 added, 0 changed, 1 withdrawn, 2 unchanged.",
        "1 service is no longer in this source, so marked inactive (withdrawn today); their referrals are kept.",
    ]
    partial = plan_import(now, before, full=False, source="", today=TODAY)
    assert (partial.withdrawn, partial.unchanged) == (0, 2)
    # Another source's services are not this source's to withdraw; one already withdrawn stays as it was.
    other = plan_import(records_of(derived(1), "council"), before, full=True, source="council", today=TODAY)
    assert (other.added, other.withdrawn) == (1, 0)
    before[gone].update(active=False, withdrawn_on="2026-11-01")
    assert plan_import(now, before, full=True, source="", today=TODAY).withdrawn == 0
    # It comes back: active again, withdrawal cleared.
    back = plan_import(records_of(derived(3)), before, full=True, source="", today=TODAY)
    assert back.updates == [(gone, {"active": True, "withdrawn_on": None})]


def test_absent_field_keeps_its_value_explicit_empty_clears_it() -> None:
    before = stored(records_of(derived(2)))
    thin = records_of(derived(2, drop=("schedules", "service_at_locations", "cost_options", "fees")))
    plan = plan_import(thin, before, full=True, source="", today=TODAY)
    assert (plan.changed, plan.unchanged) == (0, 2)
    assert {"opening_times", "address", "postcode", "cost"} <= plan.kept
    assert report_lines(plan, "x")[-1] == (
        "Not in this source, so kept as stored: accessibility, address, cost, eligibility, opening times, "
        "postcode, referral route."
    )
    emptied = derived(2)
    emptied[0]["schedules"], emptied[0]["service_at_locations"] = [], []
    plan = plan_import(records_of(emptied), before, full=True, source="", today=TODAY)
    [(sid, changes)] = plan.updates
    assert sid == service_id("P1", "ex-1")
    assert changes == {"address": "", "postcode": "", "opening_times": "", "accessibility": ""}


def test_spellings_and_places_of_the_hsds_3_0_specification_examples() -> None:
    """The HSDS 3.0 specification's own service_full example (openreferral/specification, examples/) spells
    a location's lists "addresss" and "accessibilitys", puts phones under contacts at the service-at-location
    and the location, and has "fundings": all read, none reported as unknown."""
    doc = full_doc()
    loc = doc["service_at_locations"][0]["location"]
    loc["addresss"] = loc.pop("addresses")
    loc["accessibilitys"] = loc.pop("accessibility")
    loc["contacts"] = [
        {"id": "c1", "name": "Desk", "phones": [{"id": "p1", "number": "0113 496 0000", "extension": 100}]}
    ]
    doc["service_at_locations"][0]["description"] = "At the civic centre"
    doc["fundings"] = doc.pop("funding")
    doc["attributes"][0].update(link_entity="service", value="x")
    problems: list[Any] = []
    [rec] = parse_json_value(doc, "spec.json", "local", "", problems)
    assert problems == []
    assert rec.postcode == "ABC 1234" and rec.accessibility.startswith("The building is equipped")
    assert rec.phone == "0113 496 0000 ext 100"
    assert rec.present is not None and {"postcode", "accessibility", "phone"} <= rec.present


def test_an_unreadable_service_is_not_taken_for_a_withdrawn_one(tmp_path: Path) -> None:
    before = stored(records_of(derived(3)))
    docs = derived(3)
    docs[2]["minimum_age"] = "twelve"
    problems: list[Any] = []
    now = parse_json_value(docs, "feed.json", "P1", "", problems)
    assert len(now) == 2 and problems[0].service_id == service_id("P1", "ex-3")
    plan = plan_import(now, before, full=True, source="", today=TODAY, problems=problems)
    assert (plan.withdrawn, plan.unchanged) == (0, 2)
    # A services.csv row lost whole (its id cannot be trusted): the full import withdraws nothing.
    pkg = csv_copy(tmp_path, descriptor=False)
    with (pkg / "services.csv").open("a") as fh:
        fh.write("s2,too,few\n")
    records, problems, _ = read_directory(pkg, practice_id="P1")
    old = {service_id("P1", "gone"): {"source": "", "active": True, "withdrawn_on": None}}
    plan = plan_import(records, old, full=True, source="", today=TODAY, problems=problems)
    assert (plan.added, plan.withdrawn, plan.withheld) == (1, 0, True)
    assert report_lines(plan, "hsds3-csv")[1] == (
        "A service row could not be read (see the problems), so no service was withdrawn."
    )
