"""Project secrets at rest: AES-256-GCM with the key from ``secrets.key`` (or its file).

A ciphertext is ``version (1 byte) | key id (4 bytes) | nonce (12 bytes) | ciphertext+tag``.
The nonce is random per encryption (96 bits: with one key, collisions stay negligible far
beyond the number of secrets an appliance will ever store). The key id (the first 4 bytes
of SHA-256 of the key) tells "encrypted with another key" apart from "damaged". The
associated data binds a ciphertext to its place (``project:<id>:variable:<name>``), so a
ciphertext copied into another row or project does not decrypt.

Plaintexts never reach a log, a repr or an exception message; error messages name the
place of a secret, never its value.

The key: ``secrets.key`` (base64 of 32 bytes), given inline, as ``secrets.key_file`` /
``PRTS_SECRETS_KEY_FILE``, or, when empty, generated once into ``data_dir/secrets.key``
(mode 0600). Losing the key loses every stored secret; it belongs in the backups.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import logging
import os
import pathlib
import secrets as pysecrets
import tempfile
import time

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance.config import Config

log = logging.getLogger(__name__)

VERSION = 1
KEY_BYTES = 32
KEY_ID_BYTES = 4
NONCE_BYTES = 12
TAG_BYTES = 16
_HEADER = 1 + KEY_ID_BYTES + NONCE_BYTES
KEY_FILE_NAME = "secrets.key"


class SecretKeyError(Exception):
    """The key is missing, malformed, or not the one a ciphertext was made with."""


class SecretCorruptError(Exception):
    """A ciphertext was damaged or moved to a place it does not belong to."""


def key_id(key: bytes) -> bytes:
    """The 4 bytes every ciphertext made with ``key`` starts its header with."""
    return hashlib.sha256(key).digest()[:KEY_ID_BYTES]


def new_key_text() -> str:
    """A fresh key as ``secrets.key`` takes it: base64 of 32 random bytes."""
    return base64.b64encode(pysecrets.token_bytes(KEY_BYTES)).decode("ascii")


def parse_key(text: str, where: str) -> bytes:
    """The 32 key bytes from their base64 text; ``where`` names the text's origin in errors
    (the key itself is never quoted)."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SecretKeyError(f"{where} does not hold base64 text; the key must be base64 of exactly "
                             f"{KEY_BYTES} bytes (e.g. `openssl rand -base64 {KEY_BYTES}`)") from None
    if len(key) != KEY_BYTES:
        raise SecretKeyError(f"{where} holds {len(key)} bytes; the key must be base64 of exactly {KEY_BYTES} bytes")
    return key


def place(project_id: int, name: str) -> str:
    """The associated data binding a secret's ciphertext to its row."""
    return f"project:{int(project_id)}:variable:{name}"


class SecretBox:
    """Encrypts and decrypts project secrets with one key."""

    __slots__ = ("_aead", "_key_id")

    def __init__(self, key: bytes):
        if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_BYTES:
            raise SecretKeyError(f"the key must be {KEY_BYTES} bytes")
        self._aead = AESGCM(bytes(key))
        self._key_id = key_id(bytes(key))

    def __repr__(self) -> str:
        return f"SecretBox(key id {self._key_id.hex()})"

    @property
    def key_id(self) -> bytes:
        return self._key_id

    @classmethod
    def from_config(cls, config: Config) -> "SecretBox":
        """The box for the configured key, generating ``data_dir/secrets.key`` when none is set."""
        source = config.sources.get("secrets.key", "default")
        if config.secrets.key or "(file " in source:
            # An empty key *file* is a mistake (a missing credential), not a wish for a
            # generated key: generating one would leave the real key's secrets unreadable.
            return cls(parse_key(config.secrets.key, f"secrets.key (from {source})"))
        path = config.data_path / KEY_FILE_NAME
        return cls(parse_key(_load_or_generate(path), f"the key file {path}"))

    def encrypt(self, plaintext: str, where: str) -> bytes:
        """The ciphertext of ``plaintext`` bound to ``where`` (see ``place``)."""
        if not isinstance(plaintext, str):
            raise TypeError("a secret to encrypt must be str")
        try:
            data = plaintext.encode("utf-8")
        except UnicodeEncodeError:
            # The exception would carry the whole plaintext in its .object: drop it.
            raise ValueError(f"the secret for {where} is not encodable as UTF-8") from None
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, data, where.encode("utf-8"))
        return bytes([VERSION]) + self._key_id + nonce + sealed

    def decrypt(self, blob: bytes, where: str) -> str:
        """The plaintext of a ciphertext made by ``encrypt(..., where)`` with this key.

        Raises ``SecretKeyError`` when it was made with another key, ``SecretCorruptError``
        when it was damaged or belongs to another place.
        """
        if not isinstance(blob, (bytes, bytearray, memoryview)):
            raise SecretCorruptError(f"the secret at {where} has no ciphertext")
        blob = bytes(blob)
        if len(blob) < _HEADER + TAG_BYTES or blob[0] != VERSION:
            raise SecretCorruptError(f"the secret at {where} is not a ciphertext this appliance made")
        if blob[1:_HEADER - NONCE_BYTES] != self._key_id:
            raise SecretKeyError(f"the secret at {where} was encrypted with another key (key id "
                                 f"{blob[1:_HEADER - NONCE_BYTES].hex()}; the configured key's is {self._key_id.hex()})")
        try:
            data = self._aead.decrypt(blob[_HEADER - NONCE_BYTES:_HEADER], blob[_HEADER:], where.encode("utf-8"))
        except InvalidTag:
            raise SecretCorruptError(f"the secret at {where} was damaged or does not belong there") from None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise SecretCorruptError(f"the secret at {where} is not UTF-8 text") from None


def _load_or_generate(path: pathlib.Path) -> str:
    """The embedded default: a random key kept in the data directory, made once.

    The key is written to a private temporary file first and then linked into place, so no
    process ever reads a half-written key; ``link`` fails when the name exists, so of
    several processes starting together the first wins and the others read its key.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        _create_key_file(path)
    try:
        for _ in range(50):  # only the no-hard-link fallback leaves a key file empty, briefly
            mode = path.stat().st_mode
            text = path.read_text(encoding="ascii")
            if text.strip():
                break
            time.sleep(0.02)
    except FileNotFoundError:
        raise SecretKeyError(f"the key file {path} does not exist") from None
    except UnicodeDecodeError:
        raise SecretKeyError(f"the key file {path} does not hold base64 text; the key must be base64 "
                             f"of exactly {KEY_BYTES} bytes") from None
    except OSError as exc:
        raise SecretKeyError(f"cannot read the key file {path}: {exc.strerror}") from None
    if mode & 0o077:
        log.warning("the key file %s can be read by other users (mode %o); it should be 0600", path, mode & 0o777)
    return text


def _create_key_file(path: pathlib.Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(new_key_text() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return  # another process made it first; everyone uses that one
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise SecretKeyError(f"cannot create the key file {path}: {exc.strerror}") from None
            # A filesystem without hard links: claim the name with O_EXCL and write in place.
            # A reader may see the file empty for a moment; _load_or_generate waits that out.
            try:
                out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return
            with os.fdopen(out, "w", encoding="ascii") as fh, open(tmp, encoding="ascii") as src:
                fh.write(src.read())
                fh.flush()
                os.fsync(fh.fileno())
        _fsync_dir(path.parent)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def _fsync_dir(directory: pathlib.Path) -> None:
    # A key that vanished in a crash after secrets were encrypted with it loses them all.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
