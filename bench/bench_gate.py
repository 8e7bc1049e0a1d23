"""What the inbound gate costs on the server's push path: push CPU with the gate on and off, one run.

    .venv/bin/python bench/bench_gate.py [--rounds 7] [--batches 20]

Each round builds a fresh SQLite server store and pushes the same realistic batches (500 mutations a
push: a person, referral, contacts with visit notes, goals, plan actions) straight into
``ServerStore.push`` — the code every HTTP push runs — once with the gate and once with it switched off
(``sprx_rules.gate.check_mutation`` replaced by a no-op for that pass only), alternating which goes first.
It reports the CPU seconds of each (process time, median of the rounds) and the ratio.
The target (issue 9): the gate costs at most 10% of push CPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tqdm import tqdm  # noqa: E402

from sprx_rules import gate  # noqa: E402
from sync import hlc as hlc_mod  # noqa: E402
from sync.server.store import ServerStore  # noqa: E402

NOTE = (
    "Visited at home. Talked about the walking group on Tuesdays and how she might get there; "
    "her daughter can drive her the first time. Feels low since the winter, sleeping badly.\n"
    "Agreed: ring the befriending service together next week; look at the bus timetable."
)


def _batches(n_batches: int, per_batch: int = 500) -> list[list[dict[str, Any]]]:
    """Realistic pushes of ``per_batch`` mutations, numbered 1, 2, 3 ... across the batches."""
    out: list[list[dict[str, Any]]] = []
    mid = 1
    h = hlc_mod.pack(1_750_000_000_000 - 3_600_000, 0)
    for _ in range(n_batches):
        batch: list[dict[str, Any]] = []
        while len(batch) < per_batch:
            pid = str(uuid.uuid4())
            rows: list[tuple[str, str, dict[str, Any]]] = [
                (
                    "person",
                    pid,
                    {
                        "given_name": "Ann",
                        "family_name": "Ash-Brown",
                        "phone": "07700900123",
                        "address": "1 Example Road\nExampletown",
                        "safety_flags": ["dog"],
                        "status": "referred",
                    },
                ),
                (
                    "referral",
                    str(uuid.uuid4()),
                    {
                        "source": "gp",
                        "received_on": "2026-01-05",
                        "reasons": ["loneliness"],
                        "referral_text": NOTE,
                        "urgency": "routine",
                        "status": "received",
                    },
                ),
            ]
            for _ in range(6):
                contact = {"occurred_at": "2026-01-06T10:00:00+00:00", "mode": "home_visit",
                           "duration_minutes": 45, "notes": NOTE, "author": "asmith"}  # fmt: skip
                rows.append(("contact", str(uuid.uuid4()), contact))
            for _ in range(3):
                rows.append(("goal", str(uuid.uuid4()), {"text": "Get to the walking group", "status": "started",
                             "position": "m", "progress_notes": NOTE}))  # fmt: skip
            for tbl, rid, fields in rows:
                h += 1
                batch.append({"mutation_id": mid, "tbl": tbl, "row_id": rid, "person_id": pid, "op": "insert",
                              "fields": {f: {"v": v, "hlc": h} for f, v in fields.items()}, "hlc": h})  # fmt: skip
                mid += 1
                if len(batch) == per_batch:
                    break
        out.append(batch)
    return out


def _one(batches: list[list[dict[str, Any]]], gate_on: bool, folder: Path) -> float:
    store = ServerStore(f"sqlite:///{folder}/server-{uuid.uuid4().hex}.db", now_ms=lambda: 1_750_000_000_000)
    store.add_worker("asmith", "P1")
    code, _ = store.issue_enrol_code("asmith")
    dev = store.authenticate(store.enrol(code, "bench")["token"])
    # A person pushed by this device becomes theirs (auto-assign), so every mutation is in scope.
    real = gate.check_mutation
    if not gate_on:
        gate.check_mutation = lambda m: None  # type: ignore[assignment]
    try:
        t0 = time.process_time()
        for b in batches:
            store.push(dev, b)
        return time.process_time() - t0
    finally:
        gate.check_mutation = real  # type: ignore[assignment]
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--batches", type=int, default=20)
    args = ap.parse_args()
    batches = _batches(args.batches)
    n = sum(len(b) for b in batches)
    on: list[float] = []
    off: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in tqdm(range(args.rounds), desc="rounds", unit="round"):
            order = (True, False) if r % 2 == 0 else (False, True)
            for g in order:
                (on if g else off).append(_one(batches, g, Path(tmp)))
    t0 = time.process_time()
    for b in batches:
        for m in b:
            gate.check_mutation(m)
    gate_only = time.process_time() - t0
    med_on, med_off = statistics.median(on), statistics.median(off)
    print(f"mutations pushed per pass: {n} in {len(batches)} pushes of 500")
    print(f"push CPU, gate on : median {med_on:.3f} s  ({n / med_on:,.0f} mutations/s)  runs {sorted(on)}")
    print(f"push CPU, gate off: median {med_off:.3f} s  ({n / med_off:,.0f} mutations/s)  runs {sorted(off)}")
    print(f"gate alone over the same mutations: {gate_only:.3f} s ({gate_only / med_on:.1%} of push CPU)")
    print(f"ratio on/off: {med_on / med_off:.3f}  (target <= 1.10)")


if __name__ == "__main__":
    main()
