"""The `Protected` column types: the one place every personal field passes through.

Each value is encrypted in the application with AES-256-GCM before it reaches the database and
decrypted after it comes back, so neither the database, its backups nor a raw dump ever hold it
in the clear. The keys come from the process's keyring (`services/core/keys.py`), never from the
database. Stored format (bytes, in a LargeBinary column):

    offset  size  what
    0       1     format version, 0x01
    1       1     n, the length of the key id (1-32)
    2       n     the key id, ASCII: which key of the keyring encrypted this value
    2+n     12    a random 96-bit nonce, new for every value written
    14+n    …     the AES-256-GCM ciphertext followed by its 16-byte tag

The associated data is the header (bytes 0 to 1+n): the format version and the key id are
authenticated with the value, so neither can be altered without the read failing. The column
name is not bound (a TypeDecorator does not know it), so a value moved to another column or row
still decrypts; what stops that is that only the application writes these columns.

A value is written under the keyring's primary key and read with whichever key its header
names, so keys rotate without a flag day (`carehub keys rotate` rewrites old values). A value
that cannot be read raises `UnreadableValue`, whose message names the key id and the problem,
never the value.
"""

from __future__ import annotations

import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from sqlalchemy import LargeBinary
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from services.core.keys import KEY_ID, Keyring, current_keyring

FORMAT_VERSION = 1
NONCE_BYTES = 12
TAG_BYTES = 16


class UnreadableValue(RuntimeError):
    """A stored protected value that cannot be decrypted (the message never holds the value)."""


def seal(plain: bytes, keyring: Keyring | None = None) -> bytes:
    """Encrypt `plain` under the primary key, in the stored format above."""
    keyring = keyring or current_keyring()
    kid = keyring.primary.encode("ascii")
    header = bytes((FORMAT_VERSION, len(kid))) + kid
    nonce = os.urandom(NONCE_BYTES)
    cipher = keyring.cipher(keyring.primary)
    assert cipher is not None  # the keyring checks that its primary key exists
    return header + nonce + cipher.encrypt(nonce, plain, header)


def stored_key_id(stored: bytes) -> str:
    """The key id in a stored value's header; UnreadableValue if there is no valid header."""
    if len(stored) < 2 or stored[0] != FORMAT_VERSION:
        raise UnreadableValue(
            f"a protected value is not in stored format version {FORMAT_VERSION}: it was not "
            "written by the Protected column types, or it is damaged"
        )
    end = 2 + stored[1]
    kid = stored[2:end].decode("ascii", "replace")
    if not KEY_ID.fullmatch(kid) or len(stored) < end + NONCE_BYTES + TAG_BYTES:
        raise UnreadableValue("a protected value has a damaged header (no valid key id)")
    return kid


def unseal(stored: bytes, keyring: Keyring | None = None) -> bytes:
    """Decrypt a stored value with the key its header names."""
    keyring = keyring or current_keyring()
    kid = stored_key_id(stored)
    cipher = keyring.cipher(kid)
    if cipher is None:
        raise UnreadableValue(
            f"a protected value is under key id {kid!r}, which is not in the keyring "
            f"({keyring.origin}): put that key back (remove a key only after "
            "`carehub keys rotate` has moved every value to the primary)"
        )
    end = 2 + len(kid)
    nonce = stored[end : end + NONCE_BYTES]
    try:
        return cipher.decrypt(nonce, stored[end + NONCE_BYTES :], stored[:end])
    except InvalidTag:
        raise UnreadableValue(
            f"a protected value under key id {kid!r} fails authentication: the keyring's key "
            f"{kid!r} is not the one it was written with, or the stored bytes were altered"
        ) from None


class Protected(TypeDecorator[str]):
    """A personal text value (a name, a phone number, an address)."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> bytes | None:
        return None if value is None else seal(value.encode("utf-8"))

    def process_result_value(self, value: bytes | None, dialect: Dialect) -> str | None:
        return None if value is None else unseal(bytes(value)).decode("utf-8")


class ProtectedJSON(TypeDecorator[Any]):
    """A JSON document that may carry personal data (an event payload)."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> bytes | None:
        if value is None:
            return None
        return seal(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())

    def process_result_value(self, value: bytes | None, dialect: Dialect) -> Any:
        return None if value is None else json.loads(unseal(bytes(value)))


class ProtectedBytes(TypeDecorator[bytes]):
    """Raw bytes that may carry personal data (a rejected upstream record)."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: bytes | None, dialect: Dialect) -> bytes | None:
        return None if value is None else seal(value)

    def process_result_value(self, value: bytes | None, dialect: Dialect) -> bytes | None:
        return None if value is None else unseal(bytes(value))


PROTECTED_TYPES = (Protected, ProtectedJSON, ProtectedBytes)
