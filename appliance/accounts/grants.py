"""Grants: a role given to a user or a team on an organisation, a project or an environment.

One grant per principal and scope (a unique index holds it); granting again changes the
role. A team belongs to its organisation and is granted roles only on that organisation,
its projects and their environments. ``policy`` reads grants; this module writes them.
"""

from __future__ import annotations

import dataclasses
import re

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.exc import IntegrityError

from appliance.accounts.policy import EnvironmentRef, Resource, role_on
from appliance.errors import PermissionDenied, ValidationError
from appliance.models import Membership, Organisation, Project, Role, Team, User

Principal = User | Team

# Environment names as deployments will use them: "production", "staging", "review/feature-x".
_ENVIRONMENT = re.compile(r"^[a-z0-9](?:[a-z0-9._/-]{0,98}[a-z0-9])?$")


def check_environment(name: str) -> str:
    name = name.strip().lower()
    if not name:
        raise ValidationError("environment", "is required")
    if not _ENVIRONMENT.match(name) or ".." in name or "//" in name:
        raise ValidationError("environment", "may contain only letters, digits, '.', '_', '-' and '/', "
                                             "and must start and end with a letter or digit (at most 100)")
    return name


def _scope_clause(scope: Resource):
    if isinstance(scope, Organisation):
        return Membership.organisation_id == scope.id
    if isinstance(scope, Project):
        return sa.and_(Membership.project_id == scope.id, Membership.environment.is_(None))
    if isinstance(scope, EnvironmentRef):
        return sa.and_(Membership.project_id == scope.project.id, Membership.environment == scope.name)
    raise TypeError(f"roles cannot be granted on {type(scope).__name__}")


def _principal_clause(principal: Principal):
    if isinstance(principal, User):
        return Membership.user_id == principal.id
    return Membership.team_id == principal.id


def organisation_id_of(scope: Resource) -> int:
    if isinstance(scope, Organisation):
        return scope.id
    project = scope.project if isinstance(scope, EnvironmentRef) else scope
    return project.organisation_id


def scope_label(scope: Resource) -> str:
    """How a scope is written on pages and in the audit trail: ``acme``, ``acme/web``, ``acme/web@production``."""
    if isinstance(scope, Organisation):
        return scope.name
    if isinstance(scope, EnvironmentRef):
        return f"{scope.project.path}@{scope.name}"
    return scope.path


def principal_label(principal: Principal) -> str:
    return f"user {principal.username}" if isinstance(principal, User) else f"team {principal.name}"


def find_grant(session: orm.Session, principal: Principal, scope: Resource) -> Membership | None:
    return session.scalar(sa.select(Membership).where(_principal_clause(principal), _scope_clause(scope)))


def set_grant(session: orm.Session, principal: Principal, scope: Resource, role: Role) -> Membership:
    """Give ``principal`` ``role`` on ``scope``, replacing the role it had there."""
    if isinstance(principal, Team) and principal.organisation_id != organisation_id_of(scope):
        raise ValidationError("principal", f"team {principal.name} belongs to another organisation; "
                                           "a team is granted roles only inside its own")
    membership = find_grant(session, principal, scope)
    if membership is not None:
        membership.role = int(role)
        session.flush()
        return membership
    membership = Membership(role=int(role))
    if isinstance(principal, User):
        membership.user_id = principal.id
    else:
        membership.team_id = principal.id
    if isinstance(scope, Organisation):
        membership.organisation_id = scope.id
    elif isinstance(scope, EnvironmentRef):
        membership.project_id, membership.environment = scope.project.id, scope.name
    else:
        membership.project_id = scope.id
    try:
        with session.begin_nested():  # a concurrent grant of the same principal and scope
            session.add(membership)
            session.flush()
    except IntegrityError:
        raise ValidationError("principal", f"{principal_label(principal)} was just granted a role there; "
                                           "reload and change that grant") from None
    return membership


def remove_grant(session: orm.Session, membership: Membership) -> None:
    session.delete(membership)
    session.flush()


def principal_of(session: orm.Session, membership: Membership) -> Principal:
    if membership.user_id is not None:
        return session.get(User, membership.user_id)
    return session.get(Team, membership.team_id)


def scope_of(session: orm.Session, membership: Membership) -> Resource:
    if membership.organisation_id is not None:
        return session.get(Organisation, membership.organisation_id)
    project = session.get(Project, membership.project_id)
    return EnvironmentRef(project, membership.environment) if membership.environment else project


@dataclasses.dataclass(frozen=True)
class Grant:
    """One grant as pages show it."""

    id: int
    principal: Principal
    scope: Resource
    role: Role

    @property
    def principal_kind(self) -> str:
        return "user" if isinstance(self.principal, User) else "team"

    @property
    def principal_name(self) -> str:
        return self.principal.username if isinstance(self.principal, User) else self.principal.name

    @property
    def scope_label(self) -> str:
        return scope_label(self.scope)

    @property
    def environment(self) -> str | None:
        return self.scope.name if isinstance(self.scope, EnvironmentRef) else None


def _grants(session: orm.Session, clause) -> list[Grant]:
    rows = session.scalars(sa.select(Membership).where(clause).order_by(Membership.id))
    grants = [Grant(m.id, principal_of(session, m), scope_of(session, m), Role(m.role)) for m in rows]
    return sorted(grants, key=lambda g: (g.scope_label, g.principal_kind, g.principal_name.lower()))


def grants_on_organisation(session: orm.Session, org: Organisation) -> list[Grant]:
    return _grants(session, Membership.organisation_id == org.id)


def grants_on_project(session: orm.Session, project: Project) -> list[Grant]:
    """The grants on the project itself and on each of its environments."""
    return _grants(session, Membership.project_id == project.id)


def grants_of_principal(session: orm.Session, principal: Principal) -> list[Grant]:
    return _grants(session, _principal_clause(principal))


def get_grant_in(session: orm.Session, grant_id: int, *, organisation: Organisation | None = None,
                 project: Project | None = None) -> Membership | None:
    """The grant with this id if it lies on ``project`` (or its environments) or on ``organisation``."""
    membership = session.get(Membership, grant_id)
    if membership is None:
        return None
    if project is not None and membership.project_id != project.id:
        return None
    if organisation is not None and membership.organisation_id != organisation.id:
        return None
    return membership


def ceiling(session: orm.Session, actor: User, scope: Resource) -> Role | None:
    """The highest role ``actor`` may hand out on ``scope``: their own there (a site admin: any)."""
    if actor.is_admin:
        return Role.ADMIN
    return role_on(session, actor, scope)


def check_within_own_role(session: orm.Session, actor: User, scope: Resource, role: Role,
                          current: Role | None = None) -> None:
    """Refuse a grant above the actor's own role on the scope, or a change to a grant above it."""
    top = ceiling(session, actor, scope)
    if top is None or role > top:
        raise PermissionDenied(f"you cannot grant {role.name.lower()} on {scope_label(scope)}: "
                               "it is above your own role there")
    if current is not None and current > top:
        raise PermissionDenied(f"you cannot change a {current.name.lower()} grant on {scope_label(scope)}: "
                               "it is above your own role there")
