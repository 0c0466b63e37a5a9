"""E-mail through the SMTP channel to a real aiosmtpd server, on the real broker and database:
delivered, and ambiguous (the server went away after the message data): never resent blindly,
a person is told instead."""

from __future__ import annotations

import email
import email.policy
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select
from structlog.testing import capture_logs

from services.cli import SERVICES
from services.core.db import models as m
from services.core.embedded_broker import EmbeddedBroker, free_port
from services.core.runner import running_stack
from tests.integration.test_pipeline import seed_team
from tests.integration.test_twilio_delivery import post_event, until, with_email

SURVIVOR = "casey@example.org"
SUPERVISOR = "sam.supervisor@example.org"


class Mailbox:
    """Accepts everything, except that it can drop the connection after a survivor's data."""

    def __init__(self) -> None:
        self.received: list[tuple[list[str], email.message.EmailMessage]] = []
        self.drop_for: set[str] = set()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.drop_for & set(envelope.rcpt_tos):
            server.transport.close()  # the data arrived; the reply never comes
            return "250 OK"
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, email.message.EmailMessage)
        self.received.append((list(envelope.rcpt_tos), message))
        return "250 OK"


@pytest.fixture
async def email_stack(
    make_settings: Any, pg_url: str, broker: EmbeddedBroker
) -> AsyncIterator[tuple[Any, Mailbox]]:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        settings = make_settings(
            database_url=pg_url,
            kafka_bootstrap=broker.bootstrap,
            email_channel="smtp",
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_security="none",
            smtp_from="updates@example.org",
            smtp_timeout_s=2,
        )
        async with running_stack(settings, list(SERVICES.values()), own_broker=False) as stack:
            yield stack, mailbox
    finally:
        controller.stop()


def no_text(event: dict[str, Any]) -> dict[str, Any]:
    event["data"]["victims"][0]["contact"]["safe_to_text"] = False
    return event


async def statuses(stack: Any) -> dict[tuple[str, str], m.Notification]:
    async with stack.runtime.sessions() as session:
        rows = (await session.scalars(select(m.Notification))).all()
    return {(r.recipient_role, r.template): r for r in rows}


async def test_emails_reach_the_server_as_text_and_html(
    email_stack: tuple[Any, Mailbox],
) -> None:
    stack, mailbox = email_stack
    await seed_team(stack)
    await post_event(stack, no_text(with_email(_event("e1"))))
    await until(lambda: _count(mailbox, 2))
    by_to = {to[0]: message for to, message in mailbox.received}
    welcome = by_to[SURVIVOR]
    assert welcome["From"] == "Care Hub <updates@example.org>"
    text = welcome.get_body(("plain",))
    html = welcome.get_body(("html",))
    assert text is not None and html is not None
    assert "Casey" in text.get_content() and "Casey" in html.get_content()
    assert "sam.supervisor@example.org" in by_to

    async def recorded() -> dict[tuple[str, str], m.Notification]:
        # The server has the message a moment before the notifier has recorded it.
        rows = await statuses(stack)
        welcome = rows.get(("survivor", "survivor_welcome"))
        return rows if welcome is not None and welcome.status != "sending" else {}

    rows = await until(recorded)
    survivor = rows[("survivor", "survivor_welcome")]
    assert survivor.channel == "email" and survivor.status == "sent"
    assert survivor.informed_at is not None  # accepted by the server: the best SMTP can say


async def test_an_ambiguous_email_is_never_resent_and_the_advocate_is_told(
    email_stack: tuple[Any, Mailbox],
) -> None:
    stack, mailbox = email_stack
    mailbox.drop_for = {SURVIVOR}
    await seed_team(stack)
    await post_event(stack, no_text(with_email(_event("a1"))))

    async def told() -> dict[tuple[str, str], m.Notification]:
        rows = await statuses(stack)
        task = rows.get(("supervisor", "advocate_pass_on_update"))
        return rows if task is not None and task.status == "sent" else {}

    rows = await until(told)
    survivor = rows[("survivor", "survivor_welcome")]
    assert (survivor.status, survivor.status_reason) == ("unknown", "delivery_unknown")
    assert survivor.attempts == 1
    assert all(SURVIVOR not in to for to, _ in mailbox.received)
    task = next(msg for to, msg in mailbox.received if "Update to pass on" in msg["Subject"])
    body = task.get_body(("plain",))
    assert body is not None and "may or may not have reached them" in body.get_content()


async def test_an_advocates_ambiguous_email_is_not_resent_and_operations_are_warned(
    email_stack: tuple[Any, Mailbox],
) -> None:
    """An advocate's own e-mail that may or may not have arrived has nobody else to go to: it is
    left `unknown`, not sent again, and operations get a warning naming the notification."""
    stack, mailbox = email_stack
    mailbox.drop_for = {SUPERVISOR}
    with capture_logs() as logs:
        await seed_team(stack)
        await post_event(stack, no_text(with_email(_event("s1"))))

        async def settled() -> dict[tuple[str, str], m.Notification]:
            rows = await statuses(stack)
            done = [r for r in rows.values() if r.status not in ("scheduled", "queued", "sending")]
            return rows if len(done) == len(rows) == 2 else {}

        rows = await until(settled)
    staff = next(row for (role, _), row in rows.items() if role != "survivor")
    assert (staff.status, staff.status_reason) == ("unknown", "delivery_unknown")
    assert staff.attempts == 1
    assert rows[("survivor", "survivor_welcome")].status == "sent"
    warned = [e for e in logs if e["event"] == "notification.staff_delivery_unknown"]
    assert [(e["log_level"], e["notification_id"]) for e in warned] == [("warning", staff.id)]
    assert all(SUPERVISOR not in to for to, _ in mailbox.received)


def _event(event_id: str) -> dict[str, Any]:
    from tests.integration.test_pipeline import crime_recorded

    return crime_recorded("01AB1234524", event_id)


async def _count(mailbox: Mailbox, n: int) -> bool:
    return len(mailbox.received) >= n
