"""The log engine (mask 100 secrets + terminal handling + line index, one pass) against a
Python ``re`` implementation of the same work, on 1 GiB of real CI logs.

    .venv/bin/python bench/log_engine.py [--python-slice MIB]

The corpus is ``_common.corpus()`` made with this benchmark's 100 secrets planted (real
pip, gcc and pytest logs with colours forced, repeated and varied; tokens, keys and
passwords of 8 to 64 bytes, so about 650 masking patterns with the encoded variants).

- ours: ``appliance.native.LogEngine(secrets)`` fed the file in 1 MiB slices of a
  resident ``mmap`` (no copy in), every output taken out as Python objects (text bytes,
  line starts, style runs), on one core; best of 3 (the first also faults the mapping in).
- reference: the same job written with Python's ``re`` (decode with replacement, one
  regex for escape sequences with SGR read into style runs, '\\r' overwrites, control
  characters dropped, one alternation of every pattern for masking, line starts). It
  runs at about a megabyte a second, so it is timed on the first ``--python-slice`` MiB
  (default 16) and its time per byte is extrapolated to the corpus; the output says so.

Goals (issue 3): ours >= 2 GB/s per core, and >= 10x the reference. For context it also
prints ours on the same logs with the escape sequences removed beforehand: the real
logs carry an escape sequence every 16 bytes (pytest and gcc colour every token), which
is where the engine spends its time. Before timing, the output of the first 64 MiB is
checked to hold no planted secret and a mask for each planting.
"""

from __future__ import annotations

import argparse
import mmap
import random
import re
import string
import sys
import time
from array import array
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import GIB, best_time, corpus, report  # noqa: E402

from appliance import logmask, native  # noqa: E402

GOAL_GBPS = 2.0
GOAL_RATIO = 10
CHUNK = 1 << 20
CHECK_BYTES = 64 << 20


def bench_secrets(count: int = 100) -> tuple[bytes, ...]:
    """Secrets shaped like the ones CI jobs hold, the same every run."""
    rng = random.Random(3)
    alnum = string.ascii_letters + string.digits
    shapes = [
        lambda: "ghp_" + "".join(rng.choices(alnum, k=36)),  # GitHub token
        lambda: "AKIA" + "".join(rng.choices(string.ascii_uppercase + string.digits, k=16)),  # AWS key id
        lambda: "".join(rng.choices(alnum + "+/", k=40)),  # AWS secret key
        lambda: "".join(rng.choices(alnum + "!#$%&*+-.=?@^_~", k=rng.randint(8, 24))),  # password
        lambda: "".join(rng.choices("0123456789abcdef", k=64)),  # API key
        lambda: "xoxb-" + "-".join("".join(rng.choices(string.digits, k=12)) for _ in range(2))
        + "-" + "".join(rng.choices(alnum, k=24)),  # Slack token
    ]
    return tuple(shapes[i % len(shapes)]().encode() for i in range(count))


def run_engine(view: memoryview, secrets) -> tuple[int, int, int]:
    """Feed view through a fresh engine; (output bytes, lines, style runs)."""
    engine = native.LogEngine(secrets)
    size = lines = runs = 0
    for start in range(0, len(view), CHUNK):
        out = engine.feed(view[start : start + CHUNK])
        size += len(out.text)
        lines += len(out.line_starts)
        runs += len(out.runs)
    out = engine.finish()
    return size + len(out.text), lines + len(out.line_starts), (runs + len(out.runs)) // out.RUN_FIELDS


def check_masking(view: memoryview, secrets, planted: int) -> None:
    text = native.process_log(view[:CHECK_BYTES], secrets).text
    leaked = [s for s in secrets if s in text]
    masks = text.count(b"[MASKED]")
    if leaked or masks < planted:
        sys.exit(f"masking check failed: {len(leaked)} secrets leaked, {masks} masks for {planted} plantings")
    print(f"check: first {CHECK_BYTES >> 20} MiB: {planted} plantings, {masks} masks, no secret in the output")


# -- the Python reference -----------------------------------------------------------------

_SEQUENCE = re.compile(r"\x1b(?:\[([0-?]*)[ -/]*([@-~])|\][^\x07\x1b\n]*(?:\x07|\x1b\\)?"
                       r"|[PX^_][^\x1b\n]*(?:\x1b\\)?|[ -/]*[0-~])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_BASIC = {**{30 + i: ("fg", i) for i in range(8)}, **{40 + i: ("bg", i) for i in range(8)},
          **{90 + i: ("fg", 8 + i) for i in range(8)}, **{100 + i: ("bg", 8 + i) for i in range(8)}}
_FLAGS = {1: 1, 2: 2, 3: 4, 4: 8, 7: 16, 9: 32}
_FLAGS_OFF = {22: 3, 23: 4, 24: 8, 27: 16, 29: 32}


def _sgr(style: tuple[int, int, int], params: str) -> tuple[int, int, int]:
    fg, bg, flags = style
    codes = [int(p) if p.isdigit() else 0 for p in params.split(";")]
    i = 0
    while i < len(codes):
        c = codes[i]
        if c == 0:
            fg = bg = flags = 0
        elif c in _FLAGS:
            flags |= _FLAGS[c]
        elif c in _FLAGS_OFF:
            flags &= ~_FLAGS_OFF[c]
        elif c in _BASIC:
            which, index = _BASIC[c]
            fg, bg = (0x1000000 | index, bg) if which == "fg" else (fg, 0x1000000 | index)
        elif c in (39, 49):
            fg, bg = (0, bg) if c == 39 else (fg, 0)
        elif c in (38, 48) and i + 2 < len(codes) and codes[i + 1] == 5:
            fg, bg = (0x1000000 | codes[i + 2], bg) if c == 38 else (fg, 0x1000000 | codes[i + 2])
            i += 2
        elif c in (38, 48) and i + 4 < len(codes) and codes[i + 1] == 2:
            colour = 0x2000000 | codes[i + 2] << 16 | codes[i + 3] << 8 | codes[i + 4]
            fg, bg = (colour, bg) if c == 38 else (fg, colour)
            i += 4
        i += 1
    return fg, bg, flags


def python_engine(data: bytes, mask: re.Pattern) -> tuple[bytes, array, list]:
    """Mask + terminal handling + line index with the standard library, line by line."""
    out, starts, runs = [], array("Q"), []
    pos, style = 0, (0, 0, 0)
    lines = data.decode("utf-8", "replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for line in lines:
        if "\r" in line:
            line = line.rstrip("\r")
            line = line[line.rfind("\r") + 1 :]
        pieces = []
        if "\x1b" in line:
            last = 0
            for m in _SEQUENCE.finditer(line):
                pieces.append((line[last : m.start()], style))
                if m.group(2) == "m":
                    style = _sgr(style, m.group(1))
                last = m.end()
            pieces.append((line[last:], style))
        else:
            pieces.append((line, style))
        visible = "".join(_CONTROL.sub("", text) for text, _ in pieces)
        encoded = mask.sub("[MASKED]", visible).encode()
        at = pos
        for text, piece_style in pieces:
            if piece_style != (0, 0, 0) and text:
                runs.append((at, len(text.encode()), *piece_style))
            at += len(text.encode())
        starts.append(pos)
        out += [encoded, b"\n"]
        pos += len(encoded) + 1
    return b"".join(out), starts, runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python-slice", type=int, default=16, metavar="MIB",
                        help="MiB of the corpus the Python reference is timed on (default 16)")
    args = parser.parse_args()
    secrets = bench_secrets()
    patterns = logmask.secret_patterns(secrets)
    built = corpus(GIB, secrets)
    size = built.stat().st_size
    print(f"corpus: {built} ({size / GIB:.2f} GiB), {len(secrets)} secrets -> {len(patterns)} patterns "
          f"({min(map(len, patterns))}..{max(map(len, patterns))} bytes)")
    with open(built, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mapping:
        view = memoryview(mapping)
        try:
            planted = len(re.findall(b"|".join(map(re.escape, secrets)), view[:CHECK_BYTES]))
            check_masking(view, secrets, planted)
            ours, (out_bytes, lines, runs) = best_time(lambda: run_engine(view, secrets), repeat=3)
            print(f"ours: {size} bytes in -> {out_bytes} bytes, {lines} lines, {runs} style runs out")

            mask = re.compile("|".join(map(re.escape, sorted((p.decode() for p in patterns), key=len, reverse=True))))
            sample = bytes(view[: args.python_slice << 20])
            start = time.perf_counter()
            python_engine(sample, mask)
            per_byte = (time.perf_counter() - start) / len(sample)
            print(f"reference: Python re timed on the first {len(sample) >> 20} MiB "
                  f"({per_byte * len(sample):.1f} s), extrapolated per byte to the {size / GIB:.2f} GiB corpus")
            report("mask+ANSI+index", size, ours, "Python re", per_byte * size, GOAL_RATIO)
            verdict = "met" if size / ours / 1e9 >= GOAL_GBPS else "NOT met"
            print(f"mask+ANSI+index: ours {size / ours / 1e9:.2f} GB/s on one core "
                  f"(goal >= {GOAL_GBPS} GB/s: {verdict})", flush=True)

            plain = memoryview(native.strip_ansi(view))  # the same logs as a job without colours prints them
            plain_time, _ = best_time(lambda: run_engine(plain, secrets), repeat=3)
            print(f"for context, the same logs without escape sequences ({len(plain) / GIB:.2f} GiB): "
                  f"ours {len(plain) / plain_time / 1e9:.2f} GB/s")
        finally:
            view.release()


if __name__ == "__main__":
    main()
