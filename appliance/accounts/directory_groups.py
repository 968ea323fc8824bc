"""Directory groups mapped to teams and roles (``auth.ldap.group_mappings``), and the sync
that applies them at each directory sign-in.

The format is a list of ``GROUP_DN=TARGET`` entries separated by ``;`` (whitespace and
newlines around entries are ignored), where TARGET is one of

- ``org/team``          membership of a team of the organisation;
- ``org:role``          a role on the organisation;
- ``org/project:role``  a role on one project.

What the mapping manages is exactly what it names: membership of the teams it names, and
the user's own grants on the organisations and projects it names. At each sign-in those
are set to what the user's groups give (the highest role when several groups name one
scope) and everything else is left alone, so an administrator's grant on a scope the
mapping does not name is never touched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import sqlalchemy as sa
from ldap3.core.exceptions import LDAPInvalidDnError
from ldap3.utils.dn import parse_dn
from sqlalchemy import orm

from appliance import audit
from appliance.accounts import organisations
from appliance.config import ConfigError
from appliance.errors import ValidationError
from appliance.models import Membership, Role, Team, TeamMember, User
from appliance.names import check_slug

log = logging.getLogger(__name__)
ACTOR = "ldap"  # who the audit trail says made the changes: the directory, not the user


def normalise_dn(dn: str) -> str:
    """One spelling per DN, so that ``CN=Devs, OU=Groups`` in the mapping matches
    ``cn=devs,ou=groups`` from the directory (attribute types and values compare
    case-insensitively for the usual group attributes)."""
    return ",".join(f"{attr.strip().lower()}={value.strip().lower()}" for attr, value, _ in parse_dn(dn, strip=True))


@dataclass(frozen=True)
class GroupRule:
    group: str  # normalised DN
    organisation: str
    team: str | None = None  # a team membership rule ...
    project: str | None = None  # ... or a grant on the organisation, or on this project
    role: Role | None = None

    @property
    def scope(self) -> tuple[str, str | None]:
        return (self.organisation.lower(), self.project.lower() if self.project else None)


def parse_group_mappings(text: str) -> tuple[GroupRule, ...]:
    """The rules of ``auth.ldap.group_mappings``; a bad entry raises ``ConfigError`` naming it."""
    rules = []
    for entry in (part.strip() for part in text.split(";")):
        if entry:
            rules.append(_parse_entry(entry))
    return tuple(rules)


def _parse_entry(entry: str) -> GroupRule:
    def bad(why: str) -> ConfigError:
        return ConfigError(
            f"auth.ldap.group_mappings: entry {entry!r} {why} "
            "(expected GROUP_DN=org/team, GROUP_DN=org:role or GROUP_DN=org/project:role)"
        )

    # A DN holds '=' itself, a target never does: the last '=' separates them.
    group, sep, target = entry.rpartition("=")
    group, target = group.strip(), target.strip()
    if not sep or not group or not target:
        raise bad("has no '=' between a group DN and a target")
    try:
        group = normalise_dn(group)
    except LDAPInvalidDnError:
        raise bad(f"names {group!r}, which is not a DN") from None
    scope, colon, role_text = target.partition(":")
    org, slash, rest = scope.partition("/")
    try:
        org = check_slug("organisation", org)
        rest = check_slug("name", rest, top_level=False) if slash else None
        if colon:
            return GroupRule(group, org, project=rest, role=Role.parse(role_text))
    except (ValidationError, ValueError) as exc:
        raise bad(f"is not valid: {exc}") from None
    if rest is None:
        raise bad("names an organisation without a role")
    return GroupRule(group, org, team=rest)


def sync(session: orm.Session, user: User, groups: frozenset[str], rules: tuple[GroupRule, ...], *, address: str = "") -> None:
    """Make the teams and grants the rules manage match ``groups`` (normalised DNs)."""
    _sync_teams(session, user, groups, [r for r in rules if r.team], address)
    _sync_grants(session, user, groups, [r for r in rules if r.role is not None], address)


def _sync_teams(session, user, groups, rules, address) -> None:
    teams: dict[tuple[str, str], bool] = {}
    for rule in rules:
        key = (rule.organisation, rule.team)
        teams[key] = teams.get(key, False) or rule.group in groups
    for (org_name, team_name), wanted in teams.items():
        org = organisations.find_organisation(session, org_name)
        if org is None:
            log.warning("group mapping names organisation %r, which does not exist", org_name)
            continue
        team = session.scalar(sa.select(Team).where(Team.organisation_id == org.id, sa.func.lower(Team.name) == team_name.lower()))
        if team is None and wanted:
            team = Team(organisation_id=org.id, name=team_name)
            session.add(team)
            session.flush()
            audit.record(session, "team.created", actor=ACTOR, target=f"{org.name}/{team.name}", organisation=org,
                         address=address, detail="named in auth.ldap.group_mappings")
        if team is None:
            continue
        member = session.get(TeamMember, (team.id, user.id))
        if wanted and member is None:
            session.add(TeamMember(team_id=team.id, user_id=user.id))
            audit.record(session, "team.member_added", actor=ACTOR, target=f"{org.name}/{team.name}", organisation=org,
                         address=address, detail=f"user {user.username} (directory group)")
        elif not wanted and member is not None:
            session.delete(member)
            audit.record(session, "team.member_removed", actor=ACTOR, target=f"{org.name}/{team.name}", organisation=org,
                         address=address, detail=f"user {user.username} (no longer in the directory group)")
    session.flush()


def _sync_grants(session, user, groups, rules, address) -> None:
    wanted: dict[tuple[str, str | None], Role | None] = {}
    names: dict[tuple[str, str | None], GroupRule] = {}
    for rule in rules:
        names.setdefault(rule.scope, rule)
        current = wanted.get(rule.scope)
        if rule.group in groups and (current is None or rule.role > current):
            wanted[rule.scope] = rule.role
        else:
            wanted.setdefault(rule.scope, None)
    for scope_key, role in wanted.items():
        rule = names[scope_key]
        org = organisations.find_organisation(session, rule.organisation)
        project = organisations.find_project(session, org, rule.project) if org is not None and rule.project else None
        if org is None or (rule.project and project is None):
            log.warning("group mapping names %s, which does not exist", "/".join(filter(None, (rule.organisation, rule.project))))
            continue
        where = [Membership.user_id == user.id, Membership.environment.is_(None)]
        where.append(Membership.project_id == project.id if project else Membership.organisation_id == org.id)
        grant = session.scalar(sa.select(Membership).where(*where))
        target = f"{org.name}/{project.name}" if project else org.name
        context = dict(actor=ACTOR, target=target, project=project, organisation=org, address=address)
        if role is not None and grant is None:
            session.add(Membership(user_id=user.id, organisation_id=None if project else org.id,
                                   project_id=project.id if project else None, role=int(role)))
            audit.record(session, "grant.added", **context, detail=f"{role.name.lower()} to user {user.username} (directory group)")
        elif role is not None and grant.role != int(role):
            before = Role(grant.role).name.lower()
            grant.role = int(role)
            audit.record(session, "grant.changed", **context,
                         detail=f"user {user.username}: {before} to {role.name.lower()} (directory group)")
        elif role is None and grant is not None:
            session.delete(grant)
            audit.record(session, "grant.removed", **context,
                         detail=f"{Role(grant.role).name.lower()} of user {user.username} (no longer in a directory group)")
    session.flush()
