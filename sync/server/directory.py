"""Services-directory import on the server: an HSDS 1.1 datapackage into practice-wide community_service records.

Each service becomes one record (table "community_service", person_id NULL) written through
`ServerStore.server_write`, so it is merged, logged in the change feed and pulled by every laptop of
the practice. Ids are `sprx_rules.hsds.service_id(practice_id, HSDS id)`: re-importing updates in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from sprx_rules import gate
from sprx_rules.hsds import HsdsError, Problem, parse_datapackage
from sync.server.log import log_event
from sync.server.store import ServerStore, record

__all__ = ["DirectoryError", "DirectoryImport", "import_directory", "import_hsds"]

TABLE = "community_service"


class DirectoryError(Exception):
    """The directory package cannot be read at all; one plain sentence."""


@dataclass
class DirectoryImport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def imported(self) -> int:
        return self.added + self.updated + self.unchanged


def import_hsds(store: ServerStore, path: Path, practice_id: str) -> DirectoryImport:
    """Add or update the practice's directory from an HSDS datapackage folder, in one transaction.

    Bad rows are reported as problems (file, line, reason) and the rest are imported. Services
    missing from the package are left as they are (mark them inactive in the package to close them).
    """
    try:
        services, problems = parse_datapackage(path, practice_id=practice_id)
    except HsdsError as exc:
        raise DirectoryError(str(exc)) from None
    result = DirectoryImport(problems=problems)
    if not services:
        return result
    # store._write is the store's one-transaction-with-the-counter-locked context; the store has no
    # public batch API yet, and 5,000 services in 5,000 transactions would take seconds on SQLite.
    with store._write() as conn:
        ids = [s.id for s in services]
        existing: set[str] = set()
        for start in range(0, len(ids), 500):
            existing.update(
                conn.execute(
                    sa.select(record.c.id).where(record.c.tbl == TABLE, record.c.id.in_(ids[start : start + 500]))
                ).scalars()
            )
        for svc in services:
            refusal = gate.check_values(TABLE, svc.values(), svc.source_id)
            if refusal is not None:  # the parser cleans text; this catches what it let through
                result.problems.append(Problem("services.csv", 0, refusal.sentence))
                continue
            ack = store.server_write(TABLE, svc.id, svc.values(), practice_id=practice_id, conn=conn)
            if svc.id not in existing:
                result.added += 1
            elif ack.get("status") == "duplicate":
                result.unchanged += 1
            else:
                result.updated += 1
    log_event(
        "directory_imported",
        practice_id=practice_id,
        added=result.added,
        updated=result.updated,
        unchanged=result.unchanged,
        problems=len(problems),
    )
    return result


def import_directory(store: ServerStore, path: Path, practice_id: str) -> tuple[int, list[tuple[int, str]]]:
    """Compatibility wrapper for the CLI: (services imported, [(line, "file: reason")])."""
    result = import_hsds(store, Path(path), practice_id)
    return result.imported, [(p.line, f"{p.file}: {p.reason}") for p in result.problems]
