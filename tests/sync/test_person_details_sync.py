"""A person added on one laptop and edited on two merges per field through a real server (issue 10)."""
# ruff: noqa: F811 - pytest fixtures imported from the harness are redefined as parameters

from __future__ import annotations

from sqlmodel import Session, select

from sprx_tui.core.models import Referral, SafetyFlagChange
from tests.sync.client_harness import (  # noqa: F401 - fixtures
    Laptop,
    Net,
    net,
    server_count,
    vault_template,
)


def synced(*laps: Laptop) -> None:
    for lap in laps:
        r = lap.sync()
        assert r.exit_code in (0, 4), r.message


def flag_history(lap: Laptop, person_id: str) -> list[tuple[str, str, str]]:
    with Session(lap.store.engine) as s:
        rows = s.exec(select(SafetyFlagChange).where(SafetyFlagChange.person_id == person_id)).all()
        return sorted((r.flag, r.change, r.reason) for r in rows)


def test_a_self_referral_added_offline_then_edited_on_two_laptops_merges_per_field(net: Net) -> None:
    a, b = net.laptop("A"), net.laptop("B")
    person, referral = a.service.new_person(
        referral_source="self", given_name="Nell", family_name="Example", phone="01632 960001"
    )
    synced(a, b)
    assert b.get("person", person.id).family_name == "Example"
    assert b.get("referral", referral.id).source == "self"

    # A changes the phone; B, meanwhile, adds a dog and an interpreter need. Different fields: no conflict.
    a.service.update_person_details(person.id, {"phone": "01632 960002"})
    net.clock.advance(seconds=5)
    b.service.update_person_details(
        person.id, {"safety_flags": ["animals"], "interpreter_language": "Polish", "hearing_need": True}, "Dog seen"
    )
    synced(a, b, a)
    for lap in (a, b):
        p = lap.get("person", person.id)
        assert (p.phone, p.safety_flags, p.interpreter_language, p.hearing_need) == (
            "+441632960002",
            ["animals"],
            "Polish",
            True,
        )
        assert flag_history(lap, person.id) == [("animals", "added", "Dog seen")]
        assert lap.conflicts() == []
        with Session(lap.store.engine) as s:
            assert len(s.exec(select(Referral).where(Referral.person_id == person.id)).all()) == 1
    assert server_count(net.server, "conflict") == 0
    assert a.dump() == b.dump() == net.server_dump("alice")
