"""Field encryption and the keyring: AES-256-GCM under a key id, a blind index, no clear text."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from services.core.db.protected import (
    Protected,
    ProtectedBytes,
    ProtectedJSON,
    UnreadableValue,
    stored_key_id,
)
from services.core.keys import (
    KeysNotConfigured,
    blind_index,
    configure_keys,
    current_keyring,
    load_keyring,
    new_keyring,
    parse_keyring,
    use_keyring,
)
from services.core.settings import ConfigurationError, load_settings

NAME = "Quenby Marchetti-Oyelaran"
PHONE = "+447700900987"
DIALECTS = [sqlite.dialect(), postgresql.dialect()]


def b64(size: int, fill: int | None = None) -> str:
    raw = os.urandom(size) if fill is None else bytes([fill]) * size
    return base64.b64encode(raw).decode()


def keyring_json(primary: str, keys: dict[str, str], index_key: str | None = None) -> str:
    return json.dumps({"primary": primary, "keys": keys, "blind_index_key": index_key or b64(32)})


K1, K2, INDEX = b64(32), b64(32), b64(32)


@pytest.fixture
def keys_k1() -> Iterator[None]:
    use_keyring(parse_keyring(keyring_json("k1", {"k1": K1}, INDEX), "test"))
    yield
    use_keyring(None)


def roundtrip(column: Any, value: Any, dialect: Any = DIALECTS[0]) -> tuple[bytes, Any]:
    stored = column.process_bind_param(value, dialect)
    assert isinstance(stored, bytes)
    return stored, column.process_result_value(stored, dialect)


@pytest.mark.parametrize("dialect", DIALECTS, ids=["sqlite", "postgresql"])
@pytest.mark.parametrize(
    ("column", "value", "plain"),
    [
        (Protected(), NAME, NAME.encode()),
        (Protected(), "Siân Ŵ 😀", "Siân Ŵ 😀".encode()),
        (Protected(), "", b""),
        (ProtectedJSON(), {"victims": [{"name": NAME}], "n": 1}, NAME.encode()),
        (ProtectedBytes(), b"\x00raw " + NAME.encode(), NAME.encode()),
    ],
)
def test_each_type_round_trips_and_stores_no_clear_text(
    keys_k1: None, dialect: Any, column: Any, value: Any, plain: bytes
) -> None:
    stored, back = roundtrip(column, value, dialect)
    assert back == value
    assert stored[0] == 1 and stored[1] == 2 and stored[2:4] == b"k1"
    assert stored_key_id(stored) == "k1"
    if plain:
        assert plain not in stored
    assert column.process_bind_param(None, dialect) is None
    assert column.process_result_value(None, dialect) is None


def test_the_stored_format_is_compact(keys_k1: None) -> None:
    stored, _ = roundtrip(Protected(), PHONE)
    # version, key id length, "k1", 12-byte nonce, ciphertext as long as the text, 16-byte tag.
    assert len(stored) == 1 + 1 + 2 + 12 + len(PHONE) + 16


def test_two_encryptions_of_one_value_differ(keys_k1: None) -> None:
    first, _ = roundtrip(Protected(), PHONE)
    second, _ = roundtrip(Protected(), PHONE)
    assert first != second
    assert first[4:16] != second[4:16]  # a fresh nonce each time


def test_tampering_with_any_byte_fails_and_never_shows_the_value(keys_k1: None) -> None:
    column = Protected()
    stored, _ = roundtrip(column, NAME)
    for position in range(len(stored)):
        damaged = bytearray(stored)
        damaged[position] ^= 0x01
        with pytest.raises(UnreadableValue) as caught:
            column.process_result_value(bytes(damaged), DIALECTS[0])
        assert NAME not in str(caught.value) and "Quenby" not in str(caught.value)
    with pytest.raises(UnreadableValue, match="fails authentication"):
        column.process_result_value(stored[:-1] + bytes([stored[-1] ^ 0xFF]), DIALECTS[0])
    with pytest.raises(UnreadableValue, match="format version"):
        column.process_result_value(NAME.encode(), DIALECTS[0])  # the old identity format
    with pytest.raises(UnreadableValue):
        column.process_result_value(stored[:20], DIALECTS[0])


def test_a_value_under_an_old_key_reads_after_the_primary_changes(keys_k1: None) -> None:
    column = Protected()
    old, _ = roundtrip(column, NAME)
    use_keyring(parse_keyring(keyring_json("k2", {"k1": K1, "k2": K2}, INDEX), "test"))
    assert column.process_result_value(old, DIALECTS[0]) == NAME
    new, _ = roundtrip(column, NAME)
    assert stored_key_id(new) == "k2"
    # The same id with other material, or a keyring without k1: a clear error naming k1.
    use_keyring(parse_keyring(keyring_json("k1", {"k1": K2}, INDEX), "test"))
    with pytest.raises(UnreadableValue, match="'k1' fails authentication") as wrong:
        column.process_result_value(old, DIALECTS[0])
    use_keyring(parse_keyring(keyring_json("k2", {"k2": K2}, INDEX), "the test keyring"))
    with pytest.raises(UnreadableValue, match="key id 'k1', which is not in the keyring") as gone:
        column.process_result_value(old, DIALECTS[0])
    assert "the test keyring" in str(gone.value)
    for error in (wrong.value, gone.value):
        assert NAME not in str(error) and K1 not in str(error) and K2 not in str(error)


def test_without_a_configured_keyring_nothing_is_read_or_written() -> None:
    use_keyring(None)
    with pytest.raises(KeysNotConfigured, match="configure_keys"):
        Protected().process_bind_param(NAME, DIALECTS[0])
    with pytest.raises(KeysNotConfigured):
        blind_index(PHONE)


def test_the_blind_index_is_keyed_and_ignores_spacing(keys_k1: None) -> None:
    index = blind_index(PHONE)
    assert len(index) == 64 and int(index, 16) >= 0
    assert blind_index("+44 7700 900987") == index
    assert blind_index("+447700900988") != index
    assert PHONE not in index
    use_keyring(parse_keyring(keyring_json("k1", {"k1": K1}), "test"))  # another index key
    assert blind_index(PHONE) != index


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ("not json", "not valid JSON"),
        ('{"primary": "k1"}', "expected"),
        (keyring_json("k9", {"k1": K1}), "primary must name one of the keys"),
        (keyring_json("k1", {"k1": "%%%"}), "not valid base64"),
        (keyring_json("k1", {"k1": b64(16)}), "must decode to 32 bytes"),
        (keyring_json("bad id!", {"bad id!": K1}), "key id"),
        (keyring_json("k1", {"k1": K1}, b64(8)), "at least 32 bytes"),
        (json.dumps({"primary": "k1", "keys": {"k1": K1}}), "no blind_index_key"),
    ],
)
def test_a_bad_keyring_is_refused_with_the_problem_and_never_a_key(
    document: str, problem: str
) -> None:
    with pytest.raises(ConfigurationError, match=problem) as caught:
        parse_keyring(document, "CAREHUB_KEYS_FILE (keys.json)")
    assert "CAREHUB_KEYS_FILE (keys.json)" in str(caught.value)
    assert K1 not in str(caught.value)


def test_the_development_keyring_is_created_private_and_reused(tmp_path: Path) -> None:
    settings = load_settings(var_dir=tmp_path / "var")
    found: list[Any] = []
    threads = [threading.Thread(target=lambda: found.append(load_keyring(settings)))]
    threads += [threading.Thread(target=lambda: found.append(load_keyring(settings)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    path = tmp_path / "var" / "keys.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["keys.json"]  # no temporary left over
    first = Protected()
    use_keyring(found[0])
    stored = first.process_bind_param(NAME, DIALECTS[0])
    use_keyring(found[1])
    assert first.process_result_value(stored, DIALECTS[0]) == NAME  # both agree
    configure_keys(settings)
    assert current_keyring().primary == found[0].primary
    assert "material" not in repr(current_keyring()) and K1 not in repr(current_keyring())


def test_production_refuses_to_start_without_keys(tmp_path: Path) -> None:
    settings = load_settings(env="production", var_dir=tmp_path)
    for lazy in (False, True):
        with pytest.raises(ConfigurationError, match="CAREHUB_KEYS_FILE"):
            configure_keys(settings, lazy=lazy)
    assert not (tmp_path / "keys.json").exists()
    with pytest.raises(KeysNotConfigured):
        current_keyring()  # a failed configuration leaves no keys behind


def test_production_takes_its_keys_from_a_file_or_the_environment(tmp_path: Path) -> None:
    keyfile = tmp_path / "keyring.json"
    keyfile.write_text(keyring_json("k2", {"k1": K1, "k2": K2}, INDEX))
    configure_keys(load_settings(env="production", keys_file=keyfile))
    assert current_keyring().primary == "k2"
    index = blind_index(PHONE)
    configure_keys(load_settings(env="production", keys=keyring_json("k1", {"k1": K1}, INDEX)))
    assert current_keyring().primary == "k1" and blind_index(PHONE) == index
    override = b64(32)
    configure_keys(load_settings(env="production", keys_file=keyfile, blind_index_key=override))
    assert blind_index(PHONE) != index
    with pytest.raises(ConfigurationError, match="not both"):
        load_keyring(load_settings(keys_file=keyfile, keys=keyring_json("k1", {"k1": K1})))
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_keyring(load_settings(keys_file=tmp_path / "missing.json"))
    assert not (tmp_path / "var").exists()


def test_generate_adds_a_new_primary_and_keeps_the_old_keys() -> None:
    fresh = new_keyring(key_id="k1")
    assert fresh["primary"] == "k1"
    first = parse_keyring(json.dumps(fresh), "fresh")
    grown = new_keyring(json.dumps(fresh), key_id="k2")
    assert grown["primary"] == "k2" and set(grown["keys"]) == {"k1", "k2"}
    assert grown["keys"]["k1"] == fresh["keys"]["k1"]
    assert grown["blind_index_key"] == fresh["blind_index_key"]
    second = parse_keyring(json.dumps(grown), "grown")
    assert first.blind_index(PHONE) == second.blind_index(PHONE)
    with pytest.raises(ConfigurationError, match="already has"):
        new_keyring(json.dumps(grown), key_id="k1")
    assert new_keyring()["primary"].startswith("k")
