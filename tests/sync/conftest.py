"""Fixtures: a server store on SQLite and on a real temporary PostgreSQL cluster."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.sync.server_harness import TestServer, create_database, find_pg_bin, postgres_cluster


@pytest.fixture(scope="session")
def pg_base() -> Iterator[str]:
    """One PostgreSQL cluster for the whole session; each test gets its own database."""
    if find_pg_bin() is None:
        pytest.skip("PostgreSQL is not installed (no initdb); PostgreSQL store tests skipped")
    with postgres_cluster() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('db')}/server.db"
    base = request.getfixturevalue("pg_base")
    return create_database(base, "t_" + uuid.uuid4().hex[:16])


@pytest.fixture
def server(db_url: str) -> Iterator[TestServer]:
    s = TestServer(db_url)
    yield s
    s.close()


@pytest.fixture
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestServer]:
    s = TestServer(f"sqlite:///{tmp_path_factory.mktemp('db')}/server.db")
    yield s
    s.close()
