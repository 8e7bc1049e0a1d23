"""Make one step of a CaseService write fail, from the test side (nothing test-only ships in the service).

Steps:
- ``row``: writing the record's own row (the session's flush of a synced row) fails;
- ``outbox``: queueing the sync outbox entry fails;
- ``audit``: appending the audit event fails (for an import: after every row was written).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from sprx_tui.core.models import Synced
from sprx_tui.core.service import CaseService

STEPS = ("row", "outbox", "audit")


def _boom(step: str) -> None:
    raise RuntimeError(f"injected failure at {step}")


@contextlib.contextmanager
def failing_at(service: CaseService, step: str) -> Iterator[None]:
    """While inside, every write through ``service`` fails at ``step`` with RuntimeError."""
    if step not in STEPS:
        raise ValueError(f"unknown step {step!r}; one of {STEPS}")
    if step == "row":

        def before_flush(session: Session, _context: Any, _instances: Any) -> None:
            if session.bind is service.engine and any(isinstance(o, Synced) for o in (*session.new, *session.dirty)):
                _boom("row")

        event.listen(Session, "before_flush", before_flush)
        try:
            yield
        finally:
            event.remove(Session, "before_flush", before_flush)
        return

    name = f"_{step}"  # CaseService._outbox / CaseService._audit, shadowed on this instance only

    def fail(*_args: Any, **_kwargs: Any) -> Any:
        _boom(step)

    setattr(service, name, fail)
    try:
        yield
    finally:
        delattr(service, name)
