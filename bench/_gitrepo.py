"""git helpers for the git hosting benchmark: a client run isolated from the machine's
configuration, and a large history made with ``git fast-import``.

    from _gitrepo import GIT_ENV, run_git, build_history
"""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

# The client reads no user or system configuration (no credential helper, no url rewrites,
# no prompt), so both servers of a comparison see the same client.
GIT_ENV = {"GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example.test", "GIT_COMMITTER_NAME": "Bench",
           "GIT_COMMITTER_EMAIL": "bench@example.test", "GIT_CONFIG_GLOBAL": "/dev/null",
           "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent", "GIT_TERMINAL_PROMPT": "0",
           "GIT_ASKPASS": "/bin/false", "LC_ALL": "C"}


class GitFailed(RuntimeError):
    """A git command the benchmark depends on failed; the message has its stderr."""


def run_git(*args: str, cwd: Path | None = None, input: bytes | None = None, timeout: float = 600) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, input=input,
                          capture_output=True, timeout=timeout)
    if done.returncode != 0:
        # Credentials may be in a URL argument: name the subcommand only.
        raise GitFailed(f"git {args[0]} failed ({done.returncode}): {done.stderr.decode(errors='replace').strip()}")
    return done.stdout.decode().strip()


def _file_text(index: int, lines: list[str]) -> bytes:
    return (f"# module {index:03d}\n" + "\n".join(lines) + "\n").encode()


def history_stream(commits: int, files: int, branch: str = "main", seed: int = 5) -> bytes:
    """A ``git fast-import`` stream of ``commits`` commits on ``branch``, each changing one
    line in one or two of ``files`` small text files (40 lines each), like a long-lived
    project where most commits touch little."""
    rng = random.Random(seed)
    contents = [[f"value_{f}_{n} = {rng.randrange(10**6)}" for n in range(40)] for f in range(files)]
    out: list[bytes] = []
    when = 1_600_000_000
    for number in range(1, commits + 1):
        # The first commit adds every file, so the tree has all of them from the start.
        touched = range(files) if number == 1 else rng.sample(range(files), rng.choice((1, 1, 2)))
        message = f"change {number}\n".encode()
        out.append(f"commit refs/heads/{branch}\nmark :{number}\n"
                   f"committer Bench <bench@example.test> {when + number * 60} +0000\n"
                   f"data {len(message)}\n".encode() + message)
        if number > 1:
            out.append(f"from :{number - 1}\n".encode())
        for f in touched:
            if number > 1:
                contents[f][rng.randrange(40)] = f"value_{f}_{number} = {rng.randrange(10**6)}"
            blob = _file_text(f, contents[f])
            out.append(f"M 100644 inline src/module_{f:03d}.py\ndata {len(blob)}\n".encode() + blob + b"\n")
        out.append(b"\n")
    return b"".join(out)


def build_history(bare: Path, commits: int, files: int, branch: str = "main") -> str:
    """A new bare repository at ``bare`` holding the history; returns the tip's sha."""
    run_git("init", "--quiet", "--bare", f"--initial-branch={branch}", str(bare))
    run_git("fast-import", "--quiet", cwd=bare, input=history_stream(commits, files, branch))
    return run_git("rev-parse", f"refs/heads/{branch}", cwd=bare)
