"""Accounts and devices: workers, one-time enrolment codes, enrolment, revoke and retire, bearer tokens."""

from __future__ import annotations

import re
import secrets
import uuid
from typing import Any

import sqlalchemy as sa

from sprx_rules import gate
from sync.server.log import log_event
from sync.server.store.base import Device, StoreBase, StoreError, sha256_hex
from sync.server.store.tables import device, enrol_code, practice, team, worker

ENROL_CODE_TTL_MS = 15 * 60 * 1000
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O or 1/I: read aloud over the phone


LOGIN_PATTERN = re.compile(r"[a-z][a-z0-9._-]{0,63}")
RESERVED_LOGINS = frozenset({"issue", "list", "cancel"})
"""Words of `sprx-server enrol-code`, which also takes a login in their place (the older form)."""


def check_login(login: str) -> None:
    """A worker id is a login (asmith, a.smith, asmith2), never a person's name: ids are written to logs."""
    if not LOGIN_PATTERN.fullmatch(login):
        raise StoreError(
            "invalid",
            "A worker id is a login such as asmith: lower-case letters, digits, '.', '_' or '-', starting with a "
            'letter (at most 64); give the person\'s name with --name "A. Smith".',
        )
    if login in RESERVED_LOGINS:
        raise StoreError("invalid", f"{login} cannot be a login (it is a word of sprx-server enrol-code).")


def told_to_erase(d: Any) -> bool:
    """Has the server told this laptop to erase itself (so it holds no copy and cannot be restored)?

    ``erase_told_at`` says so since it was added; a retirement finished before then left its mark as
    ``revoked_at`` set at the laptop's last contact (``retired`` writes both at once).
    """
    if d.erase_told_at is not None:
        return True
    return d.retired_at is not None and d.revoked_at is not None and (d.last_seen or 0) >= d.revoked_at


def normalise_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


_DEVICE_BY_TOKEN = (
    sa.select(device, worker.c.team_id)
    .join(worker, worker.c.id == device.c.worker_id)
    .where(device.c.token_sha256 == sa.bindparam("token_sha256"))
)
"""Built once: every request authenticates, and building the statement was half of it (0.7 -> 0.3 ms CPU)."""


class AccountsMixin(StoreBase):
    """Who may sync: workers, their enrolment codes and the laptops (devices) enrolled with them."""

    def add_worker(
        self, worker_id: str, practice_id: str, team_id: str | None = None, *, display_name: str | None = None
    ) -> None:
        """Add a worker by login (``check_login``); ``display_name`` is for the admin's lists and never logged.

        The practice (and team) are made by their first worker. A removed worker added again to the
        same practice is restored.
        """
        check_login(worker_id)
        if display_name is not None:
            try:
                gate.check_device_name(display_name)  # one printable line, like a laptop's name
            except gate.GateError:
                raise StoreError("invalid", "The name must be one line of printable text.") from None
        with self._write() as conn:
            old = conn.execute(sa.select(worker).where(worker.c.id == worker_id)).first()
            if old is not None and (old.removed_at is None or old.practice_id != practice_id):
                raise StoreError("exists", f"A worker called {worker_id} already exists.")
            if not conn.execute(sa.select(practice.c.id).where(practice.c.id == practice_id)).first():
                conn.execute(practice.insert().values(id=practice_id, name=practice_id))
            if team_id is not None:
                t = conn.execute(sa.select(team).where(team.c.id == team_id)).first()
                if t is None:
                    conn.execute(team.insert().values(id=team_id, practice_id=practice_id))
                elif t.practice_id != practice_id:
                    raise StoreError("invalid", f"Team {team_id} belongs to another practice.")
            if old is not None:  # a removed worker comes back
                conn.execute(
                    worker.update()
                    .where(worker.c.id == worker_id)
                    .values(removed_at=None, team_id=team_id, display_name=display_name or old.display_name)
                )
            else:
                conn.execute(
                    worker.insert().values(
                        id=worker_id,
                        practice_id=practice_id,
                        team_id=team_id,
                        created_at=self.now_ms(),
                        display_name=display_name,
                    )
                )
        log_event("worker_added", worker_id=worker_id, practice_id=practice_id)

    def get_worker(self, worker_id: str) -> Any:
        """A worker who has not been removed; StoreError not_found."""
        with self._read() as conn:
            w = conn.execute(sa.select(worker).where(worker.c.id == worker_id)).first()
        if w is None:
            raise StoreError("not_found", f"There is no worker called {worker_id}.", 404)
        if w.removed_at is not None:
            raise StoreError("not_found", f"Worker {worker_id} was removed.", 404)
        return w

    def issue_enrol_code(self, worker_id: str) -> tuple[str, int]:
        """A one-time enrolment code for a worker and its expiry (ms since the epoch)."""
        self.get_worker(worker_id)
        raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(10))
        expires = self.now_ms() + ENROL_CODE_TTL_MS
        with self._write() as conn:
            conn.execute(
                enrol_code.insert().values(code_sha256=sha256_hex(raw), worker_id=worker_id, expires_at=expires)
            )
        log_event("enrol_code_issued", worker_id=worker_id)
        return f"{raw[:5]}-{raw[5:]}", expires

    def enrol(self, code: str, device_name: str) -> dict[str, Any]:
        try:
            gate.check_device_name(device_name)
        except gate.GateError as exc:
            raise StoreError("invalid_request", str(exc), 422) from None
        now = self.now_ms()
        h = sha256_hex(normalise_code(code))
        token = "sprx_" + secrets.token_urlsafe(32)
        device_id = str(uuid.uuid4())
        with self._write() as conn:
            row = conn.execute(sa.select(enrol_code).where(enrol_code.c.code_sha256 == h)).first()
            if row is None:
                raise StoreError("invalid_code", "That enrolment code is not valid.", 401)
            if row.used_at is not None:
                raise StoreError("code_used", "That enrolment code has already been used.", 401)
            if row.expires_at <= now:
                raise StoreError("code_expired", "That enrolment code has expired.", 401)
            # Conditional update: two laptops racing with one code cannot both win.
            n = conn.execute(
                enrol_code.update()
                .where(enrol_code.c.code_sha256 == h, enrol_code.c.used_at.is_(None))
                .values(used_at=now, device_id=device_id)
            ).rowcount
            if n != 1:
                raise StoreError("code_used", "That enrolment code has already been used.", 401)
            w = conn.execute(sa.select(worker).where(worker.c.id == row.worker_id)).one()
            conn.execute(
                device.insert().values(
                    id=device_id,
                    worker_id=w.id,
                    practice_id=w.practice_id,
                    name=device_name,
                    token_sha256=sha256_hex(token),
                    enrolled_at=now,
                    last_acked_mutation_id=0,
                    last_pull_seq=0,
                    last_seen=now,
                )
            )
            meta = self._meta(conn)
        log_event("device_enrolled", device_id=device_id, worker_id=w.id)
        return {
            "device_id": device_id,
            "token": token,
            "practice_id": w.practice_id,
            "user_id": w.id,
            "server_epoch": meta.epoch,
            "server_hlc": self.clock.now(),
        }

    def revoke_device(self, device_id: str) -> None:
        with self._write() as conn:
            n = conn.execute(
                device.update()
                .where(device.c.id == device_id, device.c.revoked_at.is_(None))
                .values(revoked_at=self.now_ms())
            ).rowcount
            if n == 0:
                exists = conn.execute(sa.select(device.c.id).where(device.c.id == device_id)).first()
                if exists is None:
                    raise StoreError("not_found", f"There is no device {device_id}.", 404)
        log_event("device_revoked", device_id=device_id)

    def retire_device(self, device_id: str) -> None:
        """Retire a laptop: it may still push what it holds; its next pull tells it to erase itself."""
        with self._write() as conn:
            d = conn.execute(sa.select(device).where(device.c.id == device_id)).first()
            if d is None:
                raise StoreError("not_found", f"There is no device {device_id}.", 404)
            if d.revoked_at is not None:
                raise StoreError("revoked", f"Device {device_id} was already revoked; it cannot be retired.", 409)
            if d.retired_at is None:
                conn.execute(device.update().where(device.c.id == device_id).values(retired_at=self.now_ms()))
        log_event("device_retired", device_id=device_id)

    def device_info(self, device_id: str) -> dict[str, Any]:
        """One device as ``list_devices`` shows it; StoreError not_found."""
        for d in self.list_devices(device_id):
            return d
        raise StoreError("not_found", f"There is no device {device_id}.", 404)

    def retired(self, dev: Device, pending: int | None) -> None:
        """Answer a retired laptop's pull or snapshot: always a StoreError (403).

        ``device_retired`` tells it to erase itself once it holds nothing unsent; when it reports nothing
        left (``pending`` 0) the retirement is finished and its token is withdrawn like a revocation. A
        laptop too old to report (``pending`` None) pushes everything before it pulls, so it is told
        ``device_revoked``, which it already understands as "erase now".
        """
        now = self.now_ms()
        vals: dict[str, Any] = {"last_seen": now}
        if pending is not None:
            vals.update(pending_reported=pending, pending_reported_at=now)
        if not pending:
            vals["revoked_at"] = vals["erase_told_at"] = now  # it erases itself on this answer
        with self.engine.connect() as conn:
            conn.execution_options(sprx_write=True)
            with conn.begin():
                conn.execute(device.update().where(device.c.id == dev.id, device.c.revoked_at.is_(None)).values(**vals))
        if not pending:
            log_event("device_retirement_finished", device_id=dev.id)
        if pending is None:
            raise StoreError("device_revoked", "This device has been revoked.", 403)
        raise StoreError("device_retired", "This device was retired; it erases its copy once everything is sent.", 403)

    def note_pending(self, dev: Device, pending: int) -> None:
        """Keep what a laptop says it holds unsent (the admin sees it before revoking)."""
        now = self.now_ms()
        with self.engine.connect() as conn:
            conn.execution_options(sprx_write=True)
            with conn.begin():
                conn.execute(
                    device.update()
                    .where(device.c.id == dev.id)
                    .values(pending_reported=pending, pending_reported_at=now, last_seen=now)
                )

    def list_devices(self, device_id: str | None = None) -> list[dict[str, Any]]:
        with self._read() as conn:
            q = sa.select(device).order_by(device.c.enrolled_at)
            if device_id is not None:
                q = q.where(device.c.id == device_id)
            rows = conn.execute(q).all()
        return [
            {
                "id": r.id,
                "worker_id": r.worker_id,
                "name": r.name,
                "enrolled_at": r.enrolled_at,
                "revoked_at": r.revoked_at,
                "last_seen": r.last_seen,
                "last_acked_mutation_id": r.last_acked_mutation_id,
                "last_pull_seq": r.last_pull_seq,
                "retired_at": r.retired_at,
                "pending_reported": r.pending_reported,
                "pending_reported_at": r.pending_reported_at,
                "erase_told_at": r.erase_told_at,
                "erased": told_to_erase(r),
            }
            for r in rows
        ]

    def _told_to_erase(self, device_id: str) -> bool:
        """Note that a revoked laptop is being told to erase itself (from then on it cannot be restored).

        False when it is no longer revoked (``restore_device`` got there first).
        """
        with self.engine.connect() as conn:
            conn.execution_options(sprx_write=True)
            with conn.begin():
                n = conn.execute(
                    device.update()
                    .where(device.c.id == device_id, device.c.revoked_at.is_not(None))
                    .values(erase_told_at=sa.func.coalesce(device.c.erase_told_at, self.now_ms()))
                ).rowcount
        return n == 1

    def authenticate(self, token: str) -> Device:
        """The device a bearer token belongs to; StoreError unauthorised / device_revoked."""
        with self._read() as conn:
            r = conn.execute(_DEVICE_BY_TOKEN, {"token_sha256": sha256_hex(token)}).first()
        if r is None:
            raise StoreError("unauthorised", "The device token is not valid.", 401)
        if r.revoked_at is not None:
            if not self._told_to_erase(r.id):  # restored by the admin since the read above
                return self.authenticate(token)
            raise StoreError("device_revoked", "This device has been revoked.", 403)
        return Device(
            id=r.id,
            worker_id=r.worker_id,
            practice_id=r.practice_id,
            team_id=r.team_id,
            name=r.name,
            revoked_at=r.revoked_at,
            last_acked_mutation_id=int(r.last_acked_mutation_id),
            last_pull_seq=int(r.last_pull_seq),
            last_seen=int(r.last_seen) if r.last_seen is not None else None,
            retired_at=int(r.retired_at) if r.retired_at is not None else None,
            pending_reported=int(r.pending_reported) if r.pending_reported is not None else None,
        )
