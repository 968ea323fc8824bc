"""The one place that decides permissions: ``can(actor, action, resource)``.

Roles come from memberships granted to the user or to a team the user belongs to, on an
organisation or a project; the most specific scope that has a grant wins (a project grant
overrides the organisation's), and among several grants on that scope the highest applies.
Site administrators may do everything.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import orm

from appliance.models import Membership, Organisation, Project, Role, TeamMember, User

# The least role each action needs, by the kind of resource it acts on.
ACTIONS: dict[str, Role] = {
    "project.view": Role.VIEWER,
    "project.update": Role.MAINTAINER,
    # pipelines: runs, jobs, logs and artifacts are readable by every member
    "pipeline.view": Role.VIEWER,
    "pipeline.run": Role.DEVELOPER,  # start, cancel, rerun
    "pipeline.settings": Role.MAINTAINER,  # concurrency, cancel-superseded, schedules
    "variables.view": Role.DEVELOPER,  # names and plain values; secrets are never shown
    "variables.manage": Role.MAINTAINER,
    # git hosting
    "repository.read": Role.VIEWER,  # clone, fetch, browse
    "repository.push": Role.DEVELOPER,  # push to branches that are not protected; open merge requests
    "repository.push_protected": Role.MAINTAINER,  # push to protected branches (never force, never delete)
    "repository.settings": Role.MAINTAINER,  # default branch, protected branches, mirror, inbound webhook secret
    "webhooks.manage": Role.MAINTAINER,  # outbound webhooks and their delivery log
    "organisation.view": Role.VIEWER,
    "organisation.create_project": Role.MAINTAINER,
}


def _principal_filter(user: User):
    teams = sa.select(TeamMember.team_id).where(TeamMember.user_id == user.id)
    return sa.or_(Membership.user_id == user.id, Membership.team_id.in_(teams))


def _highest(session: orm.Session, user: User, scope_clause) -> Role | None:
    best = session.scalar(sa.select(sa.func.max(Membership.role)).where(_principal_filter(user), scope_clause))
    return Role(best) if best is not None else None


def role_on_organisation(session: orm.Session, user: User, org: Organisation) -> Role | None:
    return _highest(session, user, Membership.organisation_id == org.id)


def role_on_project(session: orm.Session, user: User, project: Project) -> Role | None:
    project_role = _highest(session, user, Membership.project_id == project.id)
    if project_role is not None:
        return project_role
    return _highest(session, user, Membership.organisation_id == project.organisation_id)


def can(session: orm.Session, actor: User | None, action: str, resource: Project | Organisation) -> bool:
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    if actor is None or not actor.is_active:
        return False
    if actor.is_admin:
        return True
    if isinstance(resource, Project):
        role = role_on_project(session, actor, resource)
    elif isinstance(resource, Organisation):
        role = role_on_organisation(session, actor, resource)
    else:
        raise TypeError(f"no permissions are defined on {type(resource).__name__}")
    return role is not None and role >= ACTIONS[action]


def visible_projects(session: orm.Session, user: User) -> list[Project]:
    """The projects the user may view, by organisation then name."""
    query = sa.select(Project).join(Project.organisation).options(orm.contains_eager(Project.organisation))
    if not user.is_admin:
        granted = _principal_filter(user)
        by_project = sa.select(Membership.project_id).where(granted, Membership.project_id.is_not(None))
        by_org = sa.select(Membership.organisation_id).where(granted, Membership.organisation_id.is_not(None))
        # A project grant overrides the organisation's, but any grant at all allows viewing.
        query = query.where(sa.or_(Project.id.in_(by_project), Project.organisation_id.in_(by_org)))
    return list(session.scalars(query.order_by(sa.func.lower(Organisation.name), sa.func.lower(Project.name))))


def organisations_for_new_project(session: orm.Session, user: User) -> list[Organisation]:
    orgs = session.scalars(sa.select(Organisation).order_by(sa.func.lower(Organisation.name)))
    return [org for org in orgs if can(session, user, "organisation.create_project", org)]
