"""The inbound gate (sprx_rules.gate): which text, types and lengths it refuses, and `visible`."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sprx_rules import gate
from sync import schema

# Adversarial pieces: each is either refused by the gate or harmless text.
NASTY = [
    "\ud800",
    "\udfff",
    "\x00",
    "\x07",
    "\x1b",
    "\x1b]0;PWNED\x07",
    "\x1b]52;c;SGVsbG8=\x07",
    "\x1b[2J",
    "\x1b[31m",
    "\x9b31m",
    "\x85",
    "\x7f",
    "\r",
    "\n",
    "\t",
    "\u202e",
    "\u2066",
    "\u2028",
    "[/bold]",
    "[link=https://example.org]x[/link]",
    "[@click=app.quit]",
    "[red]",
    "👍🏽",
    "👩🏿‍🦱",
    "محمد",
    "שלום",
    "Zoë",
    "O'Brien-Smith",
    " ",
]
adversarial = st.lists(st.sampled_from(NASTY) | st.text(max_size=3), min_size=1, max_size=6).map("".join)

REFUSED_ANYWHERE = ["\ud800", "\x00", "\x1b", "\x07", "\x9b", "\x85", "\x7f", "\r"]
REFUSED_ON_ONE_LINE = ["\n", "\t", "\u202e", "\u2066", "\u2028"]
ACCEPTED = ["Jones [/bold]", "[@click=app.quit]", "محمد علي", "שלום", "Zoë 👍🏽", "👩🏿‍🦱 O'Brien", ""]


def test_the_gate_knows_every_synced_field() -> None:
    assert set(gate.FIELDS) == set(schema.TABLES)
    for name, spec in schema.TABLES.items():
        assert set(gate.FIELDS[name]) == set(spec.fields), name


@pytest.mark.parametrize("bad", REFUSED_ANYWHERE)
def test_refused_in_every_text(bad: str) -> None:
    for text in (gate.Text.LINE, gate.Text.MULTI):
        assert gate.text_problem(f"Evil{bad}name", text) is not None


@pytest.mark.parametrize("bad", REFUSED_ON_ONE_LINE)
def test_refused_on_one_line_but_breaks_and_tabs_kept_in_notes(bad: str) -> None:
    assert gate.text_problem(f"a{bad}b", gate.Text.LINE) is not None
    if bad in "\n\t":
        assert gate.text_problem(f"a{bad}b", gate.Text.MULTI) is None


@pytest.mark.parametrize("good", ACCEPTED)
def test_real_names_pass(good: str) -> None:
    assert gate.check_value("person", "family_name", good) is None
    assert gate.check_value("goal", "text", good + "\nsecond line\tindented") is None


def test_types_lengths_and_nullability() -> None:
    assert gate.check_value("person", "given_name", None) is not None  # must have a value
    assert gate.check_value("person", "preferred_name", None) is None
    assert gate.check_value("person", "given_name", 7) is not None
    assert gate.check_value("person", "given_name", "x" * 201) is not None
    assert gate.check_value("person", "date_of_birth", "1970-02-30") is not None
    assert gate.check_value("person", "date_of_birth", "1970-02-28") is None
    assert gate.check_value("contact", "occurred_at", "2026-01-02T03:04:05+00:00") is None
    assert gate.check_value("contact", "duration_minutes", True) is not None
    assert gate.check_value("person", "safety_flags", ["dog", "x\x1by"]) is not None
    assert gate.check_value("outcome_response", "responses", {"q1": 3, "note\x1b": 1}) is not None
    assert gate.check_value("outcome_response", "responses", {"q1": 3, "q2": [1, 2]}) is None


def test_refusal_sentence_names_table_row_and_field_without_the_value() -> None:
    r = gate.check_mutation(
        {"tbl": "person", "row_id": "r-1", "op": "insert", "fields": {"family_name": {"v": "\x1b]0;PWNED\x07"}}}
    )
    assert r is not None and (r.table, r.row_id, r.field) == ("person", "r-1", "family_name")
    assert r.sentence == "The family name of person r-1 holds a control character (U+001B)."
    assert "PWNED" not in r.sentence


@given(adversarial)
def test_visible_never_leaves_a_control_character(s: str) -> None:
    for multiline in (False, True):
        shown = gate.visible(s, multiline=multiline)
        assert gate.text_problem(shown, gate.Text.MULTI if multiline else gate.Text.LINE, 10**6) is None
        shown.encode("utf-8")  # never raises


def test_fast_path_relies_on_isprintable_being_false_for_every_refused_character() -> None:
    refused = [c for c in range(0x110000) if gate.text_problem(chr(c), gate.Text.LINE) is not None]
    assert len(refused) > 2000  # C0, C1, surrogates, breaks, bidi controls
    assert not [hex(c) for c in refused if chr(c).isprintable()]


def test_fast_and_general_paths_agree() -> None:
    samples: list[Any] = [None, True, 0, 2**40, "", "Ann", "a\nb", "a\x1bb", "\ud800", "x" * 40_000,
                          "2026-01-02", "2026-02-30", "2026-01-02T03:04:05+00:00", "2026-01-02\x1b03:04:05",
                          ["a"], {"q": 1}]  # fmt: skip
    for table, fields in gate.FIELDS.items():
        for field, ft in fields.items():
            for v in samples:
                fast = gate.check_values(table, {field: v}) is None
                assert fast == (gate.value_problem(ft, v) is None), (table, field, v)
