"""Pipeline runs: list, start (a manual run for a ref), read, cancel, and their jobs."""

from __future__ import annotations

from typing import Annotated, Literal

import pydantic
import sqlalchemy as sa
from flask import current_app, url_for

from appliance.errors import ValidationError
from appliance.models import PipelineJob, PipelineRun, Project, Status
from appliance.models.pipeline_run import STATUS_VALUES
from appliance.pipelines import runs
from webapp.api import access
from webapp.api.errors import ApiError
from webapp.api.operations import Call, json_answer, operation
from webapp.api.projects import ProjectPath
from webapp.api.schemas import Id, Page, PageQuery, Timestamp, page_of

StatusName = Literal[STATUS_VALUES]  # type: ignore[valid-type]


class RunPath(pydantic.BaseModel):
    run_id: Id


class RunQuery(PageQuery):
    status: StatusName | None = pydantic.Field(None, description="Only runs in this status.")


class StartRun(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    ref: Annotated[str, pydantic.Field(min_length=1, max_length=255,
                                       description="A branch, a tag or a commit id.")]


class JobOut(pydantic.BaseModel):
    id: int
    run_id: int
    key: str
    name: str
    stage: str
    status: StatusName
    attempt: int
    exit_code: int | None
    failure_reason: str | None
    skip_reason: str | None
    log_bytes: int
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None


class RunOut(pydantic.BaseModel):
    id: int
    number: int = pydantic.Field(description="Counts per project.")
    project: str
    name: str
    status: StatusName
    event: str
    ref: str
    commit: str
    error: str | None = pydantic.Field(description="Why the run failed before any job started.")
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
    web_url: str


class RunWithJobs(RunOut):
    jobs: list[JobOut]


class JobList(pydantic.BaseModel):
    items: list[JobOut]


def job_out(job: PipelineJob) -> JobOut:
    return JobOut(id=job.id, run_id=job.run_id, key=job.key, name=job.name, stage=job.stage, status=job.status,
                  attempt=job.attempt, exit_code=job.exit_code, failure_reason=job.failure_reason or None,
                  skip_reason=job.skip_reason or None, log_bytes=job.log_bytes or 0, created_at=job.created_at,
                  started_at=job.started_at, finished_at=job.finished_at)


def run_out(run: PipelineRun, project: Project) -> dict:
    org, name = project.path.split("/", 1)
    return dict(id=run.id, number=run.number, project=project.path, name=run.name, status=run.status,
                event=run.event, ref=run.ref, commit=run.commit_sha, error=run.error or None,
                created_at=run.created_at, started_at=run.started_at, finished_at=run.finished_at,
                web_url=url_for("pipelines.run_page", org=org, name=name, number=run.number, _external=True))


def run_with_jobs(session, run: PipelineRun, project: Project) -> RunWithJobs:
    jobs = session.scalars(sa.select(PipelineJob).where(PipelineJob.run_id == run.id).order_by(PipelineJob.id))
    return RunWithJobs(**run_out(run, project), jobs=[job_out(job) for job in jobs])


def _prts():
    return current_app.extensions["prts"]


@operation("GET", "/projects/{org}/{project}/runs", summary="The project's runs, newest first", tag="runs",
           scope="read", path_params=ProjectPath, query=RunQuery, answer=Page[RunOut])
def list_runs(call: Call):
    with _prts().db.session() as s:
        _, project = access.project(s, call.caller, call.path.org, call.path.project, "pipeline.view")
        where = [PipelineRun.project_id == project.id]
        if call.query.status is not None:
            where.append(PipelineRun.status == call.query.status)
        total = s.scalar(sa.select(sa.func.count()).select_from(PipelineRun).where(*where))
        rows = s.scalars(sa.select(PipelineRun).where(*where).order_by(PipelineRun.number.desc())
                         .offset(call.query.offset).limit(call.query.per_page))
        fields, headers = page_of([RunOut(**run_out(run, project)) for run in rows], call.query, total)
        return json_answer(Page[RunOut](**fields), headers=headers)


@operation("POST", "/projects/{org}/{project}/runs", summary="Start a manual run for a ref", tag="runs",
           scope="write", path_params=ProjectPath, body=StartRun, answer=RunWithJobs, status=201)
def start_run(call: Call):
    """The pipeline must have a `manual` trigger (or no triggers at all). Needs the Developer role."""
    app = _prts()
    with app.db.session() as s:
        user, project = access.project(s, call.caller, call.path.org, call.path.project, "pipeline.run")
        _ = project.organisation  # loaded now: start_manual reads the project after this session ends
    try:
        run = runs.start_manual(app, project, call.body.ref, user, origin=call.caller.origin(user))
    except ValidationError as exc:
        raise ApiError(422, exc.field, exc.message) from None
    with app.db.session() as s:
        run = s.get(PipelineRun, run.id)
        project = s.get(Project, run.project_id)
        answer = run_with_jobs(s, run, project)
    return json_answer(answer, status=201, headers={"Location": url_for("api.get_run", run_id=run.id)})


@operation("GET", "/runs/{run_id}", summary="One run with its jobs", tag="runs", scope="read",
           path_params=RunPath, answer=RunWithJobs)
def get_run(call: Call):
    with _prts().db.session() as s:
        _, run, project = access.run(s, call.caller, call.path.run_id, "pipeline.view")
        return run_with_jobs(s, run, project)


@operation("POST", "/runs/{run_id}/cancel", summary="Cancel a run's unfinished jobs", tag="runs", scope="write",
           path_params=RunPath, answer=RunWithJobs, errors=(409,))
def cancel_run(call: Call):
    """Needs the Developer role. A run that has already finished answers 409."""
    app = _prts()
    with app.db.session() as s:
        user, run, _ = access.run(s, call.caller, call.path.run_id, "pipeline.run")
        if Status(run.status).terminal:
            raise ApiError(409, "run_id", f"run {run.id} has already finished ({run.status})")
    runs.cancel_run(app, call.path.run_id, call.caller.origin(user))
    with app.db.session() as s:
        _, run, project = access.run(s, call.caller, call.path.run_id, "pipeline.view")
        return run_with_jobs(s, run, project)


@operation("GET", "/runs/{run_id}/jobs", summary="A run's jobs", tag="jobs", scope="read", path_params=RunPath,
           answer=JobList)
def list_jobs(call: Call):
    with _prts().db.session() as s:
        _, run, _ = access.run(s, call.caller, call.path.run_id, "pipeline.view")
        jobs = s.scalars(sa.select(PipelineJob).where(PipelineJob.run_id == run.id).order_by(PipelineJob.id))
        return JobList(items=[job_out(job) for job in jobs])
