"""Sign-in rate limiting per account and per client address, kept in the database.

Failures are rows in ``login_attempts``; a key is locked while it has reached its limit
within the window. Because the rows live in the main database, restarting the appliance
(or running several web workers) does not reset or split the count.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import orm

from appliance.models import LoginAttempt
from appliance.models.base import utcnow


@dataclass(frozen=True)
class LoginLimits:
    per_account: int
    per_address: int
    window: dt.timedelta

    @classmethod
    def from_config(cls, config) -> "LoginLimits":
        return cls(
            per_account=config.auth.max_failures_per_account,
            per_address=config.auth.max_failures_per_address,
            window=dt.timedelta(minutes=config.auth.lockout_minutes),
        )


def _keys(username: str, address: str) -> tuple[str, str]:
    return f"account:{username.strip().lower()}", f"address:{address}"


def locked_until(session: orm.Session, limits: LoginLimits, username: str, address: str) -> dt.datetime | None:
    """When the later of the two locks ends, or None when sign-in may be tried."""
    now = utcnow()
    since = now - limits.window
    until = None
    for key, limit in zip(_keys(username, address), (limits.per_account, limits.per_address)):
        times = session.scalars(
            sa.select(LoginAttempt.at)
            .where(LoginAttempt.key == key, LoginAttempt.at > since)
            .order_by(LoginAttempt.at.desc())
            .limit(limit)
        ).all()
        if len(times) >= limit:
            # Locked until the oldest of the last `limit` failures leaves the window.
            end = times[-1] + limits.window
            until = end if until is None else max(until, end)
    return until


def record_failure(session: orm.Session, username: str, address: str) -> None:
    now = utcnow()
    for key in _keys(username, address):
        session.add(LoginAttempt(key=key, at=now))


def record_success(session: orm.Session, username: str) -> None:
    """A successful sign-in clears the account's failures (not the address's)."""
    account_key, _ = _keys(username, "")
    session.execute(sa.delete(LoginAttempt).where(LoginAttempt.key == account_key))


def prune(session: orm.Session, limits: LoginLimits) -> int:
    """Delete failures older than the window; returns how many went."""
    result = session.execute(sa.delete(LoginAttempt).where(LoginAttempt.at <= utcnow() - limits.window))
    return result.rowcount or 0
