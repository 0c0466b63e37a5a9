"""The notifier claims several notifications in one transaction as it would claim them one at a
time, on SQLite and PostgreSQL: the same words to the same addresses, the same statuses, and one
task for the advocate where one is owed (here: a survivor whose language has no templates).

Events are recorded and decided the real way and released by the dispatcher, with no broker.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from services.core.calendar import load_calendar
from services.core.clock import FixedClock
from services.core.db import models as m
from services.core.db.engine import make_engine, session_factory, upgrade
from services.core.runtime import Runtime
from services.ingest.recording import record_event
from services.notifier.channels import channels_from_settings
from services.notifier.delivery import Claim, claim, claim_many, hand_over, record_many
from services.rules.consumer import RulesConsumer
from services.rules.dispatcher import release_due
from services.rules.engine import Engine
from services.rules.ruleset import load_rules
from tests.integration.test_pipeline import add_team

T0 = datetime(2026, 11, 18, 11, 0, tzinfo=UTC)  # Wednesday, inside every default safe window


class ListBroker:
    async def publish(self, message: bytes, topic: str, **_: Any) -> None:
        return None


@pytest.fixture
async def rt(make_settings: Any, database_url: str) -> AsyncIterator[Runtime]:
    settings = make_settings(database_url=database_url)
    engine = make_engine(settings.resolved_database_url)
    await upgrade(engine)
    runtime = Runtime(
        settings,
        engine,
        session_factory(engine),
        FixedClock(T0),
        load_calendar(None),
        ListBroker(),  # type: ignore[arg-type]
    )
    async with runtime.sessions.begin() as session:
        _supervisor, isva = await add_team(session, T0)
        for urn in ("01AB2000124", "01AB2000224"):
            case = m.Case(urn=urn, opened_at=T0)
            survivor = m.Survivor(full_name="Ola Example", preferred_name="Ola", created_at=T0)
            session.add_all([case, survivor])
            await session.flush()
            session.add_all(
                [
                    m.CaseSurvivor(case_id=case.id, survivor_id=survivor.id, added_at=T0),
                    m.AdvocateAssignment(
                        survivor_id=survivor.id, advocate_id=isva, valid_from=T0 - timedelta(1)
                    ),
                    m.ContactPreference(
                        survivor_id=survivor.id,
                        version=1,
                        recorded_at=T0,
                        recorded_by=f"advocate:{isva}",
                        reason_code="agreed_with_survivor",
                        phone="+447700900321",
                        sms_safe=True,
                        language="pl",  # no templates in Polish yet: English, and a task
                    ),
                ]
            )
    try:
        yield runtime
    finally:
        await engine.dispose()


async def queued_for(rt: Runtime, urn: str, prefix: str) -> list[str]:
    """Two updates for the case's survivor, decided and released: their ids, in order."""
    consumer = RulesConsumer(rt, Engine(load_rules(), rt.calendar))
    async with rt.sessions.begin() as session:
        ids = []
        for n, etype in enumerate(("police.suspect_arrested", "police.suspect_interviewed")):
            obj = {
                "specversion": "1.0",
                "id": f"{prefix}{n}",
                "source": "police/01",
                "type": etype,
                "subject": urn,
                "time": (T0 - timedelta(minutes=30)).isoformat().replace("+00:00", "Z"),
                "data": {},
            }
            outcome = await record_event(
                session,
                obj,
                json.dumps(obj).encode(),
                now=T0,
                way_in="http",
                max_skew=timedelta(minutes=5),
            )
            assert outcome.case_event_id is not None
            ids.append(outcome.case_event_id)
        await consumer.process(session, ids, T0)
    await release_due(rt)
    async with rt.sessions() as session:
        return list(
            (
                await session.scalars(
                    select(m.Notification.id)
                    .join(m.Case, m.Case.id == m.Notification.case_id)
                    .where(m.Case.urn == urn, m.Notification.status == "queued")
                    .order_by(m.Notification.event_id, m.Notification.rule)
                )
            ).all()
        )


def words(claimed: Claim | None | Exception, urn: str) -> tuple[Any, ...]:
    assert isinstance(claimed, Claim), claimed
    msg = claimed.message
    subject, body = (msg.subject or "").replace(urn, "URN"), msg.body.replace(urn, "URN")
    return (msg.recipient_role, msg.channel, msg.to, msg.template, subject, body)


async def test_a_group_is_claimed_as_one_notification_at_a_time(rt: Runtime) -> None:
    channels = channels_from_settings(rt.settings, rt.sessions)
    alone_ids = await queued_for(rt, "01AB2000124", "a-")
    together_ids = await queued_for(rt, "01AB2000224", "b-")
    assert len(alone_ids) == len(together_ids) == 4  # two texts, two e-mails to the ISVA
    alone = [words(await claim(rt, channels, nid), "01AB2000124") for nid in alone_ids]
    claims = await claim_many(rt, channels, together_ids)
    together = [words(claims[nid], "01AB2000224") for nid in together_ids]
    assert together == alone
    # The Polish-speaking survivor's advocate is told once per survivor, in the group too.
    async with rt.sessions() as session:
        tasks = dict(
            (
                await session.execute(
                    select(m.Notification.case_id, func.count())
                    .where(m.Notification.rule.like("%preference_not_met"))
                    .group_by(m.Notification.case_id)
                )
            ).all()
        )
    assert sorted(tasks.values()) == [1, 1]
    # And the group's sends are recorded together: all delivered (the outbox channel).
    sent = [(c, await hand_over(rt, channels, c)) for c in claims.values() if isinstance(c, Claim)]
    assert await record_many(rt, sent) == ["delivered"] * 4
    # A redelivered group is a no-op: nothing is claimed twice.
    assert set((await claim_many(rt, channels, together_ids)).values()) == {None}
