"""Delivering one notification: claim, render, hand to the channel, record, announce.

Two short transactions around the channel call: no database transaction is held open while a
provider works, so a slow provider cannot exhaust our connections. A row moves only forward
under a row lock; a redelivered `notifications.due` record for a notification already sent is
a no-op, and one left `sending` by a crash is first looked up at the channel, never resent
blindly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.core import audit, metrics
from services.core.db import models as m
from services.core.db.queries import current_advocates, current_preferences, stand_in_supervisor
from services.core.logs import get_logger
from services.core.notifications import move
from services.core.rendering import TemplateError, render
from services.core.runtime import Runtime
from services.core.states import Status, check_transition
from services.core.topics import NOTIFICATIONS_STATUS
from services.notifier.channels.base import (
    DeliveryChannel,
    OutgoingMessage,
    PermanentFailure,
    SendResult,
    TemporaryFailure,
)
from services.notifier.last_look import hand_to_advocate, no_longer_wanted, put_off_until

ACTOR = "notifier"
LONDON = ZoneInfo("Europe/London")
HUB_NAME = "the Care Hub"  # neutral: a text preview must not say what it is about
SUPPORT_LINE = "you can call the 24/7 Rape and Sexual Abuse Support Line free on 0808 500 2222"
log = get_logger(ACTOR)


@dataclass(frozen=True)
class Claim:
    message: OutgoingMessage
    attempt_no: int
    resume: bool  # a previous attempt was cut off: ask the channel before sending again


class Undeliverable(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _due_text(value: datetime | None, *, with_time: bool = False) -> str:
    if value is None:
        return "soon"
    local = value.astimezone(LONDON)
    text = f"{local:%A} {local.day} {local:%B}"
    return f"{text} at {local:%H:%M}" if with_time else text


def _vrr(event: m.CaseEvent) -> str | None:
    """Which Victims' Right to Review scheme a decision falls under, if the agency said it does."""
    data = event.payload.get("data") if isinstance(event.payload, dict) else None
    if isinstance(data, dict) and data.get("vrr_eligible") is True:
        agency = event.type.split(".", 1)[0]
        return agency if agency in ("police", "cps") else None
    return None


async def _advocate_for(
    session: AsyncSession, row: m.Notification, case: m.Case, now: datetime
) -> m.Advocate | None:
    """Whose name and number a message carries: the recipient advocate, or the survivor's."""
    if row.advocate_id is not None:
        return await session.get(m.Advocate, row.advocate_id)
    if row.survivor_id is not None:
        advocate = (await current_advocates(session, [row.survivor_id], now)).get(row.survivor_id)
        if advocate is not None:
            return advocate
    return await stand_in_supervisor(session, case)


async def _fallback_text(session: AsyncSession, row: m.Notification) -> str:
    """When the held message this one is about goes by itself (its fallback time)."""
    if row.related_id is None:
        return _due_text(row.due_by)
    related = await session.get(m.Notification, row.related_id)
    when = related.send_at if related is not None else None
    return _due_text(when or row.due_by, with_time=when is not None)


SURVIVOR_MESSAGE = {
    ("send", None): "sent",
    ("hold", "advocate_first"): "held",
    ("hold", "no_safe_channel"): "no_safe_channel",
    ("hold", "no_contact_preferences"): "no_safe_channel",
    ("suppress", "opted_out"): "opted_out",
    ("suppress", "frequency_none"): "not_wanted",
    ("suppress", "not_a_key_stage"): "not_wanted",
}


async def _survivor_message(session: AsyncSession, row: m.Notification) -> str:
    """What became of the survivor's own message about the same event, for the advocate."""
    if row.survivor_id is None:
        return "none"
    decision = (
        await session.execute(
            select(m.DecisionRow.outcome, m.DecisionRow.hold_reason)
            .where(
                m.DecisionRow.case_event_id == row.case_event_id,
                m.DecisionRow.survivor_id == row.survivor_id,
                m.DecisionRow.recipient_role == "survivor",
                # An escalation is recorded against the survivor too; it is not their message.
                m.DecisionRow.outcome.in_(("send", "hold", "suppress")),
            )
            .order_by(m.DecisionRow.id)
            .limit(1)
        )
    ).first()
    if decision is None:
        return "none"
    outcome, reason = decision
    if outcome == "send":
        return "sent"
    return SURVIVOR_MESSAGE.get((outcome, reason), "none")


async def _address_and_variables(
    session: AsyncSession, row: m.Notification, case: m.Case, event: m.CaseEvent, now: datetime
) -> tuple[str, dict[str, Any]]:
    advocate = await _advocate_for(session, row, case, now)
    variables: dict[str, Any] = {
        "hub_name": HUB_NAME,
        "support_line": SUPPORT_LINE,
        "advocate_name": advocate.display_name if advocate else "your support worker",
        "advocate_phone": (advocate.phone if advocate and advocate.phone else "the Care Hub"),
        "due_by_text": _due_text(row.due_by),
        "fallback_text": await _fallback_text(session, row),
        "vrr": _vrr(event),
        "survivor_message": await _survivor_message(session, row),
        "case_urn": case.urn,
        "event_type": event.type,
        "detail": row.detail,
        "reason": (row.hold_reason or "").replace("_", " ") or None,
    }
    if row.recipient_role == "survivor":
        survivor = await session.get_one(m.Survivor, row.survivor_id)
        pref = (await current_preferences(session, [survivor.id])).get(survivor.id)
        name = survivor.preferred_name or (survivor.full_name or "").split(" ")[0] or "there"
        variables["recipient_name"] = name
        address = None
        if pref is not None:
            address = pref.phone if row.channel == "sms" else pref.email
    else:
        variables["recipient_name"] = advocate.display_name if advocate else "colleague"
        why = row.status_reason or row.rule.rsplit(".", 1)[-1]
        variables["reason"] = why.replace("_", " ")
        address = advocate.email if advocate else None
    if not address:
        raise Undeliverable("no_address")
    return address, variables


async def claim(rt: Runtime, notification_id: str) -> Claim | None:
    """Move a queued notification to `sending` and render it; None if there is nothing to do."""
    now = rt.clock.now()
    async with rt.sessions.begin() as session:
        row = await session.get(m.Notification, notification_id, with_for_update=True)
        if row is None or row.status not in (Status.QUEUED, Status.SENDING):
            log.info(
                "notification.skipped",
                notification_id=notification_id,
                status=row.status if row else None,
            )
            return None
        resume = row.status == Status.SENDING
        case = await session.get_one(m.Case, row.case_id)
        event = await session.get_one(m.CaseEvent, row.case_event_id)
        if not resume:
            reason = await no_longer_wanted(session, row, now)
            if reason is not None:
                _finish(session, row, Status.SUPPRESSED, now, reason)
                if reason != "frequency_none":
                    await hand_to_advocate(session, row, case, reason, now)
                return None
            later = await put_off_until(session, row, now)
            if later is not None:
                row.status = check_transition(row.status, Status.SCHEDULED)
                row.send_at, row.updated_at = later, now
                audit.record(
                    session,
                    at=now,
                    actor=ACTOR,
                    action="notification.put_off",
                    case_id=row.case_id,
                    notification_id=row.id,
                    reason="outside_safe_window",
                )
                log.info("notification.put_off", notification_id=row.id, until=later.isoformat())
                return None
        try:
            if row.channel is None:
                raise Undeliverable("no_channel")
            address, variables = await _address_and_variables(session, row, case, event, now)
            rendered = render(row.template, row.channel, row.language, variables)
        except (Undeliverable, TemplateError) as exc:
            code = exc.code if isinstance(exc, Undeliverable) else "template_error"
            _finish(session, row, Status.FAILED, now, code)
            if row.recipient_role == "survivor":
                # A survivor who could not be reached is never left without a person.
                await hand_to_advocate(session, row, case, code, now)
            return None
        row.status = check_transition(row.status, Status.SENDING)
        row.attempts += 1
        row.updated_at = now
        session.add(
            m.DeliveryAttempt(
                notification_id=row.id,
                attempt_no=row.attempts,
                channel=row.channel,
                started_at=now,
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
            language=rendered.language,
            template=rendered.template,
            template_version=rendered.template_version,
            subject=rendered.subject,
            body=rendered.body,
            send_at=row.send_at,
            due_by=row.due_by,
        )
        return Claim(message, row.attempts, resume)


def _finish(
    session: AsyncSession, row: m.Notification, status: Status, now: datetime, reason: str | None
) -> None:
    move(session, row, status, now=now, actor=ACTOR, reason=reason)
    metrics.NOTIFICATIONS.labels(status.value).inc()
    log.info(f"notification.{status.value}", notification_id=row.id, reason=reason)


async def deliver(
    rt: Runtime, channels: dict[str, DeliveryChannel], notification_id: str
) -> str | None:
    """Deliver one notification end to end; return its final status (None if skipped)."""
    claimed = await claim(rt, notification_id)
    if claimed is None:
        return None
    msg = claimed.message
    channel = channels[msg.channel]
    started = rt.clock.now()
    result: SendResult | None = None
    failure: str | None = None
    permanent = False
    if claimed.resume:
        result = await channel.lookup(msg.notification_id)
    if result is None:
        try:
            result = await channel.send(msg, rt.clock.now())
        except PermanentFailure as exc:
            failure, permanent = exc.code, True
        except TemporaryFailure as exc:
            failure = exc.code
    metrics.DELIVERY_SECONDS.labels(msg.channel).observe(
        max(0.0, (rt.clock.now() - started).total_seconds())
    )
    return await _record_result(rt, msg, claimed.attempt_no, result, failure, permanent)


async def _record_result(
    rt: Runtime,
    msg: OutgoingMessage,
    attempt_no: int,
    result: SendResult | None,
    failure: str | None,
    permanent: bool,
) -> str:
    now = rt.clock.now()
    async with rt.sessions.begin() as session:
        row = await session.get_one(m.Notification, msg.notification_id, with_for_update=True)
        attempt = await session.scalar(
            select(m.DeliveryAttempt).where(
                m.DeliveryAttempt.notification_id == row.id,
                m.DeliveryAttempt.attempt_no == attempt_no,
            )
        )
        if attempt is not None:
            attempt.finished_at = now
            attempt.outcome = "sent" if result else ("failed" if permanent else "retry")
            attempt.provider_ref = result.provider_ref if result else None
            attempt.error_code = failure
        if result is not None:
            row.provider_ref = result.provider_ref
            row.sent_at = result.at
            if result.delivered:
                row.informed_at = result.at
            _finish(session, row, Status.DELIVERED if result.delivered else Status.SENT, now, None)
        elif permanent:
            _finish(session, row, Status.FAILED, now, failure)
            if row.recipient_role == "survivor":
                case = await session.get_one(m.Case, row.case_id)
                await hand_to_advocate(session, row, case, failure or "failed", now)
        else:
            # A temporary failure leaves it `sending`; the notifier issue adds retries with
            # back-off. The re-drive will not pick it up, so record why it waits.
            row.status_reason = failure
            row.updated_at = now
        status = row.status
        status_event = _status_event(row, msg, now)
    await _announce(rt, msg.case_urn, status_event)
    return status


def _status_event(row: m.Notification, msg: OutgoingMessage, now: datetime) -> dict[str, Any]:
    """A CloudEvent for `notifications.status`: subject = URN, no personal data."""

    def iso(value: datetime | None) -> str | None:
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None

    return {
        "specversion": "1.0",
        "id": f"{row.id}:{row.status}",
        "source": "carehub/notifier",
        "type": f"carehub.notification.{row.status}",
        "subject": msg.case_urn,
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


async def _announce(rt: Runtime, urn: str, event: dict[str, Any]) -> None:
    try:
        await rt.broker.publish(
            json.dumps(event).encode(),
            NOTIFICATIONS_STATUS.name,
            key=urn.encode(),
            headers={"content-type": "application/cloudevents+json"},
        )
    except Exception as exc:  # noqa: BLE001 - the database row is the record; this is a courtesy
        log.warning("status.publish_failed", error=type(exc).__name__)


async def count_by_status(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(
        select(m.Notification.status, func.count()).group_by(m.Notification.status)
    )
    return {status: n for status, n in rows.all()}
