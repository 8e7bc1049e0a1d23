"""App settings (auto-lock, theme, auto-sync, keymap) as JSON in the user config dir; never personal data."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

CONFIG_NAME = "config.json"
THEMES = ("default", "high_contrast")
AUTO_LOCK_RANGE = (1, 60)  # minutes; policy: never off, never longer than an hour


def config_dir() -> Path:
    """Where the config lives: $SPRX_CONFIG_DIR (tests) or the platform's user config folder."""
    env = os.environ.get("SPRX_CONFIG_DIR")
    if env:
        return Path(env)
    from platformdirs import user_config_dir

    return Path(user_config_dir("sprx", appauthor=False))


@dataclass
class Config:
    """Settings that are safe to keep unencrypted: nothing in here may identify a person."""

    auto_lock_minutes: int = 5
    theme: str = "default"
    auto_sync: bool = True
    ascii_marks: bool = False
    keymap: dict[str, str] = field(default_factory=dict)
    # Keys written by other parts of sprx (or newer versions) are kept, not dropped on save.
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = field(default=None, compare=False, repr=False)

    @classmethod
    def load(cls, path: Path | None = None) -> Config:
        """Read the config; a missing or unreadable file gives the defaults (problems go to `load_problem`)."""
        path = path or config_dir() / CONFIG_NAME
        config = cls(path=path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return config
        except (OSError, ValueError):
            config.extra["_load_problem"] = "Your settings file could not be read, so the defaults are in use."
            return config
        if not isinstance(raw, dict):
            return config
        known = {f.name for f in fields(cls)} - {"extra", "path"}
        for key, value in raw.items():
            if key in known:
                setattr(config, key, value)
            else:
                config.extra[key] = value
        config._sanitise()
        return config

    def _sanitise(self) -> None:
        """Settings edited by hand fall back to safe values rather than crash the app."""
        try:
            minutes = int(self.auto_lock_minutes)
        except (TypeError, ValueError):
            minutes = 5
        low, high = AUTO_LOCK_RANGE
        self.auto_lock_minutes = min(max(minutes, low), high)
        if self.theme not in THEMES:
            self.theme = "default"
        self.auto_sync = bool(self.auto_sync)
        self.ascii_marks = bool(self.ascii_marks)
        if not isinstance(self.keymap, dict):
            self.keymap = {}
        self.keymap = {str(k): str(v) for k, v in self.keymap.items()}

    @property
    def load_problem(self) -> str | None:
        return self.extra.get("_load_problem")

    def as_json(self) -> dict[str, Any]:
        doc = {k: v for k, v in asdict(self).items() if k not in {"extra", "path"}}
        doc.update({k: v for k, v in self.extra.items() if not k.startswith("_")})
        return doc

    def save(self) -> None:
        """Write atomically (a crash mid-write never leaves half a file)."""
        path = self.path or config_dir() / CONFIG_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".config.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.as_json(), f, indent=2, sort_keys=True)
                f.write("\n")
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self.path = path
