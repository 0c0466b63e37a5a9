"""The Twilio stand-in, driven through the real ``twilio`` client: it must answer the way
api.twilio.com does for everything the SMS channel relies on, and sign its status callbacks so
that Twilio's own ``RequestValidator`` accepts them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiohttp import web
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from services.core.clock import FixedClock
from services.notifier.twilio_standin import RunningStandin, running_standin
from tests.conftest import CLOCK_T0

TWILIO_API = "https://api.twilio.com"
SENDER = "+447700900001"
ALICE = "+447700900101"
BOB = "+447700900102"
CAROL = "+447700900103"

# twilio's async client still passes aiohttp's deprecated BasicAuth on every request.
pytestmark = [
    pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The 'auth' parameter is deprecated:DeprecationWarning"),
]


class StandinHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    """The real async client, sent to the stand-in instead of api.twilio.com."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url
        self.urls: list[str] = []
        self.last_response: Response | None = None

    async def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        if url.startswith(TWILIO_API):
            url = self.base_url + url[len(TWILIO_API) :]
        self.urls.append(url)
        self.last_response = await super().request(method, url, *args, **kwargs)
        return self.last_response


@pytest.fixture
async def standin() -> AsyncIterator[RunningStandin]:
    async with running_standin() as running:
        running.control(callback_delay_ms=5)
        yield running


@pytest.fixture
async def make_client(
    standin: RunningStandin,
) -> AsyncIterator[Callable[..., tuple[Client, StandinHttpClient]]]:
    opened: list[StandinHttpClient] = []

    def make(
        username: str | None = None, password: str | None = None, account_sid: str | None = None
    ) -> tuple[Client, StandinHttpClient]:
        http = StandinHttpClient(standin.base_url)
        opened.append(http)
        client = Client(
            username or standin.account_sid,
            password or standin.auth_token,
            account_sid=account_sid,
            http_client=http,
        )
        return client, http

    yield make
    for http in opened:
        await http.close()


@pytest.fixture
async def client(make_client: Callable[..., tuple[Client, StandinHttpClient]]) -> Client:
    return make_client()[0]


class CallbackReceiver:
    """A tiny web server that records every status callback it is sent."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], str]] = []
        self.url = ""
        self._arrived = asyncio.Condition()

    async def handle(self, request: web.Request) -> web.Response:
        form = await request.post()
        params = {key: str(value) for key, value in form.items()}
        async with self._arrived:
            self.received.append(
                (str(request.url), params, request.headers.get("X-Twilio-Signature", ""))
            )
            self._arrived.notify_all()
        return web.Response(text="")

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 3.0) -> None:
        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(predicate), timeout)

    def for_sid(self, sid: str) -> list[dict[str, str]]:
        return [params for _, params, _ in self.received if params["MessageSid"] == sid]


@pytest.fixture
async def receiver() -> AsyncIterator[CallbackReceiver]:
    recv = CallbackReceiver()
    app = web.Application()
    app.router.add_post("/status", recv.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    recv.url = f"http://127.0.0.1:{port}/status?notification=n-1"
    yield recv
    await runner.cleanup()


async def raises_twilio(call: Awaitable[Any]) -> TwilioRestException:
    with pytest.raises(TwilioRestException) as info:
        await call
    return info.value


async def test_create_then_fetch(standin: RunningStandin, client: Client) -> None:
    created = await client.messages.create_async(to=ALICE, from_=SENDER, body="Hello from Alex")

    assert created.sid.startswith("SM") and len(created.sid) == 34
    assert created.status == "queued"
    assert created.to == ALICE and created.from_ == SENDER and created.body == "Hello from Alex"
    assert created.num_segments == "1" and created.num_media == "0"
    assert created.direction == "outbound-api" and created.api_version == "2010-04-01"
    assert created.account_sid == standin.account_sid
    assert created.error_code is None and created.price is None and created.price_unit == "GBP"
    assert created.date_created.tzinfo is not None  # the client parsed Twilio's RFC 2822 date
    assert created.uri == f"/2010-04-01/Accounts/{standin.account_sid}/Messages/{created.sid}.json"

    fetched = await client.messages(created.sid).fetch_async()
    assert fetched.sid == created.sid and fetched.body == "Hello from Alex"
    assert standin.messages[created.sid].to == ALICE

    missing = await raises_twilio(client.messages("SM" + "0" * 32).fetch_async())
    assert (missing.status, missing.code) == (404, 20404)


async def test_segments_and_messaging_service(client: Client) -> None:
    long_gsm = await client.messages.create_async(to=ALICE, from_=SENDER, body="a" * 161)
    welsh = "Diolch, Siân ŵ"  # 14 characters, UCS-2 because of â and ŵ
    one_ucs2 = await client.messages.create_async(to=ALICE, from_=SENDER, body=welsh * 5)
    two_ucs2 = await client.messages.create_async(to=ALICE, from_=SENDER, body=welsh * 6)
    via_service = await client.messages.create_async(
        to=ALICE, messaging_service_sid="MG" + "1" * 32, body="Hi"
    )

    assert long_gsm.num_segments == "2"
    assert (one_ucs2.num_segments, two_ucs2.num_segments) == ("1", "2")  # 70 fit, 84 do not
    assert via_service.status == "accepted" and via_service.from_ is None
    assert via_service.messaging_service_sid == "MG" + "1" * 32


async def test_create_validation_errors(client: Client) -> None:
    cases = [
        ({"to": "07700900101", "from_": SENDER, "body": "x"}, 21211),
        ({"to": "+44", "from_": SENDER, "body": "x"}, 21211),
        ({"to": ALICE, "body": "x"}, 21603),
        ({"to": ALICE, "from_": SENDER, "body": ""}, 21602),
        ({"to": ALICE, "from_": SENDER, "body": "x" * 1601}, 21617),
    ]
    for kwargs, code in cases:
        exc = await raises_twilio(client.messages.create_async(**kwargs))
        assert (exc.status, exc.code) == (400, code), kwargs


async def test_list_filters_by_to_and_pages_newest_first(
    standin: RunningStandin, make_client: Callable[..., tuple[Client, StandinHttpClient]]
) -> None:
    client, http = make_client()
    to_alice = [
        (await client.messages.create_async(to=ALICE, from_=SENDER, body=f"n{i}")).sid
        for i in range(5)
    ]
    await client.messages.create_async(to=BOB, from_=SENDER, body="other")

    http.urls.clear()
    listed = await client.messages.list_async(to=ALICE, page_size=2)

    assert [m.sid for m in listed] == to_alice[::-1]
    assert len([u for u in http.urls if "Messages.json" in u]) == 3  # pages of 2, 2 and 1
    assert [m.sid async for m in await client.messages.stream_async(to=BOB)] != []

    async with httpx.AsyncClient(
        base_url=standin.base_url, auth=(standin.account_sid, standin.auth_token)
    ) as raw:
        path = f"/2010-04-01/Accounts/{standin.account_sid}/Messages.json"
        page = (await raw.get(path, params={"To": ALICE, "PageSize": 2})).json()
        assert set(page) == {
            "messages",
            "page",
            "page_size",
            "first_page_uri",
            "next_page_uri",
            "previous_page_uri",
            "uri",
            "start",
            "end",
        }
        assert (page["page"], page["page_size"], page["start"], page["end"]) == (0, 2, 0, 1)
        second = (await raw.get(page["next_page_uri"])).json()
        assert [m["sid"] for m in second["messages"]] == to_alice[2:0:-1]
        back = (await raw.get(second["previous_page_uri"])).json()
        assert [m["sid"] for m in back["messages"]] == to_alice[:2:-1]
        assert back["next_page_uri"] is not None and back["previous_page_uri"] is None
        last = (await raw.get(path, params={"To": ALICE, "PageSize": 2, "Page": 2})).json()
        assert [m["sid"] for m in last["messages"]] == to_alice[:1]
        assert last["next_page_uri"] is None
        assert (last["start"], last["end"]) == (4, 4)


async def test_list_filters_by_date_sent() -> None:
    clock = FixedClock(CLOCK_T0)
    async with running_standin(clock=clock) as standin:
        standin.control(callbacks=False, callback_delay_ms=0)
        http = StandinHttpClient(standin.base_url)
        client = Client(standin.account_sid, standin.auth_token, http_client=http)
        try:
            early = await client.messages.create_async(to=ALICE, from_=SENDER, body="early")
            clock.advance(timedelta(days=1))
            late = await client.messages.create_async(to=ALICE, from_=SENDER, body="late")

            next_day = CLOCK_T0 + timedelta(days=1)
            after = await client.messages.list_async(date_sent_after=next_day)
            before = await client.messages.list_async(date_sent_before=CLOCK_T0)
            on_day = await client.messages.list_async(date_sent=CLOCK_T0)
            both = await client.messages.list_async(
                date_sent_after=datetime(2026, 11, 1, tzinfo=UTC),
                date_sent_before=datetime(2026, 12, 1, tzinfo=UTC),
            )
        finally:
            await http.close()

    assert [m.sid for m in after] == [late.sid]
    assert [m.sid for m in before] == [early.sid]
    assert [m.sid for m in on_day] == [early.sid]
    assert [m.sid for m in both] == [late.sid, early.sid]


async def test_bad_credentials_and_foreign_account(
    make_client: Callable[..., tuple[Client, StandinHttpClient]],
) -> None:
    wrong_token, _ = make_client(password="0" * 32)
    exc = await raises_twilio(wrong_token.messages.create_async(to=ALICE, from_=SENDER, body="x"))
    assert (exc.status, exc.code) == (401, 20003)

    other_account, _ = make_client(account_sid="AC" + "9" * 32)
    exc = await raises_twilio(other_account.messages.create_async(to=ALICE, from_=SENDER, body="x"))
    assert (exc.status, exc.code) == (404, 20404)


async def test_per_number_rejections(standin: RunningStandin, client: Client) -> None:
    standin.control(numbers={BOB: {"reject": 21610}, CAROL: {"reject": 21614}})

    exc = await raises_twilio(client.messages.create_async(to=BOB, from_=SENDER, body="x"))
    assert (exc.status, exc.code) == (400, 21610)
    assert "unsubscribed recipient" in exc.msg
    exc = await raises_twilio(client.messages.create_async(to=CAROL, from_=SENDER, body="x"))
    assert (exc.status, exc.code) == (400, 21614)
    await client.messages.create_async(to=ALICE, from_=SENDER, body="x")

    stats = standin.stats()
    assert stats["creates_accepted"] == 1
    assert stats["creates_refused"] == {"21610": 1, "21614": 1}


async def test_fail_next_with_503_then_429(
    standin: RunningStandin, make_client: Callable[..., tuple[Client, StandinHttpClient]]
) -> None:
    client, http = make_client()
    standin.control(fail_next=2)

    for _ in range(2):
        exc = await raises_twilio(client.messages.create_async(to=ALICE, from_=SENDER, body="x"))
        assert (exc.status, exc.code) == (503, 20503)
    await client.messages.create_async(to=ALICE, from_=SENDER, body="x")

    standin.control(fail_next=1, fail_status=429, retry_after=3)
    exc = await raises_twilio(client.messages.create_async(to=ALICE, from_=SENDER, body="x"))
    assert (exc.status, exc.code) == (429, 20429)
    assert http.last_response is not None
    assert http.last_response.headers["Retry-After"] == "3"
    assert len(standin.messages) == 1


async def test_fail_rate_is_repeatable(standin: RunningStandin, client: Client) -> None:
    async def pattern() -> list[bool]:
        outcome = []
        for _ in range(20):
            try:
                await client.messages.create_async(to=ALICE, from_=SENDER, body="x")
                outcome.append(True)
            except TwilioRestException as exc:
                assert exc.code == 20503
                outcome.append(False)
        return outcome

    standin.control(fail_rate=0.5, seed=7)
    first = await pattern()
    standin.control(seed=7)
    assert await pattern() == first
    assert True in first and False in first


async def test_status_callbacks_are_signed_and_end_delivered(
    standin: RunningStandin, client: Client, receiver: CallbackReceiver
) -> None:
    created = await client.messages.create_async(
        to=ALICE, from_=SENDER, body="Your appointment", status_callback=receiver.url
    )
    await receiver.wait_for(lambda: len(receiver.for_sid(created.sid)) == 2)

    validator = RequestValidator(standin.auth_token)
    for url, params, signature in receiver.received:
        assert url == receiver.url
        assert validator.validate(url, params, signature)
        assert not validator.validate(url, {**params, "MessageStatus": "x"}, signature)
    sent, delivered = receiver.for_sid(created.sid)
    assert sent["MessageStatus"] == sent["SmsStatus"] == "sent"
    assert delivered["MessageStatus"] == "delivered"
    assert delivered == {
        "AccountSid": standin.account_sid,
        "ApiVersion": "2010-04-01",
        "From": SENDER,
        "MessageSid": created.sid,
        "MessageStatus": "delivered",
        "SmsSid": created.sid,
        "SmsStatus": "delivered",
        "To": ALICE,
    }
    fetched = await client.messages(created.sid).fetch_async()
    assert fetched.status == "delivered" and fetched.date_sent is not None
    assert standin.stats()["callbacks_sent"] == 2


async def test_per_number_outcomes_in_callbacks(
    standin: RunningStandin, client: Client, receiver: CallbackReceiver
) -> None:
    standin.control(
        numbers={
            BOB: {"outcome": "undelivered", "error_code": 30003},
            CAROL: {"outcome": "failed", "error_code": 30006},
        }
    )
    to_bob = await client.messages.create_async(
        to=BOB, from_=SENDER, body="x", status_callback=receiver.url
    )
    to_carol = await client.messages.create_async(
        to=CAROL, from_=SENDER, body="x", status_callback=receiver.url
    )
    await receiver.wait_for(
        lambda: len(receiver.for_sid(to_bob.sid)) == 2 and len(receiver.for_sid(to_carol.sid)) == 1
    )

    assert [p["MessageStatus"] for p in receiver.for_sid(to_bob.sid)] == ["sent", "undelivered"]
    assert receiver.for_sid(to_bob.sid)[-1]["ErrorCode"] == "30003"
    assert "ErrorCode" not in receiver.for_sid(to_bob.sid)[0]
    (failed,) = receiver.for_sid(to_carol.sid)
    assert (failed["MessageStatus"], failed["ErrorCode"]) == ("failed", "30006")

    fetched = await client.messages(to_bob.sid).fetch_async()
    assert (fetched.status, fetched.error_code) == ("undelivered", 30003)


async def test_callbacks_can_be_switched_off(
    standin: RunningStandin, client: Client, receiver: CallbackReceiver
) -> None:
    standin.control(callbacks=False, callback_delay_ms=0)
    created = await client.messages.create_async(
        to=ALICE, from_=SENDER, body="x", status_callback=receiver.url
    )
    for _ in range(100):
        if standin.messages[created.sid].status == "delivered":
            break
        await asyncio.sleep(0.01)
    assert standin.messages[created.sid].status == "delivered"
    assert receiver.received == []


async def test_control_endpoint_inspection_and_reset(
    standin: RunningStandin, client: Client
) -> None:
    await client.messages.create_async(to=ALICE, from_=SENDER, body="x")
    async with httpx.AsyncClient(base_url=standin.base_url) as raw:
        settings = (
            await raw.post("/_standin/control", json={"delay_ms": 1, "numbers": {BOB: None}})
        ).json()
        assert settings["delay_ms"] == 1 and settings["callbacks"] is True
        bad = await raw.post("/_standin/control", json={"fail_status": 418})
        assert bad.status_code == 400

        stored = (await raw.get("/_standin/messages")).json()
        assert [m["to"] for m in stored] == [ALICE]
        assert (await raw.get("/_standin/stats")).json()["creates_accepted"] == 1

        reset = (await raw.post("/_standin/control", json={"reset": True})).json()
        assert reset["delay_ms"] == 0
        assert (await raw.get("/_standin/messages")).json() == []
        assert (await raw.get("/_standin/stats")).json() == {
            "messages": 0,
            "creates_accepted": 0,
            "creates_refused": {},
            "callbacks_sent": 0,
            "callbacks_failed": 0,
        }
    assert standin.messages == {}
    assert await client.messages.list_async() == []


async def test_many_concurrent_creates(standin: RunningStandin, client: Client) -> None:
    standin.control(callbacks=False)
    await asyncio.gather(
        *(
            client.messages.create_async(to=f"+4477009002{i:02d}", from_=SENDER, body="x")
            for i in range(100)
        )
    )
    assert len(standin.messages) == 100
    assert len(await client.messages.list_async(page_size=1000)) == 100
