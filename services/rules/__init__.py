"""Rules: the pure engine and its rules data, the `case-events` consumer, and the dispatcher."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from services.core.kafka import batch_subscriber_options
from services.core.runtime import Runtime
from services.core.topics import CASE_EVENTS
from services.rules.consumer import RulesConsumer
from services.rules.engine import Engine
from services.rules.ruleset import load_rules

NAME = "rules"


def mount(rt: Runtime, app: FastAPI) -> None:
    consumer = RulesConsumer(rt, Engine(load_rules(rt.settings.rules_file), rt.calendar))
    rt.extras["rules_consumer"] = consumer

    @rt.broker.subscriber(CASE_EVENTS.name, **batch_subscriber_options(rt.settings, NAME))  # type: ignore[untyped-decorator]
    async def on_case_events(records: list[Any]) -> None:
        await consumer.handle_batch(records)
