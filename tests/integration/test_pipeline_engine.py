"""The pipeline engine end to end: trigger -> plan -> rows -> queue -> local executor -> logs.

Every test runs real jobs (shell steps in subprocesses, in bubblewrap when it works here)
through the same Huey task code the consumer runs (``drain`` runs queued tasks in this
process), on SQLite and on a real PostgreSQL server.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
import sqlalchemy as sa

from appliance.context import Appliance
from appliance.models import PipelineJob, PipelineRun, PipelineSchedule, PipelineStep, Project, Status
from appliance.models.base import utcnow
from appliance.pipelines import dispatch, runs, schedules
from appliance.pipelines.logs import LogReader
from tests.conftest import make_config
from tests.pipelinekit import commit, drain, make_project


@pytest.fixture
def engine_app(tmp_path, db_values):
    from appliance import migrate

    app = Appliance(make_config(tmp_path / "data", pipelines__lease_seconds=3, **db_values))
    migrate.upgrade(app.db)
    yield app
    app.close()


def run_of(app, run_id: int) -> PipelineRun:
    with app.db.session() as s:
        run = s.get(PipelineRun, run_id)
        _ = run.jobs, [j.steps for j in run.jobs]
        return run


def jobs_by_name(app, run_id: int) -> dict[str, PipelineJob]:
    return {job.name: job for job in run_of(app, run_id).jobs}


def log_text(app, job: PipelineJob, attempt: int | None = None) -> str:
    reader = LogReader(app, job.id, attempt or job.attempt)
    return "".join(line.text + "\n" for line in reader.lines(1, reader.line_count()))


def start(app, pid: int, pipeline: str, *, branch: str = "main", event: str = "push", extra: dict | None = None):
    sha = commit(app, pid, {".prts/pipeline.yaml": pipeline, **(extra or {})}, branch=branch)
    run = runs.trigger(app, pid, f"refs/heads/{branch}", sha, event, None)
    assert run is not None, "the pipeline's triggers did not match"
    return run


TWO_STAGES = """
version: "1.0"
name: Build and Deploy
variables: { GREETING: hello }
stages:
  - name: Build
    jobs:
      - name: Test
        matrix: { python: ["3.11", "3.12"] }
        steps:
          - run: echo "$GREETING from python $python"
          - run: mkdir -p dist && echo "built $python" > dist/out-$python.txt
          - artifact: { path: dist/, name: build }
  - name: Deploy
    needs: [Build]
    when: { branch: main }
    jobs:
      - name: Release
        environment: production
        steps: [ { run: "ls dist/ && cat dist/*.txt && echo released $PRTS_BRANCH" } ]
"""


def test_a_run_goes_through_stages_with_matrix_artifacts_and_logs(engine_app):
    pid = make_project(engine_app)
    run = start(engine_app, pid, TWO_STAGES)
    # Two matrix jobs both upload "build": artifacts are per job, and Release gets both.
    drain(engine_app)
    done = run_of(engine_app, run.id)
    assert done.status == "success", [(j.name, j.status, j.failure_reason) for j in done.jobs]
    jobs = jobs_by_name(engine_app, run.id)
    assert set(jobs) == {"Test [python=3.11]", "Test [python=3.12]", "Release"}
    assert "hello from python 3.11" in log_text(engine_app, jobs["Test [python=3.11]"])
    release_log = log_text(engine_app, jobs["Release"])
    assert "built 3.11" in release_log and "built 3.12" in release_log and "released main" in release_log
    assert [s.exit_code for s in jobs["Test [python=3.12]"].steps] == [0, 0, 0]
    assert done.number == 1 and done.started_at and done.finished_at >= done.started_at


def test_failure_skips_dependents_and_allow_failure_does_not(engine_app):
    pid = make_project(engine_app)
    run = start(engine_app, pid, """
version: "1.0"
name: p
stages:
  - name: Build
    jobs:
      - name: Broken
        steps: [ { run: "echo before; exit 3" }, { run: "echo never" } ]
      - name: Flaky
        allow_failure: true
        steps: [ { run: "exit 1" } ]
  - name: Deploy
    jobs:
      - name: Ship
        steps: [ { run: "echo shipping" } ]
""")
    drain(engine_app)
    jobs = jobs_by_name(engine_app, run.id)
    assert jobs["Broken"].status == "failed" and jobs["Broken"].exit_code == 3
    assert [(s.status, s.exit_code) for s in jobs["Broken"].steps] == [("failed", 3), ("skipped", None)]
    assert "step 1" in jobs["Broken"].failure_reason
    assert jobs["Flaky"].status == "failed"
    assert jobs["Ship"].status == "skipped" and "Broken" in jobs["Ship"].skip_reason
    assert run_of(engine_app, run.id).status == "failed"
    assert "never" not in log_text(engine_app, jobs["Broken"]).replace("echo never", "")


def test_allow_failure_alone_lets_the_run_succeed(engine_app):
    pid = make_project(engine_app)
    run = start(engine_app, pid, """
version: "1.0"
name: p
stages:
  - name: A
    jobs: [ { name: Flaky, allow_failure: true, steps: [ { run: "exit 1" } ] } ]
  - name: B
    jobs: [ { name: After, steps: [ { run: "true" } ] } ]
""")
    drain(engine_app)
    jobs = jobs_by_name(engine_app, run.id)
    assert jobs["After"].status == "success"
    assert run_of(engine_app, run.id).status == "success"


def test_retry_runs_a_failed_job_again(engine_app):
    pid = make_project(engine_app)
    run = start(engine_app, pid, """
version: "1.0"
name: p
stages:
  - name: A
    jobs: [ { name: Flaky, retry: 1, steps: [ { run: "echo attempt $PRTS_ATTEMPT; test $PRTS_ATTEMPT = 2" } ] } ]
""")
    drain(engine_app)
    job = jobs_by_name(engine_app, run.id)["Flaky"]
    assert (job.status, job.attempt) == ("success", 2)
    assert "attempt 1" in log_text(engine_app, job, 1) and "attempt 2" in log_text(engine_app, job, 2)


def test_timeout_kills_the_job(engine_app):
    pid = make_project(engine_app)
    run = start(engine_app, pid, """
version: "1.0"
name: p
stages:
  - name: A
    jobs: [ { name: Slow, timeout: 2s, steps: [ { run: "echo start; sleep 60" } ] } ]
""")
    began = time.monotonic()
    drain(engine_app)
    job = jobs_by_name(engine_app, run.id)["Slow"]
    assert job.status == "failed" and "timed out" in job.failure_reason
    assert time.monotonic() - began < 30


def test_when_condition_skips_on_other_branches(engine_app):
    pid = make_project(engine_app)
    run = start(engine_app, pid, TWO_STAGES, branch="feature/x")
    drain(engine_app)
    jobs = jobs_by_name(engine_app, run.id)
    assert jobs["Release"].status == "skipped" and jobs["Release"].skipped_by_condition
    assert run_of(engine_app, run.id).status == "success"


def test_a_bad_pipeline_file_makes_a_failed_run_that_says_where(engine_app):
    pid = make_project(engine_app)
    sha = commit(engine_app, pid, {".prts/pipeline.yaml": "version: '1.0'\nname: x\nstages:\n  - name: A\n    jobz: []\n"})
    run = runs.trigger(engine_app, pid, "refs/heads/main", sha, "push", None)
    assert run is not None and run.status == "failed"
    assert ".prts/pipeline.yaml:" in run.error and "jobz" in run.error


def test_image_on_the_local_executor_is_refused_naming_the_executors(engine_app):
    pid = make_project(engine_app)
    run = start(engine_app, pid, """
version: "1.0"
name: p
stages:
  - name: A
    jobs: [ { name: J, image: "python:3.12", steps: [ { run: "true" } ] } ]
""")
    assert run.status == "failed" and "docker" in run.error and "kubernetes" in run.error


def test_no_pipeline_file_no_run_and_unmatched_triggers_no_run(engine_app):
    pid = make_project(engine_app)
    sha = commit(engine_app, pid, {"README": "hi"})
    assert runs.trigger(engine_app, pid, "refs/heads/main", sha, "push", None) is None
    sha = commit(engine_app, pid, {".prts/pipeline.yaml": """
version: "1.0"
name: p
triggers: [ { push: { branches: [main], paths: ["src/**"] } } ]
stages: [ { name: A, jobs: [ { name: J, steps: [ { run: "true" } ] } ] } ]
"""})
    assert runs.trigger(engine_app, pid, "refs/heads/main", sha, "push", ["docs/x.md"]) is None
    assert runs.trigger(engine_app, pid, "refs/heads/other", sha, "push", ["src/a.py"]) is None
    assert runs.trigger(engine_app, pid, "refs/heads/main", sha, "push", ["src/a.py"]) is not None


def test_project_secrets_reach_the_job_masked_and_variables_as_env(engine_app):
    from appliance.pipelines.secrets import SecretBox
    from appliance.pipelines.variables import set_variable

    pid = make_project(engine_app)
    with engine_app.db.session() as s:
        project = s.get(Project, pid)
        box = SecretBox.from_config(engine_app.config)
        set_variable(s, box, project, "DEPLOY_TOKEN", "s3cr3t-t0ken-value", secret=True)
        set_variable(s, box, project, "REGION", "eu-west", secret=False)
    run = start(engine_app, pid, """
version: "1.0"
name: p
stages:
  - name: A
    jobs: [ { name: J, steps: [ { run: "echo token=$DEPLOY_TOKEN region=$REGION; echo $DEPLOY_TOKEN | base64" } ] } ]
""")
    drain(engine_app)
    job = jobs_by_name(engine_app, run.id)["J"]
    text = log_text(engine_app, job)
    assert job.status == "success"
    assert "region=eu-west" in text
    assert "s3cr3t-t0ken-value" not in text and "czNjcjN0LXQwa2VuLXZhbHVl" not in text
    assert "token=" in text


def test_cancel_kills_a_running_job(engine_app):
    pid = make_project(engine_app)
    run = start(engine_app, pid, """
version: "1.0"
name: p
stages:
  - name: A
    jobs: [ { name: Long, steps: [ { run: "echo started; sleep 120" } ] } ]
  - name: B
    jobs: [ { name: Later, steps: [ { run: "true" } ] } ]
""")
    worker = threading.Thread(target=drain, args=(engine_app,))
    worker.start()
    deadline = time.monotonic() + 30
    while jobs_by_name(engine_app, run.id)["Long"].status != "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    began = time.monotonic()
    runs.cancel_run(engine_app, run.id)
    worker.join(30)
    assert not worker.is_alive()
    assert time.monotonic() - began < 10
    jobs = jobs_by_name(engine_app, run.id)
    assert jobs["Long"].status == "canceled" and jobs["Later"].status in ("canceled", "skipped")
    assert run_of(engine_app, run.id).status == "canceled"


def test_rerun_a_failed_job_then_its_dependents_run(engine_app):
    pid = make_project(engine_app)
    run = start(engine_app, pid, """
version: "1.0"
name: p
stages:
  - name: A
    jobs: [ { name: Gate, steps: [ { run: "test $PRTS_ATTEMPT -ge 2" } ] } ]
  - name: B
    jobs: [ { name: After, steps: [ { run: "true" } ] } ]
""")
    drain(engine_app)
    jobs = jobs_by_name(engine_app, run.id)
    assert jobs["Gate"].status == "failed" and jobs["After"].status == "skipped"
    runs.rerun_job(engine_app, jobs["Gate"].id)
    drain(engine_app)
    jobs = jobs_by_name(engine_app, run.id)
    assert (jobs["Gate"].status, jobs["Gate"].attempt, jobs["After"].status) == ("success", 2, "success")
    assert run_of(engine_app, run.id).status == "success"
    again = runs.rerun_run(engine_app, run.id, None)
    assert again.number == 2


def test_a_newer_push_cancels_the_branchs_unfinished_push_run(engine_app):
    pid = make_project(engine_app)
    pipeline = """
version: "1.0"
name: p
stages: [ { name: A, jobs: [ { name: J, steps: [ { run: "true" } ] } ] } ]
"""
    first = start(engine_app, pid, pipeline)
    second = start(engine_app, pid, pipeline + "\n# another commit\n")
    assert run_of(engine_app, first.id).status == "canceled"
    assert "superseded" in jobs_by_name(engine_app, first.id)["J"].failure_reason
    drain(engine_app)
    assert run_of(engine_app, second.id).status == "success"


def test_claim_is_exclusive_fenced_and_limited_per_project(engine_app):
    pid = make_project(engine_app)
    run = start(engine_app, pid, """
version: "1.0"
name: p
stages: [ { name: A, jobs: [ { name: J1, steps: [ { run: "true" } ] }, { name: J2, steps: [ { run: "true" } ] } ] } ]
""")
    with engine_app.db.session() as s:
        s.get(Project, pid).job_concurrency = 1
    j1, j2 = (jobs_by_name(engine_app, run.id)[n].id for n in ("J1", "J2"))
    claims = []

    def take():
        with engine_app.db.session() as s:
            claims.append(dispatch.claim(s, j1, f"w{threading.get_ident()}", lease_seconds=30, default_concurrency=4))

    threads = [threading.Thread(target=take) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    won = [c for c in claims if c is not None]
    assert len(won) == 1, claims
    with pytest.raises(dispatch.Deferred), engine_app.db.session() as s:
        dispatch.claim(s, j2, "w2", lease_seconds=30, default_concurrency=4)
    runs.cancel_job(engine_app, j1)
    with engine_app.db.session() as s:  # the canceled worker's late write is dropped
        assert dispatch.finish(s, won[0], Status.SUCCESS, exit_code=0) is None
        assert s.get(PipelineJob, j1).status == "canceled"
        assert not dispatch.heartbeat(s, won[0], lease_seconds=30)


def test_reconciler_requeues_an_expired_lease_then_fails_it(engine_app):
    pid = make_project(engine_app)
    run = start(engine_app, pid, """
version: "1.0"
name: p
stages: [ { name: A, jobs: [ { name: J, steps: [ { run: "true" } ] } ] } ]
""")
    job_id = jobs_by_name(engine_app, run.id)["J"].id
    retries = engine_app.config.pipelines.lost_job_retries
    for lost in range(retries + 1):
        with engine_app.db.session() as s:
            claim = dispatch.claim(s, job_id, "gone:1", lease_seconds=3, default_concurrency=4)
        assert claim is not None and claim.attempt == lost + 1
        later = utcnow() + dt.timedelta(seconds=5)
        with engine_app.db.session() as s:
            transition, found = dispatch.reconcile(s, lost_job_retries=retries, now=later)
        assert [f.job_id for f in found] == [job_id]
        with engine_app.db.session() as s:
            job = s.get(PipelineJob, job_id)
            if lost < retries:
                assert job.status == "queued" and transition.enqueue == [job_id]
            else:
                assert job.status == "failed" and "stopped answering" in job.failure_reason
    assert run_of(engine_app, run.id).status == "failed"


def test_reconciler_announces_queued_jobs_whose_task_was_lost(engine_app):
    pid = make_project(engine_app)
    run = start(engine_app, pid, """
version: "1.0"
name: p
stages: [ { name: A, jobs: [ { name: J, steps: [ { run: "true" } ] } ] } ]
""")
    engine_app.huey.flush()  # the queue lost the task
    assert drain(engine_app) == 0
    with engine_app.db.session() as s:
        transition, _ = dispatch.reconcile(s, lost_job_retries=2, now=utcnow() + dt.timedelta(minutes=5))
    runs.announce(engine_app, transition)
    drain(engine_app)
    assert run_of(engine_app, run.id).status == "success"


def test_each_due_schedule_tick_starts_one_run_however_many_workers_look(engine_app):
    pid = make_project(engine_app)
    commit(engine_app, pid, {".prts/pipeline.yaml": """
version: "1.0"
name: nightly
triggers: [ { schedule: { cron: "0 2 * * *" } } ]
stages: [ { name: A, jobs: [ { name: J, steps: [ { run: "true" } ] } ] } ]
"""})
    with engine_app.db.session() as s:
        assert schedules.sync_from_pipeline(engine_app, s, s.get(Project, pid))
        row = s.scalars(sa.select(PipelineSchedule)).one()
        assert (row.cron, row.source, row.ref) == ("0 2 * * *", "pipeline", "refs/heads/main")
        row.next_run_at = utcnow() - dt.timedelta(minutes=1)  # the tick is due
    started: list[int] = []
    threads = [threading.Thread(target=lambda: started.extend(schedules.run_due(engine_app))) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(started) == 1
    with engine_app.db.session() as s:
        run = s.get(PipelineRun, started[0])
        assert run.event == "schedule"
        assert s.scalars(sa.select(PipelineSchedule)).one().next_run_at > utcnow()
    assert schedules.run_due(engine_app) == []


def test_manual_start_resolves_refs_and_explains_refusals(engine_app):
    from appliance.errors import ValidationError

    pid = make_project(engine_app)
    commit(engine_app, pid, {".prts/pipeline.yaml": """
version: "1.0"
name: p
triggers: [ { push: {} } ]
stages: [ { name: A, jobs: [ { name: J, steps: [ { run: "true" } ] } ] } ]
"""})
    with engine_app.db.session() as s:
        project = s.get(Project, pid)
        _ = project.organisation
    with pytest.raises(ValidationError, match="manual"):
        runs.start_manual(engine_app, project, "main", None)
    with pytest.raises(ValidationError, match="no branch, tag or commit"):
        runs.start_manual(engine_app, project, "nope", None)
    with pytest.raises(ValidationError, match="not a valid ref"):
        runs.start_manual(engine_app, project, "--upload-pack=evil", None)
    commit(engine_app, pid, {".prts/pipeline.yaml": """
version: "1.0"
name: p
triggers: [ { manual: {} } ]
stages: [ { name: A, jobs: [ { name: J, steps: [ { run: "true" } ] } ] } ]
"""})
    run = runs.start_manual(engine_app, project, "main", None)
    assert run.event == "manual" and run.ref == "refs/heads/main"


def test_steps_are_recorded_per_step(engine_app):
    pid = make_project(engine_app)
    run = start(engine_app, pid, """
version: "1.0"
name: p
stages: [ { name: A, jobs: [ { name: J, steps: [ { run: "true" }, { name: second, run: "exit 0" } ] } ] } ]
""")
    drain(engine_app)
    with engine_app.db.session() as s:
        steps = s.scalars(sa.select(PipelineStep).order_by(PipelineStep.index)).all()
        assert [(st.status, st.exit_code) for st in steps] == [("success", 0), ("success", 0)]
        assert steps[1].name == "second"


def test_siblings_finishing_at_once_do_not_deadlock(engine_app):
    """Each job of a wide stage unblocks the same dependents; finishing them from many
    threads at once must neither deadlock (PostgreSQL) nor lose a decrement."""
    width = 24
    jobs = ", ".join(f'{{ name: J{i}, steps: [ {{ run: "true" }} ] }}' for i in range(width))
    pid = make_project(engine_app)
    run = start(engine_app, pid, f"""
version: "1.0"
name: wide
stages:
  - {{ name: A, jobs: [ {jobs} ] }}
  - {{ name: B, jobs: [ {jobs} ] }}
""")
    with engine_app.db.session() as s:
        first = s.scalars(sa.select(PipelineJob.id).where(PipelineJob.run_id == run.id, PipelineJob.stage == "A")).all()
    claims = []
    for job_id in first:
        with engine_app.db.session() as s:
            claims.append(dispatch.claim(s, job_id, "w:1", lease_seconds=60, default_concurrency=1000))
    errors, ready = [], []
    barrier = threading.Barrier(8)

    def finish_some(part):
        barrier.wait()
        for claim in part:
            try:
                with engine_app.db.session() as s:
                    ready.extend(dispatch.finish(s, claim, Status.SUCCESS, exit_code=0).enqueue)
            except Exception as exc:  # a deadlock would surface here
                errors.append(exc)

    threads = [threading.Thread(target=finish_some, args=(claims[i::8],)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == []
    second = {j.id for j in run_of(engine_app, run.id).jobs if j.stage == "B"}
    assert set(ready) == second
    assert {j.status for j in run_of(engine_app, run.id).jobs if j.stage == "B"} == {"queued"}
