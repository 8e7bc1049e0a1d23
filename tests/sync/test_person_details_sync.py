"""A person added on one laptop and edited on two merges per field through a real server (issue 10)."""
# ruff: noqa: F811 - pytest fixtures imported from the harness are redefined as parameters

from __future__ import annotations

import json

from sqlmodel import Session, select

from sprx_tui.core.models import AuditEvent, Referral, SafetyFlagChange
from sprx_tui.core.sync.state import K_FLAGS, read_state
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


# -- safety flags merge as a set, per flag, from their history ---------------------------------------


def server_flags(net: Net, person_id: str) -> list[str]:
    rows = json.loads(net.server_dump("alice"))["rows"]
    (person,) = [r for r in rows if r["tbl"] == "person" and r["id"] == person_id]
    return list(person["values"]["safety_flags"])


def shared_person(net: Net, flags: list[str]) -> tuple[Laptop, Laptop, str]:
    """Laptops A and B both holding one person with these flags (each with its history row)."""
    a, b = net.laptop("A"), net.laptop("B")
    person, _ = a.service.new_person(referral_source="self", given_name="Ada", family_name="Example",
                                     safety_flags=flags)  # fmt: skip
    synced(a, b)
    assert b.get("person", person.id).safety_flags == flags
    return a, b, person.id


def settled(net: Net, a: Laptop, b: Laptop, person_id: str, want: list[str]) -> None:
    """Each laptop syncs until nothing is left to send; both laptops and the server then show ``want``."""
    synced(a, b, a, b)
    assert a.outbox("pending") == [] and b.outbox("pending") == []
    for lap in (a, b):
        assert lap.get("person", person_id).safety_flags == want, lap.name
        assert lap.conflicts() == []
    assert server_flags(net, person_id) == want
    assert server_count(net.server, "conflict") == 0
    assert a.dump() == b.dump() == net.server_dump("alice")


def test_two_flags_added_offline_on_two_laptops_both_hold_after_sync(net: Net) -> None:
    a, b, pid = shared_person(net, [])
    a.service.add_safety_flag(pid, "animals", "A dog at the door")
    net.clock.advance(seconds=5)
    b.service.add_safety_flag(pid, "do_not_visit_alone", "Threats to staff")
    settled(net, a, b, pid, ["do_not_visit_alone", "animals"])
    assert flag_history(a, pid) == [("animals", "added", "A dog at the door"),
                                    ("do_not_visit_alone", "added", "Threats to staff")]  # fmt: skip
    # Syncing again changes nothing: no correction bounces between the laptops.
    before = a.dump()
    synced(a, b)
    assert a.outbox("pending") == [] and b.outbox("pending") == []
    assert a.dump() == b.dump() == before


def test_the_later_laptop_syncing_first_keeps_the_other_flag_too(net: Net) -> None:
    a, b, pid = shared_person(net, [])
    a.service.add_safety_flag(pid, "animals", "A dog at the door")
    net.clock.advance(seconds=5)
    b.service.add_safety_flag(pid, "do_not_visit_alone", "Threats to staff")
    synced(b, a)  # the newer list reaches the server first; A's older list then loses per field
    settled(net, a, b, pid, ["do_not_visit_alone", "animals"])


def test_a_flag_removed_on_one_laptop_and_another_added_on_the_other_both_hold(net: Net) -> None:
    a, b, pid = shared_person(net, ["animals"])
    a.service.remove_safety_flag(pid, "animals", "The dog has been rehomed")
    net.clock.advance(seconds=5)
    b.service.add_safety_flag(pid, "do_not_visit_alone", "Threats to staff")  # B's list still has animals
    settled(net, a, b, pid, ["do_not_visit_alone"])
    assert ("animals", "removed", "The dog has been rehomed") in flag_history(b, pid)


def test_a_flag_removed_after_it_was_added_elsewhere_is_not_brought_back(net: Net) -> None:
    a, b, pid = shared_person(net, [])
    a.service.add_safety_flag(pid, "animals", "A dog at the door")
    synced(a, b)
    net.clock.advance(seconds=5)
    b.service.remove_safety_flag(pid, "animals", "The dog has been rehomed")
    net.clock.advance(seconds=5)
    a.service.add_safety_flag(pid, "aggression", "Shouted at a visitor")  # A has not seen the removal
    settled(net, a, b, pid, ["aggression"])


def test_the_same_flag_added_on_both_laptops_is_kept_once_without_a_conflict(net: Net) -> None:
    a, b, pid = shared_person(net, [])
    a.service.add_safety_flag(pid, "animals", "A dog at the door")
    net.clock.advance(seconds=5)
    b.service.add_safety_flag(pid, "animals", "Two dogs")
    settled(net, a, b, pid, ["animals"])
    assert [h[:2] for h in flag_history(a, pid)] == [("animals", "added"), ("animals", "added")]


def test_flags_recorded_before_history_was_kept_stay_unless_a_removal_says_otherwise(net: Net) -> None:
    a, b = net.laptop("A"), net.laptop("B")
    # People added before flags had a history: the flags are on the person, with no history row.
    kept = a.service.add_person(given_name="Old", family_name="Record", safety_flags=["animals"])
    gone = a.service.add_person(given_name="Older", family_name="Record", safety_flags=["animals", "access"])
    synced(a, b)
    assert flag_history(a, kept.id) == flag_history(a, gone.id) == []
    a.service.add_safety_flag(kept.id, "do_not_visit_alone", "Threats to staff")
    a.service.remove_safety_flag(gone.id, "animals", "The dog has been rehomed")
    net.clock.advance(seconds=5)
    b.service.add_safety_flag(kept.id, "smoking", "Smokes indoors")
    b.service.add_safety_flag(gone.id, "smoking", "Smokes indoors")
    settled(net, a, b, kept.id, ["do_not_visit_alone", "animals", "smoking"])
    settled(net, a, b, gone.id, ["access", "smoking"])


def corrections(lap: Laptop) -> int:
    """How many times this laptop put a person's flags right from their history (each one is audited)."""
    with Session(lap.store.engine) as s:
        return len(
            s.exec(select(AuditEvent).where(AuditEvent.detail == "safety_flags (merged from their history)")).all()
        )


def test_flags_are_settled_once_the_pull_has_the_whole_history_not_page_by_page(net: Net) -> None:
    a, b, pid = shared_person(net, [])
    a.service.add_safety_flag(pid, "animals", "A dog at the door")
    synced(a)
    net.clock.advance(seconds=5)
    a.service.remove_safety_flag(pid, "animals", "The dog has been rehomed")
    synced(a)
    net.clock.advance(seconds=5)
    b.service.add_safety_flag(pid, "do_not_visit_alone", "Threats to staff")
    b.page = 1  # one row a page: A's "added" row arrives pages before its "removed" row
    synced(b)
    # Settled from half the history, B would have sent the dog back (added, not yet seen removed) to the server.
    assert corrections(b) == 0
    settled(net, a, b, pid, ["do_not_visit_alone"])


def test_a_pull_cut_short_settles_the_flags_on_the_next_sync(net: Net) -> None:
    a, b, pid = shared_person(net, [])
    a.service.add_safety_flag(pid, "animals", "A dog at the door")
    synced(a)
    net.clock.advance(seconds=5)
    b.service.add_safety_flag(pid, "do_not_visit_alone", "Threats to staff")
    b.page = 1
    pulls = 0

    def cut_after_two_pulls() -> bool:
        nonlocal pulls
        pulls += 1 if b.transport.sent and b.transport.sent[-1][1] == "/v1/sync/pull" else 0
        return pulls >= 2

    b.transport.refused = cut_after_two_pulls
    assert b.sync().exit_code not in (0, 4)
    with Session(b.store.engine) as s:
        assert json.loads(read_state(s, [K_FLAGS])[K_FLAGS]) == [pid]  # A's history came; the rest did not
    assert b.get("person", pid).safety_flags == ["do_not_visit_alone"]
    b.transport.refused = lambda: False
    synced(b)
    assert b.get("person", pid).safety_flags == ["do_not_visit_alone", "animals"]
    settled(net, a, b, pid, ["do_not_visit_alone", "animals"])


def test_a_laptop_joining_later_settles_the_flags_from_its_first_snapshot(net: Net) -> None:
    a, b, pid = shared_person(net, [])
    a.service.add_safety_flag(pid, "animals", "A dog at the door")
    net.clock.advance(seconds=5)
    b.service.add_safety_flag(pid, "do_not_visit_alone", "Threats to staff")
    synced(a)
    b.transport.old_server()  # push and pull as two requests, so that the pull alone can be cut off
    pushes = b.transport.count("/v1/sync/push")
    b.transport.refused = lambda: b.transport.count("/v1/sync/push") > pushes
    assert b.sync().exit_code not in (0, 4)  # B's list reached the server; B's pull did not happen
    assert server_flags(net, pid) == ["do_not_visit_alone"]
    c = net.laptop("C")
    synced(c)
    assert c.get("person", pid).safety_flags == ["do_not_visit_alone", "animals"]
    assert corrections(c) == 1
    assert server_flags(net, pid) == ["do_not_visit_alone", "animals"]  # C sent the list put right
