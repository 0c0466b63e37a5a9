"""docs/templates.md shows every template as it renders now."""

from __future__ import annotations

from services.core.rendering import LANGUAGES, catalogue
from services.core.template_docs import markdown
from tests.conftest import REPO

REGENERATE = (
    "run `carehub templates --markdown > docs/templates.md` (until that command exists: "
    "`.venv/bin/python -c 'from services.core.template_docs import markdown; "
    'print(markdown(), end="")\' > docs/templates.md`)'
)


def test_templates_doc_is_generated_from_the_current_templates() -> None:
    current = (REPO / "docs" / "templates.md").read_text(encoding="utf-8")
    assert current == markdown(), f"docs/templates.md is stale: {REGENERATE}"


def test_the_doc_shows_every_template_channel_and_language() -> None:
    page = markdown()
    for info in catalogue().values():
        assert f"## `{info.name}`\n\nVersion {info.version}," in page
    assert page.count("**English") == page.count("**Cymraeg (Welsh)")
    assert "file yet)" not in page  # no language fell back to English
    assert len(LANGUAGES) == 2
    assert "needs review by a professional Welsh translator before\nproduction use" in page


def test_every_sms_in_the_doc_has_its_encoding_and_segments() -> None:
    page = markdown()
    sms_blocks = page.count("### SMS") * len(LANGUAGES)
    shown = page.count("*GSM-7, ") + page.count("*UCS-2, ")
    assert shown >= sms_blocks
