"""The England-and-Wales working-day calendar and Victims' Code deadlines.

A working day is Monday to Friday, except an England-and-Wales bank holiday. Bank holidays come
from the ``holidays`` package (subdivision ``ENG``: England and Wales share their bank holidays),
adjusted by an optional file for holidays added or moved by royal proclamation faster than the
package is released.

``due_by`` turns "N working days after the clock started" into an instant: 23:59:59
Europe/London on the Nth working day after the Europe/London calendar day on which the clock
started, stored in UTC (see ``design.md``, "Time").

Everything here is pure: there is no clock inside, callers pass the instants in.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

import holidays
import yaml

__all__ = [
    "LONDON",
    "CalendarFileError",
    "WorkingDayCalendar",
    "due_by",
    "load_calendar",
    "london_date",
]

LONDON = ZoneInfo("Europe/London")
"""The time zone in which Victims' Code days start and end."""

_END_OF_DAY = time(23, 59, 59)
_ONE_DAY = timedelta(days=1)


class CalendarFileError(ValueError):
    """A holidays file is missing, unreadable or malformed; the message names the file and where."""


class _AdjustmentError(ValueError):
    """A holiday adjustment the calendar rejects; ``day`` is the offending date."""

    def __init__(self, day: date, message: str) -> None:
        super().__init__(message)
        self.day = day


def _package_holidays(year: int) -> dict[date, str]:
    # Asked year by year rather than through one `expand=True` object: that object grows itself on
    # lookup (not safe to share between threads) and a year asked once is cached below anyway.
    return dict(holidays.country_holidays("GB", subdiv="ENG", years=year).items())


class WorkingDayCalendar:
    """Working days in England and Wales: Monday to Friday, not a bank holiday.

    ``extra_holidays`` adds days (date to name) that the ``holidays`` package does not know yet;
    ``removed_holidays`` takes away bank holidays the package lists but that were moved by
    proclamation (add the new date in ``extra_holidays``). Any year can be asked: each year's bank
    holidays are loaded the first time it is needed, then cached. Instances are safe to share
    between threads.
    """

    def __init__(
        self,
        extra_holidays: Mapping[date, str] | None = None,
        removed_holidays: Iterable[date] = (),
    ) -> None:
        """Build a calendar; raise ``ValueError`` if the adjustments contradict themselves.

        A removed day must be a bank holiday the package knows (otherwise the removal is most
        likely a typo that would silently leave the real holiday in place), and a day cannot be
        both added and removed.
        """
        self._extra: dict[date, str] = dict(extra_holidays or {})
        self._removed: frozenset[date] = frozenset(removed_holidays)
        self._years: dict[int, Mapping[date, str]] = {}
        self._lock = threading.Lock()

        both = sorted(self._removed & self._extra.keys())
        if both:
            raise _AdjustmentError(
                both[0], f"{both[0].isoformat()} is both added and removed as a holiday; keep one"
            )
        for day in sorted(self._removed):
            if day not in _package_holidays(day.year):
                raise _AdjustmentError(
                    day,
                    f"cannot remove {day.isoformat()}: it is not an England-and-Wales bank "
                    f"holiday in the holidays package (known that year: "
                    f"{', '.join(d.isoformat() for d in sorted(_package_holidays(day.year)))})",
                )

    @property
    def extra_holidays(self) -> Mapping[date, str]:
        """The days added on top of the package's bank holidays (date to name)."""
        return dict(self._extra)

    @property
    def removed_holidays(self) -> frozenset[date]:
        """The package's bank holidays taken away (moved by proclamation)."""
        return self._removed

    def holidays_in(self, year: int) -> Mapping[date, str]:
        """Every holiday of ``year`` after adjustments, date to name (weekend days included)."""
        found = self._years.get(year)
        if found is None:
            with self._lock:
                found = self._years.get(year)
                if found is None:
                    merged = {
                        d: name
                        for d, name in _package_holidays(year).items()
                        if d not in self._removed
                    }
                    merged.update((d, n) for d, n in self._extra.items() if d.year == year)
                    found = self._years[year] = MappingProxyType(merged)
        return found

    def holiday_name(self, d: date) -> str | None:
        """The name of the holiday on ``d``, or None if ``d`` is not a holiday."""
        return self.holidays_in(d.year).get(d)

    def is_working_day(self, d: date) -> bool:
        """True when ``d`` is Monday to Friday and not a holiday."""
        return d.weekday() < 5 and d not in self.holidays_in(d.year)

    def next_working_day(self, d: date) -> date:
        """The first working day strictly after ``d`` (whatever ``d`` itself is)."""
        d += _ONE_DAY
        while not self.is_working_day(d):
            d += _ONE_DAY
        return d

    def add_working_days(self, d: date, n: int) -> date:
        """The Nth working day strictly after ``d``.

        ``n == 0`` means "the same working day": ``d`` itself if it is a working day, else the next
        working day. Raise ``ValueError`` for a negative ``n``.
        """
        if n < 0:
            raise ValueError(f"working days must be >= 0, got {n}")
        if n == 0:
            return d if self.is_working_day(d) else self.next_working_day(d)
        for _ in range(n):
            d = self.next_working_day(d)
        return d

    def working_days_between(self, start: date, end: date) -> int:
        """The number of working days after ``start`` up to and including ``end``.

        So ``working_days_between(d, add_working_days(d, n)) == n`` for every ``n >= 1``, and a
        day is never counted against itself. If ``end`` is before ``start`` the count is negated:
        ``working_days_between(a, b) == -working_days_between(b, a)``.
        """
        if end < start:
            return -self.working_days_between(end, start)
        count = _weekdays_up_to(end) - _weekdays_up_to(start)
        for year in range(start.year, end.year + 1):
            count -= sum(1 for h in self.holidays_in(year) if start < h <= end and h.weekday() < 5)
        return count

    def is_last_working_day_before_break(self, d: date) -> bool:
        """True when ``d`` is a working day and the next calendar day is not (the "end of week")."""
        return self.is_working_day(d) and not self.is_working_day(d + _ONE_DAY)

    def __repr__(self) -> str:
        return (
            f"WorkingDayCalendar(extra_holidays={self._extra!r}, "
            f"removed_holidays={sorted(self._removed)!r})"
        )


def _weekdays_up_to(d: date) -> int:
    """Mondays to Fridays from 0001-01-01 (a Monday, ordinal 1) up to and including ``d``."""
    weeks, rest = divmod(d.toordinal(), 7)
    return 5 * weeks + min(rest, 5)


def london_date(instant: datetime) -> date:
    """The Europe/London calendar day of an aware instant; ``ValueError`` if it is naive."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"a timezone-aware datetime is required, got naive {instant.isoformat()}")
    return instant.astimezone(LONDON).date()


def due_by(clock_start: datetime, working_days: int, calendar: WorkingDayCalendar) -> datetime:
    """The deadline of a duty of ``working_days`` WD whose clock started at ``clock_start``.

    It is 23:59:59 Europe/London on the Nth working day after the Europe/London calendar day of
    ``clock_start`` (``working_days == 0``: that same day if it is a working day, else the next
    one), returned as an aware UTC datetime with no microseconds. Raise ``ValueError`` if
    ``clock_start`` is naive or ``working_days`` is negative.
    """
    day = calendar.add_working_days(london_date(clock_start), working_days)
    # 23:59:59 is never inside a daylight-saving gap or fold in Europe/London (changes are at
    # 01:00 UTC), so this local time always exists exactly once.
    return datetime.combine(day, _END_OF_DAY, tzinfo=LONDON).astimezone(UTC)


# -- the holidays file ---------------------------------------------------------------------------


def load_calendar(path: Path | None) -> WorkingDayCalendar:
    """The calendar with the adjustments of the holidays file at ``path`` (None: no file).

    The file is YAML with two optional keys::

        add:                      # holidays the package does not know
          - {date: 2027-05-10, name: "Bank holiday by proclamation"}
        remove:                   # package bank holidays moved away
          - 2027-05-03

    Raise ``CalendarFileError`` naming the file, and the line where it applies, if the file cannot
    be read or is malformed (unknown key, bad date, missing name, duplicate, contradiction).
    """
    if path is None:
        return WorkingDayCalendar()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CalendarFileError(f"holidays file {path}: cannot read it: {exc}") from exc
    try:
        # Compose (not load) to keep each node's line number for the error messages.
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise CalendarFileError(f"holidays file {path}: not valid YAML: {exc}") from exc

    def fail(node: Any, problem: str) -> CalendarFileError:
        """The error to raise for ``problem`` at ``node`` (None: the file as a whole)."""
        line = f", line {node.start_mark.line + 1}" if node is not None else ""
        return CalendarFileError(f"holidays file {path}{line}: {problem}")

    if root is None or (isinstance(root, yaml.ScalarNode) and root.value == ""):
        return WorkingDayCalendar()
    if not isinstance(root, yaml.MappingNode):
        raise fail(root, "expected a mapping with keys 'add' and/or 'remove'")

    added: dict[date, str] = {}
    added_at: dict[date, Any] = {}
    removed_at: dict[date, Any] = {}
    for key_node, value_node in root.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if key not in ("add", "remove"):
            raise fail(key_node, f"unknown key {key!r} (expected 'add' or 'remove')")
        if _is_null(value_node):
            continue
        if not isinstance(value_node, yaml.SequenceNode):
            raise fail(value_node, f"'{key}' must be a list")
        for entry in value_node.value:
            if key == "add":
                day, name = _parse_add_entry(entry, fail)
                if day in added:
                    raise fail(
                        entry,
                        f"{day.isoformat()} is added twice "
                        f"(first at line {added_at[day].start_mark.line + 1})",
                    )
                added[day], added_at[day] = name, entry
            else:
                day = _parse_date(entry, fail, "a 'remove' entry")
                if day in removed_at:
                    raise fail(entry, f"{day.isoformat()} is removed twice")
                removed_at[day] = entry

    try:
        return WorkingDayCalendar(extra_holidays=added, removed_holidays=removed_at)
    except _AdjustmentError as exc:
        raise fail(removed_at.get(exc.day), str(exc)) from exc


_Fail = Callable[[Any, str], CalendarFileError]


def _is_null(node: Any) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _parse_date(node: Any, fail: _Fail, what: str) -> date:
    if not isinstance(node, yaml.ScalarNode) or _is_null(node):
        raise fail(node, f"{what} must be a date like 2027-05-03")
    try:
        return date.fromisoformat(str(node.value).strip())
    except ValueError:
        raise fail(node, f"{what} {node.value!r} is not a date like 2027-05-03") from None


def _parse_add_entry(node: Any, fail: _Fail) -> tuple[date, str]:
    if not isinstance(node, yaml.MappingNode):
        raise fail(node, "an 'add' entry must be a mapping like {date: 2027-05-10, name: ...}")
    fields: dict[str, Any] = {}
    for key_node, value_node in node.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if key not in ("date", "name"):
            raise fail(key_node, f"unknown key {key!r} in an 'add' entry (expected date, name)")
        fields[key] = value_node
    if "date" not in fields:
        raise fail(node, "an 'add' entry needs a 'date'")
    day = _parse_date(fields["date"], fail, "the 'date' of an 'add' entry")
    name_node = fields.get("name")
    if (
        not isinstance(name_node, yaml.ScalarNode)
        or _is_null(name_node)
        or not str(name_node.value).strip()
    ):
        raise fail(node, f"the 'add' entry for {day.isoformat()} needs a non-empty 'name'")
    return day, str(name_node.value).strip()
