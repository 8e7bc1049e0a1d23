"""Field validation for people's details: postcode, dates, phone, email and text (NHS number: sprx_rules.nhs).

Pure rules shared by the laptop's forms and the server's referral import: ValidationError carries
the field and one plain sentence that never repeats what was typed.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FIELD_LABELS",
    "FormResult",
    "ValidationError",
    "collect_errors",
    "field_label",
    "format_phone",
    "normalise_phone",
    "normalise_postcode",
    "parse_birth_date",
    "parse_date",
    "validate_birth_date",
    "validate_email",
    "validate_form",
    "validate_not_future",
    "validate_text",
]


class ValidationError(ValueError):
    """A user-facing input problem: `field` says which input, the message is one plain sentence.

    Messages never repeat what the user typed, because they may end up in logs and the
    input is often personal data.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        # ValueError pickles as cls(*args); our constructor takes two arguments.
        return (type(self), (self.field, self.message))


# Human names for field ids, used at the start of generic messages ("Date of birth is empty...").
FIELD_LABELS: dict[str, str] = {
    "nhs_number": "NHS number",
    "postcode": "Postcode",
    "date_of_birth": "Date of birth",
    "birth_date": "Date of birth",
    "phone": "Phone number",
    "email": "Email address",
}


def field_label(field: str) -> str:
    """Return a readable name for a field id, e.g. "received_date" -> "Received date"."""
    if field in FIELD_LABELS:
        return FIELD_LABELS[field]
    words = field.replace("_", " ").strip()
    return words[:1].upper() + words[1:] if words else "This field"


# --------------------------------------------------------------------------- Postcode

# The UK Government's published postcode pattern (outward code, space, inward code), applied
# to the upper-cased canonical form. GIR 0AA is the one historic non-geographic exception.
_POSTCODE = re.compile(
    r"GIR 0AA"
    r"|(?:[A-Z][0-9]{1,2}|[A-Z][A-HJ-Y][0-9]{1,2}|[A-Z][0-9][A-Z]|[A-Z][A-HJ-Y][0-9][A-Z]?)"
    r" [0-9][A-Z]{2}"
)


def normalise_postcode(text: str) -> str:
    """Return a UK postcode in canonical form ("LS1 4AP"); any case, spaces optional."""
    compact = re.sub(r"\s+", "", (text or "")).upper()
    if not compact:
        raise ValidationError("postcode", "The postcode is empty; enter a UK postcode.")
    # The inward code is always the last three characters, so the space position is fixed.
    canonical = f"{compact[:-3]} {compact[-3:]}" if len(compact) >= 5 else compact
    if not _POSTCODE.fullmatch(canonical):
        raise ValidationError("postcode", "The postcode is not a UK postcode like LS1 4AP; check it.")
    return canonical


# --------------------------------------------------------------------------- Dates

_ISO_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
# Day first, as written in the UK; the same separator must be used twice.
_UK_DATE = re.compile(r"(\d{1,2})([/.\-])(\d{1,2})\2(\d{4})")
_SHORT_YEAR = re.compile(r"\d{1,2}([/.\-])\d{1,2}\1\d{2}")


def parse_date(text: str, field: str) -> dt.date:
    """Parse "2026-11-22", "22/11/2026" or "22-11-2026" into a date; errors name the field."""
    label = field_label(field)
    s = (text or "").strip()
    if not s:
        raise ValidationError(field, f"{label} is empty; enter a date such as 22/11/2026.")
    if m := _ISO_DATE.fullmatch(s):
        year, month, day = int(m[1]), int(m[2]), int(m[3])
    elif m := _UK_DATE.fullmatch(s):
        day, month, year = int(m[1]), int(m[3]), int(m[4])
    elif _SHORT_YEAR.fullmatch(s):
        # A two-digit year is ambiguous for birth dates (19xx or 20xx), so ask for all four.
        raise ValidationError(field, f"{label} needs a four-digit year, such as 22/11/2026.")
    else:
        raise ValidationError(field, f"{label} must be a date written like 22/11/2026 or 2026-11-22.")
    try:
        return dt.date(year, month, day)
    except ValueError:
        raise ValidationError(field, f"{label} is not a real calendar date; check the day and month.") from None


def validate_not_future(d: dt.date, today: dt.date, field: str) -> dt.date:
    """Return `d` unless it is after `today`."""
    if d > today:
        raise ValidationError(field, f"{field_label(field)} cannot be in the future.")
    return d


def _years_before(today: dt.date, years: int) -> dt.date:
    try:
        return today.replace(year=today.year - years)
    except ValueError:
        # 29 February in a year that has none: use 28 February.
        return today.replace(year=today.year - years, day=28)


def validate_birth_date(d: dt.date, today: dt.date, field: str = "date_of_birth") -> dt.date:
    """Return a date of birth if it is not in the future and not more than 120 years ago."""
    validate_not_future(d, today, field)
    if d < _years_before(today, 120):
        raise ValidationError(field, f"{field_label(field)} is more than 120 years ago; check the year.")
    return d


def parse_birth_date(text: str, today: dt.date, field: str = "date_of_birth") -> dt.date:
    """Parse and check a date of birth in one step."""
    return validate_birth_date(parse_date(text, field), today, field)


# --------------------------------------------------------------------------- Phone

_PHONE_ALLOWED = re.compile(r"\+?[0-9 \t\-().]*")


def normalise_phone(text: str, field: str = "phone") -> str:
    """Return a UK phone number as "+447700900123"; accepts spaces, dashes, brackets, +44 or 0."""
    s = (text or "").strip()
    if not s:
        raise ValidationError(field, "The phone number is empty; enter a UK phone number.")
    if not _PHONE_ALLOWED.fullmatch(s):
        raise ValidationError(
            field,
            "The phone number can contain only digits, spaces, dashes, brackets and a leading +.",
        )
    digits = re.sub(r"[^0-9]", "", s)
    if s.startswith("+") or digits.startswith("00"):
        international = digits if s.startswith("+") else digits[2:]
        if not international.startswith("44"):
            raise ValidationError(field, "Only UK phone numbers (+44 or starting 0) are accepted.")
        national = international[2:]
        # "+44 (0)20 ..." is a common way of writing it; the 0 is the trunk prefix, drop it.
        if national.startswith("0"):
            national = national[1:]
    elif digits.startswith("0"):
        national = digits[1:]
    else:
        raise ValidationError(field, "A UK phone number starts with 0 or +44.")
    if not 9 <= len(national) <= 10 or national.startswith("0"):
        raise ValidationError(field, "A UK phone number has 10 or 11 digits, counting the leading 0.")
    return "+44" + national


def format_phone(stored: str) -> str:
    """A stored UK number ("+447700900123") as a person dials it: "07700 900123", "020 7946 0123",
    "0113 496 0123". Anything else is shown as stored."""
    if not stored.startswith("+44") or not stored[3:].isdigit():
        return stored
    n = "0" + stored[3:]
    if len(n) != 11:
        return n
    if n.startswith("02"):  # 020 London, 023, 024, 028, 029: area code of 3
        return f"{n[:3]} {n[3:7]} {n[7:]}"
    if n.startswith(("011", "03", "08", "09")) or n[:4] in ("0121", "0131", "0141", "0151", "0161", "0191"):
        return f"{n[:4]} {n[4:7]} {n[7:]}"
    return f"{n[:5]} {n[5:]}"  # mobiles (07) and most geographic numbers (01xxx)


# --------------------------------------------------------------------------- Email and text

# Deliberately loose: one @, no spaces, a dotted domain. Real checking is sending a message.
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")


def validate_email(text: str, field: str = "email") -> str:
    """Return the trimmed email address if it looks like one."""
    s = (text or "").strip()
    if not s:
        raise ValidationError(field, "The email address is empty; enter an email address.")
    if len(s) > 254 or not _EMAIL.fullmatch(s):
        raise ValidationError(field, "The email address does not look right; it should be like name@example.org.")
    return s


# C0 control characters and DEL; tabs and newlines are handled separately below.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def validate_text(
    text: str | None,
    field: str,
    *,
    required: bool = True,
    max_len: int = 200,
    multiline: bool = False,
) -> str:
    """Return trimmed text; check it is present if required, not too long and printable."""
    label = field_label(field)
    s = (text or "").strip()
    if not s:
        if required:
            raise ValidationError(field, f"{label} is required.")
        return ""
    if len(s) > max_len:
        raise ValidationError(field, f"{label} is too long; keep it to {max_len} characters.")
    # Control characters break the terminal display and exports; they come from bad pastes.
    if _CONTROL.search(s) or (not multiline and re.search(r"[\r\n]", s)):
        raise ValidationError(field, f"{label} contains characters that cannot be stored.")
    return s


# --------------------------------------------------------------------------- Forms


def collect_errors(checks: Iterable[Callable[[], object]]) -> dict[str, str]:
    """Run every check and return {field: message} for all ValidationErrors raised.

    Other exceptions propagate: they are bugs, not input problems. Only the first error per
    field is kept, so a form shows one sentence next to each input.
    """
    errors: dict[str, str] = {}
    for check in checks:
        try:
            check()
        except ValidationError as exc:
            errors.setdefault(exc.field, exc.message)
    return errors


@dataclass
class FormResult:
    """Cleaned values and errors from `validate_form`, both keyed by the form's field names."""

    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def validate_form(checks: Mapping[str, Callable[[], object]]) -> FormResult:
    """Run a check per form field; return every cleaned value and every error at once.

    Example::

        result = validate_form({
            "nhs_number": lambda: normalise_nhs_number(form["nhs_number"]),
            "date_of_birth": lambda: parse_birth_date(form["date_of_birth"], today),
        })
        if not result.ok:
            show(result.errors)
    """
    result = FormResult()
    for name, check in checks.items():
        try:
            result.values[name] = check()
        except ValidationError as exc:
            # Keyed by the form's name, not exc.field, so the message lands next to its input.
            result.errors[name] = exc.message
    return result
