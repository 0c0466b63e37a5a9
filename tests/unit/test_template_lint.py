"""Template lint: every template, channel, language and variant, rendered and read.

Each message must read plainly, stay discreet in a text preview, name a person and where to get
support, word a Victims' Right to Review right, fit its SMS segments and never evaluate a value.
The limits live in services/core/template_docs.py, which also states them in docs/templates.md.
Each test covers one template, channel and language, renders every variant that template can
tell apart, and reports the first few variants that fail.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from functools import cache
from typing import Any

import pytest
from jinja2 import meta
from textstat.backend.metrics import flesch_reading_ease

from services.core.discreet import FORBIDDEN_IN_DISCREET
from services.core.rendering import (
    LANGUAGES,
    TEMPLATES_DIR,
    RenderedMessage,
    _environment,
    catalogue,
    render,
    render_letter,
)
from services.core.sms import inspect
from services.core.template_docs import (
    READING_EASE_FLOOR,
    SENTENCE_WORDS_LIMIT,
    SMS_SEGMENT_LIMIT,
)
from services.rules.ruleset import DOCUMENTED_TYPES

CATALOGUE = catalogue()
TRIPLES = [
    (name, channel, language)
    for name, info in CATALOGUE.items()
    for channel in info.channels
    for language in LANGUAGES
]
SURVIVOR_TRIPLES = [t for t in TRIPLES if CATALOGUE[t[0]].audience == "survivor"]
SMS_TRIPLES = [t for t in TRIPLES if t[1] == "sms"]

# Fake data only: Ofcom drama-range numbers, example.org addresses.
SAMPLE: dict[str, Any] = {
    "recipient_name": "Sam",
    "advocate_name": "Alex Morgan",
    "advocate_phone": "+447700900123",
    "hub_name": "the Care Hub",
    # As the notifier words it: it names the service, so no discreet SMS may carry it.
    "support_line": (
        "you can call the 24/7 Rape and Sexual Abuse Support Line free on 0808 157 0123"
    ),
    "due_by_text": "Friday 20 November",
    "fallback_text": "Friday 20 November at 12:00",
    "case_urn": "01AB1234524",
    "event_type": "police.suspect_arrested",
    "detail": "discreet",
    "reason": "no safe channel, sam@example.org bounced",
    "vrr": None,
    "survivor_message": "sent",
    "reply_text": "Can someone call me please",
    "decision_reason": "There is not enough evidence to take the case to court.",
    "meeting_offered": False,
    "letter": "none",
    "feedback_url": "https://carehub.example.org/feedback/1-abc",
    "personal_line": None,
}
# The number an SMS gives for support (templates/_support.j2), and the emergency number.
SMS_SUPPORT_PHONE = "0808 500 2222"
EMERGENCY = "999"

# The variants a template can tell apart, for each variable it uses.
VARIANTS: dict[str, tuple[Any, ...]] = {
    "event_type": (*sorted(DOCUMENTED_TYPES), "court.unlisted"),
    "detail": ("discreet", "detailed"),
    "vrr": ("police", "cps", None),
    "survivor_message": ("sent", "held", "no_safe_channel", "opted_out", "not_wanted", "none"),
    "letter": ("held", "sent", "none"),
    "meeting_offered": (True, False),
    "decision_reason": (SAMPLE["decision_reason"], None),
}
# The longest values a survivor SMS meets: a name that forces UCS-2 (Welsh names often do) and
# the longest date the notifier writes.
SMS_WORST_CASE: dict[str, tuple[str, ...]] = {
    "recipient_name": ("Sam", "Siân"),
    # The longest line an advocate may add (services.core.discreet.PERSONAL_LINE_MAX).
    # A line an advocate adds (the portal refuses one that would make the SMS too long).
    "personal_line": ("", "I am so sorry. Call me when you can, any time this week."),
    "due_by_text": ("Friday 20 November", "Wednesday 30 September"),
}

# Trauma-informed rule 5: no offence, suspect, "police", "court" or "rape" in an SMS preview,
# nor anything else that says what the text is about (the justice system, the offence, the
# people in it, the service's purpose). Stems, matched at the start of a word; the Welsh ones
# with their mutated forms (treisio/dreisio/nhreisio/threisio, llys/lys, ...).
# One list, in core: the portal holds an advocate's own line to it too.

# How to ask for a Victims' Right to Review, per scheme (../shared/domain/victims-code.md), and
# the words that only such an explanation uses (not the event's name: "... finished a Victims'
# Right to Review" is no explanation). An advocate is asked to explain it; a survivor's letter
# tells them, in the second person (the Welsh differs; the English phrases are the same).
VRR_WORDING: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "police": ("ask the police to review", "within 3 months", "explain how to ask"),
        "cps": (
            "ask the CPS to review",
            "ordinarily ask within 10 working days",
            "explain how to ask",
        ),
    },
    "cy": {
        "police": ("ofyn i'r heddlu adolygu", "o fewn 3 mis", "Esboniwch sut i ofyn"),
        "cps": (
            "ofyn i Wasanaeth Erlyn y Goron (CPS) adolygu",
            "Fel arfer, dylen nhw ofyn o fewn 10 diwrnod gwaith",
            "Esboniwch sut i ofyn",
        ),
    },
}
SURVIVOR_VRR_WORDING: dict[str, dict[str, tuple[str, ...]]] = {
    "en": VRR_WORDING["en"],
    "cy": {
        "police": ("ofyn i'r heddlu adolygu", "o fewn 3 mis", "esbonio sut i ofyn"),
        "cps": (
            "ofyn i Wasanaeth Erlyn y Goron (CPS) adolygu",
            "Fel arfer, dylech ofyn o fewn 10 diwrnod gwaith",
            "esbonio sut i ofyn",
        ),
    },
}
REVIEW_WORDS: dict[str, tuple[str, ...]] = {
    "en": ("review this decision", "how to ask", "3 months", "10 working days"),
    "cy": ("adolygu'r penderfyniad", "sut i ofyn", "3 mis", "10 diwrnod gwaith"),
}
VRR_OTHER = {"police": "cps", "cps": "police"}


@cache
def used_variables(name: str, channel: str, language: str) -> frozenset[str]:
    env = _environment(TEMPLATES_DIR)
    source = (TEMPLATES_DIR / name / f"{channel}.{language}.j2").read_text(encoding="utf-8")
    return frozenset(meta.find_undeclared_variables(env.parse(source)))


def variants(
    name: str, channel: str, language: str, extra: dict[str, tuple[Any, ...]] | None = None
) -> list[dict[str, Any]]:
    """Every combination of the variants of the variables this template uses (and `extra`)."""
    axes = {k: v for k, v in VARIANTS.items() if k in used_variables(name, channel, language)}
    axes.update(extra or {})
    keys = list(axes)
    return [
        {**SAMPLE, **dict(zip(keys, values, strict=True))}
        for values in itertools.product(*(axes[k] for k in keys))
    ]


@cache
def rendered(
    name: str, channel: str, language: str
) -> tuple[tuple[dict[str, Any], RenderedMessage], ...]:
    return tuple(
        (values, render(name, channel, language, values))
        for values in variants(name, channel, language)
    )


def case(values: dict[str, Any]) -> str:
    """The variant, for a failure message: what varies, and what differs from the sample."""
    shown = [k for k in values if k in VARIANTS or values[k] != SAMPLE.get(k)]
    return ", ".join(f"{k}={values[k]}" for k in shown)


def check(failures: Iterable[str]) -> None:
    found = list(failures)
    assert not found, f"{len(found)} variants fail, for example:\n" + "\n".join(found[:5])


def reading_ease(text: str) -> float:
    """textstat's Flesch reading ease: English weights, syllables from pyphen's en_GB dictionary.

    For "en" textstat counts syllables with NLTK's CMU pronouncing dictionary, which it
    downloads on first use; tests run offline. A locale spelt "en-GB" is not mapped to that
    dictionary by textstat, while pyphen reads it as en_GB and textstat's weights default to
    English. Hyphenation finds fewer syllables than pronunciation, so scores run higher (about 8
    points on these templates): the floors were set with both counts in view.
    """
    return float(flesch_reading_ease(text, "en-GB"))


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip()]


# -- the languages are the same templates ----------------------------------------------------------


def test_every_english_file_has_a_welsh_one() -> None:
    english = sorted(TEMPLATES_DIR.rglob("*.en.j2"))
    assert len(english) > len(CATALOGUE)  # the templates and their partials
    for path in english:
        for language in LANGUAGES:
            assert path.with_name(path.name.replace(".en.", f".{language}.")).is_file(), path


@pytest.mark.parametrize(("name", "channel", "language"), TRIPLES)
def test_each_language_uses_the_same_variables(name: str, channel: str, language: str) -> None:
    assert used_variables(name, channel, language) == used_variables(name, channel, "en")


@pytest.mark.parametrize(("name", "channel", "language"), TRIPLES)
def test_each_language_renders_as_itself(name: str, channel: str, language: str) -> None:
    for _, message in rendered(name, channel, language):
        assert message.language == language
        assert (message.subject is None) is (channel == "sms")


@pytest.mark.parametrize(("name", "channel", "language"), TRIPLES)
def test_each_language_tells_the_same_events_apart(name: str, channel: str, language: str) -> None:
    """A detailed summary, and a plain name of the event type, exist in every language or none."""

    def shape(lang: str) -> list[tuple[bool, bool]]:
        return [
            (
                values["event_type"] in message.body,
                values.get("detail") == "detailed"
                and message.body
                != render(name, channel, lang, {**values, "detail": "discreet"}).body,
            )
            for values, message in rendered(name, channel, lang)
        ]

    assert shape(language) == shape("en")


# -- plain words -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "channel"), [(n, c) for n, c, lang in TRIPLES if lang == "en"])
def test_english_reads_easily(name: str, channel: str) -> None:
    floor = READING_EASE_FLOOR[CATALOGUE[name].audience]
    scores = [(reading_ease(m.body), values) for values, m in rendered(name, channel, "en")]
    check(f"{score:.1f} < {floor}: {case(values)}" for score, values in scores if score < floor)


@pytest.mark.parametrize(("name", "channel", "language"), TRIPLES)
def test_sentences_are_short(name: str, channel: str, language: str) -> None:
    limit = SENTENCE_WORDS_LIMIT[CATALOGUE[name].audience]
    check(
        f"{len(sentence.split())} words > {limit}: {sentence!r}"
        for _, message in rendered(name, channel, language)
        for sentence in sentences(message.body)
        if len(sentence.split()) > limit
    )


def test_the_reading_ease_measure_works_offline_and_tells_plain_from_dense() -> None:
    plain = "Hello Sam. Alex can talk it through with you. Call Alex when it suits you."
    dense = (
        "Notwithstanding the aforementioned considerations, the prosecutorial authority "
        "determined that institutional accountability necessitated comprehensive re-evaluation."
    )
    assert reading_ease(plain) > READING_EASE_FLOOR["survivor"] > reading_ease(dense)


# -- discreet by default ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "channel", "language"), SURVIVOR_TRIPLES)
def test_a_discreet_survivor_preview_names_neither_the_offence_nor_the_system(
    name: str, channel: str, language: str
) -> None:
    # An SMS is all preview; of an e-mail, the subject is what a glance at the inbox shows.
    check(
        f"{found.group(0)!r} in {text!r}: {case(values)}"
        for values, message in rendered(name, channel, language)
        if values["detail"] == "discreet"
        for text in [message.body if channel == "sms" else message.subject or ""]
        for found in [FORBIDDEN_IN_DISCREET.search(text)]
        if found
    )


@pytest.mark.parametrize(
    "text",
    [
        "rape",
        "Sexual",
        "assaulted",
        "abuse",
        "offence",
        "crime",
        "police",
        "court",
        "CPS",
        "victim",
        "suspect",
        "defendant",
        "ISVA",
        "IDVA",
        "charged",
        "trial",
        "treisio",
        "nhreisio",
        "rhywiol",
        "ymosodiad",
        "cam-drin",
        "drosedd",
        "heddlu",
        "llys",
        "lys",
        "dioddefwr",
        "ddioddefwyr",
        "a ddrwgdybir",
        "diffynnydd",
        "gyhuddo",
        "fechnïaeth",
        "garchar",
        "dyst",
        "goroeswr",
        "oroeswr",
    ],
)
def test_the_forbidden_list_catches_each_language(text: str) -> None:
    assert FORBIDDEN_IN_DISCREET.search(f"Helo Sam, {text} heddiw.")


def test_the_forbidden_list_leaves_everyday_words_alone() -> None:
    everyday = "Hello Sam, there is an update for you. Helo Sam, mae diweddariad i chi. Lysiau."
    assert not FORBIDDEN_IN_DISCREET.search(everyday)


# -- a person and support, every time --------------------------------------------------------------


@pytest.mark.parametrize(("name", "channel", "language"), SURVIVOR_TRIPLES)
def test_every_survivor_message_names_the_advocate_and_where_to_get_support(
    name: str, channel: str, language: str
) -> None:
    # The notifier's support line names the service, so an SMS gives the number alone.
    support = SMS_SUPPORT_PHONE if channel == "sms" else SAMPLE["support_line"][1:]
    needed = (SAMPLE["advocate_name"], SAMPLE["advocate_phone"], support, EMERGENCY)
    check(
        f"{text!r} missing: {case(values)}"
        for values, message in rendered(name, channel, language)
        for text in needed
        if text not in message.body
    )


# -- Victims' Right to Review ----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "channel", "language"), TRIPLES)
def test_a_review_is_explained_in_its_own_scheme_and_only_when_there_is_one(
    name: str, channel: str, language: str
) -> None:
    uses_vrr = "vrr" in used_variables(name, channel, language)
    wording = SURVIVOR_VRR_WORDING if CATALOGUE[name].audience == "survivor" else VRR_WORDING
    failures: list[str] = []
    for values, message in rendered(name, channel, language):
        vrr = values["vrr"] if uses_vrr else None
        if vrr is None:
            wrong = [t for t in REVIEW_WORDS[language] if t in message.body]
            failures += [f"{t!r} with no review to ask for: {case(values)}" for t in wrong]
            continue
        ours, other = wording[language][vrr], wording[language][VRR_OTHER[vrr]]
        failures += [f"{t!r} missing: {case(values)}" for t in ours if t not in message.body]
        failures += [
            f"{t!r} of the other scheme: {case(values)}"
            for t in other
            if t not in ours and t in message.body
        ]
    check(failures)


def test_only_the_tell_first_message_and_the_decision_letter_explain_a_review() -> None:
    uses = {n for n, c, lang in TRIPLES if "vrr" in used_variables(n, c, lang)}
    assert uses == {"advocate_tell_first", "survivor_decision_letter"}


# -- SMS length ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "channel", "language"), SMS_TRIPLES)
def test_every_sms_fits_its_segments(name: str, channel: str, language: str) -> None:
    encodings: set[str] = set()
    failures: list[str] = []
    for values in variants(name, channel, language, SMS_WORST_CASE):
        result = inspect(render(name, channel, language, values).body)
        encodings.add(result.encoding)
        if result.segments > SMS_SEGMENT_LIMIT:
            failures.append(
                f"{result.segments} {result.encoding} segments ({result.units} units): "
                f"{case(values)}"
            )
    check(failures)
    assert "UCS-2" in encodings  # the worst case was tried


# -- values are data, never template --------------------------------------------------------------

HOSTILE = "{{ 7*7 }}{% raw %}<b>x</b>&amp;"
CODES = {"event_type", "detail", "vrr", "survivor_message", "letter", "meeting_offered"}


@pytest.mark.parametrize(("name", "channel", "language"), TRIPLES)
def test_a_value_with_template_syntax_or_html_is_shown_literally(
    name: str, channel: str, language: str
) -> None:
    shown: set[str] = set()
    for values in variants(name, channel, language):
        hostile = {k: (v if k in CODES else f"{k}:{HOSTILE}") for k, v in values.items()}
        message = render(name, channel, language, hostile)
        text = f"{message.subject or ''}\n{message.body}"
        assert "49" not in text and "&lt;" not in text, case(values)
        shown |= {k for k in hostile if f"{k}:{HOSTILE}".lower() in text.lower()}
    # Each value the template uses came out whole, in some branch (fallback_text only when a
    # message is held, for example); capitalize_first may have raised its first letter.
    assert used_variables(name, channel, language) - CODES <= shown


LETTER_TRIPLES = [t for t in TRIPLES if t[1] == "letter"]


@pytest.mark.parametrize(("name", "channel", "language"), LETTER_TRIPLES)
def test_a_letter_laid_out_for_print_shows_every_value_literally_in_its_html_too(
    name: str, channel: str, language: str
) -> None:
    address = f"address:{HOSTILE}\n1 Example Road\nZZ99 9ZZ"
    for values in variants(name, channel, language):
        hostile = {k: (v if k in CODES else f"{k}:{HOSTILE}") for k, v in values.items()}
        message = render(name, "letter_task", language, hostile)
        assert message.subject is not None
        printed = render_letter(
            message.subject, message.body, address, "18 November 2026", language
        )
        assert "49" not in printed.text and "49" not in printed.html, case(values)
        assert "<b>" not in printed.html and "{{" in printed.html, case(values)
        # Escaped once, in the HTML only: the plain text shows the value as it was given.
        assert "address:{{ 7*7 }}{% raw %}&lt;b&gt;x&lt;/b&gt;&amp;amp;" in printed.html
        assert f"address:{HOSTILE}" in printed.text
        assert printed.html.count("<p>") >= 4 and f'<html lang="{language}">' in printed.html


@pytest.mark.parametrize(("name", "channel", "language"), LETTER_TRIPLES)
def test_a_letter_gives_its_words_in_print_as_written(
    name: str, channel: str, language: str
) -> None:
    for values, message in rendered(name, channel, language)[:20]:
        assert message.subject is not None
        printed = render_letter(message.subject, message.body, "Sam\nZZ99 9ZZ", "1 May", language)
        assert printed.text.startswith("Sam\nZZ99 9ZZ\n\n1 May\n\n" + message.subject + "\n\n")
        assert message.body in printed.text, case(values)
