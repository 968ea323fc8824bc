"""cffi build of the C engines into ``appliance._native`` (API mode, compiled by setuptools).

The cdef is read from the public headers so the declarations exist once; preprocessor
lines are dropped because cffi's parser does not run cpp (the ``#define`` constants are
declared to cffi separately below).
"""

import pathlib
import re

from cffi import FFI

HERE = pathlib.Path(__file__).parent
HEADERS = ["prts/lineindex.h"]
SOURCES = ["src/lineindex.c"]


def _cdef_from_header(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    return "\n".join(lines)


ffibuilder = FFI()
ffibuilder.cdef(
    "\n".join(_cdef_from_header((HERE / "include" / h).read_text()) for h in HEADERS)
    + "\n#define PRTS_OK ...\n#define PRTS_E_NULL ...\n#define PRTS_E_CAPACITY ...\n"
)
ffibuilder.set_source(
    "appliance._native",
    "\n".join(f'#include "{h}"' for h in HEADERS),
    # Relative paths: setuptools requires them, and they keep the build reproducible.
    sources=[f"native/{s}" for s in SOURCES],
    include_dirs=["native/include"],
    extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Werror"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
