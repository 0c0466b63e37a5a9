"""The survivor's answer page for a feedback question: `/feedback/{id}-{token}`, no sign-in.

The link is the survivor's own (a keyed hash of the question id: services.core.feedback), it
shows nothing about their case, works once, and only until the question expires. The page is
in the survivor's language.
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from services.core.db import models as m
from services.core.db.queries import current_preferences
from services.core.feedback import SCORES, parse_link, record_answer
from services.core.http_limits import read_form
from services.portal.auth import csrf_ok
from services.portal.web import page, runtime

router = APIRouter(include_in_schema=False)
COOKIE = "carehub_feedback"
WORDS: dict[str, dict[str, Any]] = {
    "en": {
        "title": "How well have we kept you up to date?",
        "intro": "One question. You do not have to answer.",
        "scores": SCORES,
        "comment": "Anything you would like to add (optional)",
        "send": "Send my answer",
        "thanks": "Thank you. Your answer helps us keep people better informed.",
        "gone": "This question has been answered already, or it is no longer open.",
        "choose": "Choose an answer",
        "danger": "If you are in danger, call 999.",
    },
    "cy": {
        "title": "Pa mor dda rydyn ni wedi rhoi gwybod i chi?",
        "intro": "Un cwestiwn. Does dim rhaid i chi ateb.",
        "scores": {1: "Yn wael", 2: "Ddim yn dda", 3: "Yn rhannol", 4: "Yn dda", 5: "Yn dda iawn"},
        "comment": "Unrhyw beth yr hoffech chi ei ychwanegu (dewisol)",
        "send": "Anfon fy ateb",
        "thanks": "Diolch. Mae eich ateb yn ein helpu i roi gwybod i bobl yn well.",
        "gone": "Mae'r cwestiwn hwn wedi cael ei ateb yn barod, neu nid yw ar agor mwyach.",
        "choose": "Dewiswch ateb",
        "danger": "Os ydych chi mewn perygl, ffoniwch 999.",
    },
}


async def _open(request: Request, ref: str) -> tuple[m.FeedbackQuestion | None, str]:
    rt = runtime(request)
    question_id = parse_link(ref[:60])
    if question_id is None:
        return None, "en"
    async with rt.sessions() as session:
        question = await session.get(m.FeedbackQuestion, question_id)
        if question is None:
            return None, "en"
        pref = (await current_preferences(session, [question.survivor_id])).get(
            question.survivor_id
        )
    language = pref.language if pref is not None and pref.language in WORDS else "en"
    if question.answered_at is not None or question.expires_at <= rt.clock.now():
        return None, language
    return question, language


def _form(request: Request, ref: str, language: str, status: int, error: str | None) -> Response:
    token = secrets.token_urlsafe(24)
    response = page(
        request,
        "portal/feedback.html",
        status_code=status,
        csrf_token=token,
        ref=ref,
        w=WORDS[language],
        lang=language,
        error=error,
        errors={"score": error} if error else {},
    )
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/feedback")
    return response


@router.get("/feedback/{ref}", response_class=HTMLResponse)
async def feedback_form(request: Request, ref: str) -> Response:
    question, language = await _open(request, ref)
    if question is None:
        return page(
            request,
            "portal/feedback_done.html",
            status_code=404,
            w=WORDS[language],
            lang=language,
            message=WORDS[language]["gone"],
        )
    return _form(request, ref, language, 200, None)


@router.post("/feedback/{ref}", response_class=HTMLResponse)
async def feedback_answer(request: Request, ref: str) -> Response:
    rt = runtime(request)
    form = await read_form(request, limit=8 * 1024)
    if form is None:
        return page(request, "portal/too_big.html", status_code=413)
    question, language = await _open(request, ref)
    w = WORDS[language]
    if question is None:
        return page(
            request,
            "portal/feedback_done.html",
            status_code=404,
            w=w,
            lang=language,
            message=w["gone"],
        )
    if not csrf_ok(request.cookies.get(COOKIE), str(form.get("csrf_token") or "")):
        return _form(request, ref, language, 400, w["choose"])
    raw = str(form.get("score") or "")
    if raw not in {"1", "2", "3", "4", "5"}:
        return _form(request, ref, language, 400, w["choose"])
    comment = str(form.get("comment") or "").strip()[:1000] or None
    now = rt.clock.now()
    async with rt.sessions.begin() as session:
        fresh = await session.get(m.FeedbackQuestion, question.id, with_for_update=True)
        if fresh is None or fresh.answered_at is not None:
            return page(
                request,
                "portal/feedback_done.html",
                status_code=404,
                w=w,
                lang=language,
                message=w["gone"],
            )
        record_answer(session, fresh, int(raw), comment, "link", now)
    return page(request, "portal/feedback_done.html", w=w, lang=language, message=w["thanks"])
