"""Changing a survivor's contact preferences: validated, normalised, versioned with a reason.

One function checks a change for both the web form and the API, and returns every problem at
once, each naming its field, so an advocate on a call with a survivor fixes them in one go.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.core import audit
from services.core.db import models as m
from services.portal.views import DETAILS, FREQUENCIES, LANGUAGES, REASON_CODES

# Ofcom's drama range: never a real phone, so accepted outside production only (test data).
DRAMA = range(447700900000, 447700901000)
LONGEST_REVIEW = timedelta(days=366)
FIELDS = (
    "phone",
    "sms_safe",
    "sms_safe_review_by",
    "email",
    "email_safe",
    "email_safe_review_by",
    "letter_safe",
    "letter_safe_review_by",
    "postal_address",
    "language",
    "safe_window_start",
    "safe_window_end",
    "frequency",
    "detail",
    "opted_out",
    "feedback_opt_in",
    "consent_to_referral",
    "reason_code",
    "reason_note",
)


@dataclass
class Checked:
    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def normalise_phone(raw: str, *, production: bool) -> tuple[str | None, str | None]:
    """(E.164, None) or (None, what is wrong). Only mobiles: a landline cannot take a text."""
    try:
        number = phonenumbers.parse(raw, "GB")
    except phonenumbers.NumberParseException:
        return None, "Enter a phone number, like 07700 900 123 or +44 7700 900123"
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if not production and int(e164.lstrip("+") or 0) in DRAMA:
        return e164, None
    if not phonenumbers.is_valid_number(number):
        return None, "Enter a real phone number: this one does not exist"
    kind = phonenumbers.number_type(number)
    if kind not in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    ):
        return None, "Enter a mobile number: texts cannot reach a landline"
    return e164, None


def _flag(raw: Any) -> bool:
    return raw in (True, "yes", "true", "on", "1")


def _date(raw: Any) -> date | None:
    if raw in (None, ""):
        return None
    if isinstance(raw, date):
        return raw
    return date.fromisoformat(str(raw))


def _time(raw: Any) -> time:
    if isinstance(raw, time):
        return raw
    return time.fromisoformat(str(raw))


def _touched(current: m.ContactPreference | None, channel: str, address: str | None) -> bool:
    if current is None or not getattr(current, f"{channel}_safe"):
        return True
    return address != (current.phone if channel == "sms" else current.email)


def check(
    raw: dict[str, Any], current: m.ContactPreference | None, today: date, *, production: bool
) -> Checked:
    """Validate a full set of preferences (missing fields keep their current value)."""
    out = Checked()
    base = {
        "phone": current.phone if current else None,
        "sms_safe": current.sms_safe if current else False,
        "sms_safe_review_by": current.sms_safe_review_by if current else None,
        "email": current.email if current else None,
        "email_safe": current.email_safe if current else False,
        "email_safe_review_by": current.email_safe_review_by if current else None,
        "letter_safe": current.letter_safe if current else False,
        "letter_safe_review_by": current.letter_safe_review_by if current else None,
        "postal_address": current.postal_address if current else None,
        "language": current.language if current else "en",
        "safe_window_start": current.safe_window_start if current else time(9, 0),
        "safe_window_end": current.safe_window_end if current else time(20, 0),
        "frequency": current.frequency if current else "all",
        "detail": current.detail if current else "discreet",
        "opted_out": current.opted_out if current else False,
        "feedback_opt_in": current.feedback_opt_in if current else False,
    }
    unknown = sorted(set(raw) - set(FIELDS) - {"csrf_token"})
    for name in unknown:
        out.errors[name] = f"There is no preference called {name}"
    v: dict[str, Any] = {**base, **{k: raw[k] for k in FIELDS if k in raw}}
    err = out.errors

    phone = (str(v["phone"]).strip() if v["phone"] else "") or None
    if phone:
        phone, problem = normalise_phone(phone, production=production)
        if problem:
            err["phone"] = problem
    email = (str(v["email"]).strip() if v["email"] else "") or None
    if email:
        try:
            email = validate_email(email, check_deliverability=False).normalized
        except EmailNotValidError as exc:
            err["email"] = f"Enter an e-mail address like name@example.org ({exc})"
    for flag in ("sms_safe", "email_safe", "letter_safe", "opted_out", "feedback_opt_in"):
        v[flag] = _flag(v[flag])
    consent = _flag(raw["consent_to_referral"]) if "consent_to_referral" in raw else None

    for channel, address, label in (("sms", phone, "phone"), ("email", email, "email")):
        review_field = f"{channel}_safe_review_by"
        try:
            review = _date(v[review_field])
        except ValueError:
            err[review_field] = "Enter the review date as a real date"
            review = None
        if not v[f"{channel}_safe"]:
            review = None
        elif not address and label not in err:
            err[label] = f"Enter the {'phone number' if label == 'phone' else 'e-mail address'} "
            err[label] += "that is safe to use, or say it is not safe"
        elif review is None and review_field not in err and _touched(current, channel, address):
            # A new or changed safety check needs its review date (an older one without a
            # date, recorded before the portal asked, stands until someone changes it).
            err[review_field] = "Say when to check again that this is still safe"
        elif review is not None and not today < review <= today + LONGEST_REVIEW:
            err[review_field] = "The review date must be in the next 12 months"
        v[review_field] = review
    address_text = (str(v["postal_address"]).strip() if v["postal_address"] else "") or None
    try:
        letter_review = _date(v["letter_safe_review_by"])
    except ValueError:
        err["letter_safe_review_by"] = "Enter the review date as a real date"
        letter_review = None
    if not v["letter_safe"]:
        letter_review = None
    elif not address_text:
        err["postal_address"] = "Enter the address that is safe for letters, or say it is not safe"
    elif (
        letter_review is None
        and "letter_safe_review_by" not in err
        and (current is None or not current.letter_safe or current.postal_address != address_text)
    ):
        err["letter_safe_review_by"] = "Say when to check again that letters are still safe"
    elif letter_review is not None and not today < letter_review <= today + LONGEST_REVIEW:
        err["letter_safe_review_by"] = "The review date must be in the next 12 months"
    v["letter_safe_review_by"] = letter_review
    if address_text and len(address_text) > 400:
        err["postal_address"] = "The address must be 400 characters or fewer"
    for name, allowed in (
        ("language", LANGUAGES),
        ("frequency", FREQUENCIES),
        ("detail", DETAILS),
    ):
        if v[name] not in allowed:
            err[name] = f"Choose one of: {', '.join(allowed.values())}"
    try:
        start, end = _time(v["safe_window_start"]), _time(v["safe_window_end"])
        if (datetime.combine(today, end) - datetime.combine(today, start)) < timedelta(hours=1):
            err["safe_window_end"] = "The safe time must end at least an hour after it starts"
        v["safe_window_start"], v["safe_window_end"] = start, end
    except ValueError:
        err["safe_window_start"] = "Enter times like 09:00 and 20:00"
    reason = raw.get("reason_code")
    if reason not in REASON_CODES:
        err["reason_code"] = "Say why the preferences are changing"
    note = (str(raw.get("reason_note") or "").strip()) or None
    if note and len(note) > 500:
        err["reason_note"] = "The note must be 500 characters or fewer"
    out.values = {
        **v,
        "phone": phone,
        "email": email,
        "postal_address": address_text,
        "reason_code": reason,
        "reason_note": note,
        "consent_to_referral": consent,
    }
    return out


async def save(
    session: AsyncSession,
    survivor: m.Survivor,
    current: m.ContactPreference | None,
    values: dict[str, Any],
    *,
    actor: str,
    now: datetime,
) -> m.ContactPreference:
    """A new version (the old ones stay: who changed what, when and why is never lost)."""
    version = (
        await session.scalar(
            select(func.max(m.ContactPreference.version)).where(
                m.ContactPreference.survivor_id == survivor.id
            )
        )
        or 0
    ) + 1
    row = m.ContactPreference(
        survivor_id=survivor.id,
        version=version,
        recorded_at=now,
        recorded_by=actor,
        reason_code=values["reason_code"],
        reason_note=values["reason_note"],
        phone=values["phone"],
        sms_safe=values["sms_safe"],
        sms_safe_review_by=values["sms_safe_review_by"],
        email=values["email"],
        email_safe=values["email_safe"],
        email_safe_review_by=values["email_safe_review_by"],
        letter_safe=values["letter_safe"],
        letter_safe_review_by=values["letter_safe_review_by"],
        postal_address=values["postal_address"],
        language=values["language"],
        timezone=current.timezone if current else "Europe/London",
        safe_window_start=values["safe_window_start"],
        safe_window_end=values["safe_window_end"],
        frequency=values["frequency"],
        detail=values["detail"],
        opted_out=values["opted_out"],
        feedback_opt_in=values["feedback_opt_in"],
    )
    session.add(row)
    changed = sorted(
        k
        for k in FIELDS
        if k not in {"reason_code", "reason_note", "consent_to_referral"}
        and (current is None or getattr(current, k) != values[k])
    )
    if values["consent_to_referral"] is not None and (
        values["consent_to_referral"] != survivor.consent_to_referral
    ):
        survivor.consent_to_referral = values["consent_to_referral"]
        changed.append("consent_to_referral")
    audit.record(
        session,
        at=now,
        actor=actor,
        action="preferences.changed",
        survivor_id=survivor.id,
        version=version,
        reason=values["reason_code"],
        fields=",".join(changed) or "none",
    )
    return row
