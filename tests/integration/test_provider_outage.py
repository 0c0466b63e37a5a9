"""A whole Twilio outage: nothing answers, neither a send nor the look-up that follows it.

A text whose send could not be confirmed stays `sending` until Twilio can be asked whether it
has it; the survivor's next text waits behind it. During the outage the look-ups back off like
durable retries, and the next text waits for the earlier's next look-up, instead of both going
round every re-drive interval for hours (an attempt row and audit rows each time). When Twilio
is back, both go, once each, in order."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from services.cli import SERVICES
from services.core import sms
from services.core.clock import FixedClock
from services.core.db import models as m
from services.core.embedded_broker import EmbeddedBroker, free_port
from services.core.runner import running_stack
from services.notifier.channels import channels_from_settings
from services.notifier.delivery import Claim, claim, hand_over, record_many
from services.notifier.twilio_standin import running_standin
from services.rules.dispatcher import redrive
from tests.integration.test_notifier_groups import (
    T0,
    channel_of,
    queued_for,
    runtime_for,
    texting_settings,
)
from tests.integration.test_pipeline import arrested, crime_recorded, seed_team
from tests.integration.test_twilio_delivery import (
    NUMBER,
    SID,
    TOKEN,
    post_event,
    survivor_rows,
    twilio_settings,
    until,
)

URN = "01AB1234524"
WATCH_S = 10.0


class _Nowhere:
    """Where Twilio would be: a port nothing listens on, until the stand-in is started on it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"


async def _actions(rt: Any, notification_id: str) -> list[str]:
    async with rt.sessions() as session:
        return list(
            (
                await session.scalars(
                    select(m.AuditEntry.action)
                    .where(m.AuditEntry.notification_id == notification_id)
                    .order_by(m.AuditEntry.seq)
                )
            ).all()
        )


async def _row(rt: Any, notification_id: str) -> m.Notification:
    async with rt.sessions() as session:
        row: m.Notification = await session.get_one(m.Notification, notification_id)
    return row


async def _attempts(stack: Any, notification_id: str) -> int:
    async with stack.runtime.sessions() as session:
        count = await session.scalar(
            select(func.count()).where(m.DeliveryAttempt.notification_id == notification_id)
        )
    return int(count or 0)


async def test_a_text_twilio_cannot_be_asked_about_is_asked_again_with_back_off(
    make_settings: Any, database_url: str
) -> None:
    """On a clock that stands still: a text cut off by a crash, and when it is resumed Twilio
    cannot be asked whether it has it. The re-drive leaves it until its back-off has passed,
    not one re-drive interval; the survivor's next text waits until just after that."""
    twilio = _Nowhere()
    settings = texting_settings(
        make_settings, database_url, twilio.base_url, retry_initial_s=600.0, retry_max_s=1200.0
    )
    clock = FixedClock(T0)
    async with runtime_for(settings, clock) as rt:
        channels = channels_from_settings(rt.settings, rt.sessions)
        try:
            ids = await queued_for(rt, "01AB2000324", "l-", ("police.suspect_arrested",) * 2)
            first, second = [nid for nid in ids if await channel_of(rt, nid) == "sms"]
            assert isinstance(await claim(rt, channels, first), Claim)  # the notifier dies here
            redrive_after = timedelta(seconds=rt.settings.redrive_after_s)

            clock.advance(redrive_after + timedelta(seconds=1))
            await redrive(rt)
            assert (await _actions(rt, first)).count("notification.redriven") == 1
            resumed = await claim(rt, channels, first)
            assert isinstance(resumed, Claim) and resumed.resume
            outcome = await hand_over(rt, channels, resumed)
            assert outcome.lookup_failed
            assert await record_many(rt, [(resumed, outcome)]) == ["sending"]
            asked = clock.now()
            row = await _row(rt, first)
            assert row.status_reason == "lookup_failed" and row.send_at is not None
            # retry_delay(2) with the jitter: between half and all of 2 x 600 s.
            assert timedelta(seconds=600) <= row.send_at - asked <= timedelta(seconds=1200)

            # The next text waits for that look-up: a re-drive beat after it, then half an
            # interval (15 s and 30 s at the defaults).
            assert await claim(rt, channels, second) is None
            later = await _row(rt, second)
            assert later.status == "scheduled"
            assert later.send_at == row.send_at + timedelta(seconds=15 + 30)

            # A re-drive interval on, it is not asked about again; at its `send_at` it is.
            clock.advance(redrive_after + timedelta(seconds=1))
            await redrive(rt)
            assert (await _actions(rt, first)).count("notification.redriven") == 1
            clock.set(row.send_at)
            await redrive(rt)
            assert (await _actions(rt, first)).count("notification.redriven") == 2
            again = await claim(rt, channels, first)
            assert isinstance(again, Claim) and again.resume
            # Asked again: were it cut off now, the re-drive would not wait for `send_at`.
            assert (await _row(rt, first)).status_reason is None
        finally:
            for channel in channels.values():
                await channel.close()


async def test_texts_wait_out_an_outage_with_back_off_and_go_once_in_order_after_it(
    make_settings: Any, database_url: str, broker: EmbeddedBroker
) -> None:
    twilio = _Nowhere()
    settings = twilio_settings(
        make_settings,
        database_url,
        broker,
        twilio,
        redrive_after_s=1,
        retry_initial_s=5.0,
        retry_max_s=10.0,
    )
    async with running_stack(settings, list(SERVICES.values()), own_broker=False) as stack:
        await seed_team(stack)
        await post_event(stack, crime_recorded(URN, "out1"))

        async def first_unresolved() -> list[m.Notification]:
            rows = await survivor_rows(stack)
            return rows if rows and rows[0].status_reason == "lookup_failed" else []

        (first,) = await until(first_unresolved)
        assert first.status == "sending"
        # The next look-up is no sooner than a durable retry after this attempt would go.
        low = min(settings.retry_max_s, settings.retry_initial_s * 2 ** (first.attempts - 1)) / 2
        assert first.send_at is not None
        assert first.send_at - first.updated_at >= timedelta(seconds=low)

        await post_event(stack, arrested(URN, "out2"))

        async def second_put_off() -> list[m.Notification]:
            rows = await survivor_rows(stack)
            if len(rows) < 2:
                return []
            actions = await _actions(stack.runtime, rows[1].id)
            return rows if "notification.put_off" in actions else []

        _, second = await until(second_put_off)
        await asyncio.sleep(WATCH_S)
        # Without back-off the first is looked up again every re-drive pass (about every 2 s
        # here) and the second put off every second: 6 or more attempts, 8 or more put-offs.
        # With it the looks are at least 2.5, 5 and 5 s apart, and the second waits for each.
        looked = await _attempts(stack, first.id)
        put_off = (await _actions(stack.runtime, second.id)).count("notification.put_off")
        assert 2 <= looked <= 4, looked
        assert 1 <= put_off <= 6, put_off
        rows = await survivor_rows(stack)
        assert [r.status for r in rows] == ["sending", "scheduled"]

        # Twilio is back.
        async with running_standin(account_sid=SID, auth_token=TOKEN, port=twilio.port) as standin:

            async def both_sent() -> list[m.Notification]:
                rows = await survivor_rows(stack)
                done = all(r.status in ("sent", "delivered") for r in rows)
                return rows if len(rows) == 2 and done else []

            sent = await until(both_sent, timeout=60)
            bodies = [message.body for message in standin.messages.values()]
            assert len(bodies) == 2
            assert [message.to for message in standin.messages.values()] == [NUMBER, NUMBER]
            # In order: the first text's words went first.
            async with stack.runtime.sessions() as session:
                words = [
                    await session.scalar(
                        select(m.DeliveryAttempt.body)
                        .where(m.DeliveryAttempt.notification_id == row.id)
                        .order_by(m.DeliveryAttempt.attempt_no.desc())
                        .limit(1)
                    )
                    for row in sent
                ]
            assert bodies == [sms.sanitise(w or "") for w in words]
