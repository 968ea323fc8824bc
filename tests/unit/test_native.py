"""The C line indexer against a plain-Python reference, on hypothesis-made buffers."""

from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance import native


def reference_line_starts(data: bytes, base: int = 0) -> list[int]:
    if not data:
        return []
    starts = [0] + [i + 1 for i, b in enumerate(data) if b == 0x0A and i + 1 < len(data)]
    return [base + s for s in starts]


@pytest.mark.parametrize(
    "data, expected",
    [(b"", []), (b"a", [0]), (b"\n", [0]), (b"\n\n", [0, 1]), (b"ab\ncd", [0, 3]), (b"ab\ncd\n", [0, 3])],
)
def test_known_cases(data, expected):
    assert list(native.line_starts(data)) == expected


@settings(max_examples=300)
@given(st.binary(max_size=4096), st.integers(min_value=0, max_value=2**63))
def test_matches_reference(data, base):
    assert list(native.line_starts(data, base)) == reference_line_starts(data, base)


@given(st.lists(st.sampled_from([b"x", b"\n", b"yy\n", b"\r\n", b"\xff"]), max_size=300))
def test_newline_heavy_buffers(parts):
    data = b"".join(parts)
    assert list(native.line_starts(data)) == reference_line_starts(data)


def test_accepts_any_bytes_like_and_returns_compact_array():
    result = native.line_starts(memoryview(bytearray(b"a\nb")))
    assert isinstance(result, array) and result.typecode == "Q" and list(result) == [0, 2]


def test_large_buffer():
    data = b"line\n" * 1_000_000
    starts = native.line_starts(data)
    assert len(starts) == 1_000_000 and starts[-1] == 5 * 999_999


@pytest.mark.parametrize("bad", ["text", 5, None, [1, 2]])
def test_rejects_non_bytes(bad):
    with pytest.raises(TypeError, match="bytes-like"):
        native.line_starts(bad)


@pytest.mark.parametrize("base", [-1, 2**64, 1.5, True])
def test_rejects_bad_base(base):
    with pytest.raises(ValueError, match="base"):
        native.line_starts(b"x", base)


def test_c_error_codes_map_to_named_exceptions():
    from appliance._native import ffi, lib

    count = ffi.new("size_t *", 0)
    out = ffi.new("uint64_t[]", 1)
    assert lib.prts_line_starts(b"a\nb", 3, 0, out, count) == lib.PRTS_E_CAPACITY
    assert count[0] == 2  # the capacity it needs
    with pytest.raises(native.NativeCapacityError):
        native._check(lib.PRTS_E_CAPACITY, "prts_line_starts")
    with pytest.raises(native.NativeArgumentError):
        native._check(lib.prts_line_starts(ffi.NULL, 3, 0, out, count), "prts_line_starts")
    with pytest.raises(native.NativeError):
        native._check(-99, "unknown")
