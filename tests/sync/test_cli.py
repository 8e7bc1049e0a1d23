"""The sprx-server admin CLI, the referral import, and a real uvicorn process over TLS."""

from __future__ import annotations

import os
import ssl
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from sync.server.cli import main
from sync.server.store import ServerStore
from sync.server.tls import fingerprint
from tests.sync.server_harness import uvicorn_server, version_headers

HEADER = (
    "nhs_number,given_name,family_name,date_of_birth,postcode,phone,source,referrer_name,"
    "received_on,reasons,urgency,referral_text,worker\n"
)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_admin_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = ["--db", f"sqlite:///{tmp_path}/s.db"]
    assert run(capsys, "init", *db)[0] == 0
    assert run(capsys, "worker", "add", "alice", "--practice", "P1", "--team", "T1", *db)[0] == 0
    code, out, err = run(capsys, "worker", "add", "alice", "--practice", "P1", *db)
    assert code == 1 and err.strip() == "A worker called alice already exists."
    code, out, _ = run(capsys, "enrol-code", "alice", *db)
    assert code == 0 and "expires" in out
    enrol_code = out.split(": ")[1].split()[0]
    store = ServerStore(f"sqlite:///{tmp_path}/s.db")
    dev = store.enrol(enrol_code, "laptop")
    code, out, _ = run(capsys, "device", "list", *db)
    assert dev["device_id"] in out and "active" in out
    assert run(capsys, "device", "revoke", dev["device_id"], "--yes", *db)[0] == 0
    assert "revoked" in run(capsys, "device", "list", *db)[1]
    code, _, err = run(capsys, "device", "revoke", "nope", *db)
    assert code == 1 and err.strip() == "There is no device nope."
    code, _, err = run(capsys, "assign", str(uuid.uuid4()), "--team", "T1", *db)  # no such person: refused
    assert code == 1 and err.startswith("There is no person ") and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "assign", "p", "--worker", "ghost", *db)
    assert code == 1 and "ghost" in err and "Traceback" not in err
    code, out, _ = run(capsys, "gc", *db)
    assert code == 0 and "watermark" in out
    code, _, err = run(capsys, "serve", "--host", "0.0.0.0", *db)
    assert code == 1 and "TLS" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as e:
        main(["frobnicate"])
    assert e.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    code, _, err = run(capsys, "gc", "--db", "postgresql+psycopg://nobody@127.0.0.1:1/x")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_import_referrals_with_bad_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    assert run(capsys, "init", "--db", url)[0] == 0
    assert run(capsys, "worker", "add", "alice", "--practice", "P1", "--db", url)[0] == 0
    csv = tmp_path / "refs.csv"
    csv.write_text(
        HEADER + "9434765919,Ann,Smith,1950-02-03,LS1 4AB,0113 496 0000,gp,Dr Jones,2025-03-01,"
        "loneliness;low mood,routine,Lives alone,alice\n"
        + "9434765918,Bad,Check,1950-02-03,LS1 4AB,,gp,,2025-03-01,,routine,,alice\n"
        + "9434765919,Ann,Smith,1950-02-03,LS1 4AB,,housing_association,,2025-03-05,housing,urgent,,alice\n"
        + "4010232137,Cy,Jones,not-a-date,LS1 4AB,,gp,,2025-03-01,,routine,,alice\n"
        + "4010232137,Cy,Jones,1960-01-01,LS1 4AB,,gp,,2025-03-01,,routine,,nobody\n"
    )
    code, out, err = run(capsys, "import-referrals", str(csv), "--db", url)
    assert code == 0  # partial success: the good rows are in, the bad lines are listed
    assert "Imported 2 referral(s); 0 already present; 3 line(s) not imported." in out
    lines = err.strip().splitlines()
    assert lines == [
        "Line 3: the NHS number is not valid.",
        "Line 5: the date of birth is not a date like 2025-03-31.",
        "Line 6: the worker is not known to this server.",
    ]
    assert "Ann" not in err and "9434765918" not in err  # no personal data in messages
    code, out, _ = run(capsys, "import-referrals", str(csv), "--db", url)
    assert "Imported 0 referral(s); 2 already present; 3 line(s) not imported." in out
    store = ServerStore(url)
    assert store.count("record") == 3  # one person, two referrals
    pid = store.find_person_by_nhs("P1", "9434765919")
    assert pid is not None
    ref = [r for r in (store.get_record("person", pid),) if r]
    assert ref and ref[0]["values"]["status"] == "referred"
    code, _, err = run(capsys, "import-referrals", str(tmp_path / "missing.csv"), "--db", url)
    assert code == 1 and err.strip().startswith("Cannot read")


def test_tls_cert_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "tls-cert", "--out", str(tmp_path / "tls"))
    assert code == 0
    key = tmp_path / "tls" / "server.key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    fp = fingerprint((tmp_path / "tls" / "server.crt").read_bytes())
    assert fp in out


@pytest.mark.slow
def test_real_uvicorn_over_tls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    assert run(capsys, "tls-cert", "--out", str(tmp_path / "tls"))[0] == 0
    assert run(capsys, "init", "--db", url)[0] == 0
    assert run(capsys, "worker", "add", "alice", "--practice", "P1", "--db", url)[0] == 0
    code, out, _ = run(capsys, "enrol-code", "alice", "--db", url)
    enrol_code = out.split(": ")[1].split()[0]
    cert, key = tmp_path / "tls" / "server.crt", tmp_path / "tls" / "server.key"
    with uvicorn_server(url, cert=cert, key=key) as base:
        with httpx.Client(base_url=base, verify=ssl.create_default_context(cafile=str(cert)), timeout=10) as c:
            assert c.get("/healthz").json()["ok"] is True
            r = c.post("/v1/devices/enrol", json={"code": enrol_code, "device_name": "L"})
            assert r.status_code == 201
            tok = r.json()["token"]
            h = {"Authorization": f"Bearer {tok}", **version_headers()}
            body = {
                "device_id": r.json()["device_id"],
                "protocol_version": 1,
                "schema_version": 1,
                "mutations": [
                    {"mutation_id": 1, "tbl": "person", "row_id": "p1", "op": "insert",
                     "fields": {"given_name": {"v": "A"}}, "hlc": 1 << 16}
                ],
            }  # fmt: skip
            assert c.post("/v1/sync/push", json=body, headers=h).json()["acks"][0]["status"] == "applied"
            pulled = c.get("/v1/sync/pull", params={"cursor": 0}, headers=h).json()
            assert [ch["id"] for ch in pulled["changes"]] == ["p1"]
        # A client that does not trust this certificate is refused at the handshake.
        with httpx.Client(base_url=base, timeout=10) as c, pytest.raises(httpx.ConnectError):
            c.get("/healthz")


def test_server_imports_without_textual() -> None:
    code = (
        "import sys; sys.modules['textual'] = None; sys.modules['rich'] = None; "
        "sys.modules['sprx_tui'] = None; import sync.server.cli, sync.server.app, sync.merge"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
