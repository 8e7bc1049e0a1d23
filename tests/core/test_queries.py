"""Read-side queries against a small hand-built caseload on a real vault, with a frozen clock."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from sprx_tui.core.queries import CaseQueries
from sprx_tui.core.store import CaseStore, open_store
from sprx_tui.core.vault import Vault

CORE_FROZEN_NOW = dt.datetime(2026, 11, 23, 10, 30, tzinfo=dt.UTC)  # a Monday morning, as in conftest
TODAY = CORE_FROZEN_NOW.date()


class Clock:
    def __init__(self) -> None:
        self.now = CORE_FROZEN_NOW

    def __call__(self) -> dt.datetime:
        return self.now


def at(day: dt.date, hour: int = 10) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), dt.UTC)


def days_ago(n: int) -> dt.date:
    return TODAY - dt.timedelta(days=n)


@dataclass
class Caseload:
    store: CaseStore
    ids: dict[str, str]
    follow_ups: dict[str, str]
    contacts: dict[str, str]
    amendments: list[str]


@pytest.fixture(scope="module")
def caseload(tmp_path_factory: pytest.TempPathFactory, core_empty_template) -> Iterator[Caseload]:
    """Six people whose every date is known, relative to the frozen Monday."""
    dest = tmp_path_factory.mktemp("queries") / "vault"
    shutil.copytree(core_empty_template.path, dest)
    vault = Vault(dest)
    vault.unlock_with_recovery(core_empty_template.recovery)
    clock = Clock()
    store = open_store(vault, clock=clock)
    svc = store.service
    ids: dict[str, str] = {}
    fus: dict[str, str] = {}
    contacts: dict[str, str] = {}

    def add(key: str, given: str, family: str, **kw) -> str:
        ids[key] = svc.add_person(given_name=given, family_name=family, **kw).id
        return ids[key]

    # Ada: active, seen three days ago, follow-up due today, one safety flag.
    add(
        "ada",
        "Ada",
        "Ashdown",
        nhs_number="9992914173",
        postcode="LS1 4AP",
        date_of_birth=dt.date(1950, 11, 24),
        safety_flags=["animals"],
    )
    r = svc.receive_referral(ids["ada"], source="gp", received_on=days_ago(22), reasons=["loneliness"])
    contacts["ada_first"] = svc.accept_referral(
        r.id, mode="home_visit", notes="First visit.", occurred_at=at(days_ago(3)), follow_up_on=TODAY
    ).id
    contacts["ada_second"] = svc.record_contact(ids["ada"], mode="phone", occurred_at=at(days_ago(3), 15)).id
    fus["ada"] = store.queries.follow_ups(ids["ada"])[0].id
    # Bilal: active, last seen 40 days ago, follow-up overdue since Friday.
    add("bilal", "Bilal", "Birch", nhs_number="9997763173", postcode="LS12 3AB")
    r = svc.receive_referral(ids["bilal"], source="pharmacy", received_on=days_ago(60), reasons=["money"])
    svc.accept_referral(r.id, mode="phone", occurred_at=at(days_ago(40)), follow_up_on=days_ago(3))
    fus["bilal"] = store.queries.follow_ups(ids["bilal"])[0].id
    # Cara: referred two days ago, not yet seen.
    add("cara", "Cara", "Calder", postcode="LS6 2QT")
    svc.receive_referral(ids["cara"], source="self", received_on=days_ago(2), reasons=["bereavement"])
    # Dev: discharged.
    add("dev", "Dev", "Dunmore", nhs_number="9990669074")
    r = svc.receive_referral(ids["dev"], source="mdt", received_on=days_ago(120), reasons=["housing"])
    svc.accept_referral(r.id, mode="clinic", occurred_at=at(days_ago(83)))
    svc.discharge(ids["dev"])
    # Eli: active but never contacted.
    add("eli", "Eli", "Ashdown")
    svc.set_status(ids["eli"], "active")
    # Zara: referred yesterday; shares a given name pattern with nobody, a family name sorting last.
    add("zara", "Ada", "Zennor", preferred_name="Zara", postcode="LS1 4AQ")
    svc.receive_referral(ids["zara"], source="police", received_on=days_ago(1), reasons=["low_mood"], urgency="urgent")
    # Two amendments to Ada's first contact, written at different times, and one entered in error.
    clock.now += dt.timedelta(minutes=5)
    first = svc.amend_contact(contacts["ada_first"], "The son was present.", "Detail missed").id
    clock.now += dt.timedelta(minutes=5)
    second = svc.amend_contact(contacts["ada_first"], "Dog was shut away.", "Safety note").id
    svc.mark_entered_in_error(contacts["ada_second"], "Recorded against the wrong person.")
    clock.now = CORE_FROZEN_NOW
    yield Caseload(store, ids, fus, contacts, [first, second])
    vault.lock()


def names(rows) -> list[str]:
    return [r.name for r in rows]


def test_caseload_pages_in_sql_with_a_stable_total(caseload: Caseload) -> None:
    q = caseload.store.queries
    full, total = q.caseload(limit=50)
    assert total == 6
    assert names(full) == ["Ada Ashdown", "Eli Ashdown", "Bilal Birch", "Cara Calder", "Dev Dunmore", "Zara Zennor"]
    pages = []
    for offset in range(0, 6, 4):
        rows, page_total = q.caseload(limit=4, offset=offset)
        assert page_total == 6
        pages.extend(rows)
    assert names(pages) == names(full)
    assert q.caseload(limit=4, offset=4)[0] == full[4:]
    assert q.caseload(limit=4, offset=12) == ([], 6)


def test_caseload_row_shows_what_the_table_needs(caseload: Caseload) -> None:
    [ada] = [r for r in caseload.store.queries.caseload()[0] if r.id == caseload.ids["ada"]]
    assert ada.nhs_number == "999 291 4173"
    assert ada.age == 75  # 76th birthday is tomorrow
    assert (ada.status, ada.postcode, ada.flags) == ("active", "LS1 4AP", ("animals",))
    assert (ada.last_contact_on, ada.next_follow_up_on) == (days_ago(3), TODAY)


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("name", ["ada", "eli", "bilal", "cara", "dev", "zara"]),
        ("next_follow_up", ["bilal", "ada", "eli", "cara", "dev", "zara"]),
        ("last_contact", ["eli", "cara", "zara", "dev", "bilal", "ada"]),
        ("status", ["ada", "eli", "bilal", "dev", "cara", "zara"]),
        ("no_such_sort", ["ada", "eli", "bilal", "cara", "dev", "zara"]),
    ],
)
def test_caseload_sorts(caseload: Caseload, sort: str, expected: list[str]) -> None:
    rows, _ = caseload.store.queries.caseload(sort=sort)
    assert [r.id for r in rows] == [caseload.ids[k] for k in expected]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ada", {"ada", "zara"}),  # the given name; Zara's legal given name is Ada
        ("ASHDOWN", {"ada", "eli"}),
        ("ada ashdown", {"ada"}),
        ("zara", {"zara"}),  # preferred name
        ("999 291 4173", {"ada"}),
        ("999-291-4173", {"ada"}),
        ("9992914173", {"ada"}),
        ("  999 776  ", {"bilal"}),
        ("LS1 4AP", {"ada"}),
        ("ls14ap", {"ada"}),
        ("ls1 4a", {"ada", "zara"}),
        ("LS12 3AB", {"bilal"}),
        ("%", set()),
        ("_", set()),
        ("nobody", set()),
        ("", {"ada", "bilal", "cara", "dev", "eli", "zara"}),
    ],
)
def test_caseload_text_filter(caseload: Caseload, text: str, expected: set[str]) -> None:
    rows, total = caseload.store.queries.caseload(text=text)
    assert {r.id for r in rows} == {caseload.ids[k] for k in expected}
    assert total == len(expected)


def test_caseload_status_filter_and_counts(caseload: Caseload) -> None:
    q = caseload.store.queries
    rows, total = q.caseload(status="active")
    assert total == 3 and {r.id for r in rows} == {caseload.ids[k] for k in ("ada", "bilal", "eli")}
    rows, total = q.caseload(status="active", text="ashdown", limit=1)
    assert total == 2 and [r.id for r in rows] == [caseload.ids["ada"]]
    assert q.caseload(status="declined") == ([], 0)
    assert q.status_counts() == {"active": 3, "referred": 2, "discharged": 1}
    assert [r.id for r in q.search("birch")] == [caseload.ids["bilal"]]


def test_today_lists(caseload: Caseload) -> None:
    q = caseload.store.queries
    assert [(r.follow_up_id, r.person_id, r.due_on) for r in q.due_today()] == [
        (caseload.follow_ups["ada"], caseload.ids["ada"], TODAY)
    ]
    assert q.due_today()[0].flags == ("animals",)
    assert [(r.person_id, r.due_on) for r in q.overdue()] == [(caseload.ids["bilal"], days_ago(3))]
    new = q.new_referrals()
    # Triage order: the urgent referral first, although the routine one has waited longer.
    assert [(r.person_id, r.source, r.received_on, r.urgency) for r in new] == [
        (caseload.ids["zara"], "police", days_ago(1), "urgent"),
        (caseload.ids["cara"], "self", days_ago(2), "routine"),
    ]
    assert new[0].name == "Zara Zennor"
    assert [r.id for r in q.no_recent_contact()] == [caseload.ids["eli"], caseload.ids["bilal"]]
    assert [r.id for r in q.no_recent_contact(days=3)] == [
        caseload.ids["eli"],
        caseload.ids["bilal"],
        caseload.ids["ada"],
    ]
    assert [r.id for r in q.no_recent_contact(days=41)] == [caseload.ids["eli"]]


def test_today_totals_count_the_whole_lists_the_screen_reads_capped(caseload: Caseload) -> None:
    q = caseload.store.queries
    assert q.today_totals() == {"due": 1, "overdue": 1, "referrals": 2, "quiet": 2}
    assert q.today_totals(no_contact_days=3)["quiet"] == 3
    # Capped reads keep their order; the totals still count every item.
    assert [r.person_id for r in q.new_referrals(limit=1)] == [caseload.ids["zara"]]
    assert [r.id for r in q.no_recent_contact(days=3, limit=2)] == [caseload.ids["eli"], caseload.ids["bilal"]]
    tomorrow = CaseQueries(caseload.store.engine, clock=lambda: CORE_FROZEN_NOW + dt.timedelta(days=1))
    assert tomorrow.today_totals() == {"due": 0, "overdue": 2, "referrals": 2, "quiet": 2}
    assert len(tomorrow.overdue(limit=1)) == 1


def test_today_lists_move_with_the_clock(caseload: Caseload) -> None:
    """The same vault read a day later: today's follow-up is now overdue."""
    tomorrow = CaseQueries(caseload.store.engine, clock=lambda: CORE_FROZEN_NOW + dt.timedelta(days=1))
    assert tomorrow.due_today() == []
    assert [r.person_id for r in tomorrow.overdue()] == [caseload.ids["bilal"], caseload.ids["ada"]]


def test_timeline_newest_first_with_amendments_in_order(caseload: Caseload) -> None:
    timeline = caseload.store.queries.timeline(caseload.ids["ada"])
    assert [e.contact.id for e in timeline] == [caseload.contacts["ada_second"], caseload.contacts["ada_first"]]
    second, first = timeline
    assert second.contact.entered_in_error and second.amendments == []
    assert [a.id for a in first.amendments] == caseload.amendments
    assert [a.text for a in first.amendments] == ["The son was present.", "Dog was shut away."]
    assert first.contact.notes == "First visit."
    assert caseload.store.queries.timeline(caseload.ids["cara"]) == []


def test_person_record_reads(caseload: Caseload) -> None:
    q = caseload.store.queries
    ada = q.person(caseload.ids["ada"])
    assert ada is not None and ada.display_name == "Ada Ashdown"
    assert q.person("missing") is None
    [ref] = q.referrals(caseload.ids["ada"])
    assert ref.status == "accepted" and ref.snomed_code == "871731000000106"
    assert q.pending_changes() > 0 and q.open_conflicts() == 0 and q.rejected_changes() == 0


# -- the synthetic demo caseload ------------------------------------------------------------------------------


DEMO_PEOPLE = 8


def _build_demo(template, dest, seed: int = 7) -> CaseStore:
    from sprx_tui.core.demo import build_demo

    shutil.copytree(template.path, dest)
    vault = Vault(dest)
    vault.unlock_with_recovery(template.recovery)
    store = open_store(vault, clock=Clock())
    build_demo(store, people=DEMO_PEOPLE, seed=seed)
    return store


@pytest.fixture(scope="module")
def demo_pair(tmp_path_factory: pytest.TempPathFactory, core_empty_template) -> Iterator[tuple[CaseStore, CaseStore]]:
    """Two demo builds with the same seed and the same frozen clock, in two separate vaults."""
    root = tmp_path_factory.mktemp("demo_pair")
    first = _build_demo(core_empty_template, root / "a")
    second = _build_demo(core_empty_template, root / "b")
    yield first, second
    first.vault.lock()
    second.vault.lock()


def projection(store: CaseStore) -> dict[str, list]:
    """What a person sees of the demo, without ids (ids are random UUIDv7s)."""
    from sqlmodel import Session, select

    from sprx_tui.core.models import (
        CommunityService,
        Contact,
        FollowUp,
        Goal,
        OnwardReferral,
        OutcomeResponse,
        Person,
        Referral,
    )

    with Session(store.engine) as s:
        people = s.exec(select(Person)).all()
        key = {p.id: (p.family_name, p.given_name, p.nhs_number or "", str(p.date_of_birth)) for p in people}

        def per_person(model, *cols):
            return sorted((key[r.person_id], *(str(getattr(r, c)) for c in cols)) for r in s.exec(select(model)).all())

        return {
            "people": sorted(
                (*key[p.id], p.postcode, p.status, tuple(p.safety_flags), p.phone, str(p.next_follow_up_on))
                for p in people
            ),
            "referrals": per_person(Referral, "source", "reasons", "status", "received_on", "snomed_code"),
            "contacts": per_person(Contact, "occurred_at", "mode", "notes", "did_not_attend", "follow_up_on"),
            "follow_ups": per_person(FollowUp, "due_on", "status"),
            "goals": per_person(Goal, "text", "status", "target_on"),
            "onward": per_person(OnwardReferral, "service_name", "kind", "outcome"),
            "outcomes": per_person(OutcomeResponse, "instrument", "time_point", "responses", "complete"),
            "directory": sorted(
                (d.id, d.name, d.area, d.postcode, str(d.last_verified), d.active)
                for d in s.exec(select(CommunityService)).all()
            ),
        }


def test_demo_is_deterministic(demo_pair: tuple[CaseStore, CaseStore]) -> None:
    first, second = (projection(store) for store in demo_pair)
    assert len(first["people"]) == DEMO_PEOPLE
    assert len({p[2] for p in first["people"]}) >= DEMO_PEOPLE - 1  # distinct synthetic NHS numbers
    for part in first:
        assert first[part] == second[part], part


def test_demo_covers_every_state_a_screen_can_show(demo_pair: tuple[CaseStore, CaseStore]) -> None:
    from sqlmodel import Session, select

    from sprx_rules.nhs import is_valid_nhs_number
    from sprx_tui.core.models import CommunityService, OutcomeResponse, Person, PersonStatus, Referral

    store = demo_pair[0]
    q = store.queries
    assert set(q.status_counts()) == {s.value for s in PersonStatus}
    assert q.due_today() and q.overdue() and q.new_referrals()
    with Session(store.engine) as s:
        people = s.exec(select(Person)).all()
        referrals = s.exec(select(Referral)).all()
        outcomes = s.exec(select(OutcomeResponse)).all()
        directory = s.exec(select(CommunityService)).all()
    numbers = [p.nhs_number for p in people if p.nhs_number]
    assert numbers and all(is_valid_nhs_number(n) and n.startswith("999") for n in numbers)
    assert all(p.phone.startswith("+447700900") for p in people)  # Ofcom drama range 07700 900xxx
    assert len({r.source for r in referrals}) >= 3
    assert len({reason for r in referrals for reason in r.reasons}) >= 3
    assert {r.status for r in referrals} >= {"received", "accepted", "declined"}
    assert any(p.safety_flags for p in people)
    assert any(q.plan(p.id) for p in people)
    assert {o.instrument for o in outcomes} == {"ONS4", "UCLA3", "SWEMWBS", "HEALTH_USE"}
    assert {o.time_point for o in outcomes} >= {"baseline", "discharge"}
    assert 140 <= len(directory) <= 160 and len({d.name for d in directory}) == len(directory)
    assert any(not d.active for d in directory)
    assert store.service.verify_audit_chain()
