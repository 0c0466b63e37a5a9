"""The notifier's pure parts: provider error mapping, retry back-off, wording, keywords."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from twilio.base.exceptions import TwilioRestException

from services.core.settings import Settings
from services.core.wording import due_text, words
from services.notifier.channels.base import PermanentFailure, TemporaryFailure
from services.notifier.channels.twilio import _failure, status_callback_url
from services.notifier.delivery import retry_delay
from services.notifier.providers import REPLIES, _keyword


def error(status: int, code: int | None) -> TwilioRestException:
    return TwilioRestException(status, "https://api.twilio.com/x", msg="m", code=code)


@pytest.mark.parametrize(
    ("status", "code", "kind", "ours"),
    [
        (400, 21211, PermanentFailure, "invalid_number"),
        (400, 21610, PermanentFailure, "unsubscribed"),
        (400, 21614, PermanentFailure, "not_a_mobile"),
        (400, 21999, PermanentFailure, "provider_rejected"),
        (429, 20429, TemporaryFailure, "rate_limited"),
        (400, 20429, TemporaryFailure, "rate_limited"),
        (503, 20503, TemporaryFailure, "provider_unavailable"),
        (500, None, TemporaryFailure, "provider_unavailable"),
        (401, 20003, TemporaryFailure, "provider_auth"),
    ],
)
def test_twilio_errors_map_to_permanent_or_temporary(
    status: int, code: int | None, kind: type, ours: str
) -> None:
    failure = _failure(error(status, code))
    assert isinstance(failure, kind)
    assert failure.code == ours
    assert failure.provider_status == str(status)
    assert failure.provider_code == (str(code) if code is not None else None)


def test_the_status_callback_carries_the_notification_id() -> None:
    url = status_callback_url("https://hub.example.org/", "abc-123")
    assert url == "https://hub.example.org/v1/providers/twilio/status?nid=abc-123"


def test_durable_retries_back_off_exponentially_with_jitter_up_to_the_cap() -> None:
    settings = Settings(retry_initial_s=30, retry_max_s=900)
    for attempt, base in ((1, 30), (2, 60), (3, 120), (6, 900), (20, 900)):
        delays = [retry_delay(settings, attempt) for _ in range(200)]
        assert all(base / 2 <= d <= base for d in delays)
        assert len(set(delays)) > 1  # jitter: processes retrying together spread out


def test_dates_are_written_in_the_message_language_in_london_time() -> None:
    late_utc = datetime(2026, 11, 20, 23, 59, 59, tzinfo=UTC)
    assert due_text(late_utc, "en") == "Friday 20 November"
    assert due_text(late_utc, "cy") == "Dydd Gwener 20 Tachwedd"
    summer = datetime(2026, 7, 1, 23, 30, tzinfo=UTC)  # already 2 July in London (BST)
    assert due_text(summer, "en", with_time=True) == "Thursday 2 July at 00:30"
    assert due_text(None, "cy") == "cyn bo hir"
    assert due_text(late_utc, "fr") == "Friday 20 November"  # unknown: English


def test_every_language_has_every_word() -> None:
    assert set(words("cy")) == set(words("en"))
    assert words("xx") == words("en")


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ("STOP", "stop"),
        (" stop. ", "stop"),
        ("Unsubscribe", "stop"),
        ("stopio", "stop"),
        ("START", "start"),
        ("yes", "start"),
        ("help", "help"),
        ("please stop texting me at work", None),  # a sentence is read by a person
        ("", None),
    ],
)
def test_keywords_are_whole_messages(body: str, kind: str | None) -> None:
    assert _keyword(body) == kind


def test_automatic_replies_carry_no_case_detail_and_the_safety_reply_says_999() -> None:
    assert "999" in REPLIES["safety"] and "not checked at all times" in REPLIES["safety"]
    for reply in REPLIES.values():
        for word in ("police", "court", "rape", "case", "crime", "offence"):
            assert word not in reply.lower()
