"""Deterministic synthetic demo data: a made-up caseload and directory, never real people."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable

from sqlmodel import Session

from sprx_rules import outcomes as instruments
from sprx_tui.core.ids import stable_id
from sprx_tui.core.models import (
    CONTACT_MODES,
    LIFE_AREAS,
    REFERRAL_REASONS,
    REFERRAL_SOURCES,
    CommunityService,
    Person,
)
from sprx_tui.core.service import CaseService
from sprx_tui.core.store import DEMO_MARK, CaseStore, set_state

# Synthetic names, combined at random: no entry describes a real person.
GIVEN = (
    "Ada Alan Alma Amir Ana Arlo Asha Bea Bilal Bram Cara Cyril Dara Dev Edna Eli Elsa Enzo Ezra Faye "
    "Finn Gwen Hal Hana Ida Ike Iris Ivo Jade Jon Juno Kai Kit Lara Len Lior Mae Mia Milo Nell Nia Noor "
    "Ola Orla Otis Pam Pia Quin Ravi Rhea Rex Rosa Ruth Sami Sara Seb Tam Tess Theo Uma Una Vic Vera "
    "Wren Xan Yara Yusuf Zac Zara"
).split()
FAMILY = (
    "Abbot Ashdown Barlow Birch Bramble Calder Carrow Dunmore Eastwick Ellery Farrow Fenwick Garside "
    "Hallam Hartley Ingleby Jessop Keld Kirkby Lowther Marley Moss Nettle Oakley Pennock Quarry Redfern "
    "Rook Sallow Skelton Thorne Tindall Underwood Vance Wardle Whitlock Yardley Yew Zennor"
).split()
STREETS = "Acre Beck Chapel Dale Elm Fold Garth Holme Ings Kiln Lark Mill Nook Orchard Pike Rigg Shaw Toft Wold Yard"
AREAS = [
    "Northfield",
    "Southbank",
    "Eastgate",
    "Westmoor",
    "Riverside",
    "Hillside",
    "Old Town",
    "Parkside",
]
POSTCODE_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"

# (category, needs it meets, name patterns)
SERVICE_KINDS: list[tuple[str, list[str], list[str]]] = [
    (
        "walking",
        ["physical_activity", "loneliness"],
        ["{a} Walking for Health group", "{a} Stroll and Chat"],
    ),
    (
        "befriending",
        ["loneliness", "bereavement"],
        ["{a} Befriending Service", "{a} Telephone Friends"],
    ),
    (
        "gardening",
        ["loneliness", "low_mood", "physical_activity"],
        ["{a} Community Garden", "{a} Allotment Buddies"],
    ),
    ("arts", ["low_mood", "loneliness"], ["{a} Arts on Prescription", "{a} Craft and Natter"]),
    ("cookery", ["weight", "money"], ["{a} Cook and Eat Club", "{a} Community Kitchen"]),
    ("volunteering", ["employment", "loneliness"], ["{a} Volunteer Centre", "{a} Time Bank"]),
    ("debt_advice", ["money"], ["{a} Money Advice Drop-in", "{a} Debt Help Line"]),
    ("housing_advice", ["housing"], ["{a} Housing Advice Service", "{a} Tenancy Support"]),
    (
        "bereavement",
        ["bereavement", "low_mood"],
        ["{a} Bereavement Support Group", "{a} Cruse-style Listening"],
    ),
    (
        "benefits_advice",
        ["money", "employment"],
        ["{a} Benefits Advice Surgery", "{a} Welfare Rights"],
    ),
    ("carers", ["carer_strain"], ["{a} Carers' Cafe", "{a} Carers Support Hub"]),
    ("digital", ["digital", "loneliness"], ["{a} Digital Drop-in", "{a} Tablet Tea Club"]),
    ("mental_health", ["low_mood"], ["{a} Talking Therapies Self-referral", "{a} Men's Shed"]),
]

STATUS_WEIGHTS = [
    ("referred", 12),
    ("active", 55),
    ("discharged", 20),
    ("declined", 6),
    ("did_not_engage", 7),
]
# The first people cover every status and both kinds of follow-up (due today, overdue), so even a
# small demo shows every state a screen can be in; the rest are drawn at random by STATUS_WEIGHTS.
COVERAGE: list[tuple[str, str | None]] = [
    ("active", "today"),
    ("active", "overdue"),
    ("referred", None),
    ("declined", None),
    ("discharged", None),
    ("did_not_engage", None),
]

NOTE_OPENERS = [
    "Visited at home; tea offered.",
    "Phoned as arranged.",
    "Met at the community centre.",
    "Video call with support from daughter.",
    "Brief call to check in.",
]
NOTE_BODIES = [
    "Talked about what matters most: getting out of the house more often.",
    "Discussed the walking group and agreed to try the Tuesday session.",
    "Worried about the gas bill; agreed to book the money advice drop-in.",
    "Mood brighter than last time; has been to the garden project twice.",
    "Still finding evenings hard since the bereavement; talked about the support group.",
    "Reviewed the plan together; one goal achieved, one still in progress.",
    "Carer strain is high; passed on details for the carers' cafe.",
    "Not at home at the agreed time; left a card.",
]

WHAT_MATTERS = [
    ("connection", "I want to have someone to talk to in the evenings."),
    ("health", "Being able to walk to the shops again without stopping."),
    ("money", "Not lying awake worrying about the bills."),
    ("home", "Getting the damp in the bedroom sorted."),
    ("activity", "Doing something with my hands again, like I used to."),
    ("work", "Feeling useful, maybe volunteering somewhere."),
]
GOALS = [
    (
        "Go to the walking group once a week",
        ["Find out the meeting point", "Go with the link worker the first time"],
    ),
    ("Sort out the energy debt", ["Gather last three bills", "Attend the money advice drop-in"]),
    ("Meet new people nearby", ["Try the befriending service", "Visit the community cafe"]),
    (
        "Feel less anxious going out",
        ["Short walk to the end of the road daily", "Practise the breathing exercise"],
    ),
    (
        "Get back into gardening",
        ["Visit the community garden", "Ask about a shared allotment plot"],
    ),
]
DECLINE_REASONS = [
    "Does not want support at present.",
    "Already supported by another service.",
    "Moved away from the area.",
]


def nhs_test_number(rng: random.Random) -> str:
    """A Modulus-11-valid number in 999 000 0000 - 999 999 9999, the range NHS England keeps for tests."""
    while True:
        digits = [9, 9, 9] + [rng.randrange(10) for _ in range(6)]
        total = sum(d * w for d, w in zip(digits, range(10, 1, -1), strict=True))
        check = 11 - total % 11
        if check == 11:
            check = 0
        if check != 10:
            return "".join(map(str, digits)) + str(check)


def synthetic_postcode(rng: random.Random) -> str:
    return f"LS{rng.randint(1, 29)} {rng.randint(1, 9)}{rng.choice(POSTCODE_LETTERS)}{rng.choice(POSTCODE_LETTERS)}"


def demo_directory(rng: random.Random, today: dt.date, count: int = 150) -> list[CommunityService]:
    services: list[CommunityService] = []
    i = 0
    while len(services) < count:
        category, needs, patterns = SERVICE_KINDS[i % len(SERVICE_KINDS)]
        area = AREAS[(i // len(SERVICE_KINDS)) % len(AREAS)]
        pattern = patterns[(i // (len(SERVICE_KINDS) * len(AREAS))) % len(patterns)]
        name = pattern.format(a=area)
        if len(services) >= len(SERVICE_KINDS) * len(AREAS) * len(patterns):
            name = f"{name} ({i})"
        verified = today - dt.timedelta(days=rng.choice([5, 30, 60, 120, 170, 200, 300, 420]))
        services.append(
            CommunityService(
                id=stable_id("demo-service", str(i)),
                practice_id="local",
                organisation=f"{area} Community Trust",
                name=name,
                description=f"A friendly {category.replace('_', ' ')} service for people living in {area}.",
                categories=[category],
                needs=list(needs),
                area=area,
                address=f"{rng.randint(1, 99)} {rng.choice(STREETS.split())} Street, {area}",
                postcode=synthetic_postcode(rng),
                phone=f"0113 496 {rng.randint(0, 999):04d}",  # Ofcom drama range
                email=f"hello@{area.lower().replace(' ', '')}-{category}.example.org",
                url=f"https://{area.lower().replace(' ', '')}-{category}.example.org",
                eligibility="Adults 18+ living in the area",
                cost=rng.choice(["Free", "Free", "Pay what you can", "£2 per session"]),
                referral_route=rng.choice(["Self-referral", "Link worker referral", "Drop in"]),
                opening_times=rng.choice(["Mon 10:00-12:00", "Tue and Thu 13:00-15:00", "Weekdays 9:00-17:00"]),
                accessibility=rng.choice(["Step-free access", "Hearing loop", "Ground floor only", ""]),
                last_verified=verified,
                active=rng.random() > 0.06,
                source_id=f"demo-{i}",
                search_text=f"{name} {area} {category} {' '.join(needs)}".lower(),
            )
        )
        i += 1
    return services


# Scale items where a lower answer is the better one (outcomes.improved reads them the same way);
# every other scale item improves upwards, and health use improves by falling (HEALTH_USE_FALL).
LOWER_IS_BETTER: frozenset[tuple[str, str]] = frozenset(
    {("ONS4", "anxiety")} | {("UCLA3", item.id) for item in instruments.UCLA3.items}
)
# Self-reported use in the last 3 months: (typical count at baseline, spread, most anyone reports here).
# The figures people quote for social prescribing: GP appointments down a third, A&E visits halved.
HEALTH_USE_BASELINE = {"gp_appointments": (3.5, 2.2, 10), "ae_attendances": (0.6, 0.9, 4)}
# Share of a person's use gone at discharge per unit of lift: lift 0.8 takes most of it away, lift -0.2
# adds some. Over 3,000 simulated discharges: GP 3.6 -> 2.4 (a third fewer), A&E 0.74 -> 0.48 a person.
HEALTH_USE_FALL = {"gp_appointments": 1.0, "ae_attendances": 1.5}
SCALE_SHIFT = 0.35  # a later answer moves lift * SCALE_SHIFT * (the item's range) in the better direction
SCALE_NOISE = 1 / 8  # ... give or take this share of the range (one standard deviation)


def _responses(
    instrument: instruments.Instrument,
    rng: random.Random,
    lift: float,
    baseline: dict[str, int | None] | None = None,
) -> dict[str, int | None]:
    """Plausible answers: one standard normal draw per item, mapped onto the item's scale.

    At baseline the scales sit around their middle and health use around a frequent attender's
    counts. A later measure starts from the person's own baseline and moves by `lift` in the
    item's better direction (up for wellbeing, down for anxiety, loneliness and health use):
    lift 0.8 is about 3 points on an ONS4 item and most of the person's GP and A&E use gone; a
    negative lift is a person who got worse.
    """
    out: dict[str, int | None] = {}
    for item in instrument.items:
        z = rng.gauss(0.0, 1.0)
        lo, hi = item.min_value, item.max_value
        if instrument.code == "HEALTH_USE":
            typical, spread, most = HEALTH_USE_BASELINE[item.id]
            if baseline is None:
                value = typical + spread * z
            else:
                before = baseline[item.id] or 0
                # Counts vary about as much as their square root, so nobody at 0 jumps to several.
                value = before * (1 - HEALTH_USE_FALL[item.id] * lift) + 0.5 * before**0.5 * z
            hi = most
        else:
            sign = -1 if (instrument.code, item.id) in LOWER_IS_BETTER else 1
            if baseline is None:
                value = (lo + hi) / 2 + z * (hi - lo) / 5
            else:
                value = (baseline[item.id] or 0) + (sign * lift * SCALE_SHIFT + z * SCALE_NOISE) * (hi - lo)
        out[item.id] = round(min(hi, max(lo, value)))
    return out


def build_demo(
    store: CaseStore,
    *,
    people: int = 60,
    seed: int = 7,
    services: int = 150,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Fill an empty vault with a deterministic synthetic caseload and directory.

    The vault is marked as a demo first (DEMO_MARK), so it can never be enrolled with a practice server:
    its made-up people must not reach a practice's real records.
    """
    set_state(store.engine, {DEMO_MARK: "synthetic"})
    rng = random.Random(seed)
    svc: CaseService = store.service
    today = svc.today()
    now = svc.clock()
    directory = demo_directory(rng, today, services)
    with store.lock, Session(store.engine, expire_on_commit=False) as s, s.begin():
        s.add_all(directory)
    active_services = [d for d in directory if d.active]
    batch = 50
    for start in range(0, people, batch):
        with svc.transaction():
            for n in range(start, min(people, start + batch)):
                _demo_person(svc, rng, n, today, now, active_services)
        if progress:
            progress(min(people, start + batch) - start)


def _demo_person(
    svc: CaseService,
    rng: random.Random,
    n: int,
    today: dt.date,
    now: dt.datetime,
    services: list[CommunityService],
) -> None:
    """One synthetic person's whole episode so far. The steps draw from ``rng`` in a fixed order, so
    the same seed always gives the same vault (snapshot tests and benchmarks rely on it)."""
    status = rng.choices([s for s, _ in STATUS_WEIGHTS], [w for _, w in STATUS_WEIGHTS])[0]
    due: str | None = None
    if n < len(COVERAGE):
        status, due = COVERAGE[n]
    person = _demo_add_person(svc, rng, today)
    days_ago = rng.randint(0, 20) if status == "referred" else rng.randint(30, 110)
    received = today - dt.timedelta(days=days_ago)
    referral = svc.receive_referral(
        person.id,
        source=rng.choice(list(REFERRAL_SOURCES)),
        received_on=received,
        reasons=rng.sample(list(REFERRAL_REASONS), k=rng.randint(1, 3)),
        referrer_name=rng.choice(["Dr A. Example", "Practice nurse", "Discharge team", None]),
        referral_text="Would benefit from support to reconnect with the community.",
        urgency=rng.choice(["routine"] * 5 + ["soon", "urgent"]),
    )
    if status == "referred":
        return
    if status == "declined":
        svc.decline_referral(referral.id, rng.choice(DECLINE_REASONS))
        return
    moments = _demo_contacts(svc, rng, person.id, referral.id, status, due, received, today, now)
    if status == "did_not_engage":
        svc.set_status(person.id, "did_not_engage")
        return
    first_day = moments[0].date()
    _demo_plan(svc, rng, person.id, first_day)
    _demo_onward(svc, rng, person.id, first_day, today, services)
    _demo_outcomes(svc, rng, person.id, first_day, moments[-1].date(), discharged=status == "discharged")
    if status == "discharged":
        svc.discharge(person.id)


def _demo_add_person(svc: CaseService, rng: random.Random, today: dt.date) -> Person:
    flags = rng.sample(["do_not_visit_alone", "animals", "access", "smoking"], k=rng.choice([0] * 6 + [1, 1, 2]))
    born = today - dt.timedelta(days=rng.randint(19 * 365, 92 * 365))
    return svc.add_person(
        given_name=rng.choice(GIVEN),
        family_name=rng.choice(FAMILY),
        nhs_number=nhs_test_number(rng) if rng.random() > 0.03 else None,
        date_of_birth=born,
        address=f"{rng.randint(1, 140)} {rng.choice(STREETS.split())} Road",
        postcode=synthetic_postcode(rng),
        phone=f"07700 900{rng.randint(0, 999):03d}",
        preferred_contact=rng.choice(["phone", "text", "visit", "letter"]),
        communication_needs=rng.choice([None, None, None, "Hard of hearing: face the person", "Large print letters"]),
        interpreter_language=rng.choice([None] * 9 + ["Polish", "Urdu"]),
        gp_practice="Demo Health Centre",
        consent_social_prescribing=True,
        consent_gp_sharing=rng.choice(["full", "full", "codes_only"]),
        safety_flags=flags,
        safety_notes="Dog in the house; ask for it to be shut away." if "animals" in flags else None,
    )


def _demo_contacts(
    svc: CaseService,
    rng: random.Random,
    person_id: str,
    referral_id: str,
    status: str,
    due: str | None,
    received: dt.date,
    today: dt.date,
    now: dt.datetime,
) -> list[dt.datetime]:
    """The contacts of an accepted referral (the first accepts it); returns when they happened."""
    contacts = {
        "active": rng.randint(6, 16),
        "discharged": rng.randint(8, 14),
        "did_not_engage": rng.randint(1, 3),
    }[status]
    span = max(1, (today - received).days - 1)
    moments = sorted(
        dt.datetime.combine(
            received + dt.timedelta(days=1 + rng.randrange(span)),
            dt.time(9 + rng.randrange(8)),
            dt.UTC,
        )
        for _ in range(contacts)
    )
    moments = [min(m, now - dt.timedelta(hours=1)) for m in moments]
    for i, when in enumerate(moments):
        last = i == len(moments) - 1
        if last and status == "active":
            follow_up = _demo_last_follow_up(rng, when, due, today)
        else:
            follow_up = None if last else moments[i + 1].date()
        kwargs = dict(
            mode=rng.choice(list(CONTACT_MODES)),
            notes=f"{rng.choice(NOTE_OPENERS)} {rng.choice(NOTE_BODIES)}",
            occurred_at=when,
            duration_minutes=rng.choice([15, 30, 45, 60, 90]),
            follow_up_on=follow_up if follow_up is None or follow_up >= when.date() else None,
            did_not_attend=status == "did_not_engage" and rng.random() < 0.7,
        )
        if i == 0:
            contact = svc.accept_referral(referral_id, **kwargs)
        else:
            contact = svc.record_contact(person_id, **kwargs)
        if i == 1 and rng.random() < 0.1:
            svc.amend_contact(
                contact.id,
                "Correction: the visit was with the person's son present.",
                "Detail missed",
            )
    return moments


def _demo_last_follow_up(rng: random.Random, when: dt.datetime, due: str | None, today: dt.date) -> dt.date:
    """The follow-up an active person's latest contact set: soon, sometimes overdue, or as COVERAGE asks."""
    follow_up = today + dt.timedelta(days=rng.choice([0, 0, 3, 7, 14]))
    if rng.random() < 0.2:
        follow_up = when.date() + dt.timedelta(days=rng.randint(1, 5))  # may now be overdue
        follow_up = min(follow_up, today - dt.timedelta(days=1)) if follow_up < today else follow_up
    if due == "today":
        follow_up = today
    elif due == "overdue":  # the last contact was yesterday or earlier, so this is 1-3 days late
        follow_up = max(when.date(), today - dt.timedelta(days=3))
    return follow_up


def _demo_plan(svc: CaseService, rng: random.Random, person_id: str, first_day: dt.date) -> None:
    """What matters to the person, their goals and the actions under each."""
    area, words = rng.choice(WHAT_MATTERS)
    assert area in LIFE_AREAS
    svc.record_what_matters(person_id, words, life_area=area, priority=1)
    for text, actions in rng.sample(GOALS, k=rng.randint(1, 3)):
        goal = svc.add_goal(person_id, text, target_on=first_day + dt.timedelta(days=rng.choice([30, 60, 90])))
        for what in actions:
            action = svc.add_action(goal.id, what, who=rng.choice(["person", "link worker"]))
            if rng.random() < 0.4:
                svc.complete_action(action.id)
        svc.update_goal(goal.id, status=rng.choice(["not_started", "in_progress", "in_progress", "achieved"]))


def _demo_onward(
    svc: CaseService,
    rng: random.Random,
    person_id: str,
    first_day: dt.date,
    today: dt.date,
    services: list[CommunityService],
) -> None:
    """Needs, met by a referral to a matching service where one exists, and what came of it."""
    for reason in rng.sample(list(REFERRAL_REASONS), k=rng.randint(0, 2)):
        matching = [s for s in services if reason in s.needs]
        if not (matching and rng.random() < 0.8):
            svc.record_need(person_id, reason, "No suitable local service found", status="unmet")
            continue
        svc.record_need(person_id, reason, "Discussed at visit", status="met")
        service = rng.choice(matching)
        onward = svc.refer_to_service(
            person_id,
            service.id,
            kind=rng.choice(["signposted", "referred", "accompanied"]),
            need=reason,
            made_on=first_day,
        )
        outcome = rng.choice(["pending", "attended", "attended", "waiting", "not_attended", "declined"])
        if outcome != "pending":
            svc.record_onward_outcome(
                onward.id,
                outcome,
                outcome_on=min(today, first_day + dt.timedelta(days=rng.randint(7, 30))),
                first_response_on=min(today, first_day + dt.timedelta(days=rng.randint(1, 14))),
            )


def _demo_outcomes(
    svc: CaseService,
    rng: random.Random,
    person_id: str,
    first_day: dt.date,
    last_day: dt.date,
    *,
    discharged: bool,
) -> None:
    """A baseline of every instrument, and a discharge score for those discharged."""
    for code in ("ONS4", "UCLA3", "SWEMWBS", "HEALTH_USE"):
        instrument = instruments.INSTRUMENTS[code]
        baseline = _responses(instrument, rng, 0.0)
        svc.record_outcome(person_id, code, "baseline", baseline, taken_on=first_day)
        if discharged:
            svc.record_outcome(
                person_id,
                code,
                "discharge",
                _responses(instrument, rng, rng.choice([-0.2, 0.4, 0.8]), baseline),
                taken_on=last_day,
            )
