"""Letters in the rules: who is written to, when, and the duties the Code requires in writing.

A survivor whose only safe channel is the post gets a letter task; a duty the rules data marks
`letter` (a CPS decision not to charge: "a letter with CPS VRR information") also gets one,
besides the usual message, wherever a letter is safe; never when it is not, never to someone who
opted out, and never two letters about one event.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from services.core.calendar import WorkingDayCalendar
from services.core.domain import (
    CaseContext,
    Channel,
    ContactPreference,
    Decision,
    Detail,
    EventFacts,
    Frequency,
    Outcome,
    Person,
    Relationship,
    Role,
    SurvivorContext,
    channel_is_safe,
    letter_is_safe,
    notification_id,
)
from services.core.rendering import render
from services.rules.describe import markdown, summary
from services.rules.engine import Engine, recipient_key
from services.rules.ruleset import LetterRule, RulesError, load_rules

RULES = load_rules()
ENGINE = Engine(RULES, WorkingDayCalendar())
V = RULES.version

# Wednesday 18 November 2026, 11:00 London (GMT): inside every default safe window.
NOW = datetime(2026, 11, 18, 11, 0, tzinfo=UTC)
EVENT_AT = datetime(2026, 11, 18, 10, 0, tzinfo=UTC)
TODAY = date(2026, 11, 18)
SURVIVOR = Person(1, Role.SURVIVOR)
ADVOCATE = Person(10, Role.ADVOCATE)
SUPERVISOR = Person(20, Role.SUPERVISOR)

DIGITAL = ContactPreference(
    version=1,
    has_phone=True,
    has_email=True,
    sms_safe=True,
    sms_safe_review_by=TODAY + timedelta(days=180),
    email_safe=True,
    email_safe_review_by=TODAY + timedelta(days=180),
)
POST_ONLY = replace(DIGITAL, sms_safe=False, email_safe=False, has_address=True, letter_safe=True)
DIGITAL_AND_POST = replace(DIGITAL, has_address=True, letter_safe=True)
NO_CHARGE = {"decision": "no_charge", "vrr_eligible": True}


def context(pref: ContactPreference | None, *, supervisor: Person | None = None) -> CaseContext:
    survivor = SurvivorContext(SURVIVOR, Relationship.VICTIM, pref, ADVOCATE, supervisor)
    return CaseContext(7, "01AB1234524", True, (survivor,))


def decide(
    etype: str,
    pref: ContactPreference | None,
    data: dict[str, object] | None = None,
    *,
    now: datetime = NOW,
    at: datetime = EVENT_AT,
    supervisor: Person | None = None,
) -> list[Decision]:
    event = EventFacts("cps/north-west", "cps-1", etype, "01AB1234524", at, at, dict(data or {}))
    return ENGINE.decide(event, context(pref, supervisor=supervisor), now)


def letters(decisions: list[Decision]) -> list[Decision]:
    return [d for d in decisions if d.channel is Channel.LETTER_TASK]


def to_survivor(decisions: list[Decision]) -> list[Decision]:
    return [d for d in decisions if d.recipient == SURVIVOR]


# -- a survivor whose only safe channel is the post ------------------------------------------


def test_a_survivor_with_only_a_safe_letter_is_written_to() -> None:
    decisions = decide("police.crime_recorded", POST_ONLY)
    (letter,) = to_survivor(decisions)
    assert letter.outcome is Outcome.SEND
    assert letter.channel is Channel.LETTER_TASK
    assert letter.template == "survivor_welcome"
    assert letter.rule == f"{V}:police.crime_recorded.welcome"
    assert letter.hold_reason is None
    assert not [d for d in decisions if d.template == "advocate_no_safe_channel"]


def test_a_letter_is_queued_at_once_whatever_the_hour() -> None:
    night = datetime(2026, 11, 18, 23, 30, tzinfo=UTC)  # outside the 09:00-20:00 window
    (letter,) = to_survivor(decide("police.suspect_arrested", POST_ONLY, now=night))
    assert (letter.channel, letter.send_at) == (Channel.LETTER_TASK, night)
    # The same survivor by text would wait for the morning.
    (text,) = to_survivor(decide("police.suspect_arrested", DIGITAL, now=night))
    assert text.channel is Channel.SMS and text.send_at is not None and text.send_at > night


@pytest.mark.parametrize(
    "pref",
    [
        pytest.param(replace(POST_ONLY, letter_safe=False), id="letter-not-safe"),
        pytest.param(replace(POST_ONLY, has_address=False), id="no-address"),
    ],
)
def test_no_letter_when_it_is_not_safe_the_message_is_held_for_the_advocate(
    pref: ContactPreference,
) -> None:
    decisions = decide("police.suspect_arrested", pref)
    assert not letters(decisions)
    (held,) = to_survivor(decisions)
    assert (held.outcome, held.channel, held.hold_reason) == (
        Outcome.HOLD,
        None,
        "no_safe_channel",
    )
    assert [d.template for d in decisions if d.outcome is Outcome.TASK] == [
        "advocate_no_safe_channel"
    ]


def test_a_safe_digital_channel_comes_before_the_post() -> None:
    (message,) = to_survivor(decide("police.suspect_arrested", DIGITAL_AND_POST))
    assert message.channel is Channel.SMS
    only_email = replace(DIGITAL_AND_POST, sms_safe=False)
    (message,) = to_survivor(decide("police.suspect_arrested", only_email))
    assert message.channel is Channel.EMAIL


def test_a_lapsed_text_safety_check_falls_to_the_post() -> None:
    lapsed = replace(POST_ONLY, sms_safe=True, sms_safe_review_by=TODAY - timedelta(days=1))
    (message,) = to_survivor(decide("police.suspect_arrested", lapsed))
    assert message.channel is Channel.LETTER_TASK


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"opted_out": True}, "opted_out"),
        ({"frequency": Frequency.NONE}, "frequency_none"),
        ({"frequency": Frequency.KEY_STAGES}, "not_a_key_stage"),
    ],
)
def test_a_letter_respects_the_survivors_choices(change: dict[str, object], reason: str) -> None:
    decisions = decide("police.suspect_arrested", replace(POST_ONLY, **change))
    assert not letters(decisions)
    assert [d.hold_reason for d in to_survivor(decisions)] == [reason]


def test_distressing_news_by_letter_is_held_for_the_advocate_and_detail_free() -> None:
    decisions = decide("police.no_further_action", replace(POST_ONLY, detail=Detail.DETAILED))
    (held,) = to_survivor(decisions)
    assert (held.outcome, held.channel, held.hold_reason) == (
        Outcome.HOLD,
        Channel.LETTER_TASK,
        "advocate_first",
    )
    assert (held.template, held.detail) == ("survivor_get_in_touch", Detail.DISCREET)
    # Enhanced rights: 1 working day, due Thursday 19 November; a held letter goes to be posted
    # at noon London time on the deadline's day unless the advocate has released it.
    assert held.due_by == datetime(2026, 11, 19, 23, 59, 59, tzinfo=UTC)
    assert held.send_at == datetime(2026, 11, 19, 12, 0, tzinfo=UTC)
    (told,) = [d for d in decisions if d.template == "advocate_tell_first"]
    assert told.related_rule == held.rule


def test_news_past_its_deadline_by_letter_still_leaves_the_advocate_a_few_hours() -> None:
    late = datetime(2026, 11, 24, 22, 0, tzinfo=UTC)  # days after the deadline, at night
    (held,) = to_survivor(decide("police.no_further_action", POST_ONLY, now=late))
    assert held.channel is Channel.LETTER_TASK
    assert held.send_at == late + timedelta(hours=4)  # no quiet hours for a letter


# -- a duty the Code requires in writing -----------------------------------------------------


def test_the_packaged_rules_require_the_cps_decisions_in_writing() -> None:
    charging = RULES.events["cps.charging_decision"].letter
    assert charging == LetterRule("survivor_decision_letter", (("decision", ("no_charge",)),))
    assert RULES.events["cps.case_discontinued"].letter == LetterRule("survivor_decision_letter")
    written = {etype for etype, rule in RULES.events.items() if rule.letter is not None}
    assert written == {"cps.charging_decision", "cps.case_discontinued"}


def test_a_cps_decision_not_to_charge_gets_a_letter_besides_the_held_message() -> None:
    decisions = decide("cps.charging_decision", DIGITAL_AND_POST, NO_CHARGE, supervisor=SUPERVISOR)
    held = [d for d in to_survivor(decisions) if d.channel is Channel.SMS]
    (message,) = held
    (letter,) = letters(decisions)
    assert (message.outcome, message.hold_reason) == (Outcome.HOLD, "advocate_first")
    assert message.template == "survivor_get_in_touch"
    assert letter.outcome is Outcome.HOLD and letter.hold_reason == "advocate_first"
    assert letter.template == "survivor_decision_letter"
    assert letter.rule == f"{V}:cps.charging_decision.letter"
    assert letter.recipient == SURVIVOR and letter.survivor_id == SURVIVOR.id
    assert letter.due_by == message.due_by
    # Both wait for the advocate, and go together if nobody acts: one time to tell them.
    assert letter.send_at == message.send_at
    (told,) = [d for d in decisions if d.template == "advocate_tell_first"]
    (alert,) = [d for d in decisions if d.template == "supervisor_hold_alert"]
    assert told.related_rule == alert.related_rule == message.rule
    ids = {notification_id("cps/north-west", "cps-1", recipient_key(d), d.rule) for d in decisions}
    assert len(ids) == len(decisions)


def test_a_case_discontinued_is_written_too() -> None:
    decisions = decide("cps.case_discontinued", DIGITAL_AND_POST, {"vrr_eligible": True})
    assert [d.template for d in letters(decisions)] == ["survivor_decision_letter"]


@pytest.mark.parametrize("decision", ["charge", "further_evidence_requested"])
def test_other_charging_decisions_need_no_letter(decision: str) -> None:
    decisions = decide("cps.charging_decision", DIGITAL_AND_POST, {"decision": decision})
    assert not letters(decisions)
    (message,) = to_survivor(decisions)
    assert message.outcome is Outcome.SEND and message.channel is Channel.SMS


def test_no_duty_letter_where_a_letter_is_not_safe() -> None:
    decisions = decide("cps.charging_decision", DIGITAL, NO_CHARGE)
    assert not letters(decisions)
    (message,) = to_survivor(decisions)
    assert (message.channel, message.hold_reason) == (Channel.SMS, "advocate_first")


def test_a_survivor_who_can_only_be_written_to_gets_one_letter_the_duty_letter() -> None:
    decisions = decide("cps.charging_decision", POST_ONLY, NO_CHARGE, supervisor=SUPERVISOR)
    own, letter = to_survivor(decisions)
    assert (own.outcome, own.channel, own.hold_reason) == (
        Outcome.MERGE,
        None,
        "merged_into_letter",
    )
    assert not own.makes_notification
    assert letters(decisions) == [letter]
    assert (letter.template, letter.hold_reason) == ("survivor_decision_letter", "advocate_first")
    assert letter.send_at == datetime(2026, 11, 19, 12, 0, tzinfo=UTC)
    (told,) = [d for d in decisions if d.template == "advocate_tell_first"]
    (alert,) = [d for d in decisions if d.template == "supervisor_hold_alert"]
    assert told.related_rule == alert.related_rule == letter.rule


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"opted_out": True}, id="opted-out"),
        pytest.param({"frequency": Frequency.NONE}, id="no-updates"),
    ],
)
def test_no_duty_letter_to_a_survivor_who_chose_not_to_hear(change: dict[str, object]) -> None:
    decisions = decide("cps.charging_decision", replace(DIGITAL_AND_POST, **change), NO_CHARGE)
    assert not letters(decisions)
    assert all(d.outcome is Outcome.SUPPRESS for d in to_survivor(decisions))


def test_a_key_stages_survivor_still_gets_the_duty_letter() -> None:
    pref = replace(DIGITAL_AND_POST, frequency=Frequency.KEY_STAGES)
    assert RULES.events["cps.charging_decision"].key_stage
    assert len(letters(decide("cps.charging_decision", pref, NO_CHARGE))) == 1


def test_the_advocate_is_told_the_letter_waits_for_them() -> None:
    # What the notifier gives the tell-first message for a held duty letter (letter="held").
    from services.core.message_variables import SURVIVOR_MESSAGE

    decisions = decide("cps.charging_decision", POST_ONLY, NO_CHARGE)
    own = to_survivor(decisions)[0]
    said = SURVIVOR_MESSAGE.get((own.outcome.value, own.hold_reason), "none")
    values = {
        "recipient_name": "Alex Morgan",
        "advocate_name": "Alex Morgan",
        "advocate_phone": "+447700900123",
        "hub_name": "the Care Hub",
        "support_line": "call 0808 500 2222",
        "due_by_text": "Thursday 19 November",
        "fallback_text": "Thursday 19 November at 12:00",
        "case_urn": "01AB1234524",
        "event_type": "cps.charging_decision",
        "detail": "discreet",
        "reason": None,
        "vrr": "cps",
        "survivor_message": said,
        "reply_text": None,
        "decision_reason": None,
        "meeting_offered": False,
        "letter": "held",
    }
    body = render("advocate_tell_first", "email", "en", values).body
    assert "A letter setting it out is held for you" in body
    assert "Thursday 19 November at 12:00" in body
    assert "short message" not in body  # there is no other message to them
    alert = render("supervisor_hold_alert", "email", "en", values).body
    assert "A letter setting out the decision goes to be posted" in alert
    assert "short message" not in alert


# -- channel safety, for every part that asks -------------------------------------------------


def test_channel_safety_for_each_channel() -> None:
    assert letter_is_safe(POST_ONLY) and not letter_is_safe(DIGITAL) and not letter_is_safe(None)
    assert channel_is_safe(POST_ONLY, Channel.LETTER_TASK, TODAY)
    assert channel_is_safe(POST_ONLY, "letter_task", TODAY + timedelta(days=3650))
    assert not channel_is_safe(POST_ONLY, Channel.SMS, TODAY)
    assert channel_is_safe(DIGITAL, Channel.SMS, TODAY)
    assert not channel_is_safe(DIGITAL, Channel.EMAIL, TODAY + timedelta(days=181))
    assert not channel_is_safe(DIGITAL, Channel.ADVOCATE_TASK, TODAY)
    assert not channel_is_safe(None, Channel.SMS, TODAY)


# -- the rules data: `letter` is checked, and documented ---------------------------------------

HEADER = (
    'version: "test.1"\n'
    "distressing:\n"
    "  advocate_template: advocate_tell_first\n"
    "  survivor_template: survivor_get_in_touch\n"
    "  supervisor_template: supervisor_hold_alert\n"
    "events:\n"
    "  cps.charging_decision:\n"
    '    duty: "R6 CPS"\n'
    "    deadline: {standard: 5, enhanced: 1, from: event}\n"
    "    sensitivity: significant\n"
    "    distressing_unless: {decision: [charge]}\n"
)
NOTIFY = (
    "    notify:\n"
    "      - {id: advocate, to: advocate, template: advocate_case_update}\n"
    "      - {id: survivor, to: survivor, template: survivor_case_update}\n"
)


@pytest.mark.parametrize(
    ("letter", "problem"),
    [
        pytest.param(
            "    letter: {template: advocate_case_update}\n", "written for advocates", id="advocate"
        ),
        pytest.param("    letter: {template: no_such}\n", "unknown template", id="unknown"),
        pytest.param(
            "    letter: {when: {decision: [no_charge]}}\n", "needs a 'template'", id="bare"
        ),
        pytest.param(
            "    letter: {template: survivor_decision_letter, when: {decision: no_charge}}\n",
            "maps a data field to a list",
            id="when-not-a-list",
        ),
        pytest.param(
            "    letter: {template: survivor_decision_letter, colour: blue}\n",
            "unknown field 'colour'",
            id="unknown-field",
        ),
        pytest.param("    letter: true\n", "expected a mapping", id="not-a-mapping"),
    ],
)
def test_a_bad_letter_rule_names_its_line(tmp_path: Path, letter: str, problem: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(HEADER + letter + NOTIFY, encoding="utf-8")
    with pytest.raises(RulesError) as info:
        load_rules(path)
    assert problem in str(info.value)
    assert ", line 12: " in str(info.value)


def test_a_notify_entry_cannot_take_the_letter_duty_s_rule_name(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    clash = NOTIFY + "      - {id: letter, to: survivor, template: survivor_welcome}\n"
    path.write_text(HEADER + clash, encoding="utf-8")
    with pytest.raises(RulesError, match="the letter duty's"):
        load_rules(path)


def test_a_good_letter_rule_loads(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    letter = "    letter: {template: survivor_decision_letter, when: {decision: [no_charge]}}\n"
    path.write_text(HEADER + letter + NOTIFY, encoding="utf-8")
    rule = load_rules(path).events["cps.charging_decision"].letter
    assert rule is not None and rule.applies({"decision": "no_charge"})
    assert not rule.applies({"decision": "charge"}) and not rule.applies({})


def test_the_rules_page_and_summary_say_which_duties_are_written() -> None:
    page = markdown(RULES)
    assert "**Letters.**" in page
    assert (
        "**in writing** when `decision` is no_charge: a letter (`survivor_decision_letter`)" in page
    )
    rows = {row["type"]: row for row in summary(RULES)}
    assert rows["cps.charging_decision"]["letter"] == {
        "template": "survivor_decision_letter",
        "when": {"decision": ["no_charge"]},
        "rule": f"{V}:cps.charging_decision.letter",
    }
    assert rows["court.verdict"]["letter"] is None
