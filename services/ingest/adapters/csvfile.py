"""Streaming a CSV batch drop into records, one at a time, in bounded memory.

The first record is the header; each later record becomes a row ``{column: cell}``. A record is
normally one line; a quoted cell may hold line breaks, so lines are joined while a quote is open.
A record that cannot be read (an unterminated quote, a wrong number of cells, more than the size
limit) is reported against its first line and the lines after it are read again on their own,
so one stray quote never swallows the rows behind it: every line ends up in a row or an error.
"""

from __future__ import annotations

import csv
from collections import deque
from collections.abc import Iterable, Iterator

from services.core.cloudevents import FieldError
from services.ingest.adapters.native import AdapterError

__all__ = ["csv_rows"]

Row = dict[str, str]


def _size(line: str) -> int:
    return len(line.encode("utf-8", "surrogatepass"))


class _Lines:
    """Numbered lines, with a way to put lines back to be read again."""

    def __init__(self, lines: Iterable[str]) -> None:
        self._source = enumerate(lines, start=1)
        self._again: deque[tuple[int, str]] = deque()

    def next(self) -> tuple[int, str] | None:
        if self._again:
            return self._again.popleft()
        return next(self._source, None)

    def put_back(self, taken: list[tuple[int, str]]) -> None:
        self._again.extendleft(reversed(taken))


def _cells(texts: list[str]) -> list[str] | None:
    """The cells of exactly one CSV record, or None if the text is not one."""
    reader = csv.reader(texts, strict=True)
    try:
        cells = next(reader, None)
        if next(reader, None) is not None:
            return None
    except csv.Error:
        return None
    return cells


def _records(lines: _Lines, limit: int) -> Iterator[tuple[int, list[str] | AdapterError, str]]:
    """(first line, the cells of one record or why it cannot be read, the record's text)."""
    while (first := lines.next()) is not None:
        start, text = first
        taken = [first]
        size = _size(text)
        quotes = text.count('"')
        while quotes % 2 and size <= limit and (following := lines.next()) is not None:
            taken.append(following)
            size += _size(following[1])
            quotes += following[1].count('"')
        if size > limit:
            lines.put_back(taken[1:])
            problem = FieldError("", f"record is larger than {limit} bytes")
            yield start, AdapterError("oversized", [problem]), ""
            continue
        texts = [t for _, t in taken]
        cells = None if quotes % 2 else _cells(texts)
        if cells is None:
            # Only the first line is given up on: the others are read again as records.
            lines.put_back(taken[1:])
            problem = FieldError("", "is not a CSV record (check its quotes)")
            yield start, AdapterError("malformed_csv", [problem]), text
            continue
        yield start, cells, "".join(texts)


def csv_rows(
    lines: Iterable[str], limit: int
) -> Iterator[tuple[int, Row | AdapterError, str | None]]:
    """Yield (first line number, row or error, original) for every record after the header.

    ``original`` is the header line and the record's lines, for keeping a rejected record as it
    came (None for an oversized record). Lines should keep their line endings (a text file
    iterated as it is, opened with ``newline=""``). Blank lines are skipped. A header that
    cannot be used makes every later record an error, so nothing in the file is silently dropped.
    """
    header: list[str] | None = None
    header_text = ""
    header_error: AdapterError | None = None
    for line, cells, text in _records(_Lines(lines), limit):
        if cells == [] or (isinstance(cells, list) and len(cells) == 1 and not cells[0].strip()):
            continue  # a blank line
        if header is None and header_error is None:
            header, header_error = _header(cells)
            header_text = text if text.endswith("\n") or not text else text + "\n"
            if header_error is not None:
                yield line, header_error, text or None
            continue
        original = header_text + text if text else None
        if header is None:
            problem = FieldError("", "the header line of the file is not usable")
            yield line, AdapterError("malformed_csv", [problem]), original
        elif isinstance(cells, AdapterError):
            yield line, cells, original
        elif len(cells) != len(header):
            problem = FieldError("", f"has {len(cells)} cells where the header has {len(header)}")
            yield line, AdapterError("malformed_csv", [problem]), original
        else:
            yield line, dict(zip(header, cells, strict=True)), original


def _header(cells: list[str] | AdapterError) -> tuple[list[str] | None, AdapterError | None]:
    if isinstance(cells, AdapterError):
        return None, cells
    names = [c.strip() for c in cells]
    if names:
        names[0] = names[0].removeprefix("\ufeff").strip()
    if not all(names):
        return None, AdapterError("malformed_csv", [FieldError("", "a header cell is empty")])
    if len(set(names)) != len(names):
        return None, AdapterError("malformed_csv", [FieldError("", "a header name is repeated")])
    return names, None
