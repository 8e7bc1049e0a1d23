"""SQLModel tables of the encrypted local vault: the case record, the sync outbox and the audit trail."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, Integer, text
from sqlmodel import Field, SQLModel

# --- vocabularies (values are stored; labels are for people) ---------------------------------


URGENCY_RANK = "CASE urgency WHEN 'urgent' THEN 0 WHEN 'soon' THEN 1 ELSE 2 END"
"""A referral's place in triage order: urgent, soon, routine (and anything else). Indexed (ix_referral_triage)."""


class PersonStatus(StrEnum):
    REFERRED = "referred"
    ACTIVE = "active"
    DISCHARGED = "discharged"
    DECLINED = "declined"
    DID_NOT_ENGAGE = "did_not_engage"


class ReferralStatus(StrEnum):
    RECEIVED = "received"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    CLOSED = "closed"


REFERRAL_SOURCES: dict[str, str] = {
    "gp": "GP",
    "nurse": "Practice nurse",
    "pharmacy": "Pharmacy",
    "hospital_discharge": "Hospital discharge team",
    "mdt": "Multidisciplinary team",
    "ahp": "Allied health professional",
    "fire_service": "Fire service",
    "police": "Police",
    "job_centre": "Job centre",
    "social_care": "Social care",
    "housing_association": "Housing association",
    "vcse": "Voluntary or community organisation",
    "self": "Self-referral",
}

REFERRAL_REASONS: dict[str, str] = {
    "loneliness": "Loneliness or isolation",
    "low_mood": "Low mood or anxiety",
    "long_term_condition": "Long-term condition",
    "money": "Money or debt",
    "housing": "Housing",
    "bereavement": "Bereavement",
    "employment": "Employment",
    "carer_strain": "Carer strain",
    "physical_activity": "Physical activity",
    "weight": "Healthy weight",
    "substance_use": "Alcohol or substance use",
    "digital": "Digital inclusion",
}

CONTACT_MODES: dict[str, str] = {
    "home_visit": "Home visit",
    "phone": "Phone call",
    "video": "Video call",
    "clinic": "Clinic",
    "community": "Community meeting",
}

SAFETY_FLAGS: dict[str, str] = {
    "do_not_visit_alone": "Do not visit alone",
    "animals": "Animals in the home",
    "access": "Access notes",
    "aggression": "History of aggression",
    "smoking": "Smoking in the home",
    "infection": "Infection control",
}

GOAL_STATUSES: dict[str, str] = {
    "not_started": "Not started",
    "in_progress": "In progress",
    "achieved": "Achieved",
    "dropped": "Dropped",
}

ONWARD_KINDS: dict[str, str] = {
    "signposted": "Signposted",
    "referred": "Referred",
    "accompanied": "Accompanied",
}

ONWARD_OUTCOMES: dict[str, str] = {
    "pending": "Awaiting outcome",
    "attended": "Attended",
    "waiting": "On a waiting list",
    "not_attended": "Did not attend",
    "declined": "Declined",
}

LIFE_AREAS: dict[str, str] = {
    "connection": "People and connection",
    "health": "Health and wellbeing",
    "money": "Money",
    "home": "Home",
    "activity": "Activity and interests",
    "work": "Work, learning and volunteering",
    "other": "Other",
}

NEED_CATEGORIES: dict[str, str] = {k: v for k, v in REFERRAL_REASONS.items()}

DISCHARGE_REASONS: dict[str, str] = {
    "goals_met": "Goals met",
    "moved_away": "Moved away",
    "declined_support": "Declined further support",
    "did_not_engage": "Did not engage",
    "died": "Died",
    "other": "Other",
}
"""Why an episode ended (Referral.close_reason).

"did_not_engage" leaves the person did-not-engage; the rest leave them discharged."""

DECLINE_REASONS: dict[str, str] = {
    "not_wanted": "Does not want support at present",
    "other_service": "Already supported by another service",
    "moved_away": "Moved away from the area",
    "clinical_need": "Needs are clinical; back to the GP",
    "not_contactable": "Could not be contacted",
    "other": "Other",
}
"""Why a referral was declined at triage (Referral.decline_code); the words stay in decline_reason."""

WITHDRAW_REASONS: dict[str, str] = {
    "made_in_error": "Made in error",
    "wrong_service": "Wrong service",
    "person_changed_mind": "Person changed their mind",
    "other": "Other",
}
"""Why an onward referral was withdrawn (OnwardReferral.withdrawn_reason starts with the label)."""

SNOMED_REFERRAL_ACCEPTED = "871731000000106"  # Referral to social prescribing service
SNOMED_SP_DECLINED = "871711000000103"  # Social prescribing declined


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- the synced-row columns every domain table carries ------------------------------------------


class Synced(SQLModel):
    """Columns every synced row has (DESIGN.md sections 5 and 7)."""

    id: str = Field(primary_key=True, max_length=36)  # client-generated UUIDv7
    practice_id: str = Field(index=False)
    person_id: str = Field(index=True)  # the scope key
    row_hlc: int = Field(default=0, sa_type=Integer)
    field_meta: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    server_seq: int | None = Field(default=None)  # None until the server has acknowledged
    deleted: bool = Field(default=False)
    created_at: dt.datetime = Field(default_factory=utcnow)
    created_by: str = ""
    created_on_device: str = ""


class Person(Synced, table=True):
    __tablename__ = "person"
    # Covering index for the report's caseload-by-status count (migration 0003).
    # Caseload: one covering index per sort, led by the sort key, so a filtered page and its count read
    # only the index (migration 0004; the expressions must match queries.SORT_SQL exactly).
    # ix_person_names: the names Today lists follow-ups under, without reading person rows (0004).
    __table_args__ = (
        Index("ix_person_report", "deleted", "status"),
        Index("ix_person_names", "id", "deleted", "family_name", "given_name", "preferred_name", "safety_flags"),
        Index("ix_person_caseload_name", "family_name", "given_name", "id", "deleted", "status", "search_text"),
        Index("ix_person_caseload_status", "status", "family_name", "given_name", "id", "deleted", "search_text"),
        Index(
            "ix_person_caseload_next",
            text("coalesce(next_follow_up_on, '9999-12-31')"),
            *("family_name", "given_name", "id", "deleted", "status", "search_text"),
        ),
        Index(
            "ix_person_caseload_last",
            text("coalesce(last_contact_on, '0000-01-01')"),
            *("family_name", "given_name", "id", "deleted", "status", "search_text"),
        ),
    )
    nhs_number: str | None = Field(default=None, index=True, max_length=10)
    given_name: str
    family_name: str
    preferred_name: str | None = None
    date_of_birth: dt.date | None = None
    gender: str | None = None
    address: str | None = None
    postcode: str | None = Field(default=None, index=True)
    phone: str | None = None
    email: str | None = None
    preferred_contact: str | None = None  # phone / text / email / letter / visit
    communication_needs: str | None = None
    interpreter_language: str | None = None
    # Accessible Information Standard needs beside an interpreter (migration 0009).
    hearing_need: bool = False
    sight_need: bool = False
    easy_read: bool = False
    gp_practice: str | None = None
    consent_social_prescribing: bool = False
    consent_gp_sharing: str = "full"  # full / codes_only / none
    safety_flags: list[str] = Field(default_factory=list, sa_type=JSON)
    safety_notes: str | None = None
    status: str = Field(default=PersonStatus.REFERRED.value, index=True)
    status_changed_on: dt.date | None = None
    # Denormalised for the caseload table, maintained by the service layer (not synced).
    search_text: str = Field(default="", index=False)
    last_contact_on: dt.date | None = None
    next_follow_up_on: dt.date | None = None

    @property
    def display_name(self) -> str:
        given = self.preferred_name or self.given_name
        return f"{given} {self.family_name}"


class Referral(Synced, table=True):
    __tablename__ = "referral"
    # Covering index for the report's referral counts by source, decision and reason (migration 0003);
    # a person's referrals, and Today's new ones, in date order (0004).
    __table_args__ = (
        Index("ix_referral_report", "deleted", "source", "status", "reasons"),
        Index("ix_referral_person", "person_id", "deleted", "received_on"),
        # Today's new referrals, urgent first (URGENCY_RANK, the query's own words; migration 0006).
        Index("ix_referral_triage", "status", "deleted", text(URGENCY_RANK), "received_on"),
    )
    source: str
    referrer_name: str | None = None
    received_on: dt.date
    reasons: list[str] = Field(default_factory=list, sa_type=JSON)
    referral_text: str | None = None
    urgency: str = "routine"  # routine / soon / urgent
    status: str = Field(default=ReferralStatus.RECEIVED.value, index=True)
    decided_on: dt.date | None = None
    decline_reason: str | None = None
    snomed_code: str | None = None
    # Decline at triage: a code from DECLINE_REASONS (the words in decline_reason). Migration 0010.
    decline_code: str | None = None
    # The end of the episode this referral began (status "closed"): when, and a code from DISCHARGE_REASONS.
    closed_on: dt.date | None = None
    close_reason: str | None = None
    close_note: str | None = None


class Contact(Synced, table=True):
    __tablename__ = "contact"
    __table_args__ = (
        Index("ix_contact_person_when", "person_id", "occurred_at"),
        # Covering index: the report counts contacts per person and mode without reading the rows (0003).
        Index("ix_contact_report", "deleted", "entered_in_error", "person_id", "mode", "did_not_attend"),
    )
    referral_id: str | None = None
    occurred_at: dt.datetime
    mode: str
    duration_minutes: int = 0
    notes: str = ""
    did_not_attend: bool = False
    follow_up_on: dt.date | None = None
    author: str = ""
    entered_in_error: bool = False
    error_reason: str | None = None


class ContactAmendment(Synced, table=True):
    __tablename__ = "contact_amendment"
    contact_id: str = Field(index=True)
    text: str
    reason: str = ""
    author: str = ""
    amended_at: dt.datetime = Field(default_factory=utcnow)


class SafetyFlagChange(Synced, table=True):
    """A home-visit safety flag added to or removed from a person, with why, by whom and when (migration 0009).

    Append-only: the person's ``safety_flags`` is the current set; these rows are its history.
    """

    __tablename__ = "safety_flag_change"
    __table_args__ = (Index("ix_safety_flag_change_person", "person_id", "changed_at"),)
    flag: str
    change: str  # added / removed
    reason: str = ""
    author: str = ""
    changed_at: dt.datetime = Field(default_factory=utcnow)


class FollowUp(Synced, table=True):
    __tablename__ = "follow_up"
    # Today's due and overdue lists, covered; and a person's open follow-ups, looked up by every contact
    # save (migration 0004).
    __table_args__ = (
        Index("ix_follow_up_due", "status", "deleted", "due_on", "person_id", "reason", "id"),
        Index("ix_follow_up_person_open", "person_id", "status", "deleted", "due_on"),
    )
    due_on: dt.date
    reason: str = ""
    status: str = "open"  # open / cleared / cancelled
    cleared_by_contact_id: str | None = None
    cleared_on: dt.date | None = None


class WhatMatters(Synced, table=True):
    __tablename__ = "what_matters"
    life_area: str = "other"
    text: str
    priority: int = 0


class Goal(Synced, table=True):
    __tablename__ = "goal"
    text: str
    target_on: dt.date | None = None
    status: str = "not_started"
    position: str = "m"  # fractional index; ties sort by id
    progress_notes: str = ""


class PlanAction(Synced, table=True):
    __tablename__ = "plan_action"
    goal_id: str = Field(index=True)
    who: str = "person"  # person / link worker / a named service
    what: str
    due_on: dt.date | None = None
    done: bool = False
    position: str = "m"


class OnwardReferral(Synced, table=True):
    __tablename__ = "onward_referral"
    service_id: str = Field(index=True)
    service_name: str = ""
    kind: str = "signposted"
    made_on: dt.date
    need: str | None = None
    outcome: str = "pending"
    outcome_on: dt.date | None = None
    first_response_on: dt.date | None = None
    notes: str = ""
    # The person's Need row this addresses (need holds its category), whether the person agreed to the
    # referral, and a withdrawal: kept, shown as withdrawn, left out of uptake figures. Migration 0010.
    need_id: str | None = None
    consent: bool = False
    withdrawn_on: dt.date | None = None
    withdrawn_reason: str | None = None


class Need(Synced, table=True):
    __tablename__ = "need"
    category: str
    description: str = ""
    status: str = "open"  # open / met / unmet (no suitable service)


class OutcomeResponse(Synced, table=True):
    __tablename__ = "outcome_response"
    # The report pairs baseline and discharge measures and reads their scores from this index alone (0003).
    __table_args__ = (
        Index(
            "ix_outcome_report",
            *("time_point", "instrument", "person_id", "complete", "entered_in_error", "deleted"),
            *("taken_on", "id", "score"),
        ),
    )
    instrument: str
    time_point: str  # baseline / review / discharge
    taken_on: dt.date
    responses: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    complete: bool = False
    score: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    entered_in_error: bool = False


class CommunityService(SQLModel, table=True):
    """A directory entry: server-authoritative, cached on the laptop."""

    __tablename__ = "community_service"
    # Directory search filters and pages from this index alone, never reading whole rows (0003).
    __table_args__ = (
        Index(
            "ix_community_service_search",
            *("active", "name", "id", "search_text", "categories", "needs", "area", "postcode"),
        ),
    )
    id: str = Field(primary_key=True)
    practice_id: str = ""
    organisation: str = ""
    name: str
    description: str = ""
    categories: list[str] = Field(default_factory=list, sa_type=JSON)
    needs: list[str] = Field(default_factory=list, sa_type=JSON)
    area: str = ""
    address: str = ""
    postcode: str = ""
    phone: str = ""
    email: str = ""
    url: str = ""
    eligibility: str = ""
    cost: str = ""
    referral_route: str = ""
    opening_times: str = ""
    accessibility: str = ""
    last_verified: dt.date | None = None
    active: bool = True
    source_id: str = ""
    languages: list[str] = Field(default_factory=list, sa_type=JSON)
    min_age: int | None = None
    max_age: int | None = None
    withdrawn_on: dt.date | None = None  # the day a full import no longer held it (then inactive)
    source: str = ""  # which feed or package it came from ("" the practice's default one)
    search_text: str = ""
    server_seq: int | None = None


class DirectorySuggestion(SQLModel, table=True):
    __tablename__ = "directory_suggestion"
    id: str = Field(primary_key=True)
    practice_id: str
    person_id: str | None = None
    service_id: str
    kind: str  # closed / details_changed
    note: str = ""
    suggested_on: dt.date


class AuditEvent(SQLModel, table=True):
    """Append-only, hash-chained: who did what to whose record, never clinical content."""

    __tablename__ = "audit_event"
    __table_args__ = {"sqlite_autoincrement": True}
    seq: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True))
    id: str = Field(unique=True)
    practice_id: str
    person_id: str | None = Field(default=None, index=True)
    actor: str
    device_id: str
    action: str  # CREATE / UPDATE / VIEW / EXPORT / UNLOCK / UNLOCK_FAIL / LOCK / SYNC ...
    record_type: str = ""
    record_id: str = ""
    detail: str = ""  # codes and counts only
    at: dt.datetime
    prev_hash: str
    hash: str


# --- local sync bookkeeping (never synced itself) ----------------------------------------------


class SyncOutbox(SQLModel, table=True):
    __tablename__ = "sync_outbox"
    __table_args__ = {"sqlite_autoincrement": True}  # mutation ids are never reused
    mutation_id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True))
    payload_ver: int = 1
    tbl: str
    row_id: str
    person_id: str | None = None
    op: str  # insert / patch / delete / resolve
    fields: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    hlc: int
    conflict_id: str | None = None
    created_at: dt.datetime = Field(default_factory=utcnow)
    status: str = Field(default="pending", index=True)  # pending / acked / rejected
    attempts: int = 0
    last_error: str | None = None


class SyncOutboxPending(SQLModel, table=True):
    """How many outbox rows are pending, kept by triggers on sync_outbox (migration 0005).

    The status bar shows it at every unlock and refresh; counting the rows each time read every
    pending entry of the status index (57 ms on a never-synced 10k demo vault, holding the store).
    """

    __tablename__ = "sync_outbox_pending"
    id: int = Field(default=1, primary_key=True)
    n: int = 0


class SyncState(SQLModel, table=True):
    __tablename__ = "sync_state"
    key: str = Field(primary_key=True)
    value: str


class HlcState(SQLModel, table=True):
    __tablename__ = "hlc_state"
    id: int = Field(default=1, primary_key=True)
    last: int = 0


class SyncConflict(SQLModel, table=True):
    __tablename__ = "sync_conflict"
    id: str = Field(primary_key=True)
    tbl: str
    row_id: str
    person_id: str | None = Field(default=None, index=True)
    field: str
    kind: str = "concurrent_edit"
    values_json: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    shown_idx: int = 0
    status: str = Field(default="open", index=True)
    resolution: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    server_seq: int | None = None


class SyncRejected(SQLModel, table=True):
    __tablename__ = "sync_rejected"
    mutation_id: int = Field(primary_key=True)
    tbl: str
    row_id: str
    person_id: str | None = None
    reason_code: str
    detail: str = ""
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    rejected_at: dt.datetime = Field(default_factory=utcnow)


class SyncQuarantine(SQLModel, table=True):
    """A row (or conflict) from the server that the inbound gate (``sprx_rules.gate``) refused: set aside, not applied.

    Kept: where it is, which field and the gate's plain reason, and the server's sequence number;
    never the refused value itself, only a short excerpt made visible by ``gate.visible``. A later
    version of the same row that passes the gate applies as usual and removes the entry (migration 0007).
    """

    __tablename__ = "sync_quarantine"
    tbl: str = Field(primary_key=True)
    """The table of the row, or "sync_conflict" for a conflict (row_id is then the conflict's id)."""
    row_id: str = Field(primary_key=True)
    person_id: str | None = Field(default=None, index=True)
    field: str
    reason: str
    excerpt: str = ""
    server_seq: int | None = None
    set_aside_at: dt.datetime = Field(default_factory=utcnow)


class Draft(SQLModel, table=True):
    """Unsaved form text kept (encrypted) across a lock, offered back after unlock."""

    __tablename__ = "draft"
    key: str = Field(primary_key=True)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    updated_at: dt.datetime = Field(default_factory=utcnow)


SYNCED_MODELS: dict[str, type[Synced]] = {
    m.__tablename__: m  # type: ignore[misc]
    for m in (
        Person,
        Referral,
        Contact,
        ContactAmendment,
        SafetyFlagChange,
        FollowUp,
        WhatMatters,
        Goal,
        PlanAction,
        OnwardReferral,
        Need,
        OutcomeResponse,
    )
}
