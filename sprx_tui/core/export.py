"""Exports that leave the encrypted store: deliberate, audited, written owner-only."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import json
import os
from collections.abc import Callable, Iterator
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


def closing_summary(store: CaseStore, person_id: str) -> dict[str, Any] | str:
    """The summary sent back to the GP at the end of an episode, as far as the person's consent allows.

    consent_gp_sharing "none": returns CONSENT_REFUSED (a plain sentence), nothing is disclosed.
    "codes_only": NHS number, date of birth, SNOMED CT codes with their dates, and episode dates;
    no names and no free text at all. "full": the same plus name, goals (achieved ones by their
    words), services used and outcome measures, and a short plain-English summary. Contact note
    text is never included. Every summary made is audited as an EXPORT of that person's record.
    """
    from sprx_tui.core import fhir
    from sprx_tui.core.service import NotFound

    q = store.queries
    person = q.person(person_id)
    if person is None:
        raise NotFound("That person could not be found; they may have been removed.")
    consent = person.consent_gp_sharing or "full"
    if consent == "none":
        return CONSENT_REFUSED
    referrals = sorted(q.referrals(person_id), key=lambda r: (r.received_on, r.id))
    codes = [
        {
            "system": fhir.SNOMED,
            "code": r.snomed_code,
            "display": fhir.SNOMED_DISPLAY[r.snomed_code],
            "date": r.decided_on.isoformat() if r.decided_on else r.received_on.isoformat(),
        }
        for r in referrals
        if r.snomed_code in fhir.SNOMED_DISPLAY
    ]
    timeline = [e.contact for e in q.timeline(person_id) if not e.contact.entered_in_error]
    seen = [c for c in timeline if not c.did_not_attend]
    discharged = person.status == "discharged"
    summary: dict[str, Any] = {
        "consent": consent,
        "nhs_number": person.nhs_number,
        "date_of_birth": person.date_of_birth.isoformat() if person.date_of_birth else None,
        "generated_on": q.today().isoformat(),
        "codes": codes,
        "referred_on": referrals[0].received_on.isoformat() if referrals else None,
        "first_contact_on": min(c.occurred_at for c in seen).date().isoformat() if seen else None,
        "last_contact_on": max(c.occurred_at for c in seen).date().isoformat() if seen else None,
        "discharged_on": person.status_changed_on.isoformat() if discharged and person.status_changed_on else None,
        "contacts": len(seen),
    }
    if consent == "full":
        goals = [g.goal for g in q.plan(person_id)]
        achieved = [g.text for g in goals if g.status == "achieved"]
        onward = q.onward_referrals(person_id)
        used = sorted({o.service_name for o in onward if o.outcome == "attended" and o.service_name})
        measures = _outcome_changes(q.outcomes(person_id))
        summary.update(
            {
                "name": person.display_name,
                "goals_total": len(goals),
                "goals_achieved": achieved,
                "services_used": used,
                "services_referred": len(onward),
                "outcomes": measures,
            }
        )
        summary["summary"] = _plain_summary(summary)
    store.service.record_event("EXPORT", person_id=person_id, detail=f"gp_summary consent={consent} codes={len(codes)}")
    return summary


def _outcome_changes(rows: list[OutcomeResponse]) -> list[dict[str, Any]]:
    """Earliest complete baseline and latest complete discharge of each measure, figure by figure."""
    from sprx_rules import outcomes
    from sprx_tui.core import fhir

    live = [r for r in rows if r.complete and not r.entered_in_error and not r.deleted]
    out = []
    for code in outcomes.INSTRUMENTS:
        base = sorted(
            (r for r in live if r.instrument == code and r.time_point == "baseline"), key=lambda r: (r.taken_on, r.id)
        )
        done = sorted(
            (r for r in live if r.instrument == code and r.time_point == "discharge"), key=lambda r: (r.taken_on, r.id)
        )
        if not base or not done:
            continue
        before = outcomes.score(code, base[0].responses).figures()
        after = outcomes.score(code, done[-1].responses).figures()
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
                    "baseline_on": base[0].taken_on.isoformat(),
                    "discharge_on": done[-1].taken_on.isoformat(),
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
    if summary.get("summary"):
        lines.append("")
        lines.append(summary["summary"])
    return "\n".join(lines) + "\n"
