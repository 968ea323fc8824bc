"""The local executor with real subprocesses, without isolation and under real bubblewrap.

Every behaviour a job relies on is checked in both modes: exit codes per step, the
environment (the job's, never the worker's), output appended to the spool file in order,
the job's deadline and cancel killing the whole process tree, rlimits, a checkout of a
real commit, and the job dying with its worker.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from appliance.executors import make_executor, sandbox
from appliance.executors.base import JobContext, format_duration
from appliance.executors.local import LocalExecutor
from conftest import ROOT, make_config

GIT_ENV = {"GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@example.test", "GIT_COMMITTER_NAME": "Dev",
           "GIT_COMMITTER_EMAIL": "dev@example.test", "GIT_CONFIG_GLOBAL": "/dev/null", "HOME": "/nonexistent"}


@pytest.fixture(params=["none", "bubblewrap"])
def isolation(request) -> str:
    if request.param == "bubblewrap":
        why = sandbox.probe(network=True)
        if why:
            pytest.fail(f"bubblewrap does not work here ({why}); make test installs it and the suite needs it")
    return request.param


def make(tmp_path: Path, isolation: str, **values) -> LocalExecutor:
    config = make_config(tmp_path / "data", pipelines__local__isolation=isolation, **values)
    executor = make_executor(config)
    assert isinstance(executor, LocalExecutor)
    assert executor.sandboxed == (isolation == "bubblewrap")
    return executor


def context(executor: LocalExecutor, *, job_id: int = 1, attempt: int = 1, env: dict | None = None,
            timeout: int = 60, repository: Path | None = None, commit: str = "") -> JobContext:
    config = executor.config
    return JobContext(job_id=job_id, attempt=attempt, workspace=config.workspaces_path / f"{job_id}-{attempt}",
                      repository=repository, commit=commit, env=env or {}, timeout_seconds=timeout,
                      log_path=config.spool_path / f"{job_id}-{attempt}.log")


def token() -> int:
    """A sleep length no other process on the machine is using: finds the job's processes in /proc."""
    return random.randrange(5_000_000, 9_000_000)


def processes_with(marker: int) -> list[int]:
    found = []
    needle = str(marker).encode()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if needle in fh.read():
                    found.append(int(pid))
        except OSError:  # exited meanwhile
            continue
    return found


def wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


# -- steps, exit codes, environment, output --------------------------------------------------------------------


def test_exit_code_per_step_and_sh_e(tmp_path, isolation):
    executor = make(tmp_path, isolation)
    ctx = context(executor)
    executor.prepare(ctx)
    try:
        assert ctx.workspace.is_dir() and ctx.started_monotonic > 0
        first = executor.run_step(ctx, "true")
        assert (first.outcome, first.exit_code) == ("success", 0)
        second = executor.run_step(ctx, "exit 3")
        assert (second.outcome, second.exit_code, second.detail) == ("failed", 3, "")
        third = executor.run_step(ctx, "false\necho never")  # sh -e: the first failure ends the step
        assert (third.outcome, third.exit_code) == ("failed", 1)
        assert executor.run_step(ctx, "pwd > where; echo data > file").outcome == "success"
        assert (ctx.workspace / "file").read_text() == "data\n"
        assert (ctx.workspace / "where").read_text().strip() == str(ctx.workspace)
        assert "never" not in ctx.log_path.read_text()
    finally:
        executor.cleanup(ctx)
    assert not ctx.workspace.exists()
    executor.cleanup(ctx)  # idempotent


def test_job_env_reaches_the_step_and_the_workers_env_does_not(tmp_path, isolation, monkeypatch):
    monkeypatch.setenv("PRTS_FAKE_SECRET", "worker-secret-value")
    monkeypatch.setenv("PRTS_DATABASE_URL", "postgresql://u:worker-db-password@h/db")
    executor = make(tmp_path, isolation)
    ctx = context(executor, env={"GREETING": "hello world", "PRTS_JOB_ID": "1", "DEPLOY_TOKEN": "job-secret"})
    executor.prepare(ctx)
    try:
        result = executor.run_step(ctx, 'echo "greeting=$GREETING token=$DEPLOY_TOKEN home=$HOME"\nenv')
        assert result.outcome == "success"
        log = ctx.log_path.read_text()
        assert f"greeting=hello world token=job-secret home={ctx.workspace}" in log
        assert "worker-secret-value" not in log and "PRTS_FAKE_SECRET" not in log
        assert "worker-db-password" not in log
        names = {line.split("=", 1)[0] for line in log.splitlines()[1:] if "=" in line}
        # Nothing beyond the job's variables and the basics (the shell adds PWD and maybe SHLVL).
        assert names <= {"GREETING", "PRTS_JOB_ID", "DEPLOY_TOKEN", "PATH", "HOME", "LANG", "PWD", "SHLVL", "OLDPWD"}
    finally:
        executor.cleanup(ctx)


def test_variables_are_expanded_by_the_shell_not_evaluated_twice(tmp_path, isolation):
    executor = make(tmp_path, isolation)
    ctx = context(executor, env={"A": "x", "B": "y", "EVIL": "$(touch pwned) `touch pwned2`"})
    executor.prepare(ctx)
    try:
        assert executor.run_step(ctx, 'echo "${A}-$B"; echo "$EVIL"; echo $EVIL').outcome == "success"
        lines = ctx.log_path.read_text().splitlines()
        assert lines[0] == "x-y"
        assert lines[1] == "$(touch pwned) `touch pwned2`"
        assert not (ctx.workspace / "pwned").exists() and not (ctx.workspace / "pwned2").exists()
    finally:
        executor.cleanup(ctx)


def test_output_of_every_step_is_appended_to_the_spool_in_order(tmp_path, isolation):
    executor = make(tmp_path, isolation)
    ctx = context(executor)
    executor.prepare(ctx)
    ctx.log_path.write_text("written before the job\n")
    try:
        executor.run_step(ctx, "echo one; echo two >&2; echo three")
        executor.run_step(ctx, "printf 'no newline'")
        executor.run_step(ctx, "echo ' four' >&2; exit 2")
        assert ctx.log_path.read_text() == "written before the job\none\ntwo\nthree\nno newline four\n"
    finally:
        executor.cleanup(ctx)


def test_spool_is_created_when_missing(tmp_path, isolation):
    executor = make(tmp_path, isolation)
    ctx = context(executor)
    executor.prepare(ctx)
    try:
        assert not ctx.log_path.exists()
        executor.run_step(ctx, "echo hi")
        assert ctx.log_path.read_text() == "hi\n"
        assert ctx.log_path.stat().st_mode & 0o777 == 0o600
    finally:
        executor.cleanup(ctx)


# -- deadline and cancel --------------------------------------------------------------------------------------------


def test_timeout_kills_the_whole_group_including_a_grandchild(tmp_path, isolation):
    executor = make(tmp_path, isolation)
    ctx = context(executor, timeout=1)
    marker = token()
    executor.prepare(ctx)
    try:
        started = time.monotonic()
        result = executor.run_step(ctx, f"sleep {marker} &\nsleep {marker + 1}\necho unreachable")
        assert time.monotonic() - started < 4
        assert (result.outcome, result.exit_code, result.detail) == ("timed_out", None, "timed out after 1s")
        assert wait_until(lambda: not processes_with(marker) and not processes_with(marker + 1), 5), \
            f"job processes survived the timeout: {processes_with(marker) + processes_with(marker + 1)}"
        # The job's deadline has passed: later steps do not start.
        later = executor.run_step(ctx, "touch started")
        assert later.outcome == "timed_out" and not (ctx.workspace / "started").exists()
    finally:
        executor.cleanup(ctx)


def test_a_step_ignoring_sigterm_gets_sigkill_after_the_grace(tmp_path, isolation):
    executor = make(tmp_path, isolation)
    executor.KILL_GRACE_SECONDS = 0.5
    ctx = context(executor, timeout=1)
    marker = token()
    executor.prepare(ctx)
    try:
        started = time.monotonic()
        result = executor.run_step(ctx, f"trap '' TERM\nsleep {marker}\nsleep {marker}")
        assert result.outcome == "timed_out"
        assert time.monotonic() - started < 5
        assert wait_until(lambda: not processes_with(marker), 5)
    finally:
        executor.cleanup(ctx)


def test_leftover_background_processes_end_with_their_step(tmp_path, isolation):
    executor = make(tmp_path, isolation)
    ctx = context(executor)
    marker = token()
    executor.prepare(ctx)
    try:
        assert executor.run_step(ctx, f"sleep {marker} &\necho started").outcome == "success"
        assert wait_until(lambda: not processes_with(marker), 5)
    finally:
        executor.cleanup(ctx)


def test_cancel_from_another_thread(tmp_path, isolation):
    executor = make(tmp_path, isolation)
    ctx = context(executor)
    marker = token()
    executor.prepare(ctx)
    try:
        timer = threading.Timer(0.5, executor.cancel, args=(ctx,))
        timer.start()
        started = time.monotonic()
        result = executor.run_step(ctx, f"sleep {marker} &\nsleep {marker + 1}")
        timer.join()
        assert (result.outcome, result.exit_code) == ("canceled", None)
        assert time.monotonic() - started < 4
        assert wait_until(lambda: not processes_with(marker) and not processes_with(marker + 1), 5)
        later = executor.run_step(ctx, "touch started")
        assert later.outcome == "canceled" and not (ctx.workspace / "started").exists()
    finally:
        executor.cleanup(ctx)


def test_cancel_before_the_first_step(tmp_path, isolation):
    executor = make(tmp_path, isolation)
    ctx = context(executor)
    executor.prepare(ctx)
    try:
        executor.cancel(ctx)
        executor.cancel(ctx)  # twice is fine
        assert executor.run_step(ctx, "touch started").outcome == "canceled"
        assert not (ctx.workspace / "started").exists()
    finally:
        executor.cleanup(ctx)


def test_a_step_killed_by_a_signal_has_no_exit_code(tmp_path):
    executor = make(tmp_path, "none")
    ctx = context(executor)
    executor.prepare(ctx)
    try:
        result = executor.run_step(ctx, "kill -KILL $$")
        assert (result.outcome, result.exit_code, result.detail) == ("failed", None, "killed by SIGKILL")
    finally:
        executor.cleanup(ctx)


def test_duration_format():
    assert format_duration(600) == "10m"
    assert format_duration(90) == "1m30s"
    assert format_duration(3600) == "1h"
    assert format_duration(5400) == "1h30m"
    assert format_duration(1) == "1s"


# -- rlimits ---------------------------------------------------------------------------------------------------------


def test_rlimits_apply_to_the_job(tmp_path, isolation):
    executor = make(tmp_path, isolation, pipelines__local__max_file_mb=1, pipelines__local__max_memory_mb=512,
                    pipelines__local__max_processes=300)
    ctx = context(executor)
    executor.prepare(ctx)
    try:
        assert executor.run_step(ctx, "cat /proc/self/limits").outcome == "success"
        limits = {line[:26].strip(): line[26:].split()[:2] for line in ctx.log_path.read_text().splitlines()[1:]}
        assert limits["Max core file size"] == ["0", "0"]
        assert limits["Max address space"] == [str(512 << 20)] * 2
        assert limits["Max processes"] == ["300", "300"]
        assert limits["Max file size"] == [str(1 << 20)] * 2
        big = executor.run_step(ctx, "head -c 3000000 /dev/zero > big")
        assert big.outcome == "failed"  # SIGXFSZ killed head: 128 + 25
        assert (ctx.workspace / "big").stat().st_size <= 1024 * 1024
        if Path("/usr/bin/python3").exists():
            memory = executor.run_step(ctx, "/usr/bin/python3 -c 'bytearray(1024 * 1024 * 1024)'")
            assert memory.outcome == "failed"
            assert "MemoryError" in ctx.log_path.read_text()
    finally:
        executor.cleanup(ctx)


# -- checkout -------------------------------------------------------------------------------------------------------


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def bare_repo(tmp_path) -> tuple[Path, str, str]:
    """A bare repository with two commits; returns it and both commits' ids."""
    bare = tmp_path / "data" / "repositories" / "7.git"
    bare.parent.mkdir(parents=True)
    git("init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    work = tmp_path / "clone"
    git("clone", "--quiet", str(bare), str(work))
    (work / "hello.txt").write_text("first\n")
    (work / "scripts").mkdir()
    (work / "scripts" / "build.sh").write_text("#!/bin/sh\necho built from $(cat hello.txt)\n")
    (work / "scripts" / "build.sh").chmod(0o755)
    git("add", "--all", cwd=work)
    git("commit", "--quiet", "-m", "one", cwd=work)
    first = git("rev-parse", "HEAD", cwd=work)
    (work / "hello.txt").write_text("second\n")
    git("commit", "--quiet", "-am", "two", cwd=work)
    second = git("rev-parse", "HEAD", cwd=work)
    git("push", "--quiet", "origin", "HEAD:refs/heads/main", cwd=work)
    return bare, first, second


def test_checkout_of_a_real_commit(tmp_path, isolation, bare_repo):
    bare, first, second = bare_repo
    executor = make(tmp_path, isolation)
    ctx = context(executor, repository=bare, commit=first)
    executor.prepare(ctx)
    try:
        assert (ctx.workspace / "hello.txt").read_text() == "first\n"  # the commit asked for, not the branch tip
        result = executor.run_step(ctx, "./scripts/build.sh\ngit rev-parse HEAD\ngit cat-file -p HEAD:hello.txt")
        assert result.outcome == "success", ctx.log_path.read_text()
        assert ctx.log_path.read_text().splitlines() == ["built from first", first, "first"]
        # The project's repository is read-only to the job (under bubblewrap; without it,
        # file permissions are all there is).
        if isolation == "bubblewrap":
            write = executor.run_step(ctx, f"touch {bare}/objects/planted")
            assert write.outcome == "failed" and not (bare / "objects" / "planted").exists()
    finally:
        executor.cleanup(ctx)
    assert not ctx.workspace.exists() and (bare / "HEAD").exists()


def test_prepare_replaces_a_leftover_workspace(tmp_path, isolation, bare_repo):
    bare, first, _ = bare_repo
    executor = make(tmp_path, isolation)
    ctx = context(executor, repository=bare, commit=first)
    ctx.workspace.mkdir(parents=True)
    (ctx.workspace / "stale").write_text("from a worker that died")
    (ctx.workspace / "ro").mkdir()
    (ctx.workspace / "ro" / "f").write_text("x")
    (ctx.workspace / "ro").chmod(0o500)
    executor.prepare(ctx)
    try:
        assert not (ctx.workspace / "stale").exists() and (ctx.workspace / "hello.txt").exists()
    finally:
        executor.cleanup(ctx)


def test_a_workspace_outside_the_workspaces_directory_is_refused(tmp_path):
    from appliance.executors.base import ExecutorError

    executor = make(tmp_path, "none")
    ctx = context(executor)
    ctx.workspace = tmp_path / "elsewhere"
    with pytest.raises(ExecutorError, match="not a directory directly under"):
        executor.prepare(ctx)
    with pytest.raises(ExecutorError):
        executor.cleanup(ctx)


# -- the job dies with its worker ---------------------------------------------------------------------------------

_WORKER = textwrap.dedent("""
    import os, sys, pathlib
    sys.path.insert(0, os.environ["ROOT"])
    from appliance.config import load
    from appliance.executors import make_executor
    from appliance.executors.base import JobContext
    config = load(env={}, files=[], overrides={"data_dir": os.environ["DATA"],
                  "pipelines.local.isolation": os.environ["ISOLATION"]})
    executor = make_executor(config)
    ctx = JobContext(1, 1, config.workspaces_path / "1-1", None, "", {}, 600, config.spool_path / "1-1.log")
    executor.prepare(ctx)
    executor.run_step(ctx, os.environ["SCRIPT"])
""")


def test_the_job_dies_when_its_worker_is_killed(tmp_path, isolation):
    marker = token()
    # Without bubblewrap only the step's first process is tied to the worker (PDEATHSIG is
    # not inherited), so the job's process is that one; under bubblewrap the whole PID
    # namespace goes, grandchildren included.
    script = f"exec sleep {marker}" if isolation == "none" else f"sleep {marker} &\nsleep {marker + 1}\necho done"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "ROOT": str(ROOT), "DATA": str(tmp_path / "data"),
           "ISOLATION": isolation, "SCRIPT": script}
    worker = subprocess.Popen([sys.executable, "-c", _WORKER], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: processes_with(marker), 15), worker.stdout.read1() if worker.poll() else "no job"
        worker.send_signal(signal.SIGKILL)
        worker.wait(5)
        assert wait_until(lambda: not processes_with(marker) and not processes_with(marker + 1), 5), \
            f"job processes outlived the worker: {processes_with(marker) + processes_with(marker + 1)}"
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        for pid in processes_with(marker) + processes_with(marker + 1):
            os.kill(pid, signal.SIGKILL)


def test_a_worker_with_over_a_thousand_open_descriptors_still_runs_steps(tmp_path, isolation):
    """A busy worker holds many connections and files: descriptors numbered 1024 and up must
    not break waiting for a step (select() cannot watch them; the full suite hit this)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2048:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    held = []
    try:
        while not held or held[-1] < 1100:
            held.append(os.open(os.devnull, os.O_RDONLY))
        executor = make(tmp_path, isolation)
        ctx = context(executor)
        executor.prepare(ctx)
        try:
            result = executor.run_step(ctx, "echo high")
            assert (result.outcome, result.exit_code) == ("success", 0), result.detail
        finally:
            executor.cleanup(ctx)
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
