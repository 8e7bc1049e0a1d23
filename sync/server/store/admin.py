"""The admin's questions and corrections: practices and teams that must exist, workers listed and removed,
people found by NHS number or name, enrolment codes listed and cancelled, a revoked or retired laptop restored.

Every target is looked up first: an unknown practice, team, worker, person, device or code is a StoreError
(``not_found``) with one sentence, never a silent no-op.
"""

from __future__ import annotations

import json
import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sprx_rules.nhs import normalise_nhs_number
from sprx_rules.validate import ValidationError
from sync.server.log import log_event
from sync.server.store.accounts import ENROL_CODE_TTL_MS, AccountsMixin, normalise_code, told_to_erase
from sync.server.store.base import StoreError, sha256_hex
from sync.server.store.scope import ScopeMixin
from sync.server.store.tables import assignment, device, enrol_code, practice, record, team, worker

FIND_LIMIT = 50
"""People shown by ``find_people`` at most (the caller says how many more matched)."""


def as_nhs_number(text: str) -> str | None:
    """The 10 digits when ``text`` is a valid NHS number (spaces or dashes allowed), else None."""
    if not re.fullmatch(r"[\d\s-]+", text.strip()):
        return None
    try:
        return normalise_nhs_number(text)
    except ValidationError:
        return None


def _full_name(values: dict[str, Any]) -> str:
    parts = (values.get("given_name"), values.get("family_name"))
    return " ".join(str(p) for p in parts if p)


class AdminMixin(ScopeMixin, AccountsMixin):
    """Checks and lists for the admin command (``sync.server.admin``)."""

    # ---------------------------------------------------------------- practices and teams

    def require_practice(self, practice_id: str) -> None:
        with self._read() as conn:
            found = conn.execute(sa.select(practice.c.id).where(practice.c.id == practice_id)).first()
        if found is None:
            raise StoreError(
                "not_found",
                f"There is no practice called {practice_id}; a practice is made by its first `sprx-server worker add`.",
                404,
            )

    def require_team(self, team_id: str) -> str:
        """The team's practice; StoreError not_found."""
        with self._read() as conn:
            t = conn.execute(sa.select(team).where(team.c.id == team_id)).first()
        if t is None:
            raise StoreError("not_found", f"There is no team called {team_id}.", 404)
        return str(t.practice_id)

    # ---------------------------------------------------------------- workers

    def list_workers(self, *, include_removed: bool = False) -> list[dict[str, Any]]:
        """Each worker with how many people are assigned to them and how many laptops can still sync."""
        people = (
            sa.select(assignment.c.worker_id, sa.func.count().label("n")).group_by(assignment.c.worker_id).subquery()
        )
        laptops = (
            sa.select(device.c.worker_id, sa.func.count().label("n"))
            .where(device.c.revoked_at.is_(None))
            .group_by(device.c.worker_id)
            .subquery()
        )
        q = (
            sa.select(worker, people.c.n.label("people"), laptops.c.n.label("laptops"))
            .outerjoin(people, people.c.worker_id == worker.c.id)
            .outerjoin(laptops, laptops.c.worker_id == worker.c.id)
            .order_by(worker.c.practice_id, worker.c.id)
        )
        if not include_removed:
            q = q.where(worker.c.removed_at.is_(None))
        with self._read() as conn:
            rows = conn.execute(q).all()
        return [
            {
                "id": r.id,
                "practice_id": r.practice_id,
                "team_id": r.team_id,
                "display_name": r.display_name,
                "created_at": r.created_at,
                "removed_at": r.removed_at,
                "people": int(r.people or 0),
                "laptops": int(r.laptops or 0),
            }
            for r in rows
        ]

    def remove_worker(self, worker_id: str) -> int:
        """Remove a worker who has no one assigned and no laptop that can sync; returns codes cancelled.

        The row stays (marked removed): their laptops' history and the change feed refer to it.
        """
        with self._write() as conn:
            w = conn.execute(sa.select(worker).where(worker.c.id == worker_id)).first()
            if w is None:
                raise StoreError("not_found", f"There is no worker called {worker_id}.", 404)
            if w.removed_at is not None:
                raise StoreError("removed", f"Worker {worker_id} was already removed.", 409)
            n = self._count(conn, assignment, assignment.c.worker_id == worker_id)
            if n:
                raise StoreError(
                    "in_use",
                    f"Worker {worker_id} still has {n} {'person' if n == 1 else 'people'} assigned; move them to "
                    f"another worker first (sprx-server people find, then sprx-server assign PERSON --worker LOGIN).",
                    409,
                )
            n = self._count(conn, device, sa.and_(device.c.worker_id == worker_id, device.c.revoked_at.is_(None)))
            if n:
                raise StoreError(
                    "in_use",
                    f"Worker {worker_id} still has {n} laptop(s) that can sync; retire them first "
                    "(sprx-server device list, then sprx-server device retire DEVICE).",
                    409,
                )
            conn.execute(worker.update().where(worker.c.id == worker_id).values(removed_at=self.now_ms()))
            cancelled = conn.execute(
                enrol_code.delete().where(enrol_code.c.worker_id == worker_id, enrol_code.c.used_at.is_(None))
            ).rowcount
        log_event("worker_removed", worker_id=worker_id)
        return int(cancelled or 0)

    @staticmethod
    def _count(conn: Connection, table: sa.Table, where: Any) -> int:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(where)).scalar_one())

    # ---------------------------------------------------------------- people

    def find_people(self, text: str, practice_id: str | None = None) -> tuple[list[dict[str, Any]], int]:
        """People whose NHS number is ``text`` or whose name contains it (any case); (first FIND_LIMIT, total)."""
        text = text.strip()
        if not text:
            raise StoreError("invalid", "Give an NHS number or part of a name to look for.")
        q = (
            sa.select(
                record.c.id,
                record.c.practice_id,
                record.c["values"],
                record.c.lookup,
                assignment.c.worker_id,
                assignment.c.team_id,
            )
            .outerjoin(assignment, assignment.c.person_id == record.c.id)
            .where(record.c.tbl == "person", record.c.deleted.is_(False))
            .order_by(record.c.practice_id, record.c.id)
        )
        if practice_id is not None:
            q = q.where(record.c.practice_id == practice_id)
        nhs = as_nhs_number(text)
        if nhs is not None:
            q = q.where(record.c.lookup == nhs)
        elif text.replace(" ", "").isdigit():
            raise StoreError("invalid", "That is not a valid NHS number (10 digits with a correct check digit).")
        needle = text.casefold()
        found: list[dict[str, Any]] = []
        total = 0
        with self._read() as conn:
            for r in conn.execute(q):
                values = json.loads(r.values)
                name = _full_name(values)
                if nhs is None and needle not in name.casefold():
                    continue
                total += 1
                if len(found) < FIND_LIMIT:
                    found.append(
                        {
                            "id": r.id,
                            "practice_id": r.practice_id,
                            "name": name,
                            "nhs_number": r.lookup or values.get("nhs_number"),
                            "worker_id": r.worker_id,
                            "team_id": r.team_id,
                        }
                    )
        return found, total

    def resolve_person(self, ref: str, practice_id: str) -> str:
        """The id of the practice's live person with this NHS number or id; StoreError not_found."""
        nhs = as_nhs_number(ref)
        with self._read() as conn:
            if nhs is not None:
                r = conn.execute(
                    sa.select(record.c.id)
                    .where(
                        record.c.practice_id == practice_id,
                        record.c.tbl == "person",
                        record.c.lookup == nhs,
                        record.c.deleted.is_(False),
                    )
                    .order_by(record.c.id)
                ).first()
                if r is None:
                    raise StoreError("not_found", f"No one in practice {practice_id} has that NHS number.", 404)
                return str(r.id)
            r = conn.execute(
                sa.select(record.c.practice_id, record.c.deleted).where(record.c.tbl == "person", record.c.id == ref)
            ).first()
        if r is None or r.deleted or r.practice_id != practice_id:
            raise StoreError(
                "not_found",
                f"There is no person {ref} in practice {practice_id}; give their NHS number or the id "
                "`sprx-server people find` shows.",
                404,
            )
        return ref

    # ---------------------------------------------------------------- enrolment codes

    def list_enrol_codes(self, *, include_all: bool = False) -> list[dict[str, Any]]:
        """Enrolment codes (only a hash of each is kept): open ones, or every one with ``include_all``."""
        now = self.now_ms()
        q = sa.select(enrol_code).order_by(enrol_code.c.expires_at)
        if not include_all:
            q = q.where(enrol_code.c.used_at.is_(None), enrol_code.c.expires_at > now)
        with self._read() as conn:
            rows = conn.execute(q).all()
        out = []
        for r in rows:
            if r.used_at is not None:
                status = "used"
            elif r.expires_at <= now:
                status = "expired"
            else:
                status = "open"
            out.append(
                {
                    "ref": r.code_sha256[:8],
                    "worker_id": r.worker_id,
                    "issued_at": r.expires_at - ENROL_CODE_TTL_MS,
                    "expires_at": r.expires_at,
                    "used_at": r.used_at,
                    "device_id": r.device_id,
                    "status": status,
                }
            )
        return out

    def cancel_enrol_code(self, code_or_ref: str) -> str:
        """Cancel one unused code, given as issued (ABCDE-FGHJK) or by the ref `enrol-code list` shows.

        Returns the worker it was for. A cancelled code is deleted: enrolling with it then fails like
        any unknown code.
        """
        raw = normalise_code(code_or_ref)
        ref = code_or_ref.strip().lower()
        with self._write() as conn:
            where = enrol_code.c.code_sha256 == sha256_hex(raw)
            if re.fullmatch(r"[0-9a-f]{8}", ref):
                where = sa.or_(where, enrol_code.c.code_sha256.startswith(ref, autoescape=True))
            rows = conn.execute(sa.select(enrol_code).where(where)).all()
            if not rows:
                raise StoreError(
                    "not_found", "There is no such enrolment code; `sprx-server enrol-code list` shows them."
                )
            if len(rows) > 1:
                raise StoreError("ambiguous", "More than one code matches; give the code itself.")
            r = rows[0]
            if r.used_at is not None:
                raise StoreError(
                    "code_used",
                    f"That code was already used to enrol device {r.device_id}; use `sprx-server device revoke` "
                    "or `device retire` for the laptop.",
                    409,
                )
            conn.execute(enrol_code.delete().where(enrol_code.c.code_sha256 == r.code_sha256))
        log_event("enrol_code_cancelled", worker_id=r.worker_id)
        return str(r.worker_id)

    def cancel_worker_codes(self, worker_id: str) -> int:
        """Cancel every unused code of a worker; how many."""
        self.get_worker(worker_id)
        with self._write() as conn:
            n = conn.execute(
                enrol_code.delete().where(enrol_code.c.worker_id == worker_id, enrol_code.c.used_at.is_(None))
            ).rowcount
        log_event("enrol_code_cancelled", worker_id=worker_id, count=n)
        return int(n or 0)

    # ---------------------------------------------------------------- devices

    def restore_device(self, device_id: str) -> str:
        """Undo a revoke or a retire made by mistake; returns what was undone ("revoked" or "retired").

        Refused (StoreError ``erased``) once the server has told the laptop to erase itself: it has no
        copy left and must be enrolled again. Refused while the worker is removed.
        """
        with self._write() as conn:
            d = conn.execute(sa.select(device).where(device.c.id == device_id)).first()
            if d is None:
                raise StoreError("not_found", f"There is no device {device_id}.", 404)
            if told_to_erase(d):
                raise StoreError(
                    "erased",
                    f"Device {device_id} was already told to erase its copy, so it cannot be restored; enrol the "
                    f"laptop again with a new code (sprx-server enrol-code issue {d.worker_id}).",
                    409,
                )
            if d.revoked_at is None and d.retired_at is None:
                raise StoreError(
                    "active", f"Device {device_id} is not revoked or retired; there is nothing to restore."
                )
            w = conn.execute(sa.select(worker.c.removed_at).where(worker.c.id == d.worker_id)).one()
            if w.removed_at is not None:
                raise StoreError("removed", f"Worker {d.worker_id} was removed; add them again before restoring.", 409)
            # Only while the laptop has not been told: a sync answered between the read and here marks it.
            n = conn.execute(
                device.update()
                .where(device.c.id == device_id, device.c.erase_told_at.is_(None))
                .values(revoked_at=None, retired_at=None)
            ).rowcount
            if n != 1:
                raise StoreError("erased", f"Device {device_id} was told to erase its copy just now; enrol it again.")
        undone = "revoked" if d.revoked_at is not None else "retired"
        log_event("device_restored", device_id=device_id, undone=undone)
        return undone
