"""The server store under Alembic, on SQLite and PostgreSQL.

- the migrations build exactly the tables in sync/server/store/tables.py (nothing added without one);
- the quick path tests use (``create_all`` then stamp) builds the same schema as the migrations;
- a store as made before migrations (tests/data/server-store-v0.*.sql, written by the code at git
  commit cebbe3a) is refused until `sprx-server db upgrade`, which keeps every row, and then works.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from sync.server import migrate
from sync.server.cli import main
from sync.server.store import ServerStore, StoreError, md
from sync.server.store.tables import make_engine
from tests.sync.server_harness import create_database

DATA = Path(__file__).parents[1] / "data"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite path not yet made, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/server.db"
    return create_database(request.getfixturevalue("pg_base"), "m_" + uuid.uuid4().hex[:16])


def _engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        Path(url.removeprefix("sqlite:///")).touch()
    return make_engine(url)


def schema_of(engine: sa.Engine) -> dict[str, Any]:
    """Everything about the tables a migration could get wrong, as plain values."""
    insp = sa.inspect(engine)
    out: dict[str, Any] = {}
    for t in sorted(insp.get_table_names()):
        out[t] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], c.get("autoincrement"), c.get("default"))
                for c in insp.get_columns(t)
            ],
            "pk": insp.get_pk_constraint(t)["constrained_columns"],
            "fks": sorted(
                (tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]))
                for f in insp.get_foreign_keys(t)
            ),
            "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in insp.get_indexes(t)),
            "uniques": sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(t)),
        }
    return out


def test_the_migrations_build_exactly_the_tables_in_tables_py(empty_url: str) -> None:
    engine = _engine(empty_url)
    try:
        assert migrate.status(engine).state == migrate.EMPTY
        assert migrate.upgrade(engine) == (None, migrate.head_revision())
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), md)
        assert diff == []
        assert migrate.status(engine).state == migrate.CURRENT
    finally:
        engine.dispose()


def test_the_quick_path_for_tests_builds_the_same_schema_as_the_migrations(empty_url: str, tmp_path: Path) -> None:
    """ServerStore(url) on an empty database uses create_all and stamps head: it must equal the migrations."""
    migrated = _engine(empty_url)
    try:
        migrate.upgrade(migrated)
        by_migrations = schema_of(migrated)
    finally:
        migrated.dispose()
    if empty_url.startswith("sqlite"):
        quick_url = f"sqlite:///{tmp_path}/quick.db"
    else:
        quick_url = create_database(empty_url.rsplit("/", 1)[0], "q_" + uuid.uuid4().hex[:12])
    store = ServerStore(quick_url)
    try:
        assert migrate.current_revision(store.engine) == migrate.head_revision()
        assert schema_of(store.engine) == by_migrations
    finally:
        store.close()


# ---------------------------------------------------------------- a store from before migrations


def load_v0(url: str) -> None:
    """Build the pre-migration store from its fixture file (SQL written by the code at cebbe3a)."""
    dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
    lines = (DATA / f"server-store-v0.{dialect}.sql").read_text().splitlines(keepends=True)
    text = "".join(line for line in lines if not line.startswith("--"))
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            for stmt in (s.strip() for s in text.split(";\n")):
                if stmt:
                    conn.exec_driver_sql(stmt)
    finally:
        engine.dispose()


def dump(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of every sprx table, in primary-key order."""
    engine = make_engine(url)
    try:
        names = set(sa.inspect(engine).get_table_names())
        out = {}
        with engine.connect() as conn:
            for t in md.sorted_tables:
                if t.name in names:
                    table = sa.Table(t.name, sa.MetaData(), autoload_with=conn)
                    rows = conn.execute(sa.select(table).order_by(*table.primary_key.columns)).mappings()
                    out[t.name] = [dict(r) for r in rows]
        return out
    finally:
        engine.dispose()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_store_from_before_migrations_upgrades_with_every_row(
    empty_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    load_v0(empty_url)
    before = dump(empty_url)
    assert sum(len(rows) for rows in before.values()) >= 30
    assert all(before[t] for t in ("worker", "device", "record", "change_log", "applied_mutation", "conflict"))
    assert migrate.status(make_engine(empty_url)).state == migrate.LEGACY

    # Everything but `db upgrade` refuses it, naming the command; nothing is changed.
    with pytest.raises(StoreError, match=r"run `sprx-server db upgrade`"):
        ServerStore(empty_url)
    for args in (["device", "list"], ["serve", "--port", "1"], ["db", "current"]):
        code, out, err = run(capsys, *args, "--db", empty_url)
        assert code == 1 and "sprx-server db upgrade" in err and len(err.strip().splitlines()) == 1, (args, err)
    assert dump(empty_url) == before

    code, out, _ = run(capsys, "db", "upgrade", "--db", empty_url)
    assert code == 0 and f"to {migrate.head_revision()}" in out
    after = dump(empty_url)
    for table, rows in before.items():
        # Every row and every value as it was; columns added since are empty.
        assert [{k: r[k] for k in rows[0]} for r in after[table]] == rows, table
        added = set(after[table][0]) - set(rows[0]) if rows else set()
        assert all(r[k] is None for r in after[table] for k in added), table
    code, out, _ = run(capsys, "db", "current", "--db", empty_url)
    assert code == 0 and migrate.head_revision() in out
    code, out, _ = run(capsys, "db", "upgrade", "--db", empty_url)
    assert code == 0 and "nothing to do" in out
    assert dump(empty_url) == after

    # The upgraded store works: its old devices are listed, a new laptop enrols, pushes and pulls.
    store = ServerStore(empty_url, create=False)
    try:
        assert {d["worker_id"] for d in store.list_devices()} == {"asmith", "bjones", "cgreen"}
        seq_before = store.server_info()["seq"]
        code, _ = store.issue_enrol_code("asmith")
        dev = store.authenticate(store.enrol(code, "new laptop")["token"])
        h = (store.now_ms() << 16) | 1
        m = {"mutation_id": 1, "tbl": "person", "row_id": "p-new", "person_id": None, "op": "insert",
             "fields": {"given_name": {"v": "Dee", "hlc": h}}, "hlc": h, "conflict_id": None}  # fmt: skip
        assert store.push(dev, [m])["acks"][0]["status"] == "applied"
        page = store.pull(dev, 0, 500)
        assert "p-new" in {c["id"] for c in page["changes"]}
        assert store.server_info()["seq"] > seq_before  # the counter carries on from the old store's
    finally:
        store.close()


def test_every_migration_downgrades_and_upgrades_again_with_every_row(empty_url: str) -> None:
    from alembic import command

    load_v0(empty_url)
    engine = make_engine(empty_url)
    try:
        migrate.upgrade(engine)
        at_head = dump(empty_url)
        cfg = migrate._config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, migrate.BASELINE)
        assert migrate.status(engine).revision == migrate.BASELINE
        down = dump(empty_url)
        for table, rows in down.items():
            assert rows == [{k: r[k] for k in (rows[0] if rows else {})} for r in at_head[table]], table
        migrate.upgrade(engine)
        assert dump(empty_url) == at_head
    finally:
        engine.dispose()


def test_db_commands_on_a_missing_or_empty_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/none/server.db"
    for args in (["db", "upgrade"], ["db", "current"]):
        code, _, err = run(capsys, *args, "--db", url)
        assert (
            code == 1
            and err.strip()
            == f"There is no server store at {tmp_path}/none/server.db; create it with `sprx-server init`."
        )
    assert not (tmp_path / "none").exists()
    (tmp_path / "empty.db").touch()
    code, _, err = run(capsys, "db", "upgrade", "--db", f"sqlite:///{tmp_path}/empty.db")
    assert code == 1 and "sprx-server init" in err


def test_a_store_from_a_newer_release_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/server.db"
    ServerStore(url).close()
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    engine.dispose()
    for args in (["device", "list"], ["db", "upgrade"], ["db", "current"]):
        code, _, err = run(capsys, *args, "--db", url)
        assert code == 1 and "newer than this sprx-server" in err, args
