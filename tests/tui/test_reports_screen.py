"""The reports screen against the demo vault: every figure is the one build_report gives; refresh and export."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select
from textual.pilot import Pilot
from textual.widgets import Input, Static

from sprx_tui.app import SprxApp
from sprx_tui.config import Config
from sprx_tui.core import reports
from sprx_tui.core.models import AuditEvent
from sprx_tui.core.store import CaseStore
from sprx_tui.screens.forms import TextFieldsModal
from sprx_tui.screens.reports import ReportsScreen, label
from sprx_tui.widgets.bar_chart import Bar, BarChart, bar_text
from tests.tui.conftest import FROZEN_NOW, frozen_clock
from tests.tui.settling import open_area, settle, wait_until

SIZE = (120, 40)


@pytest.fixture(autouse=True)
def _config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPRX_CONFIG_DIR", str(tmp_path / "config"))


def make_app(store: CaseStore) -> SprxApp:
    app = SprxApp(store.vault.path, clock=frozen_clock, config=Config(), store=store)
    app.animation_level = "none"
    return app


async def open_reports(app: SprxApp, pilot: Pilot[Any]) -> ReportsScreen:
    return await open_area(pilot, "f5", ReportsScreen)


def chart_rows(screen: ReportsScreen, chart_id: str) -> list[tuple[str, str]]:
    """(label, figure) as drawn: each line of the chart read back from its text."""
    chart = screen.query_one(f"#{chart_id}", BarChart)
    out = []
    for line, bar in zip(chart.plain.splitlines(), chart.bars, strict=True):
        assert line.startswith(bar.label[:10]), line
        assert bar.figure.strip() in line, line
        out.append((bar.label, bar.figure))
    return out


def counts_shown(screen: ReportsScreen, chart_id: str) -> dict[str, int]:
    return {name: int(figure.split()[0]) for name, figure in chart_rows(screen, chart_id)}


def text_of(screen: ReportsScreen, static_id: str) -> str:
    return str(screen.query_one(f"#{static_id}", Static).render())


async def test_figures_match_build_report(unlocked_store: CaseStore) -> None:
    report = reports.build_report(unlocked_store, FROZEN_NOW.date())
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_reports(app, pilot)
        assert "23 November 2026" in text_of(screen, "report-heading")
        assert f"{report.people} people" in text_of(screen, "report-heading")

        def labelled(counts: dict[str, int]) -> dict[str, int]:
            return {label(k): n for k, n in counts.items()}

        assert counts_shown(screen, "chart-status") == labelled(report.caseload_by_status)
        assert counts_shown(screen, "chart-source") == labelled(report.referrals_by_source)
        assert counts_shown(screen, "chart-reason") == labelled(report.referrals_by_reason)
        assert counts_shown(screen, "chart-unmet") == labelled(report.unmet_needs)
        assert counts_shown(screen, "chart-contacts") == {f"{b} contacts": n for b, n in report.contacts.buckets}
        assert f"{report.contacts.total} contacts with {report.contacts.people} people" in text_of(
            screen, "contacts-summary"
        )
        # % improved per measure, with the definition of improvement for each instrument.
        for outcome in report.outcomes:
            if outcome.instrument == "HEALTH_USE":
                continue
            assert f"{outcome.paired} people with both measures" in text_of(screen, f"title-{outcome.instrument}")
            assert outcome.definition in text_of(screen, f"definition-{outcome.instrument}").replace("\n", " ")
            shown = dict(chart_rows(screen, f"chart-{outcome.instrument}"))
            assert outcome.paired > 0
            for figure in outcome.figures:
                assert f"{figure.improved_pct:.1f}%" in shown[figure.label]
                assert f"{figure.improved} of {figure.people}" in shown[figure.label]
        swemwbs = next(o for o in report.outcomes if o.instrument == "SWEMWBS")
        assert swemwbs.copyright and swemwbs.copyright in text_of(screen, "definition-SWEMWBS").replace("\n", " ")
        # GP appointments and A&E attendances, baseline to discharge.
        health = dict(chart_rows(screen, "chart-health"))
        for h in report.health_use:
            assert health[f"{h.label}: baseline"].split()[0] == str(h.baseline_total)
            assert health[f"{h.label}: discharge"].split()[0] == str(h.discharge_total)
        u = report.uptake
        assert u.attendance_rate is not None
        assert f"Attendance rate {100 * u.attendance_rate:.1f}%" in text_of(screen, "uptake-summary")


@pytest.mark.slow  # counts and exports the whole demo vault twice
async def test_refresh_counts_again_and_export_writes_an_audited_file(
    unlocked_store: CaseStore, tmp_path: Path
) -> None:
    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_reports(app, pilot)
        before = counts_shown(screen, "chart-status")
        unlocked_store.service.add_person(given_name="Nova", family_name="Counted")
        await pilot.press("r")
        await settle(pilot, rounds=4)
        after = counts_shown(screen, "chart-status")
        assert after["Referred"] == before["Referred"] + 1
        assert "The figures have been counted again." in [n.message for n in app._notifications]

        target = tmp_path / "report.txt"
        await pilot.press("e")
        await settle(pilot, rounds=4)
        assert isinstance(app.screen, TextFieldsModal)
        path_box = app.screen.query_one("#path", Input)
        path_box.value = ""
        path_box.focus()
        await pilot.press(*str(target), "ctrl+s")
        await settle(pilot, rounds=4)
        assert app.screen is screen
        assert screen.report is not None
        assert target.read_text(encoding="utf-8") == reports.render_text(screen.report)
        assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
        with Session(unlocked_store.engine) as s:
            exports = s.exec(select(AuditEvent).where(AuditEvent.action == "EXPORT")).all()
        assert [e.detail for e in exports] == [f"report text people={screen.report.people}"]

        # The same name again is refused in a plain sentence and the file is left as it was.
        target.write_text("kept", encoding="utf-8")
        await pilot.press("e")
        await settle(pilot, rounds=4)
        path_box = app.screen.query_one("#path", Input)
        path_box.value = str(target)
        await pilot.press("ctrl+s")
        await settle(pilot, rounds=4)
        assert target.read_text(encoding="utf-8") == "kept"
        assert "A file with that name already exists; choose another name." in [n.message for n in app._notifications]


def test_bars_are_characters_with_eighths_and_an_ascii_form() -> None:
    assert bar_text(0, 10, 20) == ""
    assert bar_text(10, 10, 20) == "█" * 20
    assert bar_text(5, 10, 20) == "█" * 10
    assert bar_text(1, 1000, 20) == "▏"  # any value above zero shows
    assert bar_text(1, 100, 20) == "▎"  # 0.2 of a cell is two eighths
    assert bar_text(3, 8, 8) == "███"
    assert bar_text(5, 10, 20, ascii_only=True) == "#" * 10
    chart = BarChart([Bar("Active", 30, "30"), Bar("Referred", 8, "8")])
    lines = [line.plain for line in chart.lines(40)]
    assert lines[0].startswith("Active  ") and lines[0].endswith("█")
    assert len(lines[0].rstrip()) == 40
    assert BarChart([]).lines(40)[0].plain == "None recorded."


async def test_quarters_step_with_brackets_and_a_counts_everything(unlocked_store: CaseStore) -> None:
    from sprx_rules.report import quarter

    app = make_app(unlocked_store)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_reports(app, pilot)
        await wait_until(pilot, lambda: screen.report is not None, what="the first count")
        assert "Period: every record" in text_of(screen, "report-heading")
        await pilot.press("left_square_bracket")  # this quarter first (the frozen clock is 23 November 2026)
        await wait_until(pilot, lambda: screen.report is not None and screen.report.period == quarter("2026Q4"))
        heading = text_of(screen, "report-heading")
        assert "Period: 2026 Q4 (1 October 2026 to 31 December 2026)" in heading
        assert "a referral by the date it was received" in " ".join(heading.split())
        expected = reports.build_report(unlocked_store, FROZEN_NOW.date(), period=quarter("2026Q4"))
        assert counts_shown(screen, "chart-status") == {label(k): n for k, n in expected.caseload_by_status.items()}
        await pilot.press("left_square_bracket")
        await wait_until(pilot, lambda: screen.report is not None and screen.report.period == quarter("2026Q3"))
        await pilot.press("right_square_bracket", "right_square_bracket")
        await wait_until(pilot, lambda: screen.report is not None and screen.report.period == quarter("2027Q1"))
        await pilot.press("a")
        await wait_until(pilot, lambda: screen.report is not None and screen.report.period is None)
        assert screen.report.people == reports.build_report(unlocked_store).people
