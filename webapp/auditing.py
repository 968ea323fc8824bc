"""Audit events for the request being served: the signed-in user and the client address.

Views call ``record`` inside the transaction of their change; services that commit their
own transaction (``runs.cancel_run``) take ``origin()`` and record there.
"""

from __future__ import annotations

from flask import request
from flask_login import current_user
from sqlalchemy import orm

from appliance import audit
from appliance.models import AuditEvent


def origin(via: str = "") -> audit.Origin:
    user = current_user._get_current_object() if current_user.is_authenticated else None
    return audit.Origin(user, request.remote_addr or "", via)


def record(session: orm.Session, action: str, **fields) -> AuditEvent:
    """``appliance.audit.record`` with the current user as actor and the client as address."""
    return origin().record(session, action, **fields)
