"""The docs stay true to the code."""

from __future__ import annotations

import re

from services.core.settings import Settings
from tests.conftest import REPO


def test_configuration_doc_lists_every_setting_and_no_other() -> None:
    text = (REPO / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"^\| `(CAREHUB_[A-Z0-9_]+)`", text, re.MULTILINE))
    in_code = {f"CAREHUB_{name.upper()}" for name in Settings.model_fields}
    assert documented == in_code


def test_readme_names_the_two_commands_and_ci_calls_make_test() -> None:
    readme = (REPO / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_rules_doc_is_generated_from_the_current_rules_file() -> None:
    from services.rules.describe import markdown
    from services.rules.ruleset import load_rules

    current = (REPO / "docs" / "rules.md").read_text()
    assert current == markdown(load_rules()), (
        "docs/rules.md is stale: run `carehub rules check --markdown > docs/rules.md`"
    )


def test_operations_doc_lists_every_log_event_and_metric() -> None:
    from prometheus_client import REGISTRY

    import services.core.gauges  # noqa: F401 - registers its gauges
    import services.core.metrics  # noqa: F401
    from services.core.log_events import END, START, scan, table

    text = (REPO / "docs" / "operations.md").read_text()
    listed = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert listed == table(scan()), (
        "docs/operations.md's log events are stale: paste `python -m services.core.log_events`"
    )
    metrics = {m.name for m in REGISTRY.collect() if m.name.startswith("carehub_")}
    missing = [name for name in metrics if f"`{name}" not in text]
    assert missing == []
