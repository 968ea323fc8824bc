"""Real build and test logs for the log engines: made by running real tools, never stored.

``generate(directory)`` runs, with colours forced as a CI runner's pseudo-terminal would:

- ``pip``: installs into a throw-away venv from a local wheelhouse of small hand-built
  wheels (no index, no network), fails a resolution, fails a source build;
- ``gcc``: compiles a few C files with warnings and errors, ``-fdiagnostics-color=always``;
- ``pytest``: runs a generated test file with passes, failures, errors, skips and xfails,
  ``--color=yes``.

Each log is what a CI runner would store: the command line, then stdout and stderr
interleaved, then the exit status. ``make_big_corpus(path, size)`` repeats varied copies
of those logs up to any size (1 GB for the benchmarks) and plants secrets at known
offsets. The fixtures over this module are in ``logcorpus_fixtures``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

TIMEOUT = 300
WORKSPACE = b"/builds/prts/demo/1"


def tool_env() -> dict[str, str]:
    """The environment the tools run in: colours forced, and nothing of this process's
    test set-up (sanitizer preloads, pip and pytest settings) leaking into them."""
    drop_prefixes = ("PIP_", "PYTEST_", "ASAN_", "UBSAN_", "LSAN_", "PRTS_", "VIRTUAL_ENV")
    drop = {"LD_PRELOAD", "PYTHONPATH", "PYTHONHOME", "NO_COLOR", "PYTHONDONTWRITEBYTECODE"}
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop_prefixes) and k not in drop}
    env.update(
        # pip draws through rich, which honours FORCE_COLOR; pytest honours PY_COLORS.
        FORCE_COLOR="1", PY_COLORS="1", TERM="xterm-256color", COLUMNS="100", LC_ALL="C.UTF-8",
        PIP_CONFIG_FILE=os.devnull, PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
        # Plugins installed beside pytest would make the log depend on this machine.
        PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
    )
    return env


class LogRecorder:
    """Runs commands in one directory and records them as a CI job log."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.env = tool_env()
        self.out = bytearray()

    def run(self, *argv: str | Path) -> int:
        args = [str(a) for a in argv]
        self.out += b"\x1b[1;36m$ " + shlex.join(args).encode() + b"\x1b[0m\n"
        proc = subprocess.run(args, cwd=self.cwd, env=self.env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=TIMEOUT, check=False)
        self.out += proc.stdout
        if proc.stdout and not proc.stdout.endswith(b"\n"):
            self.out += b"\n"
        colour = b"32" if proc.returncode == 0 else b"31"
        self.out += b"\x1b[" + colour + b"mexit status " + str(proc.returncode).encode() + b"\x1b[0m\n"
        return proc.returncode


# -- pip ------------------------------------------------------------------------------------


def _wheel(wheelhouse: Path, name: str, version: str, requires: tuple[str, ...] = (), script: bool = False) -> None:
    """A minimal valid wheel: enough for pip to resolve and install it offline."""
    dist = f"{name}-{version}"
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n\n\ndef main():\n    print(VERSION)\n",
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{dist}.dist-info/WHEEL":
            "Wheel-Version: 1.0\nGenerator: logcorpus\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    if script:
        files[f"{dist}.dist-info/entry_points.txt"] = f"[console_scripts]\n{name.replace('_', '-')} = {name}:main\n"

    def digest(text: str) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()

    record = [f"{path},sha256={digest(text)},{len(text.encode())}" for path, text in files.items()]
    files[f"{dist}.dist-info/RECORD"] = "\n".join([*record, f"{dist}.dist-info/RECORD,,"]) + "\n"
    with zipfile.ZipFile(wheelhouse / f"{dist}-py3-none-any.whl", "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)


def pip_log(work: Path) -> bytes:
    wheelhouse = work / "wheelhouse"
    wheelhouse.mkdir()
    _wheel(wheelhouse, "demo_util", "0.9.0")
    _wheel(wheelhouse, "demo_util", "1.2.0")
    _wheel(wheelhouse, "demo_app", "1.0.0", ("demo_util>=1.0", "colorama; sys_platform == 'win32'"), script=True)
    _wheel(wheelhouse, "demo_app", "2.0.0", ("demo_util>=3.0",))
    # A source package whose build needs the `wheel` package, which is not there: pip's
    # boxed, coloured "subprocess-exited-with-error" report.
    source = work / "demo_native"
    source.mkdir()
    (source / "setup.py").write_text('from setuptools import setup\nsetup(name="demo_native", version="0.1")\n')

    log = LogRecorder(work)
    log.run(sys.executable, "-m", "venv", "venv")
    pip = (work / "venv" / "bin" / "pip",)
    log.run(*pip, "install", "-v", "--no-index", "--find-links", wheelhouse, "demo_app<2")
    log.run(*pip, "install", "--no-index", "--find-links", wheelhouse, "demo_app==2.0.0")
    log.run(*pip, "install", "--no-index", "--find-links", wheelhouse, "--force-reinstall", "--no-deps",
            "demo_util==0.9.0")
    log.run(*pip, "check")
    log.run(*pip, "install", "-v", "--no-index", "--no-build-isolation", "./demo_native")
    log.run(*pip, "list", "-v")
    return bytes(log.out)


# -- gcc ------------------------------------------------------------------------------------

C_SOURCES = {
    "ring.c": """
        #include <stdio.h>
        #include <string.h>

        struct ring { char buf[16]; unsigned head, tail; };

        int ring_put(struct ring *r, const char *s, int n) {
            int unused_total;
            for (int i = 0; i < n; i++) {
                if (r->head - r->tail == sizeof r->buf) return i;
                r->buf[r->head++ % sizeof r->buf] = s[i];
            }
            printf("put %d bytes from %s\\n", n);
            return n;
        }

        int ring_kind(int k) {
            switch (k) {
            case 0: k += 1;
            case 1: return k;
            default: break;
            }
        }
        """,
    "parse.c": """
        #include <stdlib.h>

        long parse_size(const char *s) {
            long scale;
            char *end;
            long v = strtol(s, &end, 10);
            if (*end == 'k') scale = 1024;
            else if (*end == 'M') scale = 1024 * 1024;
            return v * scale;
        }

        int compare(const void *a, const void *b) {
            unsigned x = *(const unsigned *)a;
            int y = *(const int *)b;
            return x < y ? -1 : x > y;
        }
        """,
    "main.c": """
        #include <stdio.h>

        long parse_size(const char *s);

        int main(int argc, char **argv) {
            const char *name = argc > 1 ? argv[1] : "4k";
            int *p = name;
            printf("%ld\\n", parse_sise(name));
            return lenght;
        }
        """,
}


def gcc_log(work: Path) -> bytes:
    for name, text in C_SOURCES.items():
        (work / name).write_text(textwrap.dedent(text).lstrip())
    log = LogRecorder(work)
    flags = ("-O2", "-Wall", "-Wextra", "-fdiagnostics-color=always")
    for name in C_SOURCES:
        log.run("gcc", *flags, "-c", name, "-o", name.replace(".c", ".o"))
    log.run("gcc", *flags, "-Wconversion", "-Wshadow", "-c", "ring.c", "-o", "ring.o")
    log.run("gcc", "-o", "demo", "ring.o", "parse.o", "main.o")
    return bytes(log.out)


# -- pytest ---------------------------------------------------------------------------------

PYTEST_SOURCE = '''
    import warnings

    import pytest


    @pytest.fixture
    def broken_fixture():
        raise ConnectionRefusedError("connect to 127.0.0.1:5432 refused")


    def test_passes():
        assert sum(range(10)) == 45


    @pytest.mark.parametrize("n", range(12))
    def test_parametrised(n):
        print(f"checking {n}")
        assert n % 5 != 4, f"{n} is unlucky"


    def test_dict_diff():
        expected = {"status": "success", "jobs": 4, "stages": ["build", "test", "deploy"]}
        actual = {"status": "failed", "jobs": 4, "stages": ["build", "test"], "error": "timeout"}
        assert actual == expected


    def test_long_text_diff():
        lines = [f"line {i}: the quick brown fox jumps over the lazy dog" for i in range(30)]
        got = "\\n".join(lines).replace("line 17", "line 71")
        assert got == "\\n".join(lines)


    def test_exception_in_code():
        config = {"retries": "three"}
        int(config["retries"])


    def test_uses_broken_fixture(broken_fixture):
        pass


    @pytest.mark.skip(reason="needs a GPU runner")
    def test_skipped():
        pass


    @pytest.mark.xfail(reason="known flaky upstream", strict=False)
    def test_xfail():
        assert 0.1 + 0.2 == 0.3


    def test_warns():
        warnings.warn("the 'pipeline.stages' key is deprecated, use 'stages'", DeprecationWarning)
        assert True
'''


def pytest_log(work: Path) -> bytes:
    (work / "test_pipeline_demo.py").write_text(textwrap.dedent(PYTEST_SOURCE).lstrip())
    log = LogRecorder(work)
    common = (sys.executable, "-m", "pytest", "--color=yes", "-p", "no:cacheprovider", "-o", "addopts=",
              "--rootdir", work, "test_pipeline_demo.py")
    log.run(*common, "-v", "-ra", "--tb=long")
    log.run(*common, "-q", "--tb=short", "-x")
    return bytes(log.out)


GENERATORS = {"pip": pip_log, "gcc": gcc_log, "pytest": pytest_log}


def generate(directory: Path) -> dict[str, bytes]:
    """Run every tool in a scratch directory under ``directory`` and write ``<name>.log``
    there; return the logs by name. A log already written there is reused."""
    directory.mkdir(parents=True, exist_ok=True)
    logs = {}
    for name, make in GENERATORS.items():
        path = directory / f"{name}.log"
        if not path.exists():
            work = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=directory))
            try:
                # Runners check out into paths like this one; make_big_corpus varies it.
                data = make(work).replace(str(work).encode(), WORKSPACE)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)  # a reader never sees half a log
        logs[name] = path.read_bytes()
    return logs


# -- a big corpus ---------------------------------------------------------------------------


@dataclass
class BigCorpus:
    path: Path
    size: int
    # Every offset at which each planted secret starts.
    planted: dict[bytes, list[int]] = field(default_factory=dict)


# Where a secret is planted: lines a careless job would print.
SECRET_LINES = (
    b"+ export DEPLOY_TOKEN=%s\n",
    b"+ curl -fsS -H 'Authorization: Bearer %s' https://registry.internal/v2/\n",
    b"\x1b[33mwarning\x1b[0m: password=%s found in .env, do not commit it\n",
    b"Cloning https://ci:%s@git.internal/prts/app.git\n",
)

_DURATION = re.compile(rb"\b\d+\.\d\ds\b")


def _variants(logs: dict[str, bytes], rng: random.Random, count: int) -> list[bytes]:
    """Copies of the real logs that differ as separate CI jobs would: workspace paths,
    timings, a job header."""
    out = []
    for i in range(count):
        name = rng.choice(sorted(logs))
        workspace = f"/builds/prts/{rng.choice(['app', 'api', 'web', 'infra'])}/{rng.randrange(10**6)}".encode()
        text = logs[name].replace(WORKSPACE, workspace)
        text = _DURATION.sub(lambda _: b"%d.%02ds" % (rng.randrange(60), rng.randrange(100)), text)
        header = b"\x1b[1;34m== job %d: %s on runner-%d ==\x1b[0m\n" % (i, name.encode(), rng.randrange(16))
        out.append(header + text)
    return out


def make_big_corpus(path: Path, size_bytes: int, secrets=(), *, logs: dict[str, bytes] | None = None,
                    secret_every: int = 1 << 20, seed: int = 0) -> BigCorpus:
    """Write exactly ``size_bytes`` of varied real logs to ``path``, ending with a newline.

    Each of ``secrets`` (bytes or str) is planted on a line of its own about every
    ``secret_every`` bytes; the result says where. ``logs`` defaults to a fresh
    ``generate()`` in a temporary directory. The same logs and seed give the same file.
    """
    if size_bytes < 1:
        raise ValueError("size_bytes must be at least 1")
    secrets = [s.encode() if isinstance(s, str) else bytes(s) for s in secrets]
    if logs is None:
        with tempfile.TemporaryDirectory(prefix="prts-logcorpus-") as tmp:
            logs = generate(Path(tmp))
    rng = random.Random(seed)
    variants = _variants(logs, rng, 64)
    corpus = BigCorpus(Path(path), size_bytes, {s: [] for s in secrets})
    written, next_secret, turn = 0, secret_every, 0
    with open(path, "wb") as out:
        while written < size_bytes:
            if secrets and written >= next_secret:
                secret = secrets[turn % len(secrets)]
                line = SECRET_LINES[turn % len(SECRET_LINES)]
                turn += 1
                next_secret += secret_every // len(secrets) or 1
                piece = line % secret
                if written + len(piece) <= size_bytes:
                    corpus.planted[secret].append(written + line.index(b"%s"))
                    out.write(piece)
                    written += len(piece)
                    continue
            piece = rng.choice(variants)
            if written + len(piece) > size_bytes:
                piece = piece[: size_bytes - written - 1] + b"\n"
            out.write(piece)
            written += len(piece)
    return corpus
