"""Letters through the notifier, on SQLite and PostgreSQL: a survivor whose only safe channel is
the post gets a letter task (plain text and HTML, protected) stored exactly once however often
it is handed over; a CPS decision not to charge is written, held for the advocate, then queued
for post; staff mark it posted and the survivor counts as informed two working days later.

Events are recorded and decided the real way (ingest's recording, the rules consumer, the
dispatcher's release), with no broker: what would go to Kafka is kept in a list.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from services.core.clock import FixedClock
from services.core.db import models as m
from services.core.letters import mark_posted, mark_printed
from services.core.runtime import Runtime
from services.ingest.recording import record_event
from services.notifier.channels import channels_from_settings
from services.notifier.channels.base import DeliveryChannel
from services.notifier.delivery import claim, deliver
from services.rules.consumer import RulesConsumer
from services.rules.dispatcher import release_due, release_fallbacks
from services.rules.engine import Engine
from services.rules.ruleset import load_rules
from tests.integration.runtimes import migrated_runtime
from tests.integration.test_pipeline import add_team

T0 = datetime(2026, 11, 18, 11, 0, tzinfo=UTC)  # Wednesday; London is on GMT
URN = "01AB1234524"
ADDRESS = "Casey Example\nFlat 2\n1 Example Road\nExampleton\nZZ99 9ZZ"
STAFF = "staff:7"


class ListBroker:
    """Stands in for Kafka: keeps what would be published."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    async def publish(self, message: bytes, topic: str, **_: Any) -> None:
        self.published.append((topic, message))


@dataclass
class World:
    rt: Runtime
    clock: FixedClock
    channels: dict[str, DeliveryChannel]
    rules: RulesConsumer
    survivor_id: int
    outbox: Path

    async def event(self, etype: str, event_id: str, data: dict[str, Any]) -> None:
        """Record a case event that happened a minute ago, and decide it."""
        now = self.clock.now()
        source = "cps/north-west" if etype.startswith("cps.") else "police/01"
        obj = {
            "specversion": "1.0",
            "id": event_id,
            "source": source,
            "type": etype,
            "subject": URN,
            "time": (now - timedelta(minutes=1)).isoformat().replace("+00:00", "Z"),
            "data": data,
        }
        async with self.rt.sessions.begin() as session:
            outcome = await record_event(
                session,
                obj,
                json.dumps(obj).encode(),
                now=now,
                way_in="http",
                max_skew=timedelta(minutes=5),
            )
            assert outcome.case_event_id is not None, outcome.errors
            await self.rules.process(session, [outcome.case_event_id], now)

    async def notifications(self, event_id: str) -> dict[str, m.Notification]:
        """This event's notifications, by template (a letter as `letter:<template>`)."""
        async with self.rt.sessions() as session:
            rows = await session.scalars(
                select(m.Notification).where(m.Notification.event_id == event_id)
            )
            return {
                (f"letter:{r.template}" if r.channel == "letter_task" else r.template): r
                for r in rows
            }

    async def letter_tasks(self) -> list[m.LetterTask]:
        async with self.rt.sessions() as session:
            rows = await session.scalars(select(m.LetterTask).order_by(m.LetterTask.id))
            return list(rows.all())

    async def deliver_due(self) -> list[str | None]:
        """Release what is due and deliver each, as the dispatcher and notifier would."""
        await release_fallbacks(self.rt)
        await release_due(self.rt)
        async with self.rt.sessions() as session:
            queued = (
                await session.scalars(
                    select(m.Notification.id)
                    .where(m.Notification.status == "queued")
                    .order_by(m.Notification.id)
                )
            ).all()
        return [await deliver(self.rt, self.channels, nid) for nid in queued]


async def seed(session: Any, now: datetime) -> int:
    """A case with one survivor who can only safely be written to, and their ISVA."""
    _supervisor_id, isva_id = await add_team(session, now)
    case = m.Case(urn=URN, enhanced_rights=True, opened_at=now)
    survivor = m.Survivor(full_name="Casey Example", preferred_name="Casey", created_at=now)
    session.add_all([case, survivor])
    await session.flush()
    session.add_all(
        [
            m.CaseSurvivor(case_id=case.id, survivor_id=survivor.id, added_at=now),
            m.AdvocateAssignment(
                survivor_id=survivor.id, advocate_id=isva_id, valid_from=now - timedelta(days=1)
            ),
            m.ContactPreference(
                survivor_id=survivor.id,
                version=1,
                recorded_at=now,
                recorded_by=f"advocate:{isva_id}",
                reason_code="agreed_with_survivor",
                phone="+447700900321",
                sms_safe=False,  # someone else reads their texts
                postal_address=ADDRESS,
                letter_safe=True,
            ),
        ]
    )
    return survivor.id


@pytest.fixture
async def world(make_settings: Any, database_url: str) -> AsyncIterator[World]:
    settings = make_settings(database_url=database_url)
    clock = FixedClock(T0)
    async with migrated_runtime(settings, clock, ListBroker()) as rt:
        async with rt.sessions.begin() as session:
            survivor_id = await seed(session, T0)
        yield World(
            rt,
            clock,
            channels_from_settings(settings, rt.sessions),
            RulesConsumer(rt, Engine(load_rules(), rt.calendar)),
            survivor_id,
            settings.resolved_outbox_dir,
        )


def outbox_bodies(outbox: Path) -> dict[str, str]:
    files = [json.loads(p.read_text()) for p in outbox.glob("*.json")] if outbox.exists() else []
    return {f["template"]: f["body"] for f in files}


async def test_a_letter_is_stored_once_however_often_it_is_handed_over(world: World) -> None:
    await world.event("police.suspect_arrested", "a1", {})
    statuses = await world.deliver_due()
    # The ISVA's e-mail (the outbox: delivered) and the survivor's letter (queued for post).
    assert sorted(s or "" for s in statuses) == ["delivered", "sent"]
    letter = (await world.notifications("a1"))["letter:survivor_case_update"]
    assert (letter.status, letter.channel, letter.provider_ref) == (
        "sent",
        "letter_task",
        f"letter:{letter.id}",
    )
    assert letter.informed_at is None  # queued for post: nobody has read it yet

    # The same due record again (a redelivery, a re-drive): nothing more is stored.
    assert await deliver(world.rt, world.channels, letter.id) is None
    (task,) = await world.letter_tasks()
    assert task.notification_id == letter.id
    assert task.subject == "An update from the Care Hub"
    assert task.address == ADDRESS
    assert task.body_text.startswith(
        ADDRESS + "\n\n18 November 2026\n\nAn update from the Care Hub"
    )
    assert "Dear Casey," in task.body_text and "Ira Isva can talk it through" in task.body_text
    assert "arrest" not in task.body_text.lower()  # discreet by default, a letter too
    assert '<html lang="en">' in task.body_html and "Flat 2<br>" in task.body_html
    assert (task.printed_at, task.posted_at, task.posted_by) == (None, None, None)

    # Handing the very same message to the channel again stores nothing either.
    claimed_words = await _attempt_words(world, letter.id)
    again = await world.channels["letter_task"].send(claimed_words, world.clock.now())
    assert again.provider_ref == f"letter:{letter.id}" and not again.delivered
    assert len(await world.letter_tasks()) == 1

    # The advocate is told a message is going to the survivor (by post).
    assert "is being sent a message" in outbox_bodies(world.outbox)["advocate_case_update"]
    async with world.rt.sessions() as session:
        attempts = (
            await session.scalars(
                select(m.DeliveryAttempt).where(m.DeliveryAttempt.notification_id == letter.id)
            )
        ).all()
        raw = await session.scalar(
            select(func.count())
            .select_from(m.LetterTask)
            .where(m.LetterTask.notification_id == letter.id)
        )
    assert [(a.outcome, a.provider_status) for a in attempts] == [("sent", "queued_for_post")]
    assert raw == 1


async def _attempt_words(world: World, nid: str) -> Any:
    """The OutgoingMessage the notifier handed over, rebuilt from its recorded attempt."""
    from services.notifier.channels.base import OutgoingMessage

    async with world.rt.sessions() as session:
        row = await session.get_one(m.Notification, nid)
        attempt = (
            await session.scalars(
                select(m.DeliveryAttempt).where(m.DeliveryAttempt.notification_id == nid)
            )
        ).one()
    assert attempt.to_address and attempt.body
    return OutgoingMessage(
        notification_id=nid,
        event_id=row.event_id,
        case_urn=URN,
        recipient_role="survivor",
        channel="letter_task",
        to=attempt.to_address,
        language=attempt.language or "en",
        template=row.template,
        template_version=attempt.template_version or 1,
        subject=attempt.subject,
        body=attempt.body,
        send_at=row.send_at,
        due_by=row.due_by,
    )


async def test_a_hand_over_cut_off_by_a_crash_is_found_not_stored_again(world: World) -> None:
    await world.event("police.suspect_arrested", "a2", {})
    await release_due(world.rt)
    nid = (await world.notifications("a2"))["letter:survivor_case_update"].id
    claimed = await claim(world.rt, world.channels, nid)
    assert claimed is not None and claimed.message.channel == "letter_task"
    await world.channels["letter_task"].send(claimed.message, world.clock.now())
    # The notifier died here: the letter is stored, the notification still says `sending`.
    assert (await world.notifications("a2"))["letter:survivor_case_update"].status == "sending"
    world.clock.advance(timedelta(seconds=world.rt.settings.redrive_after_s + 1))
    assert await deliver(world.rt, world.channels, nid) == "sent"  # found, not stored again
    assert [t.notification_id for t in await world.letter_tasks()] == [nid]
    assert (await world.notifications("a2"))["letter:survivor_case_update"].attempts == 2


async def test_a_letter_no_longer_wanted_when_it_goes_is_not_stored(world: World) -> None:
    await world.event("police.suspect_arrested", "a3", {})
    async with world.rt.sessions.begin() as session:
        current = (await session.scalars(select(m.ContactPreference))).one()
        current.letter_safe = False  # they moved in with someone who opens the post
    await world.deliver_due()
    rows = await world.notifications("a3")
    letter = rows["letter:survivor_case_update"]
    assert (letter.status, letter.status_reason) == ("suppressed", "channel_no_longer_safe")
    assert not await world.letter_tasks()
    assert rows["advocate_pass_on_update"].supersedes_id == letter.id


async def test_a_decision_not_to_charge_is_written_held_for_the_advocate_then_posted(
    world: World,
) -> None:
    reason = "There is not enough evidence <to> take the case to court."
    data = {
        "decision": "no_charge",
        "reason": reason,
        "vrr_eligible": True,
        "meeting_offered": True,
    }
    await world.event("cps.charging_decision", "c1", data)
    rows = await world.notifications("c1")
    letter = rows["letter:survivor_decision_letter"]
    assert (letter.status, letter.hold_reason) == ("held", "advocate_first")
    # One letter about one event: their usual message went into it.
    assert "letter:survivor_get_in_touch" not in rows and "survivor_case_update" not in rows
    fallback = datetime(2026, 11, 19, 12, 0, tzinfo=UTC)  # noon on the deadline's day
    assert letter.send_at == fallback
    assert rows["advocate_tell_first"].related_id == letter.id

    await world.deliver_due()  # the advocate hears first; the letter waits
    told = outbox_bodies(world.outbox)["advocate_tell_first"]
    assert "A letter setting it out is held for you" in told
    assert "Thursday 19 November at 12:00" in told and "short message" not in told
    assert not await world.letter_tasks()

    world.clock.set(fallback)  # nobody released it: it goes to be posted by itself
    await world.deliver_due()
    assert (await world.notifications("c1"))["letter:survivor_decision_letter"].status == "sent"
    (task,) = await world.letter_tasks()
    assert task.subject == "A decision about your case"
    for words in (
        "has decided not to charge the suspect in your case",
        reason,
        "The CPS would like to meet you",
        "You can ask the CPS to review this decision",
        "ordinarily ask within 10 working days",
        "Ira Isva can explain how to ask",
        "call 999",
    ):
        assert words in task.body_text, words
    assert "&lt;to&gt;" in task.body_html and "<to>" not in task.body_html
    assert "3 months" not in task.body_text  # the police scheme's wording is not the CPS's

    posted_at = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)  # Friday afternoon
    printed_at = posted_at - timedelta(hours=2)
    async with world.rt.sessions.begin() as session:
        await mark_printed(session, task.id, STAFF, printed_at)
        await mark_printed(session, task.id, STAFF, posted_at)  # once is what counts
    async with world.rt.sessions.begin() as session:
        await mark_posted(session, task.id, STAFF, posted_at, calendar=world.rt.calendar)
    async with world.rt.sessions.begin() as session:  # twice: nothing changes
        await mark_posted(session, task.id, "staff:8", posted_at + timedelta(hours=1))
    (task,) = await world.letter_tasks()
    assert (task.posted_at, task.posted_by, task.printed_at) == (posted_at, STAFF, printed_at)
    row = (await world.notifications("c1"))["letter:survivor_decision_letter"]
    # Deemed to arrive on the second working day after posting: Tuesday 24 November.
    assert row.status == "delivered" and row.status_reason == "posted"
    assert row.informed_at == datetime(2026, 11, 24, 23, 59, 59, tzinfo=UTC)
    async with world.rt.sessions() as session:
        steps = (
            await session.scalars(
                select(m.AuditEntry)
                .where(m.AuditEntry.action.in_(("letter.printed", "letter.posted")))
                .order_by(m.AuditEntry.seq)
            )
        ).all()
    assert [(a.action, a.actor, a.notification_id) for a in steps] == [
        ("letter.printed", STAFF, row.id),
        ("letter.posted", STAFF, row.id),
    ]
