"""Conversion between local model values and the JSON values that travel in sync messages."""

from __future__ import annotations

import datetime as dt
import types
import typing
from typing import Any

from sqlmodel import SQLModel

from sync.schema import TableSpec


def to_wire(value: Any) -> Any:
    """A JSON-native value: dates and times as ISO strings, everything else unchanged."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _base_type(annotation: Any) -> Any:
    if isinstance(annotation, str):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if args else annotation
    return annotation


def from_wire(model: type[SQLModel], field: str, value: Any) -> Any:
    """The local value of a wire value for `model.field` (ISO strings back to dates)."""
    if value is None:
        return None
    info = model.model_fields.get(field)
    if info is None:
        return value
    kind = _base_type(info.annotation)
    if kind is dt.datetime or kind == "dt.datetime":
        parsed = dt.datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    if kind is dt.date or kind == "dt.date":
        return dt.date.fromisoformat(value[:10])
    return value


def row_values(row: SQLModel, spec: TableSpec) -> dict[str, Any]:
    """Every synced field of a row, as wire values."""
    return {name: to_wire(getattr(row, name)) for name in spec.fields}
