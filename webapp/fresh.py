"""``fresh_login_required``: changing tokens, secrets and roles needs credentials entered recently.

flask-login's own freshness only tells a remember-me cookie from a sign-in; ours asks for
the password again once ``auth.fresh_minutes`` have passed since the user last entered it.
"""

from __future__ import annotations

import functools
import time

from flask import current_app, flash, redirect, request, session, url_for
from flask_login import current_user

SESSION_KEY = "prts_authenticated_at"


def mark_fresh() -> None:
    """Call when the user has just proved who they are (sign-in or re-authentication)."""
    session[SESSION_KEY] = time.time()


def is_fresh() -> bool:
    minutes = current_app.extensions["prts"].config.auth.fresh_minutes
    at = session.get(SESSION_KEY)
    return isinstance(at, (int, float)) and 0 <= time.time() - at <= minutes * 60


def fresh_login_required(view):
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if not current_user.is_authenticated:
            return current_app.login_manager.unauthorized()
        if not is_fresh():
            flash("Confirm your identity to continue.", "info")
            # A POST cannot be replayed after the detour; its form comes back for a resubmit.
            target = request.full_path if request.method == "GET" else (request.referrer or request.path)
            return redirect(url_for("auth.reauthenticate", next=target))
        return view(*args, **kwargs)

    return wrapper
