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
    LANGUAGES,
    LETTER_LAYOUT,
    TEMPLATES_DIR,
    TemplateError,
    _environment,
    catalogue,
    render,
)
from services.rules.ruleset import DOCUMENTED_TYPES, load_rules

CATALOGUE = catalogue()
RULES = load_rules()
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
        "fallback_text": "Tuesday 24 November at 12:00",
        "vrr": None,
        "survivor_message": "sent",
        "reply_text": None,
        "decision_reason": None,
        "meeting_offered": False,
        "letter": "none",
        "feedback_url": "https://carehub.example.org/feedback/1-abc",
        "personal_line": None,
    }
    values.update(changes)
    return values


# The variables rendering.py documents: every template may use these and only these.
DOCUMENTED_VARIABLES = frozenset(
    {
        "recipient_name",
        "advocate_name",
        "advocate_phone",
        "hub_name",
        "support_line",
        "due_by_text",
        "fallback_text",
        "case_urn",
        "event_type",
        "detail",
        "reason",
        "vrr",
        "survivor_message",
        "reply_text",
        "decision_reason",
        "meeting_offered",
        "letter",
        "feedback_url",
        "personal_line",
    }
)
# What became of the survivor's own message about the same event, as the notifier says it.
SURVIVOR_MESSAGES = ("sent", "held", "no_safe_channel", "opted_out", "not_wanted", "none")


def used_variables(name: str, channel: str) -> set[str]:
    env = _environment(TEMPLATES_DIR)
    source = (TEMPLATES_DIR / name / f"{channel}.en.j2").read_text(encoding="utf-8")
    return set(meta.find_undeclared_variables(env.parse(source)))


# -- the catalogue ----------------------------------------------------------------------------


def test_the_catalogue_lists_every_template_directory() -> None:
    on_disk = {p.name for p in TEMPLATES_DIR.iterdir() if p.is_dir()}
    assert set(CATALOGUE) == on_disk


def test_partials_start_with_an_underscore_and_are_not_templates() -> None:
    partials = sorted(p.relative_to(TEMPLATES_DIR) for p in TEMPLATES_DIR.rglob("_*.j2"))
    for language in LANGUAGES:
        assert Path(f"_event_names.{language}.j2") in partials
        assert Path(f"survivor_case_update/_summaries.{language}.j2") in partials
    assert Path("_support.j2") in partials
    assert not [name for name in CATALOGUE if name.startswith("_")]
    for partial in partials:
        assert partial.stem not in CATALOGUE
        assert partial.parent.name in ("", *CATALOGUE)


def test_every_file_is_the_catalogue_a_partial_or_a_catalogued_channel() -> None:
    for path in TEMPLATES_DIR.rglob("*"):
        if path.is_dir():
            continue
        relative = path.relative_to(TEMPLATES_DIR)
        if relative == Path("catalogue.yaml") or path.name.startswith("_"):
            continue
        assert len(relative.parts) == 2, relative
        name, filename = relative.parts
        channel, language, suffix = filename.split(".")
        assert name in CATALOGUE, relative
        assert channel in CATALOGUE[name].channels, relative
        assert (suffix, len(language)) == ("j2", 2), relative


@pytest.mark.parametrize(
    "partial", ["_event_names", "_event_names.cy", "_support", "survivor_case_update/_summaries"]
)
def test_a_partial_cannot_be_rendered_as_a_template(partial: str) -> None:
    with pytest.raises(TemplateError, match="unknown template"):
        render(partial, "email", "en", variables())


def test_templates_use_only_the_documented_variables() -> None:
    env = _environment(TEMPLATES_DIR)
    used: set[str] = set()
    for path in TEMPLATES_DIR.rglob("*.j2"):
        if path.name == LETTER_LAYOUT:
            continue  # the print layout of a letter takes the rendered letter, not these
        used |= meta.find_undeclared_variables(env.parse(path.read_text(encoding="utf-8")))
    assert used <= DOCUMENTED_VARIABLES, used - DOCUMENTED_VARIABLES
    assert {"fallback_text", "vrr", "survivor_message"} <= used
    assert set(variables()) == DOCUMENTED_VARIABLES


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


@pytest.mark.parametrize(("name", "channel"), [p for p in PAIRS if p[1] in ("email", "letter")])
def test_email_and_letter_templates_have_a_subject_line(name: str, channel: str) -> None:
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
    # "detailed" and "held" so that every branch, and so every variable, is evaluated.
    full = variables(
        detail="detailed",
        survivor_message="held",
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
def test_welsh_renders_in_welsh_and_says_so(name: str, channel: str) -> None:
    welsh = render(name, channel, "cy", variables())
    english = render(name, channel, "en", variables())
    assert welsh.language == "cy"
    assert welsh.template_version == english.template_version
    assert welsh.body != english.body


@pytest.mark.parametrize(("name", "channel"), PAIRS)
def test_a_language_without_templates_falls_back_to_english_and_says_so(
    name: str, channel: str
) -> None:
    other = render(name, channel, "fr", variables())
    english = render(name, channel, "en", variables())
    assert other.language == "en"
    assert (other.body, other.subject) == (english.body, english.subject)


def test_a_template_without_a_welsh_file_falls_back_to_english(tmp_path: Path) -> None:
    directory = _directory(tmp_path, "Subject: Hi {{ recipient_name }}\nBody\n")
    message = render("plain", "email", "cy", {"recipient_name": "Riley"}, directory=directory)
    assert (message.language, message.subject, message.body) == ("en", "Hi Riley", "Body")
    (tmp_path / "plain" / "email.cy.j2").write_text("Subject: Helo\nCorff\n", encoding="utf-8")
    message = render("plain", "email", "cy", {"recipient_name": "Riley"}, directory=directory)
    assert (message.language, message.subject, message.body) == ("cy", "Helo", "Corff")


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


# -- distressing outcomes: the advocate first, the survivor only asked to get in touch ---------

ALWAYS_DISTRESSING = sorted(t for t, r in RULES.events.items() if r.sensitivity == "distressing")
CONDITIONAL = sorted(t for t, r in RULES.events.items() if r.distressing_unless)


@pytest.mark.parametrize("name", ["advocate_tell_first", "supervisor_hold_alert"])
def test_the_advocate_and_supervisor_are_told_when_the_fallback_goes(name: str) -> None:
    values = variables(fallback_text="Monday 23 November at 12:00", survivor_message="held")
    body = render(name, "email", "en", values).body
    assert "Monday 23 November at 12:00" in body
    assert "Tuesday 24 November" in body  # the deadline (due_by_text)


@pytest.mark.parametrize("survivor_message", SURVIVOR_MESSAGES)
def test_the_advocate_is_only_promised_a_fallback_when_one_is_held(survivor_message: str) -> None:
    values = variables(
        fallback_text="Monday 23 November at 12:00", survivor_message=survivor_message
    )
    body = render("advocate_tell_first", "email", "en", values).body
    promised = "they will get a short message" in body
    assert promised is (survivor_message == "held")
    assert ("Monday 23 November at 12:00" in body) is (survivor_message == "held")
    if survivor_message in ("opted_out", "no_safe_channel"):
        assert "only you can tell them" in body
    if survivor_message in ("opted_out", "not_wanted", "no_safe_channel"):
        assert "nothing will be sent to them" in body


@pytest.mark.parametrize("survivor_message", SURVIVOR_MESSAGES)
def test_the_advocate_is_only_told_a_message_goes_when_one_does(survivor_message: str) -> None:
    body = render(
        "advocate_case_update", "email", "en", variables(survivor_message=survivor_message)
    ).body
    assert ("is being sent a message" in body) is (survivor_message == "sent")
    if survivor_message != "sent":
        assert "nothing was sent to" in body.lower()
    if survivor_message == "opted_out":
        assert "The law still requires them to be told" in body


@pytest.mark.parametrize(
    ("vrr", "says", "never"),
    [
        ("police", ["ask the police to review", "3 months"], ["10 working days", "CPS"]),
        ("cps", ["ask the CPS to review", "10 working days"], ["3 months"]),
        (None, [], ["Right to Review", "3 months", "10 working days"]),
    ],
)
def test_a_vrr_eligible_decision_says_how_to_ask_for_a_review_and_by_when(
    vrr: str | None, says: list[str], never: list[str]
) -> None:
    body = render(
        "advocate_tell_first",
        "email",
        "en",
        variables(vrr=vrr, event_type="police.no_further_action"),
    ).body
    for text in says:
        assert text in body
    for text in never:
        assert text not in body


@pytest.mark.parametrize("event_type", sorted(DOCUMENTED_TYPES))
@pytest.mark.parametrize(
    "name", ["advocate_case_update", "advocate_tell_first", "supervisor_hold_alert"]
)
def test_advocate_templates_name_every_event_type_in_plain_english(
    name: str, event_type: str
) -> None:
    body = render(name, "email", "en", variables(event_type=event_type)).body
    assert event_type not in body


@pytest.mark.parametrize("channel", ["sms", "email"])
def test_the_get_in_touch_message_is_the_same_whatever_happened(channel: str) -> None:
    bodies = {
        render(
            "survivor_get_in_touch",
            channel,
            "en",
            variables(event_type=event_type, detail=detail, vrr=vrr),
        ).body
        for event_type in sorted(DOCUMENTED_TYPES)
        for detail in ("discreet", "detailed")
        for vrr in ("police", "cps", None)
    }
    assert len(bodies) == 1
    (body,) = bodies
    assert not FORBIDDEN_IN_DISCREET.search(body), body
    assert "Sam Advocate" in body and "+447700900456" in body and "999" in body


@pytest.mark.parametrize("event_type", ALWAYS_DISTRESSING)
@pytest.mark.parametrize("channel", ["sms", "email"])
def test_a_detailed_case_update_never_summarises_a_distressing_outcome(
    event_type: str, channel: str
) -> None:
    detailed = render(
        "survivor_case_update", channel, "en", variables(event_type=event_type, detail="detailed")
    )
    discreet = render(
        "survivor_case_update", channel, "en", variables(event_type=event_type, detail="discreet")
    )
    assert detailed.body == discreet.body
    assert "there is an update for you" in detailed.body.lower()


@pytest.mark.parametrize("event_type", CONDITIONAL)
def test_a_detailed_summary_of_a_conditional_outcome_does_not_give_the_outcome(
    event_type: str,
) -> None:
    body = render(
        "survivor_case_update", "sms", "en", variables(event_type=event_type, detail="detailed")
    ).body
    for value in ("not guilty", "no charge", "not upheld", "reduced", "quashed", "no_charge"):
        assert value not in body.lower()


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
