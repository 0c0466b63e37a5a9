"""The e-mail channel: one SMTP conversation per message, driven step by step with aiosmtplib.

Each `send` opens its own connection (no pooling: a broken connection can never leak into the
next message), walks the conversation one command at a time and knows which phase failed:

* before the message content is on the wire (connect, greeting, EHLO, STARTTLS, AUTH, MAIL,
  RCPT, the DATA command itself): nothing can have been accepted, so a dropped connection or a
  timeout is a `TemporaryFailure` and the message may be sent again;
* after the content was written and before the server's final reply: the server may or may not
  have queued it, and SMTP cannot be asked afterwards (`verifiable = False`), so a drop or a
  timeout is an `AmbiguousFailure`, never resent blindly.

Replies are mapped by phase: a 5xx to MAIL, RCPT or DATA concerns this message and is a
`PermanentFailure`; a 4xx there is a `TemporaryFailure("deferred")`. Any reply before the
envelope (greeting, EHLO, STARTTLS, AUTH) concerns the server or our configuration, not the
message, and is a `TemporaryFailure` whatever its code.

Security defaults to "starttls" (submission on port 587, STARTTLS required, certificates
verified): the message holds personal data and must never cross the network in clear. "tls" is
implicit TLS (port 465); "none" is for a relay on the same host or tests, and refuses credentials
unless the host is a loopback address.

Messages, exceptions and `provider_status` carry codes and SMTP status numbers only: never the
address, the subject or the body (personal data). Server reply text is cut to its first line and
anything that looks like an address is replaced by "[address]".
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import ipaddress
import re
import ssl
import unicodedata
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, parseaddr
from typing import Literal, cast

import aiosmtplib

from services.notifier.channels.base import (
    AmbiguousFailure,
    ChannelFailure,
    OutgoingMessage,
    PermanentFailure,
    SendResult,
    TemporaryFailure,
)

Security = Literal["starttls", "tls", "none"]
DEFAULT_PORTS: dict[str, int] = {"starttls": 587, "tls": 465, "none": 25}
DEFAULT_SENDER_NAME = "Care Hub"
STATUS_LIMIT = 80

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LOCAL_PART = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_ID_SAFE = re.compile(r"[A-Za-z0-9._-]{1,128}")
_LANGUAGE = re.compile(r"[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8})*")
_ADDRESS_LIKE = re.compile(r"[^\s<>()\[\]:;,\"]*@[^\s<>()\[\]:;,\"]*")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}

Phase = Literal["connect", "ehlo", "starttls", "auth", "mail", "rcpt", "data", "content"]
_ENVELOPE_PHASES = ("mail", "rcpt", "data", "content")


class _InvalidAddress(ValueError):
    pass


class _Progress:
    """How far one conversation got, to tell a safe failure from an ambiguous one."""

    def __init__(self) -> None:
        self.phase: Phase = "connect"


def _has_control(text: str) -> bool:
    """C0/C1 controls (CR, LF, NUL, TAB, NEL...), DEL and the Unicode line/paragraph separators."""
    return any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in text)


def _ascii_domain(domain: str) -> str:
    try:
        ascii_domain = domain.encode("idna").decode("ascii") if not domain.isascii() else domain
    except UnicodeError:
        raise _InvalidAddress("domain") from None
    labels = ascii_domain.split(".")
    if (
        len(ascii_domain) > 253
        or len(labels) < 2
        or not all(_LABEL.fullmatch(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise _InvalidAddress("domain")
    return ascii_domain.lower()


def normalise_address(value: str) -> str:
    """One bare, syntactically valid mailbox (`local@domain`) in ASCII, or `_InvalidAddress`.

    Strict on purpose: a dot-atom local part (no quoted strings, no comments, no display name),
    a domain of at least two DNS labels (internationalised domains become IDNA). Whatever could
    smuggle a header or an SMTP parameter (controls, spaces, `<>`, `,`) fails.
    """
    if not value or _has_control(value) or value != value.strip() or len(value) > 254:
        raise _InvalidAddress("address")
    name, parsed = parseaddr(value)
    if name or parsed != value or value.count("@") != 1:
        raise _InvalidAddress("address")
    local, domain = value.split("@")
    if len(local) > 64 or not local.isascii() or not _LOCAL_PART.fullmatch(local):
        raise _InvalidAddress("local")
    address = f"{local}@{_ascii_domain(domain)}"
    try:
        checked = Address(addr_spec=address)
    except (ValueError, IndexError):
        raise _InvalidAddress("address") from None
    if checked.addr_spec != address:
        raise _InvalidAddress("address")
    return address


def message_id_for(notification_id: str, domain: str) -> str:
    """The same Message-ID for every attempt at one notification, to recognise it later."""
    local = notification_id if _ID_SAFE.fullmatch(notification_id) else None
    if local is None or local.startswith(".") or local.endswith(".") or ".." in local:
        local = hashlib.sha256(notification_id.encode("utf-8")).hexdigest()[:32]
    return f"<{local}@{domain}>"


def render_html(body: str, subject: str, language: str) -> str:
    """A plain, readable HTML version of the text body: every value escaped, no images, no
    links added, nothing fetched from outside."""
    text = body.replace("\r\n", "\n").replace("\r", "\n").strip()
    paragraphs = [block.strip("\n") for block in _PARAGRAPH_BREAK.split(text) if block.strip()]
    rendered = "\n".join(
        '<p style="margin:0 0 1em 0;">'
        + "<br>\n".join(html.escape(line) for line in block.split("\n"))
        + "</p>"
        for block in paragraphs
    )
    lang = f' lang="{html.escape(language)}"' if _LANGUAGE.fullmatch(language) else ""
    return (
        "<!DOCTYPE html>\n"
        f"<html{lang}>\n"
        "<head>\n"
        '<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(subject)}</title>\n"
        "</head>\n"
        '<body style="margin:0;padding:0;background:#ffffff;">\n'
        '<div style="max-width:600px;margin:0 auto;padding:24px;'
        "font-family:Arial,Helvetica,sans-serif;font-size:16px;line-height:1.5;"
        'color:#1a1a1a;">\n'
        f"{rendered}\n"
        "</div>\n"
        "</body>\n"
        "</html>\n"
    )


def _provider_status(code: int, text: str, to: str = "") -> str:
    """`"<code> <first line of the reply>"`, short, with anything address-like removed."""
    first = text.splitlines()[0] if text else ""
    # Whole addresses first, then the recipient's local part if echoed on its own.
    first = _ADDRESS_LIKE.sub("[address]", first)
    local = to.split("@", 1)[0]
    if len(local) >= 3:
        first = re.sub(re.escape(local), "[address]", first, flags=re.IGNORECASE)
    first = "".join(ch for ch in first if ch.isprintable())
    return " ".join(f"{code} {first}".split())[:STATUS_LIMIT]


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _dot_stuffed(content: bytes) -> bytes:
    """The DATA payload as transmitted: CRLF line ends, leading dots doubled, the final dot."""
    content = re.sub(rb"\r\n|\n|\r(?!\n)", b"\r\n", content)
    if not content.endswith(b"\r\n"):
        content += b"\r\n"
    return re.sub(rb"(?m)^\.", b"..", content) + b".\r\n"


class SmtpChannel:
    """Sends each message through one SMTP server. See the module doc for the failure mapping."""

    name = "email"
    # SMTP cannot be asked afterwards whether a cut-off message went: an ambiguous send stays
    # `unknown`, never resent blindly.
    verifiable = False
    finds_by_words = False

    def __init__(
        self,
        *,
        host: str,
        port: int | None = None,
        username: str | None = None,
        password: str | None = None,
        sender: str,
        sender_name: str = DEFAULT_SENDER_NAME,
        security: str = "starttls",
        timeout_s: float = 15.0,
        data_timeout_s: float = 120.0,
        local_hostname: str | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        """`sender` is the From address, `sender_name` its display name (neutral: a preview must
        not say what the message is about). `security` is "starttls" (the default), "tls" or
        "none"; `port` defaults by it (587, 465, 25). `timeout_s` bounds connecting and each
        command; `data_timeout_s` bounds the wait for the reply to the message content (servers
        may scan it first; a timeout there is ambiguous, so it is generous). `local_hostname`
        (the EHLO name) defaults to the sender's domain. `tls_context` replaces the default,
        certificate-verifying one (a private CA, say); verification is never switched off."""
        if security not in DEFAULT_PORTS:
            raise ValueError("security must be 'starttls', 'tls' or 'none'")
        if not host or _has_control(host):
            raise ValueError("invalid SMTP host")
        if port is not None and not 0 < port < 65536:
            raise ValueError("invalid SMTP port")
        if timeout_s <= 0 or data_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
        if (username is None) != (password is None):
            raise ValueError("username and password go together")
        if username is not None and security == "none" and not _is_loopback(host):
            raise ValueError("refusing to send SMTP credentials without TLS to a remote host")
        try:
            self.from_address = normalise_address(sender)
        except _InvalidAddress:
            raise ValueError("invalid from address") from None
        if not sender_name.strip() or _has_control(sender_name):
            raise ValueError("invalid sender name")
        self.host = host
        self.port = port if port is not None else DEFAULT_PORTS[security]
        self.username = username
        self.password = password
        self.sender_name = sender_name.strip()
        self.security = cast(Security, security)  # checked above
        self.timeout = timeout_s
        self.data_timeout = data_timeout_s
        self.domain = self.from_address.split("@", 1)[1]
        self.local_hostname = local_hostname or self.domain
        self.tls_context = tls_context
        self.default_subject = f"A message from {self.sender_name}"

    # -- building ---------------------------------------------------------------------------

    def build(self, message: OutgoingMessage, now: datetime) -> tuple[str, str, EmailMessage]:
        """(recipient, Message-ID, e-mail) or `PermanentFailure` before anything is sent."""
        try:
            to = normalise_address(message.to)
        except _InvalidAddress:
            raise PermanentFailure("invalid_address") from None
        subject = message.subject
        if subject is not None and _has_control(subject):
            raise PermanentFailure("invalid_subject")
        if subject is None or not subject.strip():
            subject = self.default_subject
        subject = subject.strip()
        message_id = message_id_for(message.notification_id, self.domain)
        when = now if now.tzinfo is not None else now.replace(tzinfo=UTC)

        email = EmailMessage(policy=SMTP_POLICY)
        email["Subject"] = subject
        email["From"] = Address(display_name=self.sender_name, addr_spec=self.from_address)
        email["To"] = Address(addr_spec=to)
        email["Date"] = format_datetime(when.astimezone(UTC))
        email["Message-ID"] = message_id
        email["Auto-Submitted"] = "auto-generated"
        # Asks Exchange/Outlook not to answer with out-of-office replies.
        email["X-Auto-Response-Suppress"] = "All"
        body = message.body.replace("\r\n", "\n").replace("\r", "\n")
        # Quoted-printable keeps the whole message 7-bit: no reliance on 8BITMIME or SMTPUTF8.
        email.set_content(body, subtype="plain", charset="utf-8", cte="quoted-printable")
        email.add_alternative(
            render_html(body, subject, message.language),
            subtype="html",
            charset="utf-8",
            cte="quoted-printable",
        )
        # After the body: `set_content` clears every Content-* header.
        if _LANGUAGE.fullmatch(message.language):
            email["Content-Language"] = message.language
        return to, message_id, email

    # -- sending ----------------------------------------------------------------------------

    async def send(self, message: OutgoingMessage, now: datetime) -> SendResult:
        to, message_id, email = self.build(message, now)
        content = email.as_bytes()
        progress = _Progress()
        failure: ChannelFailure
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            timeout=self.timeout,
            use_tls=self.security == "tls",
            start_tls=False,
            validate_certs=True,
            tls_context=self.tls_context,
            local_hostname=self.local_hostname,
        )
        try:
            reply = await self._converse(client, to, content, progress)
        except ChannelFailure as exc:
            failure = exc
        except aiosmtplib.SMTPResponseException as exc:
            failure = self._map_reply(progress.phase, exc.code, exc.message, to)
        except (aiosmtplib.SMTPException, ssl.SSLError, OSError, TimeoutError) as exc:
            failure = self._map_error(progress.phase, exc)
        except ValueError:
            # aiosmtplib refuses an address it cannot put on a command line; ours are checked.
            invalid = progress.phase == "rcpt"
            failure = (
                PermanentFailure("invalid_address")
                if invalid
                else TemporaryFailure("protocol_error")
            )
        else:
            await self._quit(client)
            return SendResult(
                provider_ref=message_id,
                delivered=False,
                at=now,
                provider_status=_provider_status(reply.code, reply.message, to),
            )
        finally:
            client.close()
        # Raised outside the handlers, so no library exception (which may quote the address)
        # rides along as context.
        raise failure

    async def _converse(
        self, client: aiosmtplib.SMTP, to: str, content: bytes, progress: _Progress
    ) -> aiosmtplib.SMTPResponse:
        await client.connect()
        progress.phase = "ehlo"
        await self._hello(client)
        if self.security == "starttls":
            progress.phase = "starttls"
            if not client.supports_extension("starttls"):
                raise TemporaryFailure("tls_unavailable")
            await client.starttls()
            progress.phase = "ehlo"
            await client.ehlo()
        if self.username is not None and self.password is not None:
            progress.phase = "auth"
            if not client.supports_extension("auth"):
                raise TemporaryFailure("auth_unavailable")
            await client.login(self.username, self.password)
        progress.phase = "mail"
        options = (
            [f"SIZE={len(_dot_stuffed(content))}"] if client.supports_extension("size") else []
        )
        await client.mail(self.from_address, options=options)
        progress.phase = "rcpt"
        await client.rcpt(to)
        progress.phase = "data"
        start = await client.execute_command(b"DATA")
        if start.code != aiosmtplib.SMTPStatus.start_input:
            raise self._map_reply("data", start.code, start.message, to)
        # Once the content is handed to the transport a cut connection is ambiguous.
        # aiosmtplib's `data()` would hide whether the 354 had arrived, so it goes out by hand.
        protocol = client.protocol
        if protocol is None:
            raise aiosmtplib.SMTPServerDisconnected("disconnected")
        protocol.write(_dot_stuffed(content))  # raises, having written nothing, if cut
        progress.phase = "content"
        reply = await protocol.read_response(timeout=self.data_timeout)
        if not 200 <= reply.code < 300:
            raise self._map_reply("content", reply.code, reply.message, to)
        return reply

    async def _hello(self, client: aiosmtplib.SMTP) -> None:
        try:
            await client.ehlo()
        except aiosmtplib.SMTPHeloError:
            # An old relay without ESMTP will do for plain relaying, never for TLS or AUTH.
            if self.security != "none" or self.username is not None or not client.is_connected:
                raise
            await client.helo()

    async def _quit(self, client: aiosmtplib.SMTP) -> None:
        """The message is accepted: a failing QUIT changes nothing."""
        with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
            await client.quit(timeout=min(self.timeout, 5.0))

    # -- mapping ----------------------------------------------------------------------------

    def _map_reply(self, phase: Phase, code: int, text: str, to: str) -> ChannelFailure:
        status = _provider_status(code, text, to)
        provider_code = str(code)
        if phase == "content" and not 400 <= code < 600:
            # A garbled reply after the content: the server may have queued it.
            return AmbiguousFailure(
                "ambiguous", provider_code=provider_code, provider_status=status
            )
        if phase not in _ENVELOPE_PHASES:
            what = {
                "connect": "server_unavailable",
                "ehlo": "helo_rejected",
                "starttls": "tls_failed",
                "auth": "auth_failed",
            }.get(phase, "protocol_error")
            return TemporaryFailure(what, provider_code=provider_code, provider_status=status)
        if 500 <= code < 600:
            what = "sender_rejected" if phase == "mail" else "rejected"
            return PermanentFailure(what, provider_code=provider_code, provider_status=status)
        if 400 <= code < 500:
            return TemporaryFailure("deferred", provider_code=provider_code, provider_status=status)
        return TemporaryFailure(
            "protocol_error", provider_code=provider_code, provider_status=status
        )

    def _map_error(self, phase: Phase, exc: BaseException) -> ChannelFailure:
        if phase == "content":
            return AmbiguousFailure("ambiguous")
        if isinstance(exc, TimeoutError):  # aiosmtplib's timeouts are TimeoutErrors too
            return TemporaryFailure("timeout")
        if isinstance(exc, ssl.SSLError) or isinstance(exc.__cause__, ssl.SSLError):
            return TemporaryFailure("tls_failed")
        if phase == "connect":
            return TemporaryFailure("connect_failed")
        if phase == "starttls":
            return TemporaryFailure("tls_failed")
        if phase == "auth" and not isinstance(exc, ConnectionError):
            return TemporaryFailure("auth_failed")
        if isinstance(exc, ConnectionError):
            return TemporaryFailure("disconnected")
        return TemporaryFailure("protocol_error")

    # -- the rest of the interface ----------------------------------------------------------

    async def lookup(self, message: OutgoingMessage, since: datetime) -> list[SendResult]:
        """SMTP keeps no record we could ask for."""
        return []

    async def close(self) -> None:
        """Nothing to release: every send opens and closes its own connection."""
        return None
