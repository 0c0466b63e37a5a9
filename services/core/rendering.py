"""Pure message rendering: Jinja2, sandboxed, strict about undefined names.

Templates live in `services/core/templates/<name>/<channel>.<language>.j2` and are listed, with
their version, in `catalogue.yaml`. An e-mail template starts with a `Subject:` line. Every
template is written in each of LANGUAGES (English and Welsh); a language without a file falls back
to English, and the rendered message says which language it is in. Partials start with an
underscore and are per language too (`_event_names.cy.j2`): a Welsh template imports the Welsh
partial. `_support.j2` holds no words, only the support number an SMS gives.

Variables every template can use: recipient_name, advocate_name, advocate_phone, hub_name,
support_line, due_by_text, fallback_text, case_urn, event_type, detail, reason, vrr
("police", "cps" or None), survivor_message (what became of the survivor's own message about
the same event: "sent", "held", "no_safe_channel", "opted_out", "not_wanted" or "none"),
reply_text (what a survivor texted back, for advocate_survivor_replied; None elsewhere).
The words among them (hub_name, support_line, due_by_text, fallback_text, reason, and any
stand-in for a missing name or phone) belong in the message's language; the Welsh templates are
worded to read acceptably while the notifier still gives them in English.
"""

from __future__ import annotations

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
    """Render template `name` for `channel` in `language` (English when no translation exists)."""
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
    if channel == "email":
        first, _, rest = text.partition("\n")
        if not first.startswith("Subject: "):
            raise TemplateError(f"e-mail template {name!r} must start with a Subject: line")
        subject, text = first.removeprefix("Subject: ").strip(), rest.strip()
    return RenderedMessage(name, info.version, used, subject, text)
