"""cffi build of the C engines into ``appliance._native`` (API mode, compiled by setuptools).

Every ``src/*.c`` is compiled and every public header in ``include/prts/`` is declared to
cffi, so adding an engine needs no edit here. cffi's parser does not run cpp, so comments
and preprocessor lines are dropped from the cdef, and each integer ``#define NAME value``
is declared to cffi as ``#define NAME ...`` (cffi reads the value from the compiled code).
"""

import pathlib
import re

from cffi import FFI

HERE = pathlib.Path(__file__).parent
HEADERS = sorted(p.relative_to(HERE / "include").as_posix() for p in (HERE / "include" / "prts").glob("*.h"))
SOURCES = sorted(p.relative_to(HERE).as_posix() for p in (HERE / "src").glob("*.c"))
_DEFINE = re.compile(r"^\s*#\s*define\s+(PRTS_[A-Z0-9_]+)\s+\(?-?[0-9][0-9xXa-fA-FuUlL]*\)?\s*(?:/\*.*)?$")


def cdef_from_header(text: str) -> str:
    constants = [m.group(1) for line in text.splitlines() if (m := _DEFINE.match(line))]
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    return "\n".join(lines + [f"#define {name} ..." for name in constants])


ffibuilder = FFI()
ffibuilder.cdef("\n".join(cdef_from_header((HERE / "include" / h).read_text()) for h in HEADERS))
ffibuilder.set_source(
    "appliance._native",
    "\n".join(f'#include "{h}"' for h in HEADERS),
    # Relative paths: setuptools requires them, and they keep the build reproducible.
    sources=[f"native/{s}" for s in SOURCES],
    include_dirs=["native/include"],
    extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Werror"],
    libraries=["m"],  # the metric engine's log()/exp(); named so no build relies on Python having loaded libm
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
