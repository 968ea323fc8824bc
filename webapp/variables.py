"""Project variables and secrets, and the project's pipeline settings.

Every page needs ``pipeline.view`` on the project and answers 404 without it (a private
project's existence is not confirmed). The variables list needs ``variables.view``
(Developers see names and plain values); adding, changing and deleting need
``variables.manage``; the pipeline settings page is readable by every member and its form
needs ``pipeline.settings``. Without the action a page answers 403.

A secret's value is write-only: after saving it is never rendered again, not in the list,
not in the edit form, and not when a form comes back with errors (the field is emptied).
The pages never decrypt: a ciphertext that does not decrypt shows up when a job starts.
Analytics events name the variable, never its value.
"""

from __future__ import annotations

import logging

from flask import Blueprint, abort, flash, render_template, url_for
from flask_login import current_user, login_required
from sqlalchemy import orm

from appliance.accounts import policy
from appliance.errors import NotFound, ValidationError
from appliance.logmask import MIN_SECRET_BYTES
from appliance.models import Project, ProjectVariable
from appliance.pipelines import variables
from appliance.pipelines.secrets import SecretBox, SecretKeyError
from webapp import auditing
from webapp.extensions import htmx
from webapp.forms import PipelineSettingsForm, VariableForm, VariableValueForm, add_service_error
from webapp.fresh import fresh_login_required
from webapp.pipelines import done, load_project, project_args, prts

log = logging.getLogger(__name__)

bp = Blueprint("variables", __name__)

KEY_PROBLEM = ("Secrets cannot be saved: the appliance's secrets key is not usable. "
               "An administrator finds the reason in the server log.")


@bp.context_processor
def _limits() -> dict:
    return {"min_secret_bytes": MIN_SECRET_BYTES}


def load_variable(session: orm.Session, project: Project, var: str) -> ProjectVariable:
    row = variables.find_variable(session, project, var)
    if row is None:
        abort(404)
    return row


def forget_secret_input(form: VariableValueForm, was_secret: bool = False) -> None:
    """A form going back to the browser never carries a secret it was sent."""
    if form.secret.data or was_secret:
        form.value.data = ""
        form.value.raw_data = []


def _save(session: orm.Session, project: Project, form: VariableValueForm, var: str) -> bool:
    """Store the form's variable; False (with the error on the form) when refused."""
    try:
        with session.begin_nested():
            variables.set_variable(session, SecretBox.from_config(prts().config), project, var,
                                   form.value.data or "", secret=bool(form.secret.data))
    except ValidationError as exc:
        add_service_error(form, exc)
        return False
    except SecretKeyError as exc:
        # The message names the key's origin (never the key); the operator needs it, the user does not.
        log.error("cannot save a secret of %s: %s", project.path, exc)
        form.form_errors.append(KEY_PROBLEM)
        return False
    return True


def _failed(form: VariableValueForm) -> bool:
    return bool(form.errors or form.form_errors)


# -- the list and the add form ------------------------------------------------------------


def _index(session: orm.Session, project: Project, form: VariableForm | None, status: int = 200):
    can_manage = policy.can(session, current_user, "variables.manage", project)
    if form is None and can_manage:
        form = VariableForm(formdata=None)
    return render_template("variables/index.html", project=project, rows=variables.list_variables(session, project),
                           form=form, can_manage=can_manage), status


@bp.get("/<org>/<name>/-/variables")
@login_required
def index(org: str, name: str):
    with prts().db.session() as s:
        project = load_project(s, org, name, "variables.view")
        return _index(s, project, None)


@bp.post("/<org>/<name>/-/variables")
@fresh_login_required  # may set a secret
def add(org: str, name: str):
    app = prts()
    form = VariableForm()
    with app.db.session() as s:
        project = load_project(s, org, name, "variables.manage")
        var = form.name.data or ""
        if form.validate_on_submit():
            try:
                variables.check_name(var)
                if variables.find_variable(s, project, var) is not None:
                    # Not an overwrite: a mistyped add must not replace a secret nobody can read back.
                    raise ValidationError("name", f"{var} already exists; edit it to change its value")
            except ValidationError as exc:
                add_service_error(form, exc)
            else:
                _save(s, project, form, var)
        if _failed(form):
            forget_secret_input(form)
            if htmx:
                return render_template("partials/variable_form.html", project=project, form=form, variable=None), 422
            return _index(s, project, form, 422)
        secret = bool(form.secret.data)
        auditing.record(s, "variable.set", target=f"{project.path}:{var}", project=project,
                        detail=f"added ({'secret' if secret else 'plain'})")  # the name only, never the value
    flash(f"The {'secret' if secret else 'variable'} {var} was added.", "success")
    return done(url_for("variables.index", **project_args(project)))


# -- edit and delete ----------------------------------------------------------------------


def _edit_page(project: Project, row: ProjectVariable, form: VariableValueForm, status: int = 200):
    if htmx and status != 200:
        return render_template("partials/variable_form.html", project=project, form=form, variable=row), status
    return render_template("variables/edit.html", project=project, variable=row, form=form), status


@bp.get("/<org>/<name>/-/variables/<var>/edit")
@login_required
def edit(org: str, name: str, var: str):
    with prts().db.session() as s:
        project = load_project(s, org, name, "variables.manage")
        row = load_variable(s, project, var)
        # A secret's value is never put back into a page, not even into its own form.
        form = VariableValueForm(formdata=None, data={"value": "" if row.is_secret else row.value,
                                                      "secret": row.is_secret})
        return _edit_page(project, row, form)


@bp.post("/<org>/<name>/-/variables/<var>/edit")
@fresh_login_required  # may set a secret
def update(org: str, name: str, var: str):
    app = prts()
    form = VariableValueForm()
    with app.db.session() as s:
        project = load_project(s, org, name, "variables.manage")
        row = load_variable(s, project, var)
        was_secret = row.is_secret
        if form.validate_on_submit():
            if was_secret and form.secret.data and not form.value.data:
                form.value.errors.append("Value is required: enter the new value (the current one is never shown).")
            else:
                _save(s, project, form, row.name)
        if _failed(form):
            forget_secret_input(form, was_secret)
            return _edit_page(project, row, form, 422)
        secret = row.is_secret
        auditing.record(s, "variable.set", target=f"{project.path}:{row.name}", project=project,
                        detail=f"changed ({'secret' if secret else 'plain'})")  # the name only, never the value
    flash(f"The {'secret' if secret else 'variable'} {var} was saved.", "success")
    return done(url_for("variables.index", **project_args(project)))


@bp.get("/<org>/<name>/-/variables/<var>/delete")
@login_required
def confirm_delete(org: str, name: str, var: str):
    with prts().db.session() as s:
        project = load_project(s, org, name, "variables.manage")
        row = load_variable(s, project, var)
        return render_template("variables/delete.html", project=project, variable=row)


@bp.post("/<org>/<name>/-/variables/<var>/delete")
@fresh_login_required  # may delete a secret
def delete(org: str, name: str, var: str):
    app = prts()
    with app.db.session() as s:
        project = load_project(s, org, name, "variables.manage")
        try:
            variables.delete_variable(s, project, var)
        except NotFound:
            abort(404)
        auditing.record(s, "variable.deleted", target=f"{project.path}:{var}", project=project)
    flash(f"The variable {var} was deleted.", "success")
    return done(url_for("variables.index", **project_args(project)))


# -- pipeline settings --------------------------------------------------------------------


def _settings_page(session: orm.Session, project: Project, form: PipelineSettingsForm | None, status: int = 200):
    can_settings = policy.can(session, current_user, "pipeline.settings", project)
    if form is None and can_settings:
        form = PipelineSettingsForm(formdata=None, data={"job_concurrency": project.job_concurrency,
                                                         "cancel_superseded": project.cancel_superseded})
    return render_template("settings/pipelines.html", project=project, form=form, can_settings=can_settings,
                           default_concurrency=prts().config.pipelines.job_concurrency), status


@bp.get("/<org>/<name>/-/settings/pipelines")
@login_required
def pipeline_settings(org: str, name: str):
    with prts().db.session() as s:
        project = load_project(s, org, name, "pipeline.view")
        return _settings_page(s, project, None)


@bp.post("/<org>/<name>/-/settings/pipelines")
@login_required
def save_pipeline_settings(org: str, name: str):
    app = prts()
    form = PipelineSettingsForm()
    with app.db.session() as s:
        project = load_project(s, org, name, "pipeline.settings")
        if form.validate_on_submit():
            try:
                with s.begin_nested():
                    variables.set_pipeline_settings(s, project, job_concurrency=form.job_concurrency.data,
                                                    cancel_superseded=bool(form.cancel_superseded.data))
            except ValidationError as exc:
                add_service_error(form, exc)
        if form.errors:
            # htmx picks the form out of the page (hx-select) and swaps it in place.
            return _settings_page(s, project, form, 422)
        auditing.record(s, "pipeline.settings_changed", target=project.path, project=project,
                        detail=f"job_concurrency={project.job_concurrency} "
                               f"cancel_superseded={project.cancel_superseded}")
    flash("The pipeline settings were saved.", "success")
    return done(url_for("variables.pipeline_settings", **project_args(project)))
