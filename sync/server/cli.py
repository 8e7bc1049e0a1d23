"""The `sprx-server` admin command: serve, workers, enrolment, devices, assignment, imports."""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

DEFAULT_DB = "sqlite:///sprx-server.db"


class Failure(Exception):
    """A failure to report as one plain sentence."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One plain sentence instead of argparse's usage dump.
        msg = message[0].upper() + message[1:] if message else "Invalid arguments"
        self.exit(2, f"{msg.rstrip('.')}. Try '{self.prog} --help'.\n")


def _when(ms: int | None) -> str:
    if ms is None:
        return "never"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _size(text: str) -> int:
    """A byte count such as 65536, 64K or 8M."""
    t = text.strip().upper().removesuffix("B")
    mult = {"K": 1024, "M": 1024 * 1024}.get(t[-1:], 1)
    try:
        n = int(t[:-1] if mult > 1 else t) * mult
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 64K or 8M") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least one byte")
    return n


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return n


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _store(args: argparse.Namespace) -> Any:
    from sqlalchemy.exc import SQLAlchemyError

    from sync.server.store import ServerStore

    try:
        return ServerStore(args.db)
    except SQLAlchemyError:
        raise Failure("Cannot open the server database; check --db or SPRX_SERVER_DB.") from None
    except ModuleNotFoundError as e:
        raise Failure(f"The database driver {e.name} is not installed.") from None


def cmd_serve(args: argparse.Namespace) -> int:
    if bool(args.tls_cert) != bool(args.tls_key):
        raise Failure("Give both --tls-cert and --tls-key, or neither.")
    if not args.tls_cert and not _is_loopback(args.host):
        raise Failure("Refusing to serve on a network address without TLS; use --tls-cert/--tls-key.")
    for f in (args.tls_cert, args.tls_key):
        if f and not Path(f).is_file():
            raise Failure(f"Cannot read {f}.")
    import uvicorn

    from sync.server.app import create_app
    from sync.server.limits import Limits
    from sync.server.log import configure

    configure()
    limits = Limits(
        body_default=args.max_body,
        body_paths={"/v1/devices/enrol": args.max_enrol_body, "/v1/sync/push": args.max_push_body},
        enrol_per_address=args.enrol_attempts_per_address,
        enrol_overall=args.enrol_attempts,
        enrol_window_s=args.enrol_window,
    )
    app = create_app(_store(args), limits=limits)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        ssl_certfile=args.tls_cert,
        ssl_keyfile=args.tls_key,
        access_log=False,  # our middleware logs paths without query strings
        log_level="warning",
        server_header=False,
    )
    return 0


def cmd_worker_add(args: argparse.Namespace) -> int:
    _store(args).add_worker(args.name, args.practice, args.team)
    print(f"Added worker {args.name} to practice {args.practice}.")
    return 0


def cmd_enrol_code(args: argparse.Namespace) -> int:
    code, expires = _store(args).issue_enrol_code(args.worker)
    print(f"Enrolment code for {args.worker}: {code}")
    print(f"Single use; expires {_when(expires)} (15 minutes).")
    return 0


def _describe_device(d: dict[str, Any]) -> list[str]:
    """What the server knows about a laptop, for the admin to read before revoking or retiring it."""
    from sprx_rules.gate import visible

    if d["pending_reported"] is None:
        pending = "not reported (a laptop reports it when it syncs)"
    else:
        pending = f"{d['pending_reported']} (reported {_when(d['pending_reported_at'])})"
    return [
        f"Device:   {d['id']}",
        f"Name:     {visible(d['name'])}",
        f"Worker:   {d['worker_id']}",
        f"Enrolled: {_when(d['enrolled_at'])}",
        f"Last seen: {_when(d['last_seen'])}",
        f"Changes waiting on the laptop: {pending}",
    ]


def _confirm(args: argparse.Namespace, question: str, refusal: str) -> None:
    """Ask ``question`` at a terminal unless --yes; Failure(refusal) when there is no one to ask or they say no."""
    if args.yes:
        return
    stdin = sys.stdin
    if stdin is None or stdin.closed or not stdin.isatty():
        raise Failure(refusal + " Run it again at a terminal to be asked, or add --yes.")
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        answer = ""
    if answer.strip().lower() not in ("y", "yes"):
        raise Failure(refusal)


def cmd_device_revoke(args: argparse.Namespace) -> int:
    store = _store(args)
    d = store.device_info(args.device_id)
    if d["revoked_at"] is not None:
        print(f"Device {args.device_id} was already revoked on {_when(d['revoked_at'])}.")
        return 0
    for line in _describe_device(d):
        print(line)
    pending = d["pending_reported"]
    if pending:
        print(
            f"Revoking erases the laptop's copy at its next sync and accepts nothing more from it: the {pending} "
            "change(s) waiting on it will be lost. If the laptop is not lost or stolen, retire it instead "
            f"(sprx-server device retire {args.device_id}) so it sends them first."
        )
    else:
        print(
            "Revoking erases the laptop's copy at its next sync and accepts nothing more from it; anything "
            "it has not sent is lost. For a laptop that is not lost or stolen, use `sprx-server device retire`."
        )
    _confirm(args, "Revoke this laptop now?", "Nothing was revoked.")
    store.revoke_device(args.device_id)
    print(f"Revoked device {args.device_id}; its next sync will fail and erase its local copy.")
    return 0


def cmd_device_retire(args: argparse.Namespace) -> int:
    store = _store(args)
    d = store.device_info(args.device_id)
    if d["revoked_at"] is not None:
        raise Failure(f"Device {args.device_id} was already revoked on {_when(d['revoked_at'])}; it cannot be retired.")
    if d["retired_at"] is not None:
        print(
            f"Device {args.device_id} was already retired on {_when(d['retired_at'])}; "
            "it erases itself at its next sync."
        )
        return 0
    for line in _describe_device(d):
        print(line)
    print(
        "Retiring lets the laptop send everything it holds at its next sync; then it erases its own copy "
        "and can sync no more."
    )
    _confirm(args, "Retire this laptop?", "Nothing was retired.")
    store.retire_device(args.device_id)
    print(f"Retired device {args.device_id}; at its next sync it sends what it holds, then erases its local copy.")
    return 0


def cmd_device_list(args: argparse.Namespace) -> int:
    from sprx_rules.gate import visible  # names come from laptops: escapes are printed as placeholders

    rows = _store(args).list_devices()
    if not rows:
        print("No devices enrolled.")
        return 0
    print("device_id\tworker\tname\tenrolled\tlast_sync\tstatus")
    for d in rows:
        if d["retired_at"] and d["revoked_at"]:
            status = f"retired {_when(d['retired_at'])}, erased {_when(d['revoked_at'])}"
        elif d["retired_at"]:
            status = f"retiring since {_when(d['retired_at'])}"
        else:
            status = f"revoked {_when(d['revoked_at'])}" if d["revoked_at"] else "active"
        who = "\t".join(visible(d[k]) for k in ("id", "worker_id", "name"))
        print(f"{who}\t{_when(d['enrolled_at'])}\t{_when(d['last_seen'])}\t{status}")
    return 0


def cmd_assign(args: argparse.Namespace) -> int:
    _store(args).assign(args.person_id, worker_id=args.worker, team_id=args.team)
    print(f"Assigned {args.person_id} to {args.worker or 'team ' + str(args.team)}.")
    return 0


def cmd_import_referrals(args: argparse.Namespace) -> int:
    from sprx_rules.gate import visible
    from sync.server.importer import ImportFileError, import_referrals

    try:
        rep = import_referrals(_store(args), Path(args.csv))
    except ImportFileError as e:
        raise Failure(str(e)) from None
    print(f"Imported {rep.imported} referral(s); {rep.already_present} already present.")
    for line, reason in rep.errors:
        print(f"Line {line}: {visible(reason)}.", file=sys.stderr)  # a reason can quote the file
    return 1 if rep.errors else 0


def cmd_import_directory(args: argparse.Namespace) -> int:
    from sprx_rules.gate import visible
    from sync.server.directory import DirectoryError, import_directory

    try:
        n, errors = import_directory(_store(args), Path(args.path), args.practice)
    except DirectoryError as e:
        raise Failure(str(e)) from None
    print(f"Imported or updated {n} service(s).")
    for line, reason in errors:
        print(f"Line {line}: {visible(reason)}.", file=sys.stderr)  # a reason can quote the file
    return 1 if errors else 0


def cmd_report(args: argparse.Namespace) -> int:
    from sprx_rules.gate import visible
    from sync.server.report import practice_report

    for line in practice_report(_store(args), args.practice):
        print(visible(line))
    return 0


def cmd_tls_cert(args: argparse.Namespace) -> int:
    from sync.server.tls import fingerprint, make_self_signed

    try:
        cert, key = make_self_signed(Path(args.out), args.host)
    except OSError:
        raise Failure(f"Cannot write the certificate into {args.out}.") from None
    print(f"Certificate: {cert}")
    print(f"Private key: {key} (mode 0600)")
    print(f"SHA-256 fingerprint: {fingerprint(cert.read_bytes())}")
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    wm = _store(args).gc()
    print(f"Tombstone watermark is now {wm}.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="sprx-server", description="The sprx practice sync server and its admin.")
    db = _Parser(add_help=False)
    db.add_argument(
        "--db",
        default=os.environ.get("SPRX_SERVER_DB", DEFAULT_DB),
        help="database URL (sqlite:///file.db or postgresql+psycopg://...)",
    )
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)

    s = sub.add_parser("serve", parents=[db], help="run the sync server")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8443)
    s.add_argument("--tls-cert")
    s.add_argument("--tls-key")
    s.add_argument("--max-body", type=_size, default="64K", help="request body limit in bytes (K/M suffix) (64K)")
    s.add_argument("--max-enrol-body", type=_size, default="64K", help="enrolment body limit (64K)")
    s.add_argument("--max-push-body", type=_size, default="8M", help="push body limit (8M)")
    s.add_argument(
        "--enrol-attempts-per-address", type=_positive, default=10, help="failed enrolments per address per window"
    )
    s.add_argument("--enrol-attempts", type=_positive, default=60, help="failed enrolments overall per window")
    s.add_argument("--enrol-window", type=_positive, default=600, help="rate-limit window in seconds (600)")
    s.set_defaults(fn=cmd_serve)

    w = sub.add_parser("worker", help="manage link workers").add_subparsers(
        dest="wcmd", required=True, parser_class=_Parser
    )
    wa = w.add_parser("add", parents=[db], help="add a worker")
    wa.add_argument("name", help="the worker's login id, e.g. asmith")
    wa.add_argument("--practice", required=True)
    wa.add_argument("--team")
    wa.set_defaults(fn=cmd_worker_add)

    e = sub.add_parser("enrol-code", parents=[db], help="issue a one-time enrolment code")
    e.add_argument("worker")
    e.set_defaults(fn=cmd_enrol_code)

    d = sub.add_parser("device", help="manage enrolled laptops").add_subparsers(
        dest="dcmd", required=True, parser_class=_Parser
    )
    dr = d.add_parser("revoke", parents=[db], help="lost or stolen: erase at once, accept nothing more")
    dr.add_argument("device_id")
    dr.add_argument("--yes", action="store_true", help="do not ask for confirmation (scripts)")
    dr.set_defaults(fn=cmd_device_revoke)
    dt_ = d.add_parser("retire", parents=[db], help="a laptop leaving service: it sends what it holds, then erases")
    dt_.add_argument("device_id")
    dt_.add_argument("--yes", action="store_true", help="do not ask for confirmation (scripts)")
    dt_.set_defaults(fn=cmd_device_retire)
    dl = d.add_parser("list", parents=[db], help="list laptops and their last sync")
    dl.set_defaults(fn=cmd_device_list)

    a = sub.add_parser("assign", parents=[db], help="assign a person to a worker or team")
    a.add_argument("person_id")
    g = a.add_mutually_exclusive_group(required=True)
    g.add_argument("--worker")
    g.add_argument("--team")
    a.set_defaults(fn=cmd_assign)

    r = sub.add_parser("import-referrals", parents=[db], help="import referrals from CSV")
    r.add_argument("csv")
    r.set_defaults(fn=cmd_import_referrals)

    # Extension points owned by other engineers: directory import and commissioner report.
    idir = sub.add_parser("import-directory", parents=[db], help="import community services (CSV)")
    idir.add_argument("path")
    idir.add_argument("--practice", required=True)
    idir.set_defaults(fn=cmd_import_directory)
    rep = sub.add_parser("report", parents=[db], help="practice figures")
    rep.add_argument("--practice", required=True)
    rep.set_defaults(fn=cmd_report)

    t = sub.add_parser("tls-cert", help="write a self-signed certificate and key")
    t.add_argument("--out", required=True)
    t.add_argument("--host", default="127.0.0.1")
    t.set_defaults(fn=cmd_tls_cert)

    gc = sub.add_parser("gc", parents=[db], help="drop tombstones every laptop has seen")
    gc.set_defaults(fn=cmd_gc)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Everything the server writes (its database, SQLite's -wal/-shm, keys, folders) is private.
    from sync.server.private import PRIVATE_UMASK

    old_umask = os.umask(PRIVATE_UMASK)
    logging.getLogger("sprx").setLevel(logging.WARNING if args.cmd != "serve" else logging.INFO)
    try:
        return _run(args)
    finally:
        os.umask(old_umask)  # as it was, for a caller in the same process (tests)


def _run(args: argparse.Namespace) -> int:
    from sprx_rules.gate import visible
    from sync.server.store import StoreError

    try:
        return int(args.fn(args))
    except Failure as e:
        print(visible(str(e), multiline=True), file=sys.stderr)  # messages can quote a file or a name
    except StoreError as e:
        print(visible(e.message, multiline=True), file=sys.stderr)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly; point stdout at devnull so the
        # interpreter's final flush cannot raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:  # noqa: BLE001 - the contract is one sentence, never a traceback
        print(f"Unexpected {type(e).__name__}; nothing more was done.", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
