"""A project's Members tab: the roles granted on the project and its environments, for the
project's Maintainers to manage like GitLab's members page.

Needs ``members.manage``: 404 for those who may not see the project, 403 for those who may
see it but not manage it. Nobody grants above their own role on the scope, nor changes or
removes a grant above it (a refusal is audited as ``denied`` and answers 403). Changes
need a fresh sign-in and are audited in their transaction. Grants on the organisation are
shown for context but changed only by site administrators.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, render_template, url_for
from flask_login import current_user, login_required
from sqlalchemy import orm

from appliance.accounts import grants
from appliance.errors import PermissionDenied, ValidationError
from appliance.models import Project, Role, User
from webapp.forms import add_service_error
from webapp.fresh import fresh_login_required
from webapp.grant_forms import ChangeRoleForm, GrantForm, apply_grant_form, change_grant, parse_role, remove_grant, role_choices
from webapp.pipelines import done, load_project, project_args, prts

bp = Blueprint("members", __name__)

ACTION = "members.manage"


def _grant_form(session: orm.Session, project: Project, form: GrantForm | None = None) -> GrantForm:
    form = form or GrantForm(formdata=None)
    form.scope.choices = [("project", f"the project {project.name}")]
    form.role.choices = role_choices(grants.ceiling(session, current_user, project) or Role.VIEWER)
    return form


def _page(session: orm.Session, project: Project, form: GrantForm | None = None, status: int = 200):
    return render_template(
        "settings/members.html", project=project, rows=grants.grants_on_project(session, project),
        inherited=grants.grants_on_organisation(session, project.organisation),
        form=_grant_form(session, project, form), change_form=ChangeRoleForm(formdata=None),
        ceiling=grants.ceiling(session, current_user, project), choices=role_choices(),
    ), status


def _actor(session: orm.Session) -> User:
    return session.get(User, current_user.id)


@bp.get("/<org>/<name>/-/settings/members")
@login_required
def index(org: str, name: str):
    with prts().db.session() as s:
        project = load_project(s, org, name, ACTION)
        return _page(s, project)


@bp.post("/<org>/<name>/-/settings/members")
@fresh_login_required
def add(org: str, name: str):
    form = GrantForm()
    with prts().db.session() as s:
        project = load_project(s, org, name, ACTION)
        _grant_form(s, project, form)
        if not form.validate_on_submit():
            return _page(s, project, form, 422)
        denied = None
        try:
            message = apply_grant_form(s, form, _actor(s), project.organisation, {"project": project})
        except ValidationError as exc:
            add_service_error(form, exc)  # refused before anything was written
            return _page(s, project, form, 422)
        except PermissionDenied as exc:
            denied = str(exc)  # the denied event commits with this transaction
    if denied:
        abort(403, denied)
    flash(message, "success")
    return done(url_for("members.index", **project_args(project)))


def _membership(session: orm.Session, project: Project, grant_id: int):
    membership = grants.get_grant_in(session, grant_id, project=project)
    if membership is None:
        abort(404)
    return membership


@bp.post("/<org>/<name>/-/settings/members/<int:grant_id>")
@fresh_login_required
def change(org: str, name: str, grant_id: int):
    form = ChangeRoleForm()
    form.role.choices = role_choices()
    with prts().db.session() as s:
        project = load_project(s, org, name, ACTION)
        membership = _membership(s, project, grant_id)
        if not form.validate_on_submit():
            abort(400, "Choose one of the roles.")
        denied = None
        try:
            message = change_grant(s, membership, _actor(s), parse_role(form.role.data))
        except PermissionDenied as exc:
            denied = str(exc)
    if denied:
        abort(403, denied)
    flash(message, "success")
    return done(url_for("members.index", **project_args(project)))


@bp.post("/<org>/<name>/-/settings/members/<int:grant_id>/remove")
@fresh_login_required
def remove(org: str, name: str, grant_id: int):
    with prts().db.session() as s:
        project = load_project(s, org, name, ACTION)
        membership = _membership(s, project, grant_id)
        denied = None
        try:
            message = remove_grant(s, membership, _actor(s))
        except PermissionDenied as exc:
            denied = str(exc)
    if denied:
        abort(403, denied)
    flash(message, "success")
    return done(url_for("members.index", **project_args(project)))
