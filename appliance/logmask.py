"""The byte patterns that mask a set of secrets in job logs.

A secret reaches a log in more forms than its own bytes: a job base64-encodes it into a
header or a config blob (at any of three byte alignments inside the larger blob),
percent-encodes it into a URL or a form body, hex-dumps it, or prints it inside a JSON
string. A multi-line secret (a PEM key) reaches the log line by line. The native log
engine (appliance.native.LogEngine) masks every occurrence of every pattern made here in
one pass; this module only decides the patterns, which is not on the hot path.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from collections.abc import Iterable

MIN_SECRET_BYTES = 6  # shorter secrets match ordinary text too often to be masked reliably
MAX_SECRET_BYTES = 64 * 1024
# A pattern shorter than this is dropped: the engine refuses patterns it cannot filter.
MIN_PATTERN_BYTES = 6

# Characters the terminal stage drops before masking sees the text: a secret holding one
# could never be matched in the form it is printed in. \t, \n and \r are allowed (a
# multi-line secret is matched line by line).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
_PERCENT = re.compile(r"%[0-9A-F]{2}")
# Go's encoding/json (and so most Go tools) escapes these even with non-ASCII left raw.
_GO_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


class SecretError(ValueError):
    """A secret cannot be masked as given; the message names it by position, never by value."""


class SecretTooShortError(SecretError):
    """A secret is shorter than MIN_SECRET_BYTES."""


class SecretTooLongError(SecretError):
    """A secret is longer than MAX_SECRET_BYTES."""


class SecretEncodingError(SecretError):
    """A secret is not UTF-8 text, or holds control characters a log cannot show."""


def _secret_bytes(secret: str | bytes | bytearray | memoryview, index: int) -> bytes:
    if isinstance(secret, str):
        try:
            data = secret.encode("utf-8")
        except UnicodeEncodeError:
            raise SecretEncodingError(f"secret #{index} holds a lone surrogate, which UTF-8 cannot encode") from None
    elif isinstance(secret, (bytes, bytearray, memoryview)):
        data = bytes(secret)
    else:
        raise TypeError(f"secret #{index} must be str or bytes, not {type(secret).__name__}")
    if len(data) < MIN_SECRET_BYTES:
        raise SecretTooShortError(
            f"secret #{index} is {len(data)} bytes; secrets shorter than {MIN_SECRET_BYTES} bytes "
            "cannot be masked reliably, so they are refused rather than left unmasked")
    if len(data) > MAX_SECRET_BYTES:
        raise SecretTooLongError(f"secret #{index} is {len(data)} bytes; the limit is {MAX_SECRET_BYTES}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretEncodingError(f"secret #{index} is not valid UTF-8") from None
    if _CONTROL.search(text):
        raise SecretEncodingError(
            f"secret #{index} holds control characters other than tab and line breaks; "
            "a terminal would not print them, so the secret could not be matched")
    return data


def _base64_pieces(secret: bytes) -> list[bytes]:
    """The base64 and base64url characters fully determined by the secret's own bits when
    it starts 0, 1 or 2 bytes into a larger encoded blob."""
    out = []
    n = len(secret)
    for align in range(3):
        first = (8 * align + 5) // 6  # ceil(8a/6): the first char holding no prefix bits
        end = (8 * align + 8 * n) // 6  # floor: chars past this hold bits of what follows
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            out.append(encode(b"\0" * align + secret)[first:end])
    return out


def _percent_forms(secret: bytes) -> list[bytes]:
    out = []
    for quote in (urllib.parse.quote, urllib.parse.quote_plus):
        upper = quote(secret, safe="")
        out += [upper.encode(), _PERCENT.sub(lambda m: m.group().lower(), upper).encode()]
    return out


def _json_forms(text: str) -> list[bytes]:
    raw = json.dumps(text, ensure_ascii=False)[1:-1]
    go = "".join(_GO_JSON_ESCAPES.get(ch, ch) for ch in raw)
    return [json.dumps(text, ensure_ascii=True)[1:-1].encode(), raw.encode(), go.encode()]


def _patterns_of(data: bytes) -> list[bytes]:
    lines = _LINE_BREAK.split(data)
    # A line break never reaches the masker (it ends the line), so a multi-line secret in
    # its raw form is matched line by line; its encodings hold no raw line break.
    raw = lines if len(lines) > 1 else [data]
    candidates = raw + _base64_pieces(data) + _percent_forms(data) + [data.hex().encode(), data.hex().upper().encode()]
    candidates += _json_forms(data.decode("utf-8"))
    return [p for p in dict.fromkeys(candidates) if len(p) >= MIN_PATTERN_BYTES]


def secret_patterns(secrets: Iterable[str | bytes]) -> list[bytes]:
    """The patterns for all ``secrets``, each once, in a stable order.

    Raises a SecretError subclass naming the secret by its position when one is too short,
    too long, not UTF-8, or holds control characters.
    """
    if isinstance(secrets, (str, bytes, bytearray, memoryview)):
        raise TypeError("secrets must be a collection of secrets, not one secret")
    patterns: dict[bytes, None] = {}
    for index, secret in enumerate(secrets):
        patterns.update(dict.fromkeys(_patterns_of(_secret_bytes(secret, index))))
    return list(patterns)
