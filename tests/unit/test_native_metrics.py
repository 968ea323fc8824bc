"""The C metric engine (DDSketch, downsampling) against the plain-Python reference.

The reference (tests/reference_metrics.py) runs the same algorithm with the same IEEE
double operations, so the C sketch must equal it exactly: same bytes when serialised, same
quantiles. Separately, quantiles are held against the true quantiles of the data (the 1 %
guarantee), merges against the sketch of the concatenated data, and damaged serialisations
against their named exceptions.
"""

from __future__ import annotations

import math
import random
import struct
import sys
import threading
from array import array

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance import native
from appliance._native import ffi, lib
from appliance.native import DDSketch
from reference_metrics import (
    ReferenceDDSketch,
    encode_raw,
    reference_downsample,
    store_bytes,
    varint,
    with_crc,
)

QS = [0.0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0]
FINITE = st.floats(allow_nan=False, allow_infinity=False)
MODERATE = st.floats(min_value=1e-6, max_value=1e6).flatmap(lambda x: st.sampled_from([x, -x]))
VALUES = st.lists(st.one_of(FINITE, MODERATE, st.sampled_from([0.0, -0.0, 5e-324, -1e-310, 1.0, 2.5])), max_size=300)
MAX_BINS = st.sampled_from([16, 17, 40, 100, 2048])
ACCURACY = st.sampled_from([0.01, 0.01, 0.05, 0.001, 1e-6, 0.5])


def build(values, accuracy=0.01, max_bins=2048, *, one_by_one=False) -> DDSketch:
    sketch = DDSketch(accuracy, max_bins)
    if one_by_one:
        for v in values:
            sketch.add(v)
    else:
        sketch.add_many(values)
    return sketch


def reference(values, accuracy=0.01, max_bins=2048) -> ReferenceDDSketch:
    ref = ReferenceDDSketch(accuracy, max_bins)
    ref.add_many(values)
    return ref


def same_float(a: float, b: float) -> bool:
    return struct.pack("<d", a) == struct.pack("<d", b)


def assert_equal_to_reference(sketch: DDSketch, ref: ReferenceDDSketch, qs=QS) -> None:
    assert sketch.to_bytes() == ref.to_bytes()
    assert sketch.count == ref.count
    assert same_float(sketch.sum, ref.sum)
    for q in qs:
        got, want = sketch.quantile(q), ref.quantile(q)
        assert got == want or (got is not None and same_float(got, want)), (q, got, want)


def true_quantile(values, q: float) -> float:
    ordered = sorted(values)
    last = len(ordered) - 1
    return ordered[min(int(q * float(last)), last)]


def without_sum(data: bytes) -> bytes:
    """A serialised sketch minus its sum (which depends on the order of additions) and CRC."""
    return data[:40] + data[48:-4]


# ---- known cases ------------------------------------------------------------------------


def test_empty_sketch():
    sketch = DDSketch()
    assert sketch.count == 0 and sketch.sum == 0.0
    assert sketch.min is None and sketch.max is None
    assert sketch.quantile(0.5) is None
    assert sketch.relative_accuracy == 0.01 and sketch.max_bins == 2048
    assert DDSketch.from_bytes(sketch.to_bytes()).to_bytes() == sketch.to_bytes() == ReferenceDDSketch().to_bytes()


def test_known_quantiles():
    sketch = build([float(i) for i in range(1, 101)])
    assert sketch.count == 100 and sketch.sum == 5050.0 and sketch.min == 1.0 and sketch.max == 100.0
    assert sketch.quantile(0.0) == 1.0  # clamped to min
    assert sketch.quantile(1.0) == 100.0  # clamped to max
    assert sketch.quantile(0.5) == pytest.approx(50.0, rel=0.01)
    assert sketch.quantile(0.99) == pytest.approx(99.0, rel=0.01)


def test_zero_negative_and_tiny_values():
    sketch = build([-5.0, -1.0, 0.0, -0.0, 5e-324, 1.0, 5.0])
    assert sketch.quantile(0.0) == -5.0
    assert sketch.quantile(1 / 6) == pytest.approx(-1.0, rel=0.01)
    assert sketch.quantile(0.5) == 0.0  # the zero bucket, subnormals included
    assert sketch.quantile(5 / 6) == pytest.approx(1.0, rel=0.01)
    assert sketch.min == -5.0 and sketch.max == 5.0


def test_extreme_magnitudes():
    values = [sys.float_info.max, -sys.float_info.max, sys.float_info.min, 1e-300, 1e300]
    sketch = build(values)
    assert_equal_to_reference(sketch, reference(values))
    assert sketch.quantile(1.0) == sys.float_info.max and sketch.quantile(0.0) == -sys.float_info.max


# ---- against the reference ----------------------------------------------------------------


@settings(max_examples=250, deadline=None)
@given(VALUES, ACCURACY, MAX_BINS, st.lists(st.floats(min_value=0.0, max_value=1.0), max_size=5))
def test_matches_reference(values, accuracy, max_bins, extra_qs):
    ref = reference(values, accuracy, max_bins)
    assert_equal_to_reference(build(values, accuracy, max_bins), ref, QS + extra_qs)
    assert_equal_to_reference(build(values, accuracy, max_bins, one_by_one=True), ref, QS + extra_qs)


@settings(max_examples=60, deadline=None)
@given(st.lists(VALUES, min_size=1, max_size=6), MAX_BINS)
def test_batches_match_reference(batches, max_bins):
    """add_many on a sketch that already holds values: reservation and collapse across calls."""
    sketch, ref = DDSketch(0.01, max_bins), ReferenceDDSketch(0.01, max_bins)
    for batch in batches:
        sketch.add_many(batch)
        ref.add_many(batch)
        assert_equal_to_reference(sketch, ref, [0.0, 0.5, 1.0])


@settings(max_examples=40, deadline=None)
@given(st.randoms(use_true_random=False), st.sampled_from([16, 64, 2048]))
def test_rising_and_falling_streams(rnd, max_bins):
    """Monotonic streams move the window one way; the window must follow without losing counts."""
    n = rnd.randint(1, 1500)
    start = rnd.uniform(-300, 250)  # decimal exponents: 1e-300 .. 1e300
    step = rnd.uniform(0.0005, min(0.3, (300 - start) / n))
    values = [10 ** (start + i * step) for i in range(n)]
    if rnd.random() < 0.5:
        values.reverse()
    if rnd.random() < 0.5:
        values = [-v for v in values]
    ref = reference(values, 0.01, max_bins)
    assert_equal_to_reference(build(values, 0.01, max_bins), ref)
    assert_equal_to_reference(build(values, 0.01, max_bins, one_by_one=True), ref)


# ---- against the truth ----------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(MODERATE, st.just(0.0)), min_size=1, max_size=500),
       st.sampled_from([0.01, 0.02, 0.001]), st.lists(st.floats(min_value=0.0, max_value=1.0), max_size=5))
def test_within_relative_accuracy_of_true_quantiles(values, accuracy, extra_qs):
    # [1e-6, 1e6] spans about 1400 keys at 1 %: no collapsing with the default 2048 bins
    # (at 0.1 % it would collapse, so those runs use more bins).
    sketch = build(values, accuracy, 2048 if accuracy >= 0.01 else 16384)
    for q in QS + extra_qs:
        truth = true_quantile(values, q)
        assert abs(sketch.quantile(q) - truth) <= accuracy * abs(truth) * (1 + 1e-9), (q, truth)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(min_value=1e-30, max_value=1e30), min_size=1, max_size=500))
def test_collapsing_keeps_the_upper_quantiles(values):
    """With 16 bins only the top 16 keys are exact: every quantile that falls there keeps its
    1 % guarantee, and the lower ones are reported at the collapsed bin, never below min."""
    ref = ReferenceDDSketch(0.01, 16)
    floor = max(ref.key(v) for v in values) - 15
    sketch = build(values, 0.01, 16)
    for q in QS:
        truth = true_quantile(values, q)
        got = sketch.quantile(q)
        if ref.key(truth) >= floor:
            assert abs(got - truth) <= 0.01 * truth * (1 + 1e-9)
        else:
            assert min(values) <= got <= ref.rep(floor) * (1 + 1e-12)


def test_bounded_memory():
    values = [10.0 ** (i / 50) for i in range(-15000, 15000)]  # 1e-300 .. 1e300, ~69000 keys
    sketch = build(values + [-v for v in values], 0.01, 16)
    size = len(sketch.to_bytes())
    assert size <= 64 + 2 * (5 + 16 * 10) + 4
    everything = values + [-v for v in values]
    assert sketch.quantile(1.0) == max(values) and sketch.quantile(0.0) == -max(values)
    # Only the top 16 keys (a factor gamma**16 = 1.38) are exact: the 4th largest value is there.
    q = (len(everything) - 4) / (len(everything) - 1)
    assert sketch.quantile(q) == pytest.approx(true_quantile(everything, q), rel=0.01)
    floor = REF.key(max(values)) - 15
    assert sketch.quantile(0.99) == REF.rep(floor)  # collapsed: reported at the floor bin


# ---- merging --------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(VALUES, st.lists(st.integers(min_value=0, max_value=300), max_size=4), MAX_BINS)
def test_merge_equals_sketch_of_concatenation(values, cuts, max_bins):
    bounds = sorted({0, len(values), *[min(c, len(values)) for c in cuts]})
    parts = [values[a:b] for a, b in zip(bounds, bounds[1:])] or [[]]
    whole = build(values, 0.01, max_bins)
    merged = DDSketch(0.01, max_bins)
    ref = ReferenceDDSketch(0.01, max_bins)
    for i, part in enumerate(parts):
        piece = build(part, 0.01, max_bins, one_by_one=bool(i % 2))
        merged.merge(piece)
        ref.merge(reference(part, 0.01, max_bins))
        assert piece.count == len(part)  # the source is unchanged
    assert_equal_to_reference(merged, ref)  # exactly, sum included (same order of additions)
    assert without_sum(merged.to_bytes()) == without_sum(whole.to_bytes())
    for q in QS:
        assert merged.quantile(q) == whole.quantile(q)
    # Float sums in another order differ by rounding only: within n * eps * sum(|v|).
    bound = 4 * len(values) * sys.float_info.epsilon * sum(abs(v) for v in values)
    if math.isfinite(bound) and math.isfinite(whole.sum) and math.isfinite(merged.sum):
        assert abs(merged.sum - whole.sum) <= bound


@settings(max_examples=80, deadline=None)
@given(VALUES, VALUES, MAX_BINS, MAX_BINS)
def test_merge_of_different_max_bins_matches_reference(a, b, bins_a, bins_b):
    sketch = build(a, 0.01, bins_a)
    sketch.merge(build(b, 0.01, bins_b))
    ref = reference(a, 0.01, bins_a)
    ref.merge(reference(b, 0.01, bins_b))
    assert_equal_to_reference(sketch, ref)
    assert sketch.max_bins == bins_a


@settings(max_examples=60, deadline=None)
@given(VALUES, MAX_BINS)
def test_merge_with_itself_doubles(values, max_bins):
    sketch = build(values, 0.01, max_bins)
    sketch.merge(sketch)
    ref = reference(values, 0.01, max_bins)
    ref.merge(ref)
    assert_equal_to_reference(sketch, ref)
    assert sketch.count == 2 * len(values)


def test_merge_needs_the_same_accuracy():
    a, b = build([1.0], 0.01), build([1.0], 0.02)
    with pytest.raises(native.SketchMismatchError):
        a.merge(b)
    assert lib.prts_ddsketch_merge(a._ptr, b._ptr) == lib.PRTS_DDSKETCH_E_MISMATCH
    assert a.count == 1
    with pytest.raises(TypeError, match="DDSketch"):
        a.merge(reference([1.0]))


# ---- serialisation ----------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(VALUES, ACCURACY, MAX_BINS)
def test_round_trip_is_identical(values, accuracy, max_bins):
    sketch = build(values, accuracy, max_bins)
    data = sketch.to_bytes()
    back = DDSketch.from_bytes(data)
    assert back.to_bytes() == data
    assert (back.count, back.min, back.max, back.relative_accuracy, back.max_bins) == (
        sketch.count, sketch.min, sketch.max, sketch.relative_accuracy, sketch.max_bins)
    assert same_float(back.sum, sketch.sum)
    for q in QS:
        assert back.quantile(q) == sketch.quantile(q)
    back.add_many(values)  # a read sketch is a working sketch
    sketch.merge(sketch)
    assert without_sum(back.to_bytes()) == without_sum(sketch.to_bytes())
    assert DDSketch.from_bytes(memoryview(bytearray(data))).to_bytes() == data


@settings(max_examples=40, deadline=None)
@given(VALUES)
def test_every_truncation_is_refused(values):
    data = build(values, 0.01, 40).to_bytes()
    for cut in range(len(data)):
        with pytest.raises(native.SketchTruncatedError):
            DDSketch.from_bytes(data[:cut])


def expected_error(position: int, data: bytes, damaged: bytes) -> type[native.SketchFormatError]:
    if position < 4:
        return native.SketchMagicError
    if position == 4:
        return native.SketchVersionError
    if 8 <= position < 12:
        declared = struct.unpack_from("<I", damaged, 8)[0]
        return native.SketchTruncatedError if declared > len(data) else native.SketchLengthError
    return native.SketchChecksumError


@settings(max_examples=300, deadline=None)
@given(VALUES, st.data())
def test_every_damaged_byte_is_refused(values, data_strategy):
    data = build(values, 0.01, 40).to_bytes()
    position = data_strategy.draw(st.integers(min_value=0, max_value=len(data) - 1))
    flip = data_strategy.draw(st.integers(min_value=1, max_value=255))
    damaged = bytearray(data)
    damaged[position] ^= flip
    with pytest.raises(expected_error(position, data, bytes(damaged))):
        DDSketch.from_bytes(bytes(damaged))


def test_trailing_bytes_are_refused():
    data = build([1.0, 2.0]).to_bytes()
    with pytest.raises(native.SketchLengthError):
        DDSketch.from_bytes(data + b"\0")


def good_fields(**changes):
    """The serialised fields of the sketch of [-2.0, 0.0, 3.0] (1 %, 2048 bins), changed."""
    ref = reference([-2.0, 0.0, 3.0])
    fields = dict(max_bins=2048, accuracy=0.01, count=3, zero=1, sum_=1.0, min_=-2.0, max_=3.0,
                  body=store_bytes(-ref.key(2.0), [1]) + store_bytes(ref.key(3.0), [1]))
    fields.update(changes)
    return fields


def test_crafted_fields_are_a_valid_sketch():
    assert encode_raw(**good_fields()) == reference([-2.0, 0.0, 3.0]).to_bytes()
    sketch = DDSketch.from_bytes(encode_raw(**good_fields()))
    assert sketch.quantile(1.0) == 3.0 and sketch.quantile(0.5) == 0.0 and sketch.quantile(0.0) == -2.0


REF = ReferenceDDSketch()
K2, K3 = REF.key(2.0), REF.key(3.0)
NEG, POS = store_bytes(-K2, [1]), store_bytes(K3, [1])
EMPTY = store_bytes(0, [])


@pytest.mark.parametrize("changes, error", [
    (dict(magic=b"PDDT"), native.SketchMagicError),
    (dict(version=2), native.SketchVersionError),
    (dict(version=0), native.SketchVersionError),
    (dict(flags=1), native.SketchCorruptError),
    (dict(reserved=1), native.SketchCorruptError),
    (dict(length=77), native.SketchLengthError),  # below the smallest possible sketch
    (dict(length=0), native.SketchLengthError),
    (dict(length=2**32 - 1), native.SketchTruncatedError),
    (dict(accuracy=0.0), native.SketchCorruptError),
    (dict(accuracy=0.75), native.SketchCorruptError),
    (dict(accuracy=math.nan), native.SketchCorruptError),
    (dict(max_bins=15), native.SketchCorruptError),
    (dict(max_bins=2**20 + 1), native.SketchCorruptError),
    (dict(count=4), native.SketchCorruptError),  # counts do not add up
    (dict(count=2**64 - 1, zero=2**64 - 1), native.SketchCorruptError),  # and overflow
    (dict(min_=3.5), native.SketchCorruptError),  # min > max
    (dict(min_=math.nan), native.SketchCorruptError),
    (dict(max_=math.inf), native.SketchCorruptError),
    (dict(min_=1.0), native.SketchCorruptError),  # min not in the lowest occupied region
    (dict(max_=-1.0), native.SketchCorruptError),  # max not in the highest occupied region
    (dict(count=0, zero=0, min_=math.inf, max_=-math.inf, sum_=0.0, body=EMPTY + EMPTY + b"\0"),
     native.SketchLengthError),  # bytes left before the checksum
    (dict(count=0, zero=0, min_=math.inf, max_=-math.inf, sum_=1.0, body=EMPTY + EMPTY),
     native.SketchCorruptError),  # an empty sketch with a sum
    (dict(count=0, zero=0, min_=0.0, max_=-math.inf, sum_=0.0, body=EMPTY + EMPTY),
     native.SketchCorruptError),
    (dict(body=struct.pack("<i", 5) + varint(0) + POS, count=2, zero=1, min_=0.0), native.SketchCorruptError),
    (dict(body=store_bytes(-K2, [0, 1]) + POS), native.SketchCorruptError),  # leading zero bin
    (dict(body=store_bytes(-K2 - 1, [1, 0]) + POS), native.SketchCorruptError),  # trailing zero bin
    (dict(body=NEG + struct.pack("<i", K3) + varint(1) + b"\x81\x00"), native.SketchCorruptError),  # varint
    (dict(body=NEG + struct.pack("<i", K3) + varint(1) + b"\xff" * 10 + b"\x01"), native.SketchCorruptError),
    (dict(body=NEG + struct.pack("<i", K3) + varint(1) + b"\xff" * 9 + b"\x02", count=2**63 + 1),
     native.SketchCorruptError),  # a 65th bit, which a careless reader would drop: counts add up
    (dict(body=NEG + struct.pack("<i", K3) + varint(1)), native.SketchLengthError),  # counts missing
    (dict(body=NEG + struct.pack("<i", K3)), native.SketchLengthError),  # bin number missing
    (dict(body=NEG + struct.pack("<i", K3) + varint(2**40) + b"\x01"), native.SketchCorruptError),  # > max_bins
    (dict(max_bins=2**20, body=NEG + struct.pack("<i", K3) + varint(2**20) + b"\x01"),
     native.SketchLengthError),  # claims more bins than bytes: refused before allocating
    (dict(body=NEG + store_bytes(REF.key_max + 1, [1]), max_=3.0), native.SketchCorruptError),  # key out of domain
    (dict(body=store_bytes(-REF.key_min + 1, [1]) + POS), native.SketchCorruptError),
    (dict(body=NEG + store_bytes(REF.key_min - 1, [1])), native.SketchCorruptError),
    (dict(body=NEG + store_bytes(-100, [1] + [0] * 2047 + [1]), count=4), native.SketchCorruptError),  # 2049 bins
])
def test_inconsistent_content_is_refused(changes, error):
    data = encode_raw(**good_fields(**changes))
    with pytest.raises(error):
        DDSketch.from_bytes(data)


def test_counts_that_overflow_are_refused():
    body = NEG + store_bytes(K3, [2**64 - 1, 1])
    with pytest.raises(native.SketchCorruptError):
        DDSketch.from_bytes(encode_raw(**good_fields(body=body, count=2**64 - 1)))


def test_largest_legal_sketch_is_read():
    counts = [1] * 2048
    data = encode_raw(**good_fields(body=NEG + store_bytes(K3, counts), count=2050, max_=REF.rep(K3 + 2047)))
    sketch = DDSketch.from_bytes(data)
    assert sketch.count == 2050 and sketch.to_bytes() == data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200), st.booleans())
def test_random_bytes_never_crash(body, framed):
    """Garbage, framed with a correct header and checksum or not, is refused or read back canonically."""
    data = encode_raw(**good_fields(body=body)) if framed else body
    try:
        sketch = DDSketch.from_bytes(data)
    except native.SketchFormatError:
        return
    assert sketch.to_bytes() == data


def test_header_fields_with_valid_checksum():
    data = bytearray(build([1.0]).to_bytes())
    data[4] = 9
    with pytest.raises(native.SketchVersionError):
        DDSketch.from_bytes(with_crc(bytes(data)))
    with pytest.raises(native.SketchMagicError):
        DDSketch.from_bytes(b"XY")
    with pytest.raises(native.SketchTruncatedError):
        DDSketch.from_bytes(b"PD")
    with pytest.raises(native.SketchTruncatedError):
        DDSketch.from_bytes(b"")
    with pytest.raises(TypeError, match="bytes-like"):
        DDSketch.from_bytes("PDDS")


# ---- argument errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("q, error", [
    (-0.01, native.MetricRangeError), (1.0000001, native.MetricRangeError), (math.inf, native.MetricRangeError),
    (math.nan, native.MetricNaNError), ("0.5", TypeError), (None, TypeError),
])
def test_quantile_argument_errors(q, error):
    with pytest.raises(error):
        build([1.0]).quantile(q)


def test_value_errors_leave_the_sketch_unchanged():
    sketch = build([1.0, 2.0, -3.0])
    before = sketch.to_bytes()
    with pytest.raises(native.MetricNaNError):
        sketch.add(math.nan)
    with pytest.raises(native.MetricInfiniteError):
        sketch.add(-math.inf)
    with pytest.raises(native.MetricNaNError):
        sketch.add_many([5.0, 1e10, -7.0, math.nan])
    with pytest.raises(native.MetricInfiniteError):
        sketch.add_many(array("d", [1e-9, 1e200, math.inf]))
    with pytest.raises(TypeError):
        sketch.add("1.0")
    with pytest.raises(TypeError):
        sketch.add(True)
    with pytest.raises(TypeError, match="sequence of numbers"):
        sketch.add_many([1.0, "x"])
    with pytest.raises(TypeError, match="sequence of numbers"):
        sketch.add_many(b"\x01\x02")
    assert sketch.to_bytes() == before
    assert isinstance(native.MetricNaNError("x"), ValueError)


@pytest.mark.parametrize("accuracy, max_bins, error", [
    (0.0, 2048, native.MetricRangeError), (0.51, 2048, native.MetricRangeError),
    (math.nan, 2048, native.MetricRangeError), (-0.01, 2048, native.MetricRangeError),
    (0.01, 15, native.MetricRangeError), (0.01, 2**20 + 1, native.MetricRangeError),
    (0.01, 100.0, native.MetricRangeError), ("0.01", 2048, TypeError),
])
def test_constructor_argument_errors(accuracy, max_bins, error):
    with pytest.raises(error):
        DDSketch(accuracy, max_bins)


def test_c_refuses_what_python_checks():
    """The C engine checks again (for other callers): each refusal has its own code."""
    out = ffi.new("prts_ddsketch **")
    assert lib.prts_ddsketch_new(0.0, 2048, out) == lib.PRTS_METRICS_E_RANGE and out[0] == ffi.NULL
    assert lib.prts_ddsketch_new(math.nan, 2048, out) == lib.PRTS_METRICS_E_NAN
    assert lib.prts_ddsketch_new(0.01, 8, out) == lib.PRTS_METRICS_E_RANGE
    assert lib.prts_ddsketch_new(0.01, 2048, ffi.NULL) == lib.PRTS_E_NULL
    sketch = build([1.0])
    q = ffi.new("double *")
    assert lib.prts_ddsketch_quantile(sketch._ptr, 1.5, q) == lib.PRTS_METRICS_E_RANGE
    assert lib.prts_ddsketch_quantile(sketch._ptr, math.nan, q) == lib.PRTS_METRICS_E_NAN
    assert lib.prts_ddsketch_quantile(DDSketch()._ptr, 0.5, q) == lib.PRTS_DDSKETCH_E_EMPTY
    assert lib.prts_ddsketch_add(sketch._ptr, math.nan) == lib.PRTS_METRICS_E_NAN
    assert lib.prts_ddsketch_add(sketch._ptr, math.inf) == lib.PRTS_METRICS_E_INFINITE
    assert lib.prts_ddsketch_add_many(sketch._ptr, ffi.NULL, 3) == lib.PRTS_E_NULL
    assert lib.prts_ddsketch_add(ffi.NULL, 1.0) == lib.PRTS_E_NULL
    assert lib.prts_ddsketch_merge(sketch._ptr, ffi.NULL) == lib.PRTS_E_NULL
    written = ffi.new("size_t *")
    small = ffi.new("uint8_t[]", 10)
    assert lib.prts_ddsketch_serialize(sketch._ptr, small, 10, written) == lib.PRTS_E_CAPACITY
    assert written[0] == len(sketch.to_bytes())
    assert lib.prts_ddsketch_deserialize(ffi.NULL, 5, out) == lib.PRTS_E_NULL
    lib.prts_ddsketch_free(ffi.NULL)  # like free(NULL)
    assert sketch.count == 1


def test_count_overflow_is_refused():
    # A sketch whose count is 2**64 - 1 (a crafted serialisation: adding that many takes long).
    big = 2**64 - 3
    data = encode_raw(**good_fields(count=big + 2, zero=big))
    sketch = DDSketch.from_bytes(data)
    with pytest.raises(native.MetricOverflowError):
        sketch.add(1.0)
    with pytest.raises(native.MetricOverflowError):
        sketch.add_many([1.0, 2.0])
    with pytest.raises(native.MetricOverflowError):
        sketch.merge(build([1.0]))
    with pytest.raises(native.MetricOverflowError):
        sketch.merge(sketch)
    assert sketch.to_bytes() == data


@pytest.mark.parametrize("code", sorted(native._METRIC_ERRORS))
def test_every_c_code_maps_to_its_exception(code):
    cls = native._METRIC_ERRORS[code][0]
    assert issubclass(cls, native.NativeError) and cls is not native.NativeError
    with pytest.raises(cls):
        native._check(code, "call")
    with pytest.raises(cls):
        native._check(code, "call")
    assert len({c for c, _ in native._METRIC_ERRORS.values()}) == len(native._METRIC_ERRORS)


# ---- inputs --------------------------------------------------------------------------------------


def test_add_many_accepts_sequences_and_buffers():
    values = [1.5, -2.0, 0.0, 1e-12, 7.25]
    as_float32 = list(array("f", values))
    cases = [(values, values), (tuple(values), values), (iter(values), values), (array("d", values), values),
             (memoryview(array("d", values)), values), (array("f", values), as_float32),
             (array("i", [1, 2]), [1.0, 2.0]), (range(3), [0.0, 1.0, 2.0]),
             (memoryview(array("d", values * 2))[::2], (values * 2)[::2])]  # strided: copied
    for given_values, floats in cases:
        sketch = DDSketch()
        sketch.add_many(given_values)
        assert sketch.to_bytes() == reference(floats).to_bytes(), given_values


def test_add_many_reads_numpy_in_place():
    import numpy as np  # present: chdb (a product dependency) requires it
    values = np.linspace(-100, 100, 1001)
    sketch = DDSketch()
    sketch.add_many(values)
    sketch.add_many(values[::7])
    sketch.add_many(values.astype(np.float32))
    ref = reference(values.tolist())
    ref.add_many(values[::7].tolist())
    ref.add_many(values.astype(np.float32).tolist())
    assert sketch.to_bytes() == ref.to_bytes()


def test_concurrent_adds_are_serialised():
    """cffi drops the GIL during C calls: without the sketch's lock this corrupts memory."""
    sketch = DDSketch(0.01, 64)
    chunks = [array("d", [random.Random(i).uniform(-1e9, 1e9) for _ in range(20000)]) for i in range(4)]

    def work(chunk):
        for _ in range(5):
            sketch.add_many(chunk)
            sketch.to_bytes()

    threads = [threading.Thread(target=work, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sketch.count == 4 * 5 * 20000
    once = reference([v for c in chunks for v in c], 0.01, 64).to_bytes()
    expected = DDSketch.from_bytes(once)
    expected.merge(expected)
    expected.merge(expected)  # four times
    expected.merge(DDSketch.from_bytes(once))  # five times every chunk
    assert without_sum(sketch.to_bytes()) == without_sum(expected.to_bytes())


def test_large_input():
    rnd = random.Random(7)
    values = array("d", (rnd.lognormvariate(3, 2) for _ in range(300_000)))
    sketch = build(values)
    ordered = sorted(values)
    for q in QS:
        truth = ordered[int(q * (len(ordered) - 1))]
        assert abs(sketch.quantile(q) - truth) <= 0.01 * truth * (1 + 1e-9)
    assert sketch.count == len(values)
    assert sketch.sum == pytest.approx(math.fsum(values), rel=1e-9)


def test_pickles_through_its_bytes():
    import pickle

    sketch = build([1.0, -2.0, 3.5])
    assert pickle.loads(pickle.dumps(sketch)).to_bytes() == sketch.to_bytes()


# ---- downsampling ----------------------------------------------------------------------------------

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
DS_VALUES = st.one_of(FINITE, st.sampled_from([math.inf, -math.inf, 0.0, -0.0]), st.integers(-5, 5).map(float))


def same_list(got, want) -> bool:
    return len(got) == len(want) and all(
        (isinstance(a, float) and math.isnan(a) and math.isnan(b)) or (a == b and (not isinstance(a, float)
                                                                                 or same_float(a, b)))
        for a, b in zip(got, want))


def assert_downsample_matches(timestamps, values, start, width, buckets):
    got = native.downsample(timestamps, values, start, width, buckets)
    want = reference_downsample(list(timestamps), list(values), start, width, buckets)
    assert len(got) == buckets
    for name in ("count", "sum", "min", "max", "last", "last_timestamp"):
        assert same_list(list(getattr(got, name)), getattr(want, name)), name


@settings(max_examples=300, deadline=None)
@given(st.data(), st.integers(min_value=-10**6, max_value=10**6), st.integers(min_value=1, max_value=1000),
       st.integers(min_value=0, max_value=50))
def test_downsample_matches_reference(data, start, width, buckets):
    span = width * max(buckets, 1)
    # Timestamps around the range (so some fall outside), unsorted, with repeats (ties for last).
    near = st.integers(min_value=start - span // 2 - 2, max_value=start + span + span // 2 + 2)
    timestamps = data.draw(st.lists(st.one_of(near, near, INT64), max_size=300))
    if timestamps and data.draw(st.booleans()):
        timestamps += data.draw(st.lists(st.sampled_from(timestamps), max_size=50))
        data.draw(st.randoms()).shuffle(timestamps)
    values = data.draw(st.lists(DS_VALUES, min_size=len(timestamps), max_size=len(timestamps)))
    assert_downsample_matches(timestamps, values, start, width, buckets)
    assert_downsample_matches(array("q", timestamps), array("d", values), start, width, buckets)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(INT64, DS_VALUES), max_size=100), INT64, st.integers(min_value=1, max_value=2**63 - 1),
       st.integers(min_value=0, max_value=8))
def test_downsample_extreme_ranges(points, start, width, buckets):
    """Offsets and range ends past the int64 range must not wrap."""
    assert_downsample_matches([t for t, _ in points], [v for _, v in points], start, width, buckets)


def test_downsample_known_case():
    out = native.downsample([25, 5, 11, 19, 11, -1, 40], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], 0, 10, 3)
    assert list(out.count) == [1, 3, 1]
    assert list(out.sum) == [2.0, 12.0, 1.0]
    assert list(out.min) == [2.0, 3.0, 1.0] and list(out.max) == [2.0, 5.0, 1.0]
    assert list(out.last) == [2.0, 4.0, 1.0] and list(out.last_timestamp) == [5, 19, 25]
    out = native.downsample([11, 11], [3.0, 5.0], 10, 10, 1)
    assert list(out.last) == [5.0]  # a tie goes to the later position
    out = native.downsample([], [], 0, 10, 2)
    assert list(out.count) == [0, 0] and math.isnan(out.min[0]) and out.last_timestamp[0] == -(2**63)
    assert out.bucket_start(1) == 10


I64_MIN, I64_MAX = -(2**63), 2**63 - 1


@pytest.mark.parametrize("timestamps, start, width, buckets", [
    # Three buckets of 2**63 - 1 ms from -2**63: their end lies past 2**64 offsets (saturated
    # span), the last point sits at offset 2**64 - 1, and going from bucket 2 back to bucket 0
    # must not look like staying in bucket 2 through a wrapped-around offset.
    ([I64_MAX, I64_MIN, I64_MAX, 0, -1, I64_MIN + 5], I64_MIN, I64_MAX, 3),
    ([I64_MAX, I64_MIN, 3, I64_MAX - 1], I64_MIN, I64_MAX, 2),
    ([I64_MAX, I64_MIN, I64_MAX], I64_MAX - 1, I64_MAX, 1),
    ([0, I64_MAX, I64_MIN, 2**62, -(2**62)], I64_MIN, 2**62, 4),
])
def test_downsample_int64_edges(timestamps, start, width, buckets):
    assert_downsample_matches(timestamps, [float(i) for i in range(len(timestamps))], start, width, buckets)


def test_downsample_reads_numpy_in_place():
    import numpy as np  # present: chdb (a product dependency) requires it
    ts = np.arange(0, 1000, dtype=np.int64)[::-1].copy()
    vals = np.sin(ts.astype(np.float64))
    assert_downsample_matches(ts, vals, 100, 7, 50)
    assert_downsample_matches(ts[::3], vals[::3], 100, 7, 50)


def test_downsample_argument_errors():
    with pytest.raises(native.MetricNaNError):
        native.downsample([10**9], [math.nan], 0, 10, 3)  # NaN is refused even out of range
    with pytest.raises(native.MetricNaNError):
        native.downsample([5, -5], [1.0, math.nan], 0, 10, 3)
    with pytest.raises(native.MetricRangeError):
        native.downsample([1], [1.0], 0, 0, 3)
    with pytest.raises(native.MetricRangeError):
        native.downsample([1], [1.0], 0, -5, 3)
    with pytest.raises(native.MetricRangeError):
        native.downsample([1], [1.0], 0, 10, lib.PRTS_DOWNSAMPLE_MAX_BUCKETS + 1)
    with pytest.raises(native.MetricRangeError):
        native.downsample([1], [1.0], 2**63, 10, 3)
    with pytest.raises(ValueError, match="length"):
        native.downsample([1, 2], [1.0], 0, 10, 3)
    with pytest.raises(TypeError):
        native.downsample([1.5], [1.0], 0, 10, 3)
    with pytest.raises(TypeError):
        native.downsample("12", [1.0, 2.0], 0, 10, 3)
    with pytest.raises(OverflowError):
        native.downsample([2**63], [1.0], 0, 10, 3)
    c = ffi.new("uint64_t[]", 1)
    d = ffi.new("double[]", 1)
    t = ffi.new("int64_t[]", 1)
    assert lib.prts_downsample(ffi.NULL, ffi.NULL, 0, 0, 0, 1, c, d, d, d, d, t) == lib.PRTS_METRICS_E_RANGE
    assert lib.prts_downsample(ffi.NULL, ffi.NULL, 1, 0, 1, 1, c, d, d, d, d, t) == lib.PRTS_E_NULL
    assert lib.prts_downsample(t, d, 1, 0, 1, 1, c, d, ffi.NULL, d, d, t) == lib.PRTS_E_NULL
