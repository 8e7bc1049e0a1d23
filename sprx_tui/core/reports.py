"""Caseload and outcome figures from the vault (`sprx report`), aggregated in SQL; counts only, no personal data.

The counting is here; the Report shape, its figures and its text are sprx_rules.report, which the
server's practice-wide report (sync/server/report.py) uses too, so a practice manager and a link
worker read the same figures the same way. Improvement is judged with `outcomes.improved_figures`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from collections import Counter
from operator import itemgetter
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from sprx_rules import outcomes
from sprx_rules.report import Period, Report, Tallies, in_period_people, report_from_tallies
from sprx_rules.report import render_text as _render
from sprx_tui.core.models import (
    CONTACT_MODES,
    DISCHARGE_REASONS,
    NEED_CATEGORIES,
    ONWARD_KINDS,
    ONWARD_OUTCOMES,
    REFERRAL_REASONS,
    REFERRAL_SOURCES,
)
from sprx_tui.core.store import CaseStore

__all__ = ["LABELS", "build_report", "render_text", "write_report"]

LABELS: dict[str, str] = {
    "referred": "Referred",
    "active": "Active",
    "discharged": "Discharged",
    "declined": "Declined",
    "did_not_engage": "Did not engage",
    "received": "Awaiting decision",
    "accepted": "Accepted",
    "closed": "Closed",
    **DISCHARGE_REASONS,
    **REFERRAL_SOURCES,
    **REFERRAL_REASONS,
    **NEED_CATEGORIES,
    **CONTACT_MODES,
    **ONWARD_KINDS,
    **{k: v for k, v in ONWARD_OUTCOMES.items() if k != "declined"},
}
"""Codes to the words people see; a code without a label is shown with its underscores as spaces."""

_LIVE = "deleted = 0"


def _rows(conn: sa.Connection, sql: str) -> list[tuple[Any, ...]]:
    """All rows as plain tuples straight from the driver: 5x faster than row-by-row Row objects at 80k rows."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def _counts(conn: sa.Connection, sql: str) -> dict[str, int]:
    return {str(k): int(n) for k, n in _rows(conn, sql) if k is not None}


_ITEM_IDS = {code: set(inst.item_ids) for code, inst in outcomes.INSTRUMENTS.items()}
_SCORE_FIELDS = {f.name for f in dataclasses.fields(outcomes.OutcomeScore)}


def _figures(conn: sa.Connection, instrument: str, payload: tuple[str, str | None]) -> dict[str, Any]:
    """The figures of the score saved with the measure (the service scores on save); rescored from its
    answers if unusable. `payload` is (row id, stored score JSON)."""
    row_id, stored = payload
    try:
        data = json.loads(stored) if isinstance(stored, str) else stored
        if not isinstance(data, dict) or set(data) != _SCORE_FIELDS or data.get("instrument") != instrument:
            raise ValueError("not a stored score")
        result = outcomes.OutcomeScore(**data)
    except (ValueError, TypeError):
        found = conn.execute(sa.text("SELECT responses FROM outcome_response WHERE id = :id"), {"id": row_id}).scalar()
        answers = json.loads(found) if isinstance(found, str) else (found or {})
        result = outcomes.score(instrument, {k: v for k, v in answers.items() if k in _ITEM_IDS[instrument]})
    return dict(result.figures())


def build_report(store: CaseStore, today: dt.date | None = None, period: Period | None = None) -> Report:
    """Every figure of `sprx report` for this vault, over all records or those in `period`.

    Which date puts a record in a period is `sprx_rules.report.PERIOD_DEFINITION`; the server's report
    reads it the same way. Counting over all records reads the covering indexes of migration 0003, never
    whole rows. The large tables are grouped here rather than with SQL GROUP BY or DISTINCT: once the
    connection's cached statements hold its lookaside memory, every temp-table allocation goes through
    SQLCipher's memory-wiping allocator, which made a GROUP BY over 80,000 contacts take 1.5 s instead of 0.1 s.
    """
    today = today or store.queries.today()
    t = Tallies()
    with store.lock, store.engine.connect() as conn:
        _count_referrals_and_contacts(conn, t, period)
        _count_outcomes(conn, t, period)
        _count_onward(conn, t, period)
        return report_from_tallies(
            t,
            today,
            "this laptop's caseload",
            lambda instrument, payload: _figures(conn, instrument, payload),
            period,
        )


def _between(column: str, period: Period | None) -> str:
    """An SQL condition keeping rows whose date (the first 10 characters of `column`) is in the period."""
    if period is None:
        return "1"
    return f"substr({column}, 1, 10) BETWEEN '{period.start.isoformat()}' AND '{period.end.isoformat()}'"


def _count_referrals_and_contacts(conn: sa.Connection, t: Tallies, period: Period | None) -> None:
    """Referrals, contacts, episodes ended, and the people and unmet needs of the people they make count."""
    received = _between("received_on", period)
    for source, decision, reason_list in _rows(
        conn, f"SELECT source, status, reasons FROM referral WHERE {_LIVE} AND {received}"
    ):
        t.sources[str(source)] += 1
        t.decisions[str(decision)] += 1
        for reason in json.loads(reason_list) if reason_list else ():
            t.reasons[str(reason)] += 1
    for person_id, reason in _rows(
        conn,
        f"SELECT person_id, close_reason FROM referral WHERE {_LIVE} AND status = 'closed' "
        f"AND {_between('closed_on', period)}",
    ):
        t.ended.setdefault(str(reason or "other"), set()).add(person_id)
    live_contacts = f"{_LIVE} AND entered_in_error = 0 AND {_between('occurred_at', period)}"
    contacts = _rows(conn, f"SELECT person_id, mode FROM contact WHERE {live_contacts}")
    t.contacts_per_person = Counter(map(itemgetter(0), contacts))
    t.modes = Counter(map(itemgetter(1), contacts))
    del contacts
    t.did_not_attend = _rows(conn, f"SELECT count(*) FROM contact WHERE {live_contacts} AND did_not_attend = 1")[0][0]
    if period is None:
        t.status.update(_counts(conn, f"SELECT status, count(*) FROM person WHERE {_LIVE} GROUP BY status"))
        counts = _rows(conn, f"SELECT category, person_id FROM need WHERE {_LIVE} AND status = 'unmet'")
    else:
        # People in the period: a referral received or an episode ended in it, or a contact in it.
        counted = in_period_people(
            period,
            _rows(conn, f"SELECT person_id, received_on, closed_on FROM referral WHERE {_LIVE}"),
            [(p, period.start) for p in t.contacts_per_person],  # these contacts are already the period's
        )
        t.status.update(s for p, s in _rows(conn, f"SELECT id, status FROM person WHERE {_LIVE}") if counted(p))
        everyone = _rows(conn, f"SELECT category, person_id FROM need WHERE {_LIVE} AND status = 'unmet'")
        counts = [(c, p) for c, p in everyone if counted(p)]
    for category, person_id in counts:
        t.unmet[str(category)] += 1
        t.unmet_people.add(person_id)


def _count_outcomes(conn: sa.Connection, t: Tallies, period: Period | None) -> None:
    # Only people with a complete discharge measure (in the period) can be paired, so baselines of everyone
    # else are never read. EXISTS probes the index; a DISTINCT subquery would build a temp table.
    t.outcome_rows = [
        (person_id, instrument, point, str(taken_on)[:10], row_id, (row_id, score))
        for person_id, instrument, point, taken_on, row_id, score in _rows(
            conn,
            "SELECT o.person_id, o.instrument, o.time_point, o.taken_on, o.id, o.score "
            "FROM outcome_response o WHERE o.time_point IN ('baseline', 'discharge') "
            "AND o.deleted = 0 AND o.entered_in_error = 0 AND o.complete = 1 "
            f"AND (o.time_point = 'baseline' OR {_between('o.taken_on', period)}) "
            "AND EXISTS (SELECT 1 FROM outcome_response d WHERE d.time_point = 'discharge' "
            "AND d.instrument = o.instrument AND d.person_id = o.person_id "
            f"AND d.complete = 1 AND d.entered_in_error = 0 AND d.deleted = 0 AND {_between('d.taken_on', period)})",
        )
        if instrument in outcomes.REPORTED_FIGURES
    ]


def _count_onward(conn: sa.Connection, t: Tallies, period: Period | None) -> None:
    for kind, outcome, service_id, response_days, withdrawn in _rows(
        conn,
        "SELECT kind, outcome, service_id, julianday(first_response_on) - julianday(made_on), "
        f"withdrawn_on IS NOT NULL FROM onward_referral WHERE {_LIVE} AND {_between('made_on', period)}",
    ):
        if withdrawn:
            t.withdrawn += 1
            continue
        t.onward_kinds[str(kind)] += 1
        t.onward_outcomes[str(outcome)] += 1
        t.services.add(service_id)
        if response_days is not None:
            t.response_days.append(float(response_days))


def render_text(report: Report) -> str:
    """The report as plain-text tables with '#' bar charts, using the words people see for each code."""
    return _render(report, LABELS)


def write_report(store: CaseStore, report: Report, path: Path | str) -> Path:
    """Save the report as text to a new owner-only file and audit it as an EXPORT (counts only, no names).

    Never overwrites: an existing file is refused with a plain sentence (ServiceError).
    """
    from sprx_tui.core.service import ServiceError

    target = Path(path).expanduser()
    if not target.parent.is_dir():
        raise ServiceError("That folder does not exist; choose another place to save the report.")
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ServiceError("A file with that name already exists; choose another name.") from None
    except OSError:
        raise ServiceError("The report could not be saved there; check the path and permissions.") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(render_text(report))
        store.service.record_event("EXPORT", detail=f"report text people={report.people}")
    except BaseException:
        # An export that could not be written in full, or not audited, must not be left behind.
        target.unlink(missing_ok=True)
        raise
    return target
