"""Unmistakable personal values go through every way in and out — a case recorded, a text sent
through Twilio with receipts, a refused record, an inbound STOP and a cry for help — and none
of them appears in a log line (every level, libraries included), an HTTP error, a DLQ reason, a
rejected record's errors, or any record on any Kafka topic."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import structlog
from aiokafka import AIOKafkaConsumer
from sqlalchemy import select

from services.cli import SERVICES
from services.core.db import models as m
from services.core.embedded_broker import EmbeddedBroker
from services.core.logs import configure_logging
from services.core.runner import running_stack
from services.core.topics import REGISTRY
from services.notifier.twilio_standin import running_standin
from tests.integration.test_pipeline import CE, crime_recorded, seed_team
from tests.integration.test_twilio_delivery import (
    SID,
    TOKEN,
    signed_post,
    twilio_settings,
    until,
)

NAME, PREFERRED = "Zebedee Quillfeather", "Zebedee"
PHONE, EMAIL = "+447700900777", "zebedee.quillfeather@example.org"
CANARIES = (NAME, "Quillfeather", PHONE, "7700900777", EMAIL, "1987-06-05", "Zebedee needs")


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging("DEBUG", stream=buffer)
    root.setLevel(logging.DEBUG)  # libraries' own debug lines too
    try:
        yield buffer
    finally:
        structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(level)


def canary_event(event_id: str) -> dict[str, Any]:
    event = crime_recorded("01AB1234524", event_id)
    victim = event["data"]["victims"][0]
    victim["name"] = {"full": NAME, "preferred": PREFERRED}
    victim["date_of_birth"] = "1987-06-05"
    victim["contact"].update({"phone": PHONE, "email": EMAIL, "safe_to_email": True})
    return event


def leaks(text: str) -> list[str]:
    return [c for c in CANARIES if c in text]


async def test_personal_values_never_reach_logs_errors_or_the_broker(
    make_settings: Any, pg_url: str, broker: EmbeddedBroker, captured_logs: io.StringIO
) -> None:
    async with running_standin(account_sid=SID, auth_token=TOKEN) as standin:
        settings = twilio_settings(
            make_settings, pg_url, broker, standin, sms_allowlist=PHONE, log_level="DEBUG"
        )
        async with running_stack(settings, list(SERVICES.values()), own_broker=False) as stack:
            await seed_team(stack)
            errors: list[str] = []
            async with httpx.AsyncClient(base_url=stack.url) as client:
                ok = await client.post("/v1/events", json=canary_event("c1"), headers=CE)
                assert ok.status_code == 202
                refused = canary_event("c2")
                refused["type"] = "police.teleported"
                refused["data"]["victims"][0]["contact"]["phone"] = "Zebedee needs 999"
                bad = await client.post("/v1/events", json=refused, headers=CE)
                assert bad.status_code == 422
                errors.append(bad.text)
            await until(lambda: _delivered_text(stack))
            for body in ("Zebedee needs help now", "STOP"):
                params = {"From": PHONE, "To": "+447700900001", "Body": body, "MessageSid": "SMx"}
                reply = await signed_post(stack, "/v1/providers/twilio/inbound", params)
                assert reply.status_code == 200
                errors.append(reply.text)
            await asyncio.sleep(1.0)
            async with stack.runtime.sessions() as session:
                rejected = (await session.scalars(select(m.RejectedRecord))).all()
            assert rejected  # the refused event was kept, with its reasons
            errors += [json.dumps(r.errors) + r.reason_code for r in rejected]
            records = await _every_record(broker.bootstrap)
    assert records  # the topics did carry the work
    assert len(standin.messages) == 1  # the text really went, with the name in it
    assert PREFERRED in next(iter(standin.messages.values())).body
    logs = captured_logs.getvalue()
    assert "notification.delivered" in logs or "receipt.applied" in logs  # logging was on
    assert leaks(logs) == [], "personal data in a log line"
    assert leaks("\n".join(errors)) == [], "personal data in an error or a reason"
    assert leaks("\n".join(records)) == [], "personal data on the broker"


async def _delivered_text(stack: Any) -> bool:
    async with stack.runtime.sessions() as session:
        rows = (
            await session.scalars(
                select(m.Notification.status).where(
                    m.Notification.recipient_role == "survivor", m.Notification.channel == "sms"
                )
            )
        ).all()
    return bool(rows) and all(s in ("sent", "delivered") for s in rows)


async def _every_record(bootstrap: str) -> list[str]:
    consumer = AIOKafkaConsumer(
        *(t.name for t in REGISTRY),
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=3000)
        found = [
            (r.key or b"").decode("utf-8", "replace")
            + " "
            + (r.value or b"").decode("utf-8", "replace")
            for records in batches.values()
            for r in records
        ]
    finally:
        await consumer.stop()
    return found
