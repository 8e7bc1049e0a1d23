"""The end of an episode travels: discharge, a coded decline, an onward referral's need, consent and
withdrawal reach the server and the other laptop field by field, and the server's report reads them."""
# ruff: noqa: F811 - pytest fixtures imported from the harness are redefined as parameters

from __future__ import annotations

from sqlmodel import Session

from sprx_rules.report import quarter_of, report_to_dict
from sprx_tui.core import reports
from sprx_tui.core.models import CommunityService
from sync.server.report import build_practice_report
from tests.sync.client_harness import (  # noqa: F401 - fixtures
    Net,
    net,
    vault_template,
)


def synced(*laps) -> None:
    for lap in laps:
        r = lap.sync()
        assert r.exit_code in (0, 4), r.message


def test_discharge_decline_and_withdrawal_reach_the_other_laptop_and_the_server(net: Net) -> None:
    a, b = net.laptop("A"), net.laptop("B")
    svc = a.service
    with Session(a.store.engine) as s, s.begin():
        s.add(CommunityService(id="svc-walk", name="Walking group", needs=["loneliness"]))
    p = svc.add_person(given_name="Ann", family_name="Example", nhs_number="9434765919")
    r = svc.receive_referral(p.id, source="self", reasons=["loneliness"])
    svc.accept_referral(r.id, mode="phone", notes="First call")
    need = svc.record_need(p.id, "loneliness")
    onward = svc.refer_to_service(p.id, "svc-walk", need_id=need.id, consent=True, notes="Tuesdays")
    svc.withdraw_onward_referral(onward.id, "wrong_service", "Meant the lunch club")
    svc.discharge(p.id, "other", "Went to live with family")
    q = svc.add_person(given_name="Bea", family_name="Example")
    declined = svc.decline_referral(svc.receive_referral(q.id, source="gp").id, code="not_contactable")
    synced(a, b)

    [theirs] = b.queries.referrals(p.id)
    assert (theirs.status, theirs.close_reason, theirs.close_note) == ("closed", "other", "Went to live with family")
    assert theirs.closed_on == net.clock.now.date() and b.queries.person(p.id).status == "discharged"
    [gone] = b.queries.onward_referrals(p.id)
    assert (gone.need_id, gone.consent, gone.notes) == (need.id, True, "Tuesdays")
    assert gone.withdrawn_reason == "Wrong service: Meant the lunch club" and gone.withdrawn_on is not None
    assert b.queries.referrals(q.id)[0].decline_code == declined.decline_code == "not_contactable"
    assert b.dump() == a.dump() == net.server_dump("alice")

    # The server counts them as the laptop does: the episode ended, the withdrawal out of uptake.
    today = net.clock.now.date()
    laptop = reports.build_report(a.store, today)
    server = build_practice_report(net.server.store, "P1", today=today)
    server.scope = laptop.scope
    assert report_to_dict(server) == report_to_dict(laptop)
    assert laptop.episodes_ended["other"] == 1 and (laptop.uptake.onward_referrals, laptop.uptake.withdrawn) == (0, 1)
    in_quarter = reports.build_report(a.store, today, period=quarter_of(today))
    on_server = build_practice_report(net.server.store, "P1", today=today, period=quarter_of(today))
    on_server.scope = in_quarter.scope
    assert report_to_dict(on_server) == report_to_dict(in_quarter) and in_quarter.episodes_ended["other"] == 1
