"""Exports that leave the encrypted store: deliberate, audited, written owner-only."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import defer
from sqlmodel import Session, col, select

from sprx_tui.core.diskfull import DiskFull, disk_full_as_sentence, is_disk_full
from sprx_tui.core.models import (
    Contact,
    ContactAmendment,
    FollowUp,
    Goal,
    Need,
    OnwardReferral,
    OutcomeResponse,
    Person,
    PlanAction,
    Referral,
    SafetyFlagChange,
    Synced,
    WhatMatters,
)
from sprx_tui.core.service import ServiceError
from sprx_tui.core.store import CaseStore
from sprx_tui.core.wire import to_wire

LEAVING_WARNING = (
    "This export is NOT encrypted: it leaves the protected vault. Keep it on an encrypted drive, "
    "share it only through an approved route, and delete it when it is no longer needed."
)

CSV_TABLES: list[tuple[str, type[Synced]]] = [
    ("people", Person),
    ("referrals", Referral),
    ("contacts", Contact),
    ("contact_amendments", ContactAmendment),
    ("safety_flag_changes", SafetyFlagChange),
    ("follow_ups", FollowUp),
    ("what_matters", WhatMatters),
    ("goals", Goal),
    ("plan_actions", PlanAction),
    ("needs", Need),
    ("onward_referrals", OnwardReferral),
    ("outcomes", OutcomeResponse),
]
_INTERNAL = {"field_meta", "row_hlc", "server_seq", "search_text", "practice_id"}


def _open_private(path: Path) -> int:
    """Create a new file readable only by its owner; never overwrite an existing one."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)


def prepare_export_dir(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        raise ServiceError("The export folder already has files in it; choose an empty or new folder.")
    try:
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFull() from None
        raise ServiceError("The export folder could not be created; check the path and permissions.") from None


def export_csv(
    store: CaseStore,
    out: Path,
    *,
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Write one CSV file per record type into `out` and audit the export; returns row counts.

    A failed export (a full disk, say) removes the files it wrote, and the folder if it made it.
    """
    made = not out.exists()
    prepare_export_dir(out)
    written: list[Path] = []
    try:
        with disk_full_as_sentence(out):
            return _write_csv(store, out, written, progress)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        if made:
            with contextlib.suppress(OSError):
                out.rmdir()
        raise


def _write_csv(
    store: CaseStore, out: Path, written: list[Path], progress: Callable[[int], None] | None
) -> dict[str, int]:
    counts: dict[str, int] = {}
    # The store's one connection is shared by every thread: read under its lock, or this session's
    # rollback at close would end a write transaction another thread has open.
    with store.lock, Session(store.engine) as s:
        for name, model in CSV_TABLES:
            columns = [c for c in model.model_fields if c not in _INTERNAL]
            fd = _open_private(out / f"{name}.csv")
            written.append(out / f"{name}.csv")
            n = 0
            with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh)
                writer.writerow(columns)
                for row in s.exec(select(model).execution_options(yield_per=2000)):
                    writer.writerow([_cell(to_wire(getattr(row, c))) for c in columns])
                    n += 1
            counts[name] = n
            if progress:
                progress(1)
    fd = _open_private(out / "README-UNENCRYPTED.txt")
    written.append(out / "README-UNENCRYPTED.txt")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(LEAVING_WARNING + "\n")
        fh.write(f"Exported {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')} by sprx.\n")
    store.service.record_event("EXPORT", detail="csv " + ",".join(f"{k}={v}" for k, v in counts.items()))
    return counts


def _cell(value: object) -> object:
    if isinstance(value, list):
        return ";".join(str(v) for v in value)
    if isinstance(value, dict):
        import json

        return json.dumps(value, sort_keys=True)
    if value is None:
        return ""
    return value


# -- FHIR R4 ------------------------------------------------------------------------------------------

FHIR_BATCH = 500


def _people_batches(store: CaseStore, batch: int) -> Iterator[list[dict[str, Any]]]:
    """Per batch of people: their FHIR resources, person by person, read with a few IN queries.

    Memory stays bounded by one batch; the store lock is released between batches so the app
    stays responsive during a long export.
    """
    from sprx_tui.core import fhir

    with store.lock, Session(store.engine) as s:
        ids = list(s.exec(select(Person.id).where(Person.deleted == False).order_by(Person.id)))  # noqa: E712
    for start in range(0, len(ids), batch):
        chunk = ids[start : start + batch]
        rows: dict[type[Synced], dict[str, list[Any]]] = {}
        with store.lock, Session(store.engine, expire_on_commit=False) as s:
            # Sync metadata (field_meta) is the largest JSON in each row and no resource needs it.
            people = s.exec(
                select(Person).where(col(Person.id).in_(chunk)).options(defer(Person.field_meta))  # type: ignore[arg-type]
            ).all()
            for model, order in _FHIR_TABLES:
                by_person: dict[str, list[Any]] = {}
                query = (
                    select(model)
                    .where(col(model.person_id).in_(chunk), model.deleted == False)  # noqa: E712
                    .options(defer(model.field_meta))  # type: ignore[arg-type]
                )
                for row in s.exec(query.order_by(*order)):
                    by_person.setdefault(row.person_id, []).append(row)
                rows[model] = by_person
        out = []
        for person in sorted(people, key=lambda p: p.id):
            mine = {model: by_person.get(person.id, []) for model, by_person in rows.items()}
            out.append(
                fhir.person_resources(
                    person,
                    referrals=mine[Referral],
                    contacts=mine[Contact],
                    amendments=mine[ContactAmendment],
                    what_matters=mine[WhatMatters],
                    goals=mine[Goal],
                    actions=mine[PlanAction],
                    onward=mine[OnwardReferral],
                    outcome_rows=mine[OutcomeResponse],
                )
            )
        yield [r for person_resources in out for r in person_resources]


_FHIR_TABLES: list[tuple[type[Synced], tuple[Any, ...]]] = [
    (Referral, (Referral.received_on, Referral.id)),
    (Contact, (Contact.occurred_at, Contact.id)),
    (ContactAmendment, (ContactAmendment.amended_at, ContactAmendment.id)),
    (WhatMatters, (WhatMatters.priority.desc(), WhatMatters.id)),  # type: ignore[attr-defined]
    (Goal, (Goal.position, Goal.id)),
    (PlanAction, (PlanAction.position, PlanAction.id)),
    (OnwardReferral, (OnwardReferral.made_on, OnwardReferral.id)),
    (OutcomeResponse, (OutcomeResponse.taken_on, OutcomeResponse.id)),
]


def export_fhir(
    store: CaseStore,
    out: Path,
    *,
    progress: Callable[[int], None] | None = None,
    batch: int = FHIR_BATCH,
) -> int:
    """Write every record as one FHIR R4 Bundle (type collection) in a new 0600 file; returns the resource count.

    Never overwrites: an existing file is refused. Entries are streamed to the file a batch of
    people at a time, so memory does not grow with the caseload. A failed export removes its
    partial file. The export is audited (EXPORT, with counts only).
    """
    from sprx_tui.core import fhir

    out = Path(out)
    if out.exists():
        raise ServiceError("A file with that name already exists; exports never overwrite, so choose a new name.")
    if not out.parent.is_dir():
        raise ServiceError("The folder for the export does not exist; create it or choose another path.")
    try:
        fd = _open_private(out)
    except FileExistsError:
        raise ServiceError(
            "A file with that name already exists; exports never overwrite, so choose a new name."
        ) from None
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFull() from None
        raise ServiceError("The export file could not be created; check the path and permissions.") from None
    count = 0
    people = 0
    try:
        with disk_full_as_sentence(out.parent), os.fdopen(fd, "w", encoding="utf-8") as fh:
            header = json.dumps(fhir.bundle_header(store.service.clock()), ensure_ascii=False)
            fh.write(header[:-1] + ', "entry": [\n')
            # The instruments' Questionnaires once, ahead of the people whose responses name them.
            for resource in fhir.questionnaires():
                fh.write((",\n" if count else "") + json.dumps(fhir.entry(resource), ensure_ascii=False))
                count += 1
            for resources in _people_batches(store, batch):
                for resource in resources:
                    if resource["resourceType"] == "Patient":
                        people += 1
                    fh.write((",\n" if count else "") + json.dumps(fhir.entry(resource), ensure_ascii=False))
                    count += 1
                if progress:
                    progress(len(resources))
            fh.write("\n]}\n")
        # An export that could not be audited (a full disk) is not left behind either.
        store.service.record_event("EXPORT", detail=f"fhir resources={count} people={people}")
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return count


# -- closing summary for the GP ------------------------------------------------------------------------

CONSENT_REFUSED = "This person has not agreed to share information with their GP, so no closing summary can be made."


@dataclass
class _Episode:
    """What a closing summary may draw on, read once: `closing_summary` and `gp_summary_bundle` share it."""

    person: Person
    consent: str
    referrals: list[Referral]
    seen: list[dt.datetime]  # when each contact happened that the person attended (not entered in error)
    goals: list[Goal] = field(default_factory=list)
    onward: list[OnwardReferral] = field(default_factory=list)
    measures: list[tuple[OutcomeResponse, OutcomeResponse]] = field(default_factory=list)


def _read_episode(store: CaseStore, person_id: str) -> _Episode | str:
    """The person's episode as far as their consent allows; CONSENT_REFUSED when they did not agree."""
    from sprx_tui.core.service import NotFound

    q = store.queries
    person = q.person(person_id)
    if person is None:
        raise NotFound("That person could not be found; they may have been removed.")
    consent = person.consent_gp_sharing or "full"
    if consent == "none":
        return CONSENT_REFUSED
    referrals = sorted(q.referrals(person_id), key=lambda r: (r.received_on, r.id))
    with store.lock, Session(store.engine) as s:  # dates only: no notes, no amendments are read
        seen = list(
            s.exec(
                select(Contact.occurred_at).where(
                    Contact.person_id == person_id,
                    Contact.deleted == False,  # noqa: E712
                    Contact.entered_in_error == False,  # noqa: E712
                    Contact.did_not_attend == False,  # noqa: E712
                )
            )
        )
    episode = _Episode(person, consent, referrals, seen)
    if consent == "full":
        episode.goals = [g.goal for g in q.plan(person_id)]
        episode.onward = [o for o in q.onward_referrals(person_id) if o.withdrawn_on is None]
        episode.measures = _measure_pairs(q.outcomes(person_id))
    return episode


def _codes(referrals: list[Referral]) -> list[dict[str, Any]]:
    from sprx_tui.core import fhir

    return [
        {
            "system": fhir.SNOMED,
            "code": r.snomed_code,
            "display": fhir.SNOMED_DISPLAY[r.snomed_code],
            "date": r.decided_on.isoformat() if r.decided_on else r.received_on.isoformat(),
        }
        for r in referrals
        if r.snomed_code in fhir.SNOMED_DISPLAY
    ]


def _ended(episode: _Episode) -> tuple[str | None, str | None]:
    """(the date the episode ended, the DISCHARGE_REASONS code) when it has ended, else (None, None)."""
    closed = [r for r in episode.referrals if r.status == "closed" and r.closed_on]
    if closed:
        last = max(closed, key=lambda r: (r.closed_on, r.id))
        return last.closed_on.isoformat(), last.close_reason  # type: ignore[union-attr]
    person = episode.person
    if person.status == "discharged" and person.status_changed_on:
        return person.status_changed_on.isoformat(), None
    return None, None


def _summary_of(episode: _Episode, today: dt.date) -> dict[str, Any]:
    """The summary's fields: codes, dates and counts always; names, goals, services and outcomes when "full"."""
    person, seen, referrals = episode.person, episode.seen, episode.referrals
    discharged_on, reason = _ended(episode)
    summary: dict[str, Any] = {
        "consent": episode.consent,
        "nhs_number": person.nhs_number,
        "date_of_birth": person.date_of_birth.isoformat() if person.date_of_birth else None,
        "generated_on": today.isoformat(),
        "codes": _codes(referrals),
        "referred_on": referrals[0].received_on.isoformat() if referrals else None,
        "first_contact_on": min(seen).date().isoformat() if seen else None,
        "last_contact_on": max(seen).date().isoformat() if seen else None,
        "discharged_on": discharged_on,
        "contacts": len(seen),
    }
    if reason:
        summary["discharge_reason"] = reason
    if episode.consent != "full":
        return summary
    from sprx_rules import outcomes

    used = sorted({o.service_name for o in episode.onward if o.outcome == "attended" and o.service_name})
    measures = _outcome_changes(episode.measures)
    summary.update(
        {
            "name": person.display_name,
            "goals_total": len(episode.goals),
            "goals_achieved": [g.text for g in episode.goals if g.status == "achieved"],
            "services_used": used,
            "services_referred": len(episode.onward),
            "outcomes": measures,
            "copyright": [
                c
                for code in dict.fromkeys(m["instrument"] for m in measures)
                if (c := outcomes.INSTRUMENTS[code].copyright)
            ],
        }
    )
    summary["summary"] = _plain_summary(summary)
    return summary


def closing_summary(store: CaseStore, person_id: str, *, audit: bool = True) -> dict[str, Any] | str:
    """The summary sent back to the GP at the end of an episode, as far as the person's consent allows.

    consent_gp_sharing "none": returns CONSENT_REFUSED (a plain sentence), nothing is disclosed.
    "codes_only": NHS number, date of birth, SNOMED CT codes with their dates, episode dates, the
    discharge reason's code and the number of contacts; no names and no free text at all. "full": the
    same plus name, goals (achieved ones by their words), services used and outcome measures (with the
    instruments' copyright lines), and a short plain-English summary. Contact note text is never
    included, nor withdrawn onward referrals. A summary made is audited as an EXPORT of that person's
    record unless `audit` is False (the app's preview, which shows it on screen only).
    """
    episode = _read_episode(store, person_id)
    if isinstance(episode, str):
        return episode
    summary = _summary_of(episode, store.queries.today())
    if audit:
        store.service.record_event(
            "EXPORT", person_id=person_id, detail=f"gp_summary consent={episode.consent} codes={len(summary['codes'])}"
        )
    return summary


def _measure_pairs(rows: list[OutcomeResponse]) -> list[tuple[OutcomeResponse, OutcomeResponse]]:
    """Earliest complete baseline and latest complete discharge of each measure that has both."""
    from sprx_rules import outcomes

    live = [r for r in rows if r.complete and not r.entered_in_error and not r.deleted]
    pairs = []
    for code in outcomes.INSTRUMENTS:
        mine = sorted((r for r in live if r.instrument == code), key=lambda r: (r.taken_on, r.id))
        base = [r for r in mine if r.time_point == "baseline"]
        done = [r for r in mine if r.time_point == "discharge"]
        if base and done:
            pairs.append((base[0], done[-1]))
    return pairs


def _outcome_changes(pairs: list[tuple[OutcomeResponse, OutcomeResponse]]) -> list[dict[str, Any]]:
    """Each reported figure of each paired measure, baseline to discharge."""
    from sprx_rules import outcomes
    from sprx_tui.core import fhir

    out = []
    for base, done in pairs:
        code = base.instrument
        before = outcomes.score(code, base.responses).figures()
        after = outcomes.score(code, done.responses).figures()
        labels = dict(fhir.OBSERVED.get(code, ()))
        for name in before:
            if name not in labels:  # SWEMWBS raw score: the metric score is the one reported
                continue
            out.append(
                {
                    "instrument": code,
                    "figure": name,
                    "label": labels[name],
                    "baseline": before[name],
                    "discharge": after[name],
                    "baseline_on": base.taken_on.isoformat(),
                    "discharge_on": done.taken_on.isoformat(),
                }
            )
    return out


def _plain_summary(s: dict[str, Any]) -> str:
    parts = []
    if s["first_contact_on"]:
        parts.append(
            f"Supported by the social prescribing link worker from {s['first_contact_on']} to "
            f"{s['last_contact_on']} ({s['contacts']} contact{'' if s['contacts'] == 1 else 's'})."
        )
    if s["goals_total"]:
        achieved = s["goals_achieved"]
        line = f"Goals achieved: {len(achieved)} of {s['goals_total']}"
        parts.append(line + (": " + "; ".join(achieved) + "." if achieved else "."))
    if s["services_used"]:
        parts.append("Services used: " + "; ".join(s["services_used"]) + ".")
    for m in s["outcomes"]:
        parts.append(f"{m['label']}: {m['baseline']} at baseline, {m['discharge']} at discharge.")
    return " ".join(parts) or "No contacts, goals or outcome measures were recorded."


def render_closing_summary(summary: dict[str, Any] | str) -> str:
    """The closing summary as plain text for a letter or a screen (the refusal sentence as it is)."""
    from sprx_tui.core.models import DISCHARGE_REASONS

    if isinstance(summary, str):
        return summary
    lines = [f"NHS number: {summary['nhs_number'] or 'not recorded'}"]
    if summary.get("name"):
        lines.append(f"Name: {summary['name']}")
    if summary["date_of_birth"]:
        lines.append(f"Date of birth: {summary['date_of_birth']}")
    for c in summary["codes"]:
        lines.append(f"SNOMED CT {c['code']} {c['display']} ({c['date']})")
    for key, label in (
        ("referred_on", "Referred"),
        ("first_contact_on", "First contact"),
        ("last_contact_on", "Last contact"),
        ("discharged_on", "Discharged"),
    ):
        if summary.get(key):
            lines.append(f"{label}: {summary[key]}")
    if summary.get("discharge_reason"):
        lines.append(f"Reason the episode ended: {DISCHARGE_REASONS.get(summary['discharge_reason'], 'Other')}")
    lines.append(f"Contacts: {summary['contacts']}")
    if summary.get("summary"):
        lines += ["", summary["summary"]]
    for line in summary.get("copyright") or ():
        lines += ["", line]
    return "\n".join(lines) + "\n"


def find_person(store: CaseStore, key: str) -> Person | None:
    """The person with this record id, or else this NHS number (spaces allowed); None when no one has it."""
    from sprx_rules import nhs

    key = (key or "").strip()
    if not key:
        return None
    person = store.queries.person(key)
    if person is not None and not person.deleted:
        return person
    try:
        number = nhs.normalise_nhs_number(key)
    except ValueError:
        return None
    with store.lock, Session(store.engine) as s:
        return s.exec(
            select(Person).where(Person.nhs_number == number, Person.deleted == False).order_by(Person.id)  # noqa: E712
        ).first()


GP_LETTER_HEAD = "Social prescribing closing summary for the GP record"


def gp_summary_letter(summary: dict[str, Any]) -> str:
    """The plain-text letter that goes with the FHIR document: a heading, then the summary as rendered."""
    return f"{GP_LETTER_HEAD}\n{'=' * len(GP_LETTER_HEAD)}\n\n{render_closing_summary(summary)}"


def gp_summary_bundle(store: CaseStore, person_id: str, now: dt.datetime | None = None) -> dict[str, Any] | str:
    """The closing summary as a FHIR R4 document Bundle (Composition first), or CONSENT_REFUSED.

    It holds exactly what `closing_summary` shows for the person's consent: with "codes_only" a
    Patient with the NHS number and birth date only (no name, address or contact details) and the
    referrals as coded ServiceRequests without their notes or referrer; with "full" also the name,
    the goals (without progress notes), the onward referrals to services used (without notes) and
    the outcome Observations, each carrying its instrument's copyright line. Not audited here.
    """
    from sprx_tui.core import fhir

    episode = _read_episode(store, person_id)
    if isinstance(episode, str):
        return episode
    summary = _summary_of(episode, store.queries.today())
    now = now or store.service.clock()
    person, full = episode.person, episode.consent == "full"
    patient = fhir.patient(person)
    if not full:
        patient = {k: v for k, v in patient.items() if k in ("resourceType", "id", "meta", "identifier", "birthDate")}
    resources = [patient]
    for r in episode.referrals:
        request = fhir.referral_service_request(r, person)
        resources.append({k: v for k, v in request.items() if k not in ("note", "requester")})
        declined = fhir.decline_observation(r, person)
        if declined is not None:
            resources.append(declined)
    if full:
        resources += [{k: v for k, v in fhir.goal(g).items() if k != "note"} for g in episode.goals]
        used = [o for o in episode.onward if o.outcome == "attended"]
        resources += [{k: v for k, v in fhir.onward_service_request(o).items() if k != "note"} for o in used]
        for pair in episode.measures:
            for row in pair:
                resources += fhir.observations(row)
    composition = fhir.closing_composition(person, summary, gp_summary_letter(summary), resources, now)
    return fhir.document_bundle(composition, resources, now)


def check_gp_summary_target(out: Path | str) -> tuple[Path, Path]:
    """(the FHIR file, the letter beside it as .txt) for `out`, or ServiceError with the sentence why not."""
    out = Path(out).expanduser()
    letter = out.with_name(out.name.removesuffix(".json").removesuffix(".fhir") + ".txt")
    if not out.name or out.is_dir():
        raise ServiceError("Give a file name for the summary, not a folder.")
    for path in (out, letter):
        if path.exists():
            raise ServiceError("A file with that name already exists; exports never overwrite, so choose a new name.")
    if not out.parent.is_dir():
        raise ServiceError("The folder for the export does not exist; create it or choose another path.")
    return out, letter


def write_gp_summary(store: CaseStore, person_id: str, out: Path) -> tuple[Path, Path]:
    """Write the GP closing summary: the FHIR document at `out` and the letter beside it (`.txt`).

    Both files are new and owner-only (never overwritten); a failure removes what was written. With
    consent "none" nothing is written: ServiceError(CONSENT_REFUSED). Audited as one EXPORT.
    """
    out, letter = check_gp_summary_target(out)
    bundle = gp_summary_bundle(store, person_id)
    if isinstance(bundle, str):
        raise ServiceError(bundle)
    summary = closing_summary(store, person_id, audit=False)
    assert isinstance(summary, dict)
    written: list[Path] = []
    try:
        with disk_full_as_sentence(out.parent):
            for path, text in (
                (out, json.dumps(bundle, ensure_ascii=False, indent=1)),
                (letter, gp_summary_letter(summary)),
            ):
                try:
                    fd = _open_private(path)
                except FileExistsError:
                    raise ServiceError(
                        "A file with that name already exists; exports never overwrite, so choose a new name."
                    ) from None
                written.append(path)
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(text + ("" if text.endswith("\n") else "\n"))
        store.service.record_event(
            "EXPORT",
            person_id=person_id,
            detail=f"gp_summary consent={summary['consent']} codes={len(summary['codes'])} "
            f"resources={len(bundle['entry'])}",
        )
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return out, letter
