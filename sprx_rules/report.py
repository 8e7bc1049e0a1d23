"""Caseload and outcome figures: the Report shape, its pure figures and its text, for laptop and server.

The laptop counts its vault with SQL (sprx_tui/core/reports.py) and the server counts a practice's
records (sync/server/report.py); each fills a `Tallies` and `report_from_tallies` turns it into the same
Report, rendered by `render_text`. Figures are counts and means only: no names, no free text.
Improvement is judged with `outcomes.improved_figures`, the one rule both sides use.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import statistics
import textwrap
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sprx_rules.outcomes import IMPROVEMENT_DEFINITIONS, INSTRUMENTS, REPORTED_FIGURES, improved_figures

__all__ = [
    "CONTACT_BUCKETS",
    "DEFINITIONS",
    "REFERRAL_STATUS_ORDER",
    "STATUS_ORDER",
    "ContactFigures",
    "FigureChange",
    "HealthUseChange",
    "OutcomeChange",
    "Pair",
    "Period",
    "Report",
    "Tallies",
    "UptakeFigures",
    "contact_figures",
    "health_use_changes",
    "ordered",
    "period_from",
    "quarter",
    "quarter_of",
    "outcome_change",
    "outcome_sections",
    "pair_outcomes",
    "render_text",
    "report_from_tallies",
    "report_to_dict",
    "uptake_figures",
]

STATUS_ORDER = ("referred", "active", "discharged", "declined", "did_not_engage")
REFERRAL_STATUS_ORDER = ("received", "accepted", "declined", "closed")
ONWARD_KIND_ORDER = ("signposted", "referred", "accompanied")
ONWARD_OUTCOME_ORDER = ("pending", "waiting", "attended", "not_attended", "declined")
KNOWN_OUTCOMES = ("attended", "not_attended", "declined")

# (label, lowest, highest or None): the NHSE benchmark is 6-12 contacts per person.
CONTACT_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("1-2", 1, 2),
    ("3-5", 3, 5),
    ("6-8", 6, 8),
    ("9-12", 9, 12),
    ("13+", 13, None),
)

DEFINITIONS: dict[str, str] = {
    "contacts": (
        "Contacts are every contact not marked entered in error, including did-not-attend; "
        "per-person figures are over people with at least one contact."
    ),
    "outcomes": (
        "Outcome change pairs each person's earliest complete baseline with their latest "
        "complete discharge measure; people without both complete are not counted."
    ),
    "unmet_needs": "An unmet need is one recorded with no suitable local service: a gap in provision.",
    "attendance": (
        "Attendance rate is attended / (attended + did not attend + declined): only onward "
        "referrals with a known outcome count; waiting and pending ones do not."
    ),
    "response": "Days to first response is the median of (first response date - referral date).",
    "withdrawn": "Onward referrals withdrawn as made wrongly are kept in the record but not counted here.",
}

PERIOD_DEFINITION = (
    "A record is in the period by one date: a referral by the date it was received, a contact by the day it "
    "happened, an onward referral by the day it was made, an episode's end by its discharge date, and an "
    "outcome change by the date of its discharge measure (the baseline may be earlier). People are those "
    "with a referral received, a contact or an episode ended in the period, by their status today; unmet "
    "needs are those people's."
)
"""Which date puts a record in a reporting period; printed on every report limited to a period."""

DISCHARGE_REASON_ORDER = ("goals_met", "moved_away", "declined_support", "did_not_engage", "died", "other")


# -- reporting periods -----------------------------------------------------------------------------

_QUARTER = re.compile(r"\s*(\d{4})\s*-?\s*[Qq]\s*([1-4])\s*")


@dataclass(frozen=True)
class Period:
    """A reporting period: both dates included."""

    start: dt.date
    end: dt.date

    def holds(self, value: dt.date | dt.datetime | str | None) -> bool:
        """Whether a date (or an ISO date or date-time string, or a datetime by its UTC day) is in the period."""
        if value is None:
            return False
        day = str(value)[:10]
        return self.start.isoformat() <= day <= self.end.isoformat()

    @property
    def quarter(self) -> str | None:
        """ "2026Q3" when the period is exactly one calendar quarter, else None."""
        q = quarter_of(self.start)
        return f"{self.start.year}Q{(self.start.month - 1) // 3 + 1}" if q == self else None

    def label(self) -> str:
        span = f"{self.start.day} {self.start:%B %Y} to {self.end.day} {self.end:%B %Y}"
        q = self.quarter
        return f"{q[:4]} Q{q[-1]} ({span})" if q else span

    def step(self, quarters: int) -> Period:
        """The calendar quarter `quarters` after (or before) the one this period starts in."""
        index = self.start.year * 4 + (self.start.month - 1) // 3 + quarters
        return quarter_of(dt.date(index // 4, (index % 4) * 3 + 1, 1))


def quarter_of(day: dt.date) -> Period:
    """The calendar quarter a day falls in (Q1 January to March ... Q4 October to December)."""
    first = dt.date(day.year, (day.month - 1) // 3 * 3 + 1, 1)
    after = dt.date(first.year + (first.month == 10), (first.month + 2) % 12 + 1, 1)
    return Period(first, after - dt.timedelta(days=1))


def quarter(text: str) -> Period:
    """A calendar quarter written like 2026Q3 (or 2026-Q3); ValueError with a sentence otherwise."""
    match = _QUARTER.fullmatch(text or "")
    if not match:
        raise ValueError("Write a quarter as the year then Q1 to Q4, like 2026Q3 (July to September 2026).")
    return quarter_of(dt.date(int(match[1]), (int(match[2]) - 1) * 3 + 1, 1))


def _day(text: str, what: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"The {what} date must be written like 2026-07-01 (year, month, day).") from None


def period_from(start: str | None, end: str | None, quarter_text: str | None) -> Period | None:
    """The period asked for on a command line (--from, --to, --quarter); None for all time.

    --quarter alone, or --from and/or --to (an open end runs to the earliest or latest possible date).
    A ValueError carries one sentence for anything else.
    """
    if quarter_text and (start or end):
        raise ValueError("Give either a quarter or dates (--from, --to), not both.")
    if quarter_text:
        return quarter(quarter_text)
    if not start and not end:
        return None
    first = _day(start, "from") if start else dt.date(1900, 1, 1)
    last = _day(end, "to") if end else dt.date(9999, 12, 31)
    if last < first:
        raise ValueError("The period ends before it starts; check the --from and --to dates.")
    return Period(first, last)


@dataclass
class ContactFigures:
    total: int = 0
    people: int = 0
    mean: float | None = None
    median: float | None = None
    buckets: list[tuple[str, int]] = field(default_factory=list)
    did_not_attend: int = 0
    by_mode: dict[str, int] = field(default_factory=dict)


@dataclass
class FigureChange:
    """One reported figure of one instrument, baseline to discharge, over the paired people."""

    figure: str
    label: str
    people: int
    baseline_mean: float | None
    discharge_mean: float | None
    mean_change: float | None
    improved: int
    improved_pct: float | None


@dataclass
class OutcomeChange:
    instrument: str
    title: str
    definition: str
    paired: int  # people with a complete baseline AND a complete discharge
    figures: list[FigureChange] = field(default_factory=list)
    copyright: str | None = None


@dataclass
class HealthUseChange:
    item: str
    label: str
    people: int
    baseline_total: int
    discharge_total: int
    mean_change: float | None


@dataclass
class UptakeFigures:
    onward_referrals: int = 0
    services: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    by_outcome: dict[str, int] = field(default_factory=dict)
    attended: int = 0
    known_outcome: int = 0
    attendance_rate: float | None = None
    median_days_to_first_response: float | None = None
    responses_timed: int = 0
    withdrawn: int = 0  # withdrawn as made wrongly: not in any figure above


@dataclass
class Report:
    """Caseload and outcome figures for one laptop or one practice. No personal data."""

    generated_on: dt.date
    scope: str
    people: int = 0
    caseload_by_status: dict[str, int] = field(default_factory=dict)
    referrals: int = 0
    referrals_by_source: dict[str, int] = field(default_factory=dict)
    referrals_by_reason: dict[str, int] = field(default_factory=dict)
    referrals_by_status: dict[str, int] = field(default_factory=dict)
    contacts: ContactFigures = field(default_factory=ContactFigures)
    outcomes: list[OutcomeChange] = field(default_factory=list)
    health_use: list[HealthUseChange] = field(default_factory=list)
    unmet_needs: dict[str, int] = field(default_factory=dict)
    unmet_needs_people: int = 0
    uptake: UptakeFigures = field(default_factory=UptakeFigures)
    episodes_ended: dict[str, int] = field(default_factory=dict)  # people whose episode ended, by reason
    period: Period | None = None  # None: all records
    definitions: dict[str, str] = field(default_factory=lambda: dict(DEFINITIONS))


# -- pure builders (used by both sides) -------------------------------------------------------------


def _round(x: float | None) -> float | None:
    # Two decimals: sums taken in a different order on laptop and server must give equal reports.
    return None if x is None else round(x + 0.0, 2)


def ordered(counts: Mapping[str, int], order: Iterable[str] = ()) -> dict[str, int]:
    """Counts in a fixed order first, then the rest by size; zero counts in `order` kept."""
    out = {k: int(counts.get(k, 0)) for k in order}
    for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if k not in out:
            out[k] = int(n)
    return out


def contact_figures(per_person: Iterable[int], did_not_attend: int, by_mode: Mapping[str, int]) -> ContactFigures:
    counts = [int(n) for n in per_person if n > 0]
    buckets = []
    for label, lo, hi in CONTACT_BUCKETS:
        buckets.append((label, sum(1 for n in counts if n >= lo and (hi is None or n <= hi))))
    return ContactFigures(
        total=sum(counts),
        people=len(counts),
        mean=_round(statistics.fmean(counts)) if counts else None,
        median=float(statistics.median(counts)) if counts else None,
        buckets=buckets,
        did_not_attend=int(did_not_attend),
        by_mode=ordered(by_mode),
    )


Figures = Mapping[str, float | int | None]


Pair = tuple[Figures, Figures, Mapping[str, bool | None]]


def outcome_change(instrument: str, pairs: list[Pair]) -> OutcomeChange:
    """Summarise (baseline figures, discharge figures, improved) for the people paired on one instrument."""
    figures = []
    for name, label in REPORTED_FIGURES[instrument]:
        rows = [(b[name], a[name], imp.get(name)) for b, a, imp in pairs if b.get(name) is not None]
        rows = [r for r in rows if r[1] is not None]
        n = len(rows)
        improved = sum(1 for _b, _a, i in rows if i)
        figures.append(
            FigureChange(
                figure=name,
                label=label,
                people=n,
                baseline_mean=_round(statistics.fmean(float(b) for b, _a, _i in rows)) if n else None,  # type: ignore[arg-type]
                discharge_mean=_round(statistics.fmean(float(a) for _b, a, _i in rows)) if n else None,  # type: ignore[arg-type]
                mean_change=_round(statistics.fmean(float(a) - float(b) for b, a, _i in rows)) if n else None,  # type: ignore[arg-type]
                improved=improved,
                improved_pct=_round(100.0 * improved / n) if n else None,
            )
        )
    return OutcomeChange(
        instrument=instrument,
        title=INSTRUMENTS[instrument].title,
        definition=IMPROVEMENT_DEFINITIONS[instrument],
        paired=len(pairs),
        figures=figures,
        copyright=INSTRUMENTS[instrument].copyright,
    )


def health_use_changes(pairs: list[Pair]) -> list[HealthUseChange]:
    out = []
    for name, label in REPORTED_FIGURES["HEALTH_USE"]:
        rows = [
            (int(b[name]), int(a[name])) for b, a, _i in pairs if b.get(name) is not None and a.get(name) is not None
        ]  # type: ignore[arg-type]
        out.append(
            HealthUseChange(
                item=name,
                label=label,
                people=len(rows),
                baseline_total=sum(b for b, _a in rows),
                discharge_total=sum(a for _b, a in rows),
                mean_change=_round(statistics.fmean(a - b for b, a in rows)) if rows else None,
            )
        )
    return out


def pair_outcomes(
    rows: Iterable[tuple[str, str, str, str, str, Any]],
) -> dict[str, dict[str, tuple[Any, Any]]]:
    """instrument -> person -> (earliest baseline payload, latest discharge payload).

    `rows` are (person_id, instrument, time_point, taken_on ISO date, row id, payload) of complete,
    live measures; ties on the date go to the lower (earlier UUIDv7) id. People without both are dropped.
    """
    best: dict[tuple[str, str], dict[str, tuple[str, str, Any]]] = {}
    for person, instrument, point, taken_on, row_id, payload in rows:
        slot = best.setdefault((instrument, person), {})
        key = (str(taken_on), str(row_id))
        cur = slot.get(point)
        if point == "baseline":
            if cur is None or key < (cur[0], cur[1]):
                slot[point] = (key[0], key[1], payload)
        elif point == "discharge":
            if cur is None or key > (cur[0], cur[1]):
                slot[point] = (key[0], key[1], payload)
    out: dict[str, dict[str, tuple[Any, Any]]] = {}
    for (instrument, person), slot in best.items():
        if "baseline" in slot and "discharge" in slot:
            out.setdefault(instrument, {})[person] = (slot["baseline"][2], slot["discharge"][2])
    return out


def uptake_figures(
    by_kind: Mapping[str, int], by_outcome: Mapping[str, int], response_days: list[float], services: int
) -> UptakeFigures:
    attended = int(by_outcome.get("attended", 0))
    known = sum(int(by_outcome.get(k, 0)) for k in KNOWN_OUTCOMES)
    return UptakeFigures(
        onward_referrals=sum(by_kind.values()),
        services=services,
        by_kind=ordered(by_kind, ONWARD_KIND_ORDER),
        by_outcome=ordered(by_outcome, ONWARD_OUTCOME_ORDER),
        attended=attended,
        known_outcome=known,
        attendance_rate=attended / known if known else None,  # rounded only where it is shown
        median_days_to_first_response=float(statistics.median(response_days)) if response_days else None,
        responses_timed=len(response_days),
    )


def report_to_dict(report: Report) -> dict[str, Any]:
    """JSON-ready figures (dates as ISO strings)."""
    d = dataclasses.asdict(report)
    d["generated_on"] = report.generated_on.isoformat()
    if report.period is not None:
        d["period"] = {"from": report.period.start.isoformat(), "to": report.period.end.isoformat()}
    return d


# -- from counts to a Report (both sides) ----------------------------------------------------------

OutcomeRow = tuple[str, str, str, str, str, Any]
"""(person_id, instrument, time_point, taken_on ISO date, row id, payload) of one complete, live measure."""


@dataclass
class Tallies:
    """What each side counts from its own storage; `report_from_tallies` turns it into a Report."""

    status: Counter[str] = field(default_factory=Counter)  # people by status
    sources: Counter[str] = field(default_factory=Counter)  # referrals by source
    decisions: Counter[str] = field(default_factory=Counter)  # referrals by status
    reasons: Counter[str] = field(default_factory=Counter)  # a referral can give several reasons
    contacts_per_person: Counter[str] = field(default_factory=Counter)  # live contacts, not entered in error
    did_not_attend: int = 0
    modes: Counter[str] = field(default_factory=Counter)
    outcome_rows: list[OutcomeRow] = field(default_factory=list)
    unmet: Counter[str] = field(default_factory=Counter)  # unmet needs by category
    unmet_people: set[str] = field(default_factory=set)
    onward_kinds: Counter[str] = field(default_factory=Counter)
    onward_outcomes: Counter[str] = field(default_factory=Counter)
    services: set[str] = field(default_factory=set)
    response_days: list[float] = field(default_factory=list)  # first response date - referral date
    withdrawn: int = 0  # onward referrals withdrawn (in the period): left out of the uptake counts
    ended: dict[str, set[str]] = field(default_factory=dict)  # discharge reason -> people whose episode ended


def in_period_people(
    period: Period | None,
    referrals: Iterable[tuple[str, Any, Any]],
    contacts: Iterable[tuple[str, Any]],
) -> Callable[[str], bool]:
    """Whether a person counts in the period: (person, received, closed) of referrals and (person, day) of contacts.

    With no period everyone counts (see PERIOD_DEFINITION).
    """
    if period is None:
        return lambda _person: True
    people = {p for p, received, closed in referrals if period.holds(received) or period.holds(closed)}
    people |= {p for p, day in contacts if period.holds(day)}
    return people.__contains__


FiguresOf = Callable[[str, Any], Mapping[str, float | int | None]]
"""(instrument, payload of an outcome row) -> that measure's reported figures."""


def outcome_sections(
    paired: Mapping[str, Mapping[str, tuple[Any, Any]]], figures_of: FiguresOf
) -> tuple[list[OutcomeChange], list[HealthUseChange]]:
    """The outcome and health-use sections from `pair_outcomes`' result, judged with `improved_figures`."""
    changes: list[OutcomeChange] = []
    health: list[HealthUseChange] = []
    for instrument in REPORTED_FIGURES:
        pairs: list[Pair] = []
        for b_payload, d_payload in paired.get(instrument, {}).values():
            before, after = figures_of(instrument, b_payload), figures_of(instrument, d_payload)
            pairs.append((before, after, improved_figures(instrument, before, after)))
        changes.append(outcome_change(instrument, pairs))
        if instrument == "HEALTH_USE":
            health = health_use_changes(pairs)
    return changes, health


def report_from_tallies(
    tallies: Tallies, generated_on: dt.date, scope: str, figures_of: FiguresOf, period: Period | None = None
) -> Report:
    """Every figure of the report from one side's counts; `figures_of` reads an outcome row's payload.

    The tallies are already limited to `period` (PERIOD_DEFINITION); it is carried to the text.
    """
    t = tallies
    changes, health = outcome_sections(pair_outcomes(t.outcome_rows), figures_of)
    uptake = uptake_figures(t.onward_kinds, t.onward_outcomes, t.response_days, len(t.services))
    uptake.withdrawn = t.withdrawn
    definitions = dict(DEFINITIONS)
    if period is not None:
        definitions["period"] = PERIOD_DEFINITION
    return Report(
        period=period,
        definitions=definitions,
        episodes_ended=ordered({k: len(v) for k, v in t.ended.items()}, DISCHARGE_REASON_ORDER),
        generated_on=generated_on,
        scope=scope,
        people=sum(t.status.values()),
        caseload_by_status=ordered(t.status, STATUS_ORDER),
        referrals=sum(t.sources.values()),
        referrals_by_source=ordered(t.sources),
        referrals_by_reason=ordered(t.reasons),
        referrals_by_status=ordered(t.decisions, REFERRAL_STATUS_ORDER),
        contacts=contact_figures(t.contacts_per_person.values(), t.did_not_attend, t.modes),
        outcomes=changes,
        health_use=health,
        unmet_needs=ordered(t.unmet),
        unmet_needs_people=len(t.unmet_people),
        uptake=uptake,
    )


# -- text ------------------------------------------------------------------------------------------

WIDTH = 96
BAR = 36


def _label(key: str, labels: Mapping[str, str] | None) -> str:
    """The label given for a code; else a code like ``low_mood`` in words, and anything else as written ("GP")."""
    if labels and key in labels:
        return labels[key]
    if key.islower() or "_" in key:
        return key.replace("_", " ").capitalize()
    return key


def _bars(counts: Mapping[str, int], labels: Mapping[str, str] | None, indent: str = "  ") -> list[str]:
    if not counts:
        return [indent + "none"]
    names = [_label(k, labels) for k in counts]
    w = min(max(len(n) for n in names), 36)
    top = max(counts.values()) or 1
    total = sum(counts.values()) or 1
    out = []
    for name, n in zip(names, counts.values(), strict=True):
        bar = "#" * (round(BAR * n / top) if n else 0)
        out.append(f"{indent}{name[:w]:<{w}} {n:>6} {100 * n / total:5.1f}%  {bar}".rstrip())
    return out


def _num(x: float | None, sign: bool = False) -> str:
    if x is None:
        return "-"
    return f"{x:+.2f}" if sign else f"{x:.2f}"


def _wrap(text: str, indent: str = "  ") -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=indent)


def render_text(report: Report, labels: Mapping[str, str] | None = None) -> str:
    """Plain-text tables with simple '#' bar charts; `labels` maps codes (gp, low_mood ...) to words."""
    out: list[str] = []
    title = f"Caseload and outcomes: {report.scope}, {report.generated_on:%d %B %Y}"
    out += [title, "=" * len(title), ""]
    if report.period is not None:
        out += [f"Period: {report.period.label()}", *_wrap(PERIOD_DEFINITION), ""]

    out.append(f"Caseload by status ({report.people} people)")
    out += _bars(report.caseload_by_status, labels)
    out.append("")

    out.append(f"Referrals received ({report.referrals})")
    out.append(" By source")
    out += _bars(report.referrals_by_source, labels)
    out.append(" By reason (a referral can give several reasons)")
    out += _bars(report.referrals_by_reason, labels)
    out.append(" By decision")
    out += _bars(report.referrals_by_status, labels)
    out.append("")

    c = report.contacts
    out.append(f"Contacts per person ({c.total} contacts with {c.people} people; {c.did_not_attend} did not attend)")
    out.append(f"  Mean {_num(c.mean)}, median {_num(c.median)}")
    out += _bars(dict(c.buckets), {b[0]: f"{b[0]} contacts" for b in c.buckets})
    out.append(" By how the contact happened")
    out += _bars(c.by_mode, labels)
    out.append("")

    out.append("Outcomes, baseline to discharge")
    for oc in report.outcomes:
        if oc.instrument == "HEALTH_USE":
            continue
        out.append(f" {oc.title}: {oc.paired} people with both measures complete")
        if oc.paired:
            out.append(f"  {'Figure':<20} {'Baseline':>9} {'Discharge':>10} {'Change':>8} {'Improved':>16}")
            for f in oc.figures:
                improved = f"{f.improved} ({f.improved_pct:.1f}%)" if f.improved_pct is not None else "-"
                out.append(
                    f"  {f.label:<20} {_num(f.baseline_mean):>9} {_num(f.discharge_mean):>10} "
                    f"{_num(f.mean_change, True):>8} {improved:>16}"
                )
        out += _wrap("Improved: " + oc.definition)
        if oc.copyright:
            out += _wrap(oc.copyright)
    out.append("")

    people = max((h.people for h in report.health_use), default=0)
    out.append(f"Health service use in the previous 3 months, baseline to discharge ({people} people)")
    out.append(f"  {'Service':<20} {'People':>7} {'Baseline':>9} {'Discharge':>10} {'Mean change':>12}")
    for h in report.health_use:
        out.append(
            f"  {h.label:<20} {h.people:>7} {h.baseline_total:>9} {h.discharge_total:>10} "
            f"{_num(h.mean_change, True):>12}"
        )
    hu = next((o for o in report.outcomes if o.instrument == "HEALTH_USE"), None)
    if hu is not None:
        for f in hu.figures:
            if f.improved_pct is not None:
                out.append(f"  {f.label}: fewer than at baseline for {f.improved} people ({f.improved_pct:.1f}%)")
    out.append("")

    out.append(f"Episodes ended ({sum(report.episodes_ended.values())} people), by reason")
    out += _bars(report.episodes_ended, labels)
    out.append("")

    out.append(f"Unmet needs: gaps in local provision ({report.unmet_needs_people} people)")
    out += _bars(report.unmet_needs, labels)
    out.append("")

    u = report.uptake
    out.append(f"Onward referrals ({u.onward_referrals} to {u.services} services)")
    out += _bars(u.by_kind, labels)
    out.append(" Outcome")
    out += _bars(u.by_outcome, labels)
    rate = f"{100 * u.attendance_rate:.1f}%" if u.attendance_rate is not None else "-"
    out.append(f"  Attendance rate {rate} ({u.attended} attended of {u.known_outcome} with a known outcome)")
    days = f"{u.median_days_to_first_response:.1f}" if u.median_days_to_first_response is not None else "-"
    out.append(f"  Median days to first response {days} (over {u.responses_timed} referrals)")
    if u.withdrawn:
        out.append(f"  {u.withdrawn} withdrawn as made wrongly, not counted above")
    out.append("")

    out.append("Definitions")
    for text in report.definitions.values():
        out += _wrap(text, "  ")
    return "\n".join(out) + "\n"
