"""Case references: normalising and validating URNs, without ever echoing them in errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.core.urn import InvalidURN, normalise_urn, validate_urn


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("01AB1234524", "01AB1234524"),
        ("01 AB 12345 24", "01AB1234524"),
        ("01/ab/12345/24", "01AB1234524"),
        ("01-ab.12345-24", "01AB1234524"),
        ("  01ab1234524\t", "01AB1234524"),
        ("01\u00a0AB\u00a012345\u00a024", "01AB1234524"),  # non-breaking spaces
        ("01\u2013AB\u201312345\u201324", "01AB1234524"),  # en dashes from a word processor
        ("06 XY 1234567 25", "06XY123456725"),  # seven-digit serial
        ("06/xy/1234567/25", "06XY123456725"),
        ("2017 12345 26", "20171234526"),  # a numeric unit code
    ],
)
def test_valid_references_normalise(raw: str, expected: str) -> None:
    assert normalise_urn(raw) == expected
    assert validate_urn(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "01AB123424",  # four-digit serial
        "01AB12345624",  # six-digit serial
        "01AB1234567890",  # eight-digit serial
        "A1AB1234524",  # force code not numeric
        "01AB12345AB",  # year not numeric
        "01AB1234524X",
        "01ABC12345624",  # three-character unit
        "01AB1234524 01AB1234524",
    ],
)
def test_wrong_shape_is_rejected_with_the_shape_described(raw: str) -> None:
    with pytest.raises(InvalidURN) as info:
        validate_urn(raw)
    message = str(info.value)
    assert "2-digit force code" in message
    assert raw not in message
    assert normalise_urn(raw) not in message


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("", "empty"),
        (" / - . ", "empty"),
        ("01_AB_12345_24", "only letters, digits"),
        ("01AB12345#24", "only letters, digits"),
        # str.upper() would turn a dotless i into I; a lookalike must not pass as a reference.
        ("01\u0131B1234524", "only letters, digits"),
        ("01ÄB1234524", "only letters, digits"),
    ],
)
def test_other_problems_are_named(raw: str, fragment: str) -> None:
    with pytest.raises(InvalidURN, match=fragment):
        validate_urn(raw)


@pytest.mark.parametrize("raw", [None, 1234524, b"01AB1234524", ["01AB1234524"]])
def test_non_strings_are_rejected(raw: object) -> None:
    with pytest.raises(InvalidURN, match="must be a string"):
        validate_urn(raw)


def test_invalid_urn_is_a_value_error() -> None:
    assert issubclass(InvalidURN, ValueError)


@given(st.text())
def test_normalise_is_idempotent(raw: str) -> None:
    once = normalise_urn(raw)
    assert normalise_urn(once) == once


@given(st.text())
def test_validate_returns_a_fixed_point_or_raises(raw: str) -> None:
    try:
        urn = validate_urn(raw)
    except InvalidURN:
        return
    assert validate_urn(urn) == urn == normalise_urn(raw)


_digits = st.text(alphabet="0123456789", min_size=1, max_size=1)
_separator = st.sampled_from(["", " ", "/", "-", ".", "  ", " / "])


@given(
    force=st.from_regex(r"[0-9]{2}", fullmatch=True),
    unit=st.from_regex(r"[A-Za-z0-9]{2}", fullmatch=True),
    serial=st.from_regex(r"[0-9]{5}|[0-9]{7}", fullmatch=True),
    year=st.from_regex(r"[0-9]{2}", fullmatch=True),
    seps=st.lists(_separator, min_size=3, max_size=3),
)
def test_any_separated_reference_validates_to_its_parts(
    force: str, unit: str, serial: str, year: str, seps: list[str]
) -> None:
    raw = f"{force}{seps[0]}{unit}{seps[1]}{serial}{seps[2]}{year}"
    assert validate_urn(raw) == f"{force}{unit.upper()}{serial}{year}"


@given(st.text(min_size=1).map(lambda s: "QZX" + s))
def test_messages_never_echo_the_value(raw: str) -> None:
    try:
        validate_urn(raw)
    except InvalidURN as exc:
        assert "QZX" not in str(exc)
