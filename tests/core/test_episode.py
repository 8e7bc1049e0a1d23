"""An episode's end: discharge with a reason, coded declines, onward referrals with need, consent and
withdrawal, and the GP closing summary as a FHIR document and a letter (core and `sprx export`)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from sprx_tui.core import export, fhir, reports
from sprx_tui.core.models import AuditEvent, FollowUp, Person, Referral, SyncOutbox
from sprx_tui.core.service import InvalidInput, ServiceError
from sprx_tui.core.store import CaseStore, open_store
from sprx_tui.core.vault import Vault
from tests.core.conftest import CORE_PASSPHRASE, CoreCliDemo, core_add_directory_service, core_sprx

NHS = "9434765919"
NOTE = "Private words about the family that never leave."
SWEM = {k: 3 for k in ["optimistic", "useful", "relaxed", "problems", "thinking", "close", "own_mind"]}


def episode(store: CaseStore, consent: str = "full", nhs_number: str | None = NHS) -> str:
    """A person through a whole episode: referral, first contact, a need, a goal, a service attended, measures."""
    svc = store.service
    service_id = core_add_directory_service(store, f"svc-{consent}", "Walking group")
    p = svc.add_person(
        given_name="Nora",
        family_name="Exampleton",
        nhs_number=nhs_number,
        date_of_birth=dt.date(1948, 5, 6),
        address="2 Sample Street",
        phone="07700 900456",
        consent_gp_sharing=consent,
    )
    r = svc.receive_referral(p.id, source="self", reasons=["loneliness"], received_on=dt.date(2026, 10, 1))
    svc.accept_referral(r.id, mode="home_visit", occurred_at=dt.datetime(2026, 10, 5, 10, tzinfo=dt.UTC), notes=NOTE)
    svc.set_follow_up(p.id, svc.today() + dt.timedelta(days=7), "Check in")
    need = svc.record_need(p.id, "loneliness", "Lives alone since spring")
    goal = svc.add_goal(p.id, "Walk with the group on Tuesdays")
    svc.update_goal(goal.id, status="achieved", progress_notes="Progress words that stay here.")
    onward = svc.refer_to_service(p.id, service_id, need_id=need.id, consent=True, notes="Meets at the library")
    svc.record_onward_outcome(onward.id, "attended")
    svc.record_outcome(p.id, "SWEMWBS", "baseline", SWEM, taken_on=dt.date(2026, 10, 5))
    svc.record_outcome(p.id, "SWEMWBS", "discharge", {**SWEM, "useful": 5}, taken_on=dt.date(2026, 11, 20))
    return p.id


# -- discharge -----------------------------------------------------------------------------------------


def test_discharge_closes_the_episode_with_its_reason(core_store: CaseStore) -> None:
    pid = episode(core_store)
    svc = core_store.service
    person = svc.discharge(pid, "moved_away")
    assert person.status == "discharged" and person.status_changed_on == svc.today()
    [referral] = core_store.queries.referrals(pid)
    assert (referral.status, referral.closed_on, referral.close_reason) == ("closed", svc.today(), "moved_away")
    with Session(core_store.engine) as s:
        follow_ups = s.exec(select(FollowUp).where(FollowUp.person_id == pid)).all()
        audit = s.exec(select(AuditEvent).where(AuditEvent.detail.startswith("discharged"))).all()  # type: ignore[attr-defined]
    assert [f.status for f in follow_ups] == ["cancelled"]
    assert [a.detail for a in audit] == ["discharged reason=moved_away referrals=1"]
    with pytest.raises(ServiceError, match="already ended"):
        svc.discharge(pid, "goals_met")
    # A new referral starts another episode.
    svc.receive_referral(pid, source="gp")
    assert core_store.queries.person(pid).status == "referred"


def test_did_not_engage_and_bad_discharges(core_store: CaseStore) -> None:
    pid = episode(core_store)
    svc = core_store.service
    with pytest.raises(InvalidInput) as bad:
        svc.discharge(pid, "bored")
    assert bad.value.errors == {"reason": "Choose why the episode is ending from the list."}
    with pytest.raises(InvalidInput) as bad:
        svc.discharge(pid, "other", "  ")
    assert bad.value.errors == {"note": "Say in a few words why the episode is ending."}
    with pytest.raises(InvalidInput, match="future"):
        svc.discharge(pid, "goals_met", on=svc.today() + dt.timedelta(days=1))
    assert core_store.queries.person(pid).status == "active"  # nothing was written
    assert svc.discharge(pid, "did_not_engage").status == "did_not_engage"


def test_decline_reasons_are_coded_with_words(core_store: CaseStore) -> None:
    svc = core_store.service
    p = svc.add_person(given_name="Olu", family_name="Sample")
    r1 = svc.receive_referral(p.id, source="gp")
    declined = svc.decline_referral(r1.id, code="other_service")
    assert (declined.decline_code, declined.decline_reason) == ("other_service", "Already supported by another service")
    assert declined.snomed_code == "871711000000103"
    r2 = svc.receive_referral(p.id, source="gp")
    with pytest.raises(InvalidInput) as bad:
        svc.decline_referral(r2.id, "", code="other")
    assert bad.value.errors == {"decline_reason": "Give a reason for declining the referral."}
    with pytest.raises(InvalidInput, match="from the list"):
        svc.decline_referral(r2.id, "Because", code="whim")
    words = svc.decline_referral(r2.id, "Lives in another county", code="moved_away")
    assert (words.decline_code, words.decline_reason) == ("moved_away", "Lives in another county")


# -- onward referrals ----------------------------------------------------------------------------------


def test_onward_referral_with_need_and_consent_then_withdrawn(core_store: CaseStore) -> None:
    svc = core_store.service
    pid = episode(core_store)
    other = svc.add_person(given_name="Pat", family_name="Other")
    their_need = svc.record_need(other.id, "money")
    service_id = core_add_directory_service(core_store, "svc-money", "Money advice")
    with pytest.raises(InvalidInput) as bad:
        svc.refer_to_service(pid, service_id, need_id=their_need.id)
    assert bad.value.errors == {"need": "Choose one of this person's needs."}
    with pytest.raises(InvalidInput, match="short note"):
        svc.refer_to_service(pid, service_id, notes="x" * 501)
    need = svc.record_need(pid, "money")
    row = svc.refer_to_service(pid, service_id, need_id=need.id, consent=True, notes="  Tuesday drop-in  ")
    assert (row.need, row.need_id, row.consent, row.notes) == ("money", need.id, True, "Tuesday drop-in")
    before = reports.build_report(core_store).uptake
    assert (before.onward_referrals, before.withdrawn) == (2, 0)

    with pytest.raises(InvalidInput) as bad:
        svc.withdraw_onward_referral(row.id, "other")
    assert bad.value.errors == {"words": "Say in a few words why the referral is withdrawn."}
    gone = svc.withdraw_onward_referral(row.id, "wrong_service", "Meant the debt clinic")
    assert (gone.withdrawn_on, gone.withdrawn_reason) == (svc.today(), "Wrong service: Meant the debt clinic")
    with pytest.raises(ServiceError, match="already withdrawn"):
        svc.withdraw_onward_referral(row.id, "made_in_error")
    with pytest.raises(ServiceError, match="no outcome to record"):
        svc.record_onward_outcome(row.id, "attended")
    request = fhir.onward_service_request(gone)
    assert request["status"] == "revoked" and "Withdrawn" in request["note"][-1]["text"]
    # Kept in the record, shown as withdrawn; out of the uptake figures.
    kept = [o for o in core_store.queries.onward_referrals(pid) if o.id == row.id]
    assert kept and kept[0].withdrawn_on == svc.today()
    after = reports.build_report(core_store).uptake
    assert (after.onward_referrals, after.services, after.withdrawn) == (1, 1, 1)
    assert "1 withdrawn as made wrongly, not counted above" in reports.render_text(reports.build_report(core_store))
    # And out of the GP summary's services.
    assert export.closing_summary(core_store, pid, audit=False)["services_referred"] == 1  # type: ignore[index]
    # The withdrawal syncs as a patch of its two fields.
    with Session(core_store.engine) as s:
        patches = s.exec(select(SyncOutbox).where(SyncOutbox.row_id == row.id, SyncOutbox.op == "patch")).all()
    assert [sorted(p.fields) for p in patches] == [["withdrawn_on", "withdrawn_reason"]]


# -- the GP closing summary ------------------------------------------------------------------------------


def validate_bundle(bundle: dict[str, Any]) -> Any:
    from fhir.resources.R4B.bundle import Bundle

    parsed = Bundle.model_validate(bundle)
    assert parsed.type == "document"
    assert bundle["entry"][0]["resource"]["resourceType"] == "Composition"
    composition = bundle["entry"][0]["resource"]
    # Everything the Composition lists is in the document.
    listed = {e["reference"] for section in composition["section"] for e in section["entry"]}
    assert listed == {e["fullUrl"] for e in bundle["entry"][1:]}
    return parsed


def test_full_consent_document_and_letter(core_store: CaseStore, tmp_path: Path) -> None:
    pid = episode(core_store, "full")
    core_store.service.discharge(pid, "goals_met")
    preview = export.render_closing_summary(export.closing_summary(core_store, pid, audit=False))
    fhir_path, letter_path = export.write_gp_summary(core_store, pid, tmp_path / "nora.fhir.json")
    assert letter_path == tmp_path / "nora.txt"
    for path in (fhir_path, letter_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    bundle = json.loads(fhir_path.read_text())
    validate_bundle(bundle)
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds[:3] == ["Composition", "Patient", "ServiceRequest"] and "Goal" in kinds and "Observation" in kinds
    text = fhir_path.read_text()
    assert "Exampleton" in text and "Walk with the group on Tuesdays" in text and "Walking group" in text
    assert "Progress words" not in text and NOTE not in text and "Meets at the library" not in text
    swemwbs = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"]
    assert all("NHS Health Scotland" in o["note"][0]["text"] for o in swemwbs)
    letter = letter_path.read_text()
    # The letter is exactly what the preview showed, under its heading.
    assert letter == f"{export.GP_LETTER_HEAD}\n{'=' * len(export.GP_LETTER_HEAD)}\n\n{preview}"
    assert "Name: Nora Exampleton" in letter and "Reason the episode ended: Goals met" in letter
    assert "Services used: Walking group." in letter and "© NHS Health Scotland" in letter
    with Session(core_store.engine) as s:
        exports = s.exec(select(AuditEvent).where(AuditEvent.action == "EXPORT", AuditEvent.person_id == pid)).all()
    assert [e.detail.split(" resources=")[0] for e in exports] == ["gp_summary consent=full codes=1"]
    with pytest.raises(ServiceError, match="never overwrite"):
        export.write_gp_summary(core_store, pid, tmp_path / "nora.fhir.json")


def test_codes_only_document_has_no_names_or_words(core_store: CaseStore, tmp_path: Path) -> None:
    pid = episode(core_store, "codes_only")
    core_store.service.discharge(pid, "moved_away")
    bundle = export.gp_summary_bundle(core_store, pid)
    assert isinstance(bundle, dict)
    validate_bundle(bundle)
    text = json.dumps(bundle)
    for words in ("Nora", "Exampleton", "Sample Street", "07700", "Walk with", "Walking group", NOTE, "Lives alone"):
        assert words not in text, words
    [patient] = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert set(patient) == {"resourceType", "id", "meta", "identifier", "birthDate"}
    assert {e["resource"]["resourceType"] for e in bundle["entry"]} == {"Composition", "Patient", "ServiceRequest"}
    assert "SNOMED CT 871731000000106" in text and "Reason the episode ended: Moved away" in text
    _fhir, letter = export.write_gp_summary(core_store, pid, tmp_path / "codes.json")
    body = letter.read_text()
    assert "Name:" not in body and "Contacts: 1" in body and f"Discharged: {core_store.service.today()}" in body


def test_no_consent_writes_nothing(core_store: CaseStore, tmp_path: Path) -> None:
    pid = episode(core_store, "none")
    core_store.service.discharge(pid, "goals_met")
    assert export.gp_summary_bundle(core_store, pid) == export.CONSENT_REFUSED
    assert export.render_closing_summary(export.closing_summary(core_store, pid)) == export.CONSENT_REFUSED
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ServiceError, match="has not agreed to share"):
        export.write_gp_summary(core_store, pid, out / "none.fhir.json")
    assert list(out.iterdir()) == []


def test_find_person_by_nhs_number_or_id(core_store: CaseStore) -> None:
    pid = episode(core_store)
    assert export.find_person(core_store, "943 476 5919").id == pid  # type: ignore[union-attr]
    assert export.find_person(core_store, pid).id == pid  # type: ignore[union-attr]
    for nobody in ("9999999999", "no-such-id", "", "12"):
        assert export.find_person(core_store, nobody) is None


# -- `sprx export --format gp-summary` -------------------------------------------------------------------


@pytest.fixture
def cli_vault(core_cli_demo: CoreCliDemo, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the demo vault with two discharged people of our own: full and codes-only sharing."""
    path = tmp_path / "vault"
    shutil.copytree(core_cli_demo.path, path)
    vault = Vault(path)
    vault.unlock(bytearray(CORE_PASSPHRASE.encode()))
    try:
        store = open_store(vault)
        with Session(store.engine) as s:
            taken = set(s.exec(select(Person.nhs_number)))
        assert NHS not in taken and "9449305552" not in taken
        ids = {"full": episode(store, "full"), "codes": episode(store, "codes_only", "9449305552")}
        for pid in ids.values():
            store.service.discharge(pid, "goals_met")
    finally:
        vault.lock()
    return path, ids


@pytest.mark.slow
def test_cli_gp_summary(cli_vault: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    path, ids = cli_vault
    out = tmp_path / "out" / "summary.fhir.json"
    out.parent.mkdir()
    base = ["export", "--vault", str(path), "--passphrase-stdin", "--format", "gp-summary"]
    done = core_sprx([*base, "--person", "944 930 5552", "--out", str(out), "--yes"])
    assert done.returncode == 0, done.stderr
    assert "sharing: codes only" in done.stderr and "NOT encrypted" in done.stderr
    bundle = json.loads(out.read_text())
    validate_bundle(bundle)
    assert "Exampleton" not in out.read_text() and (out.parent / "summary.txt").is_file()
    # By record id: the same file again is refused (exports never overwrite).
    again = core_sprx([*base, "--person", ids["full"], "--out", str(out), "--yes"])
    assert again.returncode == 1 and again.stderr.count("\n") == 1 and "never overwrite" in again.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("extra", "sentence"),
    [
        (["--person", "9999999999", "--yes"], "No one in this vault has that NHS number or record id"),
        (["--person", "not-a-person", "--yes"], "No one in this vault has that NHS number or record id"),
        (["--yes"], "Say whose summary to export: add --person"),
        (["--person", "9434765919"], "Exports must be confirmed; add --yes"),
    ],
)
def test_cli_gp_summary_refusals(
    cli_vault: tuple[Path, dict[str, str]], tmp_path: Path, extra: list[str], sentence: str
) -> None:
    path, _ids = cli_vault
    out = tmp_path / "s.fhir.json"
    base = ["export", "--vault", str(path), "--passphrase-stdin", "--format", "gp-summary", "--out", str(out)]
    done = core_sprx([*base, *extra])
    assert done.returncode != 0
    assert done.stderr.startswith("sprx: " + sentence) and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr and not out.exists()


def test_referral_columns_are_synced_and_gated() -> None:
    from sprx_rules.gate import FIELDS
    from sync.schema import TABLES

    new: Callable[[str], set[str]] = lambda t: set(TABLES[t].fields) & set(FIELDS[t])  # noqa: E731
    assert {"decline_code", "closed_on", "close_reason", "close_note"} <= new("referral")
    assert {"need_id", "consent", "withdrawn_on", "withdrawn_reason"} <= new("onward_referral")
    assert set(Referral.model_fields) >= {"closed_on", "close_reason"}
