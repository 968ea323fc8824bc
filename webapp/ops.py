"""Operational endpoints: liveness, readiness of every backend, Prometheus metrics."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, jsonify
from flask_login import current_user

from appliance.health import check_backends
from webapp.extensions import csrf
from webapp.metrics import exposition

bp = Blueprint("ops", __name__)
csrf.exempt(bp)
log = logging.getLogger(__name__)


@bp.route("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.route("/readyz")
def readyz():
    statuses = check_backends(current_app.extensions["prts"])
    ready = all(s.ok for s in statuses)
    # Probes are anonymous: they learn which backend is down, not where it lives or why;
    # the log and signed-in administrators get the details.
    detailed = current_user.is_authenticated and current_user.is_admin
    body = []
    for s in statuses:
        entry = {"name": s.name, "ok": s.ok, "ms": round(s.seconds * 1000, 1)}
        if detailed:
            entry.update(address=s.address, error=s.error)
        if not s.ok:
            log.warning("backend not ready", extra={"backend": s.name, "address": s.address, "error": s.error})
        body.append(entry)
    return jsonify(status="ready" if ready else "unavailable", backends=body), 200 if ready else 503


@bp.route("/metrics")
def metrics():
    data, content_type = exposition()
    return Response(data, content_type=content_type)
