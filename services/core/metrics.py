"""Prometheus metrics, served at /metrics by every process."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_INGESTED = Counter(
    "carehub_events_ingested_total", "Case events offered to ingest, by result", ["result"]
)
EVENTS_PROCESSED = Counter(
    "carehub_events_processed_total",
    "Case events the rules consumer finished, by status",
    ["status"],
)
DECISIONS = Counter("carehub_decisions_total", "Rules decisions, by outcome", ["outcome"])
NOTIFICATIONS = Counter(
    "carehub_notifications_total", "Notification state changes, by new status", ["status"]
)
DELIVERY_SECONDS = Histogram(
    "carehub_delivery_seconds", "Time to hand a notification to its channel", ["channel"]
)
SEND_RETRIES = Counter(
    "carehub_send_retries_total",
    "Quick retries of a provider call after a transient failure",
    ["channel"],
)
RECEIPTS = Counter(
    "carehub_provider_receipts_total",
    "Provider delivery receipts, by provider status and what they did",
    ["provider", "status", "effect"],
)
INBOUND = Counter("carehub_inbound_sms_total", "Inbound texts, by what they were", ["kind"])
CONSUMER_BATCH = Histogram(
    "carehub_consumer_batch_size",
    "Records per consumed batch",
    ["consumer"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
PARKED_TOO_LONG = Gauge(
    "carehub_events_parked_too_long",
    "Case events waiting for their case longer than CAREHUB_PARKED_ALERT_AFTER_S",
)
CONSUMER_LAG = Gauge(
    "carehub_consumer_lag_records",
    "Records of the topic its consumer group has not committed yet, summed over the topic's "
    "partitions (sampled every CAREHUB_LAG_SAMPLE_S by each process that consumes it)",
    ["group", "topic"],
)
CONSUMER_LAG_SAMPLED = Gauge(
    "carehub_consumer_lag_sampled_timestamp_seconds",
    "Unix time of this process's last good consumer lag sample (stale when it falls behind)",
)
READY = Gauge("carehub_ready", "1 when this process is ready to serve")
