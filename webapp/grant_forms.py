"""The grant forms shared by the admin organisation page and a project's Members tab:
parse a form into (principal, scope, role), check the granter's ceiling, write the grant
and its audit event in the caller's transaction.
"""

from __future__ import annotations

from flask import request
from flask_wtf import FlaskForm
from sqlalchemy import orm
from wtforms import SelectField, StringField
from wtforms.validators import Length

from appliance import audit
from appliance.accounts import grants, teams, users
from appliance.accounts.policy import EnvironmentRef, Resource
from appliance.errors import PermissionDenied, ValidationError
from appliance.models import Membership, Organisation, Project, Role, User

ROLE_LABELS = {
    Role.VIEWER: "Viewer — read",
    Role.DEVELOPER: "Developer — also run pipelines, push, deploy",
    Role.MAINTAINER: "Maintainer — also settings, variables, members",
    Role.ADMIN: "Admin — everything on the scope",
}

_strip = [lambda v: v.strip() if isinstance(v, str) else v]


def role_choices(top: Role = Role.ADMIN) -> list[tuple[str, str]]:
    return [(role.name.lower(), ROLE_LABELS[role]) for role in Role if role <= top]


class GrantForm(FlaskForm):
    principal_kind = SelectField("Grant to", choices=[("user", "A user"), ("team", "A team")])
    principal = StringField("User or team name", filters=_strip, validators=[Length(max=100)],
                            render_kw={"autocomplete": "off", "spellcheck": "false", "autocapitalize": "off"})
    scope = SelectField("On")
    environment = StringField("Environment (optional)", filters=_strip, validators=[Length(max=100)],
                              render_kw={"autocomplete": "off", "spellcheck": "false", "autocapitalize": "off",
                                         "placeholder": "the whole project"})
    role = SelectField("Role")


class ChangeRoleForm(FlaskForm):
    role = SelectField("Role")


def parse_role(text: str | None) -> Role:
    try:
        return Role.parse(text or "")
    except ValueError as exc:
        raise ValidationError("role", str(exc)) from None


def _principal(session: orm.Session, form: GrantForm, org: Organisation):
    name = form.principal.data or ""
    if not name:
        raise ValidationError("principal", "is required")
    if form.principal_kind.data == "team":
        team = teams.find_team(session, org, name)
        if team is None:
            raise ValidationError("principal", f"{org.name} has no team named {name!r}")
        return team
    user = users.find_user(session, name)
    if user is None:
        raise ValidationError("principal", f"there is no user named {name!r}")
    return user


def _scope(form: GrantForm, scopes: dict[str, Resource]) -> Resource:
    scope = scopes.get(form.scope.data or "")
    if scope is None:
        raise ValidationError("scope", "is not one of the choices")
    if form.environment.data:
        if not isinstance(scope, Project):
            raise ValidationError("environment", "is only for a grant on a project")
        return EnvironmentRef(scope, grants.check_environment(form.environment.data))
    return scope


def _audit_scope(scope: Resource) -> dict:
    if isinstance(scope, Organisation):
        return {"organisation": scope}
    return {"project": scope.project if isinstance(scope, EnvironmentRef) else scope}


def record_grant_event(session: orm.Session, action: str, actor: User, principal, scope: Resource, *,
                       role: Role | None, outcome: str = "success", detail: str = "") -> None:
    target = f"{grants.principal_label(principal)} on {grants.scope_label(scope)}"
    detail = detail or (f"role={role.name.lower()}" if role is not None else "")
    audit.record(session, action, actor=actor, target=target, address=request.remote_addr or "",
                 outcome=outcome, detail=detail, **_audit_scope(scope))


def apply_grant_form(session: orm.Session, form: GrantForm, actor: User, org: Organisation,
                     scopes: dict[str, Resource]) -> str:
    """Grant what the form says; returns a sentence for the flash. Raises ValidationError
    (naming the form field) or PermissionDenied (above the actor's own role, audited)."""
    role = parse_role(form.role.data)
    principal = _principal(session, form, org)
    scope = _scope(form, scopes)
    existing = grants.find_grant(session, principal, scope)
    current = Role(existing.role) if existing is not None else None
    try:
        grants.check_within_own_role(session, actor, scope, role, current)
    except PermissionDenied as exc:
        record_grant_event(session, "grant.added", actor, principal, scope, role=role, outcome="denied",
                           detail=str(exc))
        raise
    grants.set_grant(session, principal, scope, role)
    action = "grant.changed" if existing is not None else "grant.added"
    record_grant_event(session, action, actor, principal, scope, role=role,
                       detail=f"role={role.name.lower()}" + (f" (was {current.name.lower()})" if current else ""))
    return f"{grants.principal_label(principal).capitalize()} is {role.name.lower()} on {grants.scope_label(scope)}."


def change_grant(session: orm.Session, membership: Membership, actor: User, role: Role) -> str:
    principal, scope = grants.principal_of(session, membership), grants.scope_of(session, membership)
    current = Role(membership.role)
    try:
        grants.check_within_own_role(session, actor, scope, role, current)
    except PermissionDenied as exc:
        record_grant_event(session, "grant.changed", actor, principal, scope, role=role, outcome="denied",
                           detail=str(exc))
        raise
    grants.set_grant(session, principal, scope, role)
    record_grant_event(session, "grant.changed", actor, principal, scope, role=role,
                       detail=f"role={role.name.lower()} (was {current.name.lower()})")
    return f"{grants.principal_label(principal).capitalize()} is {role.name.lower()} on {grants.scope_label(scope)}."


def remove_grant(session: orm.Session, membership: Membership, actor: User) -> str:
    principal, scope = grants.principal_of(session, membership), grants.scope_of(session, membership)
    current = Role(membership.role)
    try:
        grants.check_within_own_role(session, actor, scope, current, current)
    except PermissionDenied as exc:
        record_grant_event(session, "grant.removed", actor, principal, scope, role=current, outcome="denied",
                           detail=str(exc))
        raise
    grants.remove_grant(session, membership)
    record_grant_event(session, "grant.removed", actor, principal, scope, role=current)
    return f"{grants.principal_label(principal).capitalize()} no longer has a role on {grants.scope_label(scope)}."
