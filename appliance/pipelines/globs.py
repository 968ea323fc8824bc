"""Glob patterns of pipeline files: branch, tag and path filters.

One syntax for all of them, the one people know from CI files:

- ``*`` matches any run of characters within one path segment (never ``/``);
- ``**`` matches across segments: ``src/**`` is everything under ``src/``, ``**/*.py``
  every Python file at any depth, ``docs/**/index.md`` also ``docs/index.md``;
- ``?`` matches one character other than ``/``;
- a pattern ending in ``/`` means everything under that directory (``dist/`` = ``dist/**``);
- every other character stands for itself (``[``, ``{`` and ``!`` included: there are no
  classes, alternatives or negations; ``paths_ignore`` is how a filter excludes).

A pattern matches the whole name, not a part of it: ``main`` does not match ``main2``.
"""

from __future__ import annotations

import functools
import re
from typing import Iterable


@functools.lru_cache(maxsize=1024)
def compile_glob(pattern: str) -> re.Pattern[str]:
    if pattern.endswith("/"):
        pattern += "**"
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        if pattern.startswith("**", i):
            # Collapse runs of stars: "***" means what "**" means.
            j = i
            while j < n and pattern[j] == "*":
                j += 1
            at_segment_start = i == 0 or pattern[i - 1] == "/"
            if at_segment_start and j < n and pattern[j] == "/":
                out.append("(?:[^/]*/)*")  # "**/": zero or more whole segments
                j += 1
            else:
                out.append(".*")
            i = j
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out), re.DOTALL)


def match(pattern: str, name: str) -> bool:
    """Whether ``name`` (a branch, a tag, a path relative to the repository) matches ``pattern``."""
    return compile_glob(pattern).fullmatch(name) is not None


def match_any(patterns: Iterable[str], name: str) -> bool:
    return any(match(p, name) for p in patterns)
