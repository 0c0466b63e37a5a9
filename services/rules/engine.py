"""The rules engine: a pure function from an event, its case context and `now` to decisions.

No I/O, no clock, no ORM: everything it needs is passed in, so it runs the same in a test, in
the consumer and when an advocate asks "why was I (not) told?".

Precedence (trauma-informed rule 14): opt-out and unsafe channels are absolute (what the law
still requires goes through the advocate); then the deadline; then advocate-first; then quiet
hours; then the end-of-week rule.

Letters (`letter_task`: a person prints and posts them). A survivor whose only safe channel is
the post is written to; a duty the Code requires in writing (rules data `letter`) also gets a
letter wherever one is safe. Opt-out, the survivor's frequency and advocate-first apply to
letters as to any message. Quiet hours and the end-of-week rule do not: they protect the moment
a message is read, and a letter is read when the post comes, a day or more after a person posts
it, never at the moment it is handed to them. Held distressing news is what keeps a letter from
arriving before the advocate has spoken to the survivor.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from services.core.calendar import LONDON, WorkingDayCalendar, due_by, london_date
from services.core.domain import (
    CaseContext,
    Channel,
    ContactPreference,
    Decision,
    Detail,
    EventFacts,
    Frequency,
    Outcome,
    Person,
    Role,
    SurvivorContext,
    letter_is_safe,
    safe_channel,
)
from services.rules.ruleset import LETTER_RULE_ID, EventRule, NotifyRule, RuleSet
from services.rules.timing import LATE_GRACE, fallback_time, half_window, next_safe_time

PASS_ON_TEMPLATE = "advocate_pass_on_update"
NO_SAFE_CHANNEL_TEMPLATE = "advocate_no_safe_channel"
LETTER_FALLBACK_TIME = time(12, 0)  # London: a held letter goes to be posted during the day


class Engine:
    """Decides with one rule set and one working-day calendar."""

    def __init__(self, rules: RuleSet, calendar: WorkingDayCalendar) -> None:
        self.rules = rules
        self.calendar = calendar

    def decide(self, event: EventFacts, context: CaseContext, now: datetime) -> list[Decision]:
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        rule = self.rules.events.get(event.type)
        if rule is None:
            return []
        start = self._clock_start(rule, event)
        days = rule.enhanced_wd if context.enhanced_rights else rule.standard_wd
        deadline = due_by(start, days, self.calendar)
        letter = rule.letter.template if rule.letter and rule.letter.applies(event.data) else None
        situation = _Situation(rule, start, deadline, now, rule.is_distressing(event.data), letter)
        decisions: list[Decision] = []
        for survivor in context.survivors:
            decisions.extend(self._for_survivor(situation, survivor))
        return decisions

    @staticmethod
    def _clock_start(rule: EventRule, event: EventFacts) -> datetime:
        if rule.clock_from == "receipt" and event.agency_received_at is not None:
            return event.agency_received_at
        return event.time

    def _for_survivor(self, s: _Situation, survivor: SurvivorContext) -> list[Decision]:
        if not s.rule.notify:
            # A Code duty with no message rule yet: a person passes it on, never silence.
            return [self._advocate_task(s, survivor, "pass_on", PASS_ON_TEMPLATE)]
        out: list[Decision] = []
        for notify in s.rule.notify:
            if notify.to == "survivor":
                out.extend(self._to_survivor(s, notify, survivor))
        letter = self._duty_letter(s, survivor, out)
        if letter is not None:
            out.append(letter)
        held = next((d for d in out if d.hold_reason == "advocate_first"), None)
        for notify in s.rule.notify:
            if notify.to == "advocate":
                out.insert(0, self._to_advocate(s, notify, survivor, held))
        if held is not None:
            alert = self._supervisor_alert(s, survivor, held)
            if alert is not None:
                out.append(alert)
        return out

    def _to_advocate(
        self,
        s: _Situation,
        notify: NotifyRule,
        survivor: SurvivorContext,
        held: Decision | None,
    ) -> Decision:
        template = self.rules.distressing.advocate if s.distressing else notify.template
        return _to_advocate_or_escalate(
            Outcome.SEND,
            survivor,
            template,
            s.now,
            s.deadline,
            self.rules.rule_name(notify.id),
            related_rule=held.rule if held is not None else None,
        )

    def _to_survivor(
        self, s: _Situation, notify: NotifyRule, survivor: SurvivorContext
    ) -> list[Decision]:
        name = self.rules.rule_name(notify.id)
        pref = survivor.preference
        person = survivor.survivor
        language = pref.language if pref else "en"
        # Whatever becomes of it, a survivor's message about distressing news is detail-free.
        template = self.rules.distressing.survivor if s.distressing else notify.template
        detail = Detail.DISCREET if s.distressing else _detail(pref)

        def decision(outcome: Outcome, **kw: object) -> Decision:
            fields: dict[str, object] = {
                "channel": None,
                "template": template,
                "detail": detail,
                "send_at": None,
                "due_by": s.deadline,
                "rule": name,
                "survivor_id": person.id,
                "language": language,
                "coalesce_key": s.rule.coalesce,
            }
            fields.update(kw)
            return Decision(outcome, person, **fields)  # type: ignore[arg-type]

        if pref is not None and pref.opted_out:
            # Opt-out is absolute; what the law still requires goes through the advocate.
            return [
                decision(Outcome.SUPPRESS, hold_reason="opted_out"),
                self._advocate_task(s, survivor, "opted_out", PASS_ON_TEMPLATE),
            ]
        if pref is not None and pref.frequency is Frequency.NONE:
            return [decision(Outcome.SUPPRESS, hold_reason="frequency_none")]
        if pref is not None and pref.frequency is Frequency.KEY_STAGES and not s.rule.key_stage:
            return [decision(Outcome.SUPPRESS, hold_reason="not_a_key_stage")]
        # When it would go: the fallback for held distressing news, else the safe window.
        note = None
        if s.distressing:
            send_at = fallback_time(s.deadline, s.now, pref, self.calendar)
        else:
            send_at = next_safe_time(s.now, pref)
            if s.deadline <= s.now:
                note = "deadline_already_passed"  # late already: the window costs nothing more
            elif send_at > s.deadline:
                # Waiting for the safe window would break the Code deadline: the deadline wins.
                send_at, note = s.now, "deadline_before_safe_window"
        # The channel must be safe on the day it is used, not only today (rule 1).
        channel = safe_channel(pref, london_date(max(s.now, send_at)))
        if channel is None and letter_is_safe(pref, london_date(s.now)):
            if s.letter is not None:
                # Never two letters about one event: their message is the letter the Code needs.
                return [decision(Outcome.MERGE, hold_reason="merged_into_letter")]
            channel = Channel.LETTER_TASK
            send_at, note = self._letter_time(s, held=None)
        if channel is None:
            reason = "no_safe_channel" if pref is not None else "no_contact_preferences"
            return [
                decision(Outcome.HOLD, hold_reason=reason),
                self._advocate_task(s, survivor, reason, NO_SAFE_CHANNEL_TEMPLATE),
            ]
        if s.distressing:
            # Told by a person first; the survivor's own message is detail-free and waits for
            # the advocate, going by itself only as a fallback before the deadline.
            return [
                decision(
                    Outcome.HOLD, channel=channel, send_at=send_at, hold_reason="advocate_first"
                )
            ]
        return [decision(Outcome.SEND, channel=channel, send_at=send_at, hold_reason=note)]

    def _duty_letter(
        self, s: _Situation, survivor: SurvivorContext, own: list[Decision]
    ) -> Decision | None:
        """The letter a duty needs in writing, for a survivor a letter is safe for and whose own
        message was not stopped by their choices (opt-out, no updates, key stages only)."""
        pref = survivor.preference
        if s.letter is None or pref is None or not letter_is_safe(pref, london_date(s.now)):
            return None
        if any(d.outcome is Outcome.SUPPRESS for d in own):
            return None
        held = next((d for d in own if d.hold_reason == "advocate_first"), None)
        send_at, reason = self._letter_time(s, held)
        return Decision(
            Outcome.HOLD if s.distressing else Outcome.SEND,
            survivor.survivor,
            Channel.LETTER_TASK,
            s.letter,
            send_at,
            s.deadline,
            self.rules.rule_name(f"{s.rule.type}.{LETTER_RULE_ID}"),
            hold_reason="advocate_first" if s.distressing else reason,
            detail=Detail.DISCREET if s.distressing else _detail(pref),
            language=pref.language,
            survivor_id=survivor.survivor.id,
        )

    def _letter_time(self, s: _Situation, held: Decision | None) -> tuple[datetime, str | None]:
        """When a letter is handed to a person to post (its `send_at`), and the note on it.

        At once, whatever the hour (no quiet hours: see the module docstring). Held news goes
        with the survivor's held message if there is one, so the advocate is given one time;
        else at noon London time on the deadline's day (never before now, never after the
        deadline); news already past its deadline still leaves the advocate a few hours.
        """
        if not s.distressing:
            return s.now, ("deadline_already_passed" if s.deadline <= s.now else None)
        if held is not None and held.send_at is not None:
            return held.send_at, None
        if s.deadline <= s.now:
            return s.now + LATE_GRACE, None
        day = s.deadline.astimezone(LONDON).date()
        noon = datetime.combine(day, LETTER_FALLBACK_TIME, tzinfo=LONDON).astimezone(UTC)
        return min(max(noon, s.now), s.deadline), None

    def _supervisor_alert(
        self, s: _Situation, survivor: SurvivorContext, held: Decision
    ) -> Decision | None:
        supervisor = survivor.supervisor
        if supervisor is None or supervisor == survivor.advocate:
            return None
        alert_at = half_window(s.clock_start, s.deadline, s.now)
        if held.send_at is not None:
            # Never after the fallback: by then the held message has gone by itself. A minute
            # before it at the latest (or now, if that has passed).
            alert_at = min(alert_at, max(s.now, held.send_at - timedelta(minutes=1)))
        return Decision(
            Outcome.TASK,
            supervisor,
            Channel.EMAIL,
            self.rules.distressing.supervisor,
            alert_at,
            s.deadline,
            self.rules.rule_name(f"{s.rule.type}.supervisor_alert"),
            hold_reason="held_past_half_window",
            survivor_id=survivor.survivor.id,
            related_rule=held.rule,
            condition="while_held",
        )

    def _advocate_task(
        self, s: _Situation, survivor: SurvivorContext, reason: str, template: str
    ) -> Decision:
        name = self.rules.rule_name(f"{s.rule.type}.advocate_task.{reason}")
        return _to_advocate_or_escalate(
            Outcome.TASK, survivor, template, s.now, s.deadline, name, hold_reason=reason
        )


class _Situation:
    """What every decision about one event shares."""

    __slots__ = ("rule", "clock_start", "deadline", "now", "distressing", "letter")

    def __init__(
        self,
        rule: EventRule,
        clock_start: datetime,
        deadline: datetime,
        now: datetime,
        distressing: bool,
        letter: str | None,
    ) -> None:
        self.rule = rule
        self.clock_start = clock_start
        self.deadline = deadline
        self.now = now
        self.distressing = distressing
        self.letter = letter  # the template of the letter this event's duty needs, if any


def _detail(pref: ContactPreference | None) -> Detail:
    return pref.detail if pref is not None else Detail.DISCREET


def _to_advocate_or_escalate(
    outcome: Outcome,
    survivor: SurvivorContext,
    template: str,
    now: datetime,
    deadline: datetime,
    rule: str,
    hold_reason: str | None = None,
    related_rule: str | None = None,
) -> Decision:
    """A message for the survivor's advocate; with nobody to receive it, an escalation."""
    if survivor.advocate is None:
        return Decision(
            Outcome.ESCALATE,
            survivor.survivor,
            None,
            None,
            None,
            deadline,
            rule,
            hold_reason="no_advocate",
            survivor_id=survivor.survivor.id,
        )
    return Decision(
        outcome,
        survivor.advocate,
        Channel.EMAIL,
        template,
        now,
        deadline,
        rule,
        hold_reason=hold_reason,
        survivor_id=survivor.survivor.id,
        related_rule=related_rule,
    )


def recipient_key(decision: Decision) -> str:
    """Who a notification is for, as part of its deterministic id."""
    person: Person = decision.recipient
    if person.role is Role.SURVIVOR:
        return f"survivor:{person.id}"
    return f"{person.role.value}:{person.id}:for-survivor:{decision.survivor_id}"
