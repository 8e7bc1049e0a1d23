"""The `sprx-server` admin command: serve, workers, enrolment, devices, assignment, imports."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn


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


def _port(text: str) -> int:
    from sync.server.config import parse_port

    try:
        return parse_port(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return n


_SETTINGS = ("db", "host", "port", "tls_cert", "tls_key", "max_body", "max_enrol_body", "max_push_body",
             "enrol_attempts_per_address", "enrol_attempts", "enrol_window")  # fmt: skip


def _settings(args: argparse.Namespace) -> Any:
    """The configuration file, then SPRX_SERVER_* variables, then this command's options (sync.server.config)."""
    from sync.server.config import load

    return load(getattr(args, "config", None), {k: getattr(args, k, None) for k in _SETTINGS})


def _open_store(url: str) -> Any:
    """The store at ``url``; never creates one (only `init` does) and refuses one whose schema is behind."""
    from sqlalchemy.exc import SQLAlchemyError

    from sync.server.store import ServerStore

    try:
        return ServerStore(url, create=False)
    except SQLAlchemyError:
        raise Failure(
            "Cannot open the server store; check --db, SPRX_SERVER_DB or store.url in the configuration file."
        ) from None
    except ModuleNotFoundError as e:
        raise Failure(f"The database driver {e.name} is not installed.") from None


def _store(args: argparse.Namespace) -> Any:
    return _open_store(_settings(args).require_db())


def cmd_serve(args: argparse.Namespace) -> int:
    from sync.server import serve

    s = _settings(args)
    url = s.require_db()
    serve.check_tls(s)
    return serve.run(s, _open_store(url))  # binds the port, then points the log at its destination


def _print_lines(lines: list[str]) -> int:
    from sprx_rules.gate import visible

    for line in lines:
        print(visible(line))
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from sync.server import setup

    return _print_lines(setup.init(_settings(args)))


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from sync.server import setup

    return _print_lines(setup.upgrade(_settings(args)))


def cmd_db_current(args: argparse.Namespace) -> int:
    from sync.server import setup

    return _print_lines(setup.current(_settings(args)))


def cmd_backup(args: argparse.Namespace) -> int:
    from sync.server.backup import backup

    return _print_lines([backup(_settings(args).require_db(), Path(args.out))])


def cmd_restore(args: argparse.Namespace) -> int:
    from sync.server.backup import restore

    return _print_lines(restore(_settings(args).require_db(), Path(args.src)))


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


def cmd_import_directory(args: argparse.Namespace) -> int:
    from sprx_rules.gate import visible
    from sync.server.directory import DirectoryError, import_path

    store = _store(args)
    store.require_practice(args.practice)  # an unknown practice is refused, not filled
    try:
        result = import_path(store, Path(args.path), args.practice, full=not args.partial, source=args.source)
    except DirectoryError as e:
        raise Failure(str(e)) from None
    for p in result.problems:
        print(f"{visible(p.file)}:{p.line}: {visible(p.reason)}", file=sys.stderr)  # a reason can quote the file
    for line in result.lines:
        print(visible(line))
    if result.imported == 0:
        raise Failure("Nothing could be imported from that package; the problems are listed above.")
    return 1 if result.problems else 0


def cmd_directory_pull(args: argparse.Namespace) -> int:
    from sync.server.directory_feed import FeedError, run_command

    url = _settings(args).require_db()
    store = _open_store(url)
    store.require_practice(args.practice)
    try:
        return run_command(store, url, args)
    except FeedError as e:
        raise Failure(str(e)) from None


def _directory_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--partial",
        action="store_true",
        help="change only the services this holds (default: full, which withdraws the services of this "
        "source it no longer holds)",
    )
    p.add_argument("--source", default="", help="name of the source, when the practice has more than one")


def cmd_report(args: argparse.Namespace) -> int:
    from sprx_rules.gate import visible
    from sprx_rules.report import period_from
    from sync.server.report import practice_report

    try:
        period = period_from(args.date_from, args.date_to, args.quarter)
    except ValueError as exc:
        raise Failure(str(exc)) from None
    store = _store(args)
    store.require_practice(args.practice)  # an unknown practice is refused, not reported as all zeros
    for line in practice_report(store, args.practice, period):
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
    from sync.server import admin  # the admin commands that check their targets (worker, people, codes, ...)
    from sync.server.serve import version

    p = _Parser(
        prog="sprx-server",
        description="The sprx practice sync server and its admin. Settings come from the configuration file "
        "(--config, else $SPRX_SERVER_CONFIG, else /etc/sprx/server.toml), then SPRX_SERVER_* environment "
        "variables (SPRX_SERVER_DB, SPRX_SERVER_PORT, ...), then options.",
    )
    p.add_argument("--version", action="version", version=f"sprx-server {version()}")
    db = _Parser(add_help=False)
    db.add_argument(
        "--db",
        default=None,
        help="store URL (sqlite:////var/lib/sprx/server.db or postgresql+psycopg://...); "
        "else SPRX_SERVER_DB, else store.url in the configuration file",
    )
    db.add_argument("--config", metavar="PATH", help="configuration file (TOML)")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)

    i = sub.add_parser("init", parents=[db], help="create the server store (folders 0700, file 0600), newest schema")
    i.set_defaults(fn=cmd_init)
    dbc = sub.add_parser("db", help="the store's schema").add_subparsers(
        dest="dbcmd", required=True, parser_class=_Parser
    )
    up = dbc.add_parser("upgrade", parents=[db], help="apply the migrations this release brings (back up first)")
    up.set_defaults(fn=cmd_db_upgrade)
    dbc.add_parser("current", parents=[db], help="show the store's schema revision").set_defaults(fn=cmd_db_current)
    b = sub.add_parser("backup", parents=[db], help="write a consistent copy of the store (safe while serving)")
    b.add_argument("--out", required=True, metavar="FILE", help="the backup file to write (never overwritten; 0600)")
    b.set_defaults(fn=cmd_backup)
    rs = sub.add_parser("restore", parents=[db], help="restore a backup into a new, empty store")
    rs.add_argument("--from", dest="src", required=True, metavar="FILE", help="a file written by `sprx-server backup`")
    rs.set_defaults(fn=cmd_restore)

    s = sub.add_parser("serve", parents=[db], help="run the sync server")
    s.add_argument("--host", default=None, help="address to listen on (127.0.0.1)")
    s.add_argument("--port", type=_port, default=None, help="port (8443)")
    s.add_argument("--tls-cert", default=None, help="TLS certificate file (PEM)")
    s.add_argument("--tls-key", default=None, help="TLS private key file (PEM)")
    s.add_argument("--max-body", type=_size, default=None, help="request body limit in bytes (K/M suffix) (64K)")
    s.add_argument("--max-enrol-body", type=_size, default=None, help="enrolment body limit (64K)")
    s.add_argument("--max-push-body", type=_size, default=None, help="push body limit (8M)")
    s.add_argument(
        "--enrol-attempts-per-address", type=_positive, default=None, help="failed enrolments per address, window (10)"
    )
    s.add_argument("--enrol-attempts", type=_positive, default=None, help="failed enrolments overall per window (60)")
    s.add_argument("--enrol-window", type=_positive, default=None, help="rate-limit window in seconds (600)")
    s.set_defaults(fn=cmd_serve)

    w = sub.add_parser("worker", help="manage link workers").add_subparsers(
        dest="wcmd", required=True, parser_class=_Parser
    )
    admin.add_worker_commands(w, db)

    admin.add_enrol_code_command(sub, db)

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
    admin.add_device_commands(d, db)  # list, restore

    admin.add_people_commands(sub, db)
    admin.add_assign_command(sub, db)
    admin.add_import_referrals_command(sub, db)

    # Extension points owned by other engineers: directory import and commissioner report.
    idir = sub.add_parser(
        "import-directory",
        parents=[db],
        help="import community services: HSDS 1.1 or 3.0 / Open Referral UK CSV, or Open Referral UK JSON",
    )
    idir.add_argument("path", help="an HSDS / Open Referral UK directory (folder or file)")
    idir.add_argument("--practice", required=True)
    _directory_options(idir)
    idir.set_defaults(fn=cmd_import_directory)
    dirs = sub.add_parser("directory", help="the practice's services directory").add_subparsers(
        dest="directory_cmd", required=True, parser_class=_Parser
    )
    dpull = dirs.add_parser(
        "pull", parents=[db], help="read an Open Referral UK / HSDS 3.0 API (URL/services?page=N) into the directory"
    )
    dpull.add_argument("url")
    dpull.add_argument("--practice", required=True)
    _directory_options(dpull)
    dpull.add_argument("--state", help="the file that keeps a stopped pull's place (default: beside the store)")
    dpull.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for each answer (default 20)")
    dpull.add_argument("--retries", type=int, default=3, help="tries again after a failed request (default 3)")
    dpull.set_defaults(fn=cmd_directory_pull)
    rep = sub.add_parser("report", parents=[db], help="practice figures")
    rep.add_argument("--practice", required=True)
    rep.add_argument("--from", dest="date_from", default=None, help="first day of the period, e.g. 2026-07-01")
    rep.add_argument("--to", dest="date_to", default=None, help="last day of the period (included)")
    rep.add_argument("--quarter", default=None, help="a calendar quarter instead of dates, e.g. 2026Q3")
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
    from sync.server.config import ConfigError
    from sync.server.store import StoreError

    try:
        return int(args.fn(args))
    except (Failure, ConfigError) as e:
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
