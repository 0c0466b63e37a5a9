"""A message that waits (for a safe window) is checked against the survivor's choices again when
it goes: opting out or losing a safe channel in between stops it, and the advocate is told."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from services.cli import SERVICES
from services.core.clock import write_clock_file
from services.core.db import models as m
from services.core.embedded_broker import EmbeddedBroker
from services.core.runner import running_stack
from tests.integration.test_pipeline import CE, crime_recorded, seed_team, wait_for_files

EVENING = datetime(2026, 11, 18, 21, 0, tzinfo=UTC)  # Wednesday, after the 20:00 window closes
NEXT_MORNING = datetime(2026, 11, 19, 9, 0, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"opted_out": True}, "opted_out"),
        ({"sms_safe_review_by": date(2026, 11, 18)}, "channel_no_longer_safe"),
    ],
)
async def test_a_waiting_message_respects_a_change_made_while_it_waited(
    make_settings: Any,
    database_url: str,
    broker: EmbeddedBroker,
    tmp_path: Path,
    change: dict[str, Any],
    reason: str,
) -> None:
    clock = tmp_path / "evening-clock"
    write_clock_file(clock, EVENING)
    settings = make_settings(
        database_url=database_url, kafka_bootstrap=broker.bootstrap, clock_file=clock
    )
    async with running_stack(settings, list(SERVICES.values()), own_broker=False) as stack:
        await seed_team(stack)
        event = crime_recorded(
            "01AB1234524", "late1", when=datetime(2026, 11, 18, 20, 55, tzinfo=UTC)
        )
        async with httpx.AsyncClient(base_url=stack.url) as client:
            assert (await client.post("/v1/events", json=event, headers=CE)).status_code == 202
        outbox = settings.resolved_outbox_dir
        first = await wait_for_files(outbox, 1)
        assert [f["template"] for f in first] == ["advocate_new_referral"]  # the survivor waits
        async with stack.runtime.sessions.begin() as session:
            waiting = (
                await session.scalars(
                    select(m.Notification).where(m.Notification.recipient_role == "survivor")
                )
            ).one()
            assert waiting.status == "scheduled"
            current = (await session.scalars(select(m.ContactPreference))).one()
            session.add(
                m.ContactPreference(
                    **{
                        c.name: getattr(current, c.name)
                        for c in m.ContactPreference.__table__.columns
                        if c.name not in {"id", "version", "reason_code"}
                    },
                    version=2,
                    reason_code="changed_by_survivor",
                )
            )
            await session.flush()
            latest = (
                await session.scalars(
                    select(m.ContactPreference).where(m.ContactPreference.version == 2)
                )
            ).one()
            for key, value in change.items():
                setattr(latest, key, value)
        write_clock_file(clock, NEXT_MORNING)
        files = await wait_for_files(outbox, 2)
        async with stack.runtime.sessions() as session:
            survivor_row = await session.get_one(m.Notification, waiting.id)
            task = (
                await session.scalars(
                    select(m.Notification).where(m.Notification.supersedes_id == waiting.id)
                )
            ).one()
            handed = (
                await session.scalars(
                    select(m.AuditEntry).where(
                        m.AuditEntry.action == "notification.handed_to_advocate"
                    )
                )
            ).one()
    assert {f["recipient_role"] for f in files} == {"supervisor"}
    assert sorted(f["template"] for f in files) == [
        "advocate_new_referral",
        "advocate_pass_on_update",
    ]
    assert survivor_row.status == "suppressed" and survivor_row.status_reason == reason
    assert task.status == "delivered" and task.template == "advocate_pass_on_update"
    assert handed.notification_id == task.id and handed.codes["reason"] == reason
    pass_on = next(f for f in files if f["template"] == "advocate_pass_on_update")
    assert reason.replace("_", " ") in pass_on["body"]


async def test_a_newer_hearing_event_replaces_the_unsent_older_message(
    make_settings: Any, database_url: str, broker: EmbeddedBroker, tmp_path: Path
) -> None:
    clock = tmp_path / "evening-clock"
    write_clock_file(clock, EVENING)
    settings = make_settings(
        database_url=database_url, kafka_bootstrap=broker.bootstrap, clock_file=clock
    )

    def court(event_id: str, etype: str, minute: int, data: dict[str, Any]) -> dict[str, Any]:
        at = datetime(2026, 11, 18, 20, minute, tzinfo=UTC).isoformat().replace("+00:00", "Z")
        return {
            "specversion": "1.0",
            "id": event_id,
            "source": "court/common-platform",
            "type": etype,
            "subject": "01AB1234524",
            "time": at,
            "agencyreceivedat": at,
            "data": data,
        }

    hearing = {"kind": "trial", "date": "2027-03-08", "time": "10:00", "court": "Example Court"}
    listed = court("h1", "court.hearing_scheduled", 30, {"hearing": hearing})
    moved = court(
        "h2",
        "court.hearing_changed",
        50,
        {
            "change": "relisted",
            "previous_date": "2027-03-08",
            "hearing": {**hearing, "date": "2027-04-12"},
        },
    )
    async with running_stack(settings, list(SERVICES.values()), own_broker=False) as stack:
        await seed_team(stack)
        recorded = crime_recorded("01AB1234524", "c1", when=datetime(2026, 11, 18, 10, tzinfo=UTC))
        async with httpx.AsyncClient(base_url=stack.url) as client:
            for event in (recorded, listed, moved):
                assert (await client.post("/v1/events", json=event, headers=CE)).status_code == 202
        outbox = settings.resolved_outbox_dir
        await wait_for_files(outbox, 3)  # the advocate hears of each at once; the survivor waits
        write_clock_file(clock, NEXT_MORNING)
        files = await wait_for_files(outbox, 5)
        async with stack.runtime.sessions() as session:
            rows = (
                await session.scalars(
                    select(m.Notification).where(
                        m.Notification.recipient_role == "survivor",
                        m.Notification.coalesce_key == "hearing",
                    )
                )
            ).all()
    survivor_files = [f for f in files if f["recipient_role"] == "survivor"]
    assert sorted(f["event_id"] for f in survivor_files) == ["c1", "h2"]  # never the stale date
    by_event = {r.event_id: r for r in rows}
    assert by_event["h1"].status == "cancelled"
    assert by_event["h1"].status_reason == "superseded_by_newer_event"
    assert (
        by_event["h2"].status == "delivered" and by_event["h2"].supersedes_id == by_event["h1"].id
    )
    assert len([f for f in files if f["template"] == "advocate_case_update"]) == 2


async def test_a_message_delayed_into_the_night_is_put_off_to_the_morning(
    make_settings: Any, database_url: str, broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """A backlog or an outage released it late: the last look keeps it out of quiet hours."""
    clock = tmp_path / "clock"
    daytime = datetime(2026, 11, 18, 11, 0, tzinfo=UTC)
    write_clock_file(clock, daytime)
    settings = make_settings(
        database_url=database_url, kafka_bootstrap=broker.bootstrap, clock_file=clock
    )
    async with running_stack(settings, list(SERVICES.values()), own_broker=False) as stack:
        await seed_team(stack)
        event = crime_recorded("01AB1234524", "d1", when=datetime(2026, 11, 18, 10, tzinfo=UTC))
        async with httpx.AsyncClient(base_url=stack.url) as client:
            assert (await client.post("/v1/events", json=event, headers=CE)).status_code == 202
        outbox = settings.resolved_outbox_dir
        await wait_for_files(outbox, 2)
        night = datetime(2026, 11, 18, 23, 30, tzinfo=UTC)
        write_clock_file(clock, night)
        late_id = "00000000-0000-5000-8000-0000000000aa"
        async with stack.runtime.sessions.begin() as session:
            sent = (
                await session.scalars(
                    select(m.Notification).where(m.Notification.recipient_role == "survivor")
                )
            ).one()
            skip = {
                "id",
                "status",
                "send_at",
                "informed_at",
                "sent_at",
                "queued_at",
                "rule",
                "due_by",
            }
            session.add(
                m.Notification(
                    **{
                        c.name: getattr(sent, c.name)
                        for c in m.Notification.__table__.columns
                        if c.name not in skip
                    },
                    id=late_id,
                    rule=f"{sent.rule}.late-copy",
                    status="scheduled",
                    send_at=datetime(2026, 11, 18, 19, 0, tzinfo=UTC),
                    due_by=datetime(2026, 11, 20, 23, 59, 59, tzinfo=UTC),
                )
            )
        for _ in range(100):
            async with stack.runtime.sessions() as session:
                row = await session.get_one(m.Notification, late_id)
            if row.status == "scheduled" and row.send_at is not None and row.send_at > night:
                break
            await asyncio.sleep(0.1)
        assert row.status == "scheduled"
        assert row.send_at == datetime(2026, 11, 19, 9, 0, tzinfo=UTC)
        assert not (outbox / f"{late_id}.json").exists()
        write_clock_file(clock, datetime(2026, 11, 19, 9, 0, 5, tzinfo=UTC))
        await wait_for_files(outbox, 3)
        async with stack.runtime.sessions() as session:
            assert (await session.get_one(m.Notification, late_id)).status == "delivered"
