"""The server's settings: a TOML file, then environment variables, then command-line options.

The file is ``--config PATH``, else ``$SPRX_SERVER_CONFIG``, else ``/etc/sprx/server.toml`` when it
exists (a file named by the first two must exist). Each setting can be overridden by an environment
variable (``SPRX_SERVER_DB``, ``SPRX_SERVER_PORT``, ...), and each of those by the command-line
option of the same name. An example file, with every key::

    [store]
    url = "sqlite:////var/lib/sprx/server.db"   # or postgresql+psycopg://sprx@db.example/sprx

    [server]
    host = "0.0.0.0"
    port = 8443
    tls_cert = "/etc/sprx/tls/server.crt"
    tls_key = "/etc/sprx/tls/server.key"

    [limits]
    max_body = "64K"
    max_enrol_body = "64K"
    max_push_body = "8M"
    enrol_attempts_per_address = 10
    enrol_attempts = 60
    enrol_window = 600          # seconds

    [log]
    destination = "stderr"      # or a file path (appended to, 0600)

There is no default store: a command without one says where to give it, rather than quietly making
a new empty database in the current folder.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

SYSTEM_CONFIG = Path("/etc/sprx/server.toml")
CONFIG_ENV = "SPRX_SERVER_CONFIG"


class ConfigError(Exception):
    """A setting that cannot be used: one sentence naming where it came from."""


def parse_size(text: str | int) -> int:
    """A byte count such as 65536, "64K" or "8M"; ValueError with a sentence otherwise."""
    if isinstance(text, int) and not isinstance(text, bool):
        n = text
    else:
        t = str(text).strip().upper().removesuffix("B")
        mult = {"K": 1024, "M": 1024 * 1024}.get(t[-1:], 1)
        try:
            n = int(t[:-1] if mult > 1 else t) * mult
        except ValueError:
            raise ValueError(f"{text!r} is not a size such as 64K or 8M") from None
    if n < 1:
        raise ValueError(f"{text!r} must be at least one byte")
    return n


def parse_positive(text: str | int) -> int:
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a whole number")
    try:
        n = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise ValueError(f"{text!r} must be at least 1")
    return n


def parse_port(text: str | int) -> int:
    n = parse_positive(text)
    if n > 65535:
        raise ValueError(f"{text!r} is not a port number (1-65535)")
    return n


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{value!r} is not a non-empty text")
    return value.strip()


@dataclass
class Settings:
    db: str | None = None
    host: str = "127.0.0.1"
    port: int = 8443
    tls_cert: str | None = None
    tls_key: str | None = None
    max_body: int = 64 * 1024
    max_enrol_body: int = 64 * 1024
    max_push_body: int = 8 * 1024 * 1024
    enrol_attempts_per_address: int = 10
    enrol_attempts: int = 60
    enrol_window: int = 600
    log: str = "stderr"
    config_file: Path | None = None
    """The file the settings were read from, if any (for messages)."""

    def require_db(self) -> str:
        if not self.db:
            raise ConfigError(
                "No server store is configured; give --db, set SPRX_SERVER_DB, or set store.url in "
                f"the configuration file ({SYSTEM_CONFIG} or --config)."
            )
        return self.db


# setting -> (section, key in the file, parser)
_KEYS: dict[str, tuple[str, str, Callable[[Any], Any]]] = {
    "db": ("store", "url", _text),
    "host": ("server", "host", _text),
    "port": ("server", "port", parse_port),
    "tls_cert": ("server", "tls_cert", _text),
    "tls_key": ("server", "tls_key", _text),
    "max_body": ("limits", "max_body", parse_size),
    "max_enrol_body": ("limits", "max_enrol_body", parse_size),
    "max_push_body": ("limits", "max_push_body", parse_size),
    "enrol_attempts_per_address": ("limits", "enrol_attempts_per_address", parse_positive),
    "enrol_attempts": ("limits", "enrol_attempts", parse_positive),
    "enrol_window": ("limits", "enrol_window", parse_positive),
    "log": ("log", "destination", _text),
}


def env_name(setting: str) -> str:
    return "SPRX_SERVER_" + setting.upper()


def config_path(explicit: str | None, environ: Mapping[str, str]) -> Path | None:
    """The file to read: --config, then $SPRX_SERVER_CONFIG, then /etc/sprx/server.toml if it exists."""
    if explicit:
        return Path(explicit)
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    return SYSTEM_CONFIG if SYSTEM_CONFIG.exists() else None


def read_file(path: Path) -> dict[str, Any]:
    """The file's settings by name; ConfigError with one sentence naming the file and the problem."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"The configuration file {path} does not exist.") from None
    except IsADirectoryError:
        raise ConfigError(f"The configuration file {path} is a folder, not a file.") from None
    except PermissionError:
        raise ConfigError(f"The configuration file {path} cannot be read (permission denied).") from None
    except UnicodeDecodeError:
        raise ConfigError(f"The configuration file {path} is not UTF-8 text.") from None
    except OSError as e:
        raise ConfigError(f"The configuration file {path} cannot be read ({e.strerror or 'error'}).") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"The configuration file {path} is not valid TOML ({e}).") from None
    known = {(sec, key): name for name, (sec, key, _p) in _KEYS.items()}
    out: dict[str, Any] = {}
    for section, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(f"The configuration file {path} has {section} outside a section such as [server].")
        for key, value in table.items():
            name = known.get((section, key))
            if name is None:
                raise ConfigError(f"The configuration file {path} has an unknown setting {section}.{key}.")
            try:
                out[name] = _KEYS[name][2](value)
            except ValueError as e:
                raise ConfigError(f"The configuration file {path} has a bad {section}.{key}: {e}.") from None
    return out


def load(
    explicit_file: str | None = None,
    options: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Settings from the file, then the environment, then ``options`` (command-line values; None = not given)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = config_path(explicit_file, env)
    if path is not None:
        values.update(read_file(path))
    for name, (_sec, _key, parse) in _KEYS.items():
        raw = env.get(env_name(name))
        if raw is None or raw == "":
            continue
        try:
            values[name] = parse(raw)
        except ValueError as e:
            raise ConfigError(f"The environment variable {env_name(name)} is not usable: {e}.") from None
    for name, value in (options or {}).items():
        if value is not None and name in _KEYS:
            values[name] = value
    known = {f.name for f in fields(Settings)}
    return Settings(**{k: v for k, v in values.items() if k in known}, config_file=path)
