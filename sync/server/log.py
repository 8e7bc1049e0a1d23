"""Structured server logs: one JSON object per line, ids and counts only, never personal data."""

from __future__ import annotations

import json
import logging
from typing import Any

logger = logging.getLogger("sprx.server")


def log_event(event: str, **ids: Any) -> None:
    """Log an event with ids/counts; callers must never pass values from records."""
    if logger.isEnabledFor(logging.INFO):
        logger.info(json.dumps({"event": event, **ids}, sort_keys=True, default=str))


class JsonFormatter(logging.Formatter):
    """Wraps plain messages as JSON so every line parses; exception text is reduced to its type."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        out: dict[str, Any] = {"ts": round(record.created, 3), "level": record.levelname}
        try:
            parsed = json.loads(msg)
            out.update(parsed if isinstance(parsed, dict) else {"msg": msg})
        except ValueError:
            out["msg"] = msg
        if record.exc_info and record.exc_info[0] is not None:
            # Exception messages can quote row values; keep only the type.
            out["exc_type"] = record.exc_info[0].__name__
        return json.dumps(out, sort_keys=True, default=str)


def configure(level: int = logging.INFO, destination: str = "stderr") -> None:
    """JSON lines to standard error (systemd's journal, a container's log) or appended to a file (0600)."""
    handler: logging.Handler
    if destination in ("stderr", "-", ""):
        handler = logging.StreamHandler()
    else:
        from pathlib import Path

        from sync.server.private import make_private_dir, private_umask

        make_private_dir(Path(destination).parent)
        with private_umask():
            handler = logging.FileHandler(destination, encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("sprx")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
