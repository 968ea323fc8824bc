"""The worker side of a job: claim it, run its steps on an executor, store the outcome.

``run_job(app, job_id)`` is what the Huey task calls. While the steps run, a watchdog
thread renews the lease and checks once a second that the claim still holds; when the
job was canceled (or the reconciler gave it to someone else) it kills the job's process
group, and every later write of this worker is refused by the version check.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass

import sqlalchemy as sa

from appliance import repos
from appliance.executors import make_executor
from appliance.executors.base import JobContext, StepResult
from appliance.models import Artifact, PipelineJob, PipelineJobNeed, PipelineRun, Project, Status
from appliance.models.base import utcnow
from appliance.pipelines import artifacts, dispatch, runs
from appliance.pipelines.logs import LogPump
from appliance.pipelines.secrets import SecretBox
from appliance.pipelines.variables import job_environment

log = logging.getLogger(__name__)

# Lines the appliance itself writes into a job's log; bold so they stand out from output.
_NOTE = "\x1b[1m{}\x1b[0m\n"


@dataclass
class JobSetup:
    claim: dispatch.Claim
    ctx: JobContext
    steps: list[dict]
    secrets: list[str]
    needed_artifacts: list[tuple[str, str]]  # (object key, sha256) of the jobs it needs


def builtin_env(project: Project, run: PipelineRun, job: PipelineJob) -> dict[str, str]:
    branch = run.ref.removeprefix("refs/heads/") if run.ref.startswith("refs/heads/") else ""
    tag = run.ref.removeprefix("refs/tags/") if run.ref.startswith("refs/tags/") else ""
    return {
        "CI": "true", "PRTS": "true", "PRTS_PROJECT": project.path, "PRTS_RUN_ID": str(run.id),
        "PRTS_RUN_NUMBER": str(run.number), "PRTS_JOB_ID": str(job.id), "PRTS_JOB_NAME": job.name,
        "PRTS_STAGE": job.stage, "PRTS_ATTEMPT": str(job.attempt), "PRTS_EVENT": run.event, "PRTS_REF": run.ref,
        "PRTS_BRANCH": branch, "PRTS_TAG": tag, "PRTS_COMMIT_SHA": run.commit_sha,
        "PRTS_ENVIRONMENT": job.environment,
    }


def job_env(app, session, project: Project, run: PipelineRun, job: PipelineJob) -> tuple[dict[str, str], list[str]]:
    """The job's environment and the secret values to mask. Precedence, lowest first:
    the pipeline's and the job's variables, the project's variables and secrets (so a
    pipeline file cannot shadow a secret), then PRTS_* built-ins, which nothing overrides."""
    env = dict(job.spec_data["env"])
    project_env, secrets = job_environment(session, SecretBox.from_config(app.config), project)
    env.update(project_env)
    env.update(builtin_env(project, run, job))
    return env, secrets


def _setup(app, claim: dispatch.Claim) -> JobSetup:
    with app.db.session() as s:
        job = s.get(PipelineJob, claim.job_id)
        run = s.get(PipelineRun, job.run_id)
        project = s.get(Project, job.project_id)
        _ = project.organisation  # loaded for project.path
        env, secrets = job_env(app, s, project, run, job)
        needed = s.execute(sa.select(Artifact.object_key, Artifact.sha256).join(
            PipelineJobNeed, PipelineJobNeed.needs_id == Artifact.job_id).where(
            PipelineJobNeed.job_id == job.id).order_by(Artifact.id)).all()
        repo = repos.repository_path(app.config, project.id)
        ctx = JobContext(
            job_id=job.id, attempt=claim.attempt, workspace=app.config.workspaces_path / f"{job.id}-{claim.attempt}",
            repository=repo if (repo / "HEAD").exists() else None, commit=run.commit_sha, env=env,
            timeout_seconds=job.timeout_seconds, log_path=spool_file(app.config, job.id, claim.attempt))
        return JobSetup(claim, ctx, job.spec_data["steps"], secrets, [tuple(row) for row in needed])


def spool_file(config, job_id: int, attempt: int):
    return config.spool_path / f"{job_id}-{attempt}.log"


class Watchdog(threading.Thread):
    """Renews the lease and cancels the executor as soon as the claim is gone."""

    CHECK_SECONDS = 1.0

    def __init__(self, app, setup: JobSetup, executor):
        super().__init__(name=f"watchdog-{setup.claim.job_id}", daemon=True)
        self.app, self.setup, self.executor = app, setup, executor
        self.lease = app.config.pipelines.lease_seconds
        self.stopped = threading.Event()
        self.lost = False

    def run(self) -> None:
        last_renewal = time.monotonic()
        while not self.stopped.wait(self.CHECK_SECONDS):
            try:
                with self.app.db.session() as s:
                    if time.monotonic() - last_renewal >= self.lease / 3:
                        held = dispatch.heartbeat(s, self.setup.claim, lease_seconds=self.lease)
                        last_renewal = time.monotonic()
                    else:
                        held = dispatch.still_held(s, self.setup.claim)
            except Exception:  # the database is briefly unreachable: the lease covers it
                log.warning("heartbeat of job %s failed", self.setup.claim.job_id, exc_info=True)
                continue
            if not held:
                self.lost = True
                self.executor.cancel(self.setup.ctx)
                return

    def stop(self) -> None:
        self.stopped.set()
        self.join()


def _note(ctx: JobContext, text: str) -> None:
    ctx.log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(ctx.log_path, "a", encoding="utf-8") as fh:
        fh.write(_NOTE.format(text))


def _step_title(step: dict) -> str:
    if step["kind"] == "artifact":
        return f"upload artifact {step['artifact']} from {step['path']}"
    lines = step["run"].strip().splitlines() or [""]
    return "$ " + lines[0] + (" …" if len(lines) > 1 else "")


def _run_artifact_step(app, setup: JobSetup, step: dict) -> StepResult:
    cfg = app.config.pipelines
    with tempfile.TemporaryDirectory(dir=app.config.data_path) as tmp:
        try:
            collected = artifacts.collect(setup.ctx.workspace, step["path"], step["artifact"],
                                          dest=app.config.data_path / tmp / "artifact.tar.gz",
                                          max_bytes=cfg.max_artifact_bytes)
        except artifacts.ArtifactError as exc:
            _note(setup.ctx, f"artifact {step['artifact']}: {exc}")
            return StepResult("failed", None, str(exc))
        with app.db.session() as s:
            if not dispatch.still_held(s, setup.claim):
                return StepResult("canceled", None, "the job was canceled")
            job = s.get(PipelineJob, setup.claim.job_id)
            artifact = artifacts.store(app, s, job, collected, step["artifact"])
            _note(setup.ctx, f"artifact {artifact.name}: {artifact.file_count} files, {artifact.size} bytes, "
                             f"sha256 {artifact.sha256}")
    return StepResult("success", 0)


def _fetch_needed_artifacts(app, setup: JobSetup) -> None:
    for key, sha in setup.needed_artifacts:
        data = app.objects.get(key)
        artifacts.verify(data, sha, key)
        artifacts.extract(data, setup.ctx.workspace)
        _note(setup.ctx, f"fetched artifact {key.rsplit('/', 1)[-1]}")


def execute(app, setup: JobSetup, executor) -> tuple[Status, int | None, str]:
    """Run the steps; returns the job's outcome, last exit code and a reason."""
    ctx = setup.ctx
    ctx.started_monotonic = time.monotonic()
    try:
        executor.prepare(ctx)
        _fetch_needed_artifacts(app, setup)
    except (repos.RepositoryError, artifacts.ArtifactError, OSError) as exc:
        _note(ctx, f"could not prepare the workspace: {exc}")
        return Status.FAILED, None, f"could not prepare the workspace: {exc}"
    for index, step in enumerate(setup.steps):
        with app.db.session() as s:
            if not dispatch.update_step(s, setup.claim, index, status=Status.RUNNING.value, started_at=utcnow()):
                return Status.CANCELED, None, "canceled"
        _note(ctx, _step_title(step))
        if step["kind"] == "artifact":
            result = _run_artifact_step(app, setup, step)
        else:
            result = executor.run_step(ctx, step["run"])
        status = Status.SUCCESS if result.outcome == "success" else (
            Status.CANCELED if result.outcome == "canceled" else Status.FAILED)
        with app.db.session() as s:
            dispatch.update_step(s, setup.claim, index, status=status.value, exit_code=result.exit_code,
                                 finished_at=utcnow())
        if status != Status.SUCCESS:
            detail = result.detail or (f"exit code {result.exit_code}" if result.exit_code is not None else "")
            _note(ctx, f"step {index + 1} {status.value}" + (f": {detail}" if detail else ""))
            with app.db.session() as s:
                if dispatch.still_held(s, setup.claim):
                    for later in range(index + 1, len(setup.steps)):
                        dispatch.update_step(s, setup.claim, later, status=Status.SKIPPED.value)
            reason = f"step {index + 1} ({_step_title(step)}) {result.outcome.replace('_', ' ')}"
            return status, result.exit_code, reason + (f": {detail}" if detail else "")
    return Status.SUCCESS, 0, ""


def run_job(app, job_id: int) -> str:
    """Claim and run one job; returns what happened (for logs and tests)."""
    cfg = app.config.pipelines
    try:
        with app.db.session() as s:
            claim = dispatch.claim(s, job_id, dispatch.worker_name(), lease_seconds=cfg.lease_seconds,
                                   default_concurrency=cfg.job_concurrency)
    except dispatch.Deferred:
        return "deferred"
    if claim is None:
        return "not-queued"
    runs.announce(app, dispatch.Transition(changed_runs={claim.run_id}, changed_jobs={job_id}))
    try:
        setup = _setup(app, claim)
    except Exception as exc:  # a key that does not decrypt, a vanished project: fail the job, say why
        log.exception("could not set job %s up", job_id)
        with app.db.session() as s:
            transition = dispatch.finish(s, claim, Status.FAILED, reason=f"could not set the job up: {exc}")
        runs.announce(app, transition)
        return "failed"
    executor = make_executor(app.config)
    pump = LogPump(app, job_id, claim.attempt, setup.ctx.log_path, setup.secrets)
    setup.ctx.log_path.parent.mkdir(parents=True, exist_ok=True)
    setup.ctx.log_path.touch()
    pump.start()
    watchdog = Watchdog(app, setup, executor)
    watchdog.start()
    try:
        outcome, exit_code, reason = execute(app, setup, executor)
    except Exception as exc:  # a bug or an unexpected backend failure: the job fails visibly
        log.exception("job %s failed in the runner", job_id)
        _note(setup.ctx, f"internal error: {exc}")
        outcome, exit_code, reason = Status.FAILED, None, f"internal error: {exc}"
    finally:
        watchdog.stop()
        executor.cleanup(setup.ctx)
    if watchdog.lost:
        outcome = Status.CANCELED
    _note(setup.ctx, f"job {outcome.value}" + (f": {reason}" if reason and outcome != Status.SUCCESS else ""))
    pump.stop()
    setup.ctx.log_path.unlink(missing_ok=True)
    with app.db.session() as s:
        transition = dispatch.finish(s, claim, outcome, exit_code=exit_code, reason=reason)
    runs.announce(app, transition)
    log.info("job finished", extra={"job": job_id, "outcome": outcome.value, "kept": transition is not None})
    return outcome.value if transition is not None else "lost"


def reconcile(app) -> dispatch.Transition:
    """The periodic reconciler: see dispatch.reconcile. A lost job's spool file, when it is
    on this host, is stored into its log first, so no line written before the loss is lost."""
    from appliance.pipelines.logs import salvage

    with app.db.session() as s:
        transition, lost = dispatch.reconcile(s, lost_job_retries=app.config.pipelines.lost_job_retries)
    host = dispatch.worker_name().rsplit(":", 1)[0]
    for item in lost:
        spool = spool_file(app.config, item.job_id, item.attempt)
        if item.worker.rsplit(":", 1)[0] != host:
            continue  # its spool and workspace are on the host that lost it
        shutil.rmtree(app.config.workspaces_path / f"{item.job_id}-{item.attempt}", ignore_errors=True)
        if not spool.exists():
            continue
        try:
            with app.db.session() as s:
                job = s.get(PipelineJob, item.job_id)
                project = s.get(Project, job.project_id)
                _, secrets = job_environment(s, SecretBox.from_config(app.config), project)
            with open(spool, "a", encoding="utf-8") as fh:
                fh.write(_NOTE.format("the worker running this job stopped; "
                                      + ("the job was queued again" if item.requeued else "the job failed")))
            salvage(app, item.job_id, item.attempt, spool, secrets)
            spool.unlink(missing_ok=True)
        except Exception:  # salvage is best effort; the job's state is already decided
            log.warning("could not salvage the log of job %s", item.job_id, exc_info=True)
    runs.announce(app, transition)
    return transition

