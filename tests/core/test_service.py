"""The service layer on a real SQLCipher vault: each write is row + outbox + audit in one transaction."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError
from sqlmodel import Session, select

from sprx_tui.core.models import (
    SNOMED_REFERRAL_ACCEPTED,
    SNOMED_SP_DECLINED,
    AuditEvent,
    Contact,
    FollowUp,
    Goal,
    HlcState,
    Person,
    PlanAction,
    Referral,
    SyncOutbox,
)
from sprx_tui.core.service import GENESIS_HASH, InvalidInput, NotFound, ServiceError, position_between
from sprx_tui.core.store import CaseStore
from sync import hlc as hlc_clock
from sync.schema import TABLES
from tests.core.failure_injection import STEPS, failing_at

NHS_A = "9992914173"
NHS_B = "9997763173"
DOMAIN_TABLES = (
    "person",
    "referral",
    "contact",
    "contact_amendment",
    "follow_up",
    "what_matters",
    "goal",
    "plan_action",
    "onward_referral",
    "need",
    "outcome_response",
)
ALL_TABLES = (*DOMAIN_TABLES, "sync_outbox", "audit_event")


# -- helpers ----------------------------------------------------------------------------------------


def outbox(store: CaseStore, after: int = 0) -> list[SyncOutbox]:
    with Session(store.engine) as s:
        return list(
            s.exec(select(SyncOutbox).where(SyncOutbox.mutation_id > after).order_by(SyncOutbox.mutation_id)).all()
        )


def last_mutation(store: CaseStore) -> int:
    rows = outbox(store)
    return rows[-1].mutation_id if rows else 0


def audits(store: CaseStore) -> list[AuditEvent]:
    with Session(store.engine) as s:
        return list(s.exec(select(AuditEvent).order_by(AuditEvent.seq)).all())


def hlc_last(store: CaseStore) -> int:
    with Session(store.engine) as s:
        return s.exec(select(HlcState.last).where(HlcState.id == 1)).first() or 0


def get(store: CaseStore, model: type, row_id: str):
    with Session(store.engine, expire_on_commit=False) as s:
        return s.get(model, row_id)


def snapshot(store: CaseStore, counts: Callable[..., dict[str, int]]) -> tuple[dict[str, int], int, str]:
    chain = audits(store)
    return counts(store.engine, *ALL_TABLES), hlc_last(store), chain[-1].hash if chain else GENESIS_HASH


def person(store: CaseStore, **extra) -> Person:
    fields = {"given_name": "Ada", "family_name": "Ashdown", "nhs_number": NHS_A, "postcode": "LS1 4AP"}
    fields.update(extra)
    return store.service.add_person(**fields)


def referred_person(store: CaseStore) -> tuple[Person, Referral]:
    p = person(store)
    r = store.service.receive_referral(p.id, source="gp", reasons=["loneliness", "money"])
    return p, r


def is_sentence(message: str) -> bool:
    return bool(message) and "\n" not in message and message[0].isupper() and message.endswith(".")


# -- one transaction: row + outbox + audit ------------------------------------------------------------


def test_add_person_stores_row_outbox_and_audit_together(core_store: CaseStore) -> None:
    p = person(core_store, date_of_birth=dt.date(1950, 3, 4))
    row = get(core_store, Person, p.id)
    assert row.given_name == "Ada" and row.nhs_number == NHS_A and row.postcode == "LS1 4AP"
    assert row.person_id == row.id and row.practice_id == core_store.actor.practice_id
    entries = outbox(core_store)
    assert [(e.tbl, e.op) for e in entries] == [("person", "insert"), ("audit_event", "insert")]
    ins = entries[0]
    assert ins.row_id == p.id and ins.person_id == p.id and ins.status == "pending"
    assert set(ins.fields) == set(TABLES["person"].fields)
    assert ins.fields["nhs_number"] == {"v": NHS_A, "hlc": row.row_hlc, "base_seq": None}
    assert ins.fields["date_of_birth"]["v"] == "1950-03-04"
    assert ins.hlc == row.row_hlc == hlc_last(core_store) > 0
    assert all(m["dev"] == core_store.actor.device_id and m["hlc"] == row.row_hlc for m in row.field_meta.values())
    [event] = audits(core_store)
    assert (event.action, event.person_id, event.record_type, event.record_id) == ("CREATE", p.id, "person", p.id)
    assert event.prev_hash == GENESIS_HASH
    assert entries[1].row_id == event.id
    # The audit event carries who and what, never the clinical content.
    assert "Ada" not in event.detail and NHS_A not in event.detail


FAILURE_STEPS = list(STEPS)


def _op_add_person(store: CaseStore, ctx: dict) -> None:
    store.service.add_person(given_name="Bea", family_name="Birch", nhs_number=NHS_B)


def _op_update_person(store: CaseStore, ctx: dict) -> None:
    store.service.update_person(ctx["person"].id, family_name="Barlow")


def _op_accept(store: CaseStore, ctx: dict) -> None:
    store.service.accept_referral(ctx["referral"].id, mode="home_visit", notes="First visit.")


def _op_record_contact(store: CaseStore, ctx: dict) -> None:
    store.service.record_contact(ctx["person"].id, mode="phone", follow_up_on=dt.date(2026, 12, 1))


def _op_add_goal(store: CaseStore, ctx: dict) -> None:
    store.service.add_goal(ctx["person"].id, "Join the walking group")


def _op_delete_goal(store: CaseStore, ctx: dict) -> None:
    store.service.delete_goal(ctx["goal"].id)


OPERATIONS = {
    "add_person": _op_add_person,
    "update_person": _op_update_person,
    "accept_referral": _op_accept,
    "record_contact": _op_record_contact,
    "add_goal": _op_add_goal,
    "delete_goal": _op_delete_goal,
}


@pytest.mark.parametrize("step", FAILURE_STEPS)
@pytest.mark.parametrize("op", list(OPERATIONS))
def test_injected_failure_leaves_nothing_behind(core_store: CaseStore, core_counts, op: str, step: str) -> None:
    p, r = referred_person(core_store)
    goal = core_store.service.add_goal(p.id, "Sort out the energy debt")
    core_store.service.add_action(goal.id, "Gather the last three bills")
    ctx = {"person": p, "referral": r, "goal": goal}
    before = snapshot(core_store, core_counts)
    if step == "row" and op == "delete_goal":
        step = "outbox"  # a tombstone has no separate row step; its outbox entry is the first write
    with failing_at(core_store.service, step), pytest.raises(RuntimeError, match=f"injected failure at {step}"):
        OPERATIONS[op](core_store, ctx)
    assert snapshot(core_store, core_counts) == before
    assert get(core_store, Referral, r.id).status == "received"
    assert get(core_store, Goal, goal.id).deleted is False
    assert get(core_store, Person, p.id).family_name == "Ashdown"
    # The service is still usable and the same operation now succeeds.
    OPERATIONS[op](core_store, ctx)
    after = snapshot(core_store, core_counts)
    assert after[0]["sync_outbox"] > before[0]["sync_outbox"]
    assert after[0]["audit_event"] > before[0]["audit_event"]
    assert after[1] > before[1]
    assert core_store.service.verify_audit_chain()


def test_failure_inside_a_batch_rolls_back_every_write(core_store: CaseStore, core_counts) -> None:
    person(core_store)
    before = snapshot(core_store, core_counts)
    svc = core_store.service
    with pytest.raises(RuntimeError, match="half way"):
        with svc.transaction():
            a = svc.add_person(given_name="Cara", family_name="Calder")
            svc.receive_referral(a.id, source="pharmacy", reasons=["low_mood"])
            svc.record_contact(a.id, mode="phone", notes="Called back.")
            svc.add_goal(a.id, "Meet new people nearby")
            raise RuntimeError("half way")
    assert snapshot(core_store, core_counts) == before
    assert core_store.queries.caseload(text="calder")[1] == 0
    # The next write chains onto the last committed audit event, not the rolled-back ones.
    svc.add_person(given_name="Dara", family_name="Dunmore")
    assert svc.verify_audit_chain()


def test_batch_commits_all_writes_in_one_transaction(core_store: CaseStore, core_counts) -> None:
    svc = core_store.service
    with svc.transaction():
        ids = [svc.add_person(given_name="Eli", family_name=f"Ellery{i}").id for i in range(3)]
    assert core_counts(core_store.engine, "person")["person"] == 3
    assert [e.row_id for e in outbox(core_store) if e.tbl == "person"] == ids
    assert svc.verify_audit_chain()


# -- people ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"nhs_number": "999 000 0001"}, "nhs_number", "NHS number"),
        ({"nhs_number": "12345"}, "nhs_number", "NHS number"),
        ({"date_of_birth": dt.date(2026, 11, 24)}, "date_of_birth", "future"),
        ({"date_of_birth": "31/02/1950"}, "date_of_birth", "date"),
        ({"postcode": "LS1 4"}, "postcode", "postcode"),
        ({"postcode": "NOTAPOSTCODE"}, "postcode", "postcode"),
        ({"given_name": "   "}, "given_name", "given name"),
        ({"safety_flags": ["bring_snacks"]}, "safety_flags", "flag"),
    ],
)
def test_add_person_rejects_bad_input_and_stores_nothing(
    core_store: CaseStore, core_counts, fields: dict, field: str, words: str
) -> None:
    before = snapshot(core_store, core_counts)
    good = {"given_name": "Ada", "family_name": "Ashdown", "nhs_number": NHS_A, "postcode": "LS1 4AP"}
    with pytest.raises(InvalidInput) as info:
        core_store.service.add_person(**{**good, **fields})
    assert list(info.value.errors) == [field]
    message = info.value.errors[field]
    assert is_sentence(message) and words.lower() in message.lower()
    assert str(info.value) == message
    assert snapshot(core_store, core_counts) == before


def test_all_bad_fields_are_named_at_once(core_store: CaseStore) -> None:
    with pytest.raises(InvalidInput) as info:
        core_store.service.add_person(
            given_name="Ada", family_name="", nhs_number="9990000001", postcode="ZZ", date_of_birth=dt.date(2030, 1, 1)
        )
    assert set(info.value.errors) == {"family_name", "nhs_number", "postcode", "date_of_birth"}
    assert all(is_sentence(m) for m in info.value.errors.values())


def test_person_values_are_normalised(core_store: CaseStore) -> None:
    p = core_store.service.add_person(
        given_name=" Ada ", family_name="Ashdown", nhs_number="999-291-4173", postcode="ls14ap", phone="07700 900123"
    )
    row = get(core_store, Person, p.id)
    assert row.nhs_number == NHS_A and row.postcode == "LS1 4AP"
    assert row.given_name == "Ada"
    assert row.status == "referred" and row.status_changed_on == dt.date(2026, 11, 23)


def test_update_person_rejects_bad_input_and_changes_nothing(core_store: CaseStore, core_counts) -> None:
    p = person(core_store)
    before = snapshot(core_store, core_counts)
    with pytest.raises(InvalidInput) as info:
        core_store.service.update_person(p.id, family_name="Barlow", nhs_number="9990000001")
    assert list(info.value.errors) == ["nhs_number"]
    assert snapshot(core_store, core_counts) == before
    assert get(core_store, Person, p.id).family_name == "Ashdown"


def test_patch_sends_only_changed_fields_and_nothing_when_unchanged(core_store: CaseStore) -> None:
    p = person(core_store)
    mark = last_mutation(core_store)
    core_store.service.update_person(p.id, given_name="Ada", family_name="Barlow", postcode="LS1 4AP")
    entries = outbox(core_store, mark)
    assert [(e.tbl, e.op) for e in entries] == [("person", "patch"), ("audit_event", "insert")]
    row = get(core_store, Person, p.id)
    assert entries[0].fields == {"family_name": {"v": "Barlow", "hlc": row.row_hlc, "base_seq": None}}
    assert row.field_meta["family_name"]["hlc"] == row.row_hlc
    assert row.field_meta["given_name"]["hlc"] < row.row_hlc  # untouched fields keep their stamp
    assert "barlow" in row.search_text
    [event] = [a for a in audits(core_store) if a.action == "UPDATE"]
    assert event.detail == "family_name"
    mark = last_mutation(core_store)
    core_store.service.update_person(p.id, family_name="Barlow", postcode="ls1 4ap")
    assert outbox(core_store, mark) == []
    assert len(audits(core_store)) == 2


def test_unknown_person_is_not_found(core_store: CaseStore) -> None:
    with pytest.raises(NotFound) as info:
        core_store.service.update_person("no-such-id", family_name="X")
    assert is_sentence(str(info.value))
    with pytest.raises(NotFound):
        core_store.service.record_view("no-such-id")


# -- referrals -----------------------------------------------------------------------------------------


def test_receive_referral_is_validated(core_store: CaseStore, core_counts) -> None:
    p = person(core_store)
    r = core_store.service.receive_referral(
        p.id, source="fire_service", reasons=["housing"], referrer_name="Watch manager", urgency="soon"
    )
    row = get(core_store, Referral, r.id)
    assert (row.source, row.reasons, row.status, row.urgency) == ("fire_service", ["housing"], "received", "soon")
    assert row.received_on == dt.date(2026, 11, 23) and row.snomed_code is None
    before = snapshot(core_store, core_counts)
    with pytest.raises(InvalidInput) as info:
        core_store.service.receive_referral(
            p.id, source="carrier_pigeon", reasons=["boredom"], received_on=dt.date(2026, 12, 1)
        )
    assert set(info.value.errors) == {"source", "reasons", "received_on"}
    assert snapshot(core_store, core_counts) == before


def test_accept_with_first_contact_records_snomed_and_activates(core_store: CaseStore) -> None:
    p, r = referred_person(core_store)
    when = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)
    contact = core_store.service.accept_referral(
        r.id, mode="home_visit", notes="Talked about the walking group.", occurred_at=when, duration_minutes=45
    )
    ref = get(core_store, Referral, r.id)
    assert ref.snomed_code == "871731000000106" == SNOMED_REFERRAL_ACCEPTED
    assert ref.status == "accepted" and ref.decided_on == dt.date(2026, 11, 23)
    row = get(core_store, Person, p.id)
    assert row.status == "active" and row.last_contact_on == dt.date(2026, 11, 23)
    stored = get(core_store, Contact, contact.id)
    assert stored.referral_id == r.id and stored.notes == "Talked about the walking group."
    assert stored.duration_minutes == 45 and stored.occurred_at == when
    assert any(a.detail == "accepted snomed=871731000000106" for a in audits(core_store))
    with pytest.raises(ServiceError, match="already been decided"):
        core_store.service.accept_referral(r.id, mode="phone")


def test_accept_with_a_bad_first_contact_changes_nothing(core_store: CaseStore, core_counts) -> None:
    p, r = referred_person(core_store)
    before = snapshot(core_store, core_counts)
    with pytest.raises(InvalidInput) as info:
        core_store.service.accept_referral(r.id, mode="carrier_pigeon")
    assert list(info.value.errors) == ["mode"]
    assert snapshot(core_store, core_counts) == before
    assert get(core_store, Referral, r.id).status == "received"
    assert get(core_store, Person, p.id).status == "referred"


def test_decline_with_reason_records_snomed(core_store: CaseStore) -> None:
    p, r = referred_person(core_store)
    core_store.service.decline_referral(r.id, "  Already supported by another service.  ")
    ref = get(core_store, Referral, r.id)
    assert ref.snomed_code == "871711000000103" == SNOMED_SP_DECLINED
    assert ref.status == "declined" and ref.decline_reason == "Already supported by another service."
    assert get(core_store, Person, p.id).status == "declined"
    with pytest.raises(ServiceError):
        core_store.service.decline_referral(r.id, "Twice")


@pytest.mark.parametrize("reason", ["", "   ", None])
def test_decline_without_reason_is_refused(core_store: CaseStore, core_counts, reason) -> None:
    _, r = referred_person(core_store)
    before = snapshot(core_store, core_counts)
    with pytest.raises(InvalidInput) as info:
        core_store.service.decline_referral(r.id, reason)
    assert list(info.value.errors) == ["decline_reason"] and is_sentence(str(info.value))
    assert snapshot(core_store, core_counts) == before
    assert get(core_store, Referral, r.id).status == "received"


def test_declining_one_of_two_referrals_keeps_the_person_referred(core_store: CaseStore) -> None:
    p, r = referred_person(core_store)
    core_store.service.receive_referral(p.id, source="self", reasons=["bereavement"])
    core_store.service.decline_referral(r.id, "Duplicate referral.")
    assert get(core_store, Person, p.id).status == "referred"


# -- contacts --------------------------------------------------------------------------------------------


def test_record_contact_and_its_validation(core_store: CaseStore, core_counts) -> None:
    p = person(core_store)
    c = core_store.service.record_contact(p.id, mode="phone", notes="Brief call to check in.", duration_minutes=10)
    stored = get(core_store, Contact, c.id)
    assert stored.mode == "phone" and stored.notes == "Brief call to check in." and stored.author
    assert stored.occurred_at == core_store.service.clock()
    before = snapshot(core_store, core_counts)
    with pytest.raises(InvalidInput) as info:
        core_store.service.record_contact(
            p.id,
            mode="phone",
            occurred_at=dt.datetime(2026, 11, 24, 9, tzinfo=dt.UTC),
            duration_minutes=-5,
        )
    assert set(info.value.errors) == {"occurred_at", "duration_minutes"}
    with pytest.raises(InvalidInput) as info:
        core_store.service.record_contact(
            p.id,
            mode="phone",
            occurred_at=dt.datetime(2026, 11, 20, 9, tzinfo=dt.UTC),
            follow_up_on=dt.date(2026, 11, 19),
        )
    assert list(info.value.errors) == ["follow_up_on"]
    assert snapshot(core_store, core_counts) == before


def test_amend_keeps_the_original_and_adds_an_amendment(core_store: CaseStore) -> None:
    p = person(core_store)
    c = core_store.service.record_contact(p.id, mode="home_visit", notes="Visited at home.")
    original = get(core_store, Contact, c.id)
    mark = last_mutation(core_store)
    a = core_store.service.amend_contact(c.id, "  Son was present.  ", "Detail missed")
    after = get(core_store, Contact, c.id)
    assert (after.notes, after.row_hlc, after.field_meta) == (original.notes, original.row_hlc, original.field_meta)
    assert [(e.tbl, e.op) for e in outbox(core_store, mark)] == [
        ("contact_amendment", "insert"),
        ("audit_event", "insert"),
    ]
    [entry] = core_store.queries.timeline(p.id)
    assert entry.contact.notes == "Visited at home."
    assert [(x.id, x.text, x.reason) for x in entry.amendments] == [(a.id, "Son was present.", "Detail missed")]
    with pytest.raises(InvalidInput):
        core_store.service.amend_contact(c.id, "  ")


def test_entered_in_error_never_deletes_and_needs_a_reason(core_store: CaseStore, core_counts) -> None:
    p = person(core_store)
    c = core_store.service.record_contact(p.id, mode="phone", notes="Wrong person's notes.")
    before = snapshot(core_store, core_counts)
    with pytest.raises(InvalidInput) as info:
        core_store.service.mark_entered_in_error(c.id, " ")
    assert list(info.value.errors) == ["error_reason"]
    assert snapshot(core_store, core_counts) == before
    mark = last_mutation(core_store)
    core_store.service.mark_entered_in_error(c.id, "Recorded against the wrong person.")
    row = get(core_store, Contact, c.id)
    assert row.entered_in_error and row.error_reason == "Recorded against the wrong person."
    assert row.deleted is False and row.notes == "Wrong person's notes."
    assert core_counts(core_store.engine, "contact")["contact"] == before[0]["contact"]
    assert [e.op for e in outbox(core_store, mark)] == ["patch", "insert"]
    assert set(outbox(core_store, mark)[0].fields) == {"entered_in_error", "error_reason"}
    assert [e.contact.id for e in core_store.queries.timeline(p.id)] == [c.id]  # still shown, marked
    assert not hasattr(core_store.service, "delete_contact")


@pytest.mark.parametrize(
    "field, value",
    [("notes", "Rewritten history."), ("occurred_at", dt.datetime(2026, 1, 1, tzinfo=dt.UTC)), ("mode", "video")],
)
def test_immutable_contact_fields_cannot_be_patched(core_store: CaseStore, core_counts, field: str, value) -> None:
    p = person(core_store)
    c = core_store.service.record_contact(p.id, mode="phone", notes="As it happened.")
    original = get(core_store, Contact, c.id)
    before = snapshot(core_store, core_counts)
    svc = core_store.service
    with pytest.raises(ServiceError, match="cannot be changed once saved"):
        with svc._txn() as txn:  # the only path a screen could use to change a saved contact
            svc._patch(txn, txn.session.get(Contact, c.id), {field: value})
    assert snapshot(core_store, core_counts) == before
    assert getattr(get(core_store, Contact, c.id), field) == getattr(original, field)


# -- follow-ups -----------------------------------------------------------------------------------------


def test_set_and_clear_follow_ups(core_store: CaseStore, core_counts) -> None:
    p = person(core_store)
    svc = core_store.service
    later = svc.set_follow_up(p.id, dt.date(2026, 12, 10), "Review the plan")
    sooner = svc.set_follow_up(p.id, dt.date(2026, 11, 30), "Check the walking group")
    assert get(core_store, Person, p.id).next_follow_up_on == dt.date(2026, 11, 30)
    before = snapshot(core_store, core_counts)
    with pytest.raises(InvalidInput) as info:
        svc.set_follow_up(p.id, dt.date(2026, 11, 22))
    assert list(info.value.errors) == ["due_on"]
    assert snapshot(core_store, core_counts) == before
    svc.clear_follow_up(sooner.id)
    row = get(core_store, FollowUp, sooner.id)
    assert row.status == "cancelled" and row.cleared_on == dt.date(2026, 11, 23)
    assert get(core_store, Person, p.id).next_follow_up_on == dt.date(2026, 12, 10)
    assert [f.id for f in core_store.queries.follow_ups(p.id)] == [later.id]
    svc.clear_follow_up(later.id)
    assert get(core_store, Person, p.id).next_follow_up_on is None


def test_a_contact_clears_the_due_follow_up_but_not_a_future_one(core_store: CaseStore, core_clock) -> None:
    p = person(core_store)
    svc = core_store.service
    due = svc.set_follow_up(p.id, dt.date(2026, 11, 24), "Phone after the first session")
    future = svc.set_follow_up(p.id, dt.date(2026, 12, 20), "Review")
    core_clock.advance(days=3)  # the first follow-up is now overdue
    assert [r.follow_up_id for r in core_store.queries.overdue()] == [due.id]
    c = svc.record_contact(p.id, mode="phone", notes="Called as arranged.")
    cleared = get(core_store, FollowUp, due.id)
    assert cleared.status == "cleared" and cleared.cleared_by_contact_id == c.id
    assert cleared.cleared_on == dt.date(2026, 11, 26)
    assert get(core_store, FollowUp, future.id).status == "open"
    assert get(core_store, Person, p.id).next_follow_up_on == dt.date(2026, 12, 20)
    assert core_store.queries.overdue() == []


def test_did_not_attend_does_not_clear_a_follow_up(core_store: CaseStore, core_clock) -> None:
    p = person(core_store)
    due = core_store.service.set_follow_up(p.id, dt.date(2026, 11, 23), "Home visit")
    core_store.service.record_contact(p.id, mode="home_visit", notes="Not at home; left a card.", did_not_attend=True)
    assert get(core_store, FollowUp, due.id).status == "open"
    assert [r.follow_up_id for r in core_store.queries.due_today()] == [due.id]


def test_a_contact_with_a_follow_up_date_creates_it(core_store: CaseStore) -> None:
    p = person(core_store)
    core_store.service.record_contact(p.id, mode="video", follow_up_on=dt.date(2026, 11, 23))
    [f] = core_store.queries.follow_ups(p.id)
    assert (f.due_on, f.status) == (dt.date(2026, 11, 23), "open")  # a new follow-up is not cleared by its own contact
    assert get(core_store, Person, p.id).next_follow_up_on == dt.date(2026, 11, 23)


# -- what matters, goals and actions -------------------------------------------------------------------------


def test_what_matters_create_edit_delete(core_store: CaseStore) -> None:
    p = person(core_store)
    svc = core_store.service
    wm = svc.record_what_matters(p.id, "  Someone to talk to in the evenings.  ", life_area="connection", priority=2)
    assert [(w.text, w.life_area) for w in core_store.queries.what_matters(p.id)] == [
        ("Someone to talk to in the evenings.", "connection")
    ]
    mark = last_mutation(core_store)
    svc.update_what_matters(wm.id, text="Someone to talk to most evenings.", priority=2)
    [patch, _] = outbox(core_store, mark)
    assert patch.op == "patch" and set(patch.fields) == {"text"}
    with pytest.raises(InvalidInput):
        svc.record_what_matters(p.id, "Words", life_area="astrology")
    mark = last_mutation(core_store)
    svc.delete_what_matters(wm.id)
    assert get(core_store, type(wm), wm.id).deleted is True  # a tombstone, so the delete can sync
    entries = outbox(core_store, mark)
    assert (entries[0].op, entries[0].row_id) == ("delete", wm.id)
    assert entries[0].fields["_deleted"]["v"] is True
    assert core_store.queries.what_matters(p.id) == []
    with pytest.raises(NotFound):
        svc.update_what_matters(wm.id, text="Too late")


def test_goals_and_actions_create_edit_complete_delete(core_store: CaseStore, core_counts) -> None:
    p = person(core_store)
    svc = core_store.service
    g = svc.add_goal(p.id, "Go to the walking group once a week", target_on=dt.date(2027, 1, 31))
    a1 = svc.add_action(g.id, "Find out the meeting point", who="link worker")
    a2 = svc.add_action(g.id, "Go the first time with the link worker")
    assert a1.position < a2.position
    svc.update_goal(g.id, text="Go to the walking group every Tuesday", status="in_progress")
    svc.complete_action(a1.id)
    [plan] = core_store.queries.plan(p.id)
    assert plan.goal.text == "Go to the walking group every Tuesday" and plan.goal.status == "in_progress"
    assert [(a.what, a.who, a.done) for a in plan.actions] == [
        ("Find out the meeting point", "link worker", True),
        ("Go the first time with the link worker", "person", False),
    ]
    svc.complete_goal(g.id)
    assert get(core_store, Goal, g.id).status == "achieved"
    before = snapshot(core_store, core_counts)
    for bad in ({"status": "finished"}, {"text": " "}):
        with pytest.raises(InvalidInput):
            svc.update_goal(g.id, **bad)
    with pytest.raises(InvalidInput):
        svc.add_action(g.id, "")
    assert snapshot(core_store, core_counts) == before
    mark = last_mutation(core_store)
    svc.delete_goal(g.id)
    deletes = [(e.tbl, e.row_id) for e in outbox(core_store, mark) if e.op == "delete"]
    assert deletes == [("goal", g.id), ("plan_action", a1.id), ("plan_action", a2.id)]
    assert get(core_store, Goal, g.id).deleted and get(core_store, PlanAction, a2.id).deleted
    assert core_store.queries.plan(p.id) == []
    assert core_counts(core_store.engine, "goal")["goal"] == 1  # tombstoned, not removed


def test_move_goal_orders_by_fractional_positions(core_store: CaseStore) -> None:
    p = person(core_store)
    svc = core_store.service
    goals = [svc.add_goal(p.id, f"Goal {i}") for i in range(5)]
    positions = [g.position for g in goals]
    assert positions == sorted(positions) and len(set(positions)) == 5
    model = [g.id for g in goals]
    rng = random.Random(3)
    for _ in range(25):
        goal_id = rng.choice(model)
        offset = rng.choice([-1, 1])
        mark = last_mutation(core_store)
        svc.move_goal(goal_id, offset)
        i = model.index(goal_id)
        j = i + offset
        entries = outbox(core_store, mark)
        if 0 <= j < len(model):
            model[i], model[j] = model[j], model[i]
            # Only the moved goal changes: its position, nothing else, so concurrent moves merge.
            assert [(e.tbl, e.op, e.row_id, set(e.fields)) for e in entries[:1]] == [
                ("goal", "patch", goal_id, {"position"})
            ]
        else:
            assert entries == []  # moving past either end does nothing
        assert [g.goal.id for g in core_store.queries.plan(p.id)] == model
    final = [g.goal.position for g in core_store.queries.plan(p.id)]
    assert final == sorted(final) and len(set(final)) == len(final)


@pytest.mark.parametrize(
    ("before", "after"),
    [(None, None), (None, "m"), ("m", None), ("m", "n"), ("mz", "n"), ("a", "a1"), ("0001", "0002"), ("y", "z")],
)
def test_position_between_sorts_strictly_between(before: str | None, after: str | None) -> None:
    key = position_between(before, after)
    assert (before or "") < key and (after is None or key < after)
    assert not key.endswith("0")  # a key ending in the lowest digit would leave no room below it


def test_position_between_repeated_inserts_stay_ordered() -> None:
    rng = random.Random(11)
    keys = [position_between(None, None)]
    for _ in range(300):
        i = rng.randrange(len(keys) + 1)
        lo = keys[i - 1] if i > 0 else None
        hi = keys[i] if i < len(keys) else None
        keys.insert(i, position_between(lo, hi))
    assert keys == sorted(keys) and len(set(keys)) == len(keys)


# -- onward referrals, needs and outcome measures -----------------------------------------------------------


def test_refer_and_signpost_to_a_directory_service_then_record_outcome(core_store: CaseStore, core_directory) -> None:
    p = person(core_store)
    svc = core_store.service
    service_id = core_directory(core_store)
    onward = svc.refer_to_service(p.id, service_id, kind="signposted", need="physical_activity")
    assert (onward.service_name, onward.kind, onward.outcome, onward.made_on) == (
        "Walking group",
        "signposted",
        "pending",
        dt.date(2026, 11, 23),
    )
    svc.record_onward_outcome(onward.id, "attended", outcome_on=dt.date(2026, 11, 23))
    [row] = core_store.queries.onward_referrals(p.id)
    assert (row.outcome, row.outcome_on) == ("attended", dt.date(2026, 11, 23))
    referred = svc.refer_to_service(p.id, service_id, kind="accompanied")
    assert referred.kind == "accompanied"
    with pytest.raises(InvalidInput):
        svc.refer_to_service(p.id, service_id, kind="teleported")
    with pytest.raises(InvalidInput):
        svc.record_onward_outcome(onward.id, "loved it")
    with pytest.raises(NotFound):
        svc.refer_to_service(p.id, "no-such-service")
    need = svc.record_need(p.id, "housing", "No suitable local service", status="unmet")
    svc.update_need(need.id, status="met")
    assert [(n.category, n.status) for n in core_store.queries.needs(p.id)] == [("housing", "met")]


def test_outcome_measures_complete_and_incomplete(core_store: CaseStore, core_counts) -> None:
    p = person(core_store)
    svc = core_store.service
    full = svc.record_outcome(p.id, "UCLA3", "baseline", {"companionship": 3, "left_out": 2, "isolated": 3})
    assert full.complete is True and full.score["total"] == 8
    part = svc.record_outcome(p.id, "UCLA3", "review", {"companionship": 3, "left_out": None, "isolated": 2})
    assert part.complete is False and part.score["total"] is None
    assert part.responses == {"companionship": 3, "left_out": None, "isolated": 2}
    ons = svc.record_outcome(
        p.id, "ONS4", "baseline", {"life_satisfaction": 4, "worthwhile": 5, "happiness": 3, "anxiety": 7}
    )
    assert ons.complete and ons.score["total"] is None  # ONS4 is reported item by item, never summed
    stored = [(o.instrument, o.time_point, o.complete) for o in core_store.queries.outcomes(p.id)]
    assert stored == [("UCLA3", "baseline", True), ("UCLA3", "review", False), ("ONS4", "baseline", True)]
    before = snapshot(core_store, core_counts)
    bad = [
        ("UCLA3", "baseline", {"companionship": 9, "left_out": 2, "isolated": 3}, None),
        ("NOPE", "baseline", {}, None),
        ("UCLA3", "someday", {"companionship": 1, "left_out": 1, "isolated": 1}, None),
        ("UCLA3", "baseline", {"companionship": 1, "left_out": 1, "isolated": 1}, dt.date(2026, 12, 1)),
    ]
    for instrument, point, responses, taken_on in bad:
        with pytest.raises(InvalidInput) as info:
            svc.record_outcome(p.id, instrument, point, responses, taken_on=taken_on)
        assert all(is_sentence(m) for m in info.value.errors.values())
    assert snapshot(core_store, core_counts) == before


# -- audit-only events, drafts -----------------------------------------------------------------------------


def test_viewing_a_record_is_an_audit_event_only(core_store: CaseStore, core_counts) -> None:
    p = person(core_store)
    before = core_counts(core_store.engine, *DOMAIN_TABLES)
    mark = last_mutation(core_store)
    event = core_store.service.record_view(p.id)
    assert core_counts(core_store.engine, *DOMAIN_TABLES) == before
    assert (event.action, event.person_id, event.record_id) == ("VIEW", p.id, p.id)
    assert [(e.tbl, e.op, e.row_id) for e in outbox(core_store, mark)] == [("audit_event", "insert", event.id)]
    assert audits(core_store)[-1].id == event.id
    export = core_store.service.record_event("EXPORT", detail="csv people=1")
    assert export.person_id is None and audits(core_store)[-1].detail == "csv people=1"


def test_drafts_survive_and_are_discarded(core_store: CaseStore) -> None:
    svc = core_store.service
    svc.save_draft("contact:new", {"notes": "Half a sentence"})
    svc.save_draft("contact:new", {"notes": "Half a sentence, finished"})
    assert svc.load_draft("contact:new") == {"notes": "Half a sentence, finished"}
    assert svc.list_drafts() == ["contact:new"]
    svc.discard_draft("contact:new")
    assert svc.load_draft("contact:new") is None and svc.list_drafts() == []


# -- ordering: mutation ids and hybrid logical clocks ------------------------------------------------------------


def test_mutation_ids_and_hlcs_increase_even_when_the_clock_goes_back(core_store: CaseStore, core_clock) -> None:
    svc = core_store.service
    p = person(core_store)
    stamps = [get(core_store, Person, p.id).row_hlc]
    states = [hlc_last(core_store)]
    for step in range(6):
        core_clock.advance(hours=-3 if step % 2 == 0 else 1)  # net drift backwards
        svc.update_person(p.id, preferred_name=f"Name{step}")
        stamps.append(get(core_store, Person, p.id).row_hlc)
        states.append(hlc_last(core_store))
    assert all(a < b for a, b in zip(stamps, stamps[1:], strict=False))
    assert all(a < b for a, b in zip(states, states[1:], strict=False))
    entries = outbox(core_store)
    ids = [e.mutation_id for e in entries]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    patches = [e.hlc for e in entries if e.tbl == "person"]
    assert all(a < b for a, b in zip(patches, patches[1:], strict=False))
    # The physical part never went back with the clock.
    assert hlc_clock.physical_ms(stamps[-1]) >= hlc_clock.physical_ms(stamps[0])


def test_hlc_state_survives_reopening_the_store(core_store: CaseStore) -> None:
    from sprx_tui.core.store import open_store

    person(core_store)
    last = hlc_last(core_store)
    early = lambda: dt.datetime(2020, 1, 1, tzinfo=dt.UTC)  # noqa: E731 - a laptop clock reset to the past
    reopened = open_store(core_store.vault, clock=early)
    q = reopened.service.add_person(given_name="Kit", family_name="Keld")
    assert get(reopened, Person, q.id).row_hlc > last


# -- the audit chain ---------------------------------------------------------------------------------------------


def _some_history(store: CaseStore) -> None:
    p, r = referred_person(store)
    store.service.accept_referral(r.id, mode="phone", notes="First call.")
    store.service.record_view(p.id)


def test_audit_chain_verifies_and_links(core_store: CaseStore) -> None:
    _some_history(core_store)
    chain = audits(core_store)
    assert len(chain) >= 4
    assert chain[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in zip(chain, chain[1:], strict=False))
    assert core_store.service.verify_audit_chain()


def test_audit_trail_is_append_only_in_sqlite(core_store: CaseStore) -> None:
    _some_history(core_store)
    with pytest.raises(DatabaseError, match="append-only"):
        with core_store.engine.begin() as conn:
            conn.execute(text("UPDATE audit_event SET detail = 'nothing to see' WHERE seq = 1"))
    with pytest.raises(DatabaseError, match="append-only"):
        with core_store.engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_event WHERE seq = 2"))
    assert core_store.service.verify_audit_chain()


@pytest.mark.parametrize("forgery", ["garbage", "relinked", "rewritten"])
def test_tampering_breaks_the_audit_chain(core_store: CaseStore, forgery: str) -> None:
    _some_history(core_store)
    chain = audits(core_store)
    with core_store.engine.begin() as conn:
        if forgery == "rewritten":
            # Someone with the key drops the trigger and edits history in place.
            conn.execute(text("DROP TRIGGER audit_no_update"))
            conn.execute(text("UPDATE audit_event SET action = 'CREATE' WHERE action = 'VIEW'"))
        else:
            prev = chain[-1].hash if forgery == "relinked" else "f" * 64
            conn.execute(
                text(
                    "INSERT INTO audit_event (id, practice_id, person_id, actor, device_id, action, record_type, "
                    "record_id, detail, at, prev_hash, hash) VALUES ('forged', 'local', NULL, 'intruder', 'x', "
                    "'EXPORT', '', '', '', '2026-11-23 10:30:00.000000', :prev, :hash)"
                ),
                {"prev": prev, "hash": "0" * 64},
            )
    assert core_store.service.verify_audit_chain() is False


def test_audit_chain_verifies_with_a_clock_outside_utc(core_open_copy) -> None:
    """A laptop clock in British Summer Time must not break the chain (times are stored in UTC)."""
    bst = dt.timezone(dt.timedelta(hours=1))
    store = core_open_copy(lambda: dt.datetime(2026, 7, 1, 11, 30, 15, 123456, tzinfo=bst))
    _some_history(store)
    assert store.service.verify_audit_chain()
    [first] = [e for e in outbox(store) if e.tbl == "audit_event"][:1]
    assert first.fields["at"]["v"] == "2026-07-01T10:30:15.123456+00:00"


# -- threads, unknown fields, status changes ---------------------------------------------------------------------


def test_another_thread_waits_for_an_open_transaction_instead_of_joining_it(core_store: CaseStore) -> None:
    """The UI's worker threads share one service: a second thread must never write into the first's transaction."""
    import threading

    svc = core_store.service
    inside = threading.Event()
    result: dict[str, object] = {}

    def other_worker() -> None:
        inside.wait(5)
        result["id"] = svc.add_person(given_name="Wren", family_name="Whitlock").id

    worker = threading.Thread(target=other_worker)
    worker.start()
    with pytest.raises(RuntimeError, match="cancelled"):
        with svc.transaction():
            svc.add_person(given_name="Abandoned", family_name="Batch")
            inside.set()
            worker.join(0.5)  # with the bug, the worker finishes here, inside this transaction
            result["finished_inside"] = not worker.is_alive()
            raise RuntimeError("cancelled")
    worker.join(5)
    assert result["finished_inside"] is False
    assert [r.name for r in core_store.queries.caseload()[0]] == ["Wren Whitlock"]
    assert svc.verify_audit_chain()


def test_unknown_person_fields_are_refused_not_dropped(core_store: CaseStore, core_counts) -> None:
    before = snapshot(core_store, core_counts)
    with pytest.raises(InvalidInput) as info:
        core_store.service.add_person(given_name="Ada", family_name="Ashdown", surname="Typo")
    assert list(info.value.errors) == ["surname"] and is_sentence(info.value.errors["surname"])
    p = person(core_store)
    for bad in ({"surname": "Typo"}, {"search_text": "anything"}, {"last_contact_on": dt.date(2026, 1, 1)}):
        with pytest.raises(InvalidInput):
            core_store.service.update_person(p.id, **bad)
    with pytest.raises(InvalidInput) as info:
        core_store.service.update_person(p.id, status="on_holiday")
    assert list(info.value.errors) == ["status"]
    assert get(core_store, Person, p.id).status == "referred"
    assert snapshot(core_store, core_counts)[0]["person"] == before[0]["person"] + 1


@pytest.mark.parametrize("status", ["discharged", "declined", "did_not_engage"])
def test_closing_a_case_cancels_its_open_follow_ups(core_store: CaseStore, core_clock, status: str) -> None:
    p = person(core_store)
    svc = core_store.service
    svc.set_follow_up(p.id, dt.date(2026, 11, 24), "Next visit")
    core_clock.advance(days=2)
    assert len(core_store.queries.overdue()) == 1
    svc.set_status(p.id, status)
    assert core_store.queries.overdue() == [] and core_store.queries.follow_ups(p.id) == []
    assert get(core_store, Person, p.id).next_follow_up_on is None
    [f] = core_store.queries.follow_ups(p.id, open_only=False)
    assert (f.status, f.cleared_on) == ("cancelled", dt.date(2026, 11, 25))


def test_clearing_a_follow_up_twice_keeps_how_it_was_cleared(core_store: CaseStore) -> None:
    p = person(core_store)
    svc = core_store.service
    f = svc.set_follow_up(p.id, dt.date(2026, 11, 23))
    c = svc.record_contact(p.id, mode="phone")
    mark = last_mutation(core_store)
    svc.clear_follow_up(f.id)
    row = get(core_store, FollowUp, f.id)
    assert (row.status, row.cleared_by_contact_id) == ("cleared", c.id)
    assert outbox(core_store, mark) == []


def test_an_export_in_a_worker_thread_waits_for_an_open_write(core_store: CaseStore, tmp_path) -> None:
    """Every reader shares the one SQLCipher connection: an unlocked read would end the writer's transaction."""
    import threading

    from sprx_tui.core.export import export_csv

    svc = core_store.service
    inside = threading.Event()
    result: dict[str, object] = {}

    def exporter() -> None:
        inside.wait(5)
        result["counts"] = export_csv(core_store, tmp_path / "export")

    worker = threading.Thread(target=exporter)
    worker.start()
    with svc.transaction():
        svc.add_person(given_name="Nell", family_name="Nettle")
        inside.set()
        worker.join(0.5)
        result["finished_inside"] = not worker.is_alive()
        svc.add_person(given_name="Orla", family_name="Oakley")
    worker.join(10)
    assert result["finished_inside"] is False
    assert core_store.queries.caseload()[1] == 2
    assert result["counts"]["people"] == 2
    assert svc.verify_audit_chain()
    persons = {e.row_id for e in outbox(core_store) if e.tbl == "person"}
    assert persons == {r.id for r in core_store.queries.caseload()[0]}


def test_uuid7_ids_are_time_ordered_and_unique() -> None:
    import uuid

    from sprx_tui.core.ids import stable_id, uuid7

    ids = [uuid7() for _ in range(3000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 7 and uuid.UUID(i).variant == uuid.RFC_4122 for i in ids[:50])
    later = uuid7(now_ms=1)  # a clock gone far backwards still gives a larger id
    assert later > ids[-1]
    assert stable_id("demo-service", "1") == stable_id("demo-service", "1") != stable_id("demo-service", "2")


def test_sync_state_writes_wait_for_an_open_transaction(core_store: CaseStore) -> None:
    """set_state from another thread must not commit (or roll back) a transaction it does not own."""
    import threading

    from sprx_tui.core.store import get_state, open_store, set_state

    assert open_store(core_store.vault).lock is core_store.lock  # every store on one engine, one lock
    svc = core_store.service
    inside = threading.Event()

    def sync_worker() -> None:
        inside.wait(5)
        set_state(core_store.engine, {"last_sync_ok_at": "2026-11-23T10:30:00+00:00"})

    worker = threading.Thread(target=sync_worker)
    worker.start()
    with pytest.raises(RuntimeError, match="cancelled"):
        with svc.transaction():
            svc.add_person(given_name="Pia", family_name="Pennock")
            inside.set()
            worker.join(0.5)
            raise RuntimeError("cancelled")
    worker.join(5)
    assert core_store.queries.caseload()[1] == 0  # the cancelled person was not committed by the other thread
    assert get_state(core_store.engine, "last_sync_ok_at") == "2026-11-23T10:30:00+00:00"
