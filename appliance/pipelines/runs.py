"""Starting, cancelling and rerunning runs: what triggers, pages, the API and the CLI call.

``trigger()`` is the one entry for every event (push, tag, pull request, schedule,
manual): it reads `.prts/pipeline.yaml` at the commit, checks the triggers, plans the
DAG and stores the run with its jobs and steps in one transaction; then it announces the
jobs that can start. A pipeline file that does not parse still makes a run — a failed
one whose ``error`` explains why — so a push never fails silently.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict

import sqlalchemy as sa
from sqlalchemy import orm

from appliance import audit, repos
from appliance.errors import NotFound, ValidationError
from appliance.hosting import outbound
from appliance.models import PipelineJob, PipelineJobNeed, PipelineRun, PipelineStep, Project, Status, User
from appliance.models.base import utcnow
from appliance.pipelines import dispatch, dsl, planner
from appliance.pipelines.spec import EVENTS, Event, PipelineError, Plan

log = logging.getLogger(__name__)

PIPELINE_FILE = ".prts/pipeline.yaml"
AVAILABLE_EXECUTORS = ("local",)


def _fail_run(session: orm.Session, project: Project, event: Event, *, error: str, source: str,
              actor_id: int | None, schedule_id: int | None) -> PipelineRun:
    run = _new_run(session, project, event, name="", source=source, actor_id=actor_id, schedule_id=schedule_id)
    now = utcnow()
    run.status, run.error, run.started_at, run.finished_at = Status.FAILED.value, error, now, now
    session.flush()
    return run


def _new_run(session: orm.Session, project: Project, event: Event, *, name: str, source: str,
             actor_id: int | None, schedule_id: int | None) -> PipelineRun:
    # The counter row is locked by this UPDATE until commit, so numbers never collide.
    number = session.execute(sa.update(Project).where(Project.id == project.id)
                             .values(run_counter=Project.run_counter + 1)
                             .returning(Project.run_counter)).scalar_one()
    run = PipelineRun(project_id=project.id, number=number, name=name, event=event.kind, ref=event.ref,
                      commit_sha=event.commit, status=Status.PENDING.value, source=source,
                      triggered_by_id=actor_id, schedule_id=schedule_id, error="")
    session.add(run)
    session.flush()
    return run


def _job_spec(planned) -> str:
    return json.dumps({
        "steps": [asdict(step) | {"position": None} for step in planned.steps],
        "env": [list(pair) for pair in planned.env],
        "matrix": [list(pair) for pair in planned.matrix],
        "executor": planned.executor,
        "needs": list(planned.needs),
    })


def _store_plan(session: orm.Session, run: PipelineRun, plan: Plan, default_timeout: int) -> list[int]:
    """Rows for the planned jobs, their edges and steps; returns the ids ready to queue.
    Bulk inserts throughout: a wide DAG has stages x jobs^2 edges."""
    now = utcnow()
    skipped = {job.key for job in plan.jobs if job.skip_reason}
    rows = []
    for planned in plan.jobs:
        unmet = sum(1 for key in planned.needs if key not in skipped)
        status = (Status.SKIPPED if planned.skip_reason else Status.QUEUED if unmet == 0 else Status.PENDING).value
        rows.append(dict(
            run_id=run.id, project_id=run.project_id, key=planned.key, name=planned.name, stage=planned.stage,
            stage_index=planned.stage_index, spec=_job_spec(planned), environment=planned.environment,
            timeout_seconds=planned.timeout_seconds or default_timeout, allow_failure=planned.allow_failure,
            retries=planned.retry, attempt=1, version=0, lost_count=0, skip_reason=planned.skip_reason,
            skipped_by_condition=bool(planned.skip_reason), failure_reason="", unmet_needs=unmet, worker="",
            status=status, created_at=now, queued_at=now if status == Status.QUEUED.value else None,
            finished_at=now if planned.skip_reason else None, log_bytes=0, log_lines=0, log_truncated=False))
    ids = list(session.scalars(sa.insert(PipelineJob).returning(PipelineJob.id, sort_by_parameter_order=True),
                               rows))
    by_key = {planned.key: job_id for planned, job_id in zip(plan.jobs, ids)}
    edges = [{"job_id": by_key[p.key], "needs_id": by_key[key]} for p in plan.jobs for key in p.needs]
    steps = [{"job_id": by_key[p.key], "index": i, "name": step.name, "kind": step.kind,
              "status": Status.SKIPPED.value if p.skip_reason else Status.PENDING.value}
             for p in plan.jobs for i, step in enumerate(p.steps)]
    if edges:
        session.execute(sa.insert(PipelineJobNeed), edges)
    if steps:
        session.execute(sa.insert(PipelineStep), steps)
    return [job_id for row, job_id in zip(rows, ids) if row["status"] == Status.QUEUED.value]


def _check_executors(plan: Plan, default_executor: str) -> str:
    for job in plan.jobs:
        executor = job.executor or default_executor
        if executor not in AVAILABLE_EXECUTORS:
            return (f"job {job.name!r} asks for the {executor} executor, which this appliance does not run "
                    f"(available: {', '.join(AVAILABLE_EXECUTORS)})")
    return ""


def create_run(app, session: orm.Session, project: Project, event: Event, source: bytes | str, *,
               actor_id: int | None = None, schedule_id: int | None = None, check_triggers: bool = True,
               origin: audit.Origin | None = None, note: str = ""
               ) -> tuple[PipelineRun | None, dispatch.Transition]:
    """Plan and store a run of ``source`` for ``event`` in the caller's transaction, and
    record it in the audit trail there: every trigger (push, schedule, webhook, manual,
    rerun) passes here. Without an ``origin`` the actor is the triggering account, or
    "system" when there is none (a schedule)."""
    run, transition = _plan_and_store(app, session, project, event, source, actor_id=actor_id,
                                      schedule_id=schedule_id, check_triggers=check_triggers)
    if run is not None:
        if origin is None:
            actor = session.get(User, actor_id) if actor_id is not None else None
            origin = audit.Origin(actor) if actor is not None else audit.SYSTEM
        detail = f"{event.kind} of {event.ref} at {event.commit[:12]}" + (f", {note}" if note else "")
        if run.status == Status.FAILED.value:
            detail += ", failed at once: " + run.error[:200]
        origin.record(session, "run.started", target=f"{project.path}#{run.number}", project=project, detail=detail)
    return run, transition


def _plan_and_store(app, session: orm.Session, project: Project, event: Event, source: bytes | str, *,
                    actor_id: int | None, schedule_id: int | None, check_triggers: bool
                    ) -> tuple[PipelineRun | None, dispatch.Transition]:
    text = source.decode("utf-8", errors="replace") if isinstance(source, bytes) else source
    cfg = app.config.pipelines
    try:
        spec = dsl.parse(source, PIPELINE_FILE)
    except PipelineError as exc:
        run = _fail_run(session, project, event, error=str(exc), source=text, actor_id=actor_id,
                        schedule_id=schedule_id)
        return run, dispatch.Transition(changed_runs={run.id})
    if check_triggers and planner.matches(spec, event) is None:
        return None, dispatch.Transition()
    try:
        plan = planner.plan(spec, event)
    except PipelineError as exc:
        run = _fail_run(session, project, event, error=str(exc), source=text, actor_id=actor_id,
                        schedule_id=schedule_id)
        return run, dispatch.Transition(changed_runs={run.id})
    problem = _check_executors(plan, cfg.executor)
    if problem:
        run = _fail_run(session, project, event, error=problem, source=text, actor_id=actor_id,
                        schedule_id=schedule_id)
        return run, dispatch.Transition(changed_runs={run.id})
    result = dispatch.Transition()
    if event.kind == "push" and project.cancel_superseded:
        result.merge(cancel_superseded(session, project, event))
    run = _new_run(session, project, event, name=plan.name, source=text, actor_id=actor_id, schedule_id=schedule_id)
    result.enqueue.extend(_store_plan(session, run, plan, cfg.default_timeout))
    result.changed_runs.add(run.id)
    dispatch.update_run_status(session, run.id)
    return run, result


def cancel_superseded(session: orm.Session, project: Project, event: Event) -> dispatch.Transition:
    """A new push to a branch makes the branch's unfinished push runs pointless."""
    older = session.scalars(sa.select(PipelineJob).join(PipelineRun).where(
        PipelineRun.project_id == project.id, PipelineRun.ref == event.ref, PipelineRun.event == "push",
        PipelineRun.commit_sha != event.commit, PipelineJob.status.in_(dispatch.ACTIVE_VALUES))).all()
    return dispatch.cancel_jobs(session, list(older), f"superseded by a newer push to {event.ref}")


def announce(app, transition: dispatch.Transition | None) -> None:
    """After commit: enqueue the ready jobs and tell viewers what changed."""
    if transition is None:
        return
    for job_id in transition.enqueue:
        try:
            app.tasks.run_job(job_id)
        except Exception:  # the queue is down: the reconciler announces the job again
            log.warning("could not enqueue job %s", job_id, exc_info=True)
    for run_id in transition.changed_runs:
        publish_status(app, "run", run_id)
        _send_run_webhooks(app, run_id)
    for job_id in transition.changed_jobs:
        publish_status(app, "job", job_id)


def _send_run_webhooks(app, run_id: int) -> None:
    """The "run" webhook event when the run reached a final status; once per finish however
    often it is announced (outbound keys the deliveries by the run's finish)."""
    try:
        outbound.run_finished(app, run_id)
    except Exception:  # webhooks are best effort: never let them break the engine
        log.warning("could not queue the run webhooks of run %s", run_id, exc_info=True)


def publish_status(app, kind: str, ident: int) -> None:
    try:
        app.pubsub.publish(f"{kind}-status:{ident}", "changed")
    except Exception:  # live updates are best effort; pages also read the database
        log.debug("could not publish %s status", kind, exc_info=True)


def trigger(app, project_id: int, ref: str, commit: str, event: str, changed_paths: list[str] | None = None, *,
            actor_id: int | None = None, schedule_id: int | None = None,
            pull_request_action: str = "", origin: audit.Origin | None = None) -> PipelineRun | None:
    """Start a run of the project's pipeline at ``commit`` for an event, if its triggers
    match. Returns the run (possibly a failed one explaining a bad pipeline file), or None
    when the commit has no pipeline file or no trigger matches. Git hosting calls this on
    push; schedules and manual starts call it too."""
    if event not in EVENTS:
        raise ValidationError("event", f"unknown event {event!r} (expected one of {', '.join(EVENTS)})")
    repo = repos.repository_path(app.config, project_id)
    source = repos.read_file(repo, commit, PIPELINE_FILE)
    if source is None:
        return None
    ev = Event(kind=event, ref=ref, commit=commit,
               changed_paths=None if changed_paths is None else tuple(changed_paths),
               pull_request_action=pull_request_action)
    with app.db.session() as s:
        project = s.get(Project, project_id)
        if project is None:
            raise NotFound(f"project {project_id}")
        run, transition = create_run(app, s, project, ev, source, actor_id=actor_id, schedule_id=schedule_id,
                                     origin=origin)
    announce(app, transition)
    return run


def start_manual(app, project: Project, ref: str, actor: User | None,
                 origin: audit.Origin | None = None) -> PipelineRun:
    """A run started by a person (page, API or CLI) for a branch, tag or commit; audited as
    ``run.started`` by ``origin`` (default: ``actor``, without an address)."""
    repo = repos.repository_path(app.config, project.id)
    try:
        full_ref, commit = repos.resolve(repo, ref)
    except repos.UnknownRef as exc:
        raise ValidationError("ref", str(exc)) from None
    except repos.RepositoryError as exc:
        raise ValidationError("ref", f"the project's repository cannot be read: {exc}") from None
    if not full_ref.startswith("refs/"):  # a bare commit id: run it as of the default branch
        full_ref = f"refs/heads/{project.default_branch}"
    run = trigger(app, project.id, full_ref, commit, "manual", None, actor_id=actor.id if actor else None,
                  origin=origin)
    if run is None:
        if repos.read_file(repo, commit, PIPELINE_FILE) is None:
            raise ValidationError("ref", f"{ref} has no {PIPELINE_FILE}")
        raise ValidationError("ref", f"the pipeline at {ref} has no `manual` trigger")
    return run


def _run_target(session: orm.Session, run_id: int) -> tuple[Project, str]:
    run = session.get(PipelineRun, run_id)
    if run is None:
        raise NotFound(f"run {run_id}")
    project = session.get(Project, run.project_id)
    return project, f"{project.path}#{run.number}"


def _job_target(session: orm.Session, job: PipelineJob) -> tuple[Project, str]:
    project, run_target = _run_target(session, job.run_id)
    return project, f"{run_target} job {job.name}"


def cancel_run(app, run_id: int, origin: audit.Origin = audit.SYSTEM) -> None:
    """Cancel the run's unfinished jobs; audited as ``run.canceled`` by ``origin``."""
    with app.db.session() as s:
        project, target = _run_target(s, run_id)
        jobs = s.scalars(sa.select(PipelineJob).where(PipelineJob.run_id == run_id)).all()
        transition = dispatch.cancel_jobs(s, list(jobs), "canceled")
        transition.changed_runs.add(run_id)
        dispatch.update_run_status(s, run_id)
        origin.record(s, "run.canceled", target=target, project=project)
    announce(app, transition)


def cancel_job(app, job_id: int, origin: audit.Origin = audit.SYSTEM) -> None:
    with app.db.session() as s:
        job = s.get(PipelineJob, job_id)
        if job is None:
            raise NotFound(f"job {job_id}")
        transition = dispatch.cancel_jobs(s, [job], "canceled")
        project, target = _job_target(s, job)
        origin.record(s, "job.canceled", target=target, project=project)
    announce(app, transition)


def rerun_job(app, job_id: int, origin: audit.Origin = audit.SYSTEM) -> None:
    """Run a finished job again as a new attempt; jobs skipped because of it run after it."""
    with app.db.session() as s:
        job = s.get(PipelineJob, job_id)
        if job is None:
            raise NotFound(f"job {job_id}")
        if job.status in dispatch.ACTIVE_VALUES:
            raise ValidationError("job", f"{job.name} is still {job.status}; cancel it first")
        if job.skipped_by_condition:
            raise ValidationError("job", f"{job.name} was skipped by its `when` condition")
        transition = dispatch.reopen(s, job)
        project, target = _job_target(s, job)
        origin.record(s, "job.rerun", target=target, project=project, detail=f"attempt {job.attempt}")
    announce(app, transition)


def rerun_run(app, run_id: int, actor: User | None, origin: audit.Origin | None = None) -> PipelineRun:
    """A new run of the same pipeline file, commit and event."""
    with app.db.session() as s:
        old = s.get(PipelineRun, run_id)
        if old is None:
            raise NotFound(f"run {run_id}")
        project = s.get(Project, old.project_id)
        ev = Event(kind=old.event, ref=old.ref, commit=old.commit_sha)
        run, transition = create_run(app, s, project, ev, old.source, actor_id=actor.id if actor else None,
                                     schedule_id=old.schedule_id, check_triggers=False, origin=origin,
                                     note=f"rerun of #{old.number}")
    announce(app, transition)
    return run
