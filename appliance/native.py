"""Python face of the C engines in ``appliance._native``.

Every function checks its arguments before the call and maps each C return code to a
named exception, so a bad argument never reaches C and a C failure is never silent.
"""

from __future__ import annotations

from array import array

from appliance._native import ffi, lib


class NativeError(Exception):
    """A C engine reported a failure."""


class NativeArgumentError(NativeError, ValueError):
    """A C engine was given a NULL or otherwise impossible argument."""


class NativeCapacityError(NativeError):
    """An output buffer handed to a C engine was too small."""


_ERRORS: dict[int, type[NativeError]] = {
    lib.PRTS_E_NULL: NativeArgumentError,
    lib.PRTS_E_CAPACITY: NativeCapacityError,
}


def _check(code: int, what: str) -> None:
    if code != lib.PRTS_OK:
        raise _ERRORS.get(code, NativeError)(f"{what} failed with code {code}")


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
    out = array("Q", bytes(8 * needed))
    count = ffi.new("size_t *", needed)
    out_ptr = ffi.from_buffer("uint64_t[]", out) if needed else ffi.NULL
    _check(lib.prts_line_starts(buf, len(view), base, out_ptr, count), "prts_line_starts")
    return out
