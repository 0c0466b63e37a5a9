"""Tests of the injectable clocks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from services.core.clock import (
    Clock,
    ClockFileError,
    FileClock,
    FixedClock,
    SystemClock,
    clock_from_settings,
    write_clock_file,
)

AT = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def test_system_clock_is_aware_utc_and_current() -> None:
    before = datetime.now(UTC)
    now = SystemClock().now()
    assert now.tzinfo is UTC
    assert before <= now <= datetime.now(UTC)


def test_fixed_clock_set_and_advance() -> None:
    clock = FixedClock(datetime(2026, 11, 20, 11, 0, tzinfo=timezone(timedelta(hours=1))))
    assert clock.now() == AT
    assert clock.now().tzinfo is UTC
    clock.advance(timedelta(days=1, seconds=5))
    assert clock.now() == AT + timedelta(days=1, seconds=5)
    clock.set(AT)
    assert clock.now() == AT
    clock.advance(timedelta(hours=-1))
    assert clock.now() == AT - timedelta(hours=1)


def test_fixed_clock_refuses_naive() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        FixedClock(datetime(2026, 11, 20))
    clock = FixedClock(AT)
    with pytest.raises(ValueError, match="timezone-aware"):
        clock.set(datetime(2026, 11, 20))


def test_clocks_satisfy_the_protocol(tmp_path: Path) -> None:
    clocks: list[Clock] = [SystemClock(), FixedClock(AT), FileClock(tmp_path / "clock")]
    for clock in clocks:
        assert isinstance(clock, Clock)


def test_clock_from_settings(tmp_path: Path) -> None:
    assert isinstance(clock_from_settings(None), SystemClock)
    clock = clock_from_settings(tmp_path / "clock")
    assert isinstance(clock, FileClock)
    assert clock.path == tmp_path / "clock"


# -- FileClock -----------------------------------------------------------------------------------


def test_file_clock_frozen(tmp_path: Path) -> None:
    path = tmp_path / "clock"
    path.write_text("2026-11-20T10:00:00Z\n", encoding="utf-8")
    clock = FileClock(path)
    assert clock.now() == AT
    assert clock.now().tzinfo is UTC
    time.sleep(0.02)
    assert clock.now() == AT


def test_file_clock_accepts_offsets(tmp_path: Path) -> None:
    path = tmp_path / "clock"
    path.write_text("2026-06-05T23:30:00+01:00", encoding="utf-8")
    assert FileClock(path).now() == datetime(2026, 6, 5, 22, 30, tzinfo=UTC)


def test_file_clock_ticking_runs_from_the_mtime(tmp_path: Path) -> None:
    path = tmp_path / "clock"
    path.write_text("2026-11-20T10:00:00Z ticking\n", encoding="utf-8")
    written_ns = time.time_ns() - 90 * 1_000_000_000
    os.utime(path, ns=(written_ns, written_ns))  # written 90 seconds ago
    clock = FileClock(path)
    first = clock.now()
    assert AT + timedelta(seconds=90) <= first < AT + timedelta(seconds=95)
    time.sleep(0.05)
    second = clock.now()
    assert second - first >= timedelta(milliseconds=40)


def test_write_clock_file_ticking(tmp_path: Path) -> None:
    path = tmp_path / "clock"
    write_clock_file(path, AT, ticking=True)
    assert path.read_text(encoding="utf-8") == "2026-11-20T10:00:00Z ticking\n"
    now = FileClock(path).now()
    assert AT <= now < AT + timedelta(seconds=5)


def test_file_clock_rereads_on_change(tmp_path: Path) -> None:
    path = tmp_path / "clock"
    write_clock_file(path, AT)
    clock = FileClock(path)
    assert clock.now() == AT
    # Several writes in quick succession: each one must be seen.
    for minutes in range(1, 6):
        write_clock_file(path, AT + timedelta(minutes=minutes))
        assert clock.now() == AT + timedelta(minutes=minutes)
    write_clock_file(path, AT - timedelta(days=1))
    assert clock.now() == AT - timedelta(days=1)


def test_file_clock_does_not_reread_an_unchanged_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "clock"
    write_clock_file(path, AT)
    clock = FileClock(path)
    assert clock.now() == AT
    opened: list[object] = []
    real_open = open

    def counting_open(*args: object, **kwargs: object) -> object:
        opened.append(args[0])
        return real_open(*args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", counting_open)
    for _ in range(100):
        assert clock.now() == AT
    assert opened == []


def test_write_clock_file_normalises_to_utc(tmp_path: Path) -> None:
    path = tmp_path / "clock"
    write_clock_file(path, datetime(2026, 6, 6, 0, 30, tzinfo=timezone(timedelta(hours=1))))
    assert path.read_text(encoding="utf-8") == "2026-06-05T23:30:00Z\n"
    assert [p.name for p in tmp_path.iterdir()] == ["clock"]  # no temp file left behind


def test_write_clock_file_refuses_naive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        write_clock_file(tmp_path / "clock", datetime(2026, 11, 20))
    assert not (tmp_path / "clock").exists()


def test_file_clock_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing"
    with pytest.raises(ClockFileError, match="does not exist") as caught:
        FileClock(path).now()
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, RuntimeError)


def test_file_clock_file_removed_after_reading(tmp_path: Path) -> None:
    path = tmp_path / "clock"
    write_clock_file(path, AT)
    clock = FileClock(path)
    assert clock.now() == AT
    path.unlink()
    with pytest.raises(ClockFileError, match="does not exist"):
        clock.now()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("yesterday", "not an ISO-8601 instant"),
        ("2026-11-20T10:00:00", "no UTC offset"),
        ("2026-11-20", "no UTC offset"),
        ("2026-11-20T10:00:00Z frozen", "unexpected content"),
        ("2026-11-20T10:00:00Z ticking now", "unexpected content"),
    ],
)
def test_file_clock_malformed(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "clock"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ClockFileError, match=problem) as caught:
        FileClock(path).now()
    assert str(path) in str(caught.value)


def test_file_clock_recovers_once_the_file_is_fixed(tmp_path: Path) -> None:
    path = tmp_path / "clock"
    path.write_text("garbage", encoding="utf-8")
    clock = FileClock(path)
    with pytest.raises(ClockFileError):
        clock.now()
    write_clock_file(path, AT)
    assert clock.now() == AT


def test_another_process_sees_the_time_set_from_outside(tmp_path: Path) -> None:
    path = tmp_path / "clock"
    write_clock_file(path, AT)
    script = (
        "import sys, pathlib\n"
        "from services.core.clock import FileClock\n"
        "print(FileClock(pathlib.Path(sys.argv[1])).now().isoformat())\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.strip() == "2026-11-20T10:00:00+00:00"
