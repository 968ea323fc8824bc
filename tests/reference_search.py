"""A plain-Python literal search: what the C search engine must agree with, byte for byte.

Slow on purpose: it compares the needle at every position with a slice, so it shares no
algorithm with the engine it checks.
"""

from __future__ import annotations


def _fold(data: bytes) -> bytes:
    return data.lower()  # bytes.lower folds ASCII letters only, as the engine does


def reference_search(data: bytes, needle: bytes, *, ignore_case: bool = False, start_line: int = 0,
                     base_offset: int = 0, limit: int | None = None) -> tuple[list[tuple[int, int]], bool]:
    """Every non-overlapping match, left to right, as (line, offset); and whether ``limit``
    cut the list short while another match remained."""
    if ignore_case:
        data, needle = _fold(data), _fold(needle)
    matches: list[tuple[int, int]] = []
    line, counted, i = start_line, 0, 0
    while i + len(needle) <= len(data):
        if data[i:i + len(needle)] != needle:
            i += 1
            continue
        if limit is not None and len(matches) == limit:
            return matches, True
        line += data.count(b"\n", counted, i)
        counted = i
        matches.append((line, base_offset + i))
        i += len(needle)
    return matches, False
