"""The C literal search against a plain-Python reference, on every implementation this CPU has."""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import platform
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance import native
from appliance._native import ffi, lib
from reference_search import reference_search

IMPLEMENTATIONS = {"portable": lib.PRTS_SEARCH_PORTABLE, "sse2": lib.PRTS_SEARCH_SSE2, "avx2": lib.PRTS_SEARCH_AVX2}
SUPPORTED = [name for name, value in IMPLEMENTATIONS.items() if lib.prts_search_select(value) == lib.PRTS_OK]
lib.prts_search_select(lib.PRTS_SEARCH_AUTO)
BLOCK = 64 * 1024  # search.c counts lines per block of this size: matches around its edges are tested


@contextlib.contextmanager
def implementation(name: str):
    assert lib.prts_search_select(IMPLEMENTATIONS[name]) == lib.PRTS_OK
    try:
        yield
    finally:
        lib.prts_search_select(lib.PRTS_SEARCH_AUTO)


def check(data: bytes, needle: bytes, **options) -> native.SearchMatches:
    result = native.search(data, needle, **options)
    assert (list(result), result.truncated) == reference_search(data, needle, **options)
    return result


def test_every_vector_implementation_is_tested_on_x86():
    if platform.machine() == "x86_64":
        assert "sse2" in SUPPORTED  # part of x86-64; avx2 depends on the CPU
    assert "portable" in SUPPORTED


@pytest.mark.parametrize(
    "data, needle, options, expected",
    [
        (b"", b"a", {}, []),
        (b"a", b"a", {}, [(0, 0)]),
        (b"a", b"ab", {}, []),
        (b"aaaa", b"aa", {}, [(0, 0), (0, 2)]),  # non-overlapping, left to right
        (b"aaa", b"aa", {}, [(0, 0)]),
        (b"x\ny\nerror\n", b"error", {}, [(2, 4)]),
        (b"Error ERROR error", b"error", {"ignore_case": True}, [(0, 0), (0, 6), (0, 12)]),
        (b"Error ERROR error", b"error", {}, [(0, 12)]),
        (b"[{[{", b"[", {"ignore_case": True}, [(0, 0), (0, 2)]),  # only letters fold
        (b"@`", b"`", {"ignore_case": True}, [(0, 1)]),
        (b"\xc4\xe4", b"\xe4", {"ignore_case": True}, [(0, 1)]),  # not Latin-1 folding either
        (b"a\nb\na\nb", b"a\nb", {}, [(0, 0), (2, 4)]),  # a needle may span lines
        (b"ab\nab", b"ab", {"start_line": 10, "base_offset": 1000}, [(10, 1000), (11, 1003)]),
        (b"\n\n\nneedle", b"needle", {}, [(3, 3)]),
    ],
)
@pytest.mark.parametrize("impl", SUPPORTED)
def test_known_cases(impl, data, needle, options, expected):
    with implementation(impl):
        assert list(check(data, needle, **options)) == expected


log_bytes = st.lists(
    st.sampled_from([b"a", b"A", b"b", b"B", b"\n", b"ab", b"aB", b"\xff", b"[", b"{", b"@", b"`", b"error\n"]),
    max_size=700,
).map(b"".join)
needles = st.lists(st.sampled_from(b"aAbB\n\xff[{@`"), min_size=1, max_size=6).map(bytes)
options = st.fixed_dictionaries(
    {},
    optional={
        "ignore_case": st.booleans(),
        "start_line": st.integers(0, 2**40),
        "base_offset": st.integers(0, 2**40),
        "limit": st.integers(0, 20),
    },
)


@pytest.mark.parametrize("impl", SUPPORTED)
@settings(max_examples=300)
@given(data=log_bytes, needle=needles, opts=options)
def test_matches_reference_on_log_like_bytes(impl, data, needle, opts):
    with implementation(impl):
        check(data, needle, **opts)


@pytest.mark.parametrize("impl", SUPPORTED)
@settings(max_examples=150)
@given(data=st.binary(max_size=2000), needle=st.binary(min_size=1, max_size=40), opts=options)
def test_matches_reference_on_any_bytes(impl, data, needle, opts):
    with implementation(impl):
        check(data, needle, **opts)


@pytest.mark.parametrize("impl", SUPPORTED)
@settings(max_examples=100)
@given(prefix=st.binary(max_size=300), needle=st.binary(min_size=1, max_size=70), copies=st.integers(1, 40))
def test_finds_planted_needles(impl, prefix, needle, copies):
    # Random bytes rarely hold a long needle: plant it, between line breaks and mixed case.
    data = prefix + (needle + b"\n" + needle.swapcase() + prefix[:7]) * copies
    with implementation(impl):
        check(data, needle)
        check(data, needle, ignore_case=True)


@pytest.mark.parametrize("impl", SUPPORTED)
@pytest.mark.parametrize("needle", [b"N", b"Ne", b"NeEdLe", b"needle in a haystack spanning vectors...."])
def test_matches_around_block_and_vector_edges(impl, needle):
    n = len(needle)
    data = bytearray((b"filler line of some text\n" * (3 * BLOCK // 25 + 40))[: 3 * BLOCK + 77])
    for at in (0, 32, BLOCK - n - 1, BLOCK - n, BLOCK - 1, BLOCK, 2 * BLOCK - n + 1, len(data) - n):
        data[at:at + n] = needle
    data = bytes(data)
    with implementation(impl):
        for ignore_case in (False, True):
            result = check(data, needle, ignore_case=ignore_case)
            assert len(result) >= 4  # some plants overlap


@pytest.fixture(scope="module")
def guarded():
    """Three pages whose first and last cannot be read: a buffer placed against either
    end makes any read outside it crash the test, sanitizer or not."""
    page = mmap.PAGESIZE
    region = mmap.mmap(-1, 4 * page)
    anchor = ctypes.c_char.from_buffer(region)
    address = ctypes.addressof(anchor)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    for start in (address, address + 3 * page):
        assert libc.mprotect(start, page, 0) == 0, ctypes.get_errno()  # PROT_NONE
    yield region, page
    for start in (address, address + 3 * page):
        libc.mprotect(start, page, mmap.PROT_READ | mmap.PROT_WRITE)
    del anchor
    region.close()


@pytest.mark.parametrize("impl", SUPPORTED)
@settings(max_examples=200)
@given(data=log_bytes.filter(bool).map(lambda b: b[: 2 * mmap.PAGESIZE]), needle=needles, ignore_case=st.booleans())
def test_reads_nothing_outside_the_buffer(guarded, impl, data, needle, ignore_case):
    region, page = guarded
    with implementation(impl):
        for start in (page, 3 * page - len(data)):  # against the leading, then the trailing guard
            region[start:start + len(data)] = data
            view = memoryview(region)[start:start + len(data)]
            try:
                result = native.search(view, needle, ignore_case=ignore_case)
            finally:
                view.release()
            assert (list(result), False) == reference_search(data, needle, ignore_case=ignore_case)


@pytest.mark.parametrize("impl", SUPPORTED)
@pytest.mark.parametrize("needle", [b"q", b"abq", b"Ab\nAbq", b"a" * 40 + b"q"])
def test_reads_nothing_outside_the_buffer_at_any_length(guarded, impl, needle):
    # Every length up to a few vector steps, so each tail case of each implementation ends
    # exactly at the guard: near-matches everywhere, and a match at the very end.
    region, page = guarded
    with implementation(impl):
        for length in range(300):
            data = (b"ab\nAb" * 60 + needle)[-length:] if length else b""
            region[3 * page - length:3 * page] = data
            with memoryview(region)[3 * page - length:3 * page] as view:
                for ignore_case in (False, True):
                    result = native.search(view, needle, ignore_case=ignore_case)
                    assert (list(result), False) == reference_search(data, needle, ignore_case=ignore_case)


def test_limit_and_truncation():
    data = b"x\n" * 10
    assert list(native.search(data, b"x", limit=3)) == [(0, 0), (1, 2), (2, 4)]
    assert native.search(data, b"x", limit=3).truncated
    assert not native.search(data, b"x", limit=10).truncated  # exactly all of them
    zero = native.search(data, b"x", limit=0)
    assert len(zero) == 0 and zero.truncated  # "is there any match?"
    assert not native.search(data, b"y", limit=0).truncated


def test_many_matches_span_several_batches():
    data = b"ab" * 300_000
    result = native.search(data, b"ab")
    assert len(result) == 300_000 and result.offsets[-1] == 599_998 and set(result.lines) == {0}
    assert isinstance(result.lines, array) and result.lines.typecode == "Q" and result.offsets.typecode == "Q"


def test_accepts_bytes_like_and_mmap(tmp_path):
    path = tmp_path / "log"
    path.write_bytes(b"one\ntwo error\nthree error\n")
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mapped:
        assert list(native.search(mapped, b"error")) == [(1, 8), (2, 20)]
    assert list(native.search(bytearray(b"a\na"), memoryview(b"a"))) == [(0, 0), (1, 2)]


def test_real_logs_match_reference(real_logs):
    found = 0
    for data in real_logs.values():
        for needle, ignore_case in [(b"\x1b[", False), (b"error", True), (b"FAILED", False), (b"warning: ", True)]:
            found += len(check(data, needle, ignore_case=ignore_case))
    assert found > 100  # colour codes alone are in the hundreds


@pytest.mark.parametrize("needle", [b"", bytearray(), memoryview(b"")])
def test_empty_needle_is_refused(needle):
    with pytest.raises(ValueError, match="needle must not be empty"):
        native.search(b"abc", needle)


@pytest.mark.parametrize("data, needle", [("text", b"t"), (b"text", "t"), (None, b"t"), (b"x", 1)])
def test_rejects_non_bytes(data, needle):
    with pytest.raises(TypeError, match="bytes-like"):
        native.search(data, needle)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"start_line": -1}, "start_line"),
        ({"start_line": 1.5}, "start_line"),
        ({"start_line": True}, "start_line"),
        ({"start_line": 2**64 - 2}, "start_line"),  # + len(data) overflows
        ({"base_offset": 2**64}, "base_offset"),
        ({"base_offset": 2**64 - 3}, "base_offset"),
        ({"limit": -1}, "limit"),
        ({"limit": 2.0}, "limit"),
        ({"limit": False}, "limit"),
    ],
)
def test_rejects_bad_options(options, match):
    with pytest.raises(ValueError, match=match):
        native.search(b"abc", b"a", **options)


def test_rejects_non_bool_ignore_case():
    with pytest.raises(TypeError, match="ignore_case"):
        native.search(b"abc", b"a", ignore_case="yes")


# -- the C protocol itself ------------------------------------------------------------------


def c_search(data: bytes, needle: bytes, cursor, capacity: int, flags: int = 0, base: int = 0):
    lines, offsets = ffi.new("uint64_t[]", max(capacity, 1)), ffi.new("uint64_t[]", max(capacity, 1))
    count = ffi.new("size_t *", capacity)
    code = lib.prts_search(data, len(data), needle, len(needle), flags, base, cursor, lines, offsets, count)
    return code, [(lines[i], offsets[i]) for i in range(count[0])]


def test_resumable_protocol():
    data = b"a\nxa\n\nya\n"
    cursor = ffi.new("prts_search_cursor *", {"pos": 0, "line": 5})
    # A capacity of 0 finds where the next match is without writing it.
    assert c_search(data, b"a", cursor, 0) == (lib.PRTS_SEARCH_MORE, [])
    assert (cursor.pos, cursor.line) == (0, 5)
    assert c_search(data, b"a", cursor, 2) == (lib.PRTS_SEARCH_MORE, [(5, 0), (6, 3)])
    assert (cursor.pos, cursor.line) == (7, 8)  # at the third match, on its line
    assert c_search(data, b"a", cursor, 2) == (lib.PRTS_OK, [(8, 7)])
    assert (cursor.pos, cursor.line) == (len(data), 9)  # the end, and the line there
    assert c_search(data, b"a", cursor, 2) == (lib.PRTS_OK, [])


def test_base_is_added_to_offsets_only():
    cursor = ffi.new("prts_search_cursor *", {"pos": 0, "line": 0})
    assert c_search(b"\nab", b"b", cursor, 4, base=100) == (lib.PRTS_OK, [(1, 102)])


def test_c_rejects_impossible_arguments():
    cursor = ffi.new("prts_search_cursor *", {"pos": 0, "line": 0})
    out = ffi.new("uint64_t[]", 1)
    count = ffi.new("size_t *", 1)
    E_NULL, E_ARGUMENT = lib.PRTS_E_NULL, lib.PRTS_SEARCH_E_ARGUMENT
    assert lib.prts_search(b"abc", 3, ffi.NULL, 1, 0, 0, cursor, out, out, count) == E_NULL
    assert lib.prts_search(ffi.NULL, 3, b"a", 1, 0, 0, cursor, out, out, count) == E_NULL
    assert lib.prts_search(b"abc", 3, b"a", 1, 0, 0, ffi.NULL, out, out, count) == E_NULL
    assert lib.prts_search(b"abc", 3, b"a", 1, 0, 0, cursor, ffi.NULL, out, count) == E_NULL
    assert lib.prts_search(b"abc", 3, b"a", 1, 0, 0, cursor, out, out, ffi.NULL) == E_NULL
    assert lib.prts_search(b"abc", 3, b"a", 0, 0, 0, cursor, out, out, count) == E_ARGUMENT  # empty needle
    assert lib.prts_search(b"abc", 3, b"a", 1, 2, 0, cursor, out, out, count) == E_ARGUMENT  # unknown flag
    cursor.pos = 4
    assert lib.prts_search(b"abc", 3, b"a", 1, 0, 0, cursor, out, out, count) == E_ARGUMENT  # past the end
    assert count[0] == 1 and cursor.pos == 4  # untouched
    assert lib.prts_search_select(99) == E_ARGUMENT
    for code in (E_NULL, E_ARGUMENT):
        with pytest.raises(native.NativeArgumentError):
            native._check(code, "prts_search")
