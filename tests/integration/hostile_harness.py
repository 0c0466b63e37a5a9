"""What the hostile-input tests (test_hostile_input.py) drive the system with: a request body
that never ends, over a real socket or in-process, and the demo case served in-process (the
portal and the notifier's Twilio routes on one database, no broker)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import urlencode

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select, update
from twilio.request_validator import RequestValidator

from services import demo, portal
from services.core.clock import FixedClock
from services.core.db import models as m
from services.core.runner import base_app
from services.core.runtime import Runtime
from services.core.settings import Settings
from services.ingest.recording import record_event
from services.notifier import providers
from services.portal.auth import issue_api_token
from services.rules.consumer import RulesConsumer
from services.rules.engine import Engine
from services.rules.ruleset import load_rules
from tests.integration.runtimes import migrated_runtime

ENDLESS_CAP = 48 * 1024 * 1024  # where a body that "never ends" is ended after all
TWILIO_TOKEN = "hostile-twilio-token"
HUB = "http://hub.test"  # the in-process world's public base URL (Twilio signs against it)


async def endless_post(base_url: str, path: str, headers: dict[str, str]) -> tuple[int, int]:
    """POST a chunked body that goes on and on; return (status, bytes written when the answer
    came). Only at ENDLESS_CAP is the body ended, so a server that buffers it whole answers then."""
    url = httpx.URL(base_url)
    host, port = url.host, url.port or 80
    reader, writer = await asyncio.open_connection(host, port)
    head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Transfer-Encoding: chunked"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
    chunk = b" " * 65536
    frame = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
    answer: asyncio.Future[bytes] = asyncio.ensure_future(reader.readline())
    sent = 0
    try:
        while not answer.done() and sent < ENDLESS_CAP:
            writer.write(frame)
            sent += len(chunk)
            drained: asyncio.Future[Any] = asyncio.ensure_future(writer.drain())
            waiting: set[asyncio.Future[Any]] = {drained, answer}
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if drained not in done:
                drained.cancel()
            elif drained.exception() is not None:
                break  # the server closed the connection: its answer is on the way
        if not answer.done():
            writer.write(b"0\r\n\r\n")
        status_line = await asyncio.wait_for(answer, timeout=60)
    finally:
        writer.close()
    return int(status_line.split()[1]), sent


class Endless:
    """A request body that goes on and on (chunked: `first`, then `chunk` again and again, up to
    16 MiB), counting what the server took of it."""

    def __init__(self, first: bytes, chunk: bytes = b"x" * 65536) -> None:
        self.first, self.chunk, self.taken = first, chunk, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.taken += len(self.first)
        yield self.first
        while self.taken < 16 * 1024 * 1024:
            self.taken += len(self.chunk)
            yield self.chunk


class RecordingBroker:
    """Stands in for the broker where only HTTP routes run: keeps what would be published."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    async def publish(self, value: bytes, topic: str, key: bytes | None = None) -> None:
        self.published.append((topic, value))


@dataclass
class World:
    """The demo case after its crime record was decided by the real rules, served in-process:
    the portal and the notifier's Twilio routes, on one database."""

    rt: Runtime
    app: FastAPI
    survivor_id: int
    sending_id: str  # the survivor's text, `sending`, with no provider reference yet

    def client(self) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(
            app=self.app, raise_app_exceptions=False, client=("192.0.2.10", 5000)
        )
        return httpx.AsyncClient(transport=transport, base_url=HUB)

    async def twilio(
        self, path: str, params: dict[str, str], *, token: str = TWILIO_TOKEN
    ) -> httpx.Response:
        signature = RequestValidator(token).compute_signature(HUB + path, params)
        async with self.client() as client:
            return await client.post(
                path,
                content=urlencode(params),
                headers={
                    "content-type": "application/x-www-form-urlencoded",
                    "X-Twilio-Signature": signature,
                },
            )

    async def api_headers(self) -> dict[str, str]:
        async with self.rt.sessions.begin() as session:
            account = await session.scalar(
                select(m.StaffAccount).where(m.StaffAccount.username == "demo-isva")
            )
            assert account is not None
            token = await issue_api_token(session, account, "hostile", datetime.now(UTC))
        return {"authorization": f"Bearer {token}"}

    async def snapshot(self) -> dict[str, Any]:
        """What a hostile request must not change."""
        async with self.rt.sessions() as session:
            notifications = (
                await session.execute(select(m.Notification.id, m.Notification.status))
            ).all()
            return {
                "notifications": sorted((str(i), str(s)) for i, s in notifications),
                "inbound": await session.scalar(select(func.count()).select_from(m.InboundMessage)),
                "preferences": await session.scalar(
                    select(func.count()).select_from(m.ContactPreference)
                ),
                "actions": await session.scalar(select(func.count()).select_from(m.AdvocateAction)),
            }


@contextlib.asynccontextmanager
async def open_world(settings: Settings) -> AsyncIterator[World]:
    crime = demo.script()[0]
    broker = cast(Any, RecordingBroker())
    async with migrated_runtime(settings, FixedClock(crime.at), broker) as rt:
        async with rt.sessions.begin() as session:
            ids = await demo.seed(session, crime.at)
        async with rt.sessions.begin() as session:
            (event,) = crime.events
            outcome = await record_event(
                session,
                event,
                json.dumps(event).encode(),
                now=crime.at,
                way_in="http",
                max_skew=timedelta(minutes=5),
            )
            assert outcome.case_event_id is not None
            rules = RulesConsumer(rt, Engine(load_rules(), rt.calendar))
            await rules.process(session, [outcome.case_event_id], crime.at)
        async with rt.sessions.begin() as session:
            sending = await session.scalar(
                select(m.Notification.id).where(
                    m.Notification.recipient_role == "survivor", m.Notification.channel == "sms"
                )
            )
            assert sending is not None
            await session.execute(
                update(m.Notification)
                .where(m.Notification.id == sending)
                .values(status="sending", provider_ref=None)
            )

        async def announce(_rt: Runtime, urn: str, event: dict[str, Any]) -> None:
            await broker.publish(json.dumps(event).encode(), "notifications.status")

        app = base_app(rt, ["portal", "notifier"])
        portal.mount(rt, app)
        app.include_router(providers.router(rt, announce))
        yield World(rt, app, ids["survivor_id"], sending)
