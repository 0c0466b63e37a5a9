"""SMS through Twilio's Messages API, with the `twilio` library's async HTTP client.

`CAREHUB_TWILIO_BASE_URL` points the channel at a Twilio-compatible gateway or the stand-in
(`services/notifier/twilio_standin.py`); unset, it talks to Twilio itself. Every message carries
a `StatusCallback` URL on `CAREHUB_PUBLIC_BASE_URL` with the notification id, so receipts find
their notification. Outside production only numbers on the allowlist are ever texted.

Twilio's own HTTP logging is silenced: it would write phone numbers and message bodies.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import aiohttp
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from services.core import sms
from services.notifier.channels.base import (
    OutgoingMessage,
    PermanentFailure,
    SendResult,
    TemporaryFailure,
)

TWILIO_API = "https://api.twilio.com"
STATUS_PATH = "/v1/providers/twilio/status"

# Twilio error codes that say this recipient can never be reached this way: never retried, the
# notification falls back to another channel or the advocate.
PERMANENT_CODES: dict[int, str] = {
    21211: "invalid_number",
    21214: "invalid_number",
    21217: "invalid_number",
    21407: "region_not_supported",
    21408: "region_not_permitted",
    21610: "unsubscribed",
    21612: "cannot_route",
    21614: "not_a_mobile",
    21635: "not_a_mobile",
    30003: "unreachable",
    30004: "blocked",
    30005: "unknown_number",
    30006: "landline_or_unreachable",
    30007: "filtered",
}
TOO_MANY_REQUESTS = 20429

_quiet = logging.getLogger("carehub.twilio_http")
_quiet.setLevel(logging.WARNING)  # the client logs numbers and bodies at INFO


class _RebasedHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    """The library's async client, sending what it addresses to api.twilio.com elsewhere."""

    def __init__(self, base_url: str | None, timeout: float) -> None:
        super().__init__(timeout=timeout, logger=_quiet)
        self.base_url = base_url.rstrip("/") if base_url else None

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the library's own signature
        allow_redirects: bool = False,
    ) -> Response:
        if self.base_url and url.startswith(TWILIO_API):
            url = self.base_url + url[len(TWILIO_API) :]
        return await super().request(
            method, url, params, data, headers, auth, timeout or self.timeout, allow_redirects
        )


def status_callback_url(public_base_url: str, notification_id: str) -> str:
    return f"{public_base_url.rstrip('/')}{STATUS_PATH}?{urlencode({'nid': notification_id})}"


class TwilioChannel:
    name = "sms"
    verifiable = True
    finds_by_words = True

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        messaging_service_sid: str | None,
        sender: str | None,
        public_base_url: str,
        base_url: str | None = None,
        allowlist: frozenset[str] | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        if not (messaging_service_sid or sender):
            raise ValueError("a Messaging Service SID or a sender number is needed")
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.messaging_service_sid = messaging_service_sid
        self.sender = sender
        self.public_base_url = public_base_url
        self.base_url = base_url
        self.allowlist = allowlist
        self.timeout_s = timeout_s
        self._client: Client | None = None

    @property
    def sender_key(self) -> str:
        """Who the provider's rate limit applies to: the Messaging Service or the number."""
        return f"twilio:{self.messaging_service_sid or self.sender}"

    def _api(self) -> Client:
        # Built on first use, inside the running event loop (aiohttp needs one).
        if self._client is None:
            self._client = Client(
                self.account_sid,
                self.auth_token,
                http_client=_RebasedHttpClient(self.base_url, self.timeout_s),
            )
        return self._client

    async def send(self, message: OutgoingMessage, now: datetime) -> SendResult:
        if self.allowlist is not None and message.to not in self.allowlist:
            # Outside production a number not on the list is never texted.
            raise PermanentFailure("not_allowlisted")
        params: dict[str, Any] = {
            "to": message.to,
            "body": sms.sanitise(message.body),
            "status_callback": status_callback_url(self.public_base_url, message.notification_id),
        }
        if self.messaging_service_sid:
            params["messaging_service_sid"] = self.messaging_service_sid
        else:
            params["from_"] = self.sender
        try:
            created = await self._api().messages.create_async(**params)
        except TwilioRestException as exc:
            raise _failure(exc) from None
        except TimeoutError:  # before OSError: asyncio's timeout is one
            raise TemporaryFailure("timeout") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise TemporaryFailure("connect_failed", provider_status=type(exc).__name__) from None
        return SendResult(
            provider_ref=str(created.sid),
            delivered=False,
            at=now,
            provider_status=str(created.status) if created.status else None,
        )

    async def lookup(self, message: OutgoingMessage, since: datetime) -> list[SendResult]:
        """Ask Twilio for messages to this number with this body, created at or after `since`
        (less a little clock skew), newest first."""
        body = sms.sanitise(message.body)
        try:
            found = await self._api().messages.list_async(
                to=message.to, date_sent_after=since - timedelta(days=1), page_size=100
            )
        except TwilioRestException as exc:
            raise _failure(exc) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise TemporaryFailure("lookup_failed", provider_status=type(exc).__name__) from None
        matches = [
            SendResult(
                provider_ref=str(item.sid),
                delivered=item.status == "delivered",
                at=item.date_created or since,
                provider_status=str(item.status) if item.status else None,
            )
            for item in found
            if item.body == body
            and (item.date_created is None or item.date_created >= since - timedelta(minutes=1))
        ]
        return sorted(matches, key=lambda r: r.at, reverse=True)

    async def close(self) -> None:
        client = self._client
        self._client = None
        if client is not None:
            http = client.http_client
            if isinstance(http, AsyncTwilioHttpClient):
                await http.close()
            await asyncio.sleep(0)


def _failure(exc: TwilioRestException) -> PermanentFailure | TemporaryFailure:
    code = int(exc.code) if isinstance(exc.code, int) else None
    status = int(exc.status)
    provider_code = str(code) if code is not None else None
    provider_status = str(status)
    if status == 429 or code == TOO_MANY_REQUESTS:
        return TemporaryFailure(
            "rate_limited", provider_code=provider_code, provider_status=provider_status
        )
    if status >= 500:
        return TemporaryFailure(
            "provider_unavailable", provider_code=provider_code, provider_status=provider_status
        )
    if status in (401, 403):
        # Our credentials, not the recipient: worth retrying once an operator fixes them.
        return TemporaryFailure(
            "provider_auth", provider_code=provider_code, provider_status=provider_status
        )
    reason = PERMANENT_CODES.get(code or 0, "provider_rejected")
    return PermanentFailure(reason, provider_code=provider_code, provider_status=provider_status)
