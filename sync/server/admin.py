"""`sprx-server` admin commands that check what they are told: workers, people and assignment, enrolment
codes, device list and restore, the referral import.

``sync.server.cli`` registers them (``add_*`` below); the store does the work (``sync.server.store.admin``).
Every target is looked up first, so an unknown practice, team, worker, person, device or code is one
sentence and a non-zero exit. Anything that came from elsewhere (names, device names, reasons quoting a
file) is printed through ``sprx_rules.gate.visible``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from sprx_rules.gate import visible
from sprx_rules.nhs import format_nhs_number
from sync.server.cli import Failure, _confirm, _describe_device, _Parser, _store, _when

# ---------------------------------------------------------------- workers


def cmd_worker_add(args: argparse.Namespace) -> int:
    _store(args).add_worker(args.login, args.practice, args.team, display_name=args.display_name)
    named = f" ({visible(args.display_name)})" if args.display_name else ""
    print(f"Added worker {args.login}{named} to practice {args.practice}.")
    print(f"Next: sprx-server enrol-code issue {args.login}, and give them the code for `sprx enrol`.")
    return 0


def cmd_worker_list(args: argparse.Namespace) -> int:
    rows = _store(args).list_workers(include_removed=args.all)
    if not rows:
        print("No workers yet; add one with `sprx-server worker add LOGIN --practice PRACTICE`.")
        return 0
    print("login\tname\tpractice\tteam\tpeople\tlaptops\tadded" + ("\tremoved" if args.all else ""))
    for w in rows:
        cells = [visible(w[k] or "-") for k in ("id", "display_name", "practice_id", "team_id")]
        cells += [str(w["people"]), str(w["laptops"]), _when(w["created_at"])]
        if args.all:
            cells.append(_when(w["removed_at"]) if w["removed_at"] else "-")
        print("\t".join(cells))
    return 0


def cmd_worker_remove(args: argparse.Namespace) -> int:
    cancelled = _store(args).remove_worker(args.login)
    extra = f"; {cancelled} unused enrolment code(s) cancelled" if cancelled else ""
    print(f"Removed worker {args.login}{extra}. Their laptops' history is kept.")
    return 0


def add_worker_commands(w: Any, db: argparse.ArgumentParser) -> None:
    wa = w.add_parser("add", parents=[db], help="add a worker by login (e.g. asmith), with their name for lists")
    wa.add_argument("login", help="the worker's login: lower-case letters, digits, . _ - (it is written to logs)")
    wa.add_argument(
        "--name", dest="display_name", metavar="NAME", help='the person\'s name, e.g. "A. Smith" (shown in lists only)'
    )
    wa.add_argument("--practice", required=True, help="the practice's id (made by its first worker)")
    wa.add_argument("--team", help="a team within the practice (made by its first worker)")
    wa.set_defaults(fn=cmd_worker_add)
    wl = w.add_parser("list", parents=[db], help="list workers, the people assigned to them and their laptops")
    wl.add_argument("--all", action="store_true", help="include removed workers")
    wl.set_defaults(fn=cmd_worker_list)
    wr = w.add_parser("remove", parents=[db], help="remove a worker (once their people are assigned to others)")
    wr.add_argument("login")
    wr.set_defaults(fn=cmd_worker_remove)


# ---------------------------------------------------------------- people and assignment


def cmd_people_find(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.practice is not None:
        store.require_practice(args.practice)
    found, total = store.find_people(args.text, args.practice)
    if not found:
        print("No one matches.")
        return 0
    print("id\tname\tnhs_number\tpractice\tworker")
    for p in found:
        nhs = format_nhs_number(p["nhs_number"]) if p["nhs_number"] else "-"
        if p["worker_id"]:
            owner = p["worker_id"]
        else:
            owner = f"team {p['team_id']}" if p["team_id"] else "unassigned"
        print("\t".join(visible(str(x)) for x in (p["id"], p["name"] or "-", nhs, p["practice_id"], owner)))
    if total > len(found):
        print(f"... and {total - len(found)} more; give more of the name or the NHS number.")
    return 0


def add_people_commands(sub: Any, db: argparse.ArgumentParser) -> None:
    pe = sub.add_parser("people", help="find people on the server").add_subparsers(
        dest="pcmd", metavar="ACTION", required=True, parser_class=_Parser
    )
    pf = pe.add_parser("find", parents=[db], help="find people by NHS number or part of a name: id, name, worker")
    pf.add_argument("text", help="an NHS number, or part of a given or family name (any case)")
    pf.add_argument("--practice", help="only this practice")
    pf.set_defaults(fn=cmd_people_find)


def cmd_assign(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.worker is not None:
        practice_id = str(store.get_worker(args.worker).practice_id)
    else:
        practice_id = store.require_team(args.team)
    person_id = store.resolve_person(args.person, practice_id)
    store.assign(person_id, worker_id=args.worker, team_id=args.team)
    to = args.worker if args.worker is not None else f"team {args.team}"
    print(f"Assigned person {person_id} to {to}; their laptop gets the record at its next sync.")
    return 0


def add_assign_command(sub: Any, db: argparse.ArgumentParser) -> None:
    a = sub.add_parser("assign", parents=[db], help="assign a person to a worker or team")
    a.add_argument("person", help="the person's NHS number, or the id `sprx-server people find` shows")
    g = a.add_mutually_exclusive_group(required=True)
    g.add_argument("--worker", metavar="LOGIN")
    g.add_argument("--team", metavar="TEAM")
    a.set_defaults(fn=cmd_assign)


# ---------------------------------------------------------------- enrolment codes

ENROL_CODE_USAGE = """\
  sprx-server enrol-code issue LOGIN      a one-time code for the worker's laptop (15 minutes)
  sprx-server enrol-code LOGIN            the same (the older form)
  sprx-server enrol-code list [--all]     codes not used yet (--all: used and expired ones too)
  sprx-server enrol-code cancel CODE      cancel a code, as issued (ABCDE-FGHJK) or by its ref in the list
  sprx-server enrol-code cancel --worker LOGIN   cancel every unused code of a worker"""


def _issue(args: argparse.Namespace, login: str) -> int:
    code, expires = _store(args).issue_enrol_code(login)
    print(f"Enrolment code for {login}: {code}")
    print(f"Single use; expires {_when(expires)} (15 minutes).")
    return 0


def _list_codes(args: argparse.Namespace) -> int:
    rows = _store(args).list_enrol_codes(include_all=args.all)
    if not rows:
        print("No enrolment codes waiting to be used." if not args.all else "No enrolment codes.")
        return 0
    print("ref\tworker\tissued\texpires\tstatus")
    for c in rows:
        status = c["status"] if c["status"] != "used" else f"used {_when(c['used_at'])} by device {c['device_id']}"
        print(f"{c['ref']}\t{visible(c['worker_id'])}\t{_when(c['issued_at'])}\t{_when(c['expires_at'])}\t{status}")
    return 0


def _cancel(args: argparse.Namespace) -> int:
    if args.worker is not None:
        if args.target is not None:
            raise Failure("Give a code or --worker LOGIN, not both.")
        n = _store(args).cancel_worker_codes(args.worker)
        print(f"Cancelled {n} unused enrolment code(s) of {args.worker}.")
        return 0
    if args.target is None:
        raise Failure("Give the code to cancel (or its ref from `sprx-server enrol-code list`), or --worker LOGIN.")
    worker_id = _store(args).cancel_enrol_code(args.target)
    print(f"Cancelled the enrolment code for {worker_id}; it can no longer enrol a laptop.")
    return 0


def cmd_enrol_code(args: argparse.Namespace) -> int:
    what, target = args.what, args.target
    if what == "list":
        if target is not None:
            raise Failure("`enrol-code list` takes no other words; add --all to see used and expired codes.")
        return _list_codes(args)
    if what == "cancel":
        return _cancel(args)
    if args.all or args.worker is not None:
        raise Failure("--all goes with `enrol-code list` and --worker with `enrol-code cancel`.")
    if what == "issue":
        if target is None:
            raise Failure("Give the worker's login: sprx-server enrol-code issue LOGIN.")
        return _issue(args, target)
    if target is not None:
        raise Failure(f"Unknown enrol-code command {what}; use issue, list or cancel.")
    return _issue(args, what)  # the older form: enrol-code LOGIN


def add_enrol_code_command(sub: Any, db: argparse.ArgumentParser) -> None:
    e = sub.add_parser(
        "enrol-code",
        parents=[db],
        help="one-time enrolment codes: issue LOGIN, list, cancel",
        epilog="usage:\n" + ENROL_CODE_USAGE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument("what", metavar="issue|list|cancel|LOGIN", help="what to do (a login alone issues a code)")
    e.add_argument("target", nargs="?", metavar="LOGIN|CODE", help="the worker (issue) or the code (cancel)")
    e.add_argument("--all", action="store_true", help="list: include used and expired codes")
    e.add_argument("--worker", metavar="LOGIN", help="cancel: every unused code of this worker")
    e.set_defaults(fn=cmd_enrol_code)


# ---------------------------------------------------------------- devices


def _status(d: dict[str, Any]) -> str:
    """A device's state, and whether it can still be restored."""
    if d["erased"]:
        erased = _when(d["erase_told_at"] or d["revoked_at"])
        if d["retired_at"]:
            return f"retired {_when(d['retired_at'])}, erased {erased}"
        return f"revoked {_when(d['revoked_at'])}, erased {erased}"
    if d["revoked_at"]:
        return f"revoked {_when(d['revoked_at'])} (not synced since; restorable)"
    if d["retired_at"]:
        return f"retiring since {_when(d['retired_at'])}"
    return "active"


def cmd_device_list(args: argparse.Namespace) -> int:
    rows = _store(args).list_devices()
    if not rows:
        print("No devices enrolled.")
        return 0
    print("device_id\tworker\tname\tenrolled\tlast_sync\tstatus")
    for d in rows:
        who = "\t".join(visible(d[k]) for k in ("id", "worker_id", "name"))  # names come from laptops
        print(f"{who}\t{_when(d['enrolled_at'])}\t{_when(d['last_seen'])}\t{_status(d)}")
    return 0


def cmd_device_restore(args: argparse.Namespace) -> int:
    store = _store(args)
    d = store.device_info(args.device_id)
    if d["erased"]:
        # Said before asking: there is nothing to confirm.
        store.restore_device(args.device_id)  # raises the store's sentence (erased: enrol again)
    if d["revoked_at"] is None and d["retired_at"] is None:
        print(f"Device {args.device_id} is active; there is nothing to restore.")
        return 0
    for line in _describe_device(d):
        print(line)
    undo = "revoked" if d["revoked_at"] is not None else "retired"
    print(
        f"The laptop was {undo} on {_when(d['revoked_at'] or d['retired_at'])} and has not been told to erase "
        "itself yet, so it still holds its copy. Restoring lets it sync again as before; do it only if that "
        "was a mistake and the laptop is in safe hands."
    )
    _confirm(args, "Restore this laptop?", "Nothing was restored.")
    undone = store.restore_device(args.device_id)
    print(f"Restored device {args.device_id} (it was {undone}); its next sync works as before.")
    return 0


def add_device_commands(d: Any, db: argparse.ArgumentParser) -> None:
    dl = d.add_parser("list", parents=[db], help="list laptops, their last sync and state")
    dl.set_defaults(fn=cmd_device_list)
    ds = d.add_parser("restore", parents=[db], help="undo a revoke or retire made by mistake (before it erased)")
    ds.add_argument("device_id")
    ds.add_argument("--yes", action="store_true", help="do not ask for confirmation (scripts)")
    ds.set_defaults(fn=cmd_device_restore)


# ---------------------------------------------------------------- referral import


class _Bar:
    """A tqdm bar over the file's rows, shown only when the import runs longer than two seconds."""

    def __init__(self) -> None:
        self.bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="row", desc="Importing", delay=2, disable=None, file=sys.stderr)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def cmd_import_referrals(args: argparse.Namespace) -> int:
    from sync.server.importer import ImportFileError, import_referrals, template

    if args.template:
        if args.csv is not None:
            raise Failure("--template prints the header line only; give it without a file.")
        print(template())
        return 0
    if args.csv is None:
        raise Failure("Give the referral file to import (sprx-server import-referrals --template prints its header).")
    bar = _Bar()
    try:
        rep = import_referrals(_store(args), Path(args.csv), progress=bar)
    except ImportFileError as e:
        raise Failure(str(e)) from None
    finally:
        bar.close()
    print(
        f"Imported {rep.imported} referral(s); {rep.already_present} already present; "
        f"{len(rep.errors)} line(s) not imported."
    )
    for line, reason in rep.errors:
        print(f"Line {line}: {visible(reason)}.", file=sys.stderr)  # a reason can quote the file
    # Partial success is success: the good rows are in. Exit 1 only when there were bad lines and nothing came in.
    return 1 if rep.errors and not (rep.imported or rep.already_present) else 0


def add_import_referrals_command(sub: Any, db: argparse.ArgumentParser) -> None:
    from sync.server.importer import columns_help

    r = sub.add_parser(
        "import-referrals",
        parents=[db],
        help="import referrals from the practice's CSV file (--template prints its header)",
        description="Import referrals from a UTF-8 CSV file with a header line. Each good line creates or\n"
        "finds the person (by NHS number), adds the referral and assigns the person to the worker;\n"
        "importing the same file again adds nothing. Bad lines are skipped and listed with the reason;\n"
        "the exit status is 1 only when no line was imported or already present.",
        epilog="columns (in any order):\n" + columns_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("csv", nargs="?", metavar="FILE", help="the referral file (CSV)")
    r.add_argument("--template", action="store_true", help="print the header line of a referral file and stop")
    r.set_defaults(fn=cmd_import_referrals)
