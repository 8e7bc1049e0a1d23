"""The server's files are private: its database (and SQLite's -wal/-shm), key files and the folders it makes.

The store holds names, NHS numbers and notes as plain JSON, so every file the server creates is 0600
and every folder 0700, whatever the umask. SQLite creates its -wal and -shm files later, with the
mode of the database file itself, so making the database file 0600 before SQLite first opens it is
what keeps them private; ``sprx-server`` also runs with umask 077 for anything else it writes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700
PRIVATE_UMASK = 0o077
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """Create files and folders inside this block with no group or other permissions."""
    old = os.umask(PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(old)


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and any missing parents) as 0700; a folder that already exists is left as it is."""
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    with private_umask():
        path.mkdir(parents=True, exist_ok=True)
    for d in missing:
        with contextlib.suppress(OSError):
            os.chmod(d, DIR_MODE)


def create_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` to a file that is 0600 from the moment it exists."""
    with private_umask():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, FILE_MODE)


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL; None for memory and for other databases."""
    if not url.startswith("sqlite"):
        return None
    rest = url.split(":///", 1)
    if len(rest) != 2 or rest[1] in ("", ":memory:") or rest[1].startswith("file:"):
        return None
    return Path(rest[1].split("?", 1)[0])


def prepare_sqlite(url: str) -> None:
    """Before SQLite opens a file database: its folder exists (0700 if made here) and the file is 0600.

    An existing database and its -wal/-shm files (made by an older version, under another umask) are
    made 0600 too.
    """
    path = sqlite_path(url)
    if path is None:
        return
    make_private_dir(path.parent)
    if not path.exists():
        with private_umask():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE))
    for f in [path] + [Path(str(path) + s) for s in SQLITE_SIDE_FILES]:
        with contextlib.suppress(FileNotFoundError):
            if f.stat().st_mode & 0o777 != FILE_MODE:
                os.chmod(f, FILE_MODE)
