"""Sign-in (password, then the second factor when it is on), sign-out, confirming the
password again before sensitive changes, and password changes.

A signed-in browser holds, in its signed session cookie, flask-login's id
(``<user id>:<session token>``) and the id of its server-side ``UserSession`` row
(``SESSION_ID_KEY``). The user loader accepts the cookie only while that row is live and the
token is still the user's (``appliance.accounts.sessions.resume``), so sign-out, timeouts
and an administrator's force logout take effect on the very next request.
"""

from __future__ import annotations

import logging
import math
import time
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from werkzeug.routing import BuildError

from appliance import audit
from appliance.accounts import identity, ratelimit, sessions, totp, users
from appliance.errors import ValidationError
from appliance.models import ExternalIdentity, User
from appliance.models.base import utcnow
from appliance.pipelines.secrets import SecretBox, SecretCorruptError, SecretKeyError
from webapp.extensions import login_manager
from webapp.forms import ChangePasswordForm, ConfirmPasswordForm, LoginForm, TotpCodeForm, add_service_error
from webapp.fresh import mark_fresh

bp = Blueprint("auth", __name__)
log = logging.getLogger(__name__)

# One message for every wrong name or password, so a failure never says which part was wrong.
INVALID = "Invalid username or password."
SESSION_ID_KEY = "prts_session_id"
# Between a correct password and the second factor the browser holds only this marker: it
# signs nobody in, and it expires soon.
PENDING_KEY = "prts_second_factor"
PENDING_SECONDS = 5 * 60


def _appliance():
    return current_app.extensions["prts"]


def _address() -> str:
    return request.remote_addr or "unknown"


@login_manager.user_loader
def load_user(cookie_id: str) -> User | None:
    user_id, _, token = cookie_id.partition(":")
    session_id = session.get(SESSION_ID_KEY)
    if not user_id.isdigit() or not isinstance(session_id, str):
        return None
    app = _appliance()
    with app.db.session() as s:
        found = sessions.resume(s, sessions.SessionLimits.from_config(app.config), int(user_id), token, session_id)
    return found[0] if found else None


def _safe_next(target: str | None) -> str | None:
    """Only same-site relative paths: an absolute or scheme-relative URL would be an open redirect."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    return target


def _lockout_message(until) -> str:
    minutes = max(1, math.ceil((until - utcnow()).total_seconds() / 60))
    return f"Too many failed sign-in attempts. Try again in {minutes} minute{'s' if minutes != 1 else ''}."


def _failed(s, username: str, reason: str, *, count: bool = True) -> None:
    """A refused sign-in step: counted toward the lockout (unless it was the lockout itself) and audited."""
    if count:
        ratelimit.record_failure(s, username, _address())
    audit.record(s, "login.failed", actor=username, address=_address(), outcome="failure", detail=reason)
    log.info("sign-in refused: %s", reason, extra={"username": username, "address": _address()})


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.index"))
    form = LoginForm()
    error = None
    status = 200
    if form.validate_on_submit():
        app = _appliance()
        limits = ratelimit.LoginLimits.from_config(app.config)
        username = form.username.data.strip()
        with app.db.session() as s:
            until = ratelimit.locked_until(s, limits, username, _address())
            user, method = (None, "") if until else identity.authenticate_password(
                app.config, s, username, form.password.data, address=_address())
            if until:
                error, status = _lockout_message(until), 429
                _failed(s, username, "locked", count=False)
            elif user is None:
                error, status = INVALID, 401
                _failed(s, username, "wrong password")
        if user is not None:
            return complete_login(user, method=method, next_url=request.args.get("next"))
    elif form.is_submitted():
        error = INVALID
        status = 400
    return render_template("auth/login.html", form=form, error=error), status


def complete_login(user: User, *, method: str, next_url: str | None):
    """Sign ``user`` in after any method proved who they are; returns the redirect.
    Every sign-in path (password, LDAP, OIDC, OAuth) ends here. With a second factor on,
    the browser gets only a short-lived marker and is sent to the code page instead."""
    _end_browser_session()
    if totp.is_enabled(user):
        session[PENDING_KEY] = {"user": user.id, "token": user.session_token, "method": method,
                                "next": _safe_next(next_url) or "", "at": time.time()}
        return redirect(url_for("auth.second_factor"))
    return _sign_in(user, method=method, next_url=next_url)


def _end_browser_session() -> None:
    """Whatever this browser held before (a signed-in session, a pending second factor)
    ends: nothing set before a sign-in survives it, and its server-side row is revoked."""
    previous = session.get(SESSION_ID_KEY)
    if isinstance(previous, str):
        with _appliance().db.session() as s:
            sessions.end(s, previous)
    session.clear()


def _attach(user: User, session_id: str) -> None:
    """Make this browser's cookie carry ``user`` and the server-side session ``session_id``."""
    login_user(user)
    session[SESSION_ID_KEY] = session_id


def _sign_in(user: User, *, method: str, next_url: str | None):
    with _appliance().db.session() as s:
        row = sessions.start(s, user, method=method, address=_address(), user_agent=request.user_agent.string)
        ratelimit.record_success(s, user.username)
        audit.record(s, "login", actor=user, address=_address(), detail=f"method={method}")
        session_id = row.id
    session.clear()
    _attach(user, session_id)
    mark_fresh()
    log.info("signed in", extra={"username": user.username, "address": _address(), "method": method})
    if user.must_change_password:
        flash("Choose a new password to replace the one-time password.", "info")
        return redirect(url_for("auth.change_password"))
    return redirect(_safe_next(next_url) or url_for("dashboard.index"))


def _pending() -> dict | None:
    """The pending second factor, while it has not expired."""
    pending = session.get(PENDING_KEY)
    if not isinstance(pending, dict) or not isinstance(pending.get("at"), (int, float)):
        return None
    if not 0 <= time.time() - pending["at"] <= PENDING_SECONDS:
        return None
    return pending


@bp.route("/login/code", methods=["GET", "POST"])
def second_factor():
    pending = _pending()
    if pending is None:
        session.pop(PENDING_KEY, None)
        flash("Sign in again: the sign-in waiting for a code expired or was never started.", "info")
        return redirect(url_for("auth.login"))
    form = TotpCodeForm()
    error, status, user = None, 200, None
    if form.validate_on_submit():
        app = _appliance()
        limits = ratelimit.LoginLimits.from_config(app.config)
        with app.db.session() as s:
            # Locked so two requests racing with one code cannot both use its time step.
            found = s.scalar(sa.select(User).where(User.id == pending["user"]).with_for_update())
            if found is None or not found.is_active or found.session_token != pending["token"] \
                    or not totp.is_enabled(found):
                session.pop(PENDING_KEY, None)
                flash("Sign in again: the account changed while it waited for the code.", "info")
                return redirect(url_for("auth.login"))
            until = ratelimit.locked_until(s, limits, found.username, _address())
            if until:
                error, status = _lockout_message(until), 429
                _failed(s, found.username, "locked", count=False)
            else:
                try:
                    accepted = totp.verify(SecretBox.from_config(app.config), found, form.code.data)
                except (SecretKeyError, SecretCorruptError) as exc:
                    log.error("cannot check the second factor of %s: %s", found.username, exc)
                    accepted = False
                    error, status = ("The code cannot be checked on this server. An administrator finds the "
                                     "reason in the server log."), 503
                if accepted:
                    user = found
                elif status != 503:
                    error, status = "That code is not valid. Enter the current code from your authenticator app.", 401
                    _failed(s, found.username, "wrong TOTP code")
        if user is not None:
            return _sign_in(user, method=pending["method"], next_url=pending["next"])
    elif form.is_submitted():
        error, status = "Enter the 6-digit code from your authenticator app.", 400
    return render_template("auth/second_factor.html", form=form, error=error), status


@bp.route("/logout", methods=["POST"])
def logout():
    if current_user.is_authenticated:
        with _appliance().db.session() as s:
            sessions.end(s, session.get(SESSION_ID_KEY, ""))
            audit.record(s, "logout", actor=current_user._get_current_object(), address=_address())
    logout_user()
    session.clear()
    flash("You have signed out.", "success")
    return redirect(url_for("auth.login"))


_PROVIDER_LABELS = {"github": "GitHub", "gitlab": "GitLab"}


def _sso_restarts(s, user: User, next_url: str) -> list[tuple[str, str]]:
    """(label, URL) of the single sign-on providers that can confirm this account, as far as
    the sign-in endpoints exist in this appliance."""
    links = []
    providers = s.scalars(sa.select(ExternalIdentity.provider).where(
        ExternalIdentity.user_id == user.id, ExternalIdentity.provider != "ldap").order_by(ExternalIdentity.provider))
    for provider in providers:
        kind, _, name = provider.partition(":")  # "oidc:<name>", "github", "gitlab"
        try:
            links.append((name or _PROVIDER_LABELS.get(kind, kind), url_for("sso.start", provider=kind, next=next_url)))
        except BuildError:
            continue
    return links


@bp.route("/login/confirm", methods=["GET", "POST"])
@login_required
def reauthenticate():
    """Enter the password again; afterwards ``fresh_login_required`` views open for
    ``auth.fresh_minutes``. Accounts without a password confirm through their provider."""
    app = _appliance()
    next_url = _safe_next(request.args.get("next")) or url_for("dashboard.index")
    form = ConfirmPasswordForm()
    error, status, confirmed = None, 200, False
    with app.db.session() as s:
        user = s.get(User, current_user.id)
        has_password = user.password_hash is not None or s.scalar(sa.select(ExternalIdentity.id).where(
            ExternalIdentity.user_id == user.id, ExternalIdentity.provider == "ldap").limit(1)) is not None
        restarts = [] if has_password else _sso_restarts(s, user, next_url)
        if has_password and form.validate_on_submit():
            until = ratelimit.locked_until(s, ratelimit.LoginLimits.from_config(app.config), user.username, _address())
            proved = None
            if until:
                error, status = _lockout_message(until), 429
                _failed(s, user.username, "locked", count=False)
            else:
                proved, _ = identity.authenticate_password(app.config, s, user.username, form.password.data,
                                                         address=_address())
            if proved is not None and proved.id == user.id:
                confirmed = True
                sessions.reauthenticated(s, session.get(SESSION_ID_KEY, ""))
                audit.record(s, "login.confirmed", actor=user, address=_address())
            elif not until:
                error, status = "That is not your password.", 401
                _failed(s, user.username, "wrong password when confirming")
        elif has_password and form.is_submitted():
            error, status = "Password is required.", 400
    if confirmed:
        mark_fresh()
        return redirect(next_url)
    return render_template("auth/confirm.html", form=form, error=error, has_password=has_password,
                           restarts=restarts, next_url=next_url, fresh_minutes=app.config.auth.fresh_minutes), status


@bp.route("/user/password", methods=["GET", "POST"])
@login_required
def change_password():
    form = ChangePasswordForm()
    status = 200
    if form.validate_on_submit():
        session_id = session.get(SESSION_ID_KEY, "")
        try:
            with _appliance().db.session() as s:
                user = s.get(User, current_user.id)
                users.change_password(s, user, form.current_password.data, form.new_password.data)
                # The new session token already refuses the other browsers' cookies; ending
                # their rows keeps the sessions list truthful.
                sessions.revoke_others(s, user, session_id)
                audit.record(s, "password.changed", actor=user, address=_address())
        except ValidationError as exc:
            add_service_error(form, exc)
            status = 422
        else:
            _attach(user, session_id)  # the session token changed: carry the new one
            mark_fresh()
            flash("Your password has been changed. Your other sessions were signed out.", "success")
            return redirect(url_for("dashboard.index"))
    elif form.is_submitted():
        status = 422
    return render_template("auth/password.html", form=form), status


@bp.before_app_request
def require_password_change():
    """A one-time password opens only the page that replaces it."""
    if (
        current_user.is_authenticated
        and current_user.must_change_password
        and request.endpoint not in ("auth.change_password", "auth.logout", "static")
        and not (request.endpoint or "").startswith("ops.")
    ):
        return redirect(url_for("auth.change_password"))
    return None
