"""`sprx-server serve`: check the settings, bind the port, log one start-up line, run uvicorn, stop gracefully.

Everything that can be wrong before the first request is found here and said in one sentence: no
store, a store not at this release's schema, a certificate or key file missing, a network address
without TLS, the port taken. The socket is bound here and handed to uvicorn, so "port in use" is
known before anything starts. On SIGTERM (systemd's stop, ``docker stop``) uvicorn stops accepting,
lets the requests in flight finish (up to ``GRACE_S``), and the process exits; the log says when
the stop began and when it ended.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import ssl
from pathlib import Path
from types import FrameType
from typing import Any

from sync import protocol
from sync.server.config import ConfigError, Settings

GRACE_S = 30
"""How long a stop waits for requests in flight before cancelling them (systemd's TimeoutStopSec is longer)."""


class ServeError(ConfigError):
    """Serving cannot start: one sentence."""


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("sprx")
    except PackageNotFoundError:  # pragma: no cover - running from a tree that was never installed
        return "unknown"


def store_kind(url: str) -> str:
    """ "sqlite" or "postgresql" (or the dialect's name): never the URL, which may hold a password."""
    return url.split(":", 1)[0].split("+", 1)[0] or "unknown"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_tls(s: Settings) -> None:
    if bool(s.tls_cert) != bool(s.tls_key):
        raise ServeError("Give both --tls-cert and --tls-key, or neither.")
    if not s.tls_cert and not is_loopback(s.host):
        raise ServeError("Refusing to serve on a network address without TLS; use --tls-cert/--tls-key.")
    for what, f in (("certificate", s.tls_cert), ("private key", s.tls_key)):
        if not f:
            continue
        p = Path(f)
        if not p.exists():
            raise ServeError(f"The TLS {what} file {f} does not exist.")
        if not p.is_file():
            raise ServeError(f"The TLS {what} file {f} is not a file.")
        try:
            p.open("rb").close()
        except OSError:
            raise ServeError(f"The TLS {what} file {f} cannot be read (permission denied).") from None
    if s.tls_cert and s.tls_key:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(s.tls_cert, s.tls_key)
        except (ssl.SSLError, ValueError):
            raise ServeError(
                f"The TLS certificate {s.tls_cert} and key {s.tls_key} are not a PEM certificate and its key."
            ) from None


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, or ServeError with one sentence (port in use, not allowed, unknown address)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        raise ServeError(f"Cannot listen on {host}: it is not an address of this machine.") from None
    family, kind, proto, _name, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ServeError(
                f"Port {port} on {host} is already in use; stop what is using it or choose another --port."
            ) from None
        if e.errno == errno.EACCES:
            raise ServeError(f"Port {port} needs privileges this user does not have; use a port above 1023.") from None
        if e.errno == errno.EADDRNOTAVAIL:
            raise ServeError(f"Cannot listen on {host}: it is not an address of this machine.") from None
        raise ServeError(f"Cannot listen on {host} port {port} ({e.strerror}).") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run(s: Settings, store: Any) -> int:
    """Serve until SIGTERM/SIGINT; the store is already open (and checked at this release's schema)."""
    import uvicorn

    from sync.server.app import create_app
    from sync.server.limits import Limits
    from sync.server.log import configure, log_event

    check_tls(s)
    limits = Limits(
        body_default=s.max_body,
        body_paths={"/v1/devices/enrol": s.max_enrol_body, "/v1/sync/push": s.max_push_body},
        enrol_per_address=s.enrol_attempts_per_address,
        enrol_overall=s.enrol_attempts,
        enrol_window_s=s.enrol_window,
    )
    try:
        sock = bind(s.host, s.port)
    except ServeError:
        store.close()
        raise
    try:
        # Only now, with nothing left to refuse: the log set-up replaces the process's "sprx" handlers.
        configure(destination=s.log)
    except OSError:
        sock.close()
        store.close()
        raise ServeError(f"Cannot write the log file {s.log}.") from None
    app = create_app(store, limits=limits)
    config = uvicorn.Config(
        app,
        ssl_certfile=s.tls_cert,
        ssl_keyfile=s.tls_key,
        access_log=False,  # our middleware logs paths without query strings
        log_level="warning",
        log_config=None,  # uvicorn's warnings go through the root logger, ours through "sprx"
        server_header=False,
        timeout_graceful_shutdown=GRACE_S,
        timeout_keep_alive=int(protocol.KEEP_ALIVE_S),  # the laptops' background sync reuses its connection
        lifespan="off",
    )
    server = _server(config)
    log_event(
        "started",
        version=version(),
        store=store_kind(s.db or ""),
        address=f"{s.host}:{s.port}",
        tls=bool(s.tls_cert),
        config=str(s.config_file) if s.config_file else None,
    )
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        store.close()
    return 0


def _server(config: Any) -> Any:
    """A uvicorn.Server that logs when a stop begins and when it has finished (requests in flight done)."""
    import uvicorn

    from sync.server.log import log_event

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if not self.should_exit:
                log_event("stopping", signal=sig, grace_s=GRACE_S)
            super().handle_exit(sig, frame)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            await super().shutdown(sockets)
            log_event("stopped")
            for h in logging.getLogger("sprx").handlers:
                h.flush()

    return Server(config)
