"""Structured logs: one JSON object per line on stdout, stable dotted event names, ids as fields.

Personal data never goes into a log line. Code logs ids and codes only; `redact_personal_fields`
is the safety net for a field name that should never carry a value here.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# Field names that would carry personal data if anyone ever logged them.
PERSONAL_FIELDS = frozenset(
    {
        "name",
        "full_name",
        "preferred_name",
        "first_name",
        "phone",
        "email",
        "to",
        "address",
        "postal_address",
        "body",
        "subject_line",
        "date_of_birth",
        "data",
        "payload",
        "victims",
    }
)


def redact_personal_fields(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in PERSONAL_FIELDS.intersection(event_dict):
        event_dict[key] = "[redacted]"
    return event_dict


def configure_logging(level: str = "INFO", stream: Any = None) -> None:
    """Route structlog (and stdlib logging, for libraries) to JSON lines on `stream` (stdout)."""
    out = stream or sys.stdout
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_personal_fields,
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(sort_keys=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=structlog.processors.JSONRenderer(),
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.WARNING))
    # uvicorn's access log would carry request paths and client addresses: off.
    logging.getLogger("uvicorn.access").disabled = True


def get_logger(component: str) -> Any:
    # A lazy proxy: it picks up `configure_logging` even when created at import time.
    return structlog.get_logger(component=component)
