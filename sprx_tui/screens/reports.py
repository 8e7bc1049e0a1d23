"""Reports (F5): the figures of `sprx report` for this laptop's caseload, as text bar charts; r refreshes, e exports."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.widgets import Static
from textual.worker import Worker

from sprx_rules.report import PERIOD_DEFINITION, Period, quarter_of
from sprx_tui.core import reports
from sprx_tui.core.export import LEAVING_WARNING
from sprx_tui.core.models import DISCHARGE_REASONS
from sprx_tui.core.store import CaseStore
from sprx_tui.screens.area import AreaScreen
from sprx_tui.screens.forms import TextFieldsModal, local, worker_error
from sprx_tui.widgets.bar_chart import Bar, BarChart
from sprx_tui.widgets.keys_footer import KeysFooter
from sprx_tui.widgets.status_bar import NavBar, StatusBar

if TYPE_CHECKING:
    from sprx_tui.router import Shell

# The outcome instruments judged on improvement (health use has its own section: counts, not scores).
SCORED = ("ONS4", "UCLA3", "SWEMWBS")


@dataclass
class ReportLoaded(Message):
    report: reports.Report


@dataclass
class ReportExported(Message):
    path: Path


def label(code: str) -> str:
    """The words people see for a stored code (gp → GP, low_mood → Low mood or anxiety)."""
    return reports.LABELS.get(code) or code.replace("_", " ").capitalize()


def count_bars(counts: dict[str, int], names: dict[str, str] | None = None) -> list[Bar]:
    """One bar per code: the count and its share of the total."""
    total = sum(counts.values())
    bars = []
    for code, n in counts.items():
        share = f"{100 * n / total:5.1f}%" if total else "    -"
        bars.append(Bar((names or {}).get(code) or label(code), float(n), f"{n:>5} {share}"))
    return bars


def number(x: float | None, sign: bool = False) -> str:
    if x is None:
        return "-"
    text = f"{x:+.2f}" if sign else f"{x:.2f}"
    return text.replace("-", "−")


def improved_bars(outcome: reports.OutcomeChange) -> list[Bar]:
    """Per reported figure: the share of paired people who improved, on a 0–100% scale."""
    bars = []
    for f in outcome.figures:
        pct = f.improved_pct
        figure = f"{f.improved:>3} of {f.people:<3} {pct:5.1f}%" if pct is not None else "no pairs"
        bars.append(Bar(f.label, float(pct or 0.0), figure))
    return bars


def means_table(outcome: reports.OutcomeChange) -> Content:
    """Baseline and discharge means per figure, and the mean change."""
    w = max([len(f.label) for f in outcome.figures] + [6])
    lines = [Content.styled(f"{'Figure':<{w}} {'Baseline':>9} {'Discharge':>10} {'Change':>8}", "bold")]
    for f in outcome.figures:
        lines.append(
            Content(
                f"{f.label:<{w}} {number(f.baseline_mean):>9} {number(f.discharge_mean):>10} "
                f"{number(f.mean_change, sign=True):>8}"
            )
        )
    return Content("\n").join(lines)


def health_bars(report: reports.Report) -> list[Bar]:
    """Baseline and discharge totals side by side for GP appointments and A&E attendances."""
    bars = []
    for h in report.health_use:
        change = ""
        if h.baseline_total:
            pct = 100 * (h.discharge_total - h.baseline_total) / h.baseline_total
            change = f" {pct:+.0f}%".replace("-", "−")
        bars.append(Bar(f"{h.label}: baseline", float(h.baseline_total), f"{h.baseline_total:>5}      "))
        bars.append(Bar(f"{h.label}: discharge", float(h.discharge_total), f"{h.discharge_total:>5}{change:>6}"))
    return bars


class ReportSection(Vertical):
    """A titled box of figures."""

    DEFAULT_CSS = """
    ReportSection {
        height: auto;
        border: round $panel-lighten-2;
        border-title-color: $foreground;
        border-title-style: bold;
        padding: 0 1;
        margin-bottom: 1;
    }
    ReportSection > .subhead { text-style: bold; margin-top: 1; }
    ReportSection > .subhead.-first { margin-top: 0; }
    ReportSection > .note { color: $text-muted; }
    ReportSection > .figures { height: auto; }
    """

    def __init__(self, title: str, *children: Static | BarChart, id: str) -> None:
        super().__init__(*children, id=id)
        self.border_title = title


class ReportsScreen(AreaScreen):
    """Caseload, referral, contact, outcome, health-use and uptake figures; counts only, no names."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "refresh", "Refresh", id="reports.refresh", tooltip="Count everything again"),
        Binding("e", "export", "Export", id="reports.export", tooltip="Save the report as a text file"),
        Binding(
            "left_square_bracket",
            "quarter(-1)",
            "Earlier quarter",
            key_display="[",
            id="reports.quarter_back",
            tooltip="Count one calendar quarter, going back",
        ),
        Binding(
            "right_square_bracket",
            "quarter(1)",
            "Later quarter",
            key_display="]",
            id="reports.quarter_on",
            tooltip="Count one calendar quarter, going on",
        ),
        Binding("a", "all_records", "All records", id="reports.all", tooltip="Count every record, not one quarter"),
    ]
    HELP = (
        "The figures of `sprx report` for the people on this laptop: counts and means only, never names. "
        "Arrow keys and Page Up/Down scroll; r counts again; e saves the report as a text file; [ and ] count "
        "one calendar quarter (this one first, then earlier or later ones); a counts every record again."
    )
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]] | None] = [(0, "-narrow"), (110, "-wide")]
    AUTO_FOCUS = "#report"
    DEFAULT_CSS = """
    ReportsScreen #report { height: 1fr; padding: 0 1; }
    ReportsScreen #report-heading { height: auto; margin-bottom: 1; }
    ReportsScreen #report-columns { height: auto; layout: horizontal; }
    ReportsScreen.-narrow #report-columns { layout: vertical; }
    ReportsScreen .report-column { height: auto; width: 1fr; }
    ReportsScreen.-wide #column-left { margin-right: 1; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.report: reports.Report | None = None
        self._say_when_counted = False
        self.period: Period | None = None  # None: every record

    @property
    def sprx(self) -> Shell:
        return self.app  # type: ignore[return-value]

    # -- layout ------------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        ascii_only = bool(getattr(getattr(self.app, "config", None), "ascii_marks", False))

        def chart(chart_id: str, scale: float | None = None) -> BarChart:
            return BarChart(id=chart_id, scale=scale, ascii_only=ascii_only)

        def sub(text: str, first: bool = False) -> Static:
            return Static(text, classes="subhead -first" if first else "subhead")

        def note(note_id: str) -> Static:
            return Static("", id=note_id, classes="note")

        yield NavBar("reports")
        with VerticalScroll(id="report", classes="pane"):
            yield Static("Counting…", id="report-heading")
            with Vertical(id="report-columns"):
                with Vertical(id="column-left", classes="report-column"):
                    yield ReportSection(
                        "Caseload by status",
                        chart("chart-status"),
                        sub("Episodes ended, by reason"),
                        chart("chart-ended"),
                        id="section-caseload",
                    )
                    yield ReportSection(
                        "Referrals received",
                        sub("By source", first=True),
                        chart("chart-source"),
                        sub("By reason (a referral can give several)"),
                        chart("chart-reason"),
                        sub("By decision"),
                        chart("chart-decision"),
                        id="section-referrals",
                    )
                    yield ReportSection(
                        "Contacts per person",
                        Static("", id="contacts-summary", classes="figures"),
                        chart("chart-contacts"),
                        note("contacts-note"),
                        id="section-contacts",
                    )
                    yield ReportSection(
                        "Unmet needs: gaps in local provision",
                        chart("chart-unmet"),
                        note("unmet-note"),
                        id="section-unmet",
                    )
                with Vertical(id="column-right", classes="report-column"):
                    children: list[Static | BarChart] = []
                    for i, code in enumerate(SCORED):
                        children += [
                            Static("", id=f"title-{code}", classes="subhead -first" if i == 0 else "subhead"),
                            chart(f"chart-{code}", scale=100.0),
                            Static("", id=f"means-{code}", classes="figures"),
                            note(f"definition-{code}"),
                        ]
                    children.append(note("outcomes-note"))
                    yield ReportSection("Improved, baseline to discharge", *children, id="section-outcomes")
                    yield ReportSection(
                        "GP appointments and A&E attendances",
                        Static("", id="health-summary", classes="figures"),
                        chart("chart-health"),
                        note("health-definition"),
                        id="section-health",
                    )
                    yield ReportSection(
                        "Onward referrals",
                        chart("chart-onward"),
                        Static("", id="uptake-summary", classes="figures"),
                        note("uptake-note"),
                        id="section-uptake",
                    )
        yield StatusBar()
        yield KeysFooter()

    def on_mount(self) -> None:
        self.query_one("#report").border_title = "Reports"

    def on_screen_resume(self) -> None:
        self._count()

    # -- loading -----------------------------------------------------------------------------------

    def action_refresh(self) -> None:
        self._say_when_counted = True
        self._count()

    def _count(self) -> None:
        store = self.sprx.store
        if store is None:
            return
        if self.report is None:
            self.query_one("#report-columns").loading = True
        self._load(store, local(self.sprx.clock()).date())

    def action_quarter(self, step: int) -> None:
        """Count one calendar quarter: this one first, then the one before or after the quarter shown."""
        today = local(self.sprx.clock()).date()
        self.period = quarter_of(today) if self.period is None else self.period.step(step)
        self._say_when_counted = True
        self._count()

    def action_all_records(self) -> None:
        if self.period is not None:
            self.period = None
            self._say_when_counted = True
            self._count()

    @work(thread=True, exclusive=True, group="reports", exit_on_error=False, name="reports")
    def _load(self, store: CaseStore, today: dt.date) -> None:
        # build_report holds the store lock for its reads.
        self.post_message(ReportLoaded(reports.build_report(store, today, period=self.period)))

    @on(ReportLoaded)
    def _loaded(self, message: ReportLoaded) -> None:
        self.report = r = message.report
        with self.app.batch_update():
            self.query_one("#report-heading", Static).update(
                Content.assemble(
                    Content.styled(f"Caseload and outcomes: {r.scope}, {r.generated_on:%d %B %Y}", "bold"),
                    "\n",
                    Content.styled(
                        f"Period: {r.period.label()}" if r.period else "Period: every record (press [ for a quarter)",
                        "bold",
                    ),
                    "\n",
                    Content.styled("Counts and means only: no names, no notes. ", "$text-muted"),
                    Content.styled(f"{r.people} people {'in the period' if r.period else 'in all'}.", "$text-muted"),
                    *(["\n", Content.styled(PERIOD_DEFINITION, "$text-muted")] if r.period else []),
                )
            )
            self._show_caseload(r)
            self._show_outcomes(r)
            self._show_health(r)
            self._show_uptake(r)
            self.query_one("#report-columns").loading = False
        if self._say_when_counted:
            self._say_when_counted = False
            self.notify(f"Counted for {r.period.label()}." if r.period else "The figures have been counted again.")

    def _chart(self, chart_id: str) -> BarChart:
        return self.query_one(f"#{chart_id}", BarChart)

    def _static(self, static_id: str) -> Static:
        return self.query_one(f"#{static_id}", Static)

    def _show_caseload(self, r: reports.Report) -> None:
        self.query_one("#section-caseload").border_title = f"Caseload by status ({r.people} people)"
        self._chart("chart-status").show(count_bars(r.caseload_by_status))
        self._chart("chart-ended").show(count_bars(r.episodes_ended, DISCHARGE_REASONS))
        self.query_one("#section-referrals").border_title = f"Referrals received ({r.referrals})"
        self._chart("chart-source").show(count_bars(r.referrals_by_source))
        self._chart("chart-reason").show(count_bars(r.referrals_by_reason))
        self._chart("chart-decision").show(count_bars(r.referrals_by_status))
        c = r.contacts
        self._static("contacts-summary").update(
            f"{c.total} contacts with {c.people} people · mean {number(c.mean)}, median {number(c.median)} "
            f"per person · {c.did_not_attend} did not attend"
        )
        self._chart("chart-contacts").show(count_bars(dict(c.buckets), {b: f"{b} contacts" for b, _n in c.buckets}))
        self._static("contacts-note").update(r.definitions.get("contacts", ""))
        unmet = self.query_one("#section-unmet")
        unmet.border_title = f"Unmet needs: gaps in local provision ({r.unmet_needs_people} people)"
        self._chart("chart-unmet").show(count_bars(r.unmet_needs))
        self._static("unmet-note").update(r.definitions.get("unmet_needs", ""))

    def _show_outcomes(self, r: reports.Report) -> None:
        by_code = {o.instrument: o for o in r.outcomes}
        for code in SCORED:
            outcome = by_code.get(code)
            if outcome is None:
                continue
            noun = "person" if outcome.paired == 1 else "people"
            self._static(f"title-{code}").update(f"{outcome.title}: {outcome.paired} {noun} with both measures")
            self._chart(f"chart-{code}").show(improved_bars(outcome) if outcome.paired else [], scale=100.0)
            self._chart(f"chart-{code}").empty = "No one has both a baseline and a discharge measure yet."
            means = self._static(f"means-{code}")
            means.update(means_table(outcome) if outcome.paired else "")
            means.display = bool(outcome.paired)
            definition = f"Improved: {outcome.definition}"
            if outcome.copyright:
                definition += f"\n{outcome.copyright}"
            self._static(f"definition-{code}").update(definition)
        self._static("outcomes-note").update(r.definitions.get("outcomes", ""))

    def _show_health(self, r: reports.Report) -> None:
        people = max((h.people for h in r.health_use), default=0)
        self.query_one("#section-health").border_title = f"GP and A&E use, previous 3 months ({people} people)"
        lines = ["Totals at baseline and at discharge, over the people with both:"]
        hu = next((o for o in r.outcomes if o.instrument == "HEALTH_USE"), None)
        for h in r.health_use:
            lines.append(f"{h.label}: mean change {number(h.mean_change, sign=True)} per person")
        if hu is not None:
            for f in hu.figures:
                if f.improved_pct is not None:
                    lines.append(f"{f.label}: fewer than at baseline for {f.improved} people ({f.improved_pct:.1f}%)")
        self._static("health-summary").update("\n".join(lines))
        self._chart("chart-health").show(health_bars(r) if people else [])
        self._static("health-definition").update(f"Reduced: {hu.definition}" if hu is not None else "")

    def _show_uptake(self, r: reports.Report) -> None:
        u = r.uptake
        section = self.query_one("#section-uptake")
        section.border_title = f"Onward referrals ({u.onward_referrals} to {u.services} services)"
        self._chart("chart-onward").show(count_bars(u.by_outcome, {"declined": "Declined"}))
        rate = f"{100 * u.attendance_rate:.1f}%" if u.attendance_rate is not None else "-"
        days = f"{u.median_days_to_first_response:.1f}" if u.median_days_to_first_response is not None else "-"
        self._static("uptake-summary").update(
            f"Attendance rate {rate} ({u.attended} attended of {u.known_outcome} with a known outcome)\n"
            f"Median days to first response {days} (over {u.responses_timed} referrals)"
        )
        withdrawn = f" {u.withdrawn} withdrawn as made wrongly, not counted." if u.withdrawn else ""
        self._static("uptake-note").update(
            " ".join(r.definitions.get(k, "") for k in ("attendance", "response")).strip() + withdrawn
        )

    # -- export ------------------------------------------------------------------------------------

    def action_export(self) -> None:
        store = self.sprx.store
        report = self.report
        if store is None or report is None:
            self.notify("The report is still being counted; try again in a moment.")
            return
        span = report.period.quarter or f"{report.period.start}-to-{report.period.end}" if report.period else ""
        default = str(Path.home() / f"sprx-report-{span or report.generated_on.isoformat()}.txt")

        def answered(values: dict[str, str] | None) -> None:
            if values and self.sprx.store is not None:
                self._export(self.sprx.store, report, values["path"])

        self.app.push_screen(
            TextFieldsModal(
                "Export the report as a text file",
                [("path", "Save to (a new file)", default)],
                required={"path": "Say where to save the report."},
                save_label="Export",
                intro=f"Counts and means only, no names. {LEAVING_WARNING}",
            ),
            answered,
        )

    @work(thread=True, group="reports-export", exit_on_error=False, name="reports-export")
    def _export(self, store: CaseStore, report: reports.Report, path: str) -> None:
        self.post_message(ReportExported(reports.write_report(store, report, path)))

    @on(ReportExported)
    def _exported(self, message: ReportExported) -> None:
        self.notify(f"Report saved to {message.path}. It is not encrypted.", timeout=8)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state.name == "ERROR" and event.worker.name == "reports":
            self.query_one("#report-columns").loading = False
        worker_error(self, event)
