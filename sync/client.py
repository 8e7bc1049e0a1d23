"""The laptop side of sync: a pinned HTTPS transport and the push/pull loop over a `LocalStore`."""

from __future__ import annotations

import hashlib
import ipaddress
import json as json_mod
import queue
import random
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from sync import hlc as hlc_mod
from sync import protocol, schema

PUSH_BATCH = protocol.MAX_MUTATIONS_PER_PUSH
PAGE = protocol.MAX_PAGE
SNAPSHOT_BATCH_ROWS = 5000
"""Snapshot rows applied per local transaction (pages are fetched one by one, committed in groups)."""
SNAPSHOT_PREFETCH = 3
"""Snapshot pages the fetch thread may hold ahead of the writer (the bounded queue between them)."""
RETRIES = 3
"""Attempts per request when the network drops (the same mutation ids are resent each time)."""
EXCHANGE_RETRY_S = 3600.0
"""After a server answered the one-request exchange with 404, how long the laptop uses push and pull instead."""
HELD_ACTIONS = frozenset({"SYNC"})
"""Audit events about a sync itself: bookkeeping that waits for the next request that sends anything else,
or until it is ``HOLD_MS`` old, instead of costing a request of its own (and a new SYNC event for sending it)."""
HOLD_MS = 300_000
"""How long (by its HLC) a held audit event may wait for other changes before it is sent on its own."""

Progress = Callable[[str, int, int | None], None]
"""progress(phase, done, total or None): phase is "push", "pull" or "snapshot"."""


# ---------------------------------------------------------------- errors (each one plain sentence)


class SyncError(Exception):
    """A sync failure; ``str(exc)`` is one plain sentence for the person at the laptop."""

    message = "Sync failed."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.message)


class Offline(SyncError):
    message = "The practice server could not be reached; your changes are kept and will sync later."


class ServerBusy(Offline):
    message = "The practice server had a problem; your changes are kept and will sync later."


class LostResponse(Offline):
    """The request may have reached the server but no answer came back: resend the same ids."""


class CertificateMismatch(SyncError):
    message = (
        "The practice server's certificate is not the one recorded at enrolment, so nothing was sent; "
        "ask your practice IT lead before syncing again."
    )


class CertificateUntrusted(CertificateMismatch):
    message = (
        "The practice server's certificate does not match the one this laptop was told to trust, so the code "
        "was not sent; check the address, and if the practice made its own certificate, give its file with --ca-cert."
    )


class UnknownHost(Offline):
    """Enrolment: the server's name could not be looked up (DNS)."""

    message = "The practice server's name is unknown; check the address (e.g. https://sprx.practice.example:8443)."


class ConnectionRefused(Offline):
    """Enrolment: the computer answered but nothing listens on that port."""

    message = "The practice server refused the connection; check the port and that sprx-server is running."


class NoAnswer(Offline):
    """Enrolment: no connection for another reason (timeout, no route)."""

    message = "The practice server did not answer; check the address and the network, then try again."


class InsecureServer(SyncError):
    message = "The server address must start with https:// (plain http is only allowed to this computer)."


class DeviceRevoked(SyncError):
    message = "This laptop's access was withdrawn by the practice, so its local copy has been erased."


class DeviceRetired(SyncError):
    """The practice retired this laptop: once everything is sent, it erases its local copy."""

    message = (
        "This laptop was retired by the practice; everything it held was sent, and its local copy has been erased."
    )


class TooLarge(SyncError):
    """The server refused a request as too large (413); a push is resent in smaller pages."""

    message = "The practice server refused a change as too large to send; your changes are kept."


class UpgradeNeeded(SyncError):
    message = "This version of sprx is too old to sync; keep working and install the update, nothing is lost."


class ServerTooOld(UpgradeNeeded):
    message = "The practice server needs an update before this laptop can sync; your changes are kept."


class NotEnrolled(SyncError):
    message = "This laptop is not enrolled with a practice server; run `sprx enrol` first."


class Unauthorised(SyncError):
    message = "The practice server no longer accepts this laptop's enrolment; ask your practice admin for a new code."


class EnrolRefused(SyncError):
    message = "The practice server refused the enrolment code."


class ResyncRequired(SyncError):
    message = "The practice server asked for a full resync."


class Gap(SyncError):
    """The server expects an earlier mutation id first."""

    def __init__(self, expected: int) -> None:
        super().__init__("The practice server expected earlier changes first.")
        self.expected = expected


class ProtocolFailure(SyncError):
    message = "The practice server sent an answer this laptop could not use; your changes are kept."


class NotOffered(ProtocolFailure):
    """404: the server has no such service (an older server, for ``protocol.EXCHANGE_PATH``)."""

    message = "The practice server does not offer that sync service."


# ---------------------------------------------------------------- addresses and certificates


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: the only places plain http may go."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_server_url(url: str) -> str:
    """The normalised base URL; InsecureServer for http to anything but this computer."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InsecureServer("The server address must look like https://server.example:8443.")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise InsecureServer()
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def cert_fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate as colon-separated upper-case hex (as `sprx-server tls-cert` prints)."""
    return hashlib.sha256(der).digest().hex(":").upper()


def _peer_der(stream: Any) -> bytes | None:
    ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
    # Positional: the low-level _ssl object takes no keyword arguments.
    return ssl_object.getpeercert(True) if ssl_object is not None else None


def pinned_context(cert_pem: str) -> ssl.SSLContext:
    """A TLS context that trusts only the pinned certificate (as its own anchor)."""
    ctx = ssl.create_default_context(cadata=cert_pem)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # The pinned leaf is the trust anchor even when a CA issued it.
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return ctx


def enrolment_context(ca_pem: str | None) -> ssl.SSLContext:
    """Verify against the given CA certificate, or the system store."""
    ctx = ssl.create_default_context(cadata=ca_pem) if ca_pem else ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_pem:
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return ctx


# ---------------------------------------------------------------- transport


@dataclass
class Observed:
    """What the last response said about the server's clock."""

    offset_ms: int = 0
    server_time_ms: int | None = None
    server_hlc: int | None = None


class Transport:
    """One HTTP client for one server: version headers, bearer token, certificate pin, error mapping.

    With ``pin`` set, every new TLS connection's certificate must hash to it; the check runs right
    after the handshake, before a request line or body is written (httpcore's start_tls trace).
    ``transport`` injects an httpx transport (in-process tests); then TLS is not used.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        pin: str | None = None,
        cert_pem: str | None = None,
        ca_pem: str | None = None,
        transport: httpx.BaseTransport | None = None,
        now_ms: Callable[[], int] = hlc_mod.wall_ms,
        timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url
        self.pin = pin or None
        self.now_ms = now_ms
        self.observed = Observed()
        self.peer_der: bytes | None = None
        self.no_exchange_until = 0.0
        """``time.monotonic()`` before which push and pull go as two requests: the server answered the one-request
        exchange with 404 (an older server); asked again after ``EXCHANGE_RETRY_S``, in case it was upgraded."""
        verify: ssl.SSLContext | bool = True
        if base_url.startswith("https://"):
            verify = pinned_context(cert_pem) if cert_pem else enrolment_context(ca_pem)
        headers = {
            protocol.PROTOCOL_HEADER: str(protocol.PROTOCOL_VERSION),
            protocol.SCHEMA_HEADER: str(schema.SCHEMA_VERSION),
            "User-Agent": f"sprx-laptop/{protocol.PROTOCOL_VERSION}",
        }
        if token:
            headers["Authorization"] = f"Bearer {token}"
        timeouts = httpx.Timeout(timeout, connect=min(10.0, timeout))
        limits = httpx.Limits(keepalive_expiry=protocol.KEEP_ALIVE_S)
        self.client = httpx.Client(
            base_url=base_url,
            headers=headers,
            verify=verify,
            transport=transport,
            timeout=timeouts,
            limits=limits,
            event_hooks={"request": [self._add_trace]},
        )
        # Requests go straight to a connection pool (`_send`), unless the environment names a proxy: then
        # through the client, which applies it (and which is made without a pool of its own only for tests).
        self._direct: httpx.BaseTransport | None = transport
        if transport is None and not urllib.request.getproxies():
            self._direct = httpx.HTTPTransport(verify=verify, limits=limits)
        self._base = httpx.URL(base_url)
        self._headers = {"Accept": "*/*", **headers}
        self._extensions = {"timeout": timeouts.as_dict(), "trace": self._trace}
        self._urls: dict[str, httpx.URL] = {}

    def close(self) -> None:
        self.client.close()
        if self._direct is not None:
            self._direct.close()

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- the pin check, between the TLS handshake and the first byte of the request --

    def _add_trace(self, request: httpx.Request) -> None:
        request.extensions["trace"] = self._trace

    def _trace(self, event: str, info: dict[str, Any]) -> None:
        if event != "connection.start_tls.complete":
            return
        der = _peer_der(info.get("return_value"))
        self.peer_der = der
        if self.pin is not None and (der is None or cert_fingerprint(der) != self.pin):
            stream = info.get("return_value")
            if stream is not None:
                stream.close()
            raise CertificateMismatch()

    # -- requests --

    def request(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        """Send one request; returns the JSON body or raises a SyncError subclass."""
        t0 = self.now_ms()
        try:
            r = self._send(method, path, **kw)
        except CertificateMismatch:
            raise
        except httpx.ConnectError as exc:
            if _is_cert_failure(exc):
                raise CertificateMismatch() from None
            raise Offline() from None
        except (httpx.ConnectTimeout, httpx.PoolTimeout):
            raise Offline() from None
        except (httpx.TransportError, OSError):
            # Sent, maybe applied, no answer: the caller resends the same mutation ids.
            raise LostResponse() from None
        t1 = self.now_ms()
        self._observe(r, t0, t1)
        return self._body(r)

    def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One request, read in full. Without a proxy, straight to the connection pool with this client's base
        URL, headers, timeouts and pin check applied here: ``httpx.Client.request`` also merges cookies, walks
        auth and redirect flows and runs hooks, none of which this client uses, and that was a third of the
        laptop's CPU in a no-op sync (``bench/probe_everyday.py --profile noop``)."""
        if self._direct is None:
            return self.client.request(method, path, json=json, params=params, headers=headers)
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = self._base.join(path)
        if params:
            url = url.copy_merge_params(params)
        sent = {**self._headers, **headers} if headers else dict(self._headers)
        content = None
        if json is not None:
            content = json_mod.dumps(json, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
            sent["Content-Type"] = "application/json"
        request = httpx.Request(method, url, headers=sent, content=content, extensions=dict(self._extensions))
        response = self._direct.handle_request(request)
        try:
            response.read()
        finally:
            response.close()
        return response

    def _observe(self, r: httpx.Response, t0: int, t1: int) -> None:
        st = r.headers.get("X-Server-Time")
        sh = r.headers.get("X-Server-HLC")
        try:
            if st is not None:
                # NTP-style: the server read its clock about halfway through the round trip.
                self.observed.server_time_ms = int(st)
                self.observed.offset_ms = int(st) - (t0 + t1) // 2
            if sh is not None:
                self.observed.server_hlc = int(sh)
        except ValueError:
            pass

    def _body(self, r: httpx.Response) -> dict[str, Any]:
        try:
            body = r.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        if r.status_code in (200, 201):
            if not body:
                raise ProtocolFailure()
            return body
        code = str(body.get("error", ""))
        if r.status_code == 401:
            if code in ("invalid_code", "code_used", "code_expired"):
                raise EnrolRefused(str(body.get("message") or EnrolRefused.message))
            raise Unauthorised()
        if r.status_code == 403 and code == "device_revoked":
            raise DeviceRevoked()
        if r.status_code == 403 and code == "device_retired":
            raise DeviceRetired()
        if r.status_code == 413:
            raise TooLarge()
        if r.status_code == 409 and code == "gap" and isinstance(body.get("expected"), int):
            raise Gap(int(body["expected"]))
        if r.status_code == 410:
            raise ResyncRequired()
        if r.status_code == 426:
            raise ServerTooOld() if code == "server_too_old" else UpgradeNeeded()
        if r.status_code in (429, 502, 503, 504) or r.status_code >= 500:
            raise ServerBusy()
        if r.status_code == 404:
            raise NotOffered()
        if r.status_code == 409 and code == "mutation_id_reuse":
            raise ProtocolFailure(
                "The practice server already holds different changes under this laptop's numbers; "
                "ask your practice IT lead (your changes are kept)."
            )
        raise ProtocolFailure()


def _is_cert_failure(exc: BaseException) -> bool:
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, ssl.SSLCertVerificationError | CertificateMismatch):
            return True
        if "CERTIFICATE_VERIFY_FAILED" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


# ---------------------------------------------------------------- enrolment


def _why_unreachable(exc: BaseException, url: str) -> Offline:
    """Which of unknown host, refused, or no answer, from the socket error behind ``exc``; naming the address."""
    parts = urlsplit(url)
    where = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, socket.gaierror):
            return UnknownHost(
                f"The practice server's name {parts.hostname} is unknown (it could not be looked up); check the "
                "address, e.g. https://sprx.practice.example:8443."
            )
        if isinstance(e, ConnectionRefusedError):
            return ConnectionRefused(
                f"The practice server at {where} refused the connection; check the port and that sprx-server is "
                "running there."
            )
        e = e.__cause__ or e.__context__
    return NoAnswer(
        f"The practice server at {where} did not answer; check the address and the network, then try again."
    )


@dataclass(frozen=True)
class Enrolment:
    device_id: str
    token: str
    practice_id: str
    user_id: str
    server_epoch: str
    server_hlc: int
    pin: str
    """SHA-256 fingerprint of the server's certificate ("" over plain loopback http)."""
    cert_pem: str


def enrol_device(
    server_url: str,
    code: str,
    device_name: str,
    *,
    ca_pem: str | None = None,
    transport: httpx.BaseTransport | None = None,
    timeout: float = 30.0,
) -> Enrolment:
    """Exchange a one-time code for a device id and token, pinning the certificate seen in the handshake."""
    url = server_url if transport is not None else check_server_url(server_url)
    with Transport(url, ca_pem=ca_pem, transport=transport, timeout=timeout) as t:
        try:
            body = t.request("POST", "/v1/devices/enrol", json={"code": code.strip(), "device_name": device_name})
        except CertificateMismatch:
            raise CertificateUntrusted() from None
        except (ServerBusy, LostResponse):
            raise
        except Offline as exc:  # say why: enrolling is done once, by a person checking the address
            raise _why_unreachable(exc, url) from None
        der = t.peer_der
    try:
        pin = cert_fingerprint(der) if der else ""
        cert_pem = ssl.DER_cert_to_PEM_cert(der) if der else ""
        return Enrolment(
            device_id=str(body["device_id"]),
            token=str(body["token"]),
            practice_id=str(body["practice_id"]),
            user_id=str(body["user_id"]),
            server_epoch=str(body["server_epoch"]),
            server_hlc=int(body.get("server_hlc") or 0),
            pin=pin,
            cert_pem=cert_pem,
        )
    except (KeyError, TypeError, ValueError):
        raise ProtocolFailure() from None


# ---------------------------------------------------------------- the local side, as the loop sees it


@dataclass
class PullPosition:
    phase: str
    """"snapshot" (first sync or resync in progress) or "pull" (following the change feed)."""
    cursor: int = 0
    after: str | None = None
    epoch: str | None = None
    started: bool = False
    """For a snapshot: whether the local rows are already marked for replacement."""


@dataclass
class AckSummary:
    acked: int = 0
    rejected: int = 0
    requeued: int = 0
    """Rejected as clock_ahead and queued again under a new id with a corrected stamp."""
    bookkeeping: int = 0
    """Of the acked, how many were bookkeeping (audit events) rather than record changes."""


class LocalStore(Protocol):
    """What the sync loop needs from the laptop's database. Each method is its own transaction.

    Mutation ids here are the server's per-device numbers (1, 2, 3, ...).
    """

    def now_ms(self) -> int:
        """The laptop's physical clock in milliseconds (before any offset)."""
        ...

    def pending_count(self) -> int: ...

    def pending_mutations(self, limit: int) -> list[dict[str, Any]]:
        """The oldest pending outbox rows as wire mutations, in id order."""
        ...

    def record_acks(self, acks: list[dict[str, Any]], last_sent: int) -> AckSummary:
        """Mark acked / rejected (kept in sync_rejected) / re-queued (clock_ahead), in one transaction."""
        ...

    def resend_from(self, mutation_id: int) -> int:
        """Make every outbox row from this id on pending again (the server lost them)."""
        ...

    def observe_server(self, offset_ms: int, server_hlc: int | None, server_time_ms: int | None) -> None:
        """Store the clock offset and merge the server's HLC into the local clock."""
        ...

    def pull_position(self) -> PullPosition: ...

    def begin_snapshot(self) -> None:
        """Mark local rows for replacement and start a snapshot from its first page."""
        ...

    def apply_snapshot_page(self, page: dict[str, Any]) -> int:
        """Apply one snapshot page and its position in one transaction; the last page switches to pull."""
        ...

    def apply_pull_page(self, page: dict[str, Any]) -> int:
        """Apply one pull page and its cursor in one transaction."""
        ...

    # Optional: ``only_held_pending(actions, lo_hlc, hi_hlc) -> bool``, whether every pending row is an audit
    # event of one of ``actions`` stamped in that range (``SyncEngine._only_held``; without it the engine reads
    # the pending batch to find out).


# ---------------------------------------------------------------- backoff

_MAX_DOUBLINGS = 64
"""2.0 ** 64 is past any cap; a failure count is never raised to a higher power (no OverflowError, no giant number)."""


def capped_doubling(base: float, cap: float, failures: int) -> float:
    """``base`` doubled once per failure after the first, at most ``cap``; 0 for no failures.

    The exponent is capped before the power is computed, so a count of 10,000 costs what 64 does.
    """
    if failures <= 0:
        return 0.0
    return min(cap, base * 2.0 ** min(failures - 1, _MAX_DOUBLINGS))


class Backoff:
    """Exponential back-off: the one schedule for the transport's retries and the app's automatic syncs.

    After ``n`` failures the wait is ``capped_doubling(base, cap, n)``, jittered. By default the jitter
    is full (anywhere from 0 to that wait: 1 s doubling to a 5 minute cap); with ``jitter=j`` the wait
    is within ±j of it (the app's schedule: 5 s doubling to 5 minutes, ±20 %), so laptops that lost the
    server together do not return together. ``rng`` returns a number in [0, 1).

    Driven by a timer: the caller asks ``next_attempt_at(now)`` (or ``due(now)``) and tries when that
    time has come; ``failure(now)`` after a failed attempt (``failed()`` when the caller keeps the time
    itself), ``success()`` after a good one, ``reset()`` on a connectivity change (retry at once).
    """

    def __init__(
        self,
        base: float = 1.0,
        cap: float = 300.0,
        *,
        jitter: float | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.base = base
        self.cap = cap
        self.jitter = jitter
        self.rng = rng
        self.failures = 0
        self._next: float | None = None

    def ceiling(self) -> float:
        """The un-jittered wait after the current number of failures (0 when none)."""
        return capped_doubling(self.base, self.cap, self.failures)

    def jittered(self, seconds: float) -> float:
        """``seconds`` with this schedule's jitter: up to it (full jitter), or within ±jitter of it."""
        u = self.rng()
        if self.jitter is None:
            return u * seconds
        return seconds * (1.0 + self.jitter * (2.0 * u - 1.0))

    def delay(self) -> float:
        """The jittered wait after the current number of failures (0 when none)."""
        if self.failures == 0:
            return 0.0
        return self.jittered(self.ceiling())

    def failed(self) -> float:
        """Count one more failure; the jittered wait before the next try."""
        self.failures += 1
        return self.delay()

    def failure(self, now: float) -> float:
        """Record a failed attempt at ``now``; returns when the next one is due."""
        self._next = now + self.failed()
        return self._next

    def success(self) -> None:
        self.failures = 0
        self._next = None

    reset = success

    def next_attempt_at(self, now: float) -> float:
        """When the next attempt is due (``now`` if it is due already)."""
        if self._next is None or self._next <= now:
            return now
        return self._next

    def due(self, now: float) -> bool:
        return self.next_attempt_at(now) <= now


# ---------------------------------------------------------------- the loop


@dataclass
class SyncReport:
    pushed: int = 0
    acked: int = 0
    rejected: int = 0
    requeued: int = 0
    bookkeeping: int = 0
    pulled: int = 0
    pages: int = 0
    snapshot_rows: int = 0
    resyncs: int = 0
    retries: int = 0
    requests: int = 0
    errors: list[str] = field(default_factory=list)


class SyncEngine:
    """Push every pending mutation, then pull until the feed is drained (sync-anchors D4).

    Following the feed with at most one batch to send, both go in one request (``protocol.EXCHANGE_PATH``);
    otherwise, and with a server without it, as separate pushes and pulls. The audit events a sync records
    about itself (``HELD_ACTIONS``) wait for the next request that sends anything else.
    """

    def __init__(
        self,
        local: LocalStore,
        transport: Transport,
        device_id: str,
        *,
        progress: Progress | None = None,
        retries: int = RETRIES,
        sleep: Callable[[float], None] = time.sleep,
        batch: int = PUSH_BATCH,
        page: int = PAGE,
        snapshot_batch: int = SNAPSHOT_BATCH_ROWS,
        pipeline: bool = True,
        prefetch: int = SNAPSHOT_PREFETCH,
    ) -> None:
        self.local = local
        self.t = transport
        self.device_id = device_id
        self.progress = progress or (lambda _p, _d, _t: None)
        self.retries = retries
        self.sleep = sleep
        self.batch = batch
        self.page = page
        self.snapshot_batch = snapshot_batch
        self.pipeline = pipeline
        self.prefetch = prefetch
        self.report = SyncReport()
        self._batch: dict[str, Any] | None = None
        """Snapshot pages fetched and not yet applied (dropped on failure: the position is the last applied)."""
        self._applied_pages = 0
        self._snapshot_rows = 0
        self.hold_ms = HOLD_MS
        self._flush = False
        """Send held bookkeeping too (a retired laptop must send everything before it erases itself)."""

    def _fetch(self, method: str, path: str, **kw: Any) -> tuple[dict[str, Any], Observed]:
        """One request with a few quick retries on a dropped connection (same body each time).

        Touches no local state, so the snapshot's fetch thread can run it: the body and what the
        answer said about the server's clock, for the writer to take in (``_observe``).
        """
        backoff = Backoff(base=0.2, cap=2.0)
        attempt = 0
        while True:
            self.report.requests += 1
            try:
                body = self.t.request(method, path, **kw)
            except Offline:
                attempt += 1
                if attempt > self.retries:
                    raise
                self.report.retries += 1
                backoff.failures = attempt
                self.sleep(backoff.delay())
                continue
            o = self.t.observed
            return body, Observed(o.offset_ms, o.server_time_ms, o.server_hlc)

    def _observe(self, o: Observed) -> None:
        self.local.observe_server(o.offset_ms, o.server_hlc, o.server_time_ms)

    def _call(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        body, observed = self._fetch(method, path, **kw)
        self._observe(observed)
        return body

    def run(self) -> SyncReport:
        if self._exchange():
            return self.report
        # A retired laptop is told so on its pull, after its push was accepted. It erases itself only
        # with nothing left unsent: a change saved during the sync is pushed first (a few rounds at most).
        for _round in range(3):
            self.push()
            try:
                self.pull()
            except DeviceRetired:
                if self.local.pending_count() == 0:
                    raise
                self._flush = True
                continue
            if self._sendable():  # what the pull itself wrote (flags settled from their history), or saved meanwhile
                self.push()
            return self.report
        raise SyncError("This laptop was retired by the practice, but changes keep arriving; it will send them later.")

    def _held(self, muts: list[dict[str, Any]]) -> bool:
        """Whether these pending mutations are all held bookkeeping (see ``HELD_ACTIONS``): nothing to send now."""
        if self._flush or not muts:
            return False
        now = self.local.now_ms() + self.t.observed.offset_ms
        for m in muts:
            if m.get("tbl") != "audit_event":
                return False
            action = (m.get("fields") or {}).get("action")
            if not isinstance(action, dict) or action.get("v") not in HELD_ACTIONS:
                return False
            if abs(now - hlc_mod.physical_ms(int(m.get("hlc") or 0))) >= self.hold_ms:
                return False
        return True

    def _sendable(self) -> list[dict[str, Any]]:
        """The next batch to push, or none when everything pending is held bookkeeping."""
        if not self._flush and self._only_held():
            return []
        muts = self.local.pending_mutations(self.batch)
        return [] if self._held(muts) else muts

    def _only_held(self) -> bool:
        """Whether nothing but held bookkeeping is pending, asked in one statement when the store can (a few held
        events accumulate between requests that send anything; reading them all at every sync costs)."""
        ask = getattr(self.local, "only_held_pending", None)
        if ask is None:
            return False
        now = self.local.now_ms() + self.t.observed.offset_ms
        lo = hlc_mod.pack(max(0, now - self.hold_ms + 1), 0)
        hi = hlc_mod.pack(now + self.hold_ms - 1, hlc_mod.COUNTER_MAX)
        return bool(ask(HELD_ACTIONS, lo, hi))

    def _exchange(self) -> bool:
        """Push what is pending and pull the first page in one request (``protocol.EXCHANGE_PATH``).

        True when that was the whole sync. False when the push-then-pull loop is to do the rest or all
        of it: an older server (404, remembered for ``EXCHANGE_RETRY_S``), a snapshot to take, more than
        one batch to send, a page with more behind it, or any answer the loop handles (a gap, a refused
        size, a resync, retirement). Nothing is lost by falling back: the server acks a resent change
        as a duplicate of itself.
        """
        if time.monotonic() < self.t.no_exchange_until:
            return False
        pos = self.local.pull_position()
        if pos.phase != "pull":
            return False
        batch = [] if self._only_held() else self.local.pending_mutations(self.batch)
        more = max(0, self.local.pending_count() - len(batch)) if len(batch) >= self.batch else 0
        muts = [] if self._held(batch) else batch
        if more and muts:
            return False  # more than one request's worth: pushed in batches first
        body: dict[str, Any] = {
            "device_id": self.device_id,
            "protocol_version": protocol.PROTOCOL_VERSION,
            "schema_version": schema.SCHEMA_VERSION,
            "mutations": muts,
            "cursor": pos.cursor,
            "limit": self.page,
        }
        if pos.epoch:
            body["epoch"] = pos.epoch
        # Unsent besides this request, not counting the sync's own bookkeeping held back (a few audit events).
        headers = {protocol.PENDING_HEADER: str(more)}
        try:
            resp = self._call("POST", protocol.EXCHANGE_PATH, json=body, headers=headers)
        except NotOffered:
            self.t.no_exchange_until = time.monotonic() + EXCHANGE_RETRY_S
            return False
        except (TooLarge, Gap, ResyncRequired, DeviceRetired):
            return False
        page = resp.get("pull")
        if not isinstance(page, dict):
            raise ProtocolFailure()
        if muts:
            pushed = resp.get("push")
            if not isinstance(pushed, dict):
                raise ProtocolFailure()
            summary = self._take_acks(muts, pushed)
            self.progress("push", summary.acked + summary.rejected, len(muts))
            if self.local.pull_position().phase != "pull":
                return False  # a refusal asked for a fresh snapshot: the loop takes it
        n = self.local.apply_pull_page(page)
        self.report.pulled += n
        self.report.pages += 1
        self.progress("pull", n, None)
        if page.get("has_more"):
            return False  # the loop pulls the rest
        # Written by the page itself (flags settled from their history), saved during the sync, or re-queued
        # with a corrected clock: sent now, as the loop does after its pull. An exchange that moved nothing
        # asks nothing more (a change saved meanwhile goes with the next sync).
        moved = muts or n or page.get("changes") or page.get("conflicts") or page.get("removed_person_ids")
        if moved and self._sendable():
            self.push()
        return True

    def _pending_header(self, in_request: int = 0) -> dict[str, str]:
        """How many changes wait unsent besides those in this request (the server shows it to the admin)."""
        try:
            n = max(0, int(self.local.pending_count()) - in_request)
        except Exception:  # noqa: BLE001 - a count is a courtesy to the admin; never fail a sync for it
            return {}
        return {protocol.PENDING_HEADER: str(n)}

    # -- push --

    def push(self) -> None:
        total = self.local.pending_count()
        done = 0
        gaps = 0
        stalls = 0
        self.progress("push", 0, total)
        while True:
            muts = self._sendable()
            if not muts:
                return
            body = {
                "device_id": self.device_id,
                "protocol_version": protocol.PROTOCOL_VERSION,
                "schema_version": schema.SCHEMA_VERSION,
                "mutations": muts,
            }
            try:
                resp = self._call("POST", "/v1/sync/push", json=body, headers=self._pending_header(len(muts)))
            except TooLarge:
                # Nothing of a refused request was applied: send the same changes in smaller pages.
                if len(muts) <= 1:
                    raise
                self.batch = max(1, len(muts) // 2)
                continue
            except Gap as g:
                gaps += 1
                if gaps > 3:
                    raise ProtocolFailure() from None
                self.local.resend_from(g.expected)
                total = max(total, self.local.pending_count())
                continue
            summary = self._take_acks(muts, resp)
            moved = summary.acked + summary.rejected
            done += moved
            if summary.requeued:
                total += summary.requeued
            # Nothing moved (no acks, or the same rows re-queued again and again): stop, keep them.
            stalls = stalls + 1 if moved == 0 or summary.requeued >= len(muts) else 0
            if stalls > 3:
                raise ProtocolFailure()
            self.progress("push", done, max(total, done))

    def _take_acks(self, muts: list[dict[str, Any]], resp: dict[str, Any]) -> AckSummary:
        """Record a push's answer (acked, rejected, re-queued) in one local transaction."""
        acks = resp.get("acks")
        if not isinstance(acks, list):
            raise ProtocolFailure()
        summary = self.local.record_acks(acks, last_sent=int(muts[-1]["mutation_id"]))
        self.report.pushed += len(muts)
        self.report.acked += summary.acked
        self.report.rejected += summary.rejected
        self.report.requeued += summary.requeued
        self.report.bookkeeping += summary.bookkeeping
        return summary

    # -- pull --

    def pull(self) -> None:
        resyncs = 0
        pos = self.local.pull_position()
        if pos.phase != "pull":
            self._snapshot()
        pulled = 0
        while True:
            pos = self.local.pull_position()
            params: dict[str, Any] = {"cursor": pos.cursor, "limit": self.page}
            if pos.epoch:
                params["epoch"] = pos.epoch
            try:
                page = self._call("GET", "/v1/sync/pull", params=params, headers=self._pending_header())
            except ResyncRequired:
                resyncs += 1
                if resyncs > 2:
                    raise ProtocolFailure() from None
                self.report.resyncs += 1
                # The outbox was pushed first; the snapshot never discards it. A server restored from a
                # backup may lack changes it had acked: send those again before the snapshot.
                self._resend_what_the_server_lost()
                self.local.begin_snapshot()
                self._snapshot()
                continue
            n = self.local.apply_pull_page(page)
            pulled += n
            self.report.pulled += n
            self.report.pages += 1
            self.progress("pull", pulled, None)
            if not page.get("has_more"):
                return

    def _resend_what_the_server_lost(self) -> None:
        """After a resync request: if the server's ledger is behind this laptop's acked changes (it was
        restored from a backup), mark those changes pending again and push them, before any snapshot
        replaces local rows.

        An empty push asks the server for ``last_acked_mutation_id``, its ledger's position for this
        device; outbox rows after it (acked by the server before its restore) are sent again under the
        same mutation ids, and the restored ledger applies each exactly once.
        """
        body = {
            "device_id": self.device_id,
            "protocol_version": protocol.PROTOCOL_VERSION,
            "schema_version": schema.SCHEMA_VERSION,
            "mutations": [],
        }
        resp = self._call("POST", "/v1/sync/push", json=body, headers=self._pending_header())
        last = resp.get("last_acked_mutation_id")
        if isinstance(last, int) and not isinstance(last, bool) and last >= 0:
            if self.local.resend_from(last + 1) > 0:
                self.push()

    def _snapshot_pages(self, after: str | None, headers: dict[str, str]) -> _PageSource:
        """The snapshot's pages from ``after`` on, in order: fetched ahead in a thread when pipelined."""
        if self.pipeline:
            return _Prefetcher(self, after, headers, self.prefetch)
        return _SerialPages(self, after, headers)

    def _snapshot(self) -> None:
        """Fetch the snapshot page by page and apply it in batches; each batch commits with its position.

        Pipelined (the default): a fetch thread reads the next pages into a bounded queue while this
        thread, the one writer, applies the current batch, so the server's work and the laptop's
        overlap. Pages fetched but not yet applied are dropped on any failure: the position committed
        is always that of the last page applied, so a rerun resumes exactly there.
        """
        pos = self.local.pull_position()
        if not pos.started:
            self.local.begin_snapshot()
            pos = self.local.pull_position()
        restarts = 0
        self._batch, self._applied_pages, self._snapshot_rows = None, 0, 0
        headers = self._pending_header()
        source = self._snapshot_pages(pos.after, headers)
        try:
            while True:
                try:
                    page, observed = source.next()
                except ResyncRequired:
                    restarts += 1
                    if restarts > 2:
                        raise ProtocolFailure() from None
                    source.close()  # pages fetched but not applied belong to the abandoned snapshot
                    self._batch = None
                    self._resend_what_the_server_lost()
                    self.local.begin_snapshot()
                    source = self._snapshot_pages(None, headers)
                    continue
                self._observe(observed)
                if self._take_snapshot_page(page):
                    return
        finally:
            source.close()

    def _take_snapshot_page(self, page: dict[str, Any]) -> bool:
        """Add one fetched page to the batch and apply the batch when due; True after the last page."""
        self.report.pages += 1
        last = not page.get("has_more")
        # After the first page (committed at once, so the caseload starts to fill), several pages
        # go into one local transaction: fewer commits, each one an fsync and a rewrite of every
        # index page it touched. The position committed is the last page's, so an interruption
        # refetches only the pages not yet committed.
        batch = self._batch
        if batch is None:
            batch = {**page, "changes": list(page.get("changes") or []),
                     "conflicts": list(page.get("conflicts") or [])}  # fmt: skip
        else:
            batch = {**page, "changes": batch["changes"] + list(page.get("changes") or []),
                     "conflicts": batch["conflicts"] + list(page.get("conflicts") or [])}  # fmt: skip
        self._batch = batch
        if last or self._applied_pages == 0 or len(batch["changes"]) >= self.snapshot_batch:
            self._batch = None
            n = self.local.apply_snapshot_page(batch)
            self._applied_pages += 1
            self._snapshot_rows += n
            self.report.snapshot_rows += n
            self.progress("snapshot", self._snapshot_rows, None)
        return last


# ---------------------------------------------------------------- snapshot pages, serial or fetched ahead

_Fetched = tuple[dict[str, Any], Observed]


class _PageSource(Protocol):
    def next(self) -> _Fetched:
        """The next page and what its answer said about the server's clock; raises what the fetch raised."""
        ...

    def close(self) -> None: ...


def _snapshot_params(engine: SyncEngine, after: str | None) -> dict[str, Any]:
    # meta=raw: rows' metadata as the server stored it (a JSON string), kept as received.
    params: dict[str, Any] = {"limit": engine.page, "meta": "raw"}
    if after:
        params["after"] = after
    return params


class _SerialPages:
    """One page at a time, fetched when asked for (the unpipelined order: fetch, apply, fetch, ...)."""

    def __init__(self, engine: SyncEngine, after: str | None, headers: dict[str, str]) -> None:
        self.engine, self.after, self.headers = engine, after, headers

    def next(self) -> _Fetched:
        got = self.engine._fetch("GET", "/v1/sync/snapshot", params=_snapshot_params(self.engine, self.after),
                                 headers=self.headers)  # fmt: skip
        self.after = got[0].get("after")
        return got

    def close(self) -> None:
        pass


class _Prefetcher:
    """Fetches snapshot pages in order in one background thread, at most ``depth`` ahead of the writer.

    The thread only talks HTTP (``SyncEngine._fetch`` touches no local state); a failure is handed to
    the writer in its place in the queue and ends the thread. ``close`` stops it and drops what it held.
    """

    def __init__(self, engine: SyncEngine, after: str | None, headers: dict[str, str], depth: int) -> None:
        self.engine = engine
        self.headers = headers
        self.queue: queue.Queue[tuple[_Fetched | None, BaseException | None]] = queue.Queue(maxsize=max(1, depth))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(after,), name="sprx-snapshot-fetch", daemon=True)
        self.thread.start()

    def _run(self, after: str | None) -> None:
        try:
            while not self.stop.is_set():
                got = self.engine._fetch("GET", "/v1/sync/snapshot", params=_snapshot_params(self.engine, after),
                                         headers=self.headers)  # fmt: skip
                if not self._put((got, None)) or not got[0].get("has_more"):
                    return
                after = got[0].get("after")
        except BaseException as exc:  # noqa: BLE001 - handed to the writer, which raises it
            self._put((None, exc))

    def _put(self, item: tuple[_Fetched | None, BaseException | None]) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def next(self) -> _Fetched:
        got, exc = self.queue.get()
        if exc is not None:
            raise exc
        assert got is not None
        return got

    def close(self) -> None:
        self.stop.set()
        while True:
            try:
                self.queue.get_nowait()
            except queue.Empty:
                break
        self.thread.join(timeout=60)
