"""Unsaved work kept (encrypted, inside the vault) across a lock, and offered back after unlock.

How a form takes part — the contact note, questionnaire, plan forms, the decline, amend and
entered-in-error reasons, a sync conflict's merged text and the directory's "flag a change" note all do this,
and any other screen can join the same way:

1. The screen (or modal) defines `draft() -> tuple[str, dict] | None`: a key `"<prefix>:<ids…>"` and a
   JSON-safe payload, with `"person_id"` when the work belongs to a person. It returns None when nothing
   was typed. At every lock `SprxApp._collect_drafts` asks each screen in every area's stack, and the lock
   stores the answers through `store.service.save_draft` (the `draft` table, inside SQLCipher).
2. The owning module defines `restore_draft(app, key, payload) -> None`, which pushes the screens that
   bring the work back (the person's record, then the form filled in). It must push them synchronously, so
   the next offer (if any) lands on top of them. Optionally it defines `describe_draft(payload) -> str`,
   a noun phrase such as "an unsaved contact note", used in the offer
   "You have <phrase> for <name>; restore it?" (the name comes from `payload["person_id"]`).
3. The prefix is listed in `DRAFT_MODULES` below, mapped to that module.
4. Saving the form discards the draft (`service.discard_draft(key)` in the worker that saved); cancelling
   a form that was restored from a draft discards it too. Answering "n" to the offer discards it; Esc
   keeps it for the next unlock.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from textual.css.query import NoMatches

from sprx_tui import router
from sprx_tui.screens.forms import TextFieldsModal

if TYPE_CHECKING:
    from textual.app import App
    from textual.screen import Screen

# key prefix -> the module with restore_draft (and describe_draft). "contact:<person id>" keys written by
# earlier versions stay valid: they are contact notes, the default kind of the contact module.
DRAFT_MODULES: dict[str, str] = {
    "contact": "sprx_tui.screens.contact",
    "directory": "sprx_tui.screens.directory",
    "measure": "sprx_tui.screens.questionnaire",
    "person": "sprx_tui.screens.person_form",
    "plan": "sprx_tui.screens.plan",
    "referral": "sprx_tui.screens.referral",
    "sync": "sprx_tui.screens.sync",
}
UNKNOWN_WORK = "some unsaved work"


def draft_prefix(key: str) -> str:
    return key.partition(":")[0]


def draft_handler(key: str, name: str) -> Any | None:
    """The owning module's `name` function for this draft key, or None (unknown prefix, module or function)."""
    module_name = DRAFT_MODULES.get(draft_prefix(key))
    if module_name is None:
        return None
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            return None
        raise
    handler = getattr(module, name, None)
    return handler if callable(handler) else None


def describe(key: str, payload: Mapping[str, Any]) -> str:
    """A noun phrase for the offer: "an unsaved contact note", "an unfinished outcome measure (…)"."""
    try:
        describer = draft_handler(key, "describe_draft")
        text = describer(dict(payload)) if describer is not None else ""
    except Exception:  # noqa: BLE001 - a description is never worth losing the offer
        text = ""
    return str(text) if text else UNKNOWN_WORK


def offer_sentence(what: str, person_name: str | None) -> str:
    """Shown only after unlock, so the person's name may appear."""
    whom = f" for {person_name}" if person_name else ""
    return f"You have {what}{whom}; restore it?"


def discard_later(app: App[Any], key: str) -> None:
    """Delete a kept draft in a worker thread (a restored form was cancelled)."""
    store = getattr(app, "store", None)
    if store is None:
        return
    app.run_worker(
        lambda: store.service.discard_draft(key),
        thread=True,
        group="drafts",
        exit_on_error=False,
        name="discard-draft",
    )


def push_person(app: App[Any], person_id: str, tab: str | None = None) -> Screen[Any]:
    """Push the person's record (to sit under a restored form) and return it; it mounts in the background.

    By name (`router`): the record's screen opens the forms whose drafts are restored here."""
    return router.push_person(app, person_id, tab)


def clean_text_values(raw: Any, names: Iterable[str]) -> dict[str, str]:
    """Only the expected fields, as text: a payload from the vault is trusted no further than that."""
    if not isinstance(raw, Mapping):
        return {}
    wanted = set(names)
    return {str(k): str(v) for k, v in raw.items() if k in wanted and isinstance(v, str | int | float)}


class KeptFieldsModal(TextFieldsModal):
    """A dialog of one-line inputs whose typed text is kept as a draft if the vault locks while it is open.

    `draft_key`/`draft_payload` say what it belongs to; `prefill` is a restored draft's values.
    """

    def __init__(
        self,
        title: str,
        fields: Iterable[tuple[str, str, str]],
        *,
        draft_key: str | None = None,
        draft_payload: Mapping[str, Any] | None = None,
        prefill: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        specs = list(fields)
        baseline = {name: value for name, _label, value in specs}
        restored = clean_text_values(prefill, baseline)
        super().__init__(title, [(n, label, restored.get(n, v)) for n, label, v in specs], **kwargs)
        self.baseline = baseline
        self.draft_key = draft_key
        self.draft_payload = dict(draft_payload or {})
        self.restored = bool(restored)

    def typed(self) -> dict[str, str]:
        if self.is_mounted:
            with contextlib.suppress(NoMatches):  # mounted but not composed yet
                return self.values()
        return {name: value for name, _label, value in self.fields}

    def draft(self) -> tuple[str, dict[str, Any]] | None:
        """What to keep if the vault locks now; None while the boxes are as a fresh dialog starts them."""
        if self.draft_key is None:
            return None
        values = self.typed()
        if values == self.baseline:
            return None
        return self.draft_key, {**self.draft_payload, "values": values}
