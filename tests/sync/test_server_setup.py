"""Setting up a practice server: `init`, the configuration file, and what every command refuses.

Only `init` makes a store; every other command refuses a SQLite path that does not exist (it used to
make a new empty one, so an admin revoking a stolen laptop from the wrong folder was told there was
nothing to revoke). Settings come from a TOML file, then SPRX_SERVER_* variables, then options.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sync.server import config
from sync.server.cli import main
from sync.server.config import ConfigError, load


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def one_sentence(err: str) -> bool:
    return len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.fixture(autouse=True)
def no_outside_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests see no SPRX_SERVER_* variable from the machine, nor /etc/sprx/server.toml."""
    for k in list(os.environ):
        if k.startswith("SPRX_SERVER_"):
            monkeypatch.delenv(k)
    monkeypatch.setattr(config, "SYSTEM_CONFIG", tmp_path / "no-such-dir" / "server.toml")


def test_init_makes_a_private_store_and_says_what_to_do_next(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "var" / "lib" / "sprx"
    url = f"sqlite:///{folder}/server.db"
    code, out, err = run(capsys, "init", "--db", url)
    assert code == 0, err
    assert out.startswith(f"Created the server store at {folder}/server.db (schema revision ")
    assert "sprx-server worker add" in out and "sprx-server enrol-code" in out and "sprx-server serve" in out
    assert stat.S_IMODE((folder / "server.db").stat().st_mode) == 0o600
    for d in (folder, folder.parent, folder.parent.parent):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    code, out, err = run(capsys, "db", "current", "--db", url)
    assert code == 0 and "newest" in out
    # A second init changes nothing.
    code, _, err = run(capsys, "init", "--db", url)
    assert code == 1 and one_sentence(err) and "already a server store" in err
    assert run(capsys, "worker", "add", "asmith", "--practice", "P1", "--db", url)[0] == 0


def test_every_admin_command_refuses_a_store_that_does_not_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere" / "server.db"
    db = ["--db", f"sqlite:///{missing}"]
    commands = [
        ["worker", "add", "asmith", "--practice", "P1"],
        ["enrol-code", "asmith"],
        ["device", "list"],
        ["device", "revoke", "x", "--yes"],
        ["device", "retire", "x", "--yes"],
        ["assign", "p", "--worker", "asmith"],
        ["import-referrals", str(tmp_path / "r.csv")],
        ["import-directory", str(tmp_path), "--practice", "P1"],
        ["report", "--practice", "P1"],
        ["gc"],
        ["serve"],
        ["db", "upgrade"],
        ["db", "current"],
        ["backup", "--out", str(tmp_path / "b.db")],
    ]
    for args in commands:
        code, out, err = run(capsys, *args, *db)
        assert code != 0, args
        assert one_sentence(err), (args, err)
        assert str(missing) in err, (args, err)
        assert "sprx-server init" in err or args[0] == "backup", (args, err)  # a backup needs a store, not a new one
    assert not missing.parent.exists()  # nothing was made, not even the folder


def _leaf_commands() -> list[list[str]]:
    """Every sprx-server command that takes --db, with placeholder values for what it requires."""
    import argparse

    from sync.server.cli import build_parser

    out: list[list[str]] = []

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if subs:
            for name, child in subs[0].choices.items():
                walk(child, [*prefix, name])
            return
        if not any("--db" in a.option_strings for a in parser._actions) or prefix == ["init"]:
            return
        args = list(prefix)
        for a in parser._actions:
            if not a.option_strings and a.required and a.nargs != 0:
                args.append("x")
            elif a.option_strings and a.required:
                args += [a.option_strings[0], "x"]
        for g in parser._mutually_exclusive_groups:
            if g.required:
                args += [g._group_actions[0].option_strings[0], "x"]
        out.append(args)

    walk(build_parser(), [])
    return out


def test_no_command_but_init_makes_a_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Found from the parser, so a command added later is held to it too."""
    missing = tmp_path / "nowhere" / "server.db"
    commands = _leaf_commands()
    assert len(commands) >= 12 and ["db", "upgrade"] in commands and ["serve"] in commands
    for args in commands:
        code, _, err = run(capsys, *args, "--db", f"sqlite:///{missing}")
        assert code != 0 and one_sentence(err), (args, err)
        assert not missing.parent.exists(), args


def test_without_any_store_a_command_says_where_to_give_one(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "device", "list")
    assert code == 1 and one_sentence(err)
    assert "--db" in err and "SPRX_SERVER_DB" in err and "store.url" in err


# ---------------------------------------------------------------- the configuration file


CONFIG = """
[store]
url = "sqlite:///{db}"

[server]
host = "127.0.0.1"
port = 9443

[limits]
max_push_body = "2M"
enrol_window = 300

[log]
destination = "{log}"
"""


def test_file_then_environment_then_options(tmp_path: Path) -> None:
    f = tmp_path / "server.toml"
    f.write_text(CONFIG.format(db=tmp_path / "a.db", log=tmp_path / "server.log"))
    s = load(str(f), {}, {})
    assert (s.db, s.host, s.port, s.max_push_body, s.enrol_window) == (
        f"sqlite:///{tmp_path}/a.db", "127.0.0.1", 9443, 2 * 1024 * 1024, 300
    )  # fmt: skip
    assert (s.max_body, s.enrol_attempts, s.log, s.config_file) == (64 * 1024, 60, str(tmp_path / "server.log"), f)
    env = {"SPRX_SERVER_DB": "sqlite:///env.db", "SPRX_SERVER_PORT": "7000", "SPRX_SERVER_MAX_BODY": "1K"}
    s = load(str(f), {}, env)
    assert (s.db, s.port, s.max_body, s.max_push_body) == ("sqlite:///env.db", 7000, 1024, 2 * 1024 * 1024)
    s = load(str(f), {"db": "sqlite:///opt.db", "port": None}, env)
    assert (s.db, s.port) == ("sqlite:///opt.db", 7000)
    # The file can also be named by SPRX_SERVER_CONFIG.
    assert load(None, {}, {"SPRX_SERVER_CONFIG": str(f)}).port == 9443
    assert load(None, {}, {}).db is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[store\nurl = 1", "is not valid TOML"),
        ("[store]\nurl = 5", "has a bad store.url"),
        ("[server]\nport = 70000", "has a bad server.port"),
        ('[limits]\nmax_body = "lots"', "has a bad limits.max_body"),
        ("[server]\nprot = 1", "has an unknown setting server.prot"),
        ('url = "sqlite:///x.db"', "outside a section"),
    ],
)
def test_a_bad_configuration_file_is_one_sentence_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, problem: str
) -> None:
    f = tmp_path / "server.toml"
    f.write_text(text)
    code, _, err = run(capsys, "device", "list", "--config", str(f))
    assert code == 1 and one_sentence(err), err
    assert err.startswith(f"The configuration file {f} ") and problem in err


def test_a_configuration_file_that_cannot_be_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run(capsys, "device", "list", "--config", str(tmp_path / "missing.toml"))
    assert code == 1 and err.strip() == f"The configuration file {tmp_path}/missing.toml does not exist."
    monkeypatch.setenv("SPRX_SERVER_CONFIG", str(tmp_path))
    code, _, err = run(capsys, "device", "list")
    assert code == 1 and err.strip() == f"The configuration file {tmp_path} is a folder, not a file."
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe")
    code, _, err = run(capsys, "device", "list", "--config", str(tmp_path / "bin.toml"))
    assert code == 1 and "is not UTF-8 text" in err
    monkeypatch.delenv("SPRX_SERVER_CONFIG")
    monkeypatch.setenv("SPRX_SERVER_PORT", "eighty")
    code, _, err = run(capsys, "serve", "--db", "sqlite:///x.db")
    assert code == 1 and one_sentence(err) and "SPRX_SERVER_PORT" in err


def test_admin_commands_find_the_store_through_the_configuration_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    f = tmp_path / "server.toml"
    f.write_text(CONFIG.format(db=tmp_path / "store" / "server.db", log="stderr"))
    code, out, err = run(capsys, "init", "--config", str(f))
    assert code == 0 and f"--config {f}" in out, err
    assert run(capsys, "worker", "add", "asmith", "--practice", "P1", "--config", str(f))[0] == 0
    monkeypatch.setenv("SPRX_SERVER_CONFIG", str(f))
    code, out, _ = run(capsys, "enrol-code", "asmith")
    assert code == 0 and "Enrolment code for asmith" in out
    # The environment overrides the file: this store does not exist, so the command refuses.
    monkeypatch.setenv("SPRX_SERVER_DB", f"sqlite:///{tmp_path}/other.db")
    code, _, err = run(capsys, "enrol-code", "asmith")
    assert code == 1 and "other.db" in err


# ---------------------------------------------------------------- serve's own refusals


@pytest.fixture
def store_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    url = f"sqlite:///{tmp_path}/server.db"
    assert run(capsys, "init", "--db", url)[0] == 0
    return url


def test_serve_names_a_missing_certificate_file(
    tmp_path: Path, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "tls-cert", "--out", str(tmp_path / "tls"))[0] == 0
    key = str(tmp_path / "tls" / "server.key")
    code, _, err = run(capsys, "serve", "--db", store_url, "--tls-cert", str(tmp_path / "nope.crt"), "--tls-key", key)
    assert code == 1 and err.strip() == f"The TLS certificate file {tmp_path}/nope.crt does not exist."
    code, _, err = run(
        capsys, "serve", "--db", store_url, "--tls-cert", key, "--tls-key", str(tmp_path / "tls" / "server.crt")
    )
    assert code == 1 and one_sentence(err) and "are not a PEM certificate and its key" in err
    code, _, err = run(capsys, "serve", "--db", store_url, "--host", "0.0.0.0")
    assert code == 1 and one_sentence(err) and "without TLS" in err


def test_serve_says_when_the_port_is_in_use(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code, _, err = run(capsys, "serve", "--db", store_url, "--port", str(port))
    assert code == 1
    assert err.strip() == f"Port {port} on 127.0.0.1 is already in use; stop what is using it or choose another --port."


def test_serve_says_when_it_cannot_write_its_log(
    tmp_path: Path, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "log-is-a-folder").mkdir()
    f = tmp_path / "server.toml"
    f.write_text(f'[store]\nurl = "{store_url}"\n[log]\ndestination = "{tmp_path}/log-is-a-folder"\n')
    code, _, err = run(capsys, "serve", "--config", str(f))
    assert code == 1 and err.strip() == f"Cannot write the log file {tmp_path}/log-is-a-folder."


# ---------------------------------------------------------------- --version


@pytest.mark.parametrize("module", ["sync.server.cli", "sprx_tui.cli"])
def test_version_on_both_commands(module: str) -> None:
    from importlib.metadata import version

    r = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True, timeout=60)
    name = "sprx-server" if module.startswith("sync") else "sprx"
    assert r.returncode == 0 and r.stdout.strip() == f"{name} {version('sprx')}", r.stderr


def test_a_bad_setting_raises_a_sentence_not_a_traceback() -> None:
    with pytest.raises(ConfigError, match="SPRX_SERVER_ENROL_WINDOW"):
        load(None, {}, {"SPRX_SERVER_ENROL_WINDOW": "0"})
