"""SMS encoding: GSM-7 versus UCS-2, segment counts, and sanitising that never mangles words."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.core.sms import (
    ESCAPE,
    GSM_BASIC_CHARACTERS,
    GSM_EXTENSION_CHARACTERS,
    SmsEncoding,
    as_json,
    from_septets,
    inspect,
    is_gsm,
    sanitise,
    to_septets,
)

GSM_ALPHABET = sorted(GSM_BASIC_CHARACTERS | GSM_EXTENSION_CHARACTERS)
gsm_text = st.text(alphabet=GSM_ALPHABET, max_size=400)
# GSM characters mixed with the ones sanitise touches and some that force UCS-2.
awkward = st.sampled_from(
    [
        "\u2019",
        "\u201c",
        "\u2013",
        "\u2026",
        "\u00a0",
        "\u200b",
        "\u200c",
        "\u200d",
        "\ufeff",
        "\u00ad",
        "\r",
        "\n",
        "\u0301",
        "\u0302",
        "\u0175",
        "\u00e7",
        "\U0001f600",
        "\U0001f3fd",
        "\u0915",
        "\u0645",
        "\u20ac",
        "e",
        "w",
    ]
)
mixed_text = st.text(alphabet=st.one_of(st.sampled_from(GSM_ALPHABET), awkward), max_size=400)
any_text = st.one_of(st.text(max_size=200), mixed_text)


# --- the tables ----------------------------------------------------------------------------------


def test_the_default_alphabet_has_127_characters_and_the_extension_table_10() -> None:
    assert len(GSM_BASIC_CHARACTERS) == 127  # 128 codes, one of which is the escape
    assert len(GSM_EXTENSION_CHARACTERS) == 10
    assert not GSM_BASIC_CHARACTERS & GSM_EXTENSION_CHARACTERS
    assert "\x1b" not in GSM_BASIC_CHARACTERS


def test_the_extension_table_holds_exactly_the_two_septet_characters() -> None:
    assert set("^{}\\[~]|\u20ac\x0c") == GSM_EXTENSION_CHARACTERS


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (0x00, "COMMERCIAL AT"),
        (0x01, "POUND SIGN"),
        (0x02, "DOLLAR SIGN"),
        (0x03, "YEN SIGN"),
        (0x09, "LATIN CAPITAL LETTER C WITH CEDILLA"),
        (0x0B, "LATIN CAPITAL LETTER O WITH STROKE"),
        (0x10, "GREEK CAPITAL LETTER DELTA"),
        (0x11, "LOW LINE"),
        (0x15, "GREEK CAPITAL LETTER OMEGA"),
        (0x1A, "GREEK CAPITAL LETTER XI"),
        (0x1E, "LATIN SMALL LETTER SHARP S"),
        (0x1F, "LATIN CAPITAL LETTER E WITH ACUTE"),
        (0x20, "SPACE"),
        (0x24, "CURRENCY SIGN"),
        (0x40, "INVERTED EXCLAMATION MARK"),
        (0x5F, "SECTION SIGN"),
        (0x60, "INVERTED QUESTION MARK"),
        (0x7F, "LATIN SMALL LETTER A WITH GRAVE"),
    ],
)
def test_default_alphabet_codes(code: int, name: str) -> None:
    assert to_septets(unicodedata.lookup(name)) == bytes([code])
    assert from_septets([code]) == unicodedata.lookup(name)


def test_line_feed_and_carriage_return_codes() -> None:
    assert to_septets("\n\r") == bytes([0x0A, 0x0D])


@pytest.mark.parametrize(
    ("char", "code"),
    [
        ("\x0c", 0x0A),
        ("^", 0x14),
        ("{", 0x28),
        ("}", 0x29),
        ("\\", 0x2F),
        ("[", 0x3C),
        ("~", 0x3D),
        ("]", 0x3E),
        ("|", 0x40),
        ("\u20ac", 0x65),
    ],
)
def test_extension_codes(char: str, code: int) -> None:
    assert to_septets(char) == bytes([ESCAPE, code])
    assert from_septets([ESCAPE, code]) == char


def test_ascii_letters_and_digits_keep_their_codes() -> None:
    plain = "ABCXYZabcxyz0189 !?"
    assert to_septets(plain) == plain.encode("ascii")


def test_to_septets_refuses_a_non_gsm_character_without_echoing_the_text() -> None:
    with pytest.raises(ValueError, match=r"U\+0175 at index 7") as info:
        to_septets("Secret \u0175")
    assert "Secret" not in str(info.value)


def test_from_septets_behaves_like_a_handset_on_odd_escapes() -> None:
    assert from_septets([ESCAPE, 0x41]) == "A"  # undefined extension: default character
    assert from_septets([0x41, ESCAPE]) == "A "  # trailing escape: a space
    assert from_septets([ESCAPE, ESCAPE]) == " "  # reserved: a space
    with pytest.raises(ValueError):
        from_septets([0x80])


# --- sanitise ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("We\u2019ll call you", "We'll call you"),
        ("\u2018quoted\u2019 and \u201cquoted\u201d", "'quoted' and \"quoted\""),
        ("\u201elow\u201c", '"low"'),
        ("9\u20135 and 9\u20145", "9-5 and 9-5"),
        ("\u22121 and re\u2011open", "-1 and re-open"),
        ("Wait\u2026", "Wait..."),
        ("a\u00a0b\u202fc\u2009d\u3000e\tf", "a b c d e f"),
        ("no\u200bspace", "nospace"),
        ("\ufeffStart", "Start"),
        ("hy\u00adphen", "hyphen"),
        ("ca\u200dfe\u200c", "cafe"),
        ("\u2022 first\n\u2022 second", "- first\n- second"),
        ("line\r\nline\r\n", "line\nline\n"),
        ("one\u2028two", "one\ntwo"),
        ("it`s", "it's"),
        ("e\u0301", "\u00e9"),  # decomposed accent composed: the same letter
    ],
)
def test_sanitise_downgrades_punctuation_and_invisibles(raw: str, expected: str) -> None:
    assert sanitise(raw) == expected


@pytest.mark.parametrize(
    "kept",
    [
        "Dw i'n iawn",
        "\u0175 \u0177 \u00e2 \u00ea \u00ee \u00f4 \u00fb \u0174 \u0176",  # Welsh circumflexes
        "Llywodraeth Cymru, Dydd Mawrth, cyfreithiwr, t\u0177",
        "Fran\u00e7oise Ng\u0169y\u1ec5n Zo\u00eb \u0141ukasz S\u00f8ren",
        "Col\u00b7legi",  # Catalan middle dot stays
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",  # Persian needs its ZWNJ
        "\U0001f469\u200d\u2695\ufe0f",  # a ZWJ emoji sequence stays whole
        "\u041f\u0440\u0438\u0432\u0435\u0442",
        "",
    ],
)
def test_sanitise_never_changes_letters(kept: str) -> None:
    assert sanitise(kept) == kept


@given(any_text)
def test_sanitise_is_idempotent(text: str) -> None:
    once = sanitise(text)
    assert sanitise(once) == once


@given(any_text)
def test_sanitised_text_has_no_crlf_or_stray_invisibles(text: str) -> None:
    clean = sanitise(text)
    assert "\r\n" not in clean
    for invisible in "\u200b\ufeff\u00ad\u2060\u00a0\u2019\u2026":
        assert invisible not in clean


# --- inspect: GSM-7 ------------------------------------------------------------------------------


def test_160_plain_characters_are_one_segment_and_161_are_two() -> None:
    assert inspect("a" * 160) == SmsEncoding("GSM-7", 160, 160, 1, "a" * 160, ())
    assert inspect("a" * 161).segments == 2


@pytest.mark.parametrize(
    ("length", "segments"), [(0, 1), (1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3)]
)
def test_gsm_segment_boundaries(length: int, segments: int) -> None:
    result = inspect("x" * length)
    assert (result.encoding, result.units, result.segments) == ("GSM-7", length, segments)


def test_an_empty_message_is_one_segment_of_nothing() -> None:
    assert inspect("") == SmsEncoding("GSM-7", 0, 0, 1, "", ())


def test_extension_characters_count_two_septets() -> None:
    result = inspect("\u20ac" * 80)
    assert (result.characters, result.units, result.segments) == (80, 160, 1)
    assert inspect("\u20ac" * 80 + "a").segments == 2


def test_a_euro_is_never_split_across_a_segment_boundary() -> None:
    # 152 septets, then a euro: its ESC would be septet 153 and its code septet 154, so the whole
    # euro moves to the second segment. 152 + 2 + 152 = 306 septets would fit 2 segments by
    # division (2 * 153) but need 3 once the euro is kept whole.
    text = "a" * 152 + "\u20ac" + "a" * 152
    result = inspect(text)
    assert (result.units, result.segments) == (306, 3)
    # Moved one septet earlier, the euro ends the first segment exactly and 2 segments do.
    result = inspect("a" * 151 + "\u20ac" + "a" * 153)
    assert (result.units, result.segments) == (306, 2)


def test_curly_quotes_and_an_ellipsis_keep_a_message_gsm() -> None:
    result = inspect("We\u2019ve heard from the court \u201ctoday\u201d\u2026")
    assert result.encoding == "GSM-7"
    assert result.sanitised == 'We\'ve heard from the court "today"...'
    assert result.non_gsm == ()


def test_a_zero_width_space_is_removed_and_does_not_force_ucs2() -> None:
    result = inspect("Hello\u200b there")
    assert result.sanitised == "Hello there"
    assert result.encoding == "GSM-7"
    assert result.characters == 11


# --- inspect: UCS-2 ------------------------------------------------------------------------------


def test_a_welsh_w_circumflex_forces_ucs2_and_is_reported() -> None:
    result = inspect("Diolch, mae\u2019r llys yn d\u0175ad")
    assert result.encoding == "UCS-2"
    assert result.non_gsm == ("\u0175",)
    assert "\u0175" in result.sanitised
    assert result.sanitised.startswith("Diolch, mae'r")  # punctuation still downgraded


def test_non_gsm_lists_distinct_characters_in_order_of_first_appearance() -> None:
    result = inspect("\u0177 a \u0175 b \u0177 c \u00e7")
    assert result.non_gsm == ("\u0177", "\u0175", "\u00e7")


@pytest.mark.parametrize(
    ("length", "segments"), [(70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4)]
)
def test_ucs2_segment_boundaries(length: int, segments: int) -> None:
    result = inspect("\u0175" * length)
    assert (result.encoding, result.units, result.segments) == ("UCS-2", length, segments)


def test_an_emoji_counts_two_units_but_one_character() -> None:
    result = inspect("\U0001f600")
    assert (result.encoding, result.characters, result.units) == ("UCS-2", 1, 2)
    assert inspect("\U0001f600" * 35).segments == 1
    assert inspect("\U0001f600" * 35 + "a").segments == 2


def test_a_surrogate_pair_is_never_split_across_a_segment_boundary() -> None:
    # 66 units, then an emoji whose two units would be 67 and 68: it moves to segment 2.
    text = "\u0175" * 66 + "\U0001f600" + "\u0175" * 66
    result = inspect(text)
    assert result.units == 134
    assert result.segments == 3
    assert inspect("\u0175" * 65 + "\U0001f600" + "\u0175" * 67).segments == 2


@pytest.mark.parametrize(
    ("text", "characters"),
    [
        ("w\u0302", 1),  # composed to one letter
        ("\U0001f469\U0001f3fd\u200d\u2695\ufe0f", 1),  # health worker, skin tone
        ("\U0001f1ec\U0001f1e7\U0001f1fc", 2),  # a flag and a lone regional indicator
        ("a\u0331", 1),  # a letter with a combining mark that has no composed form
    ],
)
def test_characters_are_counted_as_a_person_sees_them(text: str, characters: int) -> None:
    assert inspect(text).characters == characters


def test_as_json() -> None:
    assert as_json(inspect("Ti\u2019n iawn? \u0175")) == {
        "encoding": "UCS-2",
        "characters": 12,
        "segments": 1,
        "sanitised": "Ti'n iawn? \u0175",
        "non_gsm": ["\u0175"],
    }


# --- properties ----------------------------------------------------------------------------------


@given(gsm_text)
def test_text_over_the_gsm_alphabet_is_gsm7(text: str) -> None:
    result = inspect(text)
    assert result.encoding == "GSM-7"
    assert result.non_gsm == ()
    assert result.units == len(to_septets(result.sanitised))


@given(gsm_text)
def test_septets_round_trip(text: str) -> None:
    assert from_septets(to_septets(text)) == text
    clean = sanitise(text)
    assert from_septets(to_septets(clean)) == clean


@given(any_text)
def test_encoding_is_gsm7_exactly_when_every_sanitised_character_is_gsm(text: str) -> None:
    result = inspect(text)
    assert (result.encoding == "GSM-7") == all(is_gsm(c) for c in result.sanitised)
    assert set(result.non_gsm) == {c for c in result.sanitised if not is_gsm(c)}


@given(any_text, any_text)
def test_segments_never_decrease_as_text_grows(head: str, tail: str) -> None:
    assert inspect(head).segments <= inspect(head + tail).segments


@given(mixed_text)
def test_segments_never_decrease_over_prefixes(text: str) -> None:
    counts = [inspect(text[:end]).segments for end in range(0, len(text) + 1, 7)]
    assert counts == sorted(counts)


@given(any_text)
def test_segments_are_at_least_the_plain_division(text: str) -> None:
    result = inspect(text)
    single, multi = (160, 153) if result.encoding == "GSM-7" else (70, 67)
    if result.units <= single:
        assert result.segments == 1
    else:
        assert result.segments >= -(-result.units // multi)
        assert result.segments <= -(-result.units // (multi - 1))
