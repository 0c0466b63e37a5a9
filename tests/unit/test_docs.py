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
