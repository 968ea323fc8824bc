"""Stripping terminal escapes: ``appliance.native.strip_ansi`` against ``ansifilter``
(Debian's), one thread each, on the same 1 GiB of real CI logs.

    .venv/bin/python bench/ansi_strip.py         # apt-get install ansifilter first

The corpus is ``_common.corpus()`` (real pip, gcc and pytest logs with colours forced),
read beforehand so both sides read a warm page cache.

- ours: ``strip_ansi`` (the log engine's terminal handling with no secrets: escape
  sequences dropped, '\\r' overwrites collapsed, invalid UTF-8 replaced, control
  characters dropped, lines indexed and SGR styles parsed into runs as always) fed the
  file in 1 MiB slices of a resident ``mmap``; best of 3.
- reference: ``ansifilter --max-size=2G FILE`` writing plain text to a pipe this process
  reads and discards, process start and exit included. It is about a hundred times
  slower, so it runs once.

The goal (issue 3) is ours >= 3x ansifilter. As a sanity check both must produce the same
number of lines (a difference is printed).
"""

from __future__ import annotations

import mmap
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_time, corpus, report  # noqa: E402

from appliance import native  # noqa: E402

GOAL = 3
CHUNK = 1 << 20


def strip_file(view: memoryview) -> int:
    """Lines of the stripped text, fed as the appliance feeds a job's output."""
    engine = native.LogEngine()
    lines = sum(len(engine.feed(view[i : i + CHUNK]).line_starts) for i in range(0, len(view), CHUNK))
    return lines + len(engine.finish().line_starts)


def ansifilter(path: Path) -> tuple[float, int]:
    if shutil.which("ansifilter") is None:
        sys.exit("ansifilter is not installed: apt-get install ansifilter")
    start = time.perf_counter()
    proc = subprocess.Popen(["ansifilter", "--max-size=2G", str(path)], stdout=subprocess.PIPE)
    lines = 0
    while block := proc.stdout.read(CHUNK):
        lines += block.count(b"\n")
    if proc.wait() != 0:
        sys.exit(f"ansifilter failed with status {proc.returncode}")
    return time.perf_counter() - start, lines


def main() -> None:
    path = corpus()
    size = path.stat().st_size
    print(f"corpus: {path} ({size / 2**30:.2f} GiB)")
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mapping:
        view = memoryview(mapping)
        try:
            ours, our_lines = best_time(lambda: strip_file(view), repeat=3)
        finally:
            view.release()
    theirs, their_lines = ansifilter(path)
    print(f"lines out: ours {our_lines}, ansifilter {their_lines}")
    if our_lines != their_lines:
        print("note: the line counts differ, so the two did not read the text the same way")
    report("strip ANSI", size, ours, "ansifilter", theirs, GOAL)


if __name__ == "__main__":
    main()
