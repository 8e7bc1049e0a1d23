"""The `sprx` command: opens the app, or runs one task (init, demo, check, passwd, export, sync ...)."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sprx_tui.core.vault import VaultError

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    """A failure to report as one plain sentence."""

    def __init__(self, message: str, code: int = EXIT_FAIL) -> None:
        super().__init__(message)
        self.code = code


def default_vault() -> Path:
    env = os.environ.get("SPRX_VAULT")
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("sprx", appauthor=False)) / "vault"


# -- passphrases ------------------------------------------------------------------------------


class Secrets:
    """Reads passphrases from standard input (one per line) or from the terminal without echo."""

    def __init__(self, from_stdin: bool) -> None:
        self.from_stdin = from_stdin

    def read(self, prompt: str) -> bytearray:
        if self.from_stdin:
            line = sys.stdin.readline()
            if not line:
                raise CliError("No passphrase was given on standard input.")
            value = bytearray(line.rstrip("\r\n").encode())
        else:
            if not sys.stdin.isatty():
                raise CliError("No terminal to ask for the passphrase; use --passphrase-stdin in scripts.")
            value = bytearray(getpass.getpass(prompt).encode())
        return value

    def new(self) -> bytearray:
        first = self.read("New passphrase (12 characters or more; three random words work well): ")
        if self.from_stdin:
            return first
        second = self.read("Type it again: ")
        if first != second:
            raise CliError("The two passphrases did not match; nothing was changed.")
        second[:] = bytes(len(second))
        return first


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="", disable=not enabled, file=sys.stderr, leave=False)


# -- opening a vault ----------------------------------------------------------------------------


def _unlock_vault(args: argparse.Namespace, secrets: Secrets | None = None) -> Any:
    """Unlock the vault only (no migrations, no writes), so `check` can look before anything is written."""
    from sprx_tui.core.vault import Vault

    path = Path(args.vault)
    if not Vault.exists(path):
        raise CliError("There is no vault at that path; create one with `sprx init` or `sprx demo`.")
    vault = Vault(path)
    secrets = secrets or Secrets(args.passphrase_stdin)
    passphrase = secrets.read("Passphrase: ")
    try:
        vault.unlock(passphrase)
    finally:
        passphrase[:] = bytes(len(passphrase))
    return vault


def _open_unlocked(vault: Any) -> Any:
    from sprx_tui.core.store import open_unlocked

    return open_unlocked(vault, detail="cli")


def _lock_quietly(vault: Any) -> None:
    """Lock after a failure; a damaged database may refuse the checkpoint, which must not hide the cause."""
    with contextlib.suppress(Exception):
        vault.lock()


def unlock_store(args: argparse.Namespace, secrets: Secrets | None = None) -> Any:
    return _open_unlocked(_unlock_vault(args, secrets))


def _create_vault(args: argparse.Namespace) -> tuple[Any, str]:
    from sprx_tui.core.store import open_store
    from sprx_tui.core.vault import FLOOR, Vault

    secrets = Secrets(args.passphrase_stdin)
    passphrase = secrets.new()
    try:
        if not args.fast_kdf:
            print(
                "Measuring this computer to set the passphrase protection (a few seconds)...",
                file=sys.stderr,
            )
        vault, recovery = Vault.create(Path(args.vault), passphrase, kdf=FLOOR if args.fast_kdf else None)
    finally:
        passphrase[:] = bytes(len(passphrase))
    store = open_store(vault)
    store.service.record_event("CREATE_VAULT")
    return store, recovery


def _show_recovery(recovery: str) -> None:
    print("Your recovery key (shown once; write it down and keep it somewhere safe, away from the laptop):")
    print()
    print("    " + recovery)
    print()
    print(
        "It unlocks this vault if the passphrase is forgotten. Anyone holding it and the laptop can read the records."
    )


# -- commands ---------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    store, recovery = _create_vault(args)
    store.vault.lock()
    _show_recovery(recovery)
    print(f"Created an empty encrypted vault at {args.vault}.", file=sys.stderr)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    if args.people < 1 or args.people > 200_000:
        raise CliError("The number of demo people must be between 1 and 200000.", EXIT_USAGE)
    from sprx_tui.core.demo import build_demo

    store, recovery = _create_vault(args)
    try:
        with _progress(args.people, "Synthetic people", args.people >= 500 and not args.quiet) as bar:
            build_demo(store, people=args.people, seed=args.seed, progress=bar.update)
    finally:
        store.vault.lock()
    if not args.quiet:
        _show_recovery(recovery)
    print(
        f"Created a demo vault with {args.people} synthetic people at {args.vault}.",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from sprx_tui.core.vault import Vault

    vault = _unlock_vault(args)
    assert isinstance(vault, Vault)
    # Check the pages first: once SQLCipher meets a damaged page the connection refuses every later read.
    try:
        problems = vault.integrity_check()
    except BaseException:
        _lock_quietly(vault)
        raise
    if problems:
        _lock_quietly(vault)
        raise CliError("The vault failed its integrity check: some pages are damaged or were altered.")
    store = _open_unlocked(vault)
    try:
        chain_ok = store.service.verify_audit_chain()
        counts = store.queries.status_counts()
    finally:
        store.vault.lock()
    if not chain_ok:
        raise CliError("The audit trail's hash chain is broken: audit events were altered.")
    print(
        f"The vault is healthy: keys, encryption, integrity and audit trail check out ({sum(counts.values())} people)."
    )
    return EXIT_OK


def cmd_passwd(args: argparse.Namespace) -> int:
    from sprx_tui.core.vault import Vault

    path = Path(args.vault)
    if not Vault.exists(path):
        raise CliError("There is no vault at that path.")
    vault = Vault(path)
    secrets = Secrets(args.passphrase_stdin)
    if args.recovery:
        recovery = secrets.read("Recovery key: ").decode()
        new = secrets.new()
        try:
            vault.reset_passphrase_with_recovery(recovery, new)
        finally:
            new[:] = bytes(len(new))
    else:
        old = secrets.read("Current passphrase: ")
        new = secrets.new()
        try:
            vault.change_passphrase(old, new)
        finally:
            old[:] = bytes(len(old))
            new[:] = bytes(len(new))
    print("The passphrase was changed. The records themselves were not touched.", file=sys.stderr)
    return EXIT_OK


def _confirm_export(args: argparse.Namespace) -> None:
    # With --yes the warning is printed after a successful export, so a failure stays one line on stderr.
    if args.yes:
        return
    if args.passphrase_stdin or not sys.stdin.isatty():
        raise CliError("Exports must be confirmed; add --yes to confirm when running from a script.")
    from sprx_tui.core.export import LEAVING_WARNING

    print(LEAVING_WARNING, file=sys.stderr)
    answer = input("Type EXPORT to continue: ")
    if answer.strip() != "EXPORT":
        raise CliError("The export was cancelled; nothing was written.")


def cmd_export_gp_summary(args: argparse.Namespace) -> int:
    """`sprx export --format gp-summary --person NHS_NUMBER_OR_ID`: the closing summary for one person's GP."""
    if not args.person:
        raise CliError("Say whose summary to export: add --person with their NHS number or record id.")
    from sprx_tui.core.export import check_gp_summary_target
    from sprx_tui.core.service import ServiceError

    out = Path(args.out or "gp-summary.fhir.json")
    try:  # before the passphrase is asked for (and an UNLOCK audited)
        check_gp_summary_target(out)
    except ServiceError as exc:
        raise CliError(str(exc)) from None
    _confirm_export(args)
    store = unlock_store(args)
    try:
        from sprx_tui.core.export import find_person, write_gp_summary

        person = find_person(store, args.person)
        if person is None:
            raise CliError("No one in this vault has that NHS number or record id; nothing was written.")
        written, letter = write_gp_summary(store, person.id, out)
        consent = "codes only" if person.consent_gp_sharing == "codes_only" else person.consent_gp_sharing
        print(
            f"Wrote the GP closing summary (sharing: {consent}) as a FHIR document to {written} "
            f"and as a letter to {letter}.",
            file=sys.stderr,
        )
    finally:
        store.vault.lock()
    if args.yes:
        from sprx_tui.core.export import LEAVING_WARNING

        print(LEAVING_WARNING, file=sys.stderr)
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    if args.format == "gp-summary":
        return cmd_export_gp_summary(args)
    if args.person:
        raise CliError("--person is only for --format gp-summary; the other exports take every record.")
    out_arg = Path(args.out or ("sprx-export" if args.format == "csv" else "sprx-export.fhir.json"))
    # Refuse a bad destination before asking for the passphrase (and before an UNLOCK is audited).
    if args.format == "csv" and out_arg.is_dir() and any(out_arg.iterdir()):
        raise CliError("The export folder already has files in it; choose an empty or new folder.")
    if args.format == "csv" and out_arg.exists() and not out_arg.is_dir():
        raise CliError("The export path is a file, not a folder; choose an empty or new folder.")
    if args.format == "fhir" and out_arg.exists():
        raise CliError("A file with that name already exists; exports never overwrite, so choose a new name.")
    _confirm_export(args)
    store = unlock_store(args)
    try:
        if args.format == "csv":
            from sprx_tui.core.export import export_csv

            out = Path(args.out or "sprx-export")
            counts = export_csv(store, out)
            print(
                f"Wrote {sum(counts.values())} rows in {len(counts)} CSV files to {out}.",
                file=sys.stderr,
            )
        else:
            from sprx_tui.core import export

            fhir = getattr(export, "export_fhir", None)
            if fhir is None:
                raise CliError("FHIR export is not available in this version.")
            out = Path(args.out or "sprx-export.fhir.json")
            n = fhir(store, out)
            print(f"Wrote a FHIR R4 Bundle with {n} resources to {out}.", file=sys.stderr)
    finally:
        store.vault.lock()
    if args.yes:
        from sprx_tui.core.export import LEAVING_WARNING

        print(LEAVING_WARNING, file=sys.stderr)
    return EXIT_OK


def cmd_app(args: argparse.Namespace) -> int:
    try:
        from sprx_tui.app import run_app
    except ImportError:
        raise CliError("The app needs the 'tui' extra: pip install 'sprx[tui]'.") from None
    return run_app(Path(args.vault))


# -- sync: `sprx enrol`, `sprx sync` ------------------------------------------------------------------

SYNC_EXIT_CODES = """exit codes:
  0  synced
  1  other failure (the message says what; changes are kept)
  3  the practice server could not be reached; changes are kept and will sync later
  4  synced, but conflicts need a person to choose which version to keep
  5  this laptop's access was withdrawn (revoked) or it was retired (after sending everything) by the
     practice; its local copy has been erased
  6  this version of sprx (or the server) needs an update before syncing; changes are kept"""


def cmd_enrol(args: argparse.Namespace) -> int:
    """`sprx enrol --server URL --code CODE [--ca-cert FILE]`: enrol this vault with the practice server."""
    from sprx_tui.core.sync import SyncError, enrol
    from sync.client import check_server_url

    try:
        url = check_server_url(args.server)
    except SyncError as exc:
        raise CliError(str(exc)) from None
    ca = getattr(args, "ca_cert", None)
    if ca is not None and not Path(ca).is_file():
        raise CliError("The certificate file could not be found.")
    store = unlock_store(args)
    try:
        e = enrol(store, url, args.code, ca_cert=ca)
    except SyncError as exc:
        raise CliError(str(exc)) from None
    finally:
        store.vault.lock()
    print(f"This laptop is enrolled with {url} as {e.user_id}; run `sprx sync` to fetch the caseload.")
    if e.pin:
        print(f"Server certificate pinned (SHA-256 {e.pin}).")
    return EXIT_OK


class _Bars:
    """One tqdm bar at a time on stderr (phases run one after another); off when stderr is not a terminal."""

    LABELS = {
        "push": "Sending changes",
        "pull": "Receiving updates",
        "snapshot": "Receiving caseload",
        "read": "Reading the directory",
        "write": "Writing services",
    }

    def __init__(self) -> None:
        self.bar: Any = None
        self.phase: str | None = None

    def __call__(self, phase: str, done: int, total: int | None) -> None:
        from tqdm import tqdm

        if phase != self.phase or self.bar is None:
            self.close()
            self.phase = phase
            # disable=None: tqdm switches itself off when stderr is not a terminal (scripts, CI logs).
            self.bar = tqdm(total=total, desc=self.LABELS.get(phase, phase), unit=" rows", file=sys.stderr,
                            leave=False, disable=None)  # fmt: skip
        if total is not None and self.bar.total != total:
            self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar = None


def cmd_sync(args: argparse.Namespace) -> int:
    """`sprx sync`: push this laptop's changes and pull the caseload, with a progress bar on stderr.

    The exit code is the sync's own (SYNC_EXIT_CODES): 0 synced; 1 other failure; 3 the practice server
    could not be reached (changes are kept); 4 synced but conflicts need a person; 5 this laptop's
    access was withdrawn and its local copy erased; 6 an update is needed before syncing (changes are kept).
    """
    from sprx_tui.core.sync import EXIT_CONFLICTS, EXIT_SYNCED, set_aside_sentence, sync_now
    from sprx_tui.core.sync.run import plural

    store = unlock_store(args)
    bars = _Bars()
    try:
        result = sync_now(store, progress=bars)
    finally:
        bars.close()
        if store.vault.is_unlocked:
            store.vault.lock()
    if result.exit_code in (EXIT_SYNCED, EXIT_CONFLICTS):
        print(result.message)
        if result.pending:
            print(f"{plural(result.pending, 'change is', 'changes are')} still waiting to be sent.")
        if result.set_aside:
            print(set_aside_sentence(result.set_aside))
    else:
        print(f"sprx: {result.message}", file=sys.stderr)
    return result.exit_code


# -- reports and the directory ------------------------------------------------------------------------


def cmd_report(args: argparse.Namespace) -> int:
    """`sprx report`: print the figures for this vault."""
    from sprx_rules.report import period_from
    from sprx_tui.core.reports import build_report, render_text

    try:
        period = period_from(args.date_from, args.date_to, args.quarter)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    store = unlock_store(args)
    try:
        report = build_report(store, period=period)
    finally:
        store.vault.lock()
    print(render_text(report), end="")
    return EXIT_OK


def cmd_directory_import(args: argparse.Namespace) -> int:
    """`sprx directory import PATH`: exit 0 when anything was imported (even with problems), else 1."""
    from sprx_rules.gate import visible
    from sprx_rules.hsds import HsdsError
    from sprx_tui.core.directory import import_directory

    path = Path(args.path)
    if not path.exists():
        raise CliError("There is no directory package or file at that path.")
    from sprx_tui.core.sync.enrol import is_enrolled

    store = unlock_store(args)
    try:
        # An enrolled laptop's directory comes from the practice server: a local import may add and
        # update, but withdrawing is the server's to do (its full imports reach this laptop by sync).
        enrolled = is_enrolled(store)
        bars = _Bars()
        try:
            result = import_directory(
                store, path, full=not args.partial and not enrolled, source=args.source or "", progress=bars
            )
        except HsdsError as exc:
            raise CliError(str(exc)) from None
        finally:
            bars.close()
    finally:
        store.vault.lock()
    for p in result.problems:
        print(visible(str(p)), file=sys.stderr)  # a problem can quote the file
    if result.imported == 0:
        raise CliError("Nothing could be imported from that package; the problems are listed above.", EXIT_FAIL)
    for line in result.lines:
        print(visible(line))
    if enrolled and not args.partial:
        print("This laptop gets its directory from the practice server, so nothing was withdrawn here.")
    if result.inactive:
        n = result.inactive
        print(f"{n} {'service is' if n == 1 else 'services are'} marked inactive by the publisher.")
    if result.problems:
        n = len(result.problems)
        print(f"{n} {'problem was' if n == 1 else 'problems were'} found; the lines above say where.")
    return EXIT_OK


# -- parser -----------------------------------------------------------------------------------


def _vault_options(vault: Any, passphrase_stdin: Any) -> argparse.ArgumentParser:
    """--vault and --passphrase-stdin with the given defaults (a parent parser)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--vault", type=Path, default=vault, help="vault folder (default: your user data folder)")
    common.add_argument(
        "--passphrase-stdin",
        action="store_true",
        default=passphrase_stdin,
        help="read the passphrase (one line) from standard input",
    )
    return common


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sprx")
    except PackageNotFoundError:  # pragma: no cover - a tree that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sprx",
        description="Encrypted, offline-first case records for social prescribing link workers.",
        parents=[_vault_options(None, False)],
    )
    parser.add_argument("--version", action="version", version=f"sprx {_version()}")
    # The one rule for options accepted both before and after the command: the top-level parser sets the
    # defaults, and every subcommand's copy defaults to SUPPRESS, so it sets a value only when it is given.
    # (A subparser's own default used to overwrite the top-level value: `sprx --vault X check` used the
    # default vault.) Given in both places, the one after the command wins.
    common = _vault_options(argparse.SUPPRESS, argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, fn: Callable[[argparse.Namespace], int], help_text: str, **kw: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text, **kw)
        p.set_defaults(func=fn)
        return p

    p = add("init", cmd_init, "Create a new, empty encrypted vault.")
    p.add_argument("--fast-kdf", action="store_true", help="use the minimum Argon2id cost (64 MiB, 3 passes)")

    p = add("demo", cmd_demo, "Create a vault filled with a synthetic demo caseload.")
    p.add_argument("--people", type=int, default=60, help="number of synthetic people (default 60)")
    p.add_argument("--seed", type=int, default=7, help="random seed; the same seed gives the same people")
    p.add_argument("--fast-kdf", action="store_true", help="use the minimum Argon2id cost (64 MiB, 3 passes)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or recovery key")

    add("check", cmd_check, "Check the key, the encryption, page integrity and the audit trail.")

    p = add("passwd", cmd_passwd, "Change the passphrase (the records are not re-encrypted).")
    p.add_argument("--recovery", action="store_true", help="set a new passphrase using the recovery key")

    p = add("export", cmd_export, "Export records; the files leave the encrypted vault.")
    p.add_argument("--format", choices=["csv", "fhir", "gp-summary"], required=True)
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where to write (a folder for csv, a file for fhir and gp-summary; the letter goes beside it as .txt)",
    )
    p.add_argument("--person", default=None, help="gp-summary: whose closing summary (NHS number or record id)")
    p.add_argument("--yes", action="store_true", help="confirm the export without asking")

    p = add("enrol", cmd_enrol, "Enrol this laptop with the practice server.")
    p.add_argument("--server", required=True, help="server address, e.g. https://sprx.practice.example:8443")
    p.add_argument("--code", required=True, help="the one-time enrolment code from the practice admin")
    p.add_argument(
        "--ca-cert",
        type=Path,
        default=None,
        help="the server's certificate file, for a self-signed server",
    )

    add(
        "sync",
        cmd_sync,
        "Sync with the practice server now.",
        epilog=SYNC_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p = add("report", cmd_report, "Print caseload and outcome figures, for all records or one period.")
    p.add_argument("--from", dest="date_from", default=None, help="first day of the period, e.g. 2026-07-01")
    p.add_argument("--to", dest="date_to", default=None, help="last day of the period (included)")
    p.add_argument("--quarter", default=None, help="a calendar quarter instead of dates, e.g. 2026Q3")

    p = sub.add_parser("directory", parents=[common], help="Manage the local services directory.")
    dsub = p.add_subparsers(dest="directory_command", metavar="ACTION", required=True)
    p = dsub.add_parser(
        "import",
        parents=[common],
        help="Import a services directory into this vault: an HSDS 1.1 datapackage, an HSDS 3.0 / "
        "Open Referral UK CSV folder, or Open Referral UK JSON (a file or a folder of files).",
    )
    p.add_argument("path", type=Path)
    p.add_argument(
        "--partial",
        action="store_true",
        help="change only the services this holds (default: a full import, which withdraws the services "
        "of this source it no longer holds)",
    )
    p.add_argument("--source", default="", help="name of the source, when the practice imports from more than one")
    p.set_defaults(func=cmd_directory_import)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.vault is None:
        args.vault = default_vault()
    from sprx_tui.core.db import init_process_security

    init_process_security(True)
    func = getattr(args, "func", cmd_app)
    try:
        return func(args)
    except CliError as exc:
        print(f"sprx: {exc}", file=sys.stderr)
        return exc.code
    except VaultError as exc:
        print(f"sprx: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        print("sprx: stopped; nothing was half-written.", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: never a traceback
        from sqlalchemy.exc import DatabaseError

        from sprx_tui.core.diskfull import DISK_FULL, is_disk_full
        from sprx_tui.core.service import ServiceError

        if is_disk_full(exc, Path(args.vault)):
            print(f"sprx: {DISK_FULL}", file=sys.stderr)
        elif isinstance(exc, ServiceError):
            print(f"sprx: {exc}", file=sys.stderr)
        elif isinstance(exc, DatabaseError):
            # SQLCipher reports a damaged or altered page as "malformed" on the first read that touches it.
            print(
                "sprx: The vault's database could not be read (it may be damaged); "
                "run `sprx check` and ask your practice IT lead for help.",
                file=sys.stderr,
            )
        else:
            print(
                f"sprx: something unexpected went wrong ({type(exc).__name__}); the failed step changed nothing.",
                file=sys.stderr,
            )
        return EXIT_FAIL


if __name__ == "__main__":
    # `python -m sprx_tui.cli` runs this file as __main__, a second copy of the module: the commands
    # that live elsewhere raise sprx_tui.cli.CliError, which that copy's `except CliError` would not
    # catch (a plain refusal became "something unexpected went wrong"). Run the package's own copy.
    from sprx_tui.cli import main as package_main

    raise SystemExit(package_main())
