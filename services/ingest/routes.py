"""`POST /v1/events`: canonical CloudEvents, one or a batch; `POST /v1/feeds/{feed}/events`:
one upstream feed's records (canonical or its native format), signed with the feed's secret
(`X-Carehub-Timestamp`, `X-Carehub-Signature: sha256=HMAC(secret, timestamp + "." + body)`; a
bad signature or a timestamp more than 300 s off gets 401 and is never processed).

Answers: 202 accepted, 200 {"status": "duplicate"}, 422 {"errors": [...]} for an invalid event,
409 for a conflicting duplicate (same source and id, different payload; kept in the DLQ), and
207 with a status per index and the counts for a batch.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from services.core import metrics, strict_json
from services.core.cloudevents import FieldError
from services.core.logs import get_logger
from services.core.records import CaseEventRef
from services.core.runtime import Runtime
from services.core.settings import Environment, Settings
from services.ingest.adapters import FEEDS
from services.ingest.feeds import feed_secret, ingest_records, signature_problem
from services.ingest.publishing import publish_events, publish_rejections
from services.ingest.recording import Outcome, record_event_safely, reject

log = get_logger("ingest")
BATCH_TYPE = "application/cloudevents-batch+json"
ACCEPTED_TYPES = ("application/cloudevents+json", BATCH_TYPE, "application/json")
STATUS_CODES = {"accepted": 202, "duplicate": 200, "invalid": 422, "conflict": 409}


def _error(status: int, pointer: str, message: str) -> JSONResponse:
    return JSONResponse({"errors": [{"pointer": pointer, "message": message}]}, status)


def router(rt: Runtime) -> APIRouter:
    api = APIRouter()
    settings = rt.settings
    skew = timedelta(seconds=settings.event_time_skew_s)

    @api.post("/v1/events")
    async def post_events(request: Request) -> JSONResponse:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in ACCEPTED_TYPES:
            return _error(415, "", f"content type must be one of {', '.join(ACCEPTED_TYPES)}")
        body = await _read_body(request, settings.max_request_bytes)
        if isinstance(body, JSONResponse):
            return body
        refused = _check_events_signature(settings, request, body)
        if refused is not None:
            return refused
        now = rt.clock.now()
        try:
            parsed: Any = strict_json.loads(body, values=False)
        except strict_json.JsonProblem as problem:
            async with rt.sessions.begin() as session:
                rejected = await reject(
                    session,
                    body,
                    now=now,
                    way_in="http",
                    reason_code=problem.code,
                    errors=[FieldError("", f"body {problem.message}")],
                )
            await publish_rejections(rt, [rejected.id])
            metrics.EVENTS_INGESTED.labels("invalid").inc()
            return _error(400, "", f"body {problem.message}")
        is_batch = isinstance(parsed, list)
        if media == BATCH_TYPE and not is_batch:
            return _error(400, "", "a batch must be a JSON array of events")
        items = parsed if is_batch else [parsed]
        if is_batch and not items:
            return _error(400, "", "the batch is empty")
        if len(items) > settings.max_batch_events:
            return _error(413, "", f"a batch holds at most {settings.max_batch_events} events")
        outcomes: list[Outcome] = []
        async with rt.sessions.begin() as session:
            for item in items:
                original = body if not is_batch else json.dumps(item).encode()
                if (bad := strict_json.value_problem(item)) is not None:
                    errors = [FieldError(bad.pointer, bad.message)]
                    rejected = await reject(
                        session,
                        original,
                        now=now,
                        way_in="http",
                        reason_code=bad.code,
                        errors=errors,
                    )
                    outcomes.append(Outcome("invalid", rejected_id=rejected.id, errors=errors))
                    continue
                outcomes.append(
                    await record_event_safely(
                        session, item, original, now=now, way_in="http", max_skew=skew
                    )
                )
        await after_commit(rt, outcomes)
        if not is_batch:
            result = outcomes[0]
            return JSONResponse(result.as_json(), STATUS_CODES[result.status])
        return _batch_response(outcomes)

    @api.post("/v1/feeds/{feed}/events")
    async def post_feed(feed: str, request: Request) -> JSONResponse:
        """Records from one upstream feed, signed with that feed's own secret."""
        if feed not in FEEDS:
            return _error(404, "", f"unknown feed; feeds are {', '.join(FEEDS)}")
        secret = feed_secret(settings, feed)
        if secret is None:
            return _error(403, "", f"the {feed} feed has no secret configured")
        body = await _read_body(request, settings.max_request_bytes)
        if isinstance(body, JSONResponse):
            return body
        now = rt.clock.now()
        problem = signature_problem(
            secret,
            request.headers.get("x-carehub-timestamp"),
            request.headers.get("x-carehub-signature"),
            body,
            time.time(),
        )
        if problem is not None:
            metrics.EVENTS_INGESTED.labels("unauthorised").inc()
            log.warning("feed.unauthorised", feed=feed)
            return _error(401, "", problem)
        async with rt.sessions.begin() as session:
            outcomes = await ingest_records(
                session, feed, body, now=now, way_in="http", max_skew=skew
            )
        await after_commit(rt, outcomes)
        if len(outcomes) == 1 and not body.lstrip().startswith(b"["):
            result = outcomes[0]
            return JSONResponse(result.as_json(), STATUS_CODES[result.status])
        return _batch_response(outcomes)

    return api


def _check_events_signature(
    settings: Settings, request: Request, body: bytes
) -> JSONResponse | None:
    """`/v1/events` takes any agency's events: signed with CAREHUB_EVENTS_SECRET when it is set,
    and refused outright in production when it is not."""
    secret = settings.events_secret
    if secret is None:
        if settings.env is Environment.PRODUCTION:
            return _error(403, "", "POST /v1/events needs CAREHUB_EVENTS_SECRET in production")
        return None
    problem = signature_problem(
        secret.get_secret_value(),
        request.headers.get("x-carehub-timestamp"),
        request.headers.get("x-carehub-signature"),
        body,
        time.time(),
    )
    if problem is not None:
        metrics.EVENTS_INGESTED.labels("unauthorised").inc()
        log.warning("events.unauthorised")
        return _error(401, "", problem)
    return None


def _batch_response(outcomes: list[Outcome]) -> JSONResponse:
    counts = {status: 0 for status in STATUS_CODES}
    for result in outcomes:
        counts[result.status] += 1
    return JSONResponse(
        {
            "results": [{"index": i, **o.as_json()} for i, o in enumerate(outcomes)],
            "counts": counts,
        },
        207,
    )


async def _read_body(request: Request, limit: int) -> bytes | JSONResponse:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return _error(413, "", f"body is larger than {limit} bytes")
    buffer = bytearray()
    async for chunk in request.stream():
        buffer += chunk
        if len(buffer) > limit:
            return _error(413, "", f"body is larger than {limit} bytes")
    return bytes(buffer)


async def after_commit(rt: Runtime, outcomes: list[Outcome]) -> None:
    refs = [
        CaseEventRef(o.case_event_id, o.event.source, o.event.id, o.event.type, o.event.subject)
        for o in outcomes
        if o.status == "accepted" and o.case_event_id is not None and o.event is not None
    ]
    await publish_events(rt, refs)
    await publish_rejections(rt, [o.rejected_id for o in outcomes if o.rejected_id is not None])
    for o in outcomes:
        metrics.EVENTS_INGESTED.labels(o.status).inc()
        log.info(
            f"event.{'ingested' if o.status == 'accepted' else o.status}",
            case_event_id=o.case_event_id,
            rejected_id=o.rejected_id,
            type=o.event.type if o.event else None,
        )


def mount(rt: Runtime, app: FastAPI) -> None:
    app.include_router(router(rt))
