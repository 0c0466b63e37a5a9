"""Demo data and the scripted `carehub demo` timeline. All of it is fake: phone numbers in the
Ofcom drama range, addresses at example.org."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.db import models as m

LONDON = ZoneInfo("Europe/London")
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
                sms_safe_review_by=now.date() + timedelta(days=180),
                email_safe=True,
                detail="discreet",
                frequency="all",
            )
        )
    await seed_staff(session, now)
    return {"team_id": team.id, "isva_id": isva_id, "survivor_id": survivor.id}


# Demo sign-ins for the portal (development only: `carehub run --demo-data` prints them, and
# `carehub staff code USER` prints the current second-factor code, so nobody needs an app).
DEMO_PASSWORD = "carehub-demo-password"
DEMO_STAFF = (
    ("demo-isva", "advocate", "DEMO-ISVA-1", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXA"),
    ("demo-supervisor", "supervisor", "DEMO-SUP-1", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXB"),
    ("demo-ops", "operations", None, "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXC"),
)


async def seed_staff(session: AsyncSession, now: datetime) -> None:
    from services.portal.auth import Role
    from services.portal.cli import add_account

    for username, role, advocate_ref, secret in DEMO_STAFF:
        if await session.scalar(
            select(m.StaffAccount.id).where(m.StaffAccount.username == username)
        ):
            continue
        await add_account(
            session,
            username=username,
            role=Role(role),
            password=DEMO_PASSWORD,
            advocate_ref=advocate_ref,
            now=now,
            totp_secret=secret,
        )


def staff_banner(url: str) -> str:
    names = ", ".join(u for u, *_ in DEMO_STAFF)
    return (
        f"portal: {url}/ — sign in as {names} with password {DEMO_PASSWORD}; "
        "the code: `carehub staff code demo-isva`"
    )


@dataclass(frozen=True)
class Step:
    """One moment of the scripted case: the clock is set, then events arrive."""

    title: str
    at: datetime
    events: tuple[dict[str, Any], ...] = ()


def _london(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=LONDON).astimezone(UTC)


def _event(event_id: str, etype: str, when: datetime, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": DEMO_SOURCE,
        "type": etype,
        "subject": DEMO_URN,
        "time": when.isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": data,
    }


def script() -> list[Step]:
    """A rape reported on a Monday, an arrest late that evening, then "no further action"."""
    crime = _event(
        "demo-0001",
        "police.crime_recorded",
        _london(16, 9, 30),
        {
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
    )
    arrest = _event("demo-0002", "police.suspect_arrested", _london(16, 21, 0), {})
    nfa = _event(
        "demo-0003",
        "police.no_further_action",
        _london(18, 9, 45),
        {"outcome_code": 15, "reason": "Evidential difficulties.", "vrr_eligible": True},
    )
    return [
        Step("Mon 16 Nov 10:00  the crime is recorded", _london(16, 10), (crime,)),
        Step(
            "Mon 16 Nov 21:30  a suspect is arrested late in the evening",
            _london(16, 21, 30),
            (arrest, arrest, {**arrest, "id": "demo-bad", "subject": "not a URN"}),
        ),
        Step("Tue 17 Nov 09:00  the survivor's safe window opens", _london(17, 9)),
        Step("Wed 18 Nov 10:00  the police take no further action", _london(18, 10), (nfa,)),
        Step("Thu 19 Nov 05:00  half the time allowed has passed", _london(19, 5)),
        Step("Thu 19 Nov 12:00  nobody has told her yet: the fallback goes", _london(19, 12)),
    ]


async def settled(session_factory: Any, case_urn: str, now: datetime) -> bool:
    """Every event of the case processed, and nothing due left waiting to be sent."""
    busy = {"queued", "sending"}
    async with session_factory() as session:
        open_events = await session.scalar(
            select(func.count()).where(
                m.CaseEvent.urn == case_urn, m.CaseEvent.processed_at.is_(None)
            )
        )
        rows = (
            await session.execute(
                select(m.Notification.status, m.Notification.send_at, m.Notification.hold_reason)
                .join(m.Case, m.Case.id == m.Notification.case_id)
                .where(m.Case.urn == case_urn)
            )
        ).all()
    for status, send_at, hold_reason in rows:
        due = send_at is not None and send_at <= now
        if status in busy or (status == "scheduled" and due):
            return False
        if status == "held" and hold_reason == "advocate_first" and due:
            return False
    return bool(open_events == 0)


async def wait_until_settled(
    session_factory: Any, case_urn: str, now: datetime, timeout_s: float = 30
) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        if await settled(session_factory, case_urn, now):
            return True
        await asyncio.sleep(0.1)
    return False


async def post_events(url: str, events: tuple[dict[str, Any], ...]) -> list[tuple[str, int, str]]:
    results: list[tuple[str, int, str]] = []
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        for event in events:
            response = await client.post(
                "/v1/events", json=event, headers={"content-type": "application/cloudevents+json"}
            )
            results.append(
                (str(event["id"]), response.status_code, response.json().get("status", "invalid"))
            )
    return results
