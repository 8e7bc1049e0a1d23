"""Enrolling this vault with a practice server, and whether it is enrolled (or a demo vault that never can be).

`enrol` checks the server's certificate (pinned in the vault), stores the device token and position
inside the encrypted database, and numbers everything not yet sent from 1 for the server.
"""

from __future__ import annotations

import platform
from pathlib import Path

import httpx
from sqlmodel import Session, func, select

from sprx_tui.core.models import SYNCED_MODELS, HlcState, SyncOutbox, utcnow
from sprx_tui.core.service import Actor
from sprx_tui.core.store import CaseStore
from sprx_tui.core.sync.state import (
    K_AFTER,
    K_BASE,
    K_CERT,
    K_CURSOR,
    K_DEMO,
    K_DEVICE,
    K_ENROLLED,
    K_EPOCH,
    K_PHASE,
    K_PIN,
    K_PRACTICE,
    K_STARTED,
    K_TOKEN,
    K_URL,
    K_USER,
    read_config,
    read_state,
    run_sql,
    save_hlc,
    write_state,
)
from sync import client as sc
from sync import hlc as hlc_mod
from sync.client import Enrolment, SyncError


def is_enrolled(store: CaseStore) -> bool:
    return bool(read_config(store).get(K_TOKEN))


def is_demo(store: CaseStore) -> bool:
    """A vault filled by `sprx demo`: its people are made up and must never reach a practice server."""
    with store.lock, Session(store.engine) as s:
        return bool(read_state(s, [K_DEMO]).get(K_DEMO))


DEMO_NOT_ENROLLED = (
    "This is a demo vault of made-up people, so it cannot be enrolled: its records would go into the "
    "practice's real ones. Enrol the vault you use for real work instead."
)


def enrol(
    store: CaseStore,
    server_url: str,
    code: str,
    ca_cert: Path | str | None = None,
    *,
    device_name: str | None = None,
    transport: httpx.BaseTransport | None = None,
) -> Enrolment:
    """Enrol this vault with a practice server; raises SyncError (plain sentence) on failure.

    HTTPS by default (plain http only to this computer). The server's certificate is checked
    against ``ca_cert`` (or the system store) and its SHA-256 is pinned in the vault; the token,
    device id and pin never leave the encrypted database. Writes made before enrolment are kept
    and sent first.
    """
    if is_enrolled(store):
        raise SyncError("This laptop is already enrolled with a practice server.")
    if is_demo(store):
        raise SyncError(DEMO_NOT_ENROLLED)
    url = server_url.rstrip("/") if transport is not None else sc.check_server_url(server_url)
    ca_pem = None
    if ca_cert is not None:
        try:
            ca_pem = Path(ca_cert).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError):
            raise SyncError("The certificate file could not be read.") from None
        if "BEGIN CERTIFICATE" not in ca_pem:
            raise SyncError("The certificate file is not a PEM certificate.")
    name = (device_name or f"sprx on {platform.node() or 'a laptop'}")[:100]
    try:
        e = sc.enrol_device(url, code, name, ca_pem=ca_pem, transport=transport)
    except ValueError:
        raise SyncError("The certificate file is not a usable certificate.") from None
    if url.startswith("https://") and transport is None and not e.pin:
        raise sc.CertificateMismatch("The practice server's certificate could not be read, so nothing was stored.")
    with store.lock, Session(store.engine) as s, s.begin():
        first_pending = s.exec(select(func.min(SyncOutbox.mutation_id)).where(SyncOutbox.status == "pending")).one()
        top = s.exec(select(func.max(SyncOutbox.mutation_id))).one()
        # The server numbers this device's changes 1, 2, 3 ...: everything not yet sent (including
        # work done before enrolment) is numbered from 1.
        base = (int(first_pending) - 1) if first_pending is not None else int(top or 0)
        write_state(
            s,
            {
                K_URL: url, K_TOKEN: e.token, K_DEVICE: e.device_id, K_USER: e.user_id,
                K_PRACTICE: e.practice_id, K_PIN: e.pin or None, K_CERT: e.cert_pem or None,
                K_EPOCH: e.server_epoch, K_PHASE: "snapshot", K_CURSOR: "0", K_AFTER: None, K_STARTED: None,
                K_BASE: str(base), K_ENROLLED: utcnow().isoformat(),
            },
        )  # fmt: skip
        # Rows written before enrolment belong to the practice now.
        for name in SYNCED_MODELS:
            run_sql(s, f"UPDATE {name} SET practice_id = ?", (e.practice_id,))
        last = int(s.exec(select(HlcState.last).where(HlcState.id == 1)).first() or 0)
        if e.server_hlc:
            save_hlc(s, hlc_mod.receive(last, e.server_hlc, int(store.service.clock().timestamp() * 1000)))
    actor = Actor(user_id=e.user_id, device_id=e.device_id, practice_id=e.practice_id)
    store.actor = actor
    store.service.actor = actor
    store.service.record_event("ENROL", detail="enrolled")
    return e


__all__ = ["DEMO_NOT_ENROLLED", "enrol", "is_demo", "is_enrolled"]
