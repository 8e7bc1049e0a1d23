"""The laptop's transport: plain http only to loopback, the certificate pin checked before any byte is sent, backoff."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from sync import client as sc
from sync.server.tls import fingerprint, make_self_signed


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8443", "http://127.8.9.10", "http://localhost:1234/", "http://[::1]:8443",
     "https://sprx.practice.example:8443", "https://192.0.2.7"],
)  # fmt: skip
def test_allowed_server_addresses(url: str) -> None:
    assert sc.check_server_url(url) == url.rstrip("/")


@pytest.mark.parametrize("url", ["http://192.0.2.7:8443", "http://sprx.practice.example", "ftp://x", "sprx.example"])
def test_refused_server_addresses_get_one_sentence(url: str) -> None:
    with pytest.raises(sc.InsecureServer) as exc:
        sc.check_server_url(url)
    assert str(exc.value).endswith(".") and "\n" not in str(exc.value)


def _complete(data: bytes) -> bool:
    """A whole HTTP request: headers and Content-Length bytes of body (an early close resets the client)."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return True


@dataclass
class TlsListener:
    """A bare TLS server that records every byte it receives after the handshake."""

    cert: Path
    key: Path
    port: int = 0
    received: list[bytes] = field(default_factory=list)
    handshakes: int = 0
    failed_handshakes: int = 0

    def serve(self, sock: socket.socket, stop: threading.Event) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            try:
                tls = ctx.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError):
                self.failed_handshakes += 1
                conn.close()
                continue
            self.handshakes += 1
            tls.settimeout(2)
            data = b""
            try:
                while not _complete(data):
                    chunk = tls.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                if data:
                    body = b'{"ok": true}'
                    tls.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                        + f"Content-Length: {len(body)}\r\n\r\n".encode()
                        + body
                    )
            except (TimeoutError, ssl.SSLError, OSError):
                pass
            finally:
                self.received.append(data)
                tls.close()


def settle(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for the listener thread to finish with its connection."""
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[tuple[Path, Path], tuple[Path, Path]]:
    base = tmp_path_factory.mktemp("certs")
    return make_self_signed(base / "real"), make_self_signed(base / "impostor")


@pytest.fixture
def impostor(certs: tuple[tuple[Path, Path], tuple[Path, Path]]) -> Iterator[TlsListener]:
    cert, key = certs[1]
    listener = TlsListener(cert, key)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    listener.port = sock.getsockname()[1]
    stop = threading.Event()
    t = threading.Thread(target=listener.serve, args=(sock, stop), daemon=True)
    t.start()
    yield listener
    stop.set()
    t.join(5)
    sock.close()


def test_fingerprint_matches_what_the_server_prints(certs) -> None:
    (cert, _), _ = certs
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    assert sc.cert_fingerprint(der) == fingerprint(cert.read_bytes())


def test_pin_mismatch_stops_after_the_handshake_before_any_byte_of_the_request(certs, impostor: TlsListener) -> None:
    (real_cert, _), (fake_cert, _) = certs
    pin = fingerprint(real_cert.read_bytes())
    # The impostor's certificate would pass ordinary verification here; only the pin catches it.
    t = sc.Transport(f"https://127.0.0.1:{impostor.port}", pin=pin, ca_pem=fake_cert.read_text(), token="sprx_x")
    with t, pytest.raises(sc.CertificateMismatch):
        t.request("POST", "/v1/sync/push", json={"secret": "never sent"})
    settle(lambda: bool(impostor.received))
    assert impostor.handshakes == 1
    assert impostor.received == [b""]


def test_the_right_pin_lets_the_request_through(certs, impostor: TlsListener) -> None:
    _, (fake_cert, _) = certs
    pin = fingerprint(fake_cert.read_bytes())
    t = sc.Transport(f"https://127.0.0.1:{impostor.port}", pin=pin, ca_pem=fake_cert.read_text())
    with t:
        assert t.request("POST", "/v1/sync/push", json={"x": 1}) == {"ok": True}
    settle(lambda: bool(impostor.received))
    assert impostor.received and impostor.received[0].startswith(b"POST /v1/sync/push")


def test_pinned_trust_store_refuses_another_certificate_in_the_handshake(certs, impostor: TlsListener) -> None:
    (real_cert, _), _ = certs
    t = sc.Transport(
        f"https://127.0.0.1:{impostor.port}",
        pin=fingerprint(real_cert.read_bytes()),
        cert_pem=real_cert.read_text(),
    )
    with t, pytest.raises(sc.CertificateMismatch) as exc:
        t.request("GET", "/v1/sync/pull")
    assert "nothing was sent" in str(exc.value)
    settle(lambda: impostor.failed_handshakes > 0)
    assert impostor.handshakes == 0 and impostor.received == []


def test_enrolment_without_a_trusted_certificate_sends_no_code(impostor: TlsListener) -> None:
    with pytest.raises(sc.CertificateUntrusted, match="--ca-cert"):
        sc.enrol_device(f"https://127.0.0.1:{impostor.port}", "ABCDE-FGHJK", "laptop")
    settle(lambda: impostor.failed_handshakes > 0)
    assert impostor.received == []


def test_unreachable_server_is_offline() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with sc.Transport(f"http://127.0.0.1:{port}") as t, pytest.raises(sc.Offline) as exc:
        t.request("GET", "/healthz")
    assert str(exc.value) == "The practice server could not be reached; your changes are kept and will sync later."


def _captured_requests(direct: bool) -> list[httpx.Request]:
    """Three requests of the kinds the sync client sends, through the pool directly or through httpx.Client."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return httpx.Response(200, json={"ok": True}, headers={"X-Server-Time": "1700000000000"})

    with sc.Transport("http://127.0.0.1:9", token="t0k", transport=httpx.MockTransport(answer)) as t:
        if not direct:
            t._direct = None  # as when the environment names a proxy
        t.request("POST", "/v1/sync/exchange", json={"name": "Zoë", "n": [1, 2]}, headers={"X-Sprx-Pending": "3"})
        t.request("GET", "/v1/sync/snapshot", params={"after": "a b", "limit": 500})
        t.request("GET", "/healthz")
        assert t.observed.server_time_ms == 1700000000000
    return seen


def test_direct_requests_carry_what_the_client_sent() -> None:
    """Method, address, body, and the headers that matter (version, token, pending, type, length, host)."""
    names = ["host", "authorization", "user-agent", "content-type", "content-length", "x-sprx-pending",
             sc.protocol.PROTOCOL_HEADER.lower(), sc.protocol.SCHEMA_HEADER.lower()]  # fmt: skip
    direct, client = _captured_requests(True), _captured_requests(False)
    assert len(direct) == len(client) == 3
    for d, c in zip(direct, client, strict=True):
        assert (d.method, str(d.url), d.content) == (c.method, str(c.url), c.content)
        assert {n: d.headers.get(n) for n in names} == {n: c.headers.get(n) for n in names}
        assert d.extensions["timeout"] == c.extensions["timeout"] and "trace" in d.extensions
    assert direct[0].content == '{"name":"Zoë","n":[1,2]}'.encode()
    assert str(direct[1].url) == "http://127.0.0.1:9/v1/sync/snapshot?after=a+b&limit=500"


def test_a_proxy_named_in_the_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only httpx.Client applies HTTP(S)_PROXY, so with one set requests go through it (here: to nowhere)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{dead}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        with sc.Transport(f"http://127.0.0.1:{port}") as t:
            assert t._direct is None
            with pytest.raises(sc.Offline):  # the proxy refuses; the listening server is never asked
                t.request("GET", "/healthz")
        monkeypatch.delenv("HTTP_PROXY")
        with sc.Transport(f"http://127.0.0.1:{port}") as t:
            assert t._direct is not None


# ---------------------------------------------------------------- backoff


def test_backoff_is_full_jitter_doubling_to_a_five_minute_cap() -> None:
    b = sc.Backoff(rng=lambda: 1.0)
    assert b.next_attempt_at(100.0) == 100.0 and b.due(100.0)
    ceilings = [b.failure(0.0) for _ in range(12)]
    assert ceilings[:4] == [1.0, 2.0, 4.0, 8.0]
    assert max(ceilings) == 300.0 and ceilings[-1] == 300.0
    assert not b.due(299.0) and b.due(300.0)
    b.success()
    assert b.next_attempt_at(5.0) == 5.0 and b.failures == 0


def test_backoff_jitter_spreads_over_the_whole_window() -> None:
    values = iter([0.0, 0.5])
    b = sc.Backoff(rng=lambda: next(values))
    assert b.failure(10.0) == 10.0  # full jitter may retry at once
    assert b.failure(10.0) == 11.0  # half of the 2 s window
    assert b.next_attempt_at(10.5) == 11.0
