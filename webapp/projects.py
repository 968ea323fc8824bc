"""Projects: the create form (validated inline through htmx) and the project page."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, url_for
from flask_login import current_user, login_required

from appliance.accounts import organisations, policy
from appliance.errors import NotFound, ValidationError
from appliance.models import Organisation
from webapp import auditing
from webapp.extensions import htmx
from webapp.forms import ProjectForm, add_service_error

bp = Blueprint("projects", __name__)


def _render_form(form: ProjectForm, status: int = 200):
    # htmx swaps only the form; a plain request gets the whole page around it.
    template = "partials/project_form.html" if htmx else "projects/new.html"
    return render_template(template, form=form), status


@bp.route("/projects/new", methods=["GET", "POST"])
@login_required
def new():
    app = current_app.extensions["prts"]
    form = ProjectForm()
    with app.db.session() as s:
        orgs = policy.organisations_for_new_project(s, current_user)
        form.organisation.choices = [(org.id, org.name) for org in orgs]
        if not orgs:
            return render_template("projects/no_organisation.html"), 403
        if not form.validate_on_submit():
            return _render_form(form, 422 if form.is_submitted() else 200)
        org = s.get(Organisation, form.organisation.data)
        if not policy.can(s, current_user, "organisation.create_project", org):
            abort(403)
        try:
            project = organisations.create_project(
                s, org, form.name.data or "", description=form.description.data or "", creator=current_user
            )
            path = project.path
        except ValidationError as exc:
            add_service_error(form, exc)
            return _render_form(form, 422)
        auditing.record(s, "project.created", target=path, project=project)
    flash(f"Project {path} was created.", "success")
    target = url_for("projects.show", org=path.split("/")[0], name=path.split("/")[1])
    if htmx:
        return "", 204, {"HX-Redirect": target}
    return redirect(target)


@bp.route("/<org>/<name>")
@login_required
def show(org: str, name: str):
    with current_app.extensions["prts"].db.session() as s:
        try:
            project = organisations.get_project(s, f"{org}/{name}")
        except (NotFound, ValidationError):
            abort(404)
        if not policy.can(s, current_user, "project.view", project):
            abort(404)  # 404, not 403: do not confirm that a private project exists
        role = policy.role_on_project(s, current_user, project)
        return render_template("projects/show.html", project=project, role=role)
