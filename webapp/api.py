"""JSON API v1, pipelines part: start, read and cancel runs.

Signed-in sessions only for now (a POST carries the CSRF token in ``X-CSRFToken``, as
htmx does); personal and project tokens arrive with the identity issue, which also
generates the OpenAPI document. Errors are ``{"error": {"field": ..., "message": ...}}``.
"""

from __future__ import annotations

from flask import Blueprint, abort, current_app, jsonify, request, url_for
from flask_login import current_user, login_required

from appliance.accounts import organisations, policy
from appliance.errors import NotFound, ValidationError
from appliance.models import PipelineJob, PipelineRun, Project
from appliance.pipelines import runs

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def _error(status: int, field: str, message: str):
    return jsonify({"error": {"field": field, "message": message}}), status


def _project(session, org: str, name: str, action: str) -> Project:
    try:
        project = organisations.get_project(session, f"{org}/{name}")
    except (NotFound, ValidationError):
        abort(404)
    if not policy.can(session, current_user, "pipeline.view", project):
        abort(404)
    if not policy.can(session, current_user, action, project):
        abort(403)
    return project


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def run_json(run: PipelineRun, project: Project, *, jobs: bool = False) -> dict:
    org, name = project.path.split("/")
    out = {
        "id": run.id, "number": run.number, "project": project.path, "name": run.name, "status": run.status,
        "event": run.event, "ref": run.ref, "commit": run.commit_sha, "error": run.error or None,
        "created_at": _iso(run.created_at), "started_at": _iso(run.started_at), "finished_at": _iso(run.finished_at),
        "web_url": url_for("pipelines.run_page", org=org, name=name, number=run.number, _external=True)
        if "pipelines.run_page" in current_app.view_functions else None,
    }
    if jobs:
        out["jobs"] = [job_json(job) for job in run.jobs]
    return out


def job_json(job: PipelineJob) -> dict:
    return {"id": job.id, "key": job.key, "name": job.name, "stage": job.stage, "status": job.status,
            "attempt": job.attempt, "exit_code": job.exit_code, "failure_reason": job.failure_reason or None,
            "skip_reason": job.skip_reason or None, "started_at": _iso(job.started_at),
            "finished_at": _iso(job.finished_at)}


@bp.get("/projects/<org>/<name>/runs")
@login_required
def list_runs(org: str, name: str):
    import sqlalchemy as sa

    limit = min(max(request.args.get("limit", 20, type=int), 1), 100)
    with current_app.extensions["prts"].db.session() as s:
        project = _project(s, org, name, "pipeline.view")
        rows = s.scalars(sa.select(PipelineRun).where(PipelineRun.project_id == project.id)
                         .order_by(PipelineRun.number.desc()).limit(limit))
        return jsonify({"runs": [run_json(run, project) for run in rows]})


@bp.post("/projects/<org>/<name>/runs")
@login_required
def start_run(org: str, name: str):
    app = current_app.extensions["prts"]
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return _error(400, "body", "expected a JSON object like {\"ref\": \"main\"}")
    ref = body.get("ref")
    if not isinstance(ref, str):
        return _error(422, "ref", "expected a branch, tag or commit as a string")
    with app.db.session() as s:
        project = _project(s, org, name, "pipeline.run")
        _ = project.organisation
    try:
        run = runs.start_manual(app, project, ref, current_user)
    except ValidationError as exc:
        return _error(422, exc.field, exc.message)
    app.emit_event("pipeline.started", actor=current_user.username, project=project.path, detail=ref)
    with app.db.session() as s:
        run = s.get(PipelineRun, run.id)
        return jsonify(run_json(run, project, jobs=True)), 201


def _run_for(session, run_id: int, action: str) -> tuple[PipelineRun, Project]:
    run = session.get(PipelineRun, run_id)
    if run is None:
        abort(404)
    project = session.get(Project, run.project_id)
    if not policy.can(session, current_user, "pipeline.view", project):
        abort(404)
    if not policy.can(session, current_user, action, project):
        abort(403)
    return run, project


@bp.get("/runs/<int:run_id>")
@login_required
def get_run(run_id: int):
    with current_app.extensions["prts"].db.session() as s:
        run, project = _run_for(s, run_id, "pipeline.view")
        return jsonify(run_json(run, project, jobs=True))


@bp.post("/runs/<int:run_id>/cancel")
@login_required
def cancel_run(run_id: int):
    app = current_app.extensions["prts"]
    with app.db.session() as s:
        _, project = _run_for(s, run_id, "pipeline.run")
        path = project.path
    runs.cancel_run(app, run_id)
    app.emit_event("pipeline.canceled", actor=current_user.username, project=path, detail=str(run_id))
    with app.db.session() as s:
        run, project = _run_for(s, run_id, "pipeline.view")
        return jsonify(run_json(run, project, jobs=True))
