"""Project secrets at rest: AES-256-GCM with the key from ``secrets.key`` (or its file).

A ciphertext is ``version (1 byte) | key id (4 bytes) | nonce (12 bytes) | ciphertext+tag``.
The key id (the first 4 bytes of SHA-256 of the key) tells "encrypted with another key"
apart from "damaged". The associated data binds a ciphertext to its place
(``project:<id>:variable:<name>``), so a ciphertext copied into another row or project
does not decrypt. Plaintexts never reach a log, a repr or an exception message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import pathlib
import secrets as pysecrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance.config import Config

VERSION = 1
KEY_BYTES = 32
NONCE_BYTES = 12
_HEADER = 1 + 4 + NONCE_BYTES


class SecretKeyError(Exception):
    """The key is missing, malformed, or not the one a ciphertext was made with."""


class SecretCorruptError(Exception):
    """A ciphertext was damaged or moved to a place it does not belong to."""


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()[:4]


def _parse_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SecretKeyError(f"{where} does not hold base64 text") from None
    if len(key) != KEY_BYTES:
        raise SecretKeyError(f"{where} holds {len(key)} bytes; the key must be base64 of exactly {KEY_BYTES} bytes")
    return key


def place(project_id: int, name: str) -> str:
    return f"project:{int(project_id)}:variable:{name}"


class SecretBox:
    __slots__ = ("_aead", "_key_id")

    def __init__(self, key: bytes):
        if len(key) != KEY_BYTES:
            raise SecretKeyError(f"the key must be {KEY_BYTES} bytes")
        self._aead = AESGCM(key)
        self._key_id = _key_id(key)

    def __repr__(self) -> str:
        return f"SecretBox(key id {self._key_id.hex()})"

    @classmethod
    def from_config(cls, config: Config) -> "SecretBox":
        if config.secrets.key:
            return cls(_parse_key(config.secrets.key, "secrets.key"))
        return cls(_parse_key(_generated_key_text(config.data_path / "secrets.key"), str(config.data_path / "secrets.key")))

    def encrypt(self, plaintext: str, where: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode("utf-8"), where.encode())
        return bytes([VERSION]) + self._key_id + nonce + sealed

    def decrypt(self, blob: bytes, where: str) -> str:
        if len(blob) < _HEADER + 16 or blob[0] != VERSION:
            raise SecretCorruptError(f"the secret at {where} is not a ciphertext this appliance made")
        if blob[1:5] != self._key_id:
            raise SecretKeyError(f"the secret at {where} was encrypted with another key "
                                 f"(key id {blob[1:5].hex()}, this appliance's is {self._key_id.hex()})")
        try:
            return self._aead.decrypt(blob[5:_HEADER], blob[_HEADER:], where.encode()).decode("utf-8")
        except InvalidTag:
            raise SecretCorruptError(f"the secret at {where} was damaged or does not belong there") from None


def _generated_key_text(path: pathlib.Path) -> str:
    """The embedded default: a random key kept in the data directory, made once. O_EXCL
    lets the first of several processes win; the others read what it wrote."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as fh:
            fh.write(base64.b64encode(pysecrets.token_bytes(KEY_BYTES)).decode() + "\n")
    try:
        return path.read_text()
    except OSError as exc:
        raise SecretKeyError(f"cannot read {path}: {exc.strerror}") from None
