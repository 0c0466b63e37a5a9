"""Safe windows: the times of day a recipient has said contact is safe, in their timezone.

Shared by the rules engine (when a message is planned) and the notifier (when it finally goes),
so both read a window the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

LONDON = ZoneInfo("Europe/London")
DEFAULT_WINDOW = (time(9, 0), time(20, 0))  # trauma-informed rule 2's default for survivors


def zone_named(name: str | None) -> ZoneInfo:
    """The named timezone, or Europe/London when it is missing or unknown."""
    try:
        return ZoneInfo(name) if name else LONDON
    except (ZoneInfoNotFoundError, ValueError):
        return LONDON


def in_window(local: time, start: time, end: time) -> bool:
    if start <= end:
        return start <= local < end
    return local >= start or local < end  # a window across midnight


def next_safe_instant(at: datetime, start: time, end: time, tz: ZoneInfo) -> datetime:
    """`at` if it falls inside the window in `tz`, else when the window next opens (UTC)."""
    local = at.astimezone(tz)
    if in_window(local.time(), start, end):
        return at
    opening = datetime.combine(local.date(), start, tzinfo=tz)
    if opening <= local:
        opening = datetime.combine(local.date() + timedelta(days=1), start, tzinfo=tz)
    return opening.astimezone(UTC)
