"""A dry run of the rules for reviewers (`carehub rules explain`): no database, no broker, no clock.

Given a case context (schemas/rules-context.schema.json) and case events, it shows what the
engine decides for each event, then what the dispatcher would do as time passes: a scheduled
message goes at its `send_at`, held news is released as a fallback at its `send_at`, and a
"while_held" supervisor alert is sent only if its held message is still waiting, else cancelled.
Every row carries the rule and a plain-English sentence (trauma-informed rule 17), and the same
input always gives the same output.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jsonschema import Draft202012Validator

from services.core.cloudevents import FieldError, InvalidEvent, schemas_dir, validate_event
from services.core.domain import (
    CaseContext,
    ContactPreference,
    Decision,
    Detail,
    EventFacts,
    Frequency,
    Outcome,
    Person,
    Relationship,
    Role,
    SurvivorContext,
    notification_id,
)
from services.core.urn import InvalidURN, validate_urn
from services.rules.engine import Engine, recipient_key

__all__ = ["ExplainError", "UnreadableLine", "explain", "load_context", "read_events"]

CONTEXT_SCHEMA = "rules-context.schema.json"
# Validation needs a "now"; an event whose time cannot be read is invalid anyway, and a late
# "now" keeps its other times from being reported as in the future as well.
_LATE = datetime(9999, 12, 30, tzinfo=UTC)


class ExplainError(ValueError):
    """The context (or an argument) is not valid; `pointer` is the JSON Pointer into the context
    of the first problem ("" for the whole document), None for an argument."""

    def __init__(self, pointer: str | None, message: str) -> None:
        super().__init__(message if pointer is None else f"context {pointer or '/'}: {message}")
        self.pointer = pointer
        self.problem = message


@dataclass(frozen=True)
class UnreadableLine:
    """A line of an events file that is not JSON (reported as an error row, not a crash)."""

    line: int


def read_events(text: str) -> list[Any]:
    """The events of a JSON Lines text; blank lines are skipped, unreadable ones kept as such."""
    events: list[Any] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except ValueError:
            events.append(UnreadableLine(number))
    return events


# --- the context ---------------------------------------------------------------------------------


@cache
def _validator() -> Any:
    schema = json.loads((schemas_dir() / CONTEXT_SCHEMA).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _join(pointer: str, token: object) -> str:
    return f"{pointer}/{str(token).replace('~', '~0').replace('/', '~1')}"


def _schema_problem(error: Any) -> tuple[str, str]:
    pointer = ""
    for token in error.absolute_path:
        pointer = _join(pointer, token)
    keyword, expected = error.validator, error.validator_value
    if keyword == "required":
        missing = next(n for n in expected if n not in error.instance)
        return _join(pointer, missing), "is required"
    if keyword == "additionalProperties":
        extra = sorted(k for k in error.instance if k not in error.schema.get("properties", {}))
        return _join(pointer, extra[0]), "unexpected field"
    if keyword == "type":
        return pointer, "must be " + (
            " or ".join(expected) if isinstance(expected, list) else expected
        )
    if keyword == "enum":
        return pointer, "must be one of " + ", ".join(json.dumps(v) for v in expected)
    messages = {
        "pattern": "must be a time of day like 09:00 (HH:MM)",  # the only pattern: hhmm
        "format": "must be a date like 2027-05-01 (YYYY-MM-DD)",  # the only format: date
        "minimum": f"must be at least {expected}",
        "minItems": f"must have at least {expected} item(s)",
        "maxItems": f"must have at most {expected} items",
    }
    return pointer, messages.get(keyword, error.message)


def load_context(obj: object) -> CaseContext:
    """The case context of a rules-context document; `ExplainError` names the first problem."""
    problem = next(iter(_validator().iter_errors(obj)), None)
    if problem is not None:
        raise ExplainError(*_schema_problem(problem))
    assert isinstance(obj, dict)
    try:
        urn = validate_urn(obj["case"]["urn"])
    except InvalidURN as exc:
        raise ExplainError("/case/urn", str(exc)) from None
    team: dict[int, dict[str, Any]] = {}
    for i, advocate in enumerate(obj["advocates"]):
        if advocate["id"] in team:
            raise ExplainError(f"/advocates/{i}/id", "is used twice")
        team[advocate["id"]] = advocate
    # The stand-in, as services/rules/context.py: the supervisor, unless known to be unavailable.
    sup_id = obj["supervisor"]
    stand_in = None
    if sup_id is not None and team.get(sup_id, {}).get("available", True):
        stand_in = Person(sup_id, Role.SUPERVISOR)
    survivors: list[SurvivorContext] = []
    for i, entry in enumerate(obj["survivors"]):
        where = f"/survivors/{i}"
        if any(s.survivor.id == entry["id"] for s in survivors):
            raise ExplainError(f"{where}/id", "is used twice")
        advocate = stand_in
        if entry["advocate"] is not None:
            assigned = team.get(entry["advocate"])
            if assigned is None:
                raise ExplainError(f"{where}/advocate", "is not one of the advocates")
            if assigned["available"]:
                role = Role.SUPERVISOR if assigned["role"] == "supervisor" else Role.ADVOCATE
                advocate = Person(assigned["id"], role)
        survivors.append(
            SurvivorContext(
                survivor=Person(entry["id"], Role.SURVIVOR),
                relationship=Relationship(entry["relationship"]),
                preference=_preference(entry, where),
                advocate=advocate,
                supervisor=stand_in,
            )
        )
    return CaseContext(
        case_id=0,  # a dry run has no database row
        urn=urn,
        enhanced_rights=obj["case"]["enhanced_rights"],
        survivors=tuple(survivors),
    )


def _preference(entry: dict[str, Any], where: str) -> ContactPreference:
    zone = entry.get("timezone", "Europe/London")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ExplainError(f"{where}/timezone", "is not a known IANA time zone") from None
    window = entry.get("safe_window", {"start": "09:00", "end": "20:00"})
    start, end = time.fromisoformat(window["start"]), time.fromisoformat(window["end"])
    if start == end:
        raise ExplainError(f"{where}/safe_window/end", "must differ from the start")
    sms, email = entry["channels"]["sms"], entry["channels"]["email"]

    def review(channel: dict[str, Any]) -> date | None:
        value = channel.get("review_by")
        return date.fromisoformat(value) if value is not None else None

    return ContactPreference(
        version=1,
        has_phone=sms["recorded"],
        has_email=email["recorded"],
        sms_safe=sms["safe"],
        sms_safe_review_by=review(sms),
        email_safe=email["safe"],
        email_safe_review_by=review(email),
        language=entry.get("language", "en"),
        timezone=zone,
        safe_window_start=start,
        safe_window_end=end,
        frequency=Frequency(entry.get("frequency", "all")),
        detail=Detail(entry.get("detail", "discreet")),
        opted_out=entry.get("opted_out", False),
    )


# --- the run -------------------------------------------------------------------------------------


def _z(instant: datetime | None) -> str | None:
    return None if instant is None else instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _event_time(raw: object) -> datetime | None:
    """When the hub would decide: the later of `time` and `agencyreceivedat` (it cannot decide
    before the agency has the news)."""
    if not isinstance(raw, dict):
        return None
    found: list[datetime] = []
    for key in ("time", "agencyreceivedat"):
        value = raw.get(key)
        if not isinstance(value, str):
            continue
        try:
            parsed = datetime.fromisoformat(value.upper())
        except ValueError:
            continue
        if parsed.utcoffset() is not None:
            found.append(parsed.astimezone(UTC))
    return max(found) if found else None


@dataclass
class _Note:
    """A notification of the simulated state (what the `notifications` table would hold)."""

    id: str
    seq: int
    event: str
    type: str
    decision: Decision
    related: str | None
    status: str  # held | scheduled | released | sent | cancelled


class _Run:
    def __init__(self, engine: Engine, context: CaseContext) -> None:
        self.engine = engine
        self.context = context
        self.notes: dict[str, _Note] = {}
        self.rows: list[dict[str, Any]] = []

    def decide(self, facts: EventFacts, at: datetime) -> None:
        decisions = self.engine.decide(facts, self.context, at)
        if not decisions:
            text = f"no rule for this event type in rules {self.engine.rules.version}: nothing sent"
            self.rows.append(_row(facts.event_id, facts.type, at, "no_decision", None, None, text))
        for d in decisions:
            nid = None
            text = _decision_text(d, at)
            if d.makes_notification and d.template is not None:
                nid = notification_id(facts.source, facts.event_id, recipient_key(d), d.rule)
                related = None
                if d.related_rule is not None and d.survivor_id is not None:
                    related = notification_id(
                        facts.source, facts.event_id, f"survivor:{d.survivor_id}", d.related_rule
                    )
                if nid in self.notes:
                    text += " (already made by an earlier copy of this event: not made again)"
                else:
                    status = "held" if d.outcome is Outcome.HOLD else "scheduled"
                    self.notes[nid] = _Note(
                        nid, len(self.notes), facts.event_id, facts.type, d, related, status
                    )
            self.rows.append(_row(facts.event_id, facts.type, at, d.outcome.value, d, nid, text))

    def advance(self, limit: datetime) -> None:
        """Every time-driven step up to `limit`, in time order, as the dispatcher takes them:
        at one instant, fallbacks first, then scheduled messages."""
        while True:
            due = [
                (n.decision.send_at, 0 if n.status == "held" else 1, n.seq, n)
                for n in self.notes.values()
                if n.decision.send_at is not None
                and n.decision.send_at <= limit
                and (
                    n.status == "scheduled"
                    or (n.status == "held" and n.decision.hold_reason == "advocate_first")
                )
            ]
            if not due:
                return
            at, _, _, note = min(due, key=lambda step: step[:3])
            assert at is not None
            d = note.decision
            if note.status == "held":
                note.status, outcome = "released", "fallback_released"
                text = (
                    f"nobody had released the held message by {_z(at)}: it goes by itself "
                    f"{_channel(d)}, saying nothing of the outcome, before the deadline "
                    f"({_z(d.due_by)})"
                )
            elif d.condition == "while_held" and not self._still_held(note.related):
                note.status = outcome = "cancelled"
                text = "not sent: the held message it was about had already moved on"
            else:
                note.status = outcome = "sent"
                text = f"sent to {_who(d)} {_channel(d)} at {_z(at)}"
                if d.condition == "while_held":
                    text = (
                        f"the survivor's message was still held at {_z(at)}, half the time to "
                        f"the deadline: {_who(d)} is alerted {_channel(d)}"
                    )
            self.rows.append(_row(note.event, note.type, at, outcome, d, note.id, text))

    def _still_held(self, related: str | None) -> bool:
        note = self.notes.get(related) if related is not None else None
        return note is not None and note.status == "held"


def explain(
    engine: Engine,
    context_obj: dict[str, Any],
    events: Sequence[Any],
    now: datetime | None = None,
    until: datetime | None = None,
) -> list[dict[str, Any]]:
    """Decide `events` in order against the case context, and play the dispatcher forward.

    Each event is decided at its own `time`, or at `now` when given. Before each event, and at
    the end up to `until` (else up to the last decision), the time-driven steps that fall due
    happen in time order. An invalid event gives one `{"event", "error"}` row and is skipped
    (it does not move the simulated time either).
    Raises `ExplainError` for an invalid context or a naive `now`/`until`.
    """
    for name, value in (("now", now), ("until", until)):
        if value is not None and value.utcoffset() is None:
            raise ExplainError(None, f"{name} must be timezone-aware")
    run = _Run(engine, load_context(context_obj))
    last: datetime | None = None
    for raw in events:
        if isinstance(raw, UnreadableLine):
            error = {"pointer": "", "message": f"line {raw.line} is not valid JSON"}
            run.rows.append({"event": None, "error": [error]})
            continue
        at = now if now is not None else _event_time(raw)
        try:
            event = validate_event(raw, now=at or _LATE)
            if event.subject != run.context.urn:
                raise InvalidEvent([FieldError("/subject", "is not the case of the context")])
        except InvalidEvent as exc:
            event_id = raw.get("id") if isinstance(raw, dict) else None
            errors = [{"pointer": e.pointer, "message": e.message} for e in exc.errors]
            run.rows.append({"event": event_id, "error": errors})
            continue
        at = now if now is not None else max(event.time, event.agencyreceivedat or event.time)
        run.advance(at)
        facts = EventFacts(
            source=event.source,
            event_id=event.id,
            type=event.type,
            urn=event.subject,
            time=event.time,
            agency_received_at=event.agencyreceivedat,
            data=event.data,
        )
        try:
            run.decide(facts, at)
        except Exception as exc:  # noqa: BLE001 - as the consumer: one bad event, not the run
            error = {"pointer": "", "message": f"the rules failed: {type(exc).__name__}"}
            run.rows.append({"event": event.id, "error": [error]})
            continue
        last = at
    end = until if until is not None else last
    if end is not None:
        run.advance(end)
    return run.rows


# --- plain English -------------------------------------------------------------------------------

_CHANNELS = {"sms": "by text", "email": "by e-mail"}
_SUPPRESSED = {
    "opted_out": "the survivor opted out (STOP); what the law requires goes through the advocate",
    "frequency_none": "the survivor chose to get no updates",
    "not_a_key_stage": "the survivor chose key stages only, and this is not one",
}
_REASONS = {
    "pass_on": "no message is set for this event",
    "opted_out": "the survivor opted out, so what the law still requires goes through a person",
    "no_safe_channel": "no channel is recorded as safe for the survivor",
    "no_contact_preferences": "no contact preferences are on file for the survivor",
}


def _channel(d: Decision) -> str:
    return _CHANNELS.get(d.channel.value, f"by {d.channel.value}") if d.channel else ""


def _who(d: Decision) -> str:
    if d.recipient.role is Role.SURVIVOR:
        return "the survivor"
    if d.recipient.role is Role.ADVOCATE:
        return "the advocate"
    if d.condition == "while_held":
        return "the team supervisor"
    return "the team supervisor (in the advocate's place)"


def _decision_text(d: Decision, at: datetime) -> str:
    who, by, due, send = _who(d), _channel(d), _z(d.due_by), _z(d.send_at)
    when = "now" if d.send_at == at else f"at {send}"
    if d.outcome is Outcome.ESCALATE:
        return f"escalated: there is nobody (no advocate, no supervisor) to act on it by {due}"
    if d.outcome is Outcome.SUPPRESS:
        return f"not sent: {_SUPPRESSED.get(str(d.hold_reason), str(d.hold_reason))}"
    if d.condition == "while_held":
        return (
            f"{who} is to be alerted {by} at {send}, half the time to the deadline ({due}), "
            "if the survivor's message is still held then"
        )
    if d.outcome is Outcome.TASK:
        reason = _REASONS.get(str(d.hold_reason), str(d.hold_reason))
        task = (
            "to pass it on" if d.hold_reason in ("pass_on", "opted_out") else "to find a safe way"
        )
        return f"{reason}: {who} gets a task {by} {when} {task}, due by {due}"
    if d.outcome is Outcome.HOLD and d.hold_reason == "advocate_first":
        return (
            "held for the advocate to tell them first (distressing news); goes by itself "
            f"{by} at {send} if nobody has"
        )
    if d.outcome is Outcome.HOLD:
        reason = _REASONS.get(str(d.hold_reason), str(d.hold_reason))
        return f"held: {reason}; the advocate is asked to find a safe way to reach them"
    if d.recipient.role is not Role.SURVIVOR:
        if d.related_rule is not None:
            return f"{who} is told first, {by} {when}, and asked to tell the survivor (distressing)"
        return f"{who} is told {by} {when}"
    if d.hold_reason == "deadline_before_safe_window":
        return f"goes {by} now, outside the safe window: waiting would miss the deadline ({due})"
    if d.hold_reason == "deadline_already_passed":
        return f"the deadline ({due}) has already passed: goes {by} {when}, the next safe time"
    if d.send_at == at:
        return f"goes to the survivor {by} now, inside their safe window"
    return f"outside the survivor's safe window: goes {by} when it next opens, at {send}"


def _row(
    event: str,
    type_: str,
    at: datetime,
    outcome: str,
    d: Decision | None,
    nid: str | None,
    explanation: str,
) -> dict[str, Any]:
    return {
        "event": event,
        "type": type_,
        "at": _z(at),
        "outcome": outcome,
        "recipient": {"role": d.recipient.role.value, "id": d.recipient.id} if d else None,
        "survivor": d.survivor_id if d else None,
        "channel": d.channel.value if d and d.channel else None,
        "template": d.template if d else None,
        "send_at": _z(d.send_at) if d else None,
        "due_by": _z(d.due_by) if d else None,
        "hold_reason": d.hold_reason if d else None,
        "rule": d.rule if d else None,
        "notification_id": nid,
        "explanation": explanation,
    }
