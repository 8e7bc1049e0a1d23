"""Read-side queries for the screens: caseload paging and filtering, Today, a person's record."""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, func, literal_column
from sqlalchemy import text as sql_text
from sqlmodel import Session, select

from sprx_rules.nhs import format_nhs_number
from sprx_tui.core.models import (
    URGENCY_RANK,
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
    SafetyFlagChange,
    SyncConflict,
    SyncOutboxPending,
    SyncRejected,
    WhatMatters,
    utcnow,
)

# The caseload's orders, as SQL. Each one leads a covering index of migration 0004, written identically:
# SQLite uses an index on an expression only for the identical expression (a bound value would not do).
NEXT_FOLLOW_UP_KEY = "coalesce(next_follow_up_on, '9999-12-31')"  # no follow-up sorts last
# Written out, not built from parameters: SQLite uses ix_referral_triage only for the same expression.
URGENCY_ORDER = literal_column(URGENCY_RANK)

LAST_CONTACT_KEY = "coalesce(last_contact_on, '0000-01-01')"  # never seen sorts first
_BY_NAME = "family_name, given_name, id"
SORT_SQL = {
    "name": _BY_NAME,
    "next_follow_up": f"{NEXT_FOLLOW_UP_KEY}, {_BY_NAME}",
    "last_contact": f"{LAST_CONTACT_KEY}, {_BY_NAME}",
    "status": f"status, {_BY_NAME}",
}
# The index that yields each order and answers the filter (deleted, status, search_text) by itself.
# Named with INDEXED BY because, without statistics, SQLite's planner guesses that `deleted = 0` on
# ix_person_report is selective, reads every matching row and sorts them (p95 1.2 s at 10k people).
_CASELOAD_INDEX = {
    "name": "ix_person_caseload_name",
    "next_follow_up": "ix_person_caseload_next",
    "last_contact": "ix_person_caseload_last",
    "status": "ix_person_caseload_status",
}
# Just what a caseload row shows: never the per-field sync metadata, never an ORM object per row.
_CASELOAD_COLUMNS = (
    Person.id,
    Person.given_name,
    Person.preferred_name,
    Person.family_name,
    Person.nhs_number,
    Person.date_of_birth,
    Person.status,
    Person.last_contact_on,
    Person.next_follow_up_on,
    Person.safety_flags,
    Person.postcode,
)
_CASELOAD_SELECT = ", ".join(c.key for c in _CASELOAD_COLUMNS)  # type: ignore[attr-defined]


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
        """One page of the caseload, filtered and sorted in SQL, and the total that matched.

        The page and the count both come from one covering index (migration 0004): the page walks
        it in order and stops after `offset + limit` matches; the count reads index entries only.
        Whole rows are read for the page's people alone.
        """
        sort = sort if sort in SORT_SQL else "name"
        where = ["deleted = 0"]
        params: dict[str, Any] = {"limit": int(limit), "offset": int(offset)}
        if status:
            where.append("status = :status")
            params["status"] = status
        terms = _terms(text)
        for i, term in enumerate(terms):
            where.append(f"search_text LIKE :t{i} ESCAPE '\\'")
            params[f"t{i}"] = _like(term)
        # With a status filter the name order is the status index after its equality prefix.
        index = _CASELOAD_INDEX["status" if status and sort == "name" else sort]
        conditions = " AND ".join(where)
        # Without a text term ix_person_report (deleted, status) covers the count; with one, a caseload index.
        count_from = f"person INDEXED BY {_CASELOAD_INDEX['status' if status else 'name']}" if terms else "person"
        with self._session() as s:
            total = s.execute(sql_text(f"SELECT count(*) FROM {count_from} WHERE {conditions}"), params).scalar_one()
            rows = self._people(s, index, conditions, sort, params)
        return rows, int(total)

    def _people(self, s: Session, index: str, conditions: str, sort: str, params: dict[str, Any]) -> list[CaseloadRow]:
        """Caseload rows in `sort` order from a covering person index, reading whole rows for the page only."""
        page = sql_text(
            f"SELECT {_CASELOAD_SELECT} FROM person INDEXED BY {index} WHERE {conditions} "
            f"ORDER BY {SORT_SQL[sort]} LIMIT :limit OFFSET :offset"
        ).columns(*_CASELOAD_COLUMNS)
        today = self.today()
        return [self._caseload_row(r, today) for r in s.execute(page, params).all()]

    @staticmethod
    def _caseload_row(r: Any, today: dt.date) -> CaseloadRow:
        return CaseloadRow(
            id=r.id,
            name=f"{r.preferred_name or r.given_name} {r.family_name}",
            nhs_number=format_nhs_number(r.nhs_number) if r.nhs_number else "",
            age=age_on(r.date_of_birth, today),
            status=r.status,
            last_contact_on=r.last_contact_on,
            next_follow_up_on=r.next_follow_up_on,
            flags=tuple(r.safety_flags or ()),
            postcode=r.postcode or "",
        )

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

    def _follow_ups(self, *conditions: object, limit: int = 200) -> list[FollowUpRow]:
        # Columns only: an ORM Person per row would decode its per-field sync metadata for nothing.
        with self._session() as s:
            rows = s.exec(
                select(
                    FollowUp.id,
                    FollowUp.due_on,
                    FollowUp.reason,
                    Person.id.label("person_id"),  # type: ignore[attr-defined]
                    Person.given_name,
                    Person.preferred_name,
                    Person.family_name,
                    Person.safety_flags,
                )
                .join(Person, Person.id == FollowUp.person_id)
                .where(
                    FollowUp.status == "open",
                    FollowUp.deleted == False,  # noqa: E712
                    Person.deleted == False,  # noqa: E712
                    *conditions,
                )
                .order_by(FollowUp.due_on, Person.family_name)
                .limit(limit)
            ).all()
            return [
                FollowUpRow(
                    r.id,
                    r.person_id,
                    f"{r.preferred_name or r.given_name} {r.family_name}",
                    r.due_on,
                    r.reason,
                    tuple(r.safety_flags or ()),
                )
                for r in rows
            ]

    def due_today(self, limit: int = 200) -> list[FollowUpRow]:
        return self._follow_ups(FollowUp.due_on == self.today(), limit=limit)

    def overdue(self, limit: int = 200) -> list[FollowUpRow]:
        return self._follow_ups(FollowUp.due_on < self.today(), limit=limit)

    def today_totals(self, no_contact_days: int = 28) -> dict[str, int]:
        """The whole lengths of Today's lists (which are read capped): follow-ups due today and overdue,
        referrals waiting, active people not seen for `no_contact_days` or more."""
        follow_ups = (
            "SELECT count(*) FROM follow_up JOIN person ON person.id = follow_up.person_id "
            "WHERE follow_up.status = 'open' AND follow_up.deleted = 0 AND person.deleted = 0 AND follow_up.due_on {}"
        )
        sql = sql_text(
            f"SELECT ({follow_ups.format('= :today')}), ({follow_ups.format('< :today')}), "
            "(SELECT count(*) FROM referral JOIN person ON person.id = referral.person_id "
            "WHERE referral.status = 'received' AND referral.deleted = 0), "
            f"(SELECT count(*) FROM person INDEXED BY {_CASELOAD_INDEX['last_contact']} "
            f"WHERE deleted = 0 AND status = 'active' AND {LAST_CONTACT_KEY} <= :cutoff)"
        )
        today = self.today()
        params = {"today": today.isoformat(), "cutoff": (today - dt.timedelta(days=no_contact_days)).isoformat()}
        with self._session() as s:
            due, overdue, referrals, quiet = s.execute(sql, params).one()
        return {"due": int(due), "overdue": int(overdue), "referrals": int(referrals), "quiet": int(quiet)}

    def new_referrals(self, limit: int = 200) -> list[ReferralRow]:
        with self._session() as s:
            rows = s.exec(
                select(
                    Referral.id,
                    Referral.source,
                    Referral.received_on,
                    Referral.reasons,
                    Referral.urgency,
                    Person.id.label("person_id"),  # type: ignore[attr-defined]
                    Person.given_name,
                    Person.preferred_name,
                    Person.family_name,
                )
                .join(Person, Person.id == Referral.person_id)
                .where(Referral.status == "received", Referral.deleted == False)  # noqa: E712
                # Triage order: urgent first, then soon, then routine; the longest waiting first in each.
                .order_by(URGENCY_ORDER, Referral.received_on, Person.family_name)
                .limit(limit)
            ).all()
            return [
                ReferralRow(
                    r.id,
                    r.person_id,
                    f"{r.preferred_name or r.given_name} {r.family_name}",
                    r.source,
                    r.received_on,
                    tuple(r.reasons or ()),
                    r.urgency,
                )
                for r in rows
            ]

    def no_recent_contact(self, days: int = 28, limit: int = 50) -> list[CaseloadRow]:
        """Active people not seen for `days` or more (or never seen), longest first."""
        cutoff = self.today() - dt.timedelta(days=days)
        # The same expression as the last-contact order (never seen = '0000-01-01'), so this is a range
        # at the start of ix_person_caseload_last and stops after `limit` active people.
        conditions = f"deleted = 0 AND status = 'active' AND {LAST_CONTACT_KEY} <= :cutoff"
        params = {"cutoff": cutoff.isoformat(), "limit": int(limit), "offset": 0}
        with self._session() as s:
            return self._people(s, _CASELOAD_INDEX["last_contact"], conditions, "last_contact", params)

    # -- one person -------------------------------------------------------------------------

    def person(self, person_id: str) -> Person | None:
        with self._session(expire_on_commit=False) as s:
            p = s.get(Person, person_id)
            return None if p is None or p.deleted else p

    def people_with_nhs_number(self, nhs_number: str, *, other_than: str | None = None) -> list[tuple[str, str]]:
        """(id, name) of each person holding this NHS number (digits), but `other_than`: a duplicate to warn of."""
        with self._session() as s:
            rows = s.exec(
                select(Person.id, Person.given_name, Person.preferred_name, Person.family_name).where(
                    Person.nhs_number == nhs_number,
                    Person.deleted == False,  # noqa: E712
                    Person.id != (other_than or ""),
                )
            ).all()
        return [(r[0], f"{r[2] or r[1]} {r[3]}") for r in rows]

    def safety_flag_history(self, person_id: str) -> list[SafetyFlagChange]:
        """Each safety flag added or removed, newest first: what, why, by whom and when."""
        with self._session() as s:
            return list(
                s.exec(
                    select(SafetyFlagChange)
                    .where(SafetyFlagChange.person_id == person_id, SafetyFlagChange.deleted == False)  # noqa: E712
                    .order_by(SafetyFlagChange.changed_at.desc(), SafetyFlagChange.id.desc())  # type: ignore[attr-defined]
                ).all()
            )

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
                select(Contact)
                .where(Contact.person_id == person_id)
                .order_by(Contact.occurred_at.desc(), Contact.id.desc())  # type: ignore[attr-defined]
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
        """Changes waiting to be sent: one row kept by triggers on the outbox (migration 0005)."""
        with self._session() as s:
            return int(s.get_one(SyncOutboxPending, 1).n)

    def open_conflicts(self) -> int:
        with self._session() as s:
            return int(
                s.exec(select(func.count()).select_from(SyncConflict).where(SyncConflict.status == "open")).one()
            )

    def rejected_changes(self) -> int:
        with self._session() as s:
            return int(s.exec(select(func.count()).select_from(SyncRejected)).one())
