"""Hostile input at every way in (issue 7, "Hostile input"): HTTP ingest, the feeds.* topics,
file drops, Twilio's webhooks, the portal's forms and JSON API, and the SMTP channel.

Each hostile input must get a clear 4xx (a message naming the problem, never echoing a value that
could be personal data) or a DLQ entry with its reason; nothing may crash a consumer or stall a
partition, and a good record after a bad one is still processed. Template syntax in a name or a
text reaches people as the characters it is, and nothing can add an e-mail header.

A test marked `bug(...)` (a strict xfail whose reason starts with "BUG:") shows a hole that is
still open: once it is fixed the test passes, the strict xfail fails the run, and the mark comes
off. SQLite, except where PostgreSQL behaves differently (NUL in text, column lengths). All data
is fake: phone numbers in Ofcom's drama range, e-mail addresses at example.org.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import math
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiosmtpd.controller import Controller
from argon2 import PasswordHasher
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from services import demo, ingest
from services.cli import SERVICES
from services.core.db import models as m
from services.core.embedded_broker import EmbeddedBroker, free_port
from services.core.runner import RunningStack, running_stack
from services.core.settings import Settings
from services.ingest.client import send_file
from services.ingest.feeds import sign
from services.notifier.channels.base import OutgoingMessage, PermanentFailure
from services.notifier.channels.smtp import SmtpChannel
from services.portal import auth
from tests.conftest import REPO
from tests.e2e.processes import base_env
from tests.integration.hostile_harness import (
    ENDLESS_CAP,
    HUB,
    TWILIO_TOKEN,
    Endless,
    World,
    endless_post,
    open_world,
)
from tests.integration.test_email_delivery import Mailbox
from tests.integration.test_ingest_http import read_topic
from tests.integration.test_pipeline import arrested, crime_recorded, seed_team, wait_for_files
from tests.integration.test_portal_api import SECRETS as STAFF_SECRETS
from tests.integration.test_portal_api import sign_in
from tests.integration.test_twilio_delivery import until

LIMIT = 256 * 1024  # CAREHUB_MAX_REQUEST_BYTES in these tests
POLICE_SECRET = "hostile-police-secret"
EVENTS_SECRET = "hostile-events-secret"
ROUTES = {
    "events": ("/v1/events", EVENTS_SECRET),
    "feed": ("/v1/feeds/police/events", POLICE_SECRET),
}
PERSONAL = "+447700900555"  # stands for personal data wherever a hostile sender puts it
SEVEN_TIMES_SEVEN = "{{ 7*7 }}"
LOOP = "{% for x in range(3) %}X{% endfor %}"
DEEP = ('{"a":' * 10_000 + "1" + "}" * 10_000).encode()
FORMULA = "=cmd|' /C calc'!A0"


def bug(reason: str, **kwargs: Any) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, reason=f"BUG: {reason}", **kwargs)


def signed(secret: str, body: bytes, *, stamp: int | str | None = None) -> dict[str, str]:
    timestamp = str(int(time.time()) if stamp is None else stamp)
    return {
        "content-type": "application/json",
        "x-carehub-timestamp": timestamp,
        "x-carehub-signature": sign(secret, timestamp, body),
    }


def survivor_event(event_id: str, **contact: Any) -> dict[str, Any]:
    """A crime record whose victim's phone is PERSONAL, with `contact` fields changed."""
    event = crime_recorded("01AB1234524", event_id)
    event["data"]["victims"][0]["contact"].update({"phone": PERSONAL, **contact})
    return event


def named(event_id: str, full: str) -> bytes:
    event = survivor_event(event_id)
    event["data"]["victims"][0]["name"] = {"full": full}
    return json.dumps(event).encode()


def errors_of(response: httpx.Response) -> list[dict[str, str]]:
    body = response.json()
    errors = body.get("errors") or body["results"][0]["errors"]
    assert isinstance(errors, list) and errors, body
    return errors


# --- HTTP ingest -------------------------------------------------------------------------------


@pytest.fixture
async def ingest_http(
    make_settings: Any, sqlite_url: str, broker: EmbeddedBroker
) -> AsyncIterator[RunningStack]:
    """Ingest alone on a real HTTP server and broker, both routes signed, a small body limit."""
    settings = make_settings(
        database_url=sqlite_url,
        kafka_bootstrap=broker.bootstrap,
        feed_secret_police=POLICE_SECRET,
        events_secret=EVENTS_SECRET,
        max_request_bytes=LIMIT,
    )
    async with running_stack(settings, [ingest], own_broker=False) as stack:
        yield stack


async def post(stack: RunningStack, way: str, body: bytes, **headers: str) -> httpx.Response:
    path, secret = ROUTES[way]
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as client:
        return await client.post(path, content=body, headers={**signed(secret, body), **headers})


async def rejected(stack: RunningStack) -> list[m.RejectedRecord]:
    async with stack.runtime.sessions() as session:
        rows = await session.scalars(select(m.RejectedRecord).order_by(m.RejectedRecord.id))
        return list(rows.all())


async def event_ids(stack: RunningStack) -> list[str]:
    async with stack.runtime.sessions() as session:
        rows = await session.scalars(select(m.CaseEvent.event_id).order_by(m.CaseEvent.id))
        return list(rows.all())


async def test_a_body_too_big_or_not_json_is_refused_before_it_is_read(
    ingest_http: RunningStack,
) -> None:
    """413 for a declared length over the limit and for a chunked body that never ends (cut off
    near the limit, never buffered whole); 415 for a content type other than JSON."""
    too_big = b"[" + b" " * LIMIT + b"]"
    async with httpx.AsyncClient(base_url=ingest_http.url, timeout=60) as client:
        for path, secret in ROUTES.values():
            declared = await client.post(path, content=too_big, headers=signed(secret, too_big))
            assert declared.status_code == 413, declared.text
            assert declared.json() == {
                "errors": [{"pointer": "", "message": f"body is larger than {LIMIT} bytes"}]
            }
            status, sent = await endless_post(
                ingest_http.url, path, {"content-type": "application/json"}
            )
            assert status == 413
            # The socket buffers hold a few MB on loopback; buffering it all would mean 48 MB.
            assert sent < ENDLESS_CAP // 4, sent
        for wrong in ("text/plain", "application/x-www-form-urlencoded", "application/jsonx", ""):
            refused = await client.post(
                "/v1/events", content=b"{}", headers={"content-type": wrong}
            )
            assert refused.status_code == 415, (wrong, refused.text)
            assert "content type must be one of" in errors_of(refused)[0]["message"]
        status, sent = await endless_post(
            ingest_http.url, "/v1/events", {"content-type": "text/csv"}
        )
        assert status == 415 and sent < ENDLESS_CAP // 4
        assert (await client.get("/healthz")).status_code == 200
    assert await rejected(ingest_http) == [] and await event_ids(ingest_http) == []


UNREADABLE = {
    "nested 10,000 levels": DEEP,
    "invalid UTF-8": b'{"specversion": "1.0", "id": "\xff\xfe"}',
    "an overlong UTF-8 encoding": b'{"specversion": "1.0", "id": "\xc0\xaf"}',
    "a lone surrogate": named("surrogate", "Casey \ud800 Example"),
    "a NUL character": named("nul", "Casey\u0000Example"),
    "random bytes": random.Random(7).randbytes(4096),
    "not an object": b'"a string"',
    "NaN": b'{"specversion": "1.0", "id": "nan", "time": NaN}',
}


# What /v1/events cannot refuse yet is in the bug tests below.
EVENTS_CANNOT_YET = {"nested 10,000 levels", "a lone surrogate", "a NUL character"}


async def test_unreadable_bodies_are_refused_kept_with_a_reason_and_ingest_goes_on(
    ingest_http: RunningStack,
) -> None:
    offered: list[bytes] = []
    for way in ROUTES:
        for what, body in UNREADABLE.items():
            if way == "events" and what in EVENTS_CANNOT_YET:
                continue
            response = await post(ingest_http, way, body)
            offered.append(body)
            assert response.status_code in (400, 422), (way, what, response.text)
            assert errors_of(response)[0]["message"], what
            assert PERSONAL not in response.text and "Casey" not in response.text
    kept = await rejected(ingest_http)
    assert [r.original for r in kept] == offered  # nothing lost
    assert all(r.reason_code and r.errors and r.way_in == "http" for r in kept)
    for way in ROUTES:
        good = await post(ingest_http, way, json.dumps(survivor_event(f"after-{way}")).encode())
        assert good.status_code == 202, good.text
    assert await event_ids(ingest_http) == ["after-events", "after-feed"]
    dlq = await read_topic(ingest_http.bootstrap, "case-events.dlq", len(offered))
    assert len(dlq) == len(offered)
    assert all(json.loads(r.value)["reason"] for r in dlq)
    assert not any(PERSONAL.encode() in r.value or b"Casey" in r.value for r in dlq)


async def test_the_events_route_refuses_json_nested_10000_levels_deep(
    ingest_http: RunningStack,
) -> None:
    response = await post(ingest_http, "events", DEEP)
    assert response.status_code in (400, 422), response.status_code
    assert "deep" in errors_of(response)[0]["message"]
    (kept,) = await rejected(ingest_http)
    assert kept.original == DEEP and kept.reason_code


async def test_the_feed_route_names_deep_nesting_as_the_problem(ingest_http: RunningStack) -> None:
    response = await post(ingest_http, "feed", DEEP)
    assert response.status_code == 422
    assert "deep" in errors_of(response)[0]["message"]
    (kept,) = await rejected(ingest_http)
    assert kept.reason_code == "too_deep"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(
            "Casey \ud800 Example",
            id="lone-surrogate",
        ),
        pytest.param(
            "Casey\u0000Example",
            id="nul",
        ),
    ],
)
async def test_the_events_route_refuses_text_nobody_can_store_or_read(
    ingest_http: RunningStack, text: str
) -> None:
    body = named("text", text)
    response = await post(ingest_http, "events", body)
    assert response.status_code == 422, (response.status_code, response.text)
    assert PERSONAL not in response.text and "Casey" not in response.text
    (kept,) = await rejected(ingest_http)
    assert kept.original == body and kept.reason_code == "invalid_text"
    assert await event_ids(ingest_http) == []


def with_raw(event: dict[str, Any], field: str, token: str) -> bytes:
    """The event as JSON with `field` set to a raw JSON token (not representable in Python)."""
    marker = "__raw__"
    return json.dumps({**event, field: marker}).replace(f'"{marker}"', token).encode()


async def test_numbers_json_cannot_hold_are_refused_and_kept(ingest_http: RunningStack) -> None:
    nfa = {**arrested("01AB1234524", "nfa"), "type": "police.no_further_action"}
    nfa["data"] = {"outcome_code": "__code__"}
    bodies = {
        "time 1e999": with_raw(arrested("01AB1234524", "inf"), "time", "1e999"),
        "outcome_code -1e999": json.dumps(nfa).replace('"__code__"', "-1e999").encode(),
        "an integer of 5,000 digits": with_raw(arrested("01AB1234524", "big"), "big", "9" * 5000),
        "time NaN": with_raw(arrested("01AB1234524", "nan"), "time", "NaN"),
    }
    for way in ROUTES:
        for what, body in bodies.items():
            response = await post(ingest_http, way, body)
            assert response.status_code in (400, 422), (way, what, response.text)
            assert errors_of(response)[0]["message"]
    kept = await rejected(ingest_http)
    assert len(kept) == 2 * len(bodies) and all(r.reason_code for r in kept)
    assert await event_ids(ingest_http) == []


async def test_an_enormous_integer_in_an_extension_attribute_is_refused(
    ingest_http: RunningStack,
) -> None:
    body = with_raw(arrested("01AB1234524", "big"), "big", "9" * 4000)
    response = await post(ingest_http, "events", body)
    assert response.status_code == 422, response.text
    assert errors_of(response)[0]["pointer"] == "/big"


async def test_a_duplicate_key_is_refused(ingest_http: RunningStack) -> None:
    for way in ROUTES:
        text = json.dumps(arrested("01AB1234524", "dup-b"))
        body = text.replace('"id": "dup-b"', f'"id": "dup-a", "id": "dup-b-{way}"').encode()
        response = await post(ingest_http, way, body)
        assert response.status_code in (400, 422), (way, response.text)
        assert "duplicate" in errors_of(response)[0]["message"]
    assert await event_ids(ingest_http) == []


async def test_a_replayed_signature_is_a_duplicate_and_a_stale_one_is_refused(
    ingest_http: RunningStack,
) -> None:
    async with httpx.AsyncClient(base_url=ingest_http.url) as client:
        for way, (path, secret) in ROUTES.items():
            body = json.dumps(arrested("01AB1234524", f"replay-{way}")).encode()
            headers = signed(secret, body)
            first = await client.post(path, content=body, headers=headers)
            again = await client.post(path, content=body, headers=headers)
            assert first.status_code == 202, first.text
            assert again.status_code == 200 and again.json()["status"] == "duplicate"
            other = json.dumps(arrested("01AB1234524", f"stale-{way}")).encode()
            # Taken just before each request, rounded away from the server's clock: on a slow
            # machine a stamp taken once at the start came within 300 s of it again.
            for offset in (-301, 301, -86_400):
                at = time.time() + offset
                stamp = math.floor(at) if offset < 0 else math.ceil(at)
                stale = await client.post(
                    path, content=other, headers=signed(secret, other, stamp=stamp)
                )
                assert stale.status_code == 401
                assert "300 s" in errors_of(stale)[0]["message"]
            for odd_stamp in ("-1", "1e9", "0x10", "12345678901234", "1.5", "+60"):
                odd = await client.post(
                    path, content=other, headers=signed(secret, other, stamp=odd_stamp)
                )
                assert odd.status_code == 401, (odd_stamp, odd.text)
    assert await event_ids(ingest_http) == ["replay-events", "replay-feed"]
    assert await rejected(ingest_http) == []


async def test_a_timestamp_of_superscript_digits_is_refused_not_a_500(
    ingest_http: RunningStack,
) -> None:
    async with httpx.AsyncClient(base_url=ingest_http.url) as client:
        for path, _secret in ROUTES.values():
            response = await client.post(
                path,
                content=b"{}",
                headers=[
                    (b"content-type", b"application/json"),
                    (b"x-carehub-timestamp", b"\xb2"),
                    (b"x-carehub-signature", b"sha256=00"),
                ],
            )
            assert response.status_code == 401, (path, response.status_code)


HOSTILE_CONTACTS = {
    "/data/victims/0/contact/email": [
        "casey@example.org\r\nBcc: intruder@example.org",
        "casey@example.org\nBcc: intruder@example.org",
        "Casey <casey@example.org>, intruder@example.org",
    ],
    "/data/victims/0/contact/phone": [
        "7" * 500,
        "+44 ☎",
        "📞📞📞",
        "+447700900123\r\nBcc: intruder@example.org",
        "+44 7700 900123",
    ],
}


async def test_header_injection_and_absurd_phone_numbers_are_refused_without_echo(
    ingest_http: RunningStack,
) -> None:
    sent = 0
    for way in ROUTES:
        for pointer, values in HOSTILE_CONTACTS.items():
            for n, value in enumerate(values):
                field = pointer.rsplit("/", 1)[1]
                event = survivor_event(f"{way}-{field}-{n}", **{field: value})
                response = await post(ingest_http, way, json.dumps(event).encode())
                sent += 1
                assert response.status_code == 422, (way, value, response.text)
                assert [e["pointer"] for e in errors_of(response)] == [pointer]
                for fragment in ("intruder", "☎", "📞", "7777", PERSONAL, "Casey"):
                    assert fragment not in response.text, (value, response.text)
    kept = await rejected(ingest_http)
    assert len(kept) == sent and {r.reason_code for r in kept} == {"invalid"}
    assert await event_ids(ingest_http) == []
    dlq = await read_topic(ingest_http.bootstrap, "case-events.dlq", sent)
    assert len(dlq) == sent
    assert not any(b"intruder" in r.value or PERSONAL.encode() in r.value for r in dlq)


async def test_a_phone_number_with_a_trailing_newline_is_refused(
    ingest_http: RunningStack,
) -> None:
    event = survivor_event("newline", phone="+447700900123\n")
    response = await post(ingest_http, "events", json.dumps(event).encode())
    assert response.status_code == 422, response.text
    assert errors_of(response)[0]["pointer"] == "/data/victims/0/contact/phone"


async def test_a_field_name_is_never_echoed_into_an_error(ingest_http: RunningStack) -> None:
    hostile_key = f"Casey {PERSONAL} \x1b[2J"
    plain_key = f"Casey {PERSONAL}"  # no control character: refused for being unexpected
    envelope = {**arrested("01AB1234524", "key1"), hostile_key: 1}
    data = {**arrested("01AB1234524", "key2"), "data": {hostile_key: 1}}
    plain = {**arrested("01AB1234524", "key3"), "data": {plain_key: 1}}
    plain_envelope = {**arrested("01AB1234524", "key4"), plain_key: 1}
    for event in (envelope, data, plain, plain_envelope):
        response = await post(ingest_http, "events", json.dumps(event).encode())
        assert response.status_code == 422
        assert PERSONAL not in response.text and "\\u001b" not in response.text, response.text
    for row in await rejected(ingest_http):
        assert PERSONAL not in json.dumps(row.errors)
    dlq = await read_topic(ingest_http.bootstrap, "case-events.dlq", 4)
    assert not any(PERSONAL.encode() in r.value for r in dlq)


# --- the feeds.* topics ------------------------------------------------------------------------


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, Any]]) -> None:
    """Send (value, headers) records with one key, so they share one partition, in order."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for value, headers in records:
            await producer.send_and_wait(topic, value, key=b"01AB1234524", headers=headers)
    finally:
        await producer.stop()


async def feed_consumer_ready(stack: RunningStack) -> None:
    """A first good record consumed: the consumer group has joined and reads the partition."""
    warm = json.dumps(survivor_event("warm-up")).encode()
    await produce(stack.bootstrap, "feeds.police", [(warm, None)])

    async def consumed() -> bool:
        return "warm-up" in await event_ids(stack)

    await until(consumed, timeout=40)


def feed_stack(make_settings: Any, url: str, broker: EmbeddedBroker, *services: Any) -> Any:
    settings = make_settings(
        database_url=url, kafka_bootstrap=broker.bootstrap, ingest_feed_topics=True
    )
    return running_stack(settings, [ingest, *services], own_broker=False)


async def test_hostile_records_on_a_feed_topic_are_kept_and_the_partition_goes_on(
    make_settings: Any, sqlite_url: str, broker: EmbeddedBroker
) -> None:
    oversized = survivor_event("oversized")
    oversized["data"]["crime_reference"] = "x" * 300_000
    hostile: list[bytes | None] = [
        random.Random(11).randbytes(4096),
        None,  # a tombstone
        b"",
        b"\xff\xfe{",
        named("k-surrogate", "Casey \ud800 Example"),
        named("k-nul", "Casey\u0000Example"),
        json.dumps(oversized).encode(),
        json.dumps([1, "two", None]).encode(),  # three records, each refused on its own
        json.dumps({**survivor_event("k-text"), "time": "yesterday"}).encode(),
    ]
    expected = len(hostile) + 2
    async with feed_stack(make_settings, sqlite_url, broker) as stack:
        await feed_consumer_ready(stack)
        after = json.dumps(survivor_event("after")).encode()
        await produce(stack.bootstrap, "feeds.police", [(v, None) for v in [*hostile, after]])

        async def everything_consumed() -> bool:
            return "after" in await event_ids(stack) and len(await rejected(stack)) >= expected

        await until(everything_consumed, timeout=30)
        await asyncio.sleep(0.5)  # a redelivered batch would show now
        assert await event_ids(stack) == ["warm-up", "after"]
        kept = await rejected(stack)
        assert len(kept) == expected
        assert all(r.reason_code and r.errors and r.way_in == "kafka" for r in kept)
        assert {r.feed for r in kept} == {"police"}
        dlq = await read_topic(stack.bootstrap, "case-events.dlq", expected)
        assert len(dlq) == expected and all(json.loads(r.value)["reason"] for r in dlq)
        assert not any(PERSONAL.encode() in r.value or b"Casey" in r.value for r in dlq)


async def test_a_record_the_broker_client_cannot_decode_never_stalls_a_partition(
    make_settings: Any, sqlite_url: str, broker: EmbeddedBroker
) -> None:
    from services import rules

    async with feed_stack(make_settings, sqlite_url, broker, rules) as stack:
        await feed_seed_and_wait(stack)
        # First on case-events (the rules' partition for this case), then the feed's records.
        await produce(
            stack.bootstrap,
            "case-events",
            [(b"[" * 100_000, None), (b"{}", [("content-type", b"\xff")])],
        )
        json_type = [("content-type", b"application/json")]
        text_type = [("content-type", b"text/plain")]
        unreadable_header = [("content-type", b"\xff"), ("x-trace", b"\xc3\x28")]
        await produce(
            stack.bootstrap,
            "feeds.police",
            [
                (DEEP, None),
                (b"not json at all", json_type),
                (b"\xff\xfe", text_type),
                (b"{}", unreadable_header),
                (json.dumps(survivor_event("after")).encode(), None),
            ],
        )

        async def after_processed() -> bool:
            async with stack.runtime.sessions() as session:
                done = await session.scalar(
                    select(m.CaseEvent.processed_at).where(m.CaseEvent.event_id == "after")
                )
            return done is not None

        # Once the consumers run, a record takes well under a second: waiting longer proves
        # nothing more.
        with contextlib.suppress(AssertionError):
            await until(after_processed, timeout=5)
        assert await after_processed(), "a good record behind the bad ones was never processed"
        assert len(await rejected(stack)) == 4


async def feed_seed_and_wait(stack: RunningStack) -> None:
    """The warm-up record consumed by ingest and then by the rules: both groups have joined."""
    await seed_team(stack)
    await feed_consumer_ready(stack)

    async def decided() -> bool:
        async with stack.runtime.sessions() as session:
            done = await session.scalar(
                select(m.CaseEvent.processed_at).where(m.CaseEvent.event_id == "warm-up")
            )
        return done is not None

    await until(decided, timeout=40)


# --- file drops --------------------------------------------------------------------------------


def jsonl(path: Path, *lines: bytes) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


async def drop(stack: RunningStack, path: Path) -> dict[str, int]:
    return await send_file(stack.url, path, feed="police", secret=POLICE_SECRET, batch_size=10)


async def test_a_10_mb_line_is_refused_alone_and_the_drop_goes_on(
    ingest_http: RunningStack, tmp_path: Path
) -> None:
    huge = survivor_event("huge")
    huge["data"]["crime_reference"] = "x" * 10_000_000
    path = jsonl(
        tmp_path / "drop.jsonl",
        json.dumps(arrested("01AB1234524", "first")).encode(),
        json.dumps(huge).encode(),
        json.dumps(arrested("01AB1234524", "last")).encode(),
    )
    summary = await drop(ingest_http, path)
    # The line ingest could never take stays in the file, counted apart; the others go.
    assert summary == {
        "accepted": 2,
        "rejected": 1,
        "duplicates": 0,
        "lines": 3,
        "too_long": 1,
    }
    assert await event_ids(ingest_http) == ["first", "last"]


async def test_a_line_with_invalid_utf8_is_refused_not_repaired(
    ingest_http: RunningStack, tmp_path: Path
) -> None:
    bad = named("utf8", "Casey Example").replace(b"Casey", b"Ca\xffsey")
    good = json.dumps(arrested("01AB1234524", "good")).encode()
    summary = await drop(ingest_http, jsonl(tmp_path / "drop.jsonl", bad, good))
    async with ingest_http.runtime.sessions() as session:
        names = (await session.scalars(select(m.Survivor.full_name))).all()
    assert not any("\ufffd" in (name or "") for name in names), names
    assert summary["rejected"] == 1 and summary["accepted"] == 1, summary
    (kept,) = await rejected(ingest_http)
    assert kept.original == bad


def police_csv(path: Path) -> Path:
    """The police example's crime record with a formula as a forename, and a second record
    whose mobile number is a formula."""
    header, row = (REPO / "schemas/examples/feeds/police.csv").read_text().splitlines()[:2]
    names = next(csv.reader([header]))
    record = dict(zip(names, next(csv.reader([row])), strict=True))
    record["parties.0.forenames"] = FORMULA
    second = {
        **record,
        "record_id": "OCC-9999-CR",
        "parties.0.party_ref": "P-FORMULA-2",
        "parties.0.mobile": '=HYPERLINK("http://intruder.example.org","Click")',
    }
    out = io.StringIO()
    writer = csv.DictWriter(out, names, lineterminator="\n")
    writer.writeheader()
    writer.writerows([record, second])
    path.write_text(out.getvalue())
    return path


async def carehub_dlq_list(stack: RunningStack, *args: str) -> subprocess.CompletedProcess[str]:
    settings = stack.runtime.settings
    env = base_env(
        CAREHUB_DATABASE_URL=settings.resolved_database_url,
        CAREHUB_VAR_DIR=str(settings.var_dir),
        CAREHUB_LOG_LEVEL="WARNING",
    )
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.cli", "dlq", "list", *args],
        env=env,
        cwd=settings.var_dir.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_a_csv_formula_is_plain_text_and_dlq_list_never_shows_it(
    ingest_http: RunningStack, tmp_path: Path
) -> None:
    summary = await drop(ingest_http, police_csv(tmp_path / "drop.csv"))
    assert summary == {
        "accepted": 1,
        "rejected": 1,
        "duplicates": 0,
        "lines": 2,
        "too_long": 0,
    }
    async with ingest_http.runtime.sessions() as session:
        survivor = await session.scalar(
            select(m.Survivor).where(m.Survivor.party_ref == "police/01:P-EXAMPLE-11")
        )
    assert survivor is not None and survivor.full_name == f"{FORMULA} Sample"  # stored as text
    (kept,) = await rejected(ingest_http)
    assert kept.reason_code == "invalid_field"
    assert [e["pointer"] for e in kept.errors] == ["/parties/0/mobile"]
    table, as_json = await asyncio.gather(
        carehub_dlq_list(ingest_http), carehub_dlq_list(ingest_http, "--format", "json")
    )
    assert table.returncode == 0 and as_json.returncode == 0, table.stderr + as_json.stderr
    assert "/parties/0/mobile" in table.stderr
    (listed,) = json.loads(as_json.stdout.strip().splitlines()[-1])["records"]
    assert listed["reason"] == "invalid_field" and listed["bytes"] == len(kept.original)
    for output in (table.stdout, table.stderr, as_json.stdout):
        for fragment in ("=cmd", "HYPERLINK", "intruder", "Sample", "07700"):
            assert fragment not in output, (fragment, output)


async def test_dlq_list_never_prints_control_characters_from_a_record(
    ingest_http: RunningStack, tmp_path: Path
) -> None:
    hostile = {**arrested("01AB1234524", "esc"), "x\x1b]0;owned\x07\x1b[2J": 1}
    path = jsonl(tmp_path / "drop.jsonl", json.dumps(hostile).encode())
    assert (await drop(ingest_http, path))["rejected"] == 1
    table = await carehub_dlq_list(ingest_http)
    assert table.returncode == 0, table.stderr
    assert "\x1b" not in table.stderr and "\x07" not in table.stderr, repr(table.stderr)


# --- an in-process world: portal and Twilio webhooks -------------------------------------------


def world_settings(make_settings: Any, url: str) -> Settings:
    settings: Settings = make_settings(
        database_url=url, twilio_auth_token=TWILIO_TOKEN, public_base_url=HUB
    )
    return settings


@pytest.fixture
def cheap_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2 at its cheapest: the default costs about half a second a hash on a busy machine,
    and what these tests check is not the hash."""
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    monkeypatch.setattr(auth, "_hasher", cheap)
    monkeypatch.setattr(auth, "_DUMMY_HASH", cheap.hash("not a password anyone has"))


@pytest.fixture
async def world(make_settings: Any, sqlite_url: str, cheap_passwords: None) -> AsyncIterator[World]:
    async with open_world(world_settings(make_settings, sqlite_url)) as opened:
        yield opened


@pytest.fixture
async def pg_world(make_settings: Any, pg_url: str, cheap_passwords: None) -> AsyncIterator[World]:
    async with open_world(world_settings(make_settings, pg_url)) as opened:
        yield opened


# --- Twilio webhooks ---------------------------------------------------------------------------

INBOUND = "/v1/providers/twilio/inbound"
DEMO_PHONE = "+447700900123"  # the demo survivor's number


def status_path(nid: str) -> str:
    return f"/v1/providers/twilio/status?nid={quote(nid, safe='')}"


async def test_a_forged_or_oversized_twilio_webhook_changes_nothing(world: World) -> None:
    before = await world.snapshot()
    receipt = {"MessageSid": "SMforged", "MessageStatus": "delivered"}
    stop = {"From": DEMO_PHONE, "Body": "STOP", "MessageSid": "SMstop"}
    for response in (
        await world.twilio(status_path(world.sending_id), receipt, token="not-the-token"),
        await world.twilio(INBOUND, stop, token="not-the-token"),
        await world.twilio(INBOUND, {**stop, "Body": "x" * 1_000_000, "MessageSid": "SMbig"}),
    ):
        assert response.status_code == 403
    async with world.client() as client:
        unsigned = await client.post(INBOUND, content=urlencode(stop))
        assert unsigned.status_code == 403
        not_a_form = await client.post(
            INBOUND,
            content=b"\xff\xfe{not a form",
            headers={"X-Twilio-Signature": "AAAA", "content-type": "text/plain"},
        )
        assert not_a_form.status_code == 403
    assert await world.snapshot() == before


async def test_an_endless_twilio_webhook_body_is_not_buffered(world: World) -> None:
    body = Endless(b"From=%2B447700900123&Body=")
    async with world.client() as client:
        response = await client.post(
            INBOUND,
            content=body,
            headers={
                "content-type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": "AAAA",
            },
        )
    assert 400 <= response.status_code < 500
    assert body.taken < 1024 * 1024, body.taken


async def test_an_endless_sign_in_form_is_not_buffered(world: World) -> None:
    # Many fields of 64 KiB: each under Starlette's 1 MiB a field, all together unbounded.
    body = Endless(b"username=demo-isva&csrf_token=x", b"&f=" + b"x" * 65533)
    async with world.client() as client:
        response = await client.post(
            "/sign-in",
            content=body,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert 400 <= response.status_code < 500
    assert body.taken < 1024 * 1024, body.taken


async def test_odd_receipts_and_inbound_texts_never_crash(world: World) -> None:
    unknown = {"MessageSid": "SMunknown", "MessageStatus": "delivered"}
    for nid in ("00000000-0000-5000-8000-000000000000", "n" * 5000, "", "'; DROP TABLE x"):
        response = await world.twilio(status_path(nid), unknown)
        assert response.status_code in (200, 204, 404), (nid[:20], response.status_code)
    long_sid = {"MessageSid": "SM" + "s" * 10_000, "MessageStatus": "sent"}
    assert (await world.twilio(status_path(world.sending_id), long_sid)).status_code == 204
    senders = ("📞📞", "7" * 500, "+44 ☎", f"{DEMO_PHONE}\r\nBcc: intruder@example.org", "")
    for n, sender in enumerate(senders):
        body = f"{SEVEN_TIMES_SEVEN} <b>hi</b>"
        text = {"From": sender, "Body": body, "MessageSid": f"SM{n}" + "m" * 10_000}
        response = await world.twilio(INBOUND, text)
        assert response.status_code == 200, (sender, response.text)
        assert "call 999" in response.text and "intruder" not in response.text
        assert SEVEN_TIMES_SEVEN not in response.text and "<b>" not in response.text
    async with world.rt.sessions() as session:
        kept = (await session.scalars(select(m.InboundMessage))).all()
    assert len(kept) == 5 and all(len(i.provider_ref) <= 64 for i in kept)
    assert {i.body for i in kept} == {f"{SEVEN_TIMES_SEVEN} <b>hi</b>"}  # kept as text


async def test_a_receipt_with_an_absurd_error_code_is_not_a_500(world: World) -> None:
    for code in ("²", "1" * 5000):
        receipt = {"MessageSid": "SMfailed", "MessageStatus": "failed", "ErrorCode": code}
        response = await world.twilio(status_path(world.sending_id), receipt)
        assert response.status_code == 204, (code[:10], response.status_code)


@pytest.mark.postgres
async def test_a_10000_character_message_sid_is_not_a_500_on_postgresql(pg_world: World) -> None:
    before = await pg_world.snapshot()
    receipt = {"MessageSid": "SM" + "s" * 10_000, "MessageStatus": "sent"}
    response = await pg_world.twilio(status_path(pg_world.sending_id), receipt)
    assert response.status_code in (204, 400, 403), response.status_code
    assert (await pg_world.snapshot())["inbound"] == before["inbound"]


@pytest.mark.postgres
async def test_a_nul_in_a_notification_id_is_a_404_on_postgresql(pg_world: World) -> None:
    answers = {}
    async with pg_world.client() as client:
        await sign_in(client, "demo-isva", STAFF_SECRETS["demo-isva"])
        headers = await pg_world.api_headers()
        for path in ("/messages/%00", "/api/v1/messages/%00"):
            answers[path] = (await client.get(path, headers=headers)).status_code
    receipt = {"MessageSid": "SMnul", "MessageStatus": "delivered"}
    answers["receipt"] = (await pg_world.twilio(status_path("\x00"), receipt)).status_code
    assert answers == {"/messages/%00": 404, "/api/v1/messages/%00": 404, "receipt": 204}


# --- the portal --------------------------------------------------------------------------------


async def sign_in_attempt(
    client: httpx.AsyncClient, username: str, password: str
) -> httpx.Response:
    form = await client.get("/sign-in")
    marker = 'name="csrf_token" value="'
    token = form.text.split(marker, 1)[1].split('"', 1)[0]
    return await client.post(
        "/sign-in", data={"username": username, "password": password, "csrf_token": token}
    )


async def test_sign_in_with_a_huge_password_or_an_odd_username_is_refused_quickly(
    world: World,
) -> None:
    attempts = [
        ("demo-isva", "p" * 1_000_000),
        ("x' OR '1'='1' --", demo.DEMO_PASSWORD),
        ('demo-isva"; DROP TABLE staff_accounts; --', demo.DEMO_PASSWORD),
        ("u" * 10_000, demo.DEMO_PASSWORD),
        ("demo-isva\u0000", demo.DEMO_PASSWORD),
    ]
    async with world.client() as client:
        for username, password in attempts:
            started = time.monotonic()
            response = await sign_in_attempt(client, username, password)
            assert time.monotonic() - started < 5
            if len(password) > 64 * 1024:
                # More than any sign-in form can hold: refused unread, as too much to send.
                assert response.status_code == 413, (username[:40], response.status_code)
                assert "too much to send" in response.text
                continue
            assert response.status_code == 401, (username[:40], response.status_code)
            assert "The username or password is not right" in response.text
            assert "ppppp" not in response.text and "DROP TABLE" not in response.text
            assert "uuuuu" not in response.text
            assert "carehub_session" not in response.headers.get("set-cookie", "")
    async with world.rt.sessions() as session:
        throttle = await session.get(m.SignInThrottle, "user:demo-isva")
        tables = await session.scalar(select(func.count()).select_from(m.StaffAccount))
    assert throttle is None  # refused unread: no attempt on the account was made
    assert tables == 3


@pytest.mark.postgres
async def test_sign_in_with_a_nul_in_the_username_on_postgresql(pg_world: World) -> None:
    async with pg_world.client() as client:
        response = await sign_in_attempt(client, "demo-isva\u0000", demo.DEMO_PASSWORD)
    assert response.status_code == 401, response.status_code


HOSTILE_PREFERENCES = {
    "phone": "+44 7700 900123\r\nBcc: intruder@example.org",
    "sms_safe": "yes",
    "sms_safe_review_by": "2027-01-01",
    "email": "casey@example.org\r\nBcc: intruder@example.org",
    "email_safe": "yes",
    "email_safe_review_by": "2027-01-01",
    "reason_code": "because_i_said_so",
}


async def test_hostile_preferences_are_refused_field_by_field(world: World) -> None:
    before = await world.snapshot()
    path = f"/survivors/{world.survivor_id}/preferences"
    async with world.client() as client:
        csrf = await sign_in(client, "demo-isva", STAFF_SECRETS["demo-isva"])
        form = await client.post(
            path,
            data={**HOSTILE_PREFERENCES, "reason_note": "n" * 10_000, "csrf_token": csrf},
        )
        assert form.status_code == 400, form.text
        for message in (
            "Enter a phone number",
            "Enter an e-mail address",
            "Say why the preferences are changing",
            "The note must be 500 characters or fewer",
        ):
            assert message in form.text
        api = await client.put(
            f"/api/v1{path}",
            json={**HOSTILE_PREFERENCES, "phone": "+447700900123\r\nBcc: i@example.org"},
            headers={**(await world.api_headers()), "x-csrf-token": csrf},
        )
        assert api.status_code == 422, api.text
        assert set(api.json()["detail"]) >= {"phone", "email", "reason_code"}
        assert "intruder" not in api.text and "i@example.org" not in api.text
        for wrong in (
            {"reason_code": "survivor_asked", "nickname": "Casey"},
            {"reason_code": "survivor_asked", "sms_safe": "perhaps"},
            {"reason_code": "survivor_asked", "phone": ["+447700900123"]},
            {"reason_code": "survivor_asked", "reason_note": "n" * 10_000},
            {"reason_code": {"$ne": None}},
        ):
            refused = await client.put(
                f"/api/v1{path}", json=wrong, headers=await world.api_headers()
            )
            assert refused.status_code == 422, (wrong, refused.text[:200])
        deep = await client.put(
            f"/api/v1/survivors/{world.survivor_id}/preferences",
            content=b"[" * 10_000 + b"]" * 10_000,
            headers={**(await world.api_headers()), "content-type": "application/json"},
        )
        assert deep.status_code == 400, deep.text
    assert await world.snapshot() == before


async def test_the_json_api_names_refused_fields_without_echoing_them(world: World) -> None:
    url = f"/api/v1/survivors/{world.survivor_id}/preferences"
    headers = await world.api_headers()
    async with world.client() as client:
        for body in (
            {"reason_code": "survivor_asked", "nickname": f"Casey {PERSONAL}"},
            {"reason_code": "survivor_asked", "sms_safe": f"Casey {PERSONAL}"},
            {"reason_code": "survivor_asked", "phone": PERSONAL * 4},
            {"reason_code": "survivor_asked", "reason_note": f"Casey {PERSONAL} " * 700},
            {"reason_code": ["survivor_asked", {"nested": PERSONAL}]},
        ):
            response = await client.put(url, json=body, headers=headers)
            assert response.status_code == 422, response.text
            assert PERSONAL not in response.text, response.text[:300]


async def test_absurd_ids_in_a_url_are_a_404(world: World) -> None:
    huge, long_id = 10**30, "n" * 5000
    async with world.client() as client:
        await sign_in(client, "demo-isva", STAFF_SECRETS["demo-isva"])
        headers = await world.api_headers()
        for path in (
            f"/survivors/{huge}",
            f"/survivors/{huge}/preferences",
            f"/messages/{long_id}",
            f"/api/v1/survivors/{huge}",
            f"/api/v1/messages/{long_id}",
        ):
            response = await client.get(path, headers=headers)
            assert response.status_code == 404, (path[:40], response.status_code)
            assert long_id[:100] not in response.text
        action = await client.post(
            f"/api/v1/messages/{long_id}/actions", json={"action": "release"}, headers=headers
        )
        assert action.status_code == 404
        assert (await client.get("/survivors/-1")).status_code == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param(
            "PUT",
            f"/api/v1/survivors/{10**30}/preferences",
            id="api-preferences",
        ),
        pytest.param(
            "GET",
            f"/letters/{10**30}",
            id="letter",
        ),
    ],
)
async def test_an_id_beyond_any_database_integer_is_a_404(
    world: World, method: str, path: str
) -> None:
    async with world.client() as client:
        await sign_in(client, "demo-isva", STAFF_SECRETS["demo-isva"])
        body = {"reason_code": "survivor_asked"} if method == "PUT" else None
        response = await client.request(method, path, json=body, headers=await world.api_headers())
    assert response.status_code == 404, response.status_code


# --- SMTP --------------------------------------------------------------------------------------


async def test_crlf_in_a_subject_or_recipient_never_adds_a_header() -> None:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        channel = SmtpChannel(
            host="127.0.0.1",
            port=port,
            sender="updates@example.org",
            security="none",
            timeout_s=2,
            data_timeout_s=2,
        )
        message = OutgoingMessage(
            notification_id="00000000-0000-5000-8000-00000000000a",
            event_id="hostile-1",
            case_urn="01AB1234524",
            recipient_role="survivor",
            channel="email",
            to="casey@example.org",
            language="en",
            template="survivor_case_update",
            template_version=1,
            subject="An update from Care Hub",
            body=(
                f"Hello {SEVEN_TIMES_SEVEN}\r\nBcc: intruder@example.org\r\n\r\n"
                "Content-Type: text/html\n\n<script>alert(1)</script>\n.\nRCPT TO:<x@example.org>\n"
            ),
            send_at=None,
            due_by=None,
        )
        for hostile in (
            replace(message, subject="Update\r\nBcc: intruder@example.org"),
            replace(message, subject="Update\nBcc: intruder@example.org"),
            replace(message, to="casey@example.org\r\nBcc: intruder@example.org"),
            replace(message, to="casey@example.org>\r\nRCPT TO:<intruder@example.org"),
        ):
            with pytest.raises(PermanentFailure) as refused:
                await channel.send(hostile, datetime.now(UTC))
            assert refused.value.code in ("invalid_subject", "invalid_address")
            assert "intruder" not in str(refused.value)
        await channel.send(message, datetime.now(UTC))
        ((recipients, received),) = mailbox.received
        assert recipients == ["casey@example.org"]
        assert received["Bcc"] is None and received["Subject"] == "An update from Care Hub"
        assert received.get_content_type() == "multipart/alternative"
        text, html = received.get_body(("plain",)), received.get_body(("html",))
        assert text is not None and html is not None
        assert "Bcc: intruder@example.org" in text.get_content()  # words in the body, no header
        assert SEVEN_TIMES_SEVEN in text.get_content()
        assert "&lt;script&gt;" in html.get_content() and "<script>" not in html.get_content()
    finally:
        controller.stop()


# --- the whole stack: template syntax reaches people as text ------------------------------------


async def test_template_syntax_in_a_name_or_a_text_reaches_people_literally(
    make_settings: Any, sqlite_url: str, broker: EmbeddedBroker
) -> None:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings = make_settings(
        database_url=sqlite_url,
        kafka_bootstrap=broker.bootstrap,
        email_channel="smtp",
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security="none",
        smtp_from="updates@example.org",
        smtp_timeout_s=2,
        twilio_auth_token=TWILIO_TOKEN,
    )
    try:
        async with running_stack(settings, list(SERVICES.values()), own_broker=False) as stack:
            await seed_team(stack)
            event = crime_recorded("01AB1234524", "template")
            victim = event["data"]["victims"][0]
            victim["name"] = {"full": f"{LOOP} <b>Example</b>", "preferred": SEVEN_TIMES_SEVEN}
            phone = victim["contact"]["phone"]
            response = await post_json(stack, "/v1/events", event)
            assert response.status_code == 202, response.text

            (text,) = await wait_for_files(stack.runtime.settings.resolved_outbox_dir, 1)
            assert text["channel"] == "sms" and text["to"] == phone
            assert text["body"].startswith(f"Hello {SEVEN_TIMES_SEVEN}, ")
            assert "Hello 49" not in text["body"]

            reply = f"{SEVEN_TIMES_SEVEN} {LOOP} <script>alert(1)</script>"
            params = {"From": phone, "To": "+447700900001", "Body": reply, "MessageSid": "SMt1"}
            url = f"{stack.url}/v1/providers/twilio/inbound"
            signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, params)
            async with httpx.AsyncClient() as client:
                answered = await client.post(
                    url,
                    content=urlencode(params),
                    headers={
                        "content-type": "application/x-www-form-urlencoded",
                        "X-Twilio-Signature": signature,
                    },
                )
            assert answered.status_code == 200 and "passed your message" in answered.text
            assert SEVEN_TIMES_SEVEN not in answered.text  # the automatic reply never echoes

            def passed_on() -> list[Any]:
                return [
                    (to, message)
                    for to, message in mailbox.received
                    if str(message["Subject"]).startswith("A survivor replied by text")
                ]

            async def arrived() -> list[Any]:
                return passed_on()

            ((recipients, email),) = await until(arrived)
            assert recipients == ["sam.supervisor@example.org"] and email["Bcc"] is None
            plain, html = email.get_body(("plain",)), email.get_body(("html",))
            assert plain is not None and html is not None
            assert reply in plain.get_content()
            assert "XXX" not in plain.get_content() and "49 " not in plain.get_content()
            assert f"{SEVEN_TIMES_SEVEN} {LOOP} &lt;script&gt;" in html.get_content()
    finally:
        controller.stop()


async def post_json(stack: RunningStack, path: str, event: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=stack.url) as client:
        return await client.post(
            path, json=event, headers={"content-type": "application/cloudevents+json"}
        )
