"""The contacts timeline: newest first, amendments under their contact, entered-in-error contacts struck through."""

from __future__ import annotations

from collections.abc import Sequence

from textual.content import Content
from textual.widgets import OptionList
from textual.widgets.option_list import Option, OptionDoesNotExist

from sprx_tui.core.models import CONTACT_MODES
from sprx_tui.core.queries import TimelineEntry
from sprx_tui.formats import fmt_date, fmt_datetime, local
from sprx_tui.inert import visible


def entry_content(entry: TimelineEntry) -> Content:
    """One contact as the worker reads it: when, how, how long, the note, then any amendments."""
    c = entry.contact
    when = local(c.occurred_at).strftime("%a ") + fmt_datetime(c.occurred_at)
    heading = [
        Content.styled(when, "bold"),
        "  ·  ",
        visible(CONTACT_MODES.get(c.mode, c.mode)),
        "  ·  ",
        f"{c.duration_minutes} min",
    ]
    if c.did_not_attend:
        heading += ["  ·  ", Content.styled("Did not attend", "bold $text-warning")]
    if c.follow_up_on:
        heading += ["  ·  ", Content.styled(f"follow-up {fmt_date(c.follow_up_on)}", "$text-muted")]
    lines: list[Content] = [Content.assemble(*heading)]
    if c.entered_in_error:
        lines.append(
            Content.assemble(
                Content.styled("ENTERED IN ERROR", "bold reverse $text-error"),
                Content.styled(f"  {visible(c.error_reason or '', multiline=True)}", "$text-error"),
            )
        )
    notes = visible(c.notes.strip(), multiline=True) or "(no notes)"
    lines.append(Content.styled(notes, "strike $text-muted" if c.entered_in_error else ""))
    for a in entry.amendments:
        note = f"  ↳ Amended {fmt_datetime(a.amended_at)}"
        if a.author:
            note += f" by {visible(a.author)}"
        if a.reason:
            note += f" ({visible(a.reason, multiline=True)})"
        lines.append(Content.styled(note + ":", "bold $text-accent"))
        lines.append(Content.styled("    " + visible(a.text, multiline=True), "$text-accent"))
    return Content("\n").join(lines)


class ContactTimeline(OptionList):
    """Contacts as a navigable list; the highlighted one is what `m` (amend) and `e` (in error) act on."""

    DEFAULT_CSS = """
    ContactTimeline { height: 1fr; max-height: 100%; border: round $panel; }
    ContactTimeline:focus { border: round $primary; }
    """

    def __init__(self, *, id: str | None = None, classes: str = "pane") -> None:
        super().__init__(id=id, classes=classes)
        self.border_title = "Contacts"

    def show_entries(self, entries: Sequence[TimelineEntry], keep: str | None = None) -> None:
        """Replace the list, keeping the highlight on `keep` (or the current contact) when it is still there."""
        keep = keep or self.selected_contact_id
        options: list[Option | None] = []
        for i, entry in enumerate(entries):
            if i:
                options.append(None)  # a separator line between contacts
            options.append(Option(entry_content(entry), id=entry.contact.id))
        self.set_options(options)
        if not entries:
            self.border_subtitle = "no contacts yet"
            return
        index = 0
        if keep:
            try:
                index = self.get_option_index(keep)
            except OptionDoesNotExist:  # the kept contact is gone; start at the newest
                index = 0
        self.highlighted = index
        self._update_position()

    @property
    def selected_contact_id(self) -> str | None:
        option = self.highlighted_option
        return option.id if option else None

    def watch_highlighted(self, highlighted: int | None) -> None:
        super().watch_highlighted(highlighted)
        self._update_position()

    def _update_position(self) -> None:
        if self.highlighted is not None and self.option_count:
            self.border_subtitle = f"{self.highlighted + 1} / {self.option_count}"
