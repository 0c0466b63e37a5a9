"""Feedback questions, the parts every service shares: the survivor's own answer link, finding
the question a survivor may still answer, and keeping an answer. The dispatcher asks
(services.rules.feedback); the notifier takes texted answers; the portal takes answers through
the link.
"""

from __future__ import annotations

import hmac
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.core import audit
from services.core.db import models as m
from services.core.keys import blind_index
from services.core.states import Status

TEMPLATE = "survivor_feedback_question"
ANSWER_WITHIN = timedelta(days=28)
TOLD = (Status.SENT.value, Status.DELIVERED.value, Status.TOLD_IN_PERSON.value)
SCORES = {
    1: "Badly",
    2: "Not well",
    3: "Partly",
    4: "Well",
    5: "Very well",
}


def link_token(question_id: int) -> str:
    """The secret half of a question's link: a keyed hash of its id (128 bits), so the link
    needs no stored secret and cannot be guessed or forged from another question's."""
    return blind_index(f"feedback-link:{question_id}")[:32]


def link_path(question_id: int) -> str:
    return f"/feedback/{question_id}-{link_token(question_id)}"


def parse_link(ref: str) -> int | None:
    """The question id a link names, if its token is right; else None."""
    head, _, token = ref.partition("-")
    if not head.isdigit() or len(head) > 18 or len(token) != 32:
        return None
    question_id = int(head)
    return question_id if hmac.compare_digest(token, link_token(question_id)) else None


async def open_question_for(
    session: AsyncSession, survivor_ids: list[int], now: datetime
) -> m.FeedbackQuestion | None:
    """The most recent question one of these survivors may still answer (asked, and its
    message went), if any."""
    if not survivor_ids:
        return None
    return await session.scalar(
        select(m.FeedbackQuestion)
        .join(m.Notification, m.Notification.id == m.FeedbackQuestion.question_notification_id)
        .where(
            m.FeedbackQuestion.survivor_id.in_(survivor_ids),
            m.FeedbackQuestion.answered_at.is_(None),
            m.FeedbackQuestion.expires_at > now,
            m.Notification.status.in_(TOLD),
        )
        .order_by(m.FeedbackQuestion.asked_at.desc())
        .limit(1)
        .with_for_update()
    )


def record_answer(
    session: AsyncSession,
    question: m.FeedbackQuestion,
    score: int,
    comment: str | None,
    via: str,
    now: datetime,
) -> None:
    """Keep an answer (the first one only: the caller checks `answered_at`)."""
    question.answered_at, question.score, question.answered_via = now, score, via
    question.comment = comment
    audit.record(
        session,
        at=now,
        actor=f"survivor:{via}",
        action="feedback.answered",
        case_id=question.case_id,
        notification_id=question.question_notification_id,
        feedback_question_id=question.id,
        score=score,
    )
