"""Literal search of stored logs: ours against ripgrep, one thread each, on 1 GiB of real CI logs.

    .venv/bin/python bench/search.py            # or `make bench`, which installs ripgrep

The corpus is ``_common.corpus()`` (real pip, gcc and pytest logs with colours, repeated
and varied, secrets planted), read beforehand so both sides search a warm page cache.
For each needle, case-sensitive and ASCII case-insensitive:

- ours: ``appliance.native.search(mapping, needle)`` in this process, where ``mapping`` is
  a fresh read-only ``mmap`` of the file, so the figure includes mapping, page faults,
  the search, every match as a (line number, byte offset) pair in two arrays, and
  unmapping;
- reference: ``rg -j1 -F -c [-i] NEEDLE FILE`` (one thread, fixed string, count of
  matching lines: ripgrep's cheapest output, no line numbers), process start and exit
  included; run with its default (it maps the file, like us) and with ``--no-mmap``, and
  the faster of the two is the reference.

So ours does more work than the reference (numbers every line, lists every match, not
just matching lines). As a correctness check, the number of distinct lines among our
matches must equal ripgrep's count. Each figure is the best of 5 runs. Also printed, for
information: our search alone on a buffer that is already mapped and faulted in.
The goal is ours >= 0.8x ripgrep.
"""

from __future__ import annotations

import mmap
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SECRETS, best_run, best_time, corpus, report  # noqa: E402

from appliance import native  # noqa: E402

GOAL = 0.8
NEEDLES = [
    (b"FAILED", False),  # in every pytest log: about 400 thousand matches
    (SECRETS[0], False),  # planted: about a thousand matches, so this is scan speed
    (b"error", True),  # in every kind of log and case: about 1.5 million matches
    (SECRETS[1].lower(), True),
]


def search_file(path: Path, needle: bytes, ignore_case: bool) -> native.SearchMatches:
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mapping:
        return native.search(mapping, needle, ignore_case=ignore_case)


def main() -> None:
    path = corpus()
    size = path.stat().st_size
    print(f"corpus: {path} ({size / 2**30:.2f} GiB)")
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as resident:
        # The first of the runs faults the pages in; the best is of the later ones.
        engine_only = {key: best_time(lambda key=key: native.search(resident, key[0], ignore_case=key[1]))[0]
                       for key in NEEDLES}
    for needle, ignore_case in NEEDLES:
        label = f"search {needle.decode()!r}" + (" ignoring case" if ignore_case else "")
        ours, matches = best_time(lambda needle=needle, ignore_case=ignore_case: search_file(path, needle, ignore_case))
        rg = ["rg", "-j1", "-F", "-c"] + (["-i"] if ignore_case else []) + ["--", needle.decode(), str(path)]
        runs = [best_run(rg), best_run(rg[:4] + ["--no-mmap"] + rg[4:])]
        reference, out = min(runs)
        lines = len(set(matches.lines))
        if lines != int(out or 0):
            sys.exit(f"{label}: we found matches on {lines} lines, rg counted {out.strip()}")
        report(label, size, ours, "rg -j1 -F -c" + (" -i" if ignore_case else ""), reference, GOAL)
        print(f"  {len(matches)} matches on {lines} lines; rg mmap {runs[0][0] * 1e3:.0f} ms, "
              f"--no-mmap {runs[1][0] * 1e3:.0f} ms; ours on a resident mapping "
              f"{size / engine_only[(needle, ignore_case)] / 1e9:.2f} GB/s")


if __name__ == "__main__":
    main()
