"""How dates and times are shown: UK local time, day/month/year. No Textual, no database."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

try:
    # Link workers work in England: times are entered and shown in UK local time, stored in UTC.
    LOCAL_TZ: dt.tzinfo = ZoneInfo("Europe/London")
except ZoneInfoNotFoundError:  # pragma: no cover - a system without a time zone database
    LOCAL_TZ = dt.UTC

DATE_FORMAT = "%d/%m/%Y"
DATETIME_FORMAT = "%d/%m/%Y %H:%M"


def local(moment: dt.datetime) -> dt.datetime:
    """A stored moment in UK local time (naive stored values are UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(LOCAL_TZ)


def fmt_date(day: dt.date | None, empty: str = "") -> str:
    return day.strftime(DATE_FORMAT) if day else empty


def fmt_datetime(moment: dt.datetime | None, empty: str = "") -> str:
    return local(moment).strftime(DATETIME_FORMAT) if moment else empty
