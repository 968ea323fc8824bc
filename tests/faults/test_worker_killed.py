"""A worker SIGKILLed in the middle of a job.

A real Huey consumer (`prts worker`) runs a job that writes numbered lines, also into a
file in its workspace. The test SIGKILLs the consumer, then checks what the design
promises: the job's processes die with it (so the job never runs twice at once), the
reconciler requeues the job once its lease expired, the first attempt's stored log holds
every line the job wrote before the kill, and a new worker runs the second attempt.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from appliance import migrate
from appliance.context import Appliance
from appliance.models import PipelineJob, Status
from appliance.pipelines import runner, runs
from appliance.pipelines.logs import LogReader
from tests.conftest import make_config
from tests.pipelinekit import commit, make_project

LEASE = 3
MARKER = "prts-fault-marker-7f3a"
PIPELINE = f"""
version: "1.0"
name: faults
stages:
  - name: A
    jobs:
      - name: Counter
        retry: 0
        steps:
          - run: |
              if [ "$PRTS_ATTEMPT" = 1 ]; then
                for i in $(seq 1 100000); do echo "line-$i"; echo "line-$i" >> progress.txt; sleep 0.01; done
                # {MARKER}
              fi
              echo "second attempt done"
"""


def _worker(data_dir: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRTS_")}
    env.update(PRTS_DATA_DIR=str(data_dir), PRTS_PIPELINES_LEASE_SECONDS=str(LEASE), PRTS_QUEUE_WORKERS="1",
               PRTS_LOG_FORMAT="text")
    return subprocess.Popen([sys.executable, "-m", "appliance", "worker", "--skip-checks"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _job_processes() -> list[int]:
    """Processes whose command line carries the job's script (sh -c '<script>')."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if MARKER.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _job(app, job_id: int) -> PipelineJob:
    with app.db.session() as s:
        return s.get(PipelineJob, job_id)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_sigkilled_worker_loses_no_line_and_the_job_runs_once_at_a_time(tmp_path):
    data = tmp_path / "data"
    app = Appliance(make_config(data, pipelines__lease_seconds=LEASE))
    migrate.upgrade(app.db)
    pid = make_project(app)
    sha = commit(app, pid, {".prts/pipeline.yaml": PIPELINE})
    run = runs.trigger(app, pid, "refs/heads/main", sha, "push", None)
    with app.db.session() as s:
        job_id = s.scalars(sa.select(PipelineJob.id).where(PipelineJob.run_id == run.id)).one()

    first = _worker(data)
    try:
        wait_for(lambda: _job(app, job_id).status == "running", 60, "the job to start")
        wait_for(lambda: LogReader(app, job_id, 1).line_count() > 50, 60, "stored log lines")
        assert _job_processes(), "the job's shell is not visible in /proc"
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        # The job's processes die with the worker (PDEATHSIG / bubblewrap --die-with-parent).
        wait_for(lambda: not _job_processes(), 10, "the job's processes to die with the worker")
        progress = (data / "workspaces" / f"{job_id}-1" / "progress.txt").read_text().split()
        assert len(progress) > 50

        assert _job(app, job_id).status == "running"  # nobody knows yet: the lease still holds
        time.sleep(LEASE + 0.5)
        runner.reconcile(app)  # what the periodic task does
        job = _job(app, job_id)
        assert (job.status, job.attempt, job.lost_count) == ("queued", 2, 1)

        reader = LogReader(app, job_id, 1)
        stored = [line.text for line in reader.lines(1, reader.line_count())]
        counted = [text for text in stored if text.startswith("line-")]
        # Every line the job wrote before the kill is in the log, in order, once.
        assert counted[: len(progress)] == progress, (len(counted), len(progress))
        assert counted == [f"line-{i}" for i in range(1, len(counted) + 1)]
        assert any("stopped" in text for text in stored)
        assert not (data / "workspaces" / f"{job_id}-1").exists()
    finally:
        first.kill()
        first.wait()

    second = _worker(data)
    try:
        wait_for(lambda: _job(app, job_id).status == Status.SUCCESS.value, 60, "the second attempt to succeed")
        texts = [line.text for line in LogReader(app, job_id, 2).lines(1, 1000)]
        assert "second attempt done" in texts
    finally:
        second.terminate()
        second.wait(30)
        app.close()
