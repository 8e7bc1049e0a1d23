"""FHIR R4 resources from case-record rows: pure builders (dicts in, dicts out), no database access.

`export.export_fhir` streams a Bundle (type "collection") built person by person with
`person_resources`. Every resource is referenced by `urn:uuid:<id>` and carries our row id.

Codes: SNOMED CT 871731000000106 "Referral to social prescribing service" on an accepted referral,
871711000000103 "Social prescribing declined" as the reason code of a declined one. Our own
vocabularies (referral sources and reasons, contact modes, outcome figures) use local code systems
under `urn:sprx:`; they have no national equivalent yet (see domain-standards.md 3.1 and 3.6).
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
    "NHS_NUMBER_SYSTEM",
    "SNOMED",
    "SNOMED_DISPLAY",
    "bundle_header",
    "care_plan",
    "derived_id",
    "encounter",
    "entry",
    "goal",
    "observations",
    "onward_service_request",
    "patient",
    "person_resources",
    "questionnaire_response",
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
RESOURCE_NS = uuid.UUID("0d8f3c2e-5b7a-5e61-8f0c-3a9d2b4e6c71")

SNOMED_DISPLAY = {
    SNOMED_REFERRAL_ACCEPTED: "Referral to social prescribing service",
    SNOMED_SP_DECLINED: "Social prescribing declined",
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
    return _compact(
        {
            "resourceType": "Patient",
            "id": person.id,
            "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": person.nhs_number}] if person.nhs_number else [],
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
    """ServiceRequest for a referral in: coded 871731000000106 once accepted; declined = revoked + 871711000000103."""
    if referral.status == "declined":
        status = "revoked"
    elif referral.status == "closed" or (referral.status == "accepted" and person.status == "discharged"):
        status = "completed"
    else:
        status = "active"
    code = referral.snomed_code if referral.snomed_code in SNOMED_DISPLAY else None
    accepted = referral.status == "accepted" or code == SNOMED_REFERRAL_ACCEPTED
    reasons = [_local("referral-reason", r, REFERRAL_REASONS.get(r)) for r in referral.reasons or []]
    if referral.status == "declined":
        reasons.append(_snomed(SNOMED_SP_DECLINED))
    notes = []
    if referral.referral_text:
        notes.append({"text": referral.referral_text})
    if referral.status == "declined" and referral.decline_reason:
        notes.append({"text": f"Declined: {referral.decline_reason}"})
    return _compact(
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
    return _compact(
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
    return _compact(
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
    return _compact(
        {
            "resourceType": "ServiceRequest",
            "id": row.id,
            "status": ONWARD_STATUS.get(row.outcome, "active"),
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
    return _compact(
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


def questionnaire_response(row: OutcomeResponse) -> dict[str, Any]:
    """QuestionnaireResponse with every answered item; the time point is a meta tag."""
    labels = _ITEM_LABELS.get(row.instrument, {})
    items = []
    for item_id, value in (row.responses or {}).items():
        label = labels.get(item_id, item_id)
        answer = [{"valueInteger": int(value)}] if isinstance(value, int) and not isinstance(value, bool) else []
        items.append(_compact({"linkId": item_id, "text": label, "answer": answer}))
    if row.entered_in_error:
        status = "entered-in-error"
    else:
        status = "completed" if row.complete else "in-progress"
    return _compact(
        {
            "resourceType": "QuestionnaireResponse",
            "id": row.id,
            "meta": _time_point_tag(row.time_point),
            "questionnaire": f"{LOCAL}questionnaire:{row.instrument}",
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
        if isinstance(value, float):
            val: dict[str, Any] = {"valueQuantity": {"value": value, "unit": "score"}}
        elif figure in ("gp_appointments", "ae_attendances"):
            val = {"valueQuantity": {"value": value, "unit": "count", "system": UCUM, "code": "{count}"}}
        else:
            val = {"valueInteger": int(value)}
        out.append(
            _compact(
                {
                    "resourceType": "Observation",
                    "id": derived_id(row.id, figure),
                    "meta": _time_point_tag(row.time_point),
                    "status": "entered-in-error" if row.entered_in_error else "final",
                    "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "survey", "display": "Survey"}]}],
                    "code": _local("outcome-figure", f"{row.instrument}.{figure}", display),
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
    out += [referral_service_request(r, person) for r in referrals]
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
        "meta": {"lastUpdated": _datetime(now)},
        "identifier": {"system": LOCAL + "export", "value": bid},
        "type": "collection",
        "timestamp": _datetime(now),
    }
