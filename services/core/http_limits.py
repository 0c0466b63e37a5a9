"""Reading request bodies with a limit: a body is never buffered past what the route accepts,
however it is sent (a declared length, or a chunked body that never ends)."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from starlette.requests import Request

ASCII_DIGITS = re.compile(r"[0-9]+")


async def read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is longer than `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if ASCII_DIGITS.fullmatch(declared) and int(declared) > limit:
        return None
    buffer = bytearray()
    async for chunk in request.stream():
        buffer += chunk
        if len(buffer) > limit:
            return None
    return bytes(buffer)


async def read_form(
    request: Request, *, limit: int = 64 * 1024, max_fields: int = 100
) -> dict[str, str] | None:
    """An url-encoded form (what a browser posts without files), or None when it is too big,
    has too many fields or is not valid UTF-8. The last of repeated fields wins."""
    body = await read_limited(request, limit)
    if body is None:
        return None
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=False,
            max_num_fields=max_fields,
            errors="strict",
        )
    except (UnicodeDecodeError, ValueError):
        return None
    return dict(pairs)


def is_ascii_number(text: str, *, max_digits: int = 9) -> bool:
    """Plain ASCII digits, not too many: what int() may safely be given from a header or form
    ("²".isdigit() is True, and int("²") raises)."""
    return bool(ASCII_DIGITS.fullmatch(text)) and len(text) <= max_digits
