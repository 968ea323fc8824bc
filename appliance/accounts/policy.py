"""The one place that decides permissions: ``can(actor, action, resource)``.

Roles come from memberships granted to the user or to a team the user belongs to, on an
organisation, a project, or one environment of a project. The most specific scope that
has a grant wins (environment over project over organisation), even when its role is
lower, and among several grants on that scope (the user's own and its teams') the highest
applies. Site administrators may do everything; a disabled account may do nothing.

A grant on an environment alone also lets its holder read the project it belongs to, as a
Viewer: deploying to an environment of a project one cannot see would be blind.
"""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa
from sqlalchemy import orm

from appliance.models import Membership, Organisation, Project, Role, TeamMember, User

# The least role each action needs. An action is checked against the role the actor holds
# on the resource it is asked about: an organisation, a project or an environment.
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
    # who may do what: grants on the project and its environments (never above one's own role)
    "members.manage": Role.MAINTAINER,
    # the audit trail of a project or an organisation
    "audit.view": Role.MAINTAINER,
    # environments (deployments arrive with a later issue; the level is in place)
    "environment.deploy": Role.DEVELOPER,
    "organisation.view": Role.VIEWER,
    "organisation.create_project": Role.MAINTAINER,
}


@dataclasses.dataclass(frozen=True)
class EnvironmentRef:
    """One environment of a project ("production", "staging"), as a resource to ask about."""

    project: Project
    name: str


Resource = Organisation | Project | EnvironmentRef


def _principal_filter(user: User):
    teams = sa.select(TeamMember.team_id).where(TeamMember.user_id == user.id)
    return sa.or_(Membership.user_id == user.id, Membership.team_id.in_(teams))


def _highest(session: orm.Session, user: User, scope_clause) -> Role | None:
    best = session.scalar(sa.select(sa.func.max(Membership.role)).where(_principal_filter(user), scope_clause))
    return Role(best) if best is not None else None


def _on_project_itself(project: Project):
    return sa.and_(Membership.project_id == project.id, Membership.environment.is_(None))


def _on_any_environment_of(project: Project):
    return sa.and_(Membership.project_id == project.id, Membership.environment.is_not(None))


def role_on_organisation(session: orm.Session, user: User, org: Organisation) -> Role | None:
    return _highest(session, user, Membership.organisation_id == org.id)


def role_on_project(session: orm.Session, user: User, project: Project) -> Role | None:
    for scope in (_on_project_itself(project), Membership.organisation_id == project.organisation_id):
        role = _highest(session, user, scope)
        if role is not None:
            return role
    if _highest(session, user, _on_any_environment_of(project)) is not None:
        return Role.VIEWER  # see the module docstring: an environment grant reads its project
    return None


def role_on_environment(session: orm.Session, user: User, environment: EnvironmentRef) -> Role | None:
    project = environment.project
    scopes = (
        sa.and_(Membership.project_id == project.id, Membership.environment == environment.name),
        _on_project_itself(project),
        Membership.organisation_id == project.organisation_id,
    )
    for scope in scopes:
        role = _highest(session, user, scope)
        if role is not None:
            return role
    return None


def role_on(session: orm.Session, user: User, resource: Resource) -> Role | None:
    """The role ``user`` holds on ``resource`` by grants alone (site admin is not a role)."""
    if isinstance(resource, Project):
        return role_on_project(session, user, resource)
    if isinstance(resource, EnvironmentRef):
        return role_on_environment(session, user, resource)
    if isinstance(resource, Organisation):
        return role_on_organisation(session, user, resource)
    raise TypeError(f"no permissions are defined on {type(resource).__name__}")


def can(session: orm.Session, actor: User | None, action: str, resource: Resource) -> bool:
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    if not isinstance(resource, (Organisation, Project, EnvironmentRef)):
        raise TypeError(f"no permissions are defined on {type(resource).__name__}")
    if actor is None or not getattr(actor, "is_authenticated", False) or not actor.is_active:
        return False
    if actor.is_admin:
        return True
    role = role_on(session, actor, resource)
    return role is not None and role >= ACTIONS[action]


def visible_projects(session: orm.Session, user: User) -> list[Project]:
    """The projects the user may view, by organisation then name."""
    query = sa.select(Project).join(Project.organisation).options(orm.contains_eager(Project.organisation))
    if not user.is_active:
        return []
    if not user.is_admin:
        granted = _principal_filter(user)
        # Any grant at all allows viewing: on the project, one of its environments, or its organisation.
        by_project = sa.select(Membership.project_id).where(granted, Membership.project_id.is_not(None))
        by_org = sa.select(Membership.organisation_id).where(granted, Membership.organisation_id.is_not(None))
        query = query.where(sa.or_(Project.id.in_(by_project), Project.organisation_id.in_(by_org)))
    return list(session.scalars(query.order_by(sa.func.lower(Organisation.name), sa.func.lower(Project.name))))


def organisations_for_new_project(session: orm.Session, user: User) -> list[Organisation]:
    orgs = session.scalars(sa.select(Organisation).order_by(sa.func.lower(Organisation.name)))
    return [org for org in orgs if can(session, user, "organisation.create_project", org)]
