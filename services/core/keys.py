"""Key material for field encryption and the blind index: one keyring per process.

Where the keyring comes from, in this order (never from the database):

1. `CAREHUB_KEYS` (the keyring JSON itself, for a secret passed as an environment variable) or
   `CAREHUB_KEYS_FILE` (a path to it, for a mounted secret); setting both is an error.
2. Outside production only, when neither is set: a development keyring at
   `$CAREHUB_VAR_DIR/keys.json`, created with mode 0600 on first use and reused after, so
   `make run`, the tests and several processes sharing a var dir all agree.
3. In production (`CAREHUB_ENV=production`) with neither set, the process refuses to start.

The keyring JSON (`carehub keys generate` prints one):

    {"primary": "k2",
     "keys": {"k1": "<base64 of 32 random bytes>", "k2": "<base64 of 32 random bytes>"},
     "blind_index_key": "<base64 of at least 32 random bytes>"}

`primary` names the key every new value is encrypted with; every key a stored value names must
stay in `keys` until `carehub keys rotate` has moved everything to the primary. A key id is 1 to
32 characters of `A-Z a-z 0-9 . _ -`; it is stored in the clear beside each value.
`CAREHUB_BLIND_INDEX_KEY` (base64) overrides the file's `blind_index_key`; changing that key
needs `carehub keys rotate` too, which rebuilds the index.

`configure_keys(settings)` installs the process's keyring (`running_stack` and every `carehub`
command that opens the database call it); `current_keyring()` is what the `Protected` column
types read. Nothing here ever logs key material.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.core.logs import get_logger
from services.core.settings import ConfigurationError, Environment, Settings

log = get_logger("keys")

KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,32}")
KEY_BYTES = 32  # AES-256
MIN_BLIND_INDEX_KEY_BYTES = 32
DEV_KEYRING = "keys.json"


class KeysNotConfigured(ConfigurationError):
    """A protected value was read or written before `configure_keys` ran in this process."""


class Keyring:
    """The keys of one process: encryption keys by id, the primary one, the blind index key."""

    __slots__ = ("primary", "key_ids", "origin", "_ciphers", "_blind_index_key")

    def __init__(
        self, primary: str, keys: Mapping[str, bytes], blind_index_key: bytes, origin: str
    ) -> None:
        if primary not in keys:
            raise ConfigurationError(f"{origin}: the primary key id {primary!r} is not in keys")
        self.primary = primary
        self.key_ids = frozenset(keys)
        self.origin = origin
        self._ciphers = {kid: AESGCM(material) for kid, material in keys.items()}
        self._blind_index_key = blind_index_key

    def cipher(self, key_id: str) -> AESGCM | None:
        return self._ciphers.get(key_id)

    def blind_index(self, phone: str) -> str:
        digest = hmac.new(self._blind_index_key, normalise_phone(phone).encode(), hashlib.sha256)
        return digest.hexdigest()

    def __repr__(self) -> str:  # never the material
        return f"Keyring(primary={self.primary!r}, key_ids={sorted(self.key_ids)!r})"


def normalise_phone(phone: str) -> str:
    """The form the blind index is computed over: the E.164 number without any white space.

    Numbers are stored in E.164 already (ingest normalises them, Twilio sends `From` that way);
    this only absorbs spacing such as "+44 7700 900123".
    """
    return "".join(phone.split())


def _decode(value: object, what: str, origin: str, *, exact: int | None, least: int = 0) -> bytes:
    if not isinstance(value, str):
        raise ConfigurationError(f"{origin}: {what} must be a base64 string")
    try:
        material = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(f"{origin}: {what} is not valid base64") from None
    if exact is not None and len(material) != exact:
        raise ConfigurationError(f"{origin}: {what} must decode to {exact} bytes")
    if len(material) < least:
        raise ConfigurationError(f"{origin}: {what} must decode to at least {least} bytes")
    return material


def parse_keyring(text: str, origin: str, blind_index_key: str | None = None) -> Keyring:
    """A keyring from its JSON; errors name `origin` and the problem, never a key."""
    try:
        doc = json.loads(text)
    except ValueError:
        raise ConfigurationError(f"{origin}: not valid JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), dict) or not doc["keys"]:
        raise ConfigurationError(f'{origin}: expected {{"primary": …, "keys": {{id: key, …}}}}')
    keys: dict[str, bytes] = {}
    for kid, value in doc["keys"].items():
        if not KEY_ID.fullmatch(kid):
            raise ConfigurationError(
                f"{origin}: key id {kid[:40]!r} must be 1-32 characters of A-Z a-z 0-9 . _ -"
            )
        keys[kid] = _decode(value, f"key {kid!r}", origin, exact=KEY_BYTES)
    primary = doc.get("primary")
    if not isinstance(primary, str) or primary not in keys:
        raise ConfigurationError(f"{origin}: primary must name one of the keys")
    if blind_index_key is not None:
        index_key = _decode(
            blind_index_key,
            "CAREHUB_BLIND_INDEX_KEY",
            "CAREHUB_BLIND_INDEX_KEY",
            exact=None,
            least=MIN_BLIND_INDEX_KEY_BYTES,
        )
    elif "blind_index_key" in doc:
        index_key = _decode(
            doc["blind_index_key"],
            "blind_index_key",
            origin,
            exact=None,
            least=MIN_BLIND_INDEX_KEY_BYTES,
        )
    else:
        raise ConfigurationError(
            f"{origin}: no blind_index_key, and CAREHUB_BLIND_INDEX_KEY is not set"
        )
    return Keyring(primary, keys, index_key, origin)


def new_keyring(add_to: str | None = None, key_id: str | None = None) -> dict[str, Any]:
    """A keyring document with a fresh primary key; with `add_to` (a keyring's JSON), its keys
    and blind index key are kept and the new key becomes the primary."""
    doc: dict[str, Any] = {"primary": "", "keys": {}, "blind_index_key": _random_b64(32)}
    if add_to is not None:
        try:
            doc = json.loads(add_to)
        except ValueError:
            raise ConfigurationError("the keyring to add to is not valid JSON") from None
        # Validate it; its blind index key may live in CAREHUB_BLIND_INDEX_KEY instead.
        has_index_key = isinstance(doc, dict) and "blind_index_key" in doc
        parse_keyring(add_to, "the keyring to add to", None if has_index_key else _random_b64(32))
    kid = key_id or f"k{datetime.now(UTC):%Y%m%d%H%M%S}"
    if not KEY_ID.fullmatch(kid):
        raise ConfigurationError("a key id is 1-32 characters of A-Z a-z 0-9 . _ -")
    if kid in doc["keys"]:
        raise ConfigurationError(f"the keyring already has a key {kid!r}")
    doc["keys"][kid] = _random_b64(KEY_BYTES)
    doc["primary"] = kid
    return doc


def _random_b64(size: int) -> str:
    return base64.b64encode(secrets.token_bytes(size)).decode()


def _development_keyring(path: Path) -> str:
    """The development keyring's JSON, created (mode 0600, atomically) if it does not exist."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(new_keyring(key_id="dev1"), indent=2) + "\n"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            # link() fails if another process got there first: then both use its keyring.
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
                log.warning("keys.development_keyring_created", path=str(path))
        finally:
            tmp.unlink()
    return path.read_text(encoding="utf-8")


def load_keyring(settings: Settings) -> Keyring:
    """The keyring `settings` point at (see the module docstring for the order)."""
    index_key = settings.blind_index_key.get_secret_value() if settings.blind_index_key else None
    if settings.keys is not None and settings.keys_file is not None:
        raise ConfigurationError("set CAREHUB_KEYS or CAREHUB_KEYS_FILE, not both")
    if settings.keys is not None:
        return parse_keyring(settings.keys.get_secret_value(), "CAREHUB_KEYS", index_key)
    if settings.keys_file is not None:
        origin = f"CAREHUB_KEYS_FILE ({settings.keys_file})"
        try:
            text = settings.keys_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(f"{origin}: cannot read it ({type(exc).__name__})") from None
        return parse_keyring(text, origin, index_key)
    if settings.env is Environment.PRODUCTION:
        raise ConfigurationError(
            "CAREHUB_ENV=production needs encryption keys: set CAREHUB_KEYS_FILE (or "
            "CAREHUB_KEYS) to a keyring; `carehub keys generate` prints a new one"
        )
    path = settings.var_dir / DEV_KEYRING
    return parse_keyring(_development_keyring(path), f"development keyring {path}", index_key)


_lock = threading.Lock()
_keyring: Keyring | None = None
_loader: Callable[[], Keyring] | None = None


def configure_keys(settings: Settings, *, lazy: bool = False) -> None:
    """Install this process's keyring; raise ConfigurationError if it cannot be had.

    With `lazy`, the keyring is loaded (or the development keyring created) at first use
    instead: for tests and tools that may never touch a protected value. Production without
    keys is refused at once either way.
    """
    global _keyring, _loader
    with _lock:
        _keyring, _loader = None, None
        if settings.env is Environment.PRODUCTION and not (settings.keys or settings.keys_file):
            load_keyring(settings)  # raises with the message that says what to set
        if lazy:
            _loader = lambda: load_keyring(settings)  # noqa: E731
            return
        _keyring = load_keyring(settings)


def use_keyring(keyring: Keyring | None) -> None:
    """Install a keyring built elsewhere (tests), or None to forget the current one."""
    global _keyring, _loader
    with _lock:
        _keyring, _loader = keyring, None


def current_keyring() -> Keyring:
    """The process's keyring; KeysNotConfigured if `configure_keys` never ran."""
    global _keyring, _loader
    keyring = _keyring
    if keyring is not None:
        return keyring
    with _lock:
        if _keyring is None and _loader is not None:
            _keyring, _loader = _loader(), None
        if _keyring is None:
            raise KeysNotConfigured(
                "no keyring in this process: call services.core.keys.configure_keys(settings) "
                "before using the database (running_stack and the carehub commands do)"
            )
        return _keyring


def blind_index(phone: str) -> str:
    """HMAC-SHA256 (hex) of the normalised number under the blind index key: equal numbers give
    equal indexes, and nobody without the key can tell which number an index stands for."""
    return current_keyring().blind_index(phone)
