"""The schedules page (views of the ``pipelines`` blueprint). Every member sees the
schedules; Maintainers add, enable, disable and delete the ones people made. Schedules
that come from the pipeline file's ``schedule:`` triggers are read-only here: the file
is their source, and the engine keeps them in step with it."""

from __future__ import annotations

import sqlalchemy as sa
from flask import abort, flash, render_template, url_for
from flask_login import login_required
from flask_wtf import FlaskForm
from sqlalchemy import orm
from wtforms import StringField
from wtforms.validators import Length

from appliance.errors import ValidationError
from appliance.models import PipelineRun, PipelineSchedule, Project
from appliance.models.base import utcnow
from appliance.pipelines import schedules
from webapp import auditing
from webapp.extensions import htmx
from webapp.forms import add_service_error
from webapp.pipelines import bp, done, load_project, permissions, project_args, prts


class ScheduleForm(FlaskForm):
    cron = StringField("Cron", validators=[Length(max=100)],
                       render_kw={"autocomplete": "off", "spellcheck": "false", "placeholder": "0 2 * * *"})
    ref = StringField("Branch or tag", validators=[Length(max=255)],
                      render_kw={"autocomplete": "off", "spellcheck": "false", "autocapitalize": "off"})
    description = StringField("Description", validators=[Length(max=200)], render_kw={"autocomplete": "off"})


def _page(session: orm.Session, project: Project, form: ScheduleForm | None, status: int = 200):
    rows = list(session.scalars(sa.select(PipelineSchedule).where(PipelineSchedule.project_id == project.id)
                                .order_by(PipelineSchedule.source, PipelineSchedule.id)))
    run_ids = [row.last_run_id for row in rows if row.last_run_id]
    last_runs = {run.id: run for run in session.scalars(
        sa.select(PipelineRun).where(PipelineRun.id.in_(run_ids), PipelineRun.project_id == project.id))} \
        if run_ids else {}
    perms = permissions(session, project)
    if form is None and perms["can_settings"]:
        form = ScheduleForm(ref=project.default_branch, formdata=None)
    return render_template("pipelines/schedules.html", project=project, schedules=rows, last_runs=last_runs,
                           form=form, **perms), status


def _load_schedule(session: orm.Session, project: Project, schedule_id: int) -> PipelineSchedule:
    row = session.get(PipelineSchedule, schedule_id)
    if row is None or row.project_id != project.id:
        abort(404)
    if row.source != "user":
        abort(403)  # kept in step with the pipeline file: change the file instead
    return row


@bp.get("/<org>/<name>/-/schedules")
@login_required
def schedules_page(org: str, name: str):
    with prts().db.session() as s:
        project = load_project(s, org, name)
        return _page(s, project, None)


@bp.post("/<org>/<name>/-/schedules")
@login_required
def add_schedule(org: str, name: str):
    app = prts()
    form = ScheduleForm()
    with app.db.session() as s:
        project = load_project(s, org, name, "pipeline.settings")
        if form.validate_on_submit():
            try:
                with s.begin_nested():
                    row = schedules.add_schedule(s, project, form.cron.data or "", (form.ref.data or "").strip(),
                                                 (form.description.data or "").strip())
                    cron = row.cron
            except ValidationError as exc:
                add_service_error(form, exc)
        if form.errors:
            if htmx:
                return render_template("pipelines/_schedule_form.html", project=project, form=form), 422
            return _page(s, project, form, 422)
        auditing.record(s, "schedule.added", target=f"{project.path} schedule {row.id}", project=project,
                        detail=f"{cron} on {row.ref}")
    flash(f"The schedule \u201c{cron}\u201d was added.", "success")
    return done(url_for("pipelines.schedules_page", **project_args(project)))


def _set_enabled(org: str, name: str, schedule_id: int, enabled: bool):
    with prts().db.session() as s:
        project = load_project(s, org, name, "pipeline.settings")
        row = _load_schedule(s, project, schedule_id)
        if enabled and not row.enabled:
            # The ticks missed while it was off are not owed: start from the next one.
            row.next_run_at = schedules.next_tick(row.cron, utcnow())
        row.enabled = enabled
        cron = row.cron
        auditing.record(s, "schedule.enabled" if enabled else "schedule.disabled",
                        target=f"{project.path} schedule {row.id}", project=project, detail=cron)
    flash(f"The schedule \u201c{cron}\u201d was {'enabled' if enabled else 'disabled'}.", "success")
    return done(url_for("pipelines.schedules_page", **project_args(project)))


@bp.post("/<org>/<name>/-/schedules/<int:schedule_id>/enable")
@login_required
def enable_schedule(org: str, name: str, schedule_id: int):
    return _set_enabled(org, name, schedule_id, True)


@bp.post("/<org>/<name>/-/schedules/<int:schedule_id>/disable")
@login_required
def disable_schedule(org: str, name: str, schedule_id: int):
    return _set_enabled(org, name, schedule_id, False)


@bp.post("/<org>/<name>/-/schedules/<int:schedule_id>/delete")
@login_required
def delete_schedule(org: str, name: str, schedule_id: int):
    with prts().db.session() as s:
        project = load_project(s, org, name, "pipeline.settings")
        row = _load_schedule(s, project, schedule_id)
        cron = row.cron
        auditing.record(s, "schedule.deleted", target=f"{project.path} schedule {row.id}", project=project,
                        detail=cron)
        s.delete(row)
    flash(f"The schedule \u201c{cron}\u201d was deleted.", "success")
    return done(url_for("pipelines.schedules_page", **project_args(project)))
