"""Errors under ``/api/v1`` are JSON, always: ``{"error": {"field": ..., "message": ...}}``.

Views raise ``ApiError`` for the errors they mean; ``abort()``, routing misses (404, 405),
oversized bodies (413), CSRF refusals (400) and crashes (500) reach the app-level
handlers, which ``answer_api_errors_in_json`` wraps so that a client of the API never gets
an HTML page, while the rest of the site keeps its own error pages.
"""

from __future__ import annotations

import functools

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException, default_exceptions

PREFIX = "/api/"

# Short words for the codes a client meets; werkzeug's descriptions talk to people at a browser.
MESSAGES = {
    400: "the request could not be understood",
    401: "authentication is required: send Authorization: Bearer <token>",
    403: "you may not do this",
    404: "no such resource, or you may not see it",
    405: "this method is not allowed here",
    413: "the request body is too large",
    500: "the server failed to answer this request; the error is in its log",
}


class ApiError(Exception):
    """An error answer a view means to give, naming the request field at fault (or None)."""

    def __init__(self, status: int, field: str | None, message: str, headers: dict[str, str] | None = None):
        super().__init__(f"{status} {field}: {message}")
        self.status, self.field, self.message, self.headers = status, field, message, headers or {}


def error_response(status: int, field: str | None, message: str, headers: dict[str, str] | None = None):
    response = jsonify({"error": {"field": field, "message": message}})
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def api_error(exc: ApiError):
    return error_response(exc.status, exc.field, exc.message, exc.headers)


def _http_error(exc: HTTPException):
    status = exc.code or 500
    message = MESSAGES.get(status) or (exc.description or exc.name).strip()
    if status == 400 and exc.description and "CSRF" in exc.description:
        # A signed-in browser session posts with the CSRF token; a token client is exempt.
        message = f"{exc.description} Send it in the X-CSRFToken header, or use a Bearer token."
        return error_response(status, "csrf_token", message)
    headers = {k: v for k, v in exc.get_headers() if k.lower() not in ("content-type", "content-length")}
    if status == 405 and getattr(exc, "valid_methods", None):
        message = f"{message}; allowed: {', '.join(sorted(exc.valid_methods))}"
    return error_response(status, None, message, headers)


def _in_api() -> bool:
    return request.path.startswith(PREFIX)


def answer_api_errors_in_json(app: Flask) -> None:
    """Make every HTTP error under /api/ a JSON answer, keeping the app's own handlers elsewhere.

    App-level handlers are the only ones that see a URL no rule matches, so the API's cannot
    live on its blueprint alone. Call it after the app registered its error pages: each page
    handler found then is kept for requests outside the API."""
    pages = app.error_handler_spec[None]
    for status, exc_class in default_exceptions.items():
        page = pages.get(status, {}).get(exc_class)
        app.register_error_handler(status, functools.partial(_json_or_page, page))


def _json_or_page(page, exc: HTTPException):
    if _in_api():
        return _http_error(exc)
    return page(exc) if page is not None else exc
