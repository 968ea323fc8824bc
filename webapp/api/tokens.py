"""Your API tokens: list, create, revoke.

A token creating a token can give it no more than it has itself (scope, project,
expiry: ``tokens.create_token(minted_by=...)``); a browser session creating one must have
signed in recently (``fresh_login_required``'s rule). The token text is in the 201 answer
only, never again.
"""

from __future__ import annotations

from typing import Annotated, Literal

import pydantic
from flask import current_app, request

from appliance import audit
from appliance.accounts import organisations, tokens
from appliance.errors import NotFound, ValidationError
from appliance.models import ApiToken, Project
from webapp.api.caller import Caller, load_user
from webapp.api.errors import ApiError
from webapp.api.operations import Call, json_answer, operation
from webapp.api.schemas import Id, Timestamp
from webapp.fresh import is_fresh


class TokenPath(pydantic.BaseModel):
    token_id: Id


class CreateToken(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    name: Annotated[str, pydantic.Field(min_length=1, max_length=100, description="What the token is for.")]
    scope: Literal["read", "write", "admin"]
    project: Annotated[str, pydantic.Field(min_length=3, max_length=201, description="ORG/NAME")] | None = None
    expires_in_days: Annotated[int, pydantic.Field(ge=1, le=tokens.MAX_DAYS)] | None = None


class TokenOut(pydantic.BaseModel):
    id: int
    name: str
    prefix: str = pydantic.Field(description="The token's first characters, to tell tokens apart.")
    scope: Literal["read", "write", "admin"]
    project: str | None
    created_at: Timestamp
    expires_at: Timestamp | None
    last_used_at: Timestamp | None


class NewToken(TokenOut):
    token: str = pydantic.Field(description="The token itself: shown in this answer only.")


class TokenList(pydantic.BaseModel):
    items: list[TokenOut]


def _prts():
    return current_app.extensions["prts"]


def _token_out(session, row: ApiToken) -> dict:
    project = session.get(Project, row.project_id) if row.project_id else None
    return dict(id=row.id, name=row.name, prefix=row.prefix, scope=row.scope, project=project.path if project else None,
                created_at=row.created_at, expires_at=row.expires_at, last_used_at=row.last_used_at)


@operation("GET", "/user/tokens", summary="Your active tokens (never the tokens themselves)", tag="tokens",
           scope="read", answer=TokenList)
def list_tokens(call: Call):
    with _prts().db.session() as s:
        user = load_user(s, call.caller)
        return TokenList(items=[TokenOut(**_token_out(s, row)) for row in tokens.user_tokens(s, user)])


def _require_fresh(caller: Caller) -> None:
    if caller.token is None and not is_fresh():
        raise ApiError(403, "session", "creating a token needs a recent sign-in: confirm your password in the "
                                       "browser, or create the token with a token")


@operation("POST", "/user/tokens", summary="Create a token for yourself", tag="tokens", scope="write",
           body=CreateToken, answer=NewToken, status=201)
def create_token(call: Call):
    """Needs the write scope. A token cannot create a token wider than itself: no wider scope, the
    same project when it is restricted to one, an expiry no later than its own."""
    _require_fresh(call.caller)
    body: CreateToken = call.body
    with _prts().db.session() as s:
        user = load_user(s, call.caller)
        parent = s.get(ApiToken, call.caller.token.id) if call.caller.token else None
        try:
            project = organisations.get_project(s, body.project) if body.project else None
        except (NotFound, ValidationError):
            raise ApiError(422, "project", f"{body.project!r} is not a project you can see") from None
        try:
            row, text = tokens.create_token(s, user, body.name, body.scope, project=project,
                                            expires_in_days=body.expires_in_days, minted_by=parent)
        except ValidationError as exc:
            raise ApiError(422, exc.field if exc.field != "expires" else "expires_in_days", exc.message) from None
        audit.record(s, "token.created", actor=user, target=f"token {row.id}", project=project,
                     address=request.remote_addr or "",
                     detail=f"{row.scope} token {row.prefix}" + (f" for {project.path}" if project else "")
                            + f", via {call.caller.via}")
        answer = NewToken(**_token_out(s, row), token=text)
    return json_answer(answer, status=201, headers={"Cache-Control": "no-store"})


@operation("DELETE", "/user/tokens/{token_id}", summary="Revoke one of your tokens", tag="tokens", scope="write",
           path_params=TokenPath, status=204)
def revoke_token(call: Call):
    """It stops working at once; a token may revoke itself."""
    with _prts().db.session() as s:
        user = load_user(s, call.caller)
        try:
            row = tokens.revoke(s, user, call.path.token_id)
        except NotFound:
            raise ApiError(404, "token_id", f"you have no active token {call.path.token_id}") from None
        audit.record(s, "token.revoked", actor=user, target=f"token {row.id}", address=request.remote_addr or "",
                     detail=f"{row.scope} token {row.prefix}, via {call.caller.via}")
    return current_app.response_class(status=204)
