"""The NHS number: normalise, check digit (Modulus 11), is_valid and the 3-3-4 display form.

One implementation for the laptop's forms and the server's referral import. Messages never repeat
the number that was typed: they may end up in logs, and the number is personal data.
"""

from __future__ import annotations

import re

from sprx_rules.validate import ValidationError

__all__ = [
    "format_nhs_number",
    "is_valid_nhs_number",
    "nhs_check_digit",
    "normalise_nhs_number",
]

_NHS_WEIGHTS = (10, 9, 8, 7, 6, 5, 4, 3, 2)
# Hyphen plus the common Unicode dashes that word processors substitute when text is pasted.
_NHS_ALLOWED = re.compile(r"[0-9 \t\-\u2010-\u2014]*")


def nhs_check_digit(first_nine: str) -> int | None:
    """Return the Modulus 11 check digit for nine digits, or None when no valid digit exists."""
    if len(first_nine) != 9 or not first_nine.isascii() or not first_nine.isdigit():
        raise ValueError("nhs_check_digit needs exactly nine ASCII digits.")
    total = sum(int(d) * w for d, w in zip(first_nine, _NHS_WEIGHTS, strict=True))
    check = 11 - (total % 11)
    if check == 11:
        return 0
    if check == 10:
        # Numbers whose check would be 10 are never issued.
        return None
    return check


def normalise_nhs_number(text: str) -> str:
    """Return the 10 digits of an NHS number typed with optional spaces or dashes.

    Raises ValidationError(field="nhs_number") with a sentence saying what is wrong.
    """
    stripped = (text or "").strip()
    if not stripped:
        raise ValidationError("nhs_number", "The NHS number is empty; enter its 10 digits.")
    if not _NHS_ALLOWED.fullmatch(stripped):
        raise ValidationError(
            "nhs_number",
            "The NHS number can contain only digits, with spaces or dashes between groups.",
        )
    digits = re.sub(r"[^0-9]", "", stripped)
    if len(digits) != 10:
        raise ValidationError(
            "nhs_number",
            f"The NHS number must have 10 digits, but {len(digits)} were entered.",
        )
    if len(set(digits)) == 1:
        # Repeated digits pass Modulus 11 (for any d, the check of ddddddddd is d) but are
        # never issued; they are usually placeholders typed to get past a required field.
        raise ValidationError("nhs_number", "The NHS number cannot be one digit repeated; enter the real number.")
    if nhs_check_digit(digits[:9]) != int(digits[9]):
        raise ValidationError("nhs_number", "The NHS number does not pass the check-digit test; check each digit.")
    return digits


def is_valid_nhs_number(text: str) -> bool:
    """Return True when `text` is a well-formed NHS number with a correct check digit."""
    try:
        normalise_nhs_number(text)
    except ValidationError:
        return False
    return True


def format_nhs_number(digits: str) -> str:
    """Return an NHS number in the 3-3-4 display form, e.g. "943 476 5919"."""
    d = normalise_nhs_number(digits)
    return f"{d[:3]} {d[3:6]} {d[6:]}"
