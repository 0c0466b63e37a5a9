"""The SMTP channel against a real SMTP server (aiosmtpd on 127.0.0.1): what arrives, and how
every kind of refusal, drop and timeout maps onto Permanent/Temporary/Ambiguous failures.
All data is fake: addresses at example.org."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from services.core.embedded_broker import free_port
from services.notifier.channels.base import (
    AmbiguousFailure,
    ChannelFailure,
    OutgoingMessage,
    PermanentFailure,
    TemporaryFailure,
)
from services.notifier.channels.smtp import SmtpChannel

NOW = datetime(2026, 11, 18, 11, 0, tzinfo=UTC)
SURVIVOR = "survivor.test@example.org"
SENDER = "no-reply@example.org"

MESSAGE = OutgoingMessage(
    notification_id="6f1c2f0e-9a51-5c8e-b1d4-0f6a1b2c3d4e",
    event_id="evt-0001",
    case_urn="urn:carehub:case:TEST-0001",
    recipient_role="survivor",
    channel="email",
    to=SURVIVOR,
    language="cy",
    template="case_update",
    template_version=1,
    subject="Diweddariad ŵ ŷ",
    body=(
        "Helo,\n\nMae gennym ddiweddariad ŵ ŷ.\nLine two <script>alert(1)</script>\n\n"
        'Template text {{ x }} & "quotes" stay literal.\n'
    ),
    send_at=None,
    due_by=None,
)


class Recorder:
    """An aiosmtpd handler that stores what it accepts and can be told to misbehave."""

    def __init__(self) -> None:
        self.envelopes: list[tuple[str, list[str], bytes]] = []
        self.rcpt_reply: str | None = None
        self.rcpt_drop = False
        self.data_reply = "250 OK"
        self.data_mode = "reply"  # "reply" | "drop" | "sleep"
        self.authenticated: list[bool | None] = []

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if self.rcpt_drop:
            server.transport.close()
            return "250 OK"
        if self.rcpt_reply is not None:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.authenticated.append(session.authenticated)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        if self.data_mode == "drop":
            # The content has arrived; the connection goes before any reply.
            server.transport.close()
        elif self.data_mode == "sleep":
            await asyncio.sleep(1.0)
        return self.data_reply


ServerFactory = Callable[..., tuple[Recorder, int]]


@pytest.fixture
def smtp_server() -> Iterator[ServerFactory]:
    """Starts aiosmtpd servers on free ports; stops them all afterwards."""
    controllers: list[Controller] = []

    def start(**kwargs: Any) -> tuple[Recorder, int]:
        handler = Recorder()
        port = free_port()
        controller = Controller(
            handler,
            hostname="127.0.0.1",
            port=port,
            server_hostname="mx.example.org",
            **kwargs,
        )
        controller.start()
        controllers.append(controller)
        return handler, port

    yield start
    for controller in controllers:
        controller.stop()


def channel(port: int, **kwargs: Any) -> SmtpChannel:
    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "sender": SENDER,
        "security": "none",
        "timeout_s": 1.0,
        "data_timeout_s": 1.0,
        "local_hostname": "client.example.org",
    }
    options.update(kwargs)
    return SmtpChannel(**options)


def parsed(content: bytes) -> EmailMessage:
    message = email.message_from_bytes(content, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def part(message: EmailMessage, subtype: str) -> str:
    body = message.get_body((subtype,))
    assert body is not None and body.get_content_type() == f"text/{subtype}"
    content = body.get_content()
    assert isinstance(content, str)
    return content


async def test_delivers_text_and_html_with_neutral_headers(smtp_server: ServerFactory) -> None:
    handler, port = smtp_server()
    result = await channel(port).send(MESSAGE, NOW)

    assert result.provider_ref == "<6f1c2f0e-9a51-5c8e-b1d4-0f6a1b2c3d4e@example.org>"
    assert result.delivered is False
    assert result.at == NOW
    assert result.provider_status == "250 OK"

    [(mail_from, rcpt_tos, content)] = handler.envelopes
    assert mail_from == SENDER
    assert rcpt_tos == [SURVIVOR]
    message = parsed(content)
    assert message.get_content_type() == "multipart/alternative"
    assert message["From"] == f"Care Hub <{SENDER}>"
    assert message["From"].addresses[0].display_name == "Care Hub"
    assert message["To"] == SURVIVOR
    assert message["Subject"] == "Diweddariad ŵ ŷ"
    assert message["Message-ID"] == result.provider_ref
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Date"].datetime == NOW
    assert message["Content-Language"] == "cy"

    text = part(message, "plain")
    assert "Mae gennym ddiweddariad ŵ ŷ." in text
    assert "<script>alert(1)</script>" in text  # the text part is the body as written

    page = part(message, "html").replace("\r\n", "\n")
    assert '<html lang="cy">' in page
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "{{ x }} &amp; &quot;quotes&quot; stay literal." in page
    assert "ddiweddariad ŵ ŷ.<br>\nLine two" in page
    assert page.count("<p ") == 3
    assert "<img" not in page and "http" not in page.replace("http-equiv", "")
    # Seven-bit on the wire: no reliance on 8BITMIME or SMTPUTF8.
    assert content.isascii()


async def test_message_id_is_the_same_on_every_attempt(smtp_server: ServerFactory) -> None:
    handler, port = smtp_server()
    smtp = channel(port)
    first = await smtp.send(MESSAGE, NOW)
    second = await smtp.send(MESSAGE, NOW)
    assert first.provider_ref == second.provider_ref
    ids = {parsed(content)["Message-ID"] for _, _, content in handler.envelopes}
    assert ids == {first.provider_ref}
    assert await smtp.lookup(MESSAGE, NOW) == []
    await smtp.close()


async def test_missing_subject_gets_a_neutral_default(smtp_server: ServerFactory) -> None:
    handler, port = smtp_server()
    await channel(port).send(replace(MESSAGE, subject=None, language="en"), NOW)
    message = parsed(handler.envelopes[0][2])
    assert message["Subject"] == "A message from Care Hub"
    assert '<html lang="en">' in part(message, "html")


async def test_recipient_refused_is_permanent_without_the_address(
    smtp_server: ServerFactory,
) -> None:
    handler, port = smtp_server()
    handler.rcpt_reply = f"550 5.1.1 <{SURVIVOR}>: Recipient address rejected"
    with pytest.raises(PermanentFailure) as caught:
        await channel(port).send(MESSAGE, NOW)
    failure = caught.value
    assert failure.code == "rejected"
    assert failure.provider_code == "550"
    assert failure.provider_status == "550 5.1.1 <[address]>: Recipient address rejected"
    assert str(failure) == "rejected"
    assert failure.__context__ is None and failure.__cause__ is None
    assert handler.envelopes == []


async def test_recipient_deferred_is_temporary(smtp_server: ServerFactory) -> None:
    handler, port = smtp_server()
    handler.rcpt_reply = "451 4.7.1 Greylisted, try again later"
    with pytest.raises(TemporaryFailure) as caught:
        await channel(port).send(MESSAGE, NOW)
    assert caught.value.code == "deferred"
    assert caught.value.provider_code == "451"
    assert caught.value.provider_status == "451 4.7.1 Greylisted, try again later"


@pytest.mark.parametrize(
    ("reply", "kind", "code"),
    [
        ("554 5.7.1 Message rejected as spam", PermanentFailure, "rejected"),
        ("452 4.3.1 Insufficient system storage", TemporaryFailure, "deferred"),
    ],
)
async def test_reply_to_the_content_maps_by_class(
    smtp_server: ServerFactory, reply: str, kind: type[ChannelFailure], code: str
) -> None:
    handler, port = smtp_server()
    handler.data_reply = reply
    with pytest.raises(kind) as caught:
        await channel(port).send(MESSAGE, NOW)
    assert type(caught.value) is kind
    assert caught.value.code == code
    assert caught.value.provider_code == reply[:3]


async def test_nothing_listening_is_temporary() -> None:
    with pytest.raises(TemporaryFailure) as caught:
        await channel(free_port()).send(MESSAGE, NOW)
    assert caught.value.code == "connect_failed"
    assert str(caught.value) == "connect_failed"


async def test_drop_before_the_content_is_temporary(smtp_server: ServerFactory) -> None:
    handler, port = smtp_server()
    handler.rcpt_drop = True
    with pytest.raises(TemporaryFailure) as caught:
        await channel(port).send(MESSAGE, NOW)
    assert caught.value.code == "disconnected"
    assert handler.envelopes == []


async def test_drop_after_the_content_is_ambiguous(smtp_server: ServerFactory) -> None:
    handler, port = smtp_server()
    handler.data_mode = "drop"
    with pytest.raises(AmbiguousFailure) as caught:
        await channel(port).send(MESSAGE, NOW)
    assert caught.value.code == "ambiguous"
    assert len(handler.envelopes) == 1  # the server did get the message


async def test_no_reply_to_the_content_in_time_is_ambiguous(smtp_server: ServerFactory) -> None:
    handler, port = smtp_server()
    handler.data_mode = "sleep"
    with pytest.raises(AmbiguousFailure) as caught:
        await channel(port, data_timeout_s=0.3).send(MESSAGE, NOW)
    assert caught.value.code == "ambiguous"
    assert len(handler.envelopes) == 1


@pytest.mark.parametrize(
    "to",
    [
        f"{SURVIVOR}\r\nBcc: other@example.org",
        f"{SURVIVOR}\nBcc: other@example.org",
        f"{SURVIVOR}\x00",
        f"Jane Example <{SURVIVOR}>",
        f"{SURVIVOR}, other@example.org",
        f"<{SURVIVOR}>",
        f" {SURVIVOR}",
        "survivor.test@example.org SIZE=1",
        "not-an-address",
        "two@@example.org",
        "dots..here@example.org",
        "survivor@localhost",
        "survivor@example",
        "",
    ],
)
async def test_bad_recipient_is_refused_before_connecting(to: str) -> None:
    # Nothing listens on this port: a connection attempt would fail with `connect_failed`.
    with pytest.raises(PermanentFailure) as caught:
        await channel(free_port()).send(replace(MESSAGE, to=to), NOW)
    assert caught.value.code == "invalid_address"
    assert str(caught.value) == "invalid_address"


@pytest.mark.parametrize(
    "subject",
    ["Update\r\nBcc: other@example.org", "Update\nX-Evil: 1", "Update\rX", "Tab\there", "NEL\x85"],
)
async def test_bad_subject_is_refused_before_connecting(subject: str) -> None:
    with pytest.raises(PermanentFailure) as caught:
        await channel(free_port()).send(replace(MESSAGE, subject=subject), NOW)
    assert caught.value.code == "invalid_subject"


async def test_starttls_required_but_not_offered_is_temporary(
    smtp_server: ServerFactory,
) -> None:
    handler, port = smtp_server()
    with pytest.raises(TemporaryFailure) as caught:
        await channel(port, security="starttls").send(MESSAGE, NOW)
    assert caught.value.code == "tls_unavailable"
    assert handler.envelopes == []


def _authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data == (b"relay-user", b"relay-pass")
    # handled=False: aiosmtpd itself answers 535 on failure.
    return AuthResult(success=ok, handled=False)


async def test_auth_login_on_a_loopback_relay(smtp_server: ServerFactory) -> None:
    handler, port = smtp_server(authenticator=_authenticator, auth_require_tls=False)
    await channel(port, username="relay-user", password="relay-pass").send(MESSAGE, NOW)
    assert handler.authenticated == [True]

    with pytest.raises(TemporaryFailure) as caught:
        await channel(port, username="relay-user", password="wrong").send(MESSAGE, NOW)
    assert caught.value.code == "auth_failed"
    assert caught.value.provider_code == "535"
    assert len(handler.envelopes) == 1


def test_constructor_refuses_unsafe_configuration() -> None:
    with pytest.raises(ValueError):
        SmtpChannel(
            host="smtp.example.org", sender=SENDER, security="none", username="u", password="p"
        )
    with pytest.raises(ValueError):
        SmtpChannel(host="smtp.example.org", sender=SENDER, security="ssl")
    with pytest.raises(ValueError):
        SmtpChannel(host="smtp.example.org", sender="Care Hub <no-reply@example.org>")
    smtp = SmtpChannel(host="smtp.example.org", sender=SENDER)
    assert (smtp.name, smtp.verifiable, smtp.security, smtp.port) == (
        "email",
        False,
        "starttls",
        587,
    )
    assert SmtpChannel(host="smtp.example.org", sender=SENDER, security="tls").port == 465
