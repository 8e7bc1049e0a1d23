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
from sync.server.store.imports import IMPORT_BATCH, ReferralIn

COLUMNS = [
    "nhs_number", "given_name", "family_name", "date_of_birth", "postcode", "phone", "source",
    "referrer_name", "received_on", "reasons", "urgency", "referral_text", "worker",
]  # fmt: skip

COLUMN_HELP: list[tuple[str, str]] = [
    ("nhs_number", "required; 10 digits, spaces allowed (finds the person again on a re-import)"),
    ("given_name", "required"),
    ("family_name", "required"),
    ("date_of_birth", "required; YYYY-MM-DD"),
    ("postcode", "optional; a UK postcode"),
    ("phone", "optional; a UK phone number"),
    ("source", "required; who referred: gp, nurse, pharmacy, hospital_discharge, self, ..."),
    ("referrer_name", "optional"),
    ("received_on", "required; YYYY-MM-DD, not in the future"),
    ("reasons", "optional; codes separated by ';', e.g. loneliness;housing"),
    ("urgency", "optional; routine (the default), soon or urgent"),
    ("referral_text", "optional; free text"),
    ("worker", "required; the login of the worker the person is assigned to (sprx-server worker list)"),
]
"""What each column of the referral file holds (the command's --help and README show this)."""


def template() -> str:
    """The header line of a referral file, for ``import-referrals --template``."""
    return ",".join(COLUMNS)


def columns_help() -> str:
    """The columns, one a line, for the command's --help."""
    width = max(len(c) for c in COLUMNS)
    return "\n".join(f"  {c:<{width}}  {what}" for c, what in COLUMN_HELP)


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


def _read_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) for every row of the file; ImportFileError when it cannot be read as a whole."""
    try:
        fh = path.open(newline="", encoding="utf-8-sig")
    except OSError:
        raise ImportFileError(f"Cannot read {path}.") from None
    with fh:
        reader = csv.DictReader(fh)
        try:
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ImportFileError(f"The file is missing the column(s): {', '.join(missing)}.")
            return [(reader.line_num, row) for row in reader]
        except (UnicodeDecodeError, csv.Error):
            raise ImportFileError(f"{path} is not a UTF-8 CSV file.") from None


def _prepare(c: dict[str, object]) -> tuple[dict[str, object], dict[str, object]]:
    """The person's and the referral's values from a checked row."""
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
    return person, referral


def import_referrals(
    store: ServerStore, path: Path, *, progress: Callable[[int, int], None] | None = None
) -> ImportReport:
    """Import every good row; bad rows are reported with their line number and reason.

    ``progress(done, total)`` is called once the rows are checked (refused rows are done) and after
    each batch written, for a progress bar over the file's rows.
    """
    rows = _read_rows(path)
    report = ImportReport()
    known_workers: dict[str, bool] = {}
    good: list[tuple[int, ReferralIn]] = []
    for line, row in rows:
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
        person, referral = _prepare(c)
        refusal = gate.check_values("person", person) or gate.check_values("referral", referral)
        if refusal is not None:  # the inbound gate: nothing that cannot be shown safely is stored
            report.errors.append((line, f"the {refusal.field.replace('_', ' ')} {refusal.problem}"))
            continue
        good.append((line, ReferralIn(wid, str(c["nhs"]), person, str(c["received_on"]), str(c["source"]), referral)))
    done = len(rows) - len(good)  # refused rows have nothing to write
    if progress:
        progress(done, len(rows))
    for start in range(0, len(good), IMPORT_BATCH):
        chunk = good[start : start + IMPORT_BATCH]
        for (line, _), outcome in zip(chunk, store.import_referrals([r for _, r in chunk]), strict=True):
            if isinstance(outcome, StoreError):
                report.errors.append((line, outcome.message.rstrip(".").lower()))
            elif outcome == "imported":
                report.imported += 1
            else:
                report.already_present += 1
        done += len(chunk)
        if progress:
            progress(done, len(rows))
    report.errors.sort()
    return report
