"""strict_json's value checks: what is refused, and where the refusal points.

`reference` below is the rule as first written (one value at a time, a pointer built for each);
the checker now finds the first problem without building pointers on the way, and must refuse
exactly what the reference refuses, with the same code, message and pointer.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.core import strict_json
from services.core.strict_json import CONTROL, MAX_INTEGER, JsonProblem, value_problem


def _join(pointer: str, token: str | int) -> str:
    return f"{pointer}/{str(token).replace('~', '~0').replace('/', '~1')}"


def reference(value: Any, pointer: str = "") -> tuple[str, str, str] | None:
    if isinstance(value, str):
        if any(ch in CONTROL for ch in value):
            return "invalid_text", "has a control character in a text", pointer
        if value.endswith(("\n", "\r")):
            return "invalid_text", "has a text ending in a line break", pointer
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "invalid_text", "has a text that is not valid Unicode", pointer
    elif isinstance(value, bool):
        return None
    elif isinstance(value, int):
        if abs(value) > MAX_INTEGER:
            return "malformed_json", "has a number too large to read reliably", pointer
    elif isinstance(value, dict):
        for key, item in value.items():
            found = reference(key, pointer) or reference(item, _join(pointer, key))
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if found := reference(item, _join(pointer, index)):
                return found
    return None


def checked(value: Any) -> tuple[str, str, str] | None:
    problem = value_problem(value)
    return None if problem is None else (problem.code, problem.message, problem.pointer)


# Text that is often wrong: control characters, line breaks, lone surrogates, '~' and '/'.
texts = st.text(
    st.one_of(
        st.sampled_from(["a", "é", "~", "/", "\t", "\n", "\r", "\x00", "\x1b", "\x7f", "\ud800"]),
        st.characters(),
    ),
    max_size=8,
)
values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**60), max_value=2**60),
        st.floats(allow_nan=False),
        texts,
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(values)
def test_refuses_what_the_rule_refuses_and_points_where_it_points(value: Any) -> None:
    assert checked(value) == reference(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"a": {"b": ["ok", "bad\x00"]}}, ("invalid_text", "/a/b/1")),
        ({"a/b": {"c~d": "ends\n"}}, ("invalid_text", "/a~1b/c~0d")),
        ({"x": [{"bad\x1bkey": 1}]}, ("invalid_text", "/x/0")),  # a key: its object
        ({"n": [1, 2**53 + 1]}, ("malformed_json", "/n/1")),
        ("\ud800", ("invalid_text", "")),
    ],
)
def test_points_at_the_value_at_fault(value: Any, expected: tuple[str, str]) -> None:
    problem = value_problem(value)
    assert problem is not None
    assert (problem.code, problem.pointer) == expected


def test_a_good_record_passes_and_loads_refuses_a_bad_one() -> None:
    good = {"specversion": "1.0", "data": {"names": ["Sam", "Priya"], "n": 2**53, "ok": True}}
    assert value_problem(good) is None
    with pytest.raises(JsonProblem) as refused:
        strict_json.loads('{"data": {"note": "a\\u0007b"}}')
    assert (refused.value.code, refused.value.pointer) == ("invalid_text", "/data/note")
