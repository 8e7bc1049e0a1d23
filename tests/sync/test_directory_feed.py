"""`sprx-server directory pull`: a live Open Referral UK API, served here by a real HTTP server on 127.0.0.1.

The API serves services derived from the vendored Open Referral UK example (tests/data, CC BY-SA 4.0):
`/services?page=N` pages of list items (no locations or schedules, as real list endpoints give) and
`/services/{id}` the full documents. Failures are injected per path: a 500, or an answer slower than
the client's timeout.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

from sprx_rules.hsds import service_id
from sync.server.cli import main as server_main
from sync.server.directory_feed import DETAIL_KEYS, FeedError, FeedState, pull
from sync.server.store import record
from tests.rules.test_directory_formats import derived
from tests.sync.server_harness import TestServer

PAGE_SIZE = 2


class Api:
    """What the fake directory serves, what it was asked, and the failures still to give."""

    def __init__(self, n: int) -> None:
        self.docs = derived(n)
        self.requests: list[str] = []
        self.failures: dict[str, list[str]] = {}  # path (with query) -> ["500" | "slow", ...]
        self.slow_seconds = 1.0
        self.ignore_page = False  # a broken API that always answers page 1 and never says it is the last

    def page(self, n: int) -> dict[str, Any]:
        total_pages = max(1, -(-len(self.docs) // PAGE_SIZE))
        items = [{k: v for k, v in d.items() if k not in DETAIL_KEYS} for d in self.docs]
        contents = items[(n - 1) * PAGE_SIZE : n * PAGE_SIZE]
        return {
            "total_items": len(items), "total_pages": total_pages, "page_number": n, "size": PAGE_SIZE,
            "first_page": n == 1, "last_page": n >= total_pages, "empty": not contents, "contents": contents,
        }  # fmt: skip

    def answer(self, path: str) -> tuple[int, Any]:
        self.requests.append(path)
        todo = self.failures.get(path)
        if todo:
            what = todo.pop(0)
            if what == "slow":
                time.sleep(self.slow_seconds)
            else:
                return 500, {"error": "boom"}
        parts = urlsplit(path)
        if parts.path == "/api/services":
            page = int(parse_qs(parts.query).get("page", ["1"])[0])
            if self.ignore_page:
                return 200, {**self.page(1), "last_page": False, "total_pages": None}
            return 200, self.page(page)
        if parts.path.startswith("/api/services/"):
            sid = parts.path.rsplit("/", 1)[1]
            found = [d for d in self.docs if d["id"] == sid]
            return (200, found[0]) if found else (404, {"error": "not found"})
        return 404, {"error": "not found"}


@pytest.fixture
def api() -> Iterator[tuple[Api, str]]:
    state = Api(5)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            status, body = state.answer(self.path)
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (the timeout case)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{httpd.server_address[1]}/api"
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def directory(server: TestServer, practice: str = "P1") -> dict[str, dict[str, Any]]:
    with server.store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(record.c.id, record.c["values"]).where(
                record.c.tbl == "community_service", record.c.practice_id == practice
            )
        )
        return {r.id: json.loads(r[1]) for r in rows}


def run(server: TestServer, url: str, state: Path, **kw: Any) -> Any:
    kw.setdefault("timeout", 0.5)
    kw.setdefault("retries", 2)
    return pull(server.store, url, "P1", state_path=state, sleep=lambda _s: None, progress=False, **kw)


def test_pull_reads_every_page_and_the_full_documents(
    sqlite_server: TestServer, api: tuple[Api, str], tmp_path: Path
) -> None:
    fake, url = api
    sqlite_server.worker("w1", "P1")
    fake.failures = {"/api/services?page=2": ["slow"], "/api/services/ex-5": ["500"]}
    state = tmp_path / "pull.json"
    result = run(sqlite_server, url, state)
    assert (result.added, result.updated, result.unchanged, result.withdrawn, result.problems) == (5, 0, 0, 0, [])
    assert result.lines == ["Read an Open Referral UK feed: 5 added, 0 changed, 0 withdrawn, 0 unchanged."]
    assert fake.requests.count("/api/services?page=2") == 2  # timed out once, then answered
    assert fake.requests.count("/api/services/ex-5") == 2  # a 500 once, then answered
    assert fake.requests.count("/api/services?page=1") == 1 and not state.exists()
    rows = directory(sqlite_server)
    ex1 = rows[service_id("P1", "ex-1")]
    # The detail came from /services/{id}: the list items had no locations or schedules.
    assert ex1["opening_times"] == "Thursdays and Fridays 10:00–18:00" and ex1["postcode"] == "ABC 1234"
    assert ex1["name"] == "Service 1" and ex1["min_age"] == 12

    again = run(sqlite_server, url, state)
    assert (again.added, again.updated, again.unchanged, again.withdrawn) == (0, 0, 5, 0)
    fake.docs = fake.docs[:4]
    dropped = run(sqlite_server, url, state)
    assert (dropped.unchanged, dropped.withdrawn) == (4, 1)
    gone = directory(sqlite_server)[service_id("P1", "ex-5")]
    assert gone["active"] is False and gone["withdrawn_on"]


def test_a_500_mid_way_stops_plainly_and_the_next_run_resumes(
    sqlite_server: TestServer, api: tuple[Api, str], tmp_path: Path
) -> None:
    fake, url = api
    sqlite_server.worker("w1", "P1")
    fake.failures = {"/api/services?page=3": ["500"] * 3}
    state = tmp_path / "pull.json"
    with pytest.raises(FeedError, match=r"^The directory answered 500 for page 3 \(3 tries\)\.$"):
        run(sqlite_server, url, state)
    saved = FeedState.load(state, url, "P1", "")
    assert (saved.next_page, saved.total_pages, saved.added) == (3, 3, 4)
    assert len(directory(sqlite_server)) == 4  # pages 1 and 2 are kept

    fake.requests.clear()
    result = run(sqlite_server, url, state)
    assert result.lines[0] == "Continued from page 3, where the last run stopped."
    assert (result.added, result.withdrawn) == (5, 0)  # counted over both runs; nothing withdrawn
    assert [r for r in fake.requests if "page=" in r] == ["/api/services?page=3"]
    assert len(directory(sqlite_server)) == 5 and not state.exists()


def test_every_try_timing_out_is_one_sentence(sqlite_server: TestServer, api: tuple[Api, str], tmp_path: Path) -> None:
    fake, url = api
    fake.failures = {"/api/services?page=1": ["slow"] * 2}
    with pytest.raises(FeedError, match=r"^The directory did not answer in time for page 1 \(2 tries\)\.$"):
        run(sqlite_server, url, tmp_path / "s.json", retries=1, timeout=0.3)
    with pytest.raises(FeedError, match="must start with http"):
        run(sqlite_server, "file:///etc/passwd", tmp_path / "s.json")


def test_cli_pull(api: tuple[Api, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake, url = api
    db = f"sqlite:///{tmp_path}/s.db"
    assert server_main(["init", "--db", db]) == 0
    assert server_main(["worker", "add", "w1", "--practice", "P1", "--team", "T1", "--db", db]) == 0
    capsys.readouterr()
    assert server_main(["directory", "pull", url, "--db", db, "--practice", "P1"]) == 0
    out, _ = capsys.readouterr()
    assert out == "Read an Open Referral UK feed: 5 added, 0 changed, 0 withdrawn, 0 unchanged.\n"
    fake.failures = {"/api/services?page=2": ["500"] * 2}
    code = server_main(["directory", "pull", url, "--db", db, "--practice", "P1", "--retries", "1", "--partial"])
    _, err = capsys.readouterr()
    assert code != 0
    assert err.strip() == (
        "The directory answered 500 for page 2 (2 tries). What was read is kept; run the same command again "
        "to continue."
    )
    assert list(tmp_path.glob("s.db.directory-pull-*.json"))  # the place is kept beside the store


def test_an_api_that_ignores_the_page_stops_and_withdraws_nothing(
    sqlite_server: TestServer, api: tuple[Api, str], tmp_path: Path
) -> None:
    fake, url = api
    sqlite_server.worker("w1", "P1")
    assert run(sqlite_server, url, tmp_path / "s.json").added == 5
    fake.ignore_page = True
    result = run(sqlite_server, url, tmp_path / "s.json")
    assert [str(p) for p in result.problems] == [
        "page 2:0: the page repeats services already read, so the pull stopped"
    ]
    assert (result.unchanged, result.withdrawn) == (2, 0)
    assert result.lines[-1] == "The feed did not end cleanly (see the problems above), so no service was withdrawn."
    assert all(v["active"] for v in directory(sqlite_server).values())
