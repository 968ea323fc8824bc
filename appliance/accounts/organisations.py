"""Organisations, projects and the roles granted on them."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.exc import IntegrityError

from appliance.accounts import grants
from appliance.errors import NotFound, ValidationError
from appliance.models import Membership, Organisation, Project, ProtectedBranch, Role, User
from appliance.names import check_slug


def find_organisation(session: orm.Session, name: str) -> Organisation | None:
    return session.scalar(sa.select(Organisation).where(sa.func.lower(Organisation.name) == name.strip().lower()))


def get_organisation(session: orm.Session, name: str) -> Organisation:
    org = find_organisation(session, name)
    if org is None:
        raise NotFound(f"no organisation named {name!r}")
    return org


def create_organisation(session: orm.Session, name: str, description: str = "") -> Organisation:
    name = check_slug("name", name)
    if find_organisation(session, name) is not None:
        raise ValidationError("name", f"an organisation named {name!r} already exists")
    org = Organisation(name=name, description=description.strip())
    try:
        with session.begin_nested():
            session.add(org)
            session.flush()
    except IntegrityError:
        raise ValidationError("name", f"an organisation named {name!r} already exists") from None
    return org


def find_project(session: orm.Session, org: Organisation, name: str) -> Project | None:
    return session.scalar(
        sa.select(Project).where(Project.organisation_id == org.id, sa.func.lower(Project.name) == name.strip().lower())
    )


def get_project(session: orm.Session, path: str) -> Project:
    """The project at ``ORG/NAME``."""
    org_name, sep, name = path.partition("/")
    if not sep or not org_name or not name:
        raise ValidationError("project", f"{path!r} is not of the form ORG/NAME")
    project = find_project(session, get_organisation(session, org_name), name)
    if project is None:
        raise NotFound(f"no project named {path!r}")
    return project


def create_project(
    session: orm.Session, org: Organisation, name: str, *, description: str = "", creator: User | None = None
) -> Project:
    name = check_slug("name", name, top_level=False)
    if len(description) > 2000:
        raise ValidationError("description", "must be at most 2000 characters")
    if find_project(session, org, name) is not None:
        raise ValidationError("name", f"{org.name}/{name} already exists")
    project = Project(organisation_id=org.id, name=name, description=description.strip(), created_by_id=creator.id if creator else None)
    try:
        with session.begin_nested():  # a concurrent create of the same name loses here, cleanly
            session.add(project)
            session.flush()
    except IntegrityError:
        raise ValidationError("name", f"{org.name}/{name} already exists") from None
    # Like GitLab, the default branch starts protected: Maintainers push, nobody force-pushes.
    session.add(ProtectedBranch(project_id=project.id, pattern=project.default_branch))
    if creator is not None and not creator.is_admin:
        grant(session, creator, project, Role.MAINTAINER)
    return project


def grant(session: orm.Session, user: User, scope: Organisation | Project, role: Role) -> Membership:
    """Give ``user`` ``role`` on ``scope``, replacing any role the user had there directly."""
    return grants.set_grant(session, user, scope, role)
