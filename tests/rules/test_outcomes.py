"""Tests for sprx_rules.outcomes: instrument data, scoring, bands, change and improvement."""

from __future__ import annotations

import dataclasses
import itertools
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sprx_rules.outcomes import (
    HEALTH_USE,
    IMPROVEMENT_DEFINITIONS,
    INSTRUMENTS,
    ONS4,
    REPORTED_FIGURES,
    SWEMWBS,
    SWEMWBS_METRIC,
    TIME_POINTS,
    UCLA3,
    Instrument,
    OutcomeScore,
    change,
    figures_from_score,
    get_instrument,
    improved,
    improved_figures,
    ons4_band,
    score,
)
from sprx_rules.validate import ValidationError

# Copied a second time from domain-standards.md section 6.3, as an independent check on the
# module's table (rows laid out as in the reference: three raw/metric columns).
REFERENCE_SWEMWBS_TABLE = """
| 7 | 7.00 | 17 | 16.88 | 27 | 24.11 |
| 8 | 9.51 | 18 | 17.43 | 28 | 25.03 |
| 9 | 11.25 | 19 | 17.98 | 29 | 26.02 |
| 10 | 12.40 | 20 | 18.59 | 30 | 27.03 |
| 11 | 13.33 | 21 | 19.25 | 31 | 28.13 |
| 12 | 14.08 | 22 | 19.98 | 32 | 29.31 |
| 13 | 14.75 | 23 | 20.73 | 33 | 30.70 |
| 14 | 15.32 | 24 | 21.54 | 34 | 32.55 |
| 15 | 15.84 | 25 | 22.35 | 35 | 35.00 |
| 16 | 16.36 | 26 | 23.21 | | |
"""


def _reference_table() -> dict[int, str]:
    table: dict[int, str] = {}
    for line in REFERENCE_SWEMWBS_TABLE.strip().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        for raw, metric in zip(cells[0::2], cells[1::2], strict=True):
            if raw:
                table[int(raw)] = metric
    return table


SWEMWBS_COPYRIGHT = (
    "Short Warwick Edinburgh Mental Wellbeing Scale (SWEMWBS) © NHS Health Scotland, "
    "University of Warwick and University of Edinburgh, 2008, all rights reserved."
)


def responses(instrument: Instrument, values: list[int]) -> dict[str, int | None]:
    return dict(zip(instrument.item_ids, values, strict=True))


# ------------------------------------------------------------------ instrument data


def test_no_ui_libraries_imported() -> None:
    # The core must stay importable without the TUI extras; check in a fresh interpreter.
    code = (
        "import sys, sprx_rules.outcomes, sprx_rules.validate; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich')))"
    )
    # Run from the repository root so the package imports whether or not it is installed.
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "[]"


def test_time_points() -> None:
    assert TIME_POINTS == ("baseline", "review", "discharge")
    assert HEALTH_USE.time_points == ("baseline", "discharge")
    assert ONS4.time_points == TIME_POINTS


def test_instruments_registry() -> None:
    assert set(INSTRUMENTS) == {"ONS4", "UCLA3", "SWEMWBS", "HEALTH_USE"}
    assert get_instrument("UCLA3") is UCLA3
    with pytest.raises(ValueError, match="not known"):
        get_instrument("MYCAW")
    assert set(IMPROVEMENT_DEFINITIONS) == set(INSTRUMENTS)
    assert all(d.endswith(".") for d in IMPROVEMENT_DEFINITIONS.values())


def test_ons4_exact_wording() -> None:
    texts = [it.text for it in ONS4.items]
    assert texts == [
        "Overall, how satisfied are you with your life nowadays?",
        "Overall, to what extent do you feel that the things you do in your life are worthwhile?",
        "Overall, how happy did you feel yesterday?",
        "On a scale where nought is 'not at all anxious' and 10 is 'completely anxious', overall,"
        " how anxious did you feel yesterday?",
    ]
    assert ONS4.instructions.startswith("Next I would like to ask you four questions")
    assert ONS4.instructions.endswith("where nought is 'not at all' and 10 is 'completely'.")
    for it in ONS4.items:
        assert [o.value for o in it.options] == list(range(11))
        assert (it.min_value, it.max_value) == (0, 10)
    assert ONS4.item("anxiety").options[0].label == "Not at all anxious"
    assert ONS4.item("happiness").options[10].label == "Completely happy"


def test_ucla3_exact_wording() -> None:
    assert [it.text for it in UCLA3.items] == [
        "How often do you feel that you lack companionship?",
        "How often do you feel left out?",
        "How often do you feel isolated from others?",
    ]
    for it in UCLA3.items:
        assert [(o.value, o.label) for o in it.options] == [
            (1, "Hardly ever"),
            (2, "Some of the time"),
            (3, "Often"),
        ]


def test_swemwbs_exact_wording_and_copyright() -> None:
    assert [it.text for it in SWEMWBS.items] == [
        "I've been feeling optimistic about the future",
        "I've been feeling useful",
        "I've been feeling relaxed",
        "I've been dealing with problems well",
        "I've been thinking clearly",
        "I've been feeling close to other people",
        "I've been able to make up my own mind about things",
    ]
    assert SWEMWBS.instructions == (
        "Below are some statements about feelings and thoughts. Please tick the box that best "
        "describes your experience of each over the last 2 weeks."
    )
    for it in SWEMWBS.items:
        assert [(o.value, o.label) for o in it.options] == [
            (1, "None of the time"),
            (2, "Rarely"),
            (3, "Some of the time"),
            (4, "Often"),
            (5, "All of the time"),
        ]
    assert SWEMWBS.copyright == SWEMWBS_COPYRIGHT


def test_only_swemwbs_carries_a_copyright_line_but_all_have_attribution() -> None:
    for inst in INSTRUMENTS.values():
        assert inst.attribution
        assert (inst.copyright is not None) == (inst is SWEMWBS)


def test_health_use_items() -> None:
    assert HEALTH_USE.item_ids == ("gp_appointments", "ae_attendances")
    for it in HEALTH_USE.items:
        assert (it.min_value, it.max_value) == (0, 99)
        assert "3 months" in it.text


def test_item_ids_unique() -> None:
    for inst in INSTRUMENTS.values():
        assert len(set(inst.item_ids)) == len(inst.items)
    with pytest.raises(KeyError):
        ONS4.item("nope")


# ------------------------------------------------------------------ SWEMWBS table


def test_reference_table_has_every_raw_score() -> None:
    assert sorted(_reference_table()) == list(range(7, 36))


@pytest.mark.parametrize("raw", range(7, 36))
def test_swemwbs_table_matches_reference(raw: int) -> None:
    assert f"{SWEMWBS_METRIC[raw]:.2f}" == _reference_table()[raw]


def test_swemwbs_table_is_exactly_7_to_35_and_increasing() -> None:
    assert sorted(SWEMWBS_METRIC) == list(range(7, 36))
    values = [SWEMWBS_METRIC[r] for r in range(7, 36)]
    assert values == sorted(values) and len(set(values)) == len(values)


@pytest.mark.parametrize("raw", range(7, 36))
def test_every_raw_score_reachable_through_score(raw: int) -> None:
    # Spread `raw` over 7 items of 1-5 and score it.
    values, remaining = [1] * 7, raw - 7
    for i in range(7):
        step = min(4, remaining)
        values[i] += step
        remaining -= step
    assert sum(values) == raw
    result = score("SWEMWBS", responses(SWEMWBS, values))
    assert result.total == raw
    assert f"{result.metric:.2f}" == _reference_table()[raw]


# ------------------------------------------------------------------ hand-worked examples


def test_ons4_hand_example() -> None:
    result = score("ONS4", responses(ONS4, [7, 5, 9, 6]))
    assert result.complete and result.missing == []
    assert result.items == {"life_satisfaction": 7, "worthwhile": 5, "happiness": 9, "anxiety": 6}
    assert result.bands == {
        "life_satisfaction": "high",
        "worthwhile": "medium",
        "happiness": "very high",
        "anxiety": "high",
    }
    # No composite score for ONS4.
    assert result.total is None and result.metric is None
    assert result.figures() == result.items


@pytest.mark.parametrize(
    ("value", "positive", "anxiety"),
    [
        (0, "low", "very low"),
        (1, "low", "very low"),
        (2, "low", "low"),
        (3, "low", "low"),
        (4, "low", "medium"),
        (5, "medium", "medium"),
        (6, "medium", "high"),
        (7, "high", "high"),
        (8, "high", "high"),
        (9, "very high", "high"),
        (10, "very high", "high"),
    ],
)
def test_ons4_bands(value: int, positive: str, anxiety: str) -> None:
    for item_id in ("life_satisfaction", "worthwhile", "happiness"):
        assert ons4_band(item_id, value) == positive
    assert ons4_band("anxiety", value) == anxiety


def test_ons4_partial_keeps_item_bands_but_is_incomplete() -> None:
    result = score("ONS4", {"life_satisfaction": 3, "anxiety": None})
    assert not result.complete
    assert result.missing == ["worthwhile", "happiness", "anxiety"]
    assert result.bands == {"life_satisfaction": "low"}


def test_ucla3_hand_example() -> None:
    result = score("UCLA3", responses(UCLA3, [2, 1, 3]))
    assert result.complete
    assert result.total == 6
    assert result.bands == {"total": "lonely"}
    assert score("UCLA3", responses(UCLA3, [1, 1, 3])).bands == {"total": "not lonely"}
    assert score("UCLA3", responses(UCLA3, [1, 1, 1])).total == 3
    assert score("UCLA3", responses(UCLA3, [3, 3, 3])).total == 9


def test_swemwbs_hand_example() -> None:
    # 3 + 4 + 2 + 3 + 4 + 3 + 4 = 23 raw, 20.73 metric.
    result = score("SWEMWBS", responses(SWEMWBS, [3, 4, 2, 3, 4, 3, 4]))
    assert result.complete
    assert result.total == 23
    assert result.metric == 20.73
    assert result.figures() == {"raw": 23, "metric": 20.73}


def test_health_use_hand_example() -> None:
    result = score("HEALTH_USE", {"gp_appointments": 4, "ae_attendances": 0})
    assert result.complete
    assert result.items == {"gp_appointments": 4, "ae_attendances": 0}
    assert result.total is None
    assert score("HEALTH_USE", {"gp_appointments": 99, "ae_attendances": 99}).complete


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("code", "item", "value"),
    [
        ("ONS4", "happiness", 11),
        ("ONS4", "anxiety", -1),
        ("UCLA3", "left_out", 0),
        ("UCLA3", "left_out", 4),
        ("SWEMWBS", "useful", 0),
        ("SWEMWBS", "useful", 6),
        ("HEALTH_USE", "gp_appointments", 100),
        ("HEALTH_USE", "ae_attendances", -1),
    ],
)
def test_out_of_range_rejected(code: str, item: str, value: int) -> None:
    with pytest.raises(ValueError, match="must be between") as info:
        score(code, {item: value})
    assert isinstance(info.value, ValidationError)
    assert info.value.field == item


@pytest.mark.parametrize("value", [2.5, "3", True])
def test_non_integer_answers_rejected(value: object) -> None:
    with pytest.raises(ValueError, match="whole number"):
        score("UCLA3", {"left_out": value})  # type: ignore[dict-item]


def test_unknown_item_and_instrument_rejected() -> None:
    with pytest.raises(ValueError, match="no question called 'lonely'"):
        score("UCLA3", {"lonely": 2})
    with pytest.raises(ValueError, match="not known"):
        score("WEMWBS", {})


# ------------------------------------------------------------------ properties


def complete_responses(instrument: Instrument) -> st.SearchStrategy[dict[str, int]]:
    return st.fixed_dictionaries({it.id: st.integers(it.min_value, it.max_value) for it in instrument.items})


def partial_responses(instrument: Instrument) -> st.SearchStrategy[dict[str, int | None]]:
    # At least one item missing (absent or None); the rest answered in range.
    def build(answers: dict[str, int], drop: list[str], as_none: bool) -> dict[str, int | None]:
        out: dict[str, int | None] = dict(answers)
        for k in drop:
            if as_none:
                out[k] = None
            else:
                del out[k]
        return out

    return st.builds(
        build,
        complete_responses(instrument),
        st.lists(st.sampled_from(instrument.item_ids), min_size=1, unique=True),
        st.booleans(),
    )


@given(complete_responses(ONS4))
def test_ons4_complete_in_range(r: dict[str, int]) -> None:
    result = score("ONS4", r)
    assert result.complete and result.total is None
    assert set(result.bands) == set(ONS4.item_ids)


@given(complete_responses(UCLA3))
def test_ucla3_total_in_range(r: dict[str, int]) -> None:
    result = score("UCLA3", r)
    assert result.complete
    assert result.total == sum(r.values())
    assert 3 <= result.total <= 9


@given(complete_responses(SWEMWBS))
def test_swemwbs_scores_in_range(r: dict[str, int]) -> None:
    result = score("SWEMWBS", r)
    assert result.complete and result.total is not None and result.metric is not None
    assert 7 <= result.total <= 35
    assert 7.0 <= result.metric <= 35.0
    assert f"{result.metric:.2f}" == _reference_table()[result.total]


@given(complete_responses(HEALTH_USE))
def test_health_use_counts_in_range(r: dict[str, int]) -> None:
    result = score("HEALTH_USE", r)
    assert result.complete and result.items == r


@pytest.mark.parametrize("inst", list(INSTRUMENTS.values()), ids=list(INSTRUMENTS))
@given(data=st.data())
def test_missing_items_never_scored(inst: Instrument, data: st.DataObject) -> None:
    r = data.draw(partial_responses(inst))
    result = score(inst.code, r)
    assert not result.complete
    assert result.total is None and result.metric is None
    assert set(result.missing) == {k for k in inst.item_ids if r.get(k) is None}
    assert "total" not in result.bands


@pytest.mark.parametrize("inst", list(INSTRUMENTS.values()), ids=list(INSTRUMENTS))
@given(data=st.data())
def test_any_out_of_range_value_rejected(inst: Instrument, data: st.DataObject) -> None:
    r: dict[str, int | None] = dict(data.draw(complete_responses(inst)))
    item = data.draw(st.sampled_from(inst.items))
    r[item.id] = data.draw(
        st.one_of(st.integers(max_value=item.min_value - 1), st.integers(min_value=item.max_value + 1))
    )
    with pytest.raises(ValidationError):
        score(inst.code, r)


@given(complete_responses(UCLA3), complete_responses(UCLA3))
def test_ucla3_improvement_matches_total_drop(a: dict[str, int], b: dict[str, int]) -> None:
    base, later = score("UCLA3", a), score("UCLA3", b)
    assert change("UCLA3", base, later) == {"total": sum(b.values()) - sum(a.values())}
    assert improved("UCLA3", base, later) == {"total": sum(b.values()) < sum(a.values())}


@given(complete_responses(SWEMWBS), complete_responses(SWEMWBS))
def test_swemwbs_change_is_antisymmetric(a: dict[str, int], b: dict[str, int]) -> None:
    sa, sb = score("SWEMWBS", a), score("SWEMWBS", b)
    forward, backward = change("SWEMWBS", sa, sb), change("SWEMWBS", sb, sa)
    assert forward["raw"] == -backward["raw"]  # type: ignore[operator]
    assert forward["metric"] == -backward["metric"]  # type: ignore[operator]
    # Improvement both ways at once is impossible.
    assert not (improved("SWEMWBS", sa, sb)["metric"] and improved("SWEMWBS", sb, sa)["metric"])


# ------------------------------------------------------------------ change and improvement


def test_ons4_improvement_per_item() -> None:
    base = score("ONS4", responses(ONS4, [4, 5, 5, 7]))
    later = score("ONS4", responses(ONS4, [5, 5, 4, 6]))
    assert change("ONS4", base, later) == {
        "life_satisfaction": 1,
        "worthwhile": 0,
        "happiness": -1,
        "anxiety": -1,
    }
    assert improved("ONS4", base, later) == {
        "life_satisfaction": True,
        "worthwhile": False,
        "happiness": False,
        "anxiety": True,  # anxiety falling is an improvement
    }
    worse_anxiety = score("ONS4", responses(ONS4, [4, 5, 5, 8]))
    assert improved("ONS4", base, worse_anxiety)["anxiety"] is False


def test_ons4_missing_item_gives_none_for_that_item_only() -> None:
    base = score("ONS4", {"life_satisfaction": 4, "worthwhile": 5, "happiness": 5})
    later = score("ONS4", responses(ONS4, [6, 5, 5, 2]))
    assert improved("ONS4", base, later) == {
        "life_satisfaction": True,
        "worthwhile": False,
        "happiness": False,
        "anxiety": None,
    }
    assert change("ONS4", base, later)["anxiety"] is None


def test_ucla3_improvement() -> None:
    base = score("UCLA3", responses(UCLA3, [3, 2, 3]))  # 8
    assert improved("UCLA3", base, score("UCLA3", responses(UCLA3, [2, 2, 3]))) == {"total": True}
    assert improved("UCLA3", base, score("UCLA3", responses(UCLA3, [3, 2, 3]))) == {"total": False}
    incomplete = score("UCLA3", {"companionship": 1})
    assert improved("UCLA3", base, incomplete) == {"total": None}
    assert improved("UCLA3", incomplete, base) == {"total": None}
    assert change("UCLA3", base, incomplete) == {"total": None}


def test_swemwbs_improvement_threshold() -> None:
    base = score("SWEMWBS", responses(SWEMWBS, [3, 3, 3, 3, 3, 3, 3]))  # 21 -> 19.25
    plus3 = score("SWEMWBS", responses(SWEMWBS, [4, 4, 4, 3, 3, 3, 3]))  # 24 -> 21.54
    plus4 = score("SWEMWBS", responses(SWEMWBS, [4, 4, 4, 4, 3, 3, 3]))  # 25 -> 22.35
    assert change("SWEMWBS", base, plus3) == {"raw": 3, "metric": 2.29}
    assert improved("SWEMWBS", base, plus3) == {"metric": False}  # 2.29 < 3
    assert change("SWEMWBS", base, plus4) == {"raw": 4, "metric": 3.10}
    assert improved("SWEMWBS", base, plus4) == {"metric": True}
    missing = score("SWEMWBS", {"useful": 5})
    assert improved("SWEMWBS", base, missing) == {"metric": None}
    assert change("SWEMWBS", missing, plus4) == {"raw": None, "metric": None}


def test_health_use_change() -> None:
    base = score("HEALTH_USE", {"gp_appointments": 6, "ae_attendances": 1})
    later = score("HEALTH_USE", {"gp_appointments": 2, "ae_attendances": 1})
    assert change("HEALTH_USE", base, later) == {"gp_appointments": -4, "ae_attendances": 0}
    assert improved("HEALTH_USE", base, later) == {"gp_appointments": True, "ae_attendances": False}


def test_mismatched_instruments_rejected() -> None:
    a = score("UCLA3", responses(UCLA3, [1, 1, 1]))
    b = score("SWEMWBS", responses(SWEMWBS, [1] * 7))
    with pytest.raises(ValueError, match="Both scores must be UCLA3"):
        improved("UCLA3", a, b)
    with pytest.raises(ValueError):
        change("SWEMWBS", a, b)


def test_outcome_score_is_plain_data() -> None:
    s = OutcomeScore(instrument="UCLA3", complete=False, missing=["left_out"], items={})
    assert s.total is None and s.bands == {}


# ------------------------------------------------------------------ stored scores (the server's view)


def _answer_sets(code: str) -> list[dict[str, int | None]]:
    inst = INSTRUMENTS[code]
    lo, hi = inst.items[0].min_value, min(inst.items[0].max_value, inst.items[0].min_value + 3)
    full = [
        dict(zip(inst.item_ids, v, strict=True)) for v in itertools.product(range(lo, hi + 1), repeat=len(inst.items))
    ]
    return full[:: max(1, len(full) // 40)] + [{inst.item_ids[0]: lo}]  # and one incomplete


@pytest.mark.parametrize("code", list(INSTRUMENTS))
def test_a_stored_score_gives_the_same_figures_and_improvement(code: str) -> None:
    """The server reads scores as JSON dicts synced from laptops; they must judge as the scores do."""
    scored = [score(code, a) for a in _answer_sets(code)]
    for s in scored:
        stored = dataclasses.asdict(s)
        assert figures_from_score(code, stored) == s.figures()
    for before, after in itertools.product(scored[:12], repeat=2):
        b, a = figures_from_score(code, dataclasses.asdict(before)), figures_from_score(code, dataclasses.asdict(after))
        assert improved_figures(code, b, a) == improved(code, before, after)
        assert set(improved(code, before, after)) == {name for name, _label in REPORTED_FIGURES[code]}
