"""`carehub bench pipeline`, tiny: events produced to `feeds.police` go through `carehub run` on
PostgreSQL and the embedded broker to the outbox, and the figures are the last line, as JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import PG_ADMIN_DSN, REPO


def bench_pipeline(*options: str) -> dict[str, Any]:
    """Run `carehub bench pipeline` with these options; its figures (the last line)."""
    return run_bench("pipeline", *options, "--timeout", "120")


def run_bench(*arguments: str) -> dict[str, Any]:
    """Run `carehub bench ...` on the test PostgreSQL server; its figures (the last line)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAREHUB_")}
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "bench", *arguments, "--pg-admin", PG_ADMIN_DSN],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def test_bench_pipeline_hands_every_notification_over_and_prints_its_figures() -> None:
    figures = bench_pipeline("--events", "40", "--cases", "8")
    assert figures["complete"] is True
    # Half the survivors want every update (their text and their ISVA's e-mail), half only key
    # stages (the ISVA's e-mail alone): one and a half notifications an event.
    assert figures["notifications"] == figures["expected_notifications"] == 60
    assert figures["events_per_s"] > 0
    assert figures["p50_ms"] <= figures["p95_ms"] <= figures["p99_ms"]
    assert figures["baseline"]["events"] == 40
    assert figures["ratio_to_baseline"] > 0
    assert figures["rss_mb"]["carehub_all"] > 0
    # Each handed-over notification's latency, hop by hop: the hops follow one another, so
    # none is negative and their medians add up to about the end-to-end one.
    hops = figures["hops_ms"]
    assert list(hops) == ["ingest", "rules", "dispatcher", "notifier_claim", "notifier_send"]
    assert all(0 <= hop["p50_ms"] <= hop["p99_ms"] for hop in hops.values())
    assert sum(hop["p50_ms"] for hop in hops.values()) <= figures["p99_ms"] + 1


def test_bench_pipeline_split_with_two_notifiers_hands_every_notification_over_once() -> None:
    """Two notifier processes share `notifications.due` (two partitions each): every
    notification is handed over, none twice (the outbox journal's lines), and each process's
    figures are reported apart."""
    figures = bench_pipeline(
        "--events", "80", "--cases", "16", "--split", "--notifiers", "2", "--no-baseline",
        "--setting", "carehub_kafka_fetch_min_bytes=4096",
    )  # fmt: skip
    assert figures["complete"] is True and figures["notifiers"] == 2
    assert figures["settings"] == {"CAREHUB_KAFKA_FETCH_MIN_BYTES": "4096"}
    assert figures["notifications"] == figures["expected_notifications"] == 120
    assert figures["handovers"] == 120
    assert figures["cpu_s"]["carehub_notifier"] > 0 and figures["cpu_s"]["carehub_notifier2"] > 0
    assert set(figures["rss_mb"]) >= {"carehub_notifier", "carehub_notifier2"}


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("KAFKA_FETCH_MIN_BYTES=4096", "is not CAREHUB_NAME=VALUE"),
        ("CAREHUB_KAFKA_FETCH_MIN_BYTES", "is not CAREHUB_NAME=VALUE"),
        ("CAREHUB_DATABASE_URL=postgresql://elsewhere.example.org/x", "the bench sets"),
    ],
)
def test_bench_pipeline_refuses_a_setting_it_cannot_pass(setting: str, named: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "bench", "pipeline", "--setting", setting],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert named in " ".join(done.stderr.replace("│", " ").split())  # as the box wraps it
