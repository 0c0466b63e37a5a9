"""Properties of the rules engine over random events, times, preferences and people.

Each property is checked against values recomputed here from the rules data and from the
survivor's preferences, not read back from the engine:

* opt-out is absolute: an opted-out survivor is never sent anything, nor held on a channel;
* a survivor is only ever contacted (SEND, or HOLD with a channel) on a channel recorded safe
  and not past its review date, SMS before e-mail, the post last;
* nothing goes by letter to a survivor who opted out or chose no updates, nor where no letter is
  safe (no address, or letter_safe false); never two letters about one event; a duty the rules
  require in writing is written wherever a letter is safe and the survivor's choices allow;
  a letter is queued at once (no quiet hours), or held with the survivor's held news;
* distressing outcomes: no survivor SEND; every survivor message is the detail-free
  survivor_get_in_touch, and one on a channel is held ("advocate_first"); the advocate, if there
  is one, is told at `now`. While the deadline has not passed, the held message's fallback lies
  in [now, deadline]; it is not before noon London time on the deadline's day unless noon is
  outside the survivor's safe window (then it is inside that window, or at the deadline when no
  safe instant is left); and it equals `now` only within the last 48 hours before the deadline
  (the deadline forces it). Once the deadline has passed it goes at the next safe time;
* every decision carries the Victims' Code deadline recomputed from the rules data; no message
  is scheduled after it while it can still be met (a HOLD without a channel has no send_at);
  once it has passed, nothing is scheduled before `now`;
* a survivor SEND is inside their safe window unless hold_reason is
  "deadline_before_safe_window" (then it goes at `now`);
* every decision names a rule of this rules version, and every outcome other than SEND says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import holidays
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
)
from services.rules.engine import Engine
from services.rules.ruleset import load_rules
from services.rules.timing import LATE_GRACE, in_window

RULES = load_rules()
ENGINE = Engine(RULES, WorkingDayCalendar())
VERSION = "vc2021.2"

ADVOCATE = Person(10, Role.ADVOCATE)
OTHER_ADVOCATE = Person(11, Role.ADVOCATE)
SUPERVISOR = Person(20, Role.SUPERVISOR)

ZONES = ["Europe/London", "Europe/Paris", "America/New_York", "Australia/Sydney"]
# Whole hours from 05:00, so that no window edge falls in a daylight-saving gap of these zones.
HOURS = st.integers(5, 23).map(lambda h: time(h, 0))
# Values of the data fields the rules data looks at: every value it lists as not distressing,
# and the distressing endings victims-code.md names (a missing field is tried too).
DATA_VALUES = sorted(
    {
        str(v)
        for rule in RULES.events.values()
        for _, values in rule.distressing_unless
        for v in values
        if v is not None
    }
    | {"no_charge", "not_guilty", "mixed", "not_upheld", "sentence_reduced", "conviction_quashed"}
    | {
        str(v)
        for rule in RULES.events.values()
        if rule.letter
        for _, values in rule.letter.when
        for v in values
    }
)
DATA_FIELDS = sorted(
    {name for rule in RULES.events.values() for name, _ in rule.distressing_unless}
    | {name for rule in RULES.events.values() if rule.letter for name, _ in rule.letter.when}
)
LETTER_SUFFIX = ".letter"  # the rule of a letter the Code requires: <version>:<type>.letter


# -- an independent oracle for Victims' Code deadlines -------------------------------------------


@cache
def _bank_holidays(year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays("GB", subdiv="ENG", years=year))


def _working(day: date) -> bool:
    return day.weekday() < 5 and day not in _bank_holidays(day.year)


def code_deadline(clock_start: datetime, working_days: int) -> datetime:
    """23:59:59 London time on the Nth working day after the London day the clock started."""
    day = clock_start.astimezone(LONDON).date()
    for _ in range(working_days):
        day += timedelta(days=1)
        while not _working(day):
            day += timedelta(days=1)
    return datetime.combine(day, time(23, 59, 59), tzinfo=LONDON).astimezone(UTC)


def is_distressing(etype: str, data: dict[str, Any]) -> bool:
    """Distressing by sensitivity, or by any data field (missing: None) not listed as routine."""
    rule = RULES.events[etype]
    return rule.sensitivity == "distressing" or any(
        data.get(name) not in routine for name, routine in rule.distressing_unless
    )


def in_safe_window(instant: datetime, pref: ContactPreference) -> bool:
    local = instant.astimezone(ZoneInfo(pref.timezone)).time()
    return in_window(local, pref.safe_window_start, pref.safe_window_end)


def safe_channels(pref: ContactPreference, today: date) -> list[Channel]:
    """The channels recorded safe today, in the order the engine must prefer them."""
    found = []
    if (
        pref.has_phone
        and pref.sms_safe
        and (pref.sms_safe_review_by is None or pref.sms_safe_review_by >= today)
    ):
        found.append(Channel.SMS)
    if (
        pref.has_email
        and pref.email_safe
        and (pref.email_safe_review_by is None or pref.email_safe_review_by >= today)
    ):
        found.append(Channel.EMAIL)
    return found


def letter_safe(pref: ContactPreference | None) -> bool:
    return pref is not None and pref.has_address and pref.letter_safe


def digital_safe_for_good(pref: ContactPreference) -> bool:
    """A digital channel safe with no review date: safe on whatever day a message goes."""
    return (pref.has_phone and pref.sms_safe and pref.sms_safe_review_by is None) or (
        pref.has_email and pref.email_safe and pref.email_safe_review_by is None
    )


def is_duty_letter(d: Decision) -> bool:
    return d.rule.endswith(LETTER_SUFFIX)


# -- random cases ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    event: EventFacts
    context: CaseContext
    now: datetime
    clock_start: datetime
    deadline: datetime
    distressing: bool


@st.composite
def preferences(draw: st.DrawFn, today: date) -> ContactPreference | None:
    if draw(st.integers(0, 9)) == 0:
        return None
    review = st.one_of(st.none(), st.integers(-30, 30).map(lambda n: today + timedelta(days=n)))
    start, end = draw(HOURS), draw(HOURS)
    if start == end:
        end = time((end.hour + 1) % 24 or 5, 0)
    return ContactPreference(
        version=1,
        has_phone=draw(st.booleans()),
        has_email=draw(st.booleans()),
        sms_safe=draw(st.booleans()),
        sms_safe_review_by=draw(review),
        email_safe=draw(st.booleans()),
        email_safe_review_by=draw(review),
        language=draw(st.sampled_from(["en", "cy"])),
        timezone=draw(st.sampled_from(ZONES)),
        safe_window_start=start,
        safe_window_end=end,
        frequency=draw(st.sampled_from(list(Frequency))),
        detail=draw(st.sampled_from(list(Detail))),
        opted_out=draw(st.integers(0, 4)) == 0,
        has_address=draw(st.booleans()),
        letter_safe=draw(st.booleans()),
    )


@st.composite
def cases(draw: st.DrawFn) -> Case:
    etype = draw(st.sampled_from(sorted(RULES.events)))
    data = draw(st.dictionaries(st.sampled_from(DATA_FIELDS), st.sampled_from(DATA_VALUES)))
    at = draw(st.datetimes(datetime(2025, 1, 1), datetime(2030, 12, 31), timezones=st.just(UTC)))
    received = at + draw(st.timedeltas(timedelta(0), timedelta(days=6)))
    # Mostly soon after receipt; sometimes days later, past the deadline.
    now = received + draw(
        st.one_of(
            st.timedeltas(timedelta(0), timedelta(hours=36)),
            st.timedeltas(timedelta(0), timedelta(days=12)),
        )
    )
    today = now.astimezone(LONDON).date()
    survivors = []
    for i in range(draw(st.integers(1, 3))):
        advocate = draw(st.sampled_from([ADVOCATE, OTHER_ADVOCATE, SUPERVISOR, None]))
        supervisor = draw(st.sampled_from([SUPERVISOR, None, advocate]))
        survivors.append(
            SurvivorContext(
                survivor=Person(i + 1, Role.SURVIVOR),
                relationship=draw(st.sampled_from(list(Relationship))),
                preference=draw(preferences(today)),
                advocate=advocate,
                supervisor=supervisor,
            )
        )
    enhanced = draw(st.booleans())
    rule = RULES.events[etype]
    clock_start = received if rule.clock_from == "receipt" else at
    days = rule.enhanced_wd if enhanced else rule.standard_wd
    return Case(
        event=EventFacts("police/01", "evt-1", etype, "01AB1234524", at, received, data),
        context=CaseContext(7, "01AB1234524", enhanced, tuple(survivors)),
        now=now,
        clock_start=clock_start,
        deadline=code_deadline(clock_start, days),
        distressing=is_distressing(etype, data),
    )


def decide(c: Case) -> list[Decision]:
    return ENGINE.decide(c.event, c.context, c.now)


def about(decisions: list[Decision], s: SurvivorContext) -> list[Decision]:
    return [d for d in decisions if d.survivor_id == s.survivor.id]


def to_survivor(decisions: list[Decision], s: SurvivorContext) -> list[Decision]:
    return [d for d in decisions if d.recipient == s.survivor]


def noon_on_deadline_day(deadline: datetime) -> datetime:
    day = deadline.astimezone(LONDON).date()
    return datetime.combine(day, time(12, 0), tzinfo=LONDON).astimezone(UTC)


# -- the properties ---------------------------------------------------------------------------

SETTINGS = settings(max_examples=200, deadline=None)


@SETTINGS
@given(c=cases())
def test_an_opted_out_survivor_is_never_sent_anything_nor_held_on_a_channel(c: Case) -> None:
    decisions = decide(c)
    for s in c.context.survivors:
        if s.preference is None or not s.preference.opted_out:
            continue
        mine = to_survivor(decisions, s)
        assert mine
        for d in mine:
            assert d.outcome is not Outcome.SEND
            assert d.channel is None
            assert d.send_at is None
        assert [d.hold_reason for d in mine if d.outcome is Outcome.SUPPRESS] == ["opted_out"]


@SETTINGS
@given(c=cases())
def test_a_survivor_is_only_contacted_on_a_channel_recorded_safe_and_current(c: Case) -> None:
    decisions = decide(c)
    today = c.now.astimezone(LONDON).date()
    for s in c.context.survivors:
        for d in to_survivor(decisions, s):
            assert d.outcome is not Outcome.TASK
            if d.channel is None:
                continue
            assert d.outcome in (Outcome.SEND, Outcome.HOLD)
            assert s.preference is not None
            assert not s.preference.opted_out
            assert s.preference.frequency is not Frequency.NONE
            if d.channel is Channel.LETTER_TASK:
                assert letter_safe(s.preference)
                if not is_duty_letter(d):
                    # Their own message goes by post only when no digital channel will do.
                    assert not digital_safe_for_good(s.preference)
                continue
            # Safe on the day it goes: a held message can go days later, after a review date.
            send_day = (d.send_at or c.now).astimezone(LONDON).date()
            safe = safe_channels(s.preference, send_day)
            assert d.channel in safe
            assert d.channel is safe[0]  # SMS first when both are safe
        if s.preference is not None and not safe_channels(s.preference, today):
            assert all(d.channel in (None, Channel.LETTER_TASK) for d in to_survivor(decisions, s))
            if not letter_safe(s.preference):
                assert all(d.channel is None for d in to_survivor(decisions, s))


@SETTINGS
@given(c=cases())
def test_distressing_news_goes_to_the_advocate_first(c: Case) -> None:
    decisions = decide(c)
    for s in c.context.survivors:
        mine = about(decisions, s)
        held = [d for d in mine if d.hold_reason == "advocate_first"]
        if not c.distressing:
            assert not held
            assert all(d.template != RULES.distressing.advocate for d in mine)
            assert all(d.condition is None and d.related_rule is None for d in mine)
            continue
        assert all(d.outcome is not Outcome.SEND for d in to_survivor(decisions, s))
        for d in to_survivor(decisions, s):
            if d.outcome is Outcome.ESCALATE:
                continue  # "nobody to tell": a record, not a message
            letter = RULES.events[c.event.type].letter
            if is_duty_letter(d):
                assert letter is not None and d.template == letter.template
            else:
                assert d.template == RULES.distressing.survivor
            assert d.detail is Detail.DISCREET
            if d.channel is not None:
                assert d in held
        advocate_rules = {
            RULES.rule_name(n.id) for n in RULES.events[c.event.type].notify if n.to == "advocate"
        }
        told = [d for d in mine if d.rule in advocate_rules]
        assert len(told) == 1
        if s.advocate is not None:
            assert told[0].outcome is Outcome.SEND
            assert told[0].recipient == s.advocate
            assert told[0].template == RULES.distressing.advocate
            assert told[0].send_at == c.now
        else:
            assert told[0].outcome is Outcome.ESCALATE
        if not held:
            continue
        # The survivor's own held message first; a letter the Code requires goes with it.
        message, *letters = held
        assert len(letters) <= 1
        for letter_decision in letters:
            assert is_duty_letter(letter_decision)
            assert letter_decision.channel is Channel.LETTER_TASK
            assert letter_decision.send_at == message.send_at
        assert message.outcome is Outcome.HOLD
        if is_duty_letter(message):  # a survivor who can only be written to: one letter
            assert message.channel is Channel.LETTER_TASK
        else:
            assert message.template == RULES.distressing.survivor
        assert message.detail is Detail.DISCREET
        assert message.send_at is not None
        if s.advocate is not None:
            assert told[0].related_rule == message.rule
        noon = noon_on_deadline_day(c.deadline)
        assert s.preference is not None
        if c.now < c.deadline:
            assert c.now <= message.send_at <= c.deadline
            if message.send_at < noon:
                # Only when noon is not safe for this survivor: then inside their window.
                assert not in_safe_window(noon, s.preference)
                assert in_safe_window(message.send_at, s.preference)
            if message.send_at == c.now:
                # Released at once only when the deadline forces it.
                assert c.deadline - c.now < timedelta(hours=48)
        elif message.channel is Channel.LETTER_TASK:
            assert message.send_at == c.now + LATE_GRACE  # no quiet hours for the post
        else:
            assert message.send_at >= c.now
            assert in_safe_window(message.send_at, s.preference)
        alerts = [d for d in mine if d.condition == "while_held"]
        if s.supervisor is None or s.supervisor == s.advocate:
            assert not alerts
        else:
            (alert,) = alerts
            assert alert.outcome is Outcome.TASK
            assert alert.recipient == s.supervisor
            assert alert.template == RULES.distressing.supervisor
            assert alert.related_rule == message.rule
            assert alert.send_at is not None and alert.send_at >= c.now
            if c.now <= c.deadline:
                assert alert.send_at <= message.send_at


@SETTINGS
@given(c=cases())
def test_every_decision_carries_the_code_deadline_and_nothing_is_scheduled_after_it(
    c: Case,
) -> None:
    decisions = decide(c)
    assert decisions
    for d in decisions:
        assert d.due_by == c.deadline
        if d.makes_notification:
            assert d.template is not None
        if d.outcome is Outcome.HOLD and d.channel is None:
            assert d.send_at is None
            continue
        if d.outcome in (Outcome.SUPPRESS, Outcome.ESCALATE, Outcome.MERGE):
            assert d.send_at is None
            continue
        assert d.send_at is not None
        if c.now < c.deadline:
            assert d.send_at <= c.deadline
        else:
            assert d.send_at >= c.now


@SETTINGS
@given(c=cases())
def test_a_survivor_send_is_inside_their_safe_window_unless_the_deadline_forbids(
    c: Case,
) -> None:
    decisions = decide(c)
    for s in c.context.survivors:
        for d in to_survivor(decisions, s):
            if d.outcome is not Outcome.SEND:
                continue
            assert s.preference is not None and d.send_at is not None
            assert d.send_at >= c.now
            if d.channel is Channel.LETTER_TASK:
                # Read when the post comes: queued at once, whatever the hour.
                assert d.send_at == c.now
                assert d.hold_reason == ("deadline_already_passed" if c.now >= c.deadline else None)
                continue
            if d.hold_reason == "deadline_before_safe_window":
                assert d.send_at == c.now
                assert c.now < c.deadline
            elif d.hold_reason == "deadline_already_passed":
                assert c.now >= c.deadline
                assert in_safe_window(d.send_at, s.preference)
            else:
                assert d.hold_reason is None
                assert in_safe_window(d.send_at, s.preference)
                assert d.send_at <= c.deadline


@SETTINGS
@given(c=cases())
def test_every_decision_names_its_rule_and_every_non_send_says_why(c: Case) -> None:
    decisions = decide(c)
    assert ENGINE.rules.version == VERSION
    for d in decisions:
        assert d.rule.startswith(f"{VERSION}:{c.event.type}.")
        if d.outcome is not Outcome.SEND:
            assert d.hold_reason
        else:
            assert d.hold_reason in (
                None,
                "deadline_before_safe_window",
                "deadline_already_passed",
            )
            assert d.channel is not None
        assert d.survivor_id in {s.survivor.id for s in c.context.survivors}
        if d.related_rule is not None:
            assert d.related_rule in {x.rule for x in decisions if x.survivor_id == d.survivor_id}


@SETTINGS
@given(c=cases())
def test_every_survivor_is_decided_about_and_advocates_hear_at_once(c: Case) -> None:
    decisions = decide(c)
    for s in c.context.survivors:
        mine = about(decisions, s)
        assert mine
        assert any(d.recipient == s.survivor for d in mine)
        for d in mine:
            if d.outcome is Outcome.SEND and d.recipient.role is not Role.SURVIVOR:
                assert d.recipient == s.advocate
                assert d.send_at == c.now
                assert d.channel is Channel.EMAIL


@SETTINGS
@given(c=cases())
def test_nothing_goes_by_letter_unless_wanted_and_safe_and_never_two_letters(c: Case) -> None:
    decisions = decide(c)
    rule = RULES.events[c.event.type]
    owed = rule.letter is not None and rule.letter.applies(c.event.data)
    for s in c.context.survivors:
        pref = s.preference
        by_post = [d for d in to_survivor(decisions, s) if d.channel is Channel.LETTER_TASK]
        assert len(by_post) <= 1  # one letter about one event
        if (
            pref is None
            or pref.opted_out
            or pref.frequency is Frequency.NONE
            or not pref.has_address
            or not pref.letter_safe
        ):
            assert not by_post
            continue
        chosen = pref.frequency is Frequency.ALL or rule.key_stage
        if owed and chosen:
            # The Code requires it in writing and a letter is safe: it is written.
            (letter,) = by_post
            assert rule.letter is not None and letter.template == rule.letter.template
            assert is_duty_letter(letter)
            # An escalation (no advocate) is recorded against the survivor too: not a message.
            own = [
                d
                for d in to_survivor(decisions, s)
                if not is_duty_letter(d) and d.outcome is not Outcome.ESCALATE
            ]
            if not [d for d in own if d.channel is not None]:
                # Their usual message went into the letter rather than a second letter.
                assert [(d.outcome, d.hold_reason) for d in own] == [
                    (Outcome.MERGE, "merged_into_letter")
                ]
        elif not owed:
            assert not [d for d in by_post if is_duty_letter(d)]
