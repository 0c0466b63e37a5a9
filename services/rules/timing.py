"""When a message may go: safe windows, the end-of-week rule, fallbacks and half-window alerts.

Pure functions of instants, preferences and the working-day calendar (no clock inside).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from services.core.calendar import LONDON, WorkingDayCalendar
from services.core.domain import ContactPreference
from services.core.safe_window import DEFAULT_WINDOW, next_safe_instant, zone_named
from services.core.safe_window import in_window as in_window

# Distressing news is not released after this time on the last working day before a weekend or
# bank holiday, when support services are about to close (trauma-informed rule 3).
END_OF_WEEK_CUTOFF = time(14, 0)
FALLBACK_TIME = time(12, 0)  # on the deadline's day, London time, before support closes
# When distressing news arrives after its deadline, the advocate still gets this long to tell
# the survivor first: the deadline is lost already, the chance to tell them kindly is not.
LATE_GRACE = timedelta(hours=4)


def zone(pref: ContactPreference | None) -> ZoneInfo:
    return zone_named(pref.timezone if pref is not None else None)


def next_safe_time(at: datetime, pref: ContactPreference | None) -> datetime:
    """`at` if it is inside the recipient's safe window, else when the window next opens."""
    if pref is None:
        start, end = DEFAULT_WINDOW
    else:
        start, end = pref.safe_window_start, pref.safe_window_end
    return next_safe_instant(at, start, end, zone(pref))


def half_window(clock_start: datetime, deadline: datetime, now: datetime) -> datetime:
    """When the supervisor is alerted about held news: halfway to the deadline, or now if later."""
    halfway = clock_start + (deadline - clock_start) / 2
    return max(now, halfway.replace(microsecond=0))


def _window_on(day_local: datetime, pref: ContactPreference | None) -> tuple[datetime, datetime]:
    """The recipient's safe window on the local day of `day_local` (end may fall the next day)."""
    start, end = (
        (time(9, 0), time(20, 0))
        if pref is None
        else (pref.safe_window_start, pref.safe_window_end)
    )
    tz = day_local.tzinfo
    opens = datetime.combine(day_local.date(), start, tzinfo=tz)
    closes = datetime.combine(day_local.date(), end, tzinfo=tz)
    if closes <= opens:
        closes += timedelta(days=1)
    return opens, closes


def fallback_time(
    deadline: datetime,
    now: datetime,
    pref: ContactPreference | None,
    calendar: WorkingDayCalendar,
) -> datetime:
    """When a held survivor message goes if the advocate has not acted.

    Noon London time on the deadline's day, moved into the survivor's safe window that day
    (its start if it opens later, its last half hour if it closes earlier); never before now.
    On the last working day before a break it stays before 14:00 where the window allows. The
    deadline wins over the window (rule 14): a fallback is never after the deadline unless the
    deadline has already passed, and then it goes at the next safe time.
    """
    if deadline <= now:
        return _late_fallback(now, pref, calendar)
    noon = datetime.combine(
        deadline.astimezone(LONDON).date(), FALLBACK_TIME, tzinfo=LONDON
    ).astimezone(UTC)
    local_noon = noon.astimezone(zone(pref))
    opens, closes = _window_on(local_noon, pref)
    if next_safe_time(noon, pref) == noon:
        candidate = noon
    elif local_noon < opens:
        candidate = opens.astimezone(UTC)
    else:  # the window closed before noon: its last half hour
        candidate = max(opens, closes - timedelta(minutes=30)).astimezone(UTC)
    candidate = next_safe_time(max(candidate, now), pref)
    local = candidate.astimezone(LONDON)
    if calendar.is_last_working_day_before_break(local.date()) and (
        local.time() >= END_OF_WEEK_CUTOFF
    ):
        earlier = datetime.combine(local.date(), time(13, 0), tzinfo=LONDON).astimezone(UTC)
        if earlier >= now and next_safe_time(earlier, pref) == earlier:
            candidate = earlier
    return min(candidate, deadline)


def _late_fallback(
    now: datetime, pref: ContactPreference | None, calendar: WorkingDayCalendar
) -> datetime:
    """For news already past its deadline: a few hours for the advocate, a safe time, and not
    after 14:00 before a weekend or bank holiday (no deadline is left to win over that)."""
    candidate = next_safe_time(now + LATE_GRACE, pref)
    for _ in range(14):  # a fortnight of closed days is more than any calendar has
        local = candidate.astimezone(LONDON)
        day = local.date()
        late_before_break = (
            calendar.is_last_working_day_before_break(day) and local.time() >= END_OF_WEEK_CUTOFF
        )
        if calendar.is_working_day(day) and not late_before_break:
            return candidate
        next_day = calendar.next_working_day(day)
        morning = datetime.combine(next_day, time(10, 0), tzinfo=LONDON).astimezone(UTC)
        candidate = next_safe_time(morning, pref)
    return candidate
