"""Personal access tokens: for git over HTTP now, and the JSON API.

A token is ``prts_`` + 40 random URL-safe characters. Only its SHA-256 is stored (the token
has 240 bits of entropy, so a slow password hash buys nothing), and it is shown once. A
token carries a scope — ``read`` < ``write`` < ``admin``, each including the ones before
— may be restricted to one project, and may expire. It never grants more than its owner's
own roles: the policy still decides with the owner as the actor.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import unicodedata

import sqlalchemy as sa
from sqlalchemy import orm

from appliance.accounts import policy
from appliance.errors import NotFound, ValidationError
from appliance.models import ApiToken, Project, User
from appliance.models.api_token import SCOPES
from appliance.models.base import utcnow

PREFIX = "prts_"
MAX_DAYS = 3650
# last_used_at is written at most this often per token, not on every git request.
LAST_USED_GRANULARITY = dt.timedelta(minutes=1)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", errors="surrogateescape")).hexdigest()


def looks_like_token(text: str) -> bool:
    return isinstance(text, str) and text.startswith(PREFIX) and len(text) == len(PREFIX) + 40


def scope_allows(scope: str, needed: str) -> bool:
    return SCOPES.index(scope) >= SCOPES.index(needed)


def create_token(session: orm.Session, user: User, name: str, scope: str, *, project: Project | None = None,
                 expires_in_days: int | None = None, minted_by: ApiToken | None = None) -> tuple[ApiToken, str]:
    """A new token for ``user``; returns the row and the token text (shown once).

    ``minted_by``: the token a request to create this one came with (the API). The new
    token is never wider than it: no wider scope, no other or no project when it is bound
    to one, and no later expiry (nor none) when it expires."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise ValidationError("name", "must be 1 to 100 characters")
    if any(unicodedata.category(c).startswith("C") for c in name):
        # Names are printed by `prts token list`; a control character could rewrite the terminal.
        raise ValidationError("name", "must not contain control characters")
    if scope not in SCOPES:
        raise ValidationError("scope", f"{scope!r} is not a scope (expected one of {', '.join(SCOPES)})")
    if minted_by is not None and not scope_allows(minted_by.scope, scope):
        raise ValidationError("scope", f"a {minted_by.scope} token cannot create a {scope} token")
    if scope == "admin" and not user.is_admin:
        raise ValidationError("scope", "only site administrators may hold admin tokens")
    # A token bound to a project its owner cannot read would be refused everywhere; the same
    # words for "hidden" and "missing" keep the message from confirming a private project.
    if project is not None and not policy.can(session, user, "repository.read", project):
        raise ValidationError("project", f"{user.username} cannot see a project named {project.path}")
    expires_at = None
    if expires_in_days is not None:
        if isinstance(expires_in_days, bool) or not isinstance(expires_in_days, int) \
                or not 1 <= expires_in_days <= MAX_DAYS:
            raise ValidationError("expires", f"must be between 1 and {MAX_DAYS} days")
        expires_at = utcnow() + dt.timedelta(days=expires_in_days)
    if minted_by is not None:
        _check_narrower(minted_by, project, expires_at)
    text = PREFIX + secrets.token_urlsafe(30)[:40]
    token = ApiToken(user_id=user.id, name=name, token_hash=_digest(text), prefix=text[:len(PREFIX) + 4],
                     scope=scope, project_id=project.id if project else None, expires_at=expires_at)
    session.add(token)
    session.flush()
    return token, text


def _check_narrower(parent: ApiToken, project: Project | None, expires_at: dt.datetime | None) -> None:
    if parent.project_id is not None and (project is None or project.id != parent.project_id):
        raise ValidationError("project", "a token restricted to a project can only create tokens for that project")
    if parent.expires_at is not None:
        if expires_at is None:
            raise ValidationError("expires", "a token that expires cannot create one that never does")
        if expires_at > parent.expires_at:
            raise ValidationError("expires", f"must not outlast the token creating it, which expires "
                                             f"{parent.expires_at:%Y-%m-%d %H:%M} UTC")


def user_tokens(session: orm.Session, user: User) -> list[ApiToken]:
    return list(session.scalars(sa.select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
                                .order_by(ApiToken.created_at.desc())))


# Ids come from URLs and the command line. Primary keys are INTEGER, 32 bits on PostgreSQL,
# which refuses to even compare a larger number with one (SQLite stops at 64 bits).
MAX_ID = 2**31 - 1


def revoke(session: orm.Session, user: User, token_id: int) -> ApiToken:
    token = session.get(ApiToken, token_id) if 0 < token_id <= MAX_ID else None
    if token is None or token.user_id != user.id or token.revoked_at is not None:
        raise NotFound(f"no token {token_id}")
    token.revoked_at = utcnow()
    return token


def authenticate(session: orm.Session, username: str, text: str) -> tuple[User, ApiToken] | None:
    """The owner and token for a valid, unexpired, unrevoked token of ``username``."""
    if not looks_like_token(text):
        return None
    token = session.scalar(sa.select(ApiToken).where(ApiToken.token_hash == _digest(text)))
    if token is None or token.revoked_at is not None:
        return None
    now = utcnow()
    if token.expires_at is not None and token.expires_at <= now:
        return None
    user = session.get(User, token.user_id)
    if user is None or not user.is_active:
        return None
    # git sends the username it was given; any name is accepted by GitHub, but a wrong one
    # here is more likely a mistake worth refusing than a convenience.
    if username and not hmac.compare_digest(username.lower().encode(), user.username.lower().encode()):
        return None
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_GRANULARITY:
        token.last_used_at = now
    return user, token
