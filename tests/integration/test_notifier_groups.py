"""The notifier claims several notifications in one transaction as it would claim them one at a
time, on SQLite and PostgreSQL: the same words to the same addresses, the same statuses, and one
task for the advocate where one is owed (here: a survivor whose language has no templates).

And it never has two unresolved texts to one person at once: a send cut off by a crash is
found at the provider by number and words, which is only unambiguous while it is the only one
(tested through the real `twilio` client against the stand-in).

Events are recorded and decided the real way and released by the dispatcher, with no broker.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select

from services.core.clock import FixedClock
from services.core.db import models as m
from services.core.runtime import Runtime
from services.ingest.recording import record_event
from services.notifier.channels import channels_from_settings
from services.notifier.delivery import (
    NOT_YET,
    Claim,
    claim,
    claim_many,
    claim_runs,
    hand_over,
    hand_over_run,
    record_and_claim,
    record_many,
    takes_run,
)
from services.notifier.twilio_standin import running_standin
from services.rules.consumer import RulesConsumer
from services.rules.dispatcher import release_due
from services.rules.engine import Engine
from services.rules.ruleset import load_rules
from tests.e2e.notifier_harness import notification_id
from tests.integration.runtimes import migrated_runtime
from tests.integration.test_pipeline import add_team

SID = "AC" + "2" * 32
TOKEN = "test-auth-token"

T0 = datetime(2026, 11, 18, 11, 0, tzinfo=UTC)  # Wednesday, inside every default safe window


class ListBroker:
    async def publish(self, message: bytes, topic: str, **_: Any) -> None:
        return None


@pytest.fixture
async def rt(make_settings: Any, database_url: str) -> AsyncIterator[Runtime]:
    async with runtime_for(make_settings(database_url=database_url)) as runtime:
        yield runtime


@contextlib.asynccontextmanager
async def runtime_for(settings: Any, clock: FixedClock | None = None) -> AsyncIterator[Runtime]:
    async with migrated_runtime(settings, clock or FixedClock(T0), ListBroker()) as runtime:
        await _seed_cases(runtime)
        yield runtime


async def _seed_cases(runtime: Runtime) -> None:
    async with runtime.sessions.begin() as session:
        _supervisor, isva = await add_team(session, T0)
        # Two survivors read Polish (no templates yet: English, and a task for their ISVA).
        cases = [("01AB2000124", "pl"), ("01AB2000224", "pl")]
        cases += [(f"01AB2000{n}24", "en") for n in range(3, 9)]
        for urn, language in cases:
            case = m.Case(urn=urn, opened_at=T0)
            survivor = m.Survivor(full_name="Ola Example", preferred_name="Ola", created_at=T0)
            session.add_all([case, survivor])
            await session.flush()
            session.add_all(
                [
                    m.CaseSurvivor(case_id=case.id, survivor_id=survivor.id, added_at=T0),
                    m.AdvocateAssignment(
                        survivor_id=survivor.id, advocate_id=isva, valid_from=T0 - timedelta(1)
                    ),
                    m.ContactPreference(
                        survivor_id=survivor.id,
                        version=1,
                        recorded_at=T0,
                        recorded_by=f"advocate:{isva}",
                        reason_code="agreed_with_survivor",
                        phone="+447700900321",
                        sms_safe=True,
                        language=language,
                    ),
                ]
            )


async def queued_for(
    rt: Runtime,
    urn: str,
    prefix: str,
    types: tuple[str, ...] = ("police.suspect_arrested", "police.suspect_interviewed"),
) -> list[str]:
    """An update for the case's survivor per type, decided and released: the ids of what they
    and their ISVA are owed, in order."""
    consumer = RulesConsumer(rt, Engine(load_rules(), rt.calendar))
    async with rt.sessions.begin() as session:
        ids = []
        for n, etype in enumerate(types):
            obj = {
                "specversion": "1.0",
                "id": f"{prefix}{n}",
                "source": "police/01",
                "type": etype,
                "subject": urn,
                "time": (T0 - timedelta(minutes=30)).isoformat().replace("+00:00", "Z"),
                "data": {},
            }
            outcome = await record_event(
                session,
                obj,
                json.dumps(obj).encode(),
                now=T0,
                way_in="http",
                max_skew=timedelta(minutes=5),
            )
            assert outcome.case_event_id is not None
            ids.append(outcome.case_event_id)
        await consumer.process(session, ids, T0)
    await release_due(rt)
    async with rt.sessions() as session:
        return list(
            (
                await session.scalars(
                    select(m.Notification.id)
                    .join(m.Case, m.Case.id == m.Notification.case_id)
                    .where(m.Case.urn == urn, m.Notification.status == "queued")
                    .order_by(m.Notification.event_id, m.Notification.rule)
                )
            ).all()
        )


def words(claimed: object, urn: str) -> tuple[Any, ...]:
    assert isinstance(claimed, Claim), claimed
    msg = claimed.message
    subject, body = (msg.subject or "").replace(urn, "URN"), msg.body.replace(urn, "URN")
    return (msg.recipient_role, msg.channel, msg.to, msg.template, subject, body)


async def test_a_group_is_claimed_as_one_notification_at_a_time(rt: Runtime) -> None:
    channels = channels_from_settings(rt.settings, rt.sessions)
    alone_ids = await queued_for(rt, "01AB2000124", "a-")
    together_ids = await queued_for(rt, "01AB2000224", "b-")
    assert len(alone_ids) == len(together_ids) == 4  # two texts, two e-mails to the ISVA
    alone = [words(await claim(rt, channels, nid), "01AB2000124") for nid in alone_ids]
    claims = await claim_many(rt, channels, together_ids)
    together = [words(claims[nid], "01AB2000224") for nid in together_ids]
    assert together == alone
    # The Polish-speaking survivor's advocate is told once per survivor, in the group too.
    async with rt.sessions() as session:
        tasks = dict(
            (
                await session.execute(
                    select(m.Notification.case_id, func.count())
                    .where(m.Notification.rule.like("%preference_not_met"))
                    .group_by(m.Notification.case_id)
                )
            ).all()
        )
    assert sorted(tasks.values()) == [1, 1]
    # And the group's sends are recorded together: all delivered (the outbox channel).
    sent = [(c, await hand_over(rt, channels, c)) for c in claims.values() if isinstance(c, Claim)]
    assert await record_many(rt, sent) == ["delivered"] * 4
    # A redelivered group is a no-op: nothing is claimed twice.
    assert set((await claim_many(rt, channels, together_ids)).values()) == {None}


async def put_off_because(rt: Runtime, nid: str) -> list[str]:
    """Why the notification was put off, each time (its audit trail); it is scheduled now."""
    async with rt.sessions() as session:
        row = await session.get_one(m.Notification, nid)
        assert row.status == "scheduled"
        return [
            entry.codes.get("reason")
            for entry in await session.scalars(
                select(m.AuditEntry)
                .where(
                    m.AuditEntry.notification_id == nid,
                    m.AuditEntry.action == "notification.put_off",
                )
                .order_by(m.AuditEntry.seq)
            )
        ]


@pytest.mark.postgres
async def test_a_resumed_text_never_takes_the_next_ones_message(
    make_settings: Any, pg_url: str
) -> None:
    """Two texts with the same words to one survivor. The first is cut off before it reached
    Twilio (the notifier died); had the second gone meanwhile and been cut off after, the first,
    resumed, would have found the second's message at Twilio and taken it for its own, and the
    second, resumed, would have been sent again: one text twice, the other never. The second
    waits instead, and each goes exactly once."""
    async with twilio_runtime(make_settings, pg_url) as (rt, channels, standin):
        clock = rt.clock
        assert isinstance(clock, FixedClock)
        ids = await queued_for(rt, "01AB2000124", "s-", ("police.suspect_arrested",) * 2)
        first, second = [nid for nid in ids if await channel_of(rt, nid) == "sms"]
        cut_off = await claim(rt, channels, first)  # and the notifier dies here
        assert isinstance(cut_off, Claim)
        assert await claim(rt, channels, second) is None
        assert await put_off_because(rt, second) == ["earlier_message_unresolved"]

        clock.advance(timedelta(seconds=rt.settings.redrive_after_s + 1))
        resumed = await claim(rt, channels, first)
        assert isinstance(resumed, Claim) and resumed.resume
        assert resumed.message.body == cut_off.message.body
        outcome = await hand_over(rt, channels, resumed)
        assert await record_many(rt, [(resumed, outcome)]) == ["sent"]
        assert await release_due(rt) >= 1  # and the task for their advocate
        later = await claim(rt, channels, second)
        assert isinstance(later, Claim)
        assert later.message.body == resumed.message.body  # the same words
        outcome = await hand_over(rt, channels, later)
        assert await record_many(rt, [(later, outcome)]) == ["sent"]
        at_twilio = {
            message.sid: notification_id(message.status_callback)
            for message in standin.messages.values()
        }
        assert sorted(at_twilio.values()) == sorted([first, second])
        async with rt.sessions() as session:
            for nid in (first, second):
                row = await session.get_one(m.Notification, nid)
                assert at_twilio[row.provider_ref] == nid


def texting_settings(
    make_settings: Any, database_url: str, twilio_base_url: str, **more: Any
) -> Any:
    """Settings that text the survivor of these cases through Twilio at `twilio_base_url` (the
    ISVA is e-mailed through the outbox); receipts go nowhere, as no test here needs them."""
    return make_settings(
        database_url=database_url,
        env="test",
        sms_channel="twilio",
        twilio_account_sid=SID,
        twilio_auth_token=TOKEN,
        twilio_from="+447700900001",
        twilio_base_url=twilio_base_url,
        public_base_url="http://127.0.0.1:9",
        sms_allowlist="+447700900321",
        **more,
    )


@contextlib.asynccontextmanager
async def twilio_runtime(
    make_settings: Any, pg_url: str
) -> AsyncIterator[tuple[Runtime, dict[str, Any], Any]]:
    """A runtime whose survivors are texted through the real `twilio` client and the stand-in
    (the ISVA is e-mailed through the outbox), its channels, and the stand-in."""
    clock = FixedClock(T0)
    async with running_standin(account_sid=SID, auth_token=TOKEN, clock=clock) as standin:
        settings = texting_settings(make_settings, pg_url, standin.base_url)
        async with runtime_for(settings, clock) as rt:
            channels = channels_from_settings(rt.settings, rt.sessions)
            try:
                yield rt, channels, standin
            finally:
                for channel in channels.values():
                    await channel.close()


async def channel_of(rt: Runtime, nid: str) -> str | None:
    async with rt.sessions() as session:
        return (await session.get_one(m.Notification, nid)).channel


async def test_a_send_is_recorded_and_the_next_claimed_in_one_step(rt: Runtime) -> None:
    """The notifier's steps: each records a recipient's last send and claims their next
    message; a step whose record fails claims nothing (its next message stays queued), and the
    other steps of the round are unharmed."""
    channels = channels_from_settings(rt.settings, rt.sessions)
    ids = await queued_for(rt, "01AB2000124", "a-")
    async with rt.sessions() as session:
        rows = [await session.get_one(m.Notification, nid) for nid in ids]
    queues: dict[str, list[str]] = {}
    for row in rows:
        queues.setdefault(row.recipient_role, []).append(row.id)
    assert [len(q) for q in queues.values()] == [2, 2]  # the ISVA's e-mails, the survivor's texts
    (first_a, next_a), (first_b, next_b) = queues.values()

    claims = [
        claimed
        for answer in await record_and_claim(rt, channels, [([], [first_a]), ([], [first_b])])
        for claimed in answer
    ]
    assert all(isinstance(c, Claim) for c in claims)
    sent = [(c, await hand_over(rt, channels, c)) for c in claims if isinstance(c, Claim)]
    # The record of the first queue's send is broken (its notification does not exist).
    broken = dataclasses.replace(
        sent[0][0],
        message=dataclasses.replace(sent[0][0].message, notification_id=str(uuid.uuid4())),
    )
    answers = await record_and_claim(
        rt, channels, [([(broken, sent[0][1])], [next_a]), ([sent[1]], [next_b])]
    )
    assert isinstance(answers[0], Exception)
    assert not isinstance(answers[1], Exception)
    [last] = answers[1]
    assert isinstance(last, Claim) and last.message.notification_id == next_b
    async with rt.sessions() as session:
        status = {
            row.id: row.status
            for row in await session.scalars(
                select(m.Notification).where(m.Notification.id.in_(ids))
            )
        }
    assert status == {
        first_a: "sending",  # its record failed: the re-drive settles it
        next_a: "queued",  # so the next was not claimed
        first_b: "delivered",
        next_b: "sending",
    }
    done = await record_and_claim(
        rt, channels, [([(last, await hand_over(rt, channels, last))], [])]
    )
    assert done == [[]]
    async with rt.sessions() as session:
        assert (await session.get_one(m.Notification, next_b)).status == "delivered"


async def test_a_bigger_group_costs_no_more_statements(rt: Runtime) -> None:
    """A group is claimed in a number of statements that does not grow with its size: what the
    messages need (cases, events, people, preferences, the survivors' own messages and the
    Code's letters) is read once for the group, and its writes go in a flush per layer."""
    channels = channels_from_settings(rt.settings, rt.sessions)
    small = await queued_for(rt, "01AB2000324", "a-")  # 4: two texts, two e-mails to the ISVA
    large = [nid for n in range(4, 9) for nid in await queued_for(rt, f"01AB2000{n}24", f"{n}-")]
    assert len(large) == 20

    async def statements(ids: list[str]) -> Counter[str]:
        counted: list[str] = []

        def count(*args: Any) -> None:
            counted.append(args[2].lstrip().split(None, 1)[0].upper())

        event.listen(rt.engine.sync_engine, "before_cursor_execute", count)
        try:
            claims = await claim_many(rt, channels, ids)
        finally:
            event.remove(rt.engine.sync_engine, "before_cursor_execute", count)
        assert all(isinstance(c, Claim) for c in claims.values())
        return Counter(counted)

    of_large, of_small = await statements(large), await statements(small)
    # The rows locked with their cases, events and people; the unresolved texts; what the
    # advocates' words need (two); the survivors' preferences.
    assert of_small["SELECT"] == 5, of_small
    assert of_large["SELECT"] == of_small["SELECT"], (of_large, of_small)
    if not rt.settings.is_sqlite:
        # SQLite inserts a row at a time where it must return the new ids.
        assert of_large == of_small, (of_large, of_small)


def by_recipient(rows: list[m.Notification]) -> dict[str, list[str]]:
    queues: dict[str, list[str]] = {}
    for row in rows:
        queues.setdefault(row.recipient_role, []).append(row.id)
    return queues


async def rows_of(rt: Runtime, ids: list[str]) -> list[m.Notification]:
    async with rt.sessions() as session:
        return [await session.get_one(m.Notification, nid) for nid in ids]


async def test_a_run_on_the_outbox_is_claimed_in_one_step_and_survives_a_crash(
    rt: Runtime,
) -> None:
    """On a channel that finds a message by our id, a recipient's next messages are claimed
    together (one transaction for the run, not one each). A crash part-way through the run
    leaves several of theirs `sending`; each, resumed, is found at the channel by its own id or
    sent: every message exactly once."""
    channels = channels_from_settings(rt.settings, rt.sessions)
    types = ("police.suspect_arrested", "police.suspect_interviewed") * 2
    ids = await queued_for(rt, "01AB2000324", "r-", types)
    queues = by_recipient(await rows_of(rt, ids))
    isva, texts = queues["advocate"], queues["survivor"]
    assert len(isva) == 4 and len(texts) >= 2

    [run, more] = await record_and_claim(rt, channels, [([], isva[:3]), ([], texts)])
    assert not isinstance(run, Exception) and not isinstance(more, Exception)
    assert [c.message.notification_id for c in run if isinstance(c, Claim)] == isva[:3]
    assert all(isinstance(c, Claim) for c in more)  # the outbox texts too
    assert {row.status for row in await rows_of(rt, isva[:3])} == {"sending"}

    first = run[0]
    assert isinstance(first, Claim)
    await hand_over(rt, channels, first)  # and the notifier dies before the others go

    rt.clock.advance(timedelta(seconds=rt.settings.redrive_after_s + 1))  # type: ignore[attr-defined]
    resumed = await claim_runs(rt, channels, [isva])  # the re-drive, with the fourth
    assert [c.resume for c in resumed.values() if isinstance(c, Claim)] == [True] * 3 + [False]
    sent = [(c, await hand_over(rt, channels, c)) for c in resumed.values() if isinstance(c, Claim)]
    assert await record_many(rt, sent) == ["delivered"] * 4
    journal = (rt.settings.resolved_outbox_dir / "journal.log").read_text().split()[::2]
    assert sorted(nid for nid in journal if nid in isva) == sorted(isva)  # each once
    first_row = (await rows_of(rt, [first.message.notification_id]))[0]
    assert first_row.provider_ref == f"outbox:{first_row.id}"


async def test_a_fresh_run_on_the_outbox_is_handed_over_in_one_go_in_order(rt: Runtime) -> None:
    """A run of fresh claims on the outbox goes to the channel in one go (`takes_run`), in
    order; a run with a resumed message in it goes one message at a time, as before."""
    channels = channels_from_settings(rt.settings, rt.sessions)
    types = ("police.suspect_arrested", "police.suspect_interviewed") * 2
    ids = await queued_for(rt, "01AB2000424", "g-", types)
    isva = by_recipient(await rows_of(rt, ids))["advocate"]
    claimed = await claim_runs(rt, channels, [isva])
    run = [c for c in claimed.values() if isinstance(c, Claim)]
    assert [c.message.notification_id for c in run] == isva
    assert takes_run(channels, run)

    outcomes = await hand_over_run(rt, channels, run)
    assert [o.result.provider_ref for o in outcomes if o.result] == [f"outbox:{n}" for n in isva]
    assert await record_many(rt, list(zip(run, outcomes, strict=True))) == ["delivered"] * 4
    journal = (rt.settings.resolved_outbox_dir / "journal.log").read_text().split()[::2]
    assert [nid for nid in journal if nid in isva] == isva  # in order, each once

    resumed = dataclasses.replace(run[0], resume=True)
    assert not takes_run(channels, [resumed, *run[1:]])  # looked up first, on its own
    assert not takes_run(channels, [])


@pytest.mark.postgres
async def test_a_run_ends_at_a_text_through_twilio(make_settings: Any, pg_url: str) -> None:
    """Twilio finds a message by number and words: a survivor's texts are claimed one at a
    time, and the ones after are left for the next step (not put off), while their ISVA's
    e-mails through the outbox are claimed together."""
    async with twilio_runtime(make_settings, pg_url) as (rt, channels, _standin):
        types = ("police.suspect_arrested", "police.suspect_interviewed")
        ids = await queued_for(rt, "01AB2000124", "t-", types)
        queues = by_recipient(await rows_of(rt, ids))
        texts, isva = queues["survivor"], queues["advocate"]
        assert len(texts) == len(isva) == 2
        assert {row.channel for row in await rows_of(rt, texts)} == {"sms"}

        [for_survivor, for_isva] = await record_and_claim(rt, channels, [([], texts), ([], isva)])
        assert not isinstance(for_survivor, Exception) and not isinstance(for_isva, Exception)
        assert isinstance(for_survivor[0], Claim) and for_survivor[1] is NOT_YET
        assert all(isinstance(c, Claim) for c in for_isva)
        assert [row.status for row in await rows_of(rt, texts)] == ["sending", "queued"]
