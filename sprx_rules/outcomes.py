"""Outcome instruments (ONS4, UCLA3, SWEMWBS, health use) as data, with scoring, change and improvement.

The laptop scores questionnaires with these; the server judges improvement on the scores laptops
synced (`improved_figures` on figure dicts). Both build their reports from `REPORTED_FIGURES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sprx_rules.validate import ValidationError

__all__ = [
    "HEALTH_USE",
    "IMPROVEMENT_DEFINITIONS",
    "INSTRUMENTS",
    "Instrument",
    "Item",
    "ONS4",
    "ONS4_ANXIETY_BANDS",
    "ONS4_POSITIVE_BANDS",
    "OutcomeScore",
    "REPORTED_FIGURES",
    "ResponseOption",
    "SWEMWBS",
    "SWEMWBS_MEANINGFUL_CHANGE",
    "SWEMWBS_METRIC",
    "TIME_POINTS",
    "UCLA3",
    "UCLA3_LONELY_CUTOFF",
    "change",
    "figures_from_score",
    "get_instrument",
    "improved",
    "improved_figures",
    "ons4_band",
    "score",
]

TIME_POINTS: tuple[str, ...] = ("baseline", "review", "discharge")


@dataclass(frozen=True)
class ResponseOption:
    """One answer a person can give: the stored value and the words shown for it."""

    value: int
    label: str


@dataclass(frozen=True)
class Item:
    """One question. `options` is empty for free numeric answers (counts)."""

    id: str
    label: str  # short name for tables and messages, e.g. "Life satisfaction"
    text: str  # exact question wording
    min_value: int
    max_value: int
    options: tuple[ResponseOption, ...] = ()


@dataclass(frozen=True)
class Instrument:
    """A questionnaire. When `copyright` is set it must be shown wherever the items are."""

    code: str
    title: str
    instructions: str
    items: tuple[Item, ...]
    attribution: str
    copyright: str | None = None
    time_points: tuple[str, ...] = TIME_POINTS

    def item(self, item_id: str) -> Item:
        for it in self.items:
            if it.id == item_id:
                return it
        raise KeyError(item_id)

    @property
    def item_ids(self) -> tuple[str, ...]:
        return tuple(it.id for it in self.items)


def _scale_0_10(low: str, high: str) -> tuple[ResponseOption, ...]:
    # ONS labels only the ends of the scale; the middle points are just numbers.
    return tuple(ResponseOption(v, low if v == 0 else high if v == 10 else str(v)) for v in range(11))


# ----------------------------------------------------------------------------- ONS4

ONS4 = Instrument(
    code="ONS4",
    title="ONS personal well-being (ONS4)",
    instructions=(
        "Next I would like to ask you four questions about your feelings on aspects of your "
        "life. There are no right or wrong answers. For each of these questions I'd like you "
        "to give an answer on a scale of nought to 10, where nought is 'not at all' and 10 is "
        "'completely'."
    ),
    items=(
        Item(
            "life_satisfaction",
            "Life satisfaction",
            "Overall, how satisfied are you with your life nowadays?",
            0,
            10,
            _scale_0_10("Not at all satisfied", "Completely satisfied"),
        ),
        Item(
            "worthwhile",
            "Worthwhile",
            "Overall, to what extent do you feel that the things you do in your life are worthwhile?",
            0,
            10,
            _scale_0_10("Not at all worthwhile", "Completely worthwhile"),
        ),
        Item(
            "happiness",
            "Happiness",
            "Overall, how happy did you feel yesterday?",
            0,
            10,
            _scale_0_10("Not at all happy", "Completely happy"),
        ),
        Item(
            "anxiety",
            "Anxiety",
            "On a scale where nought is 'not at all anxious' and 10 is 'completely anxious', "
            "overall, how anxious did you feel yesterday?",
            0,
            10,
            _scale_0_10("Not at all anxious", "Completely anxious"),
        ),
    ),
    attribution=(
        "ONS personal well-being questions, Office for National Statistics (GSS harmonised "
        "standard). Each item is reported separately; there is no total score."
    ),
)

# ONS thresholds: (lowest score in band, band label), ascending. Anxiety reads the other way
# round (a low score is good), so it has its own bands.
ONS4_POSITIVE_BANDS: tuple[tuple[int, str], ...] = (
    (0, "low"),
    (5, "medium"),
    (7, "high"),
    (9, "very high"),
)
ONS4_ANXIETY_BANDS: tuple[tuple[int, str], ...] = (
    (0, "very low"),
    (2, "low"),
    (4, "medium"),
    (6, "high"),
)


def ons4_band(item_id: str, value: int) -> str:
    """Return the ONS threshold band ("low", "medium", ...) for one ONS4 answer."""
    it = ONS4.item(item_id)
    _check_value(ONS4, it, value)
    bands = ONS4_ANXIETY_BANDS if item_id == "anxiety" else ONS4_POSITIVE_BANDS
    label = bands[0][1]
    for lowest, name in bands:
        if value >= lowest:
            label = name
    return label


# ----------------------------------------------------------------------------- UCLA3

_UCLA3_OPTIONS = (
    ResponseOption(1, "Hardly ever"),
    ResponseOption(2, "Some of the time"),
    ResponseOption(3, "Often"),
)

UCLA3 = Instrument(
    code="UCLA3",
    title="UCLA 3-item Loneliness Scale",
    # The reference gives no stem for this scale; this is our own neutral wording.
    instructions="For each question, choose how often you feel this way.",
    items=(
        Item(
            "companionship",
            "Lack companionship",
            "How often do you feel that you lack companionship?",
            1,
            3,
            _UCLA3_OPTIONS,
        ),
        Item("left_out", "Left out", "How often do you feel left out?", 1, 3, _UCLA3_OPTIONS),
        Item(
            "isolated",
            "Isolated",
            "How often do you feel isolated from others?",
            1,
            3,
            _UCLA3_OPTIONS,
        ),
    ),
    attribution=("UCLA 3-item Loneliness Scale, Hughes et al. (2004). Total 3 to 9; higher means lonelier."),
)

# Research convention (Steptoe et al.), marked unverified in the reference: 6-9 counts as lonely.
UCLA3_LONELY_CUTOFF = 6

# ----------------------------------------------------------------------------- SWEMWBS

_SWEMWBS_OPTIONS = (
    ResponseOption(1, "None of the time"),
    ResponseOption(2, "Rarely"),
    ResponseOption(3, "Some of the time"),
    ResponseOption(4, "Often"),
    ResponseOption(5, "All of the time"),
)


def _swemwbs_item(item_id: str, label: str, text: str) -> Item:
    return Item(item_id, label, text, 1, 5, _SWEMWBS_OPTIONS)


SWEMWBS = Instrument(
    code="SWEMWBS",
    title="Short Warwick-Edinburgh Mental Wellbeing Scale (SWEMWBS)",
    instructions=(
        "Below are some statements about feelings and thoughts. Please tick the box that best "
        "describes your experience of each over the last 2 weeks."
    ),
    items=(
        _swemwbs_item("optimistic", "Optimistic", "I've been feeling optimistic about the future"),
        _swemwbs_item("useful", "Useful", "I've been feeling useful"),
        _swemwbs_item("relaxed", "Relaxed", "I've been feeling relaxed"),
        _swemwbs_item("problems", "Dealing with problems", "I've been dealing with problems well"),
        _swemwbs_item("thinking", "Thinking clearly", "I've been thinking clearly"),
        _swemwbs_item("close", "Close to others", "I've been feeling close to other people"),
        _swemwbs_item("own_mind", "Own mind", "I've been able to make up my own mind about things"),
    ),
    attribution=(
        "SWEMWBS: the raw score (7 to 35) is converted to a metric score with Warwick's "
        "published table. Use requires registration with Warwick Medical School."
    ),
    copyright=(
        "Short Warwick Edinburgh Mental Wellbeing Scale (SWEMWBS) © NHS Health Scotland, "
        "University of Warwick and University of Edinburgh, 2008, all rights reserved."
    ),
)

# Raw score -> metric score, Warwick's conversion table as given in domain-standards.md 6.3.
# Re-verify against the official table received on licence registration.
SWEMWBS_METRIC: Mapping[int, float] = MappingProxyType(
    {
        7: 7.00,
        8: 9.51,
        9: 11.25,
        10: 12.40,
        11: 13.33,
        12: 14.08,
        13: 14.75,
        14: 15.32,
        15: 15.84,
        16: 16.36,
        17: 16.88,
        18: 17.43,
        19: 17.98,
        20: 18.59,
        21: 19.25,
        22: 19.98,
        23: 20.73,
        24: 21.54,
        25: 22.35,
        26: 23.21,
        27: 24.11,
        28: 25.03,
        29: 26.02,
        30: 27.03,
        31: 28.13,
        32: 29.31,
        33: 30.70,
        34: 32.55,
        35: 35.00,
    }
)

# The reference leaves the meaningful-change threshold unverified. Shah et al. 2018 (Health Qual
# Life Outcomes 16:239) found 1 to 3 metric points marks statistically important individual
# change depending on the standard; we use the strict end so "improved" is not overstated.
SWEMWBS_MEANINGFUL_CHANGE = 3.0

# ----------------------------------------------------------------------------- Health use

HEALTH_USE = Instrument(
    code="HEALTH_USE",
    title="Health service use (self-reported)",
    instructions="Thinking about the last 3 months, please give your best estimate.",
    items=(
        Item(
            "gp_appointments",
            "GP appointments",
            "In the last 3 months, how many GP appointments have you had?",
            0,
            99,
        ),
        Item(
            "ae_attendances",
            "A&E attendances",
            "In the last 3 months, how many times have you gone to A&E?",
            0,
            99,
        ),
    ),
    attribution="Local self-reported questions, not a validated instrument.",
    # Asked at the start and the end only, per the design.
    time_points=("baseline", "discharge"),
)

INSTRUMENTS: Mapping[str, Instrument] = MappingProxyType({i.code: i for i in (ONS4, UCLA3, SWEMWBS, HEALTH_USE)})

IMPROVEMENT_DEFINITIONS: Mapping[str, str] = MappingProxyType(
    {
        "ONS4": (
            "Each item is judged on its own: life satisfaction, worthwhile and happiness "
            "improve when they rise by 1 point or more, and anxiety improves when it falls by "
            "1 point or more."
        ),
        "UCLA3": "Loneliness improves when the total score falls by 1 point or more.",
        "SWEMWBS": (
            "Wellbeing improves when the metric score rises by 3 points or more, the strict end "
            "of the 1 to 3 point range for meaningful individual change (Shah et al. 2018)."
        ),
        "HEALTH_USE": (
            "Each count is judged on its own: use is reduced when there are fewer GP "
            "appointments or A&E attendances than at baseline."
        ),
    }
)


# The figures each instrument reports and is judged on, with their labels: ONS4 and health use item
# by item (no composite), UCLA3 by its total, SWEMWBS by its metric score (the raw score is kept but
# not judged).
REPORTED_FIGURES: Mapping[str, tuple[tuple[str, str], ...]] = MappingProxyType(
    {
        "ONS4": tuple((it.id, it.label) for it in ONS4.items),
        "UCLA3": (("total", "Total score"),),
        "SWEMWBS": (("metric", "Metric score"),),
        "HEALTH_USE": tuple((it.id, it.label) for it in HEALTH_USE.items),
    }
)


def get_instrument(code: str) -> Instrument:
    """Return the instrument for a code, with a plain sentence if it is unknown."""
    try:
        return INSTRUMENTS[code]
    except KeyError:
        raise ValidationError("instrument", "That outcome measure is not known to this version of sprx.") from None


# ----------------------------------------------------------------------------- Scoring


@dataclass(frozen=True)
class OutcomeScore:
    """A scored set of responses. Totals are None unless every item was answered."""

    instrument: str
    complete: bool
    missing: list[str]
    items: dict[str, int | None]
    total: int | None = None  # UCLA3 total 3-9; SWEMWBS raw score 7-35
    metric: float | None = None  # SWEMWBS metric score from the conversion table
    # ONS4: band per answered item; UCLA3: {"total": "lonely" | "not lonely"} when complete.
    bands: dict[str, str] = field(default_factory=dict)

    def figures(self) -> dict[str, float | int | None]:
        """The numbers this instrument reports, by name; these are what `change` compares."""
        return figures_from_score(self.instrument, {"total": self.total, "metric": self.metric, "items": self.items})


def figures_from_score(instrument_code: str, score: Mapping[str, Any]) -> dict[str, float | int | None]:
    """The figures of a score given as a mapping (an OutcomeScore's fields, as stored and synced)."""
    if instrument_code == "UCLA3":
        return {"total": score.get("total")}
    if instrument_code == "SWEMWBS":
        return {"raw": score.get("total"), "metric": score.get("metric")}
    # ONS4 has no composite and the health-use counts are separate: report item by item.
    return dict(score.get("items") or {})


def _check_value(instrument: Instrument, item: Item, value: object) -> int:
    # bool is an int subclass; True as an answer is always a bug or bad import.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(
            item.id,
            f"The answer to '{item.label}' in {instrument.code} must be a whole number.",
        )
    if not item.min_value <= value <= item.max_value:
        raise ValidationError(
            item.id,
            f"The answer to '{item.label}' in {instrument.code} must be between {item.min_value} and {item.max_value}.",
        )
    return value


def score(instrument_code: str, responses: Mapping[str, int | None]) -> OutcomeScore:
    """Score one completed (or partly completed) questionnaire.

    Missing or None answers make the score incomplete: totals stay None rather than being
    computed from the answers given. Unknown item ids and out-of-range answers raise
    ValidationError (a ValueError) with a plain sentence.
    """
    instrument = get_instrument(instrument_code)
    unknown = sorted(set(responses) - set(instrument.item_ids))
    if unknown:
        raise ValidationError(unknown[0], f"{instrument.code} has no question called '{unknown[0]}'.")
    items: dict[str, int | None] = {}
    missing: list[str] = []
    for it in instrument.items:
        value = responses.get(it.id)
        if value is None:
            items[it.id] = None
            missing.append(it.id)
        else:
            items[it.id] = _check_value(instrument, it, value)
    complete = not missing
    answered = {k: v for k, v in items.items() if v is not None}

    total: int | None = None
    metric: float | None = None
    bands: dict[str, str] = {}
    if instrument is ONS4:
        # Items stand alone, so an answered item keeps its band even if another was skipped.
        bands = {k: ons4_band(k, v) for k, v in answered.items()}
    elif instrument is UCLA3 and complete:
        total = sum(answered.values())
        bands = {"total": "lonely" if total >= UCLA3_LONELY_CUTOFF else "not lonely"}
    elif instrument is SWEMWBS and complete:
        total = sum(answered.values())
        metric = SWEMWBS_METRIC[total]
    return OutcomeScore(
        instrument=instrument.code,
        complete=complete,
        missing=missing,
        items=items,
        total=total,
        metric=metric,
        bands=bands,
    )


def _check_pair(instrument_code: str, baseline: OutcomeScore, later: OutcomeScore) -> Instrument:
    instrument = get_instrument(instrument_code)
    if baseline.instrument != instrument.code or later.instrument != instrument.code:
        raise ValueError(
            f"Both scores must be {instrument.code} scores to compare them; "
            f"got {baseline.instrument} and {later.instrument}."
        )
    return instrument


def change(instrument_code: str, baseline: OutcomeScore, later: OutcomeScore) -> dict[str, float | int | None]:
    """Return later minus baseline for each reported figure; None where either side is missing.

    Totals are None for incomplete scores, so an incomplete side gives None for them. ONS4 and
    health-use items are compared item by item because each is reported on its own.
    """
    _check_pair(instrument_code, baseline, later)
    before, after = baseline.figures(), later.figures()
    deltas: dict[str, float | int | None] = {}
    for name, b in before.items():
        deltas[name] = _delta(b, after[name])
    return deltas


def _delta(before: float | int | None, after: float | int | None) -> float | int | None:
    if after is None or before is None:
        return None
    if isinstance(after, float) or isinstance(before, float):
        # Table values have two decimals; round away float noise such as 2.4800000000000004.
        return round(after - before, 2)
    return after - before


def improved_figures(
    instrument_code: str, before: Mapping[str, float | int | None], after: Mapping[str, float | int | None]
) -> dict[str, bool | None]:
    """Apply IMPROVEMENT_DEFINITIONS to two figure dicts; None where either side lacks the figure."""
    out: dict[str, bool | None] = {}
    for name, _label in REPORTED_FIGURES[instrument_code]:
        d = _delta(before.get(name), after.get(name))
        if d is None:
            out[name] = None
        elif instrument_code == "ONS4":
            out[name] = d <= -1 if name == "anxiety" else d >= 1
        elif instrument_code == "SWEMWBS":
            out[name] = d >= SWEMWBS_MEANINGFUL_CHANGE
        else:  # UCLA3 total and health-use counts: lower is better (fewer visits is reduced use)
            out[name] = d <= -1
    return out


def improved(instrument_code: str, baseline: OutcomeScore, later: OutcomeScore) -> dict[str, bool | None]:
    """Apply IMPROVEMENT_DEFINITIONS; None where either side lacks the figure (incomplete)."""
    instrument = _check_pair(instrument_code, baseline, later)
    return improved_figures(instrument.code, baseline.figures(), later.figures())
