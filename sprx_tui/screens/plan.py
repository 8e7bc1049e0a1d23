"""The plan editor: what matters in the person's own words, goals in order with a status, actions under each goal."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Footer, Input, OptionList, Select, Static
from textual.worker import Worker, WorkerState

from sprx_tui.core.models import GOAL_STATUSES, LIFE_AREAS, Person, WhatMatters
from sprx_tui.core.queries import GoalWithActions
from sprx_tui.core.validate import ValidationError
from sprx_tui.screens.forms import (
    MODAL_CSS,
    ConfirmModal,
    FormField,
    fmt_date,
    local,
    parse_day,
    show_errors,
    worker_error,
)
from sprx_tui.widgets.goal_list import GoalList, WhatMattersList
from sprx_tui.widgets.person_header import PersonHeader

STATUS_ORDER = list(GOAL_STATUSES)
WHO_SUGGESTIONS = ["person", "link worker"]


@dataclass
class PlanRefreshed(Message):
    """The plan as stored after a load or a change."""

    person: Person | None
    what_matters: list[WhatMatters]
    goals: list[GoalWithActions]
    notice: str = ""
    keep: str | None = None  # option id to keep highlighted ("goal:<id>", "action:<id>", or a what-matters id)


# -- the small forms ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldSpec:
    name: str
    label: str
    kind: str = "text"  # text / date / select
    value: Any = ""
    options: tuple[tuple[str, str], ...] = ()  # (label, value) for selects
    placeholder: str = ""
    suggestions: tuple[str, ...] = ()
    error_name: str = ""  # how a date error names the field, e.g. "target_date" → "Target date ..."


class PlanFormModal(ModalScreen[dict[str, Any] | None]):
    """A few fields; Ctrl+S (or Enter in the last box) saves, Esc cancels. Dates accept +7 and +2w."""

    DEFAULT_CSS = "PlanFormModal { align: center middle; }\n" + MODAL_CSS
    BINDINGS = [
        Binding("ctrl+s", "save", "Save", priority=True, id="plan_form.save"),
        Binding("escape", "cancel", "Cancel", id="plan_form.cancel"),
    ]

    def __init__(self, title: str, fields: list[FieldSpec], *, today: dt.date, required: dict[str, str]) -> None:
        super().__init__()
        self.title_text = title
        self.specs = fields
        self.today = today
        self.required = required

    def compose(self) -> ComposeResult:
        from textual.suggester import SuggestFromList

        with Vertical(classes="dialog"):
            yield Static(self.title_text, classes="dialog-title")
            for spec in self.specs:
                if spec.kind == "select":
                    control: Any = Select(spec.options, value=spec.value, allow_blank=False, id=spec.name)
                else:
                    suggester = SuggestFromList(spec.suggestions, case_sensitive=False) if spec.suggestions else None
                    control = Input(
                        str(spec.value or ""), placeholder=spec.placeholder, id=spec.name, suggester=suggester
                    )
                yield FormField(spec.label, control, field=spec.name)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save (Ctrl+S)", id="save", variant="primary")
                yield Button("Cancel (Esc)", id="cancel")

    def action_save(self) -> None:
        values: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for spec in self.specs:
            widget = self.query_one(f"#{spec.name}")
            if isinstance(widget, Select):
                values[spec.name] = widget.value
                continue
            text = widget.value.strip() if isinstance(widget, Input) else ""
            if spec.name in self.required and not text:
                errors[spec.name] = self.required[spec.name]
            if spec.kind == "date":
                try:
                    values[spec.name] = parse_day(text, self.today, spec.name, spec.error_name or None)
                except ValidationError as exc:
                    errors[spec.name] = exc.message
            else:
                values[spec.name] = text
        show_errors(self, errors)
        if not errors:
            self.dismiss(values)

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        if event.input is list(self.query(Input))[-1]:
            self.action_save()
        else:
            self.focus_next()

    @on(Button.Pressed, "#save")
    def _save_pressed(self) -> None:
        self.action_save()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.dismiss(None)


def what_matters_form(today: dt.date, row: WhatMatters | None = None) -> PlanFormModal:
    return PlanFormModal(
        "What matters to the person (in their own words)" if row is None else "Edit what matters",
        [
            FieldSpec("text", "In their own words", value=row.text if row else "", placeholder="“I want to…”"),
            FieldSpec(
                "life_area",
                "Life area",
                kind="select",
                value=row.life_area if row else "other",
                options=tuple((label, key) for key, label in LIFE_AREAS.items()),
            ),
        ],
        today=today,
        required={"text": "Write what matters, in the person's own words."},
    )


def goal_form(today: dt.date, goal: GoalWithActions | None = None) -> PlanFormModal:
    g = goal.goal if goal else None
    fields = [
        FieldSpec("text", "Goal", value=g.text if g else ""),
        FieldSpec(
            "target_on",
            "Target date (dd/mm/yyyy, +30, +6w; optional)",
            kind="date",
            value=fmt_date(g.target_on) if g else "",
            error_name="target_date",
        ),
    ]
    if g is not None:
        fields.append(
            FieldSpec(
                "status",
                "Status",
                kind="select",
                value=g.status,
                options=tuple((label, key) for key, label in GOAL_STATUSES.items()),
            )
        )
    return PlanFormModal(
        "New goal" if g is None else "Edit goal",
        fields,
        today=today,
        required={"text": "Write the goal before saving it."},
    )


def action_form(today: dt.date, goal_text: str, action: Any | None = None) -> PlanFormModal:
    return PlanFormModal(
        f"Action for: {goal_text}" if action is None else "Edit action",
        [
            FieldSpec("what", "What", value=action.what if action else ""),
            FieldSpec(
                "who",
                "Who (person, link worker or a service)",
                value=action.who if action else "person",
                suggestions=tuple(WHO_SUGGESTIONS),
            ),
            FieldSpec(
                "due_on",
                "By when (dd/mm/yyyy, +7, +2w; optional)",
                kind="date",
                value=fmt_date(action.due_on) if action else "",
                error_name="due_date",
            ),
        ],
        today=today,
        required={"what": "Say what will be done."},
    )


# -- the editor --------------------------------------------------------------------------------------


class PlanScreen(Screen[None]):
    """Edit what matters, goals and actions; every change is saved at once and the lists refresh in place."""

    DEFAULT_CSS = """
    PlanScreen { layout: vertical; }
    PlanScreen #plan-body { height: 1fr; padding: 0 1; }
    PlanScreen WhatMattersList { max-height: 35%; }
    PlanScreen GoalList { height: 1fr; max-height: 1fr; }
    PlanScreen #plan-hint { color: $text-muted; height: auto; padding: 0 1; }
    """
    BINDINGS = [
        Binding("a", "add_goal", "Add goal", id="plan.add_goal"),
        Binding("t", "add_action", "Add action", id="plan.add_action"),
        Binding("w", "add_what_matters", "Add what matters", show=False, id="plan.add_what_matters"),
        Binding("e", "edit", "Edit", id="plan.edit", tooltip="Edit the highlighted entry, goal or action"),
        Binding("s", "cycle_status", "Status", id="plan.cycle_status", tooltip="Next status for the goal"),
        Binding("space", "toggle_done", "Action done / not done", show=False, id="plan.toggle_done"),
        Binding("ctrl+up,K", "move(-1)", "Move goal up", show=False, id="plan.move_up"),
        Binding("ctrl+down,J", "move(1)", "Move goal down", show=False, id="plan.move_down"),
        Binding("d,delete", "delete", "Delete (asks first)", show=False, id="plan.delete"),
        Binding("1", "set_status('not_started')", "Goal not started", show=False, id="plan.status_not_started"),
        Binding("2", "set_status('in_progress')", "Goal in progress", show=False, id="plan.status_in_progress"),
        Binding("3", "set_status('achieved')", "Goal achieved", show=False, id="plan.status_achieved"),
        Binding("4", "set_status('dropped')", "Goal dropped", show=False, id="plan.status_dropped"),
        Binding("escape", "back", "Back", id="plan.back", tooltip="Back to the person's record"),
    ]
    AUTO_FOCUS = "#goals"

    def __init__(self, person_id: str) -> None:
        super().__init__()
        self.person_id = person_id
        self.what_matters: list[WhatMatters] = []

    def compose(self) -> ComposeResult:
        yield PersonHeader(id="person-header")
        with Vertical(id="plan-body"):
            yield WhatMattersList(id="what-matters")
            yield GoalList(id="goals")
            yield Static(
                "a goal · t action · w what matters · e/Enter edit · s or 1-4 status · Space done · "
                "K/J or Ctrl+↑/↓ move · d delete · Tab switches list",
                id="plan-hint",
            )
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#plan-body").loading = True
        self._refresh_plan()

    @property
    def today(self) -> dt.date:
        return local(self.app.clock()).date()

    @property
    def goals(self) -> GoalList:
        return self.query_one(GoalList)

    # -- loading and saving -----------------------------------------------------------------------

    def _read(self) -> tuple[Person | None, list[WhatMatters], list[GoalWithActions]]:
        q = self.app.store.queries
        return q.person(self.person_id), q.what_matters(self.person_id), q.plan(self.person_id)

    @work(thread=True, exclusive=True, group="plan-load", exit_on_error=False)
    def _refresh_plan(self) -> None:
        self.post_message(PlanRefreshed(*self._read()))

    def _change(
        self, change: Callable[[], Any], notice: str, keep: Callable[[Any], str | None] | str | None = None
    ) -> None:
        """Save one change through the service in a thread, then show the plan as stored."""

        def run() -> None:
            result = change()
            kept = keep(result) if callable(keep) else keep
            self.post_message(PlanRefreshed(*self._read(), notice=notice, keep=kept))

        self.run_worker(run, thread=True, exclusive=False, group="plan-write", exit_on_error=False)

    @on(PlanRefreshed)
    def _plan_refreshed(self, message: PlanRefreshed) -> None:
        self.query_one("#plan-body").loading = False
        if message.person is not None:
            self.query_one(PersonHeader).show_person(message.person, self.today)
        self.what_matters = message.what_matters
        wm_keep = message.keep if message.keep and ":" not in message.keep else None
        self.query_one(WhatMattersList).show_rows(message.what_matters, keep=wm_keep)
        goal_keep = message.keep if message.keep and ":" in message.keep else None
        self.goals.show_plan(message.goals, keep=goal_keep)
        if message.notice:
            self.notify(message.notice)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.query_one("#plan-body").loading = False
            worker_error(self, event)

    # -- actions -----------------------------------------------------------------------------------

    def _what_matters_focused(self) -> bool:
        return self.focused is self.query_one(WhatMattersList)

    def action_add_what_matters(self) -> None:
        def answered(values: dict[str, Any] | None) -> None:
            if values:
                service = self.app.store.service
                self._change(
                    lambda: service.record_what_matters(self.person_id, values["text"], life_area=values["life_area"]),
                    "What matters saved",
                    lambda row: row.id,
                )

        self.app.push_screen(what_matters_form(self.today), answered)

    def action_add_goal(self) -> None:
        def answered(values: dict[str, Any] | None) -> None:
            if values:
                service = self.app.store.service
                self._change(
                    lambda: service.add_goal(self.person_id, values["text"], target_on=values["target_on"]),
                    "Goal added",
                    lambda goal: f"goal:{goal.id}",
                )

        self.goals.focus()
        self.app.push_screen(goal_form(self.today), answered)

    def action_add_action(self) -> None:
        goal = self.goals.selected_goal
        if goal is None:
            self.notify("Add a goal first; actions sit under a goal.", severity="warning")
            return
        goal_id = goal.goal.id

        def answered(values: dict[str, Any] | None) -> None:
            if values:
                service = self.app.store.service
                self._change(
                    lambda: service.add_action(goal_id, values["what"], who=values["who"], due_on=values["due_on"]),
                    "Action added",
                    lambda action: f"action:{action.id}",
                )

        self.goals.focus()
        self.app.push_screen(action_form(self.today, goal.goal.text), answered)

    @on(OptionList.OptionSelected)
    def _option_chosen(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        event.control.focus()
        self.action_edit()

    def action_edit(self) -> None:
        service = self.app.store.service
        if self._what_matters_focused():
            row = self.query_one(WhatMattersList).selected_row
            if row is None:
                return
            row_id = row.id

            def wm_answered(values: dict[str, Any] | None) -> None:
                if values:
                    self._change(lambda: service.update_what_matters(row_id, **values), "What matters saved", row_id)

            self.app.push_screen(what_matters_form(self.today, row), wm_answered)
            return
        selected = self.goals.selected
        if selected is None:
            return
        kind, row_id = selected
        if kind == "goal":
            goal = self.goals.selected_goal

            def goal_answered(values: dict[str, Any] | None) -> None:
                if values:
                    self._change(lambda: service.update_goal(row_id, **values), "Goal saved", f"goal:{row_id}")

            self.app.push_screen(goal_form(self.today, goal), goal_answered)
            return
        found = self.goals.find_action(row_id)
        if found is None:
            return
        goal, index = found

        def action_answered(values: dict[str, Any] | None) -> None:
            if values:
                self._change(lambda: service.update_action(row_id, **values), "Action saved", f"action:{row_id}")

        self.app.push_screen(action_form(self.today, goal.goal.text, goal.actions[index]), action_answered)

    def action_move(self, offset: int) -> None:
        goal = self.goals.selected_goal
        if goal is None:
            return
        goal_id = goal.goal.id
        service = self.app.store.service
        self.goals.focus()
        self._change(lambda: service.move_goal(goal_id, offset), "", f"goal:{goal_id}")

    def action_cycle_status(self) -> None:
        goal = self.goals.selected_goal
        if goal is None:
            return
        current = goal.goal.status
        index = STATUS_ORDER.index(current) if current in STATUS_ORDER else -1
        following = STATUS_ORDER[(index + 1) % len(STATUS_ORDER)]
        self.action_set_status(following)

    def action_set_status(self, status: str) -> None:
        goal = self.goals.selected_goal
        if goal is None:
            self.notify("Choose a goal first.", severity="warning")
            return
        goal_id = goal.goal.id
        service = self.app.store.service
        keep = self.goals.highlighted_option.id if self.goals.highlighted_option else f"goal:{goal_id}"
        self._change(
            lambda: service.update_goal(goal_id, status=status), f"Goal: {GOAL_STATUSES[status].lower()}", keep
        )

    def action_toggle_done(self) -> None:
        selected = self.goals.selected
        if selected is None or selected[0] != "action":
            self.notify("Choose an action to tick off.", severity="warning")
            return
        found = self.goals.find_action(selected[1])
        if found is None:
            return
        goal, index = found
        action = goal.actions[index]
        service = self.app.store.service
        done = not action.done
        self._change(
            lambda: service.complete_action(action.id, done=done),
            "Action done" if done else "Action not done",
            f"action:{action.id}",
        )

    def action_delete(self) -> None:
        service = self.app.store.service
        if self._what_matters_focused():
            row = self.query_one(WhatMattersList).selected_row
            if row is None:
                return
            question = "Delete this 'what matters' entry?"
            change: Callable[[], Any] = lambda: service.delete_what_matters(row.id)  # noqa: E731
            notice = "What matters entry deleted"
        else:
            selected = self.goals.selected
            if selected is None:
                return
            kind, row_id = selected
            if kind == "goal":
                goal = self.goals.selected_goal
                count = len(goal.actions) if goal else 0
                question = "Delete this goal" + (f" and its {count} action{'s' * (count != 1)}?" if count else "?")
                change = lambda: service.delete_goal(row_id)  # noqa: E731
                notice = "Goal deleted"
            else:
                question = "Delete this action?"
                change = lambda: service.delete_action(row_id)  # noqa: E731
                notice = "Action deleted"

        def answered(yes: bool | None) -> None:
            if yes:
                self._change(change, notice)

        self.app.push_screen(ConfirmModal(question, yes="Delete", no="Keep", danger=True), answered)

    def action_back(self) -> None:
        self.dismiss(None)
