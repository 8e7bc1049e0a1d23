"""The plan editor: what matters in the person's own words, goals in order with a status, actions under each goal."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Input, OptionList, Select, Static
from textual.worker import Worker, WorkerState

from sprx_rules.validate import ValidationError
from sprx_tui.core.models import GOAL_STATUSES, LIFE_AREAS, NEED_CATEGORIES, Person, WhatMatters
from sprx_tui.core.queries import GoalWithActions
from sprx_tui.core.service import InvalidInput
from sprx_tui.drafts import discard_later, push_person
from sprx_tui.inert import inert, visible
from sprx_tui.screens.episode import ReasonChoiceModal
from sprx_tui.screens.forms import (
    MODAL_CSS,
    ConfirmModal,
    FormField,
    SaveCancelModal,
    fmt_date,
    local,
    parse_day,
    show_errors,
    worker_error,
)
from sprx_tui.widgets.goal_list import GoalList, WhatMattersList
from sprx_tui.widgets.keys_footer import KeysFooter
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


FIELD_KINDS = ("text", "date", "select")
PLAN_FORMS = ("what_matters", "goal", "action")


def spec_to_json(spec: FieldSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "label": spec.label,
        "kind": spec.kind,
        "value": spec.value if isinstance(spec.value, str) else str(spec.value or ""),
        "options": [[label, value] for label, value in spec.options],
        "placeholder": spec.placeholder,
        "suggestions": list(spec.suggestions),
        "error_name": spec.error_name,
    }


def spec_from_json(raw: Any) -> FieldSpec:
    """A field as kept in a draft; anything malformed is refused with a plain sentence."""
    problem = InvalidInput({"draft": "That unsaved plan form could not be read back."})
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or raw.get("kind") not in FIELD_KINDS:
        raise problem
    options = raw.get("options") or []
    if not isinstance(options, list) or not all(
        isinstance(o, list) and len(o) == 2 and all(isinstance(x, str) for x in o) for o in options
    ):
        raise problem
    suggestions = raw.get("suggestions") or []
    if not isinstance(suggestions, list) or not all(isinstance(x, str) for x in suggestions):
        raise problem
    return FieldSpec(
        name=raw["name"],
        label=str(raw.get("label") or raw["name"]),
        kind=raw["kind"],
        value=str(raw.get("value") or ""),
        options=tuple((label, value) for label, value in options),
        placeholder=str(raw.get("placeholder") or ""),
        suggestions=tuple(suggestions),
        error_name=str(raw.get("error_name") or ""),
    )


def plan_draft_key(person_id: str, form: str, mode: str, target_id: str | None = None) -> str:
    """ "plan:<person>:goal:new", "plan:<person>:goal:edit:<goal id>", "plan:<person>:action:new:<goal id>" …"""
    return f"plan:{person_id}:{form}:{mode}" + (f":{target_id}" if target_id else "")


class PlanFormModal(SaveCancelModal[dict[str, Any] | None]):
    """A few fields; Ctrl+S (or Enter in the last box) saves, Esc cancels. Dates accept +7 and +2w.

    Once `keep_as` has said what it edits, the text typed is kept as a draft if the vault locks.
    """

    DEFAULT_CSS = "PlanFormModal { align: center middle; }\n" + MODAL_CSS
    BINDINGS = [
        Binding("ctrl+s", "save", "Save", priority=True, id="plan_form.save"),
        Binding("escape", "cancel", "Cancel", id="plan_form.cancel"),
    ]

    def __init__(
        self,
        title: str,
        fields: list[FieldSpec],
        *,
        today: dt.date,
        required: dict[str, str],
        prefill: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.title_text = title
        self.specs = fields
        self.today = today
        self.required = required
        self.baseline: dict[str, str] = {spec.name: self._as_text(spec.value) for spec in fields}
        self.start = dict(self.baseline)
        for spec in fields:
            value = (prefill or {}).get(spec.name)
            if not isinstance(value, str):
                continue
            if spec.kind == "select" and value not in {v for _label, v in spec.options}:
                continue  # an option this version does not have: keep the field as it was
            self.start[spec.name] = visible(value, multiline=True)  # kept text is shown, never sent raw
        self.restored = self.start != self.baseline
        self.draft_key: str | None = None
        self.draft_payload: dict[str, Any] = {}

    @staticmethod
    def _as_text(value: Any) -> str:
        # Stored text is shown in an Input as written; any control character in it as a visible placeholder.
        return visible(value, multiline=True) if isinstance(value, str) else str(value or "")

    @classmethod
    def from_draft(cls, payload: dict[str, Any], today: dt.date) -> PlanFormModal:
        """Rebuild a form kept at a lock, filled with what was typed."""
        fields = payload.get("fields")
        if not isinstance(fields, list) or not fields:
            raise InvalidInput({"draft": "That unsaved plan form could not be read back."})
        required = payload.get("required") if isinstance(payload.get("required"), dict) else {}
        values = payload.get("values") if isinstance(payload.get("values"), dict) else {}
        return cls(
            str(payload.get("title") or "Plan"),
            [spec_from_json(raw) for raw in fields],
            today=today,
            required={str(k): str(v) for k, v in required.items()},
            prefill=values,
        )

    def keep_as(self, person_id: str, form: str, mode: str, target_id: str | None = None) -> PlanFormModal:
        """Say what this form edits, so a lock keeps its text under a key that can reopen it."""
        self.draft_key = plan_draft_key(person_id, form, mode, target_id)
        self.draft_payload = {
            "kind": "plan",
            "person_id": person_id,
            "form": form,
            "mode": mode,
            "target_id": target_id,
            "title": self.title_text,
            "fields": [spec_to_json(spec) for spec in self.specs],
            "required": dict(self.required),
        }
        return self

    def typed(self) -> dict[str, str]:
        """Every field exactly as typed (dates as text, selects as their value)."""
        if not self.is_mounted:
            return dict(self.start)
        values: dict[str, str] = {}
        for spec in self.specs:
            widget = self.query_one_optional(f"#{spec.name}")
            if isinstance(widget, Select):
                values[spec.name] = self._as_text(widget.value if widget.value is not Select.BLANK else "")
            elif isinstance(widget, Input):
                values[spec.name] = widget.value
            else:
                values[spec.name] = self.start[spec.name]
        return values

    def draft(self) -> tuple[str, dict[str, Any]] | None:
        """What to keep if the vault locks now; None when nothing differs from how the form opened."""
        if self.draft_key is None:
            return None
        values = self.typed()
        if values == self.baseline:
            return None
        return self.draft_key, {**self.draft_payload, "values": values}

    def compose(self) -> ComposeResult:
        from textual.suggester import SuggestFromList

        with Vertical(classes="dialog"):
            yield Static(inert(self.title_text), classes="dialog-title")
            for spec in self.specs:
                start = self.start[spec.name]
                if spec.kind == "select":
                    options: list[tuple[Any, str]] = list(spec.options)
                    if start not in {value for _label, value in options}:
                        # A code this version does not know (from another laptop): kept, shown as written.
                        options.append((inert(start), start))
                    control: Any = Select(options, value=start, allow_blank=False, id=spec.name)
                else:
                    suggester = SuggestFromList(spec.suggestions, case_sensitive=False) if spec.suggestions else None
                    control = Input(start, placeholder=spec.placeholder, id=spec.name, suggester=suggester)
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

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        if event.input is list(self.query(Input))[-1]:
            self.action_save()
        else:
            self.focus_next()


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
        Binding("n", "add_need", "Add need", id="plan.add_need", tooltip="A need an onward referral can address"),
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
        yield KeysFooter()

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
        self,
        change: Callable[[], Any],
        notice: str,
        keep: Callable[[Any], str | None] | str | None = None,
        *,
        draft_key: str | None = None,
    ) -> None:
        """Save one change through the service in a thread, then show the plan as stored."""

        def run() -> None:
            result = change()
            if draft_key:
                # The typed text is in the plan now, so a copy kept at a lock is obsolete.
                self.app.store.service.discard_draft(draft_key)
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

    def _open_form(self, modal: PlanFormModal, form: str, mode: str, target_id: str | None = None) -> None:
        """Push a plan form; its text is kept across a lock, and saving it (or cancelling a restored one) drops that."""
        modal.keep_as(self.person_id, form, mode, target_id)

        def answered(values: dict[str, Any] | None) -> None:
            if values:
                self._save_form(form, mode, target_id, values, modal.draft_key)
            elif modal.restored and modal.draft_key:
                discard_later(self.app, modal.draft_key)

        self.app.push_screen(modal, answered)

    def _save_form(
        self, form: str, mode: str, target_id: str | None, values: dict[str, Any], draft_key: str | None
    ) -> None:
        service = self.app.store.service
        pid = self.person_id
        if form == "what_matters" and mode == "new":
            self._change(
                lambda: service.record_what_matters(pid, values["text"], life_area=values["life_area"]),
                "What matters saved",
                lambda row: row.id,
                draft_key=draft_key,
            )
        elif form == "what_matters":
            self._change(
                lambda: service.update_what_matters(target_id, **values),
                "What matters saved",
                target_id,
                draft_key=draft_key,
            )
        elif form == "goal" and mode == "new":
            self._change(
                lambda: service.add_goal(pid, values["text"], target_on=values["target_on"]),
                "Goal added",
                lambda goal: f"goal:{goal.id}",
                draft_key=draft_key,
            )
        elif form == "goal":
            self._change(
                lambda: service.update_goal(target_id, **values), "Goal saved", f"goal:{target_id}", draft_key=draft_key
            )
        elif form == "action" and mode == "new":
            self._change(
                lambda: service.add_action(target_id, values["what"], who=values["who"], due_on=values["due_on"]),
                "Action added",
                lambda action: f"action:{action.id}",
                draft_key=draft_key,
            )
        elif form == "action":
            self._change(
                lambda: service.update_action(target_id, **values),
                "Action saved",
                f"action:{target_id}",
                draft_key=draft_key,
            )

    def open_kept_form(self, kept: KeptPlanForm) -> None:
        """Reopen a form whose text was kept at a lock (the plan loads underneath)."""
        self._open_form(kept.modal, kept.form, kept.mode, kept.target_id)

    def action_add_what_matters(self) -> None:
        self._open_form(what_matters_form(self.today), "what_matters", "new")

    def action_add_need(self) -> None:
        """Record one of the person's needs (a category and their words); onward referrals choose from these."""
        modal = ReasonChoiceModal(
            "Add a need",
            NEED_CATEGORIES,
            intro="What the person needs help with; a referral or signpost then says which need it addresses.",
            words_label="In their words (optional)",
            words_required=(),
        )
        service, pid = self.app.store.service, self.person_id

        def answered(result: tuple[str, str] | None) -> None:
            if result:
                category, words = result
                self._change(
                    lambda: service.record_need(pid, category, words),
                    f"Need recorded: {NEED_CATEGORIES[category]}. Refer or signpost for it from the directory (f).",
                )

        self.app.push_screen(modal, answered)

    def action_add_goal(self) -> None:
        self.goals.focus()
        self._open_form(goal_form(self.today), "goal", "new")

    def action_add_action(self) -> None:
        goal = self.goals.selected_goal
        if goal is None:
            self.notify("Add a goal first; actions sit under a goal.", severity="warning")
            return
        self.goals.focus()
        self._open_form(action_form(self.today, goal.goal.text), "action", "new", goal.goal.id)

    @on(OptionList.OptionSelected)
    def _option_chosen(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        event.control.focus()
        self.action_edit()

    def action_edit(self) -> None:
        if self._what_matters_focused():
            row = self.query_one(WhatMattersList).selected_row
            if row is not None:
                self._open_form(what_matters_form(self.today, row), "what_matters", "edit", row.id)
            return
        selected = self.goals.selected
        if selected is None:
            return
        kind, row_id = selected
        if kind == "goal":
            self._open_form(goal_form(self.today, self.goals.selected_goal), "goal", "edit", row_id)
            return
        found = self.goals.find_action(row_id)
        if found is None:
            return
        goal, index = found
        self._open_form(action_form(self.today, goal.goal.text, goal.actions[index]), "action", "edit", row_id)

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


# -- plan forms kept across a lock --------------------------------------------------------------------

_DESCRIPTIONS = {
    ("what_matters", "new"): "an unsaved 'what matters' entry",
    ("what_matters", "edit"): "an unsaved change to a 'what matters' entry",
    ("goal", "new"): "an unsaved new goal",
    ("goal", "edit"): "an unsaved change to a goal",
    ("action", "new"): "an unsaved new action",
    ("action", "edit"): "an unsaved change to an action",
}


def describe_draft(payload: dict[str, Any]) -> str:
    """How the offer after unlock names this draft."""
    return _DESCRIPTIONS.get((str(payload.get("form")), str(payload.get("mode"))), "an unsaved change to a plan")


@dataclass(frozen=True)
class KeptPlanForm:
    """A plan form rebuilt from a draft, and what it edits."""

    modal: PlanFormModal
    form: str
    mode: str
    target_id: str | None


def kept_plan_form(payload: dict[str, Any], today: dt.date) -> KeptPlanForm:
    """Read a kept plan form back, refusing anything malformed with a plain sentence (before any screen opens)."""
    form, mode = str(payload.get("form") or ""), str(payload.get("mode") or "")
    target_id = str(payload.get("target_id") or "") or None
    needs_target = form == "action" or mode == "edit"  # a new action belongs to a goal
    if form not in PLAN_FORMS or mode not in ("new", "edit") or needs_target != bool(target_id):
        raise InvalidInput({"draft": "That unsaved plan form could not be read back."})
    return KeptPlanForm(PlanFormModal.from_draft(payload, today), form, mode, target_id)


def restore_draft(app: App[Any], key: str, payload: dict[str, Any]) -> None:
    """Reopen the person, their plan editor and the form with the text typed so far."""
    person_id = str(payload.get("person_id") or "")
    if not person_id:
        raise InvalidInput({"draft": "That unsaved plan form does not say whose record it belongs to."})
    kept = kept_plan_form(payload, local(app.clock()).date())  # type: ignore[attr-defined]
    person = push_person(app, person_id, tab="plan")
    person.open_plan().open_kept_form(kept)
