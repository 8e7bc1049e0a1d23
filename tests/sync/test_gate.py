"""The server runs the inbound gate (sprx_rules.gate) on push, imports, enrolment and its own writes.

The rules themselves are tested in tests/rules/test_gate.py.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings

from sprx_rules import gate
from sync import protocol, schema
from sync.server.importer import COLUMNS, import_referrals
from sync.server.store import quarantine
from tests.rules.test_gate import adversarial
from tests.sync.server_harness import Laptop, TestServer

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
@example(given="\ud83d\ude00", family="Ash", note="\ud83d\ude00")  # two halves JSON joins into one emoji
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
    # The server sees the mutations as JSON decodes them: two lone surrogates that happen to make a
    # pair ("\ud83d" + "\ude00") arrive as one valid emoji, so the expectation is taken after the trip.
    person, contact = (json.loads(json.dumps(m, ensure_ascii=True)) for m in (person, contact))
    given, family = (person["fields"][f]["v"] for f in ("given_name", "family_name"))
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
