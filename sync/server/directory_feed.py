"""`sprx-server directory pull URL`: the practice's directory from a live Open Referral UK / HSDS 3.0 API.

The API is read page by page (`GET URL/services?page=N`); a list item without its locations and
schedules is fetched whole (`GET URL/services/{id}`, the `service_full` document). Each page is
written as a partial import as soon as it is read, and a small state file records the next page
and the ids seen so far, so a run stopped by a failure continues from the page it stopped at.
After the last page a full pull (the default) withdraws the services of that source the API no
longer lists (`sprx_rules.directory`), and the state file is removed.

Every request has a timeout; a timeout, a connection error, a 429 or a 5xx answer is retried a
bounded number of times with a short growing pause; anything else stops with one plain sentence.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from sprx_rules.directory import ImportPlan, report_lines
from sprx_rules.hsds import HsdsError, Problem, ServiceRecord
from sprx_rules.hsds3 import parse_json_value, service_docs
from sync.server.directory import DirectoryImport, apply_records
from sync.server.log import log_event
from sync.server.store import ServerStore

__all__ = ["FeedError", "FeedState", "default_state_path", "pull"]

MAX_PAGES = 10_000
"""A feed that claims more pages than this is not followed past it (a loop in a broken API)."""
MAX_BODY = 50_000_000
"""The largest answer read (bytes): a page or a service document far beyond any real one is refused."""
DETAIL_KEYS = ("service_at_locations", "schedules")
"""A list item lacking all of these is fetched whole from /services/{id}."""


class FeedError(Exception):
    """The feed cannot be read; one plain sentence (the state file keeps the place for a re-run)."""


@dataclass
class FeedState:
    """Where a pull is: saved after every page, removed when the pull completes."""

    url: str
    practice_id: str
    source: str
    next_page: int = 1
    total_pages: int | None = None
    seen: list[str] = field(default_factory=list)
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    started: str = ""

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(self)), encoding="utf-8")
        os.replace(tmp, path)  # whole or not at all: a crash mid-write keeps the previous state

    @classmethod
    def load(cls, path: Path, url: str, practice_id: str, source: str) -> FeedState:
        """The saved state of this same pull, or a fresh one (another URL, practice or source starts over)."""
        fresh = cls(url=url, practice_id=practice_id, source=source, started=dt.datetime.now(dt.UTC).isoformat())
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            state = cls(**data)
        except (OSError, ValueError, TypeError):
            return fresh
        if (state.url, state.practice_id, state.source) != (url, practice_id, source):
            return fresh
        return state


def default_state_path(db_url: str, practice_id: str, url: str, source: str = "") -> Path:
    """Beside a SQLite store's file, else in the current folder; one file per practice, feed and source."""
    digest = hashlib.sha256(f"{practice_id}\n{url}\n{source}".encode()).hexdigest()[:12]
    name = f"directory-pull-{digest}.json"
    if db_url.startswith("sqlite:///") and db_url != "sqlite:///:memory:":
        db = Path(db_url.removeprefix("sqlite:///"))
        return db.with_name(f"{db.name}.{name}")
    return Path.cwd() / name


@dataclass
class _Http:
    client: httpx.Client
    retries: int
    pause: float
    sleep: Callable[[float], None] = time.sleep

    def json(self, url: str, params: dict[str, Any] | None, what: str) -> Any:
        """GET and parse JSON, retrying timeouts, connection errors, 429 and 5xx up to `retries` times."""
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self.sleep(min(self.pause * 2 ** (attempt - 1), 30.0))
            try:
                status, body = self._get(url, params, what)
            except httpx.TimeoutException:
                last = "did not answer in time"
                continue
            except httpx.TransportError:
                last = "could not be reached"
                continue
            if status == 429 or status >= 500:
                last = f"answered {status}"
                continue
            if status != 200:
                raise FeedError(f"The directory answered {status} for {what}.")
            try:
                return json.loads(body)
            except (ValueError, UnicodeDecodeError):
                raise FeedError(f"The directory sent something that is not JSON for {what}.") from None
        tries = self.retries + 1
        raise FeedError(f"The directory {last} for {what} ({tries} {'try' if tries == 1 else 'tries'}).")

    def _get(self, url: str, params: dict[str, Any] | None, what: str) -> tuple[int, bytes]:
        """(status, body) with the body capped at MAX_BODY: a runaway answer is refused, not held in memory."""
        with self.client.stream("GET", url, params=params) as r:
            if r.status_code != 200:
                return r.status_code, b""
            body = bytearray()
            for chunk in r.iter_bytes():
                body += chunk
                if len(body) > MAX_BODY:
                    raise FeedError(f"The directory sent more than {MAX_BODY // 1_000_000} MB for {what}.")
            return r.status_code, bytes(body)


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise FeedError("The directory address must start with http:// or https://.")
    return url.rstrip("/")


def _page_records(
    http: _Http, base: str, page: int, state: FeedState, problems: list[Problem]
) -> tuple[list[ServiceRecord], dict[str, Any]]:
    data = http.json(f"{base}/services", {"page": page}, f"page {page}")
    if not isinstance(data, dict) or not isinstance(data.get("contents"), list):
        raise FeedError(f"Page {page} of the directory is not a page of services.")
    try:
        docs, _kind = service_docs(data)
    except HsdsError:
        raise FeedError(f"Page {page} of the directory holds no services.") from None
    full_docs: list[Any] = []
    for doc in docs:
        if any(k in doc for k in DETAIL_KEYS) or not str(doc.get("id") or "").strip():
            full_docs.append(doc)
            continue
        sid = str(doc["id"])
        detail = http.json(f"{base}/services/{quote(sid, safe='')}", None, f"service {sid[:60]}")
        full_docs.append(detail if isinstance(detail, dict) and str(detail.get("id")) == sid else doc)
    records = parse_json_value(full_docs, f"page {page}", state.practice_id, state.source, problems)
    return records, data


def _read_pages(
    http: _Http,
    base: str,
    store: ServerStore,
    state: FeedState,
    state_path: Path,
    seen: set[str],
    problems: list[Problem],
    bar: Any,
) -> bool:
    """Read, write and count page after page from state.next_page; True when the feed's last page was read."""
    while state.next_page <= MAX_PAGES:
        page = state.next_page
        records, data = _page_records(http, base, page, state, problems)
        fresh = [r.id for r in records if r.id not in seen]
        if records and not fresh and page > 1:  # an API that ignores ?page= would loop for ever
            problems.append(Problem(f"page {page}", 0, "the page repeats services already read, so the pull stopped"))
            return False
        plan = apply_records(store, records, state.practice_id, full=False, source=state.source, problems=problems)
        seen.update(fresh)
        state.seen += fresh
        state.added, state.changed = state.added + plan.added, state.changed + plan.changed
        state.unchanged += plan.unchanged
        total = data.get("total_pages")
        state.total_pages = total if isinstance(total, int) and total > 0 else state.total_pages
        bar.total = state.total_pages
        bar.update(1)
        state.next_page = page + 1
        state.save(state_path)
        if _last_page(data, page, len(data.get("contents") or [])):
            return True
    problems.append(
        Problem(f"page {state.next_page}", 0, f"the feed has more than {MAX_PAGES} pages; the rest was not read")
    )
    return False


def _last_page(data: dict[str, Any], page: int, n: int) -> bool:
    total = data.get("total_pages")
    if data.get("last_page") is True or n == 0:
        return True
    return isinstance(total, int) and page >= total


def pull(
    store: ServerStore,
    url: str,
    practice_id: str,
    *,
    state_path: Path,
    source: str = "",
    full: bool = True,
    timeout: float = 20.0,
    retries: int = 3,
    pause: float = 1.0,
    progress: bool | None = None,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> DirectoryImport:
    """Read the whole feed (or the rest of it, after a failed run) into the practice's directory.

    Raises FeedError (one plain sentence) when a page cannot be had after the retries; what was read
    so far is written and the state file says where the next run starts.
    """
    from tqdm import tqdm

    base = _check_url(url)
    state = FeedState.load(state_path, base, practice_id, source)
    problems: list[Problem] = []
    resumed_from = state.next_page
    seen = set(state.seen)
    client = httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=False, transport=transport)
    http = _Http(client, retries, pause, sleep)
    bar = tqdm(
        total=state.total_pages, initial=state.next_page - 1, desc="Directory pages", unit="page",
        disable=None if progress is None else not progress, file=sys.stderr, leave=False,
    )  # fmt: skip
    try:
        with client, bar:
            complete = _read_pages(http, base, store, state, state_path, seen, problems, bar)
    finally:
        bar.close()
    # A feed that did not end cleanly (a page repeating earlier ones, too many pages) withdraws nothing.
    final = apply_records(store, [], practice_id, full=full and complete, source=source, held=seen, problems=problems)
    result = DirectoryImport(
        added=state.added, updated=state.changed, unchanged=state.unchanged, withdrawn=final.withdrawn,
        problems=problems, format="feed",
    )  # fmt: skip
    # The report counts the whole pull: the pages before a resume are in the state file's totals.
    summary = ImportPlan(withdrawals=final.withdrawals, unchanged=state.unchanged, full=full)
    summary.inserts = [("", {})] * state.added
    summary.updates = [("", {})] * state.changed
    result.lines = report_lines(summary, "feed", source)
    if full and not complete:
        result.lines.append("The feed did not end cleanly (see the problems above), so no service was withdrawn.")
    if resumed_from > 1:
        result.lines.insert(0, f"Continued from page {resumed_from}, where the last run stopped.")
    state_path.unlink(missing_ok=True)
    log_event(
        "directory_pulled", practice_id=practice_id, pages=state.next_page - 1, added=state.added,
        updated=state.changed, withdrawn=final.withdrawn, unchanged=state.unchanged, problems=len(problems),
    )  # fmt: skip
    return result


def run_command(store: ServerStore, db_url: str, args: Any) -> int:
    """`sprx-server directory pull URL --practice P [--partial] [--source S] [--state F] ...`: the report.

    Exit 0 when the pull completed (problems in single services are listed, not fatal); the caller
    turns a FeedError into its plain-sentence failure.
    """
    from sprx_rules.gate import visible

    state_path = Path(args.state) if args.state else default_state_path(db_url, args.practice, args.url, args.source)
    try:
        result = pull(
            store, args.url, args.practice, state_path=state_path, source=args.source, full=not args.partial,
            timeout=args.timeout, retries=args.retries,
        )  # fmt: skip
    except FeedError as exc:
        raise FeedError(f"{exc} What was read is kept; run the same command again to continue.") from None
    for p in result.problems:
        print(visible(str(p)), file=sys.stderr)
    for line in result.lines:
        print(visible(line))
    return 0
