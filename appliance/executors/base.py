"""What every executor offers the runner: prepare a workspace, run steps, cancel, clean up.

The runner makes one ``JobContext`` per job attempt and calls, from one thread,
``prepare`` then ``run_step`` for each script step then ``cleanup``; its watchdog thread
may call ``cancel`` at any moment. A step's output never passes through the worker: the
executor points the step's stdout and stderr at the attempt's spool file (appending), and
``appliance.pipelines.logs.LogPump`` tails that file, so output written before a worker
dies is still on disk for the reconciler to salvage.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Protocol

SUCCESS = "success"
FAILED = "failed"
TIMED_OUT = "timed_out"
CANCELED = "canceled"
OUTCOMES = (SUCCESS, FAILED, TIMED_OUT, CANCELED)


class ExecutorError(OSError):
    """The executor could not set a job up (a sandbox that will not start, a workspace that
    cannot be made). An OSError so the runner fails the job as "could not prepare"."""


@dataclass
class JobContext:
    job_id: int
    attempt: int
    workspace: pathlib.Path  # created by prepare(); its parent is config.workspaces_path
    repository: pathlib.Path | None  # bare repository to check out from; None: an empty workspace
    commit: str
    env: dict[str, str]  # the job's whole environment: built-ins, variables, secrets
    timeout_seconds: int
    log_path: pathlib.Path  # spool file every step's stdout and stderr are appended to
    # Start of the job's clock; prepare() sets it unless the runner already did. The job's
    # deadline is started_monotonic + timeout_seconds, across all its steps.
    started_monotonic: float = 0.0

    @property
    def deadline(self) -> float:
        return self.started_monotonic + self.timeout_seconds


@dataclass(frozen=True)
class StepResult:
    outcome: str  # "success" | "failed" | "timed_out" | "canceled"
    exit_code: int | None  # None when killed by a signal, the timeout or a cancel
    detail: str = ""  # "killed by SIGKILL", "timed out after 10m", ...


class Executor(Protocol):
    name: str

    def prepare(self, ctx: JobContext) -> None:
        """Make the workspace and check ``ctx.commit`` out into it."""

    def run_step(self, ctx: JobContext, script: str) -> StepResult:
        """Run ``/bin/sh -e -c script`` in the workspace; block until it ends."""

    def cancel(self, ctx: JobContext) -> None:
        """Thread-safe, any time: end the running step's processes; this and every later
        ``run_step`` of ``ctx`` returns outcome "canceled"."""

    def cleanup(self, ctx: JobContext) -> None:
        """Remove the workspace; idempotent."""


def format_duration(seconds: float) -> str:
    """600 -> "10m", 90 -> "1m30s", 3600 -> "1h", 5400 -> "1h30m"."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts) or "0s"
