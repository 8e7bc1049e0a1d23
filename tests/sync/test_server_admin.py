"""`sprx-server` admin commands that check what they are told (issue 11, item 5).

Each command runs in-process through ``sync.server.cli.main`` against a real store: a SQLite file in a
temporary folder, and a database in the test PostgreSQL cluster.
Every refusal is one sentence on standard error and exit status 1.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from sync.server.cli import main
from sync.server.importer import COLUMNS
from sync.server.store import ServerStore, StoreError

NHS_ANN = "9434765919"  # valid check digits; synthetic people only
NHS_BOB = "4010232137"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run a command that must be refused: exit 1, one sentence, no traceback; returns the sentence."""
    code, out, err = run(capsys, *args)
    assert code == 1, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def url(db_url: str) -> str:
    """A store on SQLite, and on PostgreSQL (tests/sync/conftest.py), at the newest schema as `init` makes it."""
    ServerStore(db_url).close()
    return db_url


@pytest.fixture
def store(url: str) -> Iterator[ServerStore]:
    s = ServerStore(url)
    yield s
    s.close()


def add_person(store: ServerStore, worker: str, nhs: str, given: str, family: str) -> str:
    """A person as the referral import makes them (assigned to ``worker``); returns their id."""
    person = {"nhs_number": nhs, "given_name": given, "family_name": family, "date_of_birth": "1950-02-03"}
    referral = {"source": "gp", "received_on": "2025-03-01", "reasons": [], "urgency": "routine"}
    assert store.import_referral(worker, nhs, person, "2025-03-01", "gp", referral) == "imported"
    pid = store.find_person_by_nhs(store.get_worker(worker).practice_id, nhs)
    assert pid is not None
    return pid


# ---------------------------------------------------------------- workers


def test_worker_add_takes_a_login_and_an_optional_name(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    db = ["--db", url]
    code, out, _ = run(capsys, "worker", "add", "asmith", "--name", "Alex Smith", "--practice", "P1", *db)
    assert code == 0 and "Added worker asmith (Alex Smith) to practice P1." in out
    assert run(capsys, "worker", "add", "b.jones-2", "--practice", "P1", *db)[0] == 0  # no name: fine
    for bad in ("A. Worker", "Asmith", "2smith", "a smith", "x" * 65, ""):
        assert refused(capsys, "worker", "add", bad, "--practice", "P1", *db).startswith("A worker id is a login")
    assert "cannot be a login" in refused(capsys, "worker", "add", "list", "--practice", "P1", *db)
    assert "one line" in refused(capsys, "worker", "add", "cjay", "--name", "A\nB", "--practice", "P1", *db)
    code, out, _ = run(capsys, "worker", "list", *db)
    assert code == 0
    rows = [line.split("\t") for line in out.strip().splitlines()]
    assert rows[0][:4] == ["login", "name", "practice", "team"]
    assert [r[:4] for r in rows[1:]] == [["asmith", "Alex Smith", "P1", "-"], ["b.jones-2", "-", "P1", "-"]]


def test_worker_logs_carry_the_login_never_the_name(store: ServerStore) -> None:
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    log = logging.getLogger("sprx.server")
    handler, old_level = Keep(), log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        store.add_worker("asmith", "P1", display_name="Alexandra Smith")
        store.issue_enrol_code("asmith")
        store.remove_worker("asmith")
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
    assert len(seen) == 3 and all("asmith" in m for m in seen)
    assert not any("Alexandra" in m or "Smith" in m for m in seen)


def test_worker_remove_is_refused_while_people_or_laptops_are_theirs(
    url: str, store: ServerStore, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--db", url]
    store.add_worker("asmith", "P1")
    store.add_worker("bjones", "P1")
    ann = add_person(store, "asmith", NHS_ANN, "Ann", "Smith")
    add_person(store, "asmith", NHS_BOB, "Bob", "Jones")
    said = refused(capsys, "worker", "remove", "asmith", *db)
    assert "still has 2 people assigned" in said and "sprx-server assign" in said
    assert refused(capsys, "worker", "remove", "nobody", *db) == "There is no worker called nobody."
    code, out, _ = run(capsys, "worker", "list", *db)
    assert "asmith\t-\tP1\t-\t2\t0\t" in out  # two people, no laptops
    assert run(capsys, "assign", NHS_ANN, "--worker", "bjones", *db)[0] == 0
    assert "still has 1 person assigned" in refused(capsys, "worker", "remove", "asmith", *db)
    assert run(capsys, "assign", NHS_BOB, "--worker", "bjones", *db)[0] == 0
    # A laptop that can still sync must be retired first.
    dev = store.enrol(store.issue_enrol_code("asmith")[0], "laptop")
    assert "1 laptop(s) that can sync" in refused(capsys, "worker", "remove", "asmith", *db)
    store.revoke_device(dev["device_id"])
    pending_code, _ = store.issue_enrol_code("asmith")
    code, out, _ = run(capsys, "worker", "remove", "asmith", *db)
    assert code == 0 and "Removed worker asmith; 1 unused enrolment code(s) cancelled." in out
    with pytest.raises(StoreError, match="not valid"):
        store.enrol(pending_code, "second laptop")  # the removed worker's open code went with them
    assert refused(capsys, "enrol-code", "issue", "asmith", *db) == "Worker asmith was removed."
    assert refused(capsys, "worker", "remove", "asmith", *db) == "Worker asmith was already removed."
    assert "asmith" not in run(capsys, "worker", "list", *db)[1]
    assert "asmith" in run(capsys, "worker", "list", "--all", *db)[1]
    assert store.get_record("person", ann) is not None  # their people stay, with bjones
    # Added again to the same practice, they come back (to another practice: refused).
    assert "already exists" in refused(capsys, "worker", "add", "asmith", "--practice", "P2", *db)
    assert run(capsys, "worker", "add", "asmith", "--practice", "P1", *db)[0] == 0
    assert run(capsys, "enrol-code", "issue", "asmith", *db)[0] == 0


# ---------------------------------------------------------------- people and assignment


def test_people_find_by_nhs_number_or_part_of_a_name(
    url: str, store: ServerStore, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--db", url]
    store.add_worker("asmith", "P1")
    store.add_worker("cjay", "P2")
    ann = add_person(store, "asmith", NHS_ANN, "Ann", "Smith")
    bob = add_person(store, "cjay", NHS_BOB, "Bob", "Smithson")
    code, out, _ = run(capsys, "people", "find", "943 476 5919", *db)
    assert code == 0
    assert out.splitlines() == ["id\tname\tnhs_number\tpractice\tworker", f"{ann}\tAnn Smith\t943 476 5919\tP1\tasmith"]
    code, out, _ = run(capsys, "people", "find", "SMITH", *db)
    assert code == 0 and ann in out and bob in out and "Bob Smithson\t401 023 2137\tP2\tcjay" in out
    code, out, _ = run(capsys, "people", "find", "smith", "--practice", "P2", *db)
    assert ann not in out and bob in out
    assert run(capsys, "people", "find", "Zed", *db)[1].strip() == "No one matches."
    assert "not a valid NHS number" in refused(capsys, "people", "find", "9434765918", *db)
    assert refused(capsys, "people", "find", "Ann", "--practice", "no-such-practice", *db).startswith(
        "There is no practice called no-such-practice"
    )


def test_people_find_shows_names_inertly(url: str, store: ServerStore, capsys: pytest.CaptureFixture[str]) -> None:
    # A name the inbound gate lets in but that holds a character a terminal would act on if printed raw
    # is not possible to store, so this checks the printing path directly: found names go through visible().
    store.add_worker("asmith", "P1")
    pid = add_person(store, "asmith", NHS_ANN, "Ann", "Smith")
    with store._write() as conn:  # a row as an older server might hold it
        from sync.server.store import record

        conn.execute(record.update().where(record.c.id == pid).values(values='{"given_name": "Ann\\u001b[2J"}'))
    code, out, _ = run(capsys, "people", "find", NHS_ANN, "--db", url)
    assert code == 0 and "\x1b" not in out and "Ann" in out


def test_assign_takes_an_nhs_number_or_an_id_and_refuses_unknowns(
    url: str, store: ServerStore, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--db", url]
    store.add_worker("asmith", "P1", "T1")
    store.add_worker("bjones", "P1")
    store.add_worker("cjay", "P2", "T2")
    ann = add_person(store, "asmith", NHS_ANN, "Ann", "Smith")
    code, out, _ = run(capsys, "assign", "943 476 5919", "--worker", "bjones", *db)
    assert code == 0 and f"Assigned person {ann} to bjones" in out
    assert run(capsys, "assign", ann, "--team", "T1", *db)[0] == 0
    assert refused(capsys, "assign", "nobody", "--worker", "asmith", *db).startswith("There is no person nobody")
    assert refused(capsys, "assign", NHS_BOB, "--worker", "asmith", *db) == "No one in practice P1 has that NHS number."
    assert refused(capsys, "assign", ann, "--worker", "ghost", *db) == "There is no worker called ghost."
    assert refused(capsys, "assign", ann, "--team", "T9", *db) == "There is no team called T9."
    assert refused(capsys, "assign", ann, "--worker", "cjay", *db).startswith("There is no person")  # other practice
    assert refused(capsys, "assign", NHS_ANN, "--team", "T2", *db) == "No one in practice P2 has that NHS number."
    code, out, _ = run(capsys, "people", "find", "ann", *db)
    assert out.splitlines()[1].endswith("\tteam T1")


# ---------------------------------------------------------------- practices


def test_unknown_practice_is_refused_by_directory_imports_and_report(
    url: str, store: ServerStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--db", url]
    store.add_worker("asmith", "P1")
    folder = tmp_path / "empty-directory"
    folder.mkdir()
    for cmd in (["import-directory", str(folder)], ["report"], ["directory", "pull", "https://127.0.0.1:1/"]):
        said = refused(capsys, *cmd, "--practice", "no-such-practice", *db)
        assert said.startswith("There is no practice called no-such-practice")
    assert run(capsys, "report", "--practice", "P1", *db)[0] == 0


# ---------------------------------------------------------------- enrolment codes


def test_enrol_code_issue_list_cancel(url: str, store: ServerStore, capsys: pytest.CaptureFixture[str]) -> None:
    db = ["--db", url]
    store.add_worker("asmith", "P1")
    store.add_worker("bjones", "P1")
    assert run(capsys, "enrol-code", "list", *db)[1].strip() == "No enrolment codes waiting to be used."
    code, out, _ = run(capsys, "enrol-code", "issue", "asmith", *db)
    assert code == 0
    first = out.split(": ")[1].split()[0]
    code, out, _ = run(capsys, "enrol-code", "asmith", *db)  # the older form still issues
    assert code == 0 and out.startswith("Enrolment code for asmith: ")
    second = out.split(": ")[1].split()[0]
    run(capsys, "enrol-code", "issue", "bjones", *db)
    code, out, _ = run(capsys, "enrol-code", "list", *db)
    rows = [line.split("\t") for line in out.strip().splitlines()[1:]]
    assert code == 0 and sorted(r[1] for r in rows) == ["asmith", "asmith", "bjones"]
    assert all(r[4] == "open" for r in rows) and first not in out  # only a hash of each code is kept
    # Cancel by the code as issued, by its ref in the list, and every code of a worker.
    code, out, _ = run(capsys, "enrol-code", "cancel", first.lower(), *db)
    assert code == 0 and "Cancelled the enrolment code for asmith" in out
    with pytest.raises(StoreError, match="not valid"):
        store.enrol(first, "laptop")
    bj_ref = next(r[0] for r in rows if r[1] == "bjones")
    assert run(capsys, "enrol-code", "cancel", bj_ref, *db)[0] == 0
    dev = store.enrol(second, "laptop")
    code, out, _ = run(capsys, "enrol-code", "list", "--all", *db)
    assert "\tused " in out and dev["device_id"] in out
    assert "already used" in refused(capsys, "enrol-code", "cancel", second, *db)
    run(capsys, "enrol-code", "issue", "asmith", *db)
    run(capsys, "enrol-code", "issue", "asmith", *db)
    code, out, _ = run(capsys, "enrol-code", "cancel", "--worker", "asmith", *db)
    assert code == 0 and "Cancelled 2 unused enrolment code(s) of asmith." in out
    # Refusals: unknown code, unknown worker, malformed use.
    assert refused(capsys, "enrol-code", "cancel", "ABCDE-FGHJK", *db).startswith("There is no such enrolment code")
    assert refused(capsys, "enrol-code", "cancel", "--worker", "ghost", *db) == "There is no worker called ghost."
    assert refused(capsys, "enrol-code", "issue", "ghost", *db) == "There is no worker called ghost."
    assert refused(capsys, "enrol-code", "ghost", *db) == "There is no worker called ghost."
    assert refused(capsys, "enrol-code", "cancel", *db).startswith("Give the code to cancel")
    assert refused(capsys, "enrol-code", "issue", *db).startswith("Give the worker's login")
    assert refused(capsys, "enrol-code", "frob", "asmith", *db).startswith("Unknown enrol-code command frob")


# ---------------------------------------------------------------- devices


def test_device_restore_undoes_a_revoke_the_laptop_has_not_heard_of(
    url: str, store: ServerStore, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--db", url]
    store.add_worker("asmith", "P1")
    dev = store.enrol(store.issue_enrol_code("asmith")[0], "laptop")
    did, token = dev["device_id"], dev["token"]
    code, out, _ = run(capsys, "device", "restore", did, *db)
    assert code == 0 and out.strip() == f"Device {did} is active; there is nothing to restore."
    store.revoke_device(did)
    assert "restorable" in run(capsys, "device", "list", *db)[1]
    # Not at a terminal and no --yes: nothing happens.
    assert refused(capsys, "device", "restore", did, *db).startswith("Nothing was restored.")
    assert store.device_info(did)["revoked_at"] is not None
    code, out, _ = run(capsys, "device", "restore", did, "--yes", *db)
    assert code == 0 and "has not been told to erase itself yet" in out and f"Restored device {did}" in out
    assert store.authenticate(token).id == did  # it syncs again as before
    assert "active" in run(capsys, "device", "list", *db)[1]
    assert refused(capsys, "device", "restore", "nope", "--yes", *db) == "There is no device nope."


def test_device_restore_refuses_a_laptop_already_told_to_erase(
    url: str, store: ServerStore, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--db", url]
    store.add_worker("asmith", "P1")
    dev = store.enrol(store.issue_enrol_code("asmith")[0], "laptop")
    did, token = dev["device_id"], dev["token"]
    store.revoke_device(did)
    with pytest.raises(StoreError, match="revoked"):
        store.authenticate(token)  # its next sync: told to erase itself, which it does
    assert "erased" in run(capsys, "device", "list", *db)[1]
    said = refused(capsys, "device", "restore", did, "--yes", *db)
    assert "already told to erase its copy" in said and "enrol-code issue asmith" in said
    assert store.device_info(did)["revoked_at"] is not None


def test_device_restore_undoes_a_retire_until_the_laptop_has_erased(
    url: str, store: ServerStore, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--db", url]
    store.add_worker("asmith", "P1")
    a = store.enrol(store.issue_enrol_code("asmith")[0], "laptop a")
    b = store.enrol(store.issue_enrol_code("asmith")[0], "laptop b")
    for d in (a, b):
        store.retire_device(d["device_id"])
    assert "retiring since" in run(capsys, "device", "list", *db)[1]
    code, out, _ = run(capsys, "device", "restore", a["device_id"], "--yes", *db)
    assert code == 0 and "it was retired" in out
    assert store.device_info(a["device_id"])["retired_at"] is None
    # b syncs with nothing left unsent: the server tells it to erase, and it can no longer be restored.
    with pytest.raises(StoreError):
        store.retired(store.authenticate(b["token"]), 0)
    assert "already told to erase" in refused(capsys, "device", "restore", b["device_id"], "--yes", *db)
    # A retirement finished before erase_told_at existed is known by revoked_at written at its last contact.
    from sync.server.store import device

    with store._write() as conn:
        conn.execute(device.update().where(device.c.id == b["device_id"]).values(erase_told_at=None))
    assert "already told to erase" in refused(capsys, "device", "restore", b["device_id"], "--yes", *db)
    assert "erased" in run(capsys, "device", "list", *db)[1]


# ---------------------------------------------------------------- referral import


def test_import_referrals_template_help_and_exit_status(
    url: str, store: ServerStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--db", url]
    code, out, _ = run(capsys, "import-referrals", "--template")
    assert code == 0 and out.strip().split(",") == COLUMNS
    with pytest.raises(SystemExit):
        main(["import-referrals", "--help"])
    helptext = capsys.readouterr().out
    assert all(c in helptext for c in COLUMNS) and "YYYY-MM-DD" in helptext
    assert refused(capsys, "import-referrals", *db).startswith("Give the referral file")
    store.add_worker("asmith", "P1")
    bad = tmp_path / "bad.csv"
    bad.write_text(",".join(COLUMNS) + "\n" + "123,Ann,Smith,1950-01-01,,,gp,,2025-03-01,,,,asmith\n")
    code, out, err = run(capsys, "import-referrals", str(bad), *db)
    assert code == 1 and "Imported 0 referral(s)" in out  # nothing imported: a failure
    assert err.strip() == "Line 2: the NHS number is not valid."
    header_only = tmp_path / "header.csv"
    header_only.write_text(",".join(COLUMNS) + "\n")
    assert run(capsys, "import-referrals", str(header_only), *db)[0] == 0


def test_import_referrals_refuses_a_row_for_a_removed_worker(
    url: str, store: ServerStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store.add_worker("asmith", "P1")
    store.add_worker("bjones", "P1")
    store.remove_worker("bjones")
    f = tmp_path / "refs.csv"
    f.write_text(
        ",".join(COLUMNS)
        + "\n"
        + f"{NHS_ANN},Ann,Smith,1950-01-01,,,gp,,2025-03-01,,,,asmith\n"
        + f"{NHS_BOB},Bob,Jones,1950-01-01,,,gp,,2025-03-01,,,,bjones\n"
    )
    code, out, err = run(capsys, "import-referrals", str(f), "--db", url)
    assert code == 0 and "Imported 1 referral(s)" in out
    assert err.strip() == "Line 3: the worker is not known to this server."


@pytest.mark.slow
def test_many_rows_import_in_batches_with_every_row_kept(
    url: str, store: ServerStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.bench_import import synthetic_nhs, write_csv

    store.add_worker("asmith", "P1")
    f = tmp_path / "refs.csv"
    write_csv(f, 260)  # two batches of IMPORT_BATCH (200)
    text = f.read_text().splitlines()
    text[230] = text[230].replace(",gp,", ",,")  # one bad line in the second batch: its source is missing
    f.write_text("\n".join(text) + "\n")
    code, out, err = run(capsys, "import-referrals", str(f), "--db", url)
    assert code == 0 and "Imported 259 referral(s); 0 already present; 1 line(s) not imported." in out
    assert err.strip() == "Line 231: the source is missing."
    assert store.count("record") == 2 * 259
    assert store.find_person_by_nhs("P1", synthetic_nhs(260)[-1]) is not None
    assert "Imported 0 referral(s); 259 already present" in run(capsys, "import-referrals", str(f), "--db", url)[1]


def test_a_row_refused_inside_a_batch_is_undone_alone(store: ServerStore) -> None:
    """The store's batch: a row the inbound gate refuses rolls back to its savepoint; the rows around it stay."""
    from sync.server.store.imports import ReferralIn

    store.add_worker("asmith", "P1")

    def row(nhs: str, text: str) -> ReferralIn:
        person = {"nhs_number": nhs, "given_name": "Ann", "family_name": "Smith", "date_of_birth": "1950-02-03"}
        referral = {"source": "gp", "received_on": "2025-03-01", "reasons": [], "referral_text": text}
        return ReferralIn("asmith", nhs, person, "2025-03-01", "gp", referral)

    nhs3 = "9990000026"
    out = store.import_referrals([row(NHS_ANN, "ok"), row(NHS_BOB, "bad \x1b[2J"), row(nhs3, "ok")])
    assert out[0] == "imported" and out[2] == "imported"
    assert isinstance(out[1], StoreError) and out[1].code == "invalid_value"
    assert store.find_person_by_nhs("P1", NHS_BOB) is None  # its person was written, then undone
    assert store.count("record") == 4 and store.count("assignment") == 2
    seqs = [(store.get_record("person", store.find_person_by_nhs("P1", n) or "") or {})["seq"] for n in (NHS_ANN, nhs3)]
    assert seqs == sorted(seqs)  # the feed's order survives the undone row
