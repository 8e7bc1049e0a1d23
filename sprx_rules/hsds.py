"""Open Referral HSDS 1.1 datapackage reader: CSV files in, plain directory entries and problem lines out.

Pure (no database, no sprx_tui): the laptop's `sprx directory import` and the server's
`sprx-server import-directory` both use it, so a service gets the same id and fields either way.

What is read (every file except services.csv is optional):

- datapackage.json: resource name -> CSV path. When it is missing or broken, the conventional
  file names below are used and the problem is reported.
- organizations.csv: organisation name, email and url (used when the service has none).
- services.csv: id, name, description (HTML stripped), status, email, url, fees (cost),
  application_process + wait_time (referral route), interpretation_services (accessibility),
  taxonomy_ids, and a verification date if the publisher adds one (see VERIFIED_COLUMNS).
- services_at_location.csv + locations.csv + physical_addresses.csv: address, postcode, area.
- phones.csv: the first phone of the service, else of its service-at-location, location, organisation.
- regular_schedules.csv: opening times; eligibility.csv; service_areas.csv (area);
  accessibility_for_disabilities.csv; taxonomy.csv + services_taxonomy.csv (categories).
- metadata.csv: the latest last_action_date of each service record (its "last verified" date).

Needs are found with NEED_KEYWORDS, a documented keyword table applied to the service's
taxonomy terms, name and description: it is a starting point that a person should review.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json
import re
import unicodedata
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

__all__ = [
    "HSDS_NAMESPACE",
    "NEED_KEYWORDS",
    "STATUS_ACTIVE",
    "UNREAD",
    "HsdsError",
    "Problem",
    "ServiceRecord",
    "classify",
    "html_to_text",
    "parse_datapackage",
    "service_id",
]

HSDS_NAMESPACE = uuid.UUID("6f1c9a52-3b0e-5d84-9a41-2c7d8e0b5f13")
"""uuid5 namespace of directory ids: id = uuid5(HSDS_NAMESPACE, practice_id + "/" + HSDS service id)."""

# HSDS 1.1 service.status values. "Temporarily closed" is not active: a link worker should not
# send someone to a door that is shut, even for a while.
STATUS_ACTIVE: dict[str, bool] = {
    "active": True,
    "inactive": False,
    "defunct": False,
    "temporarily closed": False,
}

# Resource name in datapackage.json -> conventional file name (used when the package omits it).
DEFAULT_FILES: dict[str, str] = {
    "organization": "organizations.csv",
    "service": "services.csv",
    "service_at_location": "services_at_location.csv",
    "location": "locations.csv",
    "phone": "phones.csv",
    "physical_address": "physical_addresses.csv",
    "regular_schedule": "regular_schedules.csv",
    "eligibility": "eligibility.csv",
    "service_area": "service_areas.csv",
    "accessibility_for_disabilities": "accessibility_for_disabilities.csv",
    "taxonomy": "taxonomy.csv",
    "service_taxonomy": "services_taxonomy.csv",
    "metadata": "metadata.csv",
}

# Columns without which a file cannot be used at all.
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "organization": ("id", "name"),
    "service": ("id", "name"),
    "service_at_location": ("service_id", "location_id"),
    "location": ("id",),
    "phone": ("number",),
    "physical_address": ("location_id",),
    "regular_schedule": ("weekday",),
    "eligibility": ("service_id", "eligibility"),
    "service_area": ("service_id", "service_area"),
    "accessibility_for_disabilities": ("location_id", "accessibility"),
    "taxonomy": ("id", "name"),
    "service_taxonomy": ("service_id", "taxonomy_id"),
    "metadata": ("resource_id", "last_action_date"),
}

# A service's own verification date, when the publisher adds one (Open Referral UK uses assured_date).
VERIFIED_COLUMNS = ("last_verified", "last_verified_on", "assured_date", "last_modified")

# Caps keep a hostile or broken file from filling the screen or the vault.
MAX_TEXT = 4000
MAX_SHORT = 300
MAX_ROWS = 200_000
MAX_FILE_BYTES = 200_000_000

WEEKDAYS = {
    "1": "Mon", "2": "Tue", "3": "Wed", "4": "Thu", "5": "Fri", "6": "Sat", "7": "Sun",
    "monday": "Mon", "tuesday": "Tue", "wednesday": "Wed", "thursday": "Thu", "friday": "Fri",
    "saturday": "Sat", "sunday": "Sun",
}  # fmt: skip

# NEED_KEYWORDS: (pattern, category, needs). A service gets every category and need whose
# pattern matches its taxonomy terms, name or description (case-insensitive, at a word start).
# Needs are keys of sprx's REFERRAL_REASONS vocabulary (sprx_tui/core/models.py); a test keeps
# them in step. Food support counts as "money" because food poverty is nearly always a money need.
NEED_KEYWORDS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (r"walk(s|ing)?\b|ramble|stroll", "walking", ("physical_activity",)),
    (r"befriend", "befriending", ("loneliness",)),
    (r"lonel|isolat|social (group|club|contact|shopping)|companionship|lunch club|coffee morning",
     "social_connection", ("loneliness",)),
    (r"exercis|sports?\b|swim|tennis|rugby|football|baseball|yoga|dance|dancing|gym\b|fitness|physical activit"
     r"|recreation", "exercise", ("physical_activity",)),
    (r"garden|allotment", "gardening", ("loneliness", "low_mood", "physical_activity")),
    (r"arts?\b|craft|music|choir|sing(ing)?\b|paint|creative|theatre", "arts", ("low_mood", "loneliness")),
    (r"debts?\b|money|financ|budget|benefits? (advice|claims?|checks?)|welfare|universal credit|pension credit"
     r"|fuel poverty",
     "money_advice", ("money",)),
    (r"food|meals?\b|kitchen|grocer|lunch|pantry|hot dinner", "food", ("money",)),
    (r"homeless|housing|tenan|rough sleep|accommodation|evict", "housing", ("housing",)),
    (r"bereave|grief|griev|loss of a loved", "bereavement", ("bereavement",)),
    (r"employ|jobs?\b|careers?\b|cv\b|work club|back to work", "employment", ("employment",)),
    (r"volunteering|become a volunteer|volunteer (centre|center|bureau|opportunit)|time bank", "volunteering",
     ("employment", "loneliness")),
    (r"education|training|courses?\b|skills?\b|learn|mentor", "learning", ("employment",)),
    (r"carers?\b|caring for", "carers", ("carer_strain",)),
    (r"family and friends of", "family_support", ("carer_strain",)),
    (r"mental health|anxi|depress|wellbeing|well-being|talking therap|counsel|therap|low mood|stress",
     "mental_health", ("low_mood",)),
    (r"long[- ]term condition|diabet|copd|arthritis|stroke|heart|pain\b|cancer|disabilit|dementia",
     "long_term_condition", ("long_term_condition",)),
    (r"weight|healthy eating|nutrition|slimming|cook", "healthy_eating", ("weight",)),
    (r"alcohol|drinking|drugs?\b|substance|addict|al-anon", "substance_use", ("substance_use",)),
    (r"digital|computer|internet|online skills|tablet|smartphone", "digital", ("digital",)),
    (r"elderly|older people|over[- ]?(50|60|65)s?\b|later life", "older_people", ("loneliness",)),
)  # fmt: skip

_NEED_RES = tuple((re.compile(r"\b(?:" + p + ")", re.IGNORECASE), c, n) for p, c, n in NEED_KEYWORDS)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")
_SPACE = re.compile(r"\s+")


class HsdsError(Exception):
    """The datapackage cannot be read at all (no folder, no services file); one plain sentence."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: file name, line number (1 = header, 0 = whole file), reason."""

    file: str
    line: int
    reason: str
    service_id: str = field(default="", compare=False)
    """Set when a service of the source could not be read: its directory id, or UNREAD when unknown.
    A full import never withdraws such a service (see sprx_rules.directory)."""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


UNREAD = "?"
"""Problem.service_id of a service row lost whole (its id unknown): a full import then withdraws nothing."""


@dataclass
class ServiceRecord:
    """One directory entry, shaped like sprx's CommunityService row (minus sync bookkeeping)."""

    id: str
    source_id: str
    name: str
    organisation: str = ""
    description: str = ""
    categories: list[str] = field(default_factory=list)
    needs: list[str] = field(default_factory=list)
    area: str = ""
    address: str = ""
    postcode: str = ""
    phone: str = ""
    email: str = ""
    url: str = ""
    eligibility: str = ""
    cost: str = ""
    referral_route: str = ""
    opening_times: str = ""
    accessibility: str = ""
    last_verified: dt.date | None = None
    active: bool = True
    languages: list[str] = field(default_factory=list)
    min_age: int | None = None
    max_age: int | None = None
    withdrawn_on: dt.date | None = None
    source: str = ""
    present: frozenset[str] | None = None
    """The fields this source speaks about; None: all. A field not present keeps its stored value."""

    FIELDS = (
        "organisation", "name", "description", "categories", "needs", "area", "address", "postcode",
        "phone", "email", "url", "eligibility", "cost", "referral_route", "opening_times",
        "accessibility", "last_verified", "active", "source_id",
        "languages", "min_age", "max_age", "withdrawn_on", "source",
    )  # fmt: skip
    """The synced fields, in sync/schema.py's order for community_service."""

    ALWAYS = frozenset({"name", "source_id", "withdrawn_on", "source"})
    """Fields every source states (a service it holds is not withdrawn, and is of this source)."""

    def values(self) -> dict[str, Any]:
        """The synced fields as JSON values (dates as ISO strings), for the server's records."""
        out: dict[str, Any] = {}
        for name in self.FIELDS:
            v = getattr(self, name)
            out[name] = v.isoformat() if isinstance(v, dt.date) else (list(v) if isinstance(v, list) else v)
        return out

    def stated(self) -> frozenset[str]:
        """The synced fields this record states (present in its source, or always stated)."""
        return frozenset(self.FIELDS) if self.present is None else (self.present | self.ALWAYS)


def service_id(practice_id: str, source_id: str, source: str = "") -> str:
    """The directory id of an HSDS service: the same on every import, on laptop and server alike.

    A named source (a second publisher, `--source NAME`) keeps its ids apart from the default one's.
    """
    key = f"{practice_id}/{source_id}" if not source else f"{practice_id}/{source}/{source_id}"
    return str(uuid.uuid5(HSDS_NAMESPACE, key))


# -- text cleaning -------------------------------------------------------------------------------

_BLOCK_TAGS = {"p", "div", "br", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "table", "section"}
_DROP_TAGS = {"script", "style", "head", "title", "template"}


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.drop = 0
        self.items_in_list: list[int] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROP_TAGS:
            self.drop += 1
        elif tag in ("ul", "ol"):
            self.items_in_list.append(0)
            self.parts.append(" ")
        elif tag == "li":
            # List items become "a; b; c" on one line: descriptions are shown in one table cell.
            if self.items_in_list and self.items_in_list[-1] > 0:
                self.parts.append("; ")
            else:
                self.parts.append(" ")
            if self.items_in_list:
                self.items_in_list[-1] += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROP_TAGS:
            self.drop = max(0, self.drop - 1)
        elif tag in ("ul", "ol"):
            if self.items_in_list:
                self.items_in_list.pop()
            self.parts.append(" ")
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self.drop:
            self.parts.append(data)


def clean_text(value: str | None, limit: int = MAX_TEXT) -> str:
    """One line of printable text: control and bidi characters removed, whitespace collapsed, capped."""
    if not value:
        return ""
    text = unicodedata.normalize("NFC", value)
    text = _CONTROL.sub(" ", text)  # terminal escape sequences must never reach the screen
    text = _SPACE.sub(" ", text).strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def html_to_text(value: str | None, limit: int = MAX_TEXT) -> str:
    """Plain text from an HSDS description that may hold HTML: tags dropped, entities decoded.

    Uses the standard library's tolerant html.parser: nothing is executed or fetched, script and
    style content is dropped, and quotes in the text are kept as they are.
    """
    if not value:
        return ""
    if "<" not in value and "&" not in value:
        return clean_text(value, limit)
    parser = _TextExtractor()
    try:
        parser.feed(value)
        parser.close()
        text = "".join(parser.parts)
    except Exception:  # noqa: BLE001 - html.parser is tolerant; never let odd markup stop an import
        text = html.unescape(re.sub(r"<[^>]*>", " ", value))
    text = re.sub(r"\s+([;,.])", r"\1", _SPACE.sub(" ", text))
    return clean_text(text, limit)


def classify(*texts: str) -> tuple[list[str], list[str]]:
    """(categories, needs) found in the texts with NEED_KEYWORDS, each in table order, no repeats."""
    blob = " ".join(t for t in texts if t)
    categories: list[str] = []
    needs: list[str] = []
    for pattern, category, found_needs in _NEED_RES:
        if pattern.search(blob):
            if category not in categories:
                categories.append(category)
            for n in found_needs:
                if n not in needs:
                    needs.append(n)
    return categories, needs


def _slug(term: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", term.lower()).strip("_")[:60]


def _date(raw: str) -> dt.date | None:
    raw = (raw or "").strip()
    if not raw:
        return None
    try:
        return dt.date.fromisoformat(raw[:10])
    except ValueError:
        return None


# -- reading the package -------------------------------------------------------------------------


@dataclass
class _Table:
    file: str
    rows: list[tuple[int, dict[str, str]]]
    columns: list[str]


class _Reader:
    def __init__(
        self,
        folder: Path,
        problems: list[Problem],
        defaults: dict[str, str] | None = None,
        required: dict[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.folder = folder
        self.problems = problems
        self.defaults = DEFAULT_FILES if defaults is None else defaults
        self.required = REQUIRED_COLUMNS if required is None else required
        self.paths: dict[str, str] = dict(self.defaults)
        self.loaded: set[str] = set()

    def problem(self, file: str, line: int, reason: str) -> None:
        self.problems.append(Problem(file, line, reason))

    def load_descriptor(self, optional: bool = False) -> None:
        desc = self.folder / "datapackage.json"
        if not desc.is_file():
            if not optional:
                self.problem("datapackage.json", 0, "the file is missing, so the usual HSDS file names were used")
            return
        try:
            data = json.loads(desc.read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError as exc:
            self.problem(
                "datapackage.json", exc.lineno, "the file is not valid JSON, so the usual HSDS file names were used"
            )
            return
        except (OSError, UnicodeDecodeError):
            self.problem("datapackage.json", 0, "the file cannot be read, so the usual HSDS file names were used")
            return
        resources = data.get("resources") if isinstance(data, dict) else None
        if not isinstance(resources, list):
            self.problem("datapackage.json", 0, "there is no list of resources, so the usual HSDS file names were used")
            return
        for res in resources:
            if not isinstance(res, dict):
                continue
            name, path = res.get("name"), res.get("path")
            if not isinstance(name, str) or not isinstance(path, str):
                continue
            if not self._safe(path):
                self.problem(
                    "datapackage.json", 0, f"the path of resource '{clean_text(name, 60)}' is outside the folder"
                )
                continue
            self.paths[name] = path

    def _safe(self, path: str) -> bool:
        # A package must only point at files inside its own folder (no "../", no absolute paths, no URLs).
        if "://" in path or path.startswith(("/", "\\")) or ":" in path:
            return False
        try:
            (self.folder / path).resolve().relative_to(self.folder.resolve())
        except ValueError:
            return False
        return True

    def table(self, resource: str) -> _Table | None:
        path = self.paths.get(resource)
        if path is None:
            return None
        file = path
        full = self.folder / path
        if not full.is_file():
            if resource == "service":
                self.problem(file, 0, "the services file is missing")
            elif path != self.defaults.get(resource):
                self.problem(file, 0, "the file named in datapackage.json is missing")
            return None
        try:
            if full.stat().st_size > MAX_FILE_BYTES:
                self.problem(file, 0, f"the file is larger than {MAX_FILE_BYTES // 1_000_000} MB, so it was not used")
                return None
            raw = full.read_bytes()
        except OSError:
            self.problem(file, 0, "the file cannot be read")
            return None
        try:
            content = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            # Excel on Windows saves CSV as Windows-1252; read it rather than refuse the file.
            content = raw.decode("cp1252", errors="replace")
            self.problem(file, 0, "the file is not UTF-8, so it was read as Windows-1252 text")
        rows: list[tuple[int, dict[str, str]]] = []
        columns: list[str] = []
        # strict: an unclosed quote is reported instead of silently swallowing every row after it.
        reader = csv.reader(io.StringIO(content, newline=""), strict=True)
        start = 1
        try:
            try:
                header = next(reader)
            except StopIteration:
                self.problem(file, 0, "the file is empty")
                return None
            columns = [h.strip().lower() for h in header]
            missing = [c for c in self.required.get(resource, ()) if c not in columns]
            if missing:
                self.problem(file, 1, f"the column '{missing[0]}' is missing, so this file was not used")
                return None
            start = reader.line_num + 1
            for rec in reader:
                line = start
                start = reader.line_num + 1
                if not any(cell.strip() for cell in rec):
                    continue
                if len(rec) != len(columns):
                    reason = f"the row has {len(rec)} values but the header has {len(columns)}"
                    self.problems.append(Problem(file, line, reason, UNREAD if resource == "service" else ""))
                    continue
                rows.append((line, dict(zip(columns, rec, strict=True))))
                if len(rows) >= MAX_ROWS:
                    reason = f"only the first {MAX_ROWS} rows were read"
                    self.problems.append(Problem(file, line, reason, UNREAD if resource == "service" else ""))
                    break
        except csv.Error as exc:
            reason = f"the CSV cannot be read from this line on ({_csv_reason(exc)})"
            self.problems.append(Problem(file, start, reason, UNREAD if resource == "service" else ""))
        self.loaded.add(resource)
        return _Table(file, rows, columns)


def _csv_reason(exc: csv.Error) -> str:
    text = str(exc).lower()
    if "field larger" in text:
        return "a value is too long"
    if "nul" in text:
        return "it holds a NUL byte"
    return "broken quoting"


def _index(table: _Table | None, key: str) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    if table is None:
        return out
    for _line, row in table.rows:
        k = (row.get(key) or "").strip()
        if k:
            out.setdefault(k, []).append(row)
    return out


def _rows(table: _Table | None) -> Iterator[tuple[int, dict[str, str]]]:
    return iter(table.rows) if table is not None else iter(())


def _join_unique(parts: list[str], sep: str = "; ") -> str:
    seen: list[str] = []
    for p in parts:
        if p and p not in seen:
            seen.append(p)
    return sep.join(seen)


def _phone(rows: list[dict[str, str]]) -> str:
    # Voice lines first: a textphone or fax number is no use for a quick call.
    ranked = sorted(rows, key=lambda r: 0 if (r.get("type") or "voice").strip().lower() in ("voice", "") else 1)
    for r in ranked:
        number = clean_text(r.get("number"), 40)
        if number:
            ext = clean_text(r.get("extension"), 10)
            return f"{number} ext {ext}" if ext else number
    return ""


def _schedule(rows: list[dict[str, str]]) -> str:
    """HSDS 1.1 regular_schedules rows in words: "Tuesdays 10:00–12:00; Thursdays 13:00–15:00"."""
    out = []
    for r in rows:
        raw = (r.get("weekday") or "").strip().lower()
        day = WEEKDAYS.get(raw)
        out.append(
            schedule_words(
                [day] if day else [], r.get("opens_at") or "", r.get("closes_at") or "", fallback=clean_text(raw, 12)
            )
        )
    return _join_unique(out)


_DAY_WORDS = {"Mon": "Monday", "Tue": "Tuesday", "Wed": "Wednesday", "Thu": "Thursday", "Fri": "Friday",
              "Sat": "Saturday", "Sun": "Sunday"}  # fmt: skip
_DAY_ORDER = list(_DAY_WORDS)


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _clock(raw: str) -> str:
    m = re.match(r"\s*(\d{1,2}):(\d{2})", raw or "")
    return f"{int(m.group(1)):02d}:{m.group(2)}" if m else ""


def schedule_words(
    days: list[str],
    opens: str,
    closes: str,
    *,
    every: int = 1,
    ordinal: str = "",
    fallback: str = "",
) -> str:
    """One schedule in words: "Tuesdays 10:00–12:00", "Weekdays 09:00–17:00", "Every other Monday".

    days are short names (Mon..Sun); ordinal ("first", "last") makes it monthly ("First Tuesday of
    the month"); every=2 is fortnightly. Times are HH:MM (seconds dropped). fallback is used when no
    day is known (a day name the table does not know, or a description).
    """
    days = sorted({d for d in days if d in _DAY_WORDS}, key=_DAY_ORDER.index)
    start, end = _clock(opens), _clock(closes)
    times = f"{start}–{end}" if start and end else (f"from {start}" if start else "")
    if not days:
        when = clean_text(fallback, MAX_SHORT)
    elif ordinal:
        when = f"{ordinal.capitalize()} {_and([_DAY_WORDS[d] for d in days])} of the month"
    elif every == 2:
        when = "Every other " + _and([_DAY_WORDS[d] for d in days])
    elif every > 2:
        when = f"Every {every} weeks on " + _and([_DAY_WORDS[d] for d in days])
    elif days == _DAY_ORDER[:5]:
        when = "Weekdays"
    elif days == _DAY_ORDER:
        when = "Every day"
    else:
        when = _and([_DAY_WORDS[d] + "s" for d in days])
    return " ".join(p for p in (when, times) if p)


def _postcode(raw: str) -> str:
    pc = re.sub(r"\s+", "", (raw or "").upper())
    if re.fullmatch(r"[A-Z]{1,2}[0-9][A-Z0-9]?[0-9][A-Z]{2}", pc):
        return pc[:-3] + " " + pc[-3:]
    return clean_text(raw, 12)


def parse_datapackage(
    path: Path | str, practice_id: str = "local", source: str = ""
) -> tuple[list[ServiceRecord], list[Problem]]:
    """Read an HSDS 1.1 datapackage (a folder, or its datapackage.json) into directory entries.

    Returns every service that could be read, and a Problem (file, line, reason) for each row or
    file that could not; one bad row never stops the rest. Raises HsdsError only when nothing can
    be read at all (no such folder). Ids are `service_id(practice_id, HSDS service id)`.
    """
    folder = Path(path)
    if folder.is_file() and folder.name == "datapackage.json":
        folder = folder.parent
    if not folder.is_dir():
        raise HsdsError("There is no datapackage folder at that path.")
    problems: list[Problem] = []
    reader = _Reader(folder, problems)
    reader.load_descriptor()

    services = reader.table("service")
    if services is None:
        return [], sorted(problems, key=lambda p: (p.file, p.line))
    tables = _load_tables(reader, problems)
    present = _present_v1(reader.loaded, services.columns)
    out: list[ServiceRecord] = []
    seen: set[str] = set()
    for line, row in services.rows:
        checked = _check_service(row, services.file, line, seen, problems)
        src = clean_text(row.get("id"), 100)
        if checked is None and src and src not in seen:  # unreadable, not a repeat: never withdrawn for it
            problems[-1] = replace(problems[-1], service_id=service_id(practice_id, src, source))
        if checked is not None:
            src, name, active = checked
            rec = _service_record(row, src, name, active, tables, practice_id, services.file, line, problems)
            rec.id, rec.source, rec.present = service_id(practice_id, src, source), source, present
            if "organization" not in reader.loaded:  # its email and url stand in for the service's own
                rec.present = present - {f for f in ("email", "url") if not (row.get(f) or "").strip()}
            out.append(rec)
    problems.sort(key=lambda p: (p.file, p.line))  # file by file, top to bottom, whatever order they were found
    return out, problems


def _present_v1(loaded: set[str], columns: list[str]) -> frozenset[str]:
    """The fields an HSDS 1.1 package states: a file or column it lacks leaves the stored value alone."""
    cols = set(columns)
    present = {"name", "source_id", "categories", "needs", "last_verified"}
    by_column = {"description": "description", "status": "active", "fees": "cost", "email": "email", "url": "url"}
    present |= {f for c, f in by_column.items() if c in cols}
    by_file = {
        "organization": ("organisation", "email", "url"),
        "phone": ("phone",),
        "regular_schedule": ("opening_times",),
        "eligibility": ("eligibility",),
        "service_area": ("area",),
        "physical_address": ("area", "address", "postcode"),
        "accessibility_for_disabilities": ("accessibility",),
    }
    for resource, fields in by_file.items():
        if resource in loaded:
            present.update(fields)
    if {"service_at_location", "location"} <= loaded:
        present.add("address")
    if cols & {"application_process", "wait_time"}:
        present.add("referral_route")
    if "interpretation_services" in cols:
        present.add("accessibility")
    return frozenset(present)


@dataclass
class _Tables:
    """The package's files other than services.csv, indexed for lookups from one service."""

    organisations: dict[str, dict[str, str]]
    locations: dict[str, dict[str, str]]
    sal_by_service: dict[str, list[dict[str, str]]]
    phones_by: dict[str, dict[str, list[dict[str, str]]]]  # by service, service-at-location, location, organisation
    addresses: dict[str, list[dict[str, str]]]
    schedules_by_service: dict[str, list[dict[str, str]]]
    schedules_by_location: dict[str, list[dict[str, str]]]
    eligibility: dict[str, list[dict[str, str]]]
    areas: dict[str, list[dict[str, str]]]
    access: dict[str, list[dict[str, str]]]
    taxonomy: dict[str, dict[str, str]]
    service_terms: dict[str, list[dict[str, str]]]
    verified: dict[str, dt.date]  # resource id -> latest metadata change


def _load_tables(reader: _Reader, problems: list[Problem]) -> _Tables:
    """Read and index every optional file, in a fixed order (problems are reported as found)."""
    organisations = {
        (r.get("id") or "").strip(): r for _l, r in _rows(reader.table("organization")) if (r.get("id") or "").strip()
    }
    locations = {(r.get("id") or "").strip(): r for _l, r in _rows(reader.table("location"))}
    sal_by_service = _index(reader.table("service_at_location"), "service_id")
    phones_table = reader.table("phone")
    phones_by = {
        key: _index(phones_table, key)
        for key in ("service_id", "service_at_location_id", "location_id", "organization_id")
    }
    addresses = _index(reader.table("physical_address"), "location_id")
    schedules_table = reader.table("regular_schedule")
    return _Tables(
        organisations=organisations,
        locations=locations,
        sal_by_service=sal_by_service,
        phones_by=phones_by,
        addresses=addresses,
        schedules_by_service=_index(schedules_table, "service_id"),
        schedules_by_location=_index(schedules_table, "location_id"),
        eligibility=_index(reader.table("eligibility"), "service_id"),
        areas=_index(reader.table("service_area"), "service_id"),
        access=_index(reader.table("accessibility_for_disabilities"), "location_id"),
        taxonomy={(r.get("id") or "").strip(): r for _l, r in _rows(reader.table("taxonomy"))},
        service_terms=_index(reader.table("service_taxonomy"), "service_id"),
        verified=_metadata_dates(reader.table("metadata"), problems),
    )


def _check_service(
    row: dict[str, str], file: str, line: int, seen: set[str], problems: list[Problem]
) -> tuple[str, str, bool] | None:
    """(HSDS id, name, active) of a usable services.csv row, or None with the reason reported."""
    src = clean_text(row.get("id"), 100)
    name = html_to_text(row.get("name"), MAX_SHORT)
    if not src:
        problems.append(Problem(file, line, "the service has no id"))
        return None
    if not name:
        problems.append(Problem(file, line, "the service has no name"))
        return None
    if src in seen:
        problems.append(Problem(file, line, "the service id appears more than once; only the first was used"))
        return None
    status = (row.get("status") or "").strip().lower()
    if status and status not in STATUS_ACTIVE:
        # Unknown status: imported but marked inactive, so nobody is sent to a closed door.
        problems.append(Problem(file, line, "the status is not one HSDS defines, so the service is marked inactive"))
    seen.add(src)
    return src, name, STATUS_ACTIVE.get(status, not status)


def _service_record(
    row: dict[str, str],
    src: str,
    name: str,
    active: bool,
    t: _Tables,
    practice_id: str,
    file: str,
    line: int,
    problems: list[Problem],
) -> ServiceRecord:
    """One directory entry from a checked services.csv row and the package's other files."""
    org_id = (row.get("organization_id") or "").strip()
    org = t.organisations.get(org_id)
    if org_id and org is None and t.organisations:
        problems.append(Problem(file, line, "the organisation it names is not in the organisations file"))
    sals = t.sal_by_service.get(src, [])
    locs = [t.locations[s["location_id"].strip()] for s in sals if s.get("location_id", "").strip() in t.locations]
    loc_ids = [(loc.get("id") or "").strip() for loc in locs]
    address, postcode, cities = _address(locs, t)
    area = _join_unique([clean_text(a.get("service_area"), 100) for a in t.areas.get(src, [])], ", ")
    description = html_to_text(row.get("description"))
    terms = _taxonomy_terms(row, src, t)
    categories, needs = classify(" ".join(terms), name, description)
    return ServiceRecord(
        id=service_id(practice_id, src),
        source_id=src,
        name=name,
        organisation=clean_text((org or {}).get("name"), MAX_SHORT),
        description=description,
        categories=[c for c in dict.fromkeys([_slug(term) for term in terms if term] + categories) if c],
        needs=needs,
        area=area or _join_unique(cities, ", "),
        address=address,
        postcode=postcode,
        phone=_service_phone(src, org_id, sals, loc_ids, t),
        email=clean_text(row.get("email") or (org or {}).get("email"), MAX_SHORT),
        url=clean_text(row.get("url") or (org or {}).get("url"), MAX_SHORT),
        eligibility=_join_unique([html_to_text(e.get("eligibility"), MAX_SHORT) for e in t.eligibility.get(src, [])]),
        cost=html_to_text(row.get("fees"), MAX_SHORT),
        referral_route=_referral_route(row),
        opening_times=_opening_times(src, loc_ids, t),
        accessibility=_accessibility(row, loc_ids, t),
        last_verified=_last_verified(row, src, [*loc_ids, org_id], t.verified),
        active=active,
    )


def _address(locs: list[dict[str, str]], t: _Tables) -> tuple[str, str, list[str]]:
    """(address, first good postcode, cities) from the service's locations and their physical addresses."""
    parts: list[str] = []
    postcode = ""
    cities: list[str] = []
    for loc in locs:
        parts.append(clean_text(loc.get("name"), MAX_SHORT))
        for a in t.addresses.get((loc.get("id") or "").strip(), []):
            parts += [clean_text(a.get(k), MAX_SHORT) for k in ("address_1", "address_2", "city")]
            cities.append(clean_text(a.get("city"), 100))
            postcode = postcode or _postcode(a.get("postal_code") or "")
    return _join_unique(parts, ", "), postcode, cities


def _service_phone(src: str, org_id: str, sals: list[dict[str, str]], loc_ids: list[str], t: _Tables) -> str:
    """The first phone of the service, else of its service-at-location, location, organisation."""
    phone = _phone(t.phones_by["service_id"].get(src, []))
    for s in sals:
        phone = phone or _phone(t.phones_by["service_at_location_id"].get((s.get("id") or "").strip(), []))
    for lid in loc_ids:
        phone = phone or _phone(t.phones_by["location_id"].get(lid, []))
    return phone or _phone(t.phones_by["organization_id"].get(org_id, []))


def _opening_times(src: str, loc_ids: list[str], t: _Tables) -> str:
    """The service's own regular schedule, then its locations'."""
    rows = list(t.schedules_by_service.get(src, []))
    for lid in loc_ids:
        rows += t.schedules_by_location.get(lid, [])
    return _schedule(rows)


def _accessibility(row: dict[str, str], loc_ids: list[str], t: _Tables) -> str:
    parts = []
    for lid in loc_ids:
        for a in t.access.get(lid, []):
            detail = clean_text(a.get("details"), MAX_SHORT)
            what = clean_text(a.get("accessibility"), MAX_SHORT)
            parts.append(f"{what} ({detail})" if detail else what)
    interpretation = clean_text(row.get("interpretation_services"), MAX_SHORT)
    if interpretation:
        parts.append(f"Interpretation: {interpretation}")
    return _join_unique(parts)


def _referral_route(row: dict[str, str]) -> str:
    route = html_to_text(row.get("application_process"), MAX_SHORT)
    wait = clean_text(row.get("wait_time"), 100)
    if wait:
        route = f"{route}. Waiting time: {wait}" if route else f"Waiting time: {wait}"
    return route


def _taxonomy_terms(row: dict[str, str], src: str, t: _Tables) -> list[str]:
    """Taxonomy names from services_taxonomy.csv, then from the service's own taxonomy_ids column."""
    ids = [(st.get("taxonomy_id") or "").strip() for st in t.service_terms.get(src, [])]
    ids += [tid.strip() for tid in re.split(r"[,;|]", row.get("taxonomy_ids") or "")]
    return [clean_text(t.taxonomy[tid].get("name"), 100) for tid in ids if tid in t.taxonomy]


def _last_verified(
    row: dict[str, str], src: str, nearby_ids: list[str], verified: dict[str, dt.date]
) -> dt.date | None:
    """The later of the service's own verification date and its latest metadata change.

    Either means someone looked at the entry then. Publishers that log changes per organisation or
    location only (as the Open Referral sample does) get the latest of those instead.
    """
    dates = [d for d in (_date(row.get(c) or "") for c in VERIFIED_COLUMNS) if d is not None]
    logged = verified.get(src)
    if logged is None:
        nearby = [verified[k] for k in nearby_ids if k in verified]
        logged = max(nearby) if nearby else None
    if logged:
        dates.append(logged)
    return max(dates) if dates else None


def _metadata_dates(table: _Table | None, problems: list[Problem]) -> dict[str, dt.date]:
    """resource_id -> latest last_action_date; unreadable dates are reported and skipped."""
    out: dict[str, dt.date] = {}
    if table is None:
        return out
    for line, row in table.rows:
        rid = (row.get("resource_id") or "").strip()
        d = _date(row.get("last_action_date") or "")
        if not rid:
            continue
        if d is None:
            problems.append(Problem(table.file, line, "the last_action_date is not a date"))
            continue
        if rid not in out or d > out[rid]:
            out[rid] = d
    return out
