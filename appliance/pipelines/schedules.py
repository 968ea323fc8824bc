"""Scheduled runs: cron expressions evaluated by a periodic task.

Schedules are rows. A ``schedule:`` trigger in the default branch's pipeline file becomes
a row with source "pipeline" (kept in step with the file whenever the branch moves);
people add rows with source "user" on the schedules page. Every minute each worker's
periodic task looks for due rows and takes each tick with a compare-and-set on
``next_run_at``: however many workers look at once, one of them wins a tick, and only
the winner starts the run. A tick missed while the appliance was down is run once, not
once per missed minute.
"""

from __future__ import annotations

import datetime as dt
import logging

import sqlalchemy as sa
from croniter import croniter
from sqlalchemy import orm

from appliance import repos
from appliance.errors import ValidationError
from appliance.models import PipelineSchedule, Project
from appliance.models.base import utcnow
from appliance.pipelines import dsl, runs
from appliance.pipelines.spec import Event, PipelineError

log = logging.getLogger(__name__)


def check_cron(cron: str) -> str:
    cron = " ".join(str(cron).split())
    if len(cron.split(" ")) != 5 or not croniter.is_valid(cron):
        raise ValidationError("cron", f"{cron!r} is not a cron expression of five fields "
                                      "(minute hour day-of-month month day-of-week), e.g. \"0 2 * * *\"")
    return cron


def next_tick(cron: str, after: dt.datetime) -> dt.datetime:
    """The first tick strictly after ``after`` (UTC)."""
    return croniter(cron, after.astimezone(dt.timezone.utc)).get_next(dt.datetime).astimezone(dt.timezone.utc)


def add_schedule(session: orm.Session, project: Project, cron: str, ref: str, description: str = "",
                 source: str = "user") -> PipelineSchedule:
    cron = check_cron(cron)
    repos.check_ref(ref)
    if len(description) > 200:
        raise ValidationError("description", "must be at most 200 characters")
    row = PipelineSchedule(project_id=project.id, source=source, cron=cron, ref=ref, description=description,
                           enabled=True, next_run_at=next_tick(cron, utcnow()))
    session.add(row)
    session.flush()
    return row


def sync_from_pipeline(app, session: orm.Session, project: Project) -> bool:
    """Make the project's "pipeline" schedules match the `schedule:` triggers of its
    default branch's pipeline file; cheap when the branch has not moved. True when synced."""
    repo = repos.repository_path(app.config, project.id)
    if not (repo / "HEAD").exists():
        return False
    try:
        _, commit = repos.resolve(repo, f"refs/heads/{project.default_branch}")
    except repos.RepositoryError:
        return False
    if commit == project.schedules_synced_commit:
        return False
    wanted: list[str] = []
    source = repos.read_file(repo, commit, runs.PIPELINE_FILE)
    if source is not None:
        try:
            spec = dsl.parse(source, runs.PIPELINE_FILE)
            wanted = [t.cron for t in spec.triggers if t.event == "schedule"]
        except PipelineError:
            log.info("pipeline file of %s does not parse; its schedules are left as they were", project.id)
            return False
    existing = session.scalars(sa.select(PipelineSchedule).where(
        PipelineSchedule.project_id == project.id, PipelineSchedule.source == "pipeline")).all()
    keep = {row.cron: row for row in existing}
    for row in existing:
        if row.cron not in wanted:
            session.delete(row)
    for cron in wanted:
        if cron not in keep:
            add_schedule(session, project, cron, f"refs/heads/{project.default_branch}",
                         "from the pipeline file", source="pipeline")
    project.schedules_synced_commit = commit
    session.flush()
    return True


def run_due(app, now: dt.datetime | None = None) -> list[int]:
    """Start a run for every due schedule tick; returns the ids of the runs started."""
    now = now or utcnow()
    with app.db.session() as s:
        for project in s.scalars(sa.select(Project)):
            sync_from_pipeline(app, s, project)
        due = s.execute(sa.select(PipelineSchedule.id, PipelineSchedule.next_run_at, PipelineSchedule.cron)
                        .where(PipelineSchedule.enabled.is_(True), PipelineSchedule.next_run_at <= now)).all()
    started = []
    for schedule_id, due_at, cron in due:
        run_id = _take_tick(app, schedule_id, due_at, next_tick(cron, now))
        if run_id is not None:
            started.append(run_id)
    return started


def _take_tick(app, schedule_id: int, due_at: dt.datetime, following: dt.datetime) -> int | None:
    with app.db.session() as s:
        taken = s.execute(sa.update(PipelineSchedule).where(
            PipelineSchedule.id == schedule_id, PipelineSchedule.next_run_at == due_at)
            .values(next_run_at=following, last_run_at=utcnow()).execution_options(synchronize_session=False))
        if taken.rowcount != 1:
            return None  # another worker took this tick
        schedule = s.get(PipelineSchedule, schedule_id)
        project = s.get(Project, schedule.project_id)
        repo = repos.repository_path(app.config, project.id)
        try:
            full_ref, commit = repos.resolve(repo, schedule.ref)
        except repos.RepositoryError as exc:
            log.warning("schedule %s: %s", schedule_id, exc)
            return None
        source = repos.read_file(repo, commit, runs.PIPELINE_FILE)
        if source is None:
            return None
        # A schedule is an explicit request to run: a user's schedule runs even when the
        # file has no `schedule:` trigger (a "pipeline" schedule exists only because it has).
        run, transition = runs.create_run(app, s, project, Event("schedule", full_ref, commit), source,
                                          schedule_id=schedule_id, check_triggers=False)
        schedule.last_run_id = run.id if run else None
        run_id = run.id if run else None
    runs.announce(app, transition)
    return run_id
