"""README's "Running the practice server" runs as written.

The blocks marked ``<!-- readme-test: ... -->`` in that section are taken from README.md as they are and
run by bash, in order, with only the folders moved into a temporary one (and another port, and the
loopback address): set-up (config file, init, tls-cert, worker add, enrol-code, then serve in the
background), a probe of /healthz and an enrolment with the printed code, then the backup and
restore-test block while the server serves, then a stop.
"""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.sync.server_harness import free_port

README = Path(__file__).parents[2] / "README.md"
MARK = re.compile(r"<!-- readme-test: (\w+) -->\n```sh\n(.*?)```", re.S)


def server_section() -> str:
    text = README.read_text()
    start = text.index("## Running the practice server")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def blocks() -> dict[str, str]:
    return {name: body for name, body in MARK.findall(server_section())}


def localise(script: str, tmp: Path, port: int) -> str:
    """The block with its folders under ``tmp``; refuses to go on if any other absolute path remains."""
    for path in ("/etc/sprx", "/var/lib/sprx", "/var/backups/sprx", "/var/tmp/sprx-restore-test"):
        script = script.replace(path, f"{tmp}{path}")
    script = script.replace("8443", str(port)).replace("0.0.0.0", "127.0.0.1")
    found = re.findall(r"(?<![\w/.])/(?:etc|var|opt|usr|tmp|home|root)\b[^\s\"']*", script)
    stray = [p for p in found if not p.startswith(f"{tmp}/")]
    assert not stray, f"README block would touch {stray} outside the test folder"
    return script


def test_the_readme_blocks_are_found() -> None:
    b = blocks()
    assert set(b) == {"setup", "backup"}
    setup = b["setup"]
    order = ["sprx-server init", "sprx-server tls-cert", "sprx-server worker add asmith",
             "sprx-server enrol-code asmith", "sprx-server serve"]  # fmt: skip
    positions = [setup.index(cmd) for cmd in order]
    assert positions == sorted(positions)
    assert setup.rstrip().endswith("sprx-server serve")


@pytest.mark.slow  # every command of the README section, as subprocesses, and a real server
def test_the_server_section_runs_as_written(tmp_path: Path) -> None:
    port = free_port()
    b = blocks()
    setup = localise(b["setup"], tmp_path, port)
    # The last command serves; it runs in the background (exec: the signal reaches the server itself).
    head, last = setup.rstrip().rsplit("\n", 1)
    assert last == "sprx-server serve"
    script = f"{head}\nexec {last}\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPRX_SERVER_")}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", HOME=str(tmp_path))
    log = tmp_path / "setup.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    cert = tmp_path / "etc" / "sprx" / "tls" / "server.crt"
    base = f"https://localhost:{port}"
    try:
        deadline = time.monotonic() + 60
        healthy = False
        while time.monotonic() < deadline and proc.poll() is None and not healthy:
            if cert.exists():
                try:
                    tls = ssl.create_default_context(cafile=str(cert))
                    healthy = httpx.get(base + "/healthz", verify=tls, timeout=2).json()["ok"] is True
                except (httpx.HTTPError, ValueError):
                    pass
            if not healthy:
                time.sleep(0.2)
        out = log.read_text(errors="replace")
        assert healthy, f"the server did not come up: {out[-2000:]}"
        assert f"Created the server store at {tmp_path}/var/lib/sprx/server.db" in out
        assert re.search(r"Added worker asmith .*to practice demo-practice\.", out), out
        code = re.search(r"Enrolment code for asmith: (\S+)", out)
        assert code, out
        store = tmp_path / "var" / "lib" / "sprx" / "server.db"
        assert oct(store.stat().st_mode & 0o777) == "0o600"
        assert oct(store.parent.stat().st_mode & 0o777) == "0o700"
        # The printed code enrols a laptop over TLS.
        r = httpx.post(base + "/v1/devices/enrol", json={"code": code.group(1), "device_name": "readme-laptop"},
                       verify=ssl.create_default_context(cafile=str(cert)), timeout=10)  # fmt: skip
        assert r.status_code == 201, r.text

        # The backup block, in the same shell session as far as the environment goes, while serving.
        env["SPRX_SERVER_CONFIG"] = f"{tmp_path}/etc/sprx/server.toml"
        r2 = subprocess.run(["bash", "-euo", "pipefail", "-c", localise(b["backup"], tmp_path, port)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert r2.returncode == 0, r2.stderr
        assert "Backed up " in r2.stdout and "Restored " in r2.stdout and "Schema revision" in r2.stdout
        assert "readme-laptop" in r2.stdout  # the restored copy holds the laptop enrolled a moment ago
        assert not (tmp_path / "var" / "tmp" / "sprx-restore-test").exists()
        backups = list((tmp_path / "var" / "backups" / "sprx").glob("server-*.db"))
        assert len(backups) == 1 and oct(backups[0].stat().st_mode & 0o777) == "0o600"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert '"event": "stopped"' in log.read_text(errors="replace")
