"""API tokens: the signed-in user's personal access tokens at ``/user/tokens``.

The page lists the user's unrevoked tokens (never the token itself, only its first
characters), creates one, and revokes one. A new token is shown exactly once: in the page
that answers the create POST (a 200 render, with ``Cache-Control: no-store``), never
stored in the session or a flashed cookie, so a later GET cannot show it again.

Creating and revoking a token need a fresh sign-in (``fresh_login_required``): a stolen
session cookie must not be able to mint a long-lived credential. Confirming goes through
``/login/confirm``, which works for accounts without a local password (LDAP, single sign-on)
too and counts wrong passwords toward the sign-in lockout.
"""

from __future__ import annotations

import logging

from flask import Blueprint, abort, flash, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from sqlalchemy import orm
from wtforms import IntegerField, SelectField, StringField
from wtforms.validators import Length, NumberRange, Optional

from appliance import audit
from appliance.accounts import organisations, policy, tokens
from appliance.errors import NotFound, ValidationError
from appliance.models import Project, User
from appliance.models.base import utcnow
from webapp.forms import add_service_error
from webapp.fresh import fresh_login_required, is_fresh
from webapp.pipelines import done, prts

log = logging.getLogger(__name__)

bp = Blueprint("tokens", __name__)

SCOPE_LABELS = {
    "read": "read — clone and fetch",
    "write": "write — also push",
    "admin": "admin — everything your account may do",
}


class _DaysField(IntegerField):
    """An optional whole number of days whose parse error names the field."""

    def process_formdata(self, valuelist):
        try:
            super().process_formdata(valuelist)
        except ValueError:
            raise ValueError(f"{self.label.text} must be a whole number of days.") from None


class CreateTokenForm(FlaskForm):
    name = StringField("Name", filters=[lambda v: v.strip() if isinstance(v, str) else v],
                       validators=[Length(max=100, message="Name must be at most 100 characters.")],
                       render_kw={"autocomplete": "off", "spellcheck": "false"})
    scope = SelectField("Scope", validate_choice=False)
    project = StringField("Project (optional)", filters=[lambda v: v.strip() if isinstance(v, str) else v],
                          render_kw={"autocomplete": "off", "spellcheck": "false", "autocapitalize": "off",
                                     "placeholder": "all my projects"})
    expires = _DaysField(
        "Expires after (days, optional)",
        validators=[Optional(), NumberRange(min=1, max=tokens.MAX_DAYS,
                                            message=f"Expires after must be between 1 and {tokens.MAX_DAYS} days.")],
        render_kw={"inputmode": "numeric", "min": 1, "max": tokens.MAX_DAYS, "placeholder": "never"})


def _scopes_for(user: User) -> list[str]:
    # Only site administrators may hold admin tokens, so only they are offered one.
    return [s for s in SCOPE_LABELS if s != "admin" or user.is_admin]


def _form(user: User, formdata=None) -> CreateTokenForm:
    form = CreateTokenForm() if formdata is None else CreateTokenForm(formdata=formdata)
    form.scope.choices = [(s, SCOPE_LABELS[s]) for s in _scopes_for(user)]
    if form.scope.data is None:
        form.scope.data = "read"
    return form


def _page(session: orm.Session, user: User, form: CreateTokenForm, *, created: tuple | None = None,
          status: int = 200):
    # The context names follow webapp/templates/user/tokens.html.
    project_paths = {p.id: p.path for p in policy.visible_projects(session, user)}
    new_row, new_token = created if created else (None, None)
    response = render_template("user/tokens.html", form=form, rows=tokens.user_tokens(session, user),
                               project_paths=project_paths, now=utcnow(), new_token=new_token, new_row=new_row,
                               max_days=tokens.MAX_DAYS, fresh=is_fresh())
    headers = {"Cache-Control": "no-store"} if created else {}
    return response, status, headers


def _current_user(session: orm.Session) -> User:
    user = session.get(User, current_user.id)
    if user is None:  # deleted while signed in
        abort(404)
    return user


@bp.get("/user/tokens")
@login_required
def index():
    with prts().db.session() as s:
        user = _current_user(s)
        return _page(s, user, _form(user, formdata=None))


def _project(session: orm.Session, user: User, path: str) -> Project | None:
    if not path:
        return None
    try:
        project = organisations.get_project(session, path)
    except ValidationError:
        raise ValidationError("project", f"{path!r} is not of the form ORG/NAME") from None
    except NotFound:
        project = None
    if project is None or not policy.can(session, user, "repository.read", project):
        # The same words for a missing and a hidden project: the form must not confirm either.
        raise ValidationError("project", f"{path!r} is not a project you can see")
    return project


@bp.post("/user/tokens")
@fresh_login_required
def create():
    app = prts()
    with app.db.session() as s:
        user = _current_user(s)
        form = _form(user, formdata=request.form)
        created = None
        if form.validate_on_submit():
            if not form.name.data:
                form.name.errors.append("Name is required: say what the token is for, e.g. laptop or CI.")
            if form.scope.data not in _scopes_for(user):
                form.scope.errors.append(
                    "Only site administrators may create admin tokens." if form.scope.data == "admin"
                    else f"Scope must be one of {', '.join(_scopes_for(user))}.")
            project = None
            try:
                project = _project(s, user, form.project.data or "")
            except ValidationError as exc:
                form.project.errors.append(exc.message[0].upper() + exc.message[1:] + ".")
            if not form.errors:
                try:
                    with s.begin_nested():
                        token, text = tokens.create_token(s, user, form.name.data, form.scope.data,
                                                          project=project, expires_in_days=form.expires.data)
                except ValidationError as exc:
                    add_service_error(form, exc)
                else:
                    created = (token, text)
        if created is None:
            return _page(s, user, form, status=422 if form.is_submitted() else 400)
        token, text = created
        log.info("token created", extra={"username": user.username, "token_id": token.id, "scope": token.scope})
        expiry = f" expires={token.expires_at:%Y-%m-%d}" if token.expires_at else ""
        audit.record(s, "token.created", actor=user, target=f"token {token.id} {token.name}", project=project,
                     address=request.remote_addr or "", detail=f"scope={token.scope}{expiry}")
        # A fresh, empty form under the new token: the page is the answer to the POST.
        return _page(s, user, _form(user, formdata=None), created=(token, text))


@bp.post("/user/tokens/<int:token_id>/revoke")
@fresh_login_required
def revoke(token_id: int):
    with prts().db.session() as s:
        user = _current_user(s)
        try:
            token = tokens.revoke(s, user, token_id)
        except NotFound:
            abort(404)  # also for another user's token: its existence is not confirmed
        name = token.name
        audit.record(s, "token.revoked", actor=user, target=f"token {token_id} {name}",
                     address=request.remote_addr or "")
    log.info("token revoked", extra={"username": current_user.username, "token_id": token_id})
    flash(f"The token {name} was revoked; it no longer works.", "success")
    return done(url_for("tokens.index"))
