"""The signed-in user's security page (``/user/security``): password, two-factor
authentication, and the browsers signed in to the account.

Signing a session out needs only the session: it can only take access away. Turning the
second factor on or off needs a fresh sign-in (``fresh_login_required``), and turning it off
a current code as well, so a stolen session cookie can do neither.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, logout_user
from sqlalchemy import orm

from appliance import audit
from appliance.accounts import ratelimit, sessions, totp
from appliance.errors import NotFound, ValidationError
from appliance.models import User
from appliance.pipelines.secrets import SecretBox, SecretCorruptError, SecretKeyError
from webapp.auth import SESSION_ID_KEY
from webapp.forms import TotpCodeForm, add_service_error
from webapp.fresh import fresh_login_required
from webapp.pipelines import done, prts

bp = Blueprint("account", __name__, url_prefix="/user")
log = logging.getLogger(__name__)

KEY_PROBLEM = ("Two-factor authentication cannot be changed: the appliance's secrets key is not usable. "
               "An administrator finds the reason in the server log.")

# (marker in the User-Agent, name shown), most specific first: Edge and Chrome both say
# "Safari", Edge also says "Chrome".
_BROWSERS = (("Edg/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"), ("Chrome/", "Chrome"),
             ("Chromium/", "Chromium"), ("Safari/", "Safari"), ("curl/", "curl"), ("python-requests", "Python"))
_SYSTEMS = (("Android", "Android"), ("iPhone", "iOS"), ("iPad", "iPadOS"), ("Windows", "Windows"),
            ("Mac OS X", "macOS"), ("CrOS", "ChromeOS"), ("Linux", "Linux"))


def describe_agent(user_agent: str) -> str:
    """"Firefox on Linux" from a User-Agent header; good enough to recognise one's own browsers."""
    browser = next((name for marker, name in _BROWSERS if marker in user_agent), None)
    system = next((name for marker, name in _SYSTEMS if marker in user_agent), None)
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or "Unknown browser"


def _me(s: orm.Session, *, lock: bool = False) -> User:
    query = sa.select(User).where(User.id == current_user.id)
    user = s.scalar(query.with_for_update() if lock else query)
    if user is None:  # deleted while signed in
        abort(404)
    return user


def _address() -> str:
    return request.remote_addr or "unknown"


def _security_page(s: orm.Session, user: User, *, disable_form: TotpCodeForm | None = None, status: int = 200):
    app = prts()
    limits = sessions.SessionLimits.from_config(app.config)
    current_id = session.get(SESSION_ID_KEY)
    rows = [
        {"handle": sessions.handle(row), "current": row.id == current_id, "browser": describe_agent(row.user_agent),
         "user_agent": row.user_agent, "address": row.address, "method": row.method, "created_at": row.created_at,
         "last_seen_at": row.last_seen_at, "expires_at": limits.expires_at(row)}
        for row in sessions.active_sessions(s, limits, user)
    ]
    return render_template(
        "user/security.html", user=user, sessions=rows, totp_enabled=totp.is_enabled(user),
        totp_enrolling=user.totp_secret_ciphertext is not None and not totp.is_enabled(user),
        disable_form=disable_form or TotpCodeForm(formdata=None), has_password=user.password_hash is not None,
        idle_minutes=app.config.auth.session_idle_minutes, max_hours=app.config.auth.session_max_hours,
    ), status


@bp.get("/security")
@login_required
def security():
    with prts().db.session() as s:
        return _security_page(s, _me(s))


# -- sessions -----------------------------------------------------------------------------


@bp.post("/sessions/<session_handle>/revoke")
@login_required
def revoke_session(session_handle: str):
    with prts().db.session() as s:
        user = _me(s)
        try:
            row = sessions.revoke(s, user, session_handle)
        except NotFound:
            abort(404)  # another user's session, an ended one, or made up: all look alike
        audit.record(s, "session.revoked", actor=user, target=f"session {session_handle}", address=_address(),
                     detail=f"{describe_agent(row.user_agent)} from {row.address}")
        was_current = row.id == session.get(SESSION_ID_KEY)
    if was_current:
        logout_user()
        session.clear()
        flash("This browser was signed out.", "success")
        return done(url_for("auth.login"))
    flash(f"The session of {describe_agent(row.user_agent)} from {row.address} was signed out.", "success")
    return done(url_for("account.security"))


@bp.post("/sessions/revoke-others")
@login_required
def revoke_other_sessions():
    with prts().db.session() as s:
        user = _me(s)
        count = sessions.revoke_others(s, user, session.get(SESSION_ID_KEY, ""))
        audit.record(s, "session.revoked", actor=user, target="every other session", address=_address(),
                     detail=f"{count} signed out")
    flash(f"Signed out {count} other session{'s' if count != 1 else ''}." if count else
          "There were no other sessions to sign out.", "success")
    return done(url_for("account.security"))


# -- two-factor authentication ------------------------------------------------------------


@bp.post("/totp/setup")
@fresh_login_required
def start_totp():
    with prts().db.session() as s:
        user = _me(s, lock=True)
        if totp.is_enabled(user):
            flash("Two-factor authentication is already on.", "info")
            return done(url_for("account.security"))
        try:
            totp.begin_enrolment(SecretBox.from_config(prts().config), user)
        except SecretKeyError as exc:
            log.error("cannot store a TOTP secret: %s", exc)
            flash(KEY_PROBLEM, "error")
            return done(url_for("account.security"))
        audit.record(s, "totp.enrolment_started", actor=user, address=_address())
    return done(url_for("account.totp_setup"))


def _setup_page(user: User, secret: str, form: TotpCodeForm, status: int = 200):
    # The secret is on this page only: never cached, by the browser or anything between.
    page = render_template("user/totp_setup.html", secret=secret, form=form,
                           uri=totp.provisioning_uri(secret, user.username))
    return page, status, {"Cache-Control": "no-store"}


@bp.get("/totp/setup")
@fresh_login_required
def totp_setup():
    with prts().db.session() as s:
        user = _me(s)
        try:
            secret = totp.enrolment_secret(SecretBox.from_config(prts().config), user)
        except (SecretKeyError, SecretCorruptError) as exc:
            log.error("cannot read the TOTP secret of %s: %s", user.username, exc)
            flash(KEY_PROBLEM, "error")
            return redirect(url_for("account.security"))
        if secret is None:
            return redirect(url_for("account.security"))
        return _setup_page(user, secret, TotpCodeForm(formdata=None))


@bp.post("/totp/confirm")
@fresh_login_required
def confirm_totp():
    form = TotpCodeForm()
    box = SecretBox.from_config(prts().config)
    with prts().db.session() as s:
        user = _me(s, lock=True)
        try:
            if form.validate_on_submit():
                try:
                    totp.confirm_enrolment(box, user, form.code.data)
                except ValidationError as exc:
                    add_service_error(form, exc)
            secret = totp.enrolment_secret(box, user) if form.errors else None
        except (SecretKeyError, SecretCorruptError) as exc:
            log.error("cannot read the TOTP secret of %s: %s", user.username, exc)
            flash(KEY_PROBLEM, "error")
            return redirect(url_for("account.security"))
        if form.errors:
            if secret is None:  # the enrolment was cancelled or finished elsewhere meanwhile
                return redirect(url_for("account.security"))
            form.code.data = ""
            return _setup_page(user, secret, form, 422)
        audit.record(s, "totp.enabled", actor=user, address=_address())
    flash("Two-factor authentication is on. Sign-in now asks for a code from your app.", "success")
    return redirect(url_for("account.security"))


@bp.post("/totp/cancel")
@login_required
def cancel_totp():
    with prts().db.session() as s:
        user = _me(s, lock=True)
        if user.totp_secret_ciphertext is not None and not totp.is_enabled(user):
            totp.clear(user)
            audit.record(s, "totp.enrolment_cancelled", actor=user, address=_address())
    return done(url_for("account.security"))


@bp.post("/totp/disable")
@fresh_login_required
def disable_totp():
    app = prts()
    form = TotpCodeForm()
    with app.db.session() as s:
        user = _me(s, lock=True)
        # Wrong codes count toward the sign-in lockout: a stolen, freshly confirmed session
        # must not be able to try codes until one fits.
        until = ratelimit.locked_until(s, ratelimit.LoginLimits.from_config(app.config), user.username, _address())
        if until:
            form.form_errors.append("Too many wrong codes or passwords. Try again later.")
        elif form.validate_on_submit():
            try:
                totp.disable(SecretBox.from_config(app.config), user, form.code.data)
            except ValidationError as exc:
                add_service_error(form, exc)
                ratelimit.record_failure(s, user.username, _address())
                audit.record(s, "totp.disabled", actor=user, address=_address(), outcome="failure",
                             detail=exc.message)
            except (SecretKeyError, SecretCorruptError) as exc:
                log.error("cannot read the TOTP secret of %s: %s", user.username, exc)
                form.form_errors.append(KEY_PROBLEM)
        if form.errors or form.form_errors:
            form.code.data = ""
            return _security_page(s, user, disable_form=form, status=429 if until else 422)
        audit.record(s, "totp.disabled", actor=user, address=_address())
    flash("Two-factor authentication is off. Sign-in asks for your password only.", "success")
    return redirect(url_for("account.security"))
