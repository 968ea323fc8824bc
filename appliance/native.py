"""Python face of the C engines in ``appliance._native``.

Every function checks its arguments before the call and maps each C return code to a
named exception, so a bad argument never reaches C and a C failure is never silent.
"""

from __future__ import annotations

import math
import mmap
import numbers
import sys
import threading
from array import array

from appliance import logmask
from appliance._native import ffi, lib


class NativeError(Exception):
    """A C engine reported a failure."""


class NativeArgumentError(NativeError, ValueError):
    """A C engine was given a NULL or otherwise impossible argument."""


class NativeCapacityError(NativeError):
    """An output buffer handed to a C engine was too small."""


# Every C return code of every engine: the exception it becomes and what it means. Each
# engine's section below adds its own codes; one _check serves them all.
_ERRORS: dict[int, tuple[type[NativeError], str]] = {
    lib.PRTS_E_NULL: (NativeArgumentError, "a required pointer was NULL"),
    lib.PRTS_E_CAPACITY: (NativeCapacityError, "the output array is too small"),
}


def _check(code: int, what: str) -> None:
    if code != lib.PRTS_OK:
        cls, text = _ERRORS.get(code, (NativeError, "unknown error"))
        raise cls(f"{what}: {text} (code {code})")


def line_starts(data: bytes | bytearray | memoryview, base: int = 0) -> array:
    """Return the byte offsets (plus ``base``) at which each line of ``data`` starts.

    An empty buffer has no lines; a final newline ends the last line rather than
    starting a new one. The result is an ``array('Q')`` so that a large log's index costs
    8 bytes a line rather than a Python int each.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"line_starts() needs a bytes-like object, not {type(data).__name__}")
    if not isinstance(base, int) or isinstance(base, bool) or not 0 <= base < 2**64:
        raise ValueError(f"base must be an integer in [0, 2**64), got {base!r}")
    view = memoryview(data).cast("B")
    buf = ffi.from_buffer("uint8_t[]", view)
    needed = lib.prts_line_count(buf, len(view))
    out = array("Q", [0]) * needed  # no bytes object of that size on the way
    count = ffi.new("size_t *", needed)
    out_ptr = ffi.from_buffer("uint64_t[]", out) if needed else ffi.NULL
    _check(lib.prts_line_starts(buf, len(view), base, out_ptr, count), "prts_line_starts")
    return out


class SearchMatches:
    """The matches of :func:`search`: line numbers and byte offsets as parallel ``array('Q')``s.

    Iterating yields ``(line, offset)`` pairs. ``truncated`` is true when ``limit`` stopped
    the search while at least one more match remained.
    """

    __slots__ = ("lines", "offsets", "truncated")

    def __init__(self, lines: array, offsets: array, truncated: bool) -> None:
        self.lines, self.offsets, self.truncated = lines, offsets, truncated

    def __len__(self) -> int:
        return len(self.offsets)

    def __iter__(self):
        return zip(self.lines, self.offsets)

    def __repr__(self) -> str:
        return f"SearchMatches({list(self)!r}, truncated={self.truncated})"


_ERRORS[lib.PRTS_SEARCH_E_ARGUMENT] = (NativeArgumentError, "invalid search argument")

# Matches taken from C per call: most searches find few, so start small; a search with
# millions of matches grows its batches up to this size, to keep its calls few.
_SEARCH_FIRST_BATCH = 256
_SEARCH_MAX_BATCH = 1 << 16


def _bytes_like(value, what: str) -> memoryview:
    if not isinstance(value, (bytes, bytearray, memoryview, mmap.mmap)):
        raise TypeError(f"{what} must be a bytes-like object, not {type(value).__name__}")
    return memoryview(value).cast("B")


def _uint64(value, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**64:
        raise ValueError(f"{what} must be an integer in [0, 2**64), got {value!r}")
    return value


def search(data, needle, *, ignore_case: bool = False, start_line: int = 0, base_offset: int = 0,
           limit: int | None = None) -> SearchMatches:
    """Find every non-overlapping occurrence of ``needle`` in ``data``, left to right.

    ``data`` is a stored log (bytes-like, or an ``mmap``); each match is reported as the
    0-based number of its line (counted by ``\\n``, starting at ``start_line``) and the
    byte offset of its start plus ``base_offset`` (so a log searched chunk by chunk gets
    log-wide numbers). ``ignore_case`` folds ASCII letters only. ``limit`` stops the search
    after that many matches; ``truncated`` on the result says whether more remained.
    """
    view = _bytes_like(data, "data")
    pattern = _bytes_like(needle, "needle")
    if not pattern.nbytes:
        raise ValueError("needle must not be empty: an empty string matches between every two bytes")
    if not isinstance(ignore_case, bool):
        raise TypeError(f"ignore_case must be a bool, not {type(ignore_case).__name__}")
    for what, value in (("start_line", start_line), ("base_offset", base_offset)):
        # Line numbers and offsets grow by at most len(data): keep them within uint64_t.
        if _uint64(value, what) + len(view) >= 2**64:
            raise ValueError(f"{what} + len(data) must be below 2**64, got {value!r}")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise ValueError(f"limit must be None or an integer >= 0, got {limit!r}")

    buf = ffi.from_buffer("uint8_t[]", view)
    needle_buf = ffi.from_buffer("uint8_t[]", pattern)
    flags = lib.PRTS_SEARCH_IGNORE_CASE if ignore_case else 0
    cursor = ffi.new("prts_search_cursor *", {"pos": 0, "line": start_line})
    count = ffi.new("size_t *")
    # Batches are joined once at the end: an array extended batch by batch is copied again
    # at each growth, which costs more than the search when there are millions of matches.
    lines, offsets = [], []
    found, batch = 0, _SEARCH_FIRST_BATCH
    while True:
        want = batch if limit is None else min(batch, limit - found)
        out_lines, out_offsets = ffi.new("uint64_t[]", want), ffi.new("uint64_t[]", want)
        count[0] = want
        code = lib.prts_search(buf, len(view), needle_buf, len(pattern), flags, base_offset, cursor,
                               out_lines, out_offsets, count)
        if code not in (lib.PRTS_OK, lib.PRTS_SEARCH_MORE):
            _check(code, "prts_search")
        lines.append(ffi.buffer(out_lines, 8 * count[0]))
        offsets.append(ffi.buffer(out_offsets, 8 * count[0]))
        found += count[0]
        if code == lib.PRTS_OK or (limit is not None and found >= limit):
            return SearchMatches(_joined_uint64(lines), _joined_uint64(offsets), truncated=code != lib.PRTS_OK)
        batch = min(4 * batch, _SEARCH_MAX_BATCH)


def _joined_uint64(chunks: list) -> array:
    out = array("Q")
    out.frombytes(b"".join(chunks))
    return out


# ---- Metrics: DDSketch quantiles and downsampling (native/src/ddsketch.c, downsample.c) ----


class MetricValueError(NativeArgumentError):
    """A metric engine refused a value: NaN anywhere, or an infinity given to a sketch."""


class MetricNaNError(MetricValueError):
    """A value (or a quantile) was NaN."""


class MetricInfiniteError(MetricValueError):
    """A sketch was given an infinite value, which no bin can hold."""


class MetricRangeError(NativeArgumentError):
    """A parameter lies outside its documented range (q, accuracy, max_bins, width, buckets)."""


class MetricMemoryError(NativeError, MemoryError):
    """A metric engine could not allocate memory; the sketch was left unchanged."""


class MetricOverflowError(NativeError, OverflowError):
    """A sketch's count would pass 2**64 - 1; the sketch was left unchanged."""


class SketchMismatchError(NativeError, ValueError):
    """Two sketches of different relative accuracy cannot be merged."""


class SketchEmptyError(NativeError):
    """The quantile of an empty sketch was asked for (``DDSketch.quantile`` returns None)."""


class SketchFormatError(NativeError, ValueError):
    """Bytes given to ``DDSketch.from_bytes`` are not a valid serialised sketch."""


class SketchMagicError(SketchFormatError):
    """The bytes do not start with the sketch magic ``PDDS``."""


class SketchVersionError(SketchFormatError):
    """The bytes are of a sketch format version this build does not read."""


class SketchTruncatedError(SketchFormatError):
    """The bytes end before the length their header declares."""


class SketchLengthError(SketchFormatError):
    """The declared length disagrees with the buffer (trailing bytes) or with the content."""


class SketchChecksumError(SketchFormatError):
    """The CRC-32 of the bytes does not match: they were damaged."""


class SketchCorruptError(SketchFormatError):
    """Checksummed bytes whose content is inconsistent (bad ranges, counts, bins)."""


_METRIC_ERRORS: dict[int, tuple[type[NativeError], str]] = {
    lib.PRTS_METRICS_E_NAN: (MetricNaNError, "NaN is not a value"),
    lib.PRTS_METRICS_E_INFINITE: (MetricInfiniteError, "infinities cannot be added to a sketch"),
    lib.PRTS_METRICS_E_RANGE: (MetricRangeError, "parameter out of range"),
    lib.PRTS_METRICS_E_NOMEM: (MetricMemoryError, "out of memory"),
    lib.PRTS_METRICS_E_OVERFLOW: (MetricOverflowError, "count would pass 2**64 - 1"),
    lib.PRTS_DDSKETCH_E_MISMATCH: (SketchMismatchError, "sketches differ in relative accuracy"),
    lib.PRTS_DDSKETCH_E_EMPTY: (SketchEmptyError, "the sketch is empty"),
    lib.PRTS_DDSKETCH_E_MAGIC: (SketchMagicError, "not a serialised sketch (bad magic)"),
    lib.PRTS_DDSKETCH_E_VERSION: (SketchVersionError, "unsupported sketch format version"),
    lib.PRTS_DDSKETCH_E_TRUNCATED: (SketchTruncatedError, "serialised sketch is truncated"),
    lib.PRTS_DDSKETCH_E_LENGTH: (SketchLengthError, "serialised sketch has an inconsistent length"),
    lib.PRTS_DDSKETCH_E_CHECKSUM: (SketchChecksumError, "serialised sketch fails its checksum"),
    lib.PRTS_DDSKETCH_E_CORRUPT: (SketchCorruptError, "serialised sketch has inconsistent content"),
}
_ERRORS.update(_METRIC_ERRORS)


_DOUBLE_FORMATS = frozenset({"d", "@d", "=d", "<d" if sys.byteorder == "little" else ">d"})
_INT64_FORMATS = frozenset({"q", "@q", "=q", "l", "@l", "=l"} | ({"<q", "<l"} if sys.byteorder == "little" else set()))


def _typed_buffer(values, ctype: str, typecode: str, formats: frozenset[str], what: str):
    """``(cdata, n)`` for ``values`` as a C array of 8-byte items: without a copy when values
    already is a contiguous buffer of that type (array, memoryview, numpy), else converted
    through ``array(typecode)``. The cdata keeps the buffer alive."""
    if isinstance(values, (str, bytes, bytearray)):
        raise TypeError(f"{what} must be a sequence of numbers or a buffer of {ctype}, not {type(values).__name__}")
    try:
        view = memoryview(values)
    except TypeError:
        view = None
    if view is not None and view.format in formats and view.itemsize == 8:
        if not view.c_contiguous:
            converted = array(typecode)
            converted.frombytes(view.tobytes())
            view = memoryview(converted)
        return ffi.from_buffer(f"{ctype}[]", view), view.nbytes // 8
    try:
        converted = array(typecode, values)
    except TypeError as exc:
        raise TypeError(f"{what} must be a sequence of numbers or a buffer of {ctype}: {exc}") from None
    return ffi.from_buffer(f"{ctype}[]", converted), len(converted)


def _real(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a real number, not {type(value).__name__}")
    return float(value)


def _int_in(value, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= high:
        raise MetricRangeError(f"{what} must be an integer in [{low}, {high}], got {value!r}")
    return int(value)


class DDSketch:
    """A mergeable quantile sketch with a relative-error guarantee (DDSketch, in C).

    Every quantile it reports is within ``relative_accuracy`` (default 1 %) of the true one,
    in bounded memory: each of its two stores (positive, negative values) keeps at most
    ``max_bins`` bins; beyond that the lowest values are collapsed together, so the upper
    quantiles keep their guarantee. ``merge`` gives the sketch of both sketches' values;
    ``to_bytes`` / ``from_bytes`` is a compact, versioned, checksummed format (the contract
    and the byte layout are in native/include/prts/metrics.h). NaN and infinities are refused.

    Safe to share between threads (cffi releases the GIL during C calls, so each sketch
    serialises its calls with a lock of its own).
    """

    DEFAULT_RELATIVE_ACCURACY = 0.01
    DEFAULT_MAX_BINS = lib.PRTS_DDSKETCH_DEFAULT_MAX_BINS
    MIN_RELATIVE_ACCURACY = 1e-6
    MAX_RELATIVE_ACCURACY = 0.5

    __slots__ = ("_ptr", "_lock", "__weakref__")

    def __init__(self, relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY, max_bins: int = DEFAULT_MAX_BINS):
        accuracy = _real(relative_accuracy, "relative_accuracy")
        if not self.MIN_RELATIVE_ACCURACY <= accuracy <= self.MAX_RELATIVE_ACCURACY:  # NaN fails too
            raise MetricRangeError(
                f"relative_accuracy must be in [{self.MIN_RELATIVE_ACCURACY}, {self.MAX_RELATIVE_ACCURACY}], "
                f"got {relative_accuracy!r}")
        bins = _int_in(max_bins, lib.PRTS_DDSKETCH_MIN_BINS, lib.PRTS_DDSKETCH_MAX_BINS, "max_bins")
        out = ffi.new("prts_ddsketch **")
        _check(lib.prts_ddsketch_new(accuracy, bins, out), "prts_ddsketch_new")
        self._adopt(out[0])

    def _adopt(self, ptr) -> None:
        self._ptr = ffi.gc(ptr, lib.prts_ddsketch_free)
        self._lock = threading.Lock()

    @classmethod
    def from_bytes(cls, data) -> DDSketch:
        """Read a sketch written by :meth:`to_bytes`; any damage raises a SketchFormatError."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"from_bytes() needs a bytes-like object, not {type(data).__name__}")
        view = memoryview(data).cast("B")
        out = ffi.new("prts_ddsketch **")
        _check(lib.prts_ddsketch_deserialize(ffi.from_buffer("uint8_t[]", view), len(view), out),
                       "prts_ddsketch_deserialize")
        sketch = cls.__new__(cls)
        sketch._adopt(out[0])
        return sketch

    def to_bytes(self) -> bytes:
        with self._lock:
            size = lib.prts_ddsketch_serialized_size(self._ptr)
            buf = ffi.new("uint8_t[]", size)
            written = ffi.new("size_t *")
            _check(lib.prts_ddsketch_serialize(self._ptr, buf, size, written), "prts_ddsketch_serialize")
        return ffi.buffer(buf, written[0])[:]

    def __reduce__(self):
        return (DDSketch.from_bytes, (self.to_bytes(),))

    def add(self, value: float) -> None:
        x = _real(value, "value")
        if math.isnan(x):
            raise MetricNaNError("a sketch cannot hold NaN")
        if math.isinf(x):
            raise MetricInfiniteError(f"a sketch cannot hold {x}")
        with self._lock:
            _check(lib.prts_ddsketch_add(self._ptr, x), "prts_ddsketch_add")

    def add_many(self, values) -> None:
        """Add every value of a sequence of numbers, or of a buffer of doubles (``array('d')``,
        a memoryview, a numpy array: read in place). All or nothing: a NaN or an infinity
        anywhere raises a MetricValueError and leaves the sketch as it was."""
        buf, n = _typed_buffer(values, "double", "d", _DOUBLE_FORMATS, "values")
        with self._lock:
            _check(lib.prts_ddsketch_add_many(self._ptr, buf, n), "prts_ddsketch_add_many")

    def merge(self, other: DDSketch) -> None:
        """Add ``other``'s values to this sketch (``other`` is unchanged)."""
        if not isinstance(other, DDSketch):
            raise TypeError(f"merge() needs a DDSketch, not {type(other).__name__}")
        if other.relative_accuracy != self.relative_accuracy:
            raise SketchMismatchError(
                f"cannot merge a sketch of relative accuracy {other.relative_accuracy} into one of "
                f"{self.relative_accuracy}")
        if other is self:
            with self._lock:
                _check(lib.prts_ddsketch_merge(self._ptr, self._ptr), "prts_ddsketch_merge")
            return
        # Two locks in a fixed order: a.merge(b) and b.merge(a) at once cannot deadlock.
        first, second = sorted((self, other), key=id)
        with first._lock, second._lock:
            _check(lib.prts_ddsketch_merge(self._ptr, other._ptr), "prts_ddsketch_merge")

    def quantile(self, q: float) -> float | None:
        """The ``q``-quantile (``q`` in [0, 1]) within the relative accuracy; None when empty."""
        x = _real(q, "q")
        if math.isnan(x):
            raise MetricNaNError("q must not be NaN")
        if not 0.0 <= x <= 1.0:
            raise MetricRangeError(f"q must be in [0, 1], got {q!r}")
        out = ffi.new("double *")
        with self._lock:
            code = lib.prts_ddsketch_quantile(self._ptr, x, out)
        if code == lib.PRTS_DDSKETCH_E_EMPTY:
            return None
        _check(code, "prts_ddsketch_quantile")
        return out[0]

    @property
    def count(self) -> int:
        with self._lock:
            return lib.prts_ddsketch_count(self._ptr)

    @property
    def sum(self) -> float:
        """The sum of the values added, in the order they were added."""
        with self._lock:
            return lib.prts_ddsketch_sum(self._ptr)

    @property
    def min(self) -> float | None:
        """The exact smallest value added; None when empty."""
        with self._lock:
            return lib.prts_ddsketch_min(self._ptr) if lib.prts_ddsketch_count(self._ptr) else None

    @property
    def max(self) -> float | None:
        """The exact largest value added; None when empty."""
        with self._lock:
            return lib.prts_ddsketch_max(self._ptr) if lib.prts_ddsketch_count(self._ptr) else None

    @property
    def relative_accuracy(self) -> float:
        return lib.prts_ddsketch_relative_accuracy(self._ptr)

    @property
    def max_bins(self) -> int:
        return lib.prts_ddsketch_max_bins(self._ptr)

    def __repr__(self) -> str:
        return (f"DDSketch(relative_accuracy={self.relative_accuracy}, max_bins={self.max_bins}, "
                f"count={self.count})")


class Downsampled:
    """Per-bucket aggregates from :func:`downsample`, as parallel arrays with one slot a bucket.

    ``count`` is an ``array('Q')``; ``sum``, ``min``, ``max``, ``last`` are ``array('d')``
    (NaN for min, max and last of an empty bucket, 0.0 for its sum); ``last_timestamp`` is an
    ``array('q')`` (-2**63 for an empty bucket). Bucket ``i`` starts at ``start + i * width``.
    """

    __slots__ = ("start", "width", "count", "sum", "min", "max", "last", "last_timestamp")

    def __init__(self, start: int, width: int, buckets: int) -> None:
        self.start, self.width = start, width
        self.count = array("Q", bytes(8 * buckets))
        self.sum, self.min, self.max, self.last = (array("d", bytes(8 * buckets)) for _ in range(4))
        self.last_timestamp = array("q", bytes(8 * buckets))

    def __len__(self) -> int:
        return len(self.count)

    def bucket_start(self, i: int) -> int:
        return self.start + i * self.width

    def __repr__(self) -> str:
        return f"Downsampled(start={self.start}, width={self.width}, buckets={len(self)})"


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def downsample(timestamps, values, start: int, width: int, buckets: int) -> Downsampled:
    """Aggregate points ``(timestamps[i] ms, values[i])`` into ``buckets`` buckets of ``width`` ms
    from ``start``: per bucket count, sum, min, max and last (the value with the greatest
    timestamp; on a tie the later one in the input). Points outside the buckets are ignored;
    the input need not be sorted. ``timestamps`` may be any sequence of ints or an int64
    buffer (``array('q')``, numpy), ``values`` any sequence of numbers or a double buffer. A
    NaN value anywhere raises MetricNaNError."""
    ts_buf, n_ts = _typed_buffer(timestamps, "int64_t", "q", _INT64_FORMATS, "timestamps")
    val_buf, n_val = _typed_buffer(values, "double", "d", _DOUBLE_FORMATS, "values")
    if n_ts != n_val:
        raise ValueError(f"timestamps and values differ in length ({n_ts} and {n_val})")
    start = _int_in(start, _INT64_MIN, _INT64_MAX, "start")
    width = _int_in(width, 1, _INT64_MAX, "width")
    buckets = _int_in(buckets, 0, lib.PRTS_DOWNSAMPLE_MAX_BUCKETS, "buckets")
    out = Downsampled(start, width, buckets)
    outputs = [ffi.from_buffer(ctype, arr) if buckets else ffi.NULL for ctype, arr in (
        ("uint64_t[]", out.count), ("double[]", out.sum), ("double[]", out.min), ("double[]", out.max),
        ("double[]", out.last), ("int64_t[]", out.last_timestamp))]
    _check(lib.prts_downsample(ts_buf, val_buf, n_ts, start, width, buckets, *outputs), "prts_downsample")
    return out


# -- log engine ------------------------------------------------------------------------------


class LogEngineError(NativeError):
    """The log engine reported a failure."""


class LogPatternError(LogEngineError, NativeArgumentError):
    """A masking pattern is too short, too long, not UTF-8, or holds a line break."""


class LogMaxLineError(LogEngineError, NativeArgumentError):
    """max_line is out of range, or too small for the longest pattern."""


class LogStateError(LogEngineError):
    """The engine was fed after finish(), or after it failed."""


class LogMemoryError(LogEngineError, MemoryError):
    """The log engine ran out of memory; the engine cannot be used any more."""


_LOG_ERRORS: dict[int, tuple[type[NativeError], str]] = {
    lib.PRTS_LOG_E_PATTERN: (LogPatternError, "invalid masking pattern"),
    lib.PRTS_LOG_E_MAX_LINE: (LogMaxLineError, "max_line out of range for the patterns"),
    lib.PRTS_LOG_E_STATE: (LogStateError, "the engine is finished or failed"),
    lib.PRTS_LOG_E_NOMEM: (LogMemoryError, "out of memory"),
}
_ERRORS.update(_LOG_ERRORS)


class LogOutput:
    """What the log engine produced for one feed() or finish().

    ``text``: UTF-8 bytes of the completed lines, each ending in ``\\n``, masked, free of
    escape sequences. ``line_starts``: ``array('Q')`` of the absolute offset (in the whole
    output stream) where each of those lines starts. ``runs``: ``array('Q')`` of style
    runs, RUN_FIELDS values each: absolute start, length, fg, bg, flags (see
    native/include/prts/logengine.h for the colour and flag encoding); ``run_tuples()``
    gives them as tuples.
    """

    RUN_FIELDS = lib.PRTS_LOG_RUN_FIELDS
    __slots__ = ("text", "line_starts", "runs")

    def __init__(self, text: bytes, line_starts: array, runs: array) -> None:
        self.text, self.line_starts, self.runs = text, line_starts, runs

    def run_tuples(self) -> list[tuple[int, int, int, int, int]]:
        n = self.RUN_FIELDS
        return [tuple(self.runs[i : i + n]) for i in range(0, len(self.runs), n)]

    def __repr__(self) -> str:
        return (f"LogOutput({len(self.text)} bytes, {len(self.line_starts)} lines, "
                f"{len(self.runs) // self.RUN_FIELDS} runs)")


def _validated_patterns(patterns) -> list[bytes]:
    if isinstance(patterns, (str, bytes, bytearray, memoryview)):
        raise TypeError("patterns must be a collection of byte strings, not one")
    out = []
    for i, pattern in enumerate(patterns):
        if not isinstance(pattern, (bytes, bytearray, memoryview)):
            raise TypeError(f"pattern #{i} must be bytes, not {type(pattern).__name__}")
        data = bytes(pattern)
        if not lib.PRTS_LOG_MIN_PATTERN <= len(data) <= lib.PRTS_LOG_MAX_PATTERN:
            raise LogPatternError(f"pattern #{i} is {len(data)} bytes; patterns must be "
                                  f"{lib.PRTS_LOG_MIN_PATTERN}..{lib.PRTS_LOG_MAX_PATTERN} bytes")
        if b"\n" in data:
            raise LogPatternError(f"pattern #{i} holds a line break; no line of a log can contain it")
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            raise LogPatternError(f"pattern #{i} is not valid UTF-8") from None
        out.append(data)
    if len(out) > lib.PRTS_LOG_MAX_PATTERNS:
        raise LogPatternError(f"{len(out)} patterns; at most {lib.PRTS_LOG_MAX_PATTERNS} are supported")
    return out


class LogEngine:
    """The streaming log engine: terminal handling, secret masking and line index in one pass.

    ``LogEngine(secrets)`` masks every secret (str or bytes, UTF-8, 6 bytes .. 64 KiB) and
    its encoded variants (appliance.logmask); ``LogEngine.from_patterns(patterns)`` masks
    exactly the given byte patterns. Feed the job's output with ``feed(chunk)`` in chunks of
    any size and end with ``finish()``; each returns a LogOutput, and the outputs depend
    only on the concatenated input. Lines longer than ``max_line`` bytes are broken. The
    rules are in native/include/prts/logengine.h.

    Safe to share between threads (each engine serialises its calls with a lock).
    """

    DEFAULT_MAX_LINE = lib.PRTS_LOG_DEFAULT_MAX_LINE
    MIN_MAX_LINE = lib.PRTS_LOG_MIN_MAX_LINE
    MAX_MAX_LINE = lib.PRTS_LOG_MAX_MAX_LINE

    __slots__ = ("_ptr", "_out", "_lock", "_finished", "max_line", "pattern_count")

    def __init__(self, secrets=(), *, max_line: int = DEFAULT_MAX_LINE) -> None:
        self._start(logmask.secret_patterns(secrets), max_line)

    @classmethod
    def from_patterns(cls, patterns, *, max_line: int = DEFAULT_MAX_LINE) -> LogEngine:
        engine = cls.__new__(cls)
        engine._start(_validated_patterns(patterns), max_line)
        return engine

    def _start(self, patterns: list[bytes], max_line: int) -> None:
        if isinstance(max_line, bool) or not isinstance(max_line, int) \
                or not self.MIN_MAX_LINE <= max_line <= self.MAX_MAX_LINE:
            raise LogMaxLineError(f"max_line must be an integer in [{self.MIN_MAX_LINE}, {self.MAX_MAX_LINE}], "
                                  f"got {max_line!r}")
        self.max_line = max_line
        longest = max(map(len, patterns), default=0)
        if 2 * longest > self.max_line:
            raise LogMaxLineError(f"max_line must be at least twice the longest pattern ({longest} bytes), "
                                  f"got {max_line}")
        blob = b"".join(patterns)
        lengths = ffi.new("size_t[]", [len(p) for p in patterns]) if patterns else ffi.NULL
        out = ffi.new("prts_log_engine **")
        _check(lib.prts_log_engine_new(blob if patterns else ffi.NULL, lengths, len(patterns), self.max_line, out),
                   "prts_log_engine_new")
        self._ptr = ffi.gc(out[0], lib.prts_log_engine_free)
        self._out = ffi.new("prts_log_output *")
        self._lock = threading.Lock()
        self._finished = False
        self.pattern_count = len(patterns)

    def feed(self, chunk) -> LogOutput:
        """Process the next chunk of the job's output; returns the lines it completed."""
        view = _bytes_like(chunk, "chunk")
        with self._lock:
            if self._finished:
                raise LogStateError("feed() after finish()")
            data = ffi.from_buffer("uint8_t[]", view) if view.nbytes else ffi.NULL
            _check(lib.prts_log_feed(self._ptr, data, view.nbytes, self._out), "prts_log_feed")
            return self._take()

    def finish(self) -> LogOutput:
        """End the stream: returns the last line if it was not ended by a newline."""
        with self._lock:
            if self._finished:
                raise LogStateError("finish() called twice")
            self._finished = True
            _check(lib.prts_log_finish(self._ptr, self._out), "prts_log_finish")
            return self._take()

    def _take(self) -> LogOutput:
        out = self._out
        text = ffi.buffer(out.text, out.text_len)[:] if out.text_len else b""
        starts, runs = array("Q"), array("Q")
        if out.line_count:
            starts.frombytes(ffi.buffer(out.line_starts, 8 * out.line_count))
        if out.run_count:
            runs.frombytes(ffi.buffer(out.runs, 8 * LogOutput.RUN_FIELDS * out.run_count))
        return LogOutput(text, starts, runs)


def _whole(engine: LogEngine, data) -> LogOutput:
    body = engine.feed(data)
    tail = engine.finish()
    if not tail.text:
        return body
    body.line_starts.extend(tail.line_starts)
    body.runs.extend(tail.runs)
    return LogOutput(body.text + tail.text, body.line_starts, body.runs)


def process_log(data, secrets=(), *, max_line: int = LogEngine.DEFAULT_MAX_LINE) -> LogOutput:
    """Run a whole buffer through a fresh LogEngine (mask ``secrets``, terminal handling, index)."""
    return _whole(LogEngine(secrets, max_line=max_line), data)


def strip_ansi(data, *, max_line: int = LogEngine.DEFAULT_MAX_LINE) -> bytes:
    """The terminal handling alone: ``data`` as plain UTF-8 text, escape sequences dropped,
    '\\r' overwrites collapsed, invalid UTF-8 replaced, every line ending in '\\n'."""
    return _whole(LogEngine(max_line=max_line), data).text


def select_log_scanner(impl: int) -> None:
    """Make engines created from now on use one byte scanner (lib.PRTS_LOG_PORTABLE, _SSE2,
    _AVX2 or _AUTO); for tests and benchmarks. Raises NativeArgumentError when this CPU lacks it."""
    _check(lib.prts_log_select(impl), "prts_log_select")
