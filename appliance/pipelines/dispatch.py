"""The state machine of jobs: claim, lease, finish, propagate, reconcile.

The database owns run state; the queue only carries "job N may be ready" hints, which
may be lost (Huey does not acknowledge a task whose worker is SIGKILLed) or duplicated.
So every transition here is a conditional UPDATE that names the state it expects:

- ``claim``: ``queued -> running`` for one worker; the job's ``version`` goes up and
  becomes the worker's fencing token. On PostgreSQL the job row is taken with
  ``FOR UPDATE SKIP LOCKED`` (a second worker moves on at once instead of waiting) and
  the project row is locked so the per-project concurrency limit holds; on SQLite the
  transaction starts with ``BEGIN IMMEDIATE``, which serialises writers.
- ``heartbeat`` renews the lease only while the version is still the worker's.
- ``finish`` writes the outcome only with that version, then propagates: jobs whose
  needs are all satisfied become ``queued``; jobs that need a failed job are skipped.
- ``reconcile`` (periodic) requeues or fails running jobs whose lease expired and
  re-announces queued jobs that nobody claimed.

Functions here take a session and return the ids to enqueue; the caller enqueues them
after the transaction commits, so a worker never sees a job the database does not.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy import orm

from appliance.models import PipelineJob, PipelineJobNeed, PipelineRun, PipelineStep, Project, Status
from appliance.models.base import utcnow
from appliance.models.pipeline_run import ACTIVE, TERMINAL

RUNNING, QUEUED, PENDING = Status.RUNNING.value, Status.QUEUED.value, Status.PENDING.value
ACTIVE_VALUES = tuple(s.value for s in ACTIVE)
TERMINAL_VALUES = tuple(s.value for s in TERMINAL)
# A queued job nobody claimed for this long is announced again (its task may be lost).
REANNOUNCE_AFTER = dt.timedelta(seconds=30)
HELD = "(held: project at its job limit)"  # the `worker` of a queued job a full limit deferred


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Claim:
    """A worker's hold on one attempt of a job; ``version`` fences its writes."""

    job_id: int
    run_id: int
    project_id: int
    attempt: int
    version: int
    worker: str


class Deferred(Exception):
    """The project is at its concurrency limit; the job stays queued."""


@dataclass
class Transition:
    """What a state change asks the caller to do after commit."""

    enqueue: list[int] = field(default_factory=list)
    changed_runs: set[int] = field(default_factory=set)
    changed_jobs: set[int] = field(default_factory=set)

    def merge(self, other: "Transition") -> "Transition":
        self.enqueue.extend(j for j in other.enqueue if j not in self.enqueue)
        self.changed_runs |= other.changed_runs
        self.changed_jobs |= other.changed_jobs
        return self


def project_limit(project: Project, default: int) -> int:
    return project.job_concurrency or default


def claim(session: orm.Session, job_id: int, worker: str, *, lease_seconds: int,
          default_concurrency: int) -> Claim | None:
    """Take a queued job for ``worker``; None when it is not queued (taken, canceled, gone).
    Raises Deferred when the project already runs its limit of jobs."""
    postgres = session.get_bind().dialect.name == "postgresql"
    query = sa.select(PipelineJob.id, PipelineJob.version, PipelineJob.project_id, PipelineJob.run_id,
                      PipelineJob.attempt).where(PipelineJob.id == job_id, PipelineJob.status == QUEUED)
    if postgres:
        query = query.with_for_update(skip_locked=True)
    row = session.execute(query).first()
    if row is None:
        return None
    project_query = sa.select(Project).where(Project.id == row.project_id)
    if postgres:
        project_query = project_query.with_for_update()
    project = session.scalars(project_query).one()
    running = session.scalar(sa.select(sa.func.count()).select_from(PipelineJob).where(
        PipelineJob.project_id == row.project_id, PipelineJob.status == RUNNING))
    if running >= project_limit(project, default_concurrency):
        # Marked as held so that the next job of the project to finish announces it again.
        session.execute(sa.update(PipelineJob).where(PipelineJob.id == job_id, PipelineJob.status == QUEUED)
                        .values(worker=HELD).execution_options(synchronize_session=False))
        raise Deferred(f"project {row.project_id} runs {running} jobs (its limit)")
    now = utcnow()
    taken = session.execute(
        sa.update(PipelineJob)
        .where(PipelineJob.id == job_id, PipelineJob.status == QUEUED, PipelineJob.version == row.version)
        .values(status=RUNNING, version=row.version + 1, worker=worker,
                lease_expires_at=now + dt.timedelta(seconds=lease_seconds), started_at=now, finished_at=None,
                exit_code=None, failure_reason="")
        .execution_options(synchronize_session=False))
    if taken.rowcount != 1:
        return None
    if row.attempt > 1:  # steps of an earlier attempt start over
        session.execute(sa.update(PipelineStep).where(PipelineStep.job_id == job_id).values(
            status=PENDING, exit_code=None, started_at=None, finished_at=None)
            .execution_options(synchronize_session=False))
    session.execute(sa.update(PipelineRun).where(PipelineRun.id == row.run_id, PipelineRun.status != RUNNING).values(
        status=RUNNING, started_at=sa.func.coalesce(PipelineRun.started_at, now), finished_at=None)
        .execution_options(synchronize_session=False))
    return Claim(job_id, row.run_id, row.project_id, row.attempt, row.version + 1, worker)


def heartbeat(session: orm.Session, claim: Claim, *, lease_seconds: int) -> bool:
    """Renew the lease; False when the job is no longer this worker's (canceled, reclaimed)."""
    done = session.execute(
        sa.update(PipelineJob)
        .where(PipelineJob.id == claim.job_id, PipelineJob.version == claim.version, PipelineJob.status == RUNNING)
        .values(lease_expires_at=utcnow() + dt.timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False))
    return done.rowcount == 1


def still_held(session: orm.Session, claim: Claim) -> bool:
    return session.scalar(sa.select(sa.func.count()).select_from(PipelineJob).where(
        PipelineJob.id == claim.job_id, PipelineJob.version == claim.version, PipelineJob.status == RUNNING)) == 1


def update_step(session: orm.Session, claim: Claim, index: int, **values) -> bool:
    """Record a step's progress, fenced by the claim; False when the claim was lost."""
    if not still_held(session, claim):
        return False
    session.execute(sa.update(PipelineStep).where(PipelineStep.job_id == claim.job_id, PipelineStep.index == index)
                    .values(**values).execution_options(synchronize_session=False))
    return True


def lock_run(session: orm.Session, run_id: int) -> None:
    """Serialise the transactions that change a run's jobs after the fact (finish, cancel,
    rerun, reconcile). On PostgreSQL, two siblings finishing at once would otherwise update
    their shared dependents in different orders and deadlock; taking the run's row first
    gives every such transaction the same lock order. SQLite serialises writers anyway."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.select(PipelineRun.id).where(PipelineRun.id == run_id).with_for_update())


def finish(session: orm.Session, claim: Claim, outcome: Status, *, exit_code: int | None = None,
           reason: str = "") -> Transition | None:
    """Write the attempt's outcome; None when the claim was lost (the write is dropped)."""
    lock_run(session, claim.run_id)
    job = session.get(PipelineJob, claim.job_id, populate_existing=True)
    if job is None or job.version != claim.version or job.status != RUNNING:
        return None
    now = utcnow()
    values = dict(version=claim.version + 1, worker="", lease_expires_at=None, exit_code=exit_code,
                  failure_reason=reason, finished_at=now)
    retry = outcome == Status.FAILED and job.attempt <= job.retries
    if retry:
        values.update(status=QUEUED, attempt=job.attempt + 1, queued_at=now)
    else:
        values.update(status=outcome.value)
    written = session.execute(
        sa.update(PipelineJob).where(PipelineJob.id == job.id, PipelineJob.version == claim.version)
        .values(**values).execution_options(synchronize_session=False))
    if written.rowcount != 1:
        return None
    session.refresh(job)
    result = Transition(changed_runs={job.run_id}, changed_jobs={job.id})
    if retry:
        result.enqueue.append(job.id)
    else:
        result.merge(propagate(session, job))
    result.merge(release_held(session, job.project_id))
    update_run_status(session, job.run_id)
    return result


def satisfies(job: PipelineJob) -> bool:
    """Whether a finished job lets the jobs that need it start."""
    return (job.status == Status.SUCCESS.value
            or (job.status == Status.FAILED.value and job.allow_failure)
            or (job.status == Status.SKIPPED.value and job.skipped_by_condition))


def propagate(session: orm.Session, job: PipelineJob) -> Transition:
    """After ``job`` reached a terminal state: start or skip the jobs that need it."""
    result = Transition()
    if satisfies(job):
        # The hot path of a wide DAG: one UPDATE for all dependents, one for the ready ones.
        dependents = sa.select(PipelineJobNeed.job_id).where(PipelineJobNeed.needs_id == job.id)
        pending = (PipelineJob.id.in_(dependents), PipelineJob.status == PENDING)
        session.execute(sa.update(PipelineJob).where(*pending).values(unmet_needs=PipelineJob.unmet_needs - 1)
                        .execution_options(synchronize_session=False))
        ready = list(session.scalars(sa.select(PipelineJob.id).where(*pending, PipelineJob.unmet_needs <= 0)))
        if ready:
            session.execute(sa.update(PipelineJob).where(PipelineJob.id.in_(ready))
                            .values(status=QUEUED, queued_at=utcnow()).execution_options(synchronize_session=False))
            result.enqueue.extend(ready)
            result.changed_jobs.update(ready)
        return result
    stack = [job]
    while stack:
        done = stack.pop()
        dependent_ids = list(session.scalars(sa.select(PipelineJobNeed.job_id).where(PipelineJobNeed.needs_id == done.id)))
        if not dependent_ids:
            continue
        dependents = session.scalars(sa.select(PipelineJob).where(
            PipelineJob.id.in_(dependent_ids), PipelineJob.status == PENDING)).all()
        for dependent in dependents:
            result.changed_jobs.add(dependent.id)
            dependent.status = Status.SKIPPED.value
            dependent.skip_reason = f"needs {done.name}, which {_verb(done)}"
            dependent.finished_at = utcnow()
            stack.append(dependent)
        session.flush()
    return result


def _verb(job: PipelineJob) -> str:
    return {"failed": "failed", "canceled": "was canceled", "skipped": "was skipped"}.get(job.status, job.status)


def release_held(session: orm.Session, project_id: int) -> Transition:
    """The oldest queued job of the project that the concurrency limit held back: announce
    it again now that a slot is free."""
    held = session.scalars(sa.select(PipelineJob.id).where(
        PipelineJob.project_id == project_id, PipelineJob.status == QUEUED, PipelineJob.worker == HELD)
        .order_by(PipelineJob.queued_at, PipelineJob.id).limit(1)).first()
    if held is None:
        return Transition()
    session.execute(sa.update(PipelineJob).where(PipelineJob.id == held).values(worker="")
                    .execution_options(synchronize_session=False))
    return Transition(enqueue=[held])


def update_run_status(session: orm.Session, run_id: int) -> str:
    """Derive the run's status from its jobs' and store it."""
    run = session.get(PipelineRun, run_id, populate_existing=True)
    if run.status == RUNNING and session.scalar(sa.select(PipelineJob.id).where(
            PipelineJob.run_id == run_id, PipelineJob.status.in_(ACTIVE_VALUES)).limit(1)) is not None:
        return RUNNING  # the common case while a run goes on: nothing to recount
    counts = dict(session.execute(sa.select(PipelineJob.status, sa.func.count()).where(PipelineJob.run_id == run_id)
                                  .group_by(PipelineJob.status)).all())
    failing = session.scalar(sa.select(sa.func.count()).select_from(PipelineJob).where(
        PipelineJob.run_id == run_id, PipelineJob.status == Status.FAILED.value, PipelineJob.allow_failure.is_(False)))
    if any(counts.get(s) for s in ACTIVE_VALUES):
        status = RUNNING if run.started_at is not None else (QUEUED if counts.get(QUEUED) else PENDING)
        finished = None
    else:
        if failing:
            status = Status.FAILED.value
        elif counts.get(Status.CANCELED.value):
            status = Status.CANCELED.value
        elif counts and set(counts) == {Status.SKIPPED.value}:
            status = Status.SKIPPED.value
        elif not counts and run.error:
            status = Status.FAILED.value
        else:
            status = Status.SUCCESS.value
        finished = run.finished_at or utcnow()
    run.status, run.finished_at = status, finished
    session.flush()
    return status


def cancel_jobs(session: orm.Session, jobs: list[PipelineJob], reason: str) -> Transition:
    """Cancel active jobs; a running job's worker notices within a second (its claim is
    gone) and kills the job's process group."""
    result = Transition()
    now = utcnow()
    for run_id in sorted({job.run_id for job in jobs}):
        lock_run(session, run_id)
    for job in jobs:
        session.refresh(job)  # its state as of the lock
        if job.status not in ACTIVE_VALUES:
            continue
        written = session.execute(
            sa.update(PipelineJob).where(PipelineJob.id == job.id, PipelineJob.version == job.version)
            .values(status=Status.CANCELED.value, version=job.version + 1, failure_reason=reason, worker="",
                    lease_expires_at=None, finished_at=now)
            .execution_options(synchronize_session=False))
        if written.rowcount == 1:
            session.execute(sa.update(PipelineStep).where(
                PipelineStep.job_id == job.id, PipelineStep.status.in_(ACTIVE_VALUES))
                .values(status=Status.CANCELED.value, finished_at=now).execution_options(synchronize_session=False))
            session.refresh(job)
            result.changed_jobs.add(job.id)
            result.changed_runs.add(job.run_id)
            result.merge(propagate(session, job))
    for run_id in result.changed_runs:
        update_run_status(session, run_id)
    return result


def reopen(session: orm.Session, job: PipelineJob) -> Transition:
    """Queue a finished job again as a new attempt (rerun), and reopen the jobs that were
    skipped because of it, so the rest of the DAG runs after it."""
    lock_run(session, job.run_id)
    session.refresh(job)
    now = utcnow()
    job.status, job.attempt, job.version = QUEUED, job.attempt + 1, job.version + 1
    job.queued_at, job.started_at, job.finished_at = now, None, None
    job.exit_code, job.failure_reason, job.lost_count = None, "", 0
    job.log_bytes, job.log_lines, job.log_truncated = 0, 0, False
    session.flush()
    result = Transition(enqueue=[job.id], changed_runs={job.run_id}, changed_jobs={job.id})
    stack = [job.id]
    while stack:
        parent = stack.pop()
        for dependent in session.scalars(sa.select(PipelineJob).join(
                PipelineJobNeed, PipelineJobNeed.job_id == PipelineJob.id).where(
                PipelineJobNeed.needs_id == parent, PipelineJob.status == Status.SKIPPED.value,
                PipelineJob.skipped_by_condition.is_(False))):
            needed = session.scalars(sa.select(PipelineJob).join(
                PipelineJobNeed, PipelineJobNeed.needs_id == PipelineJob.id).where(
                PipelineJobNeed.job_id == dependent.id)).all()
            dependent.status, dependent.skip_reason, dependent.finished_at = PENDING, "", None
            dependent.unmet_needs = sum(1 for n in needed if not satisfies(n))
            result.changed_jobs.add(dependent.id)
            stack.append(dependent.id)
    session.flush()
    run = session.get(PipelineRun, job.run_id)
    run.finished_at = None
    update_run_status(session, job.run_id)
    return result


@dataclass(frozen=True)
class LostJob:
    """A running job whose lease expired, as the reconciler found it."""

    job_id: int
    attempt: int
    worker: str
    requeued: bool


def reconcile(session: orm.Session, *, lost_job_retries: int, now: dt.datetime | None = None
              ) -> tuple[Transition, list[LostJob]]:
    """Requeue (or fail, after ``lost_job_retries``) running jobs whose lease expired, and
    announce again queued jobs that nobody claimed for a while."""
    now = now or utcnow()
    result, lost = Transition(), []
    expired = session.scalars(sa.select(PipelineJob).where(
        PipelineJob.status == RUNNING, PipelineJob.lease_expires_at < now)).all()
    for job in expired:
        lock_run(session, job.run_id)
        session.refresh(job)
        if job.status != RUNNING or job.lease_expires_at is None or job.lease_expires_at >= now:
            continue  # finished or renewed while we looked
        requeue = job.lost_count < lost_job_retries
        values = dict(version=job.version + 1, worker="", lease_expires_at=None, lost_count=job.lost_count + 1)
        if requeue:
            values.update(status=QUEUED, attempt=job.attempt + 1, queued_at=now)
        else:
            values.update(status=Status.FAILED.value, finished_at=now,
                          failure_reason=f"the worker running it stopped answering {job.lost_count + 1} times")
        written = session.execute(
            sa.update(PipelineJob).where(PipelineJob.id == job.id, PipelineJob.version == job.version)
            .values(**values).execution_options(synchronize_session=False))
        if written.rowcount != 1:
            continue
        lost.append(LostJob(job.id, job.attempt, job.worker, requeue))
        session.refresh(job)
        result.changed_jobs.add(job.id)
        result.changed_runs.add(job.run_id)
        if requeue:
            result.enqueue.append(job.id)
        else:
            session.execute(sa.update(PipelineStep).where(
                PipelineStep.job_id == job.id, PipelineStep.status.in_(ACTIVE_VALUES))
                .values(status=Status.FAILED.value, finished_at=now).execution_options(synchronize_session=False))
            result.merge(propagate(session, job))
    stale = session.scalars(sa.select(PipelineJob).where(
        PipelineJob.status == QUEUED, PipelineJob.queued_at < now - REANNOUNCE_AFTER)).all()
    for job in stale:
        job.queued_at = now
        result.enqueue.append(job.id)
    for run_id in result.changed_runs:
        update_run_status(session, run_id)
    return result, lost
