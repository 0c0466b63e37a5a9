"""When a message may go: safe windows, half-window alerts and the fallback of held news.

All instants are written in UTC with their Europe/London reading alongside: London is on GMT
(UTC+0) from 25 October 2026 to 28 March 2027 and on BST (UTC+1) outside that, with the changes
on 2026-03-29, 2026-10-25 and 2027-03-28 at 01:00 UTC.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.core.calendar import LONDON, WorkingDayCalendar
from services.core.domain import ContactPreference
from services.rules.timing import (
    END_OF_WEEK_CUTOFF,
    FALLBACK_TIME,
    LATE_GRACE,
    fallback_time,
    half_window,
    in_window,
    next_safe_time,
    zone,
)

CALENDAR = WorkingDayCalendar()
PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def pref(
    start: time = time(9, 0), end: time = time(20, 0), tz: str = "Europe/London"
) -> ContactPreference:
    return ContactPreference(
        version=1,
        has_phone=True,
        has_email=True,
        sms_safe=True,
        sms_safe_review_by=None,
        email_safe=True,
        email_safe_review_by=None,
        timezone=tz,
        safe_window_start=start,
        safe_window_end=end,
    )


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def london(*args: int) -> datetime:
    return datetime(*args, tzinfo=LONDON)


def end_of_london_day(day: date) -> datetime:
    """What `due_by` returns for a deadline ending on `day`."""
    return datetime.combine(day, time(23, 59, 59), tzinfo=LONDON).astimezone(UTC)


# -- the defaults ---------------------------------------------------------------------------------


def test_the_fallback_is_at_noon_and_the_end_of_week_cutoff_is_two_pm() -> None:
    assert time(12, 0) == FALLBACK_TIME
    assert time(14, 0) == END_OF_WEEK_CUTOFF


def test_the_default_survivor_window_is_nine_to_eight_london_time() -> None:
    default = ContactPreference(1, True, True, True, None, True, None)
    assert (default.safe_window_start, default.safe_window_end) == (time(9, 0), time(20, 0))
    assert default.timezone == "Europe/London"


def test_an_unknown_timezone_falls_back_to_london() -> None:
    assert zone(pref(tz="Mars/Olympus_Mons")) == LONDON
    assert zone(None) == LONDON
    assert zone(pref(tz="America/New_York")) == NEW_YORK


@pytest.mark.parametrize(
    ("local", "start", "end", "inside"),
    [
        (time(9, 0), time(9, 0), time(20, 0), True),  # the start is inside
        (time(19, 59, 59), time(9, 0), time(20, 0), True),
        (time(20, 0), time(9, 0), time(20, 0), False),  # the end is not
        (time(8, 59), time(9, 0), time(20, 0), False),
        (time(23, 0), time(22, 0), time(7, 0), True),  # across midnight
        (time(3, 0), time(22, 0), time(7, 0), True),
        (time(7, 0), time(22, 0), time(7, 0), False),
        (time(12, 0), time(22, 0), time(7, 0), False),
    ],
)
def test_in_window(local: time, start: time, end: time, inside: bool) -> None:
    assert in_window(local, start, end) is inside


# -- next_safe_time -------------------------------------------------------------------------------


def test_a_time_inside_the_window_is_unchanged() -> None:
    at = utc(2026, 11, 20, 14, 30)  # Friday 14:30 GMT
    assert next_safe_time(at, pref()) == at


def test_the_window_start_itself_is_safe() -> None:
    at = utc(2026, 11, 20, 9, 0)
    assert next_safe_time(at, pref()) == at


def test_three_in_the_morning_waits_until_nine_the_same_day() -> None:
    assert next_safe_time(utc(2026, 11, 20, 3, 0), pref()) == utc(2026, 11, 20, 9, 0)


def test_nine_in_the_evening_waits_until_nine_the_next_day() -> None:
    assert next_safe_time(utc(2026, 11, 20, 21, 0), pref()) == utc(2026, 11, 21, 9, 0)


def test_the_window_end_is_not_safe() -> None:
    assert next_safe_time(utc(2026, 11, 20, 20, 0), pref()) == utc(2026, 11, 21, 9, 0)


def test_no_preference_uses_the_default_london_window() -> None:
    assert next_safe_time(utc(2026, 11, 20, 3, 0), None) == utc(2026, 11, 20, 9, 0)
    assert next_safe_time(utc(2026, 11, 20, 10, 0), None) == utc(2026, 11, 20, 10, 0)


def test_the_result_is_in_utc_whatever_the_input_zone() -> None:
    result = next_safe_time(london(2026, 7, 1, 3, 0), pref())  # 03:00 BST
    assert result == utc(2026, 7, 1, 8, 0)  # 09:00 BST
    assert result.utcoffset() == timedelta(0)


def test_summer_time_moves_the_window_an_hour_earlier_in_utc() -> None:
    # 07:30 UTC is 08:30 BST: the window opens at 09:00 BST, 08:00 UTC.
    assert next_safe_time(utc(2026, 7, 1, 7, 30), pref()) == utc(2026, 7, 1, 8, 0)
    # 08:30 UTC is 09:30 BST: already inside.
    assert next_safe_time(utc(2026, 7, 1, 8, 30), pref()) == utc(2026, 7, 1, 8, 30)


def test_a_survivor_in_paris_uses_paris_time() -> None:
    paris = pref(tz="Europe/Paris")
    # 08:30 UTC in November is 09:30 in Paris (safe) but 08:30 in London (not).
    at = utc(2026, 11, 20, 8, 30)
    assert next_safe_time(at, paris) == at
    assert next_safe_time(at, pref()) == utc(2026, 11, 20, 9, 0)
    # 07:30 UTC is 08:30 in Paris: the window opens at 09:00 Paris, 08:00 UTC.
    assert next_safe_time(utc(2026, 11, 20, 7, 30), paris) == utc(2026, 11, 20, 8, 0)


def test_a_survivor_in_new_york_uses_new_york_time() -> None:
    new_york = pref(tz="America/New_York")
    # Noon UTC in November is 07:00 in New York: wait until 09:00 EST, 14:00 UTC.
    assert next_safe_time(utc(2026, 11, 20, 12, 0), new_york) == utc(2026, 11, 20, 14, 0)
    # 01:30 UTC on Saturday is 20:30 on Friday in New York: wait until Saturday 09:00 EST.
    assert next_safe_time(utc(2026, 11, 21, 1, 30), new_york) == utc(2026, 11, 21, 14, 0)
    # 23:00 UTC is 18:00 in New York: safe there, though it is night in London.
    assert next_safe_time(utc(2026, 11, 20, 23, 0), new_york) == utc(2026, 11, 20, 23, 0)


def test_a_window_across_midnight() -> None:
    nights = pref(start=time(22, 0), end=time(7, 0))
    assert next_safe_time(utc(2026, 11, 20, 12, 0), nights) == utc(2026, 11, 20, 22, 0)
    assert next_safe_time(utc(2026, 11, 20, 23, 30), nights) == utc(2026, 11, 20, 23, 30)
    assert next_safe_time(utc(2026, 11, 21, 3, 0), nights) == utc(2026, 11, 21, 3, 0)
    assert next_safe_time(utc(2026, 11, 21, 7, 0), nights) == utc(2026, 11, 21, 22, 0)


def test_the_autumn_clock_change_on_25_october_2026() -> None:
    # Saturday 22:00 BST (21:00 UTC): the next opening is Sunday 09:00 GMT, which is 09:00 UTC
    # (not 08:00 UTC, as adding a day to the BST reading would give).
    assert next_safe_time(utc(2026, 10, 24, 21, 0), pref()) == utc(2026, 10, 25, 9, 0)
    # Sunday 00:30 BST (23:30 UTC on Saturday), before the change: still Sunday 09:00 GMT.
    assert next_safe_time(utc(2026, 10, 24, 23, 30), pref()) == utc(2026, 10, 25, 9, 0)
    # Sunday 06:00 GMT, after the change.
    assert next_safe_time(utc(2026, 10, 25, 6, 0), pref()) == utc(2026, 10, 25, 9, 0)
    # Saturday morning 08:30 BST: opens at 09:00 BST, 08:00 UTC.
    assert next_safe_time(utc(2026, 10, 24, 7, 30), pref()) == utc(2026, 10, 24, 8, 0)


def test_the_spring_clock_change_on_29_march_2026() -> None:
    # Saturday 21:00 GMT: the next opening is Sunday 09:00 BST, which is 08:00 UTC.
    assert next_safe_time(utc(2026, 3, 28, 21, 0), pref()) == utc(2026, 3, 29, 8, 0)
    # Sunday 00:30 GMT, before the change at 01:00 UTC.
    assert next_safe_time(utc(2026, 3, 29, 0, 30), pref()) == utc(2026, 3, 29, 8, 0)
    # Sunday 08:30 BST (07:30 UTC), after it.
    assert next_safe_time(utc(2026, 3, 29, 7, 30), pref()) == utc(2026, 3, 29, 8, 0)
    # Sunday 08:30 UTC is 09:30 BST: inside.
    assert next_safe_time(utc(2026, 3, 29, 8, 30), pref()) == utc(2026, 3, 29, 8, 30)


def test_a_new_york_survivor_across_the_weeks_when_only_one_side_has_changed_clocks() -> None:
    # US clocks went forward on 8 March 2026, the UK's on 29 March: New York is UTC-4, London
    # still UTC+0. 12:00 UTC is 08:00 in New York, so the window opens at 13:00 UTC.
    new_york = pref(tz="America/New_York")
    assert next_safe_time(utc(2026, 3, 20, 12, 0), new_york) == utc(2026, 3, 20, 13, 0)


ZONES = ["Europe/London", "Europe/Paris", "America/New_York", "Australia/Sydney"]
# Whole hours from 05:00: no window edge falls in a daylight-saving gap or fold of these zones.
HOURS = st.integers(5, 23).map(lambda h: time(h, 0))


@settings(max_examples=200, deadline=None)
@given(
    at=st.datetimes(datetime(2025, 1, 1), datetime(2030, 12, 31), timezones=st.just(UTC)),
    start=HOURS,
    end=HOURS,
    tz=st.sampled_from(ZONES),
)
def test_next_safe_time_is_the_first_safe_instant(
    at: datetime, start: time, end: time, tz: str
) -> None:
    if start == end:
        return
    chosen = pref(start, end, tz)
    result = next_safe_time(at, chosen)
    local = result.astimezone(ZoneInfo(tz))
    assert result >= at
    assert result - at <= timedelta(hours=25)
    assert in_window(local.time(), start, end)
    if result != at:
        # It is the opening of the window: a second earlier was not yet safe.
        before = (result - timedelta(seconds=1)).astimezone(ZoneInfo(tz))
        assert not in_window(before.time(), start, end)
        assert local.time() == start


# -- half_window ----------------------------------------------------------------------------------


def test_half_window_is_halfway_from_the_clock_start_to_the_deadline() -> None:
    start = utc(2026, 11, 20, 14, 0)
    deadline = utc(2026, 11, 23, 23, 59, 59)
    # Whole seconds: the exact halfway point (06:59:59.5) is not a time anyone needs.
    halfway = (start + (deadline - start) / 2).replace(microsecond=0)
    assert half_window(start, deadline, start) == halfway == utc(2026, 11, 22, 6, 59, 59)


def test_half_window_is_now_when_half_the_window_has_already_passed() -> None:
    start = utc(2026, 11, 20, 14, 0)
    deadline = utc(2026, 11, 23, 23, 59, 59)
    late = utc(2026, 11, 23, 10, 0)
    assert half_window(start, deadline, late) == late


def test_half_window_never_passes_the_deadline_while_there_is_time() -> None:
    start = utc(2026, 11, 20, 14, 0)
    deadline = utc(2026, 11, 23, 23, 59, 59)
    for hours in range(0, 82):
        now = start + timedelta(hours=hours)
        assert now <= half_window(start, deadline, now) <= deadline


# -- fallback_time --------------------------------------------------------------------------------


def test_the_fallback_is_noon_london_time_on_the_deadline_day() -> None:
    deadline = end_of_london_day(date(2026, 11, 24))  # Tuesday, GMT
    now = utc(2026, 11, 23, 10, 0)
    assert fallback_time(deadline, now, pref(), CALENDAR) == utc(2026, 11, 24, 12, 0)


def test_the_fallback_in_summer_is_noon_bst() -> None:
    deadline = end_of_london_day(date(2026, 6, 16))  # Tuesday, BST
    assert deadline == utc(2026, 6, 16, 22, 59, 59)
    now = utc(2026, 6, 15, 10, 0)
    assert fallback_time(deadline, now, pref(), CALENDAR) == utc(2026, 6, 16, 11, 0)


def test_the_fallback_on_the_monday_after_the_autumn_clock_change() -> None:
    deadline = end_of_london_day(date(2026, 10, 26))  # Monday, first day of GMT
    now = utc(2026, 10, 23, 15, 0)  # Friday, BST
    assert fallback_time(deadline, now, pref(), CALENDAR) == utc(2026, 10, 26, 12, 0)


def test_the_fallback_on_the_monday_after_the_spring_clock_change() -> None:
    deadline = end_of_london_day(date(2026, 3, 30))  # Monday, first working day of BST
    now = utc(2026, 3, 27, 15, 0)  # Friday, GMT
    assert fallback_time(deadline, now, pref(), CALENDAR) == utc(2026, 3, 30, 11, 0)


def test_without_preferences_the_fallback_is_noon() -> None:
    deadline = end_of_london_day(date(2026, 11, 24))
    assert fallback_time(deadline, utc(2026, 11, 23), None, CALENDAR) == utc(2026, 11, 24, 12, 0)


def test_the_fallback_moves_into_a_late_safe_window() -> None:
    deadline = end_of_london_day(date(2026, 11, 24))
    late = pref(start=time(15, 0), end=time(20, 0))
    assert fallback_time(deadline, utc(2026, 11, 23), late, CALENDAR) == utc(2026, 11, 24, 15, 0)


def test_the_fallback_moves_into_a_new_york_survivors_window() -> None:
    deadline = end_of_london_day(date(2026, 11, 24))
    new_york = pref(tz="America/New_York")
    # Noon London is 07:00 in New York: 09:00 EST is 14:00 UTC.
    result = fallback_time(deadline, utc(2026, 11, 23), new_york, CALENDAR)
    assert result == utc(2026, 11, 24, 14, 0)


def test_the_fallback_is_never_after_the_deadline_even_with_no_safe_time_left() -> None:
    deadline = end_of_london_day(date(2026, 11, 24))
    short = pref(start=time(10, 0), end=time(11, 0))
    now = utc(2026, 11, 24, 11, 30)  # the window has closed for the day
    assert fallback_time(deadline, now, short, CALENDAR) == deadline


def test_the_fallback_is_never_before_now() -> None:
    deadline = end_of_london_day(date(2026, 11, 24))
    now = utc(2026, 11, 24, 16, 0)  # already past noon on the deadline day
    assert fallback_time(deadline, now, pref(), CALENDAR) == now


def test_a_fallback_still_inside_the_window_late_on_the_deadline_day_waits_for_it() -> None:
    deadline = end_of_london_day(date(2026, 11, 24))
    now = utc(2026, 11, 24, 7, 0)  # before the window opens
    assert fallback_time(deadline, now, pref(), CALENDAR) == utc(2026, 11, 24, 12, 0)


# The end-of-week rule: distressing news is not released after 14:00 on the last working day
# before a weekend or bank holiday, where the window allows (the deadline still wins).


@pytest.mark.parametrize(
    "deadline_day",
    [
        pytest.param(date(2026, 11, 27), id="friday-before-a-weekend"),
        pytest.param(date(2026, 12, 24), id="thursday-before-christmas"),
        pytest.param(date(2027, 3, 25), id="thursday-before-good-friday"),
        pytest.param(date(2026, 5, 22), id="friday-before-spring-bank-holiday"),
    ],
)
def test_before_a_break_the_fallback_stays_before_two_pm(deadline_day: date) -> None:
    assert CALENDAR.is_last_working_day_before_break(deadline_day)
    deadline = end_of_london_day(deadline_day)
    now = datetime.combine(deadline_day - timedelta(days=1), time(15, 0), tzinfo=LONDON)
    result = fallback_time(deadline, now, pref(), CALENDAR)
    local = result.astimezone(LONDON)
    assert local.date() == deadline_day
    assert local.time() < END_OF_WEEK_CUTOFF
    assert local.time() == FALLBACK_TIME


def test_before_christmas_a_window_opening_at_one_pm_is_used_before_two_pm() -> None:
    deadline = end_of_london_day(date(2026, 12, 24))
    afternoon = pref(start=time(13, 0), end=time(20, 0))
    result = fallback_time(deadline, utc(2026, 12, 23, 15, 0), afternoon, CALENDAR)
    assert result == utc(2026, 12, 24, 13, 0)


def test_on_a_friday_a_paris_window_opening_at_half_past_two_is_half_past_one_in_london() -> None:
    deadline = end_of_london_day(date(2026, 11, 27))
    paris = pref(start=time(14, 30), end=time(20, 0), tz="Europe/Paris")
    result = fallback_time(deadline, utc(2026, 11, 26, 15, 0), paris, CALENDAR)
    assert result == utc(2026, 11, 27, 13, 30)
    assert result.astimezone(LONDON).time() < END_OF_WEEK_CUTOFF


def test_on_a_friday_a_window_that_opens_after_two_pm_is_used_because_the_deadline_wins() -> None:
    deadline = end_of_london_day(date(2026, 11, 27))
    late = pref(start=time(15, 0), end=time(20, 0))
    result = fallback_time(deadline, utc(2026, 11, 26, 15, 0), late, CALENDAR)
    assert result == utc(2026, 11, 27, 15, 0)


def test_on_a_friday_afternoon_past_two_the_deadline_wins() -> None:
    deadline = end_of_london_day(date(2026, 11, 27))
    now = utc(2026, 11, 27, 15, 0)
    assert fallback_time(deadline, now, pref(), CALENDAR) == now


def test_before_a_break_the_fallback_falls_in_an_early_safe_window() -> None:
    """The window 06:00-11:00 allows the release before 14:00 on Christmas Eve: its last half
    hour, to leave the advocate as long as the window allows."""
    deadline = end_of_london_day(date(2026, 12, 24))
    early = pref(start=time(6, 0), end=time(11, 0))
    result = fallback_time(deadline, utc(2026, 12, 23, 15, 0), early, CALENDAR)
    assert result == utc(2026, 12, 24, 10, 30)
    local = result.astimezone(LONDON)
    assert in_window(local.time(), time(6, 0), time(11, 0))
    assert local.time() < END_OF_WEEK_CUTOFF


def test_a_window_that_closes_before_noon_is_used_on_an_ordinary_deadline_day() -> None:
    deadline = end_of_london_day(date(2026, 11, 24))
    early = pref(start=time(7, 0), end=time(11, 0))
    result = fallback_time(deadline, utc(2026, 11, 23, 15, 0), early, CALENDAR)
    assert result == utc(2026, 11, 24, 10, 30)


def test_a_window_shorter_than_half_an_hour_is_used_from_its_start() -> None:
    deadline = end_of_london_day(date(2026, 11, 24))
    tiny = pref(start=time(10, 0), end=time(10, 15))
    result = fallback_time(deadline, utc(2026, 11, 23, 15, 0), tiny, CALENDAR)
    assert result == utc(2026, 11, 24, 10, 0)


def test_an_early_window_already_closed_today_leaves_only_the_deadline() -> None:
    deadline = end_of_london_day(date(2026, 11, 24))
    early = pref(start=time(7, 0), end=time(11, 0))
    now = utc(2026, 11, 24, 11, 30)
    assert fallback_time(deadline, now, early, CALENDAR) == deadline


def test_a_night_window_on_the_deadline_day_is_used_in_the_evening() -> None:
    deadline = end_of_london_day(date(2026, 11, 24))
    nights = pref(start=time(21, 0), end=time(7, 0))
    result = fallback_time(deadline, utc(2026, 11, 23, 15, 0), nights, CALENDAR)
    assert result == utc(2026, 11, 24, 21, 0)


def test_a_fallback_for_a_deadline_already_passed_still_gives_the_advocate_time() -> None:
    deadline = end_of_london_day(date(2026, 11, 24))
    now = utc(2026, 11, 25, 10, 0)
    # Late already: the advocate still gets a few hours to tell them first.
    assert fallback_time(deadline, now, pref(), CALENDAR) == utc(2026, 11, 25, 14, 0)


def test_late_news_on_a_friday_afternoon_waits_for_monday_morning() -> None:
    deadline = end_of_london_day(date(2026, 11, 19))
    now = utc(2026, 11, 20, 11, 0)  # Friday: 15:00 would be after the end-of-week cut-off
    assert fallback_time(deadline, now, pref(), CALENDAR) == utc(2026, 11, 23, 10, 0)


def test_a_fallback_for_a_deadline_already_passed_waits_for_the_window() -> None:
    deadline = end_of_london_day(date(2026, 11, 24))
    now = utc(2026, 11, 25, 3, 0)
    assert fallback_time(deadline, now, pref(), CALENDAR) == utc(2026, 11, 25, 9, 0)


WINDOWS = st.sampled_from(
    [
        (time(9, 0), time(20, 0)),
        (time(7, 0), time(22, 0)),
        (time(12, 0), time(18, 0)),
        (time(15, 0), time(20, 0)),
        (time(21, 0), time(7, 0)),
        (time(18, 0), time(23, 0)),
        (time(6, 0), time(11, 0)),
        (time(7, 0), time(7, 20)),
        (time(20, 0), time(11, 0)),
    ]
)


@settings(max_examples=200, deadline=None)
@given(
    deadline_day=st.dates(date(2025, 1, 1), date(2030, 12, 31)).filter(CALENDAR.is_working_day),
    before=st.timedeltas(timedelta(0), timedelta(days=12)),
    window=WINDOWS,
    tz=st.sampled_from(ZONES),
)
def test_the_fallback_is_between_now_and_the_deadline_and_not_before_noon_of_the_last_day(
    deadline_day: date, before: timedelta, window: tuple[time, time], tz: str
) -> None:
    deadline = end_of_london_day(deadline_day)
    now = deadline - before
    chosen = replace(pref(tz=tz), safe_window_start=window[0], safe_window_end=window[1])
    result = fallback_time(deadline, now, chosen, CALENDAR)
    noon = datetime.combine(deadline_day, FALLBACK_TIME, tzinfo=LONDON).astimezone(UTC)

    def safe(instant: datetime) -> bool:
        return in_window(instant.astimezone(ZoneInfo(tz)).time(), *window)

    if now >= deadline:
        # Already late: a safe time on a working day, hours after now (the advocate's turn).
        assert result >= now + LATE_GRACE and safe(result)
        assert CALENDAR.is_working_day(result.astimezone(LONDON).date())
        return
    assert now <= result <= deadline
    # The advocate has until noon of the deadline day to tell the survivor first, unless noon
    # is not safe for this survivor: then it goes inside their window.
    if result < noon:
        assert not safe(noon)
        assert safe(result)
    # Inside the survivor's window, unless no safe instant is left before the deadline.
    if not safe(result):
        assert result == deadline
    # At once only when the deadline forces it: within its last two days.
    if result == now:
        assert deadline - now < timedelta(hours=48)
