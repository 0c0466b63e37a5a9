"""The notifier killed (SIGKILL) again and again while it texts a few hundred survivors through
the real Twilio channel, restarted each time on the same port: every message reaches the
provider (the Twilio stand-in, in its own process) exactly once.

Separate processes on real PostgreSQL and the embedded broker: the stand-in, a dispatcher that
stays up (it releases the due texts and re-drives sends cut off by a crash), and the notifier.
Each survivor gets several texts with the same words, so a resumed send that asked the provider
must find its own message, not an earlier one to the same number. Whatever a kill cut off,
before or after the provider accepted it, is counted, so the test cannot pass without a kill
landing mid-send.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from services.bench import FAKE_NUMBERS, _seed
from services.core.db import models as m
from services.core.db.engine import make_engine, session_factory
from services.core.embedded_broker import EmbeddedBroker, free_port
from tests.e2e.notifier_harness import StandinProcess
from tests.e2e.processes import CarehubProcess, base_env, log_events, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.broker]

SURVIVORS = 100
PER_SURVIVOR = 3  # the same words to the same number, three times
MESSAGES = SURVIVORS * PER_SURVIVOR
KILLS = 5
SENDER = "+447700900001"
REDRIVE_AFTER_S = 3
STANDIN_DELAY_MS = 40  # each create takes this long at the "provider": kills land mid-request
DONE = ("sent", "delivered")


@dataclass
class Kill:
    number: int
    at_provider_before: int  # messages the stand-in had accepted when the kill came
    done_before: int  # notifications recorded sent/delivered when the kill came
    cut_off: int  # attempts this kill left open (claimed, not recorded)
    cut_off_accepted: int  # of those, how many the stand-in had accepted anyway


async def test_sigkill_notifier_repeatedly_every_text_reaches_provider_once(
    pg_url: str, broker: EmbeddedBroker, tmp_path: Path
) -> None:
    seed = secrets.randbits(32)
    rng = random.Random(seed)
    account_sid, auth_token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
    standin = StandinProcess(free_port(), account_sid, auth_token, tmp_path, base_env()).start()
    http_port = free_port()
    env = base_env(
        CAREHUB_ENV="test",
        CAREHUB_DATABASE_URL=pg_url,
        CAREHUB_KAFKA_BOOTSTRAP=broker.bootstrap,
        CAREHUB_VAR_DIR=str(tmp_path / "var"),
        CAREHUB_HTTP_PORT=str(http_port),
        CAREHUB_LOG_LEVEL="INFO",
        CAREHUB_SMS_CHANNEL="twilio",
        CAREHUB_TWILIO_ACCOUNT_SID=account_sid,
        CAREHUB_TWILIO_AUTH_TOKEN=auth_token,
        CAREHUB_TWILIO_FROM=SENDER,
        CAREHUB_TWILIO_BASE_URL=standin.url,
        CAREHUB_PUBLIC_BASE_URL=f"http://127.0.0.1:{http_port}",
        CAREHUB_SMS_ALLOWLIST=",".join(FAKE_NUMBERS[:SURVIVORS]),
        CAREHUB_SMS_RATE_PER_S="0",
        CAREHUB_REDRIVE_AFTER_S=str(REDRIVE_AFTER_S),
        CAREHUB_KAFKA_SESSION_TIMEOUT_MS="3000",
        CAREHUB_KAFKA_MAX_RECORDS="100",
        CAREHUB_DISPATCH_INTERVAL_MS="100",
        CAREHUB_NOTIFIER_CONCURRENCY="8",
    )
    dispatcher = CarehubProcess(
        "dispatcher", ["run", "--only", "dispatcher"], {**env, "CAREHUB_HTTP_PORT": "0"}, tmp_path
    )
    notifier = CarehubProcess("notifier", ["run", "--only", "notifier"], env, tmp_path)
    engine = make_engine(pg_url)
    sessions = session_factory(engine)
    provider = httpx.AsyncClient(base_url=standin.url, timeout=10)

    async def at_provider() -> list[dict[str, Any]]:
        response = await provider.get("/_harness/messages")
        response.raise_for_status()
        messages: list[dict[str, Any]] = response.json()
        return messages

    async def statuses() -> dict[str, str]:
        async with sessions() as session:
            rows = await session.execute(select(m.Notification.id, m.Notification.status))
            return {nid: status for nid, status in rows.all()}

    async def open_attempts() -> set[tuple[str, int]]:
        """Attempts claimed and never recorded: what a kill cut off (a receipt does not close
        one, so an attempt the stand-in confirmed stays in this set; that is intended)."""
        async with sessions() as session:
            rows = await session.execute(
                select(m.DeliveryAttempt.notification_id, m.DeliveryAttempt.attempt_no).where(
                    m.DeliveryAttempt.finished_at.is_(None), m.DeliveryAttempt.outcome.is_(None)
                )
            )
            return {(nid, n) for nid, n in rows.all()}

    kills: list[Kill] = []
    started = time.monotonic()
    try:
        control = await provider.post(
            "/_standin/control", json={"delay_ms": STANDIN_DELAY_MS, "callbacks": True}
        )
        control.raise_for_status()
        dispatcher.start()  # migrates the database on start
        notifier.start()
        await _seed(sessions, datetime.now(UTC), MESSAGES, SURVIVORS)

        seen_open: set[tuple[str, int]] = set()
        for number in range(1, KILLS + 1):
            before = len(await at_provider())
            # Kill after a random number of further sends, measured in progress, not time, so
            # a fast or a loaded machine alike leaves texts for every later kill to interrupt.
            share = max(4, (MESSAGES - before) // (KILLS - number + 2))
            target = before + rng.randint(3, share)

            async def sending_again(target: int = target) -> bool:
                return len(await at_provider()) >= target

            await wait_until(sending_again, 60, f"sends again before kill {number}")
            done_before = sum(s in DONE for s in (await statuses()).values())
            accepted_before = len(await at_provider())
            notifier.kill()
            # A request already at the stand-in is still accepted after its sender died.
            await asyncio.sleep(STANDIN_DELAY_MS / 1000 + 0.3)
            cut = await open_attempts() - seen_open
            seen_open |= cut
            accepted_now = {msg["nid"] for msg in await at_provider()}
            kills.append(
                Kill(
                    number,
                    accepted_before,
                    done_before,
                    len(cut),
                    sum(nid in accepted_now for nid, _ in cut),
                )
            )
            assert done_before < MESSAGES, (
                f"kill {number} came after every text was sent: nothing to interrupt "
                f"(seed {seed}, kills {kills})"
            )
            notifier.start()

        async def all_sent() -> bool:
            return sum(s in DONE for s in (await statuses()).values()) >= MESSAGES

        await wait_until(all_sent, 90, f"all {MESSAGES} notifications sent (seed {seed})")
        await asyncio.sleep(STANDIN_DELAY_MS / 1000 + 0.5)  # a late double would show by now
        final = await statuses()
        messages = await at_provider()
        async with sessions() as session:
            rows = await session.execute(select(m.Notification.id, m.Notification.provider_ref))
            refs = {nid: ref for nid, ref in rows.all()}
            resumes = [
                e.notification_id
                for e in await session.scalars(
                    select(m.AuditEntry).where(m.AuditEntry.action == "notification.sending")
                )
                if e.codes.get("resume") is True
            ]
    finally:
        notifier.stop()
        dispatcher.stop()
        await provider.aclose()
        standin.stop()
        await engine.dispose()

    found = log_events(notifier.log, "notification.found_at_provider")
    cut_off = sum(k.cut_off for k in kills)
    accepted = sum(k.cut_off_accepted for k in kills)
    summary = (
        f"seed {seed}, {time.monotonic() - started:.0f}s: {len(kills)} kills cut off {cut_off} "
        f"sends ({accepted} already accepted by the provider, {cut_off - accepted} not); "
        f"{len(resumes)} resumed, {len(found)} of them found at the provider; per kill "
        + ", ".join(
            f"#{k.number} at {k.done_before}/{MESSAGES} sent: {k.cut_off} cut off "
            f"({k.cut_off_accepted} accepted)"
            for k in kills
        )
    )
    print(summary)

    # Every notification sent, none failed, none added (a failure would add an advocate task).
    assert len(final) == MESSAGES, f"{len(final) - MESSAGES} notifications added: {summary}"
    not_sent = {nid: s for nid, s in final.items() if s not in DONE}
    assert not not_sent, f"not sent: {not_sent}; {summary}"

    # Exactly one message at the provider per notification, to its survivor, with its words.
    per_notification = Counter(msg["nid"] for msg in messages)
    doubled = {nid: n for nid, n in per_notification.items() if n > 1}
    missing = sorted(set(final) - set(per_notification))
    strangers = sorted(set(per_notification) - set(final))
    assert not doubled, f"texted more than once: {doubled}; {summary}"
    assert not missing, (
        f"{len(missing)} never reached the provider, though recorded sent: {missing}; {summary}"
    )
    assert not strangers, f"messages for unknown notifications: {strangers}; {summary}"
    assert len(messages) == MESSAGES
    # Each notification records the provider's id of its own message, not another's.
    sid_of = {msg["nid"]: msg["sid"] for msg in messages}
    wrong_ref = {nid: (ref, sid_of[nid]) for nid, ref in refs.items() if ref != sid_of[nid]}
    assert not wrong_ref, f"provider_ref is another message's: {wrong_ref}; {summary}"
    per_number = Counter(msg["to"] for msg in messages)
    assert set(per_number.values()) == {PER_SURVIVOR}, per_number

    # Not vacuous: kills cut sends off, and the restarted notifier resumed them.
    assert len(kills) == KILLS
    assert sum(k.cut_off for k in kills) > 0, f"no kill cut a send off: {summary}"
    assert resumes, f"no cut-off send was resumed: {summary}"
