"""Encrypted vault and service-layer benchmarks: workload ratio, contact-save latency, caseload search.

Every mode runs in its own child process (SQLCipher memory security is process-global), modes
alternate round by round, and the parent reports medians and the ratios from that one invocation.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import os
import pstats
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from common import (
    DEMO_PASSPHRASE,
    PYTHON,
    VAULT_10K,
    StepClock,
    Stopwatch,
    alternating,
    assert_memory_security,
    command_line,
    copy_vault,
    emit_json,
    machine,
    median,
    ms_since,
    print_table,
    run_child,
    scratch_dir,
    self_peak_rss_mb,
    set_memory_security,
    summary,
)

SCRIPT = str(Path(__file__).resolve())
_now = time.perf_counter
SQLITE_MAGIC = b"SQLite format 3\x00"
NOTES = [
    "Phoned as arranged. Talked about the walking group and agreed to try Tuesday.",
    "Home visit; tea offered. Mood brighter, has been to the garden project twice.",
    "Brief call to check in. Worried about the gas bill; booked the money advice drop-in.",
    "Met at the community centre. Reviewed the plan together; one goal achieved.",
]
MODES_WORKLOAD = ("plain", "enc", "enc-memsec")
MODES_ON_OFF = ("memsec-on", "memsec-off")


# =========================================================================================
# children (each runs exactly one mode in a fresh process)
# =========================================================================================


def child_workload(args: argparse.Namespace) -> None:
    """Benchmark 1: a fixed UI-like write workload, one transaction per operation."""
    set_memory_security(args.mode == "enc-memsec")
    from sprx_tui.core import db, migrations
    from sprx_tui.core.demo import FAMILY, GIVEN, GOALS, nhs_test_number, synthetic_postcode
    from sprx_tui.core.service import CaseService
    from sprx_tui.core.store import load_actor

    work = scratch_dir("workload-")
    path = work / "sprx.db"
    if args.mode == "plain":
        engine = db.make_plain_engine(path)
    else:
        dek = bytearray(os.urandom(32))
        engine = db.make_engine(path, lambda: bytearray(dek))
    try:
        migrations.upgrade(engine)
        clock = StepClock()
        svc = CaseService(engine, load_actor(engine), clock=clock)
        rng = random.Random(args.seed)
        ops = Stopwatch()
        c0 = time.process_time()
        t0 = _now()
        for _ in range(args.people):
            today = clock().date()
            with ops:
                person = svc.add_person(
                    given_name=rng.choice(GIVEN),
                    family_name=rng.choice(FAMILY),
                    nhs_number=nhs_test_number(rng),
                    date_of_birth=dt.date(1940 + rng.randrange(60), 1 + rng.randrange(12), 1 + rng.randrange(28)),
                    postcode=synthetic_postcode(rng),
                    phone=f"07700 900{rng.randint(0, 999):03d}",
                    consent_social_prescribing=True,
                )
            with ops:
                referral = svc.receive_referral(person.id, source="gp", reasons=["loneliness"])
            for i in range(args.contacts):
                kwargs = {
                    "mode": rng.choice(["phone", "home_visit", "video"]),
                    "notes": rng.choice(NOTES),
                    "duration_minutes": rng.choice([15, 30, 45]),
                    "follow_up_on": today + dt.timedelta(days=rng.choice([3, 7, 14])),
                }
                with ops:
                    if i == 0:
                        svc.accept_referral(referral.id, **kwargs)
                    else:
                        svc.record_contact(person.id, **kwargs)
            with ops:
                svc.record_what_matters(person.id, "Someone to talk to in the evenings.", life_area="connection")
            goals = []
            for text, actions in rng.sample(GOALS, k=2):
                with ops:
                    goal = svc.add_goal(person.id, text, target_on=today + dt.timedelta(days=60))
                goals.append(goal)
                for what in actions:
                    with ops:
                        action = svc.add_action(goal.id, what, who="person")
                with ops:
                    svc.complete_action(action.id)
                with ops:
                    svc.update_goal(goal.id, status="in_progress")
            with ops:
                svc.move_goal(goals[-1].id, -1)
            with ops:
                svc.update_person(person.id, phone=f"07700 900{rng.randint(0, 999):03d}")
        total_ms = ms_since(t0)
        cpu_ms = (time.process_time() - c0) * 1000.0
        memsec = assert_memory_security(args.mode == "enc-memsec")
        with engine.connect() as conn:
            outbox = conn.exec_driver_sql("SELECT count(*) FROM sync_outbox").scalar()
            audit = conn.exec_driver_sql("SELECT count(*) FROM audit_event").scalar()
        db.checkpoint_and_dispose(engine)
        encrypted = path.read_bytes()[:16] != SQLITE_MAGIC
        if encrypted != (args.mode != "plain"):
            raise SystemExit(f"mode {args.mode}: file encrypted={encrypted}, which is wrong")
        emit_json(
            {
                "mode": args.mode,
                "total_ms": round(total_ms, 1),
                "cpu_ms": round(cpu_ms, 1),
                "ops": len(ops.samples),
                "op": summary(ops.samples),
                "outbox_rows": outbox,
                "audit_rows": audit,
                "encrypted_file": encrypted,
                "memory_security": memsec,
                "peak_rss_mb": round(self_peak_rss_mb(), 1),
            }
        )
    finally:
        engine.dispose()
        shutil.rmtree(work, ignore_errors=True)


def _open_vault(path: Path, clock: Any = None) -> Any:
    from sprx_tui.core.store import open_store
    from sprx_tui.core.vault import Vault

    vault = Vault(path)
    secret = bytearray(DEMO_PASSPHRASE.encode())
    try:
        vault.unlock(secret)
    finally:
        secret[:] = bytes(len(secret))
    return open_store(vault) if clock is None else open_store(vault, clock=clock)


def _profile_text(profiler: cProfile.Profile, limit: int = 30) -> str:
    buf = io.StringIO()
    stats = pstats.Stats(profiler, stream=buf)
    stats.sort_stats("cumulative").print_stats(limit)
    stats.sort_stats("tottime").print_stats(15)
    return buf.getvalue()


def child_save(args: argparse.Namespace) -> None:
    """Benchmark 2: record_contact (contact + follow-up + outbox + audit, committed) on a big vault."""
    on = args.mode.startswith("memsec-on")
    set_memory_security(on)
    from sqlmodel import Session, select

    from sprx_tui.core.models import Person

    store = _open_vault(Path(args.vault))
    try:
        with Session(store.engine) as s:
            ids = list(s.exec(select(Person.id).where(Person.status == "active").order_by(Person.id)).all())
        people = store.queries.status_counts()
        rng = random.Random(args.seed)
        today = store.service.today()
        svc = store.service
        if args.wal_autocheckpoint:
            # The app's setting while unlocked (sprx_tui.app.WAL_AUTOCHECKPOINT_PAGES): SQLite's own log
            # copying (default every 1,000 pages) otherwise lands inside a save now and then.
            with store.engine.connect() as conn:
                conn.exec_driver_sql(f"PRAGMA wal_autocheckpoint = {int(args.wal_autocheckpoint)}").fetchall()

        def save() -> None:
            svc.record_contact(
                rng.choice(ids),
                mode=rng.choice(["phone", "home_visit", "video", "clinic"]),
                notes=rng.choice(NOTES),
                duration_minutes=rng.choice([15, 30, 45, 60]),
                follow_up_on=rng.choice([None, today + dt.timedelta(days=7), today + dt.timedelta(days=14)]),
            )

        for _ in range(args.warmup):
            save()
        saves = Stopwatch()
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        for _ in range(args.saves):
            with saves:
                save()
        if profiler:
            profiler.disable()
        memsec = assert_memory_security(on)
        payload = {
            "mode": args.mode,
            "save_ms": summary(saves.samples),
            "save_cpu_ms": summary(saves.cpu),
            "samples": [round(x, 3) for x in saves.samples],
            "cpu_samples": [round(x, 3) for x in saves.cpu],
            "people": sum(people.values()),
            "active_people": len(ids),
            "memory_security": memsec,
            "peak_rss_mb": round(self_peak_rss_mb(), 1),
        }
        if profiler:
            payload["profile"] = _profile_text(profiler)
        emit_json(payload)
    finally:
        store.vault.lock()


def _search_mix(
    rows: list[tuple[str, str, str | None, str | None]], rng: random.Random, n: int
) -> list[tuple[str, str]]:
    """(category, text) pairs a link worker would type into the caseload filter."""
    mix: list[tuple[str, str]] = []
    weights = [
        ("name-1", 10),
        ("name-2", 10),
        ("name-3", 10),
        ("name-4", 10),
        ("given+family", 10),
        ("nhs-full-spaced", 15),
        ("nhs-partial", 5),
        ("postcode-full", 15),
        ("postcode-district", 10),
        ("no-match", 5),
    ]
    cats = [c for c, _ in weights]
    ws = [w for _, w in weights]
    while len(mix) < n:
        given, family, nhs, postcode = rng.choice(rows)
        cat = rng.choices(cats, ws)[0]
        if cat.startswith("name-"):
            name = rng.choice([given, family])
            text = name[: int(cat[-1])]
        elif cat == "given+family":
            text = f"{given[: rng.randint(2, 4)]} {family[: rng.randint(2, 4)]}"
        elif cat == "nhs-full-spaced":
            if not nhs:
                continue
            text = f"{nhs[:3]} {nhs[3:6]} {nhs[6:]}"
        elif cat == "nhs-partial":
            if not nhs:
                continue
            text = f"{nhs[:3]} {nhs[3:6]} {nhs[6:8]}"
        elif cat == "postcode-full":
            if not postcode:
                continue
            text = postcode
        elif cat == "postcode-district":
            if not postcode:
                continue
            text = postcode.split()[0]
        else:
            text = rng.choice(["zzq", "qxj", "Wolfeschlegel"])
        mix.append((cat, text.lower() if rng.random() < 0.5 else text))
    return mix


def child_search(args: argparse.Namespace) -> None:
    """Benchmark 3: queries.caseload(text=..., limit=100) over a realistic mix of typed filters."""
    on = args.mode.startswith("memsec-on")
    set_memory_security(on)
    from sqlmodel import Session, select

    from sprx_tui.core.models import Person

    t0 = _now()
    store = _open_vault(Path(args.vault))
    try:
        t1 = _now()
        first_page, total = store.queries.caseload(limit=100)
        first_page_ms = ms_since(t1)
        open_ms = ms_since(t0)
        with Session(store.engine) as s:
            rows = list(
                s.exec(
                    select(Person.given_name, Person.family_name, Person.nhs_number, Person.postcode).order_by(
                        Person.id
                    )
                ).all()
            )
        rng = random.Random(args.seed)
        mix = _search_mix(rows, rng, args.queries)
        for _, text in mix:  # warm the page cache and the statement cache once
            store.queries.caseload(text=text, limit=100)
        per_cat: dict[str, list[float]] = {}
        all_ms: list[float] = []
        all_cpu: list[float] = []
        matched: dict[str, list[int]] = {}
        for _ in range(args.passes):
            order = mix[:]
            rng.shuffle(order)
            for cat, text in order:
                c = time.process_time()
                t = _now()
                page, n = store.queries.caseload(text=text, limit=100)
                ms = ms_since(t)
                all_cpu.append((time.process_time() - c) * 1000)
                all_ms.append(ms)
                per_cat.setdefault(cat, []).append(ms)
                matched.setdefault(cat, []).append(n)
        memsec = assert_memory_security(on)
        emit_json(
            {
                "mode": args.mode,
                "people": total,
                "first_page_rows": len(first_page),
                "unlock_open_first_page_ms": round(open_ms, 1),
                "first_page_ms": round(first_page_ms, 1),
                "query_ms": summary(all_ms),
                "query_cpu_ms": summary(all_cpu),
                "by_category": {
                    c: {**summary(v), "median_matches": int(median(matched[c]))} for c, v in sorted(per_cat.items())
                },
                "distinct_queries": len(mix),
                "memory_security": memsec,
                "peak_rss_mb": round(self_peak_rss_mb(), 1),
            }
        )
    finally:
        store.vault.lock()


def child_stmtcache(args: argparse.Namespace) -> None:
    """One statement-cache size (`--mode default|N`): after warming the connection with what the app
    runs, time the report (GROUP BY over the big tables), the caseload filter and contact saves."""
    set_memory_security(True)
    import sqlcipher3

    from sprx_tui.core import db
    from sprx_tui.core.reports import build_report

    if args.mode == "default":  # what sqlcipher3.connect does when it is not told
        connect = sqlcipher3.connect

        def default_connect(*a: Any, **kw: Any) -> Any:
            kw.pop("cached_statements", None)
            return connect(*a, **kw)

        sqlcipher3.connect = default_connect
    else:
        db.STATEMENT_CACHE_SIZE = int(args.mode)
    store = _open_vault(Path(args.vault))
    try:
        q = store.queries
        ids = [r.id for r in q.caseload(status="active", limit=60)[0]]
        # Warm the statement cache the way a working session does: every screen's queries, a few saves.
        for pid in ids[:20]:
            q.person(pid), q.referrals(pid), q.timeline(pid), q.what_matters(pid), q.plan(pid)
            q.follow_ups(pid), q.onward_referrals(pid), q.needs(pid), q.outcomes(pid)
        q.due_today(), q.overdue(), q.new_referrals(), q.no_recent_contact(), q.status_counts()
        q.pending_changes(), q.open_conflicts(), q.rejected_changes()
        today = store.service.today()
        for pid in ids[20:25]:
            store.service.record_contact(pid, mode="phone", notes=NOTES[0], follow_up_on=today + dt.timedelta(days=7))
        report = Stopwatch()
        for _ in range(3):
            with report:
                build_report(store)
        rows = [
            (r.name.split()[0], r.name.split()[-1], r.nhs_number.replace(" ", ""), r.postcode)
            for r in q.caseload(limit=300)[0]
        ]
        search = Stopwatch()
        for _cat, text in _search_mix(rows, random.Random(args.seed), args.queries):
            with search:
                q.caseload(text=text, limit=100)
        # GROUP BY through a temporary b-tree (sorter memory), as the report once did over all contacts.
        group_by = Stopwatch()
        for _ in range(3):
            with group_by, store.lock, store.engine.connect() as conn:
                conn.exec_driver_sql("SELECT mode, count(*) FROM contact WHERE deleted = 0 GROUP BY mode").all()
                conn.exec_driver_sql("SELECT author, count(*) FROM contact GROUP BY author").all()
        saves = Stopwatch()
        for pid in ids[25:60]:
            with saves:
                store.service.record_contact(pid, mode="phone", notes=NOTES[1])
        emit_json(
            {
                "mode": args.mode,
                "report_ms": summary(report.samples),
                "report_cpu_ms": summary(report.cpu),
                "group_by_ms": summary(group_by.samples),
                "search_ms": summary(search.samples),
                "search_cpu_ms": summary(search.cpu),
                "save_ms": summary(saves.samples),
                "save_cpu_ms": summary(saves.cpu),
                "memory_security": assert_memory_security(True),
            }
        )
    finally:
        store.vault.lock()


# =========================================================================================
# parents (alternate the modes, one child per mode per round, report medians and ratios)
# =========================================================================================


def _run_rounds(
    kind: str, modes: tuple[str, ...], rounds: int, extra: list[str], vaults: dict[str, Path] | None = None
) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    for r, mode in alternating(modes, rounds):
        argv = [PYTHON, SCRIPT, "child", kind, "--mode", mode, *extra]
        if vaults is not None:
            argv += ["--vault", str(vaults[mode])]
        run = run_child(argv)
        if run.returncode != 0:
            sys.stderr.write(run.stdout[-3000:] + run.stderr[-6000:])
            raise SystemExit(f"{kind} child {mode} failed (exit {run.returncode})")
        data = run.json()
        data["child_wall_s"] = round(run.wall_s, 2)
        data["child_max_rss_mb"] = round(run.max_rss_mb, 1)
        data["round"] = r
        results[mode].append(data)
        print(f"  round {r + 1}/{rounds} {mode:<20} {_brief(kind, data)}", file=sys.stderr, flush=True)
    return results


def _brief(kind: str, data: dict[str, Any]) -> str:
    if kind == "stmtcache":
        return (
            f"report p50 {data['report_ms']['p50']:.0f} ms, search p95 {data['search_ms']['p95']:.1f} ms, "
            f"save p50 {data['save_ms']['p50']:.1f} ms"
        )
    if kind == "workload":
        return f"{data['total_ms']:.0f} ms wall, {data['cpu_ms']:.0f} ms cpu for {data['ops']} ops"
    if kind == "save":
        return f"p50 {data['save_ms']['p50']:.2f} ms  p95 {data['save_ms']['p95']:.2f} ms"
    return f"p50 {data['query_ms']['p50']:.2f} ms  p95 {data['query_ms']['p95']:.2f} ms"


def run_workload(args: argparse.Namespace) -> None:
    extra = ["--people", str(args.people), "--contacts", str(args.contacts), "--seed", str(args.seed)]
    load_before = machine()
    results = _run_rounds("workload", MODES_WORKLOAD, args.rounds, extra)
    med = {m: median(d["total_ms"] for d in results[m]) for m in MODES_WORKLOAD}
    med_cpu = {m: median(d["cpu_ms"] for d in results[m]) for m in MODES_WORKLOAD}
    per_round_ratio = [results["enc"][r]["total_ms"] / results["plain"][r]["total_ms"] for r in range(args.rounds)]
    per_round_memsec = [
        results["enc-memsec"][r]["total_ms"] / results["enc"][r]["total_ms"] for r in range(args.rounds)
    ]
    ops = results["plain"][0]["ops"]
    print(f"\nService workload: {args.people} people x {args.contacts} contacts + plan edits = {ops} transactions")
    print_table(
        ["mode", "median wall ms", "median cpu ms", "wall ms/op", "op p95 ms", "runs wall (ms)"],
        [
            (
                m,
                med[m],
                med_cpu[m],
                med[m] / ops,
                median(d["op"]["p95"] for d in results[m]),
                " ".join(f"{d['total_ms']:.0f}" for d in results[m]),
            )
            for m in MODES_WORKLOAD
        ],
    )
    ratio = med["enc"] / med["plain"]
    memsec_ratio = med["enc-memsec"] / med["enc"]
    cpu_ratio = med_cpu["enc"] / med_cpu["plain"]
    cpu_memsec = med_cpu["enc-memsec"] / med_cpu["enc"]
    print(f"encrypted / plain (memsec off in both): wall {ratio:.3f}x  cpu {cpu_ratio:.3f}x  [target <= 1.3]")
    print(f"memsec on / off (both encrypted):       wall {memsec_ratio:.3f}x  cpu {cpu_memsec:.3f}x")
    print(f"per-round wall ratios enc/plain: {' '.join(f'{x:.2f}' for x in per_round_ratio)}")
    emit_json(
        {
            "bench": "vault.workload",
            "command": command_line(),
            "machine": load_before,
            "load_after": machine()["loadavg_1m"],
            "transactions": ops,
            "median_total_ms": med,
            "ratio_enc_over_plain": round(ratio, 3),
            "ratio_memsec_on_over_off": round(memsec_ratio, 3),
            "median_cpu_ms": med_cpu,
            "cpu_ratio_enc_over_plain": round(cpu_ratio, 3),
            "cpu_ratio_memsec_on_over_off": round(cpu_memsec, 3),
            "per_round_enc_over_plain": [round(x, 3) for x in per_round_ratio],
            "per_round_memsec_on_over_off": [round(x, 3) for x in per_round_memsec],
            "runs": results,
        }
    )


# Bench-only experiments on a private copy, named by a mode suffix (`memsec-on-analyzed` ...).
# (The follow-up index an earlier `-indexed` variant tried is migration 0004's ix_follow_up_person_open now.)
VARIANTS = {
    # What `PRAGMA optimize` / ANALYZE would give SQLite's planner: row-count statistics.
    "analyzed": "ANALYZE",
    # Saving with the follow-up indexes as they were before migration 0004: SQLite walks every open
    # follow-up of the practice through ix_follow_up_status_due, reading each row for its person_id.
    "pre0004": (
        "DROP INDEX ix_follow_up_person_open; DROP INDEX ix_follow_up_due; "
        "CREATE INDEX ix_follow_up_status_due ON follow_up (status, due_on)"
    ),
}


def _variant(mode: str) -> str | None:
    return next((v for v in VARIANTS if mode.endswith("-" + v)), None)


def _prepare_vaults(modes: tuple[str, ...], src: Path, writable: bool) -> tuple[dict[str, Path], list[Path]]:
    """One vault per variant; the base is a copy when the benchmark writes, else the shared vault."""
    vaults: dict[str, Path] = {}
    made: list[Path] = []
    by_variant: dict[str | None, Path] = {}
    for mode in modes:
        variant = _variant(mode)
        if variant not in by_variant:
            if variant is None and not writable:
                by_variant[None] = src
            else:
                copy = copy_vault(src, f"{variant or 'copy'}-")
                made.append(copy.parent)
                if variant is not None:
                    run = run_child([PYTHON, SCRIPT, "child", "variant", "--vault", str(copy), "--mode", variant])
                    if run.returncode != 0:
                        raise SystemExit(run.stderr[-3000:])
                by_variant[variant] = copy
        vaults[mode] = by_variant[variant]
    return vaults, made


def child_variant(args: argparse.Namespace) -> None:
    """Apply one bench-only experiment (VARIANTS) to a private copy of the vault."""
    set_memory_security(True)
    store = _open_vault(Path(args.vault))
    try:
        with store.engine.begin() as conn:
            for statement in VARIANTS[args.mode].split(";"):
                conn.exec_driver_sql(statement)
    finally:
        store.vault.lock()
    emit_json({"variant": args.mode, "vault": str(args.vault)})


def run_save(args: argparse.Namespace) -> None:
    modes = tuple(args.modes.split(","))
    vaults, made = _prepare_vaults(modes, Path(args.vault), writable=True)
    load_before = machine()
    try:
        extra = ["--saves", str(args.saves), "--warmup", str(args.warmup), "--seed", str(args.seed)]
        extra += ["--wal-autocheckpoint", str(args.wal_autocheckpoint)]
        if args.profile:
            extra.append("--profile")
        results = _run_rounds("save", modes, args.rounds, extra, vaults)
    finally:
        for path in made:
            shutil.rmtree(path, ignore_errors=True)
    pooled = {m: summary([x for d in results[m] for x in d["samples"]]) for m in modes}
    pooled_cpu = {m: summary([x for d in results[m] for x in d["cpu_samples"]]) for m in modes}
    people = results[modes[0]][0]["people"]
    print(f"\nSave a contact (record_contact: contact + follow-up + outbox + audit, committed), {people} people")
    print_table(
        ["mode", "saves", "p50 ms", "p95 ms", "p99 ms", "max ms", "cpu p50", "cpu p95", "p95 per round"],
        [
            (
                m,
                pooled[m]["n"],
                pooled[m]["p50"],
                pooled[m]["p95"],
                pooled[m]["p99"],
                pooled[m]["max"],
                pooled_cpu[m]["p50"],
                pooled_cpu[m]["p95"],
                " ".join(f"{d['save_ms']['p95']:.1f}" for d in results[m]),
            )
            for m in modes
        ],
    )
    print("target: p95 <= 20 ms (memsec-on is the real app setting)")
    if "memsec-on" in pooled and "memsec-off" in pooled:
        print(f"memsec on / off, p50: {pooled['memsec-on']['p50'] / pooled['memsec-off']['p50']:.2f}x")
    for m in modes:
        for d in results[m]:
            if "profile" in d:
                print(f"\n--- profile {m} round {d['round'] + 1} ---\n{d['profile']}")
                break
    for m in modes:
        for d in results[m]:
            d.pop("samples", None)
            d.pop("cpu_samples", None)
            d.pop("profile", None)
    emit_json(
        {
            "bench": "vault.save_contact",
            "command": command_line(),
            "machine": load_before,
            "load_after": machine()["loadavg_1m"],
            "people": people,
            "pooled_ms": pooled,
            "pooled_cpu_ms": pooled_cpu,
            "runs": results,
        }
    )


def run_search(args: argparse.Namespace) -> None:
    modes = tuple(args.modes.split(","))
    vaults, made = _prepare_vaults(modes, Path(args.vault), writable=False)
    load_before = machine()
    try:
        extra = ["--queries", str(args.queries), "--passes", str(args.passes), "--seed", str(args.seed)]
        results = _run_rounds("search", modes, args.rounds, extra, vaults)
    finally:
        for path in made:
            shutil.rmtree(path, ignore_errors=True)
    people = results[modes[0]][0]["people"]
    print(f"\nCaseload text search, queries.caseload(text=..., limit=100), {people} people")
    print_table(
        [
            "mode",
            "queries",
            "p50 ms",
            "p95 ms (median of rounds)",
            "p99 ms",
            "max ms",
            "cpu p50",
            "cpu p95",
            "open+unlock+page1 ms",
        ],
        [
            (
                m,
                sum(d["query_ms"]["n"] for d in results[m]),
                median(d["query_ms"]["p50"] for d in results[m]),
                median(d["query_ms"]["p95"] for d in results[m]),
                median(d["query_ms"]["p99"] for d in results[m]),
                max(d["query_ms"]["max"] for d in results[m]),
                median(d["query_cpu_ms"]["p50"] for d in results[m]),
                median(d["query_cpu_ms"]["p95"] for d in results[m]),
                median(d["unlock_open_first_page_ms"] for d in results[m]),
            )
            for m in modes
        ],
    )
    print("target: p95 <= 20 ms")
    first = results[modes[0]][0]["by_category"]
    print(f"\nby category ({modes[0]}, round 1):")
    print_table(
        ["category", "n", "p50 ms", "p95 ms", "median matches"],
        [(c, v["n"], v["p50"], v["p95"], v["median_matches"]) for c, v in first.items()],
    )
    emit_json(
        {
            "bench": "vault.caseload_search",
            "command": command_line(),
            "machine": load_before,
            "load_after": machine()["loadavg_1m"],
            "people": people,
            "p95_ms_median_of_rounds": {m: median(d["query_ms"]["p95"] for d in results[m]) for m in modes},
            "runs": results,
        }
    )


def run_stmtcache(args: argparse.Namespace) -> None:
    modes = tuple(args.sizes.split(","))
    copy = copy_vault(Path(args.vault), "stmtcache-")
    load_before = machine()
    try:
        extra = ["--queries", str(args.queries), "--seed", str(args.seed)]
        results = _run_rounds("stmtcache", modes, args.rounds, extra, {m: copy for m in modes})
    finally:
        shutil.rmtree(copy.parent, ignore_errors=True)
    print("\nStatement cache size (cached_statements) with memory security on, 10k vault, medians over rounds")
    keys = ("report_ms", "report_cpu_ms", "group_by_ms", "search_ms", "save_ms", "save_cpu_ms")
    print_table(
        [
            "cached_statements",
            "report p50",
            "report cpu",
            "GROUP BY p50",
            "search p50",
            "search p95",
            "save p50",
            "save cpu",
        ],
        [
            (
                m,
                median(d["report_ms"]["p50"] for d in results[m]),
                median(d["report_cpu_ms"]["p50"] for d in results[m]),
                median(d["group_by_ms"]["p50"] for d in results[m]),
                median(d["search_ms"]["p50"] for d in results[m]),
                median(d["search_ms"]["p95"] for d in results[m]),
                median(d["save_ms"]["p50"] for d in results[m]),
                median(d["save_cpu_ms"]["p50"] for d in results[m]),
            )
            for m in modes
        ],
    )
    emit_json(
        {
            "bench": "vault.statement_cache",
            "command": command_line(),
            "machine": load_before,
            "load_after": machine()["loadavg_1m"],
            "medians": {m: {k: median(d[k]["p50"] for d in results[m]) for k in keys} for m in modes},
            "runs": results,
        }
    )


# =========================================================================================


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)

    w = sub.add_parser("workload", help="benchmark 1: encrypted vs plain vs encrypted+memsec")
    w.add_argument("--people", type=int, default=300)
    w.add_argument("--contacts", type=int, default=5)
    w.add_argument("--rounds", type=int, default=5)
    w.add_argument("--seed", type=int, default=11)

    s = sub.add_parser("save", help="benchmark 2: contact-save latency on the 10k vault")
    s.add_argument("--vault", default=str(VAULT_10K))
    s.add_argument("--saves", type=int, default=250, help="timed saves per child (pooled over rounds)")
    s.add_argument("--warmup", type=int, default=20)
    s.add_argument("--rounds", type=int, default=2)
    s.add_argument(
        "--modes",
        default="memsec-on,memsec-off",
        help="append -analyzed (planner statistics) or -pre0004 (no person follow-up index) to a mode",
    )
    s.add_argument("--seed", type=int, default=5)
    s.add_argument("--profile", action="store_true", help="cProfile the timed saves in each child")
    s.add_argument(
        "--wal-autocheckpoint",
        type=int,
        default=0,
        help="set PRAGMA wal_autocheckpoint to this many pages first (the app uses 10000); 0: SQLite's default",
    )

    q = sub.add_parser("search", help="benchmark 3: caseload text filter on the 10k vault")
    q.add_argument("--vault", default=str(VAULT_10K))
    q.add_argument("--queries", type=int, default=200, help="distinct queries in the mix")
    q.add_argument("--passes", type=int, default=3, help="timed passes over the shuffled mix")
    q.add_argument("--rounds", type=int, default=2)
    q.add_argument("--modes", default="memsec-on,memsec-off")
    q.add_argument("--seed", type=int, default=3)

    sc = sub.add_parser("stmtcache", help="experiment: SQLCipher statement cache size (memory security on)")
    sc.add_argument("--vault", default=str(VAULT_10K))
    sc.add_argument("--sizes", default="default,16,128", help="`default` = sqlcipher3's own")
    sc.add_argument("--rounds", type=int, default=2)
    sc.add_argument("--queries", type=int, default=150)
    sc.add_argument("--seed", type=int, default=3)

    c = sub.add_parser("child", help=argparse.SUPPRESS)
    c.add_argument("kind", choices=["workload", "save", "search", "variant", "stmtcache"])
    c.add_argument("--mode", default="memsec-on")
    c.add_argument("--vault", default=str(VAULT_10K))
    c.add_argument("--people", type=int, default=300)
    c.add_argument("--contacts", type=int, default=5)
    c.add_argument("--saves", type=int, default=250)
    c.add_argument("--warmup", type=int, default=20)
    c.add_argument("--queries", type=int, default=200)
    c.add_argument("--passes", type=int, default=3)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--profile", action="store_true")
    c.add_argument("--wal-autocheckpoint", type=int, default=0)

    args = parser.parse_args(argv)
    if args.cmd == "child":
        children = {
            "workload": child_workload,
            "save": child_save,
            "search": child_search,
            "variant": child_variant,
            "stmtcache": child_stmtcache,
        }
        children[args.kind](args)
    else:
        {"workload": run_workload, "save": run_save, "search": run_search, "stmtcache": run_stmtcache}[args.cmd](args)


if __name__ == "__main__":
    main()
