"""The job page, its cancel / rerun actions, and artifact downloads (views of the
``pipelines`` blueprint)."""

from __future__ import annotations

import io
import logging

import sqlalchemy as sa
from flask import abort, current_app, flash, render_template, request, send_file, url_for
from flask_login import login_required
from jinja2 import TemplateNotFound
from sqlalchemy import orm

from appliance.errors import NotFound, ValidationError
from appliance.models import Artifact, PipelineJob, PipelineJobNeed, PipelineRun, PipelineStep, Project
from appliance.storage.objects import ObjectNotFound
from webapp import auditing
from webapp.extensions import htmx
from webapp.pipelines import (bp, done, is_active, load_project, permissions, project_args, prts, state_token,
                              trigger_label, unchanged)

log = logging.getLogger(__name__)

LOG_VIEWER = "partials/log_viewer.html"


def load_job(session: orm.Session, project: Project, job_id: int) -> PipelineJob:
    job = session.get(PipelineJob, job_id)
    if job is None or job.project_id != project.id:
        abort(404)
    return job


def _log_viewer_available() -> bool:
    try:
        current_app.jinja_env.get_template(LOG_VIEWER)
    except TemplateNotFound:
        return False
    return True


def _job_context(session: orm.Session, project: Project, job: PipelineJob) -> dict:
    run = session.get(PipelineRun, job.run_id)
    steps = list(session.scalars(sa.select(PipelineStep).where(PipelineStep.job_id == job.id)
                                 .order_by(PipelineStep.index)))
    artifacts = list(session.scalars(sa.select(Artifact).where(Artifact.job_id == job.id).order_by(Artifact.name)))
    needs = list(session.scalars(sa.select(PipelineJob).join(PipelineJobNeed, PipelineJobNeed.needs_id == PipelineJob.id)
                                 .where(PipelineJobNeed.job_id == job.id).order_by(PipelineJob.id)))
    token = state_token(job.status, job.attempt, job.started_at, job.finished_at, job.exit_code,
                        [(st.status, st.exit_code) for st in steps], [a.id for a in artifacts])
    return {"project": project, "run": run, "job": job, "steps": steps, "artifacts": artifacts, "needs": needs,
            "token": token, "active": is_active(job.status), "trigger": trigger_label(run),
            "can_rerun": not is_active(job.status) and not job.skipped_by_condition,
            **permissions(session, project)}


@bp.get("/<org>/<name>/-/jobs/<int:job_id>")
@login_required
def job_page(org: str, name: str, job_id: int):
    with prts().db.session() as s:
        project = load_project(s, org, name)
        job = load_job(s, project, job_id)
        ctx = _job_context(s, project, job)
        if htmx:
            if unchanged(ctx["token"]):
                return "", 204
            return render_template("partials/job_status.html", **ctx)
        attempt = request.args.get("attempt", job.attempt, type=int)
        if not 1 <= attempt <= job.attempt:
            abort(404)
        return render_template("pipelines/job.html", attempt=attempt, log_viewer=_log_viewer_available(), **ctx)


@bp.post("/<org>/<name>/-/jobs/<int:job_id>/cancel")
@login_required
def cancel_job(org: str, name: str, job_id: int):
    from appliance.pipelines import runs

    app = prts()
    with app.db.session() as s:
        project = load_project(s, org, name, "pipeline.run")
        job = load_job(s, project, job_id)
        job_name, was_active = job.name, is_active(job.status)
    if was_active:
        runs.cancel_job(app, job_id, auditing.origin())
        flash(f"Job {job_name} was canceled.", "success")
    else:
        flash(f"Job {job_name} had already finished.", "info")
    return done(url_for("pipelines.job_page", job_id=job_id, **project_args(project)))


@bp.post("/<org>/<name>/-/jobs/<int:job_id>/rerun")
@login_required
def rerun_job(org: str, name: str, job_id: int):
    from appliance.pipelines import runs

    app = prts()
    with app.db.session() as s:
        project = load_project(s, org, name, "pipeline.run")
        job = load_job(s, project, job_id)
        job_name = job.name
    try:
        runs.rerun_job(app, job_id, auditing.origin())
    except (ValidationError, NotFound) as exc:
        flash(f"Job {job_name} could not be run again: {getattr(exc, 'message', exc)}.", "error")
    else:
        flash(f"Job {job_name} was queued again.", "success")
    return done(url_for("pipelines.job_page", job_id=job_id, **project_args(project)))


@bp.get("/<org>/<name>/-/jobs/<int:job_id>/artifacts/<artifact_name>")
@login_required
def artifact_download(org: str, name: str, job_id: int, artifact_name: str):
    from appliance.pipelines import artifacts

    app = prts()
    with app.db.session() as s:
        project = load_project(s, org, name)
        load_job(s, project, job_id)
        artifact = s.scalar(sa.select(Artifact).where(Artifact.job_id == job_id, Artifact.name == artifact_name))
        if artifact is None:
            abort(404)
    # open_download reads the archive and checks it against the stored sha256: a damaged
    # archive is refused, never served.
    try:
        data = artifacts.open_download(app, artifact)
    except artifacts.ChecksumMismatch:
        log.error("artifact %s of job %s does not match its checksum", artifact.name, job_id)
        return render_template("errors/error.html", code=500, title="Damaged artifact",
                               text=f"The stored archive of {artifact.name} does not match its checksum, "
                                    "so it is not served."), 500
    except ObjectNotFound:
        return render_template("errors/error.html", code=410, title="Artifact gone",
                               text=f"The archive of {artifact.name} is no longer stored."), 410
    response = send_file(io.BytesIO(data), mimetype="application/gzip", as_attachment=True,
                         download_name=f"{artifact.name}.tar.gz", max_age=0)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "private, no-store"
    return response
