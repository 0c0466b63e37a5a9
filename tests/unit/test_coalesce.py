"""Coalescing: events of one group replace each other's unsent survivor messages."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.core.calendar import WorkingDayCalendar
from services.core.domain import (
    CaseContext,
    ContactPreference,
    EventFacts,
    Outcome,
    Person,
    Relationship,
    Role,
    SurvivorContext,
)
from services.rules.engine import Engine
from services.rules.ruleset import DEFAULT_RULES, RulesError, load_rules

NOW = datetime(2026, 11, 18, 11, 0, tzinfo=UTC)


def context() -> CaseContext:
    pref = ContactPreference(
        version=1,
        has_phone=True,
        has_email=False,
        sms_safe=True,
        sms_safe_review_by=None,
        email_safe=False,
        email_safe_review_by=None,
    )
    survivor = SurvivorContext(
        Person(1, Role.SURVIVOR), Relationship.VICTIM, pref, Person(7, Role.ADVOCATE)
    )
    return CaseContext(case_id=1, urn="01AB1234524", enhanced_rights=True, survivors=(survivor,))


@pytest.mark.parametrize(
    ("etype", "group"),
    [
        ("court.hearing_scheduled", "hearing"),
        ("court.hearing_changed", "hearing"),
        ("police.suspect_bailed", "bail"),
        ("police.bail_conditions_changed", "bail"),
        ("court.bail_decision", "bail"),
        ("police.suspect_charged", None),
    ],
)
def test_survivor_messages_carry_their_group_and_advocate_messages_do_not(
    etype: str, group: str | None
) -> None:
    engine = Engine(load_rules(), WorkingDayCalendar())
    event = EventFacts("court/x", "e1", etype, "01AB1234524", NOW, NOW, {})
    decisions = engine.decide(event, context(), NOW)
    survivor = [d for d in decisions if d.recipient.role is Role.SURVIVOR]
    advocate = [d for d in decisions if d.recipient.role is Role.ADVOCATE]
    assert survivor and all(d.coalesce_key == group for d in survivor)
    assert all(d.outcome is Outcome.SEND for d in survivor)
    assert advocate and all(d.coalesce_key is None for d in advocate)


def test_a_coalesce_group_must_be_a_plain_name(tmp_path: Path) -> None:
    text = DEFAULT_RULES.read_text().replace("    coalesce: hearing", "    coalesce: [hearing]", 1)
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    line = next(n for n, t in enumerate(text.splitlines(), 1) if "coalesce: [hearing]" in t)
    with pytest.raises(RulesError, match=rf"line {line}: court\.hearing_scheduled: coalesce"):
        load_rules(path)
