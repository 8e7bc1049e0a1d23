"""Bounded requests and a private store: body limits (413), enrolment rate limits (429), the quarantine
cap, and file modes whatever the umask. The body and file-mode tests run a real uvicorn process."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import sqlalchemy as sa

from sync.server import store as tables
from sync.server.limits import KIB, Limits
from sync.server.store import QUARANTINE_PAYLOAD_MAX, ServerStore
from tests.sync.client_harness import VaultTemplate, vault_template  # noqa: F401 - fixture
from tests.sync.server_harness import TestServer, free_port

MB = 1 << 20


def _chunks(total: int, chunk: int = MB) -> Iterator[bytes]:
    """``total`` bytes in 1 MB pieces, made as they are sent (the test never holds the whole body)."""
    block = b"x" * chunk
    sent = 0
    while sent < total:
        n = min(chunk, total - sent)
        yield block[:n]
        sent += n


@contextlib.contextmanager
def serve(db_url: str, *, umask: int = 0o022, extra: tuple[str, ...] = ()) -> Iterator[tuple[str, psutil.Process]]:
    """`sprx-server serve` on 127.0.0.1 in its own process (under ``umask``); yields its URL and process."""
    port = free_port()
    if not Path(db_url.removeprefix("sqlite:///")).exists():
        ServerStore(db_url).close()  # only `sprx-server init` (or the store API) makes a store
    log = open(os.devnull, "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "sync.server.cli", "serve", "--db", db_url, "--host", "127.0.0.1",
         "--port", str(port), *extra],
        stdout=log, stderr=log, umask=umask,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, "the server exited early"
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        else:
            raise RuntimeError("server did not start")
        yield f"http://127.0.0.1:{port}", psutil.Process(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _rss(p: psutil.Process) -> int:
    return int(p.memory_info().rss)


# -- body limits ------------------------------------------------------------------------------------


def test_a_100_mb_body_to_enrol_gets_413_at_once_and_the_server_does_not_grow(tmp_path: Path) -> None:
    with serve(f"sqlite:///{tmp_path}/s.db") as (url, proc):
        httpx.get(url + "/healthz").raise_for_status()
        before = _rss(proc)
        t0 = time.monotonic()
        r = httpx.post(
            url + "/v1/devices/enrol",
            content=_chunks(100 * MB),
            headers={"Content-Type": "application/json", "Content-Length": str(100 * MB)},
            timeout=30,
        )
        took = time.monotonic() - t0
        growth = _rss(proc) - before
        assert r.status_code == 413
        assert r.json() == {"error": "too_large", "message": "The request is larger than this server accepts."}
        assert took < 1.0, took
        assert growth < 20 * MB, growth / MB
        # The server is still there and still answers.
        assert httpx.get(url + "/healthz").status_code == 200


def test_a_chunked_body_over_the_limit_gets_413_while_it_streams(tmp_path: Path) -> None:
    with serve(f"sqlite:///{tmp_path}/s.db") as (url, proc):
        httpx.get(url + "/healthz").raise_for_status()
        before = _rss(proc)
        t0 = time.monotonic()
        # No Content-Length: httpx sends a generator chunked, so only counting what arrives can stop it.
        r = httpx.post(url + "/v1/sync/push", content=_chunks(100 * MB), timeout=30)
        assert r.status_code == 413 and r.json()["error"] == "too_large"
        assert time.monotonic() - t0 < 5.0
        assert _rss(proc) - before < 20 * MB
        # A push under its own (larger) limit is read: this one is simply not authorised.
        r = httpx.post(url + "/v1/sync/push", content=b"{" + b" " * (100 * KIB) + b"}", timeout=30)
        assert r.status_code == 401


def test_a_lying_content_length_is_cut_off_at_the_limit() -> None:
    """Counted as it arrives, not trusted: a body longer than it declared is refused once over the limit."""
    import asyncio

    from sync.server.limits import BodyLimit

    reached: list[int] = []

    async def app(scope: dict, receive: object, send: object) -> None:
        total = 0
        while True:
            m = await receive()  # type: ignore[operator]
            total += len(m.get("body", b""))
            reached.append(total)
            if not m.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]

    limited = BodyLimit(app, Limits(body_default=1000))
    pieces = [{"type": "http.request", "body": b"x" * 400, "more_body": True} for _ in range(10)]
    sent: list[dict] = []

    async def receive() -> dict:
        return pieces.pop(0)

    async def send(m: dict) -> None:
        sent.append(m)

    scope = {"type": "http", "path": "/anything", "headers": [(b"content-length", b"10")]}
    asyncio.run(limited(scope, receive, send))
    assert sent[0]["status"] == 413 and len(sent) == 2
    assert max(reached) <= 800 and len(pieces) == 7  # the third piece passed the limit; no more was read


def test_the_limits_are_per_path_and_can_be_set(tmp_path: Path) -> None:
    s = TestServer(f"sqlite:///{tmp_path}/s.db", limits=Limits(body_paths={"/v1/devices/enrol": 200}))
    try:
        big = {"code": "ABCDE-FGHJK", "device_name": "x" * 300}
        assert s.client.post("/v1/devices/enrol", json=big).status_code == 413
        small = {"code": "ABCDE-FGHJK", "device_name": "laptop"}
        assert s.client.post("/v1/devices/enrol", json=small).status_code == 401
    finally:
        s.close()


def test_serve_takes_the_limits_as_options(tmp_path: Path) -> None:
    with serve(f"sqlite:///{tmp_path}/s.db", extra=("--max-enrol-body", "1K")) as (url, _proc):
        r = httpx.post(url + "/v1/devices/enrol", json={"code": "ABCDE-FGHJK", "device_name": "x" * 2000})
        assert r.status_code == 413


# -- enrolment rate limit ---------------------------------------------------------------------------


class Seconds:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_forty_wrong_codes_get_429_with_retry_after_and_every_failure_is_logged_without_the_code(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Seconds()
    s = TestServer(f"sqlite:///{tmp_path}/s.db", limits_clock=clock)
    try:
        s.worker("alice")
        caplog.set_level(logging.INFO, logger="sprx.server")
        statuses = []
        for i in range(40):
            r = s.client.post("/v1/devices/enrol", json={"code": f"WRONG-{i:05d}", "device_name": "laptop"})
            statuses.append(r.status_code)
        assert statuses[:10] == [401] * 10
        assert set(statuses[10:]) == {429}
        assert r.json()["error"] == "too_many_attempts"
        wait = int(r.headers["Retry-After"])
        assert 1 <= wait <= 600
        failed = [json.loads(m) for m in caplog.messages if '"enrol_failed"' in m]
        assert len(failed) == 10 and all(f["reason"] == "invalid_code" for f in failed)
        assert not any("WRONG" in m for m in caplog.messages)
        # Even the right code waits: a guesser cannot tell a hit from the limit.
        code, _ = s.store.issue_enrol_code("alice")
        assert s.client.post("/v1/devices/enrol", json={"code": code, "device_name": "laptop"}).status_code == 429
        # Once the window has passed, the right code works at once.
        clock.t += wait
        assert s.client.post("/v1/devices/enrol", json={"code": code, "device_name": "laptop"}).status_code == 201
    finally:
        s.close()


def test_the_overall_limit_holds_across_addresses(tmp_path: Path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    clock = Seconds()
    limits = Limits(enrol_per_address=3, enrol_overall=5, enrol_window_s=60)
    s = TestServer(f"sqlite:///{tmp_path}/s.db", limits_clock=clock, limits=limits)
    try:
        statuses = []
        for i in range(8):
            with TestClient(s.app, client=(f"10.0.0.{i}", 40000)) as c:
                statuses.append(c.post("/v1/devices/enrol", json={"code": "WRONG-CODES", "device_name": "x"}))
        assert [r.status_code for r in statuses] == [401] * 5 + [429] * 3
        assert int(statuses[-1].headers["Retry-After"]) == 60
        clock.t += 61
        with TestClient(s.app, client=("10.0.0.99", 40000)) as c:
            assert c.post("/v1/devices/enrol", json={"code": "WRONG-CODES", "device_name": "x"}).status_code == 401
    finally:
        s.close()


# -- quarantine cap ---------------------------------------------------------------------------------


def test_quarantine_keeps_at_most_a_few_kib_of_a_refused_mutation(tmp_path: Path) -> None:
    s = TestServer(f"sqlite:///{tmp_path}/s.db")
    try:
        s.worker("alice")
        s.worker("bob")
        a = s.laptop("alice")
        b = s.laptop("bob")
        pid = "11111111-1111-4111-8111-111111111111"
        r = a.push([a.mutation("person", pid, "insert", {"given_name": "Ann", "family_name": "Example"})])
        assert r.json()["acks"][0]["status"] == "applied"
        huge = "y" * (6 * MB)  # under the 8 MiB push limit, far over what quarantine may keep
        r = b.push([b.mutation("person", pid, "patch", {"notes": huge, "given_name": "Eve"}, base=1)])
        assert r.status_code == 200 and r.json()["acks"][0]["status"] == "rejected"
        with s.store.engine.connect() as conn:
            rows = conn.execute(sa.select(tables.quarantine)).all()
        assert len(rows) == 1
        kept = rows[0].payload
        assert len(kept) <= QUARANTINE_PAYLOAD_MAX
        summary = json.loads(kept)
        assert summary["truncated"] is True and summary["payload_chars"] > 6 * MB
        assert (summary["tbl"], summary["row_id"], summary["op"]) == ("person", pid, "patch")
        assert sorted(summary["field_names"]) == ["given_name", "notes"]
        assert len(rows[0].detail or "") <= 1000
        # A small refused mutation is kept whole, as before.
        r = b.push([b.mutation("person", pid, "patch", {"given_name": "Eve"}, base=1)])
        assert r.json()["acks"][0]["status"] == "rejected"
        with s.store.engine.connect() as conn:
            small = conn.execute(sa.select(tables.quarantine.c.payload).order_by(tables.quarantine.c.id)).all()[-1]
        assert json.loads(small.payload)["fields"]["given_name"]["v"] == "Eve"
    finally:
        s.close()


# -- a private store --------------------------------------------------------------------------------


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o000])
@pytest.mark.slow  # sprx-server in subprocesses, for each umask
def test_the_server_files_are_private_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    folder = tmp_path / "store"  # made by the server
    db = folder / "server.db"
    url = f"sqlite:///{db}"
    run = {"capture_output": True, "text": True, "umask": umask, "timeout": 120, "check": False}
    r = subprocess.run([sys.executable, "-m", "sync.server.cli", "init", "--db", url], **run)  # type: ignore[call-overload]
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "sync.server.cli", "worker", "add", "alice", "--practice", "P1",
                        "--db", url], **run)  # type: ignore[call-overload]  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "sync.server.cli", "enrol-code", "alice", "--db", url], **run)  # type: ignore[call-overload]
    code = r.stdout.split(": ")[1].split()[0]
    with serve(url, umask=umask) as (base, _proc):
        # A write while the server holds the database open: SQLite's -wal and -shm files exist now.
        r2 = httpx.post(base + "/v1/devices/enrol", json={"code": code, "device_name": "laptop"})
        assert r2.status_code == 201
        wal, shm = Path(str(db) + "-wal"), Path(str(db) + "-shm")
        assert wal.exists() and shm.exists()
        assert {p.name: oct(_mode(p)) for p in (db, wal, shm)} == {p.name: "0o600" for p in (db, wal, shm)}
        assert oct(_mode(folder)) == "0o700"
    out = tmp_path / "tls"
    r = subprocess.run([sys.executable, "-m", "sync.server.cli", "tls-cert", "--out", str(out)], **run)  # type: ignore[call-overload]
    assert r.returncode == 0, r.stderr
    assert oct(_mode(out)) == "0o700"
    assert oct(_mode(out / "server.key")) == "0o600"
    assert oct(_mode(out / "server.crt")) == "0o600"


def test_the_store_itself_makes_its_files_private_and_mends_old_ones(tmp_path: Path) -> None:
    """Not only the command: a ServerStore opened under umask 000 (a test, an embedding) keeps its files private,
    and a database made 0644 by an older version is made 0600 when opened."""
    old = os.umask(0)
    try:
        db = tmp_path / "old.db"
        db.touch(mode=0o644)
        os.chmod(db, 0o644)
        wal = Path(str(db) + "-wal")
        wal.touch()
        os.chmod(wal, 0o644)
        wal.unlink()  # a stale -wal would be replayed; only its mode matters here, so start without it
        st = ServerStore(f"sqlite:///{db}")
        st.add_worker("alice", "P1")
        with st.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
            assert oct(_mode(db)) == "0o600"
            for suffix in ("-wal", "-shm"):
                side = Path(str(db) + suffix)
                assert side.exists() and oct(_mode(side)) == "0o600", suffix
        st.close()
        fresh = tmp_path / "new" / "deeper" / "s.db"
        ServerStore(f"sqlite:///{fresh}").close()
        assert oct(_mode(fresh)) == "0o600"
        assert oct(_mode(fresh.parent)) == "0o700" and oct(_mode(fresh.parent.parent)) == "0o700"
    finally:
        os.umask(old)


def test_an_old_device_table_gains_the_new_columns(tmp_path: Path) -> None:
    """A database made before retirement (and before migrations) existed is refused until `db upgrade`,
    which adds the columns; then it opens and its laptops keep working."""
    from sync.server import migrate
    from sync.server.store import StoreError

    url = f"sqlite:///{tmp_path}/old.db"
    st = ServerStore(url)
    st.add_worker("alice", "P1")
    code, _ = st.issue_enrol_code("alice")
    dev = st.enrol(code, "laptop")
    st.close()
    eng = sa.create_engine(url)
    with eng.begin() as conn:
        for col in ("retired_at", "pending_reported", "pending_reported_at", "erase_told_at"):
            conn.exec_driver_sql(f"ALTER TABLE device DROP COLUMN {col}")
        for col in ("display_name", "removed_at"):
            conn.exec_driver_sql(f"ALTER TABLE worker DROP COLUMN {col}")
        conn.exec_driver_sql("DROP TABLE alembic_version")
    with pytest.raises(StoreError, match="sprx-server db upgrade"):
        ServerStore(url)
    assert migrate.upgrade(eng) == ("pre-migration", migrate.head_revision())
    eng.dispose()
    st = ServerStore(url, create=False)
    try:
        assert st.authenticate(dev["token"]).retired_at is None
        assert st.device_info(dev["device_id"])["pending_reported"] is None
    finally:
        st.close()


# -- the laptop's side of the push limit ------------------------------------------------------------


def test_a_laptop_sends_a_refused_push_again_in_smaller_pages(tmp_path: Path, vault_template: VaultTemplate) -> None:  # noqa: F811
    """A page over the server's push limit is refused whole (413, nothing applied); the laptop halves its
    page and sends the same changes again, so a sync never stops on a page that is simply too big."""
    from tests.sync.client_harness import Net

    limits = Limits(body_paths={"/v1/devices/enrol": 64 * KIB, "/v1/sync/push": 16 * KIB})
    net = Net(tmp_path, vault_template, limits=limits)
    try:
        lap = net.laptop("A")
        for i in range(40):
            person = lap.service.add_person(given_name=f"Person{i}", family_name="Example")
            lap.service.record_contact(person.id, mode="phone", notes="n" * 400)
        r = lap.sync()
        assert r.status == "synced", r.message
        assert not lap.outbox("pending")
        assert lap.dump() == net.server_dump("alice")
        assert lap.transport.count("/v1/sync/push") > 2
    finally:
        net.close()
