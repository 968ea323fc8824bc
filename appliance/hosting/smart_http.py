"""git's smart HTTP protocol, served by ``git http-backend`` as a CGI program.

The web layer decides who may do what; this module runs the backend for one request:
it builds the CGI environment (never from the client's headers wholesale), streams the
request body in on a thread (bounded by ``git.max_push_bytes``) while the response streams
out, kills the backend after ``git.http_timeout``, and, for a push, hands the ref updates
that landed (recorded by the post-receive hook) to a callback once the backend is done.
"""

from __future__ import annotations

import logging
import os
import pathlib
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterator

import appliance
from appliance.hosting.refupdates import RefUpdate, parse_updates

log = logging.getLogger(__name__)

SERVICES = ("git-upload-pack", "git-receive-pack")
CHUNK = 64 * 1024
_PACKAGE_ROOT = str(pathlib.Path(appliance.__file__).resolve().parent.parent)


class BackendError(Exception):
    """git http-backend could not be run or answered something that is not CGI."""


@dataclass
class GitRequest:
    repo: pathlib.Path  # the bare repository
    path_info: str  # "info/refs", "git-upload-pack" or "git-receive-pack"
    method: str
    query: str
    body: BinaryIO
    content_length: int | None  # None: chunked, read to the end
    content_type: str = ""
    content_encoding: str = ""
    git_protocol: str = ""
    remote_user: str = ""
    remote_addr: str = ""
    # For a push: the protected branch rules the pre-receive hook applies.
    protected_patterns: tuple[str, ...] = ()
    may_push_protected: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)


@dataclass
class GitResponse:
    status: str  # "200 OK"
    headers: list[tuple[str, str]]
    body: Iterator[bytes]


def is_push(path_info: str, query: str) -> bool:
    return path_info == "git-receive-pack" or (path_info == "info/refs" and query == "service=git-receive-pack")


def _environment(request: GitRequest, record: pathlib.Path | None, max_push_bytes: int) -> dict[str, str]:
    import json

    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent", "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_PROJECT_ROOT": str(request.repo.parent), "GIT_HTTP_EXPORT_ALL": "1",
        "PATH_INFO": f"/{request.repo.name}/{request.path_info}", "REQUEST_METHOD": request.method,
        "QUERY_STRING": request.query, "CONTENT_TYPE": request.content_type,
        "REMOTE_USER": request.remote_user, "REMOTE_ADDR": request.remote_addr,
        # git enforces the push size too, while unpacking (receive.maxInputSize).
        "GIT_CONFIG_COUNT": "2", "GIT_CONFIG_KEY_0": "receive.maxInputSize",
        "GIT_CONFIG_VALUE_0": str(max_push_bytes), "GIT_CONFIG_KEY_1": "http.receivepack",
        "GIT_CONFIG_VALUE_1": "true" if request.remote_user else "false",
    }
    if request.content_length is not None:
        env["CONTENT_LENGTH"] = str(request.content_length)
    if request.content_encoding:
        env["HTTP_CONTENT_ENCODING"] = request.content_encoding
    if request.git_protocol:
        env["GIT_PROTOCOL"] = request.git_protocol
    if record is not None:
        env.update(PRTS_HOOK_PYTHON=sys.executable, PYTHONPATH=_PACKAGE_ROOT, PRTS_PUSH_RECORD=str(record),
                   PRTS_PROTECTED_BRANCHES=json.dumps(list(request.protected_patterns)),
                   PRTS_MAY_PUSH_PROTECTED="1" if request.may_push_protected else "0")
    env.update(request.extra_env)
    return env


def _feed(source: BinaryIO, sink, length: int | None, limit: int, state: dict) -> None:
    """Copy the request body into the backend's stdin; stop at ``limit`` bytes."""
    copied = 0
    try:
        while length is None or copied < length:
            want = CHUNK if length is None else min(CHUNK, length - copied)
            data = source.read(want)
            if not data:
                break
            copied += len(data)
            if copied > limit:
                state["too_large"] = True
                break
            sink.write(data)
    except (BrokenPipeError, ConnectionError, OSError) as exc:  # the backend quit early, or the client left
        state["feed_error"] = str(exc)
    finally:
        try:
            sink.close()
        except OSError:
            pass


def _read_headers(stdout) -> tuple[str, list[tuple[str, str]]]:
    status, headers = "200 OK", []
    while True:
        line = stdout.readline(8192)
        if not line:
            raise BackendError("git http-backend ended before its headers")
        line = line.rstrip(b"\r\n")
        if not line:
            return status, headers
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise BackendError(f"git http-backend wrote a malformed header: {line[:100]!r}")
        if name.lower() == "status":
            status = value.strip()
        else:
            headers.append((name.strip(), value.strip()))


def serve(request: GitRequest, *, max_push_bytes: int, timeout: float,
          on_push: Callable[[list[RefUpdate]], None] | None = None) -> GitResponse:
    """Run the backend for ``request``; the response body is a generator that must be
    consumed (or closed) for the backend to be reaped and ``on_push`` to run."""
    record = None
    if request.path_info == "git-receive-pack":
        fd, name = tempfile.mkstemp(prefix="prts-push-", suffix=".refs")
        os.close(fd)
        record = pathlib.Path(name)
    try:
        process = subprocess.Popen(["git", "http-backend"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, env=_environment(request, record, max_push_bytes),
                                   cwd=request.repo)
    except OSError as exc:
        if record:
            record.unlink(missing_ok=True)
        raise BackendError(f"cannot run git http-backend: {exc}") from None
    state: dict = {}
    feeder = threading.Thread(target=_feed, args=(request.body, process.stdin, request.content_length,
                                                  max_push_bytes, state), daemon=True)
    feeder.start()
    stderr: list[bytes] = []
    threading.Thread(target=lambda: stderr.append(process.stderr.read()), daemon=True).start()
    timer = threading.Timer(timeout, lambda: (state.setdefault("timed_out", True), process.kill()))
    timer.daemon = True
    timer.start()

    def finish() -> None:
        timer.cancel()
        if process.poll() is None:
            process.kill()
        process.wait()
        feeder.join(5)
        if state.get("too_large"):
            log.warning("a push to %s was larger than git.max_push_bytes (%s) and was cut off", request.repo.name,
                        max_push_bytes)
        if state.get("timed_out"):
            log.warning("git http-backend for %s ran longer than %ss and was stopped", request.repo.name, timeout)
        errors = b"".join(stderr).decode(errors="replace").strip()
        if process.returncode and errors:
            log.info("git http-backend for %s: %s", request.repo.name, errors[-2000:])
        if record is not None:
            try:
                updates = parse_updates(record.read_text(encoding="utf-8"))
            finally:
                record.unlink(missing_ok=True)
            if updates and on_push is not None:
                on_push(updates)

    try:
        status, headers = _read_headers(process.stdout)
    except BackendError:
        finish()
        raise

    def body() -> Iterator[bytes]:
        try:
            while data := process.stdout.read1(CHUNK):
                yield data
        finally:
            finish()

    return GitResponse(status=status, headers=headers, body=body())
