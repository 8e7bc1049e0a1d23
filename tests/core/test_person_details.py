"""Adding a person in the app with their referral, and updating their details: one transaction each, per field."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from sprx_tui.core.models import AuditEvent, Person, Referral, SafetyFlagChange, SyncOutbox
from sprx_tui.core.service import InvalidInput, flags_from_history
from sprx_tui.core.store import CaseStore
from tests.core.conftest import core_count_rows

TABLES = ("person", "referral", "safety_flag_change", "sync_outbox", "audit_event")


def outbox(store: CaseStore, tbl: str) -> list[SyncOutbox]:
    with Session(store.engine) as s:
        return list(s.exec(select(SyncOutbox).where(SyncOutbox.tbl == tbl).order_by(SyncOutbox.mutation_id)).all())


def audits(store: CaseStore, record_type: str) -> list[AuditEvent]:
    with Session(store.engine) as s:
        return list(s.exec(select(AuditEvent).where(AuditEvent.record_type == record_type)).all())


def test_new_person_with_a_self_referral_is_one_transaction_with_outbox_and_audit(core_store: CaseStore) -> None:
    person, referral = core_store.service.new_person(
        referral_source="self",
        given_name="Bea",
        family_name="Example",
        nhs_number="943 476 5919",
        interpreter_language="Polish",
        hearing_need=True,
        easy_read=True,
        safety_flags=["animals"],
        consent_social_prescribing=True,
    )
    assert person.nhs_number == "9434765919" and person.hearing_need and not person.sight_need
    assert (referral.person_id, referral.source, referral.status) == (person.id, "self", "received")
    assert [o.op for o in outbox(core_store, "person")] == ["insert"]
    assert outbox(core_store, "person")[0].fields["hearing_need"]["v"] is True
    assert [o.op for o in outbox(core_store, "referral")] == ["insert"]
    history = core_store.queries.safety_flag_history(person.id)
    assert [(h.flag, h.change, h.reason) for h in history] == [
        ("animals", "added", "Recorded when the person was added.")
    ]
    assert {a.detail for a in audits(core_store, "safety_flag_change")} == {"added animals"}
    assert len(audits(core_store, "person")) == 1 and len(audits(core_store, "referral")) == 1
    assert core_store.service.verify_audit_chain()


def test_invalid_nhs_number_saves_nothing_and_names_the_field(core_store: CaseStore) -> None:
    before = core_count_rows(core_store.engine, *TABLES)
    with pytest.raises(InvalidInput) as caught:
        core_store.service.new_person(
            referral_source="self", given_name="Bea", family_name="Example", nhs_number="943 476 5918"
        )
    assert set(caught.value.errors) == {"nhs_number"}
    assert caught.value.errors["nhs_number"].endswith(".")
    assert core_count_rows(core_store.engine, *TABLES) == before


def test_unknown_source_and_missing_name_are_each_one_sentence(core_store: CaseStore) -> None:
    with pytest.raises(InvalidInput) as caught:
        core_store.service.new_person(referral_source="walk-in", given_name="", family_name="Example")
    assert set(caught.value.errors) == {"given_name", "referral_source"}
    assert core_count_rows(core_store.engine, "person")["person"] == 0


def test_duplicate_nhs_number_is_found_with_the_holders_name(core_store: CaseStore) -> None:
    ann, _ = core_store.service.new_person(
        referral_source="gp", given_name="Ann", family_name="Example", nhs_number="9434765919"
    )
    assert core_store.queries.people_with_nhs_number("9434765919") == [(ann.id, "Ann Example")]
    assert core_store.queries.people_with_nhs_number("9434765919", other_than=ann.id) == []


def test_update_writes_only_changed_fields_and_flags_need_a_reason(core_store: CaseStore) -> None:
    person, _ = core_store.service.new_person(
        referral_source="self", given_name="Bea", family_name="Example", phone="01632 960001"
    )
    same = {"given_name": "Bea", "family_name": "Example", "phone": "01632 960001", "safety_flags": []}
    assert core_store.service.update_person_details(person.id, same) == {}
    assert len(outbox(core_store, "person")) == 1  # nothing changed, nothing queued

    changed = core_store.service.update_person_details(person.id, {**same, "phone": "01632 960002"})
    assert set(changed) == {"phone"}
    patch = outbox(core_store, "person")[-1]
    assert (patch.op, set(patch.fields)) == ("patch", {"phone"})

    with pytest.raises(InvalidInput) as caught:
        core_store.service.update_person_details(person.id, {"safety_flags": ["animals"]}, "")
    assert set(caught.value.errors) == {"flag_reason"}
    assert core_store.queries.person(person.id).safety_flags == []

    core_store.service.add_safety_flag(person.id, "animals", "Large dog seen on the visit")
    core_store.service.remove_safety_flag(person.id, "animals", "Dog rehomed")
    history = core_store.queries.safety_flag_history(person.id)
    assert [(h.change, h.reason) for h in history] == [
        ("removed", "Dog rehomed"),
        ("added", "Large dog seen on the visit"),
    ]
    assert all(h.author == core_store.service.actor.user_id for h in history)
    patches = [o for o in outbox(core_store, "person") if o.op == "patch"]
    assert [set(p.fields) for p in patches] == [{"phone"}, {"safety_flags"}, {"safety_flags"}]
    assert [o.op for o in outbox(core_store, "safety_flag_change")] == ["insert", "insert"]
    assert {a.detail for a in audits(core_store, "safety_flag_change")} == {"added animals", "removed animals"}
    with Session(core_store.engine) as s:
        assert len(s.exec(select(SafetyFlagChange)).all()) == 2
        assert s.get(Person, person.id).safety_flags == []
        assert len(s.exec(select(Referral)).all()) == 1
    assert core_store.service.verify_audit_chain()


def test_the_csv_export_carries_the_safety_flag_history(core_store: CaseStore, tmp_path) -> None:
    from sprx_tui.core.export import export_csv

    person, _ = core_store.service.new_person(
        referral_source="self", given_name="Bea", family_name="Example", safety_flags=["smoking"]
    )
    counts = export_csv(core_store, tmp_path / "export")
    assert counts["safety_flag_changes"] == 1
    body = (tmp_path / "export" / "safety_flag_changes.csv").read_text()
    assert "smoking" in body and person.id in body


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("postcode", "LS1 4A"),
        ("phone", "12"),
        ("date_of_birth", "31/02/1950"),
        ("date_of_birth", "01/01/2030"),
        ("hearing_need", "yes"),
        ("safety_flags", ["dragons"]),
    ],
)
def test_each_bad_field_is_one_sentence_on_that_field_and_nothing_is_saved(
    core_store: CaseStore, field: str, value: object
) -> None:
    before = core_count_rows(core_store.engine, *TABLES)
    with pytest.raises(InvalidInput) as caught:
        core_store.service.new_person(referral_source="self", given_name="Bea", family_name="Example", **{field: value})
    assert list(caught.value.errors) == [field]
    sentence = caught.value.errors[field]
    assert sentence[0].isupper() and sentence.endswith(".") and "\n" not in sentence
    assert core_count_rows(core_store.engine, *TABLES) == before


def test_a_flag_reason_too_long_is_refused_on_its_field(core_store: CaseStore) -> None:
    person, _ = core_store.service.new_person(referral_source="self", given_name="Bea", family_name="Example")
    with pytest.raises(InvalidInput) as caught:
        core_store.service.add_safety_flag(person.id, "access", "x" * 2001)
    assert list(caught.value.errors) == ["flag_reason"]
    assert core_store.queries.person(person.id).safety_flags == []


# -- the flags a person's history gives (what sync settles their list to) ------------------------------


def test_the_flags_from_history_take_each_flags_latest_change_by_hlc_then_device_then_row() -> None:
    history = [
        ("animals", "added", 10, "dev-a", "r1"),
        ("animals", "removed", 20, "dev-b", "r2"),
        ("aggression", "removed", 30, "dev-a", "r3"),  # the same HLC on two devices: the device decides
        ("aggression", "added", 30, "dev-b", "r4"),
        ("smoking", "added", 40, "dev-a", "r6"),  # the same HLC and device: the row id decides
        ("smoking", "removed", 40, "dev-a", "r5"),
    ]
    want = ["aggression", "smoking"]
    assert flags_from_history(["animals"], history) == want
    assert flags_from_history([], list(reversed(history))) == want  # the order rows arrived in does not matter


def test_flags_without_history_are_kept_and_the_list_is_in_the_forms_order() -> None:
    history = [("do_not_visit_alone", "added", 5, "dev-a", "r1"), ("access", "removed", 6, "dev-a", "r2")]
    got = flags_from_history(["smoking", "access", "animals"], history)
    assert got == ["do_not_visit_alone", "animals", "smoking"]  # access removed; the rest as SAFETY_FLAGS lists
    assert flags_from_history(["animals", "zz_new", "aa_new"], []) == ["animals", "aa_new", "zz_new"]


def test_a_kind_of_flag_change_this_version_does_not_know_is_ignored() -> None:
    history = [("animals", "added", 5, "dev-a", "r1"), ("animals", "archived", 9, "dev-b", "r2")]
    assert flags_from_history([], history) == ["animals"]


def test_settling_a_persons_flags_writes_one_synced_edit_without_new_history(core_store: CaseStore) -> None:
    service = core_store.service
    person, _ = service.new_person(referral_source="self", given_name="Cy", family_name="Example",
                                   safety_flags=["animals"])  # fmt: skip
    service.update_person(person.id, safety_flags=[])  # a list written around the history (as a lost merge leaves it)
    history_before = len(audits(core_store, "safety_flag_change"))
    with core_store.lock, Session(core_store.engine) as s, s.begin():
        assert service.settle_safety_flags(s, {person.id, "no-such-person"}) == [person.id]
    with core_store.lock, Session(core_store.engine) as s, s.begin():
        assert service.settle_safety_flags(s, {person.id}) == []  # settled: nothing more to write
    with Session(core_store.engine) as s:
        assert s.get(Person, person.id).safety_flags == ["animals"]
    last = outbox(core_store, "person")[-1]
    assert last.op == "patch" and last.fields["safety_flags"]["v"] == ["animals"]
    assert len(audits(core_store, "safety_flag_change")) == history_before  # no new history row
    assert audits(core_store, "person")[-1].detail == "safety_flags (merged from their history)"
