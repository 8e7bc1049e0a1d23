"""The FastAPI sync server: enrol, push, pull, snapshot and health under /v1."""

import dataclasses
import json
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sync import protocol, schema
from sync.protocol import (
    DEFAULT_PAGE,
    MAX_PAGE,
    PROTOCOL_HEADER,
    SCHEMA_HEADER,
    EnrolRequest,
    EnrolResponse,
    ErrorBody,
    ExchangeRequest,
    ExchangeResponse,
    MutationModel,
    PullResponse,
    PushRequest,
    PushResponse,
    SnapshotResponse,
)
from sync.server.limits import BodyLimit, EnrolLimiter, Limits
from sync.server.log import log_event, logger
from sync.server.store import Device, ServerStore, StoreError
from sync.server.store.feed import SeenLater

ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorBody} for s in (400, 401, 403, 409, 410, 413, 422, 426, 429)
}
PENDING_HEADER = protocol.PENDING_HEADER

_HTTP_ERRORS = {
    400: ("invalid_request", "The request body could not be read."),
    404: ("not_found", "There is nothing at that address."),
    405: ("method_not_allowed", "That method is not allowed at this address."),
}


def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    body = ErrorBody(error=code, message=message, **extra).model_dump(exclude_none=True)
    return JSONResponse(status_code=status, content=body)


class Stamp:
    """ASGI middleware: the server's clock on every answer (X-Server-Time, X-Server-HLC) and one access-log
    line per request (path only, never the query string)."""

    def __init__(self, app: ASGIApp, store: ServerStore) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def stamped(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers") or [])
                headers.append((b"x-server-time", str(self.store.now_ms()).encode()))
                headers.append((b"x-server-hlc", str(self.store.clock.last).encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, stamped)
        finally:
            log_event("http", method=scope.get("method", ""), path=scope.get("path", ""), status=status,
                      ms=round((time.perf_counter() - t0) * 1000, 1))  # fmt: skip


# ---------------------------------------------------------------- dependencies


async def store_of(request: Request) -> ServerStore:
    """The store the app was built around (``create_app`` keeps it on ``app.state``)."""
    store: ServerStore = request.app.state.store
    return store


StoreDep = Annotated[ServerStore, Depends(store_of)]


def device_of(store: StoreDep, authorization: Annotated[str | None, Header()] = None) -> Device:
    """The device a bearer token belongs to: 401 without a token or with a bad one, 403 once revoked."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise StoreError("unauthorised", "A device token is needed.", 401)
    return store.authenticate(authorization[7:].strip())


CurrentDevice = Annotated[Device, Depends(device_of)]
"""The authenticated laptop; every route under /v1/sync takes one (resolved once per request)."""

Pending = Annotated[int | None, Header(alias=PENDING_HEADER, ge=0, le=2**31 - 1)]
"""How many changes the laptop holds unsent, as it reports them (kept for the admin's device list)."""


def check_versions(request: Request, proto: int, sch: int) -> None:
    """426 when the laptop's protocol or schema version and the server's are too far apart."""
    for client, server in ((proto, request.app.state.protocol_version), (sch, request.app.state.schema_version)):
        err = protocol.version_error(client, server)
        if err == "client_too_old":
            raise StoreError("client_too_old", "This laptop needs an update to sync.", 426)
        if err == "server_too_old":
            raise StoreError("server_too_old", "The practice server needs an update.", 426)


def header_versions(
    request: Request,
    x_sprx_protocol: Annotated[int, Header(alias=PROTOCOL_HEADER)],
    x_sprx_schema: Annotated[int, Header(alias=SCHEMA_HEADER)],
) -> None:
    """The version check for reads, whose versions come as headers (a push carries them in its body)."""
    check_versions(request, x_sprx_protocol, x_sprx_schema)


def not_retired(store: StoreDep, dev: CurrentDevice, pending: Pending = None) -> None:
    """For pull and snapshot: a retired laptop is told to erase itself (see ``ServerStore.retired``).

    A retired laptop may still push what it holds, so push does not take this. What the laptop reports
    unsent is noted when it changed.
    """
    if dev.retired_at is not None:
        store.retired(dev, pending)
    if pending is not None and pending != dev.pending_reported:
        store.note_pending(dev, pending)


READ_CHECKS = [Depends(header_versions), Depends(not_retired)]
"""Pull and snapshot: versions first, then the device (authenticated once, shared with the route's ``dev``)."""


def _wire_mutations(mutations: list[MutationModel]) -> list[dict[str, Any]]:
    """Mutations as the store takes them: absent optional parts dropped, so the payload hash matches what the
    laptop meant (the same for push and exchange, so a change resent by either is a duplicate of itself)."""
    muts = [m.model_dump() for m in mutations]
    for m in muts:
        m["fields"] = {f: {k: v for k, v in fc.items() if v is not None or k == "v"} for f, fc in m["fields"].items()}
    return muts


def create_app(
    store: ServerStore,
    *,
    protocol_version: int = protocol.PROTOCOL_VERSION,
    schema_version: int = schema.SCHEMA_VERSION,
    limits: Limits | None = None,
    limits_clock: Callable[[], float] = time.monotonic,
) -> FastAPI:
    """Build the app around a store; the version numbers are parameters so tests can skew them.

    ``limits`` bounds request bodies and failed enrolment attempts; ``limits_clock`` (seconds) drives the
    enrolment rate limit, so tests can move time instead of sleeping.
    """
    limits = limits or Limits()
    app = FastAPI(title="sprx sync server", version=str(protocol_version))
    app.state.store = store
    app.state.limits = limits
    app.state.protocol_version = protocol_version
    app.state.schema_version = schema_version
    enrol_limiter = EnrolLimiter(limits, limits_clock)
    # Added first, so the logging middleware below wraps it and logs its 413s too.
    app.add_middleware(BodyLimit, limits=limits)

    @app.exception_handler(StoreError)
    async def _store_error(_req: Request, exc: StoreError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default echoes the input back; that could be personal data. Paths only.
        where = "; ".join(".".join(str(p) for p in e.get("loc", ())) for e in exc.errors()[:5])
        return _error(422, "invalid_request", f"The request was not valid ({where}).")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Framework-raised errors (unreadable body, unknown path, wrong method) get our error shape too.
        code, message = _HTTP_ERRORS.get(exc.status_code, ("invalid_request", "The request could not be handled."))
        response = _error(exc.status_code, code, message)
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(Exception)
    async def _crash(_req: Request, exc: Exception) -> JSONResponse:
        logger.error('{"event": "internal_error", "exc_type": "%s"}', type(exc).__name__)
        return _error(500, "internal", "The server hit an unexpected problem.")

    # Outside BodyLimit, so its 413s are stamped and logged too. A plain ASGI middleware: Starlette's
    # function middleware costs a task and a response copy per request, a good part of a no-op pull.
    app.add_middleware(Stamp, store=store)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        info = store.server_info()
        return {"ok": True, "protocol_version": protocol_version, "schema_version": schema_version,
                "server_epoch": info["epoch"]}  # fmt: skip

    @app.post("/v1/devices/enrol", status_code=201, response_model=EnrolResponse, responses=ERRORS)
    def enrol(body: EnrolRequest, request: Request) -> Any:
        address = request.client.host if request.client else "unknown"
        wait = enrol_limiter.retry_after(address)
        if wait is not None:
            log_event("enrol_rate_limited", client=address, retry_after=wait)
            sentence = "Too many enrolment attempts; wait a few minutes and try again."
            response = _error(429, "too_many_attempts", sentence)
            response.headers["Retry-After"] = str(wait)
            return response
        try:
            return store.enrol(body.code, body.device_name)
        except StoreError as exc:
            if exc.status == 401:
                # Never the code itself: only that one failed, why, and from where.
                enrol_limiter.failed(address)
                log_event("enrol_failed", reason=exc.code, client=address)
            raise

    @app.post("/v1/sync/push", response_model=PushResponse, responses=ERRORS)
    def push(body: PushRequest, dev: CurrentDevice, request: Request, pending: Pending = None) -> dict[str, Any]:
        if body.device_id != dev.id:
            raise StoreError("forbidden", "The token belongs to a different device.", 403)
        check_versions(request, body.protocol_version, body.schema_version)
        return store.push(dev, _wire_mutations(body.mutations), pending=pending)  # type: ignore[arg-type]

    @app.post(protocol.EXCHANGE_PATH, response_model=ExchangeResponse, responses=ERRORS)
    def exchange(
        body: ExchangeRequest,
        request: Request,
        pending: Pending = None,
        authorization: Annotated[str | None, Header()] = None,
    ) -> Response:
        """Push, then pull, in one round trip (the laptop's everyday sync).

        The device is found here rather than by a dependency: FastAPI runs each plain dependency in the
        thread pool, a hand-over each way that is a good part of a no-op sync on a busy machine.
        """
        dev = device_of(store, authorization)
        if body.device_id != dev.id:
            raise StoreError("forbidden", "The token belongs to a different device.", 403)
        check_versions(request, body.protocol_version, body.schema_version)
        if dev.retired_at is not None:
            # Nothing is done here: the laptop pushes and pulls separately, and the pull, seeing what it
            # still holds after that push, tells it whether to erase itself (see ``not_retired``).
            raise StoreError("device_retired", "This device was retired; it erases its copy once everything is sent.",
                             403)  # fmt: skip
        pushed: dict[str, Any] | None = None
        if body.mutations:
            muts = _wire_mutations(body.mutations)
            pushed = store.push(dev, muts, pending=pending, pull_seq=body.cursor)  # type: ignore[arg-type]
            # The push wrote the device's position, time and acks: the pull has nothing left to write.
            dev = dataclasses.replace(dev, last_acked_mutation_id=int(pushed["last_acked_mutation_id"]),
                                      last_pull_seq=body.cursor, last_seen=int(pushed["server_time_ms"]))  # fmt: skip
        elif pending is not None and pending != dev.pending_reported:
            store.note_pending(dev, pending)
        later: SeenLater = []
        page = store.pull_body(dev, body.cursor, body.limit, body.epoch, seen_later=later)
        head = b'{"push":' + (json.dumps(pushed, separators=(",", ":")).encode() if pushed else b"null")
        # The device's pull position and time are written once the answer is on its way (a write the laptop
        # need not wait for; see FeedMixin.note_seen for why late is safe).
        after = BackgroundTask(store.note_seen, later) if later else None
        return Response(head + b',"pull":' + page + b"}", media_type="application/json", background=after)

    @app.get(
        "/v1/sync/pull",
        response_model=PullResponse,
        responses=ERRORS,
        dependencies=READ_CHECKS,
    )
    def pull(
        dev: CurrentDevice,
        cursor: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
        epoch: Annotated[str | None, Query(max_length=64)] = None,
    ) -> Response:
        # The body is built from the stored JSON (no parse, validate, re-encode); the model documents it.
        return Response(store.pull_body(dev, cursor, limit, epoch), media_type="application/json")

    @app.get(
        "/v1/sync/snapshot",
        response_model=SnapshotResponse,
        responses=ERRORS,
        dependencies=READ_CHECKS,
    )
    def snapshot(
        dev: CurrentDevice,
        after: Annotated[str | None, Query(max_length=512)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
        meta: Annotated[Literal["raw"] | None, Query()] = None,
    ) -> Response:
        # meta=raw: each row's metadata as a JSON string of its stored text, which a laptop stores as
        # received (servers before it ignore the parameter and send objects, which laptops also take).
        body = store.snapshot_body(dev, after, limit, raw_meta=meta == "raw")
        return Response(body, media_type="application/json")

    return app
