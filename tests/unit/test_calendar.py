"""Tests of the England-and-Wales working-day calendar and ``due_by``."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.core.calendar import (
    LONDON,
    CalendarFileError,
    WorkingDayCalendar,
    due_by,
    load_calendar,
    london_date,
)

CAL = WorkingDayCalendar()


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# -- known facts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "day",
    [
        date(2026, 1, 1),  # New Year's Day
        date(2026, 4, 3),  # Good Friday
        date(2026, 4, 6),  # Easter Monday
        date(2026, 5, 4),  # early May
        date(2026, 5, 25),  # spring
        date(2026, 8, 31),  # summer
        date(2026, 12, 25),  # Christmas Day, a Friday
        date(2026, 12, 28),  # Boxing Day (Saturday 26th) observed on Monday
        date(2027, 3, 26),  # Good Friday
        date(2027, 3, 29),  # Easter Monday
        date(2027, 5, 3),  # early May
        date(2027, 12, 27),  # Christmas Day (a Saturday) observed
        date(2027, 12, 28),  # Boxing Day (a Sunday) observed
    ],
)
def test_bank_holidays_are_not_working_days(day: date) -> None:
    assert day.weekday() < 5
    assert CAL.holiday_name(day) is not None
    assert not CAL.is_working_day(day)


def test_boxing_day_2026_falls_on_saturday_and_is_observed_on_monday_28th() -> None:
    assert CAL.holiday_name(date(2026, 12, 26)) == "Boxing Day"
    assert CAL.holiday_name(date(2026, 12, 28)) == "Boxing Day (observed)"
    assert CAL.is_working_day(date(2026, 12, 24))
    assert CAL.is_working_day(date(2026, 12, 29))


def test_one_off_holidays_are_known() -> None:
    assert CAL.holiday_name(date(2022, 9, 19)) is not None  # State funeral
    assert CAL.holiday_name(date(2023, 5, 8)) is not None  # Coronation


def test_weekends_and_ordinary_weekdays() -> None:
    assert not CAL.is_working_day(date(2026, 11, 21))  # Saturday
    assert not CAL.is_working_day(date(2026, 11, 22))  # Sunday
    assert CAL.is_working_day(date(2026, 11, 20))  # Friday
    assert CAL.is_working_day(date(2026, 11, 23))  # Monday


def test_far_years_are_loaded_on_demand() -> None:
    assert not CAL.is_working_day(date(2071, 12, 25))
    assert not CAL.is_working_day(date(1999, 12, 28))  # Boxing Day observed (26th a Sunday)
    assert CAL.is_working_day(date(2071, 12, 24))  # a Thursday


def test_count_of_working_days_in_2026() -> None:
    # 261 weekdays, 8 bank holidays on weekdays (Boxing Day is a Saturday, observed Monday).
    assert CAL.working_days_between(date(2025, 12, 31), date(2026, 12, 31)) == 253


# -- arithmetic ----------------------------------------------------------------------------------


def test_add_working_days_skips_weekends_and_holidays() -> None:
    assert CAL.add_working_days(date(2026, 11, 20), 1) == date(2026, 11, 23)
    assert CAL.add_working_days(date(2026, 12, 24), 1) == date(2026, 12, 29)
    assert CAL.add_working_days(date(2026, 12, 24), 5) == date(2027, 1, 5)  # 29,30,31,4,5
    assert CAL.add_working_days(date(2027, 3, 25), 1) == date(2027, 3, 30)  # over Easter


def test_add_zero_working_days() -> None:
    assert CAL.add_working_days(date(2026, 11, 20), 0) == date(2026, 11, 20)
    assert CAL.add_working_days(date(2026, 11, 21), 0) == date(2026, 11, 23)
    assert CAL.add_working_days(date(2026, 12, 25), 0) == date(2026, 12, 29)


def test_add_negative_working_days_is_refused() -> None:
    with pytest.raises(ValueError, match="-1"):
        CAL.add_working_days(date(2026, 11, 20), -1)


def test_next_working_day_is_strictly_after() -> None:
    assert CAL.next_working_day(date(2026, 11, 19)) == date(2026, 11, 20)
    assert CAL.next_working_day(date(2026, 11, 20)) == date(2026, 11, 23)
    assert CAL.next_working_day(date(2027, 12, 24)) == date(2027, 12, 29)


def test_working_days_between() -> None:
    assert CAL.working_days_between(date(2026, 11, 20), date(2026, 11, 20)) == 0
    assert CAL.working_days_between(date(2026, 11, 20), date(2026, 11, 22)) == 0
    assert CAL.working_days_between(date(2026, 11, 20), date(2026, 11, 23)) == 1
    assert CAL.working_days_between(date(2026, 12, 24), date(2027, 1, 5)) == 5
    assert CAL.working_days_between(date(2027, 1, 5), date(2026, 12, 24)) == -5


def test_last_working_day_before_break() -> None:
    assert CAL.is_last_working_day_before_break(date(2026, 11, 20))  # Friday
    assert not CAL.is_last_working_day_before_break(date(2026, 11, 19))  # Thursday
    assert not CAL.is_last_working_day_before_break(date(2026, 11, 21))  # Saturday itself
    assert CAL.is_last_working_day_before_break(date(2026, 12, 24))  # Thursday before Christmas
    assert CAL.is_last_working_day_before_break(date(2027, 3, 25))  # Thursday before Easter


# -- due_by --------------------------------------------------------------------------------------


def test_due_by_friday_afternoon_one_working_day_is_monday_night_gmt() -> None:
    assert due_by(utc(2026, 11, 20, 14, 5), 1, CAL) == utc(2026, 11, 23, 23, 59, 59)


def test_due_by_uses_the_london_day_in_summer() -> None:
    # 23:30Z on Friday is 00:30 BST on Saturday: the clock starts on Saturday.
    start = utc(2026, 6, 5, 23, 30)
    assert london_date(start) == date(2026, 6, 6)
    due = due_by(start, 1, CAL)
    assert due == utc(2026, 6, 8, 22, 59, 59)
    assert due.tzinfo is UTC


def test_due_by_from_christmas_eve() -> None:
    start = utc(2026, 12, 24, 16, 0)
    assert due_by(start, 1, CAL) == utc(2026, 12, 29, 23, 59, 59)
    assert due_by(start, 5, CAL) == utc(2027, 1, 5, 23, 59, 59)


def test_due_by_zero_working_days_is_the_same_working_day() -> None:
    assert due_by(utc(2026, 11, 20, 9, 0), 0, CAL) == utc(2026, 11, 20, 23, 59, 59)
    assert due_by(utc(2026, 11, 21, 9, 0), 0, CAL) == utc(2026, 11, 23, 23, 59, 59)


def test_due_by_accepts_any_offset() -> None:
    from zoneinfo import ZoneInfo

    start = datetime(2026, 6, 6, 1, 30, tzinfo=ZoneInfo("Europe/Paris"))  # Fri 23:30Z
    assert due_by(start, 1, CAL) == utc(2026, 6, 8, 22, 59, 59)


def test_due_by_refuses_a_naive_start() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        due_by(datetime(2026, 11, 20, 14, 5), 1, CAL)


def test_due_by_across_the_clocks_going_forward() -> None:
    # Friday 2027-03-26 is Good Friday; Monday 29th Easter Monday; BST starts Sunday 28th.
    assert due_by(utc(2027, 3, 25, 12, 0), 1, CAL) == utc(2027, 3, 30, 22, 59, 59)


# -- adjustments and the holidays file -----------------------------------------------------------


def test_added_and_removed_holidays() -> None:
    cal = WorkingDayCalendar(
        extra_holidays={date(2027, 5, 10): "Moved early May"},
        removed_holidays=[date(2027, 5, 3)],
    )
    assert cal.is_working_day(date(2027, 5, 3))
    assert not cal.is_working_day(date(2027, 5, 10))
    assert cal.holiday_name(date(2027, 5, 10)) == "Moved early May"
    assert cal.add_working_days(date(2027, 4, 30), 1) == date(2027, 5, 3)
    assert cal.add_working_days(date(2027, 5, 7), 1) == date(2027, 5, 11)
    assert cal.working_days_between(date(2027, 5, 1), date(2027, 5, 14)) == 9
    # The default calendar is not affected.
    assert not CAL.is_working_day(date(2027, 5, 3))


def test_removing_a_day_that_is_no_holiday_is_refused() -> None:
    with pytest.raises(ValueError, match="2027-05-04"):
        WorkingDayCalendar(removed_holidays=[date(2027, 5, 4)])


def test_adding_and_removing_the_same_day_is_refused() -> None:
    with pytest.raises(ValueError, match="both"):
        WorkingDayCalendar(
            extra_holidays={date(2027, 5, 3): "x"}, removed_holidays=[date(2027, 5, 3)]
        )


def test_load_calendar_without_file() -> None:
    cal = load_calendar(None)
    assert not cal.is_working_day(date(2027, 5, 3))


def test_load_calendar_file(tmp_path: Path) -> None:
    path = tmp_path / "holidays.yaml"
    path.write_text(
        "# moved by proclamation\n"
        "add:\n"
        '  - {date: 2027-05-10, name: "Early May bank holiday (moved)"}\n'
        '  - date: "2027-06-04"\n'
        "    name: Jubilee\n"
        "remove: [2027-05-03]\n",
        encoding="utf-8",
    )
    cal = load_calendar(path)
    assert cal.is_working_day(date(2027, 5, 3))
    assert cal.holiday_name(date(2027, 5, 10)) == "Early May bank holiday (moved)"
    assert cal.holiday_name(date(2027, 6, 4)) == "Jubilee"
    assert cal.removed_holidays == frozenset({date(2027, 5, 3)})


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "add:\nremove:\n", "add: []\n"])
def test_load_calendar_empty_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "holidays.yaml"
    path.write_text(text, encoding="utf-8")
    cal = load_calendar(path)
    assert cal.extra_holidays == {}
    assert cal.removed_holidays == frozenset()


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("add: [{date: 2027-05-10, name: x}\n", "", "not valid YAML"),
        ("- 2027-05-03\n", "line 1", "expected a mapping"),
        ("added:\n  - {date: 2027-05-10, name: x}\n", "line 1", "unknown key 'added'"),
        ("remove: 2027-05-03\n", "line 1", "'remove' must be a list"),
        ("remove:\n  - 2027-05-03\n  - 2027-13-01\n", "line 3", "'2027-13-01' is not a date"),
        ("remove:\n  - 2027-05-03T10:00\n", "line 2", "is not a date"),
        ("remove:\n  - 2027-05-04\n", "line 2", "cannot remove 2027-05-04"),
        ("remove:\n  - 2027-05-03\n  - 2027-05-03\n", "line 3", "removed twice"),
        ("add:\n  - 2027-05-10\n", "line 2", "must be a mapping"),
        ("add:\n  - {name: x}\n", "line 2", "needs a 'date'"),
        ("add:\n  - {date: 2027-05-10}\n", "line 2", "needs a non-empty 'name'"),
        ("add:\n  - {date: 2027-05-10, name: ''}\n", "line 2", "non-empty 'name'"),
        ("add:\n  - {date: 2027-05-10, name: x, when: y}\n", "line 2", "unknown key 'when'"),
        (
            "add:\n  - {date: 2027-05-10, name: x}\n  - {date: 2027-05-10, name: y}\n",
            "line 3",
            "added twice (first at line 2)",
        ),
        (
            "add:\n  - {date: 2027-05-03, name: x}\nremove:\n  - 2027-05-03\n",
            "line 4",
            "both added and removed",
        ),
    ],
)
def test_load_calendar_malformed_file(tmp_path: Path, text: str, where: str, problem: str) -> None:
    path = tmp_path / "holidays.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CalendarFileError) as caught:
        load_calendar(path)
    message = str(caught.value)
    assert str(path) in message
    assert where in message
    assert problem in message
    assert isinstance(caught.value, ValueError)


def test_load_calendar_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(CalendarFileError, match="cannot read"):
        load_calendar(path)


# -- properties ----------------------------------------------------------------------------------

instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2090, 12, 31), timezones=st.just(UTC)
)
working_days = st.integers(min_value=0, max_value=40)


@given(start=instants, n=working_days)
def test_due_by_lands_on_a_working_day_at_london_end_of_day(start: datetime, n: int) -> None:
    due = due_by(start, n, CAL)
    assert due.tzinfo is UTC
    local = due.astimezone(LONDON)
    assert local.time() == time(23, 59, 59)
    assert CAL.is_working_day(local.date())


@given(start=instants, n=working_days)
def test_due_by_is_n_working_days_later(start: datetime, n: int) -> None:
    due = due_by(start, n, CAL)
    # With n == 0 a start in the last second of a working day is (just) after the deadline.
    assert due > start if n >= 1 else due >= start.replace(microsecond=0)
    first = london_date(start)
    last = due.astimezone(LONDON).date()
    if n >= 1:
        assert CAL.working_days_between(first, last) == n
        # Exactly the Nth: the day before the deadline day had only N - 1 working days.
        assert CAL.working_days_between(first, last - timedelta(days=1)) == n - 1
    else:
        # The first working day on or after the start day: the only one in [first, last].
        assert CAL.working_days_between(first - timedelta(days=1), last) == 1


@given(a=instants, b=instants, n=working_days)
def test_due_by_is_monotonic_in_clock_start(a: datetime, b: datetime, n: int) -> None:
    early, late = sorted((a, b))
    assert due_by(early, n, CAL) <= due_by(late, n, CAL)


@given(start=instants, n=st.integers(min_value=0, max_value=20))
def test_due_by_is_monotonic_in_working_days(start: datetime, n: int) -> None:
    if n >= 1:
        assert due_by(start, n, CAL) < due_by(start, n + 1, CAL)
    else:
        # On a non-working day, "the same working day" is the next one: the same as 1 WD.
        assert due_by(start, 0, CAL) <= due_by(start, 1, CAL)


@settings(max_examples=200)
@given(
    a=st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 12, 31)),
    span=st.integers(min_value=0, max_value=800),
)
def test_working_days_between_agrees_with_counting(a: date, span: int) -> None:
    b = a + timedelta(days=span)
    counted = sum(1 for i in range(1, span + 1) if CAL.is_working_day(a + timedelta(days=i)))
    assert CAL.working_days_between(a, b) == counted
    assert CAL.working_days_between(b, a) == -counted
