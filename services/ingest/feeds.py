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
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.core import strict_json
from services.core.cloudevents import FieldError
from services.core.http_limits import is_ascii_number
from services.core.settings import Settings
from services.ingest.adapters import FEEDS, MAX_RECORD_BYTES, AdapterError, from_record
from services.ingest.recording import Outcome, record_event_safely, reject

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
    if len(raw) > MAX_RECORD_BYTES * 500:
        return [await _refuse(session, feed, raw, now, way_in, "oversized", "", "is too large")]
    try:
        parsed: Any = strict_json.loads(raw, values=False)  # each record's values: below
    except strict_json.JsonProblem as problem:
        return [await _refuse(session, feed, raw, now, way_in, problem.code, "", problem.message)]
    items = parsed if isinstance(parsed, list) else [parsed]
    outcomes: list[Outcome] = []
    for item in items:
        original = raw if len(items) == 1 else json.dumps(item).encode()
        outcomes.append(
            await ingest_record(
                session, feed, item, original, now=now, way_in=way_in, max_skew=max_skew
            )
        )
    return outcomes


async def ingest_record(
    session: AsyncSession,
    feed: str,
    item: object,
    original: bytes,
    *,
    now: datetime,
    way_in: str,
    max_skew: timedelta,
) -> Outcome:
    if len(original) > MAX_RECORD_BYTES:
        return await _refuse(
            session, feed, original, now, way_in, "oversized", "", "record is too large"
        )
    if not isinstance(item, Mapping):
        return await _refuse(
            session, feed, original, now, way_in, "not_an_object", "", "must be a JSON object"
        )
    if (bad := strict_json.value_problem(item)) is not None:
        return await _refuse(
            session, feed, original, now, way_in, bad.code, bad.pointer, bad.message
        )
    try:
        event = from_record(feed, item)
    except AdapterError as exc:
        rejected = await reject(
            session,
            original,
            now=now,
            way_in=way_in,
            feed=feed,
            reason_code=exc.reason_code,
            errors=list(exc.errors) or [FieldError("", str(exc.reason_code))],
        )
        return Outcome("invalid", rejected_id=rejected.id, errors=list(exc.errors))
    except RecursionError:
        return await _refuse(
            session, feed, original, now, way_in, "too_deep", "", "is nested too deeply"
        )
    source = event.get("source")
    if not (isinstance(source, str) and source.startswith(f"{feed}/")):
        # One feed cannot take another's (source, id) pairs (and make theirs conflicts).
        return await _refuse(
            session,
            feed,
            original,
            now,
            way_in,
            "source_not_allowed_for_feed",
            "/source",
            f"must start with {feed}/",
        )
    return await record_event_safely(
        session, event, original, now=now, way_in=way_in, max_skew=max_skew, feed=feed
    )


async def _refuse(
    session: AsyncSession,
    feed: str,
    original: bytes,
    now: datetime,
    way_in: str,
    reason: str,
    pointer: str,
    message: str,
) -> Outcome:
    errors = [FieldError(pointer, message)]
    rejected = await reject(
        session, original, now=now, way_in=way_in, feed=feed, reason_code=reason, errors=errors
    )
    return Outcome("invalid", rejected_id=rejected.id, errors=errors)
