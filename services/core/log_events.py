"""Every structured log event the code can write, found in the source: its name, its fields and
the modules that write it. `docs/operations.md` lists them (a test keeps the list current):

    python -m services.core.log_events  # prints the table for docs/operations.md
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

LEVELS = frozenset({"debug", "info", "warning", "error", "exception", "critical"})
ROOT = Path(__file__).resolve().parents[1]
START = "<!-- log-events:start -->"
END = "<!-- log-events:end -->"


@dataclass
class LogEvent:
    name: str
    levels: set[str] = field(default_factory=set)
    fields: set[str] = field(default_factory=set)
    modules: set[str] = field(default_factory=set)


def _name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):  # f"notification.{status.value}" -> notification.<…>
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            else:
                parts.append("<…>")
        return "".join(parts)
    return None


def scan(root: Path = ROOT) -> dict[str, LogEvent]:
    found: dict[str, LogEvent] = {}
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in LEVELS
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "log"
                and node.args
            ):
                continue
            name = _name(node.args[0])
            if name is None:
                continue
            event = found.setdefault(name, LogEvent(name))
            event.levels.add("error" if node.func.attr == "exception" else node.func.attr)
            event.fields |= {k.arg for k in node.keywords if k.arg}
            module = path.relative_to(root.parent).with_suffix("").as_posix().replace("/", ".")
            event.modules.add(module)
    return found


def table(events: dict[str, LogEvent]) -> str:
    lines = ["| event | level | fields | written by |", "| --- | --- | --- | --- |"]
    for name in sorted(events):
        e = events[name]
        fields = ", ".join(f"`{f}`" for f in sorted(e.fields)) or "—"
        modules = ", ".join(f"`{mod}`" for mod in sorted(e.modules))
        lines.append(f"| `{name}` | {', '.join(sorted(e.levels))} | {fields} | {modules} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(scan()))
