"""Tests for sprx_rules.validate: postcode, dates, phone, email, text, forms (NHS number: test_nhs.py)."""

from __future__ import annotations

import datetime as dt
import pickle
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sprx_rules.nhs import normalise_nhs_number
from sprx_rules.validate import (
    ValidationError,
    collect_errors,
    field_label,
    format_phone,
    normalise_phone,
    normalise_postcode,
    parse_birth_date,
    parse_date,
    validate_birth_date,
    validate_email,
    validate_form,
    validate_not_future,
    validate_text,
)

TODAY = dt.date(2026, 5, 14)


# ------------------------------------------------------------------ Postcode


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("LS1 4AP", "LS1 4AP"),
        ("ls14ap", "LS1 4AP"),
        ("  ls1   4ap ", "LS1 4AP"),
        ("SW1A 1AA", "SW1A 1AA"),
        ("sw1a1aa", "SW1A 1AA"),
        ("W1A 0AX", "W1A 0AX"),
        ("EC1A 1BB", "EC1A 1BB"),
        ("M1 1AE", "M1 1AE"),
        ("B33 8TH", "B33 8TH"),
        ("CR2 6XH", "CR2 6XH"),
        ("DN55 1PT", "DN55 1PT"),
        ("gir0aa", "GIR 0AA"),
        ("GIR 0AA", "GIR 0AA"),
    ],
)
def test_valid_postcodes(text: str, expected: str) -> None:
    assert normalise_postcode(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "LS1",
        "LS1 4A",
        "12345",
        "LS1 4A1",
        "LSS1 4AP",
        "LI1 1AA",
        "LS1-4AP",
        "LS1 4AP X",
        "Q",
    ],
)
def test_invalid_postcodes(text: str) -> None:
    with pytest.raises(ValidationError) as info:
        normalise_postcode(text)
    assert info.value.field == "postcode"
    assert "postcode" in info.value.message


@given(st.text(max_size=12))
def test_postcode_result_is_canonical(text: str) -> None:
    try:
        result = normalise_postcode(text)
    except ValidationError:
        return
    assert result == result.upper().strip()
    assert result.count(" ") == 1 and len(result.split(" ")[1]) == 3
    assert normalise_postcode(result) == result


# ------------------------------------------------------------------ Dates


@pytest.mark.parametrize("text", ["2026-11-22", "22/11/2026", "22-11-2026", " 22/11/2026 ", "22.11.2026"])
def test_parse_date_formats(text: str) -> None:
    assert parse_date(text, "received_date") == dt.date(2026, 11, 22)


def test_parse_date_single_digit_day_month() -> None:
    assert parse_date("1/2/2026", "received_date") == dt.date(2026, 2, 1)
    assert parse_date("2026-2-1", "received_date") == dt.date(2026, 2, 1)


def test_uk_format_is_day_first() -> None:
    assert parse_date("03/04/2026", "x") == dt.date(2026, 4, 3)


@pytest.mark.parametrize("text", ["garbage", "2026/11/22x", "11/22/2026", "31/02/2026", "", "22/11-2026"])
def test_parse_date_failures_name_the_field(text: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_date(text, "date_of_birth")
    assert info.value.field == "date_of_birth"
    assert info.value.message.startswith("Date of birth ")


def test_two_digit_year_asks_for_four() -> None:
    with pytest.raises(ValidationError, match="four-digit year"):
        parse_date("22/11/26", "received_date")


def test_not_real_date_message() -> None:
    with pytest.raises(ValidationError, match="not a real calendar date"):
        parse_date("31/02/2026", "follow_up_date")


def test_field_label() -> None:
    assert field_label("date_of_birth") == "Date of birth"
    assert field_label("follow_up_date") == "Follow up date"
    assert field_label("") == "This field"


def test_birth_date_future_refused() -> None:
    with pytest.raises(ValidationError, match="future") as info:
        validate_birth_date(TODAY + dt.timedelta(days=1), TODAY)
    assert info.value.field == "date_of_birth"
    with pytest.raises(ValidationError, match="future"):
        parse_birth_date("15/05/2026", TODAY)


def test_birth_date_bounds() -> None:
    assert validate_birth_date(TODAY, TODAY) == TODAY
    assert validate_birth_date(dt.date(1906, 5, 14), TODAY) == dt.date(1906, 5, 14)
    with pytest.raises(ValidationError, match="120 years"):
        validate_birth_date(dt.date(1906, 5, 13), TODAY)
    assert parse_birth_date("22/11/1950", TODAY) == dt.date(1950, 11, 22)


def test_birth_date_on_leap_day() -> None:
    # 1900 was not a leap year, so "120 years before 29 February 2020" falls back to 28 February.
    leap_today = dt.date(2020, 2, 29)
    assert validate_birth_date(dt.date(1900, 2, 28), leap_today)
    with pytest.raises(ValidationError):
        validate_birth_date(dt.date(1900, 2, 27), leap_today)


def test_validate_not_future() -> None:
    assert validate_not_future(TODAY, TODAY, "contact_date") == TODAY
    with pytest.raises(ValidationError) as info:
        validate_not_future(TODAY + dt.timedelta(days=1), TODAY, "contact_date")
    assert info.value.field == "contact_date"
    assert info.value.message == "Contact date cannot be in the future."


@given(st.dates(min_value=dt.date(1000, 1, 1)))
def test_date_formats_round_trip(d: dt.date) -> None:
    assert parse_date(d.isoformat(), "d") == d
    assert parse_date(d.strftime("%d/%m/%Y"), "d") == d
    assert parse_date(d.strftime("%d-%m-%Y"), "d") == d


# ------------------------------------------------------------------ Phone


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("07700 900123", "+447700900123"),
        ("07700-900-123", "+447700900123"),
        ("+44 7700 900123", "+447700900123"),
        ("+44 (0)7700 900123", "+447700900123"),
        ("0044 7700 900123", "+447700900123"),
        ("(0113) 496 0000", "+441134960000"),
        ("020 7946 0018", "+442079460018"),
        ("016977 3456", "+44169773456"),  # 10-digit national number
    ],
)
def test_valid_phones(text: str, expected: str) -> None:
    assert normalise_phone(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("07700 90012x", "only digits"),
        ("+1 202 555 0143", "Only UK"),
        ("7700 900123", "starts with 0 or +44"),
        ("0770 090", "10 or 11 digits"),
        ("077009001234", "10 or 11 digits"),
        ("00 7700 900123", "Only UK"),
        ("+44 (0)0113 496 0000", "10 or 11 digits"),
        ("07700+900123", "only digits"),
    ],
)
def test_invalid_phones(text: str, fragment: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(fragment)) as info:
        normalise_phone(text)
    assert info.value.field == "phone"


@given(st.text(alphabet="0123456789", min_size=9, max_size=10).filter(lambda s: s[0] != "0"))
def test_phone_forms_agree(national: str) -> None:
    expected = "+44" + national
    assert normalise_phone("0" + national) == expected
    assert normalise_phone("+44" + national) == expected
    assert normalise_phone("+44 (0)" + national) == expected
    assert normalise_phone(expected) == expected


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("+447700900123", "07700 900123"),
        ("+442079460018", "020 7946 0018"),
        ("+441134960000", "0113 496 0000"),
        ("+441614960000", "0161 496 0000"),
        ("+441632960000", "01632 960000"),
        ("+443069990000", "0306 999 0000"),
        ("+44169773456", "0169773456"),  # 10 digits: not grouped, still dialable
        ("0113 496 0000", "0113 496 0000"),  # not in the stored form (an imported service): as it is
    ],
)
def test_stored_phones_are_shown_as_dialled(stored: str, shown: str) -> None:
    assert format_phone(stored) == shown


@given(st.text(alphabet="0123456789", min_size=9, max_size=10).filter(lambda s: s[0] != "0"))
def test_a_shown_phone_reads_back_as_stored(national: str) -> None:
    stored = normalise_phone("0" + national)
    assert normalise_phone(format_phone(stored)) == stored


# ------------------------------------------------------------------ Email and text


@pytest.mark.parametrize("text", ["a@b.org", " name.surname@nhs.net ", "x+y@sub.example.co.uk"])
def test_valid_emails(text: str) -> None:
    assert validate_email(text) == text.strip()


@pytest.mark.parametrize("text", ["", "a", "a@b", "a@@b.org", "a b@c.org", "a@b..org", "@b.org", "a@.org"])
def test_invalid_emails(text: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate_email(text)
    assert info.value.field == "email"


def test_validate_text() -> None:
    assert validate_text("  Jo  ", "given_name") == "Jo"
    assert validate_text(None, "middle_name", required=False) == ""
    assert validate_text("   ", "middle_name", required=False) == ""
    with pytest.raises(ValidationError, match="Given name is required."):
        validate_text("  ", "given_name")
    with pytest.raises(ValidationError, match="too long"):
        validate_text("x" * 11, "given_name", max_len=10)
    assert validate_text("x" * 10, "given_name", max_len=10) == "x" * 10
    with pytest.raises(ValidationError, match="cannot be stored"):
        validate_text("a\x00b", "given_name")
    with pytest.raises(ValidationError, match="cannot be stored"):
        validate_text("line1\nline2", "given_name")
    assert validate_text("line1\nline2\ttab", "notes", multiline=True) == "line1\nline2\ttab"


# ------------------------------------------------------------------ Errors and forms


def test_validation_error_is_value_error_and_pickles() -> None:
    exc = ValidationError("postcode", "The postcode is empty; enter a UK postcode.")
    assert isinstance(exc, ValueError)
    copy = pickle.loads(pickle.dumps(exc))
    assert (copy.field, copy.message) == (exc.field, exc.message)


def test_collect_errors_reports_every_field() -> None:
    errors = collect_errors(
        [
            lambda: normalise_nhs_number("9434765918"),
            lambda: normalise_postcode("LS1 4AP"),
            lambda: normalise_postcode("nope"),  # second postcode error is dropped
            lambda: normalise_phone("12"),
            lambda: parse_date("tomorrow", "follow_up_date"),
        ]
    )
    assert set(errors) == {"nhs_number", "postcode", "phone", "follow_up_date"}
    assert all(m.endswith(".") for m in errors.values())


def test_collect_errors_does_not_hide_bugs() -> None:
    with pytest.raises(ZeroDivisionError):
        collect_errors([lambda: 1 / 0])


def test_validate_form_returns_values_and_errors() -> None:
    form = {"nhs": "943 476 5919", "postcode": "ls14ap", "dob": "22/11/2030"}
    result = validate_form(
        {
            "nhs": lambda: normalise_nhs_number(form["nhs"]),
            "postcode": lambda: normalise_postcode(form["postcode"]),
            "dob": lambda: parse_birth_date(form["dob"], TODAY),
        }
    )
    assert not result.ok
    assert result.values == {"nhs": "9434765919", "postcode": "LS1 4AP"}
    assert list(result.errors) == ["dob"]
    assert "future" in result.errors["dob"]
    assert validate_form({"a": lambda: 1}).ok
