"""Line index of stored logs: ours against `wc -l`, one thread each, on 1 GiB of real CI logs.

    .venv/bin/python bench/lineindex.py         # or `make bench`

The corpus is ``_common.corpus()``, read beforehand so both sides read a warm page cache.
Both sides read the file the same way, with read() into one buffer, chunk by chunk (wc
uses its own buffer; ours is a 256 KiB page-aligned one):

- reference: ``wc -l FILE``, which counts newlines; process start and exit included;
- ours, index: ``appliance.native.line_starts(chunk, base=offset)`` for every chunk: an
  array of every line's start offset (8 bytes a line) per chunk, as the log engine keeps
  one per stored chunk — more work than counting;
- ours, count: ``prts_line_count`` on every chunk, exactly what ``wc -l`` computes.

Each figure is the best of 5 runs; the line counts must agree. The goal is ours >= 1x wc -l.
"""

from __future__ import annotations

import mmap
import sys
from array import array
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_run, best_time, corpus, report  # noqa: E402

from appliance import native  # noqa: E402
from appliance._native import ffi, lib  # noqa: E402

GOAL = 1.0
# Page-aligned (an anonymous mapping), because the kernel copies into a misaligned buffer
# several times slower on some CPUs; small enough to stay in L2 between read and index.
CHUNK = 256 * 1024


def chunks(path: Path):
    """(file offset, view of the chunk) for every chunk of ``path``, in one reused buffer."""
    buffer = mmap.mmap(-1, CHUNK)
    offset = 0
    with open(path, "rb", buffering=0) as f:
        while got := f.readinto(buffer):
            with memoryview(buffer)[:got] as view:
                yield offset, view
            offset += got
    buffer.close()


def index(path: Path) -> list[array]:
    parts, ended_line = [], True
    for offset, view in chunks(path):
        starts = native.line_starts(view, offset)
        # A chunk that begins mid-line does not begin a line.
        parts.append(starts if ended_line else starts[1:])
        ended_line = view[-1] == 0x0A
    return parts


def count(path: Path) -> int:
    lines, ended_line = 0, True
    for _, view in chunks(path):
        with ffi.from_buffer("uint8_t[]", view) as buf:
            lines += lib.prts_line_count(buf, len(view)) - (not ended_line)
        ended_line = view[-1] == 0x0A
    return lines


def main() -> None:
    path = corpus()
    size = path.stat().st_size
    print(f"corpus: {path} ({size / 2**30:.2f} GiB)")
    wc, out = best_run(["wc", "-l", str(path)])
    expected = int(out.split()[0])
    ours_index, starts = best_time(lambda: index(path))
    ours_count, counted = best_time(lambda: count(path))
    indexed = sum(map(len, starts))
    if not indexed == counted == expected:
        sys.exit(f"line counts disagree: index {indexed}, count {counted}, wc -l {expected}")
    report("line index (every line's offset)", size, ours_index, "wc -l", wc, GOAL)
    report("line count", size, ours_count, "wc -l", wc, GOAL)
    print(f"  {expected} lines")


if __name__ == "__main__":
    main()
