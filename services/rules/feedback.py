"""Feedback: one short, optional question after a key stage ("how well have we kept you up to
date?"), for survivors who said yes to it. Victim satisfaction is how London holds its police to
account; the answers feed the compliance report's quarterly satisfaction figure.

The dispatcher asks (`ask_for_feedback`), gently:
- only survivors whose current preferences have `feedback_opt_in`, who have not opted out or
  chosen no updates, and who have a channel that is safe today;
- only about a key-stage message they were actually told (`informed_at`), at least
  `ASK_AFTER` later, so the question never arrives on the heels of the news;
- never about distressing news (held for the advocate first): a satisfaction question after "no
  further action" would be cold, and an advocate can ask in person;
- at most once every `QUIET_BETWEEN` per survivor, and never twice about one message.

The question is an ordinary survivor notification (`survivor_feedback_question`), so quiet
hours, safe channels and the last look apply to it as to any other. A survivor answers by
texting a number from 1 to 5 (services.notifier.providers) or through their own link
(`feedback_url`, the portal's /feedback page), within `ANSWER_WITHIN`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from services.core import audit
from services.core.calendar import london_date
from services.core.db import models as m
from services.core.db.queries import current_preferences, survivor_told, to_domain_preference
from services.core.domain import notification_id, safe_channel
from services.core.feedback import ANSWER_WITHIN, TEMPLATE, TOLD
from services.core.logs import get_logger
from services.core.rendering import catalogue
from services.core.runtime import Runtime
from services.core.states import Status
from services.rules.ruleset import RuleSet
from services.rules.timing import next_safe_time

ACTOR = "dispatcher"
RULE_ID = "feedback.question"
ASK_AFTER = timedelta(days=7)
LOOK_BACK = timedelta(days=21)  # a key stage older than this is not asked about any more
QUIET_BETWEEN = timedelta(days=90)
log = get_logger(ACTOR)


async def ask_for_feedback(rt: Runtime, rules: RuleSet, *, limit: int = 200) -> int:
    """Create the feedback questions due now; return how many."""
    now = rt.clock.now()
    key_stages = {t for t, rule in rules.events.items() if rule.key_stage}
    distressing_template = rules.distressing.survivor
    # Who can be asked at all is asked in SQL too: the look-back holds every survivor's told
    # messages, oldest first, and with those of survivors who did not say yes, or were asked
    # lately, filling the page, the others would only be reached at the end of the look-back.
    chosen, newer = aliased(m.ContactPreference), aliased(m.ContactPreference)
    said_yes = (
        select(chosen.id)
        .where(
            chosen.survivor_id == m.Notification.survivor_id,
            chosen.feedback_opt_in.is_(True),
            chosen.opted_out.is_(False),
            ~select(newer.id)
            .where(newer.survivor_id == chosen.survivor_id, newer.version > chosen.version)
            .exists(),
        )
        .exists()
    )
    asked_recently = (
        select(m.FeedbackQuestion.id)
        .where(
            m.FeedbackQuestion.survivor_id == m.Notification.survivor_id,
            m.FeedbackQuestion.asked_at > now - QUIET_BETWEEN,
        )
        .exists()
    )
    async with rt.sessions.begin() as session:
        told = (
            await session.execute(
                select(m.Notification, m.CaseEvent.type)
                .join(m.CaseEvent, m.CaseEvent.id == m.Notification.case_event_id)
                .where(
                    survivor_told(),  # `ix_notifications_survivor_informed_at`
                    m.Notification.status.in_(TOLD),
                    m.Notification.informed_at <= now - ASK_AFTER,
                    m.Notification.informed_at > now - LOOK_BACK,
                    m.Notification.template != TEMPLATE,
                    m.Notification.template != distressing_template,
                    m.Notification.hold_reason.is_(None),
                    m.CaseEvent.type.in_(sorted(key_stages)),
                    said_yes,
                    ~asked_recently,
                )
                .order_by(m.Notification.informed_at)
                .limit(limit * 5)
            )
        ).all()
        survivor_ids = sorted({n.survivor_id for n, _t in told if n.survivor_id is not None})
        prefs = await current_preferences(session, survivor_ids)
        asked_lately = set(
            await session.scalars(
                select(m.FeedbackQuestion.survivor_id).where(
                    m.FeedbackQuestion.survivor_id.in_(survivor_ids),
                    m.FeedbackQuestion.asked_at > now - QUIET_BETWEEN,
                )
            )
        )
        made = 0
        for row, event_type in told:
            if made >= limit:
                break
            sid = row.survivor_id
            if sid is None or sid in asked_lately:
                continue
            pref = prefs.get(sid)
            if pref is None or not pref.feedback_opt_in or pref.opted_out:
                continue
            if pref.frequency == "none":
                continue
            domain = to_domain_preference(pref)
            send_at = next_safe_time(now, domain)
            channel = safe_channel(domain, london_date(send_at))
            if channel is None:
                continue  # no safe digital channel: an advocate can ask in person
            await _ask(session, rules, row, event_type, channel.value, pref, send_at, now)
            asked_lately.add(sid)
            made += 1
    if made:
        log.info("feedback.asked", questions=made)
    return made


async def _ask(
    session: AsyncSession,
    rules: RuleSet,
    about: m.Notification,
    event_type: str,
    channel: str,
    pref: m.ContactPreference,
    send_at: datetime,
    now: datetime,
) -> None:
    assert about.survivor_id is not None
    rule = rules.rule_name(RULE_ID)
    nid = notification_id(about.event_source, about.event_id, f"survivor:{about.survivor_id}", rule)
    if await session.get(m.Notification, nid) is not None:
        return
    question = m.FeedbackQuestion(
        survivor_id=about.survivor_id,
        case_id=about.case_id,
        about_notification_id=about.id,
        question_notification_id=nid,
        event_type=event_type,
        asked_at=now,
        expires_at=now + ANSWER_WITHIN,
    )
    session.add(question)
    session.add(
        m.Notification(
            id=nid,
            case_event_id=about.case_event_id,
            case_id=about.case_id,
            event_source=about.event_source,
            event_id=about.event_id,
            recipient_role="survivor",
            survivor_id=about.survivor_id,
            channel=channel,
            language=pref.language,
            detail=pref.detail,
            template=TEMPLATE,
            template_version=catalogue()[TEMPLATE].version,
            rules_version=rules.version,
            rule=rule,
            status=Status.SCHEDULED.value,
            status_reason="feedback",
            related_id=about.id,
            send_at=send_at,
            created_at=now,
            updated_at=now,
        )
    )
    await session.flush()
    audit.record(
        session,
        at=now,
        actor=ACTOR,
        action="feedback.asked",
        case_id=about.case_id,
        notification_id=nid,
        rule=rule,
        feedback_question_id=question.id,
        about=about.id,
    )
