"""The portal's JSON API under `/api/v1`: the same operations as the pages, for tools.

A caller is a staff account, by bearer API token (`carehub staff token`) or by the browser's
session cookie; a cookie caller must also send the session's CSRF token in `X-CSRF-Token` on
every change. The same access rules as the pages apply: someone else's survivor is a 404.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.security import APIKeyCookie, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from services.core.db import models as m
from services.core.db.queries import current_preferences
from services.core.message_variables import draft
from services.portal import access, views
from services.portal import preferences as prefs
from services.portal.auth import SESSION_COOKIE, Role, Staff, csrf_ok
from services.portal.pages import (
    _message_for,
    _viewed,
    real_id,
    record_action,
    told_at_problem,
)
from services.portal.web import identify, runtime

# For the OpenAPI document only: `_caller` does the checking (a token, else the session cookie).
_TOKEN = HTTPBearer(
    scheme_name="apiToken",
    auto_error=False,
    description="An API token from `carehub staff token`.",
)
_COOKIE = APIKeyCookie(
    name=SESSION_COOKIE,
    scheme_name="session",
    auto_error=False,
    description="The portal's session cookie; a change must also send `X-CSRF-Token`.",
)

router = APIRouter(
    prefix="/api/v1", tags=["portal"], dependencies=[Depends(_TOKEN), Depends(_COOKIE)]
)

# Instants and days go out as the ISO 8601 text the pages use (`2026-11-18T11:00:00+00:00`).
Instant = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
Day = Annotated[str, Field(json_schema_extra={"format": "date"})]
HH_MM = r"^\d\d:\d\d$"


class Problem(BaseModel):
    detail: str


class FieldProblem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Invalid(BaseModel):
    """A request that cannot be carried out as it stands: the parts that do not fit the
    document (a list), the fields whose values are wrong (field: what is wrong), or in words."""

    detail: list[FieldProblem] | dict[str, str] | str


class _Out(BaseModel):
    # A key the views add and the model leaves out fails the tests, instead of going missing.
    model_config = ConfigDict(extra="forbid")


class CaseloadLine(_Out):
    survivor_id: int
    name: str
    cases: list[str]
    next_deadline: Instant | None
    held: int
    held_deadline: Instant | None
    unreachable: bool


class CaseOut(_Out):
    id: int
    urn: str
    status: str
    closed_at: Instant | None
    enhanced_rights: bool


class PreferencesOut(_Out):
    version: int
    recorded_at: Instant
    recorded_by: str
    reason_code: str
    phone: str | None
    sms_safe: bool
    sms_safe_review_by: Day | None
    email: str | None
    email_safe: bool
    email_safe_review_by: Day | None
    letter_safe: bool
    letter_safe_review_by: Day | None
    postal_address: str | None
    language: str
    timezone: str
    safe_window_start: str = Field(pattern=HH_MM)
    safe_window_end: str = Field(pattern=HH_MM)
    frequency: str
    detail: str
    opted_out: bool
    feedback_opt_in: bool


class PreferencesVersion(_Out):
    version: int
    recorded_at: Instant
    recorded_by: str
    reason_code: str


class MessageOut(_Out):
    id: str
    recipient_role: str
    channel: str | None
    template: str
    status: str
    status_reason: str | None
    hold_reason: str | None
    rule: str
    send_at: Instant | None
    due_by: Instant | None
    seconds_left: int | None
    informed_at: Instant | None
    created_at: Instant


class TimelineItem(_Out):
    at: Instant
    kind: Literal["event", "decision", "message", "delivery"]
    what: str
    detail: str
    rule: str | None
    ref: str | None


class SurvivorOut(_Out):
    survivor_id: int
    name: str
    full_name: str | None
    consent_to_referral: bool
    cases: list[CaseOut]
    advocate: str | None
    preferences: PreferencesOut | None
    unreachable: bool
    history: list[PreferencesVersion]
    held: list[MessageOut]
    timeline: list[TimelineItem]


class Draft(_Out):
    subject: str | None
    body: str


class ActionOut(_Out):
    action: str
    requested_at: Instant
    outcome: str | None
    outcome_reason: str | None


class MessageDetail(MessageOut):
    """A message, with the words it would go out with now (None when it cannot be drafted) and
    every action asked for on it."""

    draft: Draft | None
    actions: list[ActionOut]


class Accepted(_Out):
    status: Literal["accepted"]
    notification_id: str


class PreferencesIn(BaseModel):
    """A change of contact preferences: fields left out keep their current value."""

    model_config = ConfigDict(extra="forbid")
    phone: str | None = Field(default=None, max_length=40)
    sms_safe: bool | None = None
    sms_safe_review_by: date | None = None
    email: str | None = Field(default=None, max_length=254)
    email_safe: bool | None = None
    email_safe_review_by: date | None = None
    letter_safe: bool | None = None
    letter_safe_review_by: date | None = None
    postal_address: str | None = Field(default=None, max_length=400)
    language: Literal["en", "cy"] | None = None
    safe_window_start: str | None = Field(default=None, pattern=r"^\d\d:\d\d$")
    safe_window_end: str | None = Field(default=None, pattern=r"^\d\d:\d\d$")
    frequency: Literal["all", "key_stages", "none"] | None = None
    detail: Literal["discreet", "detailed"] | None = None
    opted_out: bool | None = None
    feedback_opt_in: bool | None = None
    consent_to_referral: bool | None = None
    # Any other code is refused with a 422 that names the field (`preferences.check`).
    reason_code: str = Field(max_length=48, json_schema_extra={"enum": list(views.REASON_CODES)})
    reason_note: str | None = Field(default=None, max_length=500)


class ActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["release", "told_in_person", "cancel"]
    # cancel: one of CANCEL_REASONS (else a 400 that says so); ignored for the other actions.
    reason_code: str | None = Field(default=None, max_length=48)
    note: str | None = Field(default=None, max_length=500)
    # told_in_person: when they were told (with its offset); default: now.
    told_at: datetime | None = None
    # release: a line of the advocate's own in the message (services.core.discreet's bounds).
    personal_line: str | None = Field(default=None, max_length=400)


async def _caller(request: Request, *, changes: bool) -> Staff:
    staff = await identify(request, api=True)
    if staff is None:
        raise HTTPException(401, "sign in, or send an API token as 'Authorization: Bearer …'")
    if (
        changes
        and staff.session_id is not None
        and not csrf_ok(staff.csrf_token, request.headers.get("x-csrf-token"))
    ):
        raise HTTPException(403, "a change from a browser session needs its X-CSRF-Token")
    return staff


def _people(staff: Staff) -> None:
    if staff.role is Role.OPERATIONS:
        raise HTTPException(403, "operations accounts see no personal data")


def _answers(described: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """The error answers of an operation: 401 and 403, which any of them can give, and those
    `described` (status: what it means)."""
    out: dict[int | str, dict[str, Any]] = {
        401: {"model": Problem, "description": "Not signed in: no valid API token or session"},
        403: {
            "model": Problem,
            "description": "An operations account (they see no personal data), or a change "
            "from a browser session without its X-CSRF-Token",
        },
    }
    for code, description in described.items():
        out[code] = {"model": Invalid if code == 422 else Problem, "description": description}
    return out


UNREADABLE = "The body is not JSON"
INVALID = "A field or parameter is missing or wrong: `detail` says which"


@router.get("/caseload", response_model=list[CaseloadLine], responses=_answers({}))
async def api_caseload(request: Request) -> list[dict[str, Any]]:
    staff = await _caller(request, changes=False)
    _people(staff)
    rt = runtime(request)
    now = rt.clock.now()
    async with rt.sessions.begin() as session:
        ids = await access.visible_survivors(session, staff, now)
        _viewed(session, staff, now, "caseload", survivors=len(ids), via="api")
        return await views.caseload(session, ids, now)


@router.get(
    "/survivors/{survivor_id}",
    response_model=SurvivorOut,
    responses=_answers({404: "No such survivor on your caseload", 422: INVALID}),
)
async def api_survivor(request: Request, survivor_id: int) -> dict[str, Any]:
    staff = await _caller(request, changes=False)
    _people(staff)
    rt = runtime(request)
    now = rt.clock.now()
    async with rt.sessions.begin() as session:
        if not real_id(survivor_id) or not await access.may_see(session, staff, survivor_id, now):
            raise HTTPException(404, "no such survivor on your caseload")
        data = await views.survivor_page(session, survivor_id, now)
        if data is None:
            raise HTTPException(404, "no such survivor on your caseload")
        data["timeline"] = await views.timeline(session, survivor_id, now)
        _viewed(session, staff, now, "survivor", survivor_id=survivor_id, via="api")
        return data


@router.put(
    "/survivors/{survivor_id}/preferences",
    response_model=PreferencesOut,
    responses=_answers(
        {
            400: UNREADABLE,
            404: "No such survivor on your caseload",
            409: "The survivor's data was erased: nothing can be recorded",
            422: INVALID,
        }
    ),
)
async def api_preferences(
    request: Request, survivor_id: int, change: PreferencesIn
) -> dict[str, Any]:
    staff = await _caller(request, changes=True)
    _people(staff)
    rt = runtime(request)
    now = rt.clock.now()
    raw = change.model_dump(exclude_none=True)
    async with rt.sessions.begin() as session:
        if not real_id(survivor_id) or not await access.may_see(session, staff, survivor_id, now):
            raise HTTPException(404, "no such survivor on your caseload")
        survivor = await session.get(m.Survivor, survivor_id)
        if survivor is None:
            raise HTTPException(404, "no such survivor on your caseload")
        if survivor.erased_at is not None:
            raise HTTPException(409, "this survivor's data was erased: nothing can be recorded")
        current = (await current_preferences(session, [survivor_id])).get(survivor_id)
        checked = prefs.check(
            raw, current, now.date(), production=rt.settings.env.value == "production"
        )
        if checked.errors:
            raise HTTPException(422, checked.errors)
        row = await prefs.save(
            session, survivor, current, checked.values, actor=staff.actor, now=now
        )
        await session.flush()
        result = views.preference_dict(row)
        assert result is not None
        return result


@router.get(
    "/messages/{notification_id}",
    response_model=MessageDetail,
    responses=_answers({404: "No such message for you", 422: INVALID}),
)
async def api_message(request: Request, notification_id: str) -> dict[str, Any]:
    staff = await _caller(request, changes=False)
    _people(staff)
    rt = runtime(request)
    now = rt.clock.now()
    async with rt.sessions.begin() as session:
        row = await _message_for(session, staff, notification_id, now)
        if row is None:
            raise HTTPException(404, "no such message for you")
        words = await draft(session, row, now, base_url=rt.settings.public_base_url)
        _viewed(session, staff, now, "message", notification_id=row.id, via="api")
        data = views.notification_dict(row, now)
        data["draft"] = None if words is None else {"subject": words[0], "body": words[1]}
        actions = await session.scalars(
            select(m.AdvocateAction)
            .where(m.AdvocateAction.notification_id == row.id)
            .order_by(m.AdvocateAction.id)
        )
        data["actions"] = [
            {
                "action": a.action,
                "requested_at": a.requested_at.isoformat(),
                "outcome": a.outcome,
                "outcome_reason": a.outcome_reason,
            }
            for a in actions
        ]
        return data


@router.post(
    "/messages/{notification_id}/actions",
    status_code=202,
    response_model=Accepted,
    responses=_answers(
        {
            400: UNREADABLE,
            404: "No such message for you",
            409: "The message is no longer held",
            422: INVALID,
        }
    ),
)
async def api_action(request: Request, notification_id: str, body: ActionIn) -> dict[str, str]:
    staff = await _caller(request, changes=True)
    _people(staff)
    rt = runtime(request)
    now = rt.clock.now()
    async with rt.sessions.begin() as session:
        row = await _message_for(session, staff, notification_id, now)
        if row is None:
            raise HTTPException(404, "no such message for you")
        told_at, problem = told_at_problem(body.told_at, row, now) if body.told_at else (None, None)
        if problem is None:
            problem = await record_action(
                session,
                staff,
                row,
                body.action,
                body.reason_code,
                body.note,
                now,
                told_at=told_at,
                personal_line=(body.personal_line or "").strip() or None,
            )
        if problem:
            raise HTTPException(409 if "no longer held" in problem else 422, problem)
    return {"status": "accepted", "notification_id": notification_id}
