"""What the portal shows, as plain data: the same dictionaries feed the HTML pages and the JSON
API, so the two can never disagree. Every function here assumes `access` has already said yes.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

from sqlalchemy import literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.db import models as m
from services.core.db.queries import current_advocates, current_preferences
from services.core.states import FINAL, Status

OPEN = [s.value for s in Status if s not in FINAL]
REASON_CODES = {
    "agreed_with_survivor": "Agreed with the survivor",
    "survivor_asked": "The survivor asked for this",
    "wrong_details": "The details were wrong",
    "safety_concern": "A safety concern",
    "review_due": "The safety check was due for review",
}
CANCEL_REASONS = {  # the dispatcher accepts exactly these (services.rules.actions)
    "survivor_asked": "The survivor asked not to be told this way",
    "duplicate": "Another message already says this",
    "wrong_details": "The message has wrong details",
    "other": "Another reason (say in the note)",
}
LANGUAGES = {"en": "English", "cy": "Welsh (Cymraeg)"}
FREQUENCIES = {"all": "All updates", "key_stages": "Key stages only", "none": "None"}
DETAILS = {"discreet": "Discreet", "detailed": "Detailed"}


def name_of(survivor: m.Survivor) -> str:
    if survivor.erased_at is not None:
        return "(erased)"
    return survivor.preferred_name or survivor.full_name or f"Survivor {survivor.id}"


def _iso(value: datetime | date | time | None) -> str | None:
    return None if value is None else value.isoformat()


async def _cases_of(session: AsyncSession, survivor_ids: list[int]) -> dict[int, list[m.Case]]:
    out: dict[int, list[m.Case]] = {s: [] for s in survivor_ids}
    if not survivor_ids:
        return out
    rows = await session.execute(
        select(m.CaseSurvivor.survivor_id, m.Case)
        .join(m.Case, m.Case.id == m.CaseSurvivor.case_id)
        .where(m.CaseSurvivor.survivor_id.in_(survivor_ids))
        .order_by(m.Case.opened_at)
    )
    for survivor_id, case in rows.all():
        out[survivor_id].append(case)
    return out


def unreachable(pref: m.ContactPreference | None, today: date) -> bool:
    """No channel we may use today: the survivor can only be told through a person."""
    if pref is None or pref.opted_out:
        return True
    sms = (
        pref.sms_safe
        and pref.phone
        and (pref.sms_safe_review_by is None or pref.sms_safe_review_by >= today)
    )
    email = (
        pref.email_safe
        and pref.email
        and (pref.email_safe_review_by is None or pref.email_safe_review_by >= today)
    )
    letter = (
        pref.letter_safe
        and pref.postal_address
        and (pref.letter_safe_review_by is None or pref.letter_safe_review_by >= today)
    )
    return not (sms or email or letter)


async def caseload(
    session: AsyncSession, survivor_ids: list[int], now: datetime
) -> list[dict[str, Any]]:
    """One line per survivor: cases, next deadline, what is held waiting for a person."""
    if not survivor_ids:
        return []
    survivors = {
        s.id: s
        for s in await session.scalars(select(m.Survivor).where(m.Survivor.id.in_(survivor_ids)))
    }
    cases = await _cases_of(session, survivor_ids)
    prefs = await current_preferences(session, survivor_ids)
    open_rows = (
        await session.scalars(
            select(m.Notification).where(
                m.Notification.survivor_id.in_(survivor_ids),
                m.Notification.recipient_role == "survivor",
                m.Notification.status.in_(OPEN),
            )
        )
    ).all()
    lines = []
    for survivor_id in survivor_ids:
        mine = [n for n in open_rows if n.survivor_id == survivor_id]
        deadlines = [n.due_by for n in mine if n.due_by is not None]
        held = [n for n in mine if n.status == Status.HELD]
        lines.append(
            {
                "survivor_id": survivor_id,
                "name": name_of(survivors[survivor_id]),
                "cases": [c.urn for c in cases[survivor_id]],
                "next_deadline": _iso(min(deadlines)) if deadlines else None,
                "held": len(held),
                "held_deadline": _iso(min((n.due_by for n in held if n.due_by), default=None)),
                "unreachable": unreachable(prefs.get(survivor_id), now.date()),
            }
        )
    # What needs a person first: held news, then the nearest deadline.
    lines.sort(key=lambda x: (not x["held"], str(x["next_deadline"] or "9999"), str(x["name"])))
    return lines


def preference_dict(pref: m.ContactPreference | None) -> dict[str, Any] | None:
    if pref is None:
        return None
    return {
        "version": pref.version,
        "recorded_at": _iso(pref.recorded_at),
        "recorded_by": pref.recorded_by,
        "reason_code": pref.reason_code,
        "phone": pref.phone,
        "sms_safe": pref.sms_safe,
        "sms_safe_review_by": _iso(pref.sms_safe_review_by),
        "email": pref.email,
        "email_safe": pref.email_safe,
        "email_safe_review_by": _iso(pref.email_safe_review_by),
        "letter_safe": pref.letter_safe,
        "letter_safe_review_by": _iso(pref.letter_safe_review_by),
        "postal_address": pref.postal_address,
        "language": pref.language,
        "timezone": pref.timezone,
        "safe_window_start": pref.safe_window_start.strftime("%H:%M"),
        "safe_window_end": pref.safe_window_end.strftime("%H:%M"),
        "frequency": pref.frequency,
        "detail": pref.detail,
        "opted_out": pref.opted_out,
        "feedback_opt_in": pref.feedback_opt_in,
    }


def notification_dict(row: m.Notification, now: datetime) -> dict[str, Any]:
    left = None
    if row.due_by is not None and row.status not in {s.value for s in FINAL}:
        left = int((row.due_by - now).total_seconds())
    return {
        "id": row.id,
        "recipient_role": row.recipient_role,
        "channel": row.channel,
        "template": row.template,
        "status": row.status,
        "status_reason": row.status_reason,
        "hold_reason": row.hold_reason,
        "rule": row.rule,
        "send_at": _iso(row.send_at),
        "due_by": _iso(row.due_by),
        "seconds_left": left,
        "informed_at": _iso(row.informed_at),
        "created_at": _iso(row.created_at),
    }


async def survivor_page(
    session: AsyncSession, survivor_id: int, now: datetime
) -> dict[str, Any] | None:
    survivor = await session.get(m.Survivor, survivor_id)
    if survivor is None:
        return None
    cases = (await _cases_of(session, [survivor_id]))[survivor_id]
    pref = (await current_preferences(session, [survivor_id])).get(survivor_id)
    advocate = (await current_advocates(session, [survivor_id], now)).get(survivor_id)
    versions = (
        await session.scalars(
            select(m.ContactPreference)
            .where(m.ContactPreference.survivor_id == survivor_id)
            .order_by(m.ContactPreference.version.desc())
        )
    ).all()
    held = (
        await session.scalars(
            select(m.Notification)
            .where(
                m.Notification.survivor_id == survivor_id,
                m.Notification.recipient_role == "survivor",
                m.Notification.status == Status.HELD,
            )
            .order_by(m.Notification.due_by)
        )
    ).all()
    return {
        "survivor_id": survivor.id,
        "name": name_of(survivor),
        "full_name": survivor.full_name,
        "consent_to_referral": survivor.consent_to_referral,
        "cases": [
            {
                "id": c.id,
                "urn": c.urn,
                "status": c.status,
                "closed_at": _iso(c.closed_at),
                "enhanced_rights": c.enhanced_rights,
            }
            for c in cases
        ],
        "advocate": advocate.display_name if advocate else None,
        "preferences": preference_dict(pref),
        "unreachable": unreachable(pref, now.date()),
        "history": [
            {
                "version": v.version,
                "recorded_at": _iso(v.recorded_at),
                "recorded_by": v.recorded_by,
                "reason_code": v.reason_code,
            }
            for v in versions
        ],
        "held": [notification_dict(n, now) for n in held],
    }


async def timeline(session: AsyncSession, survivor_id: int, now: datetime) -> list[dict[str, Any]]:
    """Every event, decision, message and delivery step on the survivor's cases, oldest first,
    each with the rule that made it. Other survivors' messages on a shared case are left out."""
    case_ids = [c.id for c in (await _cases_of(session, [survivor_id]))[survivor_id]]
    if not case_ids:
        return []
    items: list[dict[str, Any]] = []
    urns = dict(
        (await session.execute(select(m.Case.id, m.Case.urn).where(m.Case.id.in_(case_ids)))).all()
    )
    events = (
        await session.scalars(select(m.CaseEvent).where(m.CaseEvent.urn.in_(list(urns.values()))))
    ).all()
    for e in events:
        items.append(
            {
                "at": _iso(e.event_time),
                "kind": "event",
                "what": e.type,
                "detail": f"from {e.source}",
                "rule": e.rules_version,
                "ref": str(e.id),
            }
        )
    decisions = (
        await session.scalars(
            select(m.DecisionRow).where(
                m.DecisionRow.case_id.in_(case_ids),
                (m.DecisionRow.survivor_id == survivor_id) | m.DecisionRow.survivor_id.is_(None),
            )
        )
    ).all()
    for d in decisions:
        items.append(
            {
                "at": _iso(d.decided_at),
                "kind": "decision",
                "what": f"{d.outcome} to {d.recipient_role}",
                "detail": " · ".join(x for x in (d.channel, d.template, d.hold_reason) if x),
                "rule": d.rule,
                "ref": d.notification_id,
            }
        )
    rows = (
        await session.scalars(
            select(m.Notification).where(
                m.Notification.case_id.in_(case_ids),
                (m.Notification.survivor_id == survivor_id) | m.Notification.survivor_id.is_(None),
            )
        )
    ).all()
    ids = [n.id for n in rows]
    for n in rows:
        items.append(
            {
                "at": _iso(n.updated_at),
                "kind": "message",
                "what": f"{n.template} to {n.recipient_role}: {n.status}",
                "detail": n.status_reason or n.hold_reason or "",
                "rule": n.rule,
                "ref": n.id,
            }
        )
    if ids:
        attempts = (
            await session.scalars(
                select(m.DeliveryAttempt).where(m.DeliveryAttempt.notification_id.in_(ids))
            )
        ).all()
        for a in attempts:
            items.append(
                {
                    "at": _iso(a.finished_at or a.started_at),
                    "kind": "delivery",
                    "what": f"attempt {a.attempt_no} by {a.channel}: {a.outcome or 'in progress'}",
                    "detail": " ".join(
                        x for x in (a.provider_status, a.provider_code, a.error_code) if x
                    ),
                    "rule": None,
                    "ref": a.notification_id,
                }
            )
    items.sort(key=lambda x: (x["at"] or "", x["kind"]))
    return items


async def operations(session: AsyncSession, now: datetime) -> dict[str, Any]:
    """What operations need to keep carehub healthy, with no personal data: rejected records,
    events parked for want of their case, and deliveries that failed or are in doubt."""
    from datetime import timedelta

    from services.core.domain import EventStatus
    from services.core.rejected import describe, list_rejected

    rejected = [describe(r) for r in await list_rejected(session, limit=200)]
    parked = (
        await session.scalars(
            select(m.CaseEvent)
            .where(m.CaseEvent.status == EventStatus.AWAITING_CONTEXT)
            .order_by(m.CaseEvent.received_at)
            .limit(200)
        )
    ).all()
    failed = (
        await session.scalars(
            select(m.Notification)
            .where(
                # In literals: the condition of `ix_notifications_failed_at`.
                m.Notification.status.in_([literal_column(f"'{s}'") for s in m.FAILED]),
                m.Notification.updated_at >= now - timedelta(days=14),
            )
            .order_by(m.Notification.updated_at.desc())
            .limit(200)
        )
    ).all()
    return {
        "rejected": rejected,
        "parked": [
            {
                "id": e.id,
                "source": e.source,
                "event_id": e.event_id,
                "type": e.type,
                "received_at": _iso(e.received_at),
            }
            for e in parked
        ],
        "failed": [
            {
                "id": n.id,
                "recipient_role": n.recipient_role,
                "channel": n.channel,
                "template": n.template,
                "status": n.status,
                "reason": n.status_reason,
                "at": _iso(n.updated_at),
            }
            for n in failed
        ],
    }


async def team_view(
    session: AsyncSession, survivor_ids: list[int], now: datetime, at_risk_hours: int = 24
) -> dict[str, Any]:
    """Demand and provision for a supervisor: survivors per advocate, holds waiting, deadlines at
    risk, and survivors no channel can reach (counts; names only of their own team)."""
    from datetime import timedelta

    advocates = await current_advocates(session, survivor_ids, now)
    prefs = await current_preferences(session, survivor_ids)
    rows = (
        (
            await session.scalars(
                select(m.Notification).where(
                    m.Notification.survivor_id.in_(survivor_ids),
                    m.Notification.recipient_role == "survivor",
                    m.Notification.status.in_(OPEN),
                )
            )
        ).all()
        if survivor_ids
        else []
    )
    soon = now + timedelta(hours=at_risk_hours)
    per: dict[str, dict[str, Any]] = {}
    for survivor_id in survivor_ids:
        advocate = advocates.get(survivor_id)
        key = advocate.display_name if advocate else "Nobody (the supervisor stands in)"
        line = per.setdefault(
            key, {"advocate": key, "survivors": 0, "held": 0, "at_risk": 0, "unreachable": 0}
        )
        line["survivors"] += 1
        line["unreachable"] += int(unreachable(prefs.get(survivor_id), now.date()))
        for n in rows:
            if n.survivor_id != survivor_id:
                continue
            line["held"] += int(n.status == Status.HELD)
            line["at_risk"] += int(n.due_by is not None and n.due_by <= soon)
    lines = sorted(per.values(), key=lambda x: (-x["at_risk"], -x["held"], x["advocate"]))
    totals = {k: sum(x[k] for x in lines) for k in ("survivors", "held", "at_risk", "unreachable")}
    return {"lines": lines, "totals": totals, "at_risk_hours": at_risk_hours}


async def subject_access(session: AsyncSession, survivor_id: int) -> dict[str, Any] | None:
    """Everything carehub holds about one survivor, for a UK GDPR subject access request.

    Case event payloads are listed (type, source, time) but not copied: they can name other
    people (other victims, suspects), so a person redacts those from the source systems' copies.
    """
    survivor = await session.get(m.Survivor, survivor_id)
    if survivor is None:
        return None
    links = (
        await session.execute(
            select(m.CaseSurvivor, m.Case)
            .join(m.Case, m.Case.id == m.CaseSurvivor.case_id)
            .where(m.CaseSurvivor.survivor_id == survivor_id)
        )
    ).all()
    assignments = (
        await session.execute(
            select(m.AdvocateAssignment, m.Advocate)
            .join(m.Advocate, m.Advocate.id == m.AdvocateAssignment.advocate_id)
            .where(m.AdvocateAssignment.survivor_id == survivor_id)
            .order_by(m.AdvocateAssignment.valid_from)
        )
    ).all()
    versions = (
        await session.scalars(
            select(m.ContactPreference)
            .where(m.ContactPreference.survivor_id == survivor_id)
            .order_by(m.ContactPreference.version)
        )
    ).all()
    notes = (
        await session.scalars(
            select(m.Notification)
            .where(m.Notification.survivor_id == survivor_id)
            .order_by(m.Notification.created_at)
        )
    ).all()
    ids = [n.id for n in notes]
    attempts = (
        (
            await session.scalars(
                select(m.DeliveryAttempt)
                .where(m.DeliveryAttempt.notification_id.in_(ids))
                .order_by(m.DeliveryAttempt.id)
            )
        ).all()
        if ids
        else []
    )
    actions = (
        (
            await session.scalars(
                select(m.AdvocateAction).where(m.AdvocateAction.notification_id.in_(ids))
            )
        ).all()
        if ids
        else []
    )
    urns = [case.urn for _link, case in links]
    events = (
        (
            await session.scalars(
                select(m.CaseEvent).where(m.CaseEvent.urn.in_(urns)).order_by(m.CaseEvent.id)
            )
        ).all()
        if urns
        else []
    )
    inbound = [
        row
        for row in (await session.scalars(select(m.InboundMessage))).all()
        if survivor_id in (row.survivor_ids or [])
    ]
    return {
        "survivor": {
            "id": survivor.id,
            "full_name": survivor.full_name,
            "preferred_name": survivor.preferred_name,
            "date_of_birth": survivor.date_of_birth,
            "consent_to_referral": survivor.consent_to_referral,
            "created_at": _iso(survivor.created_at),
            "erased_at": _iso(survivor.erased_at),
        },
        "cases": [
            {
                "urn": case.urn,
                "relationship": link.relationship,
                "offence_category": case.offence_category,
                "status": case.status,
                "opened_at": _iso(case.opened_at),
                "closed_at": _iso(case.closed_at),
            }
            for link, case in links
        ],
        "advocates": [
            {
                "name": advocate.display_name,
                "from": _iso(a.valid_from),
                "to": _iso(a.valid_to),
                "reason": a.reason,
            }
            for a, advocate in assignments
        ],
        "contact_preferences": [
            {**(preference_dict(v) or {}), "reason_note": v.reason_note} for v in versions
        ],
        "case_events": [
            {"type": e.type, "source": e.source, "time": _iso(e.event_time)} for e in events
        ],
        "messages": [
            {
                **{
                    k: v
                    for k, v in notification_dict(n, n.updated_at).items()
                    if k != "seconds_left"
                },
                "sent_at": _iso(n.sent_at),
                "attempts": [
                    {
                        "attempt": a.attempt_no,
                        "channel": a.channel,
                        "started_at": _iso(a.started_at),
                        "outcome": a.outcome,
                        "to": a.to_address,
                        "subject": a.subject,
                        "body": a.body,
                    }
                    for a in attempts
                    if a.notification_id == n.id
                ],
                "advocate_actions": [
                    {
                        "action": x.action,
                        "requested_at": _iso(x.requested_at),
                        "reason": x.reason_code,
                        "note": x.note,
                        "outcome": x.outcome,
                    }
                    for x in actions
                    if x.notification_id == n.id
                ],
            }
            for n in notes
        ],
        "texts_received": [
            {
                "received_at": _iso(i.received_at),
                "from": i.from_address,
                "body": i.body,
                "kind": i.kind,
            }
            for i in inbound
        ],
    }
