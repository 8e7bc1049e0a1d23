"""Command palette providers: jump to a person (SQL search, at most 20 hits) and the commands that fit this screen."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any

from textual import on
from textual.command import CommandInput, CommandPalette, DiscoveryHit, Hit, Hits, Provider
from textual.content import Content
from textual.fuzzy import Matcher
from textual.widgets import Input
from textual.worker import Worker, WorkerState

from sprx_tui.inert import visible
from sprx_tui.widgets.status_bar import AREAS

PERSON_HITS = 20


class PersonProvider(Provider):
    """'Open <name>' for people matching a name, NHS number (spaces allowed) or postcode, searched in SQL."""

    async def search(self, query: str) -> Hits:
        app: Any = self.app
        store = getattr(app, "store", None)
        if store is None or len(query.strip()) < 2:
            return
        try:
            # SQLCipher work stays off the event loop; the store lock keeps it from interleaving with workers.
            rows = await asyncio.to_thread(store.queries.search, query, PERSON_HITS)
        except Exception:
            return  # locked mid-search, or the store closed: the palette simply shows nothing
        matcher = self.matcher(query)
        for row in rows:
            # Names are record text: shown as Content (a str prompt or help is read as markup) and visible().
            label = visible(f"Open {row.name}" + (f"  {row.nhs_number}" if row.nhs_number else ""))
            score = matcher.match(label)
            # SQL already matched (e.g. a postcode the label does not show); keep such hits, ranked lower.
            display = highlight(matcher, label) if score > 0 else Content(label)
            if row.postcode:  # on the hit's second line, where Hit.help would go (help is read as markup)
                display = Content.assemble(display, "\n", Content.styled(visible(row.postcode), "$text-muted"))
            yield Hit(max(score, 0.1), display, partial(app.open_person, row.id), text=label)


class SearchFirstPalette(CommandPalette):
    """Textual's command palette, with Enter acting on the search of what was typed.

    Textual's palette answers Enter from the list on screen. Each keystroke starts a new search (a worker: the
    people search runs SQL in a thread), and until it has listed its hits the list is the previous search's, or
    every command for an empty search. So "new person" and Enter typed quickly, or on a busy laptop, ran whichever
    command that list had highlighted (found by tests/e2e/test_tmux_person.py: the Keys help opened instead of the
    new-person form). Here an Enter that arrives while a search is still running is held, and given again as soon
    as the search has finished and replaced the list.
    """

    _enter_held = False

    def _searching(self) -> bool:
        """Whether a search this palette started is still waiting or running (it runs no other workers)."""
        return any(w.node is self and w.state in (WorkerState.PENDING, WorkerState.RUNNING) for w in self.app.workers)

    @on(Input.Submitted)
    def _hold_enter_until_searched(self, event: Input.Submitted) -> None:
        if self._searching():
            # prevent_default: the palette's own Enter handler (a base class's) does not run for this one.
            event.stop()
            event.prevent_default()
            self._enter_held = True

    @on(Worker.StateChanged)
    async def _give_held_enter(self, event: Worker.StateChanged) -> None:
        if self._enter_held and event.worker.is_finished and not self._searching():
            self._enter_held = False
            await self.query_one(CommandInput).action_submit()


def highlight(matcher: Matcher, label: str) -> Content:
    """`matcher.highlight(label)` without reading `label` as markup (a name is not ours to style)."""
    content = Content(label)
    score, offsets = matcher.fuzzy_search.match(matcher.query, label)
    for offset in offsets if score else ():
        if not label[offset].isspace():
            content = content.stylize(matcher.match_style, offset, offset + 1)
    return content


class ShellCommandsProvider(Provider):
    """Lock, switch area, settings, theme, help; 'new contact' and 'find a service' when a person's record is open."""

    def _commands(self) -> list[tuple[str, Callable[[], Any], str]]:
        app: Any = self.app
        if getattr(app, "store", None) is None:
            return []
        commands: list[tuple[str, Callable[[], Any], str]] = []
        screen = self.screen
        if hasattr(screen, "action_new_contact"):
            commands.append(
                ("New contact for this person", partial(screen.run_action, "new_contact"), "Record a visit or call (n)")
            )
        if hasattr(screen, "action_edit_details"):
            commands.append(
                (
                    "Update this person's details",
                    partial(screen.run_action, "edit_details"),
                    "Phone, address, communication needs, safety flags, consent (i)",
                )
            )
        if hasattr(screen, "action_find_service"):
            commands.append(
                (
                    "Find a service for this person",
                    partial(screen.run_action, "find_service"),
                    "The directory, to refer or signpost them (f)",
                )
            )
        if hasattr(app, "action_new_person"):
            commands.append(
                ("New person", app.action_new_person, "Add a person with their referral, e.g. a self-referral (a)")
            )
        for mode, key, label in AREAS:
            commands.append((f"Go to {label}", partial(app.action_area, mode), f"Switch to {label} ({key})"))
        commands.extend(
            [
                ("Lock now", app.action_lock, "Lock the vault; nothing personal stays on screen (Ctrl+L)"),
                ("Settings", app.action_settings, "Auto-lock, theme, automatic sync, passphrase (F9)"),
                (
                    "Toggle high contrast theme",
                    app.action_toggle_theme,
                    "Switch between the calm and high-contrast themes",
                ),
                ("Help: keys for this screen", app.action_help, "F1"),
            ]
        )
        return commands

    async def discover(self) -> Hits:
        for title, command, help_text in self._commands():
            yield DiscoveryHit(title, command, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, command, help_text in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), command, text=title, help=help_text)
