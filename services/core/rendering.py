"""Pure message rendering: Jinja2, sandboxed, strict about undefined names.

Templates live in `services/core/templates/<name>/<channel>.<language>.j2` and are listed, with
their version, in `catalogue.yaml`. An e-mail or letter template starts with a `Subject:` line
(a letter's heading). A notification's channel `letter_task` is written with the `letter` files;
`render_letter` lays a rendered letter out for print, as plain text and as HTML. Every
template is written in each of LANGUAGES (English and Welsh); a language without a file falls back
to English, and the rendered message says which language it is in. Partials start with an
underscore and are per language too (`_event_names.cy.j2`): a Welsh template imports the Welsh
partial. `_support.j2` holds no words, only the support number an SMS gives.

Variables every template can use: recipient_name, advocate_name, advocate_phone, hub_name,
support_line, due_by_text, fallback_text, case_urn, event_type, detail, reason, vrr
("police", "cps" or None), survivor_message (what became of the survivor's own message about
the same event: "sent", "held", "no_safe_channel", "opted_out", "not_wanted" or "none"),
reply_text (what a survivor texted back, for advocate_survivor_replied; None elsewhere),
decision_reason (the reason the agency gave for a decision, from the event's validated data, or
None), meeting_offered (whether the agency offers a meeting to explain it), letter (what became
of a letter the Code requires about the same event: "held", "sent" or "none"), feedback_url
(the survivor's own link to answer a feedback question, for survivor_feedback_question; None
elsewhere), personal_line (an advocate's own line, added when they released a held message, within
services.core.discreet's bounds; None elsewhere).
The words among them (hub_name, support_line, due_by_text, fallback_text, reason, and any
stand-in for a missing name or phone) belong in the message's language; the Welsh templates are
worded to read acceptably while the notifier still gives them in English.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from jinja2 import FileSystemLoader, StrictUndefined, TemplateNotFound
from jinja2.sandbox import SandboxedEnvironment

TEMPLATES_DIR = Path(__file__).with_name("templates")
DEFAULT_LANGUAGE = "en"
LANGUAGES: tuple[str, ...] = ("en", "cy")
"""The languages every template is written in (trauma-informed rule 12: English and Welsh)."""
# A notification's channel -> the channel its template files are written for.
TEMPLATE_CHANNELS: dict[str, str] = {"letter_task": "letter"}
WITH_SUBJECT = ("email", "letter")
LETTER_LAYOUT = "_letter.html.j2"


class TemplateError(ValueError):
    """A template is unknown, missing for a channel, or could not be rendered."""


@dataclass(frozen=True)
class TemplateInfo:
    name: str
    version: int
    audience: str
    channels: tuple[str, ...]


@dataclass(frozen=True)
class RenderedMessage:
    template: str
    template_version: int
    language: str
    subject: str | None
    body: str


@lru_cache(maxsize=4)
def catalogue(directory: Path = TEMPLATES_DIR) -> dict[str, TemplateInfo]:
    raw = yaml.safe_load((directory / "catalogue.yaml").read_text(encoding="utf-8")) or {}
    return {
        name: TemplateInfo(
            name=name,
            version=int(entry["version"]),
            audience=str(entry["audience"]),
            channels=tuple(entry["channels"]),
        )
        for name, entry in raw.items()
    }


@lru_cache(maxsize=4)
def _environment(directory: Path) -> SandboxedEnvironment:
    # autoescape is off: these are plain-text bodies (SMS, text e-mail). Field values cannot
    # inject template syntax because they are passed as data, never compiled.
    env = SandboxedEnvironment(
        loader=FileSystemLoader(str(directory)),
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
        trim_blocks=True,
    )
    env.filters["capitalize_first"] = _capitalize_first
    return env


@lru_cache(maxsize=4)
def _html_environment(directory: Path) -> SandboxedEnvironment:
    # The print layout of a letter: HTML, so every value is escaped (autoescape on).
    return SandboxedEnvironment(
        loader=FileSystemLoader(str(directory)),
        undefined=StrictUndefined,
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _capitalize_first(value: str) -> str:
    """Upper-case the first letter only (Jinja's `capitalize` lower-cases the rest)."""
    return value[:1].upper() + value[1:]


def render(
    name: str,
    channel: str,
    language: str,
    variables: dict[str, Any],
    directory: Path = TEMPLATES_DIR,
) -> RenderedMessage:
    """Render template `name` for `channel` in `language` (English when no translation exists).

    `channel` is a notification's channel (`letter_task` is written with the `letter` files)."""
    channel = TEMPLATE_CHANNELS.get(channel, channel)
    info = catalogue(directory).get(name)
    if info is None:
        raise TemplateError(f"unknown template {name!r}")
    if channel not in info.channels:
        raise TemplateError(f"template {name!r} has no {channel} version")
    env = _environment(directory)
    used = language
    try:
        template = env.get_template(f"{name}/{channel}.{language}.j2")
    except TemplateNotFound:
        used = DEFAULT_LANGUAGE
        try:
            template = env.get_template(f"{name}/{channel}.{DEFAULT_LANGUAGE}.j2")
        except TemplateNotFound as exc:
            raise TemplateError(f"template {name!r} has no file for {channel}") from exc
    try:
        text = template.render(**variables).strip()
    except Exception as exc:  # noqa: BLE001 - name the template, never the values
        raise TemplateError(f"template {name!r} ({channel}) failed: {type(exc).__name__}") from None
    subject = None
    if channel in WITH_SUBJECT:
        first, _, rest = text.partition("\n")
        if not first.startswith("Subject: "):
            raise TemplateError(f"{channel} template {name!r} must start with a Subject: line")
        subject, text = first.removeprefix("Subject: ").strip(), rest.strip()
    return RenderedMessage(name, info.version, used, subject, text)


@dataclass(frozen=True)
class LetterDocument:
    """A letter laid out for print: the same words as plain text and as HTML."""

    text: str
    html: str


_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n+")


def address_lines(address: str) -> list[str]:
    """A postal address as printed, one part a line: as recorded, line by line, or split at
    its commas when it was recorded on one line."""
    text = address.replace("\r\n", "\n").replace("\r", "\n").strip()
    parts = text.split("\n") if "\n" in text else text.split(",")
    return [part.strip() for part in parts if part.strip()]


def render_letter(
    subject: str,
    body: str,
    address: str,
    date_text: str,
    language: str,
    directory: Path = TEMPLATES_DIR,
) -> LetterDocument:
    """A rendered letter (`render(..., "letter_task", ...)`) laid out for a window envelope: the
    address, the date, the heading, then the words. The HTML comes from `_letter.html.j2`, in
    a sandbox with every value escaped; the words are the same in both, so they cannot differ."""
    lines = address_lines(address)
    words = body.replace("\r\n", "\n").replace("\r", "\n").strip()
    paragraphs = [block.split("\n") for block in _PARAGRAPH_BREAK.split(words) if block.strip()]
    text = "\n".join([*lines, "", date_text, "", subject, "", words]) + "\n"
    try:
        html = (
            _html_environment(directory)
            .get_template(LETTER_LAYOUT)
            .render(
                language=language if language in LANGUAGES else DEFAULT_LANGUAGE,
                subject=subject,
                address_lines=lines,
                date_text=date_text,
                paragraphs=paragraphs,
            )
        )
    except Exception as exc:  # noqa: BLE001 - name the layout, never the values
        raise TemplateError(f"letter layout failed: {type(exc).__name__}") from None
    return LetterDocument(text=text, html=html)
