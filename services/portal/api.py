"""The portal's JSON API under `/api/v1`: the same operations as the pages, for tools.

A caller is a staff account, by bearer API token (`carehub staff token`) or by the browser's
session cookie; a cookie caller must also send the session's CSRF token in `X-CSRF-Token` on
every change. The same access rules as the pages apply: someone else's survivor is a 404.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from services.core.db import models as m
from services.core.db.queries import current_preferences
from services.core.message_variables import draft
from services.portal import access, views
from services.portal import preferences as prefs
from services.portal.auth import Role, Staff, csrf_ok
from services.portal.pages import (
    _message_for,
    _viewed,
    real_id,
    record_action,
    told_at_problem,
)
from services.portal.web import identify, runtime

router = APIRouter(prefix="/api/v1", tags=["portal"])


class Problem(BaseModel):
    detail: str | dict[str, str]


class CaseloadLine(BaseModel):
    survivor_id: int
    name: str
    cases: list[str]
    next_deadline: str | None
    held: int
    held_deadline: str | None
    unreachable: bool


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
    reason_code: str = Field(max_length=48)
    reason_note: str | None = Field(default=None, max_length=500)


class ActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["release", "told_in_person", "cancel"]
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


NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such survivor on your caseload"}
}


@router.get("/caseload", response_model=list[CaseloadLine])
async def api_caseload(request: Request) -> list[dict[str, Any]]:
    staff = await _caller(request, changes=False)
    _people(staff)
    rt = runtime(request)
    now = rt.clock.now()
    async with rt.sessions.begin() as session:
        ids = await access.visible_survivors(session, staff, now)
        _viewed(session, staff, now, "caseload", survivors=len(ids), via="api")
        return await views.caseload(session, ids, now)


@router.get("/survivors/{survivor_id}", responses=NOT_FOUND)
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


@router.put("/survivors/{survivor_id}/preferences", responses=NOT_FOUND)
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


@router.get("/messages/{notification_id}", responses=NOT_FOUND)
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


@router.post("/messages/{notification_id}/actions", status_code=202, responses=NOT_FOUND)
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
