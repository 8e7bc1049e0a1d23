"""Record text is inert on screen: never read as markup, never written to the terminal as escapes or controls.

Adversarial text (terminal escape and OSC sequences, C0/C1 controls, bidi controls, Rich/Textual markup, emoji
with skin tones, right-to-left scripts, lone surrogates where the storage can hold them) is written straight
into a real SQLCipher vault, bypassing the service's input checks, as a pull from an older server or an import
could have left it. The real app then shows it on every screen that shows that text, under Pilot: it keeps
running, what is drawn holds no control character, and markup shows as the characters that were typed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from textual.pilot import Pilot
from textual.widgets import DataTable

from sprx_rules.gate import visible
from sprx_tui.app import SprxApp
from sprx_tui.config import Config
from sprx_tui.core.models import SyncConflict, SyncRejected
from sprx_tui.core.store import CaseStore, open_store, set_state
from sprx_tui.screens.caseload import CaseloadScreen
from sprx_tui.screens.directory import DirectoryScreen
from sprx_tui.screens.person import PersonScreen
from sprx_tui.screens.plan import PlanFormModal, PlanScreen
from sprx_tui.screens.sync import ConflictScreen, MergeScreen, SyncScreen
from sync import hlc as hlc_mod
from tests.conftest import empty_textual_style_cache
from tests.tui.conftest import FROZEN_NOW, frozen_clock, quick_unlock
from tests.tui.settling import open_area, settle, wait_until

SIZE = (120, 40)
CONFLICT_ID = "badc0de0-0000-4000-8000-000000000001"
TODAY = FROZEN_NOW.date().isoformat()

# What an attacker (or a careless import) puts in a name or a note.
FRAGMENTS = [
    "\x1b]0;PWNED\x07",  # set the window title
    "\x1b]52;c;SGVsbG8=\x07",  # write the clipboard
    "\x1b]8;;https://x.example\x1b\\",  # a hyperlink
    "\x1b[2J",  # clear the screen
    "\x1b[31m",
    "\x9b31m",  # C1 CSI
    "\x90q\x9c",  # C1 DCS ... ST
    "\x00",
    "\x07",
    "\x08",
    "\r",
    "\t",
    "\n",
    "\x7f",
    "\x85",
    "\u202e",
    "\u2066",
    "\u2069",
    "\u2028",
    "\ud800",
    "\udfff",
    "[/bold]",
    "[link=https://x.example]",
    "[@click=app.quit]",
    "[red]",
    "[$accent]",
    "[B]",
    "[/]",
    "\\",
    "[",
    "👍🏽",
    "👩🏿‍⚕️",
    "مرحبا",
    "שלום",
    "Ada",
    " ",
]
ODD_CHARACTERS = st.characters(categories=["Cc", "Cf", "Cs", "Zl", "Zp", "Mn", "Lo", "So", "Ps", "Pe"])
ADVERSARIAL = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.text(ODD_CHARACTERS, min_size=1, max_size=3)), min_size=1, max_size=6
).map("".join)

# What must never be in what is drawn: C0 and C1 controls (ESC among them), DEL and lone surrogates.
CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


@pytest.fixture(autouse=True)
def _config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPRX_CONFIG_DIR", str(tmp_path / "config"))


@pytest.fixture(scope="module")
def store(demo_vault_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CaseStore]:
    dest = tmp_path_factory.mktemp("inert") / "vault"
    shutil.copytree(demo_vault_template, dest)
    vault = quick_unlock(dest)
    opened = open_store(vault, clock=frozen_clock)
    yield opened
    vault.lock()


def storable(value: str) -> str:
    """A text column is written as UTF-8, which has no lone surrogates; JSON columns keep them (as \\udxxx)."""
    return _SURROGATE.sub("\ufffd", value)


def chosen_person(store: CaseStore) -> str:
    """A demo person on Today's due list with a referral, contacts, a goal, what matters and an onward referral."""
    with store.engine.connect() as conn:
        row = conn.exec_driver_sql(
            """
            SELECT p.id FROM person p
            WHERE EXISTS (SELECT 1 FROM follow_up f WHERE f.person_id = p.id AND f.status = 'open' AND f.due_on = ?)
              AND EXISTS (SELECT 1 FROM onward_referral o WHERE o.person_id = p.id)
              AND EXISTS (SELECT 1 FROM goal g WHERE g.person_id = p.id)
              AND EXISTS (SELECT 1 FROM plan_action a WHERE a.person_id = p.id)
              AND EXISTS (SELECT 1 FROM what_matters w WHERE w.person_id = p.id)
              AND EXISTS (SELECT 1 FROM referral r WHERE r.person_id = p.id)
              AND EXISTS (SELECT 1 FROM contact c WHERE c.person_id = p.id)
            ORDER BY p.id LIMIT 1
            """,
            (TODAY,),
        ).first()
    assert row is not None, "the demo has no person with every part of a record"
    return str(row[0])


def poison(store: CaseStore, person_id: str, value: str) -> None:
    """Write `value` into every text field the screens show, for one person, the directory and sync's records."""
    text, js = storable(value), json.dumps([value, "aggression"])
    with store.lock, store.engine.begin() as conn:
        sql = conn.exec_driver_sql
        sql(
            "UPDATE person SET given_name = ?, family_name = ?, preferred_name = NULL, address = ?, postcode = ?,"
            " phone = ?, email = ?, communication_needs = ?, interpreter_language = ?, gp_practice = ?,"
            " safety_notes = ?, safety_flags = ?, gender = ? WHERE id = ?",
            (text, text, text, text, text, text, text, text, text, text, js, text, person_id),
        )
        sql("UPDATE follow_up SET reason = ? WHERE person_id = ?", (text, person_id))
        sql(
            "UPDATE referral SET status = 'received', source = ?, referrer_name = ?, referral_text = ?,"
            " decline_reason = ?, urgency = ?, reasons = ? WHERE person_id = ?",
            (text, text, text, text, text, js, person_id),
        )
        sql("UPDATE contact SET notes = ?, mode = ?, author = ? WHERE person_id = ?", (text, text, text, person_id))
        first_contact = sql(
            "SELECT id FROM contact WHERE person_id = ? ORDER BY occurred_at DESC LIMIT 1", (person_id,)
        ).scalar()
        sql(
            "UPDATE contact SET entered_in_error = 1, error_reason = ? WHERE id = ?", (text, first_contact)
        )  # its reason is shown too
        sql(
            "UPDATE contact_amendment SET person_id = ?, contact_id = ?, text = ?, reason = ?, author = ?"
            " WHERE id = (SELECT id FROM contact_amendment ORDER BY id LIMIT 1)",
            (person_id, first_contact, text, text, text),
        )
        sql("UPDATE what_matters SET text = ?, life_area = ? WHERE person_id = ?", (text, text, person_id))
        sql("UPDATE goal SET text = ?, status = ? WHERE person_id = ?", (text, text, person_id))
        sql("UPDATE plan_action SET what = ?, who = ? WHERE person_id = ?", (text, text, person_id))
        sql(
            "UPDATE onward_referral SET service_name = ?, kind = ?, need = ?, outcome = ? WHERE person_id = ?",
            (text, text, text, text, person_id),
        )
        sql(
            "UPDATE community_service SET name = ?, organisation = ?, description = ?, area = ?, address = ?,"
            " postcode = ?, phone = ?, email = ?, url = ?, eligibility = ?, cost = ?, referral_route = ?,"
            " opening_times = ?, accessibility = ?, categories = ?, needs = ?",
            (*[text] * 14, js, js),
        )
        sql("DELETE FROM sync_conflict")
        sql("DELETE FROM sync_rejected")
    goal_id = _first(store, "SELECT id FROM goal WHERE person_id = ? ORDER BY id LIMIT 1", person_id)
    stamp = hlc_mod.pack(int((FROZEN_NOW - dt.timedelta(minutes=20)).timestamp() * 1000), 0)
    with store.lock:
        from sqlmodel import Session

        with Session(store.engine) as s, s.begin():
            s.add(
                SyncConflict(
                    id=CONFLICT_ID,
                    tbl="goal",
                    row_id=goal_id,
                    person_id=person_id,
                    field="text",
                    values_json=[  # JSON: a lone surrogate survives here
                        {"v": value, "hlc": stamp, "dev": store.actor.device_id, "seq": 40},
                        {"v": value + " (2)", "hlc": stamp + 1, "dev": value, "seq": 41},
                    ],
                    shown_idx=1,
                    server_seq=42,
                )
            )
            s.add(
                SyncRejected(
                    mutation_id=990001,
                    tbl="goal",
                    row_id=goal_id,
                    person_id=person_id,
                    reason_code=text,
                    detail=text,
                    payload={"op": "update", "values": {"text": value}},
                    rejected_at=FROZEN_NOW - dt.timedelta(minutes=30),
                )
            )
    set_state(
        store.engine,
        {
            "server_url": f"https://sync.example/{text}",
            "device_token": "inert-token",
            "user_id": text,
            "practice_id": "P1",
            "last_sync_at": (FROZEN_NOW - dt.timedelta(minutes=30)).isoformat(),
            "last_successful_sync_at": (FROZEN_NOW - dt.timedelta(minutes=30)).isoformat(),
            "last_sync_status": "failed",
            "last_sync_message": text,
        },
    )


def _first(store: CaseStore, query: str, *args: Any) -> str:
    with store.engine.connect() as conn:
        return str(conn.exec_driver_sql(query, args).scalar())


def screen_lines(app: SprxApp) -> list[str]:
    """What is drawn, one string per terminal line (from the SVG screenshot, so nothing the app filters away)."""
    svg = app.export_screenshot()
    lines: dict[int, list[str]] = {}
    for match in re.finditer(r'<text [^>]*clip-path="url\(#[^)]*-line-(\d+)\)"[^>]*>(.*?)</text>', svg, re.S):
        lines.setdefault(int(match[1]), []).append(html.unescape(match[2]).replace("\xa0", " "))
    assert lines, "the screenshot had no text"
    return ["".join(parts).rstrip("\n") for _n, parts in sorted(lines.items())]


def assert_inert(app: SprxApp, where: str, literal: str | None) -> str:
    """The app still runs, nothing drawn is a control character, and `literal` (if given) is drawn as typed."""
    assert app.is_running and app.return_code is None, f"{where}: the app stopped"
    lines = screen_lines(app)
    for line in lines:
        bad = CONTROL.search(line)
        assert bad is None, f"{where}: {bad[0]!r} drawn in {line!r}"
    drawn = "\n".join(lines)
    if literal is not None:
        assert literal in drawn, f"{where}: {literal!r} is not on screen:\n{drawn}"
    return drawn


async def walk(store: CaseStore, person_id: str, literal: str | None) -> None:
    """Every screen that shows the poisoned text, in the real app."""
    app = SprxApp(store.vault.path, clock=frozen_clock, config=Config(auto_sync=False), store=store)
    app.animation_level = "none"
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, rounds=4)
        # Lists are in name or date order: bring the person's row into view.
        follow_up = _first(store, "SELECT id FROM follow_up WHERE person_id = ? AND due_on = ?", person_id, TODAY)
        await show_row(pilot, "#due", f"d:{follow_up}")
        assert_inert(app, "Today", literal)

        await open_area(pilot, "f3", CaseloadScreen)
        await show_row(pilot, "#caseload", person_id)
        assert_inert(app, "caseload", literal)

        await settle(pilot)
        app.open_person(person_id)
        await settle(pilot, rounds=4)
        person = app.screen
        assert isinstance(person, PersonScreen)
        assert_inert(app, "person overview", literal)
        for letter, tab in (("r", "referrals"), ("c", "contacts"), ("w", "plan"), ("o", "onward")):
            await pilot.press(letter)
            await settle(pilot, rounds=4)
            assert_inert(app, f"person {tab}", literal)
        # The plan editor, and the goal's text in its edit form (an Input draws escapes raw).
        await pilot.press("p")
        await settle(pilot, rounds=4)
        assert isinstance(app.screen, PlanScreen)
        assert_inert(app, "plan", literal)
        await pilot.press("e")
        await settle(pilot)
        assert isinstance(app.screen, PlanFormModal)
        assert_inert(app, "goal edit form", literal)
        await pilot.press("escape")
        await settle(pilot)
        await pilot.press("escape")
        await settle(pilot, rounds=4)
        assert isinstance(app.screen, PersonScreen)
        # The onward referral's outcome dialog names the service.
        person.query_one("#onward-table", DataTable).focus()
        await pilot.press("t")
        await settle(pilot)
        assert_inert(app, "onward outcome dialog", literal)
        await pilot.press("escape")
        await settle(pilot)
        # The palette finds the person by NHS number and shows their name.
        nhs = _first(store, "SELECT nhs_number FROM person WHERE id = ?", person_id)
        await pilot.press("ctrl+p")
        await settle(pilot)
        await pilot.press(*nhs[:6])
        await settle(pilot, rounds=4)  # the palette's search is a worker
        await wait_until(pilot, lambda: bool(app.screen.query_one("CommandList").option_count), what="the hits")
        await settle(pilot)
        assert_inert(app, "command palette", literal)
        await pilot.press("escape")
        await settle(pilot)
        # The directory for this person: the banner names them; every service's text is poisoned.
        assert isinstance(app.screen, PersonScreen)
        await pilot.press("f")
        await settle(pilot, rounds=4)
        assert isinstance(app.screen, DirectoryScreen)
        assert_inert(app, "directory for the person", literal)
        await pilot.press("escape")
        await settle(pilot)

        await open_area(pilot, "f4", DirectoryScreen)
        assert_inert(app, "directory", literal)

        sync = await open_area(pilot, "f6", SyncScreen)
        await wait_until(pilot, lambda: sync.view is not None, what="the sync screen's lists")
        await settle(pilot)
        assert_inert(app, "sync", literal)
        sync.query_one("#conflicts", DataTable).focus()
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ConflictScreen)
        assert_inert(app, "conflict", literal)
        await pilot.press("m")  # the merged text starts with every version, in an editor
        await settle(pilot)
        assert isinstance(app.screen, MergeScreen)
        assert_inert(app, "merged text editor", literal)
    assert app.return_code in (None, 0), "the app stopped with an error"


async def show_row(pilot: Pilot[Any], table_id: str, key: str) -> None:
    table = pilot.app.screen.query_one(table_id)  # Today's and the caseload's are TextTables
    table.move_cursor(row=table.get_row_index(key))  # type: ignore[attr-defined]
    await settle(pilot)


def run_walk(store: CaseStore, value: str, literal: str | None) -> None:
    person_id = chosen_person(store)
    poison(store, person_id, value)
    asyncio.run(walk(store, person_id, literal))
    empty_textual_style_cache()  # each example's app, freed before the next (tests/conftest.py)


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("Jones [/bold]", "Jones [/bold]"),
        ("[@click=app.quit]Quit[/] [link=https://x.example]me[/link]", "[@click=app.quit]Quit[/]"),
        ("[$accent]Ada[B]", "[$accent]Ada[B]"),
        ("\x1b]0;PWNED\x07\x1b[31mEvil", "␛]0;PWNED␇␛[31mEvil"),
        ("\x1b]52;c;SGVsbG8=\x07Clip", "␛]52;c;SGVsbG8=␇Clip"),
    ],
    ids=["closing-tag", "click-and-link", "variable-and-capital", "osc-title", "osc-clipboard"],
)
@pytest.mark.slow  # every screen, for each of several strings
def test_markup_and_escapes_in_record_text_are_shown_as_typed(store: CaseStore, value: str, literal: str) -> None:
    assert visible(value) == literal or literal in visible(value)
    run_walk(store, value, literal)


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(value=ADVERSARIAL)
@example(value="\ud800Jones [/bold]\x1b[2J\u202e👩🏿‍⚕️")
@pytest.mark.slow  # a hypothesis search through every screen
def test_adversarial_record_text_never_reaches_the_terminal(store: CaseStore, value: str) -> None:
    run_walk(store, value, None)


def test_a_lone_surrogate_is_drawn_as_a_placeholder(store: CaseStore) -> None:
    """Only JSON columns can hold one (safety flags, a conflict's versions); it is drawn as U+FFFD."""
    person_id = chosen_person(store)
    poison(store, person_id, "Ada\ud800")

    async def run() -> None:
        app = SprxApp(store.vault.path, clock=frozen_clock, config=Config(auto_sync=False), store=store)
        app.animation_level = "none"
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            app.open_person(person_id)
            await settle(pilot, rounds=4)
            drawn = assert_inert(app, "person header", None)
            assert "Ada\ufffd" in drawn  # the safety flag
            sync = await open_area(pilot, "f6", SyncScreen)
            await settle(pilot)
            sync.query_one("#conflicts", DataTable).focus()
            await pilot.press("enter")
            await settle(pilot)
            drawn = assert_inert(app, "conflict", None)
            assert "Ada\ufffd (2)" in drawn

    asyncio.run(run())
