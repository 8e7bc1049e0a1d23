"""The contacts timeline: newest first, amendments under their contact, entered-in-error contacts struck through."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Sequence
from typing import NamedTuple

from textual.content import Content
from textual.widgets import OptionList
from textual.widgets.option_list import Option, OptionDoesNotExist

from sprx_tui.core.models import CONTACT_MODES, Contact
from sprx_tui.core.queries import TimelineEntry
from sprx_tui.formats import fmt_date, fmt_datetime, local
from sprx_tui.inert import visible

MARK = "▶ "
"""Before the highlighted contact, the one `m` and `e` act on: shown in a character, not by colour alone."""
UNMARKED = "  "
FIRST_WORDS = 6


def contact_summary(contact: Contact) -> str:
    """The contact a dialog changes, in one line: when, how, and the first words of its note (plain text)."""
    words = contact.notes.split()
    first = " ".join(words[:FIRST_WORDS]) + ("…" if len(words) > FIRST_WORDS else "")
    when = local(contact.occurred_at).strftime("%a ") + fmt_datetime(contact.occurred_at)
    return f"{when} · {CONTACT_MODES.get(contact.mode, contact.mode)} · " + (f"“{first}”" if first else "(no notes)")


class Shown(NamedTuple):
    """Everything of a timeline entry that is drawn, and nothing else: `entry_content` reads only this, so an
    entry whose `Shown` is unchanged is drawn the same (the timeline keeps its prompt)."""

    occurred_at: dt.datetime
    mode: str
    duration_minutes: int
    did_not_attend: bool
    follow_up_on: dt.date | None
    entered_in_error: bool
    error_reason: str | None
    notes: str
    amendments: tuple[tuple[dt.datetime, str, str, str], ...]
    """(amended_at, author, reason, text) of each amendment, oldest first."""


def shown(entry: TimelineEntry) -> Shown:
    c = entry.contact
    return Shown(
        c.occurred_at,
        c.mode,
        c.duration_minutes,
        c.did_not_attend,
        c.follow_up_on,
        c.entered_in_error,
        c.error_reason,
        c.notes,
        tuple((a.amended_at, a.author, a.reason, a.text) for a in entry.amendments),
    )


def entry_content(entry: TimelineEntry, *, marked: bool = False) -> Content:
    """One contact as the worker reads it (see `shown_content`)."""
    return shown_content(shown(entry), marked=marked)


def shown_content(c: Shown, *, marked: bool = False) -> Content:
    """One contact as the worker reads it: when, how, how long, the note, then any amendments.

    Each line is indented by two characters; the first line of the highlighted contact starts with MARK.
    The highlighted one keeps its weights (bold, struck through, reversed) but not its colours: drawn on
    the highlight, a muted or accent colour was unreadable (1.1:1 in high contrast, 1.4:1 with NO_COLOR).
    """

    def styled(text: str, style: str) -> Content:
        if marked:
            style = " ".join(word for word in style.split() if not word.startswith("$"))
        return Content.styled(text, style)

    when = local(c.occurred_at).strftime("%a ") + fmt_datetime(c.occurred_at)
    heading = [styled(when, "bold"), "  ·  ", visible(CONTACT_MODES.get(c.mode, c.mode))]
    if c.duration_minutes:  # 0 is "not recorded" (a blank Minutes box), as the FHIR export reads it too
        heading += ["  ·  ", f"{c.duration_minutes} min"]
    if c.did_not_attend:
        heading += ["  ·  ", styled("Did not attend", "bold $text-warning")]
    if c.follow_up_on:
        heading += ["  ·  ", styled(f"follow-up {fmt_date(c.follow_up_on)}", "$text-muted")]
    lines: list[Content] = [Content.assemble(*heading)]
    if c.entered_in_error:
        lines.append(
            Content.assemble(
                styled("ENTERED IN ERROR", "bold reverse $text-error"),
                styled(f"  {visible(c.error_reason or '', multiline=True)}", "$text-error"),
            )
        )
    notes = visible(c.notes.strip(), multiline=True) or "(no notes)"
    lines.append(styled(notes, "strike $text-muted" if c.entered_in_error else ""))
    for amended_at, author, reason, text in c.amendments:
        note = f"  ↳ Amended {fmt_datetime(amended_at)}"
        if author:
            note += f" by {visible(author)}"
        if reason:
            note += f" ({visible(reason, multiline=True)})"
        lines.append(styled(note + ":", "bold $text-accent"))
        lines.append(styled("    " + visible(text, multiline=True), "$text-accent"))
    body = Content("\n").join(lines)
    first, *rest = body.split("\n")
    return Content("\n").join(
        [Content.assemble(Content.styled(MARK, "bold") if marked else UNMARKED, first)]
        + [Content.assemble(UNMARKED, line) for line in rest]
    )


class ContactTimeline(OptionList):
    """Contacts as a navigable list; the highlighted one is what `m` (amend) and `e` (in error) act on."""

    DEFAULT_CSS = """
    ContactTimeline { height: 1fr; max-height: 100%; border: round $panel; }
    ContactTimeline:focus { border: round $primary; }
    """

    def __init__(self, *, id: str | None = None, classes: str = "pane") -> None:
        super().__init__(id=id, classes=classes)
        self.border_title = "Contacts"
        self._entries: dict[str, TimelineEntry] = {}
        self._marked: str | None = None  # the contact drawn with MARK
        # Each shown contact's prompt, by (id, marked), with the fields it was made from: a contact unchanged
        # since the last list keeps its prompt (a save adds one contact to a list of many).
        self._prompts: dict[tuple[str, bool], tuple[Shown, Content]] = {}

    def show_entries(self, entries: Sequence[TimelineEntry], keep: str | None = None) -> None:
        """Replace the list, keeping the highlight on `keep` (or the current contact) when it is still there."""
        keep = keep or self.selected_contact_id
        self._entries = {entry.contact.id: entry for entry in entries}
        # The highlight goes to the kept contact if it is still there, else to the newest; its prompt is made
        # with MARK at once (not replaced after, which would lay the list out again).
        mark = keep if keep in self._entries else (entries[0].contact.id if entries else None)
        options: list[Option | None] = []
        prompts: dict[tuple[str, bool], tuple[Shown, Content]] = {}
        for i, entry in enumerate(entries):
            if i:
                options.append(None)  # a separator line between contacts
            options.append(Option(self._prompt(entry, entry.contact.id == mark, prompts), id=entry.contact.id))
        self._prompts = prompts
        self._marked = None  # set_options clears the highlight first: nothing to unmark then
        self.set_options(options)
        if not entries:
            self.border_subtitle = "no contacts yet"
            return
        self._marked = mark
        self.highlighted = self.get_option_index(mark) if mark else 0
        self._update_position()

    def _prompt(
        self,
        entry: TimelineEntry,
        marked: bool,
        prompts: dict[tuple[str, bool], tuple[Shown, Content]],
    ) -> Content:
        """`entry_content(entry, marked=marked)`, made again only if what it draws (`Shown`) changed."""
        key = (entry.contact.id, marked)
        fields = shown(entry)
        known = self._prompts.get(key)
        content = known[1] if known is not None and known[0] == fields else shown_content(fields, marked=marked)
        prompts[key] = (fields, content)
        return content

    @property
    def selected_contact_id(self) -> str | None:
        option = self.highlighted_option
        return option.id if option else None

    def watch_highlighted(self, highlighted: int | None) -> None:
        super().watch_highlighted(highlighted)
        self._update_position()
        self._move_mark()

    def _move_mark(self) -> None:
        """Draw MARK before the highlighted contact only (its prompt is replaced; the others are kept)."""
        now = self.selected_contact_id
        if now == self._marked:
            return
        for contact_id, marked in ((self._marked, False), (now, True)):
            entry = self._entries.get(contact_id) if contact_id else None
            if entry is not None:
                with contextlib.suppress(OptionDoesNotExist):
                    self.replace_option_prompt(entry.contact.id, self._prompt(entry, marked, self._prompts))
        self._marked = now

    def _update_position(self) -> None:
        if self.highlighted is not None and self.option_count:
            self.border_subtitle = f"{self.highlighted + 1} / {self.option_count}"
