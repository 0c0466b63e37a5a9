"""The rules in plain English, for advocates and reviewers (`docs/rules.md`, `carehub rules check`).

Generated from the rules file, so the document can never drift from what the engine does; a
test checks that docs/rules.md is current.
"""

from __future__ import annotations

from typing import Any

from services.rules.ruleset import EventRule, RuleSet

SENSITIVITY_WORDS = {
    "routine": "routine",
    "significant": "significant",
    "distressing": "**distressing**: the advocate is told first",
}


def _deadline(rule: EventRule) -> str:
    start = "after receipt" if rule.clock_from == "receipt" else "from the event"
    if rule.standard_wd == rule.enhanced_wd:
        return f"{rule.standard_wd} WD {start}"
    return f"{rule.standard_wd} WD / {rule.enhanced_wd} WD enhanced, {start}"


def _sensitivity(rule: EventRule) -> str:
    text = SENSITIVITY_WORDS[rule.sensitivity]
    for field, values in rule.distressing_unless:
        listed = ", ".join("missing" if v is None else str(v) for v in values)
        text += f"; **distressing** unless `{field}` is {listed}: the advocate is told first"
    return text


def _who(rule: EventRule, rules: RuleSet) -> str:
    if not rule.notify:
        return "the advocate, as a task to pass it on"
    if rule.sensitivity == "distressing":
        d = rules.distressing
        return (
            f"the advocate first (`{d.advocate}`); each survivor held (`{d.survivor}`); "
            f"the supervisor at half the window (`{d.supervisor}`)"
        ) + _letter(rule)
    parts = []
    for notify in rule.notify:
        person = "each survivor" if notify.to == "survivor" else "the advocate"
        parts.append(f"{person} (`{notify.template}`)")
    return "; ".join(parts) + _letter(rule)


def _letter(rule: EventRule) -> str:
    if rule.letter is None:
        return ""
    when = "".join(
        f" when `{field}` is {', '.join(str(v) for v in values)}"
        for field, values in rule.letter.when
    )
    return f"; **in writing**{when}: a letter (`{rule.letter.template}`) where a letter is safe"


def summary(rules: RuleSet) -> list[dict[str, Any]]:
    """One row per event type: who is told, how sensitive it is, and by when."""
    return [
        {
            "type": rule.type,
            "duty": rule.duty,
            "told": [
                {"to": n.to, "template": n.template, "rule": rules.rule_name(n.id)}
                for n in rule.notify
            ],
            "sensitivity": rule.sensitivity,
            "distressing_unless": {k: list(v) for k, v in rule.distressing_unless},
            "key_stage": rule.key_stage,
            "coalesce": rule.coalesce,
            "letter": (
                None
                if rule.letter is None
                else {
                    "template": rule.letter.template,
                    "when": {k: list(v) for k, v in rule.letter.when},
                    "rule": rules.rule_name(f"{rule.type}.letter"),
                }
            ),
            "deadline_wd": {"standard": rule.standard_wd, "enhanced": rule.enhanced_wd},
            "clock_from": rule.clock_from,
        }
        for rule in rules.events.values()
    ]


def markdown(rules: RuleSet) -> str:
    lines = [
        f"# The rules, in plain English (rules version `{rules.version}`)",
        "",
        "Generated from `services/rules/rules.yaml` by `carehub rules check --markdown`; a test",
        "fails when this page and the rules file disagree. WD = working days in England and Wales.",
        "",
        "How every message is decided, in this order (trauma-informed rule 14):",
        "",
        "1. **Opt-out and unsafe channels are absolute.** A survivor who opted out gets nothing;",
        "   what the law still requires goes to their advocate as a task. A channel is used only",
        "   if it is recorded as safe and its review date has not passed; otherwise the message",
        "   is held and the advocate is asked to find a safe way.",
        '2. **Their choices.** "No updates" stops survivor messages; "key stages only" stops',
        "   those not marked as a key stage below. Discreet messages never say what happened.",
        "3. **The deadline binds.** Every message carries its Victims' Code `due_by`.",
        "4. **Advocate first.** For distressing news the advocate is told at once and asked to",
        "   tell the survivor; the survivor's own message says nothing of the outcome and is held.",
        "   At half the time allowed the team supervisor is alerted; at noon on the deadline day",
        "   (inside the survivor's safe window) the held message goes by itself. Templates:",
        f"   `{rules.distressing.advocate}`, `{rules.distressing.survivor}`,"
        f" `{rules.distressing.supervisor}`.",
        "5. **Quiet hours.** A survivor's message waits for their safe window (by default",
        "   09:00-20:00 in their timezone), unless that would miss the deadline.",
        "6. **End of week.** Held distressing news is not released after 14:00 on the last",
        "   working day before a weekend or bank holiday, where the deadline allows.",
        "7. **One update, not five.** Events in the same group (below) replace the survivor's",
        "   messages of older events in that group that have not gone yet: never a stale date.",
        "8. **The last look.** When a message finally goes, the survivor's current choices are",
        "   checked again; if they opted out or the channel is no longer safe it is stopped and",
        "   the advocate gets a task to tell them instead; if a delay pushed it into their quiet",
        "   hours it waits for their window, unless that would miss the deadline.",
        "9. **Letters.** A survivor whose only safe channel is the post (an address on file,",
        "   recorded as safe for letters) is written to: a person prints and posts the letter,",
        "   queued for them as plain text and HTML. A duty the Code requires in writing (marked",
        "   **in writing** below) also gets a letter, besides the usual message, wherever a letter",
        "   is safe, and instead of the usual letter for a survivor who can only be written to.",
        "   Opt-out, their frequency and advocate-first apply to letters as to any message (a",
        "   held letter goes to be posted with the held message, or at noon on the deadline's",
        "   day); quiet hours and the end-of-week rule do not, because a letter is read when the",
        "   post comes, not when it is queued. Without a safe letter the usual message and the",
        "   advocate carry the duty. The survivor counts as informed two working days after the",
        "   letter is marked posted (first-class post).",
        "10. **Silence is surfaced.** A survivor who has heard nothing from us for longer than",
        f"    {rules.silence.after_days['all']} days (all updates), "
        f"{rules.silence.after_days['key_stages']} days (key stages only) or "
        f"{rules.silence.after_days['none']} days (no updates) has their advocate prompted to",
        f"    check in (`{rules.silence.template}`), and again after as long if it stays quiet.",
        "",
        "With no advocate, the team's supervisor stands in; with nobody at all, the decision is",
        "an escalation.",
        "",
        "| event | Code duty | who is told | sensitivity | key stage | group | deadline |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for rule in rules.events.values():
        lines.append(
            f"| `{rule.type}` | {rule.duty} | {_who(rule, rules)} | {_sensitivity(rule)} | "
            f"{'yes' if rule.key_stage else 'no'} | {rule.coalesce or '-'} | {_deadline(rule)} |"
        )
    return "\n".join(lines) + "\n"
