"""Site administration at ``/admin``: users, organisations, teams and grants.

Site administrators only (anyone else gets 403; anonymous visitors are sent to sign in).
Every change needs a fresh sign-in (``fresh_login_required``) and writes an audit event in
the transaction that makes it. The one-time password of an invited user is shown once, in
the answer to the invite POST (``no-store``), never put in the session or a URL.
"""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import orm
from wtforms import StringField, TextAreaField
from wtforms.validators import Length

from appliance import audit
from appliance.accounts import admin_users, grants, organisations, teams, users
from appliance.errors import ValidationError
from appliance.models import Organisation, Team, TeamMember, User
from webapp.forms import add_service_error
from webapp.fresh import fresh_login_required
from webapp.grant_forms import ChangeRoleForm, GrantForm, apply_grant_form, change_grant, parse_role, remove_grant, role_choices
from webapp.pipelines import done, prts

bp = Blueprint("admin", __name__, url_prefix="/admin")

NO_STORE = {"Cache-Control": "no-store"}
_strip = [lambda v: v.strip() if isinstance(v, str) else v]
_name_kw = {"autocomplete": "off", "spellcheck": "false", "autocapitalize": "off"}


class InviteForm(FlaskForm):
    username = StringField("Username", filters=_strip, validators=[Length(max=64)], render_kw=_name_kw)
    email = StringField("Email", filters=_strip, validators=[Length(max=254)],
                        render_kw={**_name_kw, "inputmode": "email", "type": "email"})


class OrganisationForm(FlaskForm):
    name = StringField("Name", filters=_strip, validators=[Length(max=100)], render_kw=_name_kw)
    description = TextAreaField("Description", validators=[Length(max=2000)], render_kw={"rows": 2})


class TeamForm(FlaskForm):
    name = StringField("Team name", filters=_strip, validators=[Length(max=100)], render_kw=_name_kw)


class TeamMemberForm(FlaskForm):
    username = StringField("Username", filters=_strip, validators=[Length(max=64)], render_kw=_name_kw)


@bp.before_request
def site_admins_only():
    if not current_user.is_authenticated:
        return current_app.login_manager.unauthorized()
    if not current_user.is_admin:
        abort(403)
    return None


def _actor(session: orm.Session) -> User:
    return session.get(User, current_user.id)


def _record(session: orm.Session, action: str, **kwargs) -> None:
    audit.record(session, action, actor=_actor(session), address=request.remote_addr or "", **kwargs)


def _user(session: orm.Session, username: str) -> User:
    user = users.find_user(session, username)
    if user is None:
        abort(404)
    return user


def _organisation(session: orm.Session, name: str) -> Organisation:
    org = organisations.find_organisation(session, name)
    if org is None:
        abort(404)
    return org


def _team(session: orm.Session, org: Organisation, name: str) -> Team:
    team = teams.find_team(session, org, name)
    if team is None:
        abort(404)
    return team


@bp.get("")
def index():
    return redirect(url_for("admin.users_page"))


# -- users --------------------------------------------------------------------------------


def _users_page(form: InviteForm | None = None, *, invited: User | None = None, password: str | None = None,
                status: int = 200):
    query = request.args.get("q", "")[:100]
    with prts().db.session() as s:
        rows = admin_users.search(s, query)
    body = render_template("admin/users.html", rows=rows, query=query, form=form or InviteForm(formdata=None),
                           invited=invited, password=password, limit=admin_users.SEARCH_LIMIT)
    return body, status, NO_STORE if password else {}


@bp.get("/users")
def users_page():
    return _users_page()


@bp.post("/users")
@fresh_login_required
def invite():
    form = InviteForm()
    if not form.validate_on_submit():
        return _users_page(form, status=422)
    try:
        with prts().db.session() as s:
            user, password = admin_users.invite(s, form.username.data or "", form.email.data or "")
            _record(s, "user.invited", target=f"user {user.username}", detail=f"email={user.email}")
    except ValidationError as exc:
        add_service_error(form, exc)
        return _users_page(form, status=422)
    return _users_page(invited=user, password=password)


@bp.get("/users/<username>")
def user_page(username: str):
    with prts().db.session() as s:
        user = _user(s, username)
        return render_template("admin/user.html", user=user, grants=grants.grants_of_principal(s, user),
                               teams=_teams_of_user(s, user))


def _teams_of_user(session: orm.Session, user: User) -> list[Team]:
    query = (sa.select(Team).join(TeamMember, TeamMember.team_id == Team.id).where(TeamMember.user_id == user.id)
             .options(orm.joinedload(Team.organisation)).order_by(Team.organisation_id, sa.func.lower(Team.name)))
    return list(session.scalars(query))


def _user_change(username: str, change, action: str, message: str):
    """Apply ``change(session, actor, user)`` to the named user, audited; a refusal (a
    ValidationError: yourself, the last administrator) is flashed and the page answers 409."""
    with prts().db.session() as s:
        user = _user(s, username)
        try:
            change(s, _actor(s), user)
        except ValidationError as exc:
            refused = exc.message
        else:
            refused = None
            _record(s, action, target=f"user {user.username}")
    if refused:
        flash(f"Not changed: {refused}.", "error")
        with prts().db.session() as s:
            user = _user(s, username)
            return render_template("admin/user.html", user=user, grants=grants.grants_of_principal(s, user),
                                   teams=_teams_of_user(s, user)), 409
    flash(message.format(username=username), "success")
    return done(url_for("admin.user_page", username=username))


@bp.post("/users/<username>/disable")
@fresh_login_required
def disable_user(username: str):
    return _user_change(username, admin_users.disable, "user.disabled",
                        "{username} is disabled and signed out everywhere.")


@bp.post("/users/<username>/enable")
@fresh_login_required
def enable_user(username: str):
    return _user_change(username, lambda s, _actor, user: admin_users.enable(s, user), "user.enabled",
                        "{username} may sign in again.")


@bp.post("/users/<username>/logout")
@fresh_login_required
def logout_user(username: str):
    return _user_change(username, admin_users.force_logout, "user.logged_out",
                        "{username} is signed out of every session.")


@bp.post("/users/<username>/make-admin")
@fresh_login_required
def make_admin(username: str):
    return _user_change(username, lambda s, actor, user: admin_users.set_admin(s, actor, user, True),
                        "user.admin_granted", "{username} is a site administrator.")


@bp.post("/users/<username>/unmake-admin")
@fresh_login_required
def unmake_admin(username: str):
    return _user_change(username, lambda s, actor, user: admin_users.set_admin(s, actor, user, False),
                        "user.admin_revoked", "{username} is no longer a site administrator.")


# -- organisations ------------------------------------------------------------------------


def _organisations_page(form: OrganisationForm | None = None, status: int = 200):
    with prts().db.session() as s:
        rows = list(s.scalars(sa.select(Organisation).options(orm.selectinload(Organisation.projects),
                                                              orm.selectinload(Organisation.teams))
                              .order_by(sa.func.lower(Organisation.name))))
        return render_template("admin/organisations.html", rows=rows,
                               form=form or OrganisationForm(formdata=None)), status


@bp.get("/organisations")
def organisations_page():
    return _organisations_page()


@bp.post("/organisations")
@fresh_login_required
def create_organisation():
    form = OrganisationForm()
    if not form.validate_on_submit():
        return _organisations_page(form, 422)
    try:
        with prts().db.session() as s:
            org = organisations.create_organisation(s, form.name.data or "", form.description.data or "")
            _record(s, "organisation.created", target=f"organisation {org.name}", organisation=org)
            name = org.name
    except ValidationError as exc:
        add_service_error(form, exc)
        return _organisations_page(form, 422)
    flash(f"Organisation {name} was created.", "success")
    return done(url_for("admin.organisation_page", org=name))


def _grant_scopes(org: Organisation) -> dict[str, object]:
    scopes: dict[str, object] = {"organisation": org}
    scopes.update({f"project:{p.id}": p for p in sorted(org.projects, key=lambda p: p.name.lower())})
    return scopes


def _grant_form(org: Organisation, form: GrantForm | None = None) -> GrantForm:
    form = form or GrantForm(formdata=None)
    form.scope.choices = [("organisation", f"the organisation {org.name}")] + [
        (key, f"the project {p.name}") for key, p in _grant_scopes(org).items() if key != "organisation"]
    form.role.choices = role_choices()
    return form


def _organisation_page(org_name: str, *, grant_form: GrantForm | None = None,
                       team_form: TeamForm | None = None, status: int = 200):
    with prts().db.session() as s:
        org = _organisation(s, org_name)
        project_grants = [g for p in org.projects for g in grants.grants_on_project(s, p)]
        return render_template(
            "admin/organisation.html", org=org, org_teams=teams.teams_of(s, org),
            projects=sorted(org.projects, key=lambda p: p.name.lower()),
            org_grants=grants.grants_on_organisation(s, org), project_grants=project_grants,
            grant_form=_grant_form(org, grant_form), team_form=team_form or TeamForm(formdata=None),
            change_form=ChangeRoleForm(formdata=None), role_choices=role_choices(),
        ), status


@bp.get("/organisations/<org>")
def organisation_page(org: str):
    return _organisation_page(org)


@bp.post("/organisations/<org>/teams")
@fresh_login_required
def create_team(org: str):
    form = TeamForm()
    if not form.validate_on_submit():
        return _organisation_page(org, team_form=form, status=422)
    try:
        with prts().db.session() as s:
            organisation = _organisation(s, org)
            team = teams.create_team(s, organisation, form.name.data or "")
            _record(s, "team.created", target=f"team {organisation.name}/{team.name}", organisation=organisation)
            team_name = team.name
    except ValidationError as exc:
        add_service_error(form, exc)
        return _organisation_page(org, team_form=form, status=422)
    flash(f"Team {team_name} was created.", "success")
    return done(url_for("admin.team_page", org=org, team=team_name))


@bp.post("/organisations/<org>/grants")
@fresh_login_required
def add_grant(org: str):
    form = GrantForm()
    with prts().db.session() as s:
        organisation = _organisation(s, org)
        _grant_form(organisation, form)
    if not form.validate_on_submit():
        return _organisation_page(org, grant_form=form, status=422)
    try:
        with prts().db.session() as s:
            organisation = _organisation(s, org)
            message = apply_grant_form(s, form, _actor(s), organisation, _grant_scopes(organisation))
    except ValidationError as exc:
        add_service_error(form, exc)
        return _organisation_page(org, grant_form=form, status=422)
    flash(message, "success")
    return done(url_for("admin.organisation_page", org=org))


def _membership_in(session: orm.Session, org: Organisation, grant_id: int):
    membership = grants.get_grant_in(session, grant_id)
    if membership is None or grants.organisation_id_of(grants.scope_of(session, membership)) != org.id:
        abort(404)
    return membership


@bp.post("/organisations/<org>/grants/<int:grant_id>")
@fresh_login_required
def change_grant_role(org: str, grant_id: int):
    form = ChangeRoleForm()
    form.role.choices = role_choices()
    if not form.validate_on_submit():
        flash("Choose one of the roles.", "error")
        return _organisation_page(org, status=422)
    with prts().db.session() as s:
        membership = _membership_in(s, _organisation(s, org), grant_id)
        message = change_grant(s, membership, _actor(s), parse_role(form.role.data))
    flash(message, "success")
    return done(url_for("admin.organisation_page", org=org))


@bp.post("/organisations/<org>/grants/<int:grant_id>/remove")
@fresh_login_required
def remove_grant_view(org: str, grant_id: int):
    with prts().db.session() as s:
        membership = _membership_in(s, _organisation(s, org), grant_id)
        message = remove_grant(s, membership, _actor(s))
    flash(message, "success")
    return done(url_for("admin.organisation_page", org=org))


# -- teams --------------------------------------------------------------------------------


def _team_page(org: str, team: str, form: TeamMemberForm | None = None, status: int = 200):
    with prts().db.session() as s:
        organisation = _organisation(s, org)
        row = _team(s, organisation, team)
        return render_template("admin/team.html", org=organisation, team=row, members=teams.members_of(s, row),
                               grants=grants.grants_of_principal(s, row),
                               form=form or TeamMemberForm(formdata=None)), status


@bp.get("/organisations/<org>/teams/<team>")
def team_page(org: str, team: str):
    return _team_page(org, team)


@bp.post("/organisations/<org>/teams/<team>/members")
@fresh_login_required
def add_team_member(org: str, team: str):
    form = TeamMemberForm()
    if not form.validate_on_submit():
        return _team_page(org, team, form, 422)
    with prts().db.session() as s:
        organisation = _organisation(s, org)
        row = _team(s, organisation, team)
        user = users.find_user(s, form.username.data or "")
        if user is not None and teams.add_member(s, row, user):
            _record(s, "team.member_added", target=f"user {user.username} to team {organisation.name}/{row.name}",
                    organisation=organisation)
    if user is None:
        form.username.errors.append(f"There is no user named {form.username.data!r}." if form.username.data
                                    else "Username is required.")
        return _team_page(org, team, form, 422)
    flash(f"{user.username} is a member of {team}.", "success")
    return done(url_for("admin.team_page", org=org, team=team))


@bp.post("/organisations/<org>/teams/<team>/members/<username>/remove")
@fresh_login_required
def remove_team_member(org: str, team: str, username: str):
    with prts().db.session() as s:
        organisation = _organisation(s, org)
        row = _team(s, organisation, team)
        user = _user(s, username)
        if not teams.remove_member(s, row, user):
            abort(404)
        _record(s, "team.member_removed", target=f"user {user.username} from team {organisation.name}/{row.name}",
                organisation=organisation)
    flash(f"{username} is no longer a member of {team}.", "success")
    return done(url_for("admin.team_page", org=org, team=team))


@bp.post("/organisations/<org>/teams/<team>/delete")
@fresh_login_required
def delete_team(org: str, team: str):
    with prts().db.session() as s:
        organisation = _organisation(s, org)
        row = _team(s, organisation, team)
        label = f"team {organisation.name}/{row.name}"
        teams.delete_team(s, row)
        _record(s, "team.deleted", target=label, organisation=organisation)
    flash(f"Team {team} was deleted, with its grants.", "success")
    return done(url_for("admin.organisation_page", org=org))
