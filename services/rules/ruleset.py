"""Loading and validating the rules data file (rules.yaml): a clear error naming the line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from services.core.rendering import catalogue

DEFAULT_RULES = Path(__file__).with_name("rules.yaml")
RECIPIENTS = frozenset({"survivor", "advocate"})
CLOCK_STARTS = frozenset({"event", "receipt"})
# The template channel a letter is written in; every survivor template has one, so a survivor
# whose only safe channel is the post can be told anything the rules tell them.
LETTER_CHANNEL = "letter"
# The rule id of an event's letter duty (`<type>.letter`): no notify entry may take it.
LETTER_RULE_ID = "letter"


class RulesError(ValueError):
    """The rules file is not valid; the message names the file, line and problem."""


@dataclass(frozen=True)
class NotifyRule:
    id: str
    to: str
    template: str


SENSITIVITIES = ("routine", "significant", "distressing")


@dataclass(frozen=True)
class LetterRule:
    """A Code duty that must be given in writing (a CPS decision not to charge: "a letter with
    CPS VRR information"): a letter to each survivor, besides their usual message, wherever a
    letter is recorded as safe."""

    template: str
    # data field -> the values for which the letter is owed; empty: it is always owed.
    when: tuple[tuple[str, tuple[object, ...]], ...] = ()

    def applies(self, data: dict[str, object]) -> bool:
        return all(data.get(name) in values for name, values in self.when)


@dataclass(frozen=True)
class EventRule:
    type: str
    duty: str
    standard_wd: int
    enhanced_wd: int
    clock_from: str
    notify: tuple[NotifyRule, ...]
    sensitivity: str = "significant"
    key_stage: bool = True
    # data field -> the values for which this event is NOT distressing. Any other value, or a
    # missing field, is distressing: an unexpected ending fails safe (advocate first).
    distressing_unless: tuple[tuple[str, tuple[object, ...]], ...] = ()
    # Events sharing a coalesce group replace each other's unsent survivor messages (a hearing
    # moved again before the first message went out: never send stale news).
    coalesce: str | None = None
    # The letter this duty needs, if the Code requires it in writing.
    letter: LetterRule | None = None

    def is_distressing(self, data: dict[str, object]) -> bool:
        if self.sensitivity == "distressing":
            return True
        return any(data.get(name) not in values for name, values in self.distressing_unless)


@dataclass(frozen=True)
class DistressingTemplates:
    advocate: str
    survivor: str
    supervisor: str


@dataclass(frozen=True)
class SilenceRule:
    """After how many days without contact (by chosen frequency) the advocate is prompted."""

    template: str
    after_days: dict[str, int]


FREQUENCIES = ("all", "key_stages", "none")
# When a rules file says nothing of silence (trauma-informed rule 13).
DEFAULT_SILENCE = SilenceRule("advocate_check_in", {"all": 28, "key_stages": 56, "none": 91})


@dataclass(frozen=True)
class RuleSet:
    version: str
    events: dict[str, EventRule]
    distressing: DistressingTemplates
    silence: SilenceRule

    def rule_name(self, rule_id: str) -> str:
        return f"{self.version}:{rule_id}"


def _line(node: Any) -> int:
    mark = getattr(node, "start_mark", None)
    return int(mark.line) + 1 if mark is not None else 0


def load_rules(path: Path | None = None) -> RuleSet:
    """Read and check a rules file (the packaged one by default)."""
    path = path or DEFAULT_RULES
    try:
        text = path.read_text(encoding="utf-8")
        root = yaml.compose(text)
    except (OSError, yaml.YAMLError) as exc:
        raise RulesError(f"rules file {path}: cannot be read: {exc}") from None

    def fail(node: Any, message: str) -> RulesError:
        return RulesError(f"rules file {path}, line {_line(node)}: {message}")

    if not isinstance(root, yaml.MappingNode):
        raise fail(root, "must be a mapping with 'version' and 'events'")
    top = {k.value: v for k, v in root.value}
    unknown = set(top) - {"version", "events", "distressing", "silence"}
    if unknown:
        raise fail(root, f"unknown field {sorted(unknown)[0]!r}")
    if "version" not in top or not str(top["version"].value).strip():
        raise fail(root, "'version' is required")
    version = str(top["version"].value)
    events_node = top.get("events")
    if not isinstance(events_node, yaml.MappingNode):
        raise fail(root, "'events' must be a mapping of event type to rule")
    templates = catalogue()
    if "distressing" not in top:
        raise fail(root, "'distressing' (the templates for distressing outcomes) is required")
    block = _fields(
        top["distressing"],
        {"advocate_template", "survivor_template", "supervisor_template"},
        "distressing",
        fail,
    )
    chosen: dict[str, str] = {}
    for name in ("advocate_template", "survivor_template", "supervisor_template"):
        if name not in block:
            raise fail(top["distressing"], f"distressing: {name!r} is required")
        node = block[name][1]
        audience = "survivor" if name == "survivor_template" else "advocate"
        chosen[name] = _template(_value(node), audience, templates, "distressing", node, fail)
        if audience == "survivor":
            _writable(chosen[name], templates, "distressing", node, fail)
    distressing = DistressingTemplates(
        advocate=chosen["advocate_template"],
        survivor=chosen["survivor_template"],
        supervisor=chosen["supervisor_template"],
    )
    silence = DEFAULT_SILENCE
    if "silence" in top:
        silence = _silence(top["silence"], templates, fail)
    events: dict[str, EventRule] = {}
    for key_node, rule_node in events_node.value:
        etype = str(key_node.value)
        if etype not in DOCUMENTED_TYPES:
            raise fail(key_node, f"unknown event type {etype!r}")
        if etype in events:
            raise fail(key_node, f"{etype}: listed twice")
        fields = _fields(
            rule_node,
            {
                "duty",
                "deadline",
                "notify",
                "sensitivity",
                "key_stage",
                "distressing_unless",
                "coalesce",
                "letter",
            },
            etype,
            fail,
        )
        sensitivity = _value(fields["sensitivity"][1]) if "sensitivity" in fields else None
        if sensitivity not in SENSITIVITIES:
            where = fields["sensitivity"][1] if "sensitivity" in fields else rule_node
            raise fail(where, f"{etype}: sensitivity must be one of {', '.join(SENSITIVITIES)}")
        key_stage = _value(fields["key_stage"][1]) if "key_stage" in fields else True
        if not isinstance(key_stage, bool):
            raise fail(fields["key_stage"][1], f"{etype}: key_stage must be true or false")
        unless: list[tuple[str, tuple[object, ...]]] = []
        if "distressing_unless" in fields:
            raw_unless = _value(fields["distressing_unless"][1])
            if not isinstance(raw_unless, dict) or not all(
                isinstance(v, list) and v for v in raw_unless.values()
            ):
                raise fail(
                    fields["distressing_unless"][1],
                    f"{etype}: distressing_unless maps a data field to a list of values",
                )
            unless = [(str(k), tuple(v)) for k, v in raw_unless.items()]
        if "deadline" not in fields:
            raise fail(rule_node, f"{etype}: 'deadline' is required")
        deadline_node = fields["deadline"][1]
        deadline = _fields(deadline_node, {"standard", "enhanced", "from"}, etype, fail)
        days: dict[str, int] = {}
        for name in ("standard", "enhanced"):
            if name not in deadline:
                raise fail(deadline_node, f"{etype}: deadline needs {name!r}")
            value = _value(deadline[name][1])
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 60:
                raise fail(deadline[name][1], f"{etype}: deadline {name} must be 0-60 working days")
            days[name] = value
        clock_from = _value(deadline["from"][1]) if "from" in deadline else "event"
        if not isinstance(clock_from, str) or clock_from not in CLOCK_STARTS:
            where = deadline["from"][1] if "from" in deadline else deadline_node
            raise fail(where, f"{etype}: deadline 'from' must be event or receipt")
        notify: list[NotifyRule] = []
        notify_node = fields.get("notify", (None, None))[1]
        entries = notify_node.value if isinstance(notify_node, yaml.SequenceNode) else []
        if notify_node is not None and not isinstance(notify_node, yaml.SequenceNode):
            raise fail(notify_node, f"{etype}: notify must be a list")
        for entry in entries:
            item = {
                k: _value(v[1])
                for k, v in _fields(entry, {"id", "to", "template"}, etype, fail).items()
            }
            if not isinstance(item.get("id"), str) or not item["id"]:
                raise fail(entry, f"{etype}: a notify entry needs an 'id'")
            if item.get("to") not in RECIPIENTS:
                raise fail(entry, f"{etype}: notify 'to' must be survivor or advocate")
            template_node = _fields(entry, {"id", "to", "template"}, etype, fail).get("template")
            _template(
                item.get("template"),
                str(item["to"]),
                templates,
                etype,
                template_node[1] if template_node else entry,
                fail,
            )
            if item["id"] == LETTER_RULE_ID:
                raise fail(entry, f"{etype}: notify id {LETTER_RULE_ID!r} is the letter duty's")
            if item["to"] == "survivor":
                _writable(
                    str(item["template"]),
                    templates,
                    etype,
                    template_node[1] if template_node else entry,
                    fail,
                )
            rule_id = f"{etype}.{item['id']}"
            if any(n.id == rule_id for n in notify):
                raise fail(entry, f"{etype}: notify id {item['id']!r} is used twice")
            notify.append(
                NotifyRule(id=rule_id, to=str(item["to"]), template=str(item["template"]))
            )
        coalesce = _value(fields["coalesce"][1]) if "coalesce" in fields else None
        if coalesce is not None and (
            not isinstance(coalesce, str) or not coalesce.replace("_", "").isalpha()
        ):
            raise fail(fields["coalesce"][1], f"{etype}: coalesce must be a group name (a-z, _)")
        letter = None
        if "letter" in fields:
            letter = _letter(fields["letter"][1], templates, etype, fail)
        duty = _value(fields["duty"][1]) if "duty" in fields else ""
        events[etype] = EventRule(
            type=etype,
            duty=str(duty),
            standard_wd=days["standard"],
            enhanced_wd=days["enhanced"],
            clock_from=clock_from,
            notify=tuple(notify),
            sensitivity=str(sensitivity),
            key_stage=key_stage,
            distressing_unless=tuple(unless),
            coalesce=coalesce,
            letter=letter,
        )
    return RuleSet(version=version, events=events, distressing=distressing, silence=silence)


def _silence(node: Any, templates: dict[str, Any], fail: Any) -> SilenceRule:
    block = _fields(node, {"template", "after_days"}, "silence", fail)
    if "template" not in block or "after_days" not in block:
        raise fail(node, "silence: 'template' and 'after_days' are required")
    template_node = block["template"][1]
    template = _template(
        _value(template_node), "advocate", templates, "silence", template_node, fail
    )
    after_node = block["after_days"][1]
    after = {
        k: _value(v[1]) for k, v in _fields(after_node, set(FREQUENCIES), "silence", fail).items()
    }
    for frequency in FREQUENCIES:
        days = after.get(frequency)
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 366:
            raise fail(after_node, f"silence: after_days {frequency!r} must be 1-366 days")
    return SilenceRule(template=template, after_days={k: int(after[k]) for k in FREQUENCIES})


def _letter(node: Any, templates: dict[str, Any], etype: str, fail: Any) -> LetterRule:
    """`letter: {template: ..., when: {field: [values]}}`: the letter, and when it is owed."""
    block = _fields(node, {"template", "when"}, etype, fail)
    if "template" not in block:
        raise fail(node, f"{etype}: letter needs a 'template'")
    template_node = block["template"][1]
    template = _template(_value(template_node), "survivor", templates, etype, template_node, fail)
    _writable(template, templates, etype, template_node, fail)
    when: list[tuple[str, tuple[object, ...]]] = []
    if "when" in block:
        raw = _value(block["when"][1])
        if (
            not isinstance(raw, dict)
            or not raw
            or not all(isinstance(v, list) and v for v in raw.values())
        ):
            raise fail(
                block["when"][1], f"{etype}: letter 'when' maps a data field to a list of values"
            )
        when = [(str(k), tuple(v)) for k, v in raw.items()]
    return LetterRule(template=template, when=tuple(when))


def _writable(name: str, templates: dict[str, Any], where: str, node: Any, fail: Any) -> None:
    """A survivor's template must have a letter: the post may be their only safe channel."""
    if LETTER_CHANNEL not in templates[name].channels:
        raise fail(node, f"{where}: template {name!r} has no letter version")


def _template(
    name: object, audience: str, templates: dict[str, Any], where: str, node: Any, fail: Any
) -> str:
    """A template that exists and is written for this audience (a survivor must never get an
    advocate's template, which names the outcome)."""
    if not isinstance(name, str) or name not in templates:
        raise fail(node, f"{where}: unknown template {name!r}")
    if templates[name].audience != audience:
        raise fail(node, f"{where}: template {name!r} is written for {templates[name].audience}s")
    return name


def _value(node: Any) -> Any:
    return yaml.safe_load(yaml.serialize(node))


def _fields(node: Any, allowed: set[str], etype: str, fail: Any) -> dict[str, tuple[Any, Any]]:
    """The (key node, value node) pairs of a mapping node, refusing unknown keys at their line."""
    if not isinstance(node, yaml.MappingNode):
        raise fail(node, f"{etype}: expected a mapping")
    pairs = {str(k.value): (k, v) for k, v in node.value}
    for name, (key, _) in pairs.items():
        if name not in allowed:
            raise fail(key, f"{etype}: unknown field {name!r}")
    return pairs


# Every event type of victims-code.md; the ingest work adds a data schema for each.
DOCUMENTED_TYPES = frozenset(
    [
        "police.crime_recorded",
        "police.decision_not_to_investigate",
        "police.suspect_arrested",
        "police.suspect_interviewed",
        "police.suspect_bailed",
        "police.suspect_released_under_investigation",
        "police.bail_conditions_changed",
        "police.suspect_charged",
        "police.out_of_court_disposal",
        "police.no_further_action",
        "police.vrr_outcome",
        "cps.vrr_outcome",
        "cps.charging_decision",
        "cps.case_discontinued",
        "cps.charges_altered",
        "court.hearing_scheduled",
        "court.hearing_changed",
        "court.bail_decision",
        "court.warrant_issued",
        "court.witness_required",
        "court.verdict",
        "court.sentence",
        "court.appeal",
        "probation.victim_contact_scheme_eligible",
        "probation.release_planned",
        "probation.released",
        "probation.recalled",
    ]
)
