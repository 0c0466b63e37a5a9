"""schemas/asyncapi.yaml: current, valid AsyncAPI 3.0, every topic, and the record shapes it
declares are the ones the services really publish."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import jsonschema
import pytest
import yaml
from faststream.kafka import KafkaBroker

from services.cli import SERVICES
from services.core import asyncapi
from services.core.calendar import load_calendar
from services.core.clock import FixedClock
from services.core.db import models as m
from services.core.db.engine import make_engine, session_factory
from services.core.runtime import Runtime
from services.core.settings import load_settings
from services.core.topics import CASE_EVENTS_DLQ, REGISTRY

REPO = Path(__file__).resolve().parents[2]
DOCUMENT = REPO / "schemas" / "asyncapi.yaml"
ASYNCAPI_SCHEMA = REPO / "deploy" / "vendor" / "asyncapi-3.0.0.json"


@pytest.fixture(scope="module")
def generated() -> dict[str, Any]:
    return asyncapi.build(SERVICES)


def test_committed_document_is_current(generated: dict[str, Any]) -> None:
    assert DOCUMENT.read_text(encoding="utf-8") == asyncapi.render(generated), (
        "schemas/asyncapi.yaml is out of date: run `carehub asyncapi` and commit it"
    )


def test_document_does_not_depend_on_the_environment(
    generated: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAREHUB_CONSUMER_GROUP_PREFIX", "elsewhere")
    monkeypatch.setenv("CAREHUB_INGEST_FEED_TOPICS", "false")
    monkeypatch.setenv("CAREHUB_KAFKA_BOOTSTRAP", "kafka-9.example.org:9093")
    assert asyncapi.build(SERVICES) == generated


def test_document_is_valid_asyncapi_3() -> None:
    schema = json.loads(ASYNCAPI_SCHEMA.read_text(encoding="utf-8"))
    document = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(document)
    ]
    assert errors == []


def _operations(document: dict[str, Any], action: str) -> set[str]:
    channels = document["channels"]
    return {
        channels[op["channel"]["$ref"].rsplit("/", 1)[1]]["address"]
        for op in document["operations"].values()
        if op["action"] == action
    }


def test_every_topic_is_documented_with_who_sends_and_who_receives(
    generated: dict[str, Any],
) -> None:
    addresses = {channel["address"] for channel in generated["channels"].values()}
    assert addresses == {topic.name for topic in REGISTRY}
    assert _operations(generated, "send") == {
        "case-events",
        "case-events.dlq",
        "notifications.due",
        "notifications.status",
    }
    assert _operations(generated, "receive") == {
        "feeds.police",
        "feeds.cps",
        "feeds.court",
        "feeds.probation",
        "case-events",
        "notifications.due",
    }
    groups = {
        op["bindings"]["kafka"]["groupId"]["enum"][0]
        for op in generated["operations"].values()
        if op["action"] == "receive"
    }
    assert groups == {"carehub.ingest", "carehub.rules", "carehub.notifier"}


def test_every_reference_resolves(generated: dict[str, Any]) -> None:
    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return found + [r for value in node.values() for r in refs(value)]
        if isinstance(node, list):
            return [r for value in node for r in refs(value)]
        return []

    for ref in refs(generated):
        if ref.startswith("#/"):
            target: Any = generated
            for part in ref[2:].split("/"):
                target = target[part]
        else:  # a schema file beside the document
            assert (DOCUMENT.parent / ref).is_file(), ref


def test_status_event_has_the_declared_shape() -> None:
    from services.notifier.delivery import _status_event

    now = datetime(2026, 11, 18, 11, 0, tzinfo=UTC)
    row = m.Notification(
        id="5f0c3c9e-0000-5000-8000-000000000001",
        event_source="police/01",
        event_id="met-1",
        recipient_role="survivor",
        channel="sms",
        status="delivered",
        informed_at=now,
        due_by=now,
        rule="police.suspect_arrested",
    )
    event = _status_event(row, "01AB1234524", now)
    declared = asyncapi.NotificationStatus.model_validate(event)
    assert set(event) == set(asyncapi.NotificationStatus.model_fields)
    assert set(event["data"]) == set(asyncapi.NotificationStatusData.model_fields)
    assert declared.data.status == "delivered"


class _RecordingBroker:
    """Stands in for the Kafka broker: keeps what would have been published."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    async def publish(self, body: bytes, topic: str, **_: Any) -> None:
        self.published.append((topic, body))


async def test_dead_letter_has_the_declared_shape(tmp_path: Path) -> None:
    from services.ingest.publishing import publish_rejections

    now = datetime(2026, 11, 18, 11, 0, tzinfo=UTC)
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'carehub.db'}")
    try:
        async with engine.begin() as conn:
            await conn.run_sync(
                m.Base.metadata.create_all,
                tables=[m.Base.metadata.tables[m.RejectedRecord.__tablename__]],
            )
        sessions = session_factory(engine)
        async with sessions.begin() as session:
            row = m.RejectedRecord(
                received_at=now,
                way_in="kafka",
                feed="police",
                reason_code="malformed_json",
                errors=[{"pointer": "", "message": "is not valid UTF-8 JSON"}],
                original=b"{",
            )
            session.add(row)
            await session.flush()
            rejected_id = row.id
        broker = _RecordingBroker()
        rt = Runtime(
            settings=load_settings(var_dir=tmp_path),
            engine=engine,
            sessions=sessions,
            clock=FixedClock(now),
            calendar=load_calendar(None),
            broker=cast(KafkaBroker, broker),
        )
        await publish_rejections(rt, [rejected_id])
    finally:
        await engine.dispose()
    [(topic, body)] = broker.published
    record = json.loads(body)
    assert topic == CASE_EVENTS_DLQ.name
    assert set(record) == set(asyncapi.DeadLetter.model_fields)
    assert asyncapi.DeadLetter.model_validate(record).rejected_id == rejected_id
