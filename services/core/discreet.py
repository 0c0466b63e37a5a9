"""What a discreet message must never say, and the bounds of an advocate's own line in one.

A survivor's SMS preview can be read by anyone holding their phone, so a discreet message never
names the offence, the system or the people in it (trauma-informed rule 5). The template lint
test holds every template to `FORBIDDEN_IN_DISCREET`; the portal holds an advocate's own line
(`personal_line_problem`) to it and to the bounds of the template it goes into.
"""

from __future__ import annotations

import re
from typing import Final

# English, and Welsh with its mutated forms (treisio/dreisio/nhreisio/threisio, llys/lys, ...).
FORBIDDEN_ENGLISH: Final = (
    r"rape\w*|rapist\w*|sex\w*|assault\w*|abus\w*|offen[cs]\w*|crim\w*|polic\w*|court\w*"
    r"|cps\b|prosecut\w*|victim\w*|suspect\w*|defendant\w*|accused|isva\w*|idva\w*|charg\w*"
    r"|trial\w*|arrest\w*|bail\w*|prison\w*|sentenc\w*|verdict\w*|witness\w*|investigat\w*"
    r"|justice|survivor\w*|violen\w*|sarc\b"
)
FORBIDDEN_WELSH: Final = (
    r"(?:t|d|nh|th)r[ae]is\w*|r?hywiol|ymosod\w*|(?:c|g|ngh|ch)am-?drin\w*"
    r"|(?:t|d|nh|th)rosedd\w*|heddlu\w*|heddw[ae]s\w*|l?lys(?:oedd)?\b|(?:d|dd|n)ioddef\w*"
    r"|d?drwgdyb\w*|amheu\w*|(?:d|dd|n)iffynn\w*|(?:c|g|ngh|ch)yhudd\w*|h?erlyn\w*"
    r"|(?:t|d|nh|th)reial\w*|(?:m|f)echn\w*|(?:c|g|ngh|ch)archar\w*|(?:d|dd|n)edfryd\w*"
    r"|r?heithfarn\w*|(?:t|d|nh|th)yst\b|ymchwil\w*|(?:g|ng)?oroesw\w*|(?:t|d|nh|th)rais\w*"
)
FORBIDDEN_IN_DISCREET: Final = re.compile(
    rf"\b(?:{FORBIDDEN_ENGLISH}|{FORBIDDEN_WELSH})", re.IGNORECASE
)

# The templates with a place for an advocate's own line, and how long it may be.
PERSONAL_LINE_TEMPLATES: Final = frozenset({"survivor_get_in_touch"})
PERSONAL_LINE_MAX: Final = 160
_LINK = re.compile(r"https?://|www\.|\.(?:com|org|uk|net)\b", re.IGNORECASE)


def personal_line_problem(text: str, *, detail: str) -> str | None:
    """What is wrong with an advocate's own line for a survivor's message, or None."""
    if len(text) > PERSONAL_LINE_MAX:
        return f"Your line must be {PERSONAL_LINE_MAX} characters or fewer."
    if any(ch in text for ch in "\r\n\t") or any(ord(ch) < 32 for ch in text):
        return "Your line must be one line of plain text."
    if "{" in text or "}" in text or "<" in text or ">" in text:
        return "Your line cannot contain { } < or >."
    if _LINK.search(text):
        return "Your line cannot contain a web address: the survivor cannot tell it is real."
    if detail != "detailed" and (found := FORBIDDEN_IN_DISCREET.search(text)):
        return (
            f"They chose discreet messages, so your line cannot say \u201c{found.group(0)}\u201d: "
            "anyone who sees their phone could read it."
        )
    return None
