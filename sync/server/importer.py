"""Referral CSV import: validate each row, create or find the person, add the referral, assign."""

from __future__ import annotations

import csv
import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path

from sprx_rules import gate
from sync.server.nhs import normalise_nhs, valid_nhs
from sync.server.store import Store, StoreError

COLUMNS = [
    "nhs_number", "given_name", "family_name", "date_of_birth", "postcode", "phone", "source",
    "referrer_name", "received_on", "reasons", "urgency", "referral_text", "worker",
]  # fmt: skip
POSTCODE = re.compile(r"^[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2}$")
PHONE = re.compile(r"^\+?[0-9 ()-]{7,20}$")


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


def _check_row(row: dict[str, str]) -> dict[str, object]:
    """The cleaned row, or ValueError with a plain reason (never quoting the value)."""
    g = {k: (row.get(k) or "").strip() for k in COLUMNS}
    if not valid_nhs(g["nhs_number"]):
        raise ValueError("the NHS number is not valid")
    for k, what in (("given_name", "given name"), ("family_name", "family name"),
                    ("source", "source"), ("worker", "worker")):  # fmt: skip
        if not g[k]:
            raise ValueError(f"the {what} is missing")
    postcode = g["postcode"].upper()
    if postcode and not POSTCODE.match(postcode):
        raise ValueError("the postcode is not a UK postcode")
    if g["phone"] and not PHONE.match(g["phone"]):
        raise ValueError("the phone number is not valid")
    return {
        "nhs": normalise_nhs(g["nhs_number"]),
        "dob": _date(g["date_of_birth"], "the date of birth"),
        "received_on": _date(g["received_on"], "the received date"),
        "postcode": postcode,
        **g,
    }


def import_referrals(store: Store, path: Path) -> ImportReport:
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
