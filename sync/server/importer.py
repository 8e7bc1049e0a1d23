"""Referral CSV import: validate each row, create or find the person, add the referral, assign."""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sprx_rules import gate
from sprx_rules.nhs import normalise_nhs_number
from sprx_rules.validate import ValidationError, normalise_phone, normalise_postcode
from sync.server.store import ServerStore, StoreError

COLUMNS = [
    "nhs_number", "given_name", "family_name", "date_of_birth", "postcode", "phone", "source",
    "referrer_name", "received_on", "reasons", "urgency", "referral_text", "worker",
]  # fmt: skip


@dataclass
class ImportReport:
    imported: int = 0
    already_present: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)


class ImportFileError(Exception):
    """The file as a whole cannot be read (missing, wrong columns)."""


def _date(raw: str, what: str, *, past: bool = True) -> str:
    try:
        d = dt.date.fromisoformat(raw.strip())
    except ValueError:
        raise ValueError(f"{what} is not a date like 2025-03-31") from None
    if past and d > dt.date.today():
        raise ValueError(f"{what} is in the future")
    return d.isoformat()


def _rule(check: Callable[[str], str], raw: str, reason: str) -> str:
    """`check(raw)` (a sprx_rules normaliser), or ValueError with the importer's own plain reason."""
    try:
        return check(raw)
    except ValidationError:
        raise ValueError(reason) from None


def _check_row(row: dict[str, str]) -> dict[str, object]:
    """The cleaned row, or ValueError with a plain reason (never quoting the value).

    NHS number, postcode and phone follow the laptop's rules (sprx_rules) and are stored in the same
    form the laptop stores them: 10 digits, "LS1 4AP", "+441134960000".
    """
    g = {k: (row.get(k) or "").strip() for k in COLUMNS}
    nhs = _rule(normalise_nhs_number, g["nhs_number"], "the NHS number is not valid")
    for k, what in (("given_name", "given name"), ("family_name", "family name"),
                    ("source", "source"), ("worker", "worker")):  # fmt: skip
        if not g[k]:
            raise ValueError(f"the {what} is missing")
    postcode = _rule(normalise_postcode, g["postcode"], "the postcode is not a UK postcode") if g["postcode"] else ""
    phone = _rule(normalise_phone, g["phone"], "the phone number is not valid") if g["phone"] else ""
    return {
        "nhs": nhs,
        "dob": _date(g["date_of_birth"], "the date of birth"),
        "received_on": _date(g["received_on"], "the received date"),
        **g,
        "postcode": postcode,
        "phone": phone,
    }


def import_referrals(store: ServerStore, path: Path) -> ImportReport:
    """Import every good row; bad rows are reported with their line number and reason."""
    try:
        fh = path.open(newline="", encoding="utf-8-sig")
    except OSError:
        raise ImportFileError(f"Cannot read {path}.") from None
    report = ImportReport()
    known_workers: dict[str, bool] = {}
    with fh:
        reader = csv.DictReader(fh)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ImportFileError(f"The file is missing the column(s): {', '.join(missing)}.")
        for row in reader:
            line = reader.line_num
            try:
                c = _check_row(row)
            except ValueError as e:
                report.errors.append((line, str(e)))
                continue
            wid = str(c["worker"])
            if wid not in known_workers:
                try:
                    store.get_worker(wid)
                    known_workers[wid] = True
                except StoreError:
                    known_workers[wid] = False
            if not known_workers[wid]:
                report.errors.append((line, "the worker is not known to this server"))
                continue
            person = {
                "nhs_number": c["nhs"],
                "given_name": c["given_name"],
                "family_name": c["family_name"],
                "date_of_birth": c["dob"],
                "postcode": c["postcode"] or None,
                "phone": c["phone"] or None,
                "status": "referred",
            }
            referral = {
                "source": c["source"],
                "referrer_name": c["referrer_name"] or None,
                "received_on": c["received_on"],
                "reasons": [r.strip() for r in str(c["reasons"]).split(";") if r.strip()],
                "urgency": c["urgency"] or "routine",
                "referral_text": c["referral_text"] or None,
                "status": "received",
            }
            refusal = gate.check_values("person", person) or gate.check_values("referral", referral)
            if refusal is not None:  # the inbound gate: nothing that cannot be shown safely is stored
                report.errors.append((line, f"the {refusal.field.replace('_', ' ')} {refusal.problem}"))
                continue
            try:
                outcome = store.import_referral(
                    wid, str(c["nhs"]), person, str(c["received_on"]), str(c["source"]), referral
                )
            except StoreError as e:
                report.errors.append((line, e.message.rstrip(".").lower()))
                continue
            if outcome == "imported":
                report.imported += 1
            else:
                report.already_present += 1
    return report
