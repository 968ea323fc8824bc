"""Finding what a caller asked for, and refusing what it may not see or do.

Every decision is ``policy.can`` with the caller's user as the actor, narrowed by the
token's project restriction. A resource the caller may not view answers 404, like one
that does not exist, so the API does not confirm that a private project or run exists;
one it may view but not change answers 403.
"""

from __future__ import annotations

from sqlalchemy import orm

from appliance.accounts import organisations, policy
from appliance.errors import NotFound, ValidationError
from appliance.models import Organisation, PipelineJob, PipelineRun, Project, User
from webapp.api.caller import Caller, load_user
from webapp.api.errors import ApiError


def _check(session: orm.Session, caller: Caller, user: User, project: Project, action: str, missing: ApiError) -> None:
    if not caller.reaches(project) or not policy.can(session, user, "project.view", project):
        raise missing
    if not policy.can(session, user, action, project):
        raise ApiError(403, None, f"your role on {project.path} does not allow {action}")


def project(session: orm.Session, caller: Caller, org: str, name: str, action: str) -> tuple[User, Project]:
    user = load_user(session, caller)
    missing = ApiError(404, "project", f"no project {org}/{name}, or you may not see it")
    try:
        found = organisations.get_project(session, f"{org}/{name}")
    except (NotFound, ValidationError):
        raise missing from None
    _check(session, caller, user, found, action, missing)
    return user, found


def run(session: orm.Session, caller: Caller, run_id: int, action: str) -> tuple[User, PipelineRun, Project]:
    user = load_user(session, caller)
    missing = ApiError(404, "run_id", f"no run {run_id}, or you may not see it")
    found = session.get(PipelineRun, run_id)
    if found is None:
        raise missing
    owner = session.get(Project, found.project_id)
    _check(session, caller, user, owner, action, missing)
    return user, found, owner


def job(session: orm.Session, caller: Caller, job_id: int, action: str) -> tuple[User, PipelineJob, Project]:
    user = load_user(session, caller)
    missing = ApiError(404, "job_id", f"no job {job_id}, or you may not see it")
    found = session.get(PipelineJob, job_id)
    if found is None:
        raise missing
    owner = session.get(Project, found.project_id)
    _check(session, caller, user, owner, action, missing)
    return user, found, owner


def organisation(session: orm.Session, caller: Caller, name: str) -> tuple[User, Organisation]:
    """An organisation the caller may view. A project-restricted token sees no directory."""
    unrestricted(caller, "organisations")
    user = load_user(session, caller)
    found = organisations.find_organisation(session, name)
    if found is None or not policy.can(session, user, "organisation.view", found):
        raise ApiError(404, "org", f"no organisation {name}, or you may not see it")
    return user, found


def unrestricted(caller: Caller, what: str) -> None:
    """Refuse a project-restricted token an endpoint that is not about its project."""
    if caller.token is not None and caller.token.project_id is not None:
        raise ApiError(403, "authorization", f"a token restricted to one project cannot read {what}")
