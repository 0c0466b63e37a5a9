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
        etype = key_node.value
        data = yaml.safe_load(yaml.serialize(rule_node)) if rule_node is not None else None
        if not isinstance(data, dict):
            raise fail(rule_node, f"{etype}: must be a mapping")
        extra = set(data) - {"duty", "deadline", "notify"}
        if extra:
            raise fail(rule_node, f"{etype}: unknown field {sorted(extra)[0]!r}")
        if etype not in DOCUMENTED_TYPES:
            raise fail(key_node, f"unknown event type {etype!r}")
        deadline = data.get("deadline")
        if not isinstance(deadline, dict) or set(deadline) - {"standard", "enhanced", "from"}:
            raise fail(rule_node, f"{etype}: deadline needs standard, enhanced and from")
        try:
            standard, enhanced = int(deadline["standard"]), int(deadline["enhanced"])
        except (KeyError, TypeError, ValueError):
            raise fail(rule_node, f"{etype}: deadline standard/enhanced must be numbers") from None
        if deadline.get("from", "event") not in CLOCK_STARTS:
            raise fail(rule_node, f"{etype}: deadline 'from' must be event or receipt")
        notify: list[NotifyRule] = []
        for item in data.get("notify") or []:
            if not isinstance(item, dict) or set(item) - {"id", "to", "template"}:
                raise fail(rule_node, f"{etype}: notify entries take id, to and template")
            if item.get("to") not in RECIPIENTS:
                raise fail(rule_node, f"{etype}: notify 'to' must be survivor or advocate")
            if item.get("template") not in templates:
                raise fail(rule_node, f"{etype}: unknown template {item.get('template')!r}")
            notify.append(
                NotifyRule(
                    id=f"{etype}.{item['id']}",
                    to=item["to"],
                    template=item["template"],
                )
            )
        events[etype] = EventRule(
            type=etype,
            duty=str(data.get("duty", "")),
            standard_wd=standard,
            enhanced_wd=enhanced,
            clock_from=deadline.get("from", "event"),
            notify=tuple(notify),
        )
    return RuleSet(version=version, events=events)


# Every event type of victims-code.md; the ingest work adds a data schema for each.
DOCUMENTED_TYPES = frozenset(
    ["police.crime_recorded", "police.decision_not_to_investigate", "police.suspect_arrested", "police.suspect_interviewed", "police.suspect_bailed", "police.suspect_released_under_investigation", "police.bail_conditions_changed", "police.suspect_charged", "police.out_of_court_disposal", "police.no_further_action", "police.vrr_outcome", "cps.vrr_outcome", "cps.charging_decision", "cps.case_discontinued", "cps.charges_altered", "court.hearing_scheduled", "court.hearing_changed", "court.bail_decision", "court.warrant_issued", "court.witness_required", "court.verdict", "court.sentence", "court.appeal", "probation.victim_contact_scheme_eligible", "probation.release_planned", "probation.released", "probation.recalled"]
)
