"""The letter channel (`letter_task`): a letter queued for a person to print and post.

Handing a letter over stores it, laid out for a window envelope as plain text and as HTML with
the same words (`services.core.rendering.render_letter`), with the address, in `letter_tasks`:
one row per notification. A second hand-over of the same notification (a redelivered record, an
attempt resumed after a crash) finds the row the first one stored and stores nothing, so a
survivor is never sent the same letter twice. The notification becomes `sent` (queued for
post); it counts as delivered, and the survivor as informed, only once staff mark the letter
posted (`services.core.letters.mark_posted`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.db import models as m
from services.core.rendering import TemplateError, render_letter
from services.core.wording import letter_date
from services.notifier.channels.base import (
    OutgoingMessage,
    PermanentFailure,
    SendResult,
    TemporaryFailure,
)

PROVIDER_STATUS = "queued_for_post"


class LetterChannel:
    name = "letter_task"
    # What it stored can be looked up, so a cut-off attempt is found, never stored twice.
    verifiable = True
    finds_by_words = False

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def send(self, message: OutgoingMessage, now: datetime) -> SendResult:
        try:
            document = render_letter(
                message.subject or "",
                message.body,
                message.to,
                letter_date(now, message.language),
                message.language,
            )
        except TemplateError as exc:
            raise PermanentFailure("letter_layout") from exc
        try:
            async with self.sessions.begin() as session:
                stored = await self._stored(session, message.notification_id)
                if stored is None:
                    stored = m.LetterTask(
                        notification_id=message.notification_id,
                        subject=message.subject or "",
                        body_text=document.text,
                        body_html=document.html,
                        address=message.to,
                        created_at=now,
                    )
                    session.add(stored)
                at = stored.created_at
        except IntegrityError:
            # Another attempt stored it between our look and our insert: that one stands.
            found = await self._find(message.notification_id)
            if found is None:
                raise TemporaryFailure("letter_store") from None
            at = found.created_at
        except DBAPIError as exc:
            # The database is where a letter is "sent": its outage is a provider's outage.
            raise TemporaryFailure("letter_store") from exc
        return self._result(message.notification_id, at)

    async def lookup(self, message: OutgoingMessage, since: datetime) -> list[SendResult]:
        stored = await self._find(message.notification_id)
        return [] if stored is None else [self._result(message.notification_id, stored.created_at)]

    async def _find(self, notification_id: str) -> m.LetterTask | None:
        try:
            async with self.sessions() as session:
                return await self._stored(session, notification_id)
        except DBAPIError as exc:
            raise TemporaryFailure("letter_store") from exc

    async def close(self) -> None:
        return None

    @staticmethod
    async def _stored(session: AsyncSession, notification_id: str) -> m.LetterTask | None:
        return await session.scalar(
            select(m.LetterTask).where(m.LetterTask.notification_id == notification_id)
        )

    @staticmethod
    def _result(notification_id: str, at: datetime) -> SendResult:
        # Queued for post is not delivery: nobody has read it yet (no informed_at).
        return SendResult(
            provider_ref=f"letter:{notification_id}",
            delivered=False,
            at=at,
            provider_status=PROVIDER_STATUS,
        )
