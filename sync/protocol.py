"""Wire models (pydantic v2) for the /v1 sync API, with the protocol and schema version rules."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sync import schema

PROTOCOL_VERSION = 1
"""Version of the request/response shapes. The server accepts N and N-1."""

MAX_MUTATIONS_PER_PUSH = 500
MAX_PAGE = 1000
DEFAULT_PAGE = 500

PROTOCOL_HEADER = "X-Sprx-Protocol"
SCHEMA_HEADER = "X-Sprx-Schema"
"""GET requests carry their versions in these headers; push carries them in the body."""
PENDING_HEADER = "X-Sprx-Pending"
"""Optional, on push, pull and snapshot: how many changes the laptop still holds unsent besides those in
the request. Kept by the server for the admin (``sprx-server device revoke`` shows it) and used to
finish a retirement: a retired laptop is told to erase itself only once it reports nothing left."""

KEEP_ALIVE_S = 90.0
"""How long an idle connection is kept open, by the server and by the laptop, so the app's background
sync (every minute while the server answers, ±20%) reuses one TLS connection instead of a new handshake
each time. uvicorn's and httpx's own default is 5 s, shorter than any sync interval."""


def version_error(client: int, server: int) -> str | None:
    """``client_too_old`` / ``server_too_old`` when the versions are incompatible, else None."""
    if client < server - 1:
        return "client_too_old"
    if client > server:
        return "server_too_old"
    return None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldChangeModel(_Model):
    v: Any = None
    hlc: int | None = Field(default=None, ge=0)
    base_seq: int | None = Field(default=None, ge=0)


class MutationModel(_Model):
    mutation_id: int = Field(ge=1)
    tbl: str = Field(min_length=1, max_length=64)
    row_id: str = Field(min_length=1, max_length=64)
    person_id: str | None = Field(default=None, max_length=64)
    op: Literal["insert", "patch", "delete", "resolve"]
    fields: dict[str, FieldChangeModel] = Field(default_factory=dict)
    hlc: int = Field(ge=0)
    conflict_id: str | None = Field(default=None, max_length=64)


class PushRequest(_Model):
    device_id: str = Field(min_length=1, max_length=64)
    protocol_version: int
    schema_version: int
    mutations: list[MutationModel] = Field(max_length=MAX_MUTATIONS_PER_PUSH)


class Ack(BaseModel):
    mutation_id: int
    status: Literal["applied", "duplicate", "rejected"]
    seq: int | None = None
    conflict_ids: list[str] = Field(default_factory=list)
    reason: str | None = None
    detail: str | None = None
    original_status: str | None = None
    """On a ``duplicate`` replay: the status the mutation first got (applied or rejected)."""


class PushResponse(BaseModel):
    acks: list[Ack]
    last_acked_mutation_id: int
    server_hlc: int
    server_time_ms: int


class WriterModel(BaseModel):
    hlc: int
    dev: str
    seq: int


class FieldMetaModel(BaseModel):
    hlc: int
    dev: str
    seq: int
    also: list[WriterModel] | None = None
    """Narrative fields: other devices that wrote the same value concurrently (absent when none)."""


class Change(BaseModel):
    seq: int
    tbl: str
    id: str
    person_id: str | None
    values: dict[str, Any]
    meta: dict[str, FieldMetaModel] | str
    """Per field: who wrote it, when (HLC) and at which seq. A snapshot asked with ``meta=raw`` sends the
    same as one JSON string holding the server's stored JSON text, which a laptop stores as received."""
    deleted: bool


class ConflictValueModel(BaseModel):
    v: Any = None
    hlc: int
    dev: str
    seq: int
    also: list[WriterModel] | None = None
    """Other devices that wrote this same value concurrently (absent when none)."""


class ConflictModel(BaseModel):
    id: str
    tbl: str
    row_id: str
    person_id: str | None
    field: str
    kind: Literal["concurrent_edit", "delete_vs_edit", "duplicate_person"]
    values: list[ConflictValueModel]
    shown_idx: int
    status: Literal["open", "resolved"]
    resolution: dict[str, Any] | None = None
    seq: int


class PullResponse(BaseModel):
    changes: list[Change]
    conflicts: list[ConflictModel]
    removed_person_ids: list[str]
    next_cursor: int
    has_more: bool
    server_epoch: str
    tombstone_watermark: int
    last_acked_mutation_id: int
    server_hlc: int
    server_time_ms: int


class SnapshotResponse(BaseModel):
    changes: list[Change]
    conflicts: list[ConflictModel]
    """Open conflicts in scope, sent on the first page only."""
    after: str | None
    """Token for the next page; None when this was the last page."""
    snapshot_seq: int
    """Pull from this cursor once every page is applied."""
    has_more: bool
    server_epoch: str
    tombstone_watermark: int
    last_acked_mutation_id: int
    server_hlc: int
    server_time_ms: int


EXCHANGE_PATH = "/v1/sync/exchange"
"""Push and pull in one request (``ExchangeRequest`` / ``ExchangeResponse``). Additive: a server without it
answers 404, and the laptop then pushes and pulls with the two requests above."""


class ExchangeRequest(_Model):
    """A push (``mutations``, possibly none) and the pull that follows it (``cursor``, ``limit``, ``epoch``).

    The server applies the mutations exactly as ``/v1/sync/push`` does, then answers the pull as
    ``/v1/sync/pull`` does, in one round trip. A failure of either part fails the request (the push's
    own errors come first); what was pushed is then acked again as a duplicate when the laptop resends it.
    """

    device_id: str = Field(min_length=1, max_length=64)
    protocol_version: int
    schema_version: int
    mutations: list[MutationModel] = Field(default_factory=list, max_length=MAX_MUTATIONS_PER_PUSH)
    cursor: int = Field(ge=0)
    limit: int = Field(default=DEFAULT_PAGE, ge=1, le=MAX_PAGE)
    epoch: str | None = Field(default=None, max_length=64)


class ExchangeResponse(BaseModel):
    push: PushResponse | None
    """The push's answer; None when the request carried no mutations."""
    pull: PullResponse


class EnrolRequest(_Model):
    code: str = Field(min_length=4, max_length=64)
    device_name: str = Field(min_length=1, max_length=100)


class EnrolResponse(BaseModel):
    device_id: str
    token: str
    practice_id: str
    user_id: str
    server_epoch: str
    server_hlc: int


class ErrorBody(BaseModel):
    error: str
    message: str
    expected: int | None = None
    """For ``gap``: the mutation id the server expects next."""


ERROR_CODES = (
    "unauthorised",
    "device_revoked",
    "device_retired",
    "forbidden",
    "invalid_code",
    "code_expired",
    "code_used",
    "gap",
    "mutation_id_reuse",
    "resync_required",
    "client_too_old",
    "server_too_old",
    "invalid_request",
    "too_large",
    "too_many_attempts",
)
"""Request-level ``ErrorBody.error`` codes. Per-mutation rejections use ``Ack.reason``:
out_of_scope, clock_ahead, deleted, id_collision, immutable_field, unknown_field, too_large,
unknown_table, not_found, not_deletable, push_only, read_only, person_mismatch,
missing_person, conflict_closed, invalid."""

CURRENT_VERSIONS = {"protocol": PROTOCOL_VERSION, "schema": schema.SCHEMA_VERSION}
