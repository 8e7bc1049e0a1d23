"""The HSDS 1.1 datapackage parser (sprx_rules.hsds) on the Open Referral sample and broken copies."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

from sprx_rules.hsds import Problem, html_to_text, parse_datapackage, service_id
from tests.sample_data import hsds_sample

SAMPLE = hsds_sample()

INACTIVE = {"Food Safety Program", "Dear Teacher Skills Refresh", "Wash & Go at The Cross"}


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
