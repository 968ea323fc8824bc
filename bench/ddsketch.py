"""Insert throughput of the C DDSketch and of the downsampler, side by side with references.

    .venv/bin/python bench/ddsketch.py                 # 10 million values
    .venv/bin/python bench/ddsketch.py --n 1000000     # quicker

Prints nanoseconds per inserted value for ``DDSketch.add_many`` (appliance/native.py, C)
over an ``array('d')`` of log-normal values (the shape of latencies), then the same for each
reference present, value by value as their API takes them, and the ratio:

- ``ddsketch``, Datadog's Python package (sketches-py), its collapsing-lowest sketch with the
  same accuracy and bin limit. It is not a dependency of PRTS; for
  this comparison only: ``.venv/bin/uv pip install --python .venv/bin/python ddsketch``.
  The bench says so when it is missing.
- the plain-Python reference of the tests (tests/reference_metrics.py), the same algorithm.

Both sketches' p50/p99 are printed beside the C sketch's as a sanity check. Then the
downsampler: points per second for ``downsample`` of n points (a day of them, in time order
and shuffled) into 1440 one-minute buckets, against the Python reference on min(n, 1e6)
unsorted points. The goal for add_many is <= 20 ns a value.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from array import array
from pathlib import Path

HERE = Path(__file__).resolve().parent
# This file is named ddsketch.py: drop its folder from the path so that `import ddsketch`
# finds Datadog's package rather than this script.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent / "tests"))
from reference_metrics import ReferenceDDSketch, reference_downsample  # noqa: E402

from appliance.native import DDSketch, downsample  # noqa: E402


def lognormal(n: int, seed: int = 1) -> array:
    try:
        import numpy as np
    except ImportError:
        rnd = random.Random(seed)
        return array("d", (rnd.lognormvariate(0.0, 2.0) for _ in range(n)))
    return array("d", np.random.default_rng(seed).lognormal(0.0, 2.0, n).tobytes())


def best_of(repeats: int, fn) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_sketch(values: array, reference_n: int) -> None:
    n = len(values)
    sketch = DDSketch()

    def c_run():
        nonlocal sketch
        sketch = DDSketch()
        sketch.add_many(values)

    seconds = best_of(3, c_run)
    c_ns = seconds * 1e9 / n
    print(f"prts DDSketch.add_many (C)      {n:>11,} values  {c_ns:8.2f} ns/value  (goal <= 20)")
    print(f"  p50 {sketch.quantile(0.5):.6g}  p99 {sketch.quantile(0.99):.6g}  "
          f"{len(sketch.to_bytes())} bytes serialised")

    subset = values[:reference_n]
    try:
        from ddsketch import LogCollapsingLowestDenseDDSketch as DatadogSketch
    except ImportError:
        print("ddsketch (Datadog, sketches-py)   not installed: "
              ".venv/bin/uv pip install --python .venv/bin/python ddsketch")
    else:
        dd = DatadogSketch(relative_accuracy=0.01, bin_limit=2048)  # the same policy and bound
        add = dd.add
        t0 = time.perf_counter()
        for v in subset:
            add(v)
        dd_ns = (time.perf_counter() - t0) * 1e9 / len(subset)
        print(f"ddsketch (Datadog, sketches-py) {len(subset):>11,} values  {dd_ns:8.2f} ns/value  "
              f"ratio {dd_ns / c_ns:7.1f}x")
        print(f"  p50 {dd.get_quantile_value(0.5):.6g}  p99 {dd.get_quantile_value(0.99):.6g}")

    ref = ReferenceDDSketch()
    add = ref.add
    t0 = time.perf_counter()
    for v in subset:
        add(v)
    ref_ns = (time.perf_counter() - t0) * 1e9 / len(subset)
    print(f"tests/reference_metrics.py      {len(subset):>11,} values  {ref_ns:8.2f} ns/value  "
          f"ratio {ref_ns / c_ns:7.1f}x")
    print(f"  p50 {ref.quantile(0.5):.6g}  p99 {ref.quantile(0.99):.6g}")


def bench_downsample(n: int, reference_n: int) -> None:
    rnd = random.Random(2)
    day = 86_400_000
    # A day of points, a little beyond it at both ends (ignored), in random order.
    timestamps = array("q", (rnd.randrange(-day // 100, day + day // 100) for _ in range(n)))
    values = lognormal(n, seed=3)
    ordered = array("q", sorted(timestamps))
    seconds = best_of(3, lambda: downsample(ordered, values, 0, 60_000, 1440))
    print(f"prts downsample (C), in order   {n:>11,} points  {seconds * 1e9 / n:8.2f} ns/point  "
          f"({n / seconds / 1e6:.0f} M points/s, 1440 buckets)")
    seconds = best_of(3, lambda: downsample(timestamps, values, 0, 60_000, 1440))
    c_ns = seconds * 1e9 / n
    print(f"prts downsample (C), unsorted   {n:>11,} points  {c_ns:8.2f} ns/point  "
          f"({n / seconds / 1e6:.0f} M points/s, 1440 buckets)")
    m = min(n, reference_n, 1_000_000)
    t0 = time.perf_counter()
    reference_downsample(timestamps[:m], values[:m], 0, 60_000, 1440)
    ref_ns = (time.perf_counter() - t0) * 1e9 / m
    print(f"tests/reference_metrics.py      {m:>11,} points  {ref_ns:8.2f} ns/point  ratio {ref_ns / c_ns:7.1f}x "
          f"(to unsorted)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000, help="values inserted (default 10 million)")
    parser.add_argument("--reference-n", type=int, default=None,
                        help="values given to the Python references (default: --n)")
    args = parser.parse_args()
    reference_n = args.reference_n or args.n
    values = lognormal(args.n)
    bench_sketch(values, reference_n)
    bench_downsample(args.n, reference_n)


if __name__ == "__main__":
    main()
