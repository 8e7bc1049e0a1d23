"""The practice-wide report (`sprx-server report --practice P`): the server's counting of one practice's records.

The Report shape, its figures and its text are sprx_rules.report, shared with the laptop's
`sprx report` (sprx_tui/core/reports.py), so a practice manager and a link worker read the same
figures the same way; only reading the records is here. Outcome figures come from the scores the
laptops computed and synced, judged with the one improvement rule (sprx_rules.outcomes).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sprx_rules.outcomes import figures_from_score
from sprx_rules.report import Period, Report, Tallies, in_period_people, render_text, report_from_tallies

if TYPE_CHECKING:
    from sync.server.store import ServerStore

__all__ = ["build_practice_report", "practice_report"]


# -- one counting step per table: (tallies, row id, person id, values), for records in the period ---------


def _referral(t: Tallies, _row_id: str, person_id: str, v: dict[str, Any]) -> None:
    t.sources[str(v.get("source") or "unknown")] += 1
    t.decisions[str(v.get("status") or "received")] += 1
    for r in v.get("reasons") or []:
        t.reasons[str(r)] += 1


def _contact(t: Tallies, _row_id: str, person_id: str, v: dict[str, Any]) -> None:
    if v.get("entered_in_error"):
        return
    t.contacts_per_person[person_id] += 1
    t.modes[str(v.get("mode") or "unknown")] += 1
    t.did_not_attend += 1 if v.get("did_not_attend") else 0


def _outcome_response(t: Tallies, row_id: str, person_id: str, v: dict[str, Any]) -> None:
    if v.get("complete") and not v.get("entered_in_error"):
        t.outcome_rows.append(
            (person_id, v.get("instrument"), v.get("time_point"), v.get("taken_on"), row_id, v.get("score") or {})
        )  # fmt: skip


def _onward_referral(t: Tallies, _row_id: str, _person_id: str, v: dict[str, Any]) -> None:
    if v.get("withdrawn_on"):
        t.withdrawn += 1
        return
    t.onward_kinds[str(v.get("kind") or "signposted")] += 1
    t.onward_outcomes[str(v.get("outcome") or "pending")] += 1
    t.services.add(str(v.get("service_id")))
    first, made = v.get("first_response_on"), v.get("made_on")
    if first and made:
        d = dt.date.fromisoformat(first[:10]) - dt.date.fromisoformat(made[:10])
        t.response_days.append(float(d.days))


_COUNT: dict[str, Callable[[Tallies, str, str, dict[str, Any]], None]] = {
    "referral": _referral,
    "contact": _contact,
    "outcome_response": _outcome_response,
    "onward_referral": _onward_referral,
}

# The date that puts a record of each table in a period (sprx_rules.report.PERIOD_DEFINITION); an
# outcome's baseline is always read, its discharge measure only in the period.
_DATED = {"referral": "received_on", "contact": "occurred_at", "onward_referral": "made_on"}


def _in_period(period: Period | None, tbl: str, v: dict[str, Any]) -> bool:
    if period is None:
        return True
    if tbl == "outcome_response":
        return v.get("time_point") != "discharge" or period.holds(v.get("taken_on"))
    return period.holds(v.get(_DATED[tbl]))


@dataclass
class _Later:
    """Rows counted after the pass, once it is known which people are in the period."""

    people: list[tuple[str, str]] = field(default_factory=list)  # (person id, status)
    needs: list[tuple[str, str]] = field(default_factory=list)  # (person id, category) of unmet needs
    referrals: list[tuple[str, Any, Any]] = field(default_factory=list)  # (person id, received, closed)
    contacts: list[tuple[str, Any]] = field(default_factory=list)  # (person id, day)

    def keep(self, t: Tallies, tbl: str, person_id: str, v: dict[str, Any], period: Period | None) -> None:
        if tbl == "person":
            self.people.append((person_id, str(v.get("status") or "referred")))
        elif tbl == "need" and v.get("status") == "unmet":
            self.needs.append((person_id, str(v.get("category"))))
        elif tbl == "referral":
            self.referrals.append((person_id, v.get("received_on"), v.get("closed_on")))
            if v.get("status") == "closed" and (period is None or period.holds(v.get("closed_on"))):
                t.ended.setdefault(str(v.get("close_reason") or "other"), set()).add(person_id)
        elif tbl == "contact" and not v.get("entered_in_error"):
            self.contacts.append((person_id, v.get("occurred_at")))

    def count(self, t: Tallies, period: Period | None) -> None:
        counted = in_period_people(period, self.referrals, self.contacts)
        t.status.update(status for person_id, status in self.people if counted(person_id))
        for person_id, category in self.needs:
            if counted(person_id):
                t.unmet[category] += 1
                t.unmet_people.add(person_id)


def build_practice_report(
    store: ServerStore, practice_id: str, today: dt.date | None = None, period: Period | None = None
) -> Report:
    """The same figures as `sprx report`, over every record the server holds for one practice (or those in `period`)."""
    import sqlalchemy as sa

    from sync.server.store import record

    t = Tallies()
    later = _Later()
    with store.engine.connect() as conn:
        result = conn.execution_options(yield_per=2000).execute(
            sa.select(record.c.tbl, record.c.id, record.c.person_id, record.c["values"]).where(
                record.c.practice_id == practice_id,
                record.c.tbl.in_((*_COUNT, "person", "need")),
                record.c.deleted.is_(False),
            )
        )
        for tbl, row_id, person_id, raw in result:
            values = json.loads(raw)
            later.keep(t, tbl, str(person_id), values, period)
            if tbl in _COUNT and _in_period(period, tbl, values):
                _COUNT[tbl](t, row_id, str(person_id), values)
    later.count(t, period)
    return report_from_tallies(
        t, today or dt.datetime.now(dt.UTC).date(), f"practice {practice_id}", figures_from_score, period
    )


def practice_report(store: ServerStore, practice_id: str, period: Period | None = None) -> list[str]:
    """The practice report as lines of text (for `sprx-server report --practice P`), then sync health."""
    import sqlalchemy as sa

    from sync.server.store import conflict, quarantine

    lines = render_text(build_practice_report(store, practice_id, period=period)).splitlines()
    with store.engine.connect() as conn:
        open_conflicts = conn.execute(
            sa.select(sa.func.count()).where(conflict.c.practice_id == practice_id, conflict.c.status == "open")
        ).scalar_one()
        rejected = conn.execute(sa.select(sa.func.count()).select_from(quarantine)).scalar_one()
    lines += ["", f"Sync: {open_conflicts} open conflicts; {rejected} rejected changes (all practices)."]
    return lines
