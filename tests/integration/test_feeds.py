"""Upstream feeds, every way in: signed HTTP, the feeds.* Kafka topics, file drops, and the
DLQ replay, on the real broker and database."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select

from services import ingest
from services.core.clock import write_clock_file
from services.core.db import models as m
from services.core.embedded_broker import EmbeddedBroker
from services.core.runner import running_stack
from services.ingest.client import send_file
from services.ingest.dlq import replay
from services.ingest.feeds import sign
from tests.conftest import CLOCK_T0, REPO
from tests.integration.test_pipeline import CE, arrested, crime_recorded

SECRETS = {
    "police": "police-secret",
    "cps": "cps-secret",
    "court": "court-secret",
    "probation": "probation-secret",
}
EXAMPLES = REPO / "schemas" / "examples" / "feeds"


def feed_settings(
    make_settings: Any, database_url: str, broker: EmbeddedBroker, **more: Any
) -> Any:
    return make_settings(
        database_url=database_url,
        kafka_bootstrap=broker.bootstrap,
        **{f"feed_secret_{feed}": secret for feed, secret in SECRETS.items()},
        **more,
    )


@pytest.fixture
async def feed_stack(
    make_settings: Any, database_url: str, broker: EmbeddedBroker
) -> AsyncIterator[Any]:
    settings = feed_settings(make_settings, database_url, broker, ingest_feed_topics=False)
    async with running_stack(settings, [ingest], own_broker=False) as running:
        yield running


async def post_signed(
    stack: Any,
    feed: str,
    body: bytes,
    *,
    secret: str | None = None,
    stamp: int | None = None,
    signed: bytes | None = None,
) -> httpx.Response:
    timestamp = str(stamp if stamp is not None else int(time.time()))
    what = signed if signed is not None else body
    headers = {
        "content-type": "application/json",
        "x-carehub-timestamp": timestamp,
        "x-carehub-signature": sign(secret or SECRETS.get(feed, "none"), timestamp, what),
    }
    async with httpx.AsyncClient(base_url=stack.url) as client:
        return await client.post(f"/v1/feeds/{feed}/events", content=body, headers=headers)


async def counts(stack: Any) -> tuple[int, int]:
    async with stack.runtime.sessions() as session:
        events = await session.scalar(select(func.count()).select_from(m.CaseEvent))
        rejected = await session.scalar(select(func.count()).select_from(m.RejectedRecord))
    return int(events or 0), int(rejected or 0)


async def test_a_signed_feed_record_is_accepted_and_a_bad_one_never_processed(
    feed_stack: Any,
) -> None:
    body = json.dumps(crime_recorded("01 ab/12345 24", "f1")).encode()
    ok = await post_signed(feed_stack, "police", body)
    assert ok.status_code == 202, ok.text
    async with feed_stack.runtime.sessions() as session:
        (row,) = (await session.scalars(select(m.CaseEvent))).all()
    assert row.urn == "01AB1234524"  # normalised before it was validated
    again = await post_signed(feed_stack, "police", body)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"

    other = json.dumps(crime_recorded("01AB1234524", "f2")).encode()
    for response in (
        await post_signed(feed_stack, "police", other, secret="wrong"),
        await post_signed(feed_stack, "police", other, stamp=int(time.time()) - 301),
        await post_signed(feed_stack, "police", other + b" ", signed=other),  # changed
    ):
        assert response.status_code == 401, response.text
    async with httpx.AsyncClient(base_url=feed_stack.url) as client:
        unsigned = await client.post("/v1/feeds/police/events", content=other)
    assert unsigned.status_code == 401
    assert await counts(feed_stack) == (1, 0)  # refused, and nothing was processed

    assert (await post_signed(feed_stack, "fire", other)).status_code == 404


async def test_a_feed_may_only_send_its_own_event_types(feed_stack: Any) -> None:
    verdict = {
        **arrested("01AB1234524", "v1"),
        "type": "court.verdict",
        "source": "court/01",
        "data": {"outcome": "guilty"},
    }
    refused = await post_signed(feed_stack, "police", json.dumps(verdict).encode())
    assert refused.status_code == 422
    async with feed_stack.runtime.sessions() as session:
        (kept,) = (await session.scalars(select(m.RejectedRecord))).all()
    assert (kept.feed, kept.reason_code) == ("police", "type_not_allowed_for_feed")


async def test_kafka_feed_records_valid_once_malformed_kept_and_consumption_goes_on(
    make_settings: Any, database_url: str, broker: EmbeddedBroker
) -> None:
    settings = feed_settings(make_settings, database_url, broker, ingest_feed_topics=True)
    async with running_stack(settings, [ingest], own_broker=False) as stack:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=False)
        await producer.start()
        try:
            valid = [crime_recorded(f"01AB12345{n:02d}", f"k{n}") for n in range(24, 34)]
            junk: list[bytes] = [b"not json", b"[1, 2", b'"a string"', b"\xff\xfe", b"{}"]
            stream: list[bytes] = []
            for n, event in enumerate(valid):
                stream.append(json.dumps(event).encode())
                if n < len(junk):
                    stream.append(junk[n])
            stream.append(json.dumps(valid[0]).encode())  # a redelivered duplicate
            for value in stream:
                await producer.send_and_wait("feeds.police", value, key=b"k")
        finally:
            await producer.stop()

        deadline = asyncio.get_running_loop().time() + 40
        while await counts(stack) != (len(valid), len(junk)):
            assert asyncio.get_running_loop().time() < deadline, await counts(stack)
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)
        assert await counts(stack) == (len(valid), len(junk))  # each exactly once
        async with stack.runtime.sessions() as session:
            kept = (await session.scalars(select(m.RejectedRecord))).all()
        assert {r.way_in for r in kept} == {"kafka"} and {r.feed for r in kept} == {"police"}
        assert all(r.reason_code and r.errors for r in kept)
        assert sorted(r.original for r in kept) == sorted(junk)


async def test_a_jsonl_file_drop_is_signed_streamed_and_counted(
    feed_stack: Any, tmp_path: Path
) -> None:
    path = tmp_path / "drop.jsonl"
    lines = [json.dumps(crime_recorded(f"01AB12345{n:02d}", f"j{n}")) for n in range(24, 30)]
    lines.insert(3, "this line is not json")
    path.write_text("\n".join(lines) + "\n")
    summary = await send_file(
        feed_stack.url, path, feed="police", secret=SECRETS["police"], batch_size=4
    )
    assert summary == {"accepted": 6, "rejected": 1, "duplicates": 0, "lines": 7, "too_long": 0}
    again = await send_file(feed_stack.url, path, feed="police", secret=SECRETS["police"])
    assert again["duplicates"] == 6 and again["accepted"] == 0
    with pytest.raises(PermissionError):
        await send_file(feed_stack.url, path, feed="police", secret="wrong")


async def test_a_replayed_record_is_validated_again_never_waved_through(
    feed_stack: Any, clock_file: Path
) -> None:
    # From the future (beyond the allowed skew) when it came; fine once the clock has caught up.
    early = crime_recorded("01AB1234524", "late1", when=CLOCK_T0 + timedelta(hours=1))
    bad_type = {**arrested("01AB1234524", "x1"), "type": "police.teleported"}
    for event in (early, bad_type):
        response = await post_signed(feed_stack, "police", json.dumps(event).encode())
        assert response.status_code == 422
    write_clock_file(clock_file, CLOCK_T0 + timedelta(hours=2), ticking=True)
    rt = feed_stack.runtime
    async with rt.sessions.begin() as session:
        rows = (await session.scalars(select(m.RejectedRecord).order_by(m.RejectedRecord.id))).all()
        outcomes = [
            await replay(session, row, now=rt.clock.now(), max_skew=timedelta(minutes=5))
            for row in rows
        ]
    assert [o[0].status for o in outcomes] == ["accepted", "invalid"]
    async with rt.sessions() as session:
        rows = (await session.scalars(select(m.RejectedRecord).order_by(m.RejectedRecord.id))).all()
        events = (await session.scalars(select(m.CaseEvent.event_id))).all()
    assert events == ["late1"]
    assert [(r.replays, r.replay_outcome, r.replayed_at is not None) for r in rows] == [
        (1, "accepted", True),
        (1, "invalid", False),
    ]
    assert len(rows) == 2  # the one that failed again is still one row


@pytest.mark.parametrize("feed", sorted(SECRETS))
async def test_every_native_example_file_is_accepted_as_jsonl_and_as_csv(
    feed_stack: Any, feed: str
) -> None:
    jsonl = await send_file(
        feed_stack.url, EXAMPLES / f"{feed}.jsonl", feed=feed, secret=SECRETS[feed]
    )
    assert jsonl["rejected"] == 0 and jsonl["accepted"] == jsonl["lines"] > 0, jsonl
    csv_drop = await send_file(
        feed_stack.url, EXAMPLES / f"{feed}.csv", feed=feed, secret=SECRETS[feed]
    )
    assert csv_drop["rejected"] == 0 and csv_drop["lines"] > 0, csv_drop
    async with feed_stack.runtime.sessions() as session:
        types = set((await session.scalars(select(m.CaseEvent.type))).all())
    assert types and all(t.startswith(f"{feed}.") for t in types)


async def test_a_record_the_database_cannot_store_is_refused_alone(
    make_settings: Any, pg_url: str, broker: EmbeddedBroker
) -> None:
    settings = feed_settings(make_settings, pg_url, broker, ingest_feed_topics=False)
    async with running_stack(settings, [ingest], own_broker=False) as stack:
        long_ok = crime_recorded("01AB1234524", "w1")
        long_ok["source"] = "police/" + "x" * 63  # 70 characters: allowed by the schema
        long_ok["data"]["crime_reference"] = "C" * 100
        body = json.dumps([long_ok, arrested("01AB1234524", "w2")]).encode()
        response = await post_signed(stack, "police", body)
        assert [r["status"] for r in response.json()["results"]] == ["accepted", "accepted"]

        nul = arrested("01AB1234524", "w3")
        nul["source"] = "police/0\u0000"  # valid JSON; PostgreSQL text cannot hold NUL
        batch = [arrested("01AB1234524", "w4"), nul, arrested("01AB1234524", "w5")]
        async with httpx.AsyncClient(base_url=stack.url) as client:
            response = await client.post(
                "/v1/events",
                content=json.dumps(batch),
                headers={"content-type": "application/cloudevents-batch+json"},
            )
        assert response.status_code == 207, response.text
        statuses = [r["status"] for r in response.json()["results"]]
        assert statuses == ["accepted", "invalid", "accepted"]
        async with stack.runtime.sessions() as session:
            kept = (await session.scalars(select(m.RejectedRecord))).one()
        assert kept.reason_code == "invalid_text"


async def test_canonical_events_are_signed_when_a_secret_is_set_and_refused_in_production(
    make_settings: Any, sqlite_url: str, broker: EmbeddedBroker
) -> None:
    from services.core.keys import new_keyring

    body = json.dumps(crime_recorded("01AB1234524", "e1")).encode()
    settings = make_settings(
        database_url=sqlite_url, kafka_bootstrap=broker.bootstrap, events_secret="events-secret"
    )
    async with (
        running_stack(settings, [ingest], own_broker=False) as stack,
        httpx.AsyncClient(base_url=stack.url) as client,
    ):
        unsigned = await client.post("/v1/events", content=body, headers=CE)
        assert unsigned.status_code == 401
        stamp = str(int(time.time()))
        signed = await client.post(
            "/v1/events",
            content=body,
            headers={
                **CE,
                "x-carehub-timestamp": stamp,
                "x-carehub-signature": sign("events-secret", stamp, body),
            },
        )
        assert signed.status_code == 202, signed.text
    production = make_settings(
        database_url=sqlite_url,
        kafka_bootstrap=broker.bootstrap,
        env="production",
        keys=json.dumps(new_keyring()),
    )
    async with (
        running_stack(production, [ingest], own_broker=False) as stack,
        httpx.AsyncClient(base_url=stack.url) as client,
    ):
        refused = await client.post("/v1/events", content=body, headers=CE)
    assert refused.status_code == 403 and "CAREHUB_EVENTS_SECRET" in refused.text


async def test_a_feed_cannot_send_under_another_agencys_source(feed_stack: Any) -> None:
    borrowed = {**arrested("01AB1234524", "s1"), "source": "cps/01"}
    refused = await post_signed(feed_stack, "police", json.dumps(borrowed).encode())
    assert refused.status_code == 422
    assert refused.json()["errors"] == [
        {"pointer": "/source", "message": "must start with police/"}
    ]
    async with feed_stack.runtime.sessions() as session:
        (kept,) = (await session.scalars(select(m.RejectedRecord))).all()
    assert (kept.feed, kept.reason_code) == ("police", "source_not_allowed_for_feed")
