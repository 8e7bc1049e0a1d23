"""The laptop's half of sync: everything between the encrypted vault and the protocol client (sync/client.py).

By job:

- `state`  the vault's record of sync (``sync_state`` keys) and the SQL helpers the steps share
- `local`  `VaultSyncAdapter`, the `sync.client.LocalStore` the client pushes from and pulls into
- `apply`  writing pulled and snapshot pages, behind the inbound gate (refused rows set aside)
- `enrol`  enrolling with a practice server; `is_enrolled`, `is_demo`
- `run`    `sync_now` (one at a time per vault), `SyncResult` / `SyncStatus`, erase on revoke or retire,
           the last-sync record, conflicts and refused changes
- `view`   what the Sync screen lists (`load_sync_view`) and the words it uses; no textual

The app's background controller is sprx_tui/sync_controller.py; `sprx enrol` and `sprx sync` are in sprx_tui/cli.py.
"""

from __future__ import annotations

from sprx_tui.core.sync.apply import EXCERPT_CHARS
from sprx_tui.core.sync.enrol import DEMO_NOT_ENROLLED, enrol, is_demo, is_enrolled
from sprx_tui.core.sync.local import VaultSyncAdapter
from sprx_tui.core.sync.run import (
    EXIT_CONFLICTS,
    EXIT_FAILED,
    EXIT_OFFLINE,
    EXIT_REVOKED,
    EXIT_SYNCED,
    EXIT_UPGRADE,
    INCOMPLETE_ENROLMENT,
    UNSENT_WARN_AFTER,
    SyncResult,
    SyncStatus,
    close_transport,
    open_conflicts,
    rejected_changes,
    resolve_conflict,
    set_aside_count,
    set_aside_sentence,
    sync_now,
    sync_status,
    unsent_overdue,
)
from sprx_tui.core.sync.view import SyncView, load_sync_view
from sync.client import Enrolment, SyncError

__all__ = [
    "DEMO_NOT_ENROLLED",
    "EXCERPT_CHARS",
    "EXIT_CONFLICTS",
    "EXIT_FAILED",
    "EXIT_OFFLINE",
    "EXIT_REVOKED",
    "EXIT_SYNCED",
    "EXIT_UPGRADE",
    "INCOMPLETE_ENROLMENT",
    "UNSENT_WARN_AFTER",
    "Enrolment",
    "SyncError",
    "SyncResult",
    "SyncStatus",
    "SyncView",
    "VaultSyncAdapter",
    "close_transport",
    "enrol",
    "is_demo",
    "is_enrolled",
    "load_sync_view",
    "open_conflicts",
    "rejected_changes",
    "resolve_conflict",
    "set_aside_count",
    "set_aside_sentence",
    "sync_now",
    "sync_status",
    "unsent_overdue",
]
