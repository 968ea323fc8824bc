"""Who is calling the API: a Bearer token, or a signed-in browser session.

A token request is identified by its ``Authorization`` header alone; its cookies play no
part (so it needs no CSRF token). Without the header, the browser session's user calls,
and then state-changing requests need the CSRF token, as every form of the site does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from flask import current_app, request
from flask_login import current_user

from appliance import audit
from appliance.accounts import tokens
from appliance.models import Project, User
from webapp.api.errors import ApiError

REALM = 'Bearer realm="prts"'


@dataclasses.dataclass(frozen=True)
class TokenGrant:
    """What the calling token allows, read when the request was authenticated."""

    id: int
    prefix: str
    scope: str
    project_id: int | None
    expires_at: dt.datetime | None


@dataclasses.dataclass(frozen=True)
class Caller:
    user_id: int
    username: str
    token: TokenGrant | None  # None: a signed-in browser session

    @property
    def scope(self) -> str:
        # A session acts with everything its user may do; the policy still decides.
        return self.token.scope if self.token else "admin"

    @property
    def via(self) -> str:
        """For audit details: how the action was asked for."""
        return f"API token {self.token.prefix}" if self.token else "the API, from a signed-in session"

    def origin(self, user: User) -> audit.Origin:
        """The audit origin of an action a service records in its own transaction."""
        return audit.Origin(user, address=request.remote_addr or "", via=self.via)

    def reaches(self, project: Project) -> bool:
        """False when the token is restricted to another project."""
        return self.token is None or self.token.project_id in (None, project.id)


def _invalid_token(message: str) -> ApiError:
    return ApiError(401, "authorization", message, {"WWW-Authenticate": f'{REALM}, error="invalid_token"'})


def identify() -> Caller | None:
    """The caller, None when anonymous; raises a 401 ApiError for a bad Authorization header."""
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, credentials = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise ApiError(401, "authorization", "expected Authorization: Bearer <token>",
                           {"WWW-Authenticate": f'{REALM}, error="invalid_request"'})
        app = current_app.extensions["prts"]
        with app.db.session() as s:
            # authenticate also notes the token's last use (at most once a minute).
            found = tokens.authenticate(s, "", credentials.strip())
            if found is None:
                raise _invalid_token("the token is malformed, expired or revoked, or its account is disabled")
            user, token = found
            return Caller(user.id, user.username, TokenGrant(token.id, token.prefix, token.scope, token.project_id,
                                                             token.expires_at))
    if current_user.is_authenticated:
        return Caller(current_user.id, current_user.username, None)
    return None


def require(caller: Caller | None, scope: str) -> Caller:
    """The caller, if it may use an operation that needs ``scope``."""
    if caller is None:
        raise ApiError(401, "authorization", "authentication is required: send Authorization: Bearer <token>",
                       {"WWW-Authenticate": REALM})
    if not tokens.scope_allows(caller.scope, scope):
        raise ApiError(403, "scope", f"this token has the {caller.scope} scope; this operation needs {scope}",
                       {"WWW-Authenticate": f'{REALM}, error="insufficient_scope", scope="{scope}"'})
    return caller


def load_user(session, caller: Caller) -> User:
    """The caller's account in ``session``; gone or disabled since the request began: 401."""
    user = session.get(User, caller.user_id)
    if user is None or not user.is_active:
        raise _invalid_token("the account is disabled")
    return user
