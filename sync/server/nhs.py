"""NHS number check (Modulus 11), kept here because sync must not import sprx_tui."""

from __future__ import annotations


def normalise_nhs(raw: str) -> str:
    """Digits only: '943 476 5919' -> '9434765919'."""
    return "".join(ch for ch in raw if ch.isdigit())


def valid_nhs(raw: str) -> bool:
    """True for a 10-digit NHS number whose check digit passes Modulus 11."""
    d = normalise_nhs(raw)
    if len(d) != 10 or len(raw.replace(" ", "").replace("-", "")) != 10:
        return False
    total = sum(int(ch) * w for ch, w in zip(d[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        check = 0
    return check != 10 and check == int(d[9])
