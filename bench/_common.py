"""Helpers shared by the benchmarks in ``bench/``: the cached corpus, timing, the ratio line.

    from _common import GIB, corpus, best_time, best_run, report

``corpus()`` is a 1 GiB file of real CI logs (``tests/logcorpus.py``: pip, gcc and pytest
runs with colours, varied and repeated, secrets planted) made once and kept in
``$PRTS_BENCH_CACHE`` (default ``~/.cache/prts-bench``); it is read once per call so
every measurement sees a warm page cache. ``best_time`` and ``best_run`` take the best of
a few runs, in this process or of a reference tool's process. ``report`` prints one line:
our throughput, the reference's, and their ratio against the goal.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import logcorpus  # noqa: E402

GIB = 1 << 30
CACHE = Path(os.environ.get("PRTS_BENCH_CACHE", Path.home() / ".cache" / "prts-bench"))
# Planted in every corpus, so a benchmark has rare needles with known counts.
SECRETS = (b"ghp_prtsBench0123456789abcdefABCDEF01", b"AKIAPRTSBENCH7EXAMPLE")
REPEAT = 5


def corpus(size: int = GIB, secrets: tuple[bytes, ...] = SECRETS) -> Path:
    """The corpus file of ``size`` bytes, made if missing or if ``logcorpus.py`` changed
    (then the stale file of the same size and secrets is removed), and read into the page
    cache."""
    generator = hashlib.sha256((ROOT / "tests" / "logcorpus.py").read_bytes()).hexdigest()[:12]
    variant = hashlib.sha256(repr(sorted(secrets)).encode()).hexdigest()[:8]
    path = CACHE / f"corpus-{size}-{variant}-{generator}.log"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        for stale in CACHE.glob(f"corpus-{size}-{variant}-*"):
            stale.unlink()
        print(f"making {path} ...", file=sys.stderr)
        tmp = path.with_suffix(".tmp")
        logcorpus.make_big_corpus(tmp, size, secrets)
        tmp.rename(path)
    warm(path)
    return path


def warm(path: Path) -> None:
    """Read ``path`` once so that both sides of a comparison search a warm page cache."""
    chunk = mmap.mmap(-1, 1 << 20)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(chunk):
            pass
    chunk.close()


def best_time(fn, repeat: int = REPEAT):
    """(seconds of the fastest of ``repeat`` calls of ``fn()``, what the last call returned)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def best_run(argv: list[str], repeat: int = REPEAT) -> tuple[float, str]:
    """(seconds of the fastest of ``repeat`` runs of a command, process start and exit
    included, its stdout). A missing tool stops the benchmark with how to get it."""
    if shutil.which(argv[0]) is None:
        sys.exit(f"{argv[0]} is not installed: `make bench` installs the reference tools")

    def run() -> str:
        return subprocess.run(argv, check=True, stdout=subprocess.PIPE, text=True).stdout

    return best_time(run, repeat)


def report(what: str, size: int, ours: float, reference_name: str, reference: float, goal: float) -> None:
    ratio = reference / ours
    verdict = "met" if ratio >= goal else "NOT met"
    print(f"{what}: ours {size / ours / 1e9:.2f} GB/s ({ours * 1e3:.0f} ms), {reference_name} "
          f"{size / reference / 1e9:.2f} GB/s ({reference * 1e3:.0f} ms), ratio {ratio:.2f}x "
          f"(goal >= {goal}x: {verdict})", flush=True)
