"""A Twilio stand-in: a real HTTP server on 127.0.0.1 that speaks Twilio's Messages API.

Tests and ``carehub bench notifier`` point the real ``twilio`` client (and so the production SMS
channel) at it instead of https://api.twilio.com. It answers with Twilio's resource and error
shapes, moves each message queued -> sent -> delivered (or undelivered/failed) in the background,
and POSTs status callbacks signed with ``X-Twilio-Signature`` exactly as Twilio signs them, so the
channel's callback handler can be tested against real signatures.

* ``/2010-04-01/Accounts/{AccountSid}/Messages.json``: POST creates, GET lists (filters ``To``,
  ``From``, ``DateSent``, ``DateSent<``, ``DateSent>``; paging with ``PageSize``, ``Page``,
  ``PageToken``; newest first). ``.../Messages/{Sid}.json``: GET fetches. HTTP Basic auth with
  the account SID and auth token the stand-in was started with.
* ``/_standin/control`` (POST JSON, GET), ``/_standin/messages``, ``/_standin/stats``: no auth,
  which is why it binds to 127.0.0.1 only. Control injects failures (``fail_next``,
  ``fail_rate``, ``fail_status``), latency (``delay_ms``), per-number rejections and outcomes
  (``numbers``), switches callbacks off (``callbacks``) and clears everything (``reset``).

Python API: :func:`create_app` (an ASGI app, state in ``app.state.standin``),
:func:`running_standin` (uvicorn inside the current event loop, for tests and benchmarks) and
:func:`serve` (blocking, for ``carehub twilio-standin``).

It never logs message bodies or phone numbers. Deliberate simplifications: API keys,
media, message updates/deletes, scheduling and the ``sending`` status are not modelled;
callbacks are sent for ``sent`` and the final status only, once, without retries.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hmac
import random
import re
import secrets
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from email.utils import format_datetime
from itertools import islice
from typing import Any
from urllib.parse import parse_qsl, urlencode

import aiohttp
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator

from services.core import sms
from services.core.clock import Clock, SystemClock
from services.core.logs import get_logger

__all__ = [
    "DEFAULT_ACCOUNT_SID",
    "DEFAULT_AUTH_TOKEN",
    "NumberRule",
    "RunningStandin",
    "Standin",
    "StandinControl",
    "StoredMessage",
    "TwilioError",
    "create_app",
    "running_standin",
    "serve",
]

API_VERSION = "2010-04-01"
DEFAULT_ACCOUNT_SID = "AC" + "5ad1" + "0" * 28
DEFAULT_AUTH_TOKEN = "5ad1" + "7" * 28
PRICE_UNIT = "GBP"
MAX_BODY = 1600
MAX_PAGE_SIZE = 1000
CALLBACK_TIMEOUT_S = 2.0
CALLBACK_CONCURRENCY = 64

_E164 = re.compile(r"\+[1-9][0-9]{7,14}")
_OUTCOMES = frozenset({"delivered", "undelivered", "failed"})
_FAIL_STATUSES = {429: 20429, 500: 20500, 503: 20503}

# Twilio's wording for the codes a test is likely to ask for; others get a generic message.
_MESSAGES: dict[int, str] = {
    20001: "Invalid parameter",
    20003: "Authenticate",
    20004: "Method not allowed",
    20404: "The requested resource {path} was not found",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    20503: "Service Unavailable",
    21211: "The 'To' number {to} is not a valid phone number.",
    21408: "Permission to send an SMS has not been enabled for the region indicated by the 'To'"
    " number: {to}.",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21609: "Invalid StatusCallback url",
    21610: "Attempt to send to unsubscribed recipient",
    21612: "The 'To' phone number: {to}, is not currently reachable using the 'From' phone number"
    " via SMS.",
    21614: "'To' number is not a valid mobile number",
    21617: "The concatenated message body exceeds the 1600 character limit.",
    30003: "Unreachable destination handset",
    30005: "Unknown destination handset",
    30006: "Landline or unreachable carrier",
    30007: "Message filtered",
    30008: "Unknown error",
}

log = get_logger("twilio_standin")


class TwilioError(Exception):
    """An error answered with Twilio's body: ``{code, message, more_info, status}``."""

    def __init__(
        self, status: int, code: int, headers: Mapping[str, str] | None = None, **fmt: str
    ) -> None:
        self.status = status
        self.code = code
        self.message = _MESSAGES.get(code, f"Error {code}").format(**fmt)
        self.headers = dict(headers or {})
        super().__init__(f"{status} {code}")

    def response(self) -> JSONResponse:
        body = {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }
        return JSONResponse(body, status_code=self.status, headers=self.headers)


@dataclass(frozen=True)
class NumberRule:
    """What happens to messages for one number: refused at create (``reject``: a Twilio code),
    or accepted and ending in ``outcome`` with ``error_code``."""

    reject: int | None = None
    outcome: str = "delivered"
    error_code: int | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> NumberRule:
        unknown = set(raw) - {"reject", "outcome", "error_code"}
        if unknown:
            raise ValueError(f"unknown number rule keys: {sorted(unknown)}")
        reject = raw.get("reject")
        outcome = raw.get("outcome", "delivered")
        error_code = raw.get("error_code")
        if reject is not None and not _is_int(reject):
            raise ValueError("reject must be a Twilio error code (int)")
        if outcome not in _OUTCOMES:
            raise ValueError(f"outcome must be one of {sorted(_OUTCOMES)}")
        if error_code is not None and not _is_int(error_code):
            raise ValueError("error_code must be an int")
        if outcome != "delivered" and error_code is None:
            error_code = 30003 if outcome == "undelivered" else 30008
        return cls(reject=reject, outcome=outcome, error_code=error_code)


@dataclass(frozen=True)
class StandinControl:
    """Failure injection and pacing; see the module docstring and :meth:`Standin.control`."""

    fail_next: int = 0
    fail_status: int = 503
    fail_rate: float = 0.0
    retry_after: int = 1
    delay_ms: float = 0.0
    # Latency AFTER the message is stored: a client that gives up has still had it taken.
    respond_delay_ms: float = 0.0
    callbacks: bool = True
    callback_delay_ms: float = 50.0
    numbers: Mapping[str, NumberRule] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["numbers"] = {
            number: {k: v for k, v in dataclasses.asdict(rule).items() if v is not None}
            for number, rule in self.numbers.items()
        }
        return out


@dataclass(slots=True)
class StoredMessage:
    """One message as the stand-in holds it; :meth:`resource` is Twilio's JSON for it."""

    seq: int
    sid: str
    account_sid: str
    to: str
    from_: str | None
    body: str
    messaging_service_sid: str | None
    status_callback: str | None
    status: str
    num_segments: int
    date_created: datetime
    date_updated: datetime
    date_sent: datetime | None = None
    error_code: int | None = None

    @property
    def uri(self) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{self.sid}.json"

    def resource(self) -> dict[str, Any]:
        base = self.uri[: -len(".json")]
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": self.body,
            "date_created": format_datetime(self.date_created),
            "date_sent": None if self.date_sent is None else format_datetime(self.date_sent),
            "date_updated": format_datetime(self.date_updated),
            "direction": "outbound-api",
            "error_code": self.error_code,
            "error_message": None if self.error_code is None else _MESSAGES.get(self.error_code),
            "from": self.from_,
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": "0",
            "num_segments": str(self.num_segments),
            "price": None,
            "price_unit": PRICE_UNIT,
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {
                "media": f"{base}/Media.json",
                "feedback": f"{base}/Feedback.json",
            },
            "to": self.to,
            "uri": self.uri,
        }


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _bounded(value: object, name: str, low: float, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} out of range")
    return float(value)


class Standin:
    """The stand-in's state and behaviour, independent of HTTP routing."""

    def __init__(self, account_sid: str, auth_token: str, clock: Clock | None = None) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.clock: Clock = clock or SystemClock()
        self.messages: dict[str, StoredMessage] = {}
        self.settings = StandinControl()
        self.stats: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self._order: list[StoredMessage] = []
        self._random = random.Random(0)
        self._validator = RequestValidator(auth_token)
        pair = f"{account_sid}:{auth_token}".encode()
        self._expected_auth = "Basic " + base64.b64encode(pair).decode()
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None
        self._gate = asyncio.Semaphore(CALLBACK_CONCURRENCY)

    # --- control -------------------------------------------------------------------------------

    def control(self, **options: Any) -> dict[str, Any]:
        """Apply any subset of the control options (all checked before any is applied; a bad
        one raises ``ValueError``) and return the settings now in force.

        ``reset`` (applied first) clears messages, stats, settings and the random seed;
        ``numbers`` merges into the current rules (a number mapped to ``None`` is removed);
        ``seed`` reseeds the generator behind ``fail_rate``.
        """
        known = {f.name for f in dataclasses.fields(StandinControl)} | {"reset", "seed"}
        unknown = set(options) - known
        if unknown:
            raise ValueError(f"unknown control options: {sorted(unknown)}")
        reset = options.pop("reset", False)
        seed = options.pop("seed", None)
        if not isinstance(reset, bool) or (seed is not None and not _is_int(seed)):
            raise ValueError("reset must be a bool and seed an int")
        current = StandinControl() if reset else self.settings
        changes: dict[str, Any] = {}
        for name, value in options.items():
            if name in ("fail_next", "retry_after"):
                if not _is_int(value) or value < 0:
                    raise ValueError(f"{name} must be an int >= 0")
                changes[name] = value
            elif name == "fail_status":
                if value not in _FAIL_STATUSES:
                    raise ValueError(f"fail_status must be one of {sorted(_FAIL_STATUSES)}")
                changes[name] = value
            elif name == "fail_rate":
                changes[name] = _bounded(value, name, 0.0, 1.0)
            elif name in ("delay_ms", "respond_delay_ms", "callback_delay_ms"):
                changes[name] = _bounded(value, name, 0.0)
            elif name == "callbacks":
                if not isinstance(value, bool):
                    raise ValueError("callbacks must be a bool")
                changes[name] = value
            elif name == "numbers":
                if not isinstance(value, Mapping):
                    raise ValueError("numbers must map E.164 numbers to rules")
                numbers = dict(current.numbers)
                for number, raw in value.items():
                    if raw is None:
                        numbers.pop(number, None)
                    elif isinstance(raw, Mapping):
                        numbers[str(number)] = NumberRule.parse(raw)
                    else:
                        raise ValueError("a number rule must be an object or null")
                changes[name] = numbers
        if reset:
            self._reset()
        if seed is not None:
            self._random.seed(seed)
        self.settings = dataclasses.replace(current, **changes)
        return self.settings.as_json()

    def _reset(self) -> None:
        for task in self._tasks:
            task.cancel()
        self.messages.clear()
        self._order.clear()
        self.stats.clear()
        self.refused.clear()
        self._random.seed(0)

    def stats_json(self) -> dict[str, Any]:
        return {
            "messages": len(self._order),
            "creates_accepted": self.stats["creates_accepted"],
            "creates_refused": dict(self.refused),
            "callbacks_sent": self.stats["callbacks_sent"],
            "callbacks_failed": self.stats["callbacks_failed"],
        }

    # --- the Messages API ---------------------------------------------------------------------

    def check_auth(self, request: Request, account_sid: str) -> None:
        """401 (20003) unless Basic auth carries our credentials; 404 (20404) for another
        account's path."""
        header = request.headers.get("authorization")
        if header != self._expected_auth and not self._auth_matches(header):
            raise TwilioError(401, 20003, {"WWW-Authenticate": 'Basic realm="Twilio API"'})
        if account_sid != self.account_sid:
            raise TwilioError(404, 20404, path=request.url.path)

    def _auth_matches(self, header: str | None) -> bool:
        scheme, _, value = (header or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(value.strip(), validate=True)
        except ValueError:
            return False
        expected = f"{self.account_sid}:{self.auth_token}".encode()
        return hmac.compare_digest(given, expected)

    async def create(self, form: Mapping[str, str]) -> StoredMessage:
        """Store a message as ``POST Messages.json`` would, or raise :class:`TwilioError`."""
        if self.settings.delay_ms:
            await asyncio.sleep(self.settings.delay_ms / 1000)
        try:
            message = self._accept(self.settings, form)
        except TwilioError as exc:
            self.refused[str(exc.code)] += 1
            raise
        self.stats["creates_accepted"] += 1
        task = asyncio.get_running_loop().create_task(self._progress(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if self.settings.respond_delay_ms:
            await asyncio.sleep(self.settings.respond_delay_ms / 1000)
        return message

    def _accept(self, settings: StandinControl, form: Mapping[str, str]) -> StoredMessage:
        if settings.fail_next > 0:
            self.settings = dataclasses.replace(settings, fail_next=settings.fail_next - 1)
            raise self._injected(settings)
        if settings.fail_rate and self._random.random() < settings.fail_rate:
            raise self._injected(settings)
        to = form.get("To", "")
        sender = form.get("From") or None
        service = form.get("MessagingServiceSid") or None
        body = form.get("Body", "")
        callback = form.get("StatusCallback") or None
        if not to:
            raise TwilioError(400, 21604)
        if sender is None and service is None:
            raise TwilioError(400, 21603)
        if not body:
            raise TwilioError(400, 21602)
        if len(body) > MAX_BODY:
            raise TwilioError(400, 21617)
        if not _E164.fullmatch(to):
            raise TwilioError(400, 21211, to=to)
        if callback is not None and not callback.startswith(("http://", "https://")):
            raise TwilioError(400, 21609)
        rule = settings.numbers.get(to)
        if rule is not None and rule.reject is not None:
            raise TwilioError(400, rule.reject, to=to)
        now = self.clock.now().astimezone(UTC).replace(microsecond=0)
        message = StoredMessage(
            seq=len(self._order),
            sid="SM" + secrets.token_hex(16),
            account_sid=self.account_sid,
            to=to,
            from_=sender,
            body=body,
            messaging_service_sid=service,
            status_callback=callback,
            status="queued" if service is None else "accepted",
            num_segments=sms.inspect(body).segments,
            date_created=now,
            date_updated=now,
        )
        self._order.append(message)
        self.messages[message.sid] = message
        return message

    def _injected(self, settings: StandinControl) -> TwilioError:
        status = settings.fail_status
        headers = {"Retry-After": str(settings.retry_after)} if status == 429 else None
        return TwilioError(status, _FAIL_STATUSES[status], headers)

    def fetch(self, sid: str, path: str) -> StoredMessage:
        message = self.messages.get(sid)
        if message is None:
            raise TwilioError(404, 20404, path=path)
        return message

    def page(self, query: Mapping[str, str], path: str) -> dict[str, Any]:
        """One page of ``GET Messages.json``, newest first, in Twilio's list envelope.

        ``PageToken`` ``PA<sid>`` continues after that message and ``PB<sid>`` goes back
        before it, so pages stay stable while new messages arrive; without a token, ``Page``
        skips that many pages.
        """
        try:
            size = int(query.get("PageSize", "50"))
            number = int(query.get("Page", "0"))
        except ValueError:
            raise TwilioError(400, 20001) from None
        if not 1 <= size <= MAX_PAGE_SIZE or number < 0:
            raise TwilioError(400, 20001)
        filters = {
            k: query[k]
            for k in ("To", "From", "DateSent", "DateSent<", "DateSent>")
            if query.get(k)
        }
        keep = _matcher(filters)
        token = query.get("PageToken", "")
        anchor = self.messages.get(token[2:]) if token[:2] in ("PA", "PB") else None
        if token and anchor is None:
            candidates: Iterator[StoredMessage] = iter(())
        elif anchor is not None and token.startswith("PB"):
            after = (m for m in self._order[anchor.seq + 1 :] if keep(m))
            candidates = iter(list(islice(after, size))[::-1])
        else:
            end = anchor.seq if anchor is not None else len(self._order)
            candidates = (m for m in reversed(self._order[:end]) if keep(m))
            if anchor is None:
                for _ in islice(candidates, number * size):
                    pass  # skip the pages before the one asked for
        records = list(islice(candidates, size))
        # A page reached backwards always has a next one: the page its token came from.
        more = bool(records) and (token.startswith("PB") or next(candidates, None) is not None)

        def uri(page: int, page_token: str | None) -> str:
            params = {**filters, "PageSize": str(size), "Page": str(page)}
            if page_token:
                params["PageToken"] = page_token
            return f"{path}?{urlencode(params)}"

        start = number * size
        return {
            "messages": [m.resource() for m in records],
            "page": number,
            "page_size": size,
            "start": start,
            "end": start + max(len(records) - 1, 0),
            "uri": uri(number, token or None),
            "first_page_uri": uri(0, None),
            "next_page_uri": uri(number + 1, "PA" + records[-1].sid) if more else None,
            "previous_page_uri": (
                uri(number - 1, "PB" + records[0].sid) if number > 0 and records else None
            ),
        }

    # --- status progression and callbacks ------------------------------------------------------

    async def _progress(self, message: StoredMessage) -> None:
        rule = self.settings.numbers.get(message.to) or NumberRule()
        steps = ["failed"] if rule.outcome == "failed" else ["sent", rule.outcome]
        for status in steps:
            await asyncio.sleep(self.settings.callback_delay_ms / 1000)
            now = self.clock.now().astimezone(UTC).replace(microsecond=0)
            message.status = status
            message.date_updated = now
            if status == "sent":
                message.date_sent = now
            if status in ("undelivered", "failed"):
                message.error_code = rule.error_code
            if message.status_callback is not None and self.settings.callbacks:
                await self._send_callback(message, message.status_callback)

    async def _send_callback(self, message: StoredMessage, url: str) -> None:
        params = {
            "AccountSid": message.account_sid,
            "ApiVersion": API_VERSION,
            "MessageSid": message.sid,
            "MessageStatus": message.status,
            "SmsSid": message.sid,
            "SmsStatus": message.status,
            "To": message.to,
        }
        if message.from_ is not None:
            params["From"] = message.from_
        if message.messaging_service_sid is not None:
            params["MessagingServiceSid"] = message.messaging_service_sid
        if message.error_code is not None:
            params["ErrorCode"] = str(message.error_code)
        headers = {
            "X-Twilio-Signature": str(self._validator.compute_signature(url, params)),
            "User-Agent": "TwilioProxy/1.1",
        }
        if self._http is None:
            # aiohttp rather than httpx: measured on one core, httpx's pool managed a few
            # hundred POSTs a second under concurrency, too few for two callbacks per message.
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=CALLBACK_CONCURRENCY),
                timeout=aiohttp.ClientTimeout(total=CALLBACK_TIMEOUT_S),
            )
        # The gate, not only the connector's limit, bounds concurrency: the timeout must run
        # from the moment a callback is sent, not while it queues behind thousands of others.
        async with self._gate:
            try:
                async with self._http.post(url, data=params, headers=headers) as response:
                    await response.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                self._callback_failed(message, type(exc).__name__)
                return
        if response.status >= 400:
            self._callback_failed(message, f"HTTP {response.status}")
        else:
            self.stats["callbacks_sent"] += 1

    def _callback_failed(self, message: StoredMessage, reason: str) -> None:
        self.stats["callbacks_failed"] += 1
        failures = self.stats["callbacks_failed"]
        # A receiver that is down fails every callback; one line per hundred is enough to see it.
        if failures % 100 == 1:
            log.warning(
                "standin.callback_failed",
                message_sid=message.sid,
                reason=reason,
                failures=failures,
            )

    async def aclose(self) -> None:
        """Stop status progression and close the callback client."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
            self._http = None


def _day_or_instant(value: str) -> tuple[datetime, datetime]:
    """The first and last second a ``DateSent`` value names: a whole UTC day for
    ``YYYY-MM-DD``, one instant for a date-time (as twilio-python sends them)."""
    try:
        if len(value) == 10:
            start = datetime.combine(date.fromisoformat(value), time(), UTC)
            return start, start + timedelta(days=1, seconds=-1)
        at = datetime.fromisoformat(value)
    except ValueError:
        raise TwilioError(400, 20001) from None
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return at, at


def _matcher(filters: Mapping[str, str]) -> Callable[[StoredMessage], bool]:
    """A predicate for the list filters. ``DateSent`` is that UTC day; ``DateSent>`` and
    ``DateSent<`` are "on or after" and "on or before" (inclusive). Dates are compared with the
    sent time, or the creation time while a message is not yet sent."""
    to, sender = filters.get("To"), filters.get("From")
    earliest, latest = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
    if "DateSent" in filters:
        earliest, latest = _day_or_instant(filters["DateSent"][:10])
    if "DateSent>" in filters:
        earliest = max(earliest, _day_or_instant(filters["DateSent>"])[0])
    if "DateSent<" in filters:
        latest = min(latest, _day_or_instant(filters["DateSent<"])[1])

    def keep(m: StoredMessage) -> bool:
        return (
            (to is None or m.to == to)
            and (sender is None or m.from_ == sender)
            and earliest <= (m.date_sent or m.date_created) <= latest
        )

    return keep


# --- HTTP --------------------------------------------------------------------------------------


def _standin(request: Request) -> Standin:
    standin: Standin = request.app.state.standin
    return standin


async def _messages(request: Request) -> Response:
    standin = _standin(request)
    try:
        standin.check_auth(request, request.path_params["account_sid"])
        if request.method == "GET":
            return JSONResponse(standin.page(request.query_params, request.url.path))
        # Parsed by hand: the form is always small and url-encoded, and this is the hot path.
        form = dict(parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True))
        message = await standin.create(form)
    except TwilioError as exc:
        return exc.response()
    return JSONResponse(message.resource(), status_code=201)


async def _message(request: Request) -> Response:
    standin = _standin(request)
    try:
        standin.check_auth(request, request.path_params["account_sid"])
        message = standin.fetch(request.path_params["sid"], request.url.path)
    except TwilioError as exc:
        return exc.response()
    return JSONResponse(message.resource())


async def _control(request: Request) -> Response:
    standin = _standin(request)
    if request.method == "GET":
        return JSONResponse(standin.settings.as_json())
    try:
        options = await request.json()
        if not isinstance(options, dict):
            raise ValueError("the body must be a JSON object")
        return JSONResponse(standin.control(**options))
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        return JSONResponse({"error": str(exc)}, status_code=400)


async def _stored(request: Request) -> Response:
    return JSONResponse([m.resource() for m in _standin(request).messages.values()])


async def _stats(request: Request) -> Response:
    return JSONResponse(_standin(request).stats_json())


async def _not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    code = {404: 20404, 405: 20004}.get(status, 20500)
    return TwilioError(status, code, path=request.url.path).response()


def create_app(account_sid: str, auth_token: str, *, clock: Clock | None = None) -> Starlette:
    """The stand-in as an ASGI app answering for ``account_sid``/``auth_token``; its
    :class:`Standin` is ``app.state.standin``. Dates come from ``clock`` (default: real time)."""
    prefix = f"/{API_VERSION}/Accounts/{{account_sid}}"
    app = Starlette(
        routes=[
            Route(f"{prefix}/Messages.json", _messages, methods=["GET", "POST"]),
            Route(f"{prefix}/Messages/{{sid}}.json", _message, methods=["GET"]),
            Route("/_standin/control", _control, methods=["GET", "POST"]),
            Route("/_standin/messages", _stored, methods=["GET"]),
            Route("/_standin/stats", _stats, methods=["GET"]),
        ],
        exception_handlers={404: _not_found, 405: _not_found},
    )
    app.state.standin = Standin(account_sid, auth_token, clock)
    return app


@dataclass(frozen=True)
class RunningStandin:
    """A stand-in served by :func:`running_standin`."""

    base_url: str
    standin: Standin

    @property
    def account_sid(self) -> str:
        return self.standin.account_sid

    @property
    def auth_token(self) -> str:
        return self.standin.auth_token

    @property
    def messages(self) -> dict[str, StoredMessage]:
        """The live store, by SID, oldest first."""
        return self.standin.messages

    def control(self, **options: Any) -> dict[str, Any]:
        """Same as ``POST /_standin/control`` (see :meth:`Standin.control`)."""
        return self.standin.control(**options)

    def stats(self) -> dict[str, Any]:
        """Same as ``GET /_standin/stats``."""
        return self.standin.stats_json()


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: the test or benchmark that embeds it decides when
    to stop (and a stray Ctrl-C must reach that code, not only this server)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _config(app: Starlette, host: str, port: int) -> uvicorn.Config:
    # log_config=None leaves the process's logging alone; log_level still quiets uvicorn's own.
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,
    )


@contextlib.asynccontextmanager
async def running_standin(
    account_sid: str = DEFAULT_ACCOUNT_SID,
    auth_token: str = DEFAULT_AUTH_TOKEN,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    clock: Clock | None = None,
) -> AsyncIterator[RunningStandin]:
    """Serve the stand-in in the current event loop (``port=0``: a free port) until exit.

    A port that cannot be bound raises ``OSError`` here.
    """
    app = create_app(account_sid, auth_token, clock=clock)
    standin: Standin = app.state.standin
    # Bound here rather than by uvicorn, which reports a bind error with SystemExit. The
    # explicit IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say they are
    # TCP, and without it every response waits ~40 ms for a delayed ACK.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    bound_port = int(sock.getsockname()[1])
    server = _EmbeddedServer(_config(app, host, bound_port))
    task = asyncio.create_task(server.serve(sockets=[sock]), name="twilio-standin")
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the Twilio stand-in stopped before it started")
            await asyncio.sleep(0.01)
        netloc = f"[{host}]" if ":" in host else host
        yield RunningStandin(f"http://{netloc}:{bound_port}", standin)
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, timeout=5)
        sock.close()
        await standin.aclose()


def serve(host: str, port: int, account_sid: str, auth_token: str) -> None:
    """Serve the stand-in until interrupted (SIGINT/SIGTERM). Prints nothing itself."""

    async def main() -> None:
        app = create_app(account_sid, auth_token)
        try:
            await uvicorn.Server(_config(app, host, port)).serve()
        finally:
            await app.state.standin.aclose()

    asyncio.run(main())
