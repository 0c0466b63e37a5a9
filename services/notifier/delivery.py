"""Delivering one notification: claim, render, hand to the channel, record, announce.

Two short transactions around the channel call: no database transaction is held open while a
provider works, so a slow provider cannot exhaust our connections. A row moves only forward
under a row lock; a redelivered `notifications.due` record for a notification already sent is
a no-op, and one left `sending` by a crash is first looked up at the channel, never resent
blindly.
"""

from __future__ import annotations

import json
import random
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Select, Table, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.util import identity_key
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from services.core import audit, metrics
from services.core.db import models as m
from services.core.db.queries import current_preferences
from services.core.kafka import publish_all
from services.core.logs import get_logger
from services.core.message_variables import (
    Undeliverable,
    address_and_variables,
    read_ahead_for_advocates,
)
from services.core.notifications import move
from services.core.rendering import TemplateError, render
from services.core.runtime import Runtime
from services.core.settings import Settings
from services.core.states import Status, check_transition
from services.core.topics import NOTIFICATIONS_STATUS
from services.notifier.channels.base import (
    AmbiguousFailure,
    ChannelFailure,
    DeliveryChannel,
    OutgoingMessage,
    PermanentFailure,
    SendResult,
    TemporaryFailure,
)
from services.notifier.fallback import fall_back, preference_not_met
from services.notifier.last_look import (
    hand_to_advocate,
    no_longer_wanted,
    put_off_until,
)
from services.notifier.rate_limit import SendRateLimiter

ACTOR = "notifier"
log = get_logger(ACTOR)


@dataclass(frozen=True)
class Claim:
    message: OutgoingMessage
    attempt_no: int
    # A previous attempt was cut off (a crash): ask the provider about it, from `since`, before
    # sending again.
    resume: bool
    since: datetime
    first_attempt_at: datetime
    # An earlier attempt failed in a way that may still have reached the provider (a timeout):
    # ask it first, from `since`, on a channel that can be asked.
    ask_first: bool = False


@dataclass(frozen=True)
class Outcome:
    result: SendResult | None = None
    failure: ChannelFailure | None = None
    # The provider could not be asked about a cut-off attempt: try again later, never blindly.
    lookup_failed: bool = False


async def _last_attempt(session: AsyncSession, row: m.Notification) -> m.DeliveryAttempt | None:
    return await session.scalar(
        select(m.DeliveryAttempt)
        .where(m.DeliveryAttempt.notification_id == row.id)
        .order_by(m.DeliveryAttempt.attempt_no.desc())
        .limit(1)
    )


async def _first_attempt_at(session: AsyncSession, row: m.Notification) -> datetime | None:
    return await session.scalar(
        select(func.min(m.DeliveryAttempt.started_at)).where(
            m.DeliveryAttempt.notification_id == row.id
        )
    )


async def claim(
    rt: Runtime, channels: dict[str, DeliveryChannel], notification_id: str
) -> Claim | None:
    """Move a queued notification to `sending` and render it; None if there is nothing to do.

    A notification left `sending` by an attempt that was cut off (a crash) is resumed with the
    words that attempt recorded, so the provider can be asked about exactly that message; an
    attempt still within `CAREHUB_REDRIVE_AFTER_S` may be in flight elsewhere and is left alone.
    """
    now = rt.clock.now()
    async with rt.sessions.begin() as session:
        row = await session.get(m.Notification, notification_id, with_for_update=True)
        if row is not None:
            await _read_unresolved(session, channels, [row])
        return await _claim_row(session, rt, channels, notification_id, row, now)


async def claim_many(
    rt: Runtime, channels: dict[str, DeliveryChannel], notification_ids: list[str]
) -> dict[str, Claim | None | Exception | NotYet]:
    """`claim` for several notifications in one transaction: each row is claimed exactly as on
    its own, but their rows, cases, events and people are read in a handful of queries and
    their writes go in a flush or two and one commit."""
    return await claim_runs(rt, channels, [[nid] for nid in notification_ids])


async def claim_runs(
    rt: Runtime, channels: dict[str, DeliveryChannel], runs: list[list[str]]
) -> dict[str, Claim | None | Exception | NotYet]:
    """Claim the next messages of several recipients' queues in one transaction, a run of
    each recipient's in order (`_run`: several only where their channel finds a message by
    our id); a message left out of its run is answered `NOT_YET`.

    If claiming any of them raises, nothing of the group is kept and the first of each run is
    claimed again on its own (the rest `NOT_YET`), so only the one at fault gets its error (as
    its value in the answer).
    """
    now = rt.clock.now()
    ids = [nid for run in runs for nid in run]
    try:
        async with rt.sessions.begin() as session:
            rows = await _lock(session, ids, related=ids)
            return await _claim_runs_in(session, rt, channels, runs, rows, now)
    except Exception:  # noqa: BLE001 - find the one at fault: each on its own
        if len(ids) == 1:
            raise
    alone: dict[str, Claim | None | Exception | NotYet] = {}
    for run in runs:
        for nid in run[1:]:
            alone[nid] = NOT_YET
        try:
            alone[run[0]] = await claim(rt, channels, run[0])
        except Exception as exc:  # noqa: BLE001 - handed to the caller that asked for it
            alone[run[0]] = exc
    return alone


@dataclass(frozen=True)
class NotYet:
    """The answer for a message its step did not claim: it waits for the next step, behind
    the one before it that went through a channel where one message at a time is unresolved."""


NOT_YET = NotYet()


def several_at_once(channel: DeliveryChannel | None) -> bool:
    """Whether several of one recipient's messages may be unresolved (`sending`) at once on
    this channel: it finds a message cut off by a crash by our notification id (the outbox,
    letters). Not Twilio, which finds it by number and words (`_earlier_unresolved`), nor SMTP,
    which cannot be asked at all: a crash would leave every one of them `unknown`."""
    return channel is not None and channel.verifiable and not channel.finds_by_words


def _run(
    ids: list[str], rows: dict[str, m.Notification], channels: dict[str, DeliveryChannel]
) -> list[str]:
    """The first of one recipient's `ids` (in order), and those after it for as long as each
    goes through a channel where several may be unresolved at once."""
    run: list[str] = []
    for nid in ids:
        row = rows.get(nid)
        several = (
            row is None
            or row.status not in (Status.QUEUED, Status.SENDING)  # skipped, whatever its channel
            or several_at_once(channels.get(row.channel or ""))
        )
        if run and not several:
            break
        run.append(nid)
        if not several:
            break
    return run


async def _claim_runs_in(
    session: AsyncSession,
    rt: Runtime,
    channels: dict[str, DeliveryChannel],
    runs: list[list[str]],
    rows: dict[str, m.Notification],
    now: datetime,
) -> dict[str, Claim | None | Exception | NotYet]:
    """Claim each run's `_run` (their `rows` locked) in this transaction; the rest `NOT_YET`."""
    cut = [_run(ids, rows, channels) for ids in runs]
    claims: dict[str, Claim | None | Exception | NotYet] = dict(
        await _claim_in(session, rt, channels, [nid for run in cut for nid in run], rows, now)
    )
    for ids, run in zip(runs, cut, strict=True):
        for nid in ids[len(run) :]:
            claims[nid] = NOT_YET
    return claims


async def _claim_in(
    session: AsyncSession,
    rt: Runtime,
    channels: dict[str, DeliveryChannel],
    ids: list[str],
    rows: dict[str, m.Notification],
    now: datetime,
) -> dict[str, Claim | None | Exception]:
    """Claim `ids` (their `rows` locked) in this transaction."""
    held = await _read_ahead(session, channels, [rows[nid] for nid in ids if nid in rows], now)
    claims: dict[str, Claim | None | Exception] = {}
    for layer in _layers(ids, rows):
        # Within a layer no two rows are about one survivor, and a claim only reads what it
        # writes about its own survivor (their messages, tasks and letters): so nothing need be
        # flushed between them, and the layer's writes go together.
        with session.no_autoflush:
            for nid in layer:
                claims[nid] = await _claim_row(session, rt, channels, nid, rows.get(nid), now)
        await session.flush()
    del held
    return claims


RELATED = "carehub.related"  # what `_lock` read with the rows, held for the session


async def _lock(
    session: AsyncSession, ids: list[str], *, related: Collection[str] | None = None
) -> dict[str, m.Notification]:
    """These notifications, each row locked for this transaction (those that exist).

    For those among `related` (the ones to claim), their cases, events, survivors and advocates
    come in the same query (only the notifications are locked), so that `session.get` finds
    them and `_read_ahead` need not ask: one round trip a step instead of five. A row only
    being recorded reads none of them: each would be decoded again on every row it joins."""
    query: Select[Any] = select(m.Notification)
    if related:
        claiming = m.Notification.id.in_(sorted(set(related)))
        query = (
            query.add_columns(m.Case, m.CaseEvent, m.Survivor, m.Advocate)
            .outerjoin(m.Case, claiming & (m.Case.id == m.Notification.case_id))
            .outerjoin(m.CaseEvent, claiming & (m.CaseEvent.id == m.Notification.case_event_id))
            .outerjoin(m.Survivor, claiming & (m.Survivor.id == m.Notification.survivor_id))
            .outerjoin(m.Advocate, claiming & (m.Advocate.id == m.Notification.advocate_id))
        )
    found = await session.execute(
        query.where(m.Notification.id.in_(ids))
        .order_by(m.Notification.id)  # locks taken in one order: no deadlock
        .with_for_update(of=m.Notification)
    )
    rows: dict[str, m.Notification] = {}
    held: list[Any] = session.info.setdefault(RELATED, [])
    for row, *others in found:
        rows[row.id] = row
        held += [obj for obj in others if obj is not None]
    return rows


def _layers(ids: list[str], rows: dict[str, m.Notification]) -> list[list[str]]:
    """`ids` in order, split so that each survivor has at most one notification per layer (the
    first of each survivor's in the first layer, the second in the second...)."""
    layers: list[list[str]] = []
    seen: dict[int, int] = {}
    for nid in ids:
        row = rows.get(nid)
        survivor = row.survivor_id if row is not None else None
        depth = 0
        if survivor is not None:
            depth = seen.get(survivor, 0)
            seen[survivor] = depth + 1
        if depth == len(layers):
            layers.append([])
        layers[depth].append(nid)
    return layers


async def _read_ahead(
    session: AsyncSession,
    channels: dict[str, DeliveryChannel],
    rows: list[m.Notification],
    now: datetime,
) -> list[Any]:
    """Load the cases, events, survivors and advocates the claims will ask for by id, in one
    query each: `session.get` then finds them in the session instead of asking one by one
    (while the caller holds the returned list: the session only keeps weak references). And
    what their words need about the survivors (`read_ahead_for_advocates`), their current
    preferences and which recipients have a text unresolved, in one query each for the group."""
    loaded: list[Any] = []
    wanted: list[tuple[Any, set[Any]]] = [
        (m.Case, {r.case_id for r in rows}),
        (m.CaseEvent, {r.case_event_id for r in rows}),
        (m.Survivor, {r.survivor_id for r in rows if r.survivor_id is not None}),
        (m.Advocate, {r.advocate_id for r in rows if r.advocate_id is not None}),
    ]
    for model, ids in wanted:
        # Those `_lock` read with the rows are in the session already.
        ids = {i for i in ids if session.identity_map.get(identity_key(model, i)) is None}
        if ids:
            loaded += (await session.scalars(select(model).where(model.id.in_(sorted(ids))))).all()
    await _read_unresolved(session, channels, rows)
    await read_ahead_for_advocates(session, rows, now)
    # The survivors' current preferences, into the memo `preference_of` keeps per session.
    survivors = sorted({r.survivor_id for r in rows if r.survivor_id is not None})
    if survivors:
        memo = session.info.setdefault("carehub.prefs", {})
        found = await current_preferences(session, survivors)
        for survivor_id in survivors:
            memo.setdefault(survivor_id, found.get(survivor_id))
    return loaded


def _recipient(row: m.Notification) -> tuple[str, int | None, str | None]:
    who = row.survivor_id if row.recipient_role == "survivor" else row.advocate_id
    return row.recipient_role, who, row.channel


UNRESOLVED = "carehub.unresolved"


async def _read_unresolved(
    session: AsyncSession, channels: dict[str, DeliveryChannel], rows: list[m.Notification]
) -> None:
    """Note in the session which of these rows' recipients have a send still unresolved (a
    notification left `sending`, other than these rows) on a channel that finds messages by
    words, for `_earlier_unresolved`; the rows themselves are watched as they are claimed."""
    wordy = {name for name, channel in channels.items() if channel.finds_by_words}
    asking = [r for r in rows if r.channel in wordy]
    survivors = {r.survivor_id for r in asking if r.recipient_role == "survivor" and r.survivor_id}
    advocates = {r.advocate_id for r in asking if r.recipient_role != "survivor" and r.advocate_id}
    people = []
    if survivors:
        people.append(
            (m.Notification.recipient_role == "survivor")
            & m.Notification.survivor_id.in_(sorted(survivors))
        )
    if advocates:
        people.append(
            (m.Notification.recipient_role != "survivor")
            & m.Notification.advocate_id.in_(sorted(advocates))
        )
    found: dict[tuple[str, int | None, str | None], _Unresolved] = {}
    if people:
        others = await session.execute(
            select(
                m.Notification.recipient_role,
                m.Notification.survivor_id,
                m.Notification.advocate_id,
                m.Notification.channel,
                m.Notification.status_reason,
                m.Notification.send_at,
            ).where(
                m.Notification.status == Status.SENDING,
                m.Notification.channel.in_(sorted(wordy)),
                m.Notification.id.not_in([r.id for r in rows]),
                or_(*people),
            )
        )
        for role, survivor_id, advocate_id, channel, reason, send_at in others:
            key = (role, survivor_id if role == "survivor" else advocate_id, channel)
            found.setdefault(key, []).append((reason, send_at))
    session.info[UNRESOLVED] = (found, {r.id: r for r in rows})


# The earlier unresolved messages of one recipient: (status_reason, send_at) each.
_Unresolved = list[tuple[str | None, datetime | None]]


def _earlier_unresolved(
    session: AsyncSession, settings: Settings, row: m.Notification, now: datetime
) -> datetime | None:
    """If another message to this row's recipient on its channel is still unresolved (it went
    `sending` and nobody knows yet whether the provider has it: a crash cut it off, or the
    provider could not be asked), the time this row is to wait until; else None.

    A resumed send finds its message at the provider by number and words, and the same words
    can go to one person twice; that match is only unambiguous while each recipient has one
    unresolved message per channel at most. So a new one waits until the earlier is settled,
    half a re-drive interval at a time; or, if the provider could not be asked about the
    earlier, until a little after the earlier is next asked (its `send_at`, `_record_row`), so
    that during an outage it waits with the earlier's back-off, not for one re-drive after another.
    """
    found: dict[tuple[str, int | None, str | None], _Unresolved]
    claiming: dict[str, m.Notification]
    found, claiming = session.info.get(UNRESOLVED, ({}, {}))
    margin = timedelta(seconds=max(1.0, settings.redrive_after_s / 2))
    key = _recipient(row)
    if key in found:
        asked_again = [
            send_at
            for reason, send_at in found[key]
            if reason == "lookup_failed" and send_at is not None and send_at > now
        ]
        if not asked_again:
            return now + margin
        # The re-drive takes the earlier within a beat of its `send_at`; then half an interval.
        return max(asked_again) + timedelta(seconds=settings.redrive_beat_s) + margin
    if any(
        other.id != row.id and other.status == Status.SENDING and _recipient(other) == key
        for other in claiming.values()
    ):
        return now + margin
    return None


async def _claim_row(
    session: AsyncSession,
    rt: Runtime,
    channels: dict[str, DeliveryChannel],
    notification_id: str,
    row: m.Notification | None,
    now: datetime,
) -> Claim | None:
    if row is None or row.status not in (Status.QUEUED, Status.SENDING):
        log.info(
            "notification.skipped",
            notification_id=notification_id,
            status=row.status if row else None,
        )
        return None
    case = await session.get_one(m.Case, row.case_id)
    previous = await _last_attempt(session, row) if row.status == Status.SENDING else None
    resume = row.status == Status.SENDING
    if resume and previous is not None:
        if (now - previous.started_at).total_seconds() < rt.settings.redrive_after_s:
            log.info("notification.in_flight", notification_id=row.id)
            return None
        channel = channels.get(row.channel or "")
        if channel is not None and not channel.verifiable:
            # SMTP cannot be asked whether it went: a person finds out, nothing is resent.
            _finish(session, row, Status.UNKNOWN, now, "delivery_unknown")
            await _tell_advocate(session, row, "delivery_unknown", now)
            return None
    if not resume:
        reason = await no_longer_wanted(session, row, now)
        if reason is not None:
            _finish(session, row, Status.SUPPRESSED, now, reason)
            if reason != "frequency_none":
                await hand_to_advocate(session, row, case, reason, now)
            return None
        later = await put_off_until(session, row, now)
        if later is not None:
            _put_off(session, row, later, now, "outside_safe_window")
            return None
        channel = channels.get(row.channel or "")
        unresolved = (
            _earlier_unresolved(session, rt.settings, row, now)
            if channel is not None and channel.finds_by_words
            else None
        )
        if unresolved is not None:
            # Settled by the re-drive, which asks the provider (`_earlier_unresolved`).
            _put_off(session, row, unresolved, now, "earlier_message_unresolved")
            return None
    if previous is not None and previous.body is not None and previous.to_address:
        # The same words to the same address as the attempt that was cut off.
        address, subject, body = previous.to_address, previous.subject, previous.body
        language = previous.language or row.language
        version = previous.template_version or row.template_version
    else:
        try:
            if row.channel is None or row.channel not in channels:
                raise Undeliverable("no_channel")
            event = await session.get_one(m.CaseEvent, row.case_event_id)
            address, variables = await address_and_variables(
                session, row, case, event, now, base_url=rt.settings.public_base_url
            )
            rendered = render(row.template, row.channel, row.language, variables)
        except (Undeliverable, TemplateError) as exc:
            code = exc.code if isinstance(exc, Undeliverable) else "template_error"
            _finish(session, row, Status.FAILED, now, code)
            if row.recipient_role == "survivor":
                # A survivor who could not be reached is never left without a person.
                await hand_to_advocate(session, row, case, code, now)
            return None
        subject, body = rendered.subject, rendered.body
        language, version = rendered.language, rendered.template_version
        if row.recipient_role == "survivor" and language != row.language:
            # Their language has no templates yet: English goes, and a person is told.
            await preference_not_met(session, row, case, f"language_{row.language}", now)
    assert row.channel is not None
    first = (await _first_attempt_at(session, row) if row.attempts else None) or now
    row.status = check_transition(row.status, Status.SENDING)
    if row.status_reason == "lookup_failed":
        # Asked again now; should this be cut off too, the re-drive must not wait for `send_at`.
        row.status_reason = None
    row.attempts += 1
    row.updated_at = now
    session.add(
        m.DeliveryAttempt(
            notification_id=row.id,
            attempt_no=row.attempts,
            channel=row.channel,
            started_at=now,
            to_address=address,
            subject=subject,
            body=body,
            language=language,
            template_version=version,
        )
    )
    audit.record(
        session,
        at=now,
        actor=ACTOR,
        action="notification.sending",
        case_id=row.case_id,
        notification_id=row.id,
        attempt=row.attempts,
        resume=resume,
    )
    message = OutgoingMessage(
        notification_id=row.id,
        event_id=row.event_id,
        case_urn=case.urn,
        recipient_role=row.recipient_role,
        channel=row.channel,
        to=address,
        language=language,
        template=row.template,
        template_version=version,
        subject=subject,
        body=body,
        send_at=row.send_at,
        due_by=row.due_by,
    )
    since = previous.started_at if (resume and previous is not None) else now
    channel = channels.get(row.channel)
    # A durable retry asks first too: the attempt before may have timed out after the
    # provider took the message.
    ask_first = not resume and row.attempts > 1 and channel is not None and channel.verifiable
    if ask_first:
        since = first
    return Claim(message, row.attempts, resume, since, first, ask_first)


def _put_off(
    session: AsyncSession, row: m.Notification, until: datetime, now: datetime, reason: str
) -> None:
    """Back to `scheduled`, to be queued again at `until`."""
    row.status = check_transition(row.status, Status.SCHEDULED)
    row.send_at, row.updated_at = until, now
    audit.record(
        session,
        at=now,
        actor=ACTOR,
        action="notification.put_off",
        case_id=row.case_id,
        notification_id=row.id,
        reason=reason,
    )
    log.info("notification.put_off", notification_id=row.id, until=until.isoformat(), reason=reason)


def _finish(
    session: AsyncSession, row: m.Notification, status: Status, now: datetime, reason: str | None
) -> None:
    move(session, row, status, now=now, actor=ACTOR, reason=reason)
    metrics.NOTIFICATIONS.labels(status.value).inc()
    log.info(f"notification.{status.value}", notification_id=row.id, reason=reason)


def _sender(channel: DeliveryChannel) -> str | None:
    sender = getattr(channel, "sender_key", None)
    return sender if isinstance(sender, str) else None


async def _ours(
    rt: Runtime, msg: OutgoingMessage, candidates: list[SendResult]
) -> SendResult | None:
    """Which of the provider's matching messages is this notification's, if any.

    The same words can go to the same person twice (two updates a minute apart), so a message
    another notification already recorded as its own is never taken for this one; and while
    this one is unresolved no other message goes to them on this channel
    (`_earlier_unresolved`), so a match nobody recorded can only be this one's.
    """
    if not candidates:
        return None
    refs = [c.provider_ref for c in candidates]
    async with rt.sessions() as session:
        taken = set(
            (
                await session.scalars(
                    select(m.DeliveryAttempt.provider_ref).where(
                        m.DeliveryAttempt.provider_ref.in_(refs),
                        m.DeliveryAttempt.notification_id != msg.notification_id,
                    )
                )
            ).all()
        )
        taken |= set(
            (
                await session.scalars(
                    select(m.Notification.provider_ref).where(
                        m.Notification.provider_ref.in_(refs),
                        m.Notification.id != msg.notification_id,
                    )
                )
            ).all()
        )
    return next((c for c in candidates if c.provider_ref not in taken), None)


async def _send_with_retries(
    rt: Runtime,
    channel: DeliveryChannel,
    claimed: Claim,
    limiter: SendRateLimiter | None,
) -> Outcome:
    """Look up a cut-off attempt, then send, retrying quick transient failures in place."""
    msg = claimed.message
    if claimed.resume or claimed.ask_first:
        try:
            found = await _ours(rt, msg, await channel.lookup(msg, claimed.since))
        except ChannelFailure:
            return Outcome(lookup_failed=True)
        if found is not None:
            log.info("notification.found_at_provider", notification_id=msg.notification_id)
            return Outcome(result=found)
    sender = _sender(channel)
    retrying = AsyncRetrying(
        stop=stop_after_attempt(rt.settings.send_quick_retries + 1),
        wait=wait_exponential_jitter(multiplier=0.2, max=2.0, jitter=0.2),
        retry=retry_if_exception_type(TemporaryFailure),
        reraise=True,
    )
    attempt_started = rt.clock.now()
    try:
        async for attempt in retrying:
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    metrics.SEND_RETRIES.labels(msg.channel).inc()
                    if channel.verifiable:
                        # A timeout may have reached the provider after all: ask first. If it
                        # cannot be asked, nothing is sent blindly: the re-drive asks later.
                        try:
                            candidates = await channel.lookup(msg, attempt_started)
                        except ChannelFailure:
                            return Outcome(lookup_failed=True)
                        found = await _ours(rt, msg, candidates)
                        if found is not None:
                            return Outcome(result=found)
                if limiter is not None and sender is not None:
                    await limiter.wait(sender)
                return Outcome(result=await channel.send(msg, rt.clock.now()))
    except ChannelFailure as exc:
        return Outcome(failure=exc)
    raise AssertionError("unreachable: tenacity either returns or re-raises")


async def deliver(
    rt: Runtime,
    channels: dict[str, DeliveryChannel],
    notification_id: str,
    limiter: SendRateLimiter | None = None,
) -> str | None:
    """Deliver one notification end to end; return its status afterwards (None if skipped)."""
    claimed = await claim(rt, channels, notification_id)
    if claimed is None:
        return None
    outcome = await hand_over(rt, channels, claimed, limiter)
    return await _record_result(rt, claimed, outcome)


async def hand_over(
    rt: Runtime,
    channels: dict[str, DeliveryChannel],
    claimed: Claim,
    limiter: SendRateLimiter | None = None,
) -> Outcome:
    """Hand a claimed notification to its channel (no transaction open); what came of it."""
    started = rt.clock.now()
    outcome = await _send_with_retries(rt, channels[claimed.message.channel], claimed, limiter)
    metrics.DELIVERY_SECONDS.labels(claimed.message.channel).observe(
        max(0.0, (rt.clock.now() - started).total_seconds())
    )
    return outcome


def takes_run(channels: dict[str, DeliveryChannel], claims: list[Claim]) -> bool:
    """Whether these claims (one recipient's, in order) may go to their channel together, as
    one run (`send_run`): all on one such channel, none to be looked up first (a resumed or a
    retried send), and no send rate to keep."""
    if not claims:
        return False
    name = claims[0].message.channel
    channel = channels.get(name)
    return (
        channel is not None
        and callable(getattr(channel, "send_run", None))
        and _sender(channel) is None
        and all(c.message.channel == name and not c.resume and not c.ask_first for c in claims)
    )


async def hand_over_run(
    rt: Runtime, channels: dict[str, DeliveryChannel], claims: list[Claim]
) -> list[Outcome]:
    """Hand a run of claimed notifications (`takes_run`) to their channel in one go, in order;
    what came of each. Raises what the channel raised, as `hand_over` does."""
    name = claims[0].message.channel
    started = rt.clock.now()
    results = await channels[name].send_run(  # type: ignore[attr-defined]
        [c.message for c in claims], started
    )
    took = max(0.0, (rt.clock.now() - started).total_seconds())
    for _ in claims:
        metrics.DELIVERY_SECONDS.labels(name).observe(took)
    return [Outcome(result=result) for result in results]


def look_again_after(settings: Settings, attempt_no: int) -> float:
    """Seconds before a text the provider could not be asked about is asked about again: the
    durable retries' back-off, and never sooner than the re-drive would take it."""
    return max(retry_delay(settings, attempt_no), float(settings.redrive_after_s))


def retry_delay(settings: Settings, attempt_no: int) -> float:
    """Seconds before the next durable retry: exponential with jitter, up to a cap."""
    base = min(settings.retry_max_s, settings.retry_initial_s * 2 ** max(0, attempt_no - 1))
    return float(base * random.uniform(0.5, 1.0))


async def _record_result(rt: Runtime, claimed: Claim, outcome: Outcome) -> str:
    msg = claimed.message
    now = rt.clock.now()
    async with rt.sessions.begin() as session:
        row = await session.get_one(m.Notification, msg.notification_id, with_for_update=True)
        attempt: dict[str, Any] = {}
        status, status_event = await _record_row(session, rt, claimed, outcome, row, attempt, now)
        await _update_attempts(session, [(row.id, claimed.attempt_no, attempt)])
    if status_event is not None:
        await _announce(rt, msg.case_urn, status_event)
    return status


async def record_many(rt: Runtime, results: list[tuple[Claim, Outcome]]) -> list[str | Exception]:
    """`_record_result` for several sends in one transaction, then their announcements at once.

    If recording any of them raises, nothing of the group is kept and each is recorded again on
    its own, so only the one at fault gets its error (as its value in the answer).
    """
    now = rt.clock.now()
    ids = [claimed.message.notification_id for claimed, _ in results]
    try:
        async with rt.sessions.begin() as session:
            rows = await _lock(session, ids)
            recorded = await _record_in(session, rt, results, rows, now)
    except Exception:  # noqa: BLE001 - find the one at fault: each on its own
        if len(results) == 1:
            raise
        alone: list[str | Exception] = []
        for claimed, outcome in results:
            try:
                alone.append(await _record_result(rt, claimed, outcome))
            except Exception as exc:  # noqa: BLE001 - handed to the caller that asked for it
                alone.append(exc)
        return alone
    await _announce_all(rt, results, recorded)
    return [status for status, _ in recorded]


# A step of one recipient's queue: the sends to record, then the next notifications to claim.
Step = tuple[list[tuple[Claim, Outcome]], list[str]]
# Its answer: for each notification to claim, its claim, None (nothing to send), its error, or
# NOT_YET (not claimed in this step); or, if recording one of its sends failed, that error.
StepAnswer = list[Claim | None | Exception | NotYet]


async def record_and_claim(
    rt: Runtime, channels: dict[str, DeliveryChannel], steps: list[Step]
) -> list[StepAnswer | Exception]:
    """For each step, record the sends' outcomes and then claim the recipient's next
    notifications (`claim_runs`), all in one transaction: one for each step of a recipient's
    queue instead of two for each message. Either half of a step may be empty.

    A step's next notifications are claimed only once its sends are recorded: if the
    transaction fails, the records are done on their own (`record_many`), then the claims of
    the steps whose records stood (`claim_runs`); a step one of whose records failed gets that
    error and claims nothing.
    """
    results = [record for records, _ in steps for record in records]
    runs = [ids for _, ids in steps if ids]
    if not results:
        return _answers(steps, [], await claim_runs(rt, channels, runs) if runs else {})
    now = rt.clock.now()
    ids = [claimed.message.notification_id for claimed, _ in results]
    try:
        async with rt.sessions.begin() as session:
            claiming = [nid for run in runs for nid in run]
            rows = await _lock(session, ids + claiming, related=claiming)
            recorded = await _record_in(session, rt, results, rows, now)
            await session.flush()  # the claims see these sends settled
            claims = await _claim_runs_in(session, rt, channels, runs, rows, now)
    except Exception:  # noqa: BLE001 - each half on its own, then one by one
        try:
            statuses = await record_many(rt, results)
        except Exception as exc:  # noqa: BLE001 - the one record's own error (record_many re-raises)
            statuses = [exc] * len(results)
        answered = _answers(steps, statuses, {})
        wanted = [
            ids
            for (_, ids), answer in zip(steps, answered, strict=True)
            if ids and not isinstance(answer, Exception)  # a failed record claims nothing
        ]
        claims = await claim_runs(rt, channels, wanted) if wanted else {}
        return _answers(steps, statuses, claims)
    await _announce_all(rt, results, recorded)
    return _answers(steps, [status for status, _ in recorded], claims)


def _answers(
    steps: list[Step],
    statuses: list[str | Exception],
    claims: dict[str, Claim | None | Exception | NotYet],
) -> list[StepAnswer | Exception]:
    answers: list[StepAnswer | Exception] = []
    recorded = iter(statuses)
    for records, ids in steps:
        errors = [s for s in (next(recorded) for _ in records) if isinstance(s, Exception)]
        answers.append(errors[0] if errors else [claims.get(nid, NOT_YET) for nid in ids])
    return answers


async def _record_in(
    session: AsyncSession,
    rt: Runtime,
    results: list[tuple[Claim, Outcome]],
    rows: dict[str, m.Notification],
    now: datetime,
) -> list[tuple[str, dict[str, Any] | None]]:
    """Record these sends (their `rows` locked) in this transaction: each one's status and the
    status event to announce once it is committed."""
    recorded: list[tuple[str, dict[str, Any] | None]] = []
    attempts: list[tuple[str, int, dict[str, Any]]] = []
    for claimed, outcome in results:
        nid = claimed.message.notification_id
        attempt: dict[str, Any] = {}
        recorded.append(await _record_row(session, rt, claimed, outcome, rows[nid], attempt, now))
        attempts.append((nid, claimed.attempt_no, attempt))
    await _update_attempts(session, attempts)
    return recorded


_ATTEMPTS = cast(Table, m.DeliveryAttempt.__table__)


async def _update_attempts(
    session: AsyncSession, attempts: list[tuple[str, int, dict[str, Any]]]
) -> None:
    """Set each (notification, attempt number)'s attempt row's columns as `_record_row` wrote
    them down: one UPDATE per set of columns, its rows as parameters. The rows are never
    loaded, nor the words they keep decrypted; an attempt that does not exist is left alone."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for nid, attempt_no, values in attempts:
        if values:
            params = {"b_nid": nid, "b_no": attempt_no}
            params |= {f"v_{column}": value for column, value in values.items()}
            groups.setdefault(tuple(sorted(values)), []).append(params)
    for columns, params_list in groups.items():
        await session.execute(
            update(_ATTEMPTS)
            .where(
                _ATTEMPTS.c.notification_id == bindparam("b_nid"),
                _ATTEMPTS.c.attempt_no == bindparam("b_no"),
            )
            .values({column: bindparam(f"v_{column}") for column in columns}),
            params_list,
        )


async def _announce_all(
    rt: Runtime,
    results: list[tuple[Claim, Outcome]],
    recorded: list[tuple[str, dict[str, Any] | None]],
) -> None:
    announcements = [
        (json.dumps(event).encode(), NOTIFICATIONS_STATUS.name, claimed.message.case_urn.encode())
        for (claimed, _), (_, event) in zip(results, recorded, strict=True)
        if event is not None
    ]
    try:
        await publish_all(rt.broker, announcements, headers=STATUS_HEADERS)
    except Exception as exc:  # noqa: BLE001 - the database row is the record; this is a courtesy
        log.warning("status.publish_failed", error=type(exc).__name__)


async def _record_row(
    session: AsyncSession,
    rt: Runtime,
    claimed: Claim,
    outcome: Outcome,
    row: m.Notification,
    attempt: dict[str, Any],
    now: datetime,
) -> tuple[str, dict[str, Any] | None]:
    """Record one send's outcome on its locked row, and in `attempt` the columns its attempt
    row is to get (`_update_attempts`); its status, and the status event to announce (None
    when there is nothing new to say)."""
    msg = claimed.message
    announce = True
    result, failure = outcome.result, outcome.failure
    if outcome.lookup_failed:
        # Leave the attempt open and the row `sending`: the re-drive asks again later.
        announce = False
        attempt.update(outcome="lookup_failed", error_code="lookup_failed")
        if row.status != Status.SENDING:
            # A receipt has settled it meanwhile: the provider had it after all.
            attempt["started_at"] = claimed.since
        elif (now - claimed.first_attempt_at).total_seconds() > rt.settings.retry_window_s:
            row.updated_at = now
            _finish(session, row, Status.UNKNOWN, now, "delivery_unknown")
            await _tell_advocate(session, row, "delivery_unknown", now)
            announce = True
        else:
            row.status_reason = "lookup_failed"
            row.updated_at = now
            attempt["started_at"] = claimed.since  # still the cut-off attempt's time
            # Asked again by the re-drive no sooner than a durable retry would go: during an
            # outage a text is not looked up every `CAREHUB_REDRIVE_AFTER_S` for hours.
            row.send_at = now + timedelta(seconds=look_again_after(rt.settings, row.attempts))
    else:
        attempt.update(
            finished_at=now,
            outcome="sent" if result else _failure_outcome(failure),
            provider_ref=result.provider_ref if result else None,
            provider_status=(
                result.provider_status if result else failure.provider_status if failure else None
            ),
            provider_code=failure.provider_code if failure else None,
            error_code=failure.code if failure else None,
        )
        if result is not None:
            row.provider_ref = result.provider_ref
            row.sent_at = row.sent_at or result.at
            if row.status == Status.SENDING:
                # An e-mail accepted by the receiving server is the best evidence SMTP
                # gives (it has no delivery receipts): the compliance clock stops there.
                if result.delivered or msg.channel == "email":
                    row.informed_at = row.informed_at or result.at
                _finish(
                    session,
                    row,
                    Status.DELIVERED if result.delivered else Status.SENT,
                    now,
                    None,
                )
            else:
                announce = False  # a receipt got here first and moved it on already
        elif isinstance(failure, PermanentFailure):
            _finish(session, row, Status.FAILED, now, failure.code)
            case = await session.get_one(m.Case, row.case_id)
            await fall_back(session, row, case, failure.code, now)
        elif isinstance(failure, AmbiguousFailure):
            _finish(session, row, Status.UNKNOWN, now, "delivery_unknown")
            await _tell_advocate(session, row, "delivery_unknown", now)
        else:
            assert failure is not None
            delay = retry_delay(rt.settings, row.attempts)
            retry_at = now + timedelta(seconds=delay)
            deadline = claimed.first_attempt_at + timedelta(seconds=rt.settings.retry_window_s)
            if row.due_by is not None and row.due_by > now:
                # Another channel or a person can still make the deadline: do not wait past it.
                deadline = min(deadline, row.due_by)
            if retry_at > deadline:
                _finish(session, row, Status.FAILED, now, "retries_exhausted")
                case = await session.get_one(m.Case, row.case_id)
                await fall_back(session, row, case, "retries_exhausted", now)
            else:
                announce = False
                move(
                    session,
                    row,
                    Status.SCHEDULED,
                    now=now,
                    actor=ACTOR,
                    reason=failure.code,
                    action="notification.retry_scheduled",
                    attempt=row.attempts,
                    delay_s=round(delay),
                )
                row.send_at = retry_at
                log.info(
                    "notification.retry_scheduled",
                    notification_id=row.id,
                    reason=failure.code,
                    delay_s=round(delay, 1),
                )
    return row.status, _status_event(row, msg.case_urn, now) if announce else None


def _failure_outcome(failure: ChannelFailure | None) -> str:
    if isinstance(failure, PermanentFailure):
        return "failed"
    if isinstance(failure, AmbiguousFailure):
        return "unknown"
    return "retry"


async def _tell_advocate(
    session: AsyncSession, row: m.Notification, reason: str, now: datetime
) -> None:
    """A survivor's message that may not have reached them: a task for their advocate. An
    advocate's own: operations are warned (`notification.staff_delivery_unknown`), as for one
    that failed, since nobody else is; it is not sent again, and held news keeps its own
    fallback time."""
    if row.recipient_role == "survivor":
        case = await session.get_one(m.Case, row.case_id)
        await hand_to_advocate(session, row, case, reason, now)
    else:
        log.warning("notification.staff_delivery_unknown", notification_id=row.id, reason=reason)


def _status_event(row: m.Notification, case_urn: str, now: datetime) -> dict[str, Any]:
    """A CloudEvent for `notifications.status`: subject = URN, no personal data."""

    def iso(value: datetime | None) -> str | None:
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None

    return {
        "specversion": "1.0",
        "id": f"{row.id}:{row.status}",
        "source": "carehub/notifier",
        "type": f"carehub.notification.{row.status}",
        "subject": case_urn,
        "time": iso(now),
        "datacontenttype": "application/json",
        "data": {
            "notification_id": row.id,
            "event_source": row.event_source,
            "event_id": row.event_id,
            "recipient_role": row.recipient_role,
            "channel": row.channel,
            "status": row.status,
            "informed_at": iso(row.informed_at),
            "due_by": iso(row.due_by),
            "rule": row.rule,
        },
    }


STATUS_HEADERS = {"content-type": "application/cloudevents+json"}


async def _announce(rt: Runtime, urn: str, event: dict[str, Any]) -> None:
    try:
        await rt.broker.publish(
            json.dumps(event).encode(),
            NOTIFICATIONS_STATUS.name,
            key=urn.encode(),
            headers=STATUS_HEADERS,
        )
    except Exception as exc:  # noqa: BLE001 - the database row is the record; this is a courtesy
        log.warning("status.publish_failed", error=type(exc).__name__)


async def count_by_status(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(
        select(m.Notification.status, func.count()).group_by(m.Notification.status)
    )
    return {status: n for status, n in rows.all()}
