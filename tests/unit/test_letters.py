"""The pure parts of letters: the print layout, the date at the top, and when a posted letter
counts as having reached the survivor."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.core.calendar import WorkingDayCalendar
from services.core.letters import LETTER_DELIVERY_WD, deemed_informed_at
from services.core.rendering import address_lines, render, render_letter
from services.core.wording import letter_date

CALENDAR = WorkingDayCalendar()


@pytest.mark.parametrize(
    ("address", "lines"),
    [
        (
            "Sam Example\nFlat 2\n1 Example Road\nZZ99 9ZZ",
            ["Sam Example", "Flat 2", "1 Example Road", "ZZ99 9ZZ"],
        ),
        (
            "Sam Example\r\n 1 Example Road \r\n\r\nZZ99 9ZZ\n",
            ["Sam Example", "1 Example Road", "ZZ99 9ZZ"],
        ),
        (
            "Sam Example, 1 Example Road, Exampleton, ZZ99 9ZZ",
            ["Sam Example", "1 Example Road", "Exampleton", "ZZ99 9ZZ"],
        ),
        # Recorded line by line: a comma inside a line stays there.
        ("Flat 2, 1 Example Road\nZZ99 9ZZ", ["Flat 2, 1 Example Road", "ZZ99 9ZZ"]),
    ],
)
def test_an_address_is_printed_one_part_a_line(address: str, lines: list[str]) -> None:
    assert address_lines(address) == lines


def test_a_letter_is_laid_out_for_a_window_envelope_in_text_and_html() -> None:
    printed = render_letter(
        "A heading",
        "Dear Sam,\n\nFirst line\nsecond line.\n\n\nWith best wishes,",
        "Sam <Example>\nZZ99 9ZZ",
        "18 Tachwedd 2026",
        "cy",
    )
    assert printed.text == (
        "Sam <Example>\nZZ99 9ZZ\n\n18 Tachwedd 2026\n\nA heading\n\n"
        "Dear Sam,\n\nFirst line\nsecond line.\n\n\nWith best wishes,\n"
    )
    html = printed.html
    assert '<html lang="cy">' in html and "<title>A heading</title>" in html
    assert "Sam &lt;Example&gt;<br>\nZZ99 9ZZ" in html
    assert '<p class="date">18 Tachwedd 2026</p>' in html and "<h1>A heading</h1>" in html
    assert "<p>Dear Sam,</p>" in html and "<p>First line<br>\nsecond line.</p>" in html
    assert "http" not in html.replace("<!DOCTYPE html>", "")  # nothing fetched from outside


def test_a_language_tag_that_is_not_ours_is_not_written_into_the_page() -> None:
    printed = render_letter("H", "Dear Sam,", "ZZ99 9ZZ", "1 May 2026", 'en" onload="x')
    assert '<html lang="en">' in printed.html and "onload" not in printed.html


def test_a_notification_on_the_letter_channel_renders_the_letter_files() -> None:
    values = {
        "recipient_name": "Sam",
        "advocate_name": "Alex Morgan",
        "advocate_phone": "+447700900123",
        "hub_name": "the Care Hub",
        "support_line": "you can call 0808 500 2222",
        "due_by_text": "Friday 20 November",
        "event_type": "police.crime_recorded",
    }
    by_task = render("survivor_welcome", "letter_task", "en", values)
    assert by_task == render("survivor_welcome", "letter", "en", values)
    assert by_task.subject == "Your support worker from the Care Hub"
    assert by_task.body.startswith("Dear Sam,") and by_task.body.endswith("The Care Hub")


@pytest.mark.parametrize(
    ("at", "language", "text"),
    [
        (datetime(2026, 11, 18, 11, 0, tzinfo=UTC), "en", "18 November 2026"),
        (datetime(2026, 11, 18, 11, 0, tzinfo=UTC), "cy", "18 Tachwedd 2026"),
        # 23:30 UTC on 30 June is already 1 July in London (BST).
        (datetime(2026, 6, 30, 23, 30, tzinfo=UTC), "en", "1 July 2026"),
        (datetime(2026, 6, 30, 23, 30, tzinfo=UTC), "fr", "1 July 2026"),
    ],
)
def test_the_date_at_the_top_of_a_letter(at: datetime, language: str, text: str) -> None:
    assert letter_date(at, language) == text


@pytest.mark.parametrize(
    ("posted", "informed"),
    [
        # Posted on a Wednesday: the end of Friday.
        (datetime(2026, 11, 18, 15, 0, tzinfo=UTC), datetime(2026, 11, 20, 23, 59, 59, tzinfo=UTC)),
        # On a Friday afternoon: the end of Tuesday (the weekend does not count).
        (datetime(2026, 11, 20, 15, 0, tzinfo=UTC), datetime(2026, 11, 24, 23, 59, 59, tzinfo=UTC)),
        # On Christmas Eve 2026 (Thursday): Christmas and Boxing Day (moved to Monday 28) do
        # not count, so the end of Wednesday 30 December.
        (datetime(2026, 12, 24, 10, 0, tzinfo=UTC), datetime(2026, 12, 30, 23, 59, 59, tzinfo=UTC)),
        # On a Saturday: the end of Tuesday.
        (datetime(2026, 11, 21, 10, 0, tzinfo=UTC), datetime(2026, 11, 24, 23, 59, 59, tzinfo=UTC)),
    ],
)
def test_a_posted_letter_counts_as_read_two_working_days_later(
    posted: datetime, informed: datetime
) -> None:
    assert LETTER_DELIVERY_WD == 2
    assert deemed_informed_at(posted, CALENDAR) == informed
