"""Schema migrations on a real SQLCipher vault: a vault made at the first revision upgrades with every row intact."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, event, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DatabaseError
from sqlalchemy.schema import CreateIndex

from sprx_tui.core import migrations
from sprx_tui.core.models import SQLModel
from sprx_tui.core.service import CaseService
from sprx_tui.core.store import load_actor, open_store
from sprx_tui.core.vault import FLOOR, Vault

PASSPHRASE = b"walking group on tuesday"
NOW = dt.datetime(2026, 11, 23, 10, 30, tzinfo=dt.UTC)
# Made by vault.py, not a model.
KNOWN_OUTSIDE_MODELS = {"vault_meta"}
# Indexes 0004 replaces (0002's caseload sort keys, 0001's follow-ups by status and date) and the ones it adds.
INDEXES_REPLACED = {
    "ix_person_family_name",
    "ix_person_next_follow_up",
    "ix_person_last_contact",
    "ix_follow_up_status_due",
}
INDEXES_0004 = {
    "ix_person_caseload_name",
    "ix_person_caseload_status",
    "ix_person_caseload_next",
    "ix_person_caseload_last",
    "ix_person_names",
    "ix_follow_up_person_open",
    "ix_follow_up_due",
    "ix_referral_person",
    "ix_referral_new",
}
# 0006 replaces ix_referral_new with ix_referral_triage (new referrals urgent first).
INDEXES_HEAD = (INDEXES_0004 - {"ix_referral_new"}) | {"ix_referral_triage"}


def tables(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")).all()
    return [r[0] for r in rows if r[0] not in ("alembic_version", "sqlite_sequence")]


def dump(engine: Engine, widths: dict[str, int] | None = None) -> dict[str, list[tuple]]:
    """Every row of every table; with `widths`, only each table's first N columns (those it had before)."""
    out = {}
    with engine.connect() as conn:
        for name in tables(engine):
            rows = [tuple(r) for r in conn.execute(text(f"SELECT * FROM {name} ORDER BY rowid")).all()]
            width = (widths or {}).get(name)
            out[name] = [row[:width] for row in rows] if width else rows
    return out


def columns(engine: Engine, table: str) -> list[str]:
    with engine.connect() as conn:
        return [r[1] for r in conn.execute(text(f"PRAGMA table_info({table})")).all()]


def copy_rows(src: Engine, dst: Engine) -> None:
    """Copy every row of `src`'s tables into the same tables of `dst`, in the columns `dst` has."""
    # Each vault has one shared connection: read the layouts first, then copy.
    layout = {name: columns(dst, name) for name in tables(dst) if name not in KNOWN_OUTSIDE_MODELS}
    have = {name: set(columns(src, name)) for name in layout}
    with src.connect() as read:
        found = {}
        for name, cols in layout.items():
            listed = ", ".join(c for c in cols if c in have[name])
            found[name] = [r._asdict() for r in read.execute(text(f"SELECT {listed} FROM {name} ORDER BY rowid"))]
    with dst.begin() as write:
        for name, rows in found.items():
            if rows:
                listed = ", ".join(rows[0])
                marks = ", ".join(f":{c}" for c in rows[0])
                write.execute(text(f"INSERT INTO {name} ({listed}) VALUES ({marks})"), rows)


def objects(engine: Engine, kind: str) -> set[str]:
    with engine.connect() as conn:
        return {r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type = :k"), {"k": kind})}


@pytest.fixture(scope="module")
def old_vault(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[tuple]]]:
    """A vault built at revision 0001 and filled with rows at that revision; left locked."""
    path = tmp_path_factory.mktemp("migrate") / "vault"
    vault, _ = Vault.create(path, bytearray(PASSPHRASE), kdf=FLOOR)
    engine = vault.engine
    migrations.upgrade(engine, "0001")
    assert migrations.current_revision(engine) == "0001"
    assert "audit_no_update" not in objects(engine, "trigger")
    # Rows written through the service as the 0001-era app would have written them: today's service
    # writes them into a scratch vault at head, and the columns that existed at 0001 are copied across
    # (the models have columns later revisions add, so they cannot write into a 0001 schema directly).
    scratch, _ = Vault.create(tmp_path_factory.mktemp("migrate-head") / "vault", bytearray(PASSPHRASE), kdf=FLOOR)
    migrations.upgrade(scratch.engine)
    svc = CaseService(scratch.engine, load_actor(scratch.engine), clock=lambda: NOW)
    p = svc.add_person(given_name="Ada", family_name="Ashdown", nhs_number="9992914173", postcode="LS1 4AP")
    r = svc.receive_referral(p.id, source="gp", reasons=["loneliness"], received_on=dt.date(2026, 11, 1))
    c = svc.accept_referral(r.id, mode="home_visit", notes="First visit.", follow_up_on=dt.date(2026, 11, 30))
    svc.amend_contact(c.id, "The son was present.", "Detail missed")
    g = svc.add_goal(p.id, "Go to the walking group")
    svc.add_action(g.id, "Find the meeting point")
    svc.record_what_matters(p.id, "Someone to talk to.", life_area="connection")
    svc.record_need(p.id, "loneliness")
    svc.record_outcome(p.id, "UCLA3", "baseline", {"companionship": 3, "left_out": 2, "isolated": None})
    svc.save_draft("contact:new", {"notes": "unsaved words"})
    copy_rows(scratch.engine, engine)
    scratch.lock()
    # ... and rows put in with raw SQL, as an older client or an import might have.
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO person (id, practice_id, person_id, row_hlc, field_meta, server_seq, deleted, created_at, "
                "created_by, created_on_device, nhs_number, given_name, family_name, consent_social_prescribing, "
                "consent_gp_sharing, safety_flags, status, search_text) VALUES ('legacy-1', 'local', 'legacy-1', 5, "
                "'{}', 17, 0, '2025-01-02 03:04:05.000000', 'old', 'old-dev', '9997763173', 'Bilal', 'Birch', 1, "
                "'codes_only', '[\"animals\"]', 'active', 'bilal birch 9997763173')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO community_service (id, practice_id, organisation, name, description, categories, needs, "
                "area, address, postcode, phone, email, url, eligibility, cost, referral_route, opening_times, "
                "accessibility, active, source_id, search_text) VALUES ('svc-1', 'local', 'Trust', 'Walking group', "
                "'', '[\"walking\"]', '[]', 'Leeds', '', '', '', '', '', '', 'Free', '', '', '', 1, 'src', 'walking')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO sync_conflict (id, tbl, row_id, person_id, field, kind, values_json, shown_idx, status) "
                "VALUES ('conf-1', 'goal', :g, :p, 'text', 'concurrent_edit', '[]', 0, 'open')"
            ),
            {"g": g.id, "p": p.id},
        )
    before = dump(engine)
    vault.lock()
    return path, before


def test_upgrade_from_first_revision_keeps_every_row(old_vault: tuple[Path, dict[str, list[tuple]]]) -> None:
    path, before = old_vault
    assert sum(len(rows) for rows in before.values()) > 30
    vault = Vault(path)
    vault.unlock(bytearray(PASSPHRASE))
    try:
        store = open_store(vault, clock=lambda: NOW)  # upgrades to head
        engine = store.engine
        assert migrations.current_revision(engine) == migrations.head_revision()
        after = dump(engine, {name: len(rows[0]) if rows else 0 for name, rows in before.items()})
        for name, rows in before.items():
            # Columns later revisions add come after the old ones; the old ones are unchanged.
            assert after[name] == rows, name
        assert {"audit_no_update", "audit_no_delete"} <= objects(engine, "trigger")
        indexes = objects(engine, "index")
        assert INDEXES_HEAD <= indexes and not (INDEXES_REPLACED | {"ix_referral_new"}) & indexes
        # The upgraded vault works: the audit chain written at 0001 verifies and continues.
        assert store.service.verify_audit_chain()
        store.service.update_person("legacy-1", family_name="Barlow")
        assert store.service.verify_audit_chain()
        with pytest.raises(DatabaseError, match="append-only"), engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_event"))
        assert [r.name for r in store.queries.caseload(text="barlow")[0]] == ["Bilal Barlow"]
        # Upgrading again is a no-op.
        settled = dump(engine)
        migrations.upgrade(engine)
        assert dump(engine) == settled
        assert migrations.current_revision(engine) == migrations.head_revision()
    finally:
        vault.lock()


@pytest.mark.filterwarnings("ignore:.*expression-based index")  # compared in the next test instead
def test_migrations_match_the_models(core_store) -> None:
    """A model column or table added without a migration shows up here, before it reaches a laptop."""
    with core_store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    unexplained = []
    for change in diff:
        obj = change[1] if isinstance(change, tuple) else None
        name = getattr(obj, "name", None)
        if name not in KNOWN_OUTSIDE_MODELS:
            unexplained.append(change)
    assert unexplained == []


def _index_sql(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")).all()
    return {name: " ".join(sql.split()) for name, sql in rows}


def test_expression_indexes_match_the_models(core_store) -> None:
    """Alembic cannot reflect indexes on expressions, so compare their SQL with the models' by hand."""
    in_vault = _index_sql(core_store.engine)
    declared = {
        index.name: " ".join(str(CreateIndex(index).compile(dialect=sqlite.dialect())).split())
        for table in SQLModel.metadata.tables.values()
        for index in table.indexes
        if any(not hasattr(expr, "name") for expr in index.expressions)
    }
    assert set(declared) == {"ix_person_caseload_next", "ix_person_caseload_last", "ix_referral_triage"}
    for name, sql in declared.items():
        assert in_vault[name] == sql, name


def _plans(store, fn) -> list[str]:
    """Run `fn` and return SQLite's query plan for every SELECT it issued against the vault."""
    seen: list[tuple[str, object]] = []

    def record(conn, cursor, statement, params, context, executemany) -> None:
        if statement.lstrip().upper().startswith("SELECT") and not executemany:
            seen.append((statement, params))

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        fn()
    finally:
        event.remove(store.engine, "before_cursor_execute", record)
    plans = []
    with store.engine.connect() as conn:
        for statement, params in seen:
            steps = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).all()
            plans.append(" | ".join(step[3] for step in steps))
    return plans


@pytest.mark.parametrize("status", [None, "active"])
@pytest.mark.parametrize("sort", ["name", "next_follow_up", "last_contact", "status"])
@pytest.mark.parametrize("filter_text", ["", "ab", "999 123"])
def test_caseload_pages_and_counts_from_covering_indexes(core_store, sort: str, status: str | None, filter_text: str):
    """The caseload never sorts in a temporary b-tree and its count never reads a person row (0004)."""
    store = core_store
    store.service.add_person(given_name="Ada", family_name="Abbot", nhs_number="9992914173", postcode="LS1 4AP")
    count_plan, page_plan = _plans(
        store, lambda: store.queries.caseload(text=filter_text, status=status, sort=sort, limit=100)
    )
    assert "COVERING INDEX" in count_plan, count_plan
    assert "TEMP B-TREE" not in page_plan and "ix_person_caseload_" in page_plan, page_plan


def test_saving_a_contact_looks_up_only_that_persons_follow_ups(core_store) -> None:
    """Before 0004 each save walked every open follow-up of the practice (ix_follow_up_status_due)."""
    svc = core_store.service
    person = svc.add_person(given_name="Ada", family_name="Abbot")
    svc.set_follow_up(person.id, NOW.date() + dt.timedelta(days=3))
    plans = _plans(core_store, lambda: svc.record_contact(person.id, mode="phone", notes="Called."))
    follow_up_plans = [p for p in plans if "follow_up" in p]
    assert follow_up_plans and all(
        "ix_follow_up_person_open (person_id=? AND status=? AND deleted=?" in p for p in follow_up_plans
    ), follow_up_plans


@pytest.mark.slow  # one of the longest fast-tier tests (3-7 s on 2 busy cores): make test runs it, make check does not
def test_0004_downgrades_and_upgrades_again_with_every_row(old_vault: tuple[Path, dict[str, list[tuple]]]) -> None:
    path, first_rows = old_vault
    vault = Vault(path)
    vault.unlock(bytearray(PASSPHRASE))
    try:
        store = open_store(vault, clock=lambda: NOW)
        engine = store.engine
        before = dump(engine)
        assert sum(len(rows) for rows in before.values()) >= sum(len(rows) for rows in first_rows.values())
        cfg = migrations._config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0003")
        assert migrations.current_revision(engine) == "0003"
        indexes = objects(engine, "index")
        assert INDEXES_REPLACED <= indexes and not INDEXES_0004 & indexes
        # 0005's count table and 0007's quarantine go with the downgrade, and the columns later revisions
        # added (always at the end of a table); every other row is as it was.
        widths = {name: len(columns(engine, name)) for name in tables(engine)}
        assert dump(engine) == {
            k: [row[: widths[k]] for row in v] for k, v in before.items() if k in widths and k != "sync_outbox_pending"
        }
        migrations.upgrade(engine)
        indexes = objects(engine, "index")
        assert INDEXES_HEAD <= indexes and not (INDEXES_REPLACED | {"ix_referral_new"}) & indexes
        assert dump(engine) == before
        assert [r.name for r in store.queries.caseload(text="ada")[0]] == ["Ada Ashdown"]
    finally:
        vault.lock()


def test_a_persons_referrals_and_today_read_through_their_indexes(core_store) -> None:
    """0004: no full scan of referrals per person opened, and Today's lists come from index entries alone."""
    svc, q = core_store.service, core_store.queries
    person = svc.add_person(given_name="Ada", family_name="Abbot")
    svc.receive_referral(person.id, source="gp", reasons=["loneliness"])
    svc.set_follow_up(person.id, NOW.date())
    referrals, due, overdue, new = _plans(
        core_store, lambda: (q.referrals(person.id), q.due_today(), q.overdue(), q.new_referrals())
    )
    assert "USING INDEX ix_referral_person (person_id=? AND deleted=?)" in referrals, referrals
    for plan in (due, overdue):
        assert "COVERING INDEX ix_follow_up_due (status=? AND deleted=? AND due_on" in plan, plan
        assert "COVERING INDEX ix_person_names (id=?" in plan, plan
    # 0006: in triage order (urgent first) from ix_referral_triage, not by sorting every waiting referral.
    assert "ix_referral_triage (status=? AND deleted=?)" in new and "TEMP B-TREE FOR ORDER BY" not in new, new
    assert [r.name for r in q.due_today()] == ["Ada Abbot"] and [r.name for r in q.new_referrals()] == ["Ada Abbot"]


def outbox_pending(engine: Engine) -> tuple[int, int]:
    """(the count kept by 0005's triggers, the count of pending outbox rows)."""
    with engine.connect() as conn:
        kept = conn.execute(text("SELECT n FROM sync_outbox_pending WHERE id = 1")).scalar_one()
        counted = conn.execute(text("SELECT count(*) FROM sync_outbox WHERE status = 'pending'")).scalar_one()
    return int(kept), int(counted)


@pytest.mark.slow  # one of the longest fast-tier tests (3-7 s on 2 busy cores): make test runs it, make check does not
def test_0005_keeps_the_pending_count_through_writes_acks_and_deletes(
    old_vault: tuple[Path, dict[str, list[tuple]]],
) -> None:
    path, _first_rows = old_vault
    vault = Vault(path)
    vault.unlock(bytearray(PASSPHRASE))
    try:
        store = open_store(vault, clock=lambda: NOW)
        engine = store.engine
        kept, counted = outbox_pending(engine)
        assert kept == counted > 0  # counted once by the upgrade, from the rows the 0001-era app wrote
        assert store.queries.pending_changes() == counted
        person = store.service.add_person(given_name="Cai", family_name="Cole", postcode="LS2 9JT")
        store.service.record_contact(person.id, mode="phone", notes="Rang to arrange a visit.")
        kept, counted = outbox_pending(engine)
        assert kept == counted
        with engine.begin() as conn:
            first = conn.execute(text("SELECT min(mutation_id) FROM sync_outbox")).scalar_one()
            conn.execute(text("UPDATE sync_outbox SET status = 'acked' WHERE mutation_id <= :m + 2"), {"m": first})
            conn.execute(text("UPDATE sync_outbox SET status = 'rejected' WHERE mutation_id = :m + 3"), {"m": first})
            conn.execute(text("UPDATE sync_outbox SET attempts = attempts + 1"))  # not a status change
            conn.execute(text("UPDATE sync_outbox SET status = 'pending' WHERE mutation_id = :m + 3"), {"m": first})
            conn.execute(text("DELETE FROM sync_outbox WHERE mutation_id IN (:m, :m + 4)"), {"m": first})
        kept, counted = outbox_pending(engine)
        assert kept == counted
        assert store.queries.pending_changes() == counted
        cfg = migrations._config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0004")
        assert "sync_outbox_pending" not in objects(engine, "table")
        assert not {t for t in objects(engine, "trigger") if t.startswith("sync_outbox_pending")}
        migrations.upgrade(engine)
        assert outbox_pending(engine) == (counted, counted)
    finally:
        vault.lock()
