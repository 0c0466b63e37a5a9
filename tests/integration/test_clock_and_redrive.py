"""Time is injectable from outside a process, and work the broker never carried is re-driven
from the database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from services.cli import SERVICES
from services.core.clock import FixedClock, write_clock_file
from services.core.cloudevents import payload_hash
from services.core.db import models as m
from services.core.embedded_broker import EmbeddedBroker
from services.core.records import CaseEventRef
from services.core.runner import running_stack
from services.core.topics import CASE_EVENTS
from services.rules.dispatcher import redrive
from tests.integration.runtimes import migrated_runtime
from tests.integration.test_pipeline import CE, crime_recorded, iso, seed_team, wait_for_files


async def test_a_clock_file_sets_the_time_of_a_running_stack(
    make_settings: Any, sqlite_url: str, broker: EmbeddedBroker, tmp_path: Path
) -> None:
    clock = tmp_path / "clock"
    friday = datetime(2026, 11, 20, 14, 5, tzinfo=UTC)
    write_clock_file(clock, friday)
    settings = make_settings(
        database_url=sqlite_url, kafka_bootstrap=broker.bootstrap, clock_file=clock
    )
    async with running_stack(settings, list(SERVICES.values()), own_broker=False) as stack:
        await seed_team(stack)
        event = crime_recorded("01AB1234524", "t1", when=datetime(2026, 11, 20, 14, 0, tzinfo=UTC))
        today = crime_recorded("01AB1234524", "t2", when=datetime.now(UTC))
        async with httpx.AsyncClient(base_url=stack.url) as client:
            accepted = await client.post("/v1/events", json=event, headers=CE)
            # Real "now" is days after the file's Friday: for this process it is the future.
            future = await client.post("/v1/events", json=today, headers=CE)
        assert accepted.status_code == 202
        assert future.status_code == 422 and future.json()["errors"][0]["pointer"] == "/time"
        files = await wait_for_files(settings.resolved_outbox_dir, 2)
    # Recorded on Friday 20 November: 2 working days on is Tuesday 24 November.
    assert {f["due_by"] for f in files} == {"2026-11-24T23:59:59Z"}
    assert {f["written_at"] for f in files} == {iso(friday)}


async def test_an_event_recorded_but_never_published_is_redriven(
    make_settings: Any, database_url: str, broker: EmbeddedBroker
) -> None:
    settings = make_settings(
        database_url=database_url, kafka_bootstrap=broker.bootstrap, redrive_after_s=1
    )
    async with running_stack(settings, list(SERVICES.values()), own_broker=False) as stack:
        await seed_team(stack)
        # As if ingest committed the event and then died before publishing it.
        event = crime_recorded("01AB1234524", "lost1")
        async with httpx.AsyncClient(base_url=stack.url) as client:
            assert (await client.post("/v1/events", json=event, headers=CE)).status_code == 202
        await wait_for_files(settings.resolved_outbox_dir, 2)
        now = stack.runtime.clock.now()
        async with stack.runtime.sessions.begin() as session:
            case_id = await session.scalar(select(m.Case.id))
            arrested = {
                "specversion": "1.0",
                "id": "lost2",
                "source": "police/01",
                "type": "police.suspect_arrested",
                "subject": "01AB1234524",
                "time": iso(now),
                "data": {},
            }
            session.add(
                m.CaseEvent(
                    source="police/01",
                    event_id="lost2",
                    type="police.suspect_arrested",
                    urn="01AB1234524",
                    event_time=now,
                    received_at=now,
                    payload=arrested,
                    payload_hash=payload_hash(arrested),
                    status="pending",
                )
            )
        assert case_id is not None
        files = await wait_for_files(settings.resolved_outbox_dir, 4, timeout=30)
        assert "survivor_case_update" in {f["template"] for f in files}
        await asyncio.sleep(0.5)
        async with stack.runtime.sessions() as session:
            row = await session.scalar(select(m.CaseEvent).where(m.CaseEvent.event_id == "lost2"))
        assert row is not None and row.processed_at is not None and row.published_at is not None


class CaseEventsKept:
    """Stands in for Kafka: keeps the event ids published on `case-events`."""

    def __init__(self) -> None:
        self.events: list[str] = []

    async def publish(self, message: bytes, topic: str, **_: Any) -> None:
        if topic == CASE_EVENTS.name:
            self.events.append(CaseEventRef.decode(message).id)


async def test_events_waiting_behind_a_busy_rules_consumer_are_not_published_again(
    make_settings: Any, database_url: str
) -> None:
    """A replayed feed leaves the rules consumer minutes behind. The events it has not reached
    yet are in the topic, waiting their turn: the re-drive publishes them again only once it has
    stopped processing (the broker lost them) or after ten times `CAREHUB_REDRIVE_AFTER_S`,
    while an event never published is re-driven at once."""
    t0 = datetime(2026, 11, 18, 11, 0, tzinfo=UTC)
    clock = FixedClock(t0)
    settings = make_settings(database_url=database_url, redrive_after_s=60)
    kept = CaseEventsKept()

    def event(
        event_id: str, *, published: datetime | None, processed: datetime | None = None
    ) -> m.CaseEvent:
        payload = {"specversion": "1.0", "id": event_id, "source": "police/01"}
        return m.CaseEvent(
            source="police/01",
            event_id=event_id,
            type="police.suspect_arrested",
            urn="01AB1234524",
            event_time=t0 - timedelta(minutes=30),
            received_at=t0 - timedelta(minutes=30),
            payload=payload,
            payload_hash=payload_hash(payload),
            status="processed" if processed else "pending",
            published_at=published,
            processed_at=processed,
        )

    async with migrated_runtime(settings, clock, kept) as rt:
        async with rt.sessions.begin() as session:
            session.add_all(
                [
                    # The rules consumer finished one 10 s ago: it is working through a backlog.
                    event(
                        "done",
                        published=t0 - timedelta(minutes=30),
                        processed=t0 - timedelta(seconds=10),
                    ),
                    event("waiting", published=t0 - timedelta(minutes=5)),
                    event("unpublished", published=None),  # ingest died before publishing it
                    event("lost", published=t0 - timedelta(minutes=11)),  # 10 x 60 s and more
                ]
            )
        assert await redrive(rt) == {"events": 2, "notifications": 0}
        assert sorted(kept.events) == ["lost", "unpublished"]

        # A minute later nothing has been processed: the broker lost them. All three go again.
        clock.advance(timedelta(seconds=61))
        kept.events.clear()
        assert await redrive(rt) == {"events": 3, "notifications": 0}
        assert sorted(kept.events) == ["lost", "unpublished", "waiting"]


async def test_a_queued_notification_the_broker_lost_is_sent_once_the_notifier_is_idle(
    make_settings: Any, database_url: str, broker: EmbeddedBroker
) -> None:
    settings = make_settings(
        database_url=database_url, kafka_bootstrap=broker.bootstrap, redrive_after_s=2
    )
    async with running_stack(settings, list(SERVICES.values()), own_broker=False) as stack:
        await seed_team(stack)
        event = crime_recorded("01AB1234524", "q1")
        async with httpx.AsyncClient(base_url=stack.url) as client:
            assert (await client.post("/v1/events", json=event, headers=CE)).status_code == 202
        first = await wait_for_files(settings.resolved_outbox_dir, 2)
        # As if the dispatcher queued a copy and the broker lost the record: a queued row that
        # no `notifications.due` record will ever carry.
        async with stack.runtime.sessions.begin() as session:
            original = await session.scalar(
                select(m.Notification).where(m.Notification.recipient_role == "survivor")
            )
            assert original is not None
            now = stack.runtime.clock.now()
            lost = m.Notification(
                **{
                    c.key: getattr(original, c.key)
                    for c in m.Notification.__table__.columns
                    if c.key not in ("id", "status", "queued_at", "provider_ref", "attempts")
                },
                id="00000000-0000-5000-8000-00000000a001",
                status="queued",
                queued_at=now,
                attempts=0,
            )
            lost.rule = original.rule + ".copy"
            session.add(lost)
        files = await wait_for_files(settings.resolved_outbox_dir, len(first) + 1, timeout=30)
        assert "00000000-0000-5000-8000-00000000a001" in {f["notification_id"] for f in files}
        async with stack.runtime.sessions() as session:
            actions = (
                await session.scalars(
                    select(m.AuditEntry.action).where(
                        m.AuditEntry.notification_id == "00000000-0000-5000-8000-00000000a001"
                    )
                )
            ).all()
        assert "notification.redriven" in actions
        assert actions.count("notification.delivered") == 1


async def test_an_event_parked_too_long_for_its_case_is_raised_once(
    make_settings: Any, database_url: str, broker: EmbeddedBroker, clock_file: Path
) -> None:
    settings = make_settings(
        database_url=database_url,
        kafka_bootstrap=broker.bootstrap,
        parked_alert_after_s=3600,
        redrive_after_s=2,  # the dispatcher looks every second
    )
    async with running_stack(settings, list(SERVICES.values()), own_broker=False) as stack:
        event = arrested_for("01ZZ1234524", "orphan1")
        async with httpx.AsyncClient(base_url=stack.url) as client:
            assert (await client.post("/v1/events", json=event, headers=CE)).status_code == 202

        async def alerts() -> list[str]:
            async with stack.runtime.sessions() as session:
                return list(
                    (
                        await session.scalars(
                            select(m.AuditEntry.action).where(
                                m.AuditEntry.action.in_(
                                    ("event.awaiting_context", "event.parked_too_long")
                                )
                            )
                        )
                    ).all()
                )

        for _ in range(100):
            if await alerts():
                break
            await asyncio.sleep(0.1)
        assert await alerts() == ["event.awaiting_context"]
        # Two hours on, the case has still not come: operations hear of it, once.
        write_clock_file(clock_file, datetime(2026, 11, 18, 13, 0, tzinfo=UTC), ticking=True)
        for _ in range(100):
            if "event.parked_too_long" in await alerts():
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        assert sorted(await alerts()) == ["event.awaiting_context", "event.parked_too_long"]


def arrested_for(urn: str, event_id: str) -> dict[str, Any]:
    from tests.integration.test_pipeline import arrested

    return arrested(urn, event_id)
