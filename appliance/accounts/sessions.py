"""Server-side sign-in sessions: one ``UserSession`` row per signed-in browser.

The browser's cookie names the row by its random id; the row decides whether the cookie
still signs anyone in. A row stops working when it is revoked (sign-out, "sign out
everywhere else", an administrator's force logout), when it has not been used for
``auth.session_idle_minutes``, or when it is older than ``auth.session_max_hours``, however
busy. Rotating ``User.session_token`` (a password change, ``revoke_all``) ends every session
of the user too, because the cookie carries the token it was made with.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import orm

from appliance.errors import NotFound
from appliance.models import User, UserSession
from appliance.models.base import utcnow

# ``last_seen_at`` is written at most this often: a write per request would turn every page
# view into a write transaction, and idle timeouts measured in minutes need no finer clock.
TOUCH_INTERVAL = dt.timedelta(minutes=1)


@dataclass(frozen=True)
class SessionLimits:
    idle: dt.timedelta
    absolute: dt.timedelta

    @classmethod
    def from_config(cls, config) -> "SessionLimits":
        return cls(idle=dt.timedelta(minutes=config.auth.session_idle_minutes),
                   absolute=dt.timedelta(hours=config.auth.session_max_hours))

    def expires_at(self, row: UserSession) -> dt.datetime:
        """When ``row`` stops working unless it is used again before then."""
        return min(row.last_seen_at + self.idle, row.created_at + self.absolute)


def new_session_token() -> str:
    """A value for ``User.session_token``; changing it signs every session of the user out."""
    return secrets.token_hex(16)


def start(session: orm.Session, user: User, *, method: str, address: str, user_agent: str) -> UserSession:
    """A new session row for ``user`` with a fresh random id (never one the browser chose)."""
    now = utcnow()
    row = UserSession(id=secrets.token_urlsafe(32), user_id=user.id, method=method[:100], created_at=now,
                      authenticated_at=now, last_seen_at=now, address=(address or "")[:64],
                      user_agent=(user_agent or "")[:255])
    session.add(row)
    session.flush()
    return row


def _is_live(row: UserSession, limits: SessionLimits, now: dt.datetime) -> bool:
    return row.revoked_at is None and now < limits.expires_at(row)


def resume(session: orm.Session, limits: SessionLimits, user_id: int, session_token: str,
           session_id: str) -> tuple[User, UserSession] | None:
    """The active user and live session a cookie names, or None; marks the session as seen."""
    if not session_id:
        return None
    found = session.execute(
        sa.select(User, UserSession).join(UserSession, UserSession.user_id == User.id)
        .where(User.id == user_id, UserSession.id == session_id)
    ).first()
    if found is None:
        return None
    user, row = found
    now = utcnow()
    if not user.is_active or user.session_token != session_token or not _is_live(row, limits, now):
        return None
    if now - row.last_seen_at >= TOUCH_INTERVAL:
        row.last_seen_at = now
    return user, row


def reauthenticated(session: orm.Session, session_id: str) -> None:
    """The user entered their credentials again in this session."""
    row = session.get(UserSession, session_id) if session_id else None
    if row is not None:
        row.authenticated_at = utcnow()


def end(session: orm.Session, session_id: str) -> UserSession | None:
    """Revoke one session by id (sign-out); the row, or None when there was nothing to end."""
    row = session.get(UserSession, session_id) if session_id else None
    if row is None or row.revoked_at is not None:
        return None
    row.revoked_at = utcnow()
    return row


def active_sessions(session: orm.Session, limits: SessionLimits, user: User) -> list[UserSession]:
    """The user's sessions that still sign in, the most recently used first."""
    now = utcnow()
    rows = session.scalars(
        sa.select(UserSession).where(UserSession.user_id == user.id, UserSession.revoked_at.is_(None))
        .order_by(UserSession.last_seen_at.desc(), UserSession.created_at.desc())
    )
    return [row for row in rows if _is_live(row, limits, now)]


def handle(row: UserSession) -> str:
    """A name for a session that pages may show and post back. Not the id itself: the id is
    half of what signs a browser in, and a page listing sessions must not hand it out."""
    return hashlib.sha256(row.id.encode("ascii")).hexdigest()[:32]


def revoke(session: orm.Session, user: User, session_handle: str) -> UserSession:
    """Sign out one of the user's own sessions by its ``handle``; ``NotFound`` for another
    user's or an ended one."""
    rows = session.scalars(sa.select(UserSession).where(UserSession.user_id == user.id,
                                                        UserSession.revoked_at.is_(None)))
    for row in rows:
        if handle(row) == session_handle:
            row.revoked_at = utcnow()
            return row
    raise NotFound("no such session")


def revoke_others(session: orm.Session, user: User, keep_id: str) -> int:
    """Sign out every session of the user but ``keep_id``; returns how many were ended."""
    result = session.execute(
        sa.update(UserSession)
        .where(UserSession.user_id == user.id, UserSession.revoked_at.is_(None), UserSession.id != keep_id)
        .values(revoked_at=utcnow())
    )
    return result.rowcount or 0


def revoke_all(session: orm.Session, user: User) -> int:
    """Sign the user out everywhere (force logout, disabling an account): every session row is
    revoked and the session token rotated, so no cookie made before this call works again.
    Returns how many live rows were revoked."""
    result = session.execute(
        sa.update(UserSession).where(UserSession.user_id == user.id, UserSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    user.session_token = new_session_token()
    return result.rowcount or 0


def prune(session: orm.Session, limits: SessionLimits) -> int:
    """Delete rows that can never sign in again: revoked, idle past the timeout, or past the
    absolute limit. Returns how many went."""
    now = utcnow()
    result = session.execute(
        sa.delete(UserSession).where(sa.or_(
            UserSession.revoked_at.is_not(None),
            UserSession.last_seen_at <= now - limits.idle,
            UserSession.created_at <= now - limits.absolute,
        ))
    )
    return result.rowcount or 0
