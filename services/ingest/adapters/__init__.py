"""Feed adapters: each upstream system's native records in, canonical case events out.

Pure functions, one module per feed format (``police``, ``cps``, ``court``, ``probation``): no
I/O, no database, no broker. A record is either mapped in full to a canonical CloudEvent (which
ingest then checks with ``validate_event``) or refused with an :class:`AdapterError` carrying a
stable reason code and pointers into the native record, never a value from it. The formats are
described in ``docs/feeds.md`` and in ``schemas/feeds/``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from services.core import strict_json
from services.core.cloudevents import FieldError
from services.core.urn import normalise_urn
from services.ingest.adapters import court, cps, police, probation
from services.ingest.adapters.csvfile import csv_rows
from services.ingest.adapters.feedformat import FeedFormat
from services.ingest.adapters.native import REASON_CODES, AdapterError

__all__ = [
    "FEEDS",
    "FORMATS",
    "MAX_RECORD_BYTES",
    "REASON_CODES",
    "AdapterError",
    "csv_records",
    "decode_body",
    "feed_allows",
    "from_body",
    "from_bytes",
    "from_record",
    "record_types",
]

FEEDS: tuple[str, ...] = ("police", "cps", "court", "probation")
FORMATS: dict[str, FeedFormat] = {
    "police": police.FORMAT,
    "cps": cps.FORMAT,
    "court": court.FORMAT,
    "probation": probation.FORMAT,
}
MAX_RECORD_BYTES = 256 * 1024
_BOM = b"\xef\xbb\xbf"
# json.dumps writes NUL as \u0000; an even run of backslashes before it is escaped backslashes.
_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def feed_allows(feed: str, event_type: str) -> bool:
    """Whether ``feed`` may send ``event_type``: each feed sends only its own agency's types."""
    if feed not in FORMATS or not isinstance(event_type, str):
        return False
    agency, dot, what = event_type.partition(".")
    return agency == feed and bool(dot) and bool(what)


def record_types(feed: str) -> tuple[str, ...]:
    """The native record types ``feed`` understands."""
    return tuple(_format(feed).mappers)


def _format(feed: str) -> FeedFormat:
    found = FORMATS.get(feed)
    if found is None:
        raise AdapterError("unknown_feed", [FieldError("", "is not a known feed")])
    return found


def _check_text(record: Mapping[str, Any]) -> None:
    """Refuse a record too large, not JSON-shaped, or with text a database cannot store."""
    try:
        text = json.dumps(record, ensure_ascii=False, allow_nan=False)
    except RecursionError:
        raise AdapterError("too_deep", [FieldError("", "is nested too deeply")]) from None
    except (TypeError, ValueError):  # NaN, Infinity, or something that is not JSON at all
        raise AdapterError(
            "malformed_json", [FieldError("", "holds a value JSON cannot represent")]
        ) from None
    if "\\u0000" in text and _ESCAPED_NUL.search(text):
        raise AdapterError("invalid_text", [FieldError("", "contains a NUL character")])
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise AdapterError(
            "invalid_text", [FieldError("", "contains an unpaired surrogate")]
        ) from None
    if size > MAX_RECORD_BYTES:
        raise AdapterError(
            "oversized", [FieldError("", f"record is larger than {MAX_RECORD_BYTES} bytes")]
        )


def _canonical(feed: str, record: Mapping[str, Any]) -> dict[str, Any]:
    event = dict(record)
    event_type = event.get("type")
    if not isinstance(event_type, str):
        problem = "is required" if event_type is None else "must be a string"
        raise AdapterError("invalid_field", [FieldError("/type", problem)])
    if not feed_allows(feed, event_type):
        raise AdapterError(
            "type_not_allowed_for_feed",
            [FieldError("/type", f"is not an event type the {feed} feed may send")],
        )
    if isinstance(event.get("subject"), str):
        event["subject"] = normalise_urn(event["subject"])
    return event


def from_record(feed: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """Map one record (a parsed JSON object or a CSV row) to a canonical event.

    A record with ``specversion`` is taken as a canonical event already: it is returned as it
    came except for the normalised URN in ``subject``, once its type is one ``feed`` may send.
    Anything else is read as ``feed``'s native format. Raises :class:`AdapterError`; never
    returns anything partly mapped.
    """
    fmt = _format(feed)
    if not isinstance(record, Mapping):
        raise AdapterError("not_an_object", [FieldError("", "must be a JSON object")])
    try:
        _check_text(record)
        if "specversion" in record:
            return _canonical(feed, record)
        return fmt.to_event(record)
    except RecursionError:
        raise AdapterError("too_deep", [FieldError("", "is nested too deeply")]) from None


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _no_constant(text: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("an object has the same key twice")
    return out


def _decode(raw: bytes) -> tuple[list[Any], bool]:
    if len(raw) > MAX_RECORD_BYTES and not raw.lstrip().removeprefix(_BOM).lstrip()[:1] == b"[":
        raise AdapterError(
            "oversized", [FieldError("", f"record is larger than {MAX_RECORD_BYTES} bytes")]
        )
    try:
        text = raw.decode("utf-8-sig")
        if strict_json.nesting(text) > strict_json.MAX_DEPTH:
            raise RecursionError
        parsed = json.loads(
            text,
            parse_float=_finite,
            parse_constant=_no_constant,
            object_pairs_hook=_no_duplicate_keys,
        )
    except UnicodeDecodeError:
        raise AdapterError("malformed_json", [FieldError("", "is not valid UTF-8")]) from None
    except RecursionError:
        raise AdapterError("too_deep", [FieldError("", "is nested too deeply")]) from None
    except ValueError:
        raise AdapterError("malformed_json", [FieldError("", "is not valid JSON")]) from None
    if isinstance(parsed, dict):
        return [parsed], False
    if isinstance(parsed, list):
        return parsed, True
    raise AdapterError("not_an_object", [FieldError("", "must be a JSON object or an array")])


def decode_body(raw: bytes) -> list[Any]:
    """The items of a Kafka record or HTTP body: one JSON object, or a JSON array of them.

    Items are returned as parsed, objects or not, so a caller can report on each (``from_record``
    refuses a non-object). The body as a whole is refused when it is not UTF-8 JSON (NaN and
    infinite numbers included), when it is neither an object nor an array, or when a single
    object is larger than ``MAX_RECORD_BYTES`` (each item of an array is checked on its own).
    """
    return _decode(raw)[0]


def _at(index: int, error: AdapterError) -> AdapterError:
    return AdapterError(
        error.reason_code, [FieldError(f"/{index}{e.pointer}", e.message) for e in error.errors]
    )


def from_body(feed: str, raw: bytes) -> list[dict[str, Any] | AdapterError]:
    """Map every item of a body on its own: an event or the error for each, in order.

    Raises :class:`AdapterError` only when the body as a whole cannot be read (see
    :func:`decode_body`); use this for per-item answers such as HTTP 207.
    """
    _format(feed)
    results: list[dict[str, Any] | AdapterError] = []
    for item in decode_body(raw):
        try:
            results.append(from_record(feed, item))
        except AdapterError as exc:
            results.append(exc)
    return results


def from_bytes(feed: str, raw: bytes) -> list[dict[str, Any]]:
    """Map a Kafka record or HTTP body (a JSON object, or an array of them) to canonical events.

    All or nothing: the first item that cannot be mapped raises its :class:`AdapterError`, with
    pointers prefixed by the item's index when the body is an array.
    """
    _format(feed)
    items, is_array = _decode(raw)
    events: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        try:
            events.append(from_record(feed, item))
        except AdapterError as exc:
            raise _at(index, exc) if is_array else exc from None
    return events


def csv_records(
    feed: str, lines: Iterable[str]
) -> Iterator[tuple[int, dict[str, Any] | AdapterError]]:
    """Stream a CSV drop (header first) as (line number, canonical event or error).

    Each row is mapped with :func:`from_record`, so an event is ready for ``validate_event``.
    Line numbers are where the record starts (the header is line 1). One bad row gives one
    error and the stream carries on; memory stays bounded whatever the file's length. An error's
    ``original`` holds the header and the row as they came, for keeping it protected.
    """
    _format(feed)
    for line, row, original in csv_rows(lines, MAX_RECORD_BYTES):
        if isinstance(row, AdapterError):
            row.original = original
            yield line, row
            continue
        try:
            yield line, from_record(feed, row)
        except AdapterError as exc:
            exc.original = original
            yield line, exc
