"""Repository settings: the default branch and the protected branches. Members read them;
Maintainers (``repository.settings``) change them."""

from __future__ import annotations

from flask import Blueprint, flash, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from sqlalchemy import orm
from wtforms import SelectField, StringField
from wtforms.validators import Length

from appliance.accounts import policy
from appliance.errors import ValidationError
from appliance.hosting import branches, protection
from appliance.models import Project
from webapp import auditing
from webapp.forms import add_service_error
from webapp.pipelines import done, load_project, project_args, prts

bp = Blueprint("repository_settings", __name__)


@bp.app_template_test("matching_glob")
def matching_glob(branch: str, pattern: str) -> bool:
    return protection.is_protected((pattern,), branch)


class DefaultBranchForm(FlaskForm):
    default_branch = SelectField("Default branch", validate_choice=False)


class ProtectForm(FlaskForm):
    pattern = StringField("Branch or pattern", validators=[Length(max=255)],
                          render_kw={"autocomplete": "off", "spellcheck": "false", "placeholder": "release/*"})


def _page(session: orm.Session, project: Project, *, branch_form=None, protect_form=None, status: int = 200):
    names = branches.list_branches(prts().config, project.id)
    can_change = policy.can(session, current_user, "repository.settings", project)
    if branch_form is None:
        branch_form = DefaultBranchForm(formdata=None, data={"default_branch": project.default_branch})
    branch_form.default_branch.choices = [(b, b) for b in (names or [project.default_branch])]
    return render_template("settings/repository.html", project=project, branches=names,
                           patterns=protection.patterns(session, project), can_change=can_change,
                           branch_form=branch_form, protect_form=protect_form or ProtectForm(formdata=None)), status


@bp.get("/<org>/<name>/-/settings/repository")
@login_required
def index(org: str, name: str):
    with prts().db.session() as s:
        return _page(s, load_project(s, org, name, "repository.read"))


def _record(session: orm.Session, project: Project, detail: str) -> None:
    auditing.record(session, "repository.settings_changed", target=project.path, project=project, detail=detail)


def _after(project: Project, message: str):
    flash(message, "success")
    return done(url_for("repository_settings.index", **project_args(project)))


@bp.post("/<org>/<name>/-/settings/repository/default-branch")
@login_required
def set_default_branch(org: str, name: str):
    form = DefaultBranchForm()
    with prts().db.session() as s:
        project = load_project(s, org, name, "repository.settings")
        if form.validate_on_submit():
            try:
                branches.set_default_branch(prts().config, s, project, form.default_branch.data or "")
            except ValidationError as exc:
                add_service_error(form, exc)
        if form.errors:
            return _page(s, project, branch_form=form, status=422)
        branch = project.default_branch
        _record(s, project, f"default_branch={branch}")
    return _after(project, f"The default branch is now {branch}.")


@bp.post("/<org>/<name>/-/settings/repository/protected")
@login_required
def protect(org: str, name: str):
    form = ProtectForm()
    with prts().db.session() as s:
        project = load_project(s, org, name, "repository.settings")
        if form.validate_on_submit():
            try:
                with s.begin_nested():
                    pattern = protection.protect(s, project, form.pattern.data or "").pattern
            except ValidationError as exc:
                add_service_error(form, exc)
        if form.errors:
            return _page(s, project, protect_form=form, status=422)
        _record(s, project, f"protect={pattern}")
    return _after(project, f"Branches matching {pattern} are now protected.")


@bp.post("/<org>/<name>/-/settings/repository/unprotect")
@login_required
def unprotect(org: str, name: str):
    pattern = request.form.get("pattern", "")
    with prts().db.session() as s:
        project = load_project(s, org, name, "repository.settings")
        try:
            protection.unprotect(s, project, pattern)
        except ValidationError as exc:
            flash(exc.message[0].upper() + exc.message[1:] + ".", "error")
            return done(url_for("repository_settings.index", **project_args(project)))
        _record(s, project, f"unprotect={pattern}")
    return _after(project, f"Branches matching {pattern} are no longer protected.")
