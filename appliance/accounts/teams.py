"""Teams: named groups of users inside one organisation, to grant roles to at once."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.exc import IntegrityError

from appliance.errors import ValidationError
from appliance.models import Organisation, Team, TeamMember, User
from appliance.names import check_slug


def find_team(session: orm.Session, org: Organisation, name: str) -> Team | None:
    return session.scalar(
        sa.select(Team).where(Team.organisation_id == org.id, sa.func.lower(Team.name) == name.strip().lower())
    )


def teams_of(session: orm.Session, org: Organisation) -> list[Team]:
    return list(session.scalars(sa.select(Team).where(Team.organisation_id == org.id).order_by(sa.func.lower(Team.name))))


def create_team(session: orm.Session, org: Organisation, name: str) -> Team:
    name = check_slug("name", name, top_level=False)
    if find_team(session, org, name) is not None:
        raise ValidationError("name", f"{org.name} already has a team named {name!r}")
    team = Team(organisation_id=org.id, name=name)
    try:
        with session.begin_nested():  # a concurrent create of the same name loses here, cleanly
            session.add(team)
            session.flush()
    except IntegrityError:
        raise ValidationError("name", f"{org.name} already has a team named {name!r}") from None
    return team


def delete_team(session: orm.Session, team: Team) -> None:
    """Delete the team; its memberships and the grants made to it go with it (ON DELETE CASCADE)."""
    session.execute(sa.delete(Team).where(Team.id == team.id))
    session.expunge(team)


def members_of(session: orm.Session, team: Team) -> list[User]:
    query = (sa.select(User).join(TeamMember, TeamMember.user_id == User.id)
             .where(TeamMember.team_id == team.id).order_by(sa.func.lower(User.username)))
    return list(session.scalars(query))


def is_member(session: orm.Session, team: Team, user: User) -> bool:
    return session.get(TeamMember, (team.id, user.id)) is not None


def add_member(session: orm.Session, team: Team, user: User) -> bool:
    """Add ``user`` to ``team``; False when they were a member already."""
    if is_member(session, team, user):
        return False
    session.add(TeamMember(team_id=team.id, user_id=user.id))
    session.flush()
    return True


def remove_member(session: orm.Session, team: Team, user: User) -> bool:
    """Remove ``user`` from ``team``; False when they were not a member."""
    row = session.get(TeamMember, (team.id, user.id))
    if row is None:
        return False
    session.delete(row)
    session.flush()
    return True
