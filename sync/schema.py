"""The sync registry: which tables and fields sync, and the merge rule of each field."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

SCHEMA_VERSION = 1
"""Version of the synced data shape. The server accepts N and N-1 (DESIGN.md section 7)."""


class Rule(StrEnum):
    """How concurrent writes to one field are merged."""

    IMMUTABLE = "immutable"  # set when the row is created; later patches are rejected
    LWW = "lww"  # last writer wins by (hlc, device id)
    MVR = "mvr"  # narrative text: concurrent edits keep every value and open a conflict


class Kind(StrEnum):
    """How rows of a table live and die."""

    APPEND = "append"  # insert-only clinical record (contacts, amendments, outcomes); never deleted
    MUTABLE = "mutable"  # ordinary rows with per-field merge
    PUSH_ONLY = "push_only"  # laptop -> server only (audit trail, directory suggestions)
    SERVER = "server"  # server-authoritative (the services directory); laptops only read


@dataclass(frozen=True)
class TableSpec:
    name: str
    kind: Kind
    fields: dict[str, Rule]
    deletable: bool = False  # may be tombstoned (delete op); otherwise delete is rejected
    person_scoped: bool = True  # scope key is person_id; False: practice-wide (directory)

    def rule(self, field: str) -> Rule | None:
        return self.fields.get(field)

    @property
    def patchable(self) -> frozenset[str]:
        return frozenset(f for f, r in self.fields.items() if r is not Rule.IMMUTABLE)


I, L, M = Rule.IMMUTABLE, Rule.LWW, Rule.MVR

TABLES: dict[str, TableSpec] = {
    t.name: t
    for t in [
        TableSpec(
            "person",
            Kind.MUTABLE,
            {
                "nhs_number": L,
                "given_name": L,
                "family_name": L,
                "preferred_name": L,
                "date_of_birth": L,
                "gender": L,
                "address": L,
                "postcode": L,
                "phone": L,
                "email": L,
                "preferred_contact": L,
                "communication_needs": M,
                "interpreter_language": L,
                "hearing_need": L,
                "sight_need": L,
                "easy_read": L,
                "gp_practice": L,
                "consent_social_prescribing": L,
                "consent_gp_sharing": L,
                "safety_flags": L,  # laptops settle it per flag from safety_flag_change after each pull
                "safety_notes": M,
                "status": L,
                "status_changed_on": L,
            },
        ),
        TableSpec(
            "referral",
            Kind.MUTABLE,
            {
                "source": I,
                "referrer_name": I,
                "received_on": I,
                "reasons": I,
                "referral_text": I,
                "urgency": L,
                "status": L,
                "decided_on": L,
                "decline_reason": L,
                "snomed_code": L,
                "decline_code": L,
                "closed_on": L,
                "close_reason": L,
                "close_note": M,
            },
        ),
        TableSpec(
            "contact",
            Kind.APPEND,
            {
                "referral_id": I,
                "occurred_at": I,
                "mode": I,
                "duration_minutes": I,
                "notes": I,
                "did_not_attend": I,
                "follow_up_on": I,
                "author": I,
                "entered_in_error": L,
                "error_reason": L,
            },
        ),
        TableSpec(
            "contact_amendment",
            Kind.APPEND,
            {"contact_id": I, "text": I, "reason": I, "author": I, "amended_at": I},
        ),
        TableSpec(
            "safety_flag_change",
            Kind.APPEND,
            {"flag": I, "change": I, "reason": I, "author": I, "changed_at": I},
        ),
        TableSpec(
            "follow_up",
            Kind.MUTABLE,
            {
                "due_on": L,
                "reason": L,
                "status": L,
                "cleared_by_contact_id": L,
                "cleared_on": L,
            },
        ),
        TableSpec(
            "what_matters",
            Kind.MUTABLE,
            {"life_area": L, "text": M, "priority": L},
            deletable=True,
        ),
        TableSpec(
            "goal",
            Kind.MUTABLE,
            {"text": M, "target_on": L, "status": L, "position": L, "progress_notes": M},
            deletable=True,
        ),
        TableSpec(
            "plan_action",
            Kind.MUTABLE,
            {"goal_id": I, "who": L, "what": M, "due_on": L, "done": L, "position": L},
            deletable=True,
        ),
        TableSpec(
            "onward_referral",
            Kind.MUTABLE,
            {
                "service_id": I,
                "service_name": I,
                "kind": I,
                "made_on": I,
                "need": L,
                "outcome": L,
                "outcome_on": L,
                "first_response_on": L,
                "notes": M,
                "need_id": L,
                "consent": L,
                "withdrawn_on": L,
                "withdrawn_reason": L,
            },
        ),
        TableSpec(
            "need",
            Kind.MUTABLE,
            {"category": L, "description": M, "status": L},
            deletable=True,
        ),
        TableSpec(
            "outcome_response",
            Kind.APPEND,
            {
                "instrument": I,
                "time_point": I,
                "taken_on": I,
                "responses": I,
                "complete": I,
                "score": I,
                "entered_in_error": L,
            },
        ),
        TableSpec(
            "audit_event",
            Kind.PUSH_ONLY,
            {
                "actor": I,
                "device_id": I,
                "action": I,
                "record_type": I,
                "record_id": I,
                "detail": I,
                "at": I,
                "prev_hash": I,
                "hash": I,
            },
        ),
        TableSpec(
            "directory_suggestion",
            Kind.PUSH_ONLY,
            {"service_id": I, "kind": I, "note": I, "suggested_on": I},
            person_scoped=False,
        ),
        TableSpec(
            "community_service",
            Kind.SERVER,
            {
                "organisation": L,
                "name": L,
                "description": L,
                "categories": L,
                "needs": L,
                "area": L,
                "address": L,
                "postcode": L,
                "phone": L,
                "email": L,
                "url": L,
                "eligibility": L,
                "cost": L,
                "referral_route": L,
                "opening_times": L,
                "accessibility": L,
                "last_verified": L,
                "active": L,
                "source_id": L,
                "languages": L,
                "min_age": L,
                "max_age": L,
                "withdrawn_on": L,
                "source": L,
            },
            person_scoped=False,
        ),
    ]
}

PULLED_TABLES = [t for t, s in TABLES.items() if s.kind is not Kind.PUSH_ONLY]
"""Tables a laptop receives from the server, in the order a snapshot sends them."""


def spec(table: str) -> TableSpec:
    """The spec of a synced table; KeyError for a table that does not sync."""
    return TABLES[table]
