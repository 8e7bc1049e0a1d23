"""A full disk, recognised in one place and told in one plain sentence (never as damage)."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from sprx_tui.core.errors import VaultError

__all__ = ["DISK_FULL", "DiskFull", "disk_full_as_sentence", "is_disk_full", "no_space_left"]

DISK_FULL = "The disk is full; nothing was lost. Free some space and try again."

_SQLITE_IOERR = 10
_SQLITE_FULL = 13
_NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})
_FULL_MESSAGE = "database or disk is full"
_LOW_WATER_BYTES = 1024 * 1024
"""With less than this free, an SQLite I/O error is taken to be the full disk (see is_disk_full)."""


class DiskFull(VaultError):
    """A write (or the WAL files an unlock creates) found no space left; the failed step changed nothing."""

    default_message = DISK_FULL


def no_space_left(where: Path) -> bool:
    """Whether the file system holding ``where`` has (almost) no space left for this user."""
    path = Path(where)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        st = os.statvfs(path)
    except (OSError, AttributeError):  # AttributeError: no statvfs (Windows)
        return False
    return st.f_bavail * st.f_frsize < _LOW_WATER_BYTES


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, its causes and contexts (even suppressed ones), and SQLAlchemy's wrapped DBAPI error."""
    todo, seen = [exc], set()
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [x for x in (getattr(e, "orig", None), e.__cause__, e.__context__) if isinstance(x, BaseException)]


def is_disk_full(exc: BaseException | None, where: Path | None = None) -> bool:
    """True when ``exc`` (or anything that led to it) says the disk is full.

    That is ENOSPC/EDQUOT from the operating system, or SQLite's SQLITE_FULL ("database or disk is full").
    Opening a vault first creates its WAL files, and SQLite reports that failure only as a plain disk I/O
    error: with ``where`` (a path on the vault's disk), an SQLite I/O error while that disk has no space
    left counts as a full disk too.
    """
    if exc is None:
        return False
    io_error = False
    for e in _chain(exc):
        if isinstance(e, DiskFull):
            return True
        if isinstance(e, OSError) and e.errno in _NO_SPACE_ERRNOS:
            return True
        code = getattr(e, "sqlite_errorcode", None)
        if isinstance(code, int):
            if code & 0xFF == _SQLITE_FULL:
                return True
            io_error = io_error or code & 0xFF == _SQLITE_IOERR
        elif type(e).__name__ == "OperationalError" and _FULL_MESSAGE in str(e):
            return True  # a driver without error codes
    return io_error and where is not None and no_space_left(where)


@contextlib.contextmanager
def disk_full_as_sentence(where: Path | None = None) -> Iterator[None]:
    """Raise DiskFull (one plain sentence) in place of any error that is a full disk."""
    try:
        yield
    except DiskFull:
        raise
    except Exception as exc:
        if is_disk_full(exc, where):
            raise DiskFull() from None
        raise
