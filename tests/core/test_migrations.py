"""Schema migrations on a real SQLCipher vault: a vault made at the first revision upgrades with every row intact."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, text
from sqlalchemy.exc import DatabaseError

from sprx_tui.core import migrations
from sprx_tui.core.models import SQLModel
from sprx_tui.core.service import CaseService
from sprx_tui.core.store import load_actor, open_store
from sprx_tui.core.vault import FLOOR, Vault

PASSPHRASE = b"walking group on tuesday"
NOW = dt.datetime(2026, 11, 23, 10, 30, tzinfo=dt.UTC)
# Made by vault.py (not a model) and by 0002 (indexes for the caseload's sort keys, not declared on the model).
KNOWN_OUTSIDE_MODELS = {"vault_meta", "ix_person_family_name", "ix_person_last_contact", "ix_person_next_follow_up"}


def tables(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")).all()
    return [r[0] for r in rows if r[0] not in ("alembic_version", "sqlite_sequence")]


def dump(engine: Engine) -> dict[str, list[tuple]]:
    out = {}
    with engine.connect() as conn:
        for name in tables(engine):
            out[name] = [tuple(r) for r in conn.execute(text(f"SELECT * FROM {name} ORDER BY rowid")).all()]
    return out


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
    # Rows written through the service as the 0001-era app would have written them ...
    svc = CaseService(engine, load_actor(engine), clock=lambda: NOW)
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
        after = dump(engine)
        for name, rows in before.items():
            assert after[name] == rows, name
        assert {"audit_no_update", "audit_no_delete"} <= objects(engine, "trigger")
        assert {"ix_person_family_name", "ix_person_next_follow_up", "ix_person_last_contact"} <= objects(
            engine, "index"
        )
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
