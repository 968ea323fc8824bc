"""Inbound webhooks: ``POST /hooks/<forge>/<org>/<name>`` from GitHub, GitLab, Gitea or
Forgejo, for a project that mirrors a repository there.

No session and no CSRF token: a forge proves itself with the project's inbound secret
(``appliance.hosting.inbound``). The body is read here, bounded, only after the project
and the declared size were checked: a body announced larger than
``webhooks.max_body_bytes`` is refused unread, and a chunked one is cut off one byte past
the cap. Answers are short plain text, which forges show in their delivery logs.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

from appliance.hosting import inbound
from webapp.extensions import csrf

bp = Blueprint("hooks", __name__)
csrf.exempt(bp)

_READ_CHUNK = 64 * 1024


def _read_body(limit: int) -> bytes:
    """At most ``limit`` bytes of the request body."""
    # Flask's app-wide MAX_CONTENT_LENGTH is smaller than a forge's push payload may be;
    # this request's own cap (webhooks.max_body_bytes) replaces it before the stream opens.
    request.max_content_length = limit
    stream = request.stream
    parts, size = [], 0
    while size < limit:
        chunk = stream.read(min(_READ_CHUNK, limit - size))
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)


def _text(status: int, message: str) -> Response:
    return Response(message + "\n", status=status, mimetype="text/plain",
                    headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})


@bp.post("/hooks/<forge>/<org>/<name>")
def receive(forge: str, org: str, name: str):
    app = current_app.extensions["prts"]
    try:
        status, message = inbound.receive(app, forge, f"{org}/{name}", request.headers, request.content_length,
                                          _read_body)
    except inbound.DeliveryRefused as exc:
        return _text(exc.status, exc.message)
    except RequestEntityTooLarge:  # a chunked body past the cap
        cap = app.config.webhooks.max_body_bytes
        return _text(413, f"the body is larger than {cap} bytes (webhooks.max_body_bytes)")
    except ClientDisconnected:
        return _text(400, "the body ended before its declared length")
    return _text(status, message)
