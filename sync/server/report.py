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
from typing import TYPE_CHECKING, Any

from sprx_rules.outcomes import figures_from_score
from sprx_rules.report import Report, Tallies, render_text, report_from_tallies

if TYPE_CHECKING:
    from sync.server.store import ServerStore

__all__ = ["build_practice_report", "practice_report"]


# -- one counting step per table: (tallies, row id, person id, values) -----------------------------


def _person(t: Tallies, _row_id: str, _person_id: str, v: dict[str, Any]) -> None:
    t.status[str(v.get("status") or "referred")] += 1


def _referral(t: Tallies, _row_id: str, _person_id: str, v: dict[str, Any]) -> None:
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


def _need(t: Tallies, _row_id: str, person_id: str, v: dict[str, Any]) -> None:
    if v.get("status") == "unmet":
        t.unmet[str(v.get("category"))] += 1
        t.unmet_people.add(person_id)


def _onward_referral(t: Tallies, _row_id: str, _person_id: str, v: dict[str, Any]) -> None:
    t.onward_kinds[str(v.get("kind") or "signposted")] += 1
    t.onward_outcomes[str(v.get("outcome") or "pending")] += 1
    t.services.add(str(v.get("service_id")))
    first, made = v.get("first_response_on"), v.get("made_on")
    if first and made:
        d = dt.date.fromisoformat(first[:10]) - dt.date.fromisoformat(made[:10])
        t.response_days.append(float(d.days))


_COUNT: dict[str, Callable[[Tallies, str, str, dict[str, Any]], None]] = {
    "person": _person,
    "referral": _referral,
    "contact": _contact,
    "outcome_response": _outcome_response,
    "need": _need,
    "onward_referral": _onward_referral,
}


def build_practice_report(store: ServerStore, practice_id: str, today: dt.date | None = None) -> Report:
    """The same figures as `sprx report`, over every record the server holds for one practice."""
    import sqlalchemy as sa

    from sync.server.store import record

    t = Tallies()
    with store.engine.connect() as conn:
        result = conn.execution_options(yield_per=2000).execute(
            sa.select(record.c.tbl, record.c.id, record.c.person_id, record.c["values"]).where(
                record.c.practice_id == practice_id, record.c.tbl.in_(tuple(_COUNT)), record.c.deleted.is_(False)
            )
        )
        for tbl, row_id, person_id, raw in result:
            _COUNT[tbl](t, row_id, str(person_id), json.loads(raw))
    return report_from_tallies(
        t, today or dt.datetime.now(dt.UTC).date(), f"practice {practice_id}", figures_from_score
    )


def practice_report(store: ServerStore, practice_id: str) -> list[str]:
    """The practice report as lines of text (for `sprx-server report --practice P`), then sync health."""
    import sqlalchemy as sa

    from sync.server.store import conflict, quarantine

    lines = render_text(build_practice_report(store, practice_id)).splitlines()
    with store.engine.connect() as conn:
        open_conflicts = conn.execute(
            sa.select(sa.func.count()).where(conflict.c.practice_id == practice_id, conflict.c.status == "open")
        ).scalar_one()
        rejected = conn.execute(sa.select(sa.func.count()).select_from(quarantine)).scalar_one()
    lines += ["", f"Sync: {open_conflicts} open conflicts; {rejected} rejected changes (all practices)."]
    return lines
