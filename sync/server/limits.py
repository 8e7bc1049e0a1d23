"""Bounded requests: a body limit enforced before and while the body is read, and enrolment rate limits.

``BodyLimit`` is pure ASGI middleware. A request whose ``Content-Length`` is over its path's limit is
answered 413 at once, before a byte of its body is read; a body without a length (chunked) or with
a length that lies is counted as it streams in, and the request is answered 413 as soon as the count
passes the limit. Either way the body is never held in memory and the connection is closed after the
answer, so the rest of a refused body is not read either.

``EnrolLimiter`` counts failed enrolment attempts per client address and overall in a sliding
window, with an injectable clock so tests do not sleep.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sync.protocol import EXCHANGE_PATH, ErrorBody

PUSH_PATH = "/v1/sync/push"

KIB = 1024
MIB = 1024 * KIB

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]
ASGIApp = Callable[[Scope, Receive, Send], Any]


def _default_paths() -> dict[str, int]:
    return {"/v1/devices/enrol": 64 * KIB, PUSH_PATH: 8 * MIB}


@dataclass(frozen=True)
class Limits:
    """What the server accepts: body sizes per path and enrolment attempts per window."""

    body_default: int = 64 * KIB
    """Body limit for every path not named in ``body_paths`` (the GETs carry no body at all)."""
    body_paths: Mapping[str, int] = field(default_factory=_default_paths)
    """Exact request paths and their body limits in bytes."""
    enrol_per_address: int = 10
    """Failed enrolment attempts allowed from one client address per window."""
    enrol_overall: int = 60
    """Failed enrolment attempts allowed from all addresses together per window."""
    enrol_window_s: float = 600.0

    def body_limit(self, path: str) -> int:
        if path == EXCHANGE_PATH and path not in self.body_paths:
            path = PUSH_PATH  # a push and a pull's few fields: bounded as a push is
        return int(self.body_paths.get(path, self.body_default))


def error_json(code: str, message: str) -> bytes:
    return json.dumps(ErrorBody(error=code, message=message).model_dump(exclude_none=True)).encode()


TOO_LARGE = error_json("too_large", "The request is larger than this server accepts.")


class BodyTooLarge(Exception):
    """Raised to the application from ``receive`` once a streamed body passes its limit."""


class BodyLimit:
    """ASGI middleware: 413 for a body over its path's limit, checked before and while it is read."""

    def __init__(self, app: ASGIApp, limits: Limits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.body_limit(scope.get("path", ""))
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _send_413(send)  # nothing of the body was read
            return
        received = 0
        over = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, over
            if over:
                raise BodyTooLarge()
            message: Message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    raise BodyTooLarge()
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over:
                return  # whatever the application says after the body was cut off, the answer is 413
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            pass
        except Exception:
            if not over:
                raise
        if over and not started:
            await _send_413(send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the HTTP server refuses a malformed length itself
    return None


async def _send_413(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(TOO_LARGE)).encode()),
                # Close the connection after the answer: the rest of the body is never read.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": TOO_LARGE})


class EnrolLimiter:
    """Failed enrolment attempts per client address and overall, in a sliding window.

    ``retry_after(address)`` is None while attempts are allowed, else the whole seconds until one is.
    Only failures are counted, so a practice enrolling many laptops with good codes is never held up;
    the failures kept are bounded by ``overall`` (nothing is recorded once the overall limit is hit).
    """

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_address = limits.enrol_per_address
        self.overall = limits.enrol_overall
        self.window = limits.enrol_window_s
        self.clock = clock
        self._all: deque[float] = deque()
        self._by_address: dict[str, deque[float]] = {}

    def _prune(self, now: float) -> None:
        cutoff = now - self.window
        while self._all and self._all[0] <= cutoff:
            self._all.popleft()
        for address in list(self._by_address):
            q = self._by_address[address]
            while q and q[0] <= cutoff:
                q.popleft()
            if not q:
                del self._by_address[address]

    def retry_after(self, address: str) -> int | None:
        now = self.clock()
        self._prune(now)
        waits: list[float] = []
        if len(self._all) >= self.overall:
            waits.append(self._all[0] + self.window - now)
        mine = self._by_address.get(address)
        if mine is not None and len(mine) >= self.per_address:
            waits.append(mine[0] + self.window - now)
        if not waits:
            return None
        return max(1, math.ceil(max(waits)))

    def failed(self, address: str) -> None:
        now = self.clock()
        self._all.append(now)
        self._by_address.setdefault(address, deque()).append(now)
