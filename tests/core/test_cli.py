"""The `sprx` command as a real subprocess: init, demo, check, passwd, export, and every bad input a user can cause."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlmodel import Session, select

from sprx_rules.nhs import format_nhs_number
from sprx_tui.core.models import AuditEvent
from sprx_tui.core.store import open_store
from sprx_tui.core.vault import Vault

SPRX = str(Path(sys.executable).with_name("sprx"))
PASSPHRASE = "walking group on tuesday"
NEW_PASSPHRASE = "seven lanterns hum near docks"
PAGE = 4096
DEMO_PEOPLE = 6


@dataclass
class Run:
    args: list[str]
    rc: int
    out: str
    err: str


@dataclass
class Scenario:
    args: list[str]
    stdin: str = PASSPHRASE + "\n"
    run: Run | None = None


@dataclass
class CliRuns:
    root: Path
    base: Path
    recovery: str
    secrets: list[str]
    runs: dict[str, Run] = field(default_factory=dict)
    before: dict[str, dict[str, bytes]] = field(default_factory=dict)


def sprx(args: list[str], stdin: str = PASSPHRASE + "\n") -> Run:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPRX_")}
    done = subprocess.run([SPRX, *args], input=stdin, capture_output=True, text=True, timeout=120, env=env)
    return Run(args, done.returncode, done.stdout, done.stderr)


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.is_dir() else {}


def edit_key(path: Path, **kdf: int) -> None:
    doc = json.loads(path.read_text())
    [slot] = [s for s in doc["slots"] if s["slot"] == "passphrase"]
    slot["kdf"].update(kdf)
    path.write_text(json.dumps(doc, indent=1))


def _personal_data(base: Path, recovery: str) -> list[str]:
    """Every name, NHS number and postcode in the demo vault (read with the printed recovery key)."""
    from sprx_tui.core.models import Person

    vault = Vault(base)
    vault.unlock_with_recovery(recovery)
    try:
        with Session(vault.engine) as s:
            people = s.exec(select(Person)).all()
    finally:
        vault.lock()
    out: list[str] = []
    for p in people:
        out += [f"{p.given_name} {p.family_name}", p.family_name, p.postcode or ""]
        if p.nhs_number:
            out += [p.nhs_number, format_nhs_number(p.nhs_number)]
    return [s for s in out if s]


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory, core_cli_demo) -> CliRuns:
    """Copy the session's demo vault, then run every scenario on its own copy, several processes at a time."""
    root = tmp_path_factory.mktemp("cli")
    assert core_cli_demo.returncode == 0, core_cli_demo.stderr
    base = root / "base"
    shutil.copytree(core_cli_demo.path, base)
    state = CliRuns(root, base, core_cli_demo.recovery, _personal_data(base, core_cli_demo.recovery))
    state.runs["demo"] = Run(["demo"], core_cli_demo.returncode, core_cli_demo.stdout, core_cli_demo.stderr)

    def copy(name: str) -> Path:
        dest = root / name
        shutil.copytree(base, dest)
        return dest

    def vault_args(command: str, path: Path, *extra: str) -> list[str]:
        return [command, "--vault", str(path), "--passphrase-stdin", *extra]

    scenarios: dict[str, Scenario] = {}
    scenarios["check_good"] = Scenario(vault_args("check", copy("good")))
    v = copy("flip_inside")
    pages = (v / "sprx.db").stat().st_size // PAGE
    flip(v / "sprx.db", (pages // 2) * PAGE + 1500)
    scenarios["check_flipped_inside"] = Scenario(vault_args("check", v))
    v = copy("flip_first_page")
    flip(v / "sprx.db", 2000)
    scenarios["flipped_first_page"] = Scenario(vault_args("check", v))
    scenarios["wrong_passphrase"] = Scenario(vault_args("check", copy("wrong")), "not the right words at all\n")
    scenarios["empty_passphrase"] = Scenario(vault_args("check", copy("empty")), "\n")
    scenarios["no_passphrase"] = Scenario(vault_args("check", copy("eof")), "")
    v = copy("key_missing")
    (v / "sprx.key").unlink()
    scenarios["key_missing"] = Scenario(vault_args("check", v))
    v = copy("key_truncated")
    (v / "sprx.key").write_bytes((v / "sprx.key").read_bytes()[:200])
    scenarios["key_truncated"] = Scenario(vault_args("check", v))
    v = copy("key_kdf_raised")
    edit_key(v / "sprx.key", t=4)
    scenarios["key_kdf_raised"] = Scenario(vault_args("check", v))
    v = copy("plain_sqlite")
    (v / "sprx.db").unlink()
    with sqlite3.connect(v / "sprx.db") as conn:
        conn.execute("CREATE TABLE person (name TEXT)")
        conn.execute("INSERT INTO person VALUES (?)", (state.secrets[0],))
    scenarios["plain_sqlite_db"] = Scenario(vault_args("check", v))
    scenarios["no_vault_there"] = Scenario(vault_args("check", root / "nothing-here"))
    scenarios["init_missing_dir"] = Scenario(vault_args("init", root / "missing" / "deeper" / "vault", "--fast-kdf"))
    (root / "a-file").write_text("not a folder")
    scenarios["init_under_file"] = Scenario(vault_args("init", root / "a-file" / "vault", "--fast-kdf"))
    scenarios["init_weak_passphrase"] = Scenario(vault_args("init", root / "weak", "--fast-kdf"), "short\n")
    v = copy("second_init")
    state.before["second_init"] = files(v)
    scenarios["second_init"] = Scenario(vault_args("init", v, "--fast-kdf"), NEW_PASSPHRASE + "\n")
    scenarios["demo_zero_people"] = Scenario(vault_args("demo", root / "zero", "--people", "0", "--fast-kdf"))
    v = copy("passwd")
    state.before["passwd_db"] = {"sprx.db": (v / "sprx.db").read_bytes()}
    scenarios["passwd"] = Scenario(vault_args("passwd", v), f"{PASSPHRASE}\n{NEW_PASSPHRASE}\n")
    v = copy("passwd_wrong_old")
    state.before["passwd_wrong_old"] = files(v)
    scenarios["passwd_wrong_old"] = Scenario(vault_args("passwd", v), f"not the right words at all\n{NEW_PASSPHRASE}\n")
    scenarios["export"] = Scenario(
        vault_args("export", copy("export"), "--format", "csv", "--out", str(root / "out"), "--yes")
    )
    full = root / "full"
    full.mkdir()
    (full / "keep.txt").write_text("already here")
    scenarios["export_non_empty"] = Scenario(
        vault_args("export", copy("export_full"), "--format", "csv", "--out", str(full), "--yes")
    )
    scenarios["export_unconfirmed"] = Scenario(
        vault_args("export", copy("export_unconfirmed"), "--format", "csv", "--out", str(root / "out2"))
    )

    scenarios["init"] = Scenario(vault_args("init", root / "fresh", "--fast-kdf"))
    with ThreadPoolExecutor(4) as pool:
        futures = {name: pool.submit(sprx, s.args, s.stdin) for name, s in scenarios.items()}
        for name, future in futures.items():
            state.runs[name] = future.result()
    state.before["passwd_after"] = files(root / "passwd")
    # Second round: what the first round changed.
    with ThreadPoolExecutor(2) as pool:
        later = {
            "check_new_passphrase": pool.submit(sprx, vault_args("check", root / "passwd"), NEW_PASSPHRASE + "\n"),
            "check_old_passphrase": pool.submit(sprx, vault_args("check", root / "passwd"), PASSPHRASE + "\n"),
        }
        for name, future in later.items():
            state.runs[name] = future.result()
    return state


FAILURES = {
    # scenario: (exit code, words the one sentence must contain)
    "check_flipped_inside": (1, "integrity check"),
    "flipped_first_page": (1, "damaged"),
    "wrong_passphrase": (1, "passphrase"),
    "empty_passphrase": (1, "passphrase"),
    "no_passphrase": (1, "passphrase"),
    "key_missing": (1, "key file"),
    "key_truncated": (1, "key file"),
    "key_kdf_raised": (1, ""),
    "plain_sqlite_db": (1, "not a sprx vault"),
    "no_vault_there": (1, "no vault"),
    "init_missing_dir": (1, "folder"),
    "init_under_file": (1, ""),
    "init_weak_passphrase": (1, "passphrase"),
    "second_init": (1, "already exists"),
    "demo_zero_people": (2, "between 1 and"),
    "passwd_wrong_old": (1, "passphrase"),
    "export_non_empty": (1, "already has files"),
    "export_unconfirmed": (1, "--yes"),
    "check_old_passphrase": (1, "passphrase"),
}


@pytest.mark.parametrize("name", list(FAILURES))
@pytest.mark.slow  # uses the module's CLI runs: sprx in subprocesses, calibrating the real key derivation
def test_bad_input_gives_one_plain_sentence(cli: CliRuns, name: str) -> None:
    run = cli.runs[name]
    code, words = FAILURES[name]
    assert run.rc == code, (run.rc, run.err)
    lines = run.err.splitlines()
    assert len(lines) == 1, run.err
    line = lines[0]
    assert line.startswith("sprx: ") and line.endswith(".") and line[6].isupper(), line
    assert words.lower() in line.lower()
    assert "something unexpected" not in line
    blob = run.out + run.err
    assert "Traceback" not in blob and "Error:" not in blob
    assert run.out == ""  # no recovery key, no partial report
    leaked = [s for s in cli.secrets if s in blob]
    assert leaked == []


@pytest.mark.slow  # uses the module's CLI runs: sprx in subprocesses, calibrating the real key derivation
def test_demo_and_init_succeed_and_show_the_recovery_key_once(cli: CliRuns) -> None:
    for name in ("demo", "init"):
        run = cli.runs[name]
        assert run.rc == 0, run.err
        assert "Traceback" not in run.err
        keys = [line.strip() for line in run.out.splitlines() if line.startswith("    ")]
        assert len(keys) == 1 and len(keys[0].replace("-", "")) == 52
    assert f"{DEMO_PEOPLE} synthetic people" in cli.runs["demo"].err
    fresh = cli.root / "fresh"
    assert sorted(p.name for p in fresh.iterdir()) == ["sprx.db", "sprx.key"]
    assert stat.S_IMODE((fresh / "sprx.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
    assert not any(s in cli.runs["demo"].out + cli.runs["demo"].err for s in cli.secrets)


@pytest.mark.slow  # uses the module's CLI runs: sprx in subprocesses, calibrating the real key derivation
def test_check_passes_a_good_vault(cli: CliRuns) -> None:
    run = cli.runs["check_good"]
    assert run.rc == 0, run.err
    assert run.out.strip() == (
        f"The vault is healthy: keys, encryption, integrity and audit trail check out ({DEMO_PEOPLE} people)."
    )


@pytest.mark.slow  # uses the module's CLI runs: sprx in subprocesses, calibrating the real key derivation
def test_refused_init_leaves_the_vault_untouched(cli: CliRuns) -> None:
    assert files(cli.root / "second_init") == cli.before["second_init"]
    assert files(cli.root / "passwd_wrong_old")["sprx.db"] == cli.before["passwd_wrong_old"]["sprx.db"]
    assert not (cli.root / "zero").exists()
    assert not (cli.root / "missing").exists()
    assert not (cli.root / "weak").exists()
    assert not (cli.root / "out2").exists()


@pytest.mark.slow  # uses the module's CLI runs: sprx in subprocesses, calibrating the real key derivation
def test_passwd_changes_the_passphrase_not_the_records(cli: CliRuns) -> None:
    run = cli.runs["passwd"]
    assert run.rc == 0, run.err
    assert "passphrase was changed" in run.err
    assert cli.before["passwd_after"]["sprx.db"] == cli.before["passwd_db"]["sprx.db"]
    assert cli.runs["check_new_passphrase"].rc == 0, cli.runs["check_new_passphrase"].err
    assert cli.runs["check_old_passphrase"].rc == 1


@pytest.mark.slow  # uses the module's CLI runs: sprx in subprocesses, calibrating the real key derivation
def test_export_csv_writes_private_files_and_is_audited(cli: CliRuns) -> None:
    run = cli.runs["export"]
    assert run.rc == 0, run.err
    assert "Traceback" not in run.err and "NOT encrypted" in run.err
    out = cli.root / "out"
    names = sorted(p.name for p in out.iterdir())
    assert "people.csv" in names and "contacts.csv" in names and "README-UNENCRYPTED.txt" in names
    for p in out.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p.name
    people = (out / "people.csv").read_text().splitlines()
    assert len(people) == DEMO_PEOPLE + 1
    assert "field_meta" not in people[0] and "search_text" not in people[0]
    # The refused export left the non-empty folder as it was.
    assert files(cli.root / "full") == {"keep.txt": b"already here"}
    vault = Vault(cli.root / "export")
    vault.unlock_with_recovery(cli.recovery)
    try:
        with Session(vault.engine) as s:
            events = s.exec(select(AuditEvent).where(AuditEvent.action == "EXPORT")).all()
        assert open_store(vault).service.verify_audit_chain()
    finally:
        vault.lock()
    assert len(events) == 1
    assert events[0].detail.startswith("csv ") and f"people={DEMO_PEOPLE}" in events[0].detail
    assert not any(s in events[0].detail for s in cli.secrets)


def test_read_only_folder_is_refused_plainly(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        probe = ro / "probe"
        try:
            probe.touch()
        except PermissionError:
            pass
        else:
            probe.unlink()
            pytest.skip("running as root: a 0500 folder is still writable, so it cannot be refused here")
        run = sprx(["init", "--vault", str(ro / "vault"), "--passphrase-stdin", "--fast-kdf"])
        assert run.rc == 1 and len(run.err.splitlines()) == 1 and "Traceback" not in run.err
        assert run.out == ""
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o700)


# -- top-level options reach every command ---------------------------------------------------------

VAULT_OPTION_PLACES = {
    # Each option is given once, before or after the command; between them the two cases try both places.
    "vault_first": (["--vault", "{X}"], ["--passphrase-stdin"]),
    "vault_after": (["--passphrase-stdin"], ["--vault", "{X}"]),
}


def _commands(parser: argparse.ArgumentParser) -> list[str]:
    """Every command the parser knows, nested ones as "directory import"."""
    found: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += [f"{name} {inner}" for inner in _commands(child)] or [name]
    return found


def _unlock_count(path: Path, recovery: str) -> int:
    vault = Vault(path)
    vault.unlock_with_recovery(recovery)
    try:
        with Session(vault.engine) as s:
            return len(s.exec(select(AuditEvent).where(AuditEvent.action.in_(["UNLOCK", "CREATE_VAULT"]))).all())
    finally:
        vault.lock()


@dataclass
class OptionCase:
    args: list[str]  # after the command
    stdin: str = PASSPHRASE + "\n"
    fresh: bool = False  # the command creates the vault at X
    unlocks: bool = True  # the command unlocks X (and audits it)


def _option_cases(tmp: Path) -> dict[str, OptionCase]:
    from tests.sample_data import hsds_sample

    return {
        "init": OptionCase(["--fast-kdf"], fresh=True),
        "demo": OptionCase(["--people", "1", "--fast-kdf", "--quiet"], fresh=True),
        "check": OptionCase([]),
        "passwd": OptionCase([], f"{PASSPHRASE}\n{NEW_PASSPHRASE}\n", unlocks=False),
        "export": OptionCase(["--format", "csv", "--out", str(tmp / "out"), "--yes"]),
        "enrol": OptionCase(["--server", "https://127.0.0.1:9", "--code", "AAAAA-BBBBB"]),
        "sync": OptionCase([]),
        "report": OptionCase([]),
        "directory import": OptionCase([str(hsds_sample())]),
    }


def test_every_command_has_a_top_level_option_case(tmp_path: Path) -> None:
    from sprx_tui.cli import build_parser

    assert sorted(_commands(build_parser())) == sorted(_option_cases(tmp_path))


@pytest.mark.parametrize("place", list(VAULT_OPTION_PLACES))
@pytest.mark.parametrize("command", sorted(_option_cases(Path("."))))
def test_vault_and_passphrase_stdin_work_before_or_after_every_command(
    command: str,
    place: str,
    tmp_path: Path,
    core_empty_template,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`sprx --vault X <cmd>` and `sprx <cmd> --vault X` both act on X (a subcommand's default once
    overwrote the top-level value, so the default vault was used); the same for --passphrase-stdin."""
    import io

    from sprx_tui import cli

    monkeypatch.setattr("sprx_tui.core.db.init_process_security", lambda *_a, **_k: None)
    decoy = tmp_path / "default-vault"
    monkeypatch.setenv("SPRX_VAULT", str(decoy))
    case = _option_cases(tmp_path)[command]
    x = tmp_path / "x"
    if not case.fresh:
        shutil.copytree(core_empty_template.path, x)
        before_unlocks = _unlock_count(x, core_empty_template.recovery)
        before_key = (x / "sprx.key").read_bytes()
    before, after = ([a.replace("{X}", str(x)) for a in part] for part in VAULT_OPTION_PLACES[place])
    monkeypatch.setattr("sys.stdin", io.StringIO(case.stdin))
    cli.main([*before, *command.split(), *after, *case.args])
    err = capsys.readouterr().err
    assert "no vault" not in err.lower() and "no terminal" not in err.lower(), err
    assert not decoy.exists()
    if case.fresh:
        assert (x / "sprx.key").is_file() and (x / "sprx.db").is_file(), err
    elif case.unlocks:
        assert _unlock_count(x, core_empty_template.recovery) == before_unlocks + 1, err
    else:
        assert (x / "sprx.key").read_bytes() != before_key, err


def test_an_option_after_the_command_overrides_the_one_before(tmp_path: Path) -> None:
    from sprx_tui.cli import build_parser

    args = build_parser().parse_args(["--vault", str(tmp_path / "a"), "check", "--vault", str(tmp_path / "b")])
    assert args.vault == tmp_path / "b"
    args = build_parser().parse_args(["--vault", str(tmp_path / "a"), "--passphrase-stdin", "check"])
    assert (args.vault, args.passphrase_stdin) == (tmp_path / "a", True)
    args = build_parser().parse_args([])
    assert (args.vault, args.passphrase_stdin) == (None, False)
