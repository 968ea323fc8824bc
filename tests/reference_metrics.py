"""Plain-Python reference of the metric engine (native/src/ddsketch.c, downsample.c).

Written from the contract in native/include/prts/metrics.h, not from the C code: bins are a
dict, collapsing is "after each insertion, move every key below top - max_bins + 1 up to
it", serialisation is struct.pack. Every float operation that decides a bin or a reported
value (log, the multiplication by 1 / ln gamma, ceil, exp) is the same IEEE double
operation as in C, so the C engine must agree with this one exactly, not approximately.
Slow on purpose; it lives in tests/ and is never imported by the product.
"""

from __future__ import annotations

import math
import struct
import sys
import zlib
from dataclasses import dataclass, field

MAGIC = b"PDDS"
VERSION = 1
HEADER = struct.Struct("<4sBBHIIdQQddd")  # 64 bytes
assert HEADER.size == 64
MIN_ACCURACY, MAX_ACCURACY = 1e-6, 0.5
MIN_BINS, MAX_BINS = 16, 1 << 20


@dataclass
class _Store:
    """Counts by key, where every key below top - max_bins + 1 is counted at that key."""

    bins: dict[int, int] = field(default_factory=dict)
    top: int | None = None

    def add(self, key: int, n: int, max_bins: int) -> None:
        if self.top is None or key > self.top:
            self.top = key
            floor = key - max_bins + 1
            low = [k for k in self.bins if k < floor]
            if low:
                moved = sum(self.bins.pop(k) for k in low)
                self.bins[floor] = self.bins.get(floor, 0) + moved
        key = max(key, self.top - max_bins + 1)
        self.bins[key] = self.bins.get(key, 0) + n

    @property
    def total(self) -> int:
        return sum(self.bins.values())

    def encode(self) -> bytes:
        if not self.bins:
            return struct.pack("<i", 0) + varint(0)
        lo, hi = min(self.bins), max(self.bins)
        out = struct.pack("<i", lo) + varint(hi - lo + 1)
        return out + b"".join(varint(self.bins.get(k, 0)) for k in range(lo, hi + 1))


def varint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


class ReferenceDDSketch:
    def __init__(self, relative_accuracy: float = 0.01, max_bins: int = 2048):
        self.relative_accuracy = relative_accuracy
        self.max_bins = max_bins
        gamma = (1.0 + relative_accuracy) / (1.0 - relative_accuracy)
        self.ln_gamma = math.log(gamma)
        self.inv_ln_gamma = 1.0 / self.ln_gamma
        self.rep_factor = 2.0 / (1.0 + gamma)
        self.min_indexable = sys.float_info.min * gamma
        self.key_min = self.key(self.min_indexable)
        self.key_max = self.key(sys.float_info.max)
        self.count = 0
        self.zero = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.neg = _Store()
        self.pos = _Store()

    def key(self, ax: float) -> int:
        return math.ceil(math.log(ax) * self.inv_ln_gamma)

    def rep(self, key: int) -> float:
        try:
            return math.exp(key * self.ln_gamma) * self.rep_factor
        except OverflowError:  # C's exp() gives +inf; the quantile clamps it to max
            return math.inf

    def add(self, x: float) -> None:
        x = float(x)
        if math.isnan(x) or math.isinf(x):
            raise ValueError(x)
        ax = abs(x)
        if ax < self.min_indexable:
            self.zero += 1
        elif x > 0:
            self.pos.add(self.key(ax), 1, self.max_bins)
        else:
            self.neg.add(-self.key(ax), 1, self.max_bins)
        self.count += 1
        self.sum += x
        if x < self.min:
            self.min = x
        if x > self.max:
            self.max = x

    def add_many(self, values) -> None:
        for x in values:
            self.add(x)

    def merge(self, other: ReferenceDDSketch) -> None:
        assert other.relative_accuracy == self.relative_accuracy
        for mine, theirs in ((self.pos, other.pos), (self.neg, other.neg)):
            for k, c in list(theirs.bins.items()):
                mine.add(k, c, self.max_bins)
        self.zero += other.zero
        self.count += other.count
        self.sum += other.sum
        if other.min < self.min:
            self.min = other.min
        if other.max > self.max:
            self.max = other.max

    def quantile(self, q: float) -> float | None:
        if not 0.0 <= q <= 1.0:
            raise ValueError(q)
        if self.count == 0:
            return None
        last = self.count - 1
        r = min(int(q * float(last)), last)
        if r == 0:
            return self.min
        if r == last:
            return self.max
        seen = 0
        value = None
        for k in sorted(self.neg.bins):
            seen += self.neg.bins[k]
            if seen > r:
                value = -self.rep(-k)
                break
        if value is None:
            seen += self.zero
            if seen > r:
                value = 0.0
        if value is None:
            for k in sorted(self.pos.bins):
                seen += self.pos.bins[k]
                if seen > r:
                    value = self.rep(k)
                    break
        assert value is not None
        return min(max(value, self.min), self.max)

    def to_bytes(self) -> bytes:
        body = self.neg.encode() + self.pos.encode()
        return encode_raw(
            max_bins=self.max_bins,
            accuracy=self.relative_accuracy,
            count=self.count,
            zero=self.zero,
            sum_=self.sum,
            min_=self.min,
            max_=self.max,
            body=body,
        )


def encode_raw(
    *,
    max_bins: int,
    accuracy: float,
    count: int,
    zero: int,
    sum_: float,
    min_: float,
    max_: float,
    body: bytes,
    magic: bytes = MAGIC,
    version: int = VERSION,
    flags: int = 0,
    reserved: int = 0,
    length: int | None = None,
) -> bytes:
    """Frame arbitrary (possibly inconsistent) content with a correct length and CRC, so that
    tests can reach the content checks behind the framing checks."""
    size = HEADER.size + len(body) + 4 if length is None else length
    head = HEADER.pack(magic, version, flags, reserved, size, max_bins, accuracy, count, zero, sum_, min_, max_)
    data = head + body
    return data + struct.pack("<I", zlib.crc32(data))


def store_bytes(lo: int, counts: list[int]) -> bytes:
    """One store as serialised: lowest key, number of bins, the counts."""
    return struct.pack("<i", lo) + varint(len(counts)) + b"".join(varint(c) for c in counts)


def with_crc(data: bytes) -> bytes:
    """data with its last four bytes replaced by the CRC of the rest."""
    return data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]))


@dataclass
class ReferenceDownsampled:
    count: list[int]
    sum: list[float]
    min: list[float]
    max: list[float]
    last: list[float]
    last_timestamp: list[int]


def reference_downsample(timestamps, values, start: int, width: int, buckets: int) -> ReferenceDownsampled:
    nan = math.nan
    out = ReferenceDownsampled([0] * buckets, [0.0] * buckets, [nan] * buckets, [nan] * buckets, [nan] * buckets,
                               [-(2**63)] * buckets)
    if any(math.isnan(v) for v in values):
        raise ValueError("NaN")
    for t, v in zip(timestamps, values):
        if not start <= t < start + width * buckets:
            continue
        b = (t - start) // width
        if out.count[b] == 0:
            out.sum[b] = v
            out.min[b] = out.max[b] = out.last[b] = v
            out.last_timestamp[b] = t
        else:
            out.sum[b] += v
            if v < out.min[b]:
                out.min[b] = v
            if v > out.max[b]:
                out.max[b] = v
            if t >= out.last_timestamp[b]:
                out.last[b] = v
                out.last_timestamp[b] = t
        out.count[b] += 1
    return out
