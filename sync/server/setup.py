"""`sprx-server init` and `sprx-server db upgrade|current`: making a store and keeping its schema current.

Only ``init`` creates a store (folders 0700, the SQLite file 0600, every migration applied); every
other command refuses a SQLite path that does not exist. A PostgreSQL database is created by its
administrator (``createdb``); ``init`` fills it.
"""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from sync.server import migrate, private
from sync.server.config import ConfigError, Settings


class SetupError(ConfigError):
    """A store that cannot be made or upgraded: one sentence."""


def describe(url: str) -> str:
    """Where the store is, for people: the SQLite file, or the database and host, never a password."""
    path = private.sqlite_path(url)
    if path is not None:
        return str(path)
    try:
        u = make_url(url)
    except Exception:  # noqa: BLE001 - a URL that does not parse is described by its kind alone
        return "the configured database"
    where = f" on {u.host}" + (f":{u.port}" if u.port else "") if u.host else ""
    return f"database {u.database or '(default)'}{where} ({u.get_backend_name()})"


def _engine(url: str) -> object:
    from sync.server.store.tables import make_engine

    try:
        return make_engine(url)
    except ModuleNotFoundError as e:
        raise SetupError(f"The database driver {e.name} is not installed.") from None
    except SQLAlchemyError:
        raise SetupError("The store URL is not a database URL such as sqlite:////var/lib/sprx/server.db.") from None


def next_steps(s: Settings) -> list[str]:
    where = f"--config {s.config_file}" if s.config_file else "--db (or SPRX_SERVER_DB)"
    return [
        "Next steps (every command finds the store through " + where + "):",
        "  sprx-server worker add LOGIN --practice PRACTICE --team TEAM   add each link worker",
        "  sprx-server enrol-code LOGIN                                    a one-time code for their laptop",
        "  sprx-server tls-cert --out DIR --host NAME                      a certificate, unless you have one",
        "  sprx-server serve                                               run the server (--host, TLS files)",
        "  sprx-server backup --out FILE                                   and back it up every day",
    ]


def init(s: Settings) -> list[str]:
    """Create the store and apply every migration; the lines to print."""
    url = s.require_db()
    path = private.sqlite_path(url)
    if path is not None and path.is_dir():
        raise SetupError(f"{path} is a folder; give the store's file name, such as {path / 'server.db'}.")
    existed = path is not None and path.exists()
    try:
        if path is not None:
            private.prepare_sqlite(url)  # folders 0700, the file 0600 before SQLite opens it
    except OSError as e:
        raise SetupError(f"Cannot create {path} ({e.strerror}).") from None
    engine = _engine(url)
    try:
        st = migrate.status(engine)  # type: ignore[arg-type]
        if st.state != migrate.EMPTY:
            rev = st.revision or "from before migrations"
            raise SetupError(f"There is already a server store at {describe(url)} (schema {rev}); nothing was changed.")
        _, head = migrate.upgrade(engine)  # type: ignore[arg-type]
    except SQLAlchemyError:
        if path is not None and not existed:
            for f in [path] + [path.with_name(path.name + x) for x in private.SQLITE_SIDE_FILES]:
                f.unlink(missing_ok=True)
        raise SetupError(f"Cannot create the server store at {describe(url)}; check the URL and access.") from None
    finally:
        engine.dispose()  # type: ignore[attr-defined]
    from sync.server.store import ServerStore

    ServerStore(url, create=False).close()  # its first row (the epoch and counters)
    lines = [f"Created the server store at {describe(url)} (schema revision {head})."]
    if path is not None:
        lines.append(f"The file is readable by this user only ({oct(private.FILE_MODE)[2:]}); keep it that way.")
    return lines + next_steps(s)


def _existing_engine(url: str) -> object:
    path = private.sqlite_path(url)
    if path is not None and not path.is_file():
        raise SetupError(f"There is no server store at {path}; create it with `sprx-server init`.")
    return _engine(url)


def current(s: Settings) -> list[str]:
    url = s.require_db()
    engine = _existing_engine(url)
    try:
        st = migrate.status(engine)  # type: ignore[arg-type]
    except SQLAlchemyError:
        raise SetupError(f"Cannot open the server store at {describe(url)}; check the URL and access.") from None
    finally:
        engine.dispose()  # type: ignore[attr-defined]
    if st.state == migrate.CURRENT:
        return [f"Schema revision {st.revision} (the newest this sprx-server knows)."]
    if st.state == migrate.EMPTY:
        raise SetupError(f"The store at {describe(url)} is empty; create it with `sprx-server init`.")
    if st.state == migrate.AHEAD:
        raise SetupError(f"Schema revision {st.revision} is newer than this sprx-server ({st.head}); upgrade it.")
    have = st.revision or "from before migrations"
    raise SetupError(f"Schema revision {have}; this sprx-server needs {st.head}: run `sprx-server db upgrade`.")


def upgrade(s: Settings) -> list[str]:
    url = s.require_db()
    engine = _existing_engine(url)
    try:
        st = migrate.status(engine)  # type: ignore[arg-type]
        if st.state == migrate.EMPTY:
            raise SetupError(f"The store at {describe(url)} is empty; create it with `sprx-server init`.")
        if st.state == migrate.CURRENT:
            return [f"The server store is already at schema revision {st.revision}; nothing to do."]
        if st.state == migrate.AHEAD:
            raise SetupError(f"Schema revision {st.revision} is newer than this sprx-server ({st.head}); upgrade it.")
        before, after = migrate.upgrade(engine)  # type: ignore[arg-type]
    except SQLAlchemyError:
        raise SetupError(f"The upgrade of {describe(url)} failed and was rolled back; nothing was changed.") from None
    finally:
        engine.dispose()  # type: ignore[attr-defined]
    return [f"Upgraded the server store from schema {before} to {after}."]
