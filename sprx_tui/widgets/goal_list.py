"""The plan as lists: what matters in the person's own words, and goals with their actions beneath them."""

from __future__ import annotations

from collections.abc import Sequence

from textual.content import Content
from textual.widgets import OptionList
from textual.widgets.option_list import Option, OptionDoesNotExist

from sprx_tui.core.models import GOAL_STATUSES, LIFE_AREAS, WhatMatters
from sprx_tui.core.queries import GoalWithActions
from sprx_tui.formats import fmt_date
from sprx_tui.inert import visible

STATUS_STYLES = {
    "not_started": "$text-muted",
    "in_progress": "bold $text-primary",
    "achieved": "bold $text-success",
    "dropped": "$text-muted",
}


def goal_content(goal: GoalWithActions) -> Content:
    g = goal.goal
    text_style = "strike $text-muted" if g.status == "dropped" else "bold"
    parts: list[Content | str] = [
        Content.styled("◆ ", STATUS_STYLES.get(g.status, "")),
        Content.styled(visible(g.text, multiline=True), text_style),
        "  ",
        Content.styled(f"[{visible(GOAL_STATUSES.get(g.status, g.status))}]", STATUS_STYLES.get(g.status, "")),
    ]
    if g.target_on:
        parts.append(Content.styled(f"  by {fmt_date(g.target_on)}", "$text-muted"))
    done = sum(1 for a in goal.actions if a.done)
    if goal.actions:
        parts.append(Content.styled(f"  {done}/{len(goal.actions)} done", "$text-muted"))
    return Content.assemble(*parts)


def action_content(goal: GoalWithActions, index: int) -> Content:
    a = goal.actions[index]
    box = Content.styled("[x]", "bold $text-success") if a.done else Content("[ ]")
    parts: list[Content | str] = [
        "    ",
        box,
        " ",
        Content.styled(visible(a.what, multiline=True), "$text-muted" if a.done else ""),
        Content.styled(f"  — {visible(a.who)}", "$text-muted"),
    ]
    if a.due_on:
        parts.append(Content.styled(f" · by {fmt_date(a.due_on)}", "$text-muted"))
    return Content.assemble(*parts)


def what_matters_content(row: WhatMatters) -> Content:
    return Content.assemble(
        Content.styled(f"“{visible(row.text, multiline=True)}”", "italic"),
        Content.styled(f"  — {visible(LIFE_AREAS.get(row.life_area, row.life_area))}", "$text-muted"),
    )


class _KeyedList(OptionList):
    """An option list whose options have ids, that keeps its highlight across refreshes."""

    def _set_keyed(self, options: Sequence[Option], keep: str | None, empty: str) -> None:
        keep = keep if keep is not None else (self.highlighted_option.id if self.highlighted_option else None)
        self.set_options(options)
        if not options:
            self.border_subtitle = empty
            return
        index = 0
        if keep:
            try:
                index = self.get_option_index(keep)
            except OptionDoesNotExist:
                index = min(self.highlighted or 0, len(options) - 1)
        self.highlighted = index
        self._update_position()

    def watch_highlighted(self, highlighted: int | None) -> None:
        super().watch_highlighted(highlighted)
        self._update_position()

    def _update_position(self) -> None:
        if self.highlighted is not None and self.option_count:
            self.border_subtitle = f"{self.highlighted + 1} / {self.option_count}"


class GoalList(_KeyedList):
    """Goals in order with their actions indented beneath; ids are "goal:<id>" and "action:<id>"."""

    DEFAULT_CSS = """
    GoalList { border: round $panel; height: auto; max-height: 100%; }
    GoalList:focus { border: round $primary; }
    """

    def __init__(self, *, id: str | None = None, classes: str = "pane") -> None:
        super().__init__(id=id, classes=classes)
        self.border_title = "Goals and actions"
        self.goals: list[GoalWithActions] = []

    def show_plan(self, goals: Sequence[GoalWithActions], keep: str | None = None) -> None:
        self.goals = list(goals)
        options: list[Option] = []
        for goal in goals:
            options.append(Option(goal_content(goal), id=f"goal:{goal.goal.id}"))
            for i, action in enumerate(goal.actions):
                options.append(Option(action_content(goal, i), id=f"action:{action.id}"))
        self._set_keyed(options, keep, "no goals yet")

    @property
    def selected(self) -> tuple[str, str] | None:
        """("goal", id) or ("action", id) for the highlighted row."""
        option = self.highlighted_option
        if option is None or not option.id:
            return None
        kind, _, row_id = option.id.partition(":")
        return kind, row_id

    @property
    def selected_goal(self) -> GoalWithActions | None:
        """The highlighted goal, or the goal of the highlighted action."""
        selected = self.selected
        if selected is None:
            return None
        kind, row_id = selected
        for goal in self.goals:
            if kind == "goal" and goal.goal.id == row_id:
                return goal
            if kind == "action" and any(a.id == row_id for a in goal.actions):
                return goal
        return None

    def find_action(self, action_id: str) -> tuple[GoalWithActions, int] | None:
        for goal in self.goals:
            for i, action in enumerate(goal.actions):
                if action.id == action_id:
                    return goal, i
        return None


class WhatMattersList(_KeyedList):
    """What matters to the person, in their own words, with the life area it belongs to."""

    DEFAULT_CSS = """
    WhatMattersList { border: round $panel; height: auto; max-height: 100%; }
    WhatMattersList:focus { border: round $primary; }
    """

    def __init__(self, *, id: str | None = None, classes: str = "pane") -> None:
        super().__init__(id=id, classes=classes)
        self.border_title = "What matters to me"
        self.rows: list[WhatMatters] = []

    def show_rows(self, rows: Sequence[WhatMatters], keep: str | None = None) -> None:
        self.rows = list(rows)
        self._set_keyed([Option(what_matters_content(r), id=r.id) for r in rows], keep, "nothing recorded yet")

    @property
    def selected_row(self) -> WhatMatters | None:
        option = self.highlighted_option
        if option is None:
            return None
        return next((r for r in self.rows if r.id == option.id), None)
