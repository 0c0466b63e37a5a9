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


class RulesError(ValueError):
    """The rules file is not valid; the message names the file, line and problem."""


@dataclass(frozen=True)
class NotifyRule:
    id: str
    to: str
    template: str


@dataclass(frozen=True)
class EventRule:
    type: str
    duty: str
    standard_wd: int
    enhanced_wd: int
    clock_from: str
    notify: tuple[NotifyRule, ...]


@dataclass(frozen=True)
class RuleSet:
    version: str
    events: dict[str, EventRule]

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
    unknown = set(top) - {"version", "events"}
    if unknown:
        raise fail(root, f"unknown field {sorted(unknown)[0]!r}")
    if "version" not in top or not str(top["version"].value).strip():
        raise fail(root, "'version' is required")
    version = str(top["version"].value)
    events_node = top.get("events")
    if not isinstance(events_node, yaml.MappingNode):
        raise fail(root, "'events' must be a mapping of event type to rule")
    templates = catalogue()
    events: dict[str, EventRule] = {}
    for key_node, rule_node in events_node.value:
        etype = str(key_node.value)
        if etype not in DOCUMENTED_TYPES:
            raise fail(key_node, f"unknown event type {etype!r}")
        if etype in events:
            raise fail(key_node, f"{etype}: listed twice")
        fields = _fields(rule_node, {"duty", "deadline", "notify"}, etype, fail)
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
            if item.get("template") not in templates:
                raise fail(entry, f"{etype}: unknown template {item.get('template')!r}")
            rule_id = f"{etype}.{item['id']}"
            if any(n.id == rule_id for n in notify):
                raise fail(entry, f"{etype}: notify id {item['id']!r} is used twice")
            notify.append(
                NotifyRule(id=rule_id, to=str(item["to"]), template=str(item["template"]))
            )
        duty = _value(fields["duty"][1]) if "duty" in fields else ""
        events[etype] = EventRule(
            type=etype,
            duty=str(duty),
            standard_wd=days["standard"],
            enhanced_wd=days["enhanced"],
            clock_from=clock_from,
            notify=tuple(notify),
        )
    return RuleSet(version=version, events=events)


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
