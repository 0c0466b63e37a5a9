"""Settings, the records on our own topics, log redaction and the Protected column types."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from sqlalchemy import Column, Integer, MetaData, Table, create_engine, insert, select, text

from services.core.db.protected import Protected, ProtectedBytes, ProtectedJSON
from services.core.logs import PERSONAL_FIELDS, configure_logging, redact_personal_fields
from services.core.records import BadRecord, CaseEventRef, NotificationDue
from services.core.settings import (
    ConfigurationError,
    EmailChannel,
    Settings,
    SmsChannel,
    load_settings,
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CAREHUB_ variable from the shell leaks into these tests."""
    for name in list(os.environ):
        if name.startswith("CAREHUB_"):
            monkeypatch.delenv(name)


# -- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "resolved"),
    [
        (
            "postgresql://carehub@db.example.org:5432/carehub",
            "postgresql+asyncpg://carehub@db.example.org:5432/carehub",
        ),
        (
            "postgres://carehub@db.example.org/carehub",
            "postgresql+asyncpg://carehub@db.example.org/carehub",
        ),
        (
            "postgresql+asyncpg://carehub@db.example.org/carehub",
            "postgresql+asyncpg://carehub@db.example.org/carehub",
        ),
        ("sqlite:////srv/carehub/carehub.db", "sqlite+aiosqlite:////srv/carehub/carehub.db"),
    ],
)
def test_database_url_is_mapped_to_an_async_driver(given: str, resolved: str) -> None:
    assert Settings(database_url=given).resolved_database_url == resolved


def test_database_url_defaults_to_sqlite_under_var_dir(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var")
    expected = (tmp_path / "var" / "carehub.db").resolve()
    assert settings.resolved_database_url == f"sqlite+aiosqlite:///{expected}"
    assert settings.is_sqlite


def test_a_blank_database_url_means_the_default(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path, database_url="")
    assert settings.database_url is None
    assert settings.resolved_database_url.startswith("sqlite+aiosqlite:///")


def test_postgres_is_not_sqlite() -> None:
    assert not Settings(database_url="postgresql://db.example.org/carehub").is_sqlite


def test_the_database_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAREHUB_DATABASE_URL", "postgres://db.example.org/carehub")
    resolved = load_settings().resolved_database_url
    assert resolved == "postgresql+asyncpg://db.example.org/carehub"


def test_the_defaults_are_the_embedded_ones() -> None:
    settings = load_settings()
    assert settings.embedded_broker
    assert settings.bootstrap_servers == "127.0.0.1:19092"
    assert (settings.http_host, settings.http_port) == ("127.0.0.1", 8000)
    assert settings.sms_channel is SmsChannel.OUTBOX
    assert settings.email_channel is EmailChannel.OUTBOX
    assert settings.resolved_outbox_dir == Path("var") / "outbox"


def test_the_outbox_channels_pass_the_channel_check() -> None:
    Settings().check_channels()


def test_twilio_without_its_settings_names_every_missing_one() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings(sms_channel=SmsChannel.TWILIO).check_channels()
    for name in (
        "CAREHUB_TWILIO_ACCOUNT_SID",
        "CAREHUB_TWILIO_AUTH_TOKEN",
        "CAREHUB_TWILIO_MESSAGING_SERVICE_SID or CAREHUB_TWILIO_FROM",
        "CAREHUB_PUBLIC_BASE_URL",
    ):
        assert name in str(caught.value)


def test_twilio_with_its_settings_passes() -> None:
    Settings(
        sms_channel=SmsChannel.TWILIO,
        twilio_account_sid="AC" + "0" * 32,
        twilio_auth_token="secret",
        twilio_from="+447700900001",
        public_base_url="https://hub.example.org",
    ).check_channels()


def test_smtp_without_host_and_sender_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="CAREHUB_SMTP_HOST, CAREHUB_SMTP_FROM"):
        Settings(email_channel=EmailChannel.SMTP).check_channels()


def test_the_allowlist_applies_outside_production_only() -> None:
    listed = " +447700900001, +447700900002 ,"
    assert Settings(sms_allowlist=listed).allowlist == {"+447700900001", "+447700900002"}
    assert Settings(sms_allowlist="").allowlist == frozenset()
    assert Settings(env="production", sms_allowlist=listed).allowlist is None


def test_a_bad_port_in_the_environment_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAREHUB_HTTP_PORT", "notaport")
    with pytest.raises(ConfigurationError, match="http_port"):
        load_settings()


def test_an_out_of_range_port_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAREHUB_HTTP_PORT", "65536")
    with pytest.raises(ConfigurationError, match="http_port"):
        load_settings()


def test_an_unknown_channel_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAREHUB_SMS_CHANNEL", "pigeon")
    with pytest.raises(ConfigurationError, match="sms_channel"):
        load_settings()


def test_a_bad_override_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="retention_days"):
        load_settings(retention_days=0)


def test_overrides_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAREHUB_HTTP_PORT", "8100")
    assert load_settings().http_port == 8100
    assert load_settings(http_port=0).http_port == 0


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValueError):
        settings.http_port = 9000  # type: ignore[misc]


# -- records on our topics --------------------------------------------------------------------

REF = CaseEventRef(
    case_event_id=42,
    source="police/01",
    id="evt-0001",
    type="police.suspect_arrested",
    subject="01AB1234524",
)
DUE = NotificationDue(notification_id="6f1d8a52-0000-5000-8000-000000000001", channel="sms")


def test_case_event_ref_round_trips_through_bytes() -> None:
    assert CaseEventRef.decode(REF.encode()) == REF


def test_case_event_ref_decodes_from_text_and_from_a_dict() -> None:
    assert CaseEventRef.decode(REF.encode().decode()) == REF
    assert CaseEventRef.decode(json.loads(REF.encode())) == REF


def test_case_event_ref_carries_references_only() -> None:
    assert set(json.loads(REF.encode())) == {"case_event_id", "source", "id", "type", "subject"}


def test_notification_due_round_trips() -> None:
    assert NotificationDue.decode(DUE.encode()) == DUE
    assert NotificationDue.decode(DUE.encode().decode()) == DUE
    assert set(json.loads(DUE.encode())) == {"notification_id", "channel", "recipient"}


JUNK: list[Any] = [
    b"",
    b"not json",
    b"\xff\xfe\x00",
    b"[1, 2, 3]",
    b'"a string"',
    b"null",
    "{",
]


@pytest.mark.parametrize("raw", JUNK)
def test_case_event_ref_rejects_junk(raw: Any) -> None:
    with pytest.raises(BadRecord):
        CaseEventRef.decode(raw)


@pytest.mark.parametrize("raw", JUNK)
def test_notification_due_rejects_junk(raw: Any) -> None:
    with pytest.raises(BadRecord):
        NotificationDue.decode(raw)


@pytest.mark.parametrize(
    "value",
    [
        {},
        {"case_event_id": 1, "source": "police/01", "id": "e", "type": "t"},
        {"case_event_id": "abc", "source": "s", "id": "e", "type": "t", "subject": "u"},
        {"case_event_id": None, "source": "s", "id": "e", "type": "t", "subject": "u"},
        {"case_event_id": [1], "source": "s", "id": "e", "type": "t", "subject": "u"},
    ],
)
def test_case_event_ref_rejects_missing_or_bad_fields(value: dict[str, Any]) -> None:
    with pytest.raises(BadRecord):
        CaseEventRef.decode(json.dumps(value))


@pytest.mark.parametrize("value", [{}, {"notification_id": "n"}, {"channel": "sms"}])
def test_notification_due_rejects_missing_fields(value: dict[str, Any]) -> None:
    with pytest.raises(BadRecord):
        NotificationDue.decode(json.dumps(value))


@pytest.mark.parametrize(
    ("record", "value"),
    [
        (
            CaseEventRef,
            {"case_event_id": 1, "source": None, "id": None, "type": None, "subject": None},
        ),
        (NotificationDue, {"notification_id": None, "channel": None}),
    ],
    ids=["case-event-ref", "notification-due"],
)
def test_a_null_reference_field_is_a_bad_record(record: Any, value: dict[str, Any]) -> None:
    with pytest.raises(BadRecord):
        record.decode(json.dumps(value))


def test_bad_record_messages_carry_no_payload() -> None:
    secret = "+447700900321"
    with pytest.raises(BadRecord) as info:
        CaseEventRef.decode(json.dumps({"phone": secret}))
    assert secret not in str(info.value)


# -- log redaction ----------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["phone", "email", "body", "to", "name", "address", "data"])
def test_the_redaction_processor_replaces_personal_values(field: str) -> None:
    event = {"event": "notification.sent", field: "riley@example.org +447700900123"}
    out = redact_personal_fields(None, "info", event)
    assert out[field] == "[redacted]"
    assert out["event"] == "notification.sent"


def test_the_redaction_processor_keeps_ids_and_codes() -> None:
    event = {"event": "notification.sent", "notification_id": "n-1", "status": "sent"}
    assert redact_personal_fields(None, "info", dict(event)) == event


def test_phone_email_and_body_are_personal_fields() -> None:
    assert {"phone", "email", "body"} <= PERSONAL_FIELDS


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    saved_config = structlog.get_config()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    try:
        yield stream
    finally:
        structlog.configure(**saved_config)
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        logging.getLogger("uvicorn.access").disabled = False


def test_a_configured_logger_writes_no_phone_email_or_body(captured_logs: io.StringIO) -> None:
    log = structlog.get_logger(component="test")
    log.info(
        "notification.sent",
        notification_id="n-1",
        phone="+447700900123",
        email="riley@example.org",
        body="Hello Riley, there is an update for you.",
    )
    output = captured_logs.getvalue()
    line = json.loads(output.strip().splitlines()[-1])
    assert line["event"] == "notification.sent"
    assert line["notification_id"] == "n-1"
    assert line["phone"] == line["email"] == line["body"] == "[redacted]"
    for value in ("+447700900123", "riley@example.org", "Hello Riley"):
        assert value not in output


# -- Protected column types -------------------------------------------------------------------


@pytest.fixture
def protected_table() -> Iterator[tuple[Any, Table]]:
    engine = create_engine("sqlite://")
    metadata = MetaData()
    table = Table(
        "people",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("phone", Protected()),
        Column("payload", ProtectedJSON()),
        Column("raw", ProtectedBytes()),
    )
    metadata.create_all(engine)
    try:
        yield engine, table
    finally:
        engine.dispose()


def test_protected_values_round_trip_through_sqlite(protected_table: tuple[Any, Table]) -> None:
    engine, table = protected_table
    payload = {"name": "Riley Éxample", "phone": "+447700900123", "flags": [1, True, None]}
    raw = b"\x00\xffraw upstream record riley@example.org"
    with engine.begin() as conn:
        conn.execute(insert(table).values(id=1, phone="+447700900123", payload=payload, raw=raw))
    with engine.connect() as conn:
        row = conn.execute(select(table).where(table.c.id == 1)).one()
    assert row.phone == "+447700900123"
    assert row.payload == payload
    assert row.raw == raw


def test_protected_values_are_stored_as_bytes(protected_table: tuple[Any, Table]) -> None:
    engine, table = protected_table
    with engine.begin() as conn:
        conn.execute(insert(table).values(id=1, phone="Siân", payload={"a": 1}, raw=b"x"))
    with engine.connect() as conn:
        kinds = conn.execute(
            text("SELECT typeof(phone), typeof(payload), typeof(raw) FROM people")
        ).one()
    assert tuple(kinds) == ("blob", "blob", "blob")


def test_protected_none_stays_none(protected_table: tuple[Any, Table]) -> None:
    engine, table = protected_table
    with engine.begin() as conn:
        conn.execute(insert(table).values(id=1, phone=None, payload=None, raw=None))
    with engine.connect() as conn:
        row = conn.execute(select(table)).one()
    assert (row.phone, row.payload, row.raw) == (None, None, None)


def test_protected_json_keeps_non_ascii_text(protected_table: tuple[Any, Table]) -> None:
    engine, table = protected_table
    payload = {"name": "Siân Example", "language": "cy"}
    with engine.begin() as conn:
        conn.execute(insert(table).values(id=1, payload=payload))
    with engine.connect() as conn:
        assert conn.execute(select(table.c.payload)).scalar_one() == payload


def test_an_empty_secret_is_not_a_key() -> None:
    from services.core.settings import load_settings

    settings = load_settings(feed_secret_police="", events_secret="  ", keys="")
    assert settings.feed_secret_police is None
    assert settings.events_secret is None and settings.keys is None
    assert load_settings(feed_secret_cps="s3cret").feed_secret_cps is not None


def test_how_much_a_fetch_gathers_reaches_every_consumer(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.core.kafka import batch_subscriber_options

    assert batch_subscriber_options(load_settings(), "rules")["fetch_min_bytes"] == 1
    monkeypatch.setenv("CAREHUB_KAFKA_FETCH_MIN_BYTES", "16384")
    options = batch_subscriber_options(load_settings(), "rules")
    assert (options["fetch_min_bytes"], options["fetch_max_wait_ms"]) == (16384, 50)
    monkeypatch.setenv("CAREHUB_KAFKA_FETCH_MIN_BYTES", "0")
    with pytest.raises(ConfigurationError, match="kafka_fetch_min_bytes"):
        load_settings()
