"""How screens reach the app and each other without importing them.

A screen never imports the app module, and never imports another screen in order to open it: it posts
`OpenPerson` or `OpenDirectoryFor` (the app opens that screen), or, where the screen must be on the stack at
once (a restored draft pushes the person's record and then its form on top), asks `push_person` here,
which finds the screen class by name. What screens may use of the app is the `Shell` protocol below;
`SprxApp` is the one implementation. So the import graph stays a tree: app -> screens -> forms, widgets,
core; and this module imports none of them (only their names, resolved when used).
"""

from __future__ import annotations

import datetime as dt
import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from textual.message import Message
from textual.screen import Screen

if TYPE_CHECKING:
    from textual.app import App
    from textual.worker import Worker

    from sprx_tui.config import Config
    from sprx_tui.core.store import CaseStore
    from sprx_tui.core.vault import Vault
    from sprx_tui.widgets.status_bar import SyncSummary

# name -> (module, class): the screens opened from more than one place.
SCREENS: dict[str, tuple[str, str]] = {
    "person": ("sprx_tui.screens.person", "PersonScreen"),
    "plan": ("sprx_tui.screens.plan", "PlanScreen"),
    "directory": ("sprx_tui.screens.directory", "DirectoryScreen"),
    "person_form": ("sprx_tui.screens.person_form", "PersonFormScreen"),
}


def screen_class(name: str) -> type[Screen[Any]]:
    """The screen class registered as `name` (imported now; ImportError if that part is missing)."""
    module, attribute = SCREENS[name]
    found = getattr(importlib.import_module(module), attribute)
    if not (isinstance(found, type) and issubclass(found, Screen)):
        raise TypeError(f"{module}.{attribute} is not a screen")
    return found


def person_screen(app: App[Any], person_id: str, tab: str | None = None, loaded: Any = None) -> Screen[Any]:
    """A screen for the person's record (the app's kept one when it is free: `SprxApp.record_screen`)."""
    record_screen = getattr(app, "record_screen", None)
    screen = record_screen(person_id, tab, loaded) if callable(record_screen) else None
    if screen is None:
        kwargs = {"tab": tab} if loaded is None else {"tab": tab, "loaded": loaded}
        screen = screen_class("person")(person_id, **kwargs)  # type: ignore[call-arg]
    return screen


def push_person(app: App[Any], person_id: str, tab: str | None = None) -> Screen[Any]:
    """Push the person's record (to sit under a restored form) and return it; it mounts in the background."""
    screen = person_screen(app, person_id, tab)
    push = getattr(app, "push_record", None)  # the app keeps records apart from the areas' screens
    (push if callable(push) else app.push_screen)(screen)
    return screen


@dataclass
class OpenPerson(Message):
    """Open this person's record on the current area (at `tab`, if given); handled by the app."""

    person_id: str
    tab: str | None = None


@dataclass
class OpenDirectoryFor(Message):
    """Open the directory with this person as the one to refer or signpost; handled by the app."""

    person_id: str


class Shell(Protocol):
    """The app as screens see it (SprxApp); App's own methods come through `screen.app` as usual."""

    store: CaseStore | None
    vault: Vault
    vault_path: Path
    vault_guard: threading.Lock
    config: Config
    clock: Callable[[], dt.datetime]
    sync_summary: SyncSummary

    def worker_failed(self, event: Worker.StateChanged) -> None: ...

    def show_error(self, exc: BaseException) -> None: ...

    def refresh_sync_summary(self) -> None: ...

    def prepare_area(self, mode: str, *, before_unlock: bool = False) -> None: ...

    def prepare_records(self) -> None: ...

    def prepare_for_unlock(self) -> None: ...

    def open_person(self, person_id: str, tab: str | None = None) -> None: ...

    def push_record(self, screen: Screen[Any]) -> None: ...

    def open_directory_for(self, person_id: str) -> None: ...

    def apply_config(self) -> None: ...

    def save_config(self) -> bool: ...

    def lock_before_exit(self, reason: str, wait: float = 1.0) -> bool: ...

    def exit(self, result: Any = None, return_code: int = 0, message: Any = None) -> None: ...
