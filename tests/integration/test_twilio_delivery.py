"""Texts through the real `twilio` client to the Twilio stand-in, receipts and inbound texts
back through the notifier's signed routes, on the real broker and database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from services.cli import SERVICES
from services.core.db import models as m
from services.core.embedded_broker import EmbeddedBroker, free_port
from services.core.runner import running_stack
from services.notifier.twilio_standin import running_standin
from tests.integration.test_pipeline import CE, crime_recorded, seed_team, wait_for_files

NUMBER = "+447700900321"  # the survivor's number in crime_recorded()
TOKEN = "test-auth-token"
SID = "AC" + "1" * 32


def twilio_settings(
    make_settings: Any, pg_url: str, broker: EmbeddedBroker, standin: Any, **more: Any
) -> Any:
    """A stack texting through the stand-in, with receipts coming back to its own HTTP port."""
    port = free_port()
    values: dict[str, Any] = {
        "database_url": pg_url,
        "kafka_bootstrap": broker.bootstrap,
        "http_port": port,
        "env": "test",
        "sms_channel": "twilio",
        "twilio_account_sid": SID,
        "twilio_auth_token": TOKEN,
        "twilio_from": "+447700900001",
        "twilio_base_url": standin.base_url,
        "public_base_url": f"http://127.0.0.1:{port}",
        "sms_allowlist": NUMBER,
        "retry_initial_s": 0.5,
        "retry_max_s": 1.0,
    }
    values.update(more)
    return make_settings(**values)


@pytest.fixture
async def twilio_stack(
    make_settings: Any, pg_url: str, broker: EmbeddedBroker
) -> AsyncIterator[tuple[Any, Any]]:
    async with running_standin(account_sid=SID, auth_token=TOKEN) as standin:
        settings = twilio_settings(
            make_settings, pg_url, broker, standin, sms_allowlist=f"{NUMBER},+447700900322"
        )
        async with running_stack(settings, list(SERVICES.values()), own_broker=False) as stack:
            yield stack, standin


async def until(check: Callable[[], Awaitable[Any]], timeout: float = 30) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.1)


async def survivor_rows(stack: Any) -> list[m.Notification]:
    async with stack.runtime.sessions() as session:
        return list(
            (
                await session.scalars(
                    select(m.Notification)
                    .where(m.Notification.recipient_role == "survivor")
                    .order_by(m.Notification.created_at)
                )
            ).all()
        )


async def post_event(stack: Any, event: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=stack.url) as client:
        response = await client.post("/v1/events", json=event, headers=CE)
    assert response.status_code == 202, response.text


def with_email(event: dict[str, Any]) -> dict[str, Any]:
    contact = event["data"]["victims"][0]["contact"]
    contact.update({"email": "casey@example.org", "safe_to_email": True})
    return event


async def signed_post(
    stack: Any, path: str, params: dict[str, str], *, token: str = TOKEN
) -> httpx.Response:
    url = stack.runtime.settings.public_base_url + path
    signature = RequestValidator(token).compute_signature(url, params)
    async with httpx.AsyncClient() as client:
        return await client.post(
            url,
            content=urlencode(params),
            headers={
                "content-type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature,
            },
        )


async def test_a_text_is_delivered_with_its_receipt(twilio_stack: tuple[Any, Any]) -> None:
    stack, standin = twilio_stack
    await seed_team(stack)
    await post_event(stack, crime_recorded("01AB1234524", "d1"))

    async def delivered() -> list[m.Notification]:
        rows = await survivor_rows(stack)
        return rows if rows and rows[0].status == "delivered" else []

    (row,) = await until(delivered)
    (message,) = standin.messages.values()
    assert message.to == NUMBER and "Casey" in message.body
    assert message.status_callback.endswith(f"/v1/providers/twilio/status?nid={row.id}")
    assert row.provider_ref == message.sid and row.informed_at is not None
    async with stack.runtime.sessions() as session:
        attempt = (
            await session.scalars(
                select(m.DeliveryAttempt).where(m.DeliveryAttempt.notification_id == row.id)
            )
        ).one()
        actions = (
            await session.scalars(
                select(m.AuditEntry.action).where(m.AuditEntry.notification_id == row.id)
            )
        ).all()
    # Our word and the provider's, side by side; the words that went are kept (protected).
    assert attempt.outcome == "sent" and attempt.provider_status in ("queued", "sent", "delivered")
    assert attempt.to_address == NUMBER and attempt.body == message.body
    assert "notification.receipt" in actions


async def test_an_undelivered_text_falls_back_to_a_safe_email(
    twilio_stack: tuple[Any, Any],
) -> None:
    stack, standin = twilio_stack
    standin.control(numbers={NUMBER: {"outcome": "undelivered", "error_code": 30003}})
    await seed_team(stack)
    await post_event(stack, with_email(crime_recorded("01AB1234524", "u1")))
    files = await wait_for_files(stack.runtime.settings.resolved_outbox_dir, 2)
    emails = {f["recipient_role"]: f for f in files}
    assert emails["survivor"]["to"] == "casey@example.org"
    assert emails["survivor"]["template"] == "survivor_welcome"
    rows = await survivor_rows(stack)
    failed, fallback = rows
    assert (failed.channel, failed.status, failed.status_reason) == ("sms", "failed", "unreachable")
    assert (fallback.channel, fallback.status) == ("email", "delivered")
    assert fallback.supersedes_id == failed.id


async def test_an_unsubscribed_number_with_no_other_channel_goes_to_the_advocate(
    twilio_stack: tuple[Any, Any],
) -> None:
    stack, standin = twilio_stack
    standin.control(numbers={NUMBER: {"reject": 21610}})
    await seed_team(stack)
    await post_event(stack, crime_recorded("01AB1234524", "r1"))
    files = await wait_for_files(stack.runtime.settings.resolved_outbox_dir, 2)
    templates = sorted(f["template"] for f in files)
    assert templates == ["advocate_new_referral", "advocate_pass_on_update"]
    task = next(f for f in files if f["template"] == "advocate_pass_on_update")
    assert "unsubscribed" in task["body"]
    (row,) = [r for r in await survivor_rows(stack) if r.channel == "sms"]
    assert (row.status, row.status_reason) == ("failed", "unsubscribed")
    assert standin.messages == {}  # refused at the door: nothing was sent


async def test_an_outage_is_retried_until_the_provider_recovers(
    twilio_stack: tuple[Any, Any],
) -> None:
    stack, standin = twilio_stack
    # More failures than one attempt's quick retries (2): a durable retry has to follow.
    standin.control(fail_next=4, fail_status=503)
    await seed_team(stack)
    await post_event(stack, crime_recorded("01AB1234524", "o1"))

    async def sent() -> list[m.Notification]:
        rows = await survivor_rows(stack)
        return rows if rows and rows[0].status in ("sent", "delivered") else []

    (row,) = await until(sent)
    assert row.attempts == 2
    assert len(standin.messages) == 1
    async with stack.runtime.sessions() as session:
        attempts = (
            await session.scalars(
                select(m.DeliveryAttempt)
                .where(m.DeliveryAttempt.notification_id == row.id)
                .order_by(m.DeliveryAttempt.attempt_no)
            )
        ).all()
        actions = (
            await session.scalars(
                select(m.AuditEntry.action).where(m.AuditEntry.notification_id == row.id)
            )
        ).all()
    assert [(a.outcome, a.error_code, a.provider_status) for a in attempts] == [
        ("retry", "provider_unavailable", "503"),
        ("sent", None, attempts[1].provider_status),
    ]
    assert "notification.retry_scheduled" in actions


async def test_a_429_storm_is_ridden_out_without_doubling(twilio_stack: tuple[Any, Any]) -> None:
    stack, standin = twilio_stack
    standin.control(fail_next=2, fail_status=429)
    await seed_team(stack)
    await post_event(stack, crime_recorded("01AB1234524", "s1"))

    async def sent() -> list[m.Notification]:
        rows = await survivor_rows(stack)
        return rows if rows and rows[0].status in ("sent", "delivered") else []

    (row,) = await until(sent)
    assert row.attempts == 1  # the quick retries inside one attempt were enough
    assert len(standin.messages) == 1
    assert standin.stats()["creates_refused"] == {"20429": 2}


async def test_receipts_never_move_a_notification_back_and_need_a_good_signature(
    twilio_stack: tuple[Any, Any],
) -> None:
    stack, standin = twilio_stack
    standin.control(callbacks=False)
    await seed_team(stack)
    await post_event(stack, crime_recorded("01AB1234524", "c1"))

    async def sent() -> list[m.Notification]:
        rows = await survivor_rows(stack)
        return rows if rows and rows[0].status == "sent" else []

    (row,) = await until(sent)
    path = f"/v1/providers/twilio/status?nid={row.id}"
    receipt = {"MessageSid": row.provider_ref or "", "AccountSid": SID, "To": NUMBER}

    forged = await signed_post(stack, path, {**receipt, "MessageStatus": "delivered"}, token="x")
    assert forged.status_code == 403
    assert (await survivor_rows(stack))[0].status == "sent"

    for status in ("delivered", "sent", "delivered", "undelivered"):  # late and duplicate
        response = await signed_post(stack, path, {**receipt, "MessageStatus": status})
        assert response.status_code == 204
    (after,) = await survivor_rows(stack)
    assert after.status == "delivered" and after.informed_at is not None
    async with stack.runtime.sessions() as session:
        actions = (
            await session.scalars(
                select(m.AuditEntry.action).where(m.AuditEntry.notification_id == row.id)
            )
        ).all()
    assert actions.count("notification.receipt") == 1
    assert actions.count("notification.receipt_ignored") == 3


async def test_stop_start_help_and_the_safety_reply(twilio_stack: tuple[Any, Any]) -> None:
    stack, standin = twilio_stack
    await seed_team(stack)
    await post_event(stack, crime_recorded("01AB1234524", "i1"))
    await until(lambda: survivor_rows(stack))
    path = "/v1/providers/twilio/inbound"

    async def inbound(body: str) -> str:
        params = {"From": NUMBER, "To": "+447700900001", "Body": body, "MessageSid": "SM" + body}
        response = await signed_post(stack, path, params)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/xml")
        return response.text

    async def opted_out() -> bool:
        async with stack.runtime.sessions() as session:
            pref = (
                await session.scalars(
                    select(m.ContactPreference).order_by(m.ContactPreference.version.desc())
                )
            ).first()
        assert pref is not None
        return pref.opted_out

    assert "START" in await inbound("Stop")
    assert await opted_out()
    assert "STOP" in await inbound("START")
    assert not await opted_out()
    help_reply = await inbound("help")
    assert "999" in help_reply and "01AB1234524" not in help_reply

    safety = await inbound("please can someone call me")
    assert "999" in safety and "not checked at all times" in safety
    files = await wait_for_files(stack.runtime.settings.resolved_outbox_dir, 2)
    passed = [f for f in files if f["template"] == "advocate_survivor_replied"]
    assert len(passed) == 1 and "please can someone call me" in passed[0]["body"]

    # Twilio retried the webhook: acted on once, the same answer again.
    assert await inbound("please can someone call me") == safety
    # Nobody to pass it to (a number we do not know): no promise that a person has it.
    stranger = {"From": "+447700900999", "Body": "help me please", "MessageSid": "SMstranger"}
    unrouted = (await signed_post(stack, path, stranger)).text
    assert "999" in unrouted and "passed your message" not in unrouted
    await asyncio.sleep(1.0)
    files = await wait_for_files(stack.runtime.settings.resolved_outbox_dir, 2)
    assert len([f for f in files if f["template"] == "advocate_survivor_replied"]) == 1

    bad = await signed_post(stack, path, {"From": NUMBER, "Body": "STOP"}, token="wrong")
    assert bad.status_code == 403
    assert not await opted_out()


async def test_a_send_that_timed_out_after_twilio_took_it_is_not_sent_again(
    make_settings: Any, pg_url: str, broker: EmbeddedBroker
) -> None:
    async with running_standin(account_sid=SID, auth_token=TOKEN) as standin:
        standin.control(respond_delay_ms=1500, callbacks=False)  # taken, answered too late
        settings = twilio_settings(
            make_settings,
            pg_url,
            broker,
            standin,
            twilio_timeout_s=0.5,
            send_quick_retries=0,  # straight to a durable retry, which must ask first
        )
        async with running_stack(settings, list(SERVICES.values()), own_broker=False) as stack:
            await seed_team(stack)
            await post_event(stack, crime_recorded("01AB1234524", "t1"))

            async def sent() -> list[m.Notification]:
                rows = await survivor_rows(stack)
                return rows if rows and rows[0].status in ("sent", "delivered") else []

            (row,) = await until(sent)
            await asyncio.sleep(2.0)  # anything sent twice would have arrived by now
            assert len(standin.messages) == 1
            assert row.provider_ref == next(iter(standin.messages))
            assert row.attempts == 2
