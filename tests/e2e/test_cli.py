"""The `carehub` command as people and scripts use it: run, ingest, demo, migrate."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

from services.core.db.engine import head_revision
from services.core.embedded_broker import free_port
from tests.conftest import REPO
from tests.e2e.processes import CarehubProcess, base_env
from tests.integration.test_pipeline import CE, arrested, crime_recorded


def carehub(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def last_json(stdout: str) -> dict[str, object]:
    return json.loads(stdout.strip().splitlines()[-1])


def test_run_on_embedded_defaults_serves_and_writes_outbox(
    tmp_path: Path, clock_file: Path
) -> None:
    env = base_env(
        CAREHUB_EMBEDDED_BROKER_PORT=str(free_port()),
        CAREHUB_HTTP_PORT="0",
        CAREHUB_KAFKA_SESSION_TIMEOUT_MS="6000",
        CAREHUB_CLOCK_FILE=str(clock_file),
    )
    proc = CarehubProcess("run", ["run", "--demo-data"], env, tmp_path).start()
    try:
        ready_line = next(
            line for line in proc.output().splitlines() if line.startswith("carehub ready")
        )
        assert f"outbox={tmp_path / 'var' / 'outbox'}" in ready_line
        logs = [json.loads(line) for line in proc.output().splitlines() if line.startswith("{")]
        ready_log = next(entry for entry in logs if entry["event"] == "service.ready")
        assert ready_log["url"] == proc.address and ready_log["level"] == "info"
        info = json.loads((tmp_path / "var" / "run.json").read_text())
        assert info["http"] == proc.address and info["database"] == "sqlite"
        assert info["broker"] == f"127.0.0.1:{env['CAREHUB_EMBEDDED_BROKER_PORT']}"
        assert (tmp_path / "var" / "carehub.db").exists()

        with httpx.Client(base_url=proc.address) as client:
            assert client.get("/readyz").status_code == 200
            response = client.post(
                "/v1/events", json=crime_recorded("01AB1234524", "r1"), headers=CE
            )
            assert response.status_code == 202
        outbox = tmp_path / "var" / "outbox"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(list(outbox.glob("*.json"))) < 2:
            time.sleep(0.1)
        files = [json.loads(p.read_text()) for p in outbox.glob("*.json")]
        # The demo team's supervisor stands in for the survivor who has no advocate yet.
        assert sorted(f["recipient_role"] for f in files) == ["supervisor", "survivor"]

        lines = tmp_path / "events.jsonl"
        event = json.dumps(arrested("01AB1234524", "f1"))
        bad = ["this line is not json", json.dumps({"specversion": "1.0"})]
        lines.write_text("\n".join([event, event, *bad]) + "\n")
        done = carehub(["ingest", str(lines)], env, tmp_path)
        assert done.returncode == 0, done.stderr
        assert last_json(done.stdout) == {
            "accepted": 1,
            "rejected": 2,
            "duplicates": 1,
            "lines": 4,
            "too_long": 0,
        }
    finally:
        code = proc.stop()
    assert code == 0
    assert not (tmp_path / "var" / "run.json").exists()


def test_only_is_refused_on_sqlite(tmp_path: Path) -> None:
    done = carehub(["run", "--only", "rules"], base_env(), tmp_path)
    assert done.returncode != 0
    assert "--only needs PostgreSQL" in done.stderr
    assert "error" in last_json(done.stdout)


def test_ingest_without_a_running_stack_says_so(tmp_path: Path) -> None:
    (tmp_path / "e.jsonl").write_text("{}\n")
    done = carehub(["ingest", "e.jsonl"], base_env(), tmp_path)
    assert done.returncode != 0
    assert "no running carehub found" in done.stderr


def test_demo_tells_the_story_and_exits_zero(tmp_path: Path) -> None:
    done = carehub(["demo"], base_env(), tmp_path, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = last_json(done.stdout)
    assert summary["settled"] is True
    assert summary["by_status"] == {"delivered": 7}
    assert "What was decided and delivered" in done.stderr
    table = done.stderr.split("What was decided and delivered", 1)[1]
    # Late-evening arrest: the survivor's text waits for her safe window the next morning.
    arrest = next(line for line in table.splitlines() if "suspect_arrested.survivor" in line)
    assert "Tue 17 Nov 09:00" in arrest
    # No further action: the advocate is told first; the survivor's detail-free message is held
    # and goes as the fallback at noon on the deadline day; the supervisor was alerted halfway.
    assert "advocate_tell_first" in table and "Wed 18 Nov 10:00" in table
    held = next(line for line in table.splitlines() if "(advocate_first)" in line)
    assert "survivor_get_in_touch" in held and "Thu 19 Nov 12:00" in held
    assert "supervisor_hold_alert" in table
    assert not (tmp_path / "var").exists()  # its own stack, in a temporary directory


def test_migrate_reports_the_revision(pg_url: str, tmp_path: Path) -> None:
    done = carehub(
        ["migrate"], base_env(CAREHUB_DATABASE_URL=pg_url.replace("+asyncpg", "")), tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert last_json(done.stdout) == {"revision": head_revision()}


def test_rules_check_summarises_and_names_the_line_of_a_bad_file(tmp_path: Path) -> None:
    done = carehub(["rules", "check"], base_env(), tmp_path)
    assert done.returncode == 0, done.stderr
    summary = last_json(done.stdout)
    assert summary["event_types"] == 27
    assert "police.no_further_action" in done.stderr
    bad = tmp_path / "rules.yaml"
    packaged = (REPO / "services" / "rules" / "rules.yaml").read_text()
    bad.write_text(packaged.replace("    sensitivity: routine", "    sensitivity: mild", 1))
    line = next(
        n for n, text in enumerate(bad.read_text().splitlines(), 1) if "sensitivity: mild" in text
    )
    failed = carehub(["rules", "check", "--file", str(bad)], base_env(), tmp_path)
    assert failed.returncode == 1
    assert f"line {line}" in failed.stderr and "sensitivity must be one of" in failed.stderr


def test_sms_inspect_prints_one_json_object(tmp_path: Path) -> None:
    done = carehub(["sms", "inspect", "Shwmae Siân, it’s ŵ"], base_env(), tmp_path)
    assert done.returncode == 0, done.stderr
    assert last_json(done.stdout) == {
        "encoding": "UCS-2",
        "characters": 19,
        "segments": 1,
        "sanitised": "Shwmae Siân, it's ŵ",
        "non_gsm": ["â", "ŵ"],
    }


def test_rules_explain_prints_one_json_object_per_decision(tmp_path: Path) -> None:
    examples = REPO / "schemas" / "examples"
    args = ["rules", "explain", "--context", str(examples / "rules-context.json")]
    args += ["--events", str(examples / "rules-events.jsonl"), "--until", "2026-11-20T00:00:00Z"]
    done = carehub(args, base_env(), tmp_path)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert rows[-1]["outcome"] == "fallback_released"
    assert rows[-1]["at"] == "2026-11-19T12:00:00Z"
    assert all(row["rule"].startswith("vc2021.2:") for row in rows)

    broken = tmp_path / "context.json"
    context = json.loads((examples / "rules-context.json").read_text())
    del context["survivors"][0]["channels"]
    broken.write_text(json.dumps(context))
    failed = carehub(
        [
            "rules",
            "explain",
            "--context",
            str(broken),
            "--events",
            str(examples / "rules-events.jsonl"),
        ],
        base_env(),
        tmp_path,
    )
    assert failed.returncode == 2
    assert "/survivors/0" in failed.stderr
