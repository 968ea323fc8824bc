"""The process that holds the embedded analytics engine (chdb) for one appliance process.

chdb 4.4 leaks about five threads and seven descriptors each time a session over a data
directory with MergeTree tables is opened and closed, and only one process may hold a
directory's session at a time. ``ChdbAnalytics`` therefore runs its statements here: this
child takes the directory's lock, opens one session, answers statements until its parent
closes the pipe (after a short idle spell), and takes whatever chdb leaked with it.

Protocol on stdin/stdout, after one ready byte ``R``: a request is two big-endian u32
lengths (format, SQL) and the two UTF-8 strings; an answer is one status byte (``0`` ok,
``1`` error), a big-endian u64 length and the payload (the result's bytes, or the error).
"""

from __future__ import annotations

import fcntl
import os
import pathlib
import struct
import sys

REQUEST = struct.Struct(">II")
ANSWER = struct.Struct(">BQ")


def read_exactly(stream, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def serve(path: pathlib.Path, database: str, stdin, stdout) -> None:
    from chdb import session as chdb_session

    path.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process's engine may hold the directory
        sess = chdb_session.Session(str(path))
        try:
            sess.query(f"CREATE DATABASE IF NOT EXISTS {database}")
            sess.query(f"USE {database}")
            stdout.write(b"R")
            stdout.flush()
            while (header := read_exactly(stdin, REQUEST.size)) is not None:
                fmt_len, sql_len = REQUEST.unpack(header)
                body = read_exactly(stdin, fmt_len + sql_len)
                if body is None:
                    break
                fmt, sql = body[:fmt_len].decode(), body[fmt_len:].decode()
                try:
                    status, payload = 0, sess.query(sql, fmt).bytes()
                except Exception as exc:  # chdb raises its own ChdbError / RuntimeError types
                    status, payload = 1, str(exc).encode()
                stdout.write(ANSWER.pack(status, len(payload)) + payload)
                stdout.flush()
        finally:
            sess.close()


if __name__ == "__main__":
    # The answers get a private copy of stdout; whatever chdb's C++ side prints goes to
    # stderr instead of into the protocol.
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    serve(pathlib.Path(sys.argv[1]), sys.argv[2], sys.stdin.buffer, answers)
