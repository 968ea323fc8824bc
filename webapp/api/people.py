"""Users and teams: yourself, the user directory (site administrators), an organisation's teams."""

from __future__ import annotations

import pydantic
import sqlalchemy as sa
from flask import current_app

from appliance.accounts import users
from appliance.models import Team, TeamMember, User
from webapp.api import access
from webapp.api.caller import load_user
from webapp.api.errors import ApiError
from webapp.api.operations import Call, json_answer, operation
from webapp.api.schemas import Name, Page, PageQuery, Timestamp, page_of


class UserPath(pydantic.BaseModel):
    username: Name


class OrgPath(pydantic.BaseModel):
    org: Name


class TeamPath(OrgPath):
    team: Name


class UserOut(pydantic.BaseModel):
    id: int
    username: str
    email: str | None = pydantic.Field(description="Shown to the user and to site administrators only.")
    is_admin: bool
    active: bool
    created_at: Timestamp


class CallingToken(pydantic.BaseModel):
    id: int
    prefix: str
    scope: str
    project_id: int | None
    expires_at: Timestamp | None


class Me(UserOut):
    token: CallingToken | None = pydantic.Field(description="The token of this request; null for a browser session.")


class TeamOut(pydantic.BaseModel):
    id: int
    organisation: str
    name: str
    created_at: Timestamp


class TeamWithMembers(TeamOut):
    members: list[str] = pydantic.Field(description="Usernames.")


class TeamList(pydantic.BaseModel):
    items: list[TeamOut]


def _db():
    return current_app.extensions["prts"].db


def user_out(user: User, viewer: User) -> dict:
    sees_email = viewer.is_admin or viewer.id == user.id
    return dict(id=user.id, username=user.username, email=user.email if sees_email else None,
                is_admin=user.is_admin, active=user.is_active, created_at=user.created_at)


@operation("GET", "/user", summary="Yourself, and the token you call with", tag="users", scope="read", answer=Me)
def get_me(call: Call):
    with _db().session() as s:
        user = load_user(s, call.caller)
        token = call.caller.token
        return Me(**user_out(user, user),
                  token=CallingToken(id=token.id, prefix=token.prefix, scope=token.scope, project_id=token.project_id,
                                     expires_at=token.expires_at) if token else None)


@operation("GET", "/users", summary="Every account (site administrators, admin scope)", tag="users", scope="admin",
           query=PageQuery, answer=Page[UserOut])
def list_users(call: Call):
    access.unrestricted(call.caller, "the user directory")
    with _db().session() as s:
        viewer = load_user(s, call.caller)
        if not viewer.is_admin:
            raise ApiError(403, None, "only site administrators may list users")
        total = s.scalar(sa.select(sa.func.count()).select_from(User))
        rows = s.scalars(sa.select(User).order_by(sa.func.lower(User.username))
                         .offset(call.query.offset).limit(call.query.per_page))
        fields, headers = page_of([UserOut(**user_out(u, viewer)) for u in rows], call.query, total)
        return json_answer(Page[UserOut](**fields), headers=headers)


@operation("GET", "/users/{username}", summary="One account", tag="users", scope="read", path_params=UserPath,
           answer=UserOut)
def get_user(call: Call):
    """Any signed-in caller may look a user up by name; the email is shown to that user and to
    site administrators only."""
    access.unrestricted(call.caller, "other accounts")
    with _db().session() as s:
        viewer = load_user(s, call.caller)
        user = users.find_user(s, call.path.username)
        if user is None:
            raise ApiError(404, "username", f"no user {call.path.username}")
        return UserOut(**user_out(user, viewer))


def _team_out(team: Team, org_name: str) -> dict:
    return dict(id=team.id, organisation=org_name, name=team.name, created_at=team.created_at)


@operation("GET", "/orgs/{org}/teams", summary="An organisation's teams", tag="teams", scope="read",
           path_params=OrgPath, answer=TeamList)
def list_teams(call: Call):
    """For anyone granted a role on the organisation (and site administrators)."""
    with _db().session() as s:
        _, org = access.organisation(s, call.caller, call.path.org)
        teams = s.scalars(sa.select(Team).where(Team.organisation_id == org.id).order_by(sa.func.lower(Team.name)))
        return TeamList(items=[TeamOut(**_team_out(t, org.name)) for t in teams])


@operation("GET", "/orgs/{org}/teams/{team}", summary="A team and its members", tag="teams", scope="read",
           path_params=TeamPath, answer=TeamWithMembers)
def get_team(call: Call):
    with _db().session() as s:
        _, org = access.organisation(s, call.caller, call.path.org)
        team = s.scalar(sa.select(Team).where(Team.organisation_id == org.id,
                                              sa.func.lower(Team.name) == call.path.team.lower()))
        if team is None:
            raise ApiError(404, "team", f"{org.name} has no team {call.path.team}")
        members = s.scalars(sa.select(User.username).join(TeamMember, TeamMember.user_id == User.id)
                            .where(TeamMember.team_id == team.id).order_by(sa.func.lower(User.username)))
        return TeamWithMembers(**_team_out(team, org.name), members=list(members))
