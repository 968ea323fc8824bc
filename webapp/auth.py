"""Sign-in, sign-out and password changes for local accounts."""

from __future__ import annotations

import logging
import math
from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from appliance.accounts import identity, ratelimit, users
from appliance.errors import ValidationError
from appliance.models import User
from appliance.models.base import utcnow
from webapp.extensions import login_manager
from webapp.fresh import mark_fresh
from webapp.forms import ChangePasswordForm, LoginForm, add_service_error

bp = Blueprint("auth", __name__)
log = logging.getLogger(__name__)

# One message for every wrong name or password, so a failure never says which part was wrong.
INVALID = "Invalid username or password."


def _appliance():
    return current_app.extensions["prts"]


@login_manager.user_loader
def load_user(session_id: str) -> User | None:
    user_id, _, token = session_id.partition(":")
    if not user_id.isdigit():
        return None
    with _appliance().db.session() as s:
        user = s.get(User, int(user_id))
        if user is None or not user.is_active or user.session_token != token:
            return None
        return user


def _safe_next(target: str | None) -> str | None:
    """Only same-site relative paths: an absolute or scheme-relative URL would be an open redirect."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    return target


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
        address = request.remote_addr or "unknown"
        username = form.username.data.strip()
        with app.db.session() as s:
            until = ratelimit.locked_until(s, limits, username, address)
            user, method = (None, "") if until else identity.authenticate_password(app.config, s, username, form.password.data)
            if until:
                minutes = max(1, math.ceil((until - utcnow()).total_seconds() / 60))
                error = f"Too many failed sign-in attempts. Try again in {minutes} minute{'s' if minutes != 1 else ''}."
                status = 429
                log.warning("sign-in refused: rate limited", extra={"username": username, "address": address})
            elif user is None:
                ratelimit.record_failure(s, username, address)
                error = INVALID
                status = 401
                log.info("sign-in failed", extra={"username": username, "address": address})
            else:
                ratelimit.record_success(s, username)
        if user is not None:
            return complete_login(user, method=method, next_url=request.args.get("next"))
    elif form.is_submitted():
        error = INVALID
        status = 400
    return render_template("auth/login.html", form=form, error=error), status


def complete_login(user: User, *, method: str, next_url: str | None):
    """Sign ``user`` in after any method proved who they are; returns the redirect.
    Every sign-in path (password, LDAP, OIDC, OAuth) ends here."""
    address = request.remote_addr or "unknown"
    session.clear()  # a fresh session at sign-in: nothing set before it survives
    login_user(user)
    mark_fresh()
    log.info("signed in", extra={"username": user.username, "address": address, "method": method})
    _appliance().emit_event("login", actor=user.username)
    if user.must_change_password:
        flash("Choose a new password to replace the one-time password.", "info")
        return redirect(url_for("auth.change_password"))
    return redirect(_safe_next(next_url) or url_for("dashboard.index"))


@bp.route("/logout", methods=["POST"])
def logout():
    logout_user()
    session.clear()
    flash("You have signed out.", "success")
    return redirect(url_for("auth.login"))


@bp.route("/user/password", methods=["GET", "POST"])
@login_required
def change_password():
    form = ChangePasswordForm()
    status = 200
    if form.validate_on_submit():
        try:
            with _appliance().db.session() as s:
                user = s.get(User, current_user.id)
                users.change_password(s, user, form.current_password.data, form.new_password.data)
        except ValidationError as exc:
            add_service_error(form, exc)
            status = 422
        else:
            session.clear()
            login_user(user)  # the session token changed: sign this session in again
            flash("Your password has been changed.", "success")
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

