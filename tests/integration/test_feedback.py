"""Feedback, on SQLite and PostgreSQL: one short question a week after a key stage the survivor
was told of, only for survivors who said yes, never after distressing news, at most once a
quarter; answered by a texted number or through the survivor's own link; counted by quarter.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from services import demo, portal
from services.core.clock import FixedClock
from services.core.db import models as m
from services.core.feedback import link_token, parse_link
from services.core.runner import base_app
from services.core.runtime import Runtime
from services.ingest.recording import record_event
from services.notifier.providers import handle_inbound
from services.reports.satisfaction import satisfaction
from services.rules.consumer import RulesConsumer
from services.rules.engine import Engine
from services.rules.feedback import ask_for_feedback
from services.rules.ruleset import RuleSet, load_rules
from tests.integration.runtimes import migrated_runtime

STEPS = demo.script()
CRIME_AT = STEPS[0].at  # Monday 16 November 2026, 09:30 London
A_WEEK_ON = CRIME_AT + timedelta(days=8, hours=2)
PHONE = "+447700900123"  # the demo survivor's (fake) number


@dataclass
class Told:
    rt: Runtime
    clock: FixedClock
    rules: RuleSet
    survivor_id: int
    welcome_id: str

    async def opt_in(self, yes: bool = True) -> None:
        async with self.rt.sessions.begin() as session:
            await session.execute(
                update(m.ContactPreference)
                .where(m.ContactPreference.survivor_id == self.survivor_id)
                .values(feedback_opt_in=yes)
            )

    async def questions(self) -> list[m.FeedbackQuestion]:
        async with self.rt.sessions() as session:
            return list(await session.scalars(select(m.FeedbackQuestion)))

    async def notification(self, nid: str) -> m.Notification:
        async with self.rt.sessions() as session:
            return await session.get_one(m.Notification, nid)

    async def sent(self, nid: str) -> None:
        async with self.rt.sessions.begin() as session:
            row = await session.get_one(m.Notification, nid)
            row.status = "sent"


@pytest.fixture
async def told(make_settings: Any, database_url: str) -> AsyncIterator[Told]:
    """The demo survivor told of the crime record (a key stage) on its day, by text."""
    settings = make_settings(database_url=database_url)
    clock = FixedClock(CRIME_AT)
    async with migrated_runtime(settings, clock, None) as rt:
        rules = load_rules()
        async with rt.sessions.begin() as session:
            ids = await demo.seed(session, CRIME_AT)
            (event,) = STEPS[0].events
            outcome = await record_event(
                session,
                event,
                json.dumps(event).encode(),
                now=CRIME_AT,
                way_in="http",
                max_skew=timedelta(minutes=5),
            )
            assert outcome.case_event_id is not None
            await RulesConsumer(rt, Engine(rules, rt.calendar)).process(
                session, [outcome.case_event_id], CRIME_AT
            )
            welcome = await session.scalar(
                select(m.Notification).where(m.Notification.template == "survivor_welcome")
            )
            assert welcome is not None
            welcome.status, welcome.informed_at = "delivered", CRIME_AT
        clock.set(A_WEEK_ON)
        yield Told(rt, clock, rules, ids["survivor_id"], welcome.id)


async def test_nobody_is_asked_who_did_not_say_yes(told: Told) -> None:
    assert await ask_for_feedback(told.rt, told.rules) == 0
    assert await told.questions() == []


async def test_one_question_a_week_after_a_key_stage_and_not_again(told: Told) -> None:
    await told.opt_in()
    told.clock.set(CRIME_AT + timedelta(days=3))
    assert await ask_for_feedback(told.rt, told.rules) == 0  # too soon after the news
    told.clock.set(A_WEEK_ON)
    assert await ask_for_feedback(told.rt, told.rules) == 1
    assert await ask_for_feedback(told.rt, told.rules) == 0  # once
    (question,) = await told.questions()
    row = await told.notification(question.question_notification_id)
    assert (row.template, row.channel, row.status, row.survivor_id) == (
        "survivor_feedback_question",
        "sms",
        "scheduled",
        told.survivor_id,
    )
    assert row.send_at is not None and row.send_at >= A_WEEK_ON  # inside the safe window
    assert question.about_notification_id == told.welcome_id
    assert question.expires_at == A_WEEK_ON + timedelta(days=28)


async def test_a_survivor_due_a_question_is_reached_behind_many_who_cannot_be_asked(
    told: Told,
) -> None:
    """The look-back is read oldest first, a page at a time: older told messages of survivors
    who did not say yes must not fill the page and keep those who did waiting."""
    await told.opt_in()
    async with told.rt.sessions.begin() as session:
        welcome = await session.get_one(m.Notification, told.welcome_id)
        other = m.Survivor(party_ref="test:other", full_name="Sam Example", created_at=CRIME_AT)
        session.add(other)
        await session.flush()
        session.add(
            m.ContactPreference(
                survivor_id=other.id,
                version=1,
                recorded_at=CRIME_AT,
                recorded_by="test",
                reason_code="test",
                phone="+447700900456",
                sms_safe=True,
            )
        )
        for n in range(5):  # a page of them (5 for a limit of 1), told before the welcome
            session.add(
                m.Notification(
                    id=f"00000000-0000-0000-0000-00000000000{n}",
                    case_event_id=welcome.case_event_id,
                    case_id=welcome.case_id,
                    event_source=welcome.event_source,
                    event_id=welcome.event_id,
                    recipient_role="survivor",
                    survivor_id=other.id,
                    channel="sms",
                    template=welcome.template,
                    rules_version=welcome.rules_version,
                    rule=welcome.rule,
                    status="delivered",
                    created_at=CRIME_AT,
                    updated_at=CRIME_AT,
                    informed_at=CRIME_AT - timedelta(minutes=5 - n),
                )
            )
    assert await ask_for_feedback(told.rt, told.rules, limit=1) == 1
    (question,) = await told.questions()
    assert question.survivor_id == told.survivor_id


async def test_never_asked_after_distressing_news_or_when_opted_out(told: Told) -> None:
    await told.opt_in()
    async with told.rt.sessions.begin() as session:
        welcome = await session.get_one(m.Notification, told.welcome_id)
        welcome.hold_reason = "advocate_first"  # as if it had been bad news held for a person
    assert await ask_for_feedback(told.rt, told.rules) == 0
    async with told.rt.sessions.begin() as session:
        welcome = await session.get_one(m.Notification, told.welcome_id)
        welcome.hold_reason = None
        await session.execute(
            update(m.ContactPreference)
            .where(m.ContactPreference.survivor_id == told.survivor_id)
            .values(opted_out=True)
        )
    assert await ask_for_feedback(told.rt, told.rules) == 0


async def test_a_texted_number_answers_the_open_question(told: Told) -> None:
    await told.opt_in()
    assert await ask_for_feedback(told.rt, told.rules) == 1
    (question,) = await told.questions()
    # Not sent yet: a "4" now is an ordinary reply, passed to the advocate.
    assert await handle_inbound(told.rt, PHONE, "4", "SM-early") == "safety"
    await told.sent(question.question_notification_id)
    assert await handle_inbound(told.rt, PHONE, " 4.", "SM-answer") == "feedback"
    (answered,) = await told.questions()
    assert (answered.score, answered.answered_via, answered.comment) == (4, "sms", None)
    # Answered once: a second number is an ordinary reply again.
    assert await handle_inbound(told.rt, PHONE, "5", "SM-again") == "safety"
    (still,) = await told.questions()
    assert still.score == 4


async def test_words_besides_the_number_also_go_to_a_person(told: Told) -> None:
    await told.opt_in()
    await ask_for_feedback(told.rt, told.rules)
    (question,) = await told.questions()
    await told.sent(question.question_notification_id)
    kind = await handle_inbound(told.rt, PHONE, "2 nobody has called me back", "SM-words")
    assert kind == "feedback_passed"
    (answered,) = await told.questions()
    assert (answered.score, answered.comment) == (2, "nobody has called me back")
    async with told.rt.sessions() as session:
        passed = (
            await session.scalars(
                select(m.Notification).where(m.Notification.template == "advocate_survivor_replied")
            )
        ).all()
    assert len(passed) == 1 and passed[0].recipient_role == "advocate"


async def test_the_link_answers_once_and_cannot_be_forged(told: Told) -> None:
    await told.opt_in()
    await ask_for_feedback(told.rt, told.rules)
    (question,) = await told.questions()
    assert parse_link(f"{question.id}-{link_token(question.id)}") == question.id
    assert parse_link(f"{question.id + 1}-{link_token(question.id)}") is None
    app = base_app(told.rt, ["portal"])
    portal.mount(told.rt, app)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://portal.test") as client:
        url = f"/feedback/{question.id}-{link_token(question.id)}"
        form = await client.get(url)
        assert form.status_code == 200 and "How well have we kept you up to date?" in form.text
        assert "Riley" not in form.text and "01DM" not in form.text  # nothing about the case
        marker = 'name="csrf_token" value="'
        token = form.text.split(marker, 1)[1].split('"', 1)[0]
        missing = await client.post(url, data={"csrf_token": token})
        assert missing.status_code == 400 and "Choose an answer" in missing.text
        token = missing.text.split(marker, 1)[1].split('"', 1)[0]  # the form comes back anew
        done = await client.post(
            url, data={"csrf_token": token, "score": "5", "comment": "Jordan was great"}
        )
        assert done.status_code == 200 and "Thank you" in done.text
        again = await client.post(url, data={"csrf_token": token, "score": "1"})
        assert again.status_code == 404
        forged = await client.get(f"/feedback/{question.id}-{'0' * 32}")
        assert forged.status_code == 404
    (answered,) = await told.questions()
    assert (answered.score, answered.answered_via, answered.comment) == (
        5,
        "link",
        "Jordan was great",
    )


async def test_satisfaction_is_counted_by_quarter(told: Told) -> None:
    await told.opt_in()
    await ask_for_feedback(told.rt, told.rules)
    (question,) = await told.questions()
    await told.sent(question.question_notification_id)
    await handle_inbound(told.rt, PHONE, "5", "SM-5")
    async with told.rt.sessions() as session:
        rows = await satisfaction(
            session, start=date(2026, 10, 1), end=date(2026, 12, 31), team_id=None
        )
    assert rows == [
        {
            "quarter": "2026-Q4",
            "asked": 1,
            "answered": 1,
            "response_rate": 1.0,
            "mean_score": 5.0,
            "satisfied_share": 1.0,
        }
    ]
