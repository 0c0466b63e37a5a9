"""The injectable clock.

Nothing in carehub reads the time directly: it asks a ``Clock``. Production uses ``SystemClock``;
unit tests use ``FixedClock``; tests that drive another process (``carehub run``) point it at a
clock file with ``FileClock`` and move its time from outside with ``write_clock_file``.

The clock file holds one ISO-8601 instant with an offset or ``Z``, optionally followed by
whitespace and the word ``ticking``::

    2026-11-20T10:00:00Z            # frozen at that instant
    2026-11-20T10:00:00Z ticking    # that instant when the file was written, then real time
"""

from __future__ import annotations

import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple, Protocol, runtime_checkable

__all__ = [
    "Clock",
    "ClockFileError",
    "FileClock",
    "FixedClock",
    "SystemClock",
    "clock_from_settings",
    "write_clock_file",
]


@runtime_checkable
class Clock(Protocol):
    """Something that tells the current instant."""

    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        ...


class ClockFileError(RuntimeError):
    """The clock file is missing or malformed; the message names the path and the problem."""


def _require_aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"a timezone-aware datetime is required, got naive {at.isoformat()}")
    return at.astimezone(UTC)


class SystemClock:
    """The real time."""

    def now(self) -> datetime:
        """The system's current instant in UTC."""
        return datetime.now(UTC)

    def __repr__(self) -> str:
        return "SystemClock()"


class FixedClock:
    """A clock that stands still until told otherwise (for unit tests)."""

    def __init__(self, at: datetime) -> None:
        """Stop the clock at ``at`` (aware; ``ValueError`` if naive)."""
        self._at = _require_aware(at)

    def now(self) -> datetime:
        """The instant last set, in UTC."""
        return self._at

    def set(self, at: datetime) -> None:
        """Move the clock to ``at`` (aware; ``ValueError`` if naive), backwards too."""
        self._at = _require_aware(at)

    def advance(self, delta: timedelta) -> None:
        """Move the clock by ``delta`` (negative moves it back)."""
        self._at += delta

    def __repr__(self) -> str:
        return f"FixedClock({self._at.isoformat()})"


class _FileKey(NamedTuple):
    # The inode changes on every atomic replace; mtime alone can repeat within the file system's
    # timestamp granularity, and size and inode catch that.
    dev: int
    ino: int
    mtime_ns: int
    size: int


class _FileTime(NamedTuple):
    at: datetime
    ticking: bool
    mtime_ns: int


def _key(st: os.stat_result) -> _FileKey:
    return _FileKey(st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


class FileClock:
    """The time written in a clock file, so that a test can set the time of another process.

    The file is read lazily and re-read only when it changes (by stat), so ``now()`` in a hot
    loop costs one ``stat``. A missing or malformed file raises ``ClockFileError`` on ``now()``:
    never a silent fall-back to the system time, which would make a test pass for the wrong reason.
    """

    def __init__(self, path: Path) -> None:
        """Follow the clock file at ``path`` (it need not exist yet)."""
        self.path = Path(path)
        self._cached: tuple[_FileKey, _FileTime] | None = None

    def now(self) -> datetime:
        """The file's instant in UTC; if ``ticking``, plus the real time elapsed since its mtime."""
        current = self._read()
        if not current.ticking:
            return current.at
        # Never earlier than the written instant, even if the file's mtime is in the future.
        elapsed_ns = max(0, time.time_ns() - current.mtime_ns)
        return current.at + timedelta(microseconds=elapsed_ns // 1000)

    def _read(self) -> _FileTime:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise ClockFileError(f"clock file {self.path}: does not exist") from None
        except OSError as exc:
            raise ClockFileError(f"clock file {self.path}: cannot stat it: {exc}") from exc
        cached = self._cached
        if cached is not None and cached[0] == _key(st):
            return cached[1]
        try:
            with open(self.path, "rb") as f:
                # Stat the open file, not the path: the file may be replaced between the two, and
                # the key must describe the bytes actually read.
                key = _key(os.fstat(f.fileno()))
                raw = f.read(4096)
        except FileNotFoundError:
            raise ClockFileError(f"clock file {self.path}: does not exist") from None
        except OSError as exc:
            raise ClockFileError(f"clock file {self.path}: cannot read it: {exc}") from exc
        parsed = _parse_clock_file(self.path, raw, key.mtime_ns)
        self._cached = (key, parsed)
        return parsed

    def __repr__(self) -> str:
        return f"FileClock({str(self.path)!r})"


def _parse_clock_file(path: Path, raw: bytes, mtime_ns: int) -> _FileTime:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ClockFileError(f"clock file {path}: not UTF-8 text") from None
    words = text.split()
    example = "expected e.g. '2026-11-20T10:00:00Z' or '2026-11-20T10:00:00Z ticking'"
    if not words:
        raise ClockFileError(f"clock file {path}: empty; {example}")
    if len(words) > 2 or (len(words) == 2 and words[1] != "ticking"):
        raise ClockFileError(f"clock file {path}: unexpected content {text.strip()!r}; {example}")
    try:
        at = datetime.fromisoformat(words[0])
    except ValueError:
        raise ClockFileError(
            f"clock file {path}: {words[0]!r} is not an ISO-8601 instant; {example}"
        ) from None
    if at.tzinfo is None or at.utcoffset() is None:
        raise ClockFileError(
            f"clock file {path}: {words[0]!r} has no UTC offset (add 'Z' or '+01:00'); {example}"
        )
    return _FileTime(at.astimezone(UTC), len(words) == 2, mtime_ns)


def clock_from_settings(clock_file: Path | None) -> Clock:
    """A ``FileClock`` on ``clock_file`` if one is given, else the ``SystemClock``."""
    return FileClock(clock_file) if clock_file is not None else SystemClock()


def write_clock_file(path: Path, at: datetime, ticking: bool = False) -> None:
    """Set the time of every ``FileClock`` on ``path`` to ``at`` (aware), atomically.

    Readers see either the old file or the new one, never a partial write. With ``ticking`` the
    file's mtime is set to the moment of writing, so readers' time runs on from ``at`` from then.
    """
    at = _require_aware(at)
    path = Path(path)
    line = at.isoformat().replace("+00:00", "Z") + (" ticking" if ticking else "") + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(line)
        # An exact, fresh mtime: the anchor of a ticking clock, and a change readers cannot miss
        # even when two writes fall within the file system's timestamp granularity.
        now_ns = time.time_ns()
        os.utime(tmp, ns=(now_ns, now_ns))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
