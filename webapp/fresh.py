"""``fresh_login_required``: changing tokens, secrets, roles and the second factor needs
credentials entered recently.

flask-login's own freshness only tells a remember-me cookie from a sign-in; ours asks for
the password again (``/login/confirm``) once ``auth.fresh_minutes`` have passed since the
user last entered it. The time sits in the signed session cookie, which the browser can
read but not change.
"""

from __future__ import annotations

import functools
import time
from urllib.parse import urlsplit

from flask import current_app, flash, redirect, request, session, url_for
from flask_login import current_user

from webapp.extensions import htmx

SESSION_KEY = "prts_authenticated_at"


def mark_fresh() -> None:
    """Call when the user has just proved who they are (sign-in or re-authentication)."""
    session[SESSION_KEY] = time.time()


def is_fresh() -> bool:
    minutes = current_app.extensions["prts"].config.auth.fresh_minutes
    at = session.get(SESSION_KEY)
    return isinstance(at, (int, float)) and 0 <= time.time() - at <= minutes * 60


def _return_target() -> str | None:
    """Where to come back to after confirming: the page itself for a GET; for a POST, which
    cannot be replayed after the detour, the same-site page its form was on."""
    if request.method == "GET":
        return request.full_path.rstrip("?")
    referrer = urlsplit(request.referrer or "")
    if referrer.netloc != request.host or not referrer.path.startswith("/"):
        return None
    return referrer.path + (f"?{referrer.query}" if referrer.query else "")


def fresh_login_required(view):
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if not current_user.is_authenticated:
            return current_app.login_manager.unauthorized()
        if not is_fresh():
            flash("Confirm your identity to continue.", "info")
            target = url_for("auth.reauthenticate", next=_return_target())
            if htmx:  # an htmx request would swap the confirm page into a fragment: navigate instead
                return "", 204, {"HX-Redirect": target}
            return redirect(target)
        return view(*args, **kwargs)

    return wrapper
