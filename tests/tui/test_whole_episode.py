"""A person's whole episode by keys, in one app session: added as a self-referral through the New person form,
first contact, a new phone and a safety flag, an onward referral with its need and consent then withdrawn,
discharge, and the GP summary previewed and written (codes only: no names leave). After each step the store is
checked as well as the screen: the service's rows, the outbox rows pending for sync, and the audit events."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, col, select
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Select

from sprx_tui.app import SprxApp
from sprx_tui.core.models import SNOMED_REFERRAL_ACCEPTED, AuditEvent, SyncOutbox
from sprx_tui.core.store import CaseStore
from sprx_tui.screens.caseload import CaseloadScreen, CaseloadTable
from sprx_tui.screens.contact import ContactScreen
from sprx_tui.screens.directory import DirectoryScreen
from sprx_tui.screens.episode import (
    DischargeModal,
    OnwardReferralModal,
    ReasonChoiceModal,
    WithdrawOnwardModal,
)
from sprx_tui.screens.person import PersonScreen
from sprx_tui.screens.person_form import PersonFormScreen
from sprx_tui.screens.plan import PlanScreen
from sprx_tui.widgets.person_header import PersonHeader
from sprx_tui.widgets.timeline import ContactTimeline
from tests.tui.conftest import FROZEN_NOW
from tests.tui.settling import open_area, settle, wait_until
from tests.tui.test_episode_workflow import preview_text
from tests.tui.test_person_form import make_app, people_named

SIZE = (120, 40)
GIVEN, FAMILY = "Orla", "Wholeepisode"
NHS = "9449305552"  # valid, and held by no one in the demo vault (checked below)
AUDIT_ROW = ("audit_event", "insert")


@pytest.fixture(autouse=True)
def _config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPRX_CONFIG_DIR", str(tmp_path / "config"))


class Ledger:
    """The person's pending outbox rows and audit events, and what each step added to them."""

    def __init__(self, store: CaseStore) -> None:
        self.store = store
        self.person_id = ""
        self.outbox_seen = 0
        self.audit_seen = 0

    def _read(self) -> tuple[list[SyncOutbox], list[AuditEvent]]:
        with Session(self.store.engine) as s:
            outbox = s.exec(
                select(SyncOutbox).where(SyncOutbox.person_id == self.person_id).order_by(col(SyncOutbox.mutation_id))
            ).all()
            audit = s.exec(
                select(AuditEvent).where(AuditEvent.person_id == self.person_id).order_by(col(AuditEvent.seq))
            ).all()
            return list(outbox), list(audit)

    def actions(self) -> list[str]:
        return [a.action for a in self._read()[1]]

    def expect(self, outbox: list[tuple[str, ...]], audit: list[tuple[str, str, str]]) -> None:
        """What the last step added: outbox rows as (table, op, *fields patched), all pending for sync; audit events
        as (action, record type, detail)."""
        rows, events = self._read()
        assert {o.status for o in rows} == {"pending"}  # a demo vault is not enrolled: nothing has left
        added = [(o.tbl, o.op, *(sorted(o.fields) if o.op == "patch" else ())) for o in rows[self.outbox_seen :]]
        assert added == outbox
        assert [(a.action, a.record_type, a.detail) for a in events[self.audit_seen :]] == audit
        # Each audit event goes to the server too, as an insert of its own.
        assert sum(1 for o in rows[self.outbox_seen :] if o.tbl == "audit_event") == len(audit)
        self.outbox_seen, self.audit_seen = len(rows), len(events)


async def tab_to(pilot: Pilot[Any], widget_id: str) -> None:
    """Press Tab until the box `widget_id` has the focus (as a link worker moves through a form)."""
    for _ in range(40):
        focused = pilot.app.focused
        if focused is not None and focused.id == widget_id:
            return
        await pilot.press("tab")
    raise AssertionError(f"Tab never reached #{widget_id}")


@pytest.mark.slow  # the whole episode through every screen; each step is in the fast tier on its own
async def test_a_whole_episode_from_self_referral_to_the_gp_letter_by_keys(
    unlocked_store: CaseStore, tmp_path: Path
) -> None:
    from fhir.resources.R4B.bundle import Bundle

    store, q = unlocked_store, unlocked_store.queries
    assert not q.people_with_nhs_number(NHS)
    ledger = Ledger(store)
    app: SprxApp = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        # 1. New person, a self-referral, from the caseload's `a`.
        await open_area(pilot, "f3", CaseloadScreen)
        await pilot.press("a")
        await wait_until(pilot, lambda: isinstance(app.screen, PersonFormScreen), what="the new person form")
        form = app.screen
        await pilot.press(*GIVEN, "tab", *FAMILY, "tab", *"04/03/1951", "tab", *"944 930 5552", "tab")
        await pilot.press(*"01632 960101")
        await tab_to(pilot, "consent_social_prescribing")
        await pilot.press("space")
        await tab_to(pilot, "consent_gp_sharing")
        await pilot.press("enter", "down", "enter")  # Full record -> Codes only
        await wait_until(
            pilot, lambda: form.query_one("#consent_gp_sharing", Select).value == "codes_only", what="codes only"
        )
        assert form.query_one("#referral_source", Select).value == "self"  # a self-referral unless changed
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, PersonScreen), what="the new person's record")
        await settle(pilot)
        record = app.screen
        assert isinstance(record, PersonScreen)
        [person] = people_named(store, FAMILY)
        ledger.person_id = person.id
        assert record.person_id == person.id
        assert (person.given_name, person.nhs_number, person.phone) == (GIVEN, NHS, "+441632960101")
        assert person.date_of_birth == dt.date(1951, 3, 4)
        assert (person.consent_social_prescribing, person.consent_gp_sharing) == (True, "codes_only")
        [referral] = q.referrals(person.id)
        assert (referral.source, referral.status, person.status) == ("self", "received", "referred")
        header = record.query_one(PersonHeader)
        assert f"{GIVEN} {FAMILY}" in header.identity_text and "NHS 944 930 5552" in header.identity_text
        ledger.expect(
            [("person", "insert"), AUDIT_ROW, ("referral", "insert"), AUDIT_ROW, AUDIT_ROW],
            [("CREATE", "person", ""), ("CREATE", "referral", ""), ("VIEW", "person", "")],
        )

        # 2. The first contact: accept the referral with it (Referral tab, `a`).
        await pilot.press("r")
        await settle(pilot)
        await pilot.press("a")
        await wait_until(pilot, lambda: isinstance(app.screen, ContactScreen), what="the contact form")
        assert app.screen.referral_id == referral.id
        await pilot.press(*"23/11/2026 09:00", "tab", *"40", "tab", "p", "tab", *"First call, keen on walking.")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: app.screen is record, what="back on the record")
        await settle(pilot)
        [entry] = q.timeline(person.id)
        contact = entry.contact
        assert (contact.mode, contact.duration_minutes, contact.referral_id) == ("phone", 40, referral.id)
        assert contact.notes == "First call, keen on walking."
        assert [r.status for r in q.referrals(person.id)] == ["accepted"]
        assert q.person(person.id).status == "active"
        top = str(record.query_one(ContactTimeline).get_option_at_index(0).prompt)
        assert "First call, keen on walking." in top
        assert "Active" in record.query_one(PersonHeader).identity_text
        ledger.expect(
            [
                ("contact", "insert"),
                AUDIT_ROW,
                ("referral", "patch", "decided_on", "snomed_code", "status"),
                ("person", "patch", "status"),
                AUDIT_ROW,
            ],
            [("CREATE", "contact", ""), ("UPDATE", "referral", f"accepted snomed={SNOMED_REFERRAL_ACCEPTED}")],
        )

        # 3. Their details (`i`): a new phone, and a safety flag with its reason.
        await pilot.press("i")
        await wait_until(pilot, lambda: isinstance(app.screen, PersonFormScreen), what="the details form")
        details = app.screen
        await tab_to(pilot, "phone")
        await pilot.press(*"01632 960202")  # the box's text is selected on Tab, so typing replaces it
        await tab_to(pilot, "flag_animals")
        await pilot.press("space")
        await tab_to(pilot, "flag_reason")
        await pilot.press(*"Large dog seen on the first visit")
        assert details.query_one("#phone", Input).value == "01632 960202"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: app.screen is record, what="back on the record")
        await wait_until(
            pilot, lambda: "Animals in the home" in record.query_one(PersonHeader).flags_text, what="the flag shown"
        )
        saved = q.person(person.id)
        assert (saved.phone, saved.safety_flags) == ("+441632960202", ["animals"])
        [flag] = q.safety_flag_history(person.id)
        assert (flag.flag, flag.change, flag.reason) == ("animals", "added", "Large dog seen on the first visit")
        ledger.expect(
            [("person", "patch", "phone", "safety_flags"), AUDIT_ROW, ("safety_flag_change", "insert"), AUDIT_ROW],
            [("UPDATE", "person", "phone,safety_flags"), ("CREATE", "safety_flag_change", "added animals")],
        )
        await pilot.press("v")  # the overview says who added the flag, when, and why
        overview = record.query_one("#overview-body")
        await wait_until(pilot, lambda: "Large dog seen" in str(overview.render()), what="the flag's reason")
        assert "added 23/11/2026 by" in str(overview.render())

        # 4. A need in the plan, then an onward referral for it with the person's consent.
        await pilot.press("p")
        await wait_until(pilot, lambda: isinstance(app.screen, PlanScreen), what="the plan")
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, ReasonChoiceModal), what="the need dialog")
        await pilot.press("home", "enter", *"Wants company on weekdays", "ctrl+s")
        await wait_until(pilot, lambda: len(q.needs(person.id)) == 1, what="the need saved")
        await wait_until(pilot, lambda: isinstance(app.screen, PlanScreen))
        [need] = q.needs(person.id)
        assert (need.category, need.description) == ("loneliness", "Wants company on weekdays")
        ledger.expect([("need", "insert"), AUDIT_ROW], [("CREATE", "need", "")])
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is record)
        await pilot.press("f")
        await wait_until(pilot, lambda: isinstance(app.screen, DirectoryScreen), what="the directory")
        await wait_until(pilot, lambda: bool(app.screen.rows), what="the directory's first results")
        directory = app.screen
        await pilot.press("enter", "r")
        await wait_until(pilot, lambda: isinstance(app.screen, OnwardReferralModal), what="the referral dialog")
        await pilot.press("home")
        assert "Chosen: Loneliness or isolation" in str(app.screen.query_one("#chosen").render())
        await pilot.press("enter", *"Meets Tuesdays", "tab", "space", "ctrl+s")
        await wait_until(pilot, lambda: app.screen is directory, what="the referral saved")
        [onward] = q.onward_referrals(person.id)
        assert (onward.need_id, onward.notes, onward.consent, onward.withdrawn_on) == (
            need.id,
            "Meets Tuesdays",
            True,
            None,
        )
        ledger.expect([("onward_referral", "insert"), AUDIT_ROW], [("CREATE", "onward_referral", "")])

        # 5. Withdrawn from the Onward tab: kept, marked withdrawn.
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is record)
        await pilot.press("o")
        await settle(pilot)
        await pilot.press("x")
        await wait_until(pilot, lambda: isinstance(app.screen, WithdrawOnwardModal), what="the withdraw dialog")
        assert onward.service_name in str(app.screen.query_one(".muted").render())
        await pilot.press("home", "ctrl+s")  # made in error
        await wait_until(pilot, lambda: app.screen is record, what="the withdrawal saved")
        table = record.query_one("#onward-table", DataTable)
        await wait_until(pilot, lambda: "WITHDRAWN" in str(table.get_row_at(0)), what="the row marked withdrawn")
        [kept] = q.onward_referrals(person.id)
        assert (kept.withdrawn_on, kept.withdrawn_reason) == (FROZEN_NOW.date(), "Made in error")
        assert table.border_subtitle == "1 made, 1 withdrawn"
        ledger.expect(
            [("onward_referral", "patch", "withdrawn_on", "withdrawn_reason"), AUDIT_ROW],
            [("UPDATE", "onward_referral", "withdrawn reason=made_in_error")],
        )

        # 6. Discharge (goals met), and the preview of what the GP will get: codes only, no names.
        await pilot.press("D")
        await wait_until(pilot, lambda: isinstance(app.screen, DischargeModal), what="the discharge dialog")
        dialog = app.screen
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: dialog.summary is not None, what="the summary preview, in the same dialog")
        modal = dialog.summary
        text = preview_text(modal)
        for private in (GIVEN, FAMILY, "keen on walking", "Wants company", "Meets Tuesdays", "960202"):
            assert private not in text, private
        assert "NHS number: 9449305552" in text and "Reason the episode ended: Goals met" in text
        assert "Codes only" in str(modal.query_one(".muted").render())
        assert q.person(person.id).status == "discharged"
        [closed] = q.referrals(person.id)
        assert (closed.status, closed.close_reason, closed.closed_on) == ("closed", "goals_met", FROZEN_NOW.date())
        ledger.expect(  # the preview is shown, not sent: no EXPORT yet
            [("referral", "patch", "close_reason", "closed_on", "status"), ("person", "patch", "status"), AUDIT_ROW],
            [("UPDATE", "person", "discharged reason=goals_met referrals=1")],
        )

        # 7. Written: the FHIR document and the letter beside it.
        modal.query_one("#path", Input).value = str(tmp_path / "orla.fhir.json")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: app.screen is record, what="back on the record")
        await wait_until(pilot, lambda: "EXPORT" in ledger.actions(), what="the summary written and audited")
        await wait_until(
            pilot, lambda: "Discharged" in record.query_one(PersonHeader).identity_text, what="the header re-read"
        )
        ledger.expect([AUDIT_ROW], [("EXPORT", "person", "gp_summary consent=codes_only codes=1 resources=3")])

        # 8. Back in the caseload, found by name and shown as discharged.
        await pilot.press("escape")
        caseload = await open_area(pilot, "f3", CaseloadScreen)
        await pilot.press("slash", *FAMILY.lower()[:8])
        await wait_until(pilot, lambda: caseload.total == 1, what="the filtered caseload")
        rows = caseload.query_one(CaseloadTable)
        assert list(rows.rows) == [person.id]
        assert "Discharged" in rows.get_row_at(0)
    assert store.service.verify_audit_chain()

    raw = (tmp_path / "orla.fhir.json").read_text()
    bundle = json.loads(raw)
    parsed = Bundle.model_validate(bundle)
    assert parsed.type == "document" and bundle["entry"][0]["resource"]["resourceType"] == "Composition"
    letter = (tmp_path / "orla.txt").read_text()
    assert text in letter
    for private in (GIVEN, FAMILY, "keen on walking", "Wants company", "Meets Tuesdays", "960202", "960101"):
        assert private not in raw and private not in letter, private
