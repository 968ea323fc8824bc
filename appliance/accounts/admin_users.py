"""What site administrators do to accounts: find, invite, disable and enable, sign out
everywhere, and make or unmake administrators, without ever locking the site out.

The rules that keep a site governable: nobody disables, signs out or demotes themselves
here (they have their own pages for that), and the last active administrator stays one.
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from sqlalchemy import orm

from appliance.accounts import sessions, users
from appliance.errors import ValidationError
from appliance.models import User
from appliance.models.base import utcnow

SEARCH_LIMIT = 200


def search(session: orm.Session, text: str = "", *, limit: int = SEARCH_LIMIT) -> list[User]:
    """Accounts whose name or email contains ``text`` (any case), by name."""
    query = sa.select(User).order_by(sa.func.lower(User.username)).limit(limit)
    text = text.strip()
    if text:
        # LIKE wildcards in the search text are taken literally.
        pattern = "%" + text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(sa.or_(sa.func.lower(User.username).like(pattern, escape="\\"),
                                   sa.func.lower(sa.func.coalesce(User.email, "")).like(pattern, escape="\\")))
    return list(session.scalars(query))


def invite(session: orm.Session, username: str, email: str) -> tuple[User, str]:
    """A new account with a generated one-time password; returns it with the password, which
    is shown to the inviting admin once and never stored in clear."""
    if not (email or "").strip():
        raise ValidationError("email", "is required")
    password = secrets.token_urlsafe(15)
    user = users.create_user(session, username, password, email=email, one_time=True)
    return user, password


def sign_out_everywhere(session: orm.Session, user: User) -> None:
    """End every session of ``user``: revoked rows and a new session token."""
    sessions.revoke_all(session, user)
    session.flush()


def _active_admins(session: orm.Session) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(User).where(User.is_admin, User.is_active))


def _not_yourself(actor: User, user: User, what: str) -> None:
    if actor.id == user.id:
        raise ValidationError("user", f"you cannot {what} your own account here")


def disable(session: orm.Session, actor: User, user: User) -> None:
    _not_yourself(actor, user, "disable")
    if user.is_admin and user.is_active and _active_admins(session) <= 1:
        raise ValidationError("user", "the last active administrator cannot be disabled")
    user.is_active = False
    user.disabled_at = utcnow()
    sign_out_everywhere(session, user)


def enable(session: orm.Session, user: User) -> None:
    user.is_active = True
    user.disabled_at = None
    session.flush()


def force_logout(session: orm.Session, actor: User, user: User) -> None:
    _not_yourself(actor, user, "sign out")
    sign_out_everywhere(session, user)


def set_admin(session: orm.Session, actor: User, user: User, is_admin: bool) -> None:
    _not_yourself(actor, user, "change the administrator role of")
    if not is_admin and user.is_admin and user.is_active and _active_admins(session) <= 1:
        raise ValidationError("user", "the last active administrator must stay one")
    user.is_admin = is_admin
    session.flush()
