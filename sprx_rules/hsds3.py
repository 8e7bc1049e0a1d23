"""HSDS 3.0 and Open Referral UK reader: API JSON and tabular CSV packages into directory entries.

Pure (no database, no HTTP): `sprx_rules.directory.read_directory` picks this reader or the HSDS 1.1
one (`sprx_rules.hsds`) by what the path holds, for the laptop and the server alike.

- JSON: a `service_full` document, a page of `service_list` (`contents`, `total_items`, ...), a plain
  list of services, or a folder of such files. Each service is checked with the pydantic models below.
- CSV: a folder of HSDS 3.0 tables, with or without datapackage.json. The tables are joined into the
  same nested shape as `service_full` and read by the same code, so both give the same entry.

Absent is not empty: a key the document lacks (a `service_list` item has no schedules; a package
without schedules.csv) leaves the stored value alone (`ServiceRecord.present`), while an explicit
empty value (`[]`, `null`, an empty cell) clears it. Unknown fields and columns are reported, never
fatal; a sub-row that does not fit the model (a `minimum_age` of "twelve") is reported and skipped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from sprx_rules.hsds import (
    MAX_FILE_BYTES,
    MAX_ROWS,
    MAX_SHORT,
    STATUS_ACTIVE,
    UNREAD,
    HsdsError,
    Problem,
    ServiceRecord,
    _date,
    _join_unique,
    _postcode,
    _Reader,
    _slug,
    classify,
    clean_text,
    html_to_text,
    schedule_words,
    service_id,
)

__all__ = [
    "age_words",
    "looks_like_v3_package",
    "parse_json_path",
    "parse_json_value",
    "parse_v3_package",
    "service_docs",
]


# -- row models -----------------------------------------------------------------------------------


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float | Decimal | str):
        return str(v)
    raise ValueError("is not text")


def _int_opt(v: Any) -> int | None:
    if v is None or (isinstance(v, str) and not v.strip()):
        return None
    if isinstance(v, bool):
        raise ValueError("is not a whole number")
    try:
        n = int(Decimal(str(v).strip()))
    except (InvalidOperation, ValueError):
        raise ValueError("is not a whole number") from None
    if not 0 <= n <= 150:
        raise ValueError("is not an age in years")
    return n


def _items(v: Any) -> list[Any]:
    if v is None:
        return []
    if isinstance(v, list):
        return v
    raise ValueError("is not a list")


Text = Annotated[str, BeforeValidator(_text)]
Age = Annotated[int | None, BeforeValidator(_int_opt)]
Items = Annotated[list[Any], BeforeValidator(_items)]


class _Row(BaseModel):
    """A row or object of the standard: known fields typed, others kept aside and reported."""

    model_config = ConfigDict(extra="allow")
    KNOWN: ClassVar[frozenset[str]] = frozenset()
    """Fields of the standard that sprx does not keep (not reported as unknown)."""
    TABLE: ClassVar[str] = ""

    def unknown(self) -> list[str]:
        return [k for k in (self.model_extra or {}) if k not in self.KNOWN]


class Organization(_Row):
    TABLE = "organizations"
    KNOWN = frozenset(
        {"description", "logo", "uri", "parent_organization_id", "organization_identifiers", "alternate_name",
         "year_incorporated", "legal_status", "tax_status", "tax_id", "funding", "contacts", "phones",
         "locations", "programs", "attributes", "metadata", "additional_websites"}
    )  # fmt: skip
    id: Text = ""
    name: Text = ""
    email: Text = ""
    website: Text = ""
    url: Text = ""


class Address(_Row):
    TABLE = "addresses"
    KNOWN = frozenset({"id", "location_id", "attention", "region", "state_province", "country", "address_type",
                       "attributes", "metadata"})  # fmt: skip
    address_1: Text = ""
    address_2: Text = ""
    city: Text = ""
    postal_code: Text = ""


class Accessibility(_Row):
    TABLE = "accessibility"
    KNOWN = frozenset({"id", "location_id", "url", "attributes", "metadata"})
    description: Text = ""
    details: Text = ""
    accessibility: Text = ""


class Phone(_Row):
    TABLE = "phones"
    KNOWN = frozenset({"id", "location_id", "service_id", "organization_id", "contact_id", "service_at_location_id",
                       "country_code", "description", "languages", "attributes", "metadata"})  # fmt: skip
    number: Text = ""
    extension: Text = ""
    type: Text = ""


class Schedule(_Row):
    TABLE = "schedules"
    KNOWN = frozenset(
        {"id", "service_id", "location_id", "service_at_location_id", "valid_from", "valid_to", "dtstart",
         "timezone", "until", "count", "wkst", "byweekno", "byyearday", "schedule_link", "attending_type",
         "notes", "bymonthday", "attributes", "metadata"}
    )  # fmt: skip
    freq: Text = ""
    interval: Text = ""
    byday: Text = ""
    opens_at: Text = ""
    closes_at: Text = ""
    description: Text = ""


class ServiceArea(_Row):
    TABLE = "service_areas"
    KNOWN = frozenset({"id", "service_id", "service_at_location_id", "extent", "extent_type", "uri", "attributes",
                       "metadata"})  # fmt: skip
    name: Text = ""
    service_area: Text = ""
    description: Text = ""


class Language(_Row):
    TABLE = "languages"
    KNOWN = frozenset({"id", "service_id", "location_id", "phone_id", "note", "attributes", "metadata"})
    name: Text = ""
    code: Text = ""


class CostOption(_Row):
    TABLE = "cost_options"
    KNOWN = frozenset({"id", "service_id", "valid_from", "valid_to", "attributes", "metadata"})
    option: Text = ""
    amount: Text = ""
    currency: Text = ""
    amount_description: Text = ""


class TaxonomyTerm(_Row):
    TABLE = "taxonomy_terms"
    KNOWN = frozenset({"id", "code", "description", "parent_id", "taxonomy", "taxonomy_id", "language",
                       "term_uri", "taxonomy_detail", "metadata"})  # fmt: skip
    name: Text = ""
    term: Text = ""


class Location(_Row):
    TABLE = "locations"
    KNOWN = frozenset(
        {"id", "location_type", "url", "organization_id", "alternate_name", "description", "transportation",
         "latitude", "longitude", "external_identifier", "external_identifier_type", "languages",
         "attributes", "metadata"}
    )  # fmt: skip
    name: Text = ""
    # Early HSDS 3.0 examples spell these "addresss" and "accessibilitys"; both spellings are read.
    addresses: Items = Field(default=[], validation_alias=AliasChoices("addresses", "addresss"))
    accessibility: Items = Field(default=[], validation_alias=AliasChoices("accessibility", "accessibilitys"))
    phones: Items = []
    schedules: Items = []
    contacts: Items = []


class ServiceDoc(_Row):
    """A service: a `service_full` document, a `service_list` item, or a services.csv row joined up."""

    TABLE = "services"
    KNOWN = frozenset(
        {"organization_id", "program_id", "alternate_name", "accreditations", "assurer_email", "licenses",
         "alert", "funding", "fundings", "program", "required_documents", "contacts", "metadata", "capacities"}
    )  # fmt: skip
    id: Text = ""
    name: Text = ""
    description: Text = ""
    url: Text = ""
    email: Text = ""
    status: Text = ""
    interpretation_services: Text = ""
    application_process: Text = ""
    fees: Text = ""
    fees_description: Text = ""
    wait_time: Text = ""
    eligibility_description: Text = ""
    minimum_age: Age = None
    maximum_age: Age = None
    assured_date: Text = ""
    last_modified: Text = ""
    organization: dict[str, Any] | None = None
    schedules: Items = []
    service_areas: Items = []
    service_at_locations: Items = []
    languages: Items = []
    cost_options: Items = []
    phones: Items = []
    attributes: Items = []
    taxonomy_terms: Items = []


R = TypeVar("R", bound=_Row)


# -- reading one service -------------------------------------------------------------------------


@dataclass
class _Context:
    file: str
    problems: list[Problem]
    practice_id: str
    source: str
    unknown: set[tuple[str, str]] = field(default_factory=set)
    report_unknown: bool = True

    def note_unknown(self, row: _Row) -> None:
        if not self.report_unknown:
            return
        for key in row.unknown():
            if (row.TABLE, key) not in self.unknown:
                self.unknown.add((row.TABLE, key))
                self.problems.append(
                    Problem(
                        self.file,
                        0,
                        f"the field '{clean_text(key, 60)}' of {row.TABLE} is not part of HSDS 3.0 or Open "
                        "Referral UK, so it was ignored",
                    )
                )


def _reason(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ()))
    msg = str(err.get("msg", "is not valid")).removeprefix("Value error, ")
    return f"the field '{clean_text(where, 60)}' {msg}" if where else msg


def _each(model: type[R], items: Iterable[Any], ctx: _Context, line: int) -> list[R]:
    out: list[R] = []
    for item in items:
        if not isinstance(item, dict):
            ctx.problems.append(
                Problem(ctx.file, line, f"an entry of {model.TABLE} is not an object, so it was skipped")
            )
            continue
        try:
            row = model.model_validate(item)
        except ValidationError as exc:
            ctx.problems.append(Problem(ctx.file, line, f"an entry of {model.TABLE} was skipped: {_reason(exc)}"))
            continue
        ctx.note_unknown(row)
        out.append(row)
    return out


_RRULE_DAYS = {"MO": "Mon", "TU": "Tue", "WE": "Wed", "TH": "Thu", "FR": "Fri", "SA": "Sat", "SU": "Sun"}
_ORDINALS = {"1": "first", "2": "second", "3": "third", "4": "fourth", "-1": "last"}


def _schedule_text(s: Schedule) -> str:
    """An RFC 5545-style HSDS 3.0 schedule in words ("Tuesdays 10:00–12:00"), else its description."""
    days: list[str] = []
    ordinal = ""
    for part in re.split(r"[,\s]+", s.byday.upper()):
        m = re.fullmatch(r"([+-]?\d)?(MO|TU|WE|TH|FR|SA|SU)", part)
        if m:
            days.append(_RRULE_DAYS[m.group(2)])
            ordinal = ordinal or _ORDINALS.get((m.group(1) or "").lstrip("+"), "")
    freq = s.freq.strip().upper()
    every = int(s.interval) if s.interval.strip().isdigit() and int(s.interval) > 0 else 1
    if freq == "DAILY" and not days:
        days = list(_RRULE_DAYS.values())
    if freq == "MONTHLY" and days and not ordinal:
        ordinal = "every"
    text = schedule_words(days, s.opens_at, s.closes_at, every=every, ordinal=ordinal if freq == "MONTHLY" else "",
                          fallback=html_to_text(s.description, MAX_SHORT))  # fmt: skip
    return text.replace("Every Monday of the month", "Mondays") if ordinal == "every" else text


def _money(c: CostOption) -> str:
    amount = c.amount.strip()
    if amount:
        try:
            d = Decimal(amount)
            amount = f"{d:.2f}" if d != d.to_integral_value() else str(d.to_integral_value())
        except InvalidOperation:
            amount = clean_text(amount, 20)
        cur = c.currency.strip().upper()
        amount = f"£{amount}" if cur in ("", "GBP") else f"{amount} {clean_text(cur, 3)}"
    price = " ".join(p for p in (amount, clean_text(c.amount_description, MAX_SHORT)) if p)
    option = clean_text(c.option, MAX_SHORT)
    return f"{option}: {price}" if option and price else option or price


def _phone_text(phones: list[Phone]) -> str:
    ranked = sorted(phones, key=lambda p: 0 if p.type.strip().lower() in ("", "voice") else 1)
    for p in ranked:
        number = clean_text(p.number.strip().strip('"'), 40)
        if number:
            ext = clean_text(p.extension, 10)
            return f"{number} ext {ext}" if ext else number
    return ""


@dataclass
class _Places:
    address: str = ""
    postcode: str = ""
    cities: list[str] = field(default_factory=list)
    phones: list[Phone] = field(default_factory=list)
    schedules: list[Schedule] = field(default_factory=list)
    access: list[str] = field(default_factory=list)
    stated: set[str] = field(default_factory=set)  # what the locations state (see _place_fields)


def _places(doc: ServiceDoc, ctx: _Context, line: int) -> _Places:
    out = _Places()
    parts: list[str] = []
    for sal in doc.service_at_locations:
        if not isinstance(sal, dict):
            continue
        out.schedules += _each(Schedule, _items_or_empty(sal.get("schedules")), ctx, line)
        sal_phones = _items_or_empty(sal.get("phones")) + _contact_phone_items(sal.get("contacts"))
        out.phones += _each(Phone, sal_phones, ctx, line)
        loc_raw = sal.get("location")
        if not isinstance(loc_raw, dict):
            continue
        for loc in _each(Location, [loc_raw], ctx, line):
            parts.append(clean_text(loc.name, MAX_SHORT))
            for a in _each(Address, loc.addresses, ctx, line):
                parts += [clean_text(v, MAX_SHORT) for v in (a.address_1, a.address_2, a.city)]
                out.cities.append(clean_text(a.city, 100))
                out.postcode = out.postcode or _postcode(a.postal_code)
            for acc in _each(Accessibility, loc.accessibility, ctx, line):
                what = clean_text(acc.accessibility or acc.description, MAX_SHORT)
                detail = clean_text(acc.details, MAX_SHORT)
                out.access.append(f"{what} ({detail})" if detail and what else what or detail)
            out.phones += _each(Phone, loc.phones + _contact_phone_items(loc.contacts), ctx, line)
            out.schedules += _each(Schedule, loc.schedules, ctx, line)
    out.address = _join_unique(parts, ", ")
    out.stated = _place_fields(doc)
    return out


def _contact_phone_items(contacts: Any) -> list[Any]:
    """The phones of a list of contacts (raw objects, checked by the caller)."""
    return [p for c in _items_or_empty(contacts) if isinstance(c, dict) for p in _items_or_empty(c.get("phones"))]


# What a location states by having the key at all (a CSV package without addresses.csv has none).
_LOCATION_KEYS = {("addresses", "addresss"): "postcode", ("accessibility", "accessibilitys"): "accessibility",
                  ("schedules",): "opening_times", ("phones", "contacts"): "phone"}  # fmt: skip


def _place_fields(doc: ServiceDoc) -> set[str]:
    """The fields the service's locations state: an explicit empty list of locations clears the address,
    postcode and accessibility; a location lacking a key (no addresses) leaves that field alone."""
    if "service_at_locations" not in doc.model_fields_set:
        return set()
    sals = [s for s in doc.service_at_locations if isinstance(s, dict)]
    if not sals:
        return {"address", "postcode", "accessibility"}
    out = {"address"}
    for keys, fname in _LOCATION_KEYS.items():
        every = all(
            any(k in s or (isinstance(s.get("location"), dict) and k in s["location"]) for k in keys) for s in sals
        )
        if every:
            out.add(fname)
    return out


def _items_or_empty(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _terms(doc: ServiceDoc, ctx: _Context, line: int) -> list[str]:
    raw = [a.get("taxonomy_term") for a in doc.attributes if isinstance(a, dict)] + list(doc.taxonomy_terms)
    return [clean_text(t.name or t.term, 100) for t in _each(TaxonomyTerm, [r for r in raw if r], ctx, line)]


def _ages(doc: ServiceDoc) -> str:
    lo, hi = doc.minimum_age, doc.maximum_age
    if lo is not None and hi is not None:
        return f"Ages {lo} to {hi}"
    if lo is not None:
        return f"Ages {lo} and over"
    return f"Ages up to {hi}" if hi is not None else ""


# Which record fields each key of the standard states. A key the document lacks states nothing.
_PRESENT_BY_KEY: dict[str, tuple[str, ...]] = {
    "description": ("description",),
    "status": ("active",),
    "url": ("url",),
    "email": ("email",),
    "organization": ("organisation", "url", "email"),
    "schedules": ("opening_times",),
    "service_areas": ("area",),
    "phones": ("phone",),
    "contacts": ("phone",),
    "languages": ("languages",),
    "cost_options": ("cost",),
    "eligibility_description": ("eligibility",),
    "minimum_age": ("min_age",),
    "maximum_age": ("max_age",),
    "application_process": ("referral_route",),
    "wait_time": ("referral_route",),
    "interpretation_services": ("accessibility",),
    "attributes": ("categories", "needs"),
    "taxonomy_terms": ("categories", "needs"),
    "assured_date": ("last_verified",),
    "last_modified": ("last_verified",),
}


def _present(doc: ServiceDoc, cost: str, places: _Places) -> frozenset[str]:
    out: set[str] = {"name", "source_id", *places.stated}
    for key in doc.model_fields_set | set(doc.model_extra or {}):
        out.update(_PRESENT_BY_KEY.get(key, ()))
    if cost:  # fees text without cost_options (a list item) states the cost; an empty one does not clear it
        out.add("cost")
    return frozenset(out)


def _contact_phones(doc: ServiceDoc, ctx: _Context, line: int) -> list[Phone]:
    phones = _each(Phone, doc.phones, ctx, line)
    for contact in _items_or_empty((doc.model_extra or {}).get("contacts")):
        if isinstance(contact, dict):
            phones += _each(Phone, _items_or_empty(contact.get("phones")), ctx, line)
    return phones


def _cost(doc: ServiceDoc, ctx: _Context, line: int) -> str:
    fees = html_to_text(doc.fees_description or doc.fees, MAX_SHORT)
    if fees.lower() in ("fees_description", "fees"):  # the examples' placeholder
        fees = ""
    return _join_unique([fees] + [_money(c) for c in _each(CostOption, doc.cost_options, ctx, line)])


def _route(doc: ServiceDoc) -> str:
    route = html_to_text(doc.application_process, MAX_SHORT)
    wait = clean_text(doc.wait_time, 100)
    if wait:
        route = f"{route}. Waiting time: {wait}" if route else f"Waiting time: {wait}"
    return route


def _access(doc: ServiceDoc, places: _Places) -> str:
    interpretation = clean_text(doc.interpretation_services, MAX_SHORT)
    return _join_unique(places.access + ([f"Interpretation: {interpretation}"] if interpretation else []))


def _checked(raw: dict[str, Any], ctx: _Context, line: int) -> tuple[ServiceDoc, str, str] | None:
    """(the service, its id, its name), or None with the reason reported (and its id, so a full import
    does not take an unreadable service for a withdrawn one)."""
    raw_id = raw.get("id")
    src = clean_text(str(raw_id), 100) if isinstance(raw_id, str | int) else ""
    unread = service_id(ctx.practice_id, src, ctx.source) if src else UNREAD
    try:
        doc = ServiceDoc.model_validate(raw)
    except ValidationError as exc:
        ctx.problems.append(Problem(ctx.file, line, f"the service was skipped: {_reason(exc)}", unread))
        return None
    ctx.note_unknown(doc)
    name = html_to_text(doc.name, MAX_SHORT)
    if not src or not name:
        reason = f"the service has no {'id' if not src else 'name'}"
        ctx.problems.append(Problem(ctx.file, line, reason, unread))
        return None
    status = doc.status.strip().lower()
    if status and status not in STATUS_ACTIVE:
        ctx.problems.append(
            Problem(ctx.file, line, "the status is not one HSDS defines, so the service is marked inactive")
        )
    return doc, src, name


def service_record(raw: dict[str, Any], ctx: _Context, line: int = 0) -> ServiceRecord | None:
    """One directory entry from one service object, or None with the reason reported."""
    checked = _checked(raw, ctx, line)
    if checked is None:
        return None
    doc, src, name = checked
    status = doc.status.strip().lower()
    cost = _cost(doc, ctx, line)
    org = _each(Organization, [doc.organization], ctx, line)[0] if doc.organization else Organization()
    places = _places(doc, ctx, line)
    areas = [
        html_to_text(a.name or a.service_area or a.description, MAX_SHORT)
        for a in _each(ServiceArea, doc.service_areas, ctx, line)
    ]
    schedules = _each(Schedule, doc.schedules, ctx, line) + places.schedules
    terms = _terms(doc, ctx, line)
    description = html_to_text(doc.description)
    categories, needs = classify(" ".join(terms), name, description)
    languages = [clean_text(x.name or x.code, 60) for x in _each(Language, doc.languages, ctx, line)]
    dates = [d for d in (_date(doc.assured_date), _date(doc.last_modified)) if d is not None]
    return ServiceRecord(
        id=service_id(ctx.practice_id, src, ctx.source),
        source_id=src,
        name=name,
        organisation=clean_text(org.name, MAX_SHORT),
        description=description,
        categories=[c for c in dict.fromkeys([_slug(t) for t in terms if t] + categories) if c],
        needs=needs,
        area=_join_unique(areas, ", ") or _join_unique(places.cities, ", "),
        address=places.address,
        postcode=places.postcode,
        phone=_phone_text(_contact_phones(doc, ctx, line)) or _phone_text(places.phones),
        email=clean_text(doc.email or org.email, MAX_SHORT),
        url=clean_text(doc.url or org.website or org.url, MAX_SHORT),
        eligibility=html_to_text(doc.eligibility_description, MAX_SHORT),
        cost=cost,
        referral_route=_route(doc),
        opening_times=_join_unique([_schedule_text(s) for s in schedules]),
        accessibility=_access(doc, places),
        last_verified=max(dates) if dates else None,
        active=STATUS_ACTIVE.get(status, not status),
        languages=[x for x in dict.fromkeys(languages) if x],
        min_age=doc.minimum_age,
        max_age=doc.maximum_age,
        source=ctx.source,
        present=_present(doc, cost, places),
    )


def age_words(min_age: int | None, max_age: int | None) -> str:
    """ "Ages 12 to 100", "Ages 18 and over", "Ages up to 25", or ""."""
    return _ages(ServiceDoc(minimum_age=min_age, maximum_age=max_age))


# -- JSON documents ------------------------------------------------------------------------------


def service_docs(value: Any) -> tuple[list[dict[str, Any]], str]:
    """The service objects in one JSON value and what it was ("service_full", "service_list", "list").

    Raises HsdsError when the value holds no services at all.
    """
    if isinstance(value, dict) and isinstance(value.get("contents"), list):
        docs, kind = value["contents"], "service_list"
    elif isinstance(value, list):
        docs, kind = value, "list"
    else:
        docs, kind = [value], "service_full"
    services = [d for d in docs if _is_service(d)]
    if docs and not services:
        raise HsdsError("That JSON is not an HSDS 3.0 service, a page of services or a list of services.")
    return services, kind


def _is_service(d: Any) -> bool:
    """A service object: an id and a name, and what only services have (status is required in 3.0)."""
    return (
        isinstance(d, dict)
        and "id" in d
        and "name" in d
        and "services" not in d
        and any(k in d for k in ("status", "service_at_locations", "organization"))
    )


def parse_json_value(
    value: Any, file: str, practice_id: str, source: str, problems: list[Problem]
) -> list[ServiceRecord]:
    """Directory entries from one parsed JSON document (see service_docs); problems are appended."""
    docs, _kind = service_docs(value)
    ctx = _Context(file, problems, practice_id, source)
    out = []
    for i, doc in enumerate(docs[:MAX_ROWS], start=1):
        rec = service_record(doc, ctx, line=i)
        if rec is not None:
            out.append(rec)
    return out


def _json_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.glob("*.json") if p.name != "datapackage.json" and p.is_file())


def parse_json_path(
    path: Path, practice_id: str = "local", source: str = ""
) -> tuple[list[ServiceRecord], list[Problem]]:
    """A JSON file, or a folder of JSON files, of HSDS 3.0 / Open Referral UK services.

    Files that hold no services (an organization_list, a taxonomy) are reported and skipped; a
    service found in two files is read once (the first, by file name).
    """
    problems: list[Problem] = []
    out: list[ServiceRecord] = []
    seen: set[str] = set()
    files = _json_files(path)
    for f in files:
        value = _load_json(f, problems)
        if value is None:
            continue
        try:
            records = parse_json_value(value, f.name, practice_id, source, problems)
        except HsdsError:
            if len(files) == 1:
                raise
            problems.append(Problem(f.name, 0, "the file holds no HSDS 3.0 services, so it was skipped"))
            continue
        for rec in records:
            if rec.source_id in seen:
                problems.append(
                    Problem(f.name, 0, f"the service '{rec.source_id}' was read already; this copy was skipped")
                )
                continue
            seen.add(rec.source_id)
            out.append(rec)
    return out, problems


def _load_json(f: Path, problems: list[Problem]) -> Any:
    try:
        if f.stat().st_size > MAX_FILE_BYTES:
            problems.append(
                Problem(
                    f.name, 0, f"the file is larger than {MAX_FILE_BYTES // 1_000_000} MB, so it was not used", UNREAD
                )
            )
            return None
        return json.loads(f.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        problems.append(Problem(f.name, exc.lineno, "the file is not valid JSON, so it was skipped", UNREAD))
    except (OSError, UnicodeDecodeError):
        problems.append(Problem(f.name, 0, "the file cannot be read as UTF-8 text, so it was skipped", UNREAD))
    return None


# -- CSV packages ---------------------------------------------------------------------------------

# Resource name -> file names to look for, the standard's first (the examples publish some twice).
V3_FILES: dict[str, tuple[str, ...]] = {
    "organization": ("organizations.csv", "organization.csv"),
    "service": ("services.csv", "service.csv"),
    "service_at_location": ("service_at_locations.csv", "service_at_location.csv", "services_at_location.csv"),
    "location": ("locations.csv", "location.csv"),
    "address": ("addresses.csv", "address.csv"),
    "phone": ("phones.csv", "phone.csv"),
    "contact": ("contacts.csv", "contact.csv"),
    "schedule": ("schedules.csv", "schedule.csv"),
    "service_area": ("service_areas.csv", "service_area.csv"),
    "language": ("languages.csv", "language.csv"),
    "accessibility": ("accessibility.csv", "accessibilities.csv"),
    "cost_option": ("cost_options.csv", "cost_option.csv"),
    "attribute": ("attributes.csv", "attribute.csv"),
    "taxonomy_term": ("taxonomy_terms.csv", "taxonomy_term.csv"),
}
V3_REQUIRED: dict[str, tuple[str, ...]] = {
    "service": ("id", "name"),
    "organization": ("id",),
    "location": ("id",),
    "service_at_location": ("service_id", "location_id"),
    "address": ("location_id",),
    "accessibility": ("location_id",),
    "attribute": ("link_id", "taxonomy_term_id"),
    "taxonomy_term": ("id",),
}
_V3_ONLY = {"schedules.csv", "schedule.csv", "addresses.csv", "address.csv", "service_at_location.csv",
            "cost_options.csv", "attributes.csv", "attribute.csv", "taxonomy_terms.csv"}  # fmt: skip
_V3_COLUMNS = {"minimum_age", "maximum_age", "eligibility_description", "fees_description", "assured_date"}
_MODELS: dict[str, type[_Row]] = {
    "organization": Organization, "service": ServiceDoc, "location": Location, "address": Address,
    "phone": Phone, "schedule": Schedule, "service_area": ServiceArea, "language": Language,
    "accessibility": Accessibility, "cost_option": CostOption, "taxonomy_term": TaxonomyTerm,
}  # fmt: skip
_LINK_COLUMNS = {"id", "service_id", "location_id", "organization_id", "contact_id", "service_at_location_id",
                 "link_id", "link_type", "taxonomy_term_id", "link_entity", "phone_id", "name", "title",
                 "department", "email"}  # fmt: skip


def looks_like_v3_package(folder: Path) -> bool:
    """Whether a CSV folder is HSDS 3.0 (or Open Referral UK) rather than HSDS 1.1."""
    desc = folder / "datapackage.json"
    if desc.is_file():
        try:
            data = json.loads(desc.read_text(encoding="utf-8-sig"))
            version = str(data.get("version", "")) if isinstance(data, dict) else ""
            if version.startswith("3"):
                return True
            if version.startswith("1"):
                return False
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            pass
    names = {p.name.lower() for p in folder.glob("*.csv")}
    if names & _V3_ONLY:
        return True
    try:
        with (folder / "services.csv").open(encoding="utf-8-sig", errors="replace") as fh:
            header = {h.strip().lower() for h in fh.readline().split(",")}
    except OSError:
        return False
    return bool(header & _V3_COLUMNS)


def _index(rows: Iterable[tuple[int, dict[str, str]]], key: str) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for _line, row in rows:
        k = (row.get(key) or "").strip()
        if k:
            out.setdefault(k, []).append(row)
    return out


def _unknown_columns(file: str, columns: list[str], model: type[_Row], problems: list[Problem]) -> None:
    allowed = set(model.model_fields) | model.KNOWN | _LINK_COLUMNS
    for col in columns:
        if col not in allowed:
            reason = f"the column '{clean_text(col, 60)}' is not an HSDS 3.0 column, so it was ignored"
            problems.append(Problem(file, 1, reason))


class _V3Tables:
    """The package's tables, read once and indexed for joining rows into one service object."""

    def __init__(self, reader: _Reader, problems: list[Problem]) -> None:
        self.rows: dict[str, list[tuple[int, dict[str, str]]]] = {}
        for resource in V3_FILES:
            if resource == "service":
                continue
            table = reader.table(resource)
            if table is None:
                continue
            self.rows[resource] = table.rows
            model = _MODELS.get(resource)
            if model is not None:
                _unknown_columns(table.file, table.columns, model, problems)
        self.by: dict[tuple[str, str], dict[str, list[dict[str, str]]]] = {}

    def has(self, resource: str) -> bool:
        return resource in self.rows

    def lookup(self, resource: str, key: str, value: str) -> list[dict[str, str]]:
        if (resource, key) not in self.by:
            self.by[(resource, key)] = _index(self.rows.get(resource, []), key)
        return self.by[(resource, key)].get(value, []) if value else []

    def location(self, loc_id: str, sal_id: str) -> dict[str, Any] | None:
        found = self.lookup("location", "id", loc_id)
        if not found:
            return None
        loc: dict[str, Any] = dict(found[0])
        for resource, key in (("address", "addresses"), ("accessibility", "accessibility"), ("phone", "phones")):
            if self.has(resource):
                loc[key] = self.lookup(resource, "location_id", loc_id)
        if self.has("schedule"):
            loc["schedules"] = [
                s for s in self.lookup("schedule", "location_id", loc_id) if not (s.get("service_id") or "").strip()
            ] + self.lookup("schedule", "service_at_location_id", sal_id)
        return loc

    def service(self, row: dict[str, str]) -> dict[str, Any]:
        """One services.csv row joined with the other tables into a service_full-shaped object."""
        doc: dict[str, Any] = dict(row)
        sid = (row.get("id") or "").strip()
        org_id = (row.get("organization_id") or "").strip()
        if self.has("organization"):
            orgs = self.lookup("organization", "id", org_id)
            doc["organization"] = orgs[0] if orgs else None
        if self.has("service_at_location") and self.has("location"):
            sals = []
            for sal in self.lookup("service_at_location", "service_id", sid):
                loc = self.location((sal.get("location_id") or "").strip(), (sal.get("id") or "").strip())
                if loc is not None:
                    sals.append({"id": sal.get("id", ""), "location": loc})
            doc["service_at_locations"] = sals
        for resource, key in (("schedule", "schedules"), ("service_area", "service_areas"),
                              ("language", "languages"), ("cost_option", "cost_options")):  # fmt: skip
            if self.has(resource):
                doc[key] = self.lookup(resource, "service_id", sid)
        if self.has("phone"):
            phones = list(self.lookup("phone", "service_id", sid))
            for contact in self.lookup("contact", "service_id", sid):
                phones += self.lookup("phone", "contact_id", (contact.get("id") or "").strip())
            doc["phones"] = phones
        if self.has("attribute") and self.has("taxonomy_term"):
            doc["attributes"] = [
                {"taxonomy_term": t}
                for a in self.lookup("attribute", "link_id", sid)
                for t in self.lookup("taxonomy_term", "id", (a.get("taxonomy_term_id") or "").strip())
            ]
        return doc


def parse_v3_package(
    path: Path | str, practice_id: str = "local", source: str = ""
) -> tuple[list[ServiceRecord], list[Problem]]:
    """An HSDS 3.0 / Open Referral UK CSV folder (with or without datapackage.json)."""
    folder = Path(path)
    if folder.is_file() and folder.name == "datapackage.json":
        folder = folder.parent
    if not folder.is_dir():
        raise HsdsError("There is no directory package at that path.")
    problems: list[Problem] = []
    defaults = {r: next((n for n in names if (folder / n).is_file()), names[0]) for r, names in V3_FILES.items()}
    reader = _Reader(folder, problems, defaults=defaults, required=V3_REQUIRED)
    reader.load_descriptor(optional=True)
    for resource in V3_FILES:  # a descriptor naming a file that is not there: try the usual names
        if not (folder / reader.paths[resource]).is_file() and (folder / defaults[resource]).is_file():
            reader.paths[resource] = defaults[resource]
    services = reader.table("service")
    if services is None:
        return [], sorted(problems, key=lambda p: (p.file, p.line))
    _unknown_columns(services.file, services.columns, ServiceDoc, problems)
    tables = _V3Tables(reader, problems)
    ctx = _Context(services.file, problems, practice_id, source, report_unknown=False)
    out: list[ServiceRecord] = []
    seen: set[str] = set()
    for line, row in services.rows:
        rec = service_record(tables.service(row), ctx, line)
        if rec is None:
            continue
        if rec.source_id in seen:
            problems.append(
                Problem(services.file, line, "the service id appears more than once; only the first was used")
            )
            continue
        seen.add(rec.source_id)
        out.append(rec)
    problems.sort(key=lambda p: (p.file, p.line))
    return out, problems
