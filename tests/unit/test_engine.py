"""The pure rules engine: Victims' Code deadlines and trauma-informed choices, no DB, no clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.core.calendar import WorkingDayCalendar
from services.core.domain import (
    CaseContext,
    Channel,
    ContactPreference,
    Decision,
    Detail,
    EventFacts,
    Outcome,
    Person,
    Relationship,
    Role,
    SurvivorContext,
    notification_id,
)
from services.rules.engine import Engine, recipient_key, safe_channel
from services.rules.ruleset import load_rules

ENGINE = Engine(load_rules(), WorkingDayCalendar())
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
    no_preference: bool = False,
) -> SurvivorContext:
    return SurvivorContext(
        survivor=person,
        relationship=Relationship.VICTIM,
        preference=None if no_preference else (preference or pref()),
        advocate=advocate,
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
) -> EventFacts:
    return EventFacts(
        source="police/01",
        event_id=event_id,
        type=type_,
        urn=URN,
        time=at,
        agency_received_at=received,
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
    assert only(decisions, Outcome.ESCALATE, Role.SURVIVOR).hold_reason == "no_advocate"
    assert not [d for d in decisions if d.outcome is Outcome.TASK]


def test_a_supervisor_standing_in_gets_the_advocate_task() -> None:
    ctx = case(survivor(pref(opted_out=True), advocate=SUPERVISOR))
    task = only(decide(event("police.suspect_arrested"), ctx), Outcome.TASK, Role.SUPERVISOR)
    assert task.recipient == SUPERVISOR


# -- duties without a message rule ------------------------------------------------------------


@pytest.mark.parametrize(
    "etype",
    sorted(t for t, rule in ENGINE.rules.events.items() if not rule.notify),
)
def test_a_duty_without_notify_entries_becomes_an_advocate_pass_on_task(etype: str) -> None:
    decisions = decide(event(etype, received=FRIDAY_EVENT), case())
    assert len(decisions) == 1
    task = decisions[0]
    assert task.outcome is Outcome.TASK
    assert task.recipient == ADVOCATE
    assert task.template == "advocate_pass_on_update"


def test_suspect_charged_is_passed_on_by_the_advocate_never_dropped() -> None:
    decisions = decide(event("police.suspect_charged"), case(enhanced=False))
    assert [(d.outcome, d.template) for d in decisions] == [
        (Outcome.TASK, "advocate_pass_on_update")
    ]
    assert decisions[0].due_by == london_end_of_day_utc(date(2026, 11, 27))


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
    assert RULES_VERSION == "vc2021.1"
    assert all(d.rule.startswith("vc2021.1:") for d in decisions)


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
def test_deadlines_never_precede_the_event_and_send_at_is_now_or_none(
    etype: str,
    at: datetime,
    delay: timedelta,
    enhanced: bool,
    prefs: list[ContactPreference | None],
    advocate: Person | None,
) -> None:
    now = at + delay
    decisions = ENGINE.decide(
        event(etype, at=at, received=at + delay / 2), _context(enhanced, prefs, advocate), now
    )
    assert decisions
    for d in decisions:
        assert d.due_by is not None
        assert d.due_by >= at
        assert d.send_at in (now, None)
        if d.outcome in (Outcome.SEND, Outcome.TASK):
            assert d.send_at == now
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
