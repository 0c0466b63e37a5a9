"""SMS encoding: which alphabet a text message needs and how many segments it will cost.

Why this exists: a text to a survivor must arrive in one piece and read as written. One stray
character from a word processor (a curly apostrophe, an en dash, a zero-width space) is enough
to switch a message from the GSM 7-bit alphabet (160 characters per segment) to UCS-2 (70), so
a one-segment update silently becomes three, arrives out of order on some handsets, or costs
three times as much. Going the other way, forcing text into GSM-7 by replacing letters it lacks
garbles people's names and Welsh words, and Welsh must be offered in Wales. So this module:

* :func:`sanitise` replaces only punctuation and invisible characters that have a plain GSM
  equivalent (quotes, dashes, ellipsis, odd spaces, zero-width characters, bullets, CRLF).
  Letters are never downgraded: ``ŵ``, ``ŷ``, ``â`` stay, and such a text is sent as UCS-2.
* :func:`inspect` reports the encoding, the length in septets or UTF-16 code units, the
  number of segments, and the characters that forced UCS-2, so that an author can see why.
* :func:`to_septets` / :func:`from_septets` map text to unpacked septets and back with the
  tables below (3GPP TS 23.038, section 6.2.1: the default alphabet and its extension table).

The module is pure: no I/O, no clock, no configuration.

Counting rules (3GPP TS 23.040 concatenation with a 6-octet user data header):

* GSM-7: up to 160 septets is one segment; longer texts are split into segments of at most
  153 septets. An extension character (``€``, ``[``, ...) is sent as ESC plus a code, two
  septets that are never split across segments, so a segment may carry only 152.
* UCS-2: up to 70 UTF-16 code units is one segment; longer texts are split into segments of at
  most 67 units, never splitting a surrogate pair (an emoji outside the BMP takes 2 units).
  Strictly UCS-2 covers only the BMP; SMS gateways send such text as UTF-16, which is what is
  counted here.
* An empty text is one segment of 0 units: a gateway still sends (and charges for) a message.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "ESCAPE",
    "GSM7_MULTI_SEGMENT",
    "GSM7_SINGLE_SEGMENT",
    "GSM_BASIC_CHARACTERS",
    "GSM_EXTENSION_CHARACTERS",
    "UCS2_MULTI_SEGMENT",
    "UCS2_SINGLE_SEGMENT",
    "Encoding",
    "SmsEncoding",
    "as_json",
    "from_septets",
    "inspect",
    "is_gsm",
    "sanitise",
    "to_septets",
]

Encoding = Literal["GSM-7", "UCS-2"]

GSM7_SINGLE_SEGMENT: Final = 160
GSM7_MULTI_SEGMENT: Final = 153
UCS2_SINGLE_SEGMENT: Final = 70
UCS2_MULTI_SEGMENT: Final = 67

ESCAPE: Final = 0x1B
"""Septet 0x1B: escape to the extension table. It is not a character of its own."""

# --- 3GPP TS 23.038 section 6.2.1: GSM 7-bit default alphabet -----------------------------------
#
# One string per row of 16 codes; the character at index i of the concatenation has code i.
# Position 0x1B is the escape to the extension table; it is held by a placeholder that is never
# treated as a character. 0x09 is printed in TS 23.038 as capital C cedilla (U+00C7); the
# Unicode mapping file (GSM0338.TXT) uses small c cedilla, and handsets differ. Only U+00C7 is
# accepted here, so text with U+00E7 goes as UCS-2 rather than risk a changed letter.
# The Greek capitals are the Greek code points (U+0394 etc.), not lookalikes such as U+2126 OHM.
_BASIC_ROWS: Final = (
    "@\u00a3$\u00a5\u00e8\u00e9\u00f9\u00ec\u00f2\u00c7\n\u00d8\u00f8\r\u00c5\u00e5",
    # 0x00  @  £  $  ¥  è  é  ù  ì  ò  Ç  LF Ø  ø  CR Å  å
    "\u0394_\u03a6\u0393\u039b\u03a9\u03a0\u03a8\u03a3\u0398\u039e\x1b\u00c6\u00e6\u00df\u00c9",
    # 0x10  Δ  _  Φ  Γ  Λ  Ω  Π  Ψ  Σ  Θ  Ξ  ESC Æ æ  ß  É
    " !\"#\u00a4%&'()*+,-./",
    # 0x20  SP !  "  #  ¤  %  &  '  (  )  *  +  ,  -  .  /
    "0123456789:;<=>?",
    # 0x30  0  1  2  3  4  5  6  7  8  9  :  ;  <  =  >  ?
    "\u00a1ABCDEFGHIJKLMNO",
    # 0x40  ¡  A  B  C  D  E  F  G  H  I  J  K  L  M  N  O
    "PQRSTUVWXYZ\u00c4\u00d6\u00d1\u00dc\u00a7",
    # 0x50  P  Q  R  S  T  U  V  W  X  Y  Z  Ä  Ö  Ñ  Ü  §
    "\u00bfabcdefghijklmno",
    # 0x60  ¿  a  b  c  d  e  f  g  h  i  j  k  l  m  n  o
    "pqrstuvwxyz\u00e4\u00f6\u00f1\u00fc\u00e0",
    # 0x70  p  q  r  s  t  u  v  w  x  y  z  ä  ö  ñ  ü  à
)
_BASIC_TABLE: Final = "".join(_BASIC_ROWS)

# --- 3GPP TS 23.038 section 6.2.1.1: GSM 7-bit default alphabet extension table ---------------
#
# Sent as ESC (0x1B) followed by the code. 0x0D (CR2) and 0x1B (SS2) are reserved control codes
# and carry no character.
_EXTENSION_TABLE: Final[dict[int, str]] = {
    0x0A: "\x0c",  # FORM FEED (page break)
    0x14: "^",  # CIRCUMFLEX ACCENT
    0x28: "{",  # LEFT CURLY BRACKET
    0x29: "}",  # RIGHT CURLY BRACKET
    0x2F: "\\",  # REVERSE SOLIDUS
    0x3C: "[",  # LEFT SQUARE BRACKET
    0x3D: "~",  # TILDE
    0x3E: "]",  # RIGHT SQUARE BRACKET
    0x40: "|",  # VERTICAL LINE
    0x65: "\u20ac",  # EURO SIGN
}

_BASIC_CODES: Final[dict[str, int]] = {
    char: code for code, char in enumerate(_BASIC_TABLE) if code != ESCAPE
}
_EXTENSION_CODES: Final[dict[str, int]] = {char: code for code, char in _EXTENSION_TABLE.items()}

GSM_BASIC_CHARACTERS: Final = frozenset(_BASIC_CODES)
"""The 127 characters of the default alphabet (one septet each)."""
GSM_EXTENSION_CHARACTERS: Final = frozenset(_EXTENSION_CODES)
"""The 10 characters of the extension table (two septets each: ESC and a code)."""

# --- sanitising ----------------------------------------------------------------------------------

_ZERO_WIDTH_JOINER: Final = "\u200d"
_ZERO_WIDTH_NON_JOINER: Final = "\u200c"
_JOINERS: Final = frozenset({_ZERO_WIDTH_JOINER, _ZERO_WIDTH_NON_JOINER})

# Punctuation and spacing with a plain GSM equivalent, and invisible characters (mapped to None,
# i.e. removed). Letters are deliberately absent: no entry may change how a word is spelt. Also
# absent, on purpose: U+00B7 MIDDLE DOT (Catalan l·l), U+02BC MODIFIER LETTER APOSTROPHE and
# U+02BB (letters in several languages), guillemets, and the right-to-left/left-to-right marks.
_REPLACEMENTS: Final[dict[int, str | None]] = {
    # single quotes and primes
    0x2018: "'",  # LEFT SINGLE QUOTATION MARK
    0x2019: "'",  # RIGHT SINGLE QUOTATION MARK (the curly apostrophe)
    0x201A: "'",  # SINGLE LOW-9 QUOTATION MARK
    0x201B: "'",  # SINGLE HIGH-REVERSED-9 QUOTATION MARK
    0x2032: "'",  # PRIME
    0x0060: "'",  # GRAVE ACCENT (typed as an apostrophe; not in the GSM alphabet)
    0x00B4: "'",  # ACUTE ACCENT (spacing, typed as an apostrophe)
    # double quotes
    0x201C: '"',  # LEFT DOUBLE QUOTATION MARK
    0x201D: '"',  # RIGHT DOUBLE QUOTATION MARK
    0x201E: '"',  # DOUBLE LOW-9 QUOTATION MARK
    0x201F: '"',  # DOUBLE HIGH-REVERSED-9 QUOTATION MARK
    0x2033: '"',  # DOUBLE PRIME
    # hyphens and dashes
    0x2010: "-",  # HYPHEN
    0x2011: "-",  # NON-BREAKING HYPHEN
    0x2012: "-",  # FIGURE DASH
    0x2013: "-",  # EN DASH
    0x2014: "-",  # EM DASH
    0x2015: "-",  # HORIZONTAL BAR
    0x2212: "-",  # MINUS SIGN
    # bullets
    0x2022: "-",  # BULLET
    0x2023: "-",  # TRIANGULAR BULLET
    0x2043: "-",  # HYPHEN BULLET
    0x2219: "-",  # BULLET OPERATOR
    # ellipsis
    0x2026: "...",  # HORIZONTAL ELLIPSIS
    # spaces (every Unicode space separator other than U+0020, and TAB)
    0x0009: " ",  # CHARACTER TABULATION
    0x00A0: " ",  # NO-BREAK SPACE
    0x1680: " ",  # OGHAM SPACE MARK
    **{code: " " for code in range(0x2000, 0x200B)},  # EN QUAD .. HAIR SPACE
    0x202F: " ",  # NARROW NO-BREAK SPACE
    0x205F: " ",  # MEDIUM MATHEMATICAL SPACE
    0x3000: " ",  # IDEOGRAPHIC SPACE
    # line and paragraph separators
    0x0085: "\n",  # NEXT LINE
    0x2028: "\n",  # LINE SEPARATOR
    0x2029: "\n",  # PARAGRAPH SEPARATOR
    # invisible characters
    0x00AD: None,  # SOFT HYPHEN
    0x200B: None,  # ZERO WIDTH SPACE
    0x2060: None,  # WORD JOINER
    0xFEFF: None,  # ZERO WIDTH NO-BREAK SPACE (byte order mark)
}


def is_gsm(char: str) -> bool:
    """Whether ``char`` (one character) is in the default alphabet or its extension table."""
    return char in _BASIC_CODES or char in _EXTENSION_CODES


def _drop_stray_joiners(text: str) -> str:
    """Remove zero-width (non-)joiners except between two characters outside the GSM alphabet.

    Between Latin letters a joiner is invisible junk that would force UCS-2. Between two non-GSM
    characters it can carry meaning (an emoji sequence such as a woman health worker, Persian
    and Urdu spelling, Indic conjuncts), and the text is UCS-2 anyway, so it is kept there.
    A run of joiners is kept or dropped as a whole, judged by the characters either side of it.
    """
    if not any(joiner in text for joiner in _JOINERS):
        return text
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] not in _JOINERS:
            out.append(text[i])
            i += 1
            continue
        end = i
        while end < n and text[end] in _JOINERS:
            end += 1
        before = text[i - 1] if i > 0 else None
        after = text[end] if end < n else None
        if before is not None and after is not None and not is_gsm(before) and not is_gsm(after):
            out.append(text[i:end])
        i = end
    return "".join(out)


def _sanitise_once(text: str) -> str:
    text = text.translate(_REPLACEMENTS)
    # Canonical composition only: "e" + U+0301 becomes "é" (in GSM-7), "w" + U+0302 becomes "ŵ".
    # The text reads exactly the same; no letter loses its accent.
    text = unicodedata.normalize("NFC", text)
    text = _drop_stray_joiners(text)
    return text.replace("\r\n", "\n")


def sanitise(text: str) -> str:
    """Return ``text`` with punctuation and invisible characters reduced to plain GSM ones.

    Curly quotes become ``'`` and ``"``; hyphens, dashes, the minus sign and bullets become
    ``-``; an ellipsis becomes ``...``; non-breaking and other Unicode spaces (and tabs) become a
    space; line and paragraph separators become ``\\n``; ``\\r\\n`` becomes ``\\n``; zero-width
    spaces, word joiners, byte order marks and soft hyphens are removed, and zero-width
    (non-)joiners are removed unless they sit between two non-GSM characters (see
    :func:`_drop_stray_joiners`). The text is put in Unicode NFC, which composes decomposed
    accents without changing how anything reads.

    Nothing else changes: letters outside the GSM alphabet (Welsh ``ŵ ŷ â ê î ô û``, any name)
    are kept as they are. Idempotent: sanitising twice gives the same as once.
    """
    # Each step can expose work for another (removing a joiner can bring a letter and a
    # combining accent together, or \r and \n), so repeat until nothing changes. Every pass that
    # changes anything after the first only removes or composes characters, so this ends.
    current = _sanitise_once(text)
    while True:
        following = _sanitise_once(current)
        if following == current:
            return current
        current = following


# --- septets -------------------------------------------------------------------------------------


def _septets_of(char: str) -> int:
    if char in _BASIC_CODES:
        return 1
    if char in _EXTENSION_CODES:
        return 2
    raise ValueError(f"U+{ord(char):04X} is not in the GSM 7-bit alphabet")


def to_septets(text: str) -> bytes:
    """Encode ``text`` as unpacked septets (one byte per septet, values 0 to 127).

    Extension characters become ESC (0x1B) followed by their code. The text is taken as it is:
    call :func:`sanitise` first. Raises ValueError naming the code point and its index (never
    the text, which may be about a case) if a character is in neither table.
    """
    out = bytearray()
    for index, char in enumerate(text):
        code = _BASIC_CODES.get(char)
        if code is not None:
            out.append(code)
            continue
        code = _EXTENSION_CODES.get(char)
        if code is None:
            raise ValueError(f"U+{ord(char):04X} at index {index} is not in the GSM 7-bit alphabet")
        out.append(ESCAPE)
        out.append(code)
    return bytes(out)


def from_septets(septets: Iterable[int]) -> str:
    """Decode unpacked septets (values 0 to 127) produced by :func:`to_septets`.

    Like a handset (TS 23.038 section 6.2.1.1): ESC followed by a code with no extension
    character shows the default-alphabet character for that code; ESC ESC (reserved for another
    extension table) and an ESC at the very end show a space. Raises ValueError for a value
    outside 0 to 127.
    """
    values = list(septets)
    for value in values:
        if not 0 <= value <= 0x7F:
            raise ValueError(f"septet out of range: {value}")
    out: list[str] = []
    i = 0
    while i < len(values):
        value = values[i]
        i += 1
        if value != ESCAPE:
            out.append(_BASIC_TABLE[value])
        elif i == len(values):
            out.append(" ")
        else:
            code = values[i]
            i += 1
            if code in _EXTENSION_TABLE:
                out.append(_EXTENSION_TABLE[code])
            elif code == ESCAPE:
                out.append(" ")
            else:
                out.append(_BASIC_TABLE[code])
    return "".join(out)


# --- inspecting ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmsEncoding:
    """How a text will be sent.

    ``units`` are septets for GSM-7 (an extension character counts 2) and UTF-16 code units for
    UCS-2 (a character outside the BMP, such as most emoji, counts 2). ``non_gsm`` holds the
    distinct characters (code points), in order of first appearance, that forced UCS-2; it is
    empty for GSM-7.
    """

    encoding: Encoding
    characters: int
    units: int
    segments: int
    sanitised: str
    non_gsm: tuple[str, ...]


def _count_segments(sizes: Iterable[int], single: int, multi: int) -> int:
    """Segments for characters of the given sizes, never splitting a character."""
    sizes = list(sizes)
    if sum(sizes) <= single:
        return 1
    segments, used = 1, 0
    for size in sizes:
        if used + size > multi:
            segments += 1
            used = size
        else:
            used += size
    return segments


def _extends_previous(char: str) -> bool:
    """Whether ``char`` joins the character before it as the user sees it (an approximation of
    Unicode extended grapheme clusters good enough for counting: combining marks, variation
    selectors, emoji skin tones and tag characters)."""
    code = ord(char)
    return (
        unicodedata.category(char) in ("Mn", "Me", "Mc")
        or 0x1F3FB <= code <= 0x1F3FF  # EMOJI MODIFIER FITZPATRICK TYPE-1-2 .. TYPE-6
        or 0xE0020 <= code <= 0xE007F  # TAG characters (subdivision flags)
    )


def _user_characters(text: str) -> int:
    """Characters as a person counts them: an accented letter written with a combining accent,
    an emoji with a skin tone or ZWJ sequence, or a flag counts once."""
    count = 0
    after_joiner = False
    pending_flag = False
    for char in text:
        code = ord(char)
        if count and (after_joiner or char == _ZERO_WIDTH_JOINER or _extends_previous(char)):
            after_joiner = char == _ZERO_WIDTH_JOINER
            continue
        after_joiner = False
        if 0x1F1E6 <= code <= 0x1F1FF:  # REGIONAL INDICATOR SYMBOL: two make one flag
            if pending_flag:
                pending_flag = False
                continue
            pending_flag = True
        else:
            pending_flag = False
        count += 1
    return count


def _utf16_units(char: str) -> int:
    return 2 if ord(char) > 0xFFFF else 1


def inspect(text: str) -> SmsEncoding:
    """Sanitise ``text`` and report how it will be sent (see the module docstring for rules).

    GSM-7 if every character of the sanitised text is in the default alphabet or its extension
    table, otherwise UCS-2. An empty text is GSM-7, 0 units, 1 segment.
    """
    clean = sanitise(text)
    non_gsm = tuple(dict.fromkeys(char for char in clean if not is_gsm(char)))
    if non_gsm:
        sizes = [_utf16_units(char) for char in clean]
        encoding: Encoding = "UCS-2"
        segments = _count_segments(sizes, UCS2_SINGLE_SEGMENT, UCS2_MULTI_SEGMENT)
    else:
        sizes = [_septets_of(char) for char in clean]
        encoding = "GSM-7"
        segments = _count_segments(sizes, GSM7_SINGLE_SEGMENT, GSM7_MULTI_SEGMENT)
    units = sum(sizes)
    return SmsEncoding(
        encoding=encoding,
        characters=_user_characters(clean),
        units=units,
        segments=segments,
        sanitised=clean,
        non_gsm=non_gsm,
    )


def as_json(result: SmsEncoding) -> dict[str, str | int | list[str]]:
    """A JSON-ready dict for ``carehub sms inspect TEXT``: encoding, characters, segments,
    sanitised and non_gsm (a list)."""
    return {
        "encoding": result.encoding,
        "characters": result.characters,
        "segments": result.segments,
        "sanitised": result.sanitised,
        "non_gsm": list(result.non_gsm),
    }
