"""`sprx report` figures checked against a small caseload built by hand through the service, with a frozen clock."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from sprx_rules import report as rules_report
from sprx_rules.hsds import service_id
from sprx_rules.report import FigureChange
from sprx_tui import cli
from sprx_tui.core import directory, reports
from sprx_tui.core.store import CaseStore, open_store
from sprx_tui.core.vault import FLOOR, Vault
from tests.sample_data import hsds_sample

SAMPLE = hsds_sample()
NOW = dt.datetime(2026, 11, 23, 10, 30, tzinfo=dt.UTC)
KITCHEN = service_id("local", "756b5a9d-7d65-4063-b5f2-d08ccf01c55e")
LAUNDRY = service_id("local", "21a1192b-abb9-45e8-bc52-c81ca4087240")
BASE_ON, DISCHARGE_ON = dt.date(2026, 8, 10), dt.date(2026, 11, 1)


def swemwbs(*values: int) -> dict[str, int | None]:
    ids = ["optimistic", "useful", "relaxed", "problems", "thinking", "close", "own_mind"]
    vals = list(values) * 7 if len(values) == 1 else list(values)
    return dict(zip(ids, vals, strict=True))


def ucla(a: int, b: int, c: int) -> dict[str, int | None]:
    return {"companionship": a, "left_out": b, "isolated": c}


def ons(ls: int, w: int, h: int, a: int) -> dict[str, int | None]:
    return {"life_satisfaction": ls, "worthwhile": w, "happiness": h, "anxiety": a}


def use(gp: int, ae: int) -> dict[str, int | None]:
    return {"gp_appointments": gp, "ae_attendances": ae}


# person: (source, reasons, contacts after the first, baseline answers, discharge answers)
PAIRED = {
    "P1": ("gp", ["loneliness", "money"], 1, (swemwbs(2), ucla(3, 3, 3), ons(3, 5, 4, 8), use(6, 2)),
           (swemwbs(3), ucla(2, 2, 2), ons(6, 5, 4, 6), use(2, 0))),
    "P2": ("pharmacy", ["loneliness"], 1, (swemwbs(3), ucla(2, 2, 2), ons(5, 5, 5, 5), use(3, 0)),
           (swemwbs(3, 3, 3, 3, 4, 4, 4), ucla(2, 2, 2), ons(6, 6, 5, 5), use(3, 0))),
    "P3": ("gp", ["housing"], 0, (swemwbs(4), ucla(2, 2, 1), ons(7, 7, 7, 2), use(1, 0)),
           (swemwbs(4), ucla(2, 1, 1), ons(7, 7, 8, 3), use(2, 0))),
    "P4": ("self", ["physical_activity"], 5, (swemwbs(1), ucla(2, 1, 1), ons(2, 2, 2, 9), use(4, 1)),
           (swemwbs(2), ucla(1, 1, 1), ons(2, 1, 2, 9), use(0, 1))),
}  # fmt: skip
INSTRUMENTS = ("SWEMWBS", "UCLA3", "ONS4", "HEALTH_USE")


def build_caseload(store: CaseStore) -> dict[str, str]:
    """Seven people; every figure of the report follows from this by hand (see the test)."""
    directory.import_hsds(store, SAMPLE)
    svc = store.service
    ids: dict[str, str] = {}
    modes = iter(["home_visit", "phone", "video", "clinic", "community"] * 10)
    when = dt.datetime(2026, 9, 1, 10, tzinfo=dt.UTC)

    def person(key: str, source: str, reasons: list[str]) -> tuple[str, str]:
        p = svc.add_person(given_name=key, family_name="Example", consent_gp_sharing="full")
        r = svc.receive_referral(p.id, source=source, reasons=reasons, received_on=dt.date(2026, 8, 1))
        ids[key] = p.id
        return p.id, r.id

    for key, (source, reasons, more, base, done) in PAIRED.items():
        pid, rid = person(key, source, reasons)
        svc.accept_referral(rid, mode=next(modes), occurred_at=when, notes="First visit.")
        contacts = [
            svc.record_contact(pid, mode=next(modes), occurred_at=when + dt.timedelta(days=i + 1)) for i in range(more)
        ]
        for code, answers in zip(INSTRUMENTS, base, strict=True):
            svc.record_outcome(pid, code, "baseline", answers, taken_on=BASE_ON)
        for code, answers in zip(INSTRUMENTS, done, strict=True):
            svc.record_outcome(pid, code, "discharge", answers, taken_on=DISCHARGE_ON)
        if key == "P1":
            svc.record_contact(pid, mode="home_visit", occurred_at=when + dt.timedelta(days=9), did_not_attend=True)
            # A later baseline is ignored: the earliest complete baseline counts.
            svc.record_outcome(pid, "SWEMWBS", "baseline", swemwbs(5), taken_on=BASE_ON + dt.timedelta(days=5))
            svc.record_need(pid, "loneliness", status="met")
        if key == "P2":
            svc.mark_entered_in_error(contacts[-1].id, "Wrong person")
            svc.record_contact(pid, mode="phone", occurred_at=when + dt.timedelta(days=20))
            svc.record_need(pid, "low_mood")
        if key == "P3":
            # An earlier discharge is ignored: the latest complete discharge counts.
            svc.record_outcome(pid, "UCLA3", "discharge", ucla(3, 3, 3), taken_on=DISCHARGE_ON - dt.timedelta(days=9))
            svc.record_need(pid, "housing", status="unmet")
        svc.discharge(pid)

    pid, rid = person("P5", "vcse", ["money", "housing"])
    svc.accept_referral(rid, mode="clinic", occurred_at=when)
    for i in range(12):
        svc.record_contact(pid, mode="phone", occurred_at=when + dt.timedelta(days=i + 1))
    for code, answers in zip(INSTRUMENTS, PAIRED["P1"][3], strict=True):
        svc.record_outcome(pid, code, "baseline", answers, taken_on=BASE_ON)
    incomplete = swemwbs(4)
    incomplete["close"] = None
    svc.record_outcome(pid, "SWEMWBS", "discharge", incomplete, taken_on=DISCHARGE_ON)  # not complete: not paired
    svc.record_need(pid, "housing", status="unmet")
    svc.record_need(pid, "money", status="unmet")

    _pid, rid = person("P6", "gp", ["low_mood"])
    svc.decline_referral(rid, "Does not want support at present.")
    person("P7", "nurse", ["carer_strain"])

    made = dt.date(2026, 9, 2)
    for key, service, kind, outcome, days in [
        ("P1", KITCHEN, "referred", "attended", 3),
        ("P2", KITCHEN, "signposted", "not_attended", 5),
        ("P3", LAUNDRY, "accompanied", "waiting", 1),
        ("P4", LAUNDRY, "referred", "declined", None),
        ("P5", KITCHEN, "signposted", "pending", None),
    ]:
        row = svc.refer_to_service(ids[key], service, kind=kind, need="money", made_on=made)
        if outcome != "pending":
            svc.record_onward_outcome(
                row.id,
                outcome,
                outcome_on=made + dt.timedelta(days=10),
                first_response_on=made + dt.timedelta(days=days) if days is not None else None,
            )
    return ids


@pytest.fixture(scope="module")
def caseload(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CaseStore, Path]]:
    path = tmp_path_factory.mktemp("report") / "vault"
    vault, _ = Vault.create(path, bytearray(b"walking group on tuesday"), kdf=FLOOR)
    store = open_store(vault, clock=lambda: NOW)
    build_caseload(store)
    yield store, path
    if vault.is_unlocked:
        vault.lock()


@pytest.fixture(scope="module")
def report(caseload: tuple[CaseStore, Path]) -> reports.Report:
    return reports.build_report(caseload[0])


def test_caseload_and_referrals(report: reports.Report) -> None:
    assert report.generated_on == NOW.date()
    assert report.people == 7
    assert report.caseload_by_status == {
        "referred": 1, "active": 1, "discharged": 4, "declined": 1, "did_not_engage": 0,
    }  # fmt: skip
    assert report.referrals == 7
    assert report.referrals_by_source == {"gp": 3, "nurse": 1, "pharmacy": 1, "self": 1, "vcse": 1}
    assert report.referrals_by_reason == {
        "housing": 2, "loneliness": 2, "money": 2, "carer_strain": 1, "low_mood": 1, "physical_activity": 1,
    }  # fmt: skip
    # Discharge closes the episode's referral: P1-P4 were discharged.
    assert report.referrals_by_status == {"received": 1, "accepted": 1, "declined": 1, "closed": 4}


def test_contacts_per_person(report: reports.Report) -> None:
    c = report.contacts
    # P1 3 (one did not attend), P2 2 (a third entered in error), P3 1, P4 6, P5 13.
    assert (c.total, c.people, c.mean, c.median, c.did_not_attend) == (25, 5, 5.0, 3.0, 1)
    assert c.buckets == [("1-2", 2), ("3-5", 1), ("6-8", 1), ("9-12", 0), ("13+", 1)]
    assert sum(c.by_mode.values()) == 25 and c.by_mode["phone"] >= 13


def figures(report: reports.Report, instrument: str) -> tuple[int, dict[str, FigureChange]]:
    oc = next(o for o in report.outcomes if o.instrument == instrument)
    return oc.paired, {f.figure: f for f in oc.figures}


def test_outcome_improvement_matches_hand_calculation(report: reports.Report) -> None:
    paired, f = figures(report, "SWEMWBS")
    m = f["metric"]
    # Metric scores: P1 15.32 -> 19.25 (+3.93), P2 19.25 -> 21.54 (+2.29), P3 25.03 -> 25.03, P4 7.00 -> 15.32.
    assert (paired, m.people, m.improved, m.improved_pct) == (4, 4, 2, 50.0)
    assert m.baseline_mean == pytest.approx(16.65, abs=0.006)
    assert m.discharge_mean == pytest.approx(20.285, abs=0.006)
    assert m.mean_change == pytest.approx(3.635, abs=0.006)

    paired, f = figures(report, "UCLA3")
    assert (paired, f["total"].improved, f["total"].improved_pct) == (4, 3, 75.0)
    assert (f["total"].baseline_mean, f["total"].discharge_mean, f["total"].mean_change) == (6.0, 4.75, -1.25)

    paired, f = figures(report, "ONS4")
    assert paired == 4 and list(f) == ["life_satisfaction", "worthwhile", "happiness", "anxiety"]
    assert [(f[k].improved, f[k].improved_pct) for k in f] == [(2, 50.0), (1, 25.0), (1, 25.0), (1, 25.0)]
    assert f["anxiety"].mean_change == -0.25 and f["life_satisfaction"].mean_change == 1.0

    oc = next(o for o in report.outcomes if o.instrument == "SWEMWBS")
    assert "3 points or more" in oc.definition and oc.copyright and "NHS Health Scotland" in oc.copyright


def test_health_service_use(report: reports.Report) -> None:
    gp, ae = report.health_use
    assert (gp.item, gp.people, gp.baseline_total, gp.discharge_total, gp.mean_change) == (
        "gp_appointments", 4, 14, 7, -1.75,
    )  # fmt: skip
    assert (ae.item, ae.people, ae.baseline_total, ae.discharge_total, ae.mean_change) == (
        "ae_attendances", 4, 3, 1, -0.5,
    )  # fmt: skip
    _paired, f = figures(report, "HEALTH_USE")
    assert (f["gp_appointments"].improved, f["ae_attendances"].improved) == (2, 1)


def test_unmet_needs_and_onward_uptake(report: reports.Report) -> None:
    assert report.unmet_needs == {"housing": 2, "money": 1}
    assert report.unmet_needs_people == 2
    u = report.uptake
    assert (u.onward_referrals, u.services, u.attended, u.known_outcome) == (5, 2, 1, 3)
    assert u.by_kind == {"signposted": 2, "referred": 2, "accompanied": 1}
    assert u.by_outcome == {"pending": 1, "waiting": 1, "attended": 1, "not_attended": 1, "declined": 1}
    assert u.attendance_rate == 1 / 3  # 1 attended of 3 with a known outcome, not rounded before display
    assert (u.median_days_to_first_response, u.responses_timed) == (3.0, 3)


def test_render_text_reads_plainly(report: reports.Report) -> None:
    text = reports.render_text(report)
    lines = text.splitlines()
    assert lines[0] == "Caseload and outcomes: this laptop's caseload, 23 November 2026"
    assert "  Discharged          4  57.1%  ####################################" in lines
    assert "  GP                                       3  42.9%  ####################################" in lines
    assert "  Voluntary or community organisation      1  14.3%  ############" in lines
    assert any(line.startswith("  Total score") and line.endswith("3 (75.0%)") for line in lines)
    assert any(line.startswith("  Life satisfaction") and line.endswith("2 (50.0%)") for line in lines)
    assert "  GP appointments            4        14          7        -1.75" in lines
    assert "  Attendance rate 33.3% (1 attended of 3 with a known outcome)" in lines
    assert "Short Warwick Edinburgh Mental Wellbeing Scale (SWEMWBS) © NHS Health Scotland" in text
    assert "Unmet needs: gaps in local provision (2 people)" in text
    assert max(len(line) for line in lines) <= 100
    # Counts only: no names of people appear.
    assert "Example" not in text and "P1" not in text


def test_empty_vault_report(core_store: CaseStore) -> None:
    empty = reports.build_report(core_store)
    assert empty.people == 0 and empty.contacts.mean is None
    assert all(o.paired == 0 for o in empty.outcomes)
    text = reports.render_text(empty)
    assert "Caseload by status (0 people)" in text and "Attendance rate - (0 attended" in text


def test_cli_report(
    caseload: tuple[CaseStore, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, path = caseload
    store.vault.lock()  # the command unlocks it itself
    monkeypatch.setattr("sprx_tui.core.db.init_process_security", lambda *_a, **_k: None)
    monkeypatch.setattr("sys.stdin", io.StringIO("walking group on tuesday\n"))
    code = cli.main(["report", "--vault", str(path), "--passphrase-stdin"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.startswith("Caseload and outcomes: this laptop's caseload,")
    assert "Caseload by status (7 people)" in out


def test_attendance_is_rounded_only_for_display() -> None:
    u = rules_report.uptake_figures({"referred": 13}, {"attended": 6, "not_attended": 7}, [], 1)
    assert u.attendance_rate == 6 / 13  # 0.461538..., worked out by hand: 6 of 13
    assert f"{100 * u.attendance_rate:.1f}%" == "46.2%"  # rounding first (0.46) would show 46.0%


def test_codes_in_words_and_names_as_written() -> None:
    lines = rules_report._bars({"GP": 2, "low_mood": 1, "self": 1}, None)
    assert [ln.split()[0] for ln in lines] == ["GP", "Low", "Self"]


# -- reports by period (sprx_rules.report.PERIOD_DEFINITION) ------------------------------------------------


@pytest.fixture
def unlocked(caseload: tuple[CaseStore, Path]) -> Iterator[CaseStore]:
    """The caseload's store, unlocked again if a command-line test locked it (and then locked after)."""
    store, path = caseload
    if store.vault.is_unlocked:
        yield store
        return
    vault = Vault(path)
    vault.unlock(bytearray(b"walking group on tuesday"))
    try:
        yield open_store(vault, clock=lambda: NOW)
    finally:
        vault.lock()


def test_a_week_of_september_worked_out_by_hand(unlocked: CaseStore) -> None:
    """10-15 September 2026: P5's contacts on days 9-12 after 1 September (10th-13th) and P1's did-not-attend
    on the 10th, so 5 contacts with 2 people; no referral was received, made or ended in that week."""
    period = rules_report.period_from("2026-09-10", "2026-09-15", None)
    r = reports.build_report(unlocked, period=period)
    assert (r.contacts.total, r.contacts.people, r.contacts.did_not_attend) == (5, 2, 1)
    assert sum(r.contacts.by_mode.values()) == 5 and r.contacts.by_mode["phone"] >= 4
    # The two people by their status today (P1 discharged, P5 active), and P5's two unmet needs.
    assert r.people == 2 and r.caseload_by_status["active"] == 1 and r.caseload_by_status["discharged"] == 1
    assert r.unmet_needs == {"housing": 1, "money": 1} and r.unmet_needs_people == 1
    assert r.referrals == 0 and r.uptake.onward_referrals == 0 and r.episodes_ended == {
        "goals_met": 0, "moved_away": 0, "declined_support": 0, "did_not_engage": 0, "died": 0, "other": 0,
    }  # fmt: skip
    assert all(o.paired == 0 for o in r.outcomes)
    text = reports.render_text(r)
    assert "Period: 10 September 2026 to 15 September 2026" in text
    assert "a contact by the day it happened" in " ".join(text.split())


def test_quarters_split_the_caseload_by_its_dates(unlocked: CaseStore) -> None:
    """Referrals came on 1 August and onward referrals on 2 September (Q3); the discharges on 23 November and
    their measures on 1 November (Q4)."""
    q3 = reports.build_report(unlocked, period=rules_report.quarter("2026Q3"))
    assert (q3.people, q3.referrals, q3.contacts.total, q3.uptake.onward_referrals) == (7, 7, 25, 5)
    assert sum(q3.episodes_ended.values()) == 0 and all(o.paired == 0 for o in q3.outcomes)
    q4 = reports.build_report(unlocked, period=rules_report.quarter("2026Q3").step(1))
    assert q4.caseload_by_status == {"referred": 0, "active": 0, "discharged": 4, "declined": 0, "did_not_engage": 0}
    assert (q4.referrals, q4.contacts.total, q4.uptake.onward_referrals) == (0, 0, 0)
    assert q4.episodes_ended["goals_met"] == 4 and all(o.paired == 4 for o in q4.outcomes)
    assert q4.unmet_needs == {"housing": 1}  # P3's; P5 had nothing in the quarter
    assert reports.render_text(q4).splitlines()[3] == "Period: 2026 Q4 (1 October 2026 to 31 December 2026)"


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        ((None, None, "2026Q5"), "Write a quarter as the year then Q1 to Q4"),
        (("2026-13-01", None, None), "The from date must be written like 2026-07-01"),
        (("2026-09-01", "2026-08-01", None), "The period ends before it starts"),
        (("2026-09-01", None, "2026Q3"), "Give either a quarter or dates"),
    ],
)
def test_bad_periods_are_one_sentence(args: tuple[str | None, ...], sentence: str) -> None:
    with pytest.raises(ValueError, match=sentence):
        rules_report.period_from(*args)


def test_quarter_steps_cross_years() -> None:
    q = rules_report.quarter("2026-q1")
    assert (q.start, q.end) == (dt.date(2026, 1, 1), dt.date(2026, 3, 31))
    assert q.step(-1).quarter == "2025Q4" and q.step(4).quarter == "2027Q1"
    assert rules_report.quarter_of(dt.date(2026, 12, 31)).quarter == "2026Q4"
    assert rules_report.period_from("2026-01-01", "2026-02-01", None).quarter is None


def test_cli_report_for_a_quarter(
    caseload: tuple[CaseStore, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, path = caseload
    store.vault.lock()
    monkeypatch.setattr("sprx_tui.core.db.init_process_security", lambda *_a, **_k: None)
    monkeypatch.setattr("sys.stdin", io.StringIO("walking group on tuesday\n"))
    code = cli.main(["report", "--vault", str(path), "--passphrase-stdin", "--quarter", "2026Q4"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Period: 2026 Q4 (1 October 2026 to 31 December 2026)" in out and "Caseload by status (4 people)" in out
    code = cli.main(["report", "--vault", str(path), "--passphrase-stdin", "--quarter", "Q4"])
    out, err = capsys.readouterr()
    assert code == 1 and err.strip().startswith("sprx: Write a quarter as the year") and err.count("\n") == 1
