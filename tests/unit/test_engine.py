"""The pure rules engine: Victims' Code deadlines and trauma-informed choices, no DB, no clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.core.calendar import LONDON, WorkingDayCalendar
from services.core.domain import (
    CaseContext,
    Channel,
    ContactPreference,
    Decision,
    Detail,
    EventFacts,
    Frequency,
    Outcome,
    Person,
    Relationship,
    Role,
    SurvivorContext,
    notification_id,
    safe_channel,
)
from services.core.rendering import render
from services.rules.engine import Engine, recipient_key
from services.rules.ruleset import load_rules
from services.rules.timing import fallback_time, half_window, in_window

CALENDAR = WorkingDayCalendar()
ENGINE = Engine(load_rules(), CALENDAR)
RULES = ENGINE.rules
RULES_VERSION = ENGINE.rules.version

FRIDAY_EVENT = datetime(2026, 11, 20, 14, 5, tzinfo=UTC)
NOW = datetime(2026, 11, 20, 14, 30, tzinfo=UTC)
TODAY = date(2026, 11, 20)
URN = "01AB1234524"

SURVIVOR = Person(1, Role.SURVIVOR)
ADVOCATE = Person(10, Role.ADVOCATE)
SUPERVISOR = Person(20, Role.SUPERVISOR)


def pref(**changes: object) -> ContactPreference:
    base = ContactPreference(
        version=1,
        has_phone=True,
        has_email=True,
        sms_safe=True,
        sms_safe_review_by=TODAY + timedelta(days=180),
        email_safe=True,
        email_safe_review_by=TODAY + timedelta(days=180),
    )
    return replace(base, **changes)


def survivor(
    preference: ContactPreference | None = None,
    *,
    person: Person = SURVIVOR,
    advocate: Person | None = ADVOCATE,
    supervisor: Person | None = None,
    relationship: Relationship = Relationship.VICTIM,
    no_preference: bool = False,
) -> SurvivorContext:
    return SurvivorContext(
        survivor=person,
        relationship=relationship,
        preference=None if no_preference else (preference or pref()),
        advocate=advocate,
        supervisor=supervisor,
    )


def case(*survivors: SurvivorContext, enhanced: bool = True) -> CaseContext:
    return CaseContext(
        case_id=7,
        urn=URN,
        enhanced_rights=enhanced,
        survivors=survivors or (survivor(),),
    )


def event(
    type_: str,
    at: datetime = FRIDAY_EVENT,
    received: datetime | None = None,
    event_id: str = "evt-0001",
    data: dict[str, Any] | None = None,
) -> EventFacts:
    return EventFacts(
        source="police/01",
        event_id=event_id,
        type=type_,
        urn=URN,
        time=at,
        agency_received_at=received,
        data=dict(data or {}),
    )


def decide(ev: EventFacts, ctx: CaseContext, now: datetime = NOW) -> list[Decision]:
    return ENGINE.decide(ev, ctx, now)


def only(decisions: list[Decision], outcome: Outcome, role: Role) -> Decision:
    found = [d for d in decisions if d.outcome is outcome and d.recipient.role is role]
    assert len(found) == 1, decisions
    return found[0]


def london_end_of_day_utc(day: date) -> datetime:
    # Europe/London is on GMT in November/December: 23:59:59 local is 23:59:59 UTC.
    return datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=UTC)


# -- police.crime_recorded --------------------------------------------------------------------


def test_crime_recorded_texts_the_survivor_when_sms_is_safe() -> None:
    decisions = decide(event("police.crime_recorded"), case())
    sent = only(decisions, Outcome.SEND, Role.SURVIVOR)
    assert sent.channel is Channel.SMS
    assert sent.template == "survivor_welcome"
    assert sent.recipient == SURVIVOR
    assert sent.send_at == NOW


def test_crime_recorded_emails_the_advocate_a_new_referral() -> None:
    decisions = decide(event("police.crime_recorded"), case())
    to_advocate = only(decisions, Outcome.SEND, Role.ADVOCATE)
    assert to_advocate.recipient == ADVOCATE
    assert to_advocate.channel is Channel.EMAIL
    assert to_advocate.template == "advocate_new_referral"
    assert to_advocate.survivor_id == SURVIVOR.id


def test_crime_recorded_referral_is_due_two_working_days_later_over_a_weekend() -> None:
    decisions = decide(event("police.crime_recorded"), case())
    assert decisions
    for d in decisions:
        assert d.due_by == datetime(2026, 11, 24, 23, 59, 59, tzinfo=UTC)


def test_crime_recorded_deadline_is_the_same_with_or_without_enhanced_rights() -> None:
    enhanced = decide(event("police.crime_recorded"), case(enhanced=True))
    standard = decide(event("police.crime_recorded"), case(enhanced=False))
    assert {d.due_by for d in enhanced} == {d.due_by for d in standard}


# -- deadlines --------------------------------------------------------------------------------


def test_arrest_with_enhanced_rights_is_due_in_one_working_day() -> None:
    decisions = decide(event("police.suspect_arrested"), case(enhanced=True))
    # Friday 20 November -> Monday 23 November.
    assert {d.due_by for d in decisions} == {london_end_of_day_utc(date(2026, 11, 23))}


def test_arrest_with_standard_rights_is_due_in_five_working_days() -> None:
    decisions = decide(event("police.suspect_arrested"), case(enhanced=False))
    # Friday 20 November -> Friday 27 November.
    assert {d.due_by for d in decisions} == {london_end_of_day_utc(date(2026, 11, 27))}


def test_arrest_sends_the_survivor_a_case_update() -> None:
    sent = only(decide(event("police.suspect_arrested"), case()), Outcome.SEND, Role.SURVIVOR)
    assert sent.template == "survivor_case_update"
    assert sent.channel is Channel.SMS


def test_arrest_also_informs_the_advocate_with_a_case_update() -> None:
    decisions = decide(event("police.suspect_arrested"), case())
    to_advocate = only(decisions, Outcome.SEND, Role.ADVOCATE)
    assert to_advocate.recipient == ADVOCATE
    assert to_advocate.template == "advocate_case_update"
    assert to_advocate.channel is Channel.EMAIL
    assert to_advocate.send_at == NOW
    assert to_advocate.survivor_id == SURVIVOR.id
    assert to_advocate.rule == f"{RULES_VERSION}:police.suspect_arrested.advocate"
    assert to_advocate.related_rule is None and to_advocate.condition is None


def test_receipt_clock_starts_when_the_agency_received_the_verdict() -> None:
    hearing = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)  # Friday
    received = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)  # Tuesday
    decisions = decide(event("court.verdict", at=hearing, received=received), case())
    assert decisions
    # 1 WD after Tuesday's receipt is Wednesday, not Monday (1 WD after the hearing).
    assert {d.due_by for d in decisions} == {london_end_of_day_utc(date(2026, 11, 25))}


def test_receipt_clock_falls_back_to_event_time_without_agency_received_at() -> None:
    hearing = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    decisions = decide(event("court.verdict", at=hearing, received=None), case())
    assert {d.due_by for d in decisions} == {london_end_of_day_utc(date(2026, 11, 23))}


def test_event_clock_ignores_agency_received_at() -> None:
    received = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    decisions = decide(event("police.suspect_arrested", received=received), case())
    assert {d.due_by for d in decisions} == {london_end_of_day_utc(date(2026, 11, 23))}


# -- safe channel or nothing ------------------------------------------------------------------


def test_no_safe_channel_holds_the_survivor_message() -> None:
    unsafe = pref(sms_safe=False, email_safe=False)
    decisions = decide(event("police.suspect_arrested"), case(survivor(unsafe)))
    held = only(decisions, Outcome.HOLD, Role.SURVIVOR)
    assert held.hold_reason == "no_safe_channel"
    assert held.channel is None
    assert held.send_at is None
    assert held.template == "survivor_case_update"
    assert not [d for d in decisions if d.outcome is Outcome.SEND and d.recipient == SURVIVOR]


def test_no_safe_channel_gives_the_advocate_a_task() -> None:
    unsafe = pref(sms_safe=False, email_safe=False)
    decisions = decide(event("police.suspect_arrested"), case(survivor(unsafe)))
    task = only(decisions, Outcome.TASK, Role.ADVOCATE)
    assert task.recipient == ADVOCATE
    assert task.template == "advocate_no_safe_channel"
    assert task.hold_reason == "no_safe_channel"
    assert task.survivor_id == SURVIVOR.id


def test_a_stale_sms_safety_check_counts_as_unsafe() -> None:
    stale = pref(
        sms_safe_review_by=TODAY - timedelta(days=1),
        email_safe=False,
    )
    decisions = decide(event("police.suspect_arrested"), case(survivor(stale)))
    assert only(decisions, Outcome.HOLD, Role.SURVIVOR).hold_reason == "no_safe_channel"


def test_a_stale_email_safety_check_counts_as_unsafe() -> None:
    stale = pref(sms_safe=False, email_safe_review_by=TODAY - timedelta(days=1))
    assert safe_channel(stale, TODAY) is None


def test_a_safety_check_due_for_review_today_still_counts() -> None:
    assert safe_channel(pref(sms_safe_review_by=TODAY), TODAY) is Channel.SMS


def test_sms_marked_safe_without_a_phone_is_not_a_channel() -> None:
    assert safe_channel(pref(has_phone=False, email_safe=False), TODAY) is None


def test_email_is_used_when_only_email_is_safe() -> None:
    email_only = pref(sms_safe=False)
    sent = only(
        decide(event("police.suspect_arrested"), case(survivor(email_only))),
        Outcome.SEND,
        Role.SURVIVOR,
    )
    assert sent.channel is Channel.EMAIL


def test_email_is_used_when_the_sms_check_is_stale() -> None:
    stale_sms = pref(sms_safe_review_by=TODAY - timedelta(days=30))
    sent = only(
        decide(event("police.suspect_arrested"), case(survivor(stale_sms))),
        Outcome.SEND,
        Role.SURVIVOR,
    )
    assert sent.channel is Channel.EMAIL


def test_sms_is_preferred_when_both_channels_are_safe() -> None:
    assert safe_channel(pref(), TODAY) is Channel.SMS


# -- opt-out, missing preferences, missing advocate -------------------------------------------


def test_opted_out_survivor_is_suppressed_and_never_sent_to() -> None:
    decisions = decide(event("police.suspect_arrested"), case(survivor(pref(opted_out=True))))
    suppressed = only(decisions, Outcome.SUPPRESS, Role.SURVIVOR)
    assert suppressed.hold_reason == "opted_out"
    assert suppressed.channel is None
    assert suppressed.send_at is None
    assert not [d for d in decisions if d.recipient == SURVIVOR and d.outcome is Outcome.SEND]


def test_opted_out_survivor_update_goes_to_the_advocate_as_a_task() -> None:
    decisions = decide(event("police.suspect_arrested"), case(survivor(pref(opted_out=True))))
    task = only(decisions, Outcome.TASK, Role.ADVOCATE)
    assert task.template == "advocate_pass_on_update"
    assert task.hold_reason == "opted_out"


def test_opted_out_welcome_is_suppressed_but_the_referral_still_reaches_the_advocate() -> None:
    decisions = decide(event("police.crime_recorded"), case(survivor(pref(opted_out=True))))
    assert only(decisions, Outcome.SEND, Role.ADVOCATE).template == "advocate_new_referral"
    assert not [d for d in decisions if d.recipient == SURVIVOR and d.outcome is Outcome.SEND]


def test_no_preference_at_all_holds_with_no_contact_preferences() -> None:
    decisions = decide(event("police.suspect_arrested"), case(survivor(no_preference=True)))
    held = only(decisions, Outcome.HOLD, Role.SURVIVOR)
    assert held.hold_reason == "no_contact_preferences"
    assert held.channel is None
    task = only(decisions, Outcome.TASK, Role.ADVOCATE)
    assert task.hold_reason == "no_contact_preferences"


def test_no_advocate_and_no_supervisor_escalates() -> None:
    decisions = decide(event("police.crime_recorded"), case(survivor(advocate=None)))
    escalations = [d for d in decisions if d.outcome is Outcome.ESCALATE]
    assert escalations
    assert all(d.hold_reason == "no_advocate" for d in escalations)
    assert not [d for d in decisions if d.recipient.role is not Role.SURVIVOR]


def test_no_advocate_and_no_safe_channel_escalates_instead_of_a_task() -> None:
    ctx = case(survivor(pref(sms_safe=False, email_safe=False), advocate=None))
    decisions = decide(event("police.suspect_arrested"), ctx)
    assert only(decisions, Outcome.HOLD, Role.SURVIVOR).hold_reason == "no_safe_channel"
    # Since vc2021.2 the arrest also informs the advocate: with nobody to inform, both the
    # no-safe-channel task and the case update become escalations.
    escalations = [d for d in decisions if d.outcome is Outcome.ESCALATE]
    assert {d.rule for d in escalations} == {
        f"{RULES_VERSION}:police.suspect_arrested.advocate_task.no_safe_channel",
        f"{RULES_VERSION}:police.suspect_arrested.advocate",
    }
    assert all(d.hold_reason == "no_advocate" for d in escalations)
    assert all(d.recipient == SURVIVOR and d.survivor_id == SURVIVOR.id for d in escalations)
    assert not [d for d in decisions if d.outcome is Outcome.TASK]


def test_a_supervisor_standing_in_gets_the_advocate_task() -> None:
    ctx = case(survivor(pref(opted_out=True), advocate=SUPERVISOR))
    task = only(decide(event("police.suspect_arrested"), ctx), Outcome.TASK, Role.SUPERVISOR)
    assert task.recipient == SUPERVISOR


# -- duties without a message rule ------------------------------------------------------------

# Since vc2021.2 every event type has notify entries; a rule set where one has none still makes
# the advocate pass the update on, never silence.
WITHOUT_NOTIFY = Engine(
    replace(
        RULES,
        events={
            etype: replace(rule, notify=()) if etype == "police.suspect_charged" else rule
            for etype, rule in RULES.events.items()
        },
    ),
    CALENDAR,
)


def test_every_packaged_event_type_has_notify_entries() -> None:
    assert all(rule.notify for rule in RULES.events.values())


@pytest.mark.parametrize(
    "etype",
    sorted(t for t, rule in WITHOUT_NOTIFY.rules.events.items() if not rule.notify),
)
def test_a_duty_without_notify_entries_becomes_an_advocate_pass_on_task(etype: str) -> None:
    decisions = WITHOUT_NOTIFY.decide(event(etype, received=FRIDAY_EVENT), case(), NOW)
    assert len(decisions) == 1
    task = decisions[0]
    assert task.outcome is Outcome.TASK
    assert task.recipient == ADVOCATE
    assert task.template == "advocate_pass_on_update"
    assert task.hold_reason == "pass_on"
    assert task.rule == f"{RULES_VERSION}:{etype}.advocate_task.pass_on"


def test_a_duty_without_notify_entries_and_no_advocate_escalates() -> None:
    ctx = case(survivor(advocate=None))
    decisions = WITHOUT_NOTIFY.decide(event("police.suspect_charged"), ctx, NOW)
    assert [(d.outcome, d.hold_reason) for d in decisions] == [(Outcome.ESCALATE, "no_advocate")]


def test_suspect_charged_is_a_normal_update_never_dropped() -> None:
    # vc2021.1 passed a charge on through the advocate; vc2021.2 tells both directly.
    decisions = decide(event("police.suspect_charged"), case(enhanced=False))
    assert sorted((d.outcome, d.recipient.role, d.template) for d in decisions) == sorted(
        [
            (Outcome.SEND, Role.ADVOCATE, "advocate_case_update"),
            (Outcome.SEND, Role.SURVIVOR, "survivor_case_update"),
        ]
    )
    assert {d.due_by for d in decisions} == {london_end_of_day_utc(date(2026, 11, 27))}
    sent = only(decisions, Outcome.SEND, Role.SURVIVOR)
    assert (sent.channel, sent.send_at, sent.hold_reason) == (Channel.SMS, NOW, None)


def test_an_event_type_with_no_rule_makes_no_decision() -> None:
    assert decide(event("police.not_a_real_type"), case()) == []


# -- several survivors, rule names ------------------------------------------------------------


def test_each_survivor_on_a_case_gets_their_own_decisions() -> None:
    second = Person(2, Role.SURVIVOR)
    third = Person(3, Role.SURVIVOR)
    ctx = case(
        survivor(),
        survivor(pref(sms_safe=False), person=second),
        survivor(pref(opted_out=True), person=third),
    )
    decisions = decide(event("police.suspect_arrested"), ctx)
    assert {d.survivor_id for d in decisions} == {1, 2, 3}
    by_survivor = {
        sid: [d for d in decisions if d.survivor_id == sid and d.recipient.role is Role.SURVIVOR]
        for sid in (1, 2, 3)
    }
    assert [(d.outcome, d.channel) for d in by_survivor[1]] == [(Outcome.SEND, Channel.SMS)]
    assert [(d.outcome, d.channel) for d in by_survivor[2]] == [(Outcome.SEND, Channel.EMAIL)]
    assert [d.outcome for d in by_survivor[3]] == [Outcome.SUPPRESS]
    for d in decisions:
        if d.recipient.role is Role.SURVIVOR:
            assert d.recipient.id == d.survivor_id


def test_one_advocate_for_two_survivors_gets_one_referral_per_survivor() -> None:
    second = Person(2, Role.SURVIVOR)
    decisions = decide(event("police.crime_recorded"), case(survivor(), survivor(person=second)))
    referrals = [d for d in decisions if d.template == "advocate_new_referral"]
    assert sorted(d.survivor_id for d in referrals) == [1, 2]
    assert len({recipient_key(d) for d in referrals}) == 2


@pytest.mark.parametrize("etype", sorted(ENGINE.rules.events))
def test_every_decision_names_a_rule_of_this_rules_version(etype: str) -> None:
    ctx = case(
        survivor(),
        survivor(pref(opted_out=True), person=Person(2, Role.SURVIVOR)),
        survivor(no_preference=True, person=Person(3, Role.SURVIVOR), advocate=None),
    )
    decisions = decide(event(etype, received=FRIDAY_EVENT), ctx)
    assert decisions
    assert RULES_VERSION == "vc2021.2"
    assert all(d.rule.startswith("vc2021.2:") for d in decisions)


def test_the_survivor_language_and_detail_travel_with_the_decision() -> None:
    chosen = pref(language="cy", detail=Detail.DETAILED)
    sent = only(
        decide(event("police.suspect_arrested"), case(survivor(chosen))),
        Outcome.SEND,
        Role.SURVIVOR,
    )
    assert sent.language == "cy"
    assert sent.detail is Detail.DETAILED


def test_decide_rejects_a_naive_now() -> None:
    with pytest.raises(ValueError):
        decide(event("police.suspect_arrested"), case(), now=datetime(2026, 11, 20, 14, 30))


# -- properties -------------------------------------------------------------------------------

EVENT_TIMES = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
)
PREFERENCES = st.one_of(
    st.none(),
    st.builds(
        pref,
        sms_safe=st.booleans(),
        email_safe=st.booleans(),
        has_phone=st.booleans(),
        has_email=st.booleans(),
        opted_out=st.booleans(),
        sms_safe_review_by=st.one_of(st.none(), st.dates(date(2024, 1, 1), date(2032, 1, 1))),
    ),
)
ADVOCATES = st.sampled_from([ADVOCATE, SUPERVISOR, None])


def _context(enhanced: bool, prefs: list[ContactPreference | None], advocate: Person | None):
    survivors = tuple(
        SurvivorContext(
            survivor=Person(i + 1, Role.SURVIVOR),
            relationship=Relationship.VICTIM,
            preference=p,
            advocate=advocate,
        )
        for i, p in enumerate(prefs)
    )
    return case(*survivors, enhanced=enhanced)


@settings(max_examples=150, deadline=None)
@given(
    etype=st.sampled_from(sorted(ENGINE.rules.events)),
    at=EVENT_TIMES,
    delay=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=10)),
    enhanced=st.booleans(),
    prefs=st.lists(PREFERENCES, min_size=1, max_size=3),
    advocate=ADVOCATES,
)
def test_deadlines_never_precede_the_event_and_nothing_is_scheduled_before_now(
    etype: str,
    at: datetime,
    delay: timedelta,
    enhanced: bool,
    prefs: list[ContactPreference | None],
    advocate: Person | None,
) -> None:
    # vc2021.1 sent everything at `now`; since vc2021.2 survivor messages wait for their safe
    # window and distressing news is held until a fallback time. Advocates are told at `now`.
    now = at + delay
    decisions = ENGINE.decide(
        event(etype, at=at, received=at + delay / 2), _context(enhanced, prefs, advocate), now
    )
    assert decisions
    for d in decisions:
        assert d.due_by is not None
        assert d.due_by >= at
        if d.outcome in (Outcome.SUPPRESS, Outcome.ESCALATE):
            assert d.send_at is None
        if d.recipient.role is not Role.SURVIVOR and d.outcome is Outcome.SEND:
            assert d.send_at == now
        if d.outcome is Outcome.TASK and d.condition is None:
            assert d.send_at == now
        if d.outcome is Outcome.SEND:
            assert d.send_at is not None and d.send_at >= now
        if d.outcome is Outcome.HOLD and d.send_at is not None:
            # Held news goes by itself no earlier than now, unless the deadline has passed.
            assert d.send_at >= min(now, d.due_by)
        if d.recipient.role is Role.SURVIVOR:
            assert d.outcome is not Outcome.TASK


def _ids(ev: EventFacts, decisions: list[Decision]) -> list[str]:
    return [notification_id(ev.source, ev.event_id, recipient_key(d), d.rule) for d in decisions]


@settings(max_examples=150, deadline=None)
@given(
    etype=st.sampled_from(sorted(ENGINE.rules.events)),
    at=EVENT_TIMES,
    enhanced=st.booleans(),
    prefs=st.lists(PREFERENCES, min_size=1, max_size=3),
    advocate=ADVOCATES,
)
def test_notification_ids_are_distinct_within_an_event_and_stable_across_calls(
    etype: str,
    at: datetime,
    enhanced: bool,
    prefs: list[ContactPreference | None],
    advocate: Person | None,
) -> None:
    ev = event(etype, at=at, received=at)
    ctx = _context(enhanced, prefs, advocate)
    now = at + timedelta(minutes=5)
    first = ENGINE.decide(ev, ctx, now)
    again = ENGINE.decide(ev, ctx, now)
    assert first == again
    ids = _ids(ev, first)
    assert len(set(ids)) == len(ids)
    assert ids == _ids(ev, again)


def test_notification_ids_differ_between_events() -> None:
    ctx = case()
    one = event("police.suspect_arrested", event_id="evt-0001")
    two = event("police.suspect_arrested", event_id="evt-0002")
    assert not set(_ids(one, decide(one, ctx))) & set(_ids(two, decide(two, ctx)))


# == vc2021.2: distressing outcomes, frequency, safe windows, deadlines ========================

EVENT_TYPES = sorted(RULES.events)
ALWAYS_DISTRESSING = sorted(t for t, r in RULES.events.items() if r.sensitivity == "distressing")
# Outcomes distressing unless their data says otherwise (`distressing_unless` in the rules data).
CONDITIONAL = sorted(t for t, r in RULES.events.items() if r.distressing_unless)
# The endings victims-code.md names as distressing, by event type; any value the rules data does
# not list as routine is distressing too (tried as "an_unlisted_value").
DOCUMENTED_DISTRESSING_VALUES = {
    "cps.charging_decision": ("no_charge",),
    "court.verdict": ("not_guilty", "mixed"),
    "police.vrr_outcome": ("not_upheld",),
    "cps.vrr_outcome": ("not_upheld",),
}


def distressing_cases() -> list[Any]:
    """Every (event type, data) the rules data makes distressing, read from the rules data."""
    cases = [pytest.param(t, {}, id=t) for t in ALWAYS_DISTRESSING]
    for etype in CONDITIONAL:
        for name, routine in RULES.events[etype].distressing_unless:
            values = (*DOCUMENTED_DISTRESSING_VALUES.get(etype, ()), "an_unlisted_value")
            cases += [
                pytest.param(etype, {name: v}, id=f"{etype}-{name}={v}")
                for v in values
                if v not in routine
            ]
            if None not in routine:
                cases.append(pytest.param(etype, {}, id=f"{etype}-{name}-missing"))
    return cases


def routine_cases() -> list[Any]:
    """Every (event type, data) of a conditional outcome that the rules data says is not."""
    cases = []
    for etype in CONDITIONAL:
        unless = RULES.events[etype].distressing_unless
        for name, routine in unless:
            for v in routine:
                # Every other field must be routine too: give each its first routine value.
                data = {n: r[0] for n, r in unless if r[0] is not None}
                if v is None:
                    data.pop(name, None)
                else:
                    data[name] = v
                cases.append(pytest.param(etype, data, id=f"{etype}-{name}={v}"))
    return cases


def other_survivor_template(etype: str) -> str:
    return next(n.template for n in RULES.events[etype].notify if n.to == "survivor")


def other_advocate_template(etype: str) -> str:
    return next(n.template for n in RULES.events[etype].notify if n.to == "advocate")


def clock_start_of(etype: str, ev: EventFacts) -> datetime:
    if RULES.events[etype].clock_from == "receipt" and ev.agency_received_at is not None:
        return ev.agency_received_at
    return ev.time


def noon_london(day: date) -> datetime:
    return datetime.combine(day, time(12, 0), tzinfo=LONDON).astimezone(UTC)


def of_role(decisions: list[Decision], role: Role) -> list[Decision]:
    return [d for d in decisions if d.recipient.role is role]


# -- distressing outcomes: the advocate first --------------------------------------------------


@pytest.mark.parametrize(("etype", "data"), distressing_cases())
def test_distressing_news_is_told_by_the_advocate_first(etype: str, data: dict[str, Any]) -> None:
    ev = event(etype, received=FRIDAY_EVENT, data=data)
    ctx = case(survivor(pref(detail=Detail.DETAILED), supervisor=SUPERVISOR))
    decisions = decide(ev, ctx)

    assert not [d for d in of_role(decisions, Role.SURVIVOR) if d.outcome is Outcome.SEND]
    held = only(decisions, Outcome.HOLD, Role.SURVIVOR)
    assert held.hold_reason == "advocate_first"
    assert held.template == RULES.distressing.survivor == "survivor_get_in_touch"
    assert held.channel is Channel.SMS
    # Detail-free whatever the survivor chose.
    assert held.detail is Detail.DISCREET
    assert held.rule == f"{RULES_VERSION}:{etype}.survivor"
    # The fallback: noon London time on the deadline's day, inside the 09:00-20:00 window.
    assert held.due_by is not None
    assert held.send_at == fallback_time(held.due_by, NOW, ctx.survivors[0].preference, CALENDAR)
    assert held.send_at == noon_london(held.due_by.astimezone(LONDON).date())
    assert NOW < held.send_at <= held.due_by

    told = only(decisions, Outcome.SEND, Role.ADVOCATE)
    assert told.recipient == ADVOCATE
    assert told.template == RULES.distressing.advocate == "advocate_tell_first"
    assert told.channel is Channel.EMAIL
    assert told.send_at == NOW
    assert told.related_rule == held.rule
    assert told.due_by == held.due_by

    alert = only(decisions, Outcome.TASK, Role.SUPERVISOR)
    assert alert.recipient == SUPERVISOR
    assert alert.template == RULES.distressing.supervisor == "supervisor_hold_alert"
    assert alert.channel is Channel.EMAIL
    assert alert.condition == "while_held"
    assert alert.related_rule == held.rule
    assert alert.hold_reason
    assert alert.survivor_id == SURVIVOR.id
    assert alert.send_at == half_window(clock_start_of(etype, ev), held.due_by, NOW)
    assert NOW <= alert.send_at <= held.send_at
    assert alert.due_by == held.due_by
    assert len(decisions) == 3


@pytest.mark.parametrize(("etype", "data"), distressing_cases())
def test_distressing_news_without_a_supervisor_has_no_alert(
    etype: str, data: dict[str, Any]
) -> None:
    decisions = decide(event(etype, received=FRIDAY_EVENT, data=data), case())
    assert not [d for d in decisions if d.outcome is Outcome.TASK]
    assert only(decisions, Outcome.HOLD, Role.SURVIVOR).hold_reason == "advocate_first"
    assert only(decisions, Outcome.SEND, Role.ADVOCATE).template == "advocate_tell_first"


def test_a_supervisor_standing_in_as_advocate_is_not_alerted_about_their_own_hold() -> None:
    ctx = case(survivor(advocate=SUPERVISOR, supervisor=SUPERVISOR))
    decisions = decide(event("police.no_further_action"), ctx)
    told = only(decisions, Outcome.SEND, Role.SUPERVISOR)
    assert told.template == "advocate_tell_first"
    assert not [d for d in decisions if d.outcome is Outcome.TASK]


def test_distressing_news_with_no_advocate_escalates_and_still_holds() -> None:
    ctx = case(survivor(advocate=None, supervisor=SUPERVISOR))
    decisions = decide(event("police.no_further_action"), ctx)
    assert only(decisions, Outcome.HOLD, Role.SURVIVOR).hold_reason == "advocate_first"
    escalated = only(decisions, Outcome.ESCALATE, Role.SURVIVOR)
    assert escalated.hold_reason == "no_advocate"
    # The supervisor is still alerted at half the window.
    assert only(decisions, Outcome.TASK, Role.SUPERVISOR).condition == "while_held"


@pytest.mark.parametrize(("etype", "data"), distressing_cases())
def test_distressing_news_for_an_email_only_survivor_is_held_on_email(
    etype: str, data: dict[str, Any]
) -> None:
    decisions = decide(
        event(etype, received=FRIDAY_EVENT, data=data), case(survivor(pref(sms_safe=False)))
    )
    held = only(decisions, Outcome.HOLD, Role.SURVIVOR)
    assert held.channel is Channel.EMAIL
    assert held.template == "survivor_get_in_touch"


@pytest.mark.parametrize(
    ("etype", "data", "distressing"),
    [
        ("cps.charging_decision", {"decision": "no_charge"}, True),
        ("cps.charging_decision", {"decision": "charge"}, False),
        ("cps.charging_decision", {"decision": "further_evidence_requested"}, False),
        ("court.verdict", {"verdict": "not_guilty"}, True),
        ("court.verdict", {"verdict": "mixed"}, True),
        ("court.verdict", {"verdict": "guilty"}, False),
        ("police.vrr_outcome", {"outcome": "not_upheld"}, True),
        ("police.vrr_outcome", {"outcome": "upheld"}, False),
        ("cps.vrr_outcome", {"outcome": "not_upheld"}, True),
        ("cps.vrr_outcome", {"outcome": "upheld"}, False),
        ("court.appeal", {"outcome": "sentence_reduced"}, True),
        ("court.appeal", {"outcome": "conviction_quashed"}, True),
        # Every appeal goes through the advocate: good news depends on who appealed.
        ("court.appeal", {"outcome": "dismissed"}, True),
        ("court.appeal", {"outcome": "sentence_increased"}, True),
        # Unexpected or missing endings fail safe: the advocate first.
        ("court.verdict", {}, True),
        ("court.verdict", {"verdict": "Not Guilty"}, True),
        ("cps.charging_decision", {}, True),
        ("police.vrr_outcome", {}, True),
        ("court.appeal", {}, True),
    ],
)
def test_a_conditional_outcome_switches_on_its_data(
    etype: str, data: dict[str, Any], distressing: bool
) -> None:
    ctx = case(survivor(supervisor=SUPERVISOR))
    decisions = decide(event(etype, received=FRIDAY_EVENT, data=data), ctx)
    to_survivor = of_role(decisions, Role.SURVIVOR)
    to_advocate = only(decisions, Outcome.SEND, Role.ADVOCATE)
    if distressing:
        assert [(d.outcome, d.hold_reason) for d in to_survivor] == [
            (Outcome.HOLD, "advocate_first")
        ]
        assert to_advocate.template == "advocate_tell_first"
        assert to_advocate.related_rule == to_survivor[0].rule
        assert only(decisions, Outcome.TASK, Role.SUPERVISOR).related_rule == to_survivor[0].rule
    else:
        assert [(d.outcome, d.template, d.send_at) for d in to_survivor] == [
            (Outcome.SEND, other_survivor_template(etype), NOW)
        ]
        assert to_advocate.template == other_advocate_template(etype)
        assert to_advocate.related_rule is None
        assert not of_role(decisions, Role.SUPERVISOR)


@pytest.mark.parametrize(
    "etype", sorted(set(EVENT_TYPES) - set(ALWAYS_DISTRESSING) - set(CONDITIONAL))
)
def test_an_outcome_that_is_never_distressing_is_sent_directly(etype: str) -> None:
    ctx = case(survivor(supervisor=SUPERVISOR))
    decisions = decide(event(etype, received=FRIDAY_EVENT), ctx)
    sent = only(decisions, Outcome.SEND, Role.SURVIVOR)
    assert sent.template == other_survivor_template(etype)
    assert sent.hold_reason is None
    assert only(decisions, Outcome.SEND, Role.ADVOCATE).template == other_advocate_template(etype)
    assert not [d for d in decisions if d.outcome in (Outcome.HOLD, Outcome.TASK)]


@pytest.mark.parametrize(("etype", "data"), routine_cases())
def test_a_conditional_outcome_listed_as_routine_is_sent_directly(
    etype: str, data: dict[str, Any]
) -> None:
    decisions = decide(event(etype, received=FRIDAY_EVENT, data=data), case())
    assert only(decisions, Outcome.SEND, Role.SURVIVOR).template == other_survivor_template(etype)
    assert only(decisions, Outcome.SEND, Role.ADVOCATE).template == other_advocate_template(etype)


def test_police_nfa_on_a_friday_afternoon_is_held_until_monday_noon() -> None:
    # Enhanced rights: 1 WD from Friday is Monday. The survivor's fallback is Monday 12:00,
    # the supervisor's alert halfway from Friday 14:05 to Monday 23:59:59.
    ctx = case(survivor(supervisor=SUPERVISOR))
    decisions = decide(event("police.no_further_action"), ctx)
    held = only(decisions, Outcome.HOLD, Role.SURVIVOR)
    assert held.due_by == datetime(2026, 11, 23, 23, 59, 59, tzinfo=UTC)
    assert held.send_at == datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    alert = only(decisions, Outcome.TASK, Role.SUPERVISOR)
    assert alert.send_at == (FRIDAY_EVENT + (held.due_by - FRIDAY_EVENT) / 2).replace(microsecond=0)


def test_distressing_news_on_christmas_eve_is_held_until_the_next_working_day() -> None:
    # Thursday 24 December 2026: 1 WD later is Tuesday 29 December (25 and 28 are bank holidays).
    christmas_eve = datetime(2026, 12, 24, 10, 0, tzinfo=UTC)
    decisions = decide(
        event("probation.released", at=christmas_eve),
        case(),
        now=christmas_eve + timedelta(minutes=5),
    )
    held = only(decisions, Outcome.HOLD, Role.SURVIVOR)
    assert held.due_by == datetime(2026, 12, 29, 23, 59, 59, tzinfo=UTC)
    assert held.send_at == datetime(2026, 12, 29, 12, 0, tzinfo=UTC)


def test_distressing_news_due_on_christmas_eve_falls_back_before_two_pm() -> None:
    # An NFA on Wednesday 23 December: due Thursday 24 December, the last working day before
    # Christmas. The fallback is at noon, before support services close.
    wednesday = datetime(2026, 12, 23, 16, 0, tzinfo=UTC)
    decisions = decide(
        event("police.no_further_action", at=wednesday),
        case(),
        now=wednesday + timedelta(minutes=5),
    )
    held = only(decisions, Outcome.HOLD, Role.SURVIVOR)
    assert held.due_by == datetime(2026, 12, 24, 23, 59, 59, tzinfo=UTC)
    assert held.send_at == datetime(2026, 12, 24, 12, 0, tzinfo=UTC)
    assert held.send_at.astimezone(LONDON).time() < time(14, 0)


def test_distressing_news_processed_on_the_deadline_afternoon_falls_back_at_once() -> None:
    # The event is already on its deadline day past noon: the deadline forces the fallback now.
    monday = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    late = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
    decisions = decide(event("police.no_further_action", at=monday), case(), now=late)
    held = only(decisions, Outcome.HOLD, Role.SURVIVOR)
    assert held.send_at == late
    assert only(decisions, Outcome.SEND, Role.ADVOCATE).send_at == late


# -- frequency: all / key stages / none -------------------------------------------------------


@pytest.mark.parametrize("etype", EVENT_TYPES)
def test_frequency_none_suppresses_every_survivor_message(etype: str) -> None:
    chosen = pref(frequency=Frequency.NONE)
    ev = event(etype, received=FRIDAY_EVENT, data={"decision": "no_charge"})
    decisions = decide(ev, case(survivor(chosen, supervisor=SUPERVISOR)))
    to_survivor = of_role(decisions, Role.SURVIVOR)
    assert [(d.outcome, d.hold_reason, d.channel, d.send_at) for d in to_survivor] == [
        (Outcome.SUPPRESS, "frequency_none", None, None)
    ]
    # The advocate is still told; nothing is held, so there is no supervisor alert.
    assert only(decisions, Outcome.SEND, Role.ADVOCATE).send_at == NOW
    assert not of_role(decisions, Role.SUPERVISOR)


@pytest.mark.parametrize("etype", EVENT_TYPES)
def test_key_stages_only_suppresses_what_is_not_a_key_stage(etype: str) -> None:
    chosen = pref(frequency=Frequency.KEY_STAGES)
    decisions = decide(event(etype, received=FRIDAY_EVENT), case(survivor(chosen)))
    to_survivor = of_role(decisions, Role.SURVIVOR)
    if RULES.events[etype].key_stage:
        assert len(to_survivor) == 1
        assert to_survivor[0].outcome in (Outcome.SEND, Outcome.HOLD)
        assert to_survivor[0].channel is Channel.SMS
    else:
        assert [(d.outcome, d.hold_reason) for d in to_survivor] == [
            (Outcome.SUPPRESS, "not_a_key_stage")
        ]
    assert only(decisions, Outcome.SEND, Role.ADVOCATE)


def test_an_arrest_is_not_a_key_stage_but_a_charge_is() -> None:
    chosen = pref(frequency=Frequency.KEY_STAGES)
    arrest = decide(event("police.suspect_arrested"), case(survivor(chosen)))
    assert only(arrest, Outcome.SUPPRESS, Role.SURVIVOR).hold_reason == "not_a_key_stage"
    charge = decide(event("police.suspect_charged"), case(survivor(chosen)))
    assert only(charge, Outcome.SEND, Role.SURVIVOR).template == "survivor_case_update"


@pytest.mark.parametrize(("etype", "data"), distressing_cases())
def test_a_key_stages_survivor_still_hears_distressing_news_through_the_advocate(
    etype: str, data: dict[str, Any]
) -> None:
    chosen = pref(frequency=Frequency.KEY_STAGES)
    decisions = decide(event(etype, received=FRIDAY_EVENT, data=data), case(survivor(chosen)))
    assert only(decisions, Outcome.HOLD, Role.SURVIVOR).hold_reason == "advocate_first"


def test_opting_out_wins_over_frequency() -> None:
    chosen = pref(opted_out=True, frequency=Frequency.NONE)
    decisions = decide(event("police.suspect_charged"), case(survivor(chosen)))
    assert only(decisions, Outcome.SUPPRESS, Role.SURVIVOR).hold_reason == "opted_out"
    assert only(decisions, Outcome.TASK, Role.ADVOCATE).hold_reason == "opted_out"


def test_frequency_is_checked_before_the_channel() -> None:
    chosen = pref(frequency=Frequency.NONE, sms_safe=False, email_safe=False)
    decisions = decide(event("police.suspect_charged"), case(survivor(chosen)))
    assert only(decisions, Outcome.SUPPRESS, Role.SURVIVOR).hold_reason == "frequency_none"
    assert not [d for d in decisions if d.outcome is Outcome.TASK]


# -- safe windows ------------------------------------------------------------------------------


def test_an_update_at_three_in_the_morning_waits_for_nine() -> None:
    night = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)  # Tuesday 03:00 GMT
    decisions = decide(event("police.suspect_charged", at=night), case(), now=night)
    sent = only(decisions, Outcome.SEND, Role.SURVIVOR)
    assert sent.send_at == datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    assert sent.hold_reason is None
    # Advocates are told at once.
    assert only(decisions, Outcome.SEND, Role.ADVOCATE).send_at == night


def test_an_update_at_nine_in_the_evening_waits_for_the_next_morning() -> None:
    evening = datetime(2026, 11, 24, 21, 0, tzinfo=UTC)
    sent = only(
        decide(event("police.suspect_charged", at=evening), case(), now=evening),
        Outcome.SEND,
        Role.SURVIVOR,
    )
    assert sent.send_at == datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def test_an_update_waits_for_a_new_york_survivors_morning() -> None:
    at = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)  # 07:00 in New York
    chosen = pref(timezone="America/New_York")
    sent = only(
        decide(event("police.suspect_charged", at=at), case(survivor(chosen)), now=at),
        Outcome.SEND,
        Role.SURVIVOR,
    )
    assert sent.send_at == datetime(2026, 11, 24, 14, 0, tzinfo=UTC)


def test_an_update_for_a_night_worker_goes_in_their_window_across_midnight() -> None:
    at = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    chosen = pref(safe_window_start=time(22, 0), safe_window_end=time(6, 0))
    sent = only(
        decide(event("police.suspect_charged", at=at), case(survivor(chosen)), now=at),
        Outcome.SEND,
        Role.SURVIVOR,
    )
    assert sent.send_at == datetime(2026, 11, 24, 22, 0, tzinfo=UTC)


def test_the_deadline_wins_over_the_safe_window() -> None:
    # Monday's arrest (enhanced: due Tuesday 23:59:59) processed at 21:30 on Tuesday: waiting
    # until Wednesday 09:00 would miss the deadline, so it goes now and says why.
    monday = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    late = datetime(2026, 11, 24, 21, 30, tzinfo=UTC)
    sent = only(
        decide(event("police.suspect_charged", at=monday), case(), now=late),
        Outcome.SEND,
        Role.SURVIVOR,
    )
    assert sent.send_at == late
    assert sent.hold_reason == "deadline_before_safe_window"
    assert sent.due_by == datetime(2026, 11, 24, 23, 59, 59, tzinfo=UTC)


def test_with_standard_rights_the_same_update_waits_for_the_window() -> None:
    monday = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    late = datetime(2026, 11, 24, 21, 30, tzinfo=UTC)
    sent = only(
        decide(event("police.suspect_charged", at=monday), case(enhanced=False), now=late),
        Outcome.SEND,
        Role.SURVIVOR,
    )
    assert sent.send_at == datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    assert sent.hold_reason is None


def test_an_overdue_update_at_night_still_waits_for_the_window() -> None:
    # Already late: waiting for 09:00 costs no deadline, so quiet hours apply (rule 14).
    monday = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # due Tuesday 23:59:59
    night = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)  # Wednesday 03:00, already overdue
    sent = only(
        decide(event("police.suspect_charged", at=monday), case(), now=night),
        Outcome.SEND,
        Role.SURVIVOR,
    )
    assert sent.send_at == datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    assert in_window(sent.send_at.astimezone(LONDON).time(), time(9, 0), time(20, 0))
    assert sent.hold_reason == "deadline_already_passed"


def test_an_overdue_update_in_the_window_goes_at_once_and_says_it_is_late() -> None:
    monday = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    later = datetime(2026, 11, 25, 11, 0, tzinfo=UTC)
    sent = only(
        decide(event("police.suspect_charged", at=monday), case(), now=later),
        Outcome.SEND,
        Role.SURVIVOR,
    )
    assert (sent.send_at, sent.hold_reason) == (later, "deadline_already_passed")


def test_overdue_distressing_news_falls_back_at_the_next_safe_time() -> None:
    monday = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # due Tuesday 23:59:59
    night = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
    decisions = decide(event("police.no_further_action", at=monday), case(), now=night)
    held = only(decisions, Outcome.HOLD, Role.SURVIVOR)
    assert held.send_at == datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    assert only(decisions, Outcome.SEND, Role.ADVOCATE).send_at == night


# -- deadlines for every event type against the rules data ------------------------------------

# England-and-Wales bank holidays of 2026 and 2027 (gov.uk), written out so that the expected
# deadlines do not come from the calendar under test.
BANK_HOLIDAYS = frozenset(
    {
        date(2026, 1, 1),
        date(2026, 4, 3),
        date(2026, 4, 6),
        date(2026, 5, 4),
        date(2026, 5, 25),
        date(2026, 8, 31),
        date(2026, 12, 25),
        date(2026, 12, 28),
        date(2027, 1, 1),
        date(2027, 3, 26),
        date(2027, 3, 29),
        date(2027, 5, 3),
        date(2027, 5, 31),
        date(2027, 8, 30),
        date(2027, 12, 27),
        date(2027, 12, 28),
    }
)


def nth_working_day_after(day: date, n: int) -> date:
    while n:
        day += timedelta(days=1)
        if day.weekday() < 5 and day not in BANK_HOLIDAYS:
            n -= 1
    return day


def code_deadline(clock_start: datetime, working_days: int) -> datetime:
    """23:59:59 London time on the Nth working day after the London day the clock started."""
    day = nth_working_day_after(clock_start.astimezone(LONDON).date(), working_days)
    return datetime.combine(day, time(23, 59, 59), tzinfo=LONDON).astimezone(UTC)


SCENARIOS = {
    # Friday 19:30 GMT.
    "friday-evening": datetime(2026, 11, 20, 19, 30, tzinfo=UTC),
    # Thursday 23:30 UTC is Friday 00:30 BST: the London day is Friday.
    "thursday-night-utc-is-friday-in-london": datetime(2026, 6, 18, 23, 30, tzinfo=UTC),
    "saturday": datetime(2026, 11, 21, 10, 0, tzinfo=UTC),
    "christmas-eve-2026": datetime(2026, 12, 24, 10, 0, tzinfo=UTC),
    "christmas-day-2026": datetime(2026, 12, 25, 10, 0, tzinfo=UTC),
    # Thursday before Good Friday 2027; British Summer Time starts on Easter Sunday.
    "easter-2027": datetime(2027, 3, 25, 16, 0, tzinfo=UTC),
    # Friday 23:30 BST before the clocks go back on Sunday 25 October 2026.
    "before-the-clocks-go-back": datetime(2026, 10, 23, 22, 30, tzinfo=UTC),
    # Sunday 00:30 BST, 25 October 2026, half an hour before they go back.
    "the-night-the-clocks-go-back": datetime(2026, 10, 24, 23, 30, tzinfo=UTC),
    # Friday 18:00 GMT before the clocks go forward on Sunday 29 March 2026.
    "before-the-clocks-go-forward": datetime(2026, 3, 27, 18, 0, tzinfo=UTC),
}


@pytest.mark.parametrize(
    ("scenario", "working_days", "expected"),
    [
        ("friday-evening", 1, datetime(2026, 11, 23, 23, 59, 59, tzinfo=UTC)),
        ("friday-evening", 5, datetime(2026, 11, 27, 23, 59, 59, tzinfo=UTC)),
        ("friday-evening", 10, datetime(2026, 12, 4, 23, 59, 59, tzinfo=UTC)),
        (
            "thursday-night-utc-is-friday-in-london",
            1,
            datetime(2026, 6, 22, 22, 59, 59, tzinfo=UTC),
        ),
        ("saturday", 1, datetime(2026, 11, 23, 23, 59, 59, tzinfo=UTC)),
        ("saturday", 2, datetime(2026, 11, 24, 23, 59, 59, tzinfo=UTC)),
        ("christmas-eve-2026", 1, datetime(2026, 12, 29, 23, 59, 59, tzinfo=UTC)),
        ("christmas-eve-2026", 2, datetime(2026, 12, 30, 23, 59, 59, tzinfo=UTC)),
        ("christmas-eve-2026", 5, datetime(2027, 1, 5, 23, 59, 59, tzinfo=UTC)),
        ("christmas-day-2026", 1, datetime(2026, 12, 29, 23, 59, 59, tzinfo=UTC)),
        ("easter-2027", 1, datetime(2027, 3, 30, 22, 59, 59, tzinfo=UTC)),
        ("easter-2027", 5, datetime(2027, 4, 5, 22, 59, 59, tzinfo=UTC)),
        ("before-the-clocks-go-back", 1, datetime(2026, 10, 26, 23, 59, 59, tzinfo=UTC)),
        ("the-night-the-clocks-go-back", 1, datetime(2026, 10, 26, 23, 59, 59, tzinfo=UTC)),
        ("before-the-clocks-go-forward", 1, datetime(2026, 3, 30, 22, 59, 59, tzinfo=UTC)),
    ],
)
def test_the_expected_deadlines_worked_by_hand(
    scenario: str, working_days: int, expected: datetime
) -> None:
    assert code_deadline(SCENARIOS[scenario], working_days) == expected


@pytest.mark.parametrize("enhanced", [True, False], ids=["enhanced", "standard"])
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize("etype", EVENT_TYPES)
def test_every_event_type_is_due_when_the_rules_data_says(
    etype: str, scenario: str, enhanced: bool
) -> None:
    rule = RULES.events[etype]
    start = SCENARIOS[scenario]
    if rule.clock_from == "receipt":
        # The hearing was days before; the clock starts when the agency received the result.
        ev = event(etype, at=start - timedelta(days=3), received=start)
    else:
        # The clock starts at the event; a later receipt does not move it.
        ev = event(etype, at=start, received=start + timedelta(days=3))
    days = rule.enhanced_wd if enhanced else rule.standard_wd
    ctx = case(survivor(supervisor=SUPERVISOR), enhanced=enhanced)
    decisions = decide(ev, ctx, now=start + timedelta(minutes=1))
    assert decisions
    assert {d.due_by for d in decisions} == {code_deadline(start, days)}


def test_enhanced_rights_are_never_slower_and_usually_faster() -> None:
    start = SCENARIOS["friday-evening"]
    faster = 0
    for etype in EVENT_TYPES:
        ev = event(etype, at=start, received=start)
        now = start + timedelta(minutes=1)
        enhanced = decide(ev, case(enhanced=True), now)[0].due_by
        standard = decide(ev, case(enhanced=False), now)[0].due_by
        assert enhanced is not None and standard is not None
        assert enhanced <= standard
        faster += enhanced < standard
    assert faster >= len(EVENT_TYPES) // 2


# -- several survivors on one case ------------------------------------------------------------

VICTIM = Person(1, Role.SURVIVOR)
PARENT = Person(2, Role.SURVIVOR)
BEREAVED = Person(3, Role.SURVIVOR)
OTHER_ADVOCATE = Person(11, Role.ADVOCATE)


def family_case() -> CaseContext:
    return case(
        survivor(person=VICTIM, supervisor=SUPERVISOR),
        survivor(
            pref(sms_safe=False, timezone="America/New_York"),
            person=PARENT,
            relationship=Relationship.PARENT_GUARDIAN,
            supervisor=SUPERVISOR,
        ),
        survivor(
            pref(frequency=Frequency.KEY_STAGES, detail=Detail.DETAILED),
            person=BEREAVED,
            advocate=OTHER_ADVOCATE,
            relationship=Relationship.BEREAVED_FAMILY,
        ),
    )


def test_a_victim_a_parent_and_bereaved_family_each_get_their_own_update() -> None:
    at = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)  # Tuesday noon GMT, 07:00 in New York
    decisions = decide(event("police.suspect_arrested", at=at), family_case(), now=at)
    by_survivor = {
        sid: [d for d in of_role(decisions, Role.SURVIVOR) if d.survivor_id == sid]
        for sid in (1, 2, 3)
    }
    assert [(d.outcome, d.channel, d.send_at) for d in by_survivor[1]] == [
        (Outcome.SEND, Channel.SMS, at)
    ]
    # The parent in New York: e-mail, at 09:00 their time.
    assert [(d.outcome, d.channel, d.send_at) for d in by_survivor[2]] == [
        (Outcome.SEND, Channel.EMAIL, datetime(2026, 11, 24, 14, 0, tzinfo=UTC))
    ]
    # The bereaved relative chose key stages only: an arrest is not one.
    assert [(d.outcome, d.hold_reason) for d in by_survivor[3]] == [
        (Outcome.SUPPRESS, "not_a_key_stage")
    ]
    advocates = [d for d in decisions if d.recipient.role is Role.ADVOCATE]
    assert sorted((d.recipient.id, d.survivor_id) for d in advocates) == [(10, 1), (10, 2), (11, 3)]
    assert all(d.recipient.id == d.survivor_id for d in of_role(decisions, Role.SURVIVOR))


def test_a_distressing_outcome_is_held_for_each_survivor_separately() -> None:
    at = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)  # Tuesday: due Wednesday 23:59:59
    ev = event("police.no_further_action", at=at)
    decisions = decide(ev, family_case(), now=at)
    held = {d.survivor_id: d for d in decisions if d.outcome is Outcome.HOLD}
    assert set(held) == {1, 2, 3}
    assert all(d.hold_reason == "advocate_first" for d in held.values())
    assert all(d.template == "survivor_get_in_touch" for d in held.values())
    assert all(d.detail is Detail.DISCREET for d in held.values())
    assert held[1].send_at == datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    # The parent in New York: noon London is 07:00 there, so 09:00 EST (14:00 UTC).
    assert held[2].send_at == datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
    assert held[2].channel is Channel.EMAIL
    assert held[3].send_at == datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    told = {d.survivor_id: d for d in decisions if d.template == "advocate_tell_first"}
    assert {sid: d.recipient for sid, d in told.items()} == {
        1: ADVOCATE,
        2: ADVOCATE,
        3: OTHER_ADVOCATE,
    }
    assert all(told[sid].related_rule == held[sid].rule for sid in (1, 2, 3))
    alerts = {d.survivor_id: d for d in decisions if d.outcome is Outcome.TASK}
    # The bereaved relative's context has no supervisor.
    assert set(alerts) == {1, 2}
    ids = [notification_id(ev.source, ev.event_id, recipient_key(d), d.rule) for d in decisions]
    assert len(set(ids)) == len(ids)


# -- what the advocate is told about the survivor's own message ------------------------------

# The notifier tells the advocate what became of the survivor's message (`survivor_message`),
# from the survivor's decision: every survivor decision the engine makes must map to a value
# the advocate templates word correctly.
SURVIVOR_PREFERENCES = [
    pytest.param(pref(), id="sent"),
    pytest.param(pref(opted_out=True), id="opted-out"),
    pytest.param(pref(frequency=Frequency.NONE), id="frequency-none"),
    pytest.param(pref(frequency=Frequency.KEY_STAGES), id="key-stages"),
    pytest.param(pref(sms_safe=False, email_safe=False), id="no-safe-channel"),
    pytest.param(None, id="no-preferences"),
]


def survivor_message(decisions: list[Decision]) -> str:
    from services.core.message_variables import SURVIVOR_MESSAGE

    (own,) = of_role(decisions, Role.SURVIVOR)[:1]
    if own.outcome is Outcome.SEND:
        return "sent"
    return SURVIVOR_MESSAGE[(own.outcome.value, own.hold_reason)]


def _variables(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "hub_name": "the Care Hub",
        "support_line": "you can call a support line free on 0808 000 0000",
        "advocate_name": "Sam Advocate",
        "advocate_phone": "+447700900456",
        "recipient_name": "Sam Advocate",
        "due_by_text": "Monday 23 November",
        "fallback_text": "Monday 23 November at 12:00",
        "case_urn": URN,
        "event_type": "police.suspect_arrested",
        "detail": "discreet",
        "reason": None,
        "vrr": None,
        "survivor_message": "sent",
        "decision_reason": None,
        "meeting_offered": False,
        "letter": "none",
    }
    values.update(changes)
    return values


@pytest.mark.parametrize("chosen", SURVIVOR_PREFERENCES)
@pytest.mark.parametrize("etype", ["police.suspect_arrested", "police.suspect_charged"])
def test_the_advocate_is_told_a_message_goes_only_when_one_does(
    etype: str, chosen: ContactPreference | None
) -> None:
    ctx = case(survivor(chosen, no_preference=chosen is None))
    decisions = decide(event(etype), ctx)
    update = only(decisions, Outcome.SEND, Role.ADVOCATE)
    assert update.template == "advocate_case_update"
    said = survivor_message(decisions)
    body = render(update.template, "email", "en", _variables(survivor_message=said)).body
    sent = any(d.outcome is Outcome.SEND for d in of_role(decisions, Role.SURVIVOR))
    assert ("is being sent a message" in body) is sent


@pytest.mark.parametrize("chosen", SURVIVOR_PREFERENCES)
@pytest.mark.parametrize("etype", ALWAYS_DISTRESSING)
def test_the_advocate_is_promised_a_fallback_only_when_one_is_held(
    etype: str, chosen: ContactPreference | None
) -> None:
    ctx = case(survivor(chosen, no_preference=chosen is None))
    decisions = decide(event(etype, received=FRIDAY_EVENT), ctx)
    told = only(decisions, Outcome.SEND, Role.ADVOCATE)
    assert told.template == "advocate_tell_first"
    held = [d for d in decisions if d.hold_reason == "advocate_first"]
    assert (told.related_rule is not None) is bool(held)
    said = survivor_message(decisions)
    values = _variables(survivor_message=said, event_type=etype)
    body = render(told.template, "email", "en", values).body
    assert ("they will get a short message" in body) is bool(held)


def test_distressing_news_held_for_want_of_a_channel_is_still_detail_free() -> None:
    chosen = pref(sms_safe=False, email_safe=False, detail=Detail.DETAILED)
    ev = event("court.verdict", received=FRIDAY_EVENT, data={"verdict": "not_guilty"})
    held = only(decide(ev, case(survivor(chosen))), Outcome.HOLD, Role.SURVIVOR)
    assert held.hold_reason == "no_safe_channel"
    assert (held.template, held.detail) == ("survivor_get_in_touch", Detail.DISCREET)


@pytest.mark.parametrize(
    ("etype", "data"),
    [
        pytest.param("court.verdict", {}, id="verdict-missing"),
        pytest.param("court.verdict", {"verdict": "Not Guilty"}, id="verdict-spelt-otherwise"),
        pytest.param("cps.charging_decision", {}, id="charging-decision-missing"),
    ],
)
def test_a_conditional_outcome_with_unknown_data_is_not_sent_straight_to_the_survivor(
    etype: str, data: dict[str, Any]
) -> None:
    decisions = decide(event(etype, received=FRIDAY_EVENT, data=data), case())
    assert not [d for d in of_role(decisions, Role.SURVIVOR) if d.outcome is Outcome.SEND]
    assert only(decisions, Outcome.HOLD, Role.SURVIVOR).hold_reason == "advocate_first"


# -- safety checks that lapse before the message goes (see the report) ------------------------


def test_a_message_put_off_to_tomorrow_uses_a_channel_still_safe_tomorrow() -> None:
    evening = datetime(2026, 11, 24, 21, 0, tzinfo=UTC)  # Tuesday, outside the window
    chosen = pref(sms_safe_review_by=date(2026, 11, 24))  # SMS safe until today only
    sent = only(
        decide(event("police.suspect_charged", at=evening), case(survivor(chosen)), now=evening),
        Outcome.SEND,
        Role.SURVIVOR,
    )
    assert sent.send_at == datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    assert safe_channel(chosen, sent.send_at.astimezone(LONDON).date()) is sent.channel


def test_a_held_fallback_uses_a_channel_still_safe_when_it_goes() -> None:
    chosen = pref(sms_safe_review_by=TODAY)  # Friday 20 November only
    decisions = decide(event("police.no_further_action"), case(survivor(chosen)))
    held = only(decisions, Outcome.HOLD, Role.SURVIVOR)
    assert held.send_at == datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # Monday
    assert held.channel is Channel.EMAIL
