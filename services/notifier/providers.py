"""What providers tell us: Twilio delivery receipts and inbound texts.

Both routes check `X-Twilio-Signature` against the public URL (`CAREHUB_PUBLIC_BASE_URL` plus
the path and query Twilio called); a bad or missing signature gets 403 and changes nothing.

- `POST /v1/providers/twilio/status?nid=<notification id>`: a receipt moves the notification
  forward through the state table under a row lock; a duplicate or out-of-order receipt never
  moves it back. An undelivered or failed message falls back to the survivor's other safe
  channel, else their advocate.
- `POST /v1/providers/twilio/inbound`: STOP and its synonyms opt the sender out, START opts them
  back in, HELP gets a short safe answer; anything else gets the automatic safety reply of
  trauma-informed rule 16, and the message goes to the survivor's advocate at once. Nothing is
  ever answered automatically with case information.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from fastapi import APIRouter, Request, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from twilio.request_validator import RequestValidator

from services.core import audit, metrics
from services.core.db import models as m
from services.core.db.queries import current_preferences, person_for
from services.core.domain import notification_id as make_notification_id
from services.core.feedback import open_question_for, record_answer
from services.core.http_limits import is_ascii_number, read_limited
from services.core.keys import blind_index, normalise_phone
from services.core.logs import get_logger
from services.core.notifications import add_staff_notification, move
from services.core.rendering import catalogue
from services.core.runtime import Runtime
from services.core.states import Status, can_transition
from services.notifier.channels.twilio import PERMANENT_CODES
from services.notifier.fallback import fall_back

ACTOR = "notifier"
log = get_logger(ACTOR)

# Twilio's status words, and where each may move a notification.
RECEIPT_TARGET: dict[str, Status] = {
    "accepted": Status.SENT,
    "queued": Status.SENT,
    "scheduled": Status.SENT,
    "sending": Status.SENT,
    "sent": Status.SENT,
    "delivered": Status.DELIVERED,
    "read": Status.DELIVERED,
    "undelivered": Status.FAILED,
    "failed": Status.FAILED,
    "canceled": Status.FAILED,
}

# Twilio's own opt-out, opt-in and help keywords (its Advanced Opt-Out defaults), plus Welsh.
STOP_WORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE", "STOPIO"}
)
START_WORDS = frozenset({"START", "YES", "UNSTOP", "DECHRAU"})
HELP_WORDS = frozenset({"HELP", "INFO", "HELPU", "CYMORTH"})

# Short, and with nothing about any case: the phone may not be the survivor's alone.
REPLIES = {
    "stop": (
        "You will not get any more texts from the Care Hub. "
        "Reply START at any time to get them again."
    ),
    "start": "You will get texts from the Care Hub again. Reply STOP to stop them.",
    "help": (
        "This is the Care Hub. To talk to your support worker, call them or the Care Hub. "
        "In an emergency call 999. Reply STOP to stop texts."
    ),
    "safety": (
        "Thank you. This number is not checked at all times, so we have passed your message "
        "to your support worker. If you are in danger now, call 999."
    ),
    # A number from 1 to 5 answering an open feedback question.
    "feedback": (
        "Thank you for your answer. This number is not checked at all times. If you are in "
        "danger now, call 999."
    ),
    # An answer with words besides the number: those words go to the support worker too.
    "feedback_passed": (
        "Thank you. We have passed your message to your support worker. This number is not "
        "checked at all times. If you are in danger now, call 999."
    ),
    # Nobody could be found to pass it to (an unknown number): never promise a hand-off.
    "unrouted": (
        "Thank you. This number is not checked at all times. If you are in danger now, call "
        "999. Free support, day or night: 0808 500 2222."
    ),
}
REPLY_TEMPLATE = "advocate_survivor_replied"
NOTIFICATION_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
PROVIDER_REF = re.compile(r"[A-Za-z0-9]{1,64}")  # a Twilio SID is two letters and 32 hex


def public_url(rt: Runtime, request: Request) -> str:
    base = (rt.settings.public_base_url or str(request.base_url)).rstrip("/")
    query = request.url.query
    return f"{base}{request.url.path}" + (f"?{query}" if query else "")


async def signed_form(rt: Runtime, request: Request) -> dict[str, str] | None:
    """The form Twilio posted, if its signature is good; None otherwise."""
    token = rt.settings.twilio_auth_token
    signature = request.headers.get("X-Twilio-Signature", "")
    if token is None or not signature:
        return None
    body = await read_limited(request, 64 * 1024)
    if body is None:
        log.warning("webhook.too_large", provider="twilio")
        return None
    try:
        params = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        return None
    validator = RequestValidator(token.get_secret_value())
    if not validator.validate(public_url(rt, request), params, signature):
        return None
    return params


def twiml(message: str | None) -> Response:
    inner = f"<Message>{escape(message)}</Message>" if message else ""
    return Response(
        content=f'<?xml version="1.0" encoding="UTF-8"?><Response>{inner}</Response>',
        media_type="text/xml",
    )


def router(rt: Runtime, announce: Any) -> APIRouter:
    routes = APIRouter(prefix="/v1/providers")

    @routes.post("/twilio/status", include_in_schema=False)
    async def twilio_status(request: Request) -> Response:
        form = await signed_form(rt, request)
        if form is None:
            metrics.RECEIPTS.labels("twilio", "-", "bad_signature").inc()
            log.warning("receipt.bad_signature", provider="twilio")
            return Response(status_code=403)
        nid = request.query_params.get("nid", "")
        status_word = (form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
        moved = await apply_receipt(
            rt, nid, form.get("MessageSid", ""), status_word, form.get("ErrorCode") or None
        )
        if moved is not None:
            await announce(rt, *moved)
        return Response(status_code=204)

    @routes.post("/twilio/inbound", include_in_schema=False)
    async def twilio_inbound(request: Request) -> Response:
        form = await signed_form(rt, request)
        if form is None:
            log.warning("inbound.bad_signature", provider="twilio")
            return Response(status_code=403)
        kind = await handle_inbound(
            rt, form.get("From", ""), form.get("Body", ""), form.get("MessageSid", "")
        )
        metrics.INBOUND.labels(kind).inc()
        return twiml(REPLIES.get(kind))

    return routes


async def apply_receipt(
    rt: Runtime, nid: str, provider_ref: str, status_word: str, error_code: str | None
) -> tuple[str, dict[str, Any]] | None:
    """Apply one receipt; return (URN, status event) to announce if it moved the notification."""
    from services.notifier.delivery import _status_event  # one shape for every status event

    target = RECEIPT_TARGET.get(status_word)
    now = rt.clock.now()
    # Whatever a caller put in them, these are only ever ids and codes of a known shape.
    nid = nid if NOTIFICATION_ID.fullmatch(nid) else ""
    provider_ref = provider_ref if PROVIDER_REF.fullmatch(provider_ref) else ""
    status_word = status_word[:32]
    error_code = error_code[:16] if error_code else None
    async with rt.sessions.begin() as session:
        row = await session.get(m.Notification, nid, with_for_update=True) if nid else None
        if row is None:
            metrics.RECEIPTS.labels("twilio", status_word or "-", "unknown_notification").inc()
            log.info("receipt.unknown_notification", provider="twilio", status=status_word)
            return None
        attempt = await session.scalar(
            select(m.DeliveryAttempt)
            .where(
                m.DeliveryAttempt.notification_id == row.id,
                m.DeliveryAttempt.provider_ref == provider_ref,
            )
            .order_by(m.DeliveryAttempt.attempt_no.desc())
            .limit(1)
        )
        if attempt is not None:
            attempt.provider_status = status_word[:64]
            attempt.provider_code = error_code[:16] if error_code else attempt.provider_code
        effect = "ignored"
        current = Status(row.status)
        if target is not None and current != target and can_transition(current, target):
            effect = "moved"
            reason = None
            if target is Status.DELIVERED:
                row.informed_at = row.informed_at or now
            if target is Status.FAILED:
                code = int(error_code) if error_code and is_ascii_number(error_code) else 0
                reason = PERMANENT_CODES.get(code, status_word)
            row.provider_ref = row.provider_ref or provider_ref or None
            row.sent_at = row.sent_at or now
            move(
                session,
                row,
                target,
                now=now,
                actor=ACTOR,
                reason=reason,
                action="notification.receipt",
                provider_status=status_word,
                provider_code=error_code,
            )
            metrics.NOTIFICATIONS.labels(target.value).inc()
            if target is Status.FAILED:
                case = await session.get_one(m.Case, row.case_id)
                await fall_back(session, row, case, reason or "undelivered", now)
        else:
            # A duplicate, late or unknown receipt: written down, never moves a state back.
            audit.record(
                session,
                at=now,
                actor=ACTOR,
                action="notification.receipt_ignored",
                case_id=row.case_id,
                notification_id=row.id,
                provider_status=status_word,
                provider_code=error_code,
                status=row.status,
            )
        metrics.RECEIPTS.labels("twilio", status_word or "-", effect).inc()
        log.info(
            "receipt.applied", notification_id=row.id, provider_status=status_word, effect=effect
        )
        if effect != "moved":
            return None
        case_row = await session.get_one(m.Case, row.case_id)
        return case_row.urn, _status_event(row, case_row.urn, now)


@dataclass(frozen=True)
class _Sender:
    survivor_id: int
    preference: m.ContactPreference


async def _senders(session: AsyncSession, phone: str) -> list[_Sender]:
    """Survivors whose current contact preferences hold this number.

    Phone numbers are encrypted with a random nonce, so they are found through their keyed
    blind index (`phone_index`, HMAC-SHA256 under `CAREHUB_BLIND_INDEX_KEY`).
    """
    if not phone:
        return []
    index = blind_index(phone)
    candidates = (
        await session.scalars(
            select(m.ContactPreference.survivor_id).where(m.ContactPreference.phone_index == index)
        )
    ).all()
    current = await current_preferences(session, sorted(set(candidates)))
    number = normalise_phone(phone)
    return [
        _Sender(sid, pref)
        for sid, pref in current.items()
        if pref.phone is not None and normalise_phone(pref.phone) == number
    ]


FEEDBACK_ANSWER = re.compile(r"^\s*([1-5])(?![0-9])[\s.,;:!)-]*(.*)$", re.DOTALL)


def _feedback_answer(body: str) -> tuple[int, str | None] | None:
    """(score, any words besides it) when a text starts with a number from 1 to 5."""
    found = FEEDBACK_ANSWER.match(body)
    if found is None:
        return None
    rest = found.group(2).strip()
    return int(found.group(1)), rest or None


def _keyword(body: str) -> str | None:
    word = body.strip().strip(".!").upper()
    if word in STOP_WORDS:
        return "stop"
    if word in START_WORDS:
        return "start"
    if word in HELP_WORDS:
        return "help"
    return None


async def handle_inbound(rt: Runtime, phone: str, body: str, provider_ref: str) -> str:
    """Record an inbound text and act on it; return its kind: stop, start, help, safety (passed
    to an advocate), feedback (a number answering an open feedback question; with words besides
    it, feedback_passed: the words go to the advocate too) or unrouted (nobody to pass it to:
    operations are alerted). A webhook delivered twice is acted on once."""
    now = rt.clock.now()
    kind = _keyword(body) or "safety"
    async with rt.sessions.begin() as session:
        if provider_ref:
            seen = await session.scalar(
                select(m.InboundMessage.kind).where(
                    m.InboundMessage.provider == "twilio",
                    m.InboundMessage.provider_ref == provider_ref[:64],
                )
            )
            if seen is not None:
                log.info("inbound.repeated", kind=seen)
                return str(seen)
        senders = await _senders(session, phone)
        inbound = m.InboundMessage(
            received_at=now,
            provider="twilio",
            provider_ref=provider_ref[:64],
            from_address=phone,
            body=body,
            kind=kind,
            survivor_ids=[s.survivor_id for s in senders],
        )
        session.add(inbound)
        await session.flush()
        answer = _feedback_answer(body) if kind == "safety" else None
        if answer is not None:
            question = await open_question_for(session, [s.survivor_id for s in senders], now)
            if question is not None:
                score, words = answer
                record_answer(session, question, score, words, "sms", now)
                inbound.kind = kind = "feedback_passed" if words else "feedback"
                if words is None:
                    log.info("inbound.received", kind=kind, known_sender=True)
                    return kind
                # Words besides the number may be a cry for help: they go to a person too.
                senders = [s for s in senders if s.survivor_id == question.survivor_id]
        passed = 0
        for sender in senders:
            if kind in ("stop", "start"):
                _new_preference(
                    sender.preference, opted_out=kind == "stop", now=now, session=session
                )
            elif kind in ("safety", "feedback_passed") and await _pass_to_advocate(
                session, sender.survivor_id, inbound, now
            ):
                passed += 1
            audit.record(
                session,
                at=now,
                actor=ACTOR,
                action=f"inbound.{kind}",
                inbound_id=inbound.id,
                survivor_id=sender.survivor_id,
            )
        if not senders:
            audit.record(
                session,
                at=now,
                actor=ACTOR,
                action="inbound.unknown_sender",
                inbound_id=inbound.id,
                kind=kind,
            )
        if kind in ("safety", "feedback_passed") and not passed:
            # A message that may be a cry for help and nobody to pass it to: say so, loudly.
            kind = inbound.kind = "unrouted"
            audit.record(
                session, at=now, actor=ACTOR, action="inbound.unrouted", inbound_id=inbound.id
            )
            log.warning("inbound.unrouted", inbound_id=inbound.id, known_sender=bool(senders))
    log.info("inbound.received", kind=kind, known_sender=bool(senders))
    return kind


def _new_preference(
    current: m.ContactPreference, *, opted_out: bool, now: datetime, session: AsyncSession
) -> None:
    if current.opted_out == opted_out:
        return
    copied = {
        column.key: getattr(current, column.key)
        for column in m.ContactPreference.__table__.columns
        if column.key not in ("id", "version", "recorded_at", "recorded_by", "reason_code")
    }
    session.add(
        m.ContactPreference(
            **{**copied, "opted_out": opted_out, "reason_note": None},
            version=current.version + 1,
            recorded_at=now,
            recorded_by="survivor:sms",
            reason_code="sms_stop" if opted_out else "sms_start",
        )
    )


async def _pass_to_advocate(
    session: AsyncSession, survivor_id: int, inbound: m.InboundMessage, now: datetime
) -> str | None:
    """A notification to the survivor's advocate (or the supervisor standing in), at once."""
    last = await session.scalar(
        select(m.Notification)
        .where(
            m.Notification.survivor_id == survivor_id, m.Notification.recipient_role == "survivor"
        )
        .order_by(m.Notification.created_at.desc())
        .limit(1)
    )
    if last is None:
        return None
    case = await session.get_one(m.Case, last.case_id)
    person = await person_for(session, survivor_id, case, now)
    if person is None:
        log.warning("inbound.no_advocate", survivor_id=survivor_id)
        return None
    advocate, role = person
    rule = f"{last.rules_version}:inbound.reply"
    nid = make_notification_id(
        last.event_source, last.event_id, f"{role}:{advocate.id}:reply:{inbound.id}", rule
    )
    if await session.get(m.Notification, nid) is not None:
        return nid
    add_staff_notification(
        session,
        nid=nid,
        case_event_id=last.case_event_id,
        case_id=last.case_id,
        event_source=last.event_source,
        event_id=last.event_id,
        advocate=advocate,
        role=role,
        survivor_id=survivor_id,
        template=REPLY_TEMPLATE,
        template_version=catalogue()[REPLY_TEMPLATE].version,
        rules_version=last.rules_version,
        rule=rule,
        reason="survivor_replied",
        now=now,
        due_by=now,
        inbound_id=inbound.id,
    )
    audit.record(
        session,
        at=now,
        actor=ACTOR,
        action="notification.survivor_replied",
        case_id=last.case_id,
        notification_id=nid,
        rule=rule,
    )
    return nid
