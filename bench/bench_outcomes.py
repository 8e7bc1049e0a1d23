"""Outcomes, directory, reports and exports at scale: directory search, the report, the FHIR export.

Each measurement runs in its own child process with SQLCipher memory security on, as the app and
the `sprx` command run. Figures are wall and CPU time of that child; peak memory is the child's own
`ru_maxrss` (from wait4 in the parent) and, for the export, the growth over the RSS just before it.
"""

from __future__ import annotations

import argparse
import json
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
    Stopwatch,
    command_line,
    copy_vault,
    emit_json,
    machine,
    median,
    peak_rss_since_reset_mb,
    print_table,
    reset_peak_rss,
    rss_mb,
    run_child,
    scratch_dir,
    self_peak_rss_mb,
    set_memory_security,
    summary,
)

SCRIPT = str(Path(__file__).resolve())
_now = time.perf_counter
# What a worker types into the directory search, one key at a time (every prefix is one search).
DIRECTORY_WORDS = [
    "walking",
    "garden",
    "befriending",
    "debt",
    "carers",
    "bereavement",
    "digital",
    "men's shed",
    "arts",
    "cook",
    "housing",
    "benefits",
    "riverside walk",
    "old town",
    "telephone friends",
    "volunteer",
    "allotment",
    "tablet tea",
    "zzq",
]


def _open(path: Path) -> Any:
    from sprx_tui.core.store import open_store
    from sprx_tui.core.vault import Vault

    vault = Vault(path)
    secret = bytearray(DEMO_PASSPHRASE.encode())
    vault.unlock(secret)
    return open_store(vault)


# =========================================================================================
# children
# =========================================================================================


def child_directory(args: argparse.Namespace) -> None:
    """search_services over N services: every prefix of every word typed, plus category/need/area filters."""
    set_memory_security(True)
    from sqlmodel import Session

    from sprx_tui.core import directory
    from sprx_tui.core.demo import AREAS, SERVICE_KINDS, demo_directory
    from sprx_tui.core.store import open_store
    from sprx_tui.core.vault import FLOOR, Vault

    work = scratch_dir("directory-")
    try:
        vault, _ = Vault.create(work / "vault", bytearray(DEMO_PASSPHRASE.encode()), kdf=FLOOR)
        store = open_store(vault)
        rng = random.Random(args.seed)
        services = demo_directory(rng, store.queries.today(), args.services)
        with store.lock, Session(store.engine) as s, s.begin():
            s.add_all(services)
        categories = sorted({kind for kind, _needs, _names in SERVICE_KINDS})
        needs = sorted({n for _kind, ns, _names in SERVICE_KINDS for n in ns})
        searches: list[tuple[str, dict[str, Any]]] = []
        for word in DIRECTORY_WORDS:
            for i in range(1, len(word) + 1):
                searches.append(("text", {"text": word[:i]}))
        for category in categories:
            searches.append(("category", {"category": category}))
            searches.append(("category+text", {"category": category, "text": rng.choice(AREAS).lower()[:3]}))
        for need in needs:
            searches.append(("need", {"need": need}))
        for area in AREAS:
            searches.append(("area", {"area": area}))
            searches.append(("area+text", {"area": area, "text": "gr"}))
        for _, kw in searches:  # warm-up: page cache and statement cache
            directory.search_services(store, limit=100, **kw)
        sw = Stopwatch()
        per_kind: dict[str, list[float]] = {}
        matched: list[int] = []
        for _ in range(args.passes):
            order = searches[:]
            rng.shuffle(order)
            for kind, kw in order:
                with sw:
                    _rows, total = directory.search_services(store, limit=100, **kw)
                per_kind.setdefault(kind, []).append(sw.samples[-1])
                matched.append(total)
        uptake = Stopwatch()
        for _ in range(5):
            with uptake:
                directory.uptake(store)
        vault.lock()
        emit_json(
            {
                "part": "directory",
                "services": args.services,
                "searches": len(sw.samples),
                "search_ms": summary(sw.samples),
                "search_cpu_ms": summary(sw.cpu),
                "by_kind": {k: summary(v) for k, v in sorted(per_kind.items())},
                "median_matches": int(median(matched)),
                "uptake_all_ms": summary(uptake.samples),
                "peak_rss_mb": round(self_peak_rss_mb(), 1),
            }
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def child_reports(args: argparse.Namespace) -> None:
    """build_report on the 10k vault: the first (cold) run and `--repeats` warm ones."""
    set_memory_security(True)
    from sprx_tui.core.reports import build_report, render_text

    t0 = _now()
    store = _open(Path(args.vault))
    open_ms = (_now() - t0) * 1000
    try:
        sw = Stopwatch()
        for _ in range(args.repeats + 1):
            with sw:
                report = build_report(store)
        with Stopwatch() as render:
            text = render_text(report)
        people = report.people
        emit_json(
            {
                "part": "reports",
                "people": people,
                "unlock_open_ms": round(open_ms, 1),
                "first_ms": round(sw.samples[0], 1),
                "first_cpu_ms": round(sw.cpu[0], 1),
                "warm_ms": summary(sw.samples[1:]),
                "warm_cpu_ms": summary(sw.cpu[1:]),
                "render_text_ms": round(render.samples[0], 1),
                "report_chars": len(text),
                "peak_rss_mb": round(self_peak_rss_mb(), 1),
            }
        )
    finally:
        store.vault.lock()


def child_fhir(args: argparse.Namespace) -> None:
    """export_fhir of the whole vault (a copy: the export writes an audit event), then read the file back.

    Reading the file back holds it all in memory, so the export's own peak comes from `fhir-peak`.
    """
    set_memory_security(True)
    from sprx_tui.core.export import export_fhir

    store = _open(Path(args.vault))
    work = scratch_dir("fhir-")
    try:
        rss_before = rss_mb()
        peak_before = self_peak_rss_mb()
        out = work / "bundle.json"
        c0 = time.process_time()
        t0 = _now()
        resources = export_fhir(store, out)
        wall = _now() - t0
        cpu = time.process_time() - c0
        size_mb = out.stat().st_size / 1e6
        with out.open(encoding="utf-8") as fh:
            bundle = json.load(fh)  # the file is one valid JSON document
        kinds: dict[str, int] = {}
        for e in bundle["entry"]:
            kinds[e["resource"]["resourceType"]] = kinds.get(e["resource"]["resourceType"], 0) + 1
        del bundle
        emit_json(
            {
                "part": "fhir",
                "resources": resources,
                "by_type": kinds,
                "wall_s": round(wall, 2),
                "cpu_s": round(cpu, 2),
                "ms_per_person": round(wall * 1000 / max(1, kinds.get("Patient", 1)), 3),
                "file_mb": round(size_mb, 1),
                "rss_before_export_mb": round(rss_before, 1),
                "peak_rss_before_export_mb": round(peak_before, 1),
            }
        )
    finally:
        store.vault.lock()
        shutil.rmtree(work, ignore_errors=True)


def child_fhir_peak(args: argparse.Namespace) -> None:
    """The export alone (no re-reading of the file), so the child's peak RSS is the export's."""
    set_memory_security(True)
    from sprx_tui.core.export import export_fhir

    store = _open(Path(args.vault))
    work = scratch_dir("fhir-peak-")
    try:
        rss_before = rss_mb()
        reset = reset_peak_rss()  # the unlock's Argon2id (64 MiB+) would otherwise be the peak
        c0 = time.process_time()
        t0 = _now()
        resources = export_fhir(store, work / "bundle.json")
        emit_json(
            {
                "part": "fhir-peak",
                "resources": resources,
                "wall_s": round(_now() - t0, 2),
                "cpu_s": round(time.process_time() - c0, 2),
                "rss_before_export_mb": round(rss_before, 1),
                # Linux resets ru_maxrss along with VmHWM, so the parent's wait4 figure is this one too.
                "peak_rss_during_export_mb": round(peak_rss_since_reset_mb(), 1) if reset else None,
                "peak_rss_mb": round(self_peak_rss_mb(), 1),
            }
        )
    finally:
        store.vault.lock()
        shutil.rmtree(work, ignore_errors=True)


ORUK_EXAMPLE = Path(__file__).resolve().parents[1] / "tests" / "data" / "oruk-uk-profile-examples" / "json"


def oruk_feed(folder: Path, n: int, seed: int, per_file: int = 100) -> None:
    """n Open Referral UK services as service_list pages of full documents, made from the vendored example:
    names, areas, postcodes and weekdays from the demo directory's tables, the same for the same seed."""
    from sprx_tui.core.demo import AREAS, SERVICE_KINDS

    rng = random.Random(seed)
    base = json.loads((ORUK_EXAMPLE / "service_full.json").read_text())
    days = ["MO", "TU", "WE", "TH", "FR", "SA"]
    docs = []
    for i in range(n):
        kind, _needs, names = SERVICE_KINDS[i % len(SERVICE_KINDS)]
        area = rng.choice(AREAS)
        d = json.loads(json.dumps(base))
        d["id"] = f"bench-{i:05d}"
        d["name"] = rng.choice(names).format(a=area) + f" {i}"
        d["description"] = f"{kind.replace('_', ' ').capitalize()} in {area}. " + d["description"]
        d["service_areas"][0]["name"] = area
        address = d["service_at_locations"][0]["location"]["addresses"][0]
        address["city"], address["postal_code"] = area, f"LS{rng.randint(1, 29)} {rng.randint(1, 9)}{chr(65 + i % 26)}B"
        d["schedules"][0]["byday"] = rng.choice(days)
        docs.append(d)
    for page, start in enumerate(range(0, n, per_file), start=1):
        chunk = docs[start : start + per_file]
        body = {"total_items": n, "page_number": page, "size": per_file, "contents": chunk}
        (folder / f"services-{page:04d}.json").write_text(json.dumps(body))


def child_directory_import(args: argparse.Namespace) -> None:
    """`import_directory` of N Open Referral UK JSON services into an empty vault, then search as typed."""
    set_memory_security(True)
    from sprx_tui.core import directory
    from sprx_tui.core.store import open_store
    from sprx_tui.core.vault import FLOOR, Vault

    work = scratch_dir("directory-import-")
    try:
        feed = work / "feed"
        feed.mkdir()
        oruk_feed(feed, args.services, args.seed)
        vault, _ = Vault.create(work / "vault", bytearray(DEMO_PASSPHRASE.encode()), kdf=FLOOR)
        store = open_store(vault)
        rss_before = rss_mb()
        reset_peak_rss()
        sw = Stopwatch()
        with sw:
            result = directory.import_directory(store, feed)
        peak = peak_rss_since_reset_mb()
        again = Stopwatch()
        with again:
            second = directory.import_directory(store, feed)
        searches = [{"text": w[:i]} for w in DIRECTORY_WORDS for i in range(1, len(w) + 1)]
        for kw in searches:
            directory.search_services(store, limit=100, **kw)
        search = Stopwatch()
        for _ in range(args.passes):
            for kw in searches:
                with search:
                    directory.search_services(store, limit=100, **kw)
        vault.lock()
        emit_json(
            {
                "part": "directory-import",
                "services": args.services,
                "added": result.added,
                "problems": len(result.problems),
                "import_s": round(sw.samples[-1] / 1000, 2),
                "import_cpu_s": round(sw.cpu[-1] / 1000, 2),
                "reimport_s": round(again.samples[-1] / 1000, 2),
                "reimport_unchanged": second.unchanged,
                "rss_before_mb": round(rss_before, 1),
                "peak_rss_during_import_mb": round(peak, 1),
                "searches": len(search.samples),
                "search_ms": summary(search.samples),
                "search_cpu_ms": summary(search.cpu),
            }
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


CHILDREN = {
    "directory": child_directory,
    "directory-import": child_directory_import,
    "reports": child_reports,
    "fhir": child_fhir,
    "fhir-peak": child_fhir_peak,
}


# =========================================================================================
# parent
# =========================================================================================


def _child(kind: str, extra: list[str]) -> dict[str, Any]:
    run = run_child([PYTHON, SCRIPT, "child", kind, *extra])
    if run.returncode != 0:
        sys.stderr.write(run.stdout[-3000:] + run.stderr[-6000:])
        raise SystemExit(f"{kind} child failed (exit {run.returncode})")
    data = run.json()
    data["child_wall_s"] = round(run.wall_s, 1)
    data["child_cpu_s"] = round(run.user_s + run.sys_s, 1)
    data["child_max_rss_mb"] = round(run.max_rss_mb, 1)
    return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("run", "child"):
        p = sub.add_parser(name)
        if name == "child":
            p.add_argument("kind", choices=sorted(CHILDREN))
        else:
            p.add_argument(
                "--parts",
                default="directory,reports,fhir",
                help="comma-separated: directory,directory-import,reports,fhir",
            )
        p.add_argument("--vault", default=str(VAULT_10K))
        p.add_argument("--services", type=int, default=5000)
        p.add_argument("--passes", type=int, default=3)
        p.add_argument("--repeats", type=int, default=5, help="warm report runs after the first")
        p.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)
    if args.cmd == "child":
        CHILDREN[args.kind](args)
        return

    parts = args.parts.split(",")
    ctx = machine()
    results: dict[str, Any] = {}
    rows: list[tuple[Any, ...]] = []
    if "directory" in parts:
        d = _child(
            "directory", ["--services", str(args.services), "--passes", str(args.passes), "--seed", str(args.seed)]
        )
        results["directory"] = d
        rows += [
            (f"directory search, {d['services']} services, {d['searches']} searches: p50", d["search_ms"]["p50"], ""),
            ("directory search p95 (wall)", d["search_ms"]["p95"], "<= 30 ms"),
            ("directory search p95 (CPU)", d["search_cpu_ms"]["p95"], ""),
            ("directory uptake, all services, median", d["uptake_all_ms"]["p50"], ""),
        ]
        print(f"  directory: p95 {d['search_ms']['p95']:.1f} ms", file=sys.stderr, flush=True)
    if "directory-import" in parts:
        d = _child(
            "directory-import",
            ["--services", str(args.services), "--passes", str(args.passes), "--seed", str(args.seed)],
        )
        results["directory_import"] = d
        rows += [
            (f"import of {d['services']} Open Referral UK JSON services (wall s)", d["import_s"], "report"),
            ("import (CPU s)", d["import_cpu_s"], ""),
            ("re-import, all unchanged (wall s)", d["reimport_s"], ""),
            ("peak RSS during the import (MB)", d["peak_rss_during_import_mb"], "report"),
            (f"directory search after it, {d['searches']} searches: p95", d["search_ms"]["p95"], "<= 30 ms"),
            ("directory search after it, p95 (CPU)", d["search_cpu_ms"]["p95"], ""),
        ]
        print(f"  directory import: {d['import_s']} s, peak {d['peak_rss_during_import_mb']} MB", file=sys.stderr)
    if "reports" in parts:
        r = _child("reports", ["--vault", args.vault, "--repeats", str(args.repeats)])
        results["reports"] = r
        rows += [
            (f"report over {r['people']} people, first run (wall)", r["first_ms"], "<= 1000 ms"),
            ("report, first run (CPU)", r["first_cpu_ms"], ""),
            (f"report, warm, median of {args.repeats} (wall)", r["warm_ms"]["p50"], "<= 1000 ms"),
            ("report, warm, max (wall)", r["warm_ms"]["max"], ""),
        ]
        print(f"  reports: first {r['first_ms']:.0f} ms, warm {r['warm_ms']['p50']:.0f} ms", file=sys.stderr)
    if "fhir" in parts:
        copy = copy_vault(Path(args.vault), "fhir-vault-")
        try:
            f = _child("fhir-peak", ["--vault", str(copy)])
            check = _child("fhir", ["--vault", str(copy)])
        finally:
            shutil.rmtree(copy.parent, ignore_errors=True)
        f["validated_file"] = {k: check[k] for k in ("by_type", "file_mb", "resources")}
        results["fhir"] = f
        rows += [
            (
                f"FHIR export, {check['by_type'].get('Patient', 0)} people, {f['resources']} resources (wall s)",
                f["wall_s"],
                "report",
            ),
            ("FHIR export (CPU s)", f["cpu_s"], ""),
            ("FHIR export file (MB)", check["file_mb"], ""),
            ("RSS just before the export, vault open (MB)", f["rss_before_export_mb"], ""),
            ("peak RSS during the export (MB)", f["peak_rss_during_export_mb"], "report"),
        ]
        print(f"  fhir: {f['wall_s']} s, peak {f['peak_rss_during_export_mb']} MB", file=sys.stderr)
    ctx["load_after"] = machine()["loadavg_1m"]
    print("\nOutcomes, directory, reports (memory security on)")
    print_table(["measure", "value", "target"], rows)
    emit_json({"bench": "outcomes", "command": command_line(), "machine": ctx, **results})


if __name__ == "__main__":
    main()
