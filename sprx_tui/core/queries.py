"""Read-side queries for the screens: caseload paging and filtering, Today, a person's record."""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, func, or_
from sqlmodel import Session, select

from sprx_tui.core.models import (
    Contact,
    ContactAmendment,
    FollowUp,
    Goal,
    Need,
    OnwardReferral,
    OutcomeResponse,
    Person,
    PlanAction,
    Referral,
    SyncConflict,
    SyncOutbox,
    SyncRejected,
    WhatMatters,
    utcnow,
)
from sprx_tui.core.validate import format_nhs_number

SORTS = {
    "name": (Person.family_name, Person.given_name, Person.id),
    "next_follow_up": (
        func.coalesce(Person.next_follow_up_on, "9999-12-31"),
        Person.family_name,
        Person.id,
    ),
    "last_contact": (
        func.coalesce(Person.last_contact_on, "0000-01-01"),
        Person.family_name,
        Person.id,
    ),
    "status": (Person.status, Person.family_name, Person.id),
}


def age_on(born: dt.date | None, today: dt.date) -> int | None:
    if born is None:
        return None
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


@dataclass(frozen=True)
class CaseloadRow:
    id: str
    name: str
    nhs_number: str
    age: int | None
    status: str
    last_contact_on: dt.date | None
    next_follow_up_on: dt.date | None
    flags: tuple[str, ...]
    postcode: str


@dataclass(frozen=True)
class FollowUpRow:
    follow_up_id: str
    person_id: str
    name: str
    due_on: dt.date
    reason: str
    flags: tuple[str, ...]


@dataclass(frozen=True)
class ReferralRow:
    referral_id: str
    person_id: str
    name: str
    source: str
    received_on: dt.date
    reasons: tuple[str, ...]
    urgency: str


@dataclass
class TimelineEntry:
    contact: Contact
    amendments: list[ContactAmendment] = field(default_factory=list)


@dataclass
class GoalWithActions:
    goal: Goal
    actions: list[PlanAction] = field(default_factory=list)


def _terms(text: str) -> list[str]:
    """Filter terms: digits typed with spaces or dashes (an NHS number) become one term."""
    text = text.strip().lower()
    if re.fullmatch(r"[\d\s-]+", text):
        return [re.sub(r"[\s-]", "", text)]
    return [t for t in re.split(r"\s+", text) if t]


def _like(term: str) -> str:
    return "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class CaseQueries:
    """Everything a screen reads. Each call is one short read transaction."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
        lock: threading.RLock | None = None,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.lock = lock or threading.RLock()

    @contextmanager
    def _session(self, **kwargs: Any) -> Iterator[Session]:
        """A short read; holds the store lock because worker threads share one connection."""
        with self.lock, Session(self.engine, **kwargs) as s:
            yield s

    def today(self) -> dt.date:
        return self.clock().date()

    def _row(self, p: Person, today: dt.date) -> CaseloadRow:
        return CaseloadRow(
            id=p.id,
            name=p.display_name,
            nhs_number=format_nhs_number(p.nhs_number) if p.nhs_number else "",
            age=age_on(p.date_of_birth, today),
            status=p.status,
            last_contact_on=p.last_contact_on,
            next_follow_up_on=p.next_follow_up_on,
            flags=tuple(p.safety_flags or ()),
            postcode=p.postcode or "",
        )

    # -- caseload -------------------------------------------------------------------------

    def caseload(
        self,
        *,
        text: str = "",
        status: str | None = None,
        sort: str = "name",
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[CaseloadRow], int]:
        """One page of the caseload, filtered and sorted in SQL, and the total that matched."""
        conditions = [Person.deleted == False]  # noqa: E712
        if status:
            conditions.append(Person.status == status)
        for term in _terms(text):
            conditions.append(Person.search_text.like(_like(term), escape="\\"))  # type: ignore[attr-defined]
        today = self.today()
        with self._session() as s:
            total = s.exec(select(func.count()).select_from(Person).where(*conditions)).one()
            rows = s.exec(
                select(Person).where(*conditions).order_by(*SORTS.get(sort, SORTS["name"])).limit(limit).offset(offset)
            ).all()
            return [self._row(p, today) for p in rows], int(total)

    def search(self, text: str, limit: int = 20) -> list[CaseloadRow]:
        rows, _ = self.caseload(text=text, limit=limit)
        return rows

    def status_counts(self) -> dict[str, int]:
        with self._session() as s:
            rows = s.exec(
                select(Person.status, func.count()).where(Person.deleted == False).group_by(Person.status)  # noqa: E712
            ).all()
            return {status: int(n) for status, n in rows}

    # -- Today ----------------------------------------------------------------------------

    def _follow_ups(self, *conditions: object) -> list[FollowUpRow]:
        with self._session() as s:
            rows = s.exec(
                select(FollowUp, Person)
                .join(Person, Person.id == FollowUp.person_id)
                .where(
                    FollowUp.status == "open",
                    FollowUp.deleted == False,
                    Person.deleted == False,
                    *conditions,
                )  # noqa: E712
                .order_by(FollowUp.due_on, Person.family_name)
                .limit(200)
            ).all()
            return [
                FollowUpRow(f.id, p.id, p.display_name, f.due_on, f.reason, tuple(p.safety_flags or ()))
                for f, p in rows
            ]

    def due_today(self) -> list[FollowUpRow]:
        return self._follow_ups(FollowUp.due_on == self.today())

    def overdue(self) -> list[FollowUpRow]:
        return self._follow_ups(FollowUp.due_on < self.today())

    def new_referrals(self) -> list[ReferralRow]:
        with self._session() as s:
            rows = s.exec(
                select(Referral, Person)
                .join(Person, Person.id == Referral.person_id)
                .where(Referral.status == "received", Referral.deleted == False)  # noqa: E712
                .order_by(Referral.received_on, Person.family_name)
                .limit(200)
            ).all()
            return [
                ReferralRow(
                    r.id,
                    p.id,
                    p.display_name,
                    r.source,
                    r.received_on,
                    tuple(r.reasons or ()),
                    r.urgency,
                )
                for r, p in rows
            ]

    def no_recent_contact(self, days: int = 28, limit: int = 50) -> list[CaseloadRow]:
        """Active people not seen for `days` or more (or never seen)."""
        cutoff = self.today() - dt.timedelta(days=days)
        today = self.today()
        with self._session() as s:
            rows = s.exec(
                select(Person)
                .where(
                    Person.deleted == False,  # noqa: E712
                    Person.status == "active",
                    or_(Person.last_contact_on == None, Person.last_contact_on <= cutoff),  # noqa: E711
                )
                .order_by(func.coalesce(Person.last_contact_on, "0000-01-01"), Person.family_name)
                .limit(limit)
            ).all()
            return [self._row(p, today) for p in rows]

    # -- one person -------------------------------------------------------------------------

    def person(self, person_id: str) -> Person | None:
        with self._session(expire_on_commit=False) as s:
            p = s.get(Person, person_id)
            return None if p is None or p.deleted else p

    def referrals(self, person_id: str) -> list[Referral]:
        with self._session() as s:
            return list(
                s.exec(
                    select(Referral)
                    .where(Referral.person_id == person_id, Referral.deleted == False)  # noqa: E712
                    .order_by(Referral.received_on.desc())  # type: ignore[attr-defined]
                ).all()
            )

    def timeline(self, person_id: str) -> list[TimelineEntry]:
        """Contacts newest first, each with its amendments (entered-in-error ones included, marked)."""
        with self._session() as s:
            contacts = s.exec(
                select(Contact).where(Contact.person_id == person_id).order_by(Contact.occurred_at.desc(), Contact.id)  # type: ignore[attr-defined]
            ).all()
            amendments = s.exec(
                select(ContactAmendment)
                .where(ContactAmendment.person_id == person_id)
                .order_by(ContactAmendment.amended_at)
            ).all()
        by_contact: dict[str, list[ContactAmendment]] = {}
        for a in amendments:
            by_contact.setdefault(a.contact_id, []).append(a)
        return [TimelineEntry(c, by_contact.get(c.id, [])) for c in contacts]

    def what_matters(self, person_id: str) -> list[WhatMatters]:
        with self._session() as s:
            return list(
                s.exec(
                    select(WhatMatters)
                    .where(WhatMatters.person_id == person_id, WhatMatters.deleted == False)  # noqa: E712
                    .order_by(WhatMatters.priority.desc(), WhatMatters.created_at)  # type: ignore[attr-defined]
                ).all()
            )

    def plan(self, person_id: str) -> list[GoalWithActions]:
        with self._session() as s:
            goals = s.exec(
                select(Goal)
                .where(Goal.person_id == person_id, Goal.deleted == False)  # noqa: E712
                .order_by(Goal.position, Goal.id)
            ).all()
            actions = s.exec(
                select(PlanAction)
                .where(PlanAction.person_id == person_id, PlanAction.deleted == False)  # noqa: E712
                .order_by(PlanAction.position, PlanAction.id)
            ).all()
        out = {g.id: GoalWithActions(g) for g in goals}
        for a in actions:
            if a.goal_id in out:
                out[a.goal_id].actions.append(a)
        return list(out.values())

    def follow_ups(self, person_id: str, *, open_only: bool = True) -> list[FollowUp]:
        with self._session() as s:
            q = select(FollowUp).where(FollowUp.person_id == person_id, FollowUp.deleted == False)  # noqa: E712
            if open_only:
                q = q.where(FollowUp.status == "open")
            return list(s.exec(q.order_by(FollowUp.due_on)).all())

    def onward_referrals(self, person_id: str) -> list[OnwardReferral]:
        with self._session() as s:
            return list(
                s.exec(
                    select(OnwardReferral)
                    .where(OnwardReferral.person_id == person_id, OnwardReferral.deleted == False)  # noqa: E712
                    .order_by(OnwardReferral.made_on.desc())  # type: ignore[attr-defined]
                ).all()
            )

    def needs(self, person_id: str) -> list[Need]:
        with self._session() as s:
            return list(
                s.exec(
                    select(Need).where(Need.person_id == person_id, Need.deleted == False)  # noqa: E712
                ).all()
            )

    def outcomes(self, person_id: str) -> list[OutcomeResponse]:
        with self._session() as s:
            return list(
                s.exec(
                    select(OutcomeResponse)
                    .where(OutcomeResponse.person_id == person_id)
                    .order_by(OutcomeResponse.taken_on, OutcomeResponse.created_at)
                ).all()
            )

    # -- sync state for the status bar ------------------------------------------------------

    def pending_changes(self) -> int:
        with self._session() as s:
            return int(s.exec(select(func.count()).select_from(SyncOutbox).where(SyncOutbox.status == "pending")).one())

    def open_conflicts(self) -> int:
        with self._session() as s:
            return int(
                s.exec(select(func.count()).select_from(SyncConflict).where(SyncConflict.status == "open")).one()
            )

    def rejected_changes(self) -> int:
        with self._session() as s:
            return int(s.exec(select(func.count()).select_from(SyncRejected)).one())
