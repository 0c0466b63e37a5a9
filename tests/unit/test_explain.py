"""`carehub rules explain`: a pure dry run of the engine and the dispatcher over the examples.

The example case (schemas/examples/rules-context.json): one rape survivor with enhanced rights,
an ISVA (11), the team supervisor (21), SMS safe, safe window 09:00-20:00 Europe/London. The
events (schemas/examples/rules-events.jsonl): crime recorded Monday 2026-11-16 09:30, suspect
arrested 21:00 the same evening, police NFA Wednesday 2026-11-18 09:45. London is on GMT then.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from services.core.calendar import LONDON, WorkingDayCalendar
from services.core.domain import Role, notification_id
from services.rules.engine import Engine
from services.rules.explain import ExplainError, explain, load_context, read_events
from services.rules.ruleset import load_rules
from services.rules.timing import half_window

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "schemas"
ENGINE = Engine(load_rules(), WorkingDayCalendar())
VERSION = ENGINE.rules.version
UNTIL = datetime(2026, 11, 20, tzinfo=UTC)
SOURCE = "police/01"
ARREST, NFA = "met-9002-suspect-arrested", "met-9003-nfa"
SURVIVOR, ISVA, SUPERVISOR = 101, 11, 21


def context() -> dict[str, Any]:
    obj: dict[str, Any] = json.loads((SCHEMAS / "examples" / "rules-context.json").read_text())
    return obj


def events() -> list[Any]:
    return read_events((SCHEMAS / "examples" / "rules-events.jsonl").read_text())


def run(**kw: Any) -> list[dict[str, Any]]:
    ctx = kw.pop("ctx", None) or context()
    evs = kw.pop("evs", None) or events()
    return explain(ENGINE, ctx, evs, kw.get("now"), kw.get("until", UNTIL))


def z(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def london(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=LONDON)


def only(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    found = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    assert len(found) == 1, (match, found)
    return found[0]


def rule(name: str) -> str:
    return f"{VERSION}:{name}"


# --- the example case ----------------------------------------------------------------------------


def test_the_example_files_are_valid_and_every_row_is_json_with_utc_times() -> None:
    schema = json.loads((SCHEMAS / "rules-context.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    assert load_context(context()).enhanced_rights
    rows = run()
    assert rows and not [r for r in rows if "error" in r]
    assert json.loads(json.dumps(rows)) == rows
    for row in rows:
        for key in ("at", "send_at", "due_by"):
            assert row[key] is None or row[key].endswith("Z"), row


def test_arrest_at_night_waits_for_the_next_morning() -> None:
    rows = run()
    decided = only(rows, event=ARREST, outcome="send", recipient={"role": "survivor", "id": 101})
    assert decided["at"] == "2026-11-16T21:00:00Z"
    assert decided["send_at"] == z(london(2026, 11, 17, 9, 0)) == "2026-11-17T09:00:00Z"
    assert decided["channel"] == "sms"
    assert "safe window" in decided["explanation"]
    sent = only(rows, event=ARREST, outcome="sent", recipient={"role": "survivor", "id": 101})
    assert sent["at"] == decided["send_at"]
    # The advocate hears at once; the survivor's text comes after, next morning.
    advocate = only(rows, event=ARREST, outcome="sent", recipient={"role": "advocate", "id": 11})
    assert advocate["at"] == "2026-11-16T21:00:00Z"
    assert rows.index(advocate) < rows.index(sent)


def test_nfa_tells_the_advocate_first_and_holds_the_survivors_message() -> None:
    rows = run()
    nfa = [r for r in rows if r["event"] == NFA]
    first = nfa[0]
    assert first["outcome"] == "send"
    assert first["recipient"] == {"role": "advocate", "id": ISVA}
    assert first["template"] == "advocate_tell_first"
    assert first["at"] == first["send_at"] == "2026-11-18T09:45:00Z"
    assert first["due_by"] == "2026-11-19T23:59:59Z"  # enhanced: 1 working day
    held = only(rows, event=NFA, outcome="hold")
    assert held["recipient"] == {"role": "survivor", "id": SURVIVOR}
    assert held["hold_reason"] == "advocate_first"
    assert held["template"] == "survivor_get_in_touch"
    assert held["send_at"] == z(london(2026, 11, 19, 12, 0))  # noon on the deadline day
    assert held["explanation"] == (
        "held for the advocate to tell them first (distressing news); goes by itself by text "
        "at 2026-11-19T12:00:00Z if nobody has"
    )


def test_supervisor_alerted_at_half_the_window_then_fallback_at_noon_on_the_deadline_day() -> None:
    rows = run()
    start = datetime(2026, 11, 18, 9, 45, tzinfo=UTC)
    deadline = datetime(2026, 11, 19, 23, 59, 59, tzinfo=UTC)
    half = half_window(start, deadline, start)
    alert = only(rows, event=NFA, outcome="task")
    assert alert["recipient"] == {"role": "supervisor", "id": SUPERVISOR}
    assert alert["send_at"] == z(half)
    sent = only(rows, event=NFA, outcome="sent", recipient={"role": "supervisor", "id": 21})
    assert sent["at"] == z(half)
    assert "still held" in sent["explanation"]
    released = only(rows, outcome="fallback_released")
    assert released["event"] == NFA
    assert released["at"] == z(london(2026, 11, 19, 12, 0))
    assert released["at"][:10] == released["due_by"][:10]
    assert released["recipient"] == {"role": "survivor", "id": SURVIVOR}
    assert rows.index(sent) < rows.index(released)
    assert rows[-1] is released  # nothing else happens before UNTIL
    assert not [r for r in rows if r["outcome"] == "cancelled"]


def test_time_driven_steps_come_in_time_order_after_their_decision() -> None:
    rows = run()
    steps = [r for r in rows if r["outcome"] in ("sent", "fallback_released", "cancelled")]
    assert [r["at"] for r in steps] == sorted(r["at"] for r in steps)
    for step in steps:
        decision = next(r for r in rows if r["notification_id"] == step["notification_id"])
        assert rows.index(decision) < rows.index(step)
        assert step["at"] == decision["send_at"]


def test_notification_ids_are_those_of_the_consumer() -> None:
    rows = run()
    keys = {
        "survivor": f"survivor:{SURVIVOR}",
        "advocate": f"advocate:{ISVA}:for-survivor:{SURVIVOR}",
        "supervisor": f"supervisor:{SUPERVISOR}:for-survivor:{SURVIVOR}",
    }
    for row in rows:
        key = keys[row["recipient"]["role"]]
        assert row["notification_id"] == notification_id(SOURCE, row["event"], key, row["rule"])
    held = only(rows, event=NFA, outcome="hold")
    assert held["rule"] == rule("police.no_further_action.survivor")


def test_without_until_the_run_stops_at_the_last_event() -> None:
    rows = explain(ENGINE, context(), events(), None, None)
    assert rows[-1]["at"] == "2026-11-18T09:45:00Z"
    assert not [r for r in rows if r["outcome"] == "fallback_released"]


def test_same_input_same_output() -> None:
    first = json.dumps(run(), sort_keys=True)
    assert json.dumps(run(), sort_keys=True) == first
    assert json.dumps(run(ctx=context(), evs=events()), sort_keys=True) == first


# --- invalid events ------------------------------------------------------------------------------


def test_an_invalid_event_gives_an_error_row_and_the_run_goes_on() -> None:
    evs = events()
    bad = copy.deepcopy(evs[1])
    bad["id"] = "met-9999-bad"
    bad["data"] = {"arrested_at": "yesterday", "who": "x"}
    del bad["subject"]
    rows = run(evs=[evs[0], bad, "not an object", evs[2]])
    error = only(rows, event="met-9999-bad")
    assert set(error) == {"event", "error"}
    assert [e["pointer"] for e in error["error"]] == ["/data/arrested_at", "/data/who", "/subject"]
    assert {"event": None, "error": [{"pointer": "", "message": "must be an object"}]} in rows
    assert only(rows, outcome="fallback_released")["event"] == NFA
    assert not [r for r in rows if r.get("event") == ARREST]


def test_an_unreadable_line_and_another_case_are_errors_too() -> None:
    lines = (SCHEMAS / "examples" / "rules-events.jsonl").read_text().splitlines()
    other = json.loads(lines[0])
    other.update(id="other-case", subject="01AB7654324")
    text = "\n".join([lines[0], "{not json", "", json.dumps(other), lines[2]])
    rows = run(evs=read_events(text))
    assert {
        "event": None,
        "error": [{"pointer": "", "message": "line 2 is not valid JSON"}],
    } in rows
    assert only(rows, event="other-case")["error"][0]["pointer"] == "/subject"
    assert only(rows, outcome="fallback_released")["event"] == NFA


# --- --now ---------------------------------------------------------------------------------------


def test_with_now_every_event_is_decided_at_now() -> None:
    now = datetime(2026, 11, 18, 10, 0, tzinfo=UTC)
    rows = run(now=now, until=None)
    decisions = [r for r in rows if r["outcome"] in ("send", "hold", "task")]
    assert {r["at"] for r in decisions} == {"2026-11-18T10:00:00Z"}
    # The arrest's 1-working-day deadline (Tuesday night) has passed: it goes now, in the window.
    late = only(rows, event=ARREST, outcome="send", recipient={"role": "survivor", "id": 101})
    assert late["hold_reason"] == "deadline_already_passed"
    assert late["send_at"] == "2026-11-18T10:00:00Z"
    # With no `until`, only what is due by `now` happens: nothing is released yet.
    assert not [r for r in rows if r["outcome"] == "fallback_released"]
    assert only(rows, event=NFA, outcome="hold")["send_at"] == "2026-11-19T12:00:00Z"


def test_with_now_an_event_after_now_is_in_the_future() -> None:
    now = datetime(2026, 11, 17, 12, 0, tzinfo=UTC)
    rows = run(now=now)
    assert only(rows, event=NFA) == {
        "event": NFA,
        "error": [{"pointer": "/time", "message": "is in the future"}],
    }


def test_late_news_alerts_the_supervisor_at_once_and_gives_the_advocate_time() -> None:
    now = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)  # Friday: Thursday's deadline has passed
    rows = run(evs=events()[2:], now=now, until=now + timedelta(hours=1))
    held = only(rows, outcome="hold")
    alert = only(rows, outcome="task")
    assert alert["send_at"] == "2026-11-20T10:00:00Z"
    # Not the same moment as the advocate, and not after 14:00 before the weekend: Monday.
    assert held["send_at"] == "2026-11-23T10:00:00Z"
    sent = [r for r in rows if r["outcome"] == "sent" and r["recipient"]["role"] == "supervisor"]
    assert sent and sent[0]["at"] == "2026-11-20T10:00:00Z"
    assert not [r for r in rows if r["outcome"] in ("fallback_released", "cancelled")]


# --- the context ---------------------------------------------------------------------------------


def test_an_unavailable_advocate_is_absent_and_the_supervisor_stands_in() -> None:
    for change in ("unavailable", "none"):
        ctx = context()
        if change == "unavailable":
            ctx["advocates"][0]["available"] = False
        else:
            ctx["survivors"][0]["advocate"] = None
        survivor = load_context(ctx).survivors[0]
        assert survivor.advocate == survivor.supervisor
        assert survivor.advocate is not None and survivor.advocate.role is Role.SUPERVISOR
        rows = run(ctx=ctx)
        first = [r for r in rows if r["event"] == NFA][0]
        assert first["recipient"] == {"role": "supervisor", "id": SUPERVISOR}
        # The supervisor is already the one told: no alert to themselves.
        assert not [r for r in rows if r["outcome"] == "task"]


def test_an_unavailable_supervisor_cannot_stand_in() -> None:
    ctx = context()
    ctx["advocates"][0]["available"] = False
    ctx["advocates"][1]["available"] = False
    rows = run(ctx=ctx)
    escalated = [r for r in rows if r["outcome"] == "escalate"]
    assert escalated and all(r["hold_reason"] == "no_advocate" for r in escalated)


def _survivor(c: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = c["survivors"][0]
    return found


def _email(c: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = _survivor(c)["channels"]["email"]
    return found


CONTEXT_ERRORS: list[tuple[Any, str]] = [
    (lambda c: _survivor(c)["channels"]["sms"].pop("safe"), "/survivors/0/channels/sms/safe"),
    (lambda c: _survivor(c)["safe_window"].update(start="25:00"), "/survivors/0/safe_window/start"),
    (lambda c: _survivor(c)["safe_window"].update(end="09:00"), "/survivors/0/safe_window/end"),
    (lambda c: _survivor(c).update(colour="blue"), "/survivors/0/colour"),
    (lambda c: _survivor(c).update(relationship="friend"), "/survivors/0/relationship"),
    (lambda c: _email(c).update(review_by="soon"), "/survivors/0/channels/email/review_by"),
    (lambda c: _survivor(c).update(advocate=99), "/survivors/0/advocate"),
    (lambda c: _survivor(c).update(id="101"), "/survivors/0/id"),
    (lambda c: _survivor(c).update(timezone="Mars/Olympus"), "/survivors/0/timezone"),
    (lambda c: c["survivors"].append(copy.deepcopy(_survivor(c))), "/survivors/1/id"),
    (lambda c: c["survivors"].clear(), "/survivors"),
    (lambda c: c["advocates"][1].update(id=11), "/advocates/1/id"),
    (lambda c: c["case"].update(urn="not a urn"), "/case/urn"),
    (lambda c: c.pop("supervisor"), "/supervisor"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "pointer"), CONTEXT_ERRORS)
def test_a_context_error_names_its_pointer(change: Any, pointer: str) -> None:
    ctx = context()
    change(ctx)
    with pytest.raises(ExplainError) as info:
        explain(ENGINE, ctx, events(), None, UNTIL)
    assert info.value.pointer == pointer
    assert str(info.value).startswith(f"context {pointer}: ")


def test_defaults_fill_what_the_context_leaves_out() -> None:
    ctx = context()
    for name in ("timezone", "language", "safe_window", "frequency", "detail", "opted_out"):
        del ctx["survivors"][0][name]
    del ctx["history"]
    pref = load_context(ctx).survivors[0].preference
    assert pref is not None
    assert (pref.timezone, pref.language, str(pref.safe_window_start)) == (
        "Europe/London",
        "en",
        "09:00:00",
    )
    assert run(ctx=ctx) == run()


def test_naive_times_are_refused() -> None:
    with pytest.raises(ExplainError, match="until must be timezone-aware"):
        explain(ENGINE, context(), events(), None, datetime(2026, 11, 20))
