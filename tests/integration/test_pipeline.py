"""One case event travels from POST /v1/events to the survivor's and the advocate's outbox, on the
real embedded broker, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.db import models as m
from services.notifier.channels.outbox import OUTBOX_KEYS
from tests.conftest import CLOCK_T0

CE = {"content-type": "application/cloudevents+json"}


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def crime_recorded(
    urn: str, event_id: str, *, safe_to_text: bool = True, when: datetime | None = None
) -> dict[str, Any]:
    when = when or CLOCK_T0 - timedelta(minutes=5)
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "police/01",
        "type": "police.crime_recorded",
        "subject": urn,
        "time": iso(when),
        "data": {
            "crime_reference": f"CR-{event_id}",
            "offence_category": "sexual_offence",
            "victims": [
                {
                    "party_id": f"P-{event_id}",
                    "name": {"full": "Casey Example", "preferred": "Casey"},
                    "contact": {"phone": "+447700900321", "safe_to_text": safe_to_text},
                    "consent_to_referral": True,
                }
            ],
        },
    }


def arrested(urn: str, event_id: str) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "police/01",
        "type": "police.suspect_arrested",
        "subject": urn,
        "time": iso(CLOCK_T0 - timedelta(minutes=1)),
        "data": {},
    }


async def add_team(session: AsyncSession, now: datetime) -> tuple[int, int]:
    """A default team whose supervisor stands in for an advocate, and one ISVA."""
    team = m.Team(name="Team A", is_default=True)
    session.add(team)
    await session.flush()
    people = [
        m.Advocate(
            staff_ref=ref,
            role=role,
            team_id=team.id,
            display_name=name,
            email=email,
            phone=phone,
            created_at=now,
        )
        for ref, role, name, email, phone in (
            ("S1", "supervisor", "Sam Supervisor", "sam.supervisor@example.org", "+447700900010"),
            ("I1", "isva", "Ira Isva", "ira.isva@example.org", "+447700900011"),
        )
    ]
    session.add_all(people)
    await session.flush()
    team.supervisor_id = people[0].id
    return people[0].id, people[1].id


async def seed_team(stack: Any) -> tuple[int, int]:
    async with stack.runtime.sessions.begin() as session:
        return await add_team(session, stack.runtime.clock.now())


async def wait_for_files(directory: Path, count: int, timeout: float = 30) -> list[dict[str, Any]]:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        files = sorted(directory.glob("*.json")) if directory.exists() else []
        if len(files) >= count:
            await asyncio.sleep(0.3)  # anything beyond `count` would be a bug: let it show
            return [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))]
        await asyncio.sleep(0.1)
    raise AssertionError(f"expected {count} outbox files, found {len(files)}")


async def test_crime_recorded_reaches_survivor_and_stand_in_supervisor(stack: Any) -> None:
    await seed_team(stack)
    async with httpx.AsyncClient(base_url=stack.url) as client:
        response = await client.post(
            "/v1/events", json=crime_recorded("01AB1234524", "e1"), headers=CE
        )
    assert response.status_code == 202, response.text
    outbox = stack.runtime.settings.resolved_outbox_dir
    files = await wait_for_files(outbox, 2)
    assert len(files) == 2
    by_role = {f["recipient_role"]: f for f in files}
    survivor, supervisor = by_role["survivor"], by_role["supervisor"]
    assert set(survivor) == set(OUTBOX_KEYS)
    assert survivor["channel"] == "sms" and survivor["to"] == "+447700900321"
    assert survivor["template"] == "survivor_welcome" and survivor["case_urn"] == "01AB1234524"
    assert "Casey" in survivor["body"] and "Sam Supervisor" in survivor["body"]
    # Discreet by default: nothing in the text preview says what it is about.
    for word in ("police", "rape", "court", "sexual"):
        assert word not in survivor["body"].lower()
    assert supervisor["channel"] == "email" and supervisor["to"] == "sam.supervisor@example.org"
    assert supervisor["subject"] and "01AB1234524" in supervisor["subject"]
    # R4 referral: 2 working days after the day the crime was recorded.
    assert survivor["due_by"] == supervisor["due_by"] and survivor["due_by"].endswith(":59:59Z")

    async with stack.runtime.sessions() as session:
        statuses = (await session.scalars(select(m.Notification.status))).all()
        informed = (await session.scalars(select(m.Notification.informed_at))).all()
        actions = (
            await session.scalars(select(m.AuditEntry.action).order_by(m.AuditEntry.seq))
        ).all()
    assert statuses == ["delivered", "delivered"]
    assert all(informed)
    for action in (
        "event.recorded",
        "decision.send",
        "notification.queued",
        "notification.sending",
        "notification.delivered",
    ):
        assert action in actions


async def test_arrest_reaches_survivor_of_existing_case_and_is_idempotent(stack: Any) -> None:
    sup_id, isva_id = await seed_team(stack)
    async with httpx.AsyncClient(base_url=stack.url) as client:
        assert (
            await client.post("/v1/events", json=crime_recorded("01AB1234524", "c1"), headers=CE)
        ).status_code == 202
        await wait_for_files(stack.runtime.settings.resolved_outbox_dir, 2)
        async with stack.runtime.sessions.begin() as session:
            survivor_id = await session.scalar(select(m.Survivor.id))
            session.add(
                m.AdvocateAssignment(
                    survivor_id=survivor_id,
                    advocate_id=isva_id,
                    valid_from=stack.runtime.clock.now() - timedelta(seconds=1),
                )
            )
        event = arrested("01 AB 12345 24", "a1")
        first = await client.post("/v1/events", json=event, headers=CE)
        again = await client.post("/v1/events", json=event, headers=CE)
    assert first.status_code == 202
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    files = await wait_for_files(stack.runtime.settings.resolved_outbox_dir, 4)
    assert len(files) == 4
    update = next(f for f in files if f["template"] == "survivor_case_update")
    assert "Ira Isva" in update["body"] and "arrest" not in update["body"].lower()
    told = next(f for f in files if f["template"] == "advocate_case_update")
    assert told["to"] == "ira.isva@example.org" and "arrested" in told["body"]
    async with stack.runtime.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(m.CaseEvent)) == 2
        assert await session.scalar(select(func.count()).select_from(m.Notification)) == 4


async def test_event_before_its_case_is_parked_then_processed(stack: Any) -> None:
    await seed_team(stack)
    async with httpx.AsyncClient(base_url=stack.url) as client:
        assert (
            await client.post("/v1/events", json=arrested("01AB7654324", "early"), headers=CE)
        ).status_code == 202
        for _ in range(100):
            async with stack.runtime.sessions() as session:
                status = await session.scalar(select(m.CaseEvent.status))
            if status == "awaiting_context":
                break
            await asyncio.sleep(0.1)
        assert status == "awaiting_context"
        recorded = crime_recorded("01AB7654324", "late", when=CLOCK_T0 - timedelta(hours=1))
        assert (await client.post("/v1/events", json=recorded, headers=CE)).status_code == 202
    files = await wait_for_files(stack.runtime.settings.resolved_outbox_dir, 4)
    assert sorted(f["template"] for f in files) == [
        "advocate_case_update",
        "advocate_new_referral",
        "survivor_case_update",
        "survivor_welcome",
    ]


async def test_no_safe_channel_holds_and_tells_the_advocate(stack: Any) -> None:
    await seed_team(stack)
    async with httpx.AsyncClient(base_url=stack.url) as client:
        body = crime_recorded("01AB1111124", "n1", safe_to_text=False)
        assert (await client.post("/v1/events", json=body, headers=CE)).status_code == 202
    files = await wait_for_files(stack.runtime.settings.resolved_outbox_dir, 2)
    assert {f["recipient_role"] for f in files} == {"supervisor"}
    assert {f["template"] for f in files} == {"advocate_new_referral", "advocate_no_safe_channel"}
    async with stack.runtime.sessions() as session:
        held = (
            await session.scalars(
                select(m.Notification).where(m.Notification.recipient_role == "survivor")
            )
        ).one()
    assert held.status == "held" and held.hold_reason == "no_safe_channel"
    assert held.channel is None and held.due_by is not None


async def test_scheduled_notification_waits_for_its_time(stack: Any) -> None:
    """The dispatcher releases only what is due (a scheduled row in the future stays put)."""
    await seed_team(stack)
    async with httpx.AsyncClient(base_url=stack.url) as client:
        await client.post("/v1/events", json=crime_recorded("01AB2222224", "s1"), headers=CE)
    await wait_for_files(stack.runtime.settings.resolved_outbox_dir, 2)
    later = stack.runtime.clock.now() + timedelta(hours=2)
    async with stack.runtime.sessions.begin() as session:
        row = (await session.scalars(select(m.Notification).limit(1))).one()
        clone = m.Notification(
            **{
                c.name: getattr(row, c.name)
                for c in m.Notification.__table__.columns
                if c.name not in {"id", "status", "send_at", "informed_at", "sent_at", "queued_at"}
            },
            id="00000000-0000-5000-8000-000000000001",
            status="scheduled",
            send_at=later,
        )
        session.add(clone)
    await asyncio.sleep(1.0)
    async with stack.runtime.sessions() as session:
        assert (await session.get_one(m.Notification, clone.id)).status == "scheduled"
