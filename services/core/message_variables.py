"""The words a notification is rendered with: its address and its template's variables.

The notifier renders with them when it sends; the portal shows an advocate a held message as
drafted (`draft`) with the same ones, so what they read is what would go.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.db import models as m
from services.core.db.queries import current_advocates, current_preferences, stand_in_supervisor
from services.core.feedback import TEMPLATE as FEEDBACK_TEMPLATE
from services.core.feedback import link_path
from services.core.rendering import TemplateError, render
from services.core.states import Status
from services.core.wording import due_text, words


async def preference_of(session: AsyncSession, survivor_id: int) -> m.ContactPreference | None:
    """The survivor's current preferences, asked once per transaction (the notifier only reads
    them while it claims a message)."""
    memo: dict[int, m.ContactPreference | None] = session.info.setdefault("carehub.prefs", {})
    if survivor_id not in memo:
        memo[survivor_id] = (await current_preferences(session, [survivor_id])).get(survivor_id)
    return memo[survivor_id]


class Undeliverable(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _event_data(event: m.CaseEvent) -> dict[str, Any]:
    data = event.payload.get("data") if isinstance(event.payload, dict) else None
    return data if isinstance(data, dict) else {}


def _vrr(event: m.CaseEvent) -> str | None:
    """Which Victims' Right to Review scheme a decision falls under, if the agency said it does."""
    if _event_data(event).get("vrr_eligible") is True:
        agency = event.type.split(".", 1)[0]
        return agency if agency in ("police", "cps") else None
    return None


def _decision_reason(event: m.CaseEvent) -> str | None:
    """The reason the agency gave for a decision, as validated on the way in (schemas/data)."""
    reason = _event_data(event).get("reason")
    return (reason.strip() or None) if isinstance(reason, str) else None


# The rules name a letter a duty needs in writing `<version>:<event type>.letter`.
LETTER_RULE_SUFFIX = ".letter"
LETTER_CHANNEL = "letter_task"


async def _advocate_for(
    session: AsyncSession, row: m.Notification, case: m.Case, now: datetime
) -> m.Advocate | None:
    """Whose name and number a message carries: the recipient advocate, or the survivor's."""
    if row.advocate_id is not None:
        return await session.get(m.Advocate, row.advocate_id)
    if row.survivor_id is not None:
        read, known = session.info.get(ADVOCATES_READ, (None, {}))
        advocate: m.Advocate | None
        if read == now and row.survivor_id in known:
            advocate = known[row.survivor_id]
        else:
            found = await current_advocates(session, [row.survivor_id], now)
            advocate = found.get(row.survivor_id)
        if advocate is not None:
            return advocate
    return await stand_in_supervisor(session, case)


async def _fallback_text(session: AsyncSession, row: m.Notification) -> str:
    """When the held message this one is about goes by itself (its fallback time)."""
    if row.related_id is None:
        return due_text(row.due_by, row.language)
    related = await session.get(m.Notification, row.related_id)
    when = related.send_at if related is not None else None
    return due_text(when or row.due_by, row.language, with_time=when is not None)


# What `read_ahead_for_advocates` put in a session for a group of messages (session.info keys):
# the claims of a group then ask the database nothing more about these.
ADVOCATES_READ = "carehub.current_advocates"  # (now, {survivor id: their advocate or None})
SURVIVOR_DECISIONS_READ = "carehub.survivor_decisions"  # {(event, survivor): decision or None}
LETTERS_READ = "carehub.duty_letters"  # {(event, survivor): statuses of its duty letters}

EventSurvivor = tuple[int, int]


async def survivor_decisions(
    session: AsyncSession, keys: list[EventSurvivor]
) -> dict[EventSurvivor, tuple[str, str | None]]:
    """The decision about each survivor's own message about each event (the first, if any)."""
    found: dict[EventSurvivor, tuple[str, str | None]] = {}
    rows = await session.execute(
        select(
            m.DecisionRow.case_event_id,
            m.DecisionRow.survivor_id,
            m.DecisionRow.outcome,
            m.DecisionRow.hold_reason,
        )
        .where(
            m.DecisionRow.case_event_id.in_(sorted({event for event, _ in keys})),
            m.DecisionRow.survivor_id.in_(sorted({survivor for _, survivor in keys})),
            m.DecisionRow.recipient_role == "survivor",
            # An escalation is recorded against the survivor too; it is not their message.
            m.DecisionRow.outcome.in_(("send", "hold", "suppress")),
            # Nor is a letter the Code requires besides it: `letter` says what became of that.
            m.DecisionRow.rule.not_like(f"%{LETTER_RULE_SUFFIX}"),
        )
        .order_by(m.DecisionRow.id)
    )
    for event, survivor, outcome, reason in rows:
        if survivor is not None:
            found.setdefault((event, survivor), (outcome, reason))
    return found


async def letter_statuses(
    session: AsyncSession, keys: list[EventSurvivor]
) -> dict[EventSurvivor, list[str]]:
    """The statuses of the letters the Code requires about each event, for each survivor."""
    found: dict[EventSurvivor, list[str]] = {key: [] for key in keys}
    rows = await session.execute(
        select(
            m.Notification.case_event_id, m.Notification.survivor_id, m.Notification.status
        ).where(
            m.Notification.case_event_id.in_(sorted({event for event, _ in keys})),
            m.Notification.survivor_id.in_(sorted({survivor for _, survivor in keys})),
            m.Notification.recipient_role == "survivor",
            m.Notification.channel == LETTER_CHANNEL,
            m.Notification.rule.like(f"%{LETTER_RULE_SUFFIX}"),
        )
    )
    for event, survivor, status in rows:
        if survivor is not None and (event, survivor) in found:
            found[(event, survivor)].append(status)
    return found


async def read_ahead_for_advocates(
    session: AsyncSession, rows: list[m.Notification], now: datetime
) -> None:
    """Read what `address_and_variables` asks about these messages' survivors in three queries
    for the group (their current advocates, their own messages' decisions, the Code's letters)
    and keep it in the session for it. Only for a transaction that writes none of these."""
    survivors = sorted(
        {r.survivor_id for r in rows if r.advocate_id is None and r.survivor_id is not None}
    )
    if survivors:
        session.info[ADVOCATES_READ] = (now, await current_advocates(session, survivors, now))
        for survivor_id in survivors:
            session.info[ADVOCATES_READ][1].setdefault(survivor_id, None)
    about = sorted(
        {
            (r.case_event_id, r.survivor_id)
            for r in rows
            if r.recipient_role != "survivor" and r.survivor_id is not None
        }
    )
    if about:
        decisions = await survivor_decisions(session, about)
        session.info[SURVIVOR_DECISIONS_READ] = {key: decisions.get(key) for key in about}
        session.info[LETTERS_READ] = await letter_statuses(session, about)


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
    key = (row.case_event_id, row.survivor_id)
    known = session.info.get(SURVIVOR_DECISIONS_READ, {})
    decision = known[key] if key in known else (await survivor_decisions(session, [key])).get(key)
    if decision is None:
        return "none"
    outcome, reason = decision
    if outcome == "send":
        return "sent"
    return SURVIVOR_MESSAGE.get((outcome, reason), "none")


async def _duty_letter(session: AsyncSession, row: m.Notification) -> str:
    """What became of the letter the Code requires about the same event, for the advocate:
    "held" (it waits for them, like held news), "sent" (queued for post or posted) or "none"."""
    if row.survivor_id is None:
        return "none"
    key = (row.case_event_id, row.survivor_id)
    known = session.info.get(LETTERS_READ, {})
    statuses = known[key] if key in known else (await letter_statuses(session, [key]))[key]
    if Status.HELD in statuses:
        return "held"
    gone = (Status.FAILED, Status.SUPPRESSED, Status.CANCELLED, Status.EXPIRED)
    return "sent" if any(status not in gone for status in statuses) else "none"


async def address_and_variables(
    session: AsyncSession,
    row: m.Notification,
    case: m.Case,
    event: m.CaseEvent,
    now: datetime,
    *,
    base_url: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """Where a notification goes and the variables its template is rendered with
    (services.core.rendering documents them). Undeliverable when it has no address."""
    advocate = await _advocate_for(session, row, case, now)
    say = words(row.language)
    variables: dict[str, Any] = {
        "hub_name": say["hub_name"],
        "support_line": say["support_line"],
        "advocate_name": advocate.display_name if advocate else say["no_advocate_name"],
        "advocate_phone": (
            advocate.phone if advocate and advocate.phone else say["no_advocate_phone"]
        ),
        "due_by_text": due_text(row.due_by, row.language),
        "fallback_text": await _fallback_text(session, row),
        "vrr": _vrr(event),
        "decision_reason": _decision_reason(event),
        "meeting_offered": _event_data(event).get("meeting_offered") is True,
        # What became of the survivor's own message, and of a letter the Code requires: only
        # advocates' messages say it.
        "survivor_message": (
            "none" if row.recipient_role == "survivor" else await _survivor_message(session, row)
        ),
        "letter": "none" if row.recipient_role == "survivor" else await _duty_letter(session, row),
        "case_urn": case.urn,
        "event_type": event.type,
        "detail": row.detail,
        "reason": (row.hold_reason or "").replace("_", " ") or None,
        "reply_text": None,
        "feedback_url": None,
        # The advocate's own line, when they released a held message with one.
        "personal_line": row.personal_line,
    }
    if row.inbound_id is not None:
        inbound = await session.get(m.InboundMessage, row.inbound_id)
        variables["reply_text"] = inbound.body if inbound is not None else None
    if row.template == FEEDBACK_TEMPLATE:
        question = await session.scalar(
            select(m.FeedbackQuestion.id).where(
                m.FeedbackQuestion.question_notification_id == row.id
            )
        )
        if question is not None:
            variables["feedback_url"] = (base_url or "").rstrip("/") + link_path(question)
    if row.recipient_role == "survivor":
        survivor = await session.get_one(m.Survivor, row.survivor_id)
        pref = await preference_of(session, survivor.id)
        name = survivor.preferred_name or (survivor.full_name or "").split(" ")[0]
        name = name or say["no_recipient_name"]
        variables["recipient_name"] = name
        address = None
        if pref is not None:
            address = {
                "sms": pref.phone,
                "email": pref.email,
                LETTER_CHANNEL: pref.postal_address,
            }.get(row.channel or "")
    else:
        variables["recipient_name"] = advocate.display_name if advocate else "colleague"
        why = row.status_reason or row.rule.rsplit(".", 1)[-1]
        variables["reason"] = why.replace("_", " ")
        address = advocate.email if advocate else None
    if not address:
        raise Undeliverable("no_address")
    return address, variables


async def draft(
    session: AsyncSession, row: m.Notification, now: datetime, *, base_url: str | None = None
) -> tuple[str | None, str] | None:
    """The words a notification would go out with now (subject, body), for an advocate reading a
    held message before releasing it; None when it cannot be rendered (no channel, no address)."""
    if row.channel is None:
        return None
    case = await session.get_one(m.Case, row.case_id)
    event = await session.get_one(m.CaseEvent, row.case_event_id)
    try:
        _address, variables = await address_and_variables(
            session, row, case, event, now, base_url=base_url
        )
        rendered = render(row.template, row.channel, row.language, variables)
    except (Undeliverable, TemplateError):
        return None
    return rendered.subject, rendered.body
