"""The AsyncAPI document of carehub's Kafka topics, kept in `schemas/asyncapi.yaml`.

It is generated, not written: every service is mounted on an idle runtime (a FastStream broker
that never connects, a database engine that never opens a connection), and FastStream describes
the subscribers they registered, with their consumer groups. Services publish with a bare
`broker.publish(...)`, which leaves nothing for FastStream to describe, so the publishers are
declared here (`PUBLISHED`), and each topic's record shape comes from `services.core.records`
or from the shapes below. Descriptions, keys and partitions come from the topic registry.

This module knows no service by import (core imports nothing of the others): the caller hands
it the services, as `carehub asyncapi` does with the ones `carehub run` mounts.
"""

from __future__ import annotations

import difflib
import json
import sys
import tempfile
from collections.abc import Callable, Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import typer
import yaml
from fastapi import FastAPI
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from services.core.calendar import load_calendar
from services.core.clock import SystemClock
from services.core.db.engine import make_engine, session_factory
from services.core.kafka import make_broker
from services.core.records import CaseEventRef, NotificationDue
from services.core.runtime import Runtime, Service
from services.core.settings import Settings
from services.core.topics import (
    CASE_EVENTS,
    CASE_EVENTS_DLQ,
    NOTIFICATIONS_DUE,
    NOTIFICATIONS_STATUS,
    REGISTRY,
    Topic,
)

DOCUMENT = Path("schemas/asyncapi.yaml")
# Binding version of FastStream's own Kafka bindings, so one document uses one version.
KAFKA_BINDING = "0.4.0"
SERVER = "kafka"


class DeadLetter(BaseModel):
    """On `case-events.dlq` (key: source/id): a rejected record's reference and reason. The
    rejected bytes stay in the database, protected; `carehub dlq` lists and replays them.
    Mirrors `services/ingest/publishing.py`."""

    rejected_id: int = Field(description="Row id in rejected_records.")
    way_in: str = Field(description="http, kafka or file.")
    feed: str | None = Field(description="police, cps, court or probation; null for canonical.")
    source: str | None = Field(description="The event's source, when it could be read.")
    id: str | None = Field(description="The event's id, when it could be read.")
    reason: str = Field(description="Reason code, e.g. invalid, conflicting_duplicate.")
    errors: list[dict[str, str]] = Field(
        description="JSON pointers and carehub's own messages, never a value from the record."
    )
    received_at: str = Field(description="ISO 8601 instant.")


class NotificationStatusData(BaseModel):
    notification_id: str
    event_source: str
    event_id: str
    recipient_role: str
    channel: str | None
    status: str
    informed_at: str | None = Field(description="When the recipient was informed (ISO 8601).")
    due_by: str | None = Field(description="The Victims' Code deadline (ISO 8601).")
    rule: str


class NotificationStatus(BaseModel):
    """On `notifications.status` (key: URN): a CloudEvent of delivery progress, no personal
    data, so upstream systems can record when a victim was informed. Mirrors
    `services/notifier/delivery.py`."""

    specversion: str = Field(description="1.0")
    id: str = Field(description="<notification id>:<status>")
    source: str = Field(description="carehub/notifier")
    type: str = Field(description="carehub.notification.<status>")
    subject: str = Field(description="The case reference (URN).")
    time: str
    datacontenttype: str = Field(description="application/json")
    data: NotificationStatusData


# Who publishes on carehub's own topics, what a record there is, and when it is published.
PUBLISHED: tuple[tuple[Topic, str, type, str], ...] = (
    (CASE_EVENTS, "ingest", CaseEventRef, "a reference to each event it records"),
    (
        CASE_EVENTS,
        "dispatcher",
        CaseEventRef,
        "the re-drive: events recorded but not processed within CAREHUB_REDRIVE_AFTER_S",
    ),
    (CASE_EVENTS_DLQ, "ingest", DeadLetter, "each record it rejects, with the reason"),
    (
        NOTIFICATIONS_DUE,
        "dispatcher",
        NotificationDue,
        "each notification that falls due (the transactional outbox), and the re-drive",
    ),
    (NOTIFICATIONS_STATUS, "notifier", NotificationStatus, "each step of delivery progress"),
)
CONTENT_TYPES = {NOTIFICATIONS_STATUS.name: "application/cloudevents+json"}
# The upstream feeds publish their own native records: schemas/feeds/<feed>.schema.json, referred
# to relative to the document (schemas/asyncapi.yaml).
FEED_SCHEMA = "feeds/{feed}.schema.json"
DESCRIPTION = """\
The Kafka topics of carehub, the notification engine of a Victims' Care Hub.

PostgreSQL is the truth; Kafka carries work. Every consumer takes records in batches, processes
a batch in one database transaction and commits the offsets after it (at least once, idempotent
by unique keys); consumers with no committed offset start from the earliest record. Personal
data never travels on these topics: they carry references, reasons and statuses. Topics are
created at start-up with the partitions given here; partitions bound how many processes of a
consumer group share the work.

Generated by `carehub asyncapi` from the FastStream subscribers the services mount and the
publishers declared in services/core/asyncapi.py; do not edit by hand.
"""


class _DocumentSettings(Settings):
    """Defaults only: the document must not change with whoever's environment generates it."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def _idle_runtime(var_dir: Path) -> Runtime:
    settings = _DocumentSettings(var_dir=var_dir, kafka_bootstrap="kafka:9092")
    engine = make_engine("sqlite+aiosqlite:///:memory:")  # never connected
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=session_factory(engine),
        clock=SystemClock(),
        calendar=load_calendar(None),
        broker=make_broker(settings),
    )


def build(services: Mapping[str, Service]) -> dict[str, Any]:
    """The AsyncAPI 3.0 document, as plain data, of the topics `services` consume and publish."""
    with tempfile.TemporaryDirectory(prefix="carehub-asyncapi-") as tmp:
        rt = _idle_runtime(Path(tmp))
        broker = rt.broker
        consumers: dict[str, tuple[str, str]] = {}  # channel key -> (service, consumer group)
        app = FastAPI()
        for name, service in services.items():
            known = {id(s) for s in broker.subscribers}
            service.mount(rt, app)
            for sub in broker.subscribers:
                if id(sub) not in known:
                    group = str(getattr(sub, "group_id", None) or "")
                    consumers.update((key, (name, group)) for key in sub.schema())
        producers = _declare_publishers(broker, set(services))
        spec = AsyncAPI(
            broker,
            title="carehub",
            version=_version(),
            description=DESCRIPTION,
        ).to_specification()
        document: dict[str, Any] = json.loads(spec.to_json())
    _describe(document, consumers, producers)
    head = ("asyncapi", "info", "defaultContentType", "servers", "channels", "operations")
    return {key: document[key] for key in head} | {
        key: value for key, value in document.items() if key not in head
    }


def _declare_publishers(broker: KafkaBroker, services: set[str]) -> dict[str, tuple[str, str]]:
    """Declare what the services publish; return channel key -> (service, when)."""
    producers: dict[str, tuple[str, str]] = {}
    for topic, name, payload, when in PUBLISHED:
        if name in services:
            key = f"{topic.name}:{name.capitalize()}"
            broker.publisher(topic.name, title=key, description=topic.description, schema=payload)
            producers[key] = (name, when)
    return producers


def _describe(
    document: dict[str, Any],
    consumers: Mapping[str, tuple[str, str]],
    producers: Mapping[str, tuple[str, str]],
) -> None:
    """Add what FastStream cannot know: the server, topic facts, keys and record shapes."""
    topics = {t.name: t for t in REGISTRY}
    document["servers"] = {
        SERVER: {
            "host": "kafka:9092",
            "protocol": "kafka",
            "description": "Apache Kafka: the brokers of CAREHUB_KAFKA_BOOTSTRAP.",
        }
    }
    schemas: dict[str, Any] = document["components"]["schemas"]
    messages: dict[str, Any] = document["components"]["messages"]
    # What a record on each topic is, from the publishers' declared shapes.
    shapes = {
        document["channels"][key]["address"]: messages[f"{key}:Message"]["payload"]
        for key in producers
    }
    for key, channel in document["channels"].items():
        topic = topics[channel["address"]]
        channel["servers"] = [{"$ref": f"#/servers/{SERVER}"}]
        channel["description"] = f"{topic.description} Key: {topic.key}."
        channel["bindings"]["kafka"]["partitions"] = topic.partitions
        for ref in channel["messages"].values():
            message = messages[ref["$ref"].rsplit("/", 1)[1]]
            if key in consumers:
                # A batch handler's signature says `list[Any]`; a record is what the topic holds.
                _drop_schema(schemas, message["payload"])
                shape = shapes.get(topic.name)
                message["payload"] = dict(shape) if shape else _feed_payload(topic.name)
            message["bindings"] = {
                "kafka": {
                    "key": {"type": "string", "description": topic.key},
                    "bindingVersion": KAFKA_BINDING,
                }
            }
            if topic.name in CONTENT_TYPES:
                message["contentType"] = CONTENT_TYPES[topic.name]
            message.pop("correlationId", None)  # carehub sets none; ids are in the records
    for operation in document["operations"].values():
        key = operation["channel"]["$ref"].rsplit("/", 1)[1]
        if key in consumers:
            service, group = consumers[key]
            operation["description"] = (
                f"`carehub run --only {service}` consumes this topic in batches (consumer group "
                f"`{group}`), one database transaction a batch, offsets committed after it."
            )
            operation["bindings"] = {
                "kafka": {
                    "groupId": {"type": "string", "enum": [group]},
                    "bindingVersion": KAFKA_BINDING,
                }
            }
        else:
            service, when = producers[key]
            operation["description"] = f"`carehub run --only {service}` publishes {when}."
    _tidy(document)


def _tidy(document: dict[str, Any]) -> None:
    """Channels, operations and messages in registry order, each schema's prose on one line."""
    order = {t.name: i for i, t in enumerate(REGISTRY)}
    channels = document["channels"]

    def rank(key: str) -> tuple[int, str]:
        return order[channels[key]["address"]], key

    def by_channel(section: Mapping[str, Any], channel_of: Callable[[str], str]) -> Any:
        return dict(sorted(section.items(), key=lambda item: rank(channel_of(item[0]))))

    document["channels"] = by_channel(channels, lambda key: key)
    document["operations"] = by_channel(
        document["operations"],
        lambda key: document["operations"][key]["channel"]["$ref"].rsplit("/", 1)[1],
    )
    components = document["components"]
    components["messages"] = by_channel(components["messages"], lambda key: key.rsplit(":", 1)[0])
    components["schemas"] = dict(sorted(components["schemas"].items()))
    for schema in components["schemas"].values():
        if "description" in schema:
            schema["description"] = " ".join(schema["description"].split())


def _drop_schema(schemas: dict[str, Any], payload: Mapping[str, Any]) -> None:
    ref = payload.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        schemas.pop(ref.rsplit("/", 1)[1], None)


def _feed_payload(topic: str) -> dict[str, Any]:
    record = FEED_SCHEMA.format(feed=topic.removeprefix("feeds."))
    return {
        "description": "One native record of the feed, or a JSON array of them.",
        "oneOf": [{"$ref": record}, {"type": "array", "items": {"$ref": record}}],
    }


def _version() -> str:
    try:
        return version("carehub")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0"


class _Dumper(yaml.SafeDumper):
    """Text of several lines as a literal block, as it was written."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def render(document: Mapping[str, Any]) -> str:
    """The document as YAML, stable from one run to the next."""
    return yaml.dump(dict(document), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def asyncapi_command(services: Mapping[str, Service]) -> Callable[..., None]:
    """`carehub asyncapi [--check]` for the CLI, over the services it runs."""

    def asyncapi(
        check: bool = typer.Option(
            False, "--check", help="Exit 1 if the file is not what the code generates."
        ),
        path: Path = typer.Option(DOCUMENT, "--path", help="Where the document lives."),
    ) -> None:
        """Write (or check) schemas/asyncapi.yaml, the AsyncAPI document of the Kafka topics."""
        text = render(build(services))
        current = path.read_text(encoding="utf-8") if path.is_file() else ""
        if check:
            if current != text:
                sys.stderr.writelines(
                    difflib.unified_diff(
                        current.splitlines(keepends=True),
                        text.splitlines(keepends=True),
                        str(path),
                        "generated",
                    )
                )
                print(
                    f"carehub: {path} is out of date: run `carehub asyncapi`",
                    file=sys.stderr,
                )
                print(json.dumps({"path": str(path), "current": False}), flush=True)
                raise typer.Exit(1)
            print(json.dumps({"path": str(path), "current": True}), flush=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(json.dumps({"path": str(path), "written": current != text}), flush=True)

    return asyncapi
