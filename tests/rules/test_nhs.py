"""Tests for sprx_rules.nhs: the NHS number (Modulus 11), on hand examples and properties.

The laptop's forms and the server's referral import both use this one implementation.
"""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from sprx_rules.nhs import format_nhs_number, is_valid_nhs_number, nhs_check_digit, normalise_nhs_number
from sprx_rules.validate import ValidationError


def reference_mod11_valid(number: str) -> bool:
    """Independent Modulus 11 check, written differently from the module under test.

    Walks the first nine digits from the right with weights 2, 3, ... 10 and compares the
    remainder condition directly: valid when (sum + check digit) is divisible by 11, which is
    equivalent to check = 11 - (sum mod 11) with 11 -> 0, and excludes a would-be check of 10
    because no single digit can satisfy it.
    """
    if len(number) != 10 or any(c not in "0123456789" for c in number):
        return False
    weighted = 0
    weight = 2
    for ch in reversed(number[:9]):
        weighted += weight * (ord(ch) - ord("0"))
        weight += 1
    return (weighted + (ord(number[9]) - ord("0"))) % 11 == 0


# ------------------------------------------------------------------ NHS number, hand examples


@pytest.mark.parametrize(
    "text",
    ["9434765919", "9449305552", "943 476 5919", "943-476-5919", "  944 930 5552  ", "943 4765919"],
)
def test_valid_nhs_numbers(text: str) -> None:
    assert is_valid_nhs_number(text)
    assert len(normalise_nhs_number(text)) == 10


def test_normalise_returns_digits_only() -> None:
    assert normalise_nhs_number("943 476 5919") == "9434765919"
    assert normalise_nhs_number("943-476-5919") == "9434765919"


def test_format_nhs_number() -> None:
    assert format_nhs_number("9434765919") == "943 476 5919"
    assert format_nhs_number("944-930-5552") == "944 930 5552"


def test_reference_worked_examples() -> None:
    # domain-standards 3.5: weighted sums 299 and 284.
    assert nhs_check_digit("943476591") == 9
    assert nhs_check_digit("944930555") == 2


def test_wrong_check_digit_rejected() -> None:
    with pytest.raises(ValidationError) as info:
        normalise_nhs_number("9434765918")
    assert info.value.field == "nhs_number"
    assert "check-digit" in str(info.value)
    # The message must not echo the number (messages may be logged).
    assert "943" not in str(info.value)


@pytest.mark.parametrize("last", "0123456789")
def test_check_value_ten_rejected(last: str) -> None:
    # 1*10 + 1*2 = 12; 12 mod 11 = 1; 11 - 1 = 10, so no tenth digit can make it valid.
    assert nhs_check_digit("100000001") is None
    assert not is_valid_nhs_number("100000001" + last)


@pytest.mark.parametrize("digit", "0123456789")
def test_repeated_digits_rejected(digit: str) -> None:
    number = digit * 10
    # They do pass Modulus 11, which is why a separate rule is needed.
    assert reference_mod11_valid(number)
    with pytest.raises(ValidationError, match="repeated"):
        normalise_nhs_number(number)


def test_distinct_messages_for_distinct_problems() -> None:
    messages = {}
    for text in ["", "94347659l9", "943476591", "94347659190", "1111111111", "9434765918"]:
        with pytest.raises(ValidationError) as info:
            normalise_nhs_number(text)
        assert info.value.field == "nhs_number"
        assert "NHS number" in info.value.message
        assert info.value.message.endswith(".")
        messages[text] = info.value.message
    assert "only digits" in messages["94347659l9"]
    assert "10 digits" in messages["943476591"] and "9 were" in messages["943476591"]
    assert "11 were" in messages["94347659190"]
    # Empty, letters, length, repeated and check digit each get their own sentence.
    assert len({messages[t] for t in ["", "94347659l9", "943476591", "1111111111", "9434765918"]}) == 5


@pytest.mark.parametrize("text", ["ABC 476 5919", "943.476.5919", "943/476/5919", "９４３４７６５９１９"])
def test_non_digit_characters_rejected(text: str) -> None:
    assert not is_valid_nhs_number(text)


# ------------------------------------------------------------------ NHS number, properties

nine_digits = st.text(alphabet="0123456789", min_size=9, max_size=9)
ten_digits = st.text(alphabet="0123456789", min_size=10, max_size=10)


@given(ten_digits)
def test_agrees_with_independent_mod11(number: str) -> None:
    expected = reference_mod11_valid(number) and len(set(number)) > 1
    assert is_valid_nhs_number(number) is expected


@given(nine_digits)
def test_check_digit_makes_valid_number(first: str) -> None:
    check = nhs_check_digit(first)
    if check is None:
        assert not any(reference_mod11_valid(first + d) for d in "0123456789")
    else:
        assert reference_mod11_valid(first + str(check))
        # Exactly one tenth digit works.
        assert sum(reference_mod11_valid(first + d) for d in "0123456789") == 1


@given(nine_digits)
def test_single_digit_change_is_always_detected(first: str) -> None:
    check = nhs_check_digit(first)
    assume(check is not None)
    number = first + str(check)
    for i in range(10):
        for d in "0123456789":
            if d != number[i]:
                assert not reference_mod11_valid(number[:i] + d + number[i + 1 :])


@given(nine_digits, st.sampled_from([" ", "-", "  ", ""]))
def test_format_normalise_round_trip(first: str, sep: str) -> None:
    check = nhs_check_digit(first)
    assume(check is not None and len(set(first + str(check))) > 1)
    number = first + str(check)
    shown = format_nhs_number(number)
    assert shown == f"{number[:3]} {number[3:6]} {number[6:]}"
    assert normalise_nhs_number(shown) == number
    assert normalise_nhs_number(sep.join([number[:3], number[3:6], number[6:]])) == number
    assert format_nhs_number(shown) == shown


@given(st.text(max_size=20))
def test_never_crashes_on_arbitrary_text(text: str) -> None:
    try:
        result = normalise_nhs_number(text)
    except ValidationError as exc:
        assert exc.field == "nhs_number"
    else:
        assert reference_mod11_valid(result)


def test_the_server_import_examples() -> None:
    """The cases the server's own copy was tested with, before it was replaced by this module."""
    assert is_valid_nhs_number("9434765919") and is_valid_nhs_number("943 476 5919")
    assert not is_valid_nhs_number("9434765918")
    assert not is_valid_nhs_number("123") and not is_valid_nhs_number("94347659199")
