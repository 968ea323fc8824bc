"""SecretBox: AES-256-GCM for project secrets, and where its key comes from.

The ciphertext layout is ``version | key id (4) | nonce (12) | ciphertext + tag (16)``; a
damaged ciphertext, one moved to another place, and one made with another key each fail
with their own exception, and no message or repr ever holds the plaintext or the key.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import os
import stat
import threading

import pytest

from appliance.config import load
from appliance.pipelines.secrets import (
    KEY_BYTES,
    NONCE_BYTES,
    VERSION,
    SecretBox,
    SecretCorruptError,
    SecretKeyError,
    new_key_text,
    place,
)
from conftest import make_config

PLAIN = "hunter2-correct-horse-\u00e9\u6f22"
HEADER = 1 + 4 + NONCE_BYTES
TAG = 16


def box_and_key() -> tuple[SecretBox, bytes]:
    key = os.urandom(KEY_BYTES)
    return SecretBox(key), key


# -- encryption ---------------------------------------------------------------------------


@pytest.mark.parametrize("plaintext", [PLAIN, "x" * 6, "-----BEGIN KEY-----\nabc\tdef\n-----END KEY-----\n",
                                       "\u00ff" * (32 * 1024), ""])
def test_round_trip(plaintext):
    box, _ = box_and_key()
    blob = box.encrypt(plaintext, place(1, "TOKEN"))
    assert box.decrypt(blob, place(1, "TOKEN")) == plaintext


def test_layout_version_key_id_nonce_and_tag():
    box, key = box_and_key()
    blob = box.encrypt(PLAIN, place(7, "TOKEN"))
    assert blob[0] == VERSION
    assert blob[1:5] == hashlib.sha256(key).digest()[:4] == box.key_id
    assert len(blob) == HEADER + len(PLAIN.encode()) + TAG
    assert PLAIN.encode() not in blob


def test_every_encryption_has_a_fresh_nonce():
    box, _ = box_and_key()
    blobs = [box.encrypt(PLAIN, place(1, "A")) for _ in range(200)]
    nonces = {blob[5:HEADER] for blob in blobs}
    assert len(nonces) == 200 and len(set(blobs)) == 200


def test_a_flipped_bit_anywhere_in_nonce_ciphertext_or_tag_is_corruption():
    box, _ = box_and_key()
    where = place(3, "TOKEN")
    blob = box.encrypt("s3cret-value", where)
    for index in range(HEADER - NONCE_BYTES, len(blob)):
        for bit in (0, 7):
            damaged = bytearray(blob)
            damaged[index] ^= 1 << bit
            with pytest.raises(SecretCorruptError):
                box.decrypt(bytes(damaged), where)


def test_a_damaged_version_or_truncated_ciphertext_is_corruption():
    box, _ = box_and_key()
    where = place(3, "TOKEN")
    blob = box.encrypt("s3cret-value", where)
    with pytest.raises(SecretCorruptError):
        box.decrypt(bytes([blob[0] ^ 1]) + blob[1:], where)
    for cut in (0, 1, HEADER, HEADER + TAG - 1, len(blob) - 1):
        with pytest.raises(SecretCorruptError):
            box.decrypt(blob[:cut], where)
    with pytest.raises(SecretCorruptError):
        box.decrypt(None, where)  # a row that lost its ciphertext


def test_a_damaged_key_id_is_reported_as_another_key():
    box, _ = box_and_key()
    blob = bytearray(box.encrypt("s3cret-value", place(1, "A")))
    blob[2] ^= 0x10
    with pytest.raises(SecretKeyError):
        box.decrypt(bytes(blob), place(1, "A"))


def test_wrong_key_is_a_key_error_naming_both_key_ids():
    box, _ = box_and_key()
    other, _ = box_and_key()
    blob = box.encrypt(PLAIN, place(1, "A"))
    with pytest.raises(SecretKeyError) as info:
        other.decrypt(blob, place(1, "A"))
    assert box.key_id.hex() in str(info.value) and other.key_id.hex() in str(info.value)
    assert not isinstance(info.value, SecretCorruptError)


@pytest.mark.parametrize("moved_to", [place(1, "OTHER"), place(2, "A"), place(11, "A"), "project:1:variable:a"])
def test_a_ciphertext_moved_to_another_variable_or_project_does_not_decrypt(moved_to):
    box, _ = box_and_key()
    blob = box.encrypt(PLAIN, place(1, "A"))
    with pytest.raises(SecretCorruptError):
        box.decrypt(blob, moved_to)


def test_no_message_or_repr_holds_the_plaintext_or_the_key():
    box, key = box_and_key()
    blob = box.encrypt(PLAIN, place(1, "A"))
    texts = [repr(box), str(box)]
    for call in (lambda: box.decrypt(blob, place(2, "A")), lambda: SecretBox(os.urandom(32)).decrypt(blob, place(1, "A")),
                 lambda: box.decrypt(blob[:-1], place(1, "A"))):
        with pytest.raises((SecretCorruptError, SecretKeyError)) as info:
            call()
        texts += [str(info.value), repr(info.value)]
    with pytest.raises(ValueError) as info:
        box.encrypt("lone \ud800 surrogate then " + PLAIN, place(1, "A"))
    assert info.value.__context__ is None or info.value.__suppress_context__
    texts += [str(info.value), repr(info.value)]
    for text in texts:
        assert PLAIN not in text and "surrogate then" not in text
        assert base64.b64encode(key).decode() not in text and key.hex() not in text


def test_a_key_must_be_32_bytes():
    for size in (0, 16, 31, 33):
        with pytest.raises(SecretKeyError):
            SecretBox(os.urandom(size))


# -- where the key comes from -------------------------------------------------------------


def test_the_key_file_is_generated_once_mode_0600_base64_of_32_bytes(tmp_path):
    config = make_config(tmp_path / "data")
    first = SecretBox.from_config(config)
    path = tmp_path / "data" / "secrets.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(base64.b64decode(path.read_text().strip(), validate=True)) == KEY_BYTES
    before = path.read_bytes()
    second = SecretBox.from_config(config)
    assert path.read_bytes() == before and first.key_id == second.key_id
    assert second.decrypt(first.encrypt(PLAIN, place(1, "A")), place(1, "A")) == PLAIN
    assert sorted(p.name for p in path.parent.iterdir()) == ["secrets.key"]  # no temporary file left


def test_processes_starting_together_agree_on_one_generated_key(tmp_path):
    config = make_config(tmp_path / "data")
    barrier = threading.Barrier(16)

    def start():
        barrier.wait()
        return SecretBox.from_config(config).key_id

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        ids = set(pool.map(lambda _: start(), range(16)))
    assert len(ids) == 1
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["secrets.key"]


def test_secrets_key_file_from_toml_and_environment(tmp_path):
    key_text = new_key_text()
    key_file = tmp_path / "credentials" / "secrets_key"
    key_file.parent.mkdir()
    key_file.write_text(key_text + "\n")
    expected = SecretBox(base64.b64decode(key_text)).key_id

    config = make_config(tmp_path / "data", secrets__key_file=str(key_file))
    assert SecretBox.from_config(config).key_id == expected
    env = {"PRTS_DATA_DIR": str(tmp_path / "data"), "PRTS_SECRETS_KEY_FILE": str(key_file)}
    assert SecretBox.from_config(load(env=env, files=[])).key_id == expected
    toml = tmp_path / "prts.toml"
    toml.write_text(f'data_dir = "{tmp_path / "data"}"\n[secrets]\nkey_file = "{key_file}"\n')
    assert SecretBox.from_config(load(env={}, files=[toml])).key_id == expected
    # A configured key means no key is generated into the data directory.
    assert not (tmp_path / "data" / "secrets.key").exists()
    assert load(env=env, files=[]).redacted()["secrets.key"] == "********"


def test_an_inline_secrets_key(tmp_path):
    key_text = new_key_text()
    box = SecretBox.from_config(make_config(tmp_path / "data", secrets__key=key_text))
    assert box.key_id == SecretBox(base64.b64decode(key_text)).key_id


@pytest.mark.parametrize("content", ["not base64 at all!", base64.b64encode(b"x" * 16).decode(),
                                     base64.b64encode(b"x" * 33).decode(), ""])
def test_a_bad_configured_key_file_is_an_error_naming_the_file(tmp_path, content):
    key_file = tmp_path / "bad_key"
    key_file.write_text(content)
    with pytest.raises(SecretKeyError) as info:
        SecretBox.from_config(make_config(tmp_path / "data", secrets__key_file=str(key_file)))
    assert str(key_file) in str(info.value) and "32 bytes" in str(info.value)
    if content:
        assert content not in str(info.value)


@pytest.mark.parametrize("content", [b"garbage", base64.b64encode(b"y" * 24) + b"\n", b"\xff\xfe binary"])
def test_a_bad_generated_key_file_is_an_error_naming_it_and_is_left_alone(tmp_path, content):
    path = tmp_path / "data" / "secrets.key"
    path.parent.mkdir()
    path.write_bytes(content)
    with pytest.raises(SecretKeyError) as info:
        SecretBox.from_config(make_config(tmp_path / "data"))
    assert str(path) in str(info.value)
    assert path.read_bytes() == content  # never replaced: the secrets it encrypted would be lost


def test_a_bad_inline_key_is_an_error_that_does_not_quote_it(tmp_path):
    with pytest.raises(SecretKeyError) as info:
        SecretBox.from_config(make_config(tmp_path / "data", secrets__key="c2hvcnQta2V5"))
    assert "secrets.key" in str(info.value) and "c2hvcnQta2V5" not in str(info.value)
