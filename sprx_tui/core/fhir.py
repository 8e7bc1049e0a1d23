"""FHIR R4 resources from case-record rows: pure builders (dicts in, dicts out), no database access.

`export.export_fhir` streams a Bundle (type "collection"): the instrument Questionnaires first
(`questionnaires`), then person by person (`person_resources`). Every resource is referenced by
`urn:uuid:<id>` and carries our row id.

Profiles: every resource of a type UK Core profiles declares that profile in meta.profile
(`UK_CORE_PROFILES`). UK Core has no Goal profile, so Goal declares none.

Codes: SNOMED CT 871731000000106 "Referral to social prescribing service" on an accepted referral;
871711000000103 "Social prescribing declined" as its own Observation for a declined one (never a
reason). The SWEMWBS score carries SNOMED CT 718466001 (`NATIONAL_FIGURE_CODES`), with our local
code second. Our own vocabularies (referral sources and reasons, contact modes, outcome figures)
use local code systems under `urn:sprx:`; no national code was found for them, nor for the UCLA3
and ONS4 scores (see domain-standards.md 3.1 and 3.6). Scores are UCUM `{score}` quantities.
"""

from __future__ import annotations

import datetime as dt
import html
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sprx_rules import outcomes
from sprx_tui.core.models import (
    CONTACT_MODES,
    LIFE_AREAS,
    ONWARD_KINDS,
    ONWARD_OUTCOMES,
    REFERRAL_REASONS,
    REFERRAL_SOURCES,
    SNOMED_REFERRAL_ACCEPTED,
    SNOMED_SP_DECLINED,
    Contact,
    ContactAmendment,
    Goal,
    OnwardReferral,
    OutcomeResponse,
    Person,
    PlanAction,
    Referral,
    WhatMatters,
)

__all__ = [
    "NATIONAL_FIGURE_CODES",
    "NHS_NUMBER_SYSTEM",
    "NHS_NUMBER_VERIFICATION",
    "SNOMED",
    "SNOMED_DISPLAY",
    "UK_CORE_PROFILES",
    "bundle_header",
    "care_plan",
    "closing_composition",
    "decline_observation",
    "derived_id",
    "document_bundle",
    "encounter",
    "entry",
    "goal",
    "observations",
    "onward_service_request",
    "patient",
    "person_resources",
    "questionnaire",
    "questionnaire_response",
    "questionnaire_url",
    "questionnaires",
    "ref",
    "referral_service_request",
]

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
SNOMED = "http://snomed.info/sct"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
GOAL_ACHIEVEMENT = "http://terminology.hl7.org/CodeSystem/goal-achievement"
UCUM = "http://unitsofmeasure.org"
LOCAL = "urn:sprx:"
# A score has no physical unit; UCUM writes it as the annotation {score} (LOINC's example unit
# for scores, e.g. https://loinc.org/100946-3).
SCORE_UNIT = {"unit": "score", "system": UCUM, "code": "{score}"}
RESOURCE_NS = uuid.UUID("0d8f3c2e-5b7a-5e61-8f0c-3a9d2b4e6c71")

SNOMED_DISPLAY = {
    SNOMED_REFERRAL_ACCEPTED: "Referral to social prescribing service",
    SNOMED_SP_DECLINED: "Social prescribing declined",
}

# UK Core profiles (HL7 UK), each `https://fhir.hl7.org.uk/StructureDefinition/UKCore-<Type>`.
# Sources: "Official URL: https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"
# (https://build.fhir.org/ig/HL7-UK/UK-Core-Access/StructureDefinition-UKCore-Patient.html); the
# profiles UKCore-Patient, -Observation, -Encounter, -ServiceRequest, -CarePlan, -Questionnaire,
# -QuestionnaireResponse, -Organization and -Bundle in NHSDigital/FHIR-R4-UKCORE-STAGING-MAIN
# (structuredefinitions/UKCore-<Type>.xml). That repository has no UKCore-Goal, so Goal stays base R4.
UK_CORE = "https://fhir.hl7.org.uk/StructureDefinition/"
UK_CORE_PROFILES = {
    kind: f"{UK_CORE}UKCore-{kind}"
    for kind in (
        "Patient",
        "Observation",
        "Encounter",
        "ServiceRequest",
        "CarePlan",
        "Questionnaire",
        "QuestionnaireResponse",
        "Organization",
        "Bundle",
    )
}

# NHS number verification status (England), UK Core extension on Patient.identifier.
# Sources: NHSDigital/FHIR-R4-UKCORE-STAGING-MAIN structuredefinitions/
# Extension-UKCore-NHSNumberVerificationStatus.xml (url below; context Patient.identifier; value a
# CodeableConcept) and codesystems/CodeSystem-UKCore-NHSNumberVerificationStatusEngland.xml (codes
# from the NHS Data Dictionary "NHS Number Status Indicator Code"). sprx never traces a number
# against PDS (it is typed in or comes with a referral), so it is honestly "02", never "01".
NHS_NUMBER_VERIFICATION_EXTENSION = f"{UK_CORE}Extension-UKCore-NHSNumberVerificationStatus"
NHS_NUMBER_VERIFICATION_SYSTEM = "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland"
NHS_NUMBER_VERIFICATION = ("02", "Number present but not traced")

# National codes for outcome figures, (instrument, figure) -> (SNOMED CT code, display).
# 718466001 "Short Warwick-Edinburgh Mental Well-being Scale score" (range 7-35): the Mental Health
# Services Data Set assessment-tool reference table in NHS Digital's published statistics code,
# NHSDigital/mental-health-monthly-statistics
# (menh_publications/notebooks/06_CYP_Outcome_Measures/01_Prepare/LoadRefData.sql, table MH_ASS,
# SNOMED "v2" row; the older UK-extension "v1" code 960481000000107 is not used). The SWEMWBS score
# is the raw sum converted through Warwick's table
# (https://warwick.ac.uk/fac/med/research/platform/wemwbs/researchers/guidance/), so the metric carries it.
# No national SNOMED CT code could be confirmed for the UCLA 3-item loneliness total or the four
# ONS personal well-being items: they keep only the local coding (never an invented code).
NATIONAL_FIGURE_CODES: dict[tuple[str, str], tuple[str, str]] = {
    ("SWEMWBS", "metric"): ("718466001", "Short Warwick-Edinburgh Mental Well-being Scale score"),
}

# Contact mode -> Encounter.class (HL7 v3 ActCode): a home visit is HH, calls are virtual.
ENCOUNTER_CLASS = {
    "home_visit": ("HH", "home health"),
    "phone": ("VR", "virtual"),
    "video": ("VR", "virtual"),
    "clinic": ("AMB", "ambulatory"),
    "community": ("AMB", "ambulatory"),
}
GOAL_LIFECYCLE = {"not_started": "accepted", "in_progress": "active", "achieved": "completed", "dropped": "cancelled"}
GOAL_ACHIEVED = {
    "in_progress": ("in-progress", "In Progress"),
    "achieved": ("achieved", "Achieved"),
    "dropped": ("not-achieved", "Not Achieved"),
}
CARE_PLAN_STATUS = {
    "referred": "draft",
    "active": "active",
    "discharged": "completed",
    "declined": "revoked",
    "did_not_engage": "revoked",
}
ONWARD_STATUS = {
    "pending": "active",
    "waiting": "active",
    "attended": "completed",
    "not_attended": "revoked",
    "declined": "revoked",
}
URGENCY_PRIORITY = {"routine": "routine", "soon": "urgent", "urgent": "asap"}
FHIR_GENDERS = {"male", "female", "other", "unknown"}


def ref(resource_id: str) -> dict[str, str]:
    return {"reference": f"urn:uuid:{resource_id}"}


def entry(resource: dict[str, Any]) -> dict[str, Any]:
    """A Bundle entry for a resource built here."""
    return {"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource}


def derived_id(*parts: str) -> str:
    """A stable UUID for a resource that has no row of its own (a care plan, a score)."""
    return str(uuid.uuid5(RESOURCE_NS, "/".join(parts)))


def _local(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    coding: dict[str, Any] = {"system": LOCAL + system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding], "text": display or code}


def _snomed(code: str) -> dict[str, Any]:
    return {"coding": [{"system": SNOMED, "code": code, "display": SNOMED_DISPLAY[code]}], "text": SNOMED_DISPLAY[code]}


def _date(value: dt.date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _datetime(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.isoformat(timespec="seconds")


def _narrative(paragraphs: Iterable[str]) -> dict[str, str] | None:
    body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs if p and p.strip())
    if not body:
        return None
    return {"status": "additional", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{body}</div>'}


def _compact(resource: dict[str, Any]) -> dict[str, Any]:
    # FHIR forbids empty values: drop None, "" and empty lists/dicts.
    return {k: v for k, v in resource.items() if v is not None and (v or v is False or v == 0)}


def _resource(resource: dict[str, Any]) -> dict[str, Any]:
    """A finished resource: compacted, and declaring its UK Core profile when UK Core has one."""
    out = _compact(resource)
    profile = UK_CORE_PROFILES.get(out["resourceType"])
    if profile is None:
        return out
    meta = {"profile": [profile], **out.get("meta", {})}
    head = {"resourceType": out["resourceType"], "id": out["id"], "meta": meta}
    return head | {k: v for k, v in out.items() if k not in head}


# -- resources ----------------------------------------------------------------------------------------


def patient(person: Person) -> dict[str, Any]:
    """Patient: NHS number identifier, names, birth date, address and postcode, phone and email."""
    names: list[dict[str, Any]] = [{"use": "official", "family": person.family_name, "given": [person.given_name]}]
    if person.preferred_name:
        names.append({"use": "usual", "given": [person.preferred_name]})
    telecom = []
    if person.phone:
        mobile = person.phone.replace(" ", "").startswith(("07", "+447"))
        telecom.append({"system": "phone", "value": person.phone, "use": "mobile" if mobile else "home"})
    if person.email:
        telecom.append({"system": "email", "value": person.email})
    address = _compact(
        {"use": "home", "line": [person.address] if person.address else [], "postalCode": person.postcode}
    )
    gender = (person.gender or "").lower()
    code, display = NHS_NUMBER_VERIFICATION
    verification = {
        "url": NHS_NUMBER_VERIFICATION_EXTENSION,
        "valueCodeableConcept": {
            "coding": [{"system": NHS_NUMBER_VERIFICATION_SYSTEM, "code": code, "display": display}]
        },
    }
    nhs_number = {"extension": [verification], "system": NHS_NUMBER_SYSTEM, "value": person.nhs_number}
    return _resource(
        {
            "resourceType": "Patient",
            "id": person.id,
            "identifier": [nhs_number] if person.nhs_number else [],
            "active": True,
            "name": names,
            "telecom": telecom,
            "gender": gender if gender in FHIR_GENDERS else None,
            "birthDate": _date(person.date_of_birth),
            "address": [address] if len(address) > 1 else [],
            "communication": (
                [{"language": {"text": person.interpreter_language}, "preferred": True}]
                if person.interpreter_language
                else []
            ),
            "generalPractitioner": [{"display": person.gp_practice}] if person.gp_practice else [],
        }
    )


def referral_service_request(referral: Referral, person: Person) -> dict[str, Any]:
    """ServiceRequest for a referral in: coded 871731000000106 once accepted; declined = revoked.

    The decline itself (871711000000103) is its own Observation (`decline_observation`), not a reason.
    """
    if referral.status == "declined":
        status = "revoked"
    elif referral.status == "closed" or (referral.status == "accepted" and person.status == "discharged"):
        status = "completed"
    else:
        status = "active"
    code = referral.snomed_code if referral.snomed_code in SNOMED_DISPLAY else None
    accepted = referral.status == "accepted" or code == SNOMED_REFERRAL_ACCEPTED
    reasons = [_local("referral-reason", r, REFERRAL_REASONS.get(r)) for r in referral.reasons or []]
    notes = []
    if referral.referral_text:
        notes.append({"text": referral.referral_text})
    if referral.status == "declined" and referral.decline_reason:
        notes.append({"text": f"Declined: {referral.decline_reason}"})
    return _resource(
        {
            "resourceType": "ServiceRequest",
            "id": referral.id,
            "status": status,
            "intent": "order",
            "priority": URGENCY_PRIORITY.get(referral.urgency, "routine"),
            "category": [_local("referral-source", referral.source, REFERRAL_SOURCES.get(referral.source))],
            "code": _snomed(SNOMED_REFERRAL_ACCEPTED)
            if accepted
            else {"text": "Referral to social prescribing service"},
            "subject": ref(person.id),
            "authoredOn": _date(referral.received_on),
            "requester": {"display": referral.referrer_name} if referral.referrer_name else None,
            "reasonCode": reasons,
            "note": notes,
        }
    )


def decline_observation(referral: Referral, person: Person) -> dict[str, Any] | None:
    """The decline of a referral as a coded entry of its own (SNOMED CT 871711000000103), dated when decided.

    It points at the referral it declines (basedOn); the person's words about why stay in that
    ServiceRequest's note, so the coded entry carries no free text.
    """
    if referral.status != "declined":
        return None
    return _resource(
        {
            "resourceType": "Observation",
            "id": derived_id(referral.id, "declined"),
            "basedOn": [ref(referral.id)],
            "status": "final",
            "code": _snomed(SNOMED_SP_DECLINED),
            "subject": ref(person.id),
            "effectiveDateTime": _date(referral.decided_on or referral.received_on),
        }
    )


def encounter(contact: Contact, amendments: Sequence[ContactAmendment] = ()) -> dict[str, Any]:
    """Encounter for a contact: class from the mode; entered in error keeps its status and loses its notes."""
    cls, display = ENCOUNTER_CLASS.get(contact.mode, ("AMB", "ambulatory"))
    if contact.entered_in_error:
        status = "entered-in-error"
    elif contact.did_not_attend:
        status = "cancelled"
    else:
        status = "finished"
    start = contact.occurred_at
    period: dict[str, str] = {"start": _datetime(start)}
    if contact.duration_minutes:
        period["end"] = _datetime(start + dt.timedelta(minutes=contact.duration_minutes))
    # A contact entered in error may describe someone else: its words never leave with this record.
    paragraphs = (
        []
        if contact.entered_in_error
        else [contact.notes]
        + [
            f"Amendment {a.amended_at:%Y-%m-%d}: {a.text}" + (f" (reason: {a.reason})" if a.reason else "")
            for a in amendments
        ]
    )
    type_text = CONTACT_MODES.get(contact.mode, contact.mode)
    if contact.did_not_attend:
        type_text += " (did not attend)"
    return _resource(
        {
            "resourceType": "Encounter",
            "id": contact.id,
            "text": _narrative(paragraphs),
            "status": status,
            "class": {"system": ACT_CODE, "code": cls, "display": display},
            "type": [_local("contact-mode", contact.mode, type_text)],
            "subject": ref(contact.person_id),
            "basedOn": [ref(contact.referral_id)] if contact.referral_id else [],
            "participant": [{"individual": {"display": contact.author}}] if contact.author else [],
            "period": period,
            "length": (
                {"value": contact.duration_minutes, "unit": "min", "system": UCUM, "code": "min"}
                if contact.duration_minutes
                else None
            ),
        }
    )


def goal(row: Goal) -> dict[str, Any]:
    achieved = GOAL_ACHIEVED.get(row.status)
    return _resource(
        {
            "resourceType": "Goal",
            "id": row.id,
            "lifecycleStatus": GOAL_LIFECYCLE.get(row.status, "proposed"),
            "achievementStatus": (
                {"coding": [{"system": GOAL_ACHIEVEMENT, "code": achieved[0], "display": achieved[1]}]}
                if achieved
                else None
            ),
            "description": {"text": row.text},
            "subject": ref(row.person_id),
            "target": [{"dueDate": _date(row.target_on)}] if row.target_on else [],
            "note": [{"text": row.progress_notes}] if row.progress_notes else [],
        }
    )


def onward_service_request(row: OnwardReferral) -> dict[str, Any]:
    """ServiceRequest for a referral out to a community service; signposting is a proposal."""
    outcome_label = ONWARD_OUTCOMES.get(row.outcome, row.outcome)
    notes = [{"text": f"Outcome: {outcome_label}" + (f" ({row.outcome_on.isoformat()})" if row.outcome_on else "")}]
    if row.first_response_on:
        notes.append({"text": f"First response from the service: {row.first_response_on.isoformat()}"})
    if row.notes:
        notes.append({"text": row.notes})
    if row.withdrawn_on:
        notes.append({"text": f"Withdrawn {row.withdrawn_on.isoformat()}: {row.withdrawn_reason or 'made wrongly'}"})
    return _resource(
        {
            "resourceType": "ServiceRequest",
            "id": row.id,
            # A referral withdrawn as made wrongly is revoked, whatever outcome it had.
            "status": "revoked" if row.withdrawn_on else ONWARD_STATUS.get(row.outcome, "active"),
            "intent": "proposal" if row.kind == "signposted" else "order",
            "category": [_local("onward-kind", row.kind, ONWARD_KINDS.get(row.kind))],
            "code": {"text": row.service_name or "Community service"},
            "subject": ref(row.person_id),
            "authoredOn": _date(row.made_on),
            "performer": [{"display": row.service_name}] if row.service_name else [],
            "reasonCode": [_local("referral-reason", row.need, REFERRAL_REASONS.get(row.need))] if row.need else [],
            "note": notes,
        }
    )


def care_plan(
    person: Person,
    goals: Sequence[Goal],
    actions: Sequence[PlanAction],
    onward: Sequence[OnwardReferral],
    what_matters: Sequence[WhatMatters],
) -> dict[str, Any]:
    """The personalised care and support plan: goals, plan actions and onward referrals as activities."""
    goal_ids = {g.id for g in goals}
    activities: list[dict[str, Any]] = [{"reference": ref(o.id)} for o in onward]
    for a in actions:
        if a.goal_id not in goal_ids:
            continue
        detail = _compact(
            {
                "status": "completed" if a.done else "not-started",
                "description": a.what,
                "goal": [ref(a.goal_id)],
                "scheduledString": f"by {a.due_on.isoformat()}" if a.due_on else None,
                "performer": [{"display": a.who}] if a.who else [],
            }
        )
        activities.append({"detail": detail})
    notes = [
        {"text": f"What matters to me ({LIFE_AREAS.get(w.life_area, w.life_area)}): {w.text}"} for w in what_matters
    ]
    return _resource(
        {
            "resourceType": "CarePlan",
            "id": derived_id(person.id, "care-plan"),
            "status": CARE_PLAN_STATUS.get(person.status, "unknown"),
            "intent": "plan",
            "category": [
                _local("care-plan-category", "personalised-care-and-support-plan", "Personalised care and support plan")
            ],
            "title": "Personalised care and support plan",
            "subject": ref(person.id),
            "goal": [ref(g.id) for g in goals],
            "activity": activities,
            "note": notes,
        }
    )


_ITEM_LABELS: dict[str, dict[str, str]] = {
    code: {it.id: it.label for it in inst.items} for code, inst in outcomes.INSTRUMENTS.items()
}


def _time_point_tag(point: str) -> dict[str, Any]:
    return {"tag": [{"system": LOCAL + "time-point", "code": point}]}


def questionnaire_url(instrument: str) -> str:
    """The canonical url of an instrument's Questionnaire (what QuestionnaireResponse.questionnaire holds)."""
    return f"{LOCAL}questionnaire:{instrument}"


def _question(it: outcomes.Item) -> dict[str, Any]:
    item: dict[str, Any] = {"linkId": it.id, "text": it.text, "type": "integer"}
    if it.options:
        item["answerOption"] = [{"valueInteger": o.value} for o in it.options]
        # What each answer means, where the instrument words it (ONS4 words only the ends).
        meanings = "; ".join(f"{o.value} = {o.label}" for o in it.options if o.label != str(o.value))
        if meanings:
            item["item"] = [{"linkId": f"{it.id}.answers", "text": meanings, "type": "display"}]
    else:
        item["extension"] = [
            {"url": "http://hl7.org/fhir/StructureDefinition/minValue", "valueInteger": it.min_value},
            {"url": "http://hl7.org/fhir/StructureDefinition/maxValue", "valueInteger": it.max_value},
        ]
    return item


def questionnaire(instrument: outcomes.Instrument) -> dict[str, Any]:
    """The Questionnaire of an instrument, as sprx asks it: exact wording, allowed answers, attribution."""
    return _resource(
        {
            "resourceType": "Questionnaire",
            "id": derived_id("questionnaire", instrument.code),
            "url": questionnaire_url(instrument.code),
            "name": instrument.code,
            "title": instrument.title,
            "status": "active",
            "subjectType": ["Patient"],
            "description": instrument.attribution,
            "copyright": instrument.copyright,
            "item": [{"linkId": "instructions", "text": instrument.instructions, "type": "display"}]
            + [_question(it) for it in instrument.items],
        }
    )


def questionnaires() -> list[dict[str, Any]]:
    """One Questionnaire per instrument sprx scores; a bundle carries them once, ahead of the people."""
    return [questionnaire(inst) for inst in outcomes.INSTRUMENTS.values()]


def questionnaire_response(row: OutcomeResponse) -> dict[str, Any]:
    """QuestionnaireResponse with every answered item; the time point is a meta tag.

    It names its Questionnaire by canonical url (one of `questionnaires()`, in the same bundle).
    """
    instrument = outcomes.INSTRUMENTS.get(row.instrument)
    wording = {it.id: it.text for it in instrument.items} if instrument else {}
    items = []
    for item_id, value in (row.responses or {}).items():
        label = wording.get(item_id, item_id)
        answer = [{"valueInteger": int(value)}] if isinstance(value, int) and not isinstance(value, bool) else []
        items.append(_compact({"linkId": item_id, "text": label, "answer": answer}))
    if row.entered_in_error:
        status = "entered-in-error"
    else:
        status = "completed" if row.complete else "in-progress"
    return _resource(
        {
            "resourceType": "QuestionnaireResponse",
            "id": row.id,
            "meta": _time_point_tag(row.time_point),
            "questionnaire": questionnaire_url(row.instrument) if instrument else None,
            "status": status,
            "subject": ref(row.person_id),
            "authored": _date(row.taken_on),
            "item": items,
        }
    )


# Which scores become Observations: (figure, display). ONS4 and health use item by item.
OBSERVED: dict[str, tuple[tuple[str, str], ...]] = {
    "SWEMWBS": (("metric", "SWEMWBS metric score"),),
    "UCLA3": (("total", "UCLA 3-item loneliness total score"),),
    "ONS4": tuple((it.id, f"ONS4 {it.label.lower()}") for it in outcomes.ONS4.items),
    "HEALTH_USE": (
        ("gp_appointments", "GP appointments in the previous 3 months"),
        ("ae_attendances", "A&E attendances in the previous 3 months"),
    ),
}


def observations(row: OutcomeResponse) -> list[dict[str, Any]]:
    """One Observation per reported score that has a value, derived from the QuestionnaireResponse."""
    if row.instrument not in OBSERVED:
        return []
    instrument = outcomes.INSTRUMENTS[row.instrument]
    labels = _ITEM_LABELS[row.instrument]
    answers = {k: v for k, v in (row.responses or {}).items() if k in labels}
    try:
        figures = outcomes.score(row.instrument, answers).figures()
    except ValueError:
        return []
    out = []
    for figure, display in OBSERVED[row.instrument]:
        value = figures.get(figure)
        if value is None:
            continue
        if figure in ("gp_appointments", "ae_attendances"):
            val: dict[str, Any] = {
                "valueQuantity": {"value": value, "unit": "count", "system": UCUM, "code": "{count}"}
            }
        else:
            val = {"valueQuantity": {"value": value, **SCORE_UNIT}}
        code = _local("outcome-figure", f"{row.instrument}.{figure}", display)
        national = NATIONAL_FIGURE_CODES.get((row.instrument, figure))
        if national:
            # The national code first; the local one stays as a second coding.
            code["coding"].insert(0, {"system": SNOMED, "code": national[0], "display": national[1]})
        out.append(
            _resource(
                {
                    "resourceType": "Observation",
                    "id": derived_id(row.id, figure),
                    "meta": _time_point_tag(row.time_point),
                    "status": "entered-in-error" if row.entered_in_error else "final",
                    "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "survey", "display": "Survey"}]}],
                    "code": code,
                    "subject": ref(row.person_id),
                    "effectiveDateTime": _date(row.taken_on),
                    **val,
                    "derivedFrom": [ref(row.id)],
                    "note": [{"text": instrument.copyright}] if instrument.copyright else [],
                }
            )
        )
    return out


def person_resources(
    person: Person,
    *,
    referrals: Sequence[Referral] = (),
    contacts: Sequence[Contact] = (),
    amendments: Sequence[ContactAmendment] = (),
    what_matters: Sequence[WhatMatters] = (),
    goals: Sequence[Goal] = (),
    actions: Sequence[PlanAction] = (),
    onward: Sequence[OnwardReferral] = (),
    outcome_rows: Sequence[OutcomeResponse] = (),
) -> list[dict[str, Any]]:
    """Every resource for one person, Patient first. Deleted (tombstoned) rows must be left out by the caller."""
    by_contact: dict[str, list[ContactAmendment]] = {}
    for a in amendments:
        by_contact.setdefault(a.contact_id, []).append(a)
    out: list[dict[str, Any]] = [patient(person)]
    for r in referrals:
        out.append(referral_service_request(r, person))
        declined = decline_observation(r, person)
        if declined is not None:
            out.append(declined)
    out += [encounter(c, by_contact.get(c.id, ())) for c in contacts]
    out += [goal(g) for g in goals]
    out += [onward_service_request(o) for o in onward]
    out.append(care_plan(person, goals, actions, onward, what_matters))
    for row in outcome_rows:
        out.append(questionnaire_response(row))
        out += observations(row)
    return out


def bundle_header(now: dt.datetime, bundle_id: str | None = None) -> dict[str, Any]:
    """The Bundle without its entries (the exporter streams them into "entry")."""
    bid = bundle_id or str(uuid.uuid4())
    return {
        "resourceType": "Bundle",
        "id": bid,
        "meta": {"profile": [UK_CORE_PROFILES["Bundle"]], "lastUpdated": _datetime(now)},
        "identifier": {"system": LOCAL + "export", "value": bid},
        "type": "collection",
        "timestamp": _datetime(now),
    }


# -- the GP closing summary as a FHIR document ------------------------------------------------------

# SNOMED CT 373942005 "Discharge summary (record artifact)": the kind of document the closing summary is.
DISCHARGE_SUMMARY = ("373942005", "Discharge summary")


def closing_composition(
    person: Person, summary: dict[str, Any], letter: str, resources: Sequence[dict[str, Any]], now: dt.datetime
) -> dict[str, Any]:
    """The Composition that heads the closing-summary document: its narrative is the letter, its entries the resources.

    `summary` (export.closing_summary's fields) decides nothing here: the caller has already kept to the
    person's consent in `letter` and `resources`; this only dates and titles the document.
    """
    code, display = DISCHARGE_SUMMARY
    return _resource(
        {
            "resourceType": "Composition",
            "id": derived_id(person.id, "closing-summary", _datetime(now)),
            "status": "final",
            "type": {"coding": [{"system": SNOMED, "code": code, "display": display}], "text": display},
            "subject": ref(person.id),
            "date": _datetime(now),
            "author": [{"display": "Social prescribing link worker"}],
            "title": "Social prescribing closing summary",
            "section": [
                {
                    "title": "Closing summary" + (" (codes only)" if summary.get("consent") == "codes_only" else ""),
                    "text": _narrative(letter.splitlines()),
                    "entry": [ref(r["id"]) for r in resources],
                }
            ],
        }
    )


def document_bundle(
    composition: dict[str, Any], resources: Sequence[dict[str, Any]], now: dt.datetime
) -> dict[str, Any]:
    """A Bundle of type "document": the Composition first, then every resource it refers to."""
    bundle = bundle_header(now)
    bundle["type"] = "document"
    bundle["entry"] = [entry(composition), *(entry(r) for r in resources)]
    return bundle
