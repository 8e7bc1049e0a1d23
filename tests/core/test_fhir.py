"""FHIR R4 export validated with fhir.resources (R4B models), and the consent-aware closing summary for the GP."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import stat
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from sprx_tui.core import export, fhir
from sprx_tui.core.demo import build_demo
from sprx_tui.core.models import AuditEvent, CommunityService
from sprx_tui.core.service import NotFound, ServiceError
from sprx_tui.core.store import CaseStore, open_store
from sprx_tui.core.vault import FLOOR, Vault

NOW = dt.datetime(2026, 11, 23, 10, 30, tzinfo=dt.UTC)
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
FIGURE = "urn:sprx:outcome-figure"
DECLINED = "871711000000103"
# UK Core profile of each resource type the export writes (HL7 UK; UK Core has no Goal profile).
UK_CORE = {
    kind: f"https://fhir.hl7.org.uk/StructureDefinition/UKCore-{kind}"
    for kind in ("Patient", "Observation", "Encounter", "ServiceRequest", "CarePlan", "Questionnaire",
                 "QuestionnaireResponse", "Organization")
}  # fmt: skip
NHS = "9434765919"
NOTE = "Confidential note: talked about the eviction letter."
WRONG = "Entered on the wrong record: about somebody else entirely."


def validator(resource_type: str) -> Any:
    """The R4B pydantic model class for a resource type (fhir.resources >= 8)."""
    import importlib

    module = importlib.import_module(f"fhir.resources.R4B.{resource_type.lower()}")
    return getattr(module, resource_type)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CaseStore]:
    path = tmp_path_factory.mktemp("fhir") / "vault"
    vault, _ = Vault.create(path, bytearray(b"walking group on tuesday"), kdf=FLOOR)
    s = open_store(vault, clock=lambda: NOW)
    build_demo(s, people=12, seed=3)
    yield s
    vault.lock()


@pytest.fixture(scope="module")
def people(store: CaseStore) -> dict[str, str]:
    """Hand-made people whose resources the tests look at closely."""
    svc = store.service
    with Session(store.engine) as s:
        service = s.exec(select(CommunityService).where(CommunityService.active == True)).first()  # noqa: E712
    assert service is not None
    ada = svc.add_person(
        given_name="Ada",
        family_name="Testcase",
        preferred_name="Addie",
        nhs_number=NHS,
        date_of_birth=dt.date(1950, 2, 3),
        postcode="LS6 1AB",
        address="1 Example Road",
        phone="07700 900123",
        email="ada@example.org",
        consent_gp_sharing="codes_only",
    )
    ref = svc.receive_referral(ada.id, source="gp", reasons=["loneliness"], received_on=dt.date(2026, 9, 1))
    first = svc.accept_referral(ref.id, mode="home_visit", occurred_at=NOW - dt.timedelta(days=60), notes=NOTE)
    wrong = svc.record_contact(ada.id, mode="video", occurred_at=NOW - dt.timedelta(days=50), notes=WRONG)
    svc.mark_entered_in_error(wrong.id, "Wrong person")
    svc.amend_contact(first.id, "Also discussed the walking group.", "Detail missed")
    svc.record_contact(ada.id, mode="phone", occurred_at=NOW - dt.timedelta(days=40), did_not_attend=True)
    goal = svc.add_goal(ada.id, "Join the walking group", target_on=dt.date(2026, 12, 1))
    svc.add_action(goal.id, "Find the meeting point", due_on=dt.date(2026, 11, 30))
    svc.update_goal(goal.id, status="achieved")
    svc.add_goal(ada.id, "Sort out the gas bill")
    svc.record_what_matters(ada.id, "Having someone to talk to", life_area="connection")
    onward = svc.refer_to_service(
        ada.id, service.id, kind="accompanied", need="loneliness", made_on=dt.date(2026, 10, 1)
    )
    svc.record_onward_outcome(onward.id, "attended", outcome_on=dt.date(2026, 10, 8))
    swem = {k: 3 for k in ["optimistic", "useful", "relaxed", "problems", "thinking", "close", "own_mind"]}
    svc.record_outcome(ada.id, "SWEMWBS", "baseline", swem, taken_on=dt.date(2026, 9, 2))
    svc.record_outcome(ada.id, "SWEMWBS", "discharge", {**swem, "useful": 5}, taken_on=dt.date(2026, 11, 20))
    svc.record_outcome(
        ada.id, "ONS4", "baseline", {"life_satisfaction": 4, "worthwhile": None, "happiness": 6, "anxiety": 7}
    )
    svc.record_outcome(ada.id, "HEALTH_USE", "baseline", {"gp_appointments": 3, "ae_attendances": 1})
    svc.discharge(ada.id)

    bob = svc.add_person(given_name="Bob", family_name="Declined", nhs_number="9449305552")
    r = svc.receive_referral(bob.id, source="pharmacy", reasons=["money"], received_on=dt.date(2026, 11, 1))
    svc.decline_referral(r.id, "Moved away from the area.")

    cy = svc.add_person(given_name="Cy", family_name="Private", consent_gp_sharing="none")
    full = svc.add_person(given_name="Di", family_name="Sharer", consent_gp_sharing="full", nhs_number="9999958125")
    return {"ada": ada.id, "bob": bob.id, "cy": cy.id, "full": full.id, "goal": goal.id, "onward": onward.id}


@pytest.fixture(scope="module")
def bundle(store: CaseStore, people: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("fhir_out") / "export.fhir.json"
    n = export.export_fhir(store, out)
    data = json.loads(out.read_text())
    assert n == len(data["entry"])
    data["_path"] = str(out)
    return data


def resources(bundle: dict[str, Any], kind: str, person_id: str | None = None) -> list[dict[str, Any]]:
    out = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]
    if person_id is None:
        return out
    ref = f"urn:uuid:{person_id}"
    return [r for r in out if r.get("id") == person_id or r.get("subject", {}).get("reference") == ref]


def test_bundle_validates_and_every_resource_type_validates(bundle: dict[str, Any]) -> None:
    from fhir.resources.R4B.bundle import Bundle

    body = {k: v for k, v in bundle.items() if k != "_path"}
    parsed = Bundle.model_validate(body)
    assert parsed.type == "collection" and len(parsed.entry) == len(body["entry"])
    kinds = Counter(e["resource"]["resourceType"] for e in body["entry"])
    assert set(kinds) == {
        "Patient", "ServiceRequest", "Encounter", "CarePlan", "Goal", "Questionnaire", "QuestionnaireResponse",
        "Observation",
    }  # fmt: skip
    for e in body["entry"]:
        validator(e["resource"]["resourceType"]).model_validate(e["resource"])
        assert e["fullUrl"] == f"urn:uuid:{e['resource']['id']}"
    # Every reference points at a resource in the bundle.
    urls = {e["fullUrl"] for e in body["entry"]}
    refs = set(re.findall(r'"reference": "(urn:uuid:[^"]+)"', json.dumps(body)))
    assert refs and refs <= urls
    assert kinds["Patient"] == kinds["CarePlan"] == 16
    assert kinds["Questionnaire"] == 4  # ONS4, UCLA3, SWEMWBS and health use, once each


def local_code(concept: dict[str, Any]) -> str:
    """The code of a concept's local (urn:sprx:) coding."""
    (code,) = [c["code"] for c in concept["coding"] if c["system"].startswith("urn:sprx:")]
    return code


def test_every_resource_of_a_uk_core_type_declares_its_profile(bundle: dict[str, Any]) -> None:
    assert bundle["meta"]["profile"] == ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-Bundle"]
    checked = Counter()
    for e in bundle["entry"]:
        resource = e["resource"]
        kind = resource["resourceType"]
        if kind in UK_CORE:
            assert resource["meta"]["profile"] == [UK_CORE[kind]], resource["id"]
            checked[kind] += 1
        else:
            assert kind == "Goal" and "profile" not in resource.get("meta", {})
    assert set(checked) == set(UK_CORE) - {"Organization"}  # the export has no Organization resource yet
    # Tags already in meta (the outcome time point) are kept beside the profile.
    answers = resources(bundle, "QuestionnaireResponse")
    assert all(q["meta"]["tag"][0]["system"] == "urn:sprx:time-point" for q in answers)


def test_nhs_number_carries_its_verification_status(bundle: dict[str, Any], people: dict[str, str]) -> None:
    untraced = {
        "url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus",
        "valueCodeableConcept": {"coding": [{
            "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland",
            "code": "02", "display": "Number present but not traced",
        }]},
    }  # fmt: skip
    numbered = [p for p in resources(bundle, "Patient") if "identifier" in p]
    assert len(numbered) >= 3
    for patient in numbered:
        (nhs,) = [i for i in patient["identifier"] if i["system"] == "https://fhir.nhs.uk/Id/nhs-number"]
        assert nhs["extension"] == [untraced]  # sprx never traces a number, so never "01"
    (cy,) = resources(bundle, "Patient", people["cy"])
    assert "identifier" not in cy


def outcome_figures(bundle: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Observations of outcome figures by instrument (from their local figure code, e.g. "SWEMWBS.metric")."""
    out: dict[str, list[dict[str, Any]]] = {}
    for o in resources(bundle, "Observation"):
        if any(c["system"] == FIGURE for c in o["code"]["coding"]):
            out.setdefault(local_code(o["code"]).split(".")[0], []).append(o)
    return out


def test_instrument_observations_carry_the_national_code_and_the_local_one(bundle: dict[str, Any]) -> None:
    figures = outcome_figures(bundle)
    assert len(figures["SWEMWBS"]) >= 2 and len(figures["ONS4"]) >= 3 and len(figures["UCLA3"]) >= 1
    for o in figures["SWEMWBS"]:
        # SNOMED CT first (NHS mental health data set reference table), our own code second.
        assert o["code"]["coding"] == [
            {"system": SNOMED, "code": "718466001", "display": "Short Warwick-Edinburgh Mental Well-being Scale score"},
            {"system": FIGURE, "code": "SWEMWBS.metric", "display": "SWEMWBS metric score"},
        ]
    # No national code could be confirmed for UCLA3 or the ONS4 items: the local coding alone.
    for o in figures["UCLA3"] + figures["ONS4"] + figures["HEALTH_USE"]:
        assert [c["system"] for c in o["code"]["coding"]] == [FIGURE]


def test_scores_are_ucum_quantities(bundle: dict[str, Any]) -> None:
    quantities = [o["valueQuantity"] for o in resources(bundle, "Observation") if "valueQuantity" in o]
    assert quantities and all(q["system"] == UCUM for q in quantities)
    figures = outcome_figures(bundle)
    for o in figures["SWEMWBS"] + figures["UCLA3"] + figures["ONS4"]:
        assert "valueInteger" not in o
        assert (o["valueQuantity"]["system"], o["valueQuantity"]["code"]) == (UCUM, "{score}"), o["code"]
    assert figures["HEALTH_USE"] and all(o["valueQuantity"]["code"] == "{count}" for o in figures["HEALTH_USE"])


def test_questionnaires_are_in_the_bundle_and_named_canonically(bundle: dict[str, Any]) -> None:
    by_url = {q["url"]: q for q in resources(bundle, "Questionnaire")}
    assert len(by_url) == 4 and all(q["status"] == "active" for q in by_url.values())
    names = {q["name"] for q in by_url.values()}
    assert {"ONS4", "UCLA3", "SWEMWBS"} <= names
    swem = next(q for q in by_url.values() if q["name"] == "SWEMWBS")
    assert "NHS Health Scotland" in swem["copyright"]
    useful = next(i for i in swem["item"] if i["linkId"] == "useful")
    assert useful["text"] == "I've been feeling useful" and useful["type"] == "integer"
    assert [o["valueInteger"] for o in useful["answerOption"]] == [1, 2, 3, 4, 5]
    answers = resources(bundle, "QuestionnaireResponse")
    assert answers
    for qr in answers:
        assert qr["questionnaire"] in by_url  # the canonical url of a Questionnaire in this bundle
        asked = {i["linkId"] for i in by_url[qr["questionnaire"]]["item"]}
        assert {i["linkId"] for i in qr["item"]} <= asked


def test_export_file_is_private_new_and_audited(store: CaseStore, bundle: dict[str, Any], tmp_path: Path) -> None:
    path = Path(bundle["_path"])
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    before = path.read_bytes()
    with pytest.raises(ServiceError, match="never overwrite"):
        export.export_fhir(store, path)
    assert path.read_bytes() == before
    with pytest.raises(ServiceError, match="folder for the export does not exist"):
        export.export_fhir(store, tmp_path / "missing" / "x.json")
    with Session(store.engine) as s:
        details = [e.detail for e in s.exec(select(AuditEvent).where(AuditEvent.action == "EXPORT"))]
    assert f"fhir resources={len(bundle['entry'])} people=16" in details


def test_patient_has_nhs_number_and_demographics(bundle: dict[str, Any], people: dict[str, str]) -> None:
    (patient,) = resources(bundle, "Patient", people["ada"])
    (nhs,) = patient["identifier"]
    assert (nhs["system"], nhs["value"]) == ("https://fhir.nhs.uk/Id/nhs-number", NHS)
    assert patient["name"][0] == {"use": "official", "family": "Testcase", "given": ["Ada"]}
    assert patient["name"][1] == {"use": "usual", "given": ["Addie"]}
    assert patient["birthDate"] == "1950-02-03"
    assert patient["address"] == [{"use": "home", "line": ["1 Example Road"], "postalCode": "LS6 1AB"}]
    assert {"system": "phone", "value": "+447700900123", "use": "mobile"}  # stored normalised in patient["telecom"]
    assert {"system": "email", "value": "ada@example.org"} in patient["telecom"]


def test_referrals_carry_the_snomed_codes(bundle: dict[str, Any], people: dict[str, str]) -> None:
    (accepted,) = [r for r in resources(bundle, "ServiceRequest", people["ada"]) if r["intent"] == "order"
                   and r["category"][0]["coding"][0]["system"] == "urn:sprx:referral-source"]  # fmt: skip
    assert accepted["code"]["coding"][0] == {
        "system": "http://snomed.info/sct", "code": "871731000000106",
        "display": "Referral to social prescribing service",
    }  # fmt: skip
    assert accepted["status"] == "completed"  # accepted, and the person has been discharged
    (declined,) = resources(bundle, "ServiceRequest", people["bob"])
    assert declined["status"] == "revoked"
    codes = [c["code"] for rc in declined["reasonCode"] for c in rc["coding"]]
    assert codes == ["money"]  # the decline is not a reason
    assert "871731000000106" not in json.dumps(declined)
    # The decline is its own coded entry, dated when decided and pointing at the referral it declines.
    (decline,) = resources(bundle, "Observation", people["bob"])
    assert decline["code"]["coding"] == [{"system": SNOMED, "code": DECLINED, "display": "Social prescribing declined"}]
    assert decline["status"] == "final" and decline["basedOn"] == [{"reference": f"urn:uuid:{declined['id']}"}]
    assert decline["effectiveDateTime"] == NOW.date().isoformat()
    assert "note" not in decline and "Moved away" not in json.dumps(decline)
    # Nowhere in the bundle is the decline a reason.
    for request in resources(bundle, "ServiceRequest"):
        assert DECLINED not in json.dumps(request.get("reasonCode", []))


def test_encounters_from_contacts(bundle: dict[str, Any], people: dict[str, str]) -> None:
    encounters = sorted(resources(bundle, "Encounter", people["ada"]), key=lambda e: e["period"]["start"])
    first, wrong, dna = encounters
    assert first["status"] == "finished" and first["class"]["code"] == "HH"
    assert NOTE in first["text"]["div"] and "Also discussed the walking group." in first["text"]["div"]
    assert first["basedOn"][0]["reference"].startswith("urn:uuid:")
    assert wrong["status"] == "entered-in-error" and wrong["class"]["code"] == "VR"
    assert "text" not in wrong and WRONG not in json.dumps(bundle)  # its words never leave
    assert dna["status"] == "cancelled" and dna["class"]["code"] == "VR"


def test_care_plan_goals_and_onward_referrals(bundle: dict[str, Any], people: dict[str, str]) -> None:
    (plan,) = resources(bundle, "CarePlan", people["ada"])
    assert plan["status"] == "completed" and plan["intent"] == "plan"
    assert plan["category"][0]["text"] == "Personalised care and support plan"
    assert {"reference": f"urn:uuid:{people['goal']}"} in plan["goal"]
    assert {"reference": {"reference": f"urn:uuid:{people['onward']}"}} in plan["activity"]
    details = [a["detail"] for a in plan["activity"] if "detail" in a]
    assert details[0]["description"] == "Find the meeting point" and details[0]["status"] == "not-started"
    goals = {g["description"]["text"]: g for g in resources(bundle, "Goal", people["ada"])}
    achieved = goals["Join the walking group"]
    assert achieved["lifecycleStatus"] == "completed"
    assert achieved["achievementStatus"]["coding"][0]["code"] == "achieved"
    assert achieved["target"] == [{"dueDate": "2026-12-01"}]
    assert goals["Sort out the gas bill"]["lifecycleStatus"] == "accepted"
    onward = [r for r in resources(bundle, "ServiceRequest", people["ada"]) if r["id"] == people["onward"]][0]
    assert onward["status"] == "completed" and onward["category"][0]["coding"][0]["code"] == "accompanied"


def test_questionnaires_and_scores(bundle: dict[str, Any], people: dict[str, str]) -> None:
    answers = resources(bundle, "QuestionnaireResponse", people["ada"])
    assert len(answers) == 4
    ons = next(q for q in answers if q["questionnaire"].endswith("ONS4"))
    assert ons["status"] == "in-progress"  # one item skipped
    assert {i["linkId"] for i in ons["item"] if "answer" in i} == {"life_satisfaction", "happiness", "anxiety"}
    obs = resources(bundle, "Observation", people["ada"])
    by_code = Counter(local_code(o["code"]) for o in obs)
    # SWEMWBS metric twice; the three answered ONS4 items; GP and A&E counts.
    assert by_code == Counter({
        "SWEMWBS.metric": 2, "ONS4.life_satisfaction": 1, "ONS4.happiness": 1, "ONS4.anxiety": 1,
        "HEALTH_USE.gp_appointments": 1, "HEALTH_USE.ae_attendances": 1,
    })  # fmt: skip
    metrics = sorted(o["valueQuantity"]["value"] for o in obs if local_code(o["code"]) == "SWEMWBS.metric")
    assert metrics == [19.25, 20.73]  # raw 21 -> 23
    swem = next(o for o in obs if local_code(o["code"]) == "SWEMWBS.metric")
    assert "NHS Health Scotland" in swem["note"][0]["text"]
    assert swem["derivedFrom"][0]["reference"] in {f"urn:uuid:{q['id']}" for q in answers}


def test_batches_do_not_change_the_export(store: CaseStore, people: dict[str, str], tmp_path: Path) -> None:
    export.export_fhir(store, tmp_path / "a.json", batch=500)
    export.export_fhir(store, tmp_path / "b.json", batch=3)
    a = json.loads((tmp_path / "a.json").read_text())["entry"]
    b = json.loads((tmp_path / "b.json").read_text())["entry"]
    assert a == b


def leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for v in value.values():
            yield from leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from leaves(v)
    else:
        yield value


def test_codes_only_summary_has_no_free_text(store: CaseStore, people: dict[str, str]) -> None:
    summary = export.closing_summary(store, people["ada"])
    assert isinstance(summary, dict) and summary["consent"] == "codes_only"
    assert summary["nhs_number"] == NHS
    assert summary["codes"] == [
        {"system": "http://snomed.info/sct", "code": "871731000000106",
         "display": "Referral to social prescribing service", "date": "2026-09-24"},
    ]  # fmt: skip
    assert summary["discharge_reason"] == "goals_met" and summary["contacts"] == 1
    allowed = {"codes_only", "http://snomed.info/sct", "Referral to social prescribing service", "goals_met"}
    for leaf in leaves(summary):
        if isinstance(leaf, str):
            assert leaf in allowed or re.fullmatch(r"\d{4}-\d{2}-\d{2}|\d{10}|\d+", leaf), leaf
    text = json.dumps(summary)
    for words in ("Ada", "Testcase", "walking", "gas bill", NOTE, "talk to"):
        assert words not in text


def test_full_summary_has_goals_and_services_but_no_notes(store: CaseStore, people: dict[str, str]) -> None:
    store.service.update_person(people["ada"], consent_gp_sharing="full")
    try:
        summary = export.closing_summary(store, people["ada"])
    finally:
        store.service.update_person(people["ada"], consent_gp_sharing="codes_only")
    assert isinstance(summary, dict)
    assert summary["goals_achieved"] == ["Join the walking group"] and summary["goals_total"] == 2
    assert len(summary["services_used"]) == 1 and summary["services_used"][0] in summary["summary"]
    assert "Goals achieved: 1 of 2: Join the walking group." in summary["summary"]
    assert "SWEMWBS metric score: 19.25 at baseline, 20.73 at discharge." in summary["summary"]
    assert summary["contacts"] == 1 and summary["discharged_on"] == "2026-11-23"
    text = json.dumps(summary)
    assert NOTE not in text and WRONG not in text and "eviction" not in text
    rendered = export.render_closing_summary(summary)
    assert "NHS number: 9434765919" in rendered and "SNOMED CT 871731000000106" in rendered


def test_no_consent_means_no_summary(store: CaseStore, people: dict[str, str]) -> None:
    before = export.closing_summary(store, people["full"])
    assert isinstance(before, dict) and before["codes"] == [] and before["summary"]
    refused = export.closing_summary(store, people["cy"])
    assert (
        refused == "This person has not agreed to share information with their GP, so no closing summary can be made."
    )
    assert export.render_closing_summary(refused) == refused
    with Session(store.engine) as s:
        audited = {e.person_id for e in s.exec(select(AuditEvent).where(AuditEvent.detail.startswith("gp_summary")))}  # type: ignore[attr-defined]
    assert people["full"] in audited and people["cy"] not in audited
    with pytest.raises(NotFound):
        export.closing_summary(store, "no-such-person")


def test_builders_are_pure() -> None:
    assert fhir.derived_id("a", "b") == fhir.derived_id("a", "b") != fhir.derived_id("a", "c")
    header = fhir.bundle_header(NOW, "bundle-1")
    assert fhir.questionnaires() == fhir.questionnaires()
    assert header["type"] == "collection" and header["timestamp"] == "2026-11-23T10:30:00+00:00"
