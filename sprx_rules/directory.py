"""One directory importer for every format in use, and what an import changes (both sides share it).

`read_directory(path)` reads whichever format the path holds:

- an HSDS 1.1 datapackage folder (`sprx_rules.hsds`);
- an HSDS 3.0 / Open Referral UK CSV folder, with or without datapackage.json (`sprx_rules.hsds3`);
- HSDS 3.0 / Open Referral UK API JSON: a `service_full` file, a `service_list` page, or a folder of them.

`plan_import` decides, from the stored rows and the records read, what an import does, with the
source-of-truth rules of issue 12:

- a *full* import (the default) marks the services of that source that it no longer holds inactive,
  with `withdrawn_on` set to the day (never deleted: referrals keep their history);
- a *partial* import changes only the services it holds;
- a field the source does not state (`ServiceRecord.present`) keeps its stored value; an explicit
  empty value clears it.

The laptop (`sprx_tui.core.directory.import_directory`) and the server
(`sync.server.directory.import_directory`) apply the same plan to their own stores.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sprx_rules.hsds import UNREAD, HsdsError, Problem, ServiceRecord, parse_datapackage
from sprx_rules.hsds3 import looks_like_v3_package, parse_json_path, parse_v3_package

__all__ = ["ImportPlan", "detect_format", "plan_import", "read_directory", "report_lines"]

FORMATS = {
    "hsds1": "an HSDS 1.1 datapackage",
    "hsds3-csv": "an HSDS 3.0 / Open Referral UK CSV package",
    "hsds3-json": "HSDS 3.0 / Open Referral UK JSON",
    "feed": "an Open Referral UK feed",
}


def detect_format(path: Path) -> str:
    """ "hsds1", "hsds3-csv" or "hsds3-json"; HsdsError (one plain sentence) when it is none of them."""
    if path.is_file():
        if path.name == "datapackage.json":
            return detect_format(path.parent)
        if path.suffix.lower() == ".json":
            return "hsds3-json"
        raise HsdsError("That file is not a directory package: give a folder, or a .json file of services.")
    if not path.is_dir():
        raise HsdsError("There is no directory package at that path.")
    if (path / "services.csv").is_file():
        return "hsds3-csv" if looks_like_v3_package(path) else "hsds1"
    if any(p.name != "datapackage.json" for p in path.glob("*.json")):
        return "hsds3-json"
    if (path / "datapackage.json").is_file():
        return "hsds3-csv" if looks_like_v3_package(path) else "hsds1"
    raise HsdsError("That folder holds no services.csv and no JSON files of services.")


def read_directory(
    path: Path | str, practice_id: str = "local", source: str = ""
) -> tuple[list[ServiceRecord], list[Problem], str]:
    """(records, problems, format) from any supported package, file or folder of files."""
    p = Path(path)
    fmt = detect_format(p)
    if fmt == "hsds1":
        records, problems = parse_datapackage(p, practice_id=practice_id, source=source)
    elif fmt == "hsds3-csv":
        records, problems = parse_v3_package(p, practice_id=practice_id, source=source)
    else:
        records, problems = parse_json_path(p, practice_id=practice_id, source=source)
    return records, problems, fmt


# -- what an import changes -------------------------------------------------------------------------


@dataclass
class ImportPlan:
    """What to write. Values are JSON values (dates as ISO strings), keyed by synced field name."""

    inserts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    updates: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # only the fields that change
    withdrawals: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    unchanged: int = 0
    kept: set[str] = field(default_factory=set)  # fields left as stored because the source does not state them
    full: bool = True
    withheld: bool = False  # a full import that withdrew nothing because a service row could not be read

    @property
    def added(self) -> int:
        return len(self.inserts)

    @property
    def changed(self) -> int:
        return len(self.updates)

    @property
    def withdrawn(self) -> int:
        return len(self.withdrawals)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return list(a) == list(b)
    if isinstance(a, dt.date):
        a = a.isoformat()
    if isinstance(b, dt.date):
        b = b.isoformat()
    return bool(a == b)


def _unread(problems: list[Problem]) -> tuple[set[str], bool]:
    """(ids of services that could not be read, whether a service row was lost whole)."""
    ids = {p.service_id for p in problems if p.service_id and p.service_id != UNREAD}
    return ids, any(p.service_id == UNREAD for p in problems)


def plan_import(
    records: list[ServiceRecord],
    existing: Mapping[str, Mapping[str, Any]],
    *,
    full: bool,
    source: str,
    today: dt.date,
    held: set[str] | None = None,
    problems: list[Problem] | None = None,
) -> ImportPlan:
    """The plan for one import.

    existing: every stored directory row of the practice, id -> its synced values (only `source`,
    `active` and `withdrawn_on` are needed for rows the import does not hold). held: ids the source
    holds besides `records` (a feed read page by page withdraws once, after its last page).
    problems: the reading's problems; a service that could not be read is not withdrawn, and when a
    service row was lost whole (its id unknown) the import withdraws nothing.
    """
    unread, lost = _unread(problems or [])
    held = set(held or ()) | unread
    plan = ImportPlan(full=full and not lost, withheld=full and lost)
    for rec in records:
        held.add(rec.id)
        values = rec.values()
        old = existing.get(rec.id)
        if old is None:
            plan.inserts.append((rec.id, values))
            continue
        stated = rec.stated()
        plan.kept.update(f for f in rec.FIELDS if f not in stated)
        changes = {f: values[f] for f in rec.FIELDS if f in stated and not _same(old.get(f), values[f])}
        if changes:
            plan.updates.append((rec.id, changes))
        else:
            plan.unchanged += 1
    if plan.full:
        for sid, old in existing.items():
            if sid in held or (old.get("source") or "") != source or old.get("withdrawn_on"):
                continue
            plan.withdrawals.append((sid, {"active": False, "withdrawn_on": today.isoformat()}))
    plan.kept.discard("withdrawn_on")
    return plan


def report_lines(plan: ImportPlan, fmt: str, source: str = "") -> list[str]:
    """The import's report: added / changed / withdrawn / unchanged, and what was kept."""
    what = FORMATS.get(fmt, fmt)
    src = f" (source '{source}')" if source else ""
    lines = [
        f"Read {what}{src}: {plan.added} added, {plan.changed} changed, {plan.withdrawn} withdrawn, "
        f"{plan.unchanged} unchanged."
    ]
    if plan.withdrawn:
        lines.append(
            f"{plan.withdrawn} {'service is' if plan.withdrawn == 1 else 'services are'} no longer in this source, "
            "so marked inactive (withdrawn today); their referrals are kept."
        )
    if plan.withheld:
        lines.append("A service row could not be read (see the problems), so no service was withdrawn.")
    elif not plan.full:
        lines.append("Partial import: services not in this file were left as they are.")
    if plan.kept:
        lines.append(
            "Not in this source, so kept as stored: " + ", ".join(sorted(f.replace("_", " ") for f in plan.kept)) + "."
        )
    return lines
