"""The inbound gate: every value that arrives from elsewhere is checked here, on both sides.

One set of rules, imported by the server (every push, every import, enrolment's device name) and
by the laptop (every pulled row before it is applied, every local write before it is queued). No
copy lives anywhere else. For each synced table and field it knows the type, whether it may be
empty (None), the maximum length and the text class:

- single-line text (names, titles, phone, codes): printable characters only; no line breaks, no tab,
  no bidi embedding/override/isolate controls (U+202A-U+202E, U+2066-U+2069);
- multi-line text (notes, descriptions): printable characters plus ``\\n`` and ``\\t``.

Everywhere: no lone surrogates (text that cannot be encoded as UTF-8), no NUL, no C0/C1 control
characters, no DEL. Right-to-left scripts and emoji are ordinary text and pass.

The gate refuses; it never silently rewrites. Importers that take outside files may tidy first
(``\\r\\n`` to ``\\n``) and then ask the gate. For showing text that is already stored, ``visible()``
turns anything the gate would refuse into a visible placeholder, so nothing reaches a terminal raw.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Text(StrEnum):
    """What kind of text a field holds."""

    LINE = "line"
    MULTI = "multi"


# Characters refused in every text, then additionally in single-line text.
_SURROGATES = "\ud800-\udfff"
_ALWAYS = "\x00-\x08\x0b-\x1f\x7f-\x9f" + _SURROGATES  # C0 (but tab, newline), DEL, C1, lone surrogates
_LINE_ONLY = "\t\n\u2028\u2029\u202a-\u202e\u2066-\u2069"  # breaks and bidi controls
_BAD_MULTI = re.compile(f"[{_ALWAYS}]")
_BAD_LINE = re.compile(f"[{_ALWAYS}{_LINE_ONLY}]")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

MAX_LINE = 500
MAX_MULTI = 32_000
MAX_ITEMS = 200
MAX_DEPTH = 4


@dataclass(frozen=True, slots=True)
class FieldType:
    """The shape of one synced field's value (as it travels: dates are ISO strings)."""

    kind: str  # text, date, datetime, int, bool, list (of single-line text), json (object)
    text: Text = Text.LINE
    max_len: int = MAX_LINE
    nullable: bool = False


def _line(n: int = MAX_LINE, *, opt: bool = False) -> FieldType:
    return FieldType("text", Text.LINE, n, opt)


def _multi(n: int = MAX_MULTI, *, opt: bool = False) -> FieldType:
    return FieldType("text", Text.MULTI, n, opt)


_ID = _line(64)
_ID_OPT = _line(64, opt=True)
_CODE = _line(64)
_DATE_T = FieldType("date")
_DATE_OPT = FieldType("date", nullable=True)
_DATETIME = FieldType("datetime")
_INT = FieldType("int")
_INT_OPT = FieldType("int", nullable=True)
_BOOL = FieldType("bool")
_LIST = FieldType("list", Text.LINE, 200)
_JSON = FieldType("json", Text.LINE, 2000)
_NAME = _line(200)

FIELDS: dict[str, dict[str, FieldType]] = {
    "person": {
        "nhs_number": _line(16, opt=True),
        "given_name": _NAME,
        "family_name": _NAME,
        "preferred_name": _line(200, opt=True),
        "date_of_birth": _DATE_OPT,
        "gender": _line(64, opt=True),
        "address": _multi(1000, opt=True),
        "postcode": _line(16, opt=True),
        "phone": _line(40, opt=True),
        "email": _line(254, opt=True),
        "preferred_contact": _line(32, opt=True),
        "communication_needs": _multi(4000, opt=True),
        "interpreter_language": _line(100, opt=True),
        "hearing_need": _BOOL,
        "sight_need": _BOOL,
        "easy_read": _BOOL,
        "gp_practice": _line(200, opt=True),
        "consent_social_prescribing": _BOOL,
        "consent_gp_sharing": _CODE,
        "safety_flags": _LIST,
        "safety_notes": _multi(4000, opt=True),
        "status": _CODE,
        "status_changed_on": _DATE_OPT,
    },
    "referral": {
        "source": _CODE,
        "referrer_name": _line(200, opt=True),
        "received_on": _DATE_T,
        "reasons": _LIST,
        "referral_text": _multi(opt=True),
        "urgency": _CODE,
        "status": _CODE,
        "decided_on": _DATE_OPT,
        "decline_reason": _multi(2000, opt=True),
        "snomed_code": _line(32, opt=True),
        "decline_code": _line(64, opt=True),
        "closed_on": _DATE_OPT,
        "close_reason": _line(64, opt=True),
        "close_note": _multi(2000, opt=True),
    },
    "contact": {
        "referral_id": _ID_OPT,
        "occurred_at": _DATETIME,
        "mode": _CODE,
        "duration_minutes": _INT,
        "notes": _multi(),
        "did_not_attend": _BOOL,
        "follow_up_on": _DATE_OPT,
        "author": _NAME,
        "entered_in_error": _BOOL,
        "error_reason": _multi(2000, opt=True),
    },
    "contact_amendment": {
        "contact_id": _ID,
        "text": _multi(),
        "reason": _multi(2000),
        "author": _NAME,
        "amended_at": _DATETIME,
    },
    "safety_flag_change": {
        "flag": _CODE,
        "change": _CODE,
        "reason": _multi(2000),
        "author": _NAME,
        "changed_at": _DATETIME,
    },
    "follow_up": {
        "due_on": _DATE_T,
        "reason": _multi(2000),
        "status": _CODE,
        "cleared_by_contact_id": _ID_OPT,
        "cleared_on": _DATE_OPT,
    },
    "what_matters": {"life_area": _CODE, "text": _multi(), "priority": _INT},
    "goal": {
        "text": _multi(),
        "target_on": _DATE_OPT,
        "status": _CODE,
        "position": _line(64),
        "progress_notes": _multi(),
    },
    "plan_action": {
        "goal_id": _ID,
        "who": _line(200),
        "what": _multi(),
        "due_on": _DATE_OPT,
        "done": _BOOL,
        "position": _line(64),
    },
    "onward_referral": {
        "service_id": _line(200),
        "service_name": _line(300),
        "kind": _CODE,
        "made_on": _DATE_T,
        "need": _line(200, opt=True),
        "outcome": _CODE,
        "outcome_on": _DATE_OPT,
        "first_response_on": _DATE_OPT,
        "notes": _multi(),
        "need_id": _ID_OPT,
        "consent": _BOOL,
        "withdrawn_on": _DATE_OPT,
        "withdrawn_reason": _multi(2000, opt=True),
    },
    "need": {"category": _CODE, "description": _multi(), "status": _CODE},
    "outcome_response": {
        "instrument": _CODE,
        "time_point": _CODE,
        "taken_on": _DATE_T,
        "responses": _JSON,
        "complete": _BOOL,
        "score": _JSON,
        "entered_in_error": _BOOL,
    },
    "audit_event": {
        "actor": _NAME,
        "device_id": _line(64),
        "action": _CODE,
        "record_type": _CODE,
        "record_id": _line(200),
        "detail": _multi(4000),
        "at": _DATETIME,
        "prev_hash": _line(128),
        "hash": _line(128),
    },
    "directory_suggestion": {
        "service_id": _line(200),
        "kind": _CODE,
        "note": _multi(4000),
        "suggested_on": _DATE_T,
    },
    "community_service": {
        "organisation": _line(300),
        "name": _line(300),
        "description": _multi(8000),
        "categories": _LIST,
        "needs": _LIST,
        "area": _line(300),
        "address": _multi(1000),
        "postcode": _line(16),
        "phone": _line(100),
        "email": _line(254),
        "url": _line(2000),
        "eligibility": _multi(4000),
        "cost": _multi(4000),
        "referral_route": _multi(4000),
        "opening_times": _multi(4000),
        "accessibility": _multi(4000),
        "last_verified": _DATE_OPT,
        "active": _BOOL,
        "source_id": _line(300),
        "languages": _LIST,
        "min_age": _INT_OPT,
        "max_age": _INT_OPT,
        "withdrawn_on": _DATE_OPT,
        "source": _line(300),
    },
}
"""Every synced field's type. ``tests/sync/test_gate.py`` checks it covers ``sync.schema.TABLES``."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why one value was refused: where it was and one plain sentence."""

    table: str
    row_id: str
    field: str
    problem: str

    @property
    def sentence(self) -> str:
        where = f"{self.table} {visible(self.row_id)[:64]}"
        return f"The {self.field.replace('_', ' ')} of {where} {self.problem}."


class GateError(ValueError):
    """A value the gate refused; carries the ``Refusal``."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.sentence)
        self.refusal = refusal


def _char_problem(ch: str) -> str:
    cp = ord(ch)
    if 0xD800 <= cp <= 0xDFFF:
        return "holds invalid Unicode (a lone surrogate)"
    if ch in "\t\n\u2028\u2029":
        return "holds a line break or tab where one line is expected"
    if 0x202A <= cp <= 0x202E or 0x2066 <= cp <= 0x2069:
        return f"holds a text-direction control character (U+{cp:04X})"
    return f"holds a control character (U+{cp:04X})"


def text_problem(value: str, text: Text = Text.LINE, max_len: int = MAX_LINE) -> str | None:
    """Why this text would be refused, or None when it is acceptable."""
    m = (_BAD_LINE if text is Text.LINE else _BAD_MULTI).search(value)
    if m is not None:
        return _char_problem(m.group())
    if len(value) > max_len:
        return f"is too long ({len(value)} characters; at most {max_len})"
    return None


def _json_problem(value: Any, depth: int, budget: list[int]) -> str | None:
    budget[0] -= 1
    if budget[0] < 0:
        return "holds too many items"
    if depth > MAX_DEPTH:
        return "is nested too deeply"
    if value is None or isinstance(value, bool | int | float):
        return None
    if isinstance(value, str):
        return text_problem(value, Text.MULTI, MAX_MULTI)
    if isinstance(value, list):
        for v in value:
            if (p := _json_problem(v, depth + 1, budget)) is not None:
                return p
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                return "has a key that is not text"
            if (p := text_problem(k, Text.LINE, 200)) is not None:
                return p
            if (p := _json_problem(v, depth + 1, budget)) is not None:
                return p
        return None
    return "holds a value of a kind that cannot be stored"


def _text_value(ft: FieldType, value: Any) -> str | None:
    if not isinstance(value, str):
        return "is not text"
    return text_problem(value, ft.text, ft.max_len)


def _bool_value(_ft: FieldType, value: Any) -> str | None:
    return None if isinstance(value, bool) else "is not yes or no"


def _int_value(_ft: FieldType, value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return "is not a whole number"
    return None if -(2**31) <= value < 2**31 else "is out of range"


def _date_value(ft: FieldType, value: Any) -> str | None:
    """A date (YYYY-MM-DD, possibly with a time after it) or an ISO date and time, by the field's kind."""
    kind = ft.kind
    if not isinstance(value, str) or len(value) > 40:
        return "is not a date"
    if (p := text_problem(value, Text.LINE, 40)) is not None:
        return p
    try:
        if kind == "date":
            if not _DATE.match(value):
                return "is not a date"
            dt.date.fromisoformat(value[:10])
        else:
            dt.datetime.fromisoformat(value)
    except ValueError:
        return "is not a date" if kind == "date" else "is not a date and time"
    return None


def _list_value(ft: FieldType, value: Any) -> str | None:
    if not isinstance(value, list):
        return "is not a list"
    if len(value) > MAX_ITEMS:
        return "holds too many items"
    for item in value:
        if not isinstance(item, str):
            return "holds an item that is not text"
        if (p := text_problem(item, Text.LINE, ft.max_len)) is not None:
            return p
    return None


def _json_value(ft: FieldType, value: Any) -> str | None:
    if not isinstance(value, dict | list):
        return "is not a set of answers"
    return _json_problem(value, 0, [ft.max_len])


_VALUE_CHECKS: dict[str, Callable[[FieldType, Any], str | None]] = {
    "text": _text_value,
    "bool": _bool_value,
    "int": _int_value,
    "date": _date_value,
    "datetime": _date_value,
    "list": _list_value,
    "json": _json_value,
}
"""One checker per field kind; ``value_problem`` picks it (the fast path is ``_fast``)."""


def value_problem(ft: FieldType, value: Any) -> str | None:
    """Why this value does not fit the field type, or None when it does."""
    if value is None:
        return None if ft.nullable or ft.kind in ("list", "json") else "is empty but must have a value"
    check = _VALUE_CHECKS.get(ft.kind)
    if check is None:  # pragma: no cover - FIELDS uses the kinds above
        return "has a type the gate does not know"
    return check(ft, value)


def check_value(table: str, field: str, value: Any, row_id: str = "") -> Refusal | None:
    """The refusal for one field value, or None. Unknown tables and fields are left to the merge rules."""
    ft = FIELDS.get(table, {}).get(field)
    if ft is None:
        return None
    p = value_problem(ft, value)
    return None if p is None else Refusal(table, row_id, field, p)


def _fast(ft: FieldType) -> Callable[[Any], str | None]:
    """A checker for one field type that answers the common good value without the general path.

    Pulled pages of 110k rows go through here, so the usual cases (printable text within its length,
    a date seen before, a bool) cost one or two C-level calls; anything else takes ``value_problem``.
    """
    slow = functools.partial(value_problem, ft)
    nullable = ft.nullable
    if ft.kind == "text":
        bad = (_BAD_LINE if ft.text is Text.LINE else _BAD_MULTI).search
        limit = ft.max_len

        def text(v: Any) -> str | None:
            # isprintable() is False for every character the gate refuses (and for a few it allows,
            # such as line breaks in notes and the joiner in emoji), so True settles it at C speed.
            if type(v) is str and len(v) <= limit and (v.isprintable() or bad(v) is None):
                return None
            if v is None and nullable:
                return None
            return slow(v)

        return text
    if ft.kind == "date":
        seen = _SEEN_DATES

        def date(v: Any) -> str | None:
            if v in seen if type(v) is str else (v is None and nullable):
                return None
            p = slow(v)
            if p is None and type(v) is str and len(seen) < 50_000:
                seen.add(v)
            return p

        return date
    if ft.kind == "datetime":
        parse, bad_line = dt.datetime.fromisoformat, _BAD_LINE.search

        def when(v: Any) -> str | None:
            if type(v) is str and len(v) <= 40 and bad_line(v) is None:
                try:
                    parse(v)
                    return None
                except ValueError:
                    pass
            return slow(v)

        return when
    if ft.kind == "int":
        return lambda v: None if type(v) is int and -(2**31) <= v < 2**31 else slow(v)
    if ft.kind == "bool":
        return lambda v: None if v is True or v is False or (v is None and nullable) else slow(v)
    return slow


_SEEN_DATES: set[str] = set()
"""Date strings already found good (there are few distinct dates in a caseload); bounded."""

_CHECKERS: dict[str, dict[str, Callable[[Any], str | None]]] = {
    t: {f: _fast(ft) for f, ft in fields.items()} for t, fields in FIELDS.items()
}


def check_values(table: str, values: Mapping[str, Any], row_id: str = "") -> Refusal | None:
    """The first refusal among a row's values, or None. Fields the gate does not know are left to the merge."""
    checkers = _CHECKERS.get(table)
    if checkers is None:
        return None
    for field, value in values.items():
        check = checkers.get(field)
        if check is not None and (p := check(value)) is not None:
            return Refusal(table, row_id, field, p)
    return None


def check_identifier(value: Any, *, table: str = "", row_id: str = "", field: str = "id") -> Refusal | None:
    """Ids and table names: single-line text of at most 200 characters."""
    if value is None or (type(value) is str and len(value) <= 200 and value.isprintable()):
        return None  # the usual id, settled in C: isprintable() is False for every character refused here
    if not isinstance(value, str):
        return Refusal(table, row_id, field, "is not text")
    p = text_problem(value, Text.LINE, 200)
    return None if p is None else Refusal(table, row_id if field != "row_id" else "", field, p)


def check_mutation(m: Mapping[str, Any]) -> Refusal | None:
    """The refusal for one pushed mutation (its ids and every field value it carries), or None.

    ``m`` is the wire shape: ``{"tbl", "row_id", "person_id", "op", "fields": {name: {"v": ...}}}``.
    """
    tbl = str(m.get("tbl", ""))
    row_id = m.get("row_id", "")
    for name in ("tbl", "row_id", "person_id", "conflict_id"):
        if (r := check_identifier(m.get(name), table=tbl, row_id=str(row_id), field=name)) is not None:
            return r
    checkers = _CHECKERS.get(tbl)
    if checkers is None:
        return None
    for field, fc in (m.get("fields") or {}).items():
        if (r := check_identifier(field, table=tbl, row_id=row_id, field="field name")) is not None:
            return r
        check = checkers.get(field)
        if check is None or not isinstance(fc, Mapping):
            continue
        if (p := check(fc.get("v"))) is not None:
            return Refusal(tbl, row_id, field, p)
    return None


def check_device_name(name: Any) -> str:
    """A device name from enrolment: one printable line of at most 100 characters; GateError otherwise."""
    if not isinstance(name, str):
        raise GateError(Refusal("device", "", "device_name", "is not text"))
    p = text_problem(name, Text.LINE, 100)
    if p is None and not name.strip():
        p = "is empty"
    if p is not None:
        raise GateError(Refusal("device", "", "device_name", p))
    return name


# --------------------------------------------------------------------------- showing stored text

_VISIBLE_LINE: dict[int, str] = {}
for _c in range(0x20):
    _VISIBLE_LINE[_c] = chr(0x2400 + _c)  # control pictures: ESC shows as ␛
_VISIBLE_LINE[0x7F] = "\u2421"  # ␡
for _c in list(range(0x80, 0xA0)) + list(range(0xD800, 0xE000)):
    _VISIBLE_LINE[_c] = "\ufffd"
for _c in [0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]:
    _VISIBLE_LINE[_c] = "\ufffd"
_VISIBLE_MULTI = {k: v for k, v in _VISIBLE_LINE.items() if k not in (0x09, 0x0A)}
_NEEDS_VISIBLE_LINE = re.compile(f"[{_ALWAYS}{_LINE_ONLY}]")


def visible(value: Any, *, multiline: bool = False) -> str:
    """Text safe to write to a terminal: control, escape, bidi and invalid characters become placeholders.

    ESC becomes ``␛``, other C0 controls their control pictures, C1 controls, lone surrogates and bidi
    controls ``�``. Multi-line text keeps ``\\n`` and ``\\t``. Non-text values are shown with ``str()``.
    """
    s = value if isinstance(value, str) else ("" if value is None else str(value))
    if not _NEEDS_VISIBLE_LINE.search(s):
        return s
    return s.translate(_VISIBLE_MULTI if multiline else _VISIBLE_LINE)


def visible_all(values: Iterable[Any]) -> list[str]:
    """``visible()`` of each value, single-line."""
    return [visible(v) for v in values]
