"""The only write path: every domain change, its sync outbox entry and its audit event in one transaction."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Engine, insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from sprx_rules import gate, nhs, validate
from sprx_rules import outcomes as instruments
from sprx_tui.core.diskfull import disk_full_as_sentence
from sprx_tui.core.ids import uuid7
from sprx_tui.core.models import (
    CONTACT_MODES,
    DECLINE_REASONS,
    DISCHARGE_REASONS,
    GOAL_STATUSES,
    LIFE_AREAS,
    ONWARD_KINDS,
    ONWARD_OUTCOMES,
    REFERRAL_REASONS,
    REFERRAL_SOURCES,
    SAFETY_FLAGS,
    SNOMED_REFERRAL_ACCEPTED,
    SNOMED_SP_DECLINED,
    SYNCED_MODELS,
    WITHDRAW_REASONS,
    AuditEvent,
    CommunityService,
    Contact,
    ContactAmendment,
    DirectorySuggestion,
    Draft,
    FollowUp,
    Goal,
    HlcState,
    Need,
    OnwardReferral,
    OutcomeResponse,
    Person,
    PersonStatus,
    PlanAction,
    Referral,
    ReferralStatus,
    SafetyFlagChange,
    SyncConflict,
    Synced,
    SyncOutbox,
    WhatMatters,
    utcnow,
)
from sprx_tui.core.wire import from_wire, row_values, to_wire
from sync import hlc as hlc_clock
from sync.schema import TABLES

T = TypeVar("T", bound=Synced)

GENESIS_HASH = "0" * 64
_AUDIT_COLUMNS = [c for c in AuditEvent.model_fields if c != "seq"]


ONWARD_NOTE_MAX = 500
"""An onward referral's note is a short note, not a letter."""


class ServiceError(Exception):
    """A write the service refused; the message is one plain sentence."""


class NotFound(ServiceError):
    pass


class InvalidInput(ServiceError):
    """One or more fields were rejected; `errors` maps each field to a plain sentence."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__(next(iter(errors.values())))


class RefusedValue(InvalidInput, validate.ValidationError):
    """A value the inbound gate (``sprx_rules.gate``) refuses, so it is never stored or queued for the server.

    Both an ``InvalidInput`` (``errors`` by field, which forms show next to the input) and a
    ``validate.ValidationError`` (``field``, ``message``). The message never repeats the value.
    """

    def __init__(self, field: str, message: str) -> None:
        Exception.__init__(self, message)
        self.errors = {field: message}
        self.field = field
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.field, self.message))


def gate_check(tbl: str, row_id: str, fields: dict[str, Any]) -> None:
    """Raise RefusedValue for the first field value (wire form) the inbound gate refuses."""
    refusal = gate.check_values(tbl, fields, row_id)
    if refusal is not None:
        raise RefusedValue(refusal.field, f"{validate.field_label(refusal.field)} {refusal.problem}.")


@dataclass(frozen=True)
class Actor:
    """Who is writing: the worker, their laptop, their practice."""

    user_id: str
    device_id: str
    practice_id: str


@dataclass
class _Txn:
    """One write transaction; outbox and audit rows are gathered and inserted in bulk at commit."""

    session: Session
    hlc: int = 0
    hlc_last: int | None = None  # loaded lazily, written back once at commit
    prev_hash: str | None = None  # head of the audit chain, loaded lazily
    outbox: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    audit: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def _delete_base(row: Synced) -> int | None:
    """The server version a deletion is based on: the row's, or while a resync refreshes it (server_seq -1,
    see VaultSyncAdapter.begin_snapshot) the newest server write its fields hold, which decides the same edits
    concurrent with it. Never -1: the server refuses a negative base, and the whole batch with it."""
    if row.server_seq is None or row.server_seq >= 0:
        return row.server_seq
    seqs = [m.get("seq") for m in (row.field_meta or {}).values() if isinstance(m, dict)]
    return max((int(q) for q in seqs if isinstance(q, int) and q >= 0), default=None)


def search_text_for(person: Person) -> str:
    """What the caseload filter matches: names, NHS number and postcode without spaces."""
    parts = [
        person.given_name,
        person.family_name,
        person.preferred_name or "",
        person.nhs_number or "",
        (person.postcode or "").replace(" ", ""),
    ]
    return " ".join(p.lower() for p in parts if p)


def _audit_hash(prev_hash: str, event: AuditEvent) -> str:
    body = {
        "id": event.id,
        "practice_id": event.practice_id,
        "person_id": event.person_id,
        "actor": event.actor,
        "device_id": event.device_id,
        "action": event.action,
        "record_type": event.record_type,
        "record_id": event.record_id,
        "detail": event.detail,
        "at": to_wire(event.at),
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


def _check(errors: dict[str, str], field: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except validate.ValidationError as exc:
        errors[field] = str(exc)
    except ValueError as exc:
        errors[field] = str(exc)
    return None


def _check_resolution(conflict: SyncConflict, row: Any, chosen_value: Any) -> None:
    """A narrative conflict needs the text to keep; a delete-versus-edit one needs True or False."""
    if conflict.kind == "concurrent_edit":
        if row is None or not isinstance(chosen_value, str) or not chosen_value.strip():
            raise InvalidInput({conflict.field: "Choose one of the versions, or write the text to keep."})
    elif conflict.kind == "delete_vs_edit" and not isinstance(chosen_value, bool):
        raise InvalidInput({"deleted": "Choose whether to keep the record or confirm the delete."})


def _check_person_choices(fields: dict[str, Any], errors: dict[str, str]) -> None:
    """The yes/no answers, safety flags and GP sharing of a person's fields: one sentence for each one wrong."""
    for name in ("hearing_need", "sight_need", "easy_read", "consent_social_prescribing"):
        if name in fields and not isinstance(fields[name], bool):
            errors[name] = f"{validate.field_label(name)} must be yes or no."
    for flag in fields.get("safety_flags") or []:
        if flag not in SAFETY_FLAGS:
            errors["safety_flags"] = "One of the safety flags is not a known flag."
    if fields.get("consent_gp_sharing") not in (None, "full", "codes_only", "none"):
        errors["consent_gp_sharing"] = "Sharing with the GP must be full, codes only, or none."


def _flag_reason(text: str, errors: dict[str, str]) -> str:
    """Why a safety flag was added or removed: required, one plain sentence when missing or too long."""
    reason = (text or "").strip()
    if not reason:
        errors["flag_reason"] = "Say why the safety flags changed; the reason is kept with them."
    elif len(reason) > 2000:
        errors["flag_reason"] = "The reason for the safety flag change must be at most 2000 characters."
    return reason


FlagChange = tuple[str, str, int, str, str]
"""One safety flag history row as the merge reads it: flag, change (added/removed), HLC, device, row id."""


def flags_from_history(current: list[str], history: list[FlagChange]) -> list[str]:
    """A person's safety flags as their history says: each flag in the state of its latest change (by HLC, then
    device, then row id: the same order on every laptop), plus the flags recorded before history was kept (no
    row for them). Listed as the form lists them, unknown flags after by name, so laptops that agree on the set
    write the same list."""
    latest: dict[str, tuple[tuple[int, str, str], str]] = {}
    for flag, change, hlc, dev, row_id in history:
        if change not in ("added", "removed"):
            continue  # a kind of change this version does not know says nothing about the flag
        key = (hlc, dev, row_id)
        if flag not in latest or key > latest[flag][0]:
            latest[flag] = (key, change)
    flags = {f for f in current if f not in latest} | {f for f, (_k, change) in latest.items() if change == "added"}
    order = {f: i for i, f in enumerate(SAFETY_FLAGS)}
    return sorted(flags, key=lambda f: (order.get(f, len(order)), f))


class CaseService:
    """Domain writes for one worker on one laptop. Thread-safe only per instance per thread."""

    def __init__(
        self,
        engine: Engine,
        actor: Actor,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
        lock: threading.RLock | None = None,
    ) -> None:
        self.engine = engine
        self.actor = actor
        self.clock = clock
        # One SQLCipher connection is shared by the UI's worker threads: a transaction holds the lock.
        self.lock = lock or threading.RLock()
        # Per thread: a nested call joins its own thread's transaction; another thread waits for the lock.
        self._local = threading.local()
        # Server clock minus laptop clock, set by sync: HLCs use the corrected time (sync-anchors D8).
        self.hlc_offset_ms = 0

    # -- transactions ----------------------------------------------------------------------

    @property
    def _txn_stack(self) -> list[_Txn]:
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        return stack

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """Group several operations into one transaction (used by bulk demo data and imports)."""
        with self._txn() as txn:
            yield txn.session

    @contextmanager
    def _txn(self) -> Iterator[_Txn]:
        if self._txn_stack:
            yield self._txn_stack[-1]
            return
        # A full disk fails the write (or its commit) as a database error; it is told as DiskFull, not damage.
        with disk_full_as_sentence(), self.lock, Session(self.engine, expire_on_commit=False) as session:
            with session.begin():
                txn = _Txn(session)
                self._txn_stack.append(txn)
                try:
                    yield txn
                    self._finish(txn)
                finally:
                    self._txn_stack.pop()

    def _finish(self, txn: _Txn) -> None:
        """Write the gathered outbox, audit and clock rows inside the same transaction."""
        session = txn.session
        session.flush()
        if txn.outbox:
            session.execute(insert(SyncOutbox.__table__), txn.outbox)  # type: ignore[attr-defined]
        if txn.audit:
            session.execute(insert(AuditEvent.__table__), txn.audit)  # type: ignore[attr-defined]
        if txn.hlc_last is not None:
            session.execute(
                sqlite_insert(HlcState.__table__)  # type: ignore[attr-defined]
                .values(id=1, last=txn.hlc_last)
                .on_conflict_do_update(index_elements=["id"], set_={"last": txn.hlc_last})
            )

    def _tick(self, txn: _Txn) -> int:
        if txn.hlc_last is None:
            last = txn.session.execute(select(HlcState.last).where(HlcState.id == 1)).scalar()
            txn.hlc_last = last or 0
        physical_ms = int(self.clock().timestamp() * 1000) + self.hlc_offset_ms
        txn.hlc_last = hlc_clock.tick(txn.hlc_last, physical_ms)
        txn.hlc = txn.hlc_last
        return txn.hlc

    def today(self) -> dt.date:
        return self.clock().date()

    # -- generic synced writes -------------------------------------------------------------

    def _insert(self, txn: _Txn, row: T) -> T:
        spec = TABLES[row.__tablename__]  # type: ignore[index]
        stamp = self._tick(txn)
        if not row.id:
            row.id = uuid7()
        row.practice_id = self.actor.practice_id
        if isinstance(row, Person):
            row.person_id = row.id
        row.created_by = self.actor.user_id
        row.created_on_device = self.actor.device_id
        row.created_at = self.clock()
        row.row_hlc = stamp
        row.field_meta = {f: {"hlc": stamp, "dev": self.actor.device_id, "seq": None} for f in spec.fields}
        values = row_values(row, spec)
        gate_check(spec.name, row.id, values)  # before the session holds the row: a refusal writes nothing
        txn.session.add(row)
        self._outbox(
            txn,
            gated=True,
            tbl=spec.name,
            row_id=row.id,
            person_id=row.person_id,
            op="insert",
            fields={f: {"v": v, "hlc": stamp, "base_seq": None} for f, v in values.items()},
        )
        return row

    def _patch(self, txn: _Txn, row: T, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply changed fields only; returns what changed. Nothing changed = no outbox row."""
        spec = TABLES[row.__tablename__]  # type: ignore[index]
        changed = {k: v for k, v in changes.items() if getattr(row, k) != v}
        if not changed:
            return {}
        for name in changed:
            if name not in spec.patchable:
                raise ServiceError(f"The {name.replace('_', ' ')} cannot be changed once saved.")
        wire = {name: to_wire(value) for name, value in changed.items()}
        gate_check(spec.name, row.id, wire)  # before the row changes: a refusal writes nothing
        stamp = self._tick(txn)
        meta = dict(row.field_meta or {})
        fields: dict[str, Any] = {}
        for name, value in changed.items():
            base = (meta.get(name) or {}).get("seq")
            setattr(row, name, value)
            meta[name] = {"hlc": stamp, "dev": self.actor.device_id, "seq": base}
            fields[name] = {"v": wire[name], "hlc": stamp, "base_seq": base}
        row.field_meta = meta
        row.row_hlc = stamp
        txn.session.add(row)
        self._outbox(txn, gated=True, tbl=spec.name, row_id=row.id, person_id=row.person_id, op="patch", fields=fields)
        return changed

    def _tombstone(self, txn: _Txn, row: Synced) -> None:
        spec = TABLES[row.__tablename__]  # type: ignore[index]
        if not spec.deletable:
            raise ServiceError("This record cannot be deleted; mark it entered in error instead.")
        stamp = self._tick(txn)
        row.deleted = True
        row.row_hlc = stamp
        txn.session.add(row)
        self._outbox(
            txn,
            tbl=spec.name,
            row_id=row.id,
            person_id=row.person_id,
            op="delete",
            fields={"_deleted": {"v": True, "hlc": stamp, "base_seq": _delete_base(row)}},
        )

    def _outbox(self, txn: _Txn, *, gated: bool = False, **kwargs: Any) -> None:
        """Queue one mutation; its values pass the inbound gate first (``gated``: already checked), so this
        laptop never queues a change the server would refuse."""
        if not gated:
            fields = kwargs.get("fields") or {}
            gate_check(kwargs["tbl"], kwargs["row_id"], {f: fc.get("v") for f, fc in fields.items()})
        txn.outbox.append(
            {
                "payload_ver": 1,
                "hlc": txn.hlc,
                "conflict_id": None,
                "created_at": self.clock(),
                "status": "pending",
                "attempts": 0,
                "last_error": None,
                **kwargs,
            }
        )

    def _audit(
        self,
        txn: _Txn,
        action: str,
        *,
        person_id: str | None,
        record_type: str = "",
        record_id: str = "",
        detail: str = "",
    ) -> AuditEvent:
        if txn.prev_hash is None:
            head = txn.session.execute(
                select(AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)  # type: ignore[union-attr]
            ).scalar()
            txn.prev_hash = head or GENESIS_HASH
        event = AuditEvent(
            id=uuid7(),
            practice_id=self.actor.practice_id,
            person_id=person_id,
            actor=self.actor.user_id,
            device_id=self.actor.device_id,
            action=action,
            record_type=record_type,
            record_id=record_id,
            detail=detail,
            # Stored in UTC, so hash the UTC form: a clock in another zone would break the chain on re-read.
            at=self.clock().astimezone(dt.UTC),
            prev_hash=txn.prev_hash,
            hash="",
        )
        event.hash = _audit_hash(txn.prev_hash, event)
        txn.prev_hash = event.hash
        txn.audit.append({c: getattr(event, c) for c in _AUDIT_COLUMNS})
        stamp = txn.hlc or self._tick(txn)
        values = {f: to_wire(getattr(event, f)) for f in TABLES["audit_event"].fields}
        self._outbox(
            txn,
            tbl="audit_event",
            row_id=event.id,
            person_id=person_id,
            op="insert",
            fields={f: {"v": v, "hlc": stamp, "base_seq": None} for f, v in values.items()},
        )
        return event

    def _get(self, txn: _Txn, model: type[T], row_id: str, what: str) -> T:
        row = txn.session.get(model, row_id)
        if row is None or row.deleted:
            raise NotFound(f"That {what} could not be found; it may have been removed.")
        return row

    # -- people ----------------------------------------------------------------------------

    def _validated_person_fields(self, fields: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, str] = {}
        out = dict(fields)
        today = self.today()
        # A misspelt field would otherwise be dropped silently (add) or crash (update).
        for name in fields:
            if name not in TABLES["person"].fields:
                errors[name] = "That is not part of a person's record."
        if "status" in fields and fields["status"] not in {s.value for s in PersonStatus}:
            errors["status"] = "That status is not one the caseload knows."
        if "given_name" in fields:
            out["given_name"] = _check(
                errors,
                "given_name",
                lambda: validate.validate_text(fields["given_name"], "given name"),
            )
        if "family_name" in fields:
            out["family_name"] = _check(
                errors,
                "family_name",
                lambda: validate.validate_text(fields["family_name"], "family name"),
            )
        if fields.get("nhs_number"):
            out["nhs_number"] = _check(errors, "nhs_number", lambda: nhs.normalise_nhs_number(fields["nhs_number"]))
        elif "nhs_number" in fields:
            out["nhs_number"] = None
        if fields.get("postcode"):
            out["postcode"] = _check(errors, "postcode", lambda: validate.normalise_postcode(fields["postcode"]))
        if fields.get("phone"):
            out["phone"] = _check(errors, "phone", lambda: validate.normalise_phone(fields["phone"]))
        if fields.get("email"):
            out["email"] = _check(errors, "email", lambda: validate.validate_email(fields["email"]))
        dob = fields.get("date_of_birth")
        if isinstance(dob, str) and dob.strip():
            dob = _check(errors, "date_of_birth", lambda: validate.parse_date(dob, "date of birth"))
        if isinstance(dob, dt.date):
            _check(errors, "date_of_birth", lambda: validate.validate_birth_date(dob, today))
            out["date_of_birth"] = dob
        elif "date_of_birth" in fields:
            out["date_of_birth"] = None
        _check_person_choices(fields, errors)
        if errors:
            raise InvalidInput(errors)
        return out

    def add_person(self, **fields: Any) -> Person:
        """Add a person to the caseload (validated; NHS number optional for self-referrals)."""
        fields.setdefault("given_name", "")
        fields.setdefault("family_name", "")
        clean = self._validated_person_fields(fields)
        with self._txn() as txn:
            person = Person(id="", practice_id="", person_id="", **clean)
            person.status_changed_on = self.today()
            person.search_text = search_text_for(person)
            self._insert(txn, person)
            self._audit(txn, "CREATE", person_id=person.id, record_type="person", record_id=person.id)
            return person

    def update_person(self, person_id: str, **changes: Any) -> Person:
        clean = self._validated_person_fields(changes)
        with self._txn() as txn:
            person = self._get(txn, Person, person_id, "person")
            if "status" in clean and clean["status"] != person.status:
                clean.setdefault("status_changed_on", self.today())
            changed = self._patch(txn, person, clean)
            if "status" in changed:
                self._close_follow_ups_if_case_closed(txn, person)
            if changed:
                person.search_text = search_text_for(person)
                self._audit(
                    txn,
                    "UPDATE",
                    person_id=person.id,
                    record_type="person",
                    record_id=person.id,
                    detail=",".join(sorted(changed)),
                )
            return person

    # -- a person added or updated from the details form -------------------------------------

    def new_person(
        self,
        *,
        referral_source: str,
        referral_reasons: list[str] | None = None,
        referral_text: str | None = None,
        urgency: str = "routine",
        flag_reason: str = "",
        **fields: Any,
    ) -> tuple[Person, Referral]:
        """A person added in the app (a self-referral, a walk-in) with the referral that brings them, in one
        transaction; each safety flag they start with is kept with its reason (default: noted when added)."""
        fields.setdefault("given_name", "")
        fields.setdefault("family_name", "")
        errors: dict[str, str] = {}
        try:
            clean = self._validated_person_fields(fields)
        except InvalidInput as exc:
            errors.update(exc.errors)
            clean = {}
        if referral_source not in REFERRAL_SOURCES:
            errors["referral_source"] = "Choose where the referral came from."
        reason = _flag_reason(flag_reason, errors) if flag_reason.strip() else "Recorded when the person was added."
        if errors:
            raise InvalidInput(errors)
        with self._txn() as txn:
            person = self.add_person(**clean)
            referral = self.receive_referral(
                person.id,
                source=referral_source,
                reasons=referral_reasons,
                referral_text=referral_text,
                urgency=urgency,
            )
            self._record_flag_changes(txn, person, added=list(person.safety_flags or []), removed=[], reason=reason)
            return person, referral

    def update_person_details(self, person_id: str, changes: dict[str, Any], flag_reason: str = "") -> dict[str, Any]:
        """Write only the fields that differ from the record (each merges on its own when synced); a safety flag
        added or removed needs a reason, kept with who and when. Returns what changed (empty: nothing did)."""
        clean = self._validated_person_fields(changes)
        with self._txn() as txn:
            person = self._get(txn, Person, person_id, "person")
            before = list(person.safety_flags or [])
            after = list(clean.get("safety_flags", before) or [])
            added = [f for f in after if f not in before]
            removed = [f for f in before if f not in after]
            reason = ""
            if added or removed:
                errors: dict[str, str] = {}
                reason = _flag_reason(flag_reason, errors)
                if errors:
                    raise InvalidInput(errors)
            else:
                clean.pop("safety_flags", None)  # the same flags in another order are no change
            changed = {k: v for k, v in clean.items() if getattr(person, k) != v}
            if not changed:
                return {}
            self.update_person(person_id, **changed)
            self._record_flag_changes(txn, person, added=added, removed=removed, reason=reason)
            return changed

    def add_safety_flag(self, person_id: str, flag: str, reason: str) -> Person:
        """Add one home-visit safety flag, with the reason kept (who and when come with it)."""
        person = self._person_now(person_id)
        flags = list(person.safety_flags or [])
        if flag not in flags:
            self.update_person_details(person_id, {"safety_flags": [*flags, flag]}, reason)
        return self._person_now(person_id)

    def remove_safety_flag(self, person_id: str, flag: str, reason: str) -> Person:
        """Remove one safety flag, with the reason kept; its history stays."""
        person = self._person_now(person_id)
        flags = list(person.safety_flags or [])
        if flag in flags:
            self.update_person_details(person_id, {"safety_flags": [f for f in flags if f != flag]}, reason)
        return self._person_now(person_id)

    def _person_now(self, person_id: str) -> Person:
        with self._txn() as txn:
            return self._get(txn, Person, person_id, "person")

    def _record_flag_changes(
        self, txn: _Txn, person: Person, *, added: list[str], removed: list[str], reason: str
    ) -> None:
        for change, flags in (("added", added), ("removed", removed)):
            for flag in flags:
                row = self._insert(
                    txn,
                    SafetyFlagChange(
                        id="",
                        practice_id="",
                        person_id=person.id,
                        flag=flag,
                        change=change,
                        reason=reason,
                        author=self.actor.user_id,
                        changed_at=self.clock(),
                    ),
                )
                self._audit(
                    txn,
                    "CREATE",
                    person_id=person.id,
                    record_type="safety_flag_change",
                    record_id=row.id,
                    detail=f"{change} {flag}",
                )

    def settle_safety_flags(self, session: Session, person_ids: set[str]) -> list[str]:
        """Put each person's safety flags right from their history, inside the sync's own transaction.

        The flags sync as one last-writer-wins list, so two laptops that each added a flag offline would keep one
        list; the history rows of both arrive. After a pull, each person whose flags or flag history arrived gets
        the set their history gives (`flags_from_history`), written as an ordinary synced edit when it differs:
        every laptop that sees the same history writes the same list, so they converge. ``session`` is the
        caller's open transaction (the store's lock held); it commits this with the pulled rows. Returns the
        people corrected."""
        ids = sorted(p for p in person_ids if p)
        history: dict[str, list[FlagChange]] = {}
        for i in range(0, len(ids), 500):
            for r in session.exec(
                select(SafetyFlagChange).where(col(SafetyFlagChange.person_id).in_(ids[i : i + 500]))
            ):
                meta = (r.field_meta or {}).get("flag") or {}
                hlc, dev = int(meta.get("hlc") or r.row_hlc or 0), str(meta.get("dev") or r.created_on_device)
                history.setdefault(r.person_id, []).append((r.flag, r.change, hlc, dev, r.id))
        if not history:
            return []
        txn = _Txn(session)
        self._txn_stack.append(txn)
        corrected: list[str] = []
        try:
            for person_id, changes in sorted(history.items()):
                person = session.get(Person, person_id)
                if person is None or person.deleted:
                    continue
                now = list(person.safety_flags or [])
                want = flags_from_history(now, changes)
                if set(want) == set(now):
                    continue  # the same flags in another order are no change
                try:
                    self._patch(txn, person, {"safety_flags": want})
                except InvalidInput:
                    continue  # refused by the gate: nothing was written; the list stays as it came
                self._audit(txn, "UPDATE", person_id=person_id, record_type="person", record_id=person_id,
                            detail="safety_flags (merged from their history)")  # fmt: skip
                corrected.append(person_id)
            self._finish(txn)
        finally:
            self._txn_stack.pop()
        return corrected

    def set_status(self, person_id: str, status: str) -> Person:
        if status not in {s.value for s in PersonStatus}:
            raise InvalidInput({"status": "That status is not one the caseload knows."})
        with self._txn() as txn:
            person = self._get(txn, Person, person_id, "person")
            if person.status == status:
                return person  # no change, so the date the status changed stays as it was
            if self._patch(txn, person, {"status": status, "status_changed_on": self.today()}):
                self._close_follow_ups_if_case_closed(txn, person)
                self._audit(
                    txn,
                    "UPDATE",
                    person_id=person_id,
                    record_type="person",
                    record_id=person_id,
                    detail=f"status={status}",
                )
            return person

    def discharge(self, person_id: str, reason: str = "goals_met", note: str = "", on: dt.date | None = None) -> Person:
        """End the person's episode with a reason from DISCHARGE_REASONS (and a note; required for "other").

        Every referral still open (received or accepted) is closed on `on` (default today) with the reason;
        the person becomes did-not-engage for that reason and discharged for every other, and their open
        follow-ups are cancelled. Audited with the reason code only.
        """
        note = (note or "").strip()
        on = on or self.today()
        if reason not in DISCHARGE_REASONS:
            raise InvalidInput({"reason": "Choose why the episode is ending from the list."})
        if reason == "other" and not note:
            raise InvalidInput({"note": "Say in a few words why the episode is ending."})
        if on > self.today():
            raise InvalidInput({"on": "The discharge date cannot be in the future."})
        status = PersonStatus.DID_NOT_ENGAGE if reason == "did_not_engage" else PersonStatus.DISCHARGED
        with self._txn() as txn:
            person = self._get(txn, Person, person_id, "person")
            if person.status in self._CLOSED_STATUSES:
                raise ServiceError("This person's episode has already ended; a new referral starts another.")
            open_referrals = txn.session.exec(
                select(Referral).where(
                    Referral.person_id == person.id,
                    Referral.status.in_([ReferralStatus.RECEIVED.value, ReferralStatus.ACCEPTED.value]),  # type: ignore[attr-defined]
                    Referral.deleted == False,  # noqa: E712
                )
            ).all()
            for referral in open_referrals:
                self._patch(
                    txn,
                    referral,
                    {
                        "status": ReferralStatus.CLOSED.value,
                        "closed_on": on,
                        "close_reason": reason,
                        "close_note": note or None,
                    },
                )
            self._patch(txn, person, {"status": status.value, "status_changed_on": on})
            self._close_follow_ups_if_case_closed(txn, person)
            self._audit(
                txn,
                "UPDATE",
                person_id=person.id,
                record_type="person",
                record_id=person.id,
                detail=f"discharged reason={reason} referrals={len(open_referrals)}",
            )
            return person

    _CLOSED_STATUSES = (PersonStatus.DISCHARGED.value, PersonStatus.DECLINED.value, PersonStatus.DID_NOT_ENGAGE.value)

    def _close_follow_ups_if_case_closed(self, txn: _Txn, person: Person) -> None:
        """A closed case has nothing left to follow up: cancel open follow-ups so Today stops listing them."""
        if person.status not in self._CLOSED_STATUSES:
            return
        open_ones = txn.session.exec(
            select(FollowUp).where(
                FollowUp.person_id == person.id,
                FollowUp.status == "open",
                FollowUp.deleted == False,  # noqa: E712
            )
        ).all()
        for follow_up in open_ones:
            self._patch(txn, follow_up, {"status": "cancelled", "cleared_on": self.today()})
        self._refresh_next_follow_up(txn, person)

    # -- referrals -------------------------------------------------------------------------

    def receive_referral(
        self,
        person_id: str,
        *,
        source: str,
        received_on: dt.date | None = None,
        reasons: list[str] | None = None,
        referrer_name: str | None = None,
        referral_text: str | None = None,
        urgency: str = "routine",
    ) -> Referral:
        errors: dict[str, str] = {}
        if source not in REFERRAL_SOURCES:
            errors["source"] = "Choose where the referral came from."
        bad = [r for r in reasons or [] if r not in REFERRAL_REASONS]
        if bad:
            errors["reasons"] = "One of the referral reasons is not on the list."
        received_on = received_on or self.today()
        if received_on > self.today():
            errors["received_on"] = "The date received cannot be in the future."
        if urgency not in ("routine", "soon", "urgent"):
            errors["urgency"] = "Urgency must be routine, soon or urgent."
        if errors:
            raise InvalidInput(errors)
        with self._txn() as txn:
            person = self._get(txn, Person, person_id, "person")
            referral = Referral(
                id="",
                practice_id="",
                person_id=person.id,
                source=source,
                received_on=received_on,
                reasons=list(reasons or []),
                referrer_name=referrer_name,
                referral_text=referral_text,
                urgency=urgency,
            )
            self._insert(txn, referral)
            if person.status in (
                PersonStatus.DISCHARGED,
                PersonStatus.DECLINED,
                PersonStatus.DID_NOT_ENGAGE,
            ):
                self._patch(
                    txn,
                    person,
                    {"status": PersonStatus.REFERRED.value, "status_changed_on": self.today()},
                )
            self._audit(txn, "CREATE", person_id=person.id, record_type="referral", record_id=referral.id)
            return referral

    def accept_referral(self, referral_id: str, **first_contact: Any) -> Contact:
        """Accept with the first contact; records SNOMED CT 871731000000106 on the referral."""
        with self._txn() as txn:
            referral = self._get(txn, Referral, referral_id, "referral")
            if referral.status != ReferralStatus.RECEIVED:
                raise ServiceError("This referral has already been decided.")
            contact = self.record_contact(referral.person_id, referral_id=referral.id, **first_contact)
            self._patch(
                txn,
                referral,
                {
                    "status": ReferralStatus.ACCEPTED.value,
                    "decided_on": contact.occurred_at.date(),
                    "snomed_code": SNOMED_REFERRAL_ACCEPTED,
                },
            )
            person = self._get(txn, Person, referral.person_id, "person")
            self._patch(
                txn,
                person,
                {"status": PersonStatus.ACTIVE.value, "status_changed_on": self.today()},
            )
            self._audit(
                txn,
                "UPDATE",
                person_id=referral.person_id,
                record_type="referral",
                record_id=referral.id,
                detail=f"accepted snomed={SNOMED_REFERRAL_ACCEPTED}",
            )
            return contact

    def decline_referral(self, referral_id: str, reason: str = "", code: str = "other") -> Referral:
        """Decline with a coded reason (DECLINE_REASONS) and words; records SNOMED CT 871711000000103.

        The words are required for "other" and optional for the rest (the code's label stands for them).
        """
        reason = (reason or "").strip()
        if code not in DECLINE_REASONS:
            raise InvalidInput({"decline_code": "Choose a reason for declining from the list."})
        if not reason and code == "other":
            raise InvalidInput({"decline_reason": "Give a reason for declining the referral."})
        reason = reason or DECLINE_REASONS[code]
        with self._txn() as txn:
            referral = self._get(txn, Referral, referral_id, "referral")
            if referral.status != ReferralStatus.RECEIVED:
                raise ServiceError("This referral has already been decided.")
            self._patch(
                txn,
                referral,
                {
                    "status": ReferralStatus.DECLINED.value,
                    "decided_on": self.today(),
                    "decline_reason": reason,
                    "decline_code": code,
                    "snomed_code": SNOMED_SP_DECLINED,
                },
            )
            person = self._get(txn, Person, referral.person_id, "person")
            others = txn.session.exec(
                select(Referral.id).where(
                    Referral.person_id == person.id,
                    Referral.id != referral.id,
                    Referral.status.in_([ReferralStatus.RECEIVED.value, ReferralStatus.ACCEPTED.value]),  # type: ignore[attr-defined]
                    Referral.deleted == False,  # noqa: E712
                )
            ).first()
            if others is None and person.status == PersonStatus.REFERRED:
                self._patch(
                    txn,
                    person,
                    {"status": PersonStatus.DECLINED.value, "status_changed_on": self.today()},
                )
                self._close_follow_ups_if_case_closed(txn, person)
            self._audit(
                txn,
                "UPDATE",
                person_id=person.id,
                record_type="referral",
                record_id=referral.id,
                detail=f"declined snomed={SNOMED_SP_DECLINED} code={code}",
            )
            return referral

    # -- contacts --------------------------------------------------------------------------

    def record_contact(
        self,
        person_id: str,
        *,
        mode: str,
        notes: str = "",
        occurred_at: dt.datetime | None = None,
        duration_minutes: int = 0,
        follow_up_on: dt.date | None = None,
        did_not_attend: bool = False,
        referral_id: str | None = None,
    ) -> Contact:
        """Save a contact; it clears every open follow-up due on or before its date."""
        errors: dict[str, str] = {}
        now = self.clock()
        occurred_at = occurred_at or now
        if occurred_at.tzinfo is None:
            occurred_at = occurred_at.replace(tzinfo=dt.UTC)
        if mode not in CONTACT_MODES:
            errors["mode"] = "Choose how the contact happened: home visit, phone, video, clinic or community."
        if occurred_at > now + dt.timedelta(minutes=5):
            errors["occurred_at"] = "The contact date and time cannot be in the future."
        if not isinstance(duration_minutes, int) or not 0 <= duration_minutes <= 24 * 60:
            errors["duration_minutes"] = "The duration must be between 0 and 1440 minutes."
        if follow_up_on is not None and follow_up_on < occurred_at.date():
            errors["follow_up_on"] = "The follow-up date must be on or after the contact date."
        if errors:
            raise InvalidInput(errors)
        with self._txn() as txn:
            person = self._get(txn, Person, person_id, "person")
            contact = Contact(
                id="",
                practice_id="",
                person_id=person.id,
                referral_id=referral_id,
                occurred_at=occurred_at,
                mode=mode,
                duration_minutes=duration_minutes,
                notes=notes,
                did_not_attend=did_not_attend,
                follow_up_on=follow_up_on,
                author=self.actor.user_id,
            )
            self._insert(txn, contact)
            if not did_not_attend:
                due = txn.session.exec(
                    select(FollowUp).where(
                        FollowUp.person_id == person.id,
                        FollowUp.status == "open",
                        FollowUp.deleted == False,  # noqa: E712
                        FollowUp.due_on <= occurred_at.date(),
                    )
                ).all()
                for follow_up in due:
                    self._patch(
                        txn,
                        follow_up,
                        {
                            "status": "cleared",
                            "cleared_by_contact_id": contact.id,
                            "cleared_on": occurred_at.date(),
                        },
                    )
            if follow_up_on is not None:
                self._insert(
                    txn,
                    FollowUp(
                        id="",
                        practice_id="",
                        person_id=person.id,
                        due_on=follow_up_on,
                        reason="Next contact",
                    ),
                )
            if person.last_contact_on is None or occurred_at.date() >= person.last_contact_on:
                person.last_contact_on = occurred_at.date()
            self._refresh_next_follow_up(txn, person)
            self._audit(txn, "CREATE", person_id=person.id, record_type="contact", record_id=contact.id)
            return contact

    def _refresh_next_follow_up(self, txn: _Txn, person: Person) -> None:
        nxt = txn.session.exec(
            select(FollowUp.due_on)
            .where(
                FollowUp.person_id == person.id,
                FollowUp.status == "open",
                FollowUp.deleted == False,
            )  # noqa: E712
            .order_by(FollowUp.due_on)
            .limit(1)
        ).first()
        person.next_follow_up_on = nxt
        txn.session.add(person)

    def amend_contact(self, contact_id: str, text: str, reason: str = "") -> ContactAmendment:
        """Contacts are immutable; a correction is an amendment shown beside the original."""
        if not (text or "").strip():
            raise InvalidInput({"text": "Write the correction before saving the amendment."})
        with self._txn() as txn:
            contact = self._get(txn, Contact, contact_id, "contact")
            amendment = ContactAmendment(
                id="",
                practice_id="",
                person_id=contact.person_id,
                contact_id=contact.id,
                text=text.strip(),
                reason=reason.strip(),
                author=self.actor.user_id,
                amended_at=self.clock(),
            )
            self._insert(txn, amendment)
            self._audit(
                txn,
                "UPDATE",
                person_id=contact.person_id,
                record_type="contact",
                record_id=contact.id,
                detail="amended",
            )
            return amendment

    def mark_entered_in_error(self, contact_id: str, reason: str) -> Contact:
        """Never delete a contact: mark it entered in error, with a reason."""
        if not (reason or "").strip():
            raise InvalidInput({"error_reason": "Say why this contact was entered in error."})
        with self._txn() as txn:
            contact = self._get(txn, Contact, contact_id, "contact")
            self._patch(txn, contact, {"entered_in_error": True, "error_reason": reason.strip()})
            self._audit(
                txn,
                "UPDATE",
                person_id=contact.person_id,
                record_type="contact",
                record_id=contact.id,
                detail="entered_in_error",
            )
            return contact

    # -- follow-ups ------------------------------------------------------------------------

    def set_follow_up(self, person_id: str, due_on: dt.date, reason: str = "") -> FollowUp:
        if due_on < self.today():
            raise InvalidInput({"due_on": "A follow-up cannot be due in the past."})
        with self._txn() as txn:
            person = self._get(txn, Person, person_id, "person")
            follow_up = self._insert(
                txn,
                FollowUp(id="", practice_id="", person_id=person.id, due_on=due_on, reason=reason),
            )
            self._refresh_next_follow_up(txn, person)
            self._audit(txn, "CREATE", person_id=person.id, record_type="follow_up", record_id=follow_up.id)
            return follow_up

    def clear_follow_up(self, follow_up_id: str) -> FollowUp:
        with self._txn() as txn:
            follow_up = self._get(txn, FollowUp, follow_up_id, "follow-up")
            if follow_up.status != "open":
                return follow_up  # already cleared by a contact or cancelled: keep how that happened
            self._patch(txn, follow_up, {"status": "cancelled", "cleared_on": self.today()})
            person = self._get(txn, Person, follow_up.person_id, "person")
            self._refresh_next_follow_up(txn, person)
            self._audit(
                txn,
                "UPDATE",
                person_id=person.id,
                record_type="follow_up",
                record_id=follow_up.id,
                detail="cleared",
            )
            return follow_up

    # -- what matters and the care plan ------------------------------------------------------

    def record_what_matters(
        self, person_id: str, text: str, life_area: str = "other", priority: int = 0
    ) -> WhatMatters:
        text = (text or "").strip()
        if not text:
            raise InvalidInput({"text": "Write what matters, in the person's own words."})
        if life_area not in LIFE_AREAS:
            raise InvalidInput({"life_area": "Choose a life area from the list."})
        with self._txn() as txn:
            person = self._get(txn, Person, person_id, "person")
            row = self._insert(
                txn,
                WhatMatters(
                    id="",
                    practice_id="",
                    person_id=person.id,
                    text=text,
                    life_area=life_area,
                    priority=priority,
                ),
            )
            self._audit(txn, "CREATE", person_id=person.id, record_type="what_matters", record_id=row.id)
            return row

    def update_what_matters(self, row_id: str, **changes: Any) -> WhatMatters:
        return self._update_plan_row(WhatMatters, row_id, "what matters entry", changes)

    def delete_what_matters(self, row_id: str) -> None:
        self._delete_plan_row(WhatMatters, row_id, "what matters entry")

    def add_goal(self, person_id: str, text: str, target_on: dt.date | None = None) -> Goal:
        text = (text or "").strip()
        if not text:
            raise InvalidInput({"text": "Write the goal before saving it."})
        with self._txn() as txn:
            person = self._get(txn, Person, person_id, "person")
            last = txn.session.exec(
                select(Goal.position)
                .where(Goal.person_id == person.id, Goal.deleted == False)  # noqa: E712
                .order_by(Goal.position.desc())  # type: ignore[attr-defined]
                .limit(1)
            ).first()
            position = position_after(last)
            goal = self._insert(
                txn,
                Goal(
                    id="",
                    practice_id="",
                    person_id=person.id,
                    text=text,
                    target_on=target_on,
                    position=position,
                ),
            )
            self._audit(txn, "CREATE", person_id=person.id, record_type="goal", record_id=goal.id)
            return goal

    def update_goal(self, goal_id: str, **changes: Any) -> Goal:
        if "status" in changes and changes["status"] not in GOAL_STATUSES:
            raise InvalidInput({"status": "A goal is not started, in progress, achieved or dropped."})
        if "text" in changes and not (changes["text"] or "").strip():
            raise InvalidInput({"text": "A goal needs some words."})
        return self._update_plan_row(Goal, goal_id, "goal", changes)

    def complete_goal(self, goal_id: str) -> Goal:
        return self.update_goal(goal_id, status="achieved")

    def delete_goal(self, goal_id: str) -> None:
        self._delete_plan_row(Goal, goal_id, "goal")

    def move_goal(self, goal_id: str, offset: int) -> Goal:
        """Move a goal up (-1) or down (+1) by giving it a fractional position between neighbours."""
        with self._txn() as txn:
            goal = self._get(txn, Goal, goal_id, "goal")
            siblings = [
                g
                for g in txn.session.exec(
                    select(Goal)
                    .where(Goal.person_id == goal.person_id, Goal.deleted == False)  # noqa: E712
                    .order_by(Goal.position, Goal.id)
                ).all()
            ]
            index = next(i for i, g in enumerate(siblings) if g.id == goal.id)
            target = index + offset
            if target < 0 or target >= len(siblings):
                return goal
            others = [g for g in siblings if g.id != goal.id]
            before = others[target - 1].position if target - 1 >= 0 else None
            after = others[target].position if target < len(others) else None
            self._patch(txn, goal, {"position": position_between(before, after)})
            self._audit(
                txn,
                "UPDATE",
                person_id=goal.person_id,
                record_type="goal",
                record_id=goal.id,
                detail="position",
            )
            return goal

    def add_action(self, goal_id: str, what: str, who: str = "person", due_on: dt.date | None = None) -> PlanAction:
        what = (what or "").strip()
        if not what:
            raise InvalidInput({"what": "Say what will be done."})
        with self._txn() as txn:
            goal = self._get(txn, Goal, goal_id, "goal")
            last = txn.session.exec(
                select(PlanAction.position)
                .where(PlanAction.goal_id == goal.id, PlanAction.deleted == False)  # noqa: E712
                .order_by(PlanAction.position.desc())  # type: ignore[attr-defined]
                .limit(1)
            ).first()
            action = self._insert(
                txn,
                PlanAction(
                    id="",
                    practice_id="",
                    person_id=goal.person_id,
                    goal_id=goal.id,
                    what=what,
                    who=(who or "person").strip(),
                    due_on=due_on,
                    position=position_after(last),
                ),
            )
            self._audit(
                txn,
                "CREATE",
                person_id=goal.person_id,
                record_type="plan_action",
                record_id=action.id,
            )
            return action

    def update_action(self, action_id: str, **changes: Any) -> PlanAction:
        if "what" in changes and not (changes["what"] or "").strip():
            raise InvalidInput({"what": "Say what will be done."})
        return self._update_plan_row(PlanAction, action_id, "action", changes)

    def complete_action(self, action_id: str, done: bool = True) -> PlanAction:
        return self.update_action(action_id, done=done)

    def delete_action(self, action_id: str) -> None:
        self._delete_plan_row(PlanAction, action_id, "action")

    def _update_plan_row(self, model: type[T], row_id: str, what: str, changes: dict[str, Any]) -> T:
        with self._txn() as txn:
            row = self._get(txn, model, row_id, what)
            changed = self._patch(txn, row, changes)
            if changed:
                self._audit(
                    txn,
                    "UPDATE",
                    person_id=row.person_id,
                    record_type=model.__tablename__,  # type: ignore[arg-type]
                    record_id=row.id,
                    detail=",".join(sorted(changed)),
                )
            return row

    def _delete_plan_row(self, model: type[Synced], row_id: str, what: str) -> None:
        with self._txn() as txn:
            row = self._get(txn, model, row_id, what)
            self._tombstone(txn, row)
            if isinstance(row, Goal):
                for action in txn.session.exec(
                    select(PlanAction).where(PlanAction.goal_id == row.id, PlanAction.deleted == False)  # noqa: E712
                ).all():
                    self._tombstone(txn, action)
            self._audit(
                txn,
                "DELETE",
                person_id=row.person_id,
                record_type=model.__tablename__,  # type: ignore[arg-type]
                record_id=row.id,
            )

    # -- needs, onward referrals, outcomes ---------------------------------------------------

    def record_need(self, person_id: str, category: str, description: str = "", status: str = "open") -> Need:
        if category not in REFERRAL_REASONS:
            raise InvalidInput({"category": "Choose a need from the list."})
        if status not in ("open", "met", "unmet"):
            raise InvalidInput({"status": "A need is open, met, or unmet."})
        with self._txn() as txn:
            person = self._get(txn, Person, person_id, "person")
            need = self._insert(
                txn,
                Need(
                    id="",
                    practice_id="",
                    person_id=person.id,
                    category=category,
                    description=description,
                    status=status,
                ),
            )
            self._audit(txn, "CREATE", person_id=person.id, record_type="need", record_id=need.id)
            return need

    def update_need(self, need_id: str, **changes: Any) -> Need:
        if "status" in changes and changes["status"] not in ("open", "met", "unmet"):
            raise InvalidInput({"status": "A need is open, met, or unmet."})
        return self._update_plan_row(Need, need_id, "need", changes)

    def refer_to_service(
        self,
        person_id: str,
        service_id: str,
        kind: str = "referred",
        need: str | None = None,
        made_on: dt.date | None = None,
        notes: str = "",
        need_id: str | None = None,
        consent: bool = False,
    ) -> OnwardReferral:
        """Refer, signpost or accompany a person to a directory service.

        `need_id` names one of the person's Need rows (its category becomes `need`); `consent` records
        that the person agreed to it; `notes` is a short note (500 characters at most).
        """
        if kind not in ONWARD_KINDS:
            raise InvalidInput({"kind": "Choose signposted, referred or accompanied."})
        notes = (notes or "").strip()
        if len(notes) > ONWARD_NOTE_MAX:
            raise InvalidInput({"notes": f"Keep the note to {ONWARD_NOTE_MAX} characters; it is a short note."})
        with self._txn() as txn:
            person = self._get(txn, Person, person_id, "person")
            service = txn.session.get(CommunityService, service_id)
            if service is None:
                raise NotFound("That service is not in the directory.")
            if need_id is not None:
                need_row = txn.session.get(Need, need_id)
                if need_row is None or need_row.deleted or need_row.person_id != person.id:
                    raise InvalidInput({"need": "Choose one of this person's needs."})
                need = need_row.category
            row = self._insert(
                txn,
                OnwardReferral(
                    id="",
                    practice_id="",
                    person_id=person.id,
                    service_id=service.id,
                    service_name=service.name,
                    kind=kind,
                    made_on=made_on or self.today(),
                    need=need,
                    notes=notes,
                    need_id=need_id,
                    consent=bool(consent),
                ),
            )
            self._audit(txn, "CREATE", person_id=person.id, record_type="onward_referral", record_id=row.id)
            return row

    def withdraw_onward_referral(self, onward_id: str, reason: str, words: str = "") -> OnwardReferral:
        """Withdraw an onward referral made wrongly: kept in the record, marked withdrawn, out of uptake figures.

        `reason` is a code from WITHDRAW_REASONS; the stored reason is its label, then `words` if given
        (required for "other").
        """
        words = (words or "").strip()
        if reason not in WITHDRAW_REASONS:
            raise InvalidInput({"reason": "Choose why the referral is withdrawn from the list."})
        if reason == "other" and not words:
            raise InvalidInput({"words": "Say in a few words why the referral is withdrawn."})
        text = WITHDRAW_REASONS[reason] + (f": {words}" if words else "")
        with self._txn() as txn:
            row = self._get(txn, OnwardReferral, onward_id, "onward referral")
            if row.withdrawn_on is not None:
                raise ServiceError("This onward referral was already withdrawn.")
            self._patch(txn, row, {"withdrawn_on": self.today(), "withdrawn_reason": text})
            self._audit(
                txn,
                "UPDATE",
                person_id=row.person_id,
                record_type="onward_referral",
                record_id=row.id,
                detail=f"withdrawn reason={reason}",
            )
            return row

    def record_onward_outcome(
        self,
        onward_id: str,
        outcome: str,
        outcome_on: dt.date | None = None,
        first_response_on: dt.date | None = None,
    ) -> OnwardReferral:
        if outcome not in ONWARD_OUTCOMES:
            raise InvalidInput({"outcome": "Choose attended, waiting list, not attended or declined."})
        changes: dict[str, Any] = {"outcome": outcome, "outcome_on": outcome_on or self.today()}
        if first_response_on is not None:
            changes["first_response_on"] = first_response_on
        with self._txn() as txn:
            if self._get(txn, OnwardReferral, onward_id, "onward referral").withdrawn_on is not None:
                raise ServiceError("This onward referral was withdrawn, so it has no outcome to record.")
            return self._update_plan_row(OnwardReferral, onward_id, "onward referral", changes)

    def record_outcome(
        self,
        person_id: str,
        instrument: str,
        time_point: str,
        responses: dict[str, int | None],
        taken_on: dt.date | None = None,
    ) -> OutcomeResponse:
        """Store an outcome measure; incomplete responses are stored as incomplete, never scored."""
        if time_point not in instruments.TIME_POINTS:
            raise InvalidInput({"time_point": "Choose baseline, review or discharge."})
        try:
            result = instruments.score(instrument, responses)
        except KeyError:
            raise InvalidInput({"instrument": "That outcome measure is not one sprx knows."}) from None
        except validate.ValidationError as exc:
            raise InvalidInput({exc.field: str(exc)}) from None
        taken_on = taken_on or self.today()
        if taken_on > self.today():
            raise InvalidInput({"taken_on": "The date taken cannot be in the future."})
        with self._txn() as txn:
            person = self._get(txn, Person, person_id, "person")
            row = self._insert(
                txn,
                OutcomeResponse(
                    id="",
                    practice_id="",
                    person_id=person.id,
                    instrument=instrument,
                    time_point=time_point,
                    taken_on=taken_on,
                    responses=dict(responses),
                    complete=result.complete,
                    score=dataclasses.asdict(result),
                ),
            )
            self._audit(
                txn,
                "CREATE",
                person_id=person.id,
                record_type="outcome_response",
                record_id=row.id,
                detail=instrument,
            )
            return row

    # -- directory suggestions, audit-only events, drafts ------------------------------------

    def suggest_directory_change(self, service_id: str, kind: str, note: str = "") -> DirectorySuggestion:
        if kind not in ("closed", "details_changed"):
            raise InvalidInput({"kind": "Say whether the service has closed or its details changed."})
        with self._txn() as txn:
            if txn.session.get(CommunityService, service_id) is None:
                raise NotFound("That service is not in the directory.")
            row = DirectorySuggestion(
                id=uuid7(),
                practice_id=self.actor.practice_id,
                service_id=service_id,
                kind=kind,
                note=note.strip(),
                suggested_on=self.today(),
            )
            txn.session.add(row)
            stamp = self._tick(txn)
            self._outbox(
                txn,
                tbl="directory_suggestion",
                row_id=row.id,
                person_id=None,
                op="insert",
                fields={
                    f: {"v": to_wire(getattr(row, f)), "hlc": stamp, "base_seq": None}
                    for f in TABLES["directory_suggestion"].fields
                },
            )
            self._audit(
                txn,
                "CREATE",
                person_id=None,
                record_type="directory_suggestion",
                record_id=row.id,
                detail=kind,
            )
            return row

    def record_event(self, action: str, person_id: str | None = None, detail: str = "") -> AuditEvent:
        """An audit-only event: VIEW of a record, UNLOCK, LOCK, EXPORT, SYNC."""
        with self._txn() as txn:
            if person_id is not None:
                self._get(txn, Person, person_id, "person")
            return self._audit(
                txn,
                action,
                person_id=person_id,
                record_type="person" if person_id else "",
                record_id=person_id or "",
                detail=detail,
            )

    def record_view(self, person_id: str) -> AuditEvent:
        return self.record_event("VIEW", person_id)

    # -- sync conflicts --------------------------------------------------------------------------

    def resolve_conflict(self, conflict_id: str, chosen_value: Any) -> SyncConflict:
        """Close a sync conflict with the value a person chose (or wrote); it syncs as a `resolve` mutation.

        For a narrative field the value is the text to keep; for a delete-versus-edit conflict it is
        True to confirm the delete or False to keep the record. The new stamp dominates every value
        in the conflict, so the choice wins everywhere once it has synced.
        """
        with self._txn() as txn:
            conflict = txn.session.get(SyncConflict, conflict_id)
            if conflict is None or conflict.status != "open":
                raise NotFound("That conflict has already been resolved or could not be found.")
            values = list(conflict.values_json or [])
            model = SYNCED_MODELS.get(conflict.tbl)
            row = txn.session.get(model, conflict.row_id) if model is not None else None
            _check_resolution(conflict, row, chosen_value)
            stamp = self._tick(txn)
            top = max((int(v.get("hlc") or 0) for v in values), default=0)
            if stamp <= top:
                # Kulkarni's receive rule: strictly after every value being replaced.
                txn.hlc_last = txn.hlc = stamp = hlc_clock.receive(stamp, top, 0)
            base = max((int(v.get("seq") or 0) for v in values), default=0)
            wire_value = to_wire(chosen_value)
            if row is not None and model is not None:
                self._apply_resolution(txn, conflict, row, model, chosen_value, wire_value, stamp, base)
            conflict.status = "resolved"
            conflict.resolution = {"v": wire_value, "hlc": stamp, "dev": self.actor.device_id, "by": "resolve"}
            txn.session.add(conflict)
            self._outbox(
                txn,
                tbl=conflict.tbl,
                row_id=conflict.row_id,
                person_id=conflict.person_id or (row.person_id if row is not None else None),
                op="resolve",
                conflict_id=conflict.id,
                fields={conflict.field: {"v": wire_value, "hlc": stamp, "base_seq": base}},
            )
            self._audit(
                txn,
                "UPDATE",
                person_id=conflict.person_id,
                record_type=conflict.tbl,
                record_id=conflict.row_id,
                detail=f"conflict_resolved kind={conflict.kind}",
            )
            return conflict

    def _apply_resolution(
        self,
        txn: _Txn,
        conflict: SyncConflict,
        row: Any,
        model: Any,
        chosen_value: Any,
        wire_value: Any,
        stamp: int,
        base: int,
    ) -> None:
        """The chosen text becomes the field's value with the new stamp, or a confirmed delete deletes."""
        if conflict.kind == "concurrent_edit":
            setattr(row, conflict.field, from_wire(model, conflict.field, wire_value))
            meta = dict(row.field_meta or {})
            meta[conflict.field] = {"hlc": stamp, "dev": self.actor.device_id, "seq": base}
            row.field_meta = meta
            row.row_hlc = stamp
            if isinstance(row, Person):
                row.search_text = search_text_for(row)
            txn.session.add(row)
        elif conflict.kind == "delete_vs_edit" and chosen_value is True:
            row.deleted = True
            row.row_hlc = stamp
            txn.session.add(row)

    def save_draft(self, key: str, payload: dict[str, Any]) -> None:
        with self._txn() as txn:
            draft = txn.session.get(Draft, key) or Draft(key=key)
            draft.payload = dict(payload)
            draft.updated_at = self.clock()
            txn.session.add(draft)

    def load_draft(self, key: str) -> dict[str, Any] | None:
        with self.lock, Session(self.engine) as session:
            draft = session.get(Draft, key)
            return dict(draft.payload) if draft else None

    def discard_draft(self, key: str) -> None:
        with self._txn() as txn:
            draft = txn.session.get(Draft, key)
            if draft is not None:
                txn.session.delete(draft)

    def list_drafts(self) -> list[str]:
        with self.lock, Session(self.engine) as session:
            return list(session.exec(select(Draft.key)).all())

    # -- integrity of the audit chain ----------------------------------------------------------

    def verify_audit_chain(self) -> bool:
        """True when every audit event's hash follows from the one before it."""
        prev = GENESIS_HASH
        with self.lock, Session(self.engine) as session:
            for event in session.exec(select(AuditEvent).order_by(AuditEvent.seq)):
                if event.prev_hash != prev or _audit_hash(prev, event) != event.hash:
                    return False
                prev = event.hash
        return True


# -- fractional positions (reorder without renumbering: concurrent moves merge by LWW) ---------

_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def position_between(before: str | None, after: str | None) -> str:
    """A key that sorts strictly between `before` and `after` (None = open end)."""
    lo = before or ""
    hi = after
    out = []
    i = 0
    while True:
        a = _DIGITS.index(lo[i]) if i < len(lo) else 0
        b = _DIGITS.index(hi[i]) if hi is not None and i < len(hi) else len(_DIGITS)
        if b - a > 1:
            out.append(_DIGITS[(a + b) // 2])
            return "".join(out)
        out.append(_DIGITS[a])
        if b - a == 1:
            hi = None  # from here on anything above lo's tail works
        i += 1


def position_after(last: str | None) -> str:
    return position_between(last, None)


__all__ = [
    "Actor",
    "CaseService",
    "InvalidInput",
    "NotFound",
    "RefusedValue",
    "ServiceError",
    "gate_check",
    "position_between",
]
