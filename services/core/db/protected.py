"""The `Protected` column type: the one place every personal field passes through.

For now it stores the UTF-8 bytes of the value as they are (an identity). The trust work
replaces the two methods below with AES-256-GCM under a key id; nothing else changes, because
every personal column in the models is declared with this type and stored as bytes already.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import LargeBinary
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


def _seal(plain: bytes) -> bytes:
    return plain


def _unseal(stored: bytes) -> bytes:
    return stored


class Protected(TypeDecorator[str]):
    """A personal text value (a name, a phone number, an address)."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> bytes | None:
        return None if value is None else _seal(value.encode("utf-8"))

    def process_result_value(self, value: bytes | None, dialect: Dialect) -> str | None:
        return None if value is None else _unseal(bytes(value)).decode("utf-8")


class ProtectedJSON(TypeDecorator[Any]):
    """A JSON document that may carry personal data (an event payload)."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> bytes | None:
        if value is None:
            return None
        return _seal(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())

    def process_result_value(self, value: bytes | None, dialect: Dialect) -> Any:
        return None if value is None else json.loads(_unseal(bytes(value)))


class ProtectedBytes(TypeDecorator[bytes]):
    """Raw bytes that may carry personal data (a rejected upstream record)."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: bytes | None, dialect: Dialect) -> bytes | None:
        return None if value is None else _seal(value)

    def process_result_value(self, value: bytes | None, dialect: Dialect) -> bytes | None:
        return None if value is None else _unseal(bytes(value))
