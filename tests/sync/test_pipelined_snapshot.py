"""The pipelined first sync (pages fetched ahead while the writer applies): killed anywhere, it resumes
where its last committed page left it and ends identical to an unpipelined first sync."""
# ruff: noqa: F811 - pytest fixtures imported from the harness are redefined as parameters

from __future__ import annotations

import itertools
import json

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst
from sqlmodel import Session, select

from sprx_tui.core.models import SYNCED_MODELS
from sync.server import store as st
from tests.sync.client_harness import Laptop, Net, net, vault_template  # noqa: F401 - fixtures

PAGE = 10
PEOPLE = 18
"""18 people with a goal each: 36 rows, four snapshot pages of 10 (the last short)."""

_names = itertools.count()


def _caseload(net: Net) -> Laptop:
    a = net.laptop("author")
    with a.service.transaction():
        for i in range(PEOPLE):
            p = a.service.add_person(given_name=f"P{i:03d}", family_name="Example")
            a.service.add_goal(p.id, f"goal {i}")
    assert a.sync().status == "synced"
    return a


def _fresh(net: Net) -> Laptop:
    lap = net.laptop(f"L{next(_names)}")
    lap.page = PAGE
    return lap


def _snapshot_pages(lap: Laptop) -> int:
    return lap.transport.count("/v1/sync/snapshot")


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=hst.sampled_from(["network", "writer"]),
    at=hst.integers(min_value=1, max_value=2 * PEOPLE),
)
def test_a_pipelined_first_sync_killed_anywhere_resumes_and_ends_identical(net: Net, kind: str, at: int) -> None:
    if not hasattr(net, "_ref"):
        _caseload(net)
        ref = _fresh(net)
        assert ref.sync(pipeline=False).status == "synced"
        net._ref = (ref.dump(), _snapshot_pages(ref))  # type: ignore[attr-defined]
    ref_dump, ref_pages = net._ref  # type: ignore[attr-defined]
    lap = _fresh(net)
    if kind == "network":
        # The network goes down once ``at`` snapshot requests went out (at most the whole snapshot).
        limit = 1 + at % ref_pages
        lap.transport.refused = lambda: _snapshot_pages(lap) >= limit
        first = lap.sync()
        assert first.status == "offline", first.message
    else:
        # The writer dies at its ``at``-th row (a power cut inside a page transaction).
        def boom(n: int) -> None:
            boom.rows += 1  # type: ignore[attr-defined]
            if boom.rows == at:  # type: ignore[attr-defined]
                raise RuntimeError("power cut")

        boom.rows = 0  # type: ignore[attr-defined]
        from sprx_tui.core.sync import VaultSyncAdapter, sync_now

        local = VaultSyncAdapter(lap.store)
        local.fail_in_page = boom
        first = sync_now(lap.store, transport=lap.transport, local=local, page=PAGE, sleep=lambda _s: None)
        assert first.status == "failed", first.message
    before = _snapshot_pages(lap)
    lap.transport.refused = lambda: False
    again = lap.sync()
    assert again.status == "synced", again.message
    # Resumed where the last committed page left it: at most the uncommitted pages are fetched again.
    assert _snapshot_pages(lap) - before <= ref_pages
    assert lap.dump() == ref_dump


def test_pipelined_and_unpipelined_first_syncs_end_identical_with_the_same_pages(net: Net) -> None:
    _caseload(net)
    serial, piped = _fresh(net), _fresh(net)
    assert serial.sync(pipeline=False).status == "synced"
    r = piped.sync()
    assert r.status == "synced" and r.pulled == 2 * PEOPLE
    assert piped.dump() == serial.dump() == net.server_dump("alice")
    assert _snapshot_pages(piped) == _snapshot_pages(serial) == 4


def test_a_resync_request_mid_snapshot_drops_the_pages_fetched_ahead_and_starts_again(net: Net) -> None:
    author = _caseload(net)
    lap = _fresh(net)
    inner = lap.transport.inner
    seen = {"snapshot": 0}

    class Restoring(httpx.BaseTransport):
        """The server gets a new epoch (a restore) just before the laptop's third snapshot request."""

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.path == "/v1/sync/snapshot":
                seen["snapshot"] += 1
                if seen["snapshot"] == 3:
                    net.server.store.new_epoch()
            return inner.handle_request(request)

    lap.transport.inner = Restoring()
    r = lap.sync()
    assert r.status == "synced", r.message
    assert seen["snapshot"] >= 3 + 4  # refused at the third, then the whole snapshot again from its start
    assert lap.dump() == author.dump() == net.server_dump("alice")


def test_metadata_stored_as_received_reads_back_as_the_servers_and_stamps_the_row(net: Net) -> None:
    """A snapshot asks for meta=raw and stores each row's metadata text as sent: it reads back as the
    server's metadata, and the row's HLC is the newest field stamp in it."""
    _caseload(net)
    lap = _fresh(net)
    assert lap.sync().status == "synced"
    with net.server.store.engine.connect() as c:
        server = {(r.tbl, r.id): json.loads(r.meta) for r in c.execute(sa.select(st.record))}
    seen = 0
    with Session(lap.store.engine) as s:
        for tbl in ("person", "goal"):
            for row in s.exec(select(SYNCED_MODELS[tbl])).all():
                meta = server[(tbl, row.id)]
                assert row.field_meta == meta
                assert row.row_hlc == max(m["hlc"] for m in meta.values())
                seen += 1
    assert seen == 2 * PEOPLE
