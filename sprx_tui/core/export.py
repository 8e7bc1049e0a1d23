"""Exports that leave the encrypted store: deliberate, audited, written owner-only."""

from __future__ import annotations

import csv
import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path

from sqlmodel import Session, select

from sprx_tui.core.models import (
    Contact,
    ContactAmendment,
    FollowUp,
    Goal,
    Need,
    OnwardReferral,
    OutcomeResponse,
    Person,
    PlanAction,
    Referral,
    Synced,
    WhatMatters,
)
from sprx_tui.core.service import ServiceError
from sprx_tui.core.store import CaseStore
from sprx_tui.core.wire import to_wire

LEAVING_WARNING = (
    "This export is NOT encrypted: it leaves the protected vault. Keep it on an encrypted drive, "
    "share it only through an approved route, and delete it when it is no longer needed."
)

CSV_TABLES: list[tuple[str, type[Synced]]] = [
    ("people", Person),
    ("referrals", Referral),
    ("contacts", Contact),
    ("contact_amendments", ContactAmendment),
    ("follow_ups", FollowUp),
    ("what_matters", WhatMatters),
    ("goals", Goal),
    ("plan_actions", PlanAction),
    ("needs", Need),
    ("onward_referrals", OnwardReferral),
    ("outcomes", OutcomeResponse),
]
_INTERNAL = {"field_meta", "row_hlc", "server_seq", "search_text", "practice_id"}


def _open_private(path: Path) -> int:
    """Create a new file readable only by its owner; never overwrite an existing one."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)


def prepare_export_dir(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        raise ServiceError("The export folder already has files in it; choose an empty or new folder.")
    try:
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        raise ServiceError("The export folder could not be created; check the path and permissions.") from None


def export_csv(
    store: CaseStore,
    out: Path,
    *,
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Write one CSV file per record type into `out` and audit the export; returns row counts."""
    prepare_export_dir(out)
    counts: dict[str, int] = {}
    with Session(store.engine) as s:
        for name, model in CSV_TABLES:
            columns = [c for c in model.model_fields if c not in _INTERNAL]
            fd = _open_private(out / f"{name}.csv")
            n = 0
            with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh)
                writer.writerow(columns)
                for row in s.exec(select(model).execution_options(yield_per=2000)):
                    writer.writerow([_cell(to_wire(getattr(row, c))) for c in columns])
                    n += 1
            counts[name] = n
            if progress:
                progress(1)
    fd = _open_private(out / "README-UNENCRYPTED.txt")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(LEAVING_WARNING + "\n")
        fh.write(f"Exported {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')} by sprx.\n")
    store.service.record_event("EXPORT", detail="csv " + ",".join(f"{k}={v}" for k, v in counts.items()))
    return counts


def _cell(value: object) -> object:
    if isinstance(value, list):
        return ";".join(str(v) for v in value)
    if isinstance(value, dict):
        import json

        return json.dumps(value, sort_keys=True)
    if value is None:
        return ""
    return value
