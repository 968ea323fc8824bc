"""Pipeline engine benchmarks: trigger -> first step latency, and dispatch throughput.

    .venv/bin/python bench/pipelines.py latency [--runs 40] [--servers]
    .venv/bin/python bench/pipelines.py throughput [--jobs 1000] [--servers] [--workers 8]

``latency``: a real `prts worker` (Huey consumer) runs one-job pipelines; each job's first
step prints the wall clock the moment its shell starts (`date +%s%N`), and the latency is
that instant minus the moment `runs.trigger()` was called: pipeline file read from git,
planning, rows, queue, claim, workspace checkout, sandbox and shell start. p50 and p95 are
printed against the goal (150 ms / 300 ms) and against the 2 s fetch interval that
act_runner polls with by default (GitLab Runner's `check_interval` is 3 s) — those runners
cannot run here, so their poll interval, which bounds their pickup delay from below on
average by half of it, is the reference.

``throughput``: a 1,000-job DAG (10 stages of 100 jobs, each stage needing the one
before) of no-op jobs (`true`), timed from trigger to the run's end: jobs per second with
real workers, sandboxes and the whole state machine; then the same DAG through the state
machine alone (claim -> finish -> propagate -> enqueue, through the real queue and
database, no process started) which is the dispatch figure the goal (>= 200 jobs/s) is
about.

``--servers`` runs on PostgreSQL + Redis started on free loopback ports (tests/servers.py)
instead of the embedded SQLite defaults.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


from appliance import migrate  # noqa: E402
from appliance.context import Appliance  # noqa: E402
from appliance.models import PipelineRun, Status  # noqa: E402
from appliance.pipelines import dispatch, runs  # noqa: E402
from appliance.pipelines.logs import LogReader  # noqa: E402
from tests.conftest import make_config  # noqa: E402
from tests.pipelinekit import commit, make_project  # noqa: E402

ACT_RUNNER_FETCH_INTERVAL = 2.0


@contextlib.contextmanager
def backends(use_servers: bool, tmp: Path):
    if not use_servers:
        yield {}
        return
    from servers import PostgresServer, RedisServer

    with PostgresServer(tmp / "pg") as pg, RedisServer(tmp / "redis") as redis:
        yield {"database__url": pg.create_database("bench"), "queue__backend": "redis", "queue__url": redis.url,
               "pubsub__backend": "redis", "pubsub__url": redis.url}


def worker_env(data: Path, values: dict, workers: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRTS_")}
    env.update(PRTS_DATA_DIR=str(data), PRTS_QUEUE_WORKERS=str(workers), PRTS_LOG_LEVEL="warning",
               PRTS_PIPELINES_JOB_CONCURRENCY="64")
    for key, value in values.items():
        env["PRTS_" + key.replace("__", "_").upper()] = str(value)
    return env


@contextlib.contextmanager
def workers(data: Path, values: dict, count: int = 1, threads: int = 2):
    procs = [subprocess.Popen([sys.executable, "-m", "appliance", "worker", "--skip-checks"],
                              env=worker_env(data, values, threads)) for _ in range(count)]
    try:
        time.sleep(2.0)  # consumers up and polling
        yield procs
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def latency(args) -> None:
    with tempfile.TemporaryDirectory() as tmp_name, backends(args.servers, Path(tmp_name)) as values:
        tmp = Path(tmp_name)
        app = Appliance(make_config(tmp / "data", pipelines__job_concurrency=64, **values))
        migrate.upgrade(app.db)
        pid = make_project(app)
        sha = commit(app, pid, {".prts/pipeline.yaml": """
version: "1.0"
name: latency
stages: [ { name: A, jobs: [ { name: J, steps: [ { run: "echo T0=$(date +%s%N)" } ] } ] } ]
"""})
        samples = []
        with workers(tmp / "data", values):
            for _ in range(args.runs + 3):
                t0 = time.time()
                run = runs.trigger(app, pid, "refs/heads/main", sha, "manual", None)
                job_id = wait_finished(app, run.id)
                text = [line.text for line in LogReader(app, job_id, 1).lines(1, 50)]
                started = next(int(t.split("=", 1)[1]) for t in text if t.startswith("T0="))
                samples.append(started / 1e9 - t0)
                time.sleep(0.2)
        samples = samples[3:]  # warm-up: imports, first checkout
        p50, p95 = percentile(samples, 0.5) * 1000, percentile(samples, 0.95) * 1000
        setup = "PostgreSQL + Redis" if args.servers else "embedded (SQLite queue and database)"
        print(f"trigger -> first step started, {setup}, {len(samples)} runs: p50 {p50:.0f} ms "
              f"(goal <= 150), p95 {p95:.0f} ms (goal <= 300); act_runner polls every "
              f"{ACT_RUNNER_FETCH_INTERVAL:.0f} s: ratio of its interval to our p50 "
              f"{ACT_RUNNER_FETCH_INTERVAL * 1000 / p50:.1f}x")
        app.close()


def wait_finished(app, run_id: int, timeout: float = 600) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with app.db.session() as s:
            run = s.get(PipelineRun, run_id)
            if run.finished_at is not None:
                assert run.status == "success", (run.status, [(j.name, j.failure_reason) for j in run.jobs])
                return run.jobs[0].id
        time.sleep(0.01)
    raise TimeoutError(f"run {run_id} did not finish")


def dag(stages: int, per_stage: int) -> str:
    lines = ['version: "1.0"', "name: dag", "stages:"]
    for s in range(stages):
        lines.append(f"  - name: S{s}")
        lines.append("    jobs:")
        for j in range(per_stage):
            lines.append(f'      - {{ name: J{j}, steps: [ {{ run: "true" }} ] }}')
    return "\n".join(lines) + "\n"


def throughput(args) -> None:
    stages = 10
    per_stage = args.jobs // stages
    with tempfile.TemporaryDirectory() as tmp_name, backends(args.servers, Path(tmp_name)) as values:
        tmp = Path(tmp_name)
        app = Appliance(make_config(tmp / "data", pipelines__job_concurrency=64, **values))
        migrate.upgrade(app.db)
        pid = make_project(app)
        sha = commit(app, pid, {".prts/pipeline.yaml": dag(stages, per_stage)})
        setup = "PostgreSQL + Redis" if args.servers else "embedded"

        # 1. The state machine alone, through the real queue and database.
        t0 = time.perf_counter()
        run = runs.trigger(app, pid, "refs/heads/main", sha, "manual", None)
        planned = time.perf_counter() - t0
        done = state_machine_only(app)
        elapsed = time.perf_counter() - t0
        assert done == stages * per_stage, done
        print(f"trigger (parse, plan, store {done} jobs and their edges), {setup}: {planned:.2f} s")
        print(f"dispatch, {setup}: {done} jobs in {elapsed:.2f} s including the trigger = "
              f"{done / elapsed:.0f} jobs/s; after the trigger {done / (elapsed - planned):.0f} jobs/s "
              f"(goal >= 200: {'met' if done / elapsed >= 200 else 'NOT met'}); claim, finish, propagate and "
              f"enqueue through the queue, no process started")

        # 2. Real workers running `true` in the local executor.
        with workers(tmp / "data", values, count=1, threads=args.workers):
            t0 = time.perf_counter()
            run = runs.trigger(app, pid, "refs/heads/main", sha, "manual", None)
            wait_finished(app, run.id, timeout=3600)
            elapsed = time.perf_counter() - t0
        total = stages * per_stage
        print(f"end to end, {setup}, {args.workers} worker threads: {total} jobs in {elapsed:.1f} s = "
              f"{total / elapsed:.1f} jobs/s (each job: claim, checkout, sandboxed `true`, log, finish)")
        app.close()


def state_machine_only(app) -> int:
    """Drain the queue, but 'run' each job as an instant success."""
    huey = app.huey
    app.tasks
    cfg = app.config.pipelines
    count = 0
    while True:
        task = huey.dequeue()
        if task is None:
            return count
        job_id = task.args[0]
        with app.db.session() as s:
            claim = dispatch.claim(s, job_id, "bench:1", lease_seconds=cfg.lease_seconds, default_concurrency=10_000)
        if claim is None:
            continue
        with app.db.session() as s:
            transition = dispatch.finish(s, claim, Status.SUCCESS, exit_code=0)
        runs.announce(app, transition)
        count += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("latency", "throughput"))
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--servers", action="store_true")
    args = parser.parse_args()
    (latency if args.what == "latency" else throughput)(args)


if __name__ == "__main__":
    main()
