"""The words the notifier puts into templates, in the message's language (English, Welsh).

Dates are Europe/London; a survivor abroad still reads the Victims' Code deadline as it runs.
The Welsh needs a professional translator's review before production (docs/templates.md).
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

LONDON = ZoneInfo("Europe/London")

WORDS: dict[str, dict[str, str]] = {
    "en": {
        # neutral: a text preview must not say what it is about
        "hub_name": "the Care Hub",
        "support_line": (
            "you can call the 24/7 Rape and Sexual Abuse Support Line free on 0808 500 2222"
        ),
        "no_advocate_name": "your support worker",
        "no_advocate_phone": "the Care Hub",
        "no_recipient_name": "there",
        "soon": "soon",
        "at": "at",
    },
    "cy": {
        "hub_name": "y Care Hub",
        "support_line": (
            "gallwch ffonio'r Llinell Gymorth Trais a Cham-drin Rhywiol am ddim, 24/7, ar "
            "0808 500 2222"
        ),
        "no_advocate_name": "eich gweithiwr cymorth",
        "no_advocate_phone": "y Care Hub",
        "no_recipient_name": "chi",
        "soon": "cyn bo hir",
        "at": "am",
    },
}
DAYS = {
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    "cy": (
        "Dydd Llun",
        "Dydd Mawrth",
        "Dydd Mercher",
        "Dydd Iau",
        "Dydd Gwener",
        "Dydd Sadwrn",
        "Dydd Sul",
    ),
}
MONTHS = {
    "en": (
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ),
    "cy": (
        "Ionawr",
        "Chwefror",
        "Mawrth",
        "Ebrill",
        "Mai",
        "Mehefin",
        "Gorffennaf",
        "Awst",
        "Medi",
        "Hydref",
        "Tachwedd",
        "Rhagfyr",
    ),
}


def words(language: str) -> dict[str, str]:
    return WORDS.get(language, WORDS["en"])


def due_text(value: datetime | None, language: str, *, with_time: bool = False) -> str:
    """'Friday 20 November' (or 'Dydd Gwener 20 Tachwedd'), with ' at 12:00' if asked."""
    lang = language if language in WORDS else "en"
    if value is None:
        return WORDS[lang]["soon"]
    local = value.astimezone(LONDON)
    text = f"{DAYS[lang][local.weekday()]} {local.day} {MONTHS[lang][local.month - 1]}"
    return f"{text} {WORDS[lang]['at']} {local:%H:%M}" if with_time else text


def letter_date(value: datetime, language: str) -> str:
    """The date at the top of a letter: '18 November 2026' (or '18 Tachwedd 2026')."""
    lang = language if language in WORDS else "en"
    local = value.astimezone(LONDON)
    return f"{local.day} {MONTHS[lang][local.month - 1]} {local.year}"
