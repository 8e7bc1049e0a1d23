"""The services directory on the laptop: HSDS import, SQL-backed search, staleness and per-service uptake.

The directory is server-authoritative: an enrolled laptop receives it by sync. `import_hsds` is for
a practice with no server; it writes the local cache table directly, in one transaction, and audits
an IMPORT event. Screens call the functions here from a thread worker; each is one short read or
one write transaction under the store's lock.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from sprx_rules.directory import plan_import, read_directory, report_lines
from sprx_rules.hsds import Problem, ServiceRecord
from sprx_tui.core.models import REFERRAL_REASONS, CommunityService, OnwardReferral
from sprx_tui.core.store import CaseStore

__all__ = [
    "KNOWN_OUTCOMES",
    "STALE_AFTER_DAYS",
    "ImportResult",
    "ServiceRow",
    "ServiceUptake",
    "areas",
    "categories",
    "get_service",
    "import_directory",
    "import_hsds",
    "is_stale",
    "search_services",
    "search_text_for",
    "uptake",
]

STALE_AFTER_DAYS = 183
"""An entry not verified for more than this many days (six months) is shown as stale."""

KNOWN_OUTCOMES = ("attended", "not_attended", "declined")
"""Onward-referral outcomes that settle whether the person went. "waiting" and "pending" do not."""

_SYNCED_FIELDS = ServiceRecord.FIELDS


@dataclass(frozen=True)
class ImportResult:
    """What an import did. `problems` lines read `file:line: reason`; `lines` is the report to print."""

    added: int
    updated: int
    unchanged: int
    problems: list[Problem] = field(default_factory=list)
    inactive: int = 0
    withdrawn: int = 0
    lines: tuple[str, ...] = ()
    format: str = ""

    @property
    def imported(self) -> int:
        """Services read from the package (added + updated + unchanged)."""
        return self.added + self.updated + self.unchanged


@dataclass(frozen=True)
class ServiceRow:
    """One line of the directory list."""

    id: str
    name: str
    organisation: str
    area: str
    postcode: str
    phone: str
    categories: tuple[str, ...]
    needs: tuple[str, ...]
    last_verified: dt.date | None
    active: bool
    stale: bool


@dataclass(frozen=True)
class ServiceUptake:
    """How a service's onward referrals went.

    attendance_rate = attended / (attended + not attended + declined): only referrals whose outcome
    is known count, so a long waiting list does not look like poor attendance. None when no
    referral has a known outcome. median_days_to_first_response is the median of
    (first response date - referral date) in days over referrals with a first response recorded.
    """

    service_id: str
    service_name: str
    referrals: int
    signposted: int
    referred: int
    accompanied: int
    attended: int
    not_attended: int
    declined: int
    waiting: int
    pending: int
    known_outcome: int
    attendance_rate: float | None
    median_days_to_first_response: float | None
    responses_timed: int


# -- search text ----------------------------------------------------------------------------------


def search_text_for(service: CommunityService | ServiceRecord) -> str:
    """What directory search matches: names, description, categories, needs (keys and labels), place, languages.

    Anything that writes CommunityService rows (import here, the sync client on pull) must set
    `search_text` with this, or the row cannot be found by text.
    """
    needs = list(service.needs or [])
    parts = [
        service.name,
        service.organisation,
        service.description,
        " ".join(c.replace("_", " ") for c in service.categories or []),
        " ".join(needs),
        " ".join(REFERRAL_REASONS.get(n, "") for n in needs),
        service.area,
        service.address,
        service.postcode,
        (service.postcode or "").replace(" ", ""),
        service.eligibility,
        " ".join(service.languages or []),
    ]
    return " ".join(p.lower() for p in parts if p)


def _like(term: str) -> str:
    return "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _json_has(column: Any, value: str) -> Any:
    # JSON lists are stored as text like ["walking", "arts"]; the quotes make this an exact element match.
    return sa.cast(column, sa.String).like(_like(f'"{value}"'), escape="\\")


# -- import ----------------------------------------------------------------------------------------


def _stored(value: Any) -> Any:
    """A stored column value as the JSON value the plan compares (dates as ISO strings, lists as lists)."""
    if isinstance(value, dt.date):
        return value.isoformat()
    return list(value) if isinstance(value, list | tuple) else value


def _local(field_name: str, value: Any) -> Any:
    if field_name in ("last_verified", "withdrawn_on") and isinstance(value, str):
        return dt.date.fromisoformat(value)
    return value


def import_directory(
    store: CaseStore,
    path: Path | str,
    *,
    full: bool = True,
    source: str = "",
    today: dt.date | None = None,
    progress: Callable[[str, int, int | None], None] | None = None,
) -> ImportResult:
    """Add, update and withdraw directory entries from any supported package or file, in one transaction.

    Formats: see sprx_rules.directory.read_directory. Ids come from the publisher's service ids, so
    importing the same package again changes nothing. A full import (the default) marks the services
    of this source it no longer holds inactive with today's date; `full=False` (--partial) changes
    only what it holds. Fields the source does not state keep their stored values.
    Raises HsdsError (a plain sentence) only when nothing at the path can be read.
    `progress(phase, done, total)` hears "read" (the package, total unknown) and then "write" (entries
    written of those to add, update or withdraw), as the command line's progress bar wants.
    """
    report = progress or _no_progress
    report("read", 0, None)
    records, problems, fmt = read_directory(path, practice_id=store.actor.practice_id, source=source)
    report("read", len(records), len(records))
    table = CommunityService.__table__  # type: ignore[attr-defined]
    columns = [table.c[f] for f in ("id", *_SYNCED_FIELDS)]
    day = today or store.queries.today()
    with store.service.transaction() as s:
        # Core statements, not ORM objects: building 5,000 SQLModel rows took 6 s of a 10 s import.
        existing = {
            row.id: {f: _stored(getattr(row, f)) for f in _SYNCED_FIELDS}
            for row in s.execute(sa.select(*columns).where(table.c.practice_id == store.actor.practice_id))
        }
        if not records and full:
            full = False  # a package that yields nothing must not withdraw the whole directory
        plan = plan_import(records, existing, full=full, source=source, today=day, problems=problems)
        by_id = {r.id: r for r in records}
        total = len(plan.inserts) + len(plan.updates) + len(plan.withdrawals)
        done = 0
        report("write", done, total)
        for start in range(0, len(plan.inserts), _WRITE_BATCH):
            batch = plan.inserts[start : start + _WRITE_BATCH]
            s.execute(
                sa.insert(table),
                [
                    {
                        "id": sid,
                        "practice_id": store.actor.practice_id,
                        **{f: _local(f, v) for f, v in values.items()},
                        "search_text": search_text_for(by_id[sid]),
                    }
                    for sid, values in batch
                ],
            )
            done += len(batch)
            report("write", done, total)
        for sid, changes in [*plan.updates, *plan.withdrawals]:
            merged = {**existing[sid], **changes}
            values = {f: _local(f, v) for f, v in changes.items()}
            values["search_text"] = search_text_for(ServiceRecord(**_record_args(sid, merged)))
            s.execute(sa.update(table).where(table.c.id == sid).values(values))
            done += 1
            if done % _WRITE_BATCH == 0 or done == total:
                report("write", done, total)
        store.service.record_event(
            "IMPORT",
            detail=(
                f"directory {fmt} added={plan.added} updated={plan.changed} withdrawn={plan.withdrawn} "
                f"unchanged={plan.unchanged} problems={len(problems)}"
            ),
        )
    return ImportResult(
        added=plan.added,
        updated=plan.changed,
        unchanged=plan.unchanged,
        problems=problems,
        inactive=sum(1 for r in records if not r.active),
        withdrawn=plan.withdrawn,
        lines=tuple(report_lines(plan, fmt, source)),
        format=fmt,
    )


_WRITE_BATCH = 500
"""Entries written between two progress reports (inserts go in batches of this many)."""


def _no_progress(phase: str, done: int, total: int | None) -> None:
    return None


def _record_args(sid: str, values: dict[str, Any]) -> dict[str, Any]:
    return {"id": sid, **{f: _local(f, values.get(f)) for f in _SYNCED_FIELDS if f in values}}


def import_hsds(store: CaseStore, path: Path | str) -> ImportResult:
    """A full import from any supported package (the name kept from when only HSDS 1.1 was read)."""
    return import_directory(store, path)


# -- reads -----------------------------------------------------------------------------------------


def is_stale(service: CommunityService | ServiceRow | ServiceRecord, today: dt.date) -> bool:
    """True when the entry was never verified or not in the last STALE_AFTER_DAYS days."""
    verified = service.last_verified
    return verified is None or (today - verified).days > STALE_AFTER_DAYS


def search_services(
    store: CaseStore,
    text: str = "",
    category: str | None = None,
    need: str | None = None,
    area: str | None = None,
    include_inactive: bool = False,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[ServiceRow], int]:
    """One page of directory entries matching every word of `text`, and how many matched in all.

    `category` and `need` match one element exactly (e.g. "walking", "loneliness"); `area` matches
    the area text or the postcode's outward code ("LS6"). Active entries first, then by name.
    """
    conditions: list[Any] = []
    for term in text.lower().split():
        conditions.append(col(CommunityService.search_text).like(_like(term), escape="\\"))
    if category:
        conditions.append(_json_has(CommunityService.categories, category))
    if need:
        conditions.append(_json_has(CommunityService.needs, need))
    if area and area.strip():
        a = area.strip()
        conditions.append(
            sa.or_(
                # LIKE is case-insensitive for ASCII already; SQL functions here would allocate per row.
                col(CommunityService.area).like(_like(a), escape="\\"),
                col(CommunityService.postcode).like(_like(a.replace(" ", ""))[1:-1] + " %", escape="\\"),
            )
        )
    # Count, then page the ids, then load 50 rows: sorting whole rows (JSON lists and all) for a
    # one-letter search cost ~90 ms at 5,000 services; sorting ids and names costs ~5 ms.
    # Active and inactive entries are counted and paged separately, each with `active = x`, so both walk
    # the search index in (name, id) order: one ORDER BY active DESC, name needs a sort (p95 81 ms at 5,000).
    groups = (True, False) if include_inactive else (True,)

    def group_conditions(active: bool) -> list[Any]:
        return [CommunityService.active == active, *conditions]

    def page_query(active: bool, start: int, n: int) -> Any:
        return (
            select(CommunityService.id)
            .where(*group_conditions(active))
            .order_by(CommunityService.name, CommunityService.id)
            .limit(n)
            .offset(start)
        )

    today = store.queries.today()
    with store.lock, Session(store.engine) as s:
        counts = [
            int(s.exec(select(func.count()).select_from(CommunityService).where(*group_conditions(g))).one())
            for g in groups
        ]
        total = sum(counts)
        ids: list[str] = []
        start = offset
        for g, n in zip(groups, counts, strict=True):
            want = limit - len(ids)
            if want <= 0:
                break
            if start < n:
                ids += list(s.exec(page_query(g, start, want)).all())
            start = max(0, start - n)
        found = (
            {
                r.id: r
                for r in s.exec(
                    select(  # type: ignore[call-overload]
                        CommunityService.id,
                        CommunityService.name,
                        CommunityService.organisation,
                        CommunityService.area,
                        CommunityService.postcode,
                        CommunityService.phone,
                        CommunityService.categories,
                        CommunityService.needs,
                        CommunityService.last_verified,
                        CommunityService.active,
                    ).where(col(CommunityService.id).in_(ids))
                ).all()
            }
            if ids
            else {}
        )
    rows = [
        ServiceRow(
            id=r.id,
            name=r.name,
            organisation=r.organisation,
            area=r.area,
            postcode=r.postcode,
            phone=r.phone,
            categories=tuple(r.categories or ()),
            needs=tuple(r.needs or ()),
            last_verified=r.last_verified,
            active=bool(r.active),
            stale=r.last_verified is None or (today - r.last_verified).days > STALE_AFTER_DAYS,
        )
        for r in (found[i] for i in ids if i in found)
    ]
    return rows, total


def get_service(store: CaseStore, service_id: str) -> CommunityService | None:
    """The full directory entry, for the detail view."""
    with store.lock, Session(store.engine, expire_on_commit=False) as s:
        return s.get(CommunityService, service_id)


def categories(store: CaseStore, include_inactive: bool = False) -> list[tuple[str, int]]:
    """Every category in the directory with how many entries have it, most common first (for a filter)."""
    # Counted here: json_each and GROUP BY allocate per row, which is slow on SQLCipher's wiping allocator.
    query = sa.select(CommunityService.categories)  # type: ignore[call-overload]
    if not include_inactive:
        query = query.where(CommunityService.active == True)  # noqa: E712
    counts: Counter[str] = Counter()
    with store.lock, store.engine.connect() as conn:
        for (cats,) in conn.execute(query):
            counts.update(str(c) for c in cats or ())
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def areas(store: CaseStore) -> list[str]:
    """The distinct non-empty areas of active entries, sorted (for a filter)."""
    with store.lock, Session(store.engine) as s:
        rows = s.exec(
            select(CommunityService.area)
            .where(CommunityService.active == True, CommunityService.area != "")  # noqa: E712
            .distinct()
            .order_by(CommunityService.area)
        ).all()
    return [str(a) for a in rows]


def uptake(store: CaseStore, service_id: str | None = None) -> list[ServiceUptake]:
    """Per-service onward-referral figures, most referred first; one service when `service_id` is given.

    Counts every onward referral that is not deleted (signposted, referred and accompanied alike).
    See ServiceUptake for the attendance rate and response-time definitions.
    """
    o = OnwardReferral
    cs = CommunityService
    where: list[Any] = [o.deleted == False]  # noqa: E712
    if service_id is not None:
        where.append(o.service_id == service_id)

    def n_where(column: Any, value: str) -> Any:
        return func.sum(sa.case((column == value, 1), else_=0))

    query = (
        select(
            o.service_id,
            func.coalesce(func.max(cs.name), func.max(o.service_name)),
            func.count(),
            n_where(o.kind, "signposted"),
            n_where(o.kind, "referred"),
            n_where(o.kind, "accompanied"),
            n_where(o.outcome, "attended"),
            n_where(o.outcome, "not_attended"),
            n_where(o.outcome, "declined"),
            n_where(o.outcome, "waiting"),
            n_where(o.outcome, "pending"),
        )
        .select_from(o)
        .join(cs, cs.id == o.service_id, isouter=True)
        .where(*where)
        .group_by(o.service_id)
    )
    days_query = select(o.service_id, func.julianday(o.first_response_on) - func.julianday(o.made_on)).where(
        *where, col(o.first_response_on).is_not(None)
    )
    with store.lock, Session(store.engine) as s:
        counts = s.exec(query).all()  # type: ignore[call-overload]
        days: dict[str, list[float]] = {}
        for sid, d in s.exec(days_query).all():  # type: ignore[call-overload]
            if d is not None:
                days.setdefault(sid, []).append(float(d))
    out = []
    for sid, name, n, sign, ref, acc, att, nat, dec, wait, pend in counts:
        known = int(att or 0) + int(nat or 0) + int(dec or 0)
        timed = days.get(sid, [])
        out.append(
            ServiceUptake(
                service_id=sid,
                service_name=name or "",
                referrals=int(n),
                signposted=int(sign or 0),
                referred=int(ref or 0),
                accompanied=int(acc or 0),
                attended=int(att or 0),
                not_attended=int(nat or 0),
                declined=int(dec or 0),
                waiting=int(wait or 0),
                pending=int(pend or 0),
                known_outcome=known,
                attendance_rate=(int(att or 0) / known) if known else None,
                median_days_to_first_response=float(statistics.median(timed)) if timed else None,
                responses_timed=len(timed),
            )
        )
    out.sort(key=lambda u: (-u.referrals, u.service_name, u.service_id))
    return out
