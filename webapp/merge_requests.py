"""Merge requests: the list, the form that opens one, and the page of one with its
commits and pipeline runs. Every member reads them; Developers open, close and reopen."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, abort, flash, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from sqlalchemy import orm
from wtforms import SelectField, StringField, TextAreaField
from wtforms.validators import Length

from appliance import repos
from appliance.accounts import policy
from appliance.errors import NotFound, ValidationError
from appliance.hosting import branches as hosting_branches
from appliance.hosting import merge_requests
from appliance.models import MergeRequest, PipelineRun, Project, User
from webapp import auditing
from webapp.forms import add_service_error
from webapp.pipelines import done, load_project, project_args, prts

bp = Blueprint("merge_requests", __name__)

MAX_COMMITS = 100
STATES = ("open", "merged", "closed", "all")


class MergeRequestForm(FlaskForm):
    source_branch = SelectField("Source branch", validate_choice=False)
    target_branch = SelectField("Target branch", validate_choice=False)
    title = StringField("Title", validators=[Length(max=255)], render_kw={"autocomplete": "off"})
    description = TextAreaField("Description", validators=[Length(max=20_000)], render_kw={"rows": 5})


def _form_page(session: orm.Session, project: Project, form: MergeRequestForm, status: int = 200):
    branches = hosting_branches.list_branches(prts().config, project.id)
    form.source_branch.choices = [(b, b) for b in branches]
    form.target_branch.choices = [(b, b) for b in branches]
    return render_template("merge_requests/new.html", project=project, form=form, branches=branches), status


@bp.get("/<org>/<name>/-/merge_requests")
@login_required
def index(org: str, name: str):
    state = request.args.get("state", "open")
    if state not in STATES:
        abort(400, f"state must be one of {', '.join(STATES)}")
    with prts().db.session() as s:
        project = load_project(s, org, name, "repository.read")
        rows = merge_requests.list_merge_requests(s, project, state)
        authors = {u.id: u.username for u in s.scalars(sa.select(User).where(
            User.id.in_({r.author_id for r in rows if r.author_id})))}
        counts = dict(s.execute(sa.select(MergeRequest.state, sa.func.count()).where(
            MergeRequest.project_id == project.id).group_by(MergeRequest.state)).all())
        return render_template("merge_requests/index.html", project=project, rows=rows, authors=authors,
                               state=state, counts=counts,
                               can_open=policy.can(s, current_user, "repository.push", project))


@bp.route("/<org>/<name>/-/merge_requests/new", methods=["GET", "POST"])
@login_required
def new(org: str, name: str):
    app = prts()
    form = MergeRequestForm()
    with app.db.session() as s:
        project = load_project(s, org, name, "repository.push")
        if request.method == "GET":
            form = MergeRequestForm(formdata=None, data={"target_branch": project.default_branch,
                                                         "source_branch": request.args.get("source", "")})
            return _form_page(s, project, form)
    if form.validate_on_submit():
        try:
            mr = merge_requests.open_merge_request(
                app, project.id, source=form.source_branch.data or "", target=form.target_branch.data or "",
                title=form.title.data or "", description=form.description.data or "", author=current_user,
                origin=auditing.origin())
        except ValidationError as exc:
            add_service_error(form, exc)
        else:
            flash(f"Merge request !{mr.number} was opened.", "success")
            return done(url_for("merge_requests.show", number=mr.number, **project_args(project)))
    with app.db.session() as s:
        project = load_project(s, org, name, "repository.push")
        return _form_page(s, project, form, 422)


def _commits(project: Project, mr: MergeRequest) -> list[dict]:
    """The source branch's commits that the target branch does not have (newest first)."""
    repo = repos.repository_path(prts().config, project.id)
    try:
        out = repos.git(repo, "log", f"--max-count={MAX_COMMITS}", "--format=%H%x00%an%x00%aI%x00%s%x1e",
                        f"refs/heads/{mr.target_branch}..refs/heads/{mr.source_branch}", "--")
    except repos.RepositoryError:  # a branch was deleted
        return []
    commits = []
    for record in out.decode("utf-8", errors="replace").split("\x1e"):
        fields = record.strip("\n").split("\0")
        if len(fields) == 4:
            commits.append(dict(zip(("sha", "author", "date", "subject"), fields)))
    return commits


@bp.get("/<org>/<name>/-/merge_requests/<int:number>")
@login_required
def show(org: str, name: str, number: int):
    with prts().db.session() as s:
        project = load_project(s, org, name, "repository.read")
        try:
            mr = merge_requests.get_merge_request(s, project, number)
        except NotFound:
            abort(404)
        commits = _commits(project, mr)
        shas = [c["sha"] for c in commits]
        runs = list(s.scalars(sa.select(PipelineRun).where(
            PipelineRun.project_id == project.id, PipelineRun.commit_sha.in_(shas)).order_by(
            PipelineRun.number.desc()))) if shas else []
        author = s.get(User, mr.author_id) if mr.author_id else None
        return render_template("merge_requests/show.html", project=project, mr=mr, commits=commits, runs=runs,
                               author=author, max_commits=MAX_COMMITS,
                               can_change=policy.can(s, current_user, "repository.push", project))


def _set_state(org: str, name: str, number: int, state: str):
    app = prts()
    with app.db.session() as s:
        project = load_project(s, org, name, "repository.push")
    try:
        merge_requests.set_state(app, project.id, number, state, current_user, auditing.origin())
    except NotFound:
        abort(404)
    except ValidationError as exc:
        flash(exc.message[0].upper() + exc.message[1:] + ".", "error")
    else:
        verb = "reopened" if state == "open" else "closed"
        flash(f"Merge request !{number} was {verb}.", "success")
    return done(url_for("merge_requests.show", number=number, **project_args(project)))


@bp.post("/<org>/<name>/-/merge_requests/<int:number>/close")
@login_required
def close(org: str, name: str, number: int):
    return _set_state(org, name, number, "closed")


@bp.post("/<org>/<name>/-/merge_requests/<int:number>/reopen")
@login_required
def reopen(org: str, name: str, number: int):
    return _set_state(org, name, number, "open")
