"""Pure template rendering: every template renders, strictly, discreetly and without injection."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2 import meta

from services.core.rendering import (
    TEMPLATES_DIR,
    TemplateError,
    _environment,
    catalogue,
    render,
)
from services.rules.ruleset import DOCUMENTED_TYPES

CATALOGUE = catalogue()
PAIRS = [(name, channel) for name, info in CATALOGUE.items() for channel in info.channels]
SURVIVOR_SMS = [name for name, info in CATALOGUE.items() if "sms" in info.channels]
FORBIDDEN_IN_DISCREET = re.compile(r"police|court|rape|arrest|offence|charged", re.IGNORECASE)


def variables(**changes: Any) -> dict[str, Any]:
    """A full variable set, with fake, distinctive values."""
    values: dict[str, Any] = {
        "hub_name": "the Care Hub",
        "support_line": "you can call a support line free on 0808 000 0000",
        "advocate_name": "Sam Advocate",
        "advocate_phone": "+447700900456",
        "recipient_name": "Riley",
        "due_by_text": "Tuesday 24 November",
        "case_urn": "01AB1234524",
        "event_type": "police.suspect_arrested",
        "detail": "discreet",
        "reason": "no safe channel",
    }
    values.update(changes)
    return values


def used_variables(name: str, channel: str) -> set[str]:
    env = _environment(TEMPLATES_DIR)
    source = (TEMPLATES_DIR / name / f"{channel}.en.j2").read_text(encoding="utf-8")
    return set(meta.find_undeclared_variables(env.parse(source)))


# -- the catalogue ----------------------------------------------------------------------------


def test_the_catalogue_lists_every_template_directory() -> None:
    on_disk = {p.name for p in TEMPLATES_DIR.iterdir() if p.is_dir()}
    assert set(CATALOGUE) == on_disk


@pytest.mark.parametrize(("name", "channel"), PAIRS)
def test_every_catalogued_channel_has_an_english_file(name: str, channel: str) -> None:
    assert (TEMPLATES_DIR / name / f"{channel}.en.j2").is_file()


def test_every_template_has_a_positive_version_and_an_audience() -> None:
    for info in CATALOGUE.values():
        assert info.version >= 1
        assert info.audience in {"survivor", "advocate"}


def test_advocate_templates_are_email_only() -> None:
    for info in CATALOGUE.values():
        if info.audience == "advocate":
            assert info.channels == ("email",)


# -- rendering --------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "channel"), PAIRS)
@pytest.mark.parametrize("detail", ["discreet", "detailed"])
def test_every_template_renders_for_each_of_its_channels(
    name: str, channel: str, detail: str
) -> None:
    message = render(name, channel, "en", variables(detail=detail))
    assert message.template == name
    assert message.template_version == CATALOGUE[name].version
    assert message.language == "en"
    assert message.body.strip()
    assert "{{" not in message.body and "{%" not in message.body


@pytest.mark.parametrize(("name", "channel"), [p for p in PAIRS if p[1] == "email"])
def test_email_templates_have_a_subject_line(name: str, channel: str) -> None:
    message = render(name, channel, "en", variables())
    assert message.subject
    assert "\n" not in message.subject
    assert not message.body.startswith("Subject:")


@pytest.mark.parametrize(("name", "channel"), [p for p in PAIRS if p[1] == "sms"])
def test_sms_templates_have_no_subject(name: str, channel: str) -> None:
    assert render(name, channel, "en", variables()).subject is None


@pytest.mark.parametrize("name", SURVIVOR_SMS)
def test_survivor_sms_names_the_advocate_and_their_phone(name: str) -> None:
    body = render(name, "sms", "en", variables()).body
    assert "Sam Advocate" in body
    assert "+447700900456" in body


@pytest.mark.parametrize("name", SURVIVOR_SMS)
def test_survivor_sms_says_to_call_999_in_danger(name: str) -> None:
    assert "999" in render(name, "sms", "en", variables()).body


@pytest.mark.parametrize(("name", "channel"), PAIRS)
def test_a_missing_variable_is_a_template_error_that_leaks_no_value(
    name: str, channel: str
) -> None:
    # "detailed" so that every branch, and so every variable, is evaluated.
    full = variables(
        detail="detailed",
        recipient_name="Zebedee-Secret",
        advocate_phone="+447700900999",
        case_urn="99ZZ9999999",
    )
    needed = used_variables(name, channel)
    assert needed
    for missing in sorted(needed):
        partial = {k: v for k, v in full.items() if k != missing}
        with pytest.raises(TemplateError) as info:
            render(name, channel, "en", partial)
        message = str(info.value)
        assert name in message
        for value in full.values():
            assert str(value) not in message.replace(name, "").replace(channel, "")


def test_an_unknown_template_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match="unknown template"):
        render("no_such_template", "sms", "en", variables())


def test_a_channel_the_template_is_not_written_for_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match="no sms version"):
        render("advocate_new_referral", "sms", "en", variables())


@pytest.mark.parametrize(("name", "channel"), PAIRS)
def test_welsh_falls_back_to_english_and_says_so(name: str, channel: str) -> None:
    welsh = render(name, channel, "cy", variables())
    english = render(name, channel, "en", variables())
    assert welsh.language == "en"
    assert welsh.body == english.body
    assert welsh.subject == english.subject


@pytest.mark.parametrize(("name", "channel"), PAIRS)
def test_jinja_syntax_in_a_value_is_rendered_literally(name: str, channel: str) -> None:
    hostile = "{{ 7*7 }}{% raw %}"
    values = {k: hostile for k in variables() if k not in {"detail", "event_type"}}
    message = render(name, channel, "en", variables(**values))
    text = f"{message.subject or ''}\n{message.body}"
    assert "{{ 7*7 }}" in text
    assert "49" not in text


def test_a_detailed_update_says_what_happened() -> None:
    body = render("survivor_case_update", "sms", "en", variables(detail="detailed")).body
    assert "arrested" in body


def test_a_discreet_update_does_not_say_what_happened() -> None:
    body = render("survivor_case_update", "sms", "en", variables(detail="discreet")).body
    assert "arrested" not in body
    assert "there is an update for you" in body


# -- discreet by default (property) -----------------------------------------------------------

FAKE_NAMES = st.sampled_from(["Riley", "Alex", "Jo", "Sam Advocate", "Morgan Example"])
FAKE_PHONES = st.integers(0, 999).map(lambda n: f"+447700900{n:03d}")
EVENT_TYPES = st.one_of(st.sampled_from(sorted(DOCUMENTED_TYPES)), st.just("court.unlisted"))


@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from(SURVIVOR_SMS),
    event_type=EVENT_TYPES,
    recipient=FAKE_NAMES,
    advocate=FAKE_NAMES,
    phone=FAKE_PHONES,
    due=st.sampled_from(["Monday 23 November", "Friday 27 November", "soon"]),
)
def test_a_discreet_survivor_sms_never_names_the_crime_or_the_justice_system(
    name: str, event_type: str, recipient: str, advocate: str, phone: str, due: str
) -> None:
    values = variables(
        event_type=event_type,
        recipient_name=recipient,
        advocate_name=advocate,
        advocate_phone=phone,
        due_by_text=due,
        detail="discreet",
    )
    body = render(name, "sms", "en", values).body
    assert not FORBIDDEN_IN_DISCREET.search(body), body
    assert event_type not in body
    assert values["case_urn"] not in body


# -- templates from another directory ---------------------------------------------------------


def _directory(tmp_path: Path, email_body: str) -> Path:
    (tmp_path / "catalogue.yaml").write_text(
        "plain:\n  version: 3\n  audience: advocate\n  channels: [email]\n", encoding="utf-8"
    )
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "email.en.j2").write_text(email_body, encoding="utf-8")
    return tmp_path


def test_an_email_template_without_a_subject_line_is_a_template_error(tmp_path: Path) -> None:
    directory = _directory(tmp_path, "Hello {{ recipient_name }}\n")
    with pytest.raises(TemplateError, match="Subject"):
        render("plain", "email", "en", {"recipient_name": "Riley"}, directory=directory)


def test_a_catalogued_channel_without_a_file_is_a_template_error(tmp_path: Path) -> None:
    directory = _directory(tmp_path, "Subject: x\nbody\n")
    (tmp_path / "plain" / "email.en.j2").unlink()
    with pytest.raises(TemplateError, match="no file"):
        render("plain", "email", "en", {}, directory=directory)


def test_the_sandbox_refuses_unsafe_attribute_access(tmp_path: Path) -> None:
    directory = _directory(tmp_path, "Subject: x\n{{ ''.__class__.__mro__ }}\n")
    with pytest.raises(TemplateError):
        render("plain", "email", "en", {}, directory=directory)


def test_the_version_comes_from_the_catalogue(tmp_path: Path) -> None:
    directory = _directory(tmp_path, "Subject: Hi {{ recipient_name }}\nBody\n")
    message = render("plain", "email", "en", {"recipient_name": "Riley"}, directory=directory)
    assert (message.template_version, message.subject, message.body) == (3, "Hi Riley", "Body")
