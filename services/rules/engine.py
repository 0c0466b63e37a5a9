"""The rules engine: a pure function from an event, its case context and `now` to decisions.

No I/O, no clock, no ORM: everything it needs is passed in, so it runs the same in a test, in
the consumer and when an advocate asks "why was I (not) told?".
"""

from __future__ import annotations

from datetime import date, datetime

from services.core.calendar import WorkingDayCalendar, due_by, london_date
from services.core.domain import (
    CaseContext,
    Channel,
    ContactPreference,
    Decision,
    Detail,
    EventFacts,
    Outcome,
    Person,
    Role,
    SurvivorContext,
)
from services.rules.ruleset import EventRule, NotifyRule, RuleSet

PASS_ON_TEMPLATE = "advocate_pass_on_update"
NO_SAFE_CHANNEL_TEMPLATE = "advocate_no_safe_channel"


class Engine:
    """Decides with one rule set and one working-day calendar."""

    def __init__(self, rules: RuleSet, calendar: WorkingDayCalendar) -> None:
        self.rules = rules
        self.calendar = calendar

    def decide(self, event: EventFacts, context: CaseContext, now: datetime) -> list[Decision]:
        rule = self.rules.events.get(event.type)
        if rule is None:
            return []
        deadline = self._due_by(rule, event, context)
        decisions: list[Decision] = []
        for survivor in context.survivors:
            decisions.extend(self._for_survivor(rule, event, survivor, deadline, now))
        return decisions

    def _due_by(self, rule: EventRule, event: EventFacts, context: CaseContext) -> datetime:
        start = event.time
        if rule.clock_from == "receipt" and event.agency_received_at is not None:
            start = event.agency_received_at
        days = rule.enhanced_wd if context.enhanced_rights else rule.standard_wd
        return due_by(start, days, self.calendar)

    def _for_survivor(
        self,
        rule: EventRule,
        event: EventFacts,
        survivor: SurvivorContext,
        deadline: datetime,
        now: datetime,
    ) -> list[Decision]:
        if not rule.notify:
            # A Code duty with no message rule yet: a person passes it on, never silence.
            return [self._advocate_task(rule, survivor, deadline, now, "pass_on", PASS_ON_TEMPLATE)]
        out: list[Decision] = []
        for notify in rule.notify:
            if notify.to == "advocate":
                out.append(self._to_advocate(notify, survivor, deadline, now))
            else:
                out.extend(self._to_survivor(rule, notify, survivor, deadline, now))
        return out

    def _to_advocate(
        self, notify: NotifyRule, survivor: SurvivorContext, deadline: datetime, now: datetime
    ) -> Decision:
        name = self.rules.rule_name(notify.id)
        return _to_advocate_or_escalate(
            Outcome.SEND, survivor, notify.template, now, deadline, name
        )

    def _to_survivor(
        self,
        rule: EventRule,
        notify: NotifyRule,
        survivor: SurvivorContext,
        deadline: datetime,
        now: datetime,
    ) -> list[Decision]:
        name = self.rules.rule_name(notify.id)
        pref = survivor.preference
        person = survivor.survivor
        language = pref.language if pref else "en"
        detail = pref.detail if pref else Detail.DISCREET
        if pref is not None and pref.opted_out:
            # Opt-out is absolute; what the law still requires goes through the advocate.
            return [
                Decision(
                    Outcome.SUPPRESS,
                    person,
                    None,
                    notify.template,
                    None,
                    deadline,
                    name,
                    hold_reason="opted_out",
                    survivor_id=person.id,
                    language=language,
                ),
                self._advocate_task(rule, survivor, deadline, now, "opted_out", PASS_ON_TEMPLATE),
            ]
        channel = safe_channel(pref, london_date(now))
        if channel is None:
            reason = "no_safe_channel" if pref is not None else "no_contact_preferences"
            return [
                Decision(
                    Outcome.HOLD,
                    person,
                    None,
                    notify.template,
                    None,
                    deadline,
                    name,
                    hold_reason=reason,
                    survivor_id=person.id,
                    language=language,
                    detail=detail,
                ),
                self._advocate_task(
                    rule, survivor, deadline, now, reason, NO_SAFE_CHANNEL_TEMPLATE
                ),
            ]
        return [
            Decision(
                Outcome.SEND,
                person,
                channel,
                notify.template,
                now,
                deadline,
                name,
                survivor_id=person.id,
                language=language,
                detail=detail,
            )
        ]

    def _advocate_task(
        self,
        rule: EventRule,
        survivor: SurvivorContext,
        deadline: datetime,
        now: datetime,
        reason: str,
        template: str,
    ) -> Decision:
        name = self.rules.rule_name(f"{rule.type}.advocate_task.{reason}")
        return _to_advocate_or_escalate(
            Outcome.TASK, survivor, template, now, deadline, name, hold_reason=reason
        )


def _to_advocate_or_escalate(
    outcome: Outcome,
    survivor: SurvivorContext,
    template: str,
    now: datetime,
    deadline: datetime,
    rule: str,
    hold_reason: str | None = None,
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
    )


def safe_channel(pref: ContactPreference | None, today: date) -> Channel | None:
    """The channel recorded as safe today (SMS first, then e-mail), or None.

    A safety check past its review date no longer counts (trauma-informed rule 1).
    """
    if pref is None:
        return None
    if pref.has_phone and pref.sms_safe and _current(pref.sms_safe_review_by, today):
        return Channel.SMS
    if pref.has_email and pref.email_safe and _current(pref.email_safe_review_by, today):
        return Channel.EMAIL
    return None


def _current(review_by: date | None, today: date) -> bool:
    return review_by is None or review_by >= today


def recipient_key(decision: Decision) -> str:
    """Who a notification is for, as part of its deterministic id."""
    person: Person = decision.recipient
    if person.role is Role.SURVIVOR:
        return f"survivor:{person.id}"
    return f"{person.role.value}:{person.id}:for-survivor:{decision.survivor_id}"
