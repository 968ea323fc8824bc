"""Pipelines: the runs list with its "Run pipeline" form, and the run page.

Jobs, artifacts (``pipelines_jobs``) and schedules (``pipelines_schedules``) are views of
the same blueprint in their own modules. Every page needs ``pipeline.view`` on the
project and answers 404 without it (a private project's existence is not confirmed);
actions need ``pipeline.run`` or ``pipeline.settings`` and answer 403 without them.

Live parts poll: a widget that shows something active carries ``hx-trigger="every 2s"``
and a ``since`` token naming the state it shows; the view answers 204 (htmx leaves the
widget alone) while the state is unchanged, and the widget's replacement drops the
trigger once nothing is active, so polling stops by itself.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from sqlalchemy import orm
from wtforms import StringField
from wtforms.validators import Length

from appliance.accounts import organisations, policy
from appliance.errors import NotFound, ValidationError
from appliance.models import PipelineJob, PipelineJobNeed, PipelineRun, Project
from appliance.models.pipeline_run import ACTIVE
from appliance.pipelines import runs
from webapp import auditing, dag
from webapp.extensions import htmx
from webapp.forms import add_service_error

bp = Blueprint("pipelines", __name__)

PER_PAGE = 20
RECENT = 5
ACTIVE_VALUES = frozenset(s.value for s in ACTIVE)


class RunPipelineForm(FlaskForm):
    ref = StringField("Branch, tag or commit", validators=[Length(max=255)],
                      render_kw={"autocomplete": "off", "spellcheck": "false", "autocapitalize": "off"})


# -- helpers shared by the pipeline views -------------------------------------------------


def prts():
    return current_app.extensions["prts"]


def load_project(session: orm.Session, org: str, name: str, action: str = "pipeline.view") -> Project:
    """The project at ``org/name`` if the user may see its pipelines (404 otherwise) and
    may do ``action`` (403 otherwise)."""
    try:
        project = organisations.get_project(session, f"{org}/{name}")
    except (NotFound, ValidationError):
        abort(404)
    if not policy.can(session, current_user, "pipeline.view", project):
        abort(404)  # not 403: do not confirm that a private project exists
    if action != "pipeline.view" and not policy.can(session, current_user, action, project):
        abort(403)
    _ = project.organisation  # loaded for project.path after the session ends
    return project


def load_run(session: orm.Session, project: Project, number: int) -> PipelineRun:
    run = session.scalar(sa.select(PipelineRun).where(PipelineRun.project_id == project.id,
                                                      PipelineRun.number == number))
    if run is None:
        abort(404)
    return run


def project_args(project: Project) -> dict:
    return {"org": project.organisation.name, "name": project.name}


def state_token(*parts) -> str:
    """A short name for what a live widget shows; equal tokens mean nothing changed."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def unchanged(token: str) -> bool:
    return bool(htmx) and request.args.get("since") == token


def is_active(status: str) -> bool:
    return status in ACTIVE_VALUES


def permissions(session: orm.Session, project: Project) -> dict:
    return {"can_run": policy.can(session, current_user, "pipeline.run", project),
            "can_settings": policy.can(session, current_user, "pipeline.settings", project)}


def done(target: str):
    """After a successful POST: Post/Redirect/Get, or HX-Redirect for htmx."""
    if htmx:
        return "", 204, {"HX-Redirect": target}
    return redirect(target)


@bp.app_template_filter("pipeline_duration")
def humanise_duration(value) -> str:
    """``1m 05s``; seconds or a timedelta; an em dash for nothing."""
    if value is None:
        return "\u2014"
    seconds = value.total_seconds() if isinstance(value, dt.timedelta) else float(value)
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


@bp.app_template_filter("short_ref")
def short_ref(ref: str) -> str:
    for prefix in ("refs/heads/", "refs/tags/"):
        if ref and ref.startswith(prefix):
            return ref[len(prefix):]
    return ref or ""


@bp.app_template_filter("filesize")
def filesize(size: int | None) -> str:
    if size is None:
        return "\u2014"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def trigger_label(run: PipelineRun) -> str:
    if run.triggered_by is not None:
        return run.triggered_by.username
    if run.schedule_id is not None or run.event == "schedule":
        return "schedule"
    return {"push": "git push", "tag": "tag push", "pull_request": "pull request"}.get(run.event, run.event)


@bp.app_context_processor
def _pipeline_helpers():
    return {"run_trigger": trigger_label}


# -- the runs list -----------------------------------------------------------------------


def _runs_page(session: orm.Session, project: Project, page: int) -> dict:
    total = session.scalar(sa.select(sa.func.count()).select_from(PipelineRun)
                           .where(PipelineRun.project_id == project.id)) or 0
    pages = max(1, math.ceil(total / PER_PAGE))
    page = min(max(page, 1), pages)
    rows = list(session.scalars(
        sa.select(PipelineRun).where(PipelineRun.project_id == project.id)
        .options(orm.selectinload(PipelineRun.triggered_by))
        .order_by(PipelineRun.number.desc()).offset((page - 1) * PER_PAGE).limit(PER_PAGE)))
    active = any(is_active(r.status) for r in rows)
    token = state_token(total, page, [(r.id, r.status, r.finished_at) for r in rows])
    return {"runs": rows, "page": page, "pages": pages, "total": total, "active": active, "token": token}


def _index(session: orm.Session, project: Project, form: RunPipelineForm | None, status: int = 200):
    ctx = _runs_page(session, project, request.args.get("page", 1, type=int))
    perms = permissions(session, project)
    if form is None and perms["can_run"]:
        form = RunPipelineForm(ref=project.default_branch, formdata=None)
    return render_template("pipelines/index.html", project=project, form=form, **ctx, **perms), status


@bp.get("/<org>/<name>/-/pipelines")
@login_required
def index(org: str, name: str):
    with prts().db.session() as s:
        project = load_project(s, org, name)
        if htmx:
            ctx = _runs_page(s, project, request.args.get("page", 1, type=int))
            if unchanged(ctx["token"]):
                return "", 204
            return render_template("partials/run_list.html", project=project, **ctx)
        return _index(s, project, None)


@bp.get("/<org>/<name>/-/pipelines/recent")
@login_required
def recent(org: str, name: str):
    """The project page's "Pipelines" section, loaded and kept fresh by htmx."""
    with prts().db.session() as s:
        project = load_project(s, org, name)
        rows = list(s.scalars(sa.select(PipelineRun).where(PipelineRun.project_id == project.id)
                              .options(orm.selectinload(PipelineRun.triggered_by))
                              .order_by(PipelineRun.number.desc()).limit(RECENT)))
        token = state_token([(r.id, r.status, r.finished_at) for r in rows])
        if unchanged(token):
            return "", 204
        return render_template("partials/run_recent.html", project=project, runs=rows, token=token,
                               active=any(is_active(r.status) for r in rows), **permissions(s, project))


@bp.post("/<org>/<name>/-/pipelines")
@login_required
def start(org: str, name: str):
    app = prts()
    form = RunPipelineForm()
    with app.db.session() as s:
        project = load_project(s, org, name, "pipeline.run")
    ref = (form.ref.data or "").strip()
    problem: ValidationError | None = None
    if form.validate_on_submit():
        try:
            run = runs.start_manual(app, project, ref, current_user, auditing.origin())
        except ValidationError as exc:
            problem = exc
    if problem is not None or form.errors:
        if problem is not None:
            add_service_error(form, problem)
        if htmx:
            return render_template("partials/run_form.html", project=project, form=form), 422
        with app.db.session() as s:
            return _index(s, project, form, 422)
    flash(f"Pipeline #{run.number} was started for {ref}.", "success")
    return done(url_for("pipelines.run_page", number=run.number, **project_args(project)))


# -- one run -----------------------------------------------------------------------------


def _run_context(session: orm.Session, project: Project, run: PipelineRun) -> dict:
    jobs = list(session.scalars(sa.select(PipelineJob).where(PipelineJob.run_id == run.id)
                                .order_by(PipelineJob.stage_index, PipelineJob.id)))
    ids = [job.id for job in jobs]
    edges = [(need, job) for job, need in session.execute(
        sa.select(PipelineJobNeed.job_id, PipelineJobNeed.needs_id).where(PipelineJobNeed.job_id.in_(ids)))] \
        if ids else []
    args = project_args(project)
    nodes = [dag.Node(id=job.id, name=job.name, status=job.status, stage=job.stage, stage_index=job.stage_index,
                      order=i, href=url_for("pipelines.job_page", job_id=job.id, **args),
                      detail=humanise_duration(job.duration) if job.started_at else "")
             for i, job in enumerate(jobs)]
    stages: list[tuple[str, list[PipelineJob]]] = []
    for job in jobs:
        if not stages or stages[-1][0] != job.stage:
            stages.append((job.stage, []))
        stages[-1][1].append(job)
    token = state_token(run.status, run.finished_at, run.started_at,
                        [(j.id, j.status, j.attempt, j.started_at, j.finished_at) for j in jobs])
    return {"project": project, "run": run, "jobs": jobs, "stages": stages, "token": token,
            "active": is_active(run.status), "trigger": trigger_label(run),
            "graph": dag.render_svg(nodes, edges, label=f"Jobs of pipeline #{run.number}") if jobs else None,
            **permissions(session, project)}


@bp.get("/<org>/<name>/-/pipelines/<int:number>")
@login_required
def run_page(org: str, name: str, number: int):
    with prts().db.session() as s:
        project = load_project(s, org, name)
        run = load_run(s, project, number)
        ctx = _run_context(s, project, run)
        if htmx:
            if unchanged(ctx["token"]):
                return "", 204
            return render_template("partials/run_status.html", **ctx)
        return render_template("pipelines/run.html", **ctx)


@bp.post("/<org>/<name>/-/pipelines/<int:number>/cancel")
@login_required
def cancel_run(org: str, name: str, number: int):
    app = prts()
    with app.db.session() as s:
        project = load_project(s, org, name, "pipeline.run")
        run = load_run(s, project, number)
        was_active = is_active(run.status)
    if was_active:
        runs.cancel_run(app, run.id, auditing.origin())
        flash(f"Pipeline #{number} was canceled.", "success")
    else:
        flash(f"Pipeline #{number} had already finished.", "info")
    return done(url_for("pipelines.run_page", number=number, **project_args(project)))


@bp.post("/<org>/<name>/-/pipelines/<int:number>/rerun")
@login_required
def rerun_run(org: str, name: str, number: int):
    app = prts()
    with app.db.session() as s:
        project = load_project(s, org, name, "pipeline.run")
        run = load_run(s, project, number)
    try:
        new = runs.rerun_run(app, run.id, current_user, auditing.origin())
    except (ValidationError, NotFound) as exc:
        flash(f"Pipeline #{number} could not be run again: {getattr(exc, 'message', exc)}", "error")
        return done(url_for("pipelines.run_page", number=number, **project_args(project)))
    flash(f"Pipeline #{new.number} was started again from #{number}.", "success")
    return done(url_for("pipelines.run_page", number=new.number, **project_args(project)))


from webapp import pipelines_jobs, pipelines_schedules  # noqa: E402,F401  (their views join this blueprint)
