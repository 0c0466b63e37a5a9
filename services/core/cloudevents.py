"""Canonical case events: CloudEvents 1.0 envelopes with a schema per event type.

``validate_event`` checks an event as received (a parsed JSON object) against
``schemas/cloudevent.schema.json`` and ``schemas/data/<type>.schema.json`` and returns a
:class:`CanonicalEvent`, or raises :class:`InvalidEvent` listing every problem found.

Error messages are built here from the failing schema keyword and never contain the offending
value: events carry victims' names and contact details, and errors are logged, returned to the
sender and parked in the DLQ. Field names (JSON Pointers) are considered safe.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

from services.core.urn import InvalidURN, validate_urn

__all__ = [
    "SCHEMAS_DIR_ENV",
    "CanonicalEvent",
    "FieldError",
    "InvalidEvent",
    "known_event_types",
    "payload_hash",
    "schemas_dir",
    "validate_event",
]

SCHEMAS_DIR_ENV = "CAREHUB_SCHEMAS_DIR"
_ENVELOPE_FILE = "cloudevent.schema.json"
_DATA_SUFFIX = ".schema.json"
_TYPE_SHAPE = re.compile(r"(police|cps|court|probation)\.[a-z_]+")


@dataclass(frozen=True)
class FieldError:
    """One problem with an event: where (a JSON Pointer into the event) and what, without values."""

    pointer: str
    message: str


class InvalidEvent(Exception):
    """The event is not valid; ``errors`` lists every problem, sorted by pointer."""

    def __init__(self, errors: Iterable[FieldError]) -> None:
        self.errors: list[FieldError] = sorted(
            dict.fromkeys(errors), key=lambda e: (e.pointer, e.message)
        )
        # Pointers and messages carry no values, so the text is safe to log.
        detail = "; ".join(f"{e.pointer or '/'}: {e.message}" for e in self.errors)
        super().__init__(f"invalid event: {detail}")


@dataclass(frozen=True)
class CanonicalEvent:
    """A valid case event. ``subject`` is the normalised URN; times are aware and in UTC.

    ``data`` and ``raw`` hold personal data, so they are left out of ``repr``.
    """

    specversion: str
    id: str
    source: str
    type: str
    subject: str
    time: datetime
    agencyreceivedat: datetime | None
    data: dict[str, Any] = field(repr=False)
    raw: dict[str, Any] = field(repr=False)


# --- formats -----------------------------------------------------------------------------------
# jsonschema checks "date-time" only when rfc3339-validator is installed, and "email" only for an
# "@". Our own checkers make validation independent of which optional packages are present.

_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_FULL_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+")


def _parse_rfc3339(value: str) -> datetime:
    """Parse an RFC 3339 date-time (offset required) to an aware UTC datetime; ValueError if not."""
    if not _RFC3339.fullmatch(value):
        raise ValueError("not an RFC 3339 date-time")
    text = value.upper()
    # RFC 3339 allows a leap second (:60); datetime does not, so count it as the second before.
    if text[17:19] == "60":
        text = text[:17] + "59" + text[19:]
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except OverflowError:  # year 1 with a positive offset: before the first representable instant
        raise ValueError("date-time out of range") from None


_FORMAT_CHECKER = FormatChecker(formats=())
_FORMAT_CHECKER.checkers.update(Draft202012Validator.FORMAT_CHECKER.checkers)


def _is_date_time(instance: object) -> bool:
    if isinstance(instance, str):
        _parse_rfc3339(instance)
    return True


def _is_date(instance: object) -> bool:
    if isinstance(instance, str):
        if not _FULL_DATE.fullmatch(instance):
            raise ValueError("not a full date")
        date.fromisoformat(instance)
    return True


def _is_email(instance: object) -> bool:
    return not isinstance(instance, str) or bool(_EMAIL.fullmatch(instance))


# Registered by call rather than as decorators: jsonschema is untyped, and a decorator from an
# untyped package would make these functions untyped for mypy.
_FORMAT_CHECKER.checks("date-time", raises=ValueError)(_is_date_time)
_FORMAT_CHECKER.checks("date", raises=ValueError)(_is_date)
_FORMAT_CHECKER.checks("email")(_is_email)


# --- schema loading ----------------------------------------------------------------------------


def schemas_dir() -> Path:
    """Return the directory holding ``cloudevent.schema.json`` and ``data/``.

    The repository's ``schemas/`` is used when present; otherwise ``$CAREHUB_SCHEMAS_DIR``
    (for an installed package, where the schema files are not next to the code).
    """
    candidates = [Path(__file__).resolve().parents[2] / "schemas"]
    if env := os.environ.get(SCHEMAS_DIR_ENV):
        candidates.append(Path(env))
    for candidate in candidates:
        if (candidate / _ENVELOPE_FILE).is_file():
            return candidate
    raise FileNotFoundError(f"no {_ENVELOPE_FILE} found; set {SCHEMAS_DIR_ENV}")


def _compile(path: Path) -> Any:
    schema = json.loads(path.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)  # a broken schema fails loudly at load time
    return Draft202012Validator(schema, format_checker=_FORMAT_CHECKER)


@dataclass(frozen=True)
class _Registry:
    envelope: Any
    data: Mapping[str, Any]


@functools.cache
def _registry() -> _Registry:
    # Loaded on first use rather than at import, so $CAREHUB_SCHEMAS_DIR can be set at start-up.
    root = schemas_dir()
    data: dict[str, Any] = {}
    for path in sorted((root / "data").glob(f"*{_DATA_SUFFIX}")):
        event_type = path.name.removesuffix(_DATA_SUFFIX)
        if not _TYPE_SHAPE.fullmatch(event_type):
            raise ValueError(f"schema file {path.name} is not named after an event type")
        data[event_type] = _compile(path)
    return _Registry(envelope=_compile(root / _ENVELOPE_FILE), data=data)


def known_event_types() -> frozenset[str]:
    """Return the event types that have a data schema (and so can be accepted)."""
    return frozenset(_registry().data)


# --- error messages ----------------------------------------------------------------------------

_TYPE_WORDS = {
    "string": "a string",
    "object": "an object",
    "array": "an array",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "null": "null",
}


def _join(pointer: str, token: object) -> str:
    """Append one reference token to a JSON Pointer, escaping it per RFC 6901."""
    return f"{pointer}/{str(token).replace('~', '~0').replace('/', '~1')}"


def _extra_properties(instance: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    known = schema.get("properties", {})
    patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
    return [k for k in instance if k not in known and not any(p.search(str(k)) for p in patterns)]


def _message(keyword: str | None, expected: Any) -> str:
    """Describe a failed keyword using only what the schema expected, never the instance."""
    if keyword == "type":
        kinds = [expected] if isinstance(expected, str) else list(expected)
        words = [_TYPE_WORDS.get(k, k) for k in kinds]
        alternatives = ", ".join(words[:-1])
        return "must be " + (f"{alternatives} or {words[-1]}" if alternatives else words[-1])
    if keyword == "format":
        return f"does not match the expected format ({expected})"
    if keyword == "minLength":
        return "must not be empty" if expected == 1 else f"is too short (min {expected})"
    simple = {
        "enum": "must be one of the allowed values",
        "const": f"must be {json.dumps(expected)}",
        "pattern": "does not match the expected pattern",
        "maxLength": f"is too long (max {expected})",
        "minItems": f"must have at least {expected} item(s)",
        "maxItems": f"must have at most {expected} items",
        "uniqueItems": "must not contain duplicates",
        "minimum": f"must be at least {expected}",
        "maximum": f"must be at most {expected}",
        None: "is not allowed",  # a `false` schema
    }
    return simple.get(keyword, f"is not valid ({keyword})")


FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}")


def _unexpected(pointer: str, name: object) -> str:
    """Where an unexpected field is: its own pointer if its name looks like a field name, else
    the object that holds it (the name itself could be personal data or terminal escapes)."""
    if isinstance(name, str) and FIELD_NAME.fullmatch(name):
        return _join(pointer, name)
    return pointer or "/"


def _describe(error: Any, prefix: str) -> list[FieldError]:
    """Turn one jsonschema ValidationError into FieldErrors pointing at the field concerned."""
    pointer = prefix
    for token in error.absolute_path:
        pointer = _join(pointer, token)
    keyword = error.validator
    # propertyNames checks each name as its own instance, without adding it to the path; our
    # schemas have no property literally called "propertyNames", so this test is unambiguous.
    # A field name is the sender's choice and may be anything (a phone number, a name,
    # terminal escapes): an unexpected one is named only when it looks like a field name (a
    # typo upstream wants to see); anything else is pointed at through the object holding it.
    if "propertyNames" in error.schema_path:
        return [
            FieldError(
                _unexpected(pointer, error.instance),
                "unexpected field (extension attribute names are lowercase letters and digits,"
                " at most 20 characters)",
            )
        ]
    if keyword == "required":
        # One error per missing name, but only the message names it: recompute from the instance.
        return [
            FieldError(_join(pointer, name), "is required")
            for name in error.validator_value
            if name not in error.instance
        ]
    if keyword == "additionalProperties" and error.validator_value is False:
        return [
            FieldError(_unexpected(pointer, name), "unexpected field")
            for name in _extra_properties(error.instance, error.schema)
        ]
    return [FieldError(pointer, _message(keyword, error.validator_value))]


def _schema_errors(validator: Any, instance: object, prefix: str) -> list[FieldError]:
    return [fe for error in validator.iter_errors(instance) for fe in _describe(error, prefix)]


# --- validation --------------------------------------------------------------------------------


def validate_event(
    obj: object, *, now: datetime, max_skew: timedelta = timedelta(minutes=5)
) -> CanonicalEvent:
    """Validate a received event and return it in canonical form.

    Checks the envelope, that ``type`` has a data schema, ``data`` against it (absent ``data``
    counts as ``{}`` when that is valid for the type), the shape of ``subject`` (a URN), and that
    ``time`` and ``agencyreceivedat`` are no later than ``now + max_skew``. Raises
    :class:`InvalidEvent` with every problem found; ``now`` must be timezone-aware.
    """
    if now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    if not isinstance(obj, dict):
        raise InvalidEvent([FieldError("", "must be an object")])

    registry = _registry()
    errors = _schema_errors(registry.envelope, obj, "")
    # A field that already failed the envelope is not checked again, so each gets one error.
    failed = {e.pointer for e in errors}

    data: dict[str, Any] = obj.get("data", {})
    event_type = obj.get("type")
    if isinstance(event_type, str) and "/type" not in failed:
        data_validator = registry.data.get(event_type)
        if data_validator is None:
            errors.append(FieldError("/type", "unknown event type"))
        elif "data" not in obj:
            if not data_validator.is_valid({}):
                errors.append(FieldError("/data", "is required"))
        elif "/data" not in failed:
            errors.extend(_schema_errors(data_validator, data, "/data"))

    subject = obj.get("subject")
    urn = ""
    if isinstance(subject, str) and "/subject" not in failed:
        try:
            urn = validate_urn(subject)
        except InvalidURN as exc:
            errors.append(FieldError("/subject", str(exc)))

    times: dict[str, datetime | None] = {}
    for name in ("time", "agencyreceivedat"):
        value = obj.get(name)
        if not isinstance(value, str) or f"/{name}" in failed:
            times[name] = None
            continue
        times[name] = parsed = _parse_rfc3339(value)
        if parsed > now + max_skew:
            errors.append(FieldError(f"/{name}", "is in the future"))

    if errors:
        raise InvalidEvent(errors)
    event_time = times["time"]
    assert event_time is not None  # required by the envelope, so present once it is valid
    return CanonicalEvent(
        specversion=obj["specversion"],
        id=obj["id"],
        source=obj["source"],
        type=obj["type"],
        subject=urn,
        time=event_time,
        agencyreceivedat=times["agencyreceivedat"],
        data=data,
        raw=obj,
    )


def payload_hash(obj: Mapping[str, Any]) -> str:
    """Return the SHA-256 hex digest of ``obj`` as canonical JSON (sorted keys, no spaces, UTF-8).

    Equal JSON objects give equal hashes whatever their key order, which is what duplicate
    detection on ``(source, id)`` compares.
    """
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
