"""No plaintext personal data on disk, in logs or in exception text: after `sprx demo`, while open, after lock."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import sqlite3
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from sprx_tui.core import demo
from sprx_tui.core.models import Contact, Person, WhatMatters
from sprx_tui.core.store import CaseStore, open_store
from sprx_tui.core.vault import Vault

SIDE_FILES = ("sprx.db", "sprx.db-wal", "sprx.db-shm", "sprx.db-journal")


@dataclass
class Secrets:
    needles: list[bytes]  # what must never appear on disk in the clear
    nhs_numbers: list[str]
    names: list[str]
    person: Person


def vault_files(path: Path) -> dict[str, bytes]:
    return {name: (path / name).read_bytes() for name in SIDE_FILES if (path / name).exists()}


def found(data: dict[str, bytes], needles: list[bytes]) -> list[tuple[str, bytes]]:
    return [(name, n) for name, blob in data.items() for n in needles if n in blob]


@pytest.fixture(scope="module")
def leak_vault(tmp_path_factory: pytest.TempPathFactory, core_cli_demo) -> Iterator[tuple[Path, str]]:
    assert core_cli_demo.returncode == 0, core_cli_demo.stderr
    path = tmp_path_factory.mktemp("leaks") / "vault"
    shutil.copytree(core_cli_demo.path, path)
    yield path, core_cli_demo.recovery


@pytest.fixture(scope="module")
def secrets(leak_vault: tuple[Path, str]) -> Secrets:
    """The demo people's names, NHS numbers and postcodes, and the sentences written about them."""
    path, recovery = leak_vault
    vault = Vault(path)
    vault.unlock_with_recovery(recovery)
    try:
        with Session(vault.engine, expire_on_commit=False) as s:
            people = s.exec(select(Person)).all()
            notes = [c.notes for c in s.exec(select(Contact)).all()]
            matters = [w.text for w in s.exec(select(WhatMatters)).all()]
    finally:
        vault.lock()
    assert len(people) >= 5 and notes
    words: set[str] = set()
    nhs: list[str] = []
    for p in people:
        # Short given names (3 letters) would match random ciphertext by chance; 4+ letters will not.
        words.update(w for w in (p.given_name, p.family_name) if len(w) >= 4)
        words.update(w.lower() for w in (p.given_name, p.family_name) if len(w) >= 4)
        if p.postcode:
            words.update({p.postcode, p.postcode.replace(" ", "").lower()})
        if p.nhs_number:
            nhs.append(p.nhs_number)
            words.add(p.nhs_number)  # stored as ten digits; the 3-3-4 form is only for display
    sentences = {sentence for note in notes for sentence in demo.NOTE_BODIES if sentence in note}
    assert sentences, "the demo notes should use demo.py's sentences"
    words.update(sentences)
    words.update(matters)
    return Secrets(
        needles=sorted(w.encode() for w in words),
        nhs_numbers=nhs,
        names=[f"{p.given_name} {p.family_name}" for p in people] + [p.family_name for p in people],
        person=people[0],
    )


def test_detector_finds_the_data_in_a_plaintext_copy(leak_vault: tuple[Path, str], secrets: Secrets, tmp_path):
    """The search below can fail: decrypted with sqlcipher_export, the same vault shows every secret."""
    path, recovery = leak_vault
    copy = tmp_path / "vault"
    shutil.copytree(path, copy)
    vault = Vault(copy)
    vault.unlock_with_recovery(recovery)
    plain = tmp_path / "plain.db"
    try:
        with vault.engine.connect() as conn:
            conn.exec_driver_sql(f"ATTACH DATABASE '{plain}' AS plaintext KEY ''")
            conn.exec_driver_sql("SELECT sqlcipher_export('plaintext')")
            conn.exec_driver_sql("DETACH DATABASE plaintext")
    finally:
        vault.lock()
    data = {"plain.db": plain.read_bytes()}
    assert data["plain.db"].startswith(b"SQLite format 3")
    missing = [n for n in secrets.needles if not found(data, [n])]
    assert missing == []


def test_demo_vault_at_rest_has_no_plaintext(leak_vault: tuple[Path, str], secrets: Secrets) -> None:
    path, _ = leak_vault
    data = vault_files(path)
    assert "sprx.db" in data and len(data["sprx.db"]) > 100_000
    assert found(data, secrets.needles) == []
    assert found(data, [b"SQLite format 3", b"CREATE TABLE"]) == []
    assert sorted(p.name for p in path.iterdir()) == ["sprx.db", "sprx.key"]
    key_file = (path / "sprx.key").read_bytes()
    assert found({"sprx.key": key_file}, secrets.needles) == []


def test_stdlib_sqlite_cannot_read_the_vault(leak_vault: tuple[Path, str]) -> None:
    path, _ = leak_vault
    conn = sqlite3.connect(f"file:{path / 'sprx.db'}?mode=ro", uri=True)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="not a database"):
            conn.execute("SELECT name FROM sqlite_master").fetchall()
    finally:
        conn.close()


@pytest.fixture
def open_copy(leak_vault: tuple[Path, str], tmp_path: Path) -> Iterator[CaseStore]:
    path, recovery = leak_vault
    copy = tmp_path / "vault"
    shutil.copytree(path, copy)
    vault = Vault(copy)
    vault.unlock_with_recovery(recovery)
    store = open_store(vault, clock=lambda: dt.datetime(2026, 11, 23, 10, 30, tzinfo=dt.UTC))
    yield store
    if vault.is_unlocked:
        vault.lock()


def test_no_plaintext_while_open_and_after_lock(open_copy: CaseStore, secrets: Secrets) -> None:
    store = open_copy
    path = store.vault.path
    svc = store.service
    # Fresh writes of personal data: these pages sit in the WAL until the checkpoint at lock.
    p = svc.add_person(given_name="Quillon", family_name="Marchbanks", nhs_number="9990669074", postcode="LS6 2QT")
    svc.record_contact(p.id, mode="home_visit", notes=demo.NOTE_BODIES[0])
    svc.update_person(secrets.person.id, preferred_name="Tibbleworth")
    store.queries.caseload(text="marchbanks")
    extra = [b"Quillon", b"Marchbanks", b"marchbanks", b"9990669074", b"999 066 9074", b"LS6 2QT", b"Tibbleworth"]
    open_files = vault_files(path)
    assert len(open_files.get("sprx.db-wal", b"")) > 0, "the open store should have a write-ahead log"
    assert found(open_files, secrets.needles + extra) == []
    assert found(open_files, [b"SQLite format 3"]) == []
    store.vault.lock()
    closed = vault_files(path)
    assert not closed.get("sprx.db-wal")  # checkpointed and truncated (or removed) at lock
    assert found(closed, secrets.needles + extra) == []
    assert {p.name for p in path.iterdir()} <= {"sprx.db", "sprx.key", "sprx.db-wal", "sprx.db-shm"}


@pytest.fixture
def sqlalchemy_debug(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Everything at DEBUG, including SQLAlchemy's engine logger (off by default even under a DEBUG root)."""
    engine_logger = logging.getLogger("sqlalchemy.engine")
    old = engine_logger.level
    caplog.set_level(logging.DEBUG)
    engine_logger.setLevel(logging.DEBUG)
    try:
        yield caplog
    finally:
        engine_logger.setLevel(old)


def test_debug_logging_never_writes_result_rows(open_copy: CaseStore, secrets: Secrets, sqlalchemy_debug) -> None:
    """With sqlalchemy.engine at DEBUG, SQLAlchemy would log every row it reads; db.py filters those records out."""
    store = open_copy
    victim = secrets.person
    rows, _total = store.queries.caseload(limit=100)
    assert rows and store.queries.person(victim.id) is not None
    store.queries.timeline(victim.id)
    logged = sqlalchemy_debug.text
    assert "FROM person" in logged  # the statements were logged; the rows they returned were not
    for value in [*secrets.nhs_numbers, *secrets.names]:
        if len(value) >= 4:
            assert value not in logged


def test_integrity_error_holds_no_personal_data(open_copy: CaseStore, secrets: Secrets, sqlalchemy_debug, capfd):
    store = open_copy
    victim = secrets.person
    assert victim.nhs_number
    texts: list[str] = []
    # A duplicate id forced through the service's own transaction (the ORM flush at commit).
    with pytest.raises(IntegrityError) as first:
        with store.service.transaction() as session:
            session.add(
                Person(
                    id=victim.id,
                    practice_id="local",
                    person_id=victim.id,
                    given_name=victim.given_name,
                    family_name=victim.family_name,
                    nhs_number=victim.nhs_number,
                    postcode=victim.postcode,
                )
            )
    texts += [str(first.value), "".join(traceback.format_exception(first.value))]
    # And through the engine with a raw statement carrying the same values as bound parameters.
    with pytest.raises(IntegrityError) as second:
        with store.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO person (id, practice_id, person_id, row_hlc, field_meta, deleted, created_at, "
                    "created_by, created_on_device, nhs_number, given_name, family_name, "
                    "consent_social_prescribing, consent_gp_sharing, safety_flags, status, search_text) "
                    "VALUES (:id, 'local', :id, 0, '{}', 0, '2026-11-23 10:30:00', '', '', :nhs, :given, :family, "
                    "0, 'full', '[]', 'active', :search)"
                ),
                {
                    "id": victim.id,
                    "nhs": victim.nhs_number,
                    "given": victim.given_name,
                    "family": victim.family_name,
                    "search": f"{victim.given_name} {victim.family_name}",
                },
            )
    texts += [str(second.value), "".join(traceback.format_exception(second.value))]
    assert "UNIQUE constraint failed" in texts[0] and "UNIQUE constraint failed" in texts[2]
    assert "hidden due to hide_parameters" in sqlalchemy_debug.text  # the statements were logged, values were not
    captured = capfd.readouterr()
    texts += [sqlalchemy_debug.text, captured.out, captured.err]
    blob = "\n".join(texts)
    for value in [*secrets.nhs_numbers, victim.nhs_number, f"{victim.given_name} {victim.family_name}"]:
        assert value not in blob
    assert victim.family_name not in blob
    assert victim.postcode not in blob
