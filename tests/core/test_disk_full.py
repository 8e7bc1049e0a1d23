"""A full disk is told in one plain sentence on unlock, save, sync and export, and never as damage.

Real failures only: ENOSPC from /dev/full and from a small tmpfs, SQLITE_FULL from SQLite's
max_page_count. The tmpfs tests need to mount one (root, or a CI that allows it) and are skipped,
saying why, where that fails.
"""
# ruff: noqa: F811 - pytest fixtures imported from the sync harness are redefined as parameters

from __future__ import annotations

import errno
import io
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlcipher3
from sqlalchemy import func
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, select

from sprx_tui import cli
from sprx_tui.core import sync as laptop_sync
from sprx_tui.core.diskfull import DISK_FULL, DiskFull, disk_full_as_sentence, is_disk_full
from sprx_tui.core.export import export_csv, export_fhir
from sprx_tui.core.models import Person
from sprx_tui.core.store import CaseStore, open_store
from sprx_tui.core.vault import Vault
from tests.core.conftest import CORE_PASSPHRASE, CoreVaultTemplate, core_pw
from tests.sync.client_harness import FaultTransport, Laptop, Net, net, vault_template  # noqa: F401

DAMAGE_WORDS = ("damaged", "corrupt", "altered", "something went wrong", "unexpected")


def people(store: CaseStore) -> int:
    with Session(store.engine) as s:
        return s.exec(select(func.count()).select_from(Person)).one()


def add_people(store: CaseStore, n: int, prefix: str = "Ann") -> None:
    with store.service.transaction():
        for i in range(n):
            store.service.add_person(given_name=f"{prefix}{i}", family_name="Example " + "x" * 150)


def cap_pages(store: CaseStore, extra: int = 0) -> None:
    """Let the vault's database grow by `extra` pages at most: past that SQLite answers SQLITE_FULL."""
    with store.engine.connect() as conn:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
        conn.exec_driver_sql(f"PRAGMA max_page_count = {pages + extra}").fetchall()


def uncap_pages(store: CaseStore) -> None:
    with store.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA max_page_count = 1073741823").fetchall()


def sqlite_full_error() -> sqlcipher3.OperationalError:
    conn = sqlcipher3.connect(":memory:")
    try:
        conn.execute("CREATE TABLE t (x TEXT)")
        conn.execute("PRAGMA max_page_count = 2")
        with pytest.raises(sqlcipher3.OperationalError) as info:
            for _ in range(100):
                conn.execute("INSERT INTO t VALUES (?)", ("x" * 4000,))
        return info.value
    finally:
        conn.close()


# -- recognising a full disk -------------------------------------------------------------------------


def test_real_enospc_is_a_full_disk() -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system to make a real ENOSPC")
    with pytest.raises(OSError) as info, open("/dev/full", "wb") as f:
        f.write(b"x")
        f.flush()
    assert info.value.errno == errno.ENOSPC
    assert is_disk_full(info.value)


def test_real_sqlite_full_is_a_full_disk_raw_and_wrapped() -> None:
    raw = sqlite_full_error()
    assert raw.sqlite_errorcode == 13 and "database or disk is full" in str(raw)
    assert is_disk_full(raw)
    wrapped = OperationalError("INSERT ...", {}, raw)
    assert is_disk_full(wrapped)
    try:
        try:
            raise wrapped
        except OperationalError:
            raise RuntimeError("a later step") from None  # context kept even when suppressed
    except RuntimeError as later:
        assert is_disk_full(later)


def test_other_errors_are_not_a_full_disk(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-database"
    bad.write_bytes(os.urandom(8192))
    conn = sqlcipher3.connect(str(bad))
    with pytest.raises(sqlcipher3.DatabaseError) as info:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    conn.close()
    assert not is_disk_full(info.value, tmp_path)
    assert not is_disk_full(PermissionError(errno.EACCES, "no"))
    assert not is_disk_full(ValueError("database or disk is full"))
    assert not is_disk_full(None)
    with pytest.raises(ValueError), disk_full_as_sentence():
        raise ValueError("not a disk")


# -- save: a real SQLITE_FULL from max_page_count (always runs) ------------------------------------------


def test_a_save_that_finds_the_disk_full_says_so_and_keeps_everything(core_store: CaseStore) -> None:
    add_people(core_store, 3)
    cap_pages(core_store)
    with pytest.raises(DiskFull) as info:
        add_people(core_store, 40, prefix="Bea")
    assert str(info.value) == DISK_FULL
    uncap_pages(core_store)
    assert people(core_store) == 3  # the failed save wrote nothing, the earlier ones are all there
    add_people(core_store, 40, prefix="Bea")
    assert people(core_store) == 43
    assert core_store.service.verify_audit_chain()


def test_the_app_and_forms_tell_a_full_disk_plainly(core_store: CaseStore) -> None:
    from sprx_tui.app import plain_sentence
    from sprx_tui.screens.forms import report_error

    raw = OperationalError("INSERT ...", {}, sqlite_full_error())
    enospc = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert plain_sentence(raw) == plain_sentence(enospc) == plain_sentence(DiskFull()) == DISK_FULL

    told: list[str] = []

    class Bare:  # a widget whose app has no show_error: forms' own fallback
        app = object()

        def notify(self, message: str, **_kw: object) -> None:
            told.append(message)

    report_error(Bare(), raw)  # type: ignore[arg-type]
    assert told == [DISK_FULL]


# -- sync: a real SQLITE_FULL while applying what the server sent (always runs) -----------------------------


def test_a_sync_that_finds_the_disk_full_says_so_and_resumes(net: Net) -> None:
    a, b = net.laptop("A"), net.laptop("B")
    add_people(a.store, 30)
    assert a.sync().status == "synced"
    cap_pages(b.store)
    r = b.sync()
    assert (r.status, r.message) == ("failed", DISK_FULL)
    assert laptop_sync.sync_status(b.store).last_message == DISK_FULL
    uncap_pages(b.store)
    r = b.sync()
    assert r.status == "synced", r.message
    assert people(b.store) == 30


# -- a small tmpfs: the disk really is full ----------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB tmpfs, unmounted after the test."""
    where = tmp_path / "small-disk"
    where.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", str(where)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a small tmpfs to fill ({type(exc).__name__}); needs root or CAP_SYS_ADMIN")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill ({done.stderr.strip() or 'mount failed'}); needs root")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)


def fill(where: Path) -> Path:
    """Take every free byte of the file system at `where`; delete the returned file to give them back."""
    filler = where / f"filler-{uuid.uuid4().hex}"
    with open(filler, "wb", buffering=0) as f:
        chunk = b"\0" * (1 << 16)
        try:
            while True:
                f.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        for size in (4096, 512, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                pass
    return filler


def vault_on(where: Path, template: CoreVaultTemplate) -> Path:
    dest = where / "vault"
    shutil.copytree(template.path, dest)
    return dest


def run_cli(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    monkeypatch.setattr("sprx_tui.core.db.init_process_security", lambda *_a, **_k: None)
    monkeypatch.setattr("sys.stdin", io.StringIO(CORE_PASSPHRASE + "\n"))
    code = cli.main([*args, "--passphrase-stdin"])
    return code, capsys.readouterr().err


def assert_one_plain_disk_full_line(err: str) -> None:
    assert err.splitlines() == [f"sprx: {DISK_FULL}"], err
    assert not any(word in err.lower() for word in DAMAGE_WORDS)


def test_unlock_on_a_full_disk_is_not_damage(
    small_disk: Path,
    core_empty_template: CoreVaultTemplate,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from sprx_tui.screens.unlock import unlock_and_open

    path = vault_on(small_disk, core_empty_template)
    filler = fill(small_disk)
    vault = Vault(path)
    with pytest.raises(DiskFull) as info:
        vault.unlock(core_pw())
    assert str(info.value) == DISK_FULL and not vault.is_unlocked
    with pytest.raises(DiskFull):  # the app's unlock (the unlock screen shows any VaultError's sentence)
        unlock_and_open(vault, core_pw(), lambda: None)  # type: ignore[arg-type, return-value]
    code, err = run_cli(["check", "--vault", str(path)], monkeypatch, capsys)
    assert code == 1
    assert_one_plain_disk_full_line(err)
    filler.unlink()
    vault.unlock(core_pw())  # nothing was lost
    try:
        assert vault.integrity_check() == []
    finally:
        vault.lock()


def test_save_on_a_full_disk_says_so_and_keeps_everything(
    small_disk: Path, core_empty_template: CoreVaultTemplate
) -> None:
    vault = Vault(vault_on(small_disk, core_empty_template))
    vault.unlock_with_recovery(core_empty_template.recovery)
    try:
        store = open_store(vault)
        add_people(store, 3)
        filler = fill(small_disk)
        with pytest.raises(DiskFull) as info:
            add_people(store, 200, prefix="Bea")
        assert str(info.value) == DISK_FULL
        filler.unlink()
        assert people(store) == 3
        add_people(store, 5, prefix="Cy")
        assert people(store) == 8 and store.service.verify_audit_chain()
    finally:
        vault.lock()


def test_export_to_a_full_disk_says_so_and_leaves_no_partial_files(
    small_disk: Path,
    core_store: CaseStore,
    core_empty_template: CoreVaultTemplate,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    add_people(core_store, 50)
    filler = fill(small_disk)
    with pytest.raises(DiskFull) as info:
        export_csv(core_store, small_disk / "csv")
    assert str(info.value) == DISK_FULL
    with pytest.raises(DiskFull):
        export_fhir(core_store, small_disk / "export.fhir.json")
    assert sorted(p.name for p in small_disk.iterdir()) == [filler.name]  # no partial, unencrypted files
    # The command line says the same, in one line.
    path = tmp_path / "cli-vault"
    shutil.copytree(core_empty_template.path, path)
    for fmt, out in (("csv", small_disk / "cli-csv"), ("fhir", small_disk / "cli.fhir.json")):
        code, err = run_cli(
            ["export", "--vault", str(path), "--format", fmt, "--out", str(out), "--yes"], monkeypatch, capsys
        )
        assert code == 1
        assert_one_plain_disk_full_line(err)
    assert sorted(p.name for p in small_disk.iterdir()) == [filler.name]


@pytest.mark.slow  # a whole sync against a filling disk
def test_sync_on_a_full_disk_says_so_and_resumes(
    small_disk: Path, net: Net, vault_template, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = net.laptop("A")
    add_people(a.store, 300)
    assert a.sync().status == "synced"
    dest = small_disk / "B"
    shutil.copytree(vault_template.path, dest)
    vault = Vault(dest)
    vault.unlock_with_recovery(vault_template.recovery)
    clock = net.clock.laptop()
    b = Laptop("B", open_store(vault, clock=clock), FaultTransport(net.inner), clock, "alice")
    net.laptops.append(b)
    net.enrol(b)
    filler = fill(small_disk)
    r = b.sync()
    assert (r.status, r.message) == ("failed", DISK_FULL)
    filler.unlink()
    r = b.sync()
    assert r.status == "synced", r.message
    assert people(b.store) == 300
