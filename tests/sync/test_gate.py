"""The inbound gate (sync/gate.py): its rules, and the server running it on push, imports and enrolment."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync import gate, protocol, schema
from sync.server.importer import COLUMNS, import_referrals
from sync.server.store import quarantine
from tests.sync.server_harness import Laptop, TestServer

# Adversarial pieces: each is either refused by the gate or harmless text.
NASTY = [
    "\ud800",
    "\udfff",
    "\x00",
    "\x07",
    "\x1b",
    "\x1b]0;PWNED\x07",
    "\x1b]52;c;SGVsbG8=\x07",
    "\x1b[2J",
    "\x1b[31m",
    "\x9b31m",
    "\x85",
    "\x7f",
    "\r",
    "\n",
    "\t",
    "\u202e",
    "\u2066",
    "\u2028",
    "[/bold]",
    "[link=https://example.org]x[/link]",
    "[@click=app.quit]",
    "[red]",
    "👍🏽",
    "👩🏿‍🦱",
    "محمد",
    "שלום",
    "Zoë",
    "O'Brien-Smith",
    " ",
]
adversarial = st.lists(st.sampled_from(NASTY) | st.text(max_size=3), min_size=1, max_size=6).map("".join)

REFUSED_ANYWHERE = ["\ud800", "\x00", "\x1b", "\x07", "\x9b", "\x85", "\x7f", "\r"]
REFUSED_ON_ONE_LINE = ["\n", "\t", "\u202e", "\u2066", "\u2028"]
ACCEPTED = ["Jones [/bold]", "[@click=app.quit]", "محمد علي", "שלום", "Zoë 👍🏽", "👩🏿‍🦱 O'Brien", ""]


def test_the_gate_knows_every_synced_field() -> None:
    assert set(gate.FIELDS) == set(schema.TABLES)
    for name, spec in schema.TABLES.items():
        assert set(gate.FIELDS[name]) == set(spec.fields), name


@pytest.mark.parametrize("bad", REFUSED_ANYWHERE)
def test_refused_in_every_text(bad: str) -> None:
    for text in (gate.Text.LINE, gate.Text.MULTI):
        assert gate.text_problem(f"Evil{bad}name", text) is not None


@pytest.mark.parametrize("bad", REFUSED_ON_ONE_LINE)
def test_refused_on_one_line_but_breaks_and_tabs_kept_in_notes(bad: str) -> None:
    assert gate.text_problem(f"a{bad}b", gate.Text.LINE) is not None
    if bad in "\n\t":
        assert gate.text_problem(f"a{bad}b", gate.Text.MULTI) is None


@pytest.mark.parametrize("good", ACCEPTED)
def test_real_names_pass(good: str) -> None:
    assert gate.check_value("person", "family_name", good) is None
    assert gate.check_value("goal", "text", good + "\nsecond line\tindented") is None


def test_types_lengths_and_nullability() -> None:
    assert gate.check_value("person", "given_name", None) is not None  # must have a value
    assert gate.check_value("person", "preferred_name", None) is None
    assert gate.check_value("person", "given_name", 7) is not None
    assert gate.check_value("person", "given_name", "x" * 201) is not None
    assert gate.check_value("person", "date_of_birth", "1970-02-30") is not None
    assert gate.check_value("person", "date_of_birth", "1970-02-28") is None
    assert gate.check_value("contact", "occurred_at", "2026-01-02T03:04:05+00:00") is None
    assert gate.check_value("contact", "duration_minutes", True) is not None
    assert gate.check_value("person", "safety_flags", ["dog", "x\x1by"]) is not None
    assert gate.check_value("outcome_response", "responses", {"q1": 3, "note\x1b": 1}) is not None
    assert gate.check_value("outcome_response", "responses", {"q1": 3, "q2": [1, 2]}) is None


def test_refusal_sentence_names_table_row_and_field_without_the_value() -> None:
    r = gate.check_mutation(
        {"tbl": "person", "row_id": "r-1", "op": "insert", "fields": {"family_name": {"v": "\x1b]0;PWNED\x07"}}}
    )
    assert r is not None and (r.table, r.row_id, r.field) == ("person", "r-1", "family_name")
    assert r.sentence == "The family name of person r-1 holds a control character (U+001B)."
    assert "PWNED" not in r.sentence


@given(adversarial)
def test_visible_never_leaves_a_control_character(s: str) -> None:
    for multiline in (False, True):
        shown = gate.visible(s, multiline=multiline)
        assert gate.text_problem(shown, gate.Text.MULTI if multiline else gate.Text.LINE, 10**6) is None
        shown.encode("utf-8")  # never raises


# ---------------------------------------------------------------- the server runs it


def _push_raw(lap: Laptop, mutations: list[dict[str, Any]]) -> Any:
    """Push with the body JSON-escaped by hand: httpx cannot encode lone surrogates, an attacker can."""
    body = {
        "device_id": lap.device_id,
        "protocol_version": protocol.PROTOCOL_VERSION,
        "schema_version": schema.SCHEMA_VERSION,
        "mutations": mutations,
    }
    content = json.dumps(body, ensure_ascii=True).encode()
    headers = {**lap.headers, "Content-Type": "application/json"}
    return lap.server.client.post("/v1/sync/push", content=content, headers=headers)


def test_lone_surrogate_goal_is_refused_and_every_laptop_keeps_syncing(sqlite_server: TestServer) -> None:
    server = sqlite_server
    server.worker("alice")
    lap = server.laptop("alice")
    pid = str(uuid.uuid4())
    assert lap.push([lap.mutation("person", pid, "insert", {"given_name": "Ann", "family_name": "Ash"})]).status_code
    goal = lap.mutation("goal", str(uuid.uuid4()), "insert", {"text": "\ud800"}, person_id=pid)
    r = _push_raw(lap, [goal])
    assert r.status_code == 200, r.text
    (ack,) = r.json()["acks"]
    assert (ack["status"], ack["reason"]) == ("rejected", "invalid_value")
    assert "text of goal" in ack["detail"] and "surrogate" in ack["detail"]
    assert server.store.get_record("goal", goal["row_id"]) is None
    # Quarantine keeps the sentence; the next push goes on from the next mutation id.
    with server.store.engine.connect() as conn:
        q = conn.execute(sa.select(quarantine.c.reason, quarantine.c.detail)).all()
    assert [row.reason for row in q] == ["invalid_value"]
    ok = lap.push([lap.mutation("goal", str(uuid.uuid4()), "insert", {"text": "Walk"}, person_id=pid)])
    assert ok.json()["acks"][0]["status"] == "applied"
    # A second laptop of the same worker gets every row, all of them acceptable.
    other = server.laptop("alice", "second")
    pulled = other.pull_all()
    assert {c["tbl"] for c in pulled["changes"]} == {"person", "goal"}
    for c in pulled["changes"]:
        assert gate.check_values(c["tbl"], c["values"], c["id"]) is None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(given=adversarial, family=adversarial, note=adversarial)
def test_pushed_text_is_refused_or_stored_exactly(
    sqlite_server: TestServer, given: str, family: str, note: str
) -> None:
    server = sqlite_server
    if not getattr(server, "_gate_lap", None):
        server.worker("bob")
        server._gate_lap = server.laptop("bob")  # type: ignore[attr-defined]
    lap: Laptop = server._gate_lap  # type: ignore[attr-defined]
    pid = str(uuid.uuid4())
    person = lap.mutation("person", pid, "insert", {"given_name": given, "family_name": family})
    contact = lap.mutation(
        "contact",
        str(uuid.uuid4()),
        "insert",
        {"occurred_at": "2026-01-02T10:00:00+00:00", "mode": "home_visit", "notes": note},
        person_id=pid,
    )
    r = _push_raw(lap, [person, contact])
    assert r.status_code == 200, r.text
    person_ack, contact_ack = r.json()["acks"]
    expect_person = gate.check_mutation(person)
    if expect_person is None:
        assert person_ack["status"] == "applied"
        stored = server.store.get_record("person", pid)
        assert stored is not None
        assert (stored["values"]["given_name"], stored["values"]["family_name"]) == (given, family)
    else:
        assert (person_ack["status"], person_ack["reason"]) == ("rejected", "invalid_value")
        assert expect_person.field.replace("_", " ") in person_ack["detail"]
        assert server.store.get_record("person", pid) is None
    if gate.check_mutation(contact) is not None:
        assert contact_ack["reason"] == "invalid_value"
    for c in lap.pull_all()["changes"]:
        assert gate.check_values(c["tbl"], c["values"], c["id"]) is None


def test_enrolment_refuses_a_device_name_with_escapes_and_keeps_the_code(sqlite_server: TestServer) -> None:
    server = sqlite_server
    server.worker("carol")
    code, _ = server.store.issue_enrol_code("carol")
    bad = server.client.post("/v1/devices/enrol", json={"code": code, "device_name": "\x1b]0;PWNED\x07laptop"})
    assert bad.status_code == 422
    assert "device name" in bad.json()["message"] and "PWNED" not in bad.json()["message"]
    good = server.client.post("/v1/devices/enrol", json={"code": code, "device_name": "Carol's laptop 💻"})
    assert good.status_code == 201


def _referral_row(**over: str) -> dict[str, str]:
    row = {
        "nhs_number": "9434765919",
        "given_name": "Test",
        "family_name": "Person",
        "date_of_birth": "1950-01-01",
        "postcode": "",
        "phone": "",
        "source": "gp",
        "referrer_name": "Dr Example",
        "received_on": "2026-01-05",
        "reasons": "loneliness",
        "urgency": "routine",
        "referral_text": "Lives alone.",
        "worker": "dave",
    }
    row.update(over)
    return row


def test_import_referrals_refuses_escapes_and_keeps_the_good_rows(sqlite_server: TestServer, tmp_path: Path) -> None:
    server = sqlite_server
    server.worker("dave")
    rows = [
        _referral_row(family_name="\x1b]0;PWNED\x07Evil"),
        _referral_row(nhs_number="9434765870", family_name="Jones [/bold]", given_name="محمد"),
        _referral_row(nhs_number="9434765889", referral_text="Line\u0085one"),
        _referral_row(nhs_number="9434765897", referrer_name="Dr \u202eevil"),
    ]
    path = tmp_path / "referrals.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        import csv

        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    report = import_referrals(server.store, path)
    assert report.imported == 1
    lines = dict(report.errors)
    assert lines[2] == "the family name holds a control character (U+001B)"
    assert lines[4] == "the referral text holds a control character (U+0085)"
    assert lines[5] == "the referrer name holds a text-direction control character (U+202E)"
    lap = server.laptop("dave")
    (person,) = [c for c in lap.pull_all()["changes"] if c["tbl"] == "person"]
    assert person["values"]["family_name"] == "Jones [/bold]"


def test_server_write_refuses_what_the_gate_refuses(sqlite_server: TestServer) -> None:
    from sync.server.store import StoreError

    with pytest.raises(StoreError) as exc:
        sqlite_server.store.server_write(
            "community_service", "s1", {"name": "Walk\x1b[2J", "active": True}, practice_id="P1"
        )
    assert exc.value.code == "invalid_value" and "name of community_service s1" in exc.value.message


def test_fast_path_relies_on_isprintable_being_false_for_every_refused_character() -> None:
    refused = [c for c in range(0x110000) if gate.text_problem(chr(c), gate.Text.LINE) is not None]
    assert len(refused) > 2000  # C0, C1, surrogates, breaks, bidi controls
    assert not [hex(c) for c in refused if chr(c).isprintable()]


def test_fast_and_general_paths_agree() -> None:
    samples: list[Any] = [None, True, 0, 2**40, "", "Ann", "a\nb", "a\x1bb", "\ud800", "x" * 40_000,
                          "2026-01-02", "2026-02-30", "2026-01-02T03:04:05+00:00", "2026-01-02\x1b03:04:05",
                          ["a"], {"q": 1}]  # fmt: skip
    for table, fields in gate.FIELDS.items():
        for field, ft in fields.items():
            for v in samples:
                fast = gate.check_values(table, {field: v}) is None
                assert fast == (gate.value_problem(ft, v) is None), (table, field, v)
