"""carehub's one settings class: flat `CAREHUB_` names, documented in docs/configuration.md.

Embedded defaults need nothing set: the `tansu` broker as a child process, SQLite under
`./var`, and the outbox channels. Production sets `CAREHUB_KAFKA_BOOTSTRAP` and
`CAREHUB_DATABASE_URL`.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class SmsChannel(StrEnum):
    OUTBOX = "outbox"
    TWILIO = "twilio"


class EmailChannel(StrEnum):
    OUTBOX = "outbox"
    SMTP = "smtp"


class ConfigurationError(RuntimeError):
    """A setting is missing, malformed or asks for something this build cannot do."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CAREHUB_", extra="ignore", frozen=True)

    env: Environment = Environment.DEVELOPMENT
    log_level: str = "INFO"

    # HTTP: every process serves /healthz, /readyz and /metrics here (port 0 picks a free one).
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)

    # Where run.json, the SQLite file and the outbox live by default.
    var_dir: Path = Path("var")

    database_url: str | None = None
    migrate_on_start: bool = True

    kafka_bootstrap: str | None = None
    embedded_broker_port: int = Field(default=19092, ge=1, le=65535)
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1_000)
    kafka_max_records: int = Field(default=500, ge=1)
    kafka_batch_timeout_ms: int = Field(default=100, ge=1)
    kafka_fetch_max_wait_ms: int = Field(default=50, ge=0, le=10_000)
    kafka_fetch_min_bytes: int = Field(default=1, ge=1, le=50 * 1024 * 1024)
    consumer_group_prefix: str = "carehub"
    # How often a process that consumes Kafka samples its groups' lag for /metrics; 0 turns it off.
    lag_sample_s: float = Field(default=15.0, ge=0)

    sms_channel: SmsChannel = SmsChannel.OUTBOX
    email_channel: EmailChannel = EmailChannel.OUTBOX
    outbox_dir: Path | None = None

    clock_file: Path | None = None
    holidays_file: Path | None = None
    rules_file: Path | None = None

    dispatch_interval_ms: int = Field(default=250, ge=10)
    dispatch_batch_size: int = Field(default=500, ge=1)
    # Wake the dispatcher as soon as the rules consumer has committed notifications due now
    # (in one process, or across processes by PostgreSQL's NOTIFY) instead of at its next poll.
    dispatch_wake: bool = True
    # Work recorded in the database but not carried by the broker within this many seconds
    # (an unpublished event, a queued notification nobody sent) is re-driven.
    redrive_after_s: int = Field(default=60, ge=1)
    # An event parked for want of its case (a court event before the police record) is raised
    # to operations after this long.
    parked_alert_after_s: int = Field(default=86_400, ge=1)
    # How often the dispatcher looks for survivors who have heard nothing for too long.
    silence_check_s: int = Field(default=600, ge=1)
    # How often the dispatcher seals new audit rows into the hash chain.
    audit_seal_interval_s: float = Field(default=5.0, gt=0)

    # Ingest consumes the feeds.* topics (police, CPS, court, probation records).
    ingest_feed_topics: bool = True
    max_request_bytes: int = Field(default=1_048_576, ge=1024)
    max_batch_events: int = Field(default=500, ge=1)
    event_time_skew_s: int = Field(default=300, ge=0)

    # Reserved by the design; used by the notifier, ingest and trust work.
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_from: str | None = None
    twilio_base_url: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str | None = None
    public_base_url: str | None = None
    # POST /v1/events (canonical events from any agency) is signed like a feed when this is
    # set; in production it must be, or the route refuses every request.
    events_secret: SecretStr | None = None
    feed_secret_police: SecretStr | None = None
    feed_secret_cps: SecretStr | None = None
    feed_secret_court: SecretStr | None = None
    feed_secret_probation: SecretStr | None = None
    # The keyring JSON itself, or a file holding it (services/core/keys.py says which wins).
    keys: SecretStr | None = None
    keys_file: Path | None = None
    blind_index_key: SecretStr | None = None
    retention_days: int = Field(default=2555, ge=1)
    # Comma-separated E.164 numbers: outside production, only these are ever texted.
    sms_allowlist: str = ""

    # Delivery: providers, retries, rate limits.
    twilio_timeout_s: float = Field(default=10.0, gt=0)
    smtp_security: str = Field(default="starttls", pattern="^(starttls|tls|none)$")
    smtp_timeout_s: float = Field(default=15.0, gt=0)
    email_sender_name: str = "Care Hub"
    # Messages per second per sender (a Twilio number or Messaging Service), held across every
    # notifier process through the database; 0 turns the limit off.
    sms_rate_per_s: float = Field(default=10.0, ge=0)
    # Quick retries inside one attempt (connection errors, 5xx, 429), then durable ones: the
    # notification is rescheduled with exponential back-off and jitter, up to a cap, until the
    # retry window has passed; then it fails and falls back to another channel or the advocate.
    send_quick_retries: int = Field(default=2, ge=0)
    retry_initial_s: float = Field(default=30.0, gt=0)
    retry_max_s: float = Field(default=900.0, gt=0)
    retry_window_s: float = Field(default=14_400.0, gt=0)
    # Notifications sent at once by one notifier process (one recipient's stay in order).
    notifier_concurrency: int = Field(default=16, ge=1)

    # The advocate portal: sessions and sign-in throttling.
    portal_session_idle_s: int = Field(default=1_800, ge=60)
    portal_session_max_s: int = Field(default=43_200, ge=300)
    portal_sign_in_failures: int = Field(default=5, ge=1)
    portal_sign_in_window_s: int = Field(default=900, ge=1)

    @field_validator("database_url")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value or None

    @field_validator(
        "events_secret",
        "feed_secret_police",
        "feed_secret_cps",
        "feed_secret_court",
        "feed_secret_probation",
        "keys",
        "blind_index_key",
        "twilio_auth_token",
        "smtp_password",
        mode="before",
    )
    @classmethod
    def _blank_secret_is_unset(cls, value: object) -> object:
        # `CAREHUB_FEED_SECRET_POLICE=` in an env file means "not set", never "the empty key":
        # an empty HMAC key would accept signatures anyone can make.
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return value

    @property
    def embedded_broker(self) -> bool:
        """True when carehub starts (or expects) its own `tansu` broker."""
        return self.kafka_bootstrap is None

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap or f"127.0.0.1:{self.embedded_broker_port}"

    @property
    def redrive_beat_s(self) -> int:
        """How often the dispatcher re-drives: a quarter of `redrive_after_s`, at least 1 s."""
        return max(1, self.redrive_after_s // 4)

    @property
    def resolved_outbox_dir(self) -> Path:
        return self.outbox_dir if self.outbox_dir is not None else self.var_dir / "outbox"

    @property
    def resolved_database_url(self) -> str:
        """The SQLAlchemy async URL: SQLite under var_dir unless CAREHUB_DATABASE_URL is set."""
        if self.database_url is None:
            return f"sqlite+aiosqlite:///{(self.var_dir / 'carehub.db').resolve()}"
        url = self.database_url
        for plain in ("postgresql://", "postgres://"):
            if url.startswith(plain):
                return "postgresql+asyncpg://" + url[len(plain) :]
        if url.startswith("sqlite:///"):
            return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
        return url

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @property
    def run_file(self) -> Path:
        return self.var_dir / "run.json"

    @property
    def allowlist(self) -> frozenset[str] | None:
        """The numbers that may be texted, or None in production (no list applies)."""
        if self.env is Environment.PRODUCTION:
            return None
        return frozenset(n.strip() for n in self.sms_allowlist.split(",") if n.strip())

    def check_channels(self) -> None:
        """Refuse a channel whose settings are missing, instead of failing at the first send."""
        missing: list[str] = []
        if self.sms_channel is SmsChannel.TWILIO:
            if not self.twilio_account_sid:
                missing.append("CAREHUB_TWILIO_ACCOUNT_SID")
            if self.twilio_auth_token is None:
                missing.append("CAREHUB_TWILIO_AUTH_TOKEN")
            if not (self.twilio_messaging_service_sid or self.twilio_from):
                missing.append("CAREHUB_TWILIO_MESSAGING_SERVICE_SID or CAREHUB_TWILIO_FROM")
            if not self.public_base_url:
                missing.append("CAREHUB_PUBLIC_BASE_URL (Twilio sends delivery receipts there)")
        if self.email_channel is EmailChannel.SMTP:
            if not self.smtp_host:
                missing.append("CAREHUB_SMTP_HOST")
            if not self.smtp_from:
                missing.append("CAREHUB_SMTP_FROM")
        if missing:
            raise ConfigurationError(
                "the chosen channels need settings that are not set: " + ", ".join(missing)
            )


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (tests, `carehub demo`)."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValueError as exc:  # pydantic's ValidationError names the field and the problem
        raise ConfigurationError(str(exc)) from exc
