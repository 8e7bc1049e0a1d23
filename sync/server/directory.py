"""Services-directory import on the server: any supported package or feed into community_service records.

Each service becomes one record (table "community_service", person_id NULL) written through
`ServerStore.server_write`, so it is merged, logged in the change feed and pulled by every laptop of
the practice. Formats and the rules of a full or partial import are in `sprx_rules.directory` (the
laptop's `sprx directory import` applies the same plan). Ids are `sprx_rules.hsds.service_id`:
re-importing updates in place. A service is never deleted: a full import marks the ones its source no
longer holds inactive, with `withdrawn_on`.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from sprx_rules import gate
from sprx_rules.directory import ImportPlan, plan_import, read_directory, report_lines
from sprx_rules.hsds import HsdsError, Problem, ServiceRecord
from sync.server.log import log_event
from sync.server.store import ServerStore, record

__all__ = ["DirectoryError", "DirectoryImport", "apply_records", "import_directory", "import_hsds", "import_path"]

TABLE = "community_service"


class DirectoryError(Exception):
    """The directory package cannot be read at all; one plain sentence."""


@dataclass
class DirectoryImport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    withdrawn: int = 0
    problems: list[Problem] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    format: str = ""

    @property
    def imported(self) -> int:
        return self.added + self.updated + self.unchanged


def _existing(conn: Any, practice_id: str) -> dict[str, dict[str, Any]]:
    """Every directory record of the practice: id -> its values."""
    rows = conn.execute(
        sa.select(record.c.id, record.c["values"]).where(
            record.c.tbl == TABLE, record.c.practice_id == practice_id, record.c.deleted.is_(False)
        )
    )
    return {r.id: json.loads(r[1]) for r in rows}


def apply_records(
    store: ServerStore,
    records: list[ServiceRecord],
    practice_id: str,
    *,
    full: bool = True,
    source: str = "",
    today: dt.date | None = None,
    problems: list[Problem] | None = None,
    held: set[str] | None = None,
) -> ImportPlan:
    """Write the plan for these records in one transaction (the file import and the live feed share it)."""
    problems = problems if problems is not None else []
    day = today or dt.datetime.now(dt.UTC).date()
    # store._write is the store's one-transaction-with-the-counter-locked context; the store has no
    # public batch API yet, and 5,000 services in 5,000 transactions would take seconds on SQLite.
    with store._write() as conn:
        existing = _existing(conn, practice_id)
        good = []
        for rec in records:
            refusal = gate.check_values(TABLE, rec.values(), rec.source_id)
            if refusal is not None:  # the parser cleans text; this catches what it let through
                problems.append(Problem("services", 0, refusal.sentence, rec.id))  # refused, not withdrawn
                continue
            good.append(rec)
        # A source that yields nothing must not withdraw the whole directory.
        full = full and bool(good or held)
        plan = plan_import(good, existing, full=full, source=source, today=day, held=held, problems=problems)
        for sid, values in [*plan.inserts, *plan.updates, *plan.withdrawals]:
            store.server_write(TABLE, sid, values, practice_id=practice_id, conn=conn)
    return plan


def import_path(
    store: ServerStore, path: Path, practice_id: str, *, full: bool = True, source: str = ""
) -> DirectoryImport:
    """Add, update and withdraw the practice's directory from a package, a JSON file or a folder of them.

    Bad rows are reported as problems (file, line, reason) and the rest are imported.
    """
    try:
        services, problems, fmt = read_directory(path, practice_id=practice_id, source=source)
    except HsdsError as exc:
        raise DirectoryError(str(exc)) from None
    plan = apply_records(store, services, practice_id, full=full, source=source, problems=problems)
    result = DirectoryImport(
        added=plan.added,
        updated=plan.changed,
        unchanged=plan.unchanged,
        withdrawn=plan.withdrawn,
        problems=problems,
        lines=report_lines(plan, fmt, source),
        format=fmt,
    )
    log_event(
        "directory_imported",
        practice_id=practice_id,
        format=fmt,
        added=result.added,
        updated=result.updated,
        withdrawn=result.withdrawn,
        unchanged=result.unchanged,
        problems=len(problems),
    )
    return result


def import_hsds(store: ServerStore, path: Path, practice_id: str) -> DirectoryImport:
    """A full import from any supported package (the name kept from when only HSDS 1.1 was read)."""
    return import_path(store, Path(path), practice_id)


def import_directory(store: ServerStore, path: Path, practice_id: str) -> tuple[int, list[tuple[int, str]]]:
    """Compatibility wrapper: (services imported, [(line, "file: reason")])."""
    result = import_hsds(store, Path(path), practice_id)
    return result.imported, [(p.line, f"{p.file}: {p.reason}") for p in result.problems]
