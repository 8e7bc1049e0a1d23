"""App-wide messages, past tense: what a worker or the sync controller found out, posted to the App or a screen."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from textual.message import Message

if TYPE_CHECKING:
    from sprx_tui.core.store import CaseStore
    from sprx_tui.core.vault import Vault


SYNC_STATES = ("not_enrolled", "offline", "syncing", "synced", "failed")


@dataclass
class SyncStatusChanged(Message):
    """Posted to the App by the sync controller (or the app's own summary worker); the status bar shows it.

    ``state`` is one of SYNC_STATES; ``last_success`` is an ISO-8601 UTC moment or None.
    """

    state: str
    pending: int
    conflicts: int
    last_success: str | None
    detail: str = ""


@dataclass(frozen=True)
class SyncOutcome:
    """One finished sync, as the app shows it (no personal data)."""

    status: str
    """sprx_tui.core.sync status: synced | conflicts | offline | revoked | upgrade | failed | busy | not_enrolled"""
    message: str
    state: str
    """Status-bar state (SYNC_STATES)."""
    pending: int = 0
    conflicts: int = 0
    rejected: int = 0
    last_success: str | None = None
    manual: bool = False

    @property
    def ok(self) -> bool:
        return self.status in ("synced", "conflicts")


# The sync controller's messages to an attached view (the Sync screen); the App handles SyncStatusChanged.


@dataclass
class SyncStarted(Message):
    """A sync began (manual or automatic)."""

    manual: bool


@dataclass
class SyncProgress(Message):
    """phase is push / pull / snapshot; total is None while the size is unknown."""

    phase: str
    done: int
    total: int | None


@dataclass
class SyncFinished(Message):
    outcome: SyncOutcome


@dataclass
class SyncCountsRead(Message):
    """The app's summary worker re-read the counts; the App keeps the latest sync state and detail with them."""

    store: CaseStore
    pending: int
    conflicts: int
    last_success: str | None
    enrolled: bool
    demo: bool = False


@dataclass
class VaultUnlocked(Message):
    """The vault opened and the store is ready (the first-run path also posts it after the key is confirmed)."""

    store: CaseStore


class UnlockStarted(Message):
    """The unlock's key derivation has started (in the worker; it releases the GIL): the screen may be redrawn."""


@dataclass
class UnlockFailed(Message):
    """A plain sentence for the unlock screen, and how long to wait before the next try."""

    sentence: str
    wait_seconds: float = 0.0


@dataclass
class VaultCreated(Message):
    vault: Vault
    store: CaseStore
    recovery_key: str = field(repr=False)


@dataclass
class VaultCreateFailed(Message):
    sentence: str
    field: str = "passphrase"


@dataclass
class RecoveryFailed(Message):
    """The recovery key or the new passphrase was refused; which field, and a plain sentence."""

    sentence: str
    field: str = "recovery"


@dataclass
class VaultLocked(Message):
    """The lock worker finished: drafts saved, audit written, key wiped."""

    drafts_saved: int


@dataclass
class DraftsFound(Message):
    """Drafts kept across the last lock: (key, payload, sentence offering it back)."""

    drafts: list[tuple[str, dict[str, Any], str]]


@dataclass
class TodayLoaded(Message):
    due_today: list[Any]
    overdue: list[Any]
    new_referrals: list[Any]
    no_recent_contact: list[Any]


@dataclass
class CaseloadLoaded(Message):
    rows: list[Any]
    total: int
    offset: int
    generation: int


@dataclass
class StatusCountsLoaded(Message):
    counts: dict[str, int]


@dataclass
class PassphraseChanged(Message):
    pass


@dataclass
class PassphraseChangeFailed(Message):
    field: str
    sentence: str
