"""POST /v1/events answers as the design says, keeps every rejected record, and publishes
references (never personal data) to the broker."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer
from sqlalchemy import select

from services.core.db import models as m
from tests.conftest import CLOCK_T0
from tests.integration.test_pipeline import CE, arrested, crime_recorded, iso

SECRET_PHONE = "+447700900987"


async def read_topic(bootstrap: str, topic: str, count: int) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    try:
        records: list[Any] = []
        for _ in range(50):
            batch = await consumer.getmany(timeout_ms=200)
            for items in batch.values():
                records.extend(items)
            if len(records) >= count:
                break
        return records
    finally:
        await consumer.stop()


async def test_accepted_event_is_recorded_and_a_reference_published(ingest_stack: Any) -> None:
    event = crime_recorded("01AB1234524", "x1")
    event["data"]["victims"][0]["contact"]["phone"] = SECRET_PHONE
    async with httpx.AsyncClient(base_url=ingest_stack.url) as client:
        response = await client.post("/v1/events", json=event, headers=CE)
    assert response.status_code == 202
    assert response.json() == {"status": "accepted", "id": "x1", "source": "police/01"}
    records = await read_topic(ingest_stack.bootstrap, "case-events", 1)
    assert len(records) == 1
    assert records[0].key == b"01AB1234524"
    payload = json.loads(records[0].value)
    assert payload["type"] == "police.crime_recorded" and payload["subject"] == "01AB1234524"
    assert SECRET_PHONE.encode() not in records[0].value  # no personal data on Kafka
    async with ingest_stack.runtime.sessions() as session:
        row = (await session.scalars(select(m.CaseEvent))).one()
        pref = (await session.scalars(select(m.ContactPreference))).one()
        case = (await session.scalars(select(m.Case))).one()
    assert row.published_at is not None and row.processed_at is None
    assert len(row.payload_hash) == 64
    assert pref.phone == SECRET_PHONE and pref.sms_safe and pref.version == 1
    # The police's safety check lapses unless the advocate confirms it (rule 1).
    assert pref.sms_safe_review_by == (CLOCK_T0 + timedelta(days=28)).date()
    assert case.enhanced_rights and "most_serious_crime" in case.enhanced_reasons


async def test_invalid_event_gets_422_with_pointers_and_is_kept(ingest_stack: Any) -> None:
    event = crime_recorded("not-a-urn", "bad1")
    event["data"]["victims"][0]["contact"]["phone"] = "07700 900987 call me"
    del event["time"]
    async with httpx.AsyncClient(base_url=ingest_stack.url) as client:
        response = await client.post("/v1/events", json=event, headers=CE)
    assert response.status_code == 422
    errors = response.json()["errors"]
    pointers = {e["pointer"] for e in errors}
    assert {"/time", "/subject", "/data/victims/0/contact/phone"} <= pointers
    assert "07700" not in response.text  # the reason never echoes the value
    async with ingest_stack.runtime.sessions() as session:
        rejected = (await session.scalars(select(m.RejectedRecord))).one()
    assert rejected.reason_code == "invalid" and rejected.way_in == "http"
    assert json.loads(rejected.original)["id"] == "bad1"  # nothing lost
    assert rejected.source == "police/01" and rejected.event_id == "bad1"
    dlq = await read_topic(ingest_stack.bootstrap, "case-events.dlq", 1)
    assert len(dlq) == 1 and b"07700" not in dlq[0].value
    assert json.loads(dlq[0].value)["reason"] == "invalid"


async def test_duplicate_and_conflicting_duplicate(ingest_stack: Any) -> None:
    event = arrested("01AB1234524", "d1")
    changed = {**event, "time": iso(CLOCK_T0 - timedelta(hours=3))}
    async with httpx.AsyncClient(base_url=ingest_stack.url) as client:
        first = await client.post("/v1/events", json=event, headers=CE)
        second = await client.post("/v1/events", json=event, headers=CE)
        third = await client.post("/v1/events", json=changed, headers=CE)
    assert first.status_code == 202
    assert second.status_code == 200 and second.json()["status"] == "duplicate"
    assert third.status_code == 409 and third.json()["errors"][0]["pointer"] == "/id"
    async with ingest_stack.runtime.sessions() as session:
        assert len((await session.scalars(select(m.CaseEvent))).all()) == 1
        rejected = (await session.scalars(select(m.RejectedRecord))).one()
    assert rejected.reason_code == "conflicting_duplicate"


async def test_batch_answers_207_with_a_status_per_index(ingest_stack: Any) -> None:
    good = arrested("01AB1234524", "b1")
    future = {**arrested("01AB1234524", "b2"), "time": iso(datetime.now(UTC) + timedelta(days=1))}
    batch = [good, good, future, {"specversion": "1.0"}]
    async with httpx.AsyncClient(base_url=ingest_stack.url) as client:
        response = await client.post(
            "/v1/events",
            content=json.dumps(batch),
            headers={"content-type": "application/cloudevents-batch+json"},
        )
    assert response.status_code == 207
    body = response.json()
    assert [r["status"] for r in body["results"]] == ["accepted", "duplicate", "invalid", "invalid"]
    assert [r["index"] for r in body["results"]] == [0, 1, 2, 3]
    assert body["counts"] == {"accepted": 1, "duplicate": 1, "invalid": 2, "conflict": 0}
    assert body["results"][2]["errors"] == [{"pointer": "/time", "message": "is in the future"}]


async def test_unreadable_bodies_are_refused_clearly(ingest_stack: Any) -> None:
    settings = ingest_stack.runtime.settings
    async with httpx.AsyncClient(base_url=ingest_stack.url) as client:
        not_json = await client.post("/v1/events", content=b"\xff{oops", headers=CE)
        wrong_type = await client.post(
            "/v1/events", content=b"{}", headers={"content-type": "text/plain"}
        )
        too_big = await client.post(
            "/v1/events", content=b"[" + b" " * settings.max_request_bytes + b"]", headers=CE
        )
        empty_batch = await client.post("/v1/events", content=b"[]", headers=CE)
    assert not_json.status_code == 400 and not_json.json()["errors"][0]["pointer"] == ""
    assert wrong_type.status_code == 415
    assert too_big.status_code == 413
    assert empty_batch.status_code == 400
    async with ingest_stack.runtime.sessions() as session:
        kept = (await session.scalars(select(m.RejectedRecord))).one()
    assert kept.reason_code == "malformed_json" and kept.original == b"\xff{oops"


async def test_health_readiness_and_metrics(ingest_stack: Any) -> None:
    async with httpx.AsyncClient(base_url=ingest_stack.url) as client:
        health = await client.get("/healthz")
        ready = await client.get("/readyz")
        await client.post("/v1/events", json=arrested("01AB1234524", "m1"), headers=CE)
        metrics = await client.get("/metrics")
    assert health.status_code == 200 and health.json()["services"] == ["ingest"]
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "broker": "ok"}
    assert 'carehub_events_ingested_total{result="accepted"}' in metrics.text
