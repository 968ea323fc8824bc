"""Masking torture set: every secret length x every way a job leaks a secret -> no trace left.

A secret of each length in {6, 8, 64, 4096, 8192} bytes, single-line or PEM-shaped
(several lines), with characters that every encoding escapes, is written into a job log
by each leak technique, in random chunk splits. The check does not trust the masker's own
idea of the variants: it decodes the output independently (base64 at every offset and in
both alphabets, hex, percent- and form-decoding, JSON string unescaping) and requires that
neither the secret nor any of its lines of 6 bytes or more appears in any decoding.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import re
import urllib.parse

import pytest

from appliance import native

LENGTHS = [6, 8, 64, 4096, 8192]
CHARS = [*"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", *" !\"#$%&'()*+,-./:;<=>?@\\^_`{|}~",
         "é", "ß", "日", "本", "😀"]
BASE64_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def make_secret(length: int, rng: random.Random) -> bytes:
    """A secret of exactly length bytes, non-ASCII included where it fits."""
    out = b""
    while len(out) < length:
        ch = rng.choice(CHARS).encode()
        if len(out) + len(ch) <= length:
            out += ch
    return out


def make_pem(length: int, rng: random.Random) -> bytes:
    """A PEM-like secret of exactly length bytes whose lines are all >= 6 bytes (one line
    when length < 13, where two such lines cannot fit)."""
    if length < 13:
        return "".join(rng.choice(BASE64_CHARS) for _ in range(length)).encode()
    width = 64 if length > 200 else (length - 1) // 2
    sizes, remaining = [], length
    while remaining > 2 * width + 1:
        sizes.append(width)
        remaining -= width + 1
    if remaining > width:
        half = (remaining - 1) // 2
        sizes += [half, remaining - 1 - half]
    else:
        sizes.append(remaining)
    lines = ["".join(rng.choice(BASE64_CHARS) for _ in range(n)) for n in sizes]
    secret = "\n".join(lines).encode()
    assert len(secret) == length and min(sizes) >= 6
    return secret


def char_cuts(data: bytes, points) -> list[int]:
    """Cut points moved forward to character boundaries."""
    out = []
    for p in points:
        while 0 < p < len(data) and data[p] & 0xC0 == 0x80:
            p += 1
        out.append(p)
    return out


# -- leak techniques: each returns (log bytes, write boundaries) ---------------------------------


def raw(secret, rng):
    return b"export TOKEN=" + secret + b" # done\n", []


def byte_by_byte(secret, rng):
    data = b"token: " + secret + b"\n"
    return data, list(range(1, len(data)))


def split_across_writes(secret, rng):
    data = b"\x1b[32mpassword\x1b[0m=" + secret + b"; next\n"
    start = data.index(secret)
    return data, [start + 1, start + len(secret) // 2, start + len(secret) - 1]


def split_by_escapes(secret, rng):
    """Colour changes and a hyperlink inside the secret: the terminal stage removes them."""
    cuts = char_cuts(secret, range(3, len(secret), 7))
    pieces = [secret[a:b] for a, b in zip([0, *cuts], [*cuts, len(secret)])]
    glue = [b"\x1b[1m", b"\x1b[0;31m", b"\x1b]8;;http://x\x1b\\", b"\x07", b"\x1b[K"]
    return b"leak: " + b"".join(p + rng.choice(glue) for p in pieces) + b"\n", []


def progress_overwrite(secret, rng):
    return b"10%\r50%\r" + secret + b"\r\n", []


def base64_at(offset):
    def technique(secret, rng):
        blob = bytes(rng.randrange(256) for _ in range(offset)) + secret + b"tail-bytes"
        encode = base64.b64encode if offset % 2 == 0 else base64.urlsafe_b64encode
        return b"Authorization: Basic " + encode(blob) + b"\n", []

    technique.__name__ = f"base64_offset_{offset}"
    return technique


def url_encoded(secret, rng):
    return b"POST /login body=" + urllib.parse.quote(secret, safe="").encode() + b"&next=1\n", []


def url_encoded_lower(secret, rng):
    quoted = re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), urllib.parse.quote(secret, safe=""))
    return b"GET /?q=" + quoted.encode() + b"\n", []


def form_encoded(secret, rng):
    return b"form: user=ci&password=" + urllib.parse.quote_plus(secret, safe="").encode() + b"\n", []


def hex_dump(secret, rng):
    return b"key bytes: " + secret.hex().encode() + b" / " + secret.hex().upper().encode() + b"\n", []


def json_escaped(secret, rng):
    text = secret.decode()
    return (json.dumps({"password": text}).encode() + b"\n"
            + json.dumps({"password": text}, ensure_ascii=False).encode() + b"\n"), []


def inside_url(secret, rng):
    q = urllib.parse.quote(secret, safe="").encode()
    return b"Cloning https://ci:" + q + b"@git.example.com/app.git?token=" + q + b"#frag\n", []


def multi_line_raw(secret, rng):
    """A PEM key printed as is, once with '\n' and once through a pty ('\r\n'), indented."""
    indented = b"\n".join(b"    " + line for line in secret.split(b"\n"))
    return b"key:\n" + secret + b"\n" + secret.replace(b"\n", b"\r\n") + b"\r\nyaml: |\n" + indented + b"\n", []


TECHNIQUES = [raw, byte_by_byte, split_across_writes, split_by_escapes, progress_overwrite, base64_at(0),
              base64_at(1), base64_at(2), url_encoded, url_encoded_lower, form_encoded, hex_dump, json_escaped,
              inside_url, multi_line_raw]


# -- independent decoders ---------------------------------------------------------------------

_B64_RUN = re.compile(rb"[A-Za-z0-9+/_=-]{4,}")
_HEX_RUN = re.compile(rb"[0-9A-Fa-f]{2,}")
_JSON_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})|\\(.)")


def decodings(text: bytes) -> list[bytes]:
    """The output and everything a reader could decode from it."""
    out = [text, urllib.parse.unquote_to_bytes(text), urllib.parse.unquote_plus(text.decode()).encode()]
    for run in _B64_RUN.findall(text):
        standard = run.replace(b"-", b"+").replace(b"_", b"/")  # base64url read as base64
        for offset in range(4):
            chunk = standard[offset:].rstrip(b"=")
            try:
                out.append(base64.b64decode(chunk[: len(chunk) // 4 * 4]))
            except binascii.Error:
                pass
    for run in _HEX_RUN.findall(text):
        for offset in range(2):
            chunk = run[offset:]
            out.append(bytes.fromhex(chunk[: len(chunk) // 2 * 2].decode()))

    def unescape(m: re.Match) -> str:
        if m.group(1):
            return chr(int(m.group(1), 16))
        return {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}.get(m.group(2), m.group(2))

    # \ud83d\ude00 unescapes to two surrogates: a UTF-16 round trip joins them.
    unescaped = _JSON_ESCAPE.sub(unescape, text.decode())
    out.append(unescaped.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode())
    return out


def secret_traces(secret: bytes) -> list[bytes]:
    lines = [line for line in re.split(rb"\r\n|\r|\n", secret) if len(line) >= 6]
    return [secret, *lines]


@pytest.mark.parametrize("shape", ["line", "pem"])
@pytest.mark.parametrize("technique", TECHNIQUES, ids=lambda t: t.__name__)
@pytest.mark.parametrize("length", LENGTHS)
def test_no_trace_of_the_secret(length, technique, shape):
    rng = random.Random(f"{length}-{technique.__name__}-{shape}")
    secret = make_secret(length, rng) if shape == "line" else make_pem(length, rng)
    data, writes = technique(secret, rng)
    data = b"\x1b[36mjob started\x1b[0m\n" + data + b"job done\n"
    writes = [w + len(b"\x1b[36mjob started\x1b[0m\n") for w in writes]
    for cuts in (writes, sorted(rng.sample(range(1, len(data)), 5)), []):
        engine = native.LogEngine([b"unrelated-secret", secret])
        bounds = [0, *cuts, len(data)]
        outputs = [engine.feed(data[a:b]) for a, b in zip(bounds, bounds[1:])] + [engine.finish()]
        text = b"".join(o.text for o in outputs)
        text.decode("utf-8")
        assert b"[MASKED]" in text and text.startswith(b"job started\n") and text.endswith(b"job done\n")
        for decoded in decodings(text):
            for trace in secret_traces(secret):
                assert trace not in decoded, f"{technique.__name__} leaked a trace of the secret"
