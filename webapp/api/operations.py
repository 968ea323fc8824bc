"""Each API operation is declared once, and both request validation and the OpenAPI
document come from that declaration.

``@operation("GET", "/runs/{run_id}", ...)`` names the method, the path (OpenAPI style,
under /api/v1), the scope a token needs, and pydantic models for the path parameters, the
query string, the JSON body and the answer. It registers the Flask route, and around the
view: identifies the caller (401), checks the scope (403), checks CSRF for browser
sessions, validates the parameters and the body (422 naming the field) and serialises the
answer through its model. ``webapp/api/openapi.py`` turns ``OPERATIONS`` into the document.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable

import pydantic
from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import BadRequest

from webapp.api import caller as callers
from webapp.api.errors import ApiError, api_error
from webapp.extensions import csrf

bp = Blueprint("api", __name__, url_prefix="/api/v1")
# A Bearer request carries no cookie to forge; browser sessions are checked per operation.
csrf.exempt(bp)
bp.register_error_handler(ApiError, api_error)

MAX_BODY_BYTES = 64 * 1024  # every body the API takes is a small JSON object
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclasses.dataclass(frozen=True)
class Answer:
    """One documented response of an operation."""

    status: int
    description: str
    model: type[pydantic.BaseModel] | None = None
    media_type: str = "application/json"


@dataclasses.dataclass(frozen=True)
class Operation:
    method: str
    path: str  # OpenAPI style, under /api/v1: "/runs/{run_id}"
    endpoint: str
    summary: str
    description: str
    tag: str
    scope: str | None  # None: public
    path_model: type[pydantic.BaseModel] | None
    query_model: type[pydantic.BaseModel] | None
    body_model: type[pydantic.BaseModel] | None
    answers: tuple[Answer, ...]
    headers: tuple[dict, ...] = ()  # request headers the view reads itself (Range), as OpenAPI parameters


@dataclasses.dataclass(frozen=True)
class Call:
    """What a view gets: the caller and the validated parameters."""

    caller: callers.Caller | None
    path: pydantic.BaseModel | None
    query: pydantic.BaseModel | None
    body: pydantic.BaseModel | None


OPERATIONS: list[Operation] = []

ERROR_TEXT = {
    400: "The body is not JSON.",
    401: "No credentials, or a malformed, expired or revoked token.",
    403: "The token's scope or project, or the user's role, does not allow this.",
    404: "No such resource, or the caller may not see it.",
    409: "The resource is not in a state that allows this.",
    410: "The resource was removed (an expired artifact).",
    413: "The body is larger than 64 KiB.",
    416: "The range lies outside the content.",
    422: "A parameter or a body field is invalid; `field` names it.",
}


def operation(method: str, path: str, *, summary: str, tag: str, scope: str | None,
              path_params: type[pydantic.BaseModel] | None = None, query: type[pydantic.BaseModel] | None = None,
              body: type[pydantic.BaseModel] | None = None, answer: type[pydantic.BaseModel] | None = None,
              status: int = 200, media_type: str = "application/json", errors: tuple[int, ...] = (),
              headers: tuple[dict, ...] = (), also: tuple[Answer, ...] = (), description: str = "") -> Callable:
    """Declare and register an operation; the decorated view takes a ``Call``."""

    def register(view: Callable) -> Callable:
        codes = set(errors) | {404}
        if scope is not None:
            codes |= {401, 403}
        if path_params or query or body:
            codes.add(422)
        if body is not None:
            codes |= {400, 413}
        answers = (Answer(status, summary, answer, media_type), *also,
                   *(Answer(code, ERROR_TEXT[code], ErrorBody) for code in sorted(codes)))
        op = Operation(method, path, view.__name__, summary, description or (view.__doc__ or "").strip(), tag,
                       scope, path_params, query, body, answers, headers)
        OPERATIONS.append(op)

        @functools.wraps(view)
        def handle(**view_args):
            return _respond(op, view(_prepare(op, view_args)))

        bp.add_url_rule(re.sub(r"\{(\w+)\}", r"<\1>", path), endpoint=op.endpoint, view_func=handle,
                        methods=[method])
        return view

    return register


class ErrorDetail(pydantic.BaseModel):
    field: str | None = pydantic.Field(description="The parameter or body field at fault, when one is.")
    message: str


class ErrorBody(pydantic.BaseModel):
    """Every error answer under /api/v1."""

    error: ErrorDetail


# -- around each view -------------------------------------------------------------------------


def _prepare(op: Operation, view_args: dict) -> Call:
    caller = callers.identify()
    if op.scope is not None:
        callers.require(caller, op.scope)
        if caller.token is None and request.method not in SAFE_METHODS:
            csrf.protect()  # raises a 400 CSRFError, answered in JSON
    path = _validate(op.path_model, view_args)
    query = _validate(op.query_model, _query_values(op.query_model))
    body = _validate(op.body_model, _json_body()) if op.body_model is not None else None
    return Call(caller, path, query, body)


def _query_values(model: type[pydantic.BaseModel] | None) -> dict:
    if model is None:
        return {}
    # Unknown parameters are ignored; a repeated one counts once (its first value).
    return {name: request.args[name] for name in model.model_fields if name in request.args}


def _json_body():
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise ApiError(413, "body", f"the body must be at most {MAX_BODY_BYTES // 1024} KiB")
    data = request.get_data(cache=True)
    if len(data) > MAX_BODY_BYTES:  # a chunked body states no length
        raise ApiError(413, "body", f"the body must be at most {MAX_BODY_BYTES // 1024} KiB")
    try:
        return request.get_json(force=True, silent=False)
    except BadRequest:  # not JSON, or not UTF-8
        raise ApiError(400, "body", "the body must be a JSON object") from None


def _validate(model: type[pydantic.BaseModel] | None, data):
    if model is None:
        return None
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        raise ApiError(422, field, first["msg"][:300]) from None


def _respond(op: Operation, result) -> Response:
    if isinstance(result, Response):
        return result
    response = jsonify(result.model_dump(mode="json"))
    response.status_code = op.answers[0].status
    return response


def json_answer(model: pydantic.BaseModel, *, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """An answer with headers of its own (a Link header, a Location)."""
    response = jsonify(model.model_dump(mode="json"))
    response.status_code = status
    response.headers.update(headers or {})
    return response
