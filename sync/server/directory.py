"""Minimal services-directory import (flat CSV of community_service fields); extension point."""

from __future__ import annotations

import csv
import uuid
from pathlib import Path

from sync.schema import TABLES
from sync.server.store import PERSON_NS, Store

LIST_FIELDS = {"categories", "needs"}


class DirectoryError(Exception):
    """The directory file cannot be read."""


def import_directory(store: Store, path: Path, practice_id: str) -> tuple[int, list[tuple[int, str]]]:
    """Upsert one community_service row per CSV line (id or source_id column required).

    A datapackage directory is accepted if it holds services.csv. Returns (count, errors).
    TODO(directory owner): full HSDS datapackage (organizations, locations, phones) mapping.
    """
    if path.is_dir():
        path = path / "services.csv"
    fields = TABLES["community_service"].fields
    try:
        fh = path.open(newline="", encoding="utf-8-sig")
    except OSError:
        raise DirectoryError(f"Cannot read {path}.") from None
    n, errors = 0, []
    with fh:
        reader = csv.DictReader(fh)
        cols = reader.fieldnames or []
        if "id" not in cols and "source_id" not in cols:
            raise DirectoryError("The file needs an id or source_id column.")
        for row in reader:
            src = (row.get("source_id") or row.get("id") or "").strip()
            if not src or not (row.get("name") or "").strip():
                errors.append((reader.line_num, "the id or name is missing"))
                continue
            values: dict[str, object] = {"source_id": src}
            for f in fields:
                raw = (row.get(f) or "").strip()
                if f == "source_id" or f not in row:
                    continue
                if f in LIST_FIELDS:
                    values[f] = [x.strip() for x in raw.split(";") if x.strip()]
                elif f == "active":
                    values[f] = raw.lower() not in ("0", "false", "no", "n")
                else:
                    values[f] = raw or None
            values.setdefault("active", True)
            sid = str(uuid.uuid5(PERSON_NS, f"{practice_id}/service/{src}"))
            store.server_write("community_service", sid, values, practice_id=practice_id)
            n += 1
    return n, errors
