"""Case references: the police/CPS Unique Reference Number (URN).

A URN looks like ``01AB1234524``: a two-digit force code, a two-character unit code (letters or
digits), a serial of five (sometimes seven) digits and a two-digit year. Upstream systems also
write it with spaces, slashes, hyphens or dots (``01 AB 12345 24``, ``01/ab/12345/24``).

A reference that does not fit is never silently dropped by callers: it goes to a person to check.
Error messages therefore say what is wrong with the shape but never repeat the reference itself,
so they can be logged and shown without leaking case data.
"""

from __future__ import annotations

import re

__all__ = ["InvalidURN", "normalise_urn", "validate_urn"]

# Whitespace (including non-breaking spaces), slashes, hyphens, dots, and the Unicode dashes that
# word processors substitute for hyphens when a reference is copied from a letter.
_SEPARATORS = re.compile(r"[\s/.\-\u2010-\u2015\u2212]+")
# Only ASCII is upper-cased: str.upper() maps some non-ASCII letters onto ASCII ones (for
# example dotless i to I), which would let a lookalike reference pass as a real one.
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_URN_SHAPE = re.compile(r"[0-9]{2}[A-Z0-9]{2}(?:[0-9]{5}|[0-9]{7})[0-9]{2}")
_ALNUM = re.compile(r"[A-Z0-9]*")

_SHAPE_HINT = "2-digit force code, 2-character unit, 5 or 7-digit serial, 2-digit year"


class InvalidURN(ValueError):
    """The value is not a case reference. The message never contains the value."""


def normalise_urn(raw: str) -> str:
    """Return ``raw`` upper-cased (ASCII letters) with separators removed.

    Separators are whitespace, ``/``, ``-`` (and Unicode dashes) and ``.``. The result is not
    checked; use :func:`validate_urn` for that. Idempotent: normalising twice changes nothing.
    """
    return _SEPARATORS.sub("", raw).translate(_ASCII_UPPER)


def validate_urn(raw: object) -> str:
    """Return the normalised URN, or raise :class:`InvalidURN` saying what is wrong.

    The message names the problem (not a string, empty, unexpected characters, wrong shape)
    and never echoes ``raw``.
    """
    if not isinstance(raw, str):
        raise InvalidURN("case reference must be a string")
    urn = normalise_urn(raw)
    if not urn:
        raise InvalidURN("case reference is empty")
    if not _ALNUM.fullmatch(urn):
        raise InvalidURN(
            "case reference may contain only letters, digits, spaces, slashes, hyphens and dots"
        )
    if not _URN_SHAPE.fullmatch(urn):
        raise InvalidURN(f"case reference must be {_SHAPE_HINT}")
    return urn
