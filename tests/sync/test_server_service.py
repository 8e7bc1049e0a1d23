"""`sprx-server serve` as a service: one start-up line, and SIGTERM finishes the requests in flight.

A real server process on 127.0.0.1. The request in flight is made with ``Expect: 100-continue``: the
server answers "100 Continue" only once the app is reading the body, so the test knows the request is
inside the app before it sends SIGTERM, and sends the rest of the body only once the server has logged
that it is stopping.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sync import protocol, schema
from sync.server.cli import main
from sync.server.serve import store_kind, version
from sync.server.store import ServerStore
from tests.sync.server_harness import free_port


def wait_for(cond: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def events(log: Path) -> list[dict]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            out.append({"raw": line})
    return out


def has_event(log: Path, name: str) -> bool:
    return any(e.get("event") == name for e in events(log))


def test_the_store_kind_never_carries_the_url() -> None:
    assert store_kind("postgresql+psycopg://sprx:s3cret@db.example:5432/sprx") == "postgresql"
    assert store_kind("sqlite:////var/lib/sprx/server.db") == "sqlite"


@pytest.mark.slow  # a real server process, stopped with SIGTERM
def test_start_up_line_and_sigterm_finishes_the_request_in_flight(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/store/server.db"
    assert main(["init", "--db", url]) == 0
    admin = ServerStore(url, create=False)
    admin.add_worker("asmith", "P1")
    code, _ = admin.issue_enrol_code("asmith")
    enrolled = admin.enrol(code, "laptop")
    admin.close()
    capsys.readouterr()

    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sync.server.cli", "serve", "--db", url, "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: has_event(log, "started") or proc.poll() is not None, what="the start-up line")
        started = events(log)[0]
        assert {k: started[k] for k in ("event", "version", "store", "address", "tls")} == {
            "event": "started",
            "version": version(),
            "store": "sqlite",
            "address": f"127.0.0.1:{port}",
            "tls": False,
        }
        assert "server.db" not in log.read_text()  # the kind of store, never its URL or path

        h = (int(time.time() * 1000) << 16) | 1
        body = json.dumps(
            {
                "device_id": enrolled["device_id"],
                "protocol_version": protocol.PROTOCOL_VERSION,
                "schema_version": schema.SCHEMA_VERSION,
                "mutations": [
                    {
                        "mutation_id": 1,
                        "tbl": "person",
                        "row_id": "p-1",
                        "person_id": None,
                        "op": "insert",
                        "fields": {"given_name": {"v": "Ann", "hlc": h}},
                        "hlc": h,
                        "conflict_id": None,
                    }
                ],
            }  # fmt: skip
        ).encode()
        head = (
            f"POST /v1/sync/push HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nAuthorization: Bearer {enrolled['token']}\r\n"
            f"{protocol.PROTOCOL_HEADER}: {protocol.PROTOCOL_VERSION}\r\n"
            f"{protocol.SCHEMA_HEADER}: {schema.SCHEMA_VERSION}\r\n"
            "Expect: 100-continue\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
            s.sendall(head)
            assert s.recv(1024).startswith(b"HTTP/1.1 100 Continue")  # the app is reading the body
            proc.send_signal(signal.SIGTERM)
            wait_for(lambda: has_event(log, "stopping"), what="the server to begin stopping")
            # The request in flight finishes.
            s.sendall(body)
            reply = b""
            while b"\r\n\r\n" not in reply or len(reply.split(b"\r\n\r\n", 1)[1]) < 10:
                chunk = s.recv(65536)
                if not chunk:
                    break
                reply += chunk
        status_line, _, rest = reply.partition(b"\r\n")
        assert status_line == b"HTTP/1.1 200 OK", reply[:300]
        assert json.loads(rest.split(b"\r\n\r\n", 1)[1])["acks"][0]["status"] == "applied"
        proc.wait(30)
        assert proc.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has stopped
        assert has_event(log, "stopped")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    store = ServerStore(url, create=False)
    try:
        assert store.get_record("person", "p-1") is not None  # the change was committed before the stop
    finally:
        store.close()


def read_response(s: socket.socket) -> bytes:
    """One whole HTTP/1.1 response (headers, then Content-Length bytes of body), however the reads split it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, f"the server closed the connection mid-response: {data[:200]!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = s.recv(65536)
        assert chunk, "the server closed the connection mid-body"
        body += chunk
    assert len(body) == length, "more bytes than the response said"
    return head + b"\r\n\r\n" + body


@pytest.mark.slow
def test_an_idle_connection_is_kept_for_the_next_background_sync(tmp_path: Path) -> None:
    """uvicorn's own default closes an idle connection after 5 s; the app syncs every minute or so and
    would pay a new TLS handshake each time. The server keeps it for protocol.KEEP_ALIVE_S."""
    from sprx_tui.sync_controller import HEALTHY_SECONDS, JITTER

    assert protocol.KEEP_ALIVE_S > HEALTHY_SECONDS * (1 + JITTER)  # longer than the app's longest healthy wait
    url = f"sqlite:///{tmp_path}/store/server.db"
    assert main(["init", "--db", url]) == 0
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sync.server.cli", "serve", "--db", url, "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    request = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    try:
        wait_for(lambda: has_event(log, "started") or proc.poll() is not None, what="the start-up line")
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
            for _ in range(2):
                s.sendall(request)
                reply = read_response(s)
                assert reply.startswith(b"HTTP/1.1 200 OK"), reply[:200]
                # Idle for longer than uvicorn's default keep-alive: the server must not close the connection.
                s.settimeout(7.0)
                try:
                    assert s.recv(1) != b"", "the server closed an idle connection"
                except TimeoutError:
                    pass  # nothing arrived and the connection is still open
                s.settimeout(20)
    finally:
        proc.terminate()
        proc.wait(30)
