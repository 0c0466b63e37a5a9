"""Records from an upstream feed (police, CPS, court, probation), whichever way they came.

A body or a Kafka record holds one record (a JSON object) or several (a JSON array); each record
is a canonical CloudEvent or that feed's native format (`services/ingest/adapters/`). Each is
mapped, validated and recorded on its own: one bad record is kept with its reason and never
takes the others down with it. A feed may only send its own event types.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.core import strict_json
from services.core.cloudevents import CanonicalEvent, FieldError, InvalidEvent, validate_event
from services.core.http_limits import is_ascii_number
from services.core.settings import Settings
from services.ingest.adapters import FEEDS, MAX_RECORD_BYTES, AdapterError, from_record
from services.ingest.recording import Outcome, record_event_safely, record_run, reject

SIGNATURE_PREFIX = "sha256="
SIGNATURE_MAX_AGE_S = 300


def feed_secret(settings: Settings, feed: str) -> str | None:
    secret = getattr(settings, f"feed_secret_{feed}", None) if feed in FEEDS else None
    return secret.get_secret_value() if secret is not None else None


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`X-Carehub-Signature`: HMAC-SHA256 over `timestamp + "." + raw body`, in hex."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def signature_problem(
    secret: str, timestamp: str | None, signature: str | None, body: bytes, now_s: float
) -> str | None:
    """Why a signed request must be refused (401), or None when it is good and fresh.

    Freshness is judged by real time (`now_s`, Unix seconds), not the injectable business clock:
    it is about when two real systems talked."""
    if not timestamp or not signature:
        return "X-Carehub-Timestamp and X-Carehub-Signature are required"
    if not is_ascii_number(timestamp, max_digits=12):
        return "X-Carehub-Timestamp must be Unix seconds"
    if abs(now_s - int(timestamp)) > SIGNATURE_MAX_AGE_S:
        return f"X-Carehub-Timestamp is more than {SIGNATURE_MAX_AGE_S} s from our clock"
    given = signature.strip().encode("utf-8", "replace")
    if not hmac.compare_digest(sign(secret, timestamp, body).encode(), given):
        return "X-Carehub-Signature does not match the body"
    return None


async def ingest_records(
    session: AsyncSession,
    feed: str,
    raw: bytes,
    *,
    now: datetime,
    way_in: str,
    max_skew: timedelta,
) -> list[Outcome]:
    """Map, validate and record every record in `raw`, inside the caller's transaction."""
    return await ingest_values(session, [(feed, raw)], now=now, way_in=way_in, max_skew=max_skew)


async def ingest_values(
    session: AsyncSession,
    values: Sequence[tuple[str, bytes]],
    *,
    now: datetime,
    way_in: str,
    max_skew: timedelta,
) -> list[Outcome]:
    """`ingest_records` for several (feed, raw value) pairs (a consumed batch), in order.

    Consecutive valid events that create no case are recorded together (`record_run`: one
    statement for the lot); anything else — a refusal, an invalid event, a crime record — on
    its own, after the run before it, so rows and audit entries come in the records' order.
    """
    outcomes: list[Outcome | None] = []
    run: list[tuple[object, CanonicalEvent, bytes, str | None]] = []
    at: list[int] = []

    async def record_the_run() -> None:
        if run:
            for n, outcome in zip(
                at,
                await record_run(session, run, now=now, way_in=way_in, max_skew=max_skew),
                strict=True,
            ):
                outcomes[n] = outcome
            run.clear()
            at.clear()

    for feed, raw in values:
        for checked, original in _records(feed, raw):
            if isinstance(checked, dict):
                try:
                    event = validate_event(checked, now=now, max_skew=max_skew)
                except InvalidEvent:
                    event = None  # recorded on its own below: rejected with its reasons
                if event is not None and event.type != "police.crime_recorded":
                    at.append(len(outcomes))
                    run.append((checked, event, original, feed))
                    outcomes.append(None)
                    continue
            await record_the_run()
            if isinstance(checked, _Refusal):
                outcomes.append(await _refused(session, feed, original, now, way_in, checked))
            else:
                outcomes.append(
                    await record_event_safely(
                        session,
                        checked,
                        original,
                        now=now,
                        way_in=way_in,
                        max_skew=max_skew,
                        feed=feed,
                    )
                )
    await record_the_run()
    assert all(outcome is not None for outcome in outcomes)
    return [outcome for outcome in outcomes if outcome is not None]


def _records(feed: str, raw: bytes) -> list[tuple[_Refusal | dict[str, Any], bytes]]:
    """Each record in `raw`, mapped to a canonical event (not yet validated) or refused, with
    the bytes to keep for it."""
    if len(raw) > MAX_RECORD_BYTES * 500:
        return [(_Refusal("oversized", "", "is too large"), raw)]
    try:
        parsed: Any = strict_json.loads(raw, values=False)  # each record's values: below
    except strict_json.JsonProblem as problem:
        return [(_Refusal(problem.code, "", problem.message), raw)]
    items = parsed if isinstance(parsed, list) else [parsed]
    records: list[tuple[_Refusal | dict[str, Any], bytes]] = []
    for item in items:
        original = raw if len(items) == 1 else json.dumps(item).encode()
        records.append((_check(feed, item, original), original))
    return records


@dataclass(frozen=True)
class _Refusal:
    """Why a record is refused before it is an event: a reason code and where, or the feed
    adapter's own errors."""

    reason: str
    pointer: str = ""
    message: str = ""
    adapter_errors: tuple[FieldError, ...] | None = None


def _check(feed: str, item: object, original: bytes) -> _Refusal | dict[str, Any]:
    """The record mapped to a canonical event of this feed (not yet validated), or why not."""
    if len(original) > MAX_RECORD_BYTES:
        return _Refusal("oversized", "", "record is too large")
    if not isinstance(item, Mapping):
        return _Refusal("not_an_object", "", "must be a JSON object")
    if (bad := strict_json.value_problem(item)) is not None:
        return _Refusal(bad.code, bad.pointer, bad.message)
    try:
        event = from_record(feed, item)
    except AdapterError as exc:
        return _Refusal(str(exc.reason_code), adapter_errors=tuple(exc.errors))
    except RecursionError:
        return _Refusal("too_deep", "", "is nested too deeply")
    source = event.get("source")
    if not (isinstance(source, str) and source.startswith(f"{feed}/")):
        # One feed cannot take another's (source, id) pairs (and make theirs conflicts).
        return _Refusal("source_not_allowed_for_feed", "/source", f"must start with {feed}/")
    return event


async def _refused(
    session: AsyncSession,
    feed: str,
    original: bytes,
    now: datetime,
    way_in: str,
    refusal: _Refusal,
) -> Outcome:
    if refusal.adapter_errors is None:
        errors = stored = [FieldError(refusal.pointer, refusal.message)]
    else:
        errors = list(refusal.adapter_errors)
        stored = errors or [FieldError("", refusal.reason)]
    rejected = await reject(
        session,
        original,
        now=now,
        way_in=way_in,
        feed=feed,
        reason_code=refusal.reason,
        errors=stored,
    )
    return Outcome("invalid", rejected_id=rejected.id, errors=errors)
