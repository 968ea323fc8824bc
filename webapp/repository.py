"""The repository browser: files, history, commits with their diffs, branches and tags.

Every page needs ``repository.read`` and answers 404 without it. URLs hold a revision
and a path in one part (``/-/tree/release/1.0/src``); ``browse.locate`` splits it by the
longest branch or tag name. A bad revision or path (``..``, control characters, a
leading '-') is refused with 400 before it reaches git; one that names nothing is 404.
Every commit shown links to the pipeline runs of that commit, with their status.
"""

from __future__ import annotations

import pathlib
from urllib.parse import quote

import sqlalchemy as sa
from flask import Blueprint, Response, abort, redirect, render_template, request, url_for
from flask_login import login_required
from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_for_filename
from pygments.lexers.special import TextLexer
from pygments.util import ClassNotFound
from sqlalchemy import orm

from appliance import repos
from appliance.errors import ValidationError
from appliance.hosting import browse
from appliance.models import PipelineRun, Project
from webapp.pipelines import load_project, project_args, prts

bp = Blueprint("repository", __name__)

COMMITS_PER_PAGE = 30
HIGHLIGHT_MAX_BYTES = 256 * 1024  # beyond this a file is shown as plain (escaped) text: pygments is slow on big input
RAW_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox",
               "Cache-Control": "private, no-cache"}


# -- errors: bad input is 400, what names nothing is 404 -----------------------------------


def _error(code: int, title: str, text: str):
    return render_template("errors/error.html", code=code, title=title, text=text), code


@bp.errorhandler(ValidationError)
def _bad_input(exc: ValidationError):
    return _error(400, "Bad request", exc.message)


@bp.errorhandler(LookupError)  # UnknownRef, NotAFile, NotADirectory
def _not_found(exc: LookupError):
    return _error(404, "Not found", str(exc))


# -- helpers -------------------------------------------------------------------------------


def _project(org: str, name: str) -> tuple[Project, pathlib.Path]:
    with prts().db.session() as s:
        project = load_project(s, org, name, "repository.read")
    return project, repos.repository_path(prts().config, project.id)


def clone_url(project: Project) -> str:
    """What ``git clone`` takes: ``<web.public_url or this host>/<org>/<project>.git``."""
    base = prts().config.web.public_url or request.host_url
    return f"{base.rstrip('/')}/{project.organisation.name}/{project.name}.git"


def runs_by_commit(session: orm.Session, project_id: int, shas) -> dict[str, list[PipelineRun]]:
    """The project's pipeline runs of each commit, the newest first."""
    shas = sorted(set(shas))
    found: dict[str, list[PipelineRun]] = {sha: [] for sha in shas}
    if shas:
        for run in session.scalars(sa.select(PipelineRun).where(PipelineRun.project_id == project_id,
                                                                PipelineRun.commit_sha.in_(shas))
                                   .order_by(PipelineRun.number.desc())):
            found[run.commit_sha].append(run)
    return found


def _runs(project: Project, shas) -> dict[str, list[PipelineRun]]:
    with prts().db.session() as s:
        found = runs_by_commit(s, project.id, shas)
        s.expunge_all()  # read-only rows for the template, after the session ends
    return found


def highlighted_lines(path: str, text: str) -> list[Markup] | None:
    """The file as lines of HTML from pygments (which escapes the text it wraps in spans),
    or None when it is too large to highlight (the template then escapes it itself)."""
    if len(text) > HIGHLIGHT_MAX_BYTES:
        return None
    try:
        lexer = get_lexer_for_filename(pathlib.PurePosixPath(path).name, text, stripnl=False, ensurenl=True)
    except ClassNotFound:
        lexer = TextLexer(stripnl=False, ensurenl=True)
    # nowrap: bare spans, closed at every line end by the formatter, so a line split is safe.
    html = highlight(text, lexer, HtmlFormatter(nowrap=True))
    return [Markup(line) for line in html.split("\n")[:-1]]


def _context(project: Project, repo: pathlib.Path, loc: browse.Location, tab: str, **extra) -> dict:
    return {"project": project, "args": project_args(project), "loc": loc, "tab": tab,
            "branch_names": [b.name for b in browse.branches(repo)], "clone_url": clone_url(project), **extra}


def _default_location(project: Project, repo: pathlib.Path) -> browse.Location:
    names = [b.name for b in browse.branches(repo)]
    head = browse.default_branch(repo)
    rev = project.default_branch if project.default_branch in names else (head if head in names else names[0])
    return browse.locate(repo, rev)


# -- files ---------------------------------------------------------------------------------


def _tree_page(project: Project, repo: pathlib.Path, loc: browse.Location):
    entries = browse.tree(repo, loc.sha, loc.path)
    latest = browse.log(repo, loc.sha, loc.path or None, limit=1).commits
    readme = browse.readme(repo, loc.sha, entries)
    return render_template("repository/tree.html", entries=entries, latest=latest[0] if latest else None,
                           readme=readme, runs=_runs(project, [c.sha for c in latest]),
                           **_context(project, repo, loc, "files"))


@bp.get("/<org>/<name>/-/repository")
@login_required
def home(org: str, name: str):
    """The default branch's files and its README; how to push when there is nothing yet."""
    project, repo = _project(org, name)
    if browse.is_empty(repo):
        return render_template("repository/empty.html", project=project, args=project_args(project),
                               clone_url=clone_url(project), tab="files")
    return _tree_page(project, repo, _default_location(project, repo))


@bp.get("/<org>/<name>/-/tree/<path:rev_path>")
@login_required
def tree(org: str, name: str, rev_path: str):
    project, repo = _project(org, name)
    loc = browse.locate(repo, rev_path)
    if browse.blob_kind(repo, loc.sha, loc.path) in ("blob", "symlink"):
        return redirect(url_for("repository.blob", rev_path=rev_path, **project_args(project)))
    return _tree_page(project, repo, loc)


@bp.get("/<org>/<name>/-/blob/<path:rev_path>")
@login_required
def blob(org: str, name: str, rev_path: str):
    project, repo = _project(org, name)
    loc = browse.locate(repo, rev_path)
    if not loc.path or browse.blob_kind(repo, loc.sha, loc.path) == "tree":
        return redirect(url_for("repository.tree", rev_path=rev_path, **project_args(project)))
    found = browse.blob(repo, loc.sha, loc.path)
    lines = plain = None
    if not found.binary and not found.truncated:
        lines = highlighted_lines(loc.path, found.text)
        if lines is None:
            plain = found.text.split("\n")
            if plain[-1] == "":
                plain.pop()
    latest = browse.log(repo, loc.sha, loc.path, limit=1).commits
    return render_template("repository/blob.html", blob=found, lines=lines, plain=plain,
                           latest=latest[0] if latest else None, runs=_runs(project, [c.sha for c in latest]),
                           **_context(project, repo, loc, "files"))


@bp.get("/<org>/<name>/-/raw/<path:rev_path>")
@login_required
def raw(org: str, name: str, rev_path: str):
    """The file's bytes. Never rendered by the browser as a page of this site: text is
    text/plain, anything binary is an attachment, nothing is sniffed, and the CSP sandbox
    denies scripts even if a browser tried."""
    project, repo = _project(org, name)
    loc = browse.locate(repo, rev_path)
    if not loc.path:
        raise browse.NotAFile("a raw download needs a file path after the revision")
    head = browse.blob(repo, loc.sha, loc.path, max_bytes=browse.BINARY_SNIFF_BYTES)
    size, chunks = browse.stream_blob(repo, loc.sha, loc.path)
    headers = dict(RAW_HEADERS, **{"Content-Length": str(size)})
    if head.binary:
        # RFC 6266 filename*: the name percent-encoded, so no quote or newline in it can break the header.
        filename = quote(pathlib.PurePosixPath(loc.path).name, safe="")
        headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{filename}"
        mimetype = "application/octet-stream"
    else:
        mimetype = "text/plain"  # Flask adds "; charset=utf-8"
    return Response(chunks, mimetype=mimetype, headers=headers, direct_passthrough=True)


# -- history -------------------------------------------------------------------------------


@bp.get("/<org>/<name>/-/commits")
@login_required
def commits_default(org: str, name: str):
    project, repo = _project(org, name)
    if browse.is_empty(repo):
        return redirect(url_for("repository.home", **project_args(project)))
    loc = _default_location(project, repo)
    return redirect(url_for("repository.commits", rev_path=loc.rev, **project_args(project)))


@bp.get("/<org>/<name>/-/commits/<path:rev_path>")
@login_required
def commits(org: str, name: str, rev_path: str):
    project, repo = _project(org, name)
    loc = browse.locate(repo, rev_path)
    page = max(1, request.args.get("page", 1, type=int))
    found = browse.log(repo, loc.sha, loc.path or None, skip=(page - 1) * COMMITS_PER_PAGE, limit=COMMITS_PER_PAGE)
    if page > 1 and not found.commits:
        abort(404)
    return render_template("repository/commits.html", log=found, page=page,
                           runs=_runs(project, [c.sha for c in found.commits]),
                           **_context(project, repo, loc, "commits"))


@bp.get("/<org>/<name>/-/commit/<sha>")
@login_required
def commit(org: str, name: str, sha: str):
    project, repo = _project(org, name)
    if not browse.is_commit_id(sha):
        abort(404)
    full = browse.resolve_revision(repo, sha)
    found = browse.commit(repo, full)
    changes = browse.diff(repo, full)
    return render_template("repository/commit.html", commit=found, diff=changes, runs=_runs(project, [full]),
                           **_context(project, repo, browse.Location(full, full, ""), "commits"))


# -- branches and tags ---------------------------------------------------------------------


@bp.get("/<org>/<name>/-/branches")
@login_required
def branches(org: str, name: str):
    project, repo = _project(org, name)
    found = browse.branches(repo)
    return render_template("repository/branches.html", project=project, args=project_args(project),
                           branches=found, runs=_runs(project, [b.sha for b in found]), tab="branches")


@bp.get("/<org>/<name>/-/tags")
@login_required
def tags(org: str, name: str):
    project, repo = _project(org, name)
    found = browse.tags(repo)
    return render_template("repository/tags.html", project=project, args=project_args(project),
                           tags=found, runs=_runs(project, [t.sha for t in found]), tab="tags")


@bp.app_context_processor
def _repository_helpers():
    return {"repository_clone_url": clone_url}
