"""Silence is surfaced: a survivor who has heard nothing for longer than their frequency allows
has their advocate prompted to check in, once, and again if it stays quiet."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from services.cli import SERVICES
from services.core.clock import write_clock_file
from services.core.db import models as m
from services.core.embedded_broker import EmbeddedBroker
from services.core.runner import running_stack
from tests.conftest import CLOCK_T0
from tests.integration.test_pipeline import CE, crime_recorded, seed_team, wait_for_files


async def prompts(stack: Any) -> list[m.Notification]:
    async with stack.runtime.sessions() as session:
        return list(
            (
                await session.scalars(
                    select(m.Notification).where(m.Notification.template == "advocate_check_in")
                )
            ).all()
        )


async def wait_for_prompts(stack: Any, count: int) -> list[m.Notification]:
    for _ in range(150):
        found = await prompts(stack)
        if len(found) >= count and all(p.status == "delivered" for p in found):
            return found
        await asyncio.sleep(0.1)
    found = await prompts(stack)
    raise AssertionError(f"expected {count} delivered check-in prompts, have {found}")


async def test_a_quiet_case_prompts_the_advocate_to_check_in(
    make_settings: Any, database_url: str, broker: EmbeddedBroker, clock_file: Path
) -> None:
    settings = make_settings(
        database_url=database_url, kafka_bootstrap=broker.bootstrap, silence_check_s=1
    )
    async with running_stack(settings, list(SERVICES.values()), own_broker=False) as stack:
        await seed_team(stack)
        async with httpx.AsyncClient(base_url=stack.url) as client:
            event = crime_recorded("01AB1234524", "s1")
            assert (await client.post("/v1/events", json=event, headers=CE)).status_code == 202
        await wait_for_files(settings.resolved_outbox_dir, 2)
        await asyncio.sleep(1.5)
        assert await prompts(stack) == []  # they were just told: nothing to prompt

        # 29 days without a word (the default for "all updates" is 28).
        write_clock_file(clock_file, CLOCK_T0 + timedelta(days=29), ticking=True)
        (first,) = await wait_for_prompts(stack, 1)
        assert first.recipient_role == "supervisor"  # no advocate yet: the supervisor stands in
        assert first.rule.endswith(":silence") and first.survivor_id is not None
        await asyncio.sleep(1.5)
        assert len(await prompts(stack)) == 1  # once, not every pass

        write_clock_file(clock_file, CLOCK_T0 + timedelta(days=58), ticking=True)
        await wait_for_prompts(stack, 2)
    files = await wait_for_files(settings.resolved_outbox_dir, 4)
    check_ins = [f for f in files if f["template"] == "advocate_check_in"]
    assert len(check_ins) == 2
    assert "01AB1234524" in check_ins[0]["subject"]
    assert "check in" in check_ins[0]["body"]


async def test_every_quiet_survivor_is_found_page_after_page(
    make_settings: Any, pg_url: str, broker: EmbeddedBroker, clock_file: Path
) -> None:
    from services.rules.ruleset import load_rules
    from services.rules.silence import prompt_silence

    settings = make_settings(
        database_url=pg_url, kafka_bootstrap=broker.bootstrap, silence_check_s=86_400
    )
    async with running_stack(settings, list(SERVICES.values()), own_broker=False) as stack:
        await seed_team(stack)
        async with httpx.AsyncClient(base_url=stack.url) as client:
            for n in range(3):
                event = crime_recorded(f"01AB12345{24 + n}", f"pg{n}")
                assert (await client.post("/v1/events", json=event, headers=CE)).status_code == 202
        await wait_for_files(settings.resolved_outbox_dir, 6)
        write_clock_file(clock_file, CLOCK_T0 + timedelta(days=29), ticking=True)
        rules = load_rules()
        assert await prompt_silence(stack.runtime, rules, limit=1) == 3  # three pages of one
        assert await prompt_silence(stack.runtime, rules, limit=1) == 0  # and only once
