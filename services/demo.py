"""Demo data and the scripted `carehub demo` timeline. All of it is fake: phone numbers in the
Ofcom drama range, addresses at example.org."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.db import models as m
from services.core.states import FINAL

DEMO_TEAM = "North London ISVA service (demo)"
DEMO_URN = "01DM1234526"
DEMO_SOURCE = "police/01"
DEMO_PARTY = "P-DEMO-1"


async def seed(session: AsyncSession, now: datetime) -> dict[str, int]:
    """Create the demo team, supervisor, ISVA, and one referred survivor; idempotent."""
    team = await session.scalar(select(m.Team).where(m.Team.name == DEMO_TEAM))
    if team is None:
        team = m.Team(name=DEMO_TEAM, is_default=True)
        session.add(team)
        await session.flush()
        supervisor = m.Advocate(
            staff_ref="DEMO-SUP-1",
            role="supervisor",
            team_id=team.id,
            display_name="Morgan Example",
            email="morgan.supervisor@example.org",
            phone="+447700900001",
            created_at=now,
        )
        isva = m.Advocate(
            staff_ref="DEMO-ISVA-1",
            role="isva",
            team_id=team.id,
            display_name="Jordan Example",
            email="jordan.isva@example.org",
            phone="+447700900002",
            created_at=now,
        )
        session.add_all([supervisor, isva])
        await session.flush()
        team.supervisor_id = supervisor.id
    isva_id = await session.scalar(
        select(m.Advocate.id).where(m.Advocate.staff_ref == "DEMO-ISVA-1")
    )
    assert isva_id is not None
    party_ref = f"{DEMO_SOURCE}:{DEMO_PARTY}"
    survivor = await session.scalar(select(m.Survivor).where(m.Survivor.party_ref == party_ref))
    if survivor is None:
        survivor = m.Survivor(
            party_ref=party_ref,
            full_name="Riley Example",
            preferred_name="Riley",
            consent_to_referral=True,
            created_at=now,
        )
        session.add(survivor)
        await session.flush()
        session.add(
            m.AdvocateAssignment(
                survivor_id=survivor.id,
                advocate_id=isva_id,
                valid_from=now - timedelta(days=1),
                reason="referral",
            )
        )
        session.add(
            m.ContactPreference(
                survivor_id=survivor.id,
                version=1,
                recorded_at=now,
                recorded_by=f"advocate:{isva_id}",
                reason_code="agreed_with_survivor",
                phone="+447700900123",
                email="riley@example.org",
                sms_safe=True,
                sms_safe_review_by=date.today() + timedelta(days=180),
                email_safe=True,
                detail="discreet",
                frequency="all",
            )
        )
    return {"team_id": team.id, "isva_id": isva_id, "survivor_id": survivor.id}


def timeline(now: datetime) -> list[dict[str, Any]]:
    """The scripted case: a rape reported, an arrest, a charge (no message rule yet)."""

    def at(minutes: int) -> str:
        return (now - timedelta(minutes=minutes)).astimezone(UTC).isoformat().replace("+00:00", "Z")

    base = {
        "specversion": "1.0",
        "source": DEMO_SOURCE,
        "subject": DEMO_URN,
        "datacontenttype": "application/json",
    }
    return [
        {
            **base,
            "id": "demo-0001",
            "type": "police.crime_recorded",
            "time": at(30),
            "data": {
                "crime_reference": "CR-DEMO-26",
                "offence_category": "sexual_offence",
                "victims": [
                    {
                        "party_id": DEMO_PARTY,
                        "relationship": "victim",
                        "name": {"full": "Riley Example", "preferred": "Riley"},
                        "contact": {"phone": "+447700900123", "safe_to_text": True},
                        "consent_to_referral": True,
                    }
                ],
            },
        },
        {**base, "id": "demo-0002", "type": "police.suspect_arrested", "time": at(20), "data": {}},
        {
            **base,
            "id": "demo-0003",
            "type": "police.suspect_charged",
            "time": at(10),
            "data": {"charges": [{"offence": "rape"}]},
        },
    ]


async def wait_until_settled(session_factory: Any, case_urn: str, timeout_s: float = 30) -> bool:
    """Wait until every event of the case is processed and every notification is final or held."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    waiting = {"held"} | {s.value for s in FINAL}
    while asyncio.get_running_loop().time() < deadline:
        async with session_factory() as session:
            open_events = await session.scalar(
                select(func.count()).where(
                    m.CaseEvent.urn == case_urn, m.CaseEvent.processed_at.is_(None)
                )
            )
            statuses = (
                await session.scalars(
                    select(m.Notification.status)
                    .join(m.Case, m.Case.id == m.Notification.case_id)
                    .where(m.Case.urn == case_urn)
                )
            ).all()
        if open_events == 0 and statuses and all(s in waiting for s in statuses):
            return True
        await asyncio.sleep(0.2)
    return False


async def post_timeline(url: str, events: list[dict[str, Any]]) -> list[tuple[str, int, str]]:
    """POST each event (then one duplicate and one invalid event) to a running stack."""
    results: list[tuple[str, int, str]] = []
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        extra = [events[1], {**events[1], "id": "demo-bad", "subject": "not a URN"}]
        for event in [*events, *extra]:
            response = await client.post(
                "/v1/events",
                json=event,
                headers={"content-type": "application/cloudevents+json"},
            )
            results.append(
                (str(event["id"]), response.status_code, response.json().get("status", "invalid"))
            )
    return results
