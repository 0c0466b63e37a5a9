"""Reading one native record: typed fields that collect problems under native JSON Pointers.

A :class:`NativeRecord` wraps a parsed JSON object or a CSV row. Every accessor returns the value
in canonical form (an ISO date, a UTC timestamp, an E.164 phone number, a code from a table) or
``None`` when the field is absent or wrong; a wrong or missing required field is recorded in
``errors`` and the mapping carries on, so one pass reports every problem. A mapper therefore
builds its canonical data freely and the caller refuses the result when ``errors`` is not empty:
nothing partially mapped ever leaves the adapter.

Messages say what a field should be and never repeat what it was: native records carry victims'
names, phone numbers and case references. Pointers are built from our own field names and list
positions only, never from keys the sender chose.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from services.core.cloudevents import FieldError

__all__ = ["REASON_CODES", "AdapterError", "NativeRecord", "code_key", "put", "unflatten"]

T = TypeVar("T")
LONDON = ZoneInfo("Europe/London")


REASON_CODES = frozenset(
    {
        "malformed_json",  # not UTF-8, not JSON, or NaN/Infinity
        "malformed_csv",  # a CSV record that cannot be read, or no usable header
        "not_an_object",  # a record that is not a JSON object (or an array of them)
        "oversized",  # a record larger than MAX_RECORD_BYTES
        "too_deep",  # nested deeper than the parser or encoder can follow
        "invalid_text",  # a NUL character or an unpaired surrogate, which no database stores
        "unknown_feed",
        "unknown_record_type",
        "invalid_field",  # a native field needed for the event is missing or malformed
        "type_not_allowed_for_feed",  # a canonical event of another agency's type
    }
)


class AdapterError(ValueError):
    """A record that cannot become a canonical event: a stable reason code and every problem.

    ``reason_code`` is one of :data:`REASON_CODES` (stable snake_case); ``errors`` point into the
    record as it came (the native record, or the canonical event).
    ``original`` may hold the record's text (a CSV header and row) for the caller to keep in
    protected storage; it never appears in ``str()`` or ``repr()``.
    """

    def __init__(self, reason_code: str, errors: Iterable[FieldError] = ()) -> None:
        self.reason_code = reason_code
        self.errors: list[FieldError] = sorted(
            dict.fromkeys(errors), key=lambda e: (e.pointer, e.message)
        )
        self.original: str | None = None
        detail = "; ".join(f"{e.pointer or '/'}: {e.message}" for e in self.errors)
        super().__init__(f"{reason_code}: {detail}" if detail else reason_code)

    def __repr__(self) -> str:
        return f"AdapterError({self.reason_code!r}, errors={self.errors!r})"


# --- value shapes ------------------------------------------------------------------------------

_TRUE = frozenset({"Y", "YES", "TRUE", "T", "1"})
_FALSE = frozenset({"N", "NO", "FALSE", "F", "0"})
_ISO_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_UK_DATE = re.compile(r"([0-9]{2})/([0-9]{2})/([0-9]{4})")
_OFFSET_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_LOCAL_ISO = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2}))?"
)
_LOCAL_UK = re.compile(r"([0-9]{2})/([0-9]{2})/([0-9]{4}) ([0-9]{2}):([0-9]{2})(?::([0-9]{2}))?")
_CLOCK = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])(?::[0-5][0-9])?")
_PHONE_NOISE = re.compile(r"[\s().\-]")
_E164 = re.compile(r"\+[1-9][0-9]{7,14}")
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+")
_INDEX = re.compile(r"[0-9]{1,3}")

DATE_HINT = "must be a date (YYYY-MM-DD or DD/MM/YYYY)"
DATE_TIME_HINT = (
    "must be a date and time (RFC 3339 with an offset, or UK local time as "
    "YYYY-MM-DDTHH:MM[:SS] or DD/MM/YYYY HH:MM[:SS])"
)


def _to_date(text: str) -> str | None:
    if m := _ISO_DATE.fullmatch(text):
        year, month, day = m.groups()
    elif m := _UK_DATE.fullmatch(text):
        day, month, year = m.groups()
    else:
        return None
    try:
        return date(int(year), int(month), int(day)).isoformat()
    except ValueError:
        return None


def _utc_text(moment: datetime) -> str | None:
    try:
        utc = moment.astimezone(UTC)
    except (OverflowError, ValueError):  # before year 1 or after 9999 once in UTC
        return None
    return utc.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


def _to_timestamp(text: str) -> str | None:
    """An instant as RFC 3339 in UTC (whole seconds); local times are Europe/London."""
    if _OFFSET_DATE_TIME.fullmatch(text):
        try:
            moment = datetime.fromisoformat(text.upper().replace(" ", "T"))
        except ValueError:
            return None
        return _utc_text(moment)
    if m := _LOCAL_ISO.fullmatch(text):
        year, month, day, hour, minute, second = m.groups()
    elif m := _LOCAL_UK.fullmatch(text):
        day, month, year, hour, minute, second = m.groups()
    else:
        return None
    try:
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second or 0),
            tzinfo=LONDON,
        )
    except ValueError:
        return None
    return _utc_text(moment)


def _to_phone(text: str) -> str | None:
    """A UK or international number in E.164 form (+447700900123)."""
    digits = _PHONE_NOISE.sub("", text.replace("(0)", ""))
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    elif digits.startswith("0"):
        digits = "+44" + digits[1:]
    return digits if _E164.fullmatch(digits) else None


def code_key(text: str) -> str:
    return re.sub(r"[\s\-]+", "_", text.strip()).upper()


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


# --- CSV rows and other flattened records ------------------------------------------------------

MAX_PATH_SEGMENTS = 4


def unflatten(fields: Mapping[Any, Any]) -> dict[str, Any]:
    """Nest dotted names (``parties.0.surname``) the way a CSV row spells nested fields.

    Blank values are dropped (a CSV row leaves the columns of other record types empty). A plain
    name wins over dotted names under it; a name with more than ``MAX_PATH_SEGMENTS`` parts, or
    an empty part, is no field of any format and is dropped. List positions stay as digit keys:
    :meth:`NativeRecord.items` reads them as a list.
    """
    if not any(isinstance(k, str) and "." in k for k in fields):
        return {k: v for k, v in fields.items() if isinstance(k, str)}
    nested: dict[str, Any] = {}
    dotted: list[tuple[list[str], Any]] = []
    for key, value in fields.items():
        if (
            not isinstance(key, str)
            or value is None
            or (isinstance(value, str) and not value.strip())
        ):
            continue
        if "." in key:
            dotted.append((key.split("."), value))
        else:
            nested[key] = value
    plain = set(nested)
    for segments, value in dotted:
        if len(segments) > MAX_PATH_SEGMENTS or not all(segments) or segments[0] in plain:
            continue
        node = nested
        for segment in segments[:-1]:
            child = node.setdefault(segment, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            if not isinstance(node.get(segments[-1]), dict):
                node[segments[-1]] = value
    return nested


# --- the reader --------------------------------------------------------------------------------


class NativeRecord:
    """Typed access to one native object; problems go to ``errors`` (shared with nested objects)."""

    def __init__(
        self, fields: Mapping[str, Any], pointer: str = "", errors: list[FieldError] | None = None
    ) -> None:
        self._fields = fields
        self._pointer = pointer
        self.errors: list[FieldError] = [] if errors is None else errors

    def pointer(self, name: str) -> str:
        return f"{self._pointer}/{_escape(name)}"

    def fail(self, name: str, message: str) -> None:
        self.errors.append(FieldError(self.pointer(name), message))

    def has(self, name: str) -> bool:
        """Whether the field is given: present, not null and not blank text."""
        value = self._fields.get(name)
        return value is not None and not (isinstance(value, str) and not value.strip())

    def _raw(self, name: str, required: bool) -> Any:
        if not self.has(name):
            if required:
                self.fail(name, "is required")
            return None
        return self._fields[name]

    def text(self, name: str, *, required: bool = False, max_len: int = 2000) -> str | None:
        """Text (a number is taken as its digits), trimmed; at most ``max_len`` characters."""
        value = self._raw(name, required)
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            self.fail(name, "must be text")
            return None
        value = value.strip()
        if len(value) > max_len:
            self.fail(name, f"is too long (max {max_len})")
            return None
        return value

    def matching(
        self, name: str, shape: re.Pattern[str], hint: str, *, required: bool = False
    ) -> str | None:
        value = self.text(name, required=required, max_len=200)
        if value is not None and not shape.fullmatch(value):
            self.fail(name, hint)
            return None
        return value

    def flag(self, name: str, *, required: bool = False) -> bool | None:
        """A yes/no field: JSON true/false, or Y/N, YES/NO, TRUE/FALSE, 1/0 as text."""
        value = self._raw(name, required)
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str):
            key = value.strip().upper()
            if key in _TRUE:
                return True
            if key in _FALSE:
                return False
        self.fail(name, "must be Y or N (or true or false)")
        return None

    def integer(
        self, name: str, *, required: bool = False, minimum: int = 0, maximum: int = 1200
    ) -> int | None:
        value = self._raw(name, required)
        if value is None:
            return None
        if isinstance(value, str):
            digits = value.strip()
            if digits.isascii() and digits.isdigit():
                # More digits than any bound needs: out of range, without a huge int conversion.
                value = int(digits) if len(digits) <= 12 else maximum + 1
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(name, "must be a whole number")
            return None
        if not minimum <= value <= maximum:
            self.fail(name, f"must be from {minimum} to {maximum}")
            return None
        return value

    def date(self, name: str, *, required: bool = False) -> str | None:
        value = self.text(name, required=required, max_len=40)
        if value is None:
            return None
        if (iso := _to_date(value)) is None:
            self.fail(name, DATE_HINT)
        return iso

    def timestamp(self, name: str, *, required: bool = False) -> str | None:
        value = self.text(name, required=required, max_len=60)
        if value is None:
            return None
        if (moment := _to_timestamp(value)) is None:
            self.fail(name, DATE_TIME_HINT)
        return moment

    def clock(self, name: str, *, required: bool = False) -> str | None:
        """A local time of day as HH:MM (seconds, if given, are dropped)."""
        value = self.text(name, required=required, max_len=20)
        if value is None:
            return None
        if not (m := _CLOCK.fullmatch(value)):
            self.fail(name, "must be a time of day (HH:MM, 24-hour clock)")
            return None
        return f"{m.group(1)}:{m.group(2)}"

    def phone(self, name: str) -> str | None:
        value = self.text(name, max_len=40)
        if value is None:
            return None
        if (number := _to_phone(value)) is None:
            self.fail(name, "must be a UK phone number or an international one starting with +")
        return number

    def email(self, name: str) -> str | None:
        value = self.text(name, max_len=254)
        if value is not None and not _EMAIL.fullmatch(value):
            self.fail(name, "must be an e-mail address")
            return None
        return value

    def code(self, name: str, table: Mapping[str, T], *, required: bool = False) -> T | None:
        """A code from ``table`` (case, spaces and hyphens do not matter)."""
        value = self.text(name, required=required, max_len=100)
        if value is None:
            return None
        found = table.get(code_key(value))
        if found is None:
            self.fail(name, "must be one of: " + ", ".join(table))
        return found

    def _entries(self, name: str, required: bool, max_items: int) -> list[tuple[str, Any]] | None:
        """A list's (position, item) pairs, blanks skipped; a CSV row gives digit-keyed objects."""
        value = self._raw(name, required)
        if value is None:
            return None
        if isinstance(value, list):
            pairs = [(str(i), item) for i, item in enumerate(value)]
        elif isinstance(value, dict) and all(
            isinstance(k, str) and _INDEX.fullmatch(k) for k in value
        ):
            pairs = sorted(value.items(), key=lambda kv: int(kv[0]))
        else:
            self.fail(name, "must be a list")
            return None
        pairs = [
            (i, item)
            for i, item in pairs
            if item is not None and not (isinstance(item, str) and not item.strip())
        ]
        if len(pairs) > max_items:
            self.fail(name, f"must have at most {max_items} items")
            return None
        if required and not pairs:
            self.fail(name, "must have at least 1 item")
            return None
        return pairs

    def texts(
        self, name: str, *, required: bool = False, max_items: int = 50, max_len: int = 500
    ) -> list[str] | None:
        """A list of text items; ``[]`` when given empty, ``None`` when absent."""
        pairs = self._entries(name, required, max_items)
        if pairs is None:
            return None
        out: list[str] = []
        for index, item in pairs:
            where = f"{self.pointer(name)}/{index}"
            if not isinstance(item, str):
                self.errors.append(FieldError(where, "must be text"))
            elif len(item.strip()) > max_len:
                self.errors.append(FieldError(where, f"is too long (max {max_len})"))
            else:
                out.append(item.strip())
        return out

    def items(
        self, name: str, *, required: bool = False, max_items: int = 100
    ) -> list[NativeRecord] | None:
        """A list of objects, each read with its own pointer."""
        pairs = self._entries(name, required, max_items)
        if pairs is None:
            return None
        out: list[NativeRecord] = []
        for index, item in pairs:
            where = f"{self.pointer(name)}/{index}"
            if isinstance(item, Mapping):
                out.append(NativeRecord(item, where, self.errors))
            else:
                self.errors.append(FieldError(where, "must be an object"))
        return out


def put(data: dict[str, Any], key: str, value: object) -> None:
    """Set ``data[key]`` only when there is a value: absent stays absent in canonical data."""
    if value is not None:
        data[key] = value
