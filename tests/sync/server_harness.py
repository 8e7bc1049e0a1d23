"""Helpers to run a real sync server in tests: temp PostgreSQL, in-process app, uvicorn process."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from sync import hlc as hlc_mod
from sync import protocol, schema
from sync.server.app import create_app
from sync.server.store import ServerStore

PG_BIN_DIRS = ["/usr/local/bin", "/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_pg_bin() -> Path | None:
    """The directory holding initdb and pg_ctl, or None when PostgreSQL is not installed."""
    found = shutil.which("initdb")
    cands = [str(Path(found).parent)] if found else []
    for d in cands + PG_BIN_DIRS:
        if (Path(d) / "initdb").exists() and (Path(d) / "pg_ctl").exists():
            return Path(d)
    return None


@contextlib.contextmanager
def postgres_cluster() -> Iterator[str]:
    """Start a throwaway PostgreSQL on 127.0.0.1; yields a ``postgresql+psycopg://`` base URL.

    As root the cluster runs as the ``postgres`` user (initdb refuses root).
    """
    bindir = find_pg_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL (initdb) is not installed")
    tmp = Path(tempfile.mkdtemp(prefix="sprx-pg-"))
    data = tmp / "data"
    port = free_port()
    root = os.geteuid() == 0
    run_as = ["runuser", "-u", "postgres", "--"] if root else []
    if root:
        shutil.chown(tmp, "postgres", "postgres")
    env = {**os.environ, "LC_ALL": "C"}
    subprocess.run(
        [*run_as, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
         "--no-sync", "-E", "UTF8"],
        check=True, capture_output=True, env=env,
    )  # fmt: skip
    opts = (
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={tmp} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    subprocess.run(
        [*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-w", "-t", "60",
         "-l", str(tmp / "log"), "start"],
        check=True, capture_output=True, env=env,
    )  # fmt: skip
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(
            [*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            capture_output=True,
            env=env,
        )
        shutil.rmtree(tmp, ignore_errors=True)


def create_database(base_url: str, name: str) -> str:
    """Create a fresh database in a running cluster and return its URL."""
    import sqlalchemy as sa

    eng = sa.create_engine(base_url + "/postgres", isolation_level="AUTOCOMMIT")
    with eng.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    eng.dispose()
    return f"{base_url}/{name}"


class FakeClock:
    """A settable millisecond clock for ServerStore(now_ms=...)."""

    def __init__(self, start_ms: int = 1_750_000_000_000) -> None:
        self.ms = start_ms

    def __call__(self) -> int:
        return self.ms

    def advance(self, ms: int) -> None:
        self.ms += ms


def version_headers(
    protocol_version: int = protocol.PROTOCOL_VERSION, schema_version: int = schema.SCHEMA_VERSION
) -> dict[str, str]:
    return {
        protocol.PROTOCOL_HEADER: str(protocol_version),
        protocol.SCHEMA_HEADER: str(schema_version),
    }


@dataclass
class Laptop:
    """A minimal scripted device for server tests: an enrolled token and a mutation counter."""

    server: TestServer
    device_id: str
    token: str
    worker_id: str
    next_mid: int = 1
    cursor: int = 0
    last_hlc: int = 0
    rows: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **version_headers()}

    def hlc(self) -> int:
        self.last_hlc = hlc_mod.tick(self.last_hlc, self.server.clock())
        return self.last_hlc

    def _heard(self, r: httpx.Response) -> None:
        if r.status_code == 200 and "server_hlc" in r.json():
            self.last_hlc = hlc_mod.receive(self.last_hlc, r.json()["server_hlc"], self.server.clock())

    def mutation(
        self,
        tbl: str,
        row_id: str,
        op: str,
        fields: dict[str, Any] | None = None,
        *,
        person_id: str | None = None,
        base: int | None = None,
        conflict_id: str | None = None,
        hlc: int | None = None,
    ) -> dict[str, Any]:
        h = hlc if hlc is not None else self.hlc()
        m = {
            "mutation_id": self.next_mid,
            "tbl": tbl,
            "row_id": row_id,
            "person_id": person_id,
            "op": op,
            "fields": {f: {"v": v, "hlc": h, "base_seq": base} for f, v in (fields or {}).items()},
            "hlc": h,
            "conflict_id": conflict_id,
        }
        self.next_mid += 1
        return m

    def push(self, mutations: list[dict[str, Any]], **kw: Any) -> httpx.Response:
        body = {
            "device_id": self.device_id,
            "protocol_version": protocol.PROTOCOL_VERSION,
            "schema_version": schema.SCHEMA_VERSION,
            "mutations": mutations,
        }
        body.update(kw)
        r = self.server.client.post("/v1/sync/push", json=body, headers=self.headers)
        self._heard(r)
        return r

    def pull_all(self, limit: int = 500) -> dict[str, Any]:
        """Pull until has_more is false; keeps the latest row states in ``rows``."""
        out: dict[str, Any] = {"changes": [], "conflicts": [], "removed_person_ids": []}
        while True:
            r = self.server.client.get(
                "/v1/sync/pull", params={"cursor": self.cursor, "limit": limit}, headers=self.headers
            )
            r.raise_for_status()
            self._heard(r)
            page = r.json()
            for c in page["changes"]:
                self.rows[(c["tbl"], c["id"])] = c
            for pid in page["removed_person_ids"]:
                self.rows = {k: v for k, v in self.rows.items() if v["person_id"] != pid}
            for k in out:
                out[k] += page[k]
            self.cursor = page["next_cursor"]
            if not page["has_more"]:
                return out


class TestServer:
    """A store plus the app behind an in-process httpx client (no sockets)."""

    __test__ = False  # not a pytest class

    def __init__(self, db_url: str, clock: Callable[[], int] | None = None, **app_kw: Any) -> None:
        self.clock = clock or FakeClock()
        self.store = ServerStore(db_url, now_ms=self.clock)
        self.app = create_app(self.store, **app_kw)
        # Starlette's TestClient is an httpx.Client over an in-process ASGI transport.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # starlette nags about httpx2 at import
            from fastapi.testclient import TestClient

        self.client: httpx.Client = TestClient(self.app, base_url="http://testserver")

    def close(self) -> None:
        self.client.close()
        self.store.close()

    def worker(self, worker_id: str, practice_id: str = "P1", team_id: str | None = None) -> str:
        self.store.add_worker(worker_id, practice_id, team_id)
        return worker_id

    def laptop(self, worker_id: str, name: str = "laptop") -> Laptop:
        code, _ = self.store.issue_enrol_code(worker_id)
        r = self.client.post("/v1/devices/enrol", json={"code": code, "device_name": name})
        r.raise_for_status()
        body = r.json()
        return Laptop(self, body["device_id"], body["token"], worker_id)


@contextlib.contextmanager
def uvicorn_server(
    db_url: str,
    *,
    cert: Path | None = None,
    key: Path | None = None,
    timeout: float = 20.0,
    log: Path | None = None,
    port: int | None = None,
) -> Iterator[str]:
    """Run ``python -m sync.server.cli serve`` as a real process; yields its base URL.

    The server's output goes to ``log`` (a temporary file by default, removed afterwards), never
    to a pipe: the server logs one line per request, and an unread pipe fills after a few hundred
    requests and blocks the server. The file is read only to explain an early exit.
    """
    port = port or free_port()
    ServerStore(db_url).close()  # an empty database gets the schema (serve never creates a store)
    cmd = [sys.executable, "-m", "sync.server.cli", "serve", "--db", db_url,
           "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    if cert and key:
        cmd += ["--tls-cert", str(cert), "--tls-key", str(key)]
    scheme = "https" if cert else "http"
    own_log = log is None
    if log is None:
        fd, name = tempfile.mkstemp(prefix="sprx-server-", suffix=".log")
        os.close(fd)
        log = Path(name)
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                err = log.read_text(errors="replace")
                raise RuntimeError(f"server exited early: {err[-2000:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        else:
            raise RuntimeError("server did not start")
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if own_log:
            log.unlink(missing_ok=True)
