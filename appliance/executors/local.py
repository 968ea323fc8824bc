"""The local executor: a job's steps as subprocesses of the worker, in a per-job workspace.

Each step is ``/bin/sh -e -c <script>`` in its own session and process group, its stdin
``/dev/null``, its stdout and stderr both the attempt's spool file opened ``O_APPEND``:
the child writes there itself, so nothing it wrote is lost if the worker dies, and
``LogPump`` tails the file. The environment is exactly the job's (``ctx.env``) on top of
PATH, HOME (the workspace) and LANG: nothing of the worker's own environment, which holds
the appliance's ``PRTS_*`` settings and secrets, reaches a job.

Every step runs under the rlimits of ``pipelines.local.*`` and dies with the worker
(``PR_SET_PDEATHSIG``). With bubblewrap (``pipelines.local.isolation``: "auto" uses it
when it works here, "bubblewrap" insists) the step also gets its own mount, PID, IPC and
UTS namespaces and, when ``pipelines.local.network`` is false, no network; see
``sandbox.py`` for what a job sees.

Ending a step (timeout, cancel) sends SIGTERM to its process group and SIGKILL after
``KILL_GRACE_SECONDS``; whatever is left in the group when the step's shell exits (``cmd &``)
is killed too. Without bubblewrap a process that leaves the group (``setsid``) escapes this;
with it, the PID namespace ends with the step and takes every process in it along.
"""

from __future__ import annotations

import logging
import os
import pathlib
import select
import shutil
import signal
import stat
import subprocess
import threading
import time
from dataclasses import dataclass, field

from appliance import repos
from appliance.executors import sandbox
from appliance.executors.base import (
    CANCELED, FAILED, SUCCESS, TIMED_OUT, ExecutorError, JobContext, StepResult, format_duration,
)

log = logging.getLogger(__name__)

SHELL = ("/bin/sh", "-e", "-c")
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NIXOS_PATH = "/run/current-system/sw/bin"


@dataclass
class _Attempt:
    """What cancel() needs to reach a running step of one job attempt."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    canceled: threading.Event = field(default_factory=threading.Event)
    pgid: int | None = None  # set while a step's leader is alive or unreaped


class LocalExecutor:
    name = "local"
    KILL_GRACE_SECONDS = 5.0  # between SIGTERM and SIGKILL when a step is ended
    POLL_SECONDS = 0.1  # how often a running step checks its deadline and cancel flag

    def __init__(self, config):
        self.config = config
        self.isolation_setting = config["pipelines.local.isolation"]
        self.network = config["pipelines.local.network"]
        self.limits = sandbox.Limits.from_config(config)
        self._lock = threading.Lock()
        self._attempts: dict[tuple[int, int], _Attempt] = {}

    # -- isolation ---------------------------------------------------------------------------------------------------

    @property
    def sandboxed(self) -> bool:
        """Whether steps run under bubblewrap. Raises SandboxUnavailable when the
        configuration insists on bubblewrap and it does not work here."""
        if self.isolation_setting == "none":
            return False
        why = sandbox.probe(self.network)
        if why is None:
            return True
        if self.isolation_setting == "bubblewrap":
            raise sandbox.SandboxUnavailable(f"pipelines.local.isolation is 'bubblewrap' but {why}")
        if not self.network:
            # Without a network namespace "no network" cannot be kept; refuse rather than lie.
            raise sandbox.SandboxUnavailable(f"pipelines.local.network is false, which needs bubblewrap, but {why}")
        _warn_unsandboxed_once(why)
        return False

    # -- the interface -----------------------------------------------------------------------------------------------

    def prepare(self, ctx: JobContext) -> None:
        if not ctx.started_monotonic:
            ctx.started_monotonic = time.monotonic()
        self.sandboxed  # fail now, before a checkout, when the sandbox cannot run
        workspace = self._checked_workspace(ctx)
        self.config.workspaces_path.mkdir(parents=True, exist_ok=True)
        os.chmod(self.config.workspaces_path, 0o700)  # other local users see no job's files
        if workspace.exists() or workspace.is_symlink():
            _remove_tree(workspace)  # left over from a worker that died in this attempt
        if ctx.repository is not None:
            repos.checkout(ctx.repository, ctx.commit, workspace)
        else:
            workspace.mkdir(mode=0o700)
        ctx.log_path.parent.mkdir(parents=True, exist_ok=True)

    def run_step(self, ctx: JobContext, script: str) -> StepResult:
        attempt = self._attempt(ctx)
        if attempt.canceled.is_set():
            return StepResult(CANCELED, None, "canceled")
        if not ctx.started_monotonic:  # prepare() was skipped: the clock starts now
            ctx.started_monotonic = time.monotonic()
        if time.monotonic() >= ctx.deadline:
            return self._timed_out(ctx)
        argv = [*SHELL, script]
        if self.sandboxed:
            argv = sandbox.bwrap_command(
                workspace=ctx.workspace, data_path=self.config.data_path,
                repositories=[ctx.repository] if ctx.repository is not None else [],
                network=self.network, argv=argv)
        env = self._environment(ctx)
        out = os.open(ctx.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            # Under the lock so a cancel() either comes before (and we do not start) or
            # finds the process group to signal.
            with attempt.lock:
                if attempt.canceled.is_set():
                    return StepResult(CANCELED, None, "canceled")
                try:
                    proc = subprocess.Popen(
                        argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=ctx.workspace, env=env,
                        start_new_session=True, close_fds=True, preexec_fn=sandbox.child_setup(self.limits))
                except (OSError, subprocess.SubprocessError) as exc:
                    raise ExecutorError(f"could not start the step: {exc}") from exc
                attempt.pgid = proc.pid
        finally:
            os.close(out)
        ended_by = self._wait(ctx, attempt, proc)
        with attempt.lock:
            # The leader has exited but is not reaped yet, so its pid still names this
            # group: kill what the step left behind (`cmd &`) without hitting a stranger.
            _kill_group(proc.pid, signal.SIGKILL)
            attempt.pgid = None
            proc.wait()
        code = proc.returncode
        if ended_by == CANCELED or attempt.canceled.is_set():
            return StepResult(CANCELED, None, "canceled")
        if ended_by == TIMED_OUT:
            return self._timed_out(ctx)
        if code < 0:
            return StepResult(FAILED, None, f"killed by {_signal_name(-code)}")
        return StepResult(SUCCESS if code == 0 else FAILED, code)

    def cancel(self, ctx: JobContext) -> None:
        attempt = self._attempt(ctx)
        with attempt.lock:
            attempt.canceled.set()
            if attempt.pgid is not None:
                _kill_group(attempt.pgid, signal.SIGTERM)
        # The step's own thread sends SIGKILL after the grace period (see _wait).

    def cleanup(self, ctx: JobContext) -> None:
        workspace = self._checked_workspace(ctx)
        if workspace.exists() or workspace.is_symlink():
            _remove_tree(workspace)
        with self._lock:
            self._attempts.pop((ctx.job_id, ctx.attempt), None)

    # -- helpers -----------------------------------------------------------------------------------------------------

    def _attempt(self, ctx: JobContext) -> _Attempt:
        with self._lock:
            return self._attempts.setdefault((ctx.job_id, ctx.attempt), _Attempt())

    def _checked_workspace(self, ctx: JobContext) -> pathlib.Path:
        # cleanup() deletes this tree: make sure it is a workspace and nothing else.
        root = self.config.workspaces_path.resolve()
        workspace = pathlib.Path(ctx.workspace)
        if workspace.parent.resolve() != root or workspace.name in ("", ".", ".."):
            raise ExecutorError(f"workspace {workspace} is not a directory directly under {root}")
        return root / workspace.name

    def _environment(self, ctx: JobContext) -> dict[str, str]:
        path = BASE_PATH + (":" + NIXOS_PATH if os.path.isdir(NIXOS_PATH) else "")
        env = {"PATH": path, "HOME": str(ctx.workspace), "LANG": "C.UTF-8"}
        for name, value in ctx.env.items():
            if not name or "=" in name or "\0" in name or "\0" in str(value):
                raise ExecutorError(f"environment variable {name!r} has a name or value the system cannot pass "
                                    "(empty, '=' in the name, or a NUL byte)")
            env[name] = str(value)
        return env

    def _timed_out(self, ctx: JobContext) -> StepResult:
        return StepResult(TIMED_OUT, None, f"timed out after {format_duration(ctx.timeout_seconds)}")

    def _wait(self, ctx: JobContext, attempt: _Attempt, proc: subprocess.Popen) -> str | None:
        """Wait for the step's leader to exit without reaping it; end the step on timeout or
        cancel. Returns what ended it: TIMED_OUT, CANCELED, or None (it exited by itself)."""
        ended_by: str | None = None
        term_sent = 0.0
        killed = False
        exited = _ExitWatch(proc.pid)
        try:
            while not exited.wait(self.POLL_SECONDS):
                now = time.monotonic()
                if ended_by is None:
                    if attempt.canceled.is_set():
                        ended_by = CANCELED
                    elif now >= ctx.deadline:
                        ended_by = TIMED_OUT
                    if ended_by is not None:
                        _kill_group(proc.pid, signal.SIGTERM)
                        term_sent = now
                elif not killed and now - term_sent >= self.KILL_GRACE_SECONDS:
                    _kill_group(proc.pid, signal.SIGKILL)
                    killed = True
        finally:
            exited.close()
        return ended_by


class _ExitWatch:
    """Waits for a child to exit, leaving it unreaped (a pidfd, or waitid polling on old kernels)."""

    def __init__(self, pid: int):
        self.pid = pid
        try:
            self.fd: int | None = os.pidfd_open(pid)
        except (AttributeError, OSError):
            self.fd = None

    def wait(self, timeout: float) -> bool:
        if self.fd is not None:
            # poll, not select: select() cannot watch a descriptor numbered 1024 or above,
            # which a busy worker process (many connections and files open) reaches.
            watcher = select.poll()
            watcher.register(self.fd, select.POLLIN)
            return bool(watcher.poll(timeout * 1000))
        if os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        time.sleep(timeout)
        return False

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:  # the group is already gone
        pass


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


_warned: set[str] = set()


def _warn_unsandboxed_once(why: str) -> None:
    if why not in _warned:
        _warned.add(why)
        log.warning("jobs on the local executor run without bubblewrap isolation: %s", why)


def _remove_tree(path: pathlib.Path) -> None:
    """rmtree that also removes what a job made read-only (Go's module cache does),
    and removes a symlink itself rather than what it points to."""
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
        return

    def make_writable_and_retry(func, failed, _exc_info):
        parent = os.path.dirname(failed)
        try:
            os.chmod(parent, stat.S_IRWXU)
            if os.path.isdir(failed) and not os.path.islink(failed):
                os.chmod(failed, stat.S_IRWXU)
        except OSError:
            pass
        func(failed)

    shutil.rmtree(path, onerror=make_writable_and_retry)
