"""Clone, fetch and push over HTTP at ``/<org>/<project>.git`` (git's smart protocol).

Credentials are HTTP basic auth only — a username with an API token or the account's
password — never the browser session, so no cookie can push and CSRF does not apply.
Failed credentials count toward the sign-in rate limit like the login form's. Reading
needs ``repository.read`` (Viewer), pushing ``repository.push`` (Developer); protected
branches are enforced by the pre-receive hook with the rules passed from here. A project
the user may not see answers as if it did not exist.
"""

from __future__ import annotations

import logging
import math

from flask import Blueprint, Response, current_app, redirect, request, url_for

from appliance import audit, repos
from appliance.accounts import organisations, policy, ratelimit, tokens, users
from appliance.errors import NotFound, ValidationError
from appliance.hosting import protection, pushes, smart_http
from appliance.models import Project, User
from appliance.models.base import utcnow
from webapp.extensions import csrf

log = logging.getLogger(__name__)

bp = Blueprint("git_http", __name__)
csrf.exempt(bp)

REALM = 'Basic realm="PRTS git", charset="UTF-8"'


def _text(status: int, message: str, **headers: str) -> Response:
    # git shows a text/plain body of a failed request to the user as "remote: ...".
    return Response(message.rstrip() + "\n", status=status, mimetype="text/plain", headers=headers)


def _challenge(message: str = "Authentication required: use your username and an API token or password.") -> Response:
    return _text(401, message, **{"WWW-Authenticate": REALM})


def _authenticate(app, session) -> tuple[User | None, object | None, Response | None]:
    """``(user, token, None)``, ``(None, None, None)`` for an anonymous request, or an error response."""
    auth = request.authorization
    if auth is None or auth.type != "basic":
        return None, None, None
    username, secret = (auth.username or "").strip(), auth.password or ""
    address = request.remote_addr or "unknown"
    limits = ratelimit.LoginLimits.from_config(app.config)
    until = ratelimit.locked_until(session, limits, username, address)
    if until:
        minutes = max(1, math.ceil((until - utcnow()).total_seconds() / 60))
        return None, None, _text(429, f"Too many failed sign-in attempts; try again in {minutes} minute(s).")
    token = None
    if tokens.looks_like_token(secret):
        found = tokens.authenticate(session, username, secret)
        user, token = found if found else (None, None)
    else:
        user = users.authenticate(session, username, secret) if username else None
    if user is None:
        ratelimit.record_failure(session, username, address)
        log.info("git sign-in failed", extra={"username": username, "address": address})
        return None, None, _challenge("Invalid username, token or password.")
    ratelimit.record_success(session, username)
    return user, token, None


def _serve(org: str, name: str, path_info: str):
    app = current_app.extensions["prts"]
    query = request.query_string.decode("latin-1")
    if path_info == "info/refs" and query not in ("service=git-upload-pack", "service=git-receive-pack"):
        return _text(403, "Only git's smart HTTP protocol is served; use git 1.6.6 or later.")
    push = smart_http.is_push(path_info, query)
    with app.db.session() as s:
        user, token, error = _authenticate(app, s)
        if error is not None:
            return error
        try:
            project: Project | None = organisations.get_project(s, f"{org}/{name}")
        except (NotFound, ValidationError):
            project = None
        if user is None:
            # Anonymous: ask for credentials whether or not the project exists.
            return _challenge()
        if project is None or not policy.can(s, user, "repository.read", project) or \
                (token is not None and token.project_id not in (None, project.id)):
            return _text(404, f"Repository {org}/{name} not found.")
        refusal = ""
        if token is not None and not tokens.scope_allows(token.scope, "write" if push else "read"):
            refusal = f"This token has the {token.scope} scope; pushing needs a write token."
        elif push and not policy.can(s, user, "repository.push", project):
            refusal = f"You may read {project.path} but not push to it: pushing needs the Developer role."
        elif push and project.mirror_url:
            # The next fetch of the mirror would overwrite the pushed refs (it prunes and forces).
            refusal = f"{project.path} mirrors {project.mirror_url}; push there instead."
        if refusal:
            if push:  # the session commits on return, with the refusal in the trail
                audit.record(s, "git.push", actor=user, target=project.path, project=project,
                             address=request.remote_addr or "", outcome="denied", detail=refusal)
            return _text(403, refusal)
        project_id, project_path, default_branch = project.id, project.path, project.default_branch
        patterns = protection.patterns(s, project) if push else ()
        may_push_protected = push and policy.can(s, user, "repository.push_protected", project)
        user_id, username = user.id, user.username

    address = request.remote_addr or ""
    max_push = app.config.git.max_push_bytes
    if push and request.content_length is not None and request.content_length > max_push:
        return _text(413, f"The push is larger than this appliance accepts ({max_push} bytes).")
    repo = repos.ensure_repository(app.config, project_id, default_branch)

    def on_push(updates: list[pushes.RefUpdate]) -> None:
        moved = ", ".join(f"{u.ref} {u.old[:8]}..{u.new[:8]}" for u in updates[:50])
        moved += f" and {len(updates) - 50} more" if len(updates) > 50 else ""
        log.info("push to %s by %s: %s", project_path, username, moved)
        # The refs moved in git, outside any transaction: the event gets one of its own.
        with app.db.session() as s:
            audit.record(s, "git.push", actor=s.get(User, user_id), target=project_path,
                         project=s.get(Project, project_id), address=address, detail=moved)
        try:
            pushes.process_push(app, project_id, updates, user_id)
        except Exception:  # the push has landed; pipelines are best effort from here
            log.exception("could not start the pipelines of a push to %s", project_path)

    git_request = smart_http.GitRequest(
        repo=repo, path_info=path_info, method=request.method, query=query,
        body=request.environ["wsgi.input"], content_length=request.content_length,
        content_type=request.headers.get("Content-Type", ""),
        content_encoding=request.headers.get("Content-Encoding", ""),
        git_protocol=request.headers.get("Git-Protocol", ""), remote_user=username,
        remote_addr=request.remote_addr or "", protected_patterns=patterns, may_push_protected=may_push_protected)
    try:
        answer = smart_http.serve(git_request, max_push_bytes=max_push, timeout=app.config.git.http_timeout,
                                  on_push=on_push)
    except smart_http.BackendError:
        log.exception("git http-backend failed for %s", project_path)
        return _text(500, "The repository could not be served; the appliance's log says why.")
    code = int(answer.status.split(" ", 1)[0])
    return Response(answer.body, status=code, headers=answer.headers, direct_passthrough=True)


@bp.get("/<org>/<name>.git/info/refs")
def info_refs(org: str, name: str):
    return _serve(org, name, "info/refs")


@bp.post("/<org>/<name>.git/git-upload-pack")
def upload_pack(org: str, name: str):
    return _serve(org, name, "git-upload-pack")


@bp.post("/<org>/<name>.git/git-receive-pack")
def receive_pack(org: str, name: str):
    return _serve(org, name, "git-receive-pack")


@bp.get("/<org>/<name>.git")
def project_page(org: str, name: str):
    """The clone URL opened in a browser shows the project, as on GitLab and Forgejo."""
    return redirect(url_for("projects.show", org=org, name=name))
