"""Every message template as its recipient sees it (`docs/templates.md`).

Rendered from the templates themselves with fake sample values, in every language and channel,
so the page can never drift from the wording the notifier sends; a test checks that
docs/templates.md is current. The limits the template lint test holds every message to are
defined here, so that the page that states them and the test that applies them agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from services.core import sms
from services.core.rendering import (
    LANGUAGES,
    TEMPLATES_DIR,
    RenderedMessage,
    TemplateInfo,
    catalogue,
    render,
    render_letter,
)

LANGUAGE_NAMES: Final[Mapping[str, str]] = {"en": "English", "cy": "Cymraeg (Welsh)"}
CHANNEL_NAMES: Final[Mapping[str, str]] = {"sms": "SMS", "email": "E-mail", "letter": "Letter"}

# --- what every message is held to (tests/unit/test_template_lint.py) ---------------------------

SMS_SEGMENT_LIMIT: Final = 4
"""At most this many segments per SMS, in any language, even when a name forces UCS-2."""

READING_EASE_FLOOR: Final[Mapping[str, float]] = {"survivor": 80.0, "advocate": 60.0}
"""Lowest Flesch reading ease of an English message body, by audience."""

SENTENCE_WORDS_LIMIT: Final[Mapping[str, int]] = {"survivor": 25, "advocate": 30}
"""Most words in one sentence, by audience, in every language."""

# --- the sample a recipient is shown with (fake data only) --------------------------------------

SAMPLE: Final[Mapping[str, Any]] = {
    "recipient_name": "Sam",
    "advocate_name": "Alex Morgan",
    "advocate_phone": "+447700900123",
    "hub_name": "the Care Hub",
    "support_line": (
        "you can call the 24/7 Rape and Sexual Abuse Support Line free on 0808 500 2222"
    ),
    "due_by_text": "Friday 20 November",
    "fallback_text": "Friday 20 November at 12:00",
    "case_urn": "01AB1234524",
    "event_type": "court.hearing_scheduled",
    "detail": "discreet",
    "reason": "no safe channel",
    "vrr": None,
    "survivor_message": "sent",
    "reply_text": None,
    "decision_reason": "There is not enough evidence to take the case to court.",
    "meeting_offered": False,
    "letter": "none",
    "feedback_url": "https://carehub.example.org/feedback/1-abc",
    "personal_line": None,
}
"""Values as the notifier gives them today (English, whatever the message's language)."""

LETTER_ADDRESS: Final = "Sam Example\nFlat 2\n1 Example Road\nExampleton\nZZ99 9ZZ"
"""A letter is shown as printed, to this (fake) address, dated as below."""
LETTER_DATES: Final[Mapping[str, str]] = {"en": "18 November 2026", "cy": "18 Tachwedd 2026"}

SCENARIOS: Final[Mapping[str, Mapping[str, Any]]] = {
    "survivor_welcome": {"event_type": "police.crime_recorded"},
    "advocate_new_referral": {"event_type": "police.crime_recorded"},
    "survivor_get_in_touch": {"event_type": "police.no_further_action"},
    "advocate_tell_first": {
        "event_type": "police.no_further_action",
        "vrr": "police",
        "survivor_message": "held",
    },
    "supervisor_hold_alert": {
        "recipient_name": "Jordan Lee",
        "event_type": "police.no_further_action",
        "survivor_message": "held",
    },
    "advocate_pass_on_update": {"reason": "opted out"},
    "advocate_survivor_replied": {"reply_text": "Can someone call me please"},
    "advocate_preference_not_met": {"reason": "messages in Polish"},
    "survivor_decision_letter": {
        "event_type": "cps.charging_decision",
        "vrr": "cps",
        "meeting_offered": True,
    },
}
"""What each template is shown about, where the sample event would not be typical of it."""

DETAILS: Final = ("discreet", "detailed")


def sample_variables(info: TemplateInfo) -> dict[str, Any]:
    """The sample values for a template: SAMPLE with its scenario, addressed to its audience."""
    scenario = SCENARIOS.get(info.name, {})
    values = {**SAMPLE, **scenario}
    if info.audience == "advocate" and "recipient_name" not in scenario:
        values["recipient_name"] = SAMPLE["advocate_name"]
    return values


def _fenced(message: RenderedMessage) -> list[str]:
    text = (
        message.body if message.subject is None else f"Subject: {message.subject}\n\n{message.body}"
    )
    return ["```text", *text.splitlines(), "```"]


def _fenced_letter(message: RenderedMessage, language: str) -> list[str]:
    """A letter as printed: address, date, heading and words (the HTML has the same words)."""
    assert message.subject is not None
    date = LETTER_DATES.get(language, LETTER_DATES["en"])
    printed = render_letter(message.subject, message.body, LETTER_ADDRESS, date, message.language)
    return ["```text", *printed.text.rstrip("\n").splitlines(), "```"]


def _sms_line(body: str) -> str:
    result = sms.inspect(body)
    plural = "segment" if result.segments == 1 else "segments"
    line = (
        f"{result.encoding}, {result.segments} {plural} (at most {SMS_SEGMENT_LIMIT}), "
        f"{result.characters} characters"
    )
    if result.non_gsm:
        line += "; UCS-2 because of " + ", ".join(f"`{char}`" for char in result.non_gsm)
    return f"*{line}.*"


def _variants(
    info: TemplateInfo, channel: str, language: str, directory: Path
) -> list[tuple[str, RenderedMessage]]:
    """The message in each detail level, or once when the detail level changes nothing."""
    rendered = [
        (
            detail,
            render(
                info.name,
                channel,
                language,
                {**sample_variables(info), "detail": detail},
                directory,
            ),
        )
        for detail in DETAILS
    ]
    if rendered[0][1] == rendered[1][1]:
        return [("", rendered[0][1])]
    return [(f", {detail}", message) for detail, message in rendered]


def _template(info: TemplateInfo, directory: Path) -> list[str]:
    to = "the survivor" if info.audience == "survivor" else "the advocate (or their supervisor)"
    lines = [f"## `{info.name}`", "", f"Version {info.version}, to {to}.", ""]
    for channel in info.channels:
        lines += [f"### {CHANNEL_NAMES.get(channel, channel)}", ""]
        for language in LANGUAGES:
            for label, message in _variants(info, channel, language, directory):
                shown = LANGUAGE_NAMES.get(message.language, message.language)
                if message.language != language:
                    shown += f" (no {LANGUAGE_NAMES.get(language, language)} file yet)"
                if channel == "letter":
                    fenced = _fenced_letter(message, language)
                else:
                    fenced = _fenced(message)
                lines += [f"**{shown}{label}**", "", *fenced, ""]
                if channel == "sms":
                    lines += [_sms_line(message.body), ""]
    return lines


def _sample_table() -> list[str]:
    lines = ["| variable | sample value |", "| --- | --- |"]
    for key, value in SAMPLE.items():
        lines.append(f"| `{key}` | {'None' if value is None else f'`{value}`'} |")
    return lines


def markdown(directory: Path = TEMPLATES_DIR) -> str:
    """The whole page: every template, channel, language and detail level, rendered."""
    survivor, advocate = READING_EASE_FLOOR["survivor"], READING_EASE_FLOOR["advocate"]
    lines = [
        "# Message templates, as recipients see them",
        "",
        "Generated from `services/core/templates` by `carehub templates --markdown`; a test fails",
        "when this page and the templates disagree. Each template is shown in every channel and",
        "language, discreet and detailed where the survivor's choice of detail changes the words,",
        "rendered with the fake sample values below (and, per template, a typical event).",
        "",
        "**The Welsh (Cymraeg) text needs review by a professional Welsh translator before",
        "production use.** Until the notifier gives them in Welsh, some values inside a Welsh",
        "message are English (`hub_name`, `support_line`, `due_by_text`, `fallback_text`,",
        "`reason`, and the stand-ins for a missing name or phone); the Welsh templates are",
        "worded so that they still read acceptably, and this page shows them that way.",
        "",
        "## What every message is held to",
        "",
        "`tests/unit/test_template_lint.py` renders every template in every channel and language,",
        "for each detail level, event type, Victims' Right to Review scheme and outcome of the",
        "survivor's own message that the template uses, and checks that:",
        "",
        "- an English message to a survivor has a Flesch reading ease of at least"
        f' {survivor:g} ("easy"),',
        f'  and one to an advocate at least {advocate:g} ("plain English"). Syllables are counted',
        "  with textstat's hyphenation dictionary (en_GB), because its pronouncing dictionary is",
        "  downloaded at run time and tests run offline; it finds fewer syllables, so scores run",
        "  about 8 points higher than with the pronouncing dictionary; when the floors were set,",
        "  every template met them with either count. There is no Flesch formula for Welsh: there,",
        "  as in English, a sentence to a survivor has at most"
        f" {SENTENCE_WORDS_LIMIT['survivor']} words and one to an",
        f"  advocate at most {SENTENCE_WORDS_LIMIT['advocate']};",
        "- a discreet survivor SMS, and the subject of a discreet survivor e-mail or the",
        "  heading of a letter, name neither the offence nor the justice system, in English or",
        "  Welsh (the word list is in the test);",
        "- every survivor message names the advocate and how to reach them, says where to get",
        "  support and to call 999 in danger. An SMS gives only the support line's number, from",
        "  `_support.j2`: the service's name would say what the text is about;",
        "- a decision open to a Victims' Right to Review says how to ask and by when, in the",
        "  wording of the scheme that applies (police: 3 months; CPS: ordinarily 10 working",
        "  days), and nothing about a review otherwise;",
        f"- an SMS is at most {SMS_SEGMENT_LIMIT} segments in either language, also when a name",
        "  such as Siân makes it UCS-2 (70 characters in one segment, 67 per segment when split;",
        "  GSM-7 takes 160 and 153);",
        "- a value containing template syntax or HTML is shown literally, never evaluated, in a",
        "  letter's HTML too (its layout, `_letter.html.j2`, escapes every value);",
        "- the Welsh templates use the same variables, summarise the same events and name every",
        "  event type, as the English do.",
        "",
        "Letters (`letter_task`) are printed and posted by a person. Each is stored as plain text",
        "and as HTML with the same words, laid out for a window envelope: the address as recorded,",
        "the date it was queued, the heading, then the words. They are shown here as printed.",
        "",
        "## Sample values",
        "",
        *_sample_table(),
        "",
    ]
    for info in catalogue(directory).values():
        lines += _template(info, directory)
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"
