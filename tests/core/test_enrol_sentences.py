"""`sprx enrol` says why it could not reach the server (issue 11, item 6), one sentence each, over real sockets:
plain http:// to another computer, an unknown host, a refused connection, a certificate that does not match.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sync import client as sc
from sync.server.tls import make_self_signed

SPRX = str(Path(sys.executable).with_name("sprx"))
PASSPHRASE = "walking group on tuesday"
CODE = "ABCDE-FGHJK"


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def tls_server(cert: Path, key: Path) -> Iterator[int]:
    """A real TLS listener on 127.0.0.1 presenting ``cert``; it only shakes hands. Yields its port."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen()
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = lsock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                with contextlib.suppress(OSError):  # the client gives up on the certificate
                    ctx.wrap_socket(conn, server_side=True).close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    port = int(lsock.getsockname()[1])
    try:
        yield port
    finally:
        stop.set()
        with contextlib.suppress(OSError):  # wakes accept() (closing the socket would not)
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        t.join(timeout=10)
        lsock.close()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The server's certificate and key, and another certificate the laptop is told to trust instead."""
    base = tmp_path_factory.mktemp("certs")
    cert, key = make_self_signed(base / "server", "127.0.0.1")
    other, _ = make_self_signed(base / "other", "127.0.0.1")
    return cert, key, other


def test_plain_http_to_another_computer_says_use_https() -> None:
    with pytest.raises(sc.InsecureServer) as e:
        sc.enrol_device("http://sprx.practice.example:8443", CODE, "laptop")
    assert "https://" in str(e.value)


def test_an_unknown_host_is_named() -> None:
    with pytest.raises(sc.UnknownHost) as e:
        sc.enrol_device("https://no-such-server.invalid:8443", CODE, "laptop", timeout=10)
    assert "no-such-server.invalid is unknown" in str(e.value)


def test_a_refused_connection_names_the_address() -> None:
    port = closed_port()
    with pytest.raises(sc.ConnectionRefused) as e:
        sc.enrol_device(f"https://127.0.0.1:{port}", CODE, "laptop", timeout=10)
    assert str(e.value).startswith(f"The practice server at 127.0.0.1:{port} refused the connection")


def test_a_certificate_that_does_not_match_is_said_so(certs: tuple[Path, Path, Path]) -> None:
    cert, key, other = certs
    with tls_server(cert, key) as port:
        with pytest.raises(sc.CertificateUntrusted) as e:
            sc.enrol_device(f"https://127.0.0.1:{port}", CODE, "laptop", ca_pem=other.read_text(), timeout=10)
        assert "certificate does not match" in str(e.value) and "--ca-cert" in str(e.value)
        with pytest.raises(sc.CertificateUntrusted):  # nor does the system's trust know a self-signed one
            sc.enrol_device(f"https://127.0.0.1:{port}", CODE, "laptop", timeout=10)


def test_the_sync_sentence_for_an_unreachable_server_is_unchanged() -> None:
    """Unknown host and refused are still Offline for the sync (exit 3, changes kept), only enrol says more."""
    assert issubclass(sc.UnknownHost, sc.Offline) and issubclass(sc.ConnectionRefused, sc.Offline)
    port = closed_port()
    with sc.Transport(f"https://127.0.0.1:{port}", token="t", timeout=10) as t, pytest.raises(sc.Offline) as e:
        t.request("GET", "/v1/sync/pull")
    assert type(e.value) is sc.Offline


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("enrol") / "vault"
    done = subprocess.run(
        [SPRX, "init", "--vault", str(path), "--fast-kdf", "--passphrase-stdin"],
        input=PASSPHRASE + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("SPRX_")},
    )
    assert done.returncode == 0, done.stderr
    return path


@pytest.mark.slow
@pytest.mark.parametrize("case", ["http", "unknown", "refused", "certificate"])
def test_sprx_enrol_prints_one_sentence_for_each(
    case: str, vault: Path, certs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    cert, key, other = certs
    port = closed_port()
    servers = {
        "http": ("http://sprx.practice.example:8443", [], "must start with https://"),
        "unknown": ("https://no-such-server.invalid:8443", [], "no-such-server.invalid is unknown"),
        "refused": (f"https://127.0.0.1:{port}", [], f"127.0.0.1:{port} refused the connection"),
        "certificate": ("https://127.0.0.1:{port}", ["--ca-cert", str(other)], "certificate does not match"),
    }
    url, extra, expected = servers[case]
    with tls_server(cert, key) as tls_port:
        args = ["enrol", "--vault", str(vault), "--server", url.format(port=tls_port), "--code", CODE, *extra]
        done = subprocess.run(
            [SPRX, *args, "--passphrase-stdin"],
            input=PASSPHRASE + "\n",
            capture_output=True,
            text=True,
            timeout=120,
            env={k: v for k, v in os.environ.items() if not k.startswith("SPRX_")},
        )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in done.stderr, done.stderr


def test_sync_exit_codes_are_in_its_help_and_in_readme(capsys: pytest.CaptureFixture[str]) -> None:
    """The codes `sprx sync` returns (sprx_tui.core.sync.run) are the ones its --help and README list."""
    from sprx_tui.cli import main
    from sprx_tui.core.sync import EXIT_CONFLICTS, EXIT_FAILED, EXIT_OFFLINE, EXIT_REVOKED, EXIT_SYNCED, EXIT_UPGRADE

    with pytest.raises(SystemExit):
        main(["sync", "--help"])
    helptext = capsys.readouterr().out
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    codes = {
        EXIT_SYNCED: "synced",
        EXIT_FAILED: "failure",
        EXIT_OFFLINE: "could not be reached",
        EXIT_CONFLICTS: "conflicts",
        EXIT_REVOKED: "revoked",
        EXIT_UPGRADE: "update",
    }
    assert sorted(codes) == [0, 1, 3, 4, 5, 6]
    for code, words in codes.items():
        assert any(line.startswith(f"  {code}  ") and words in line for line in helptext.splitlines()), code
        assert any(line.startswith(f"| {code} |") and words in line for line in readme.splitlines()), code
