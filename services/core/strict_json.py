"""Reading JSON from outside, strictly: a document that is ambiguous or built to hurt is refused
with a reason, never guessed at. Duplicate keys (which one would count?), NaN and Infinity (not
JSON), numbers with absurdly many digits, and nesting deeper than any real record needs."""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 64
# The integers every JSON reader agrees on (IEEE doubles hold them exactly); a CloudEvents
# integer attribute is 32-bit, well within.
MAX_INTEGER = 2**53
# Control characters no field needs (tab, line feed and carriage return are text).
CONTROL = frozenset(chr(c) for c in range(32) if chr(c) not in "\t\n\r") | {"\x7f"}
_CONTROL_SEARCH = re.compile(
    "[" + "".join(f"\\x{ord(c):02x}" for c in sorted(CONTROL)) + "]"
).search


class JsonProblem(ValueError):
    """A body that is not acceptable JSON: `code` for the DLQ, `message` for the sender."""

    def __init__(self, code: str, message: str, pointer: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.pointer = pointer  # JSON Pointer to the value, when a value is the problem


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise JsonProblem("duplicate_key", "has a duplicate key: an object names a field twice")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise JsonProblem("malformed_json", f"{name} is not a JSON number")


def nesting(raw: bytes | str) -> int:
    """The deepest nesting of brackets outside strings (checked before parsing)."""
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                return deepest
        elif ch in "]}":
            depth -= 1
    return deepest


def loads(raw: bytes | str, *, values: bool = True) -> Any:
    """Parse `raw` or raise JsonProblem naming what is wrong. With `values=False` only the
    document's shape is checked (a batch checks each record's values with `value_problem`, so
    one bad record is refused alone)."""
    try:
        if nesting(raw) > MAX_DEPTH:
            raise JsonProblem("too_deep", f"is nested more than {MAX_DEPTH} levels deep")
        parsed = json.loads(raw, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except JsonProblem:
        raise
    except UnicodeDecodeError:
        raise JsonProblem("malformed_json", "is not valid UTF-8") from None
    except RecursionError:
        raise JsonProblem("too_deep", "is nested too deep") from None
    except ValueError as exc:
        # json's own errors, and int() refusing a number of more than 4300 digits.
        message = (
            "has a number with too many digits"
            if "digits" in str(exc)
            else ("is not valid UTF-8 JSON")
        )
        raise JsonProblem("malformed_json", message) from None
    if values:
        _check_values(parsed)
    return parsed


def value_problem(value: Any) -> JsonProblem | None:
    """What `loads` would refuse in an already parsed value, or None."""
    try:
        _check_values(value)
    except JsonProblem as problem:
        return problem
    return None


def _join(pointer: str, token: str | int) -> str:
    return f"{pointer}/{str(token).replace('~', '~0').replace('/', '~1')}"


def _check_values(value: Any, pointer: str = "") -> None:
    """Refuse values no record needs and some readers would get wrong: text a database cannot
    store (NUL, a lone surrogate), control characters, a string ending in a line break (a
    schema pattern's `$` lets one through), and integers beyond what JSON readers agree on.
    The problem points at the value (a key's own problem, at the object holding it)."""
    found = _first_problem(value)
    if found is not None:
        code, message, path = found
        for token in reversed(path):  # innermost first
            pointer = _join(pointer, token)
        raise JsonProblem(code, message, pointer)


_Problem = tuple[str, str, list[str | int]]  # code, message, the path to it, innermost first


def _text_problem(text: str) -> _Problem | None:
    if _CONTROL_SEARCH(text):
        return "invalid_text", "has a control character in a text", []
    if text.endswith(("\n", "\r")):
        return "invalid_text", "has a text ending in a line break", []
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "invalid_text", "has a text that is not valid Unicode", []
    return None


def _first_problem(value: Any) -> _Problem | None:
    """The first of `_check_values`' problems in `value`, found without building a pointer for
    every value that has none (a record is checked as it comes in: this is the hot path)."""
    if isinstance(value, str):
        return _text_problem(value)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        if abs(value) > MAX_INTEGER:
            return "malformed_json", "has a number too large to read reliably", []
        return None
    found: _Problem | None
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and (found := _text_problem(key)) is not None:
                return found  # a key's problem points at the object holding it
            if (found := _first_problem(item)) is not None:
                found[2].append(key)
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if (found := _first_problem(item)) is not None:
                found[2].append(index)
                return found
    return None
