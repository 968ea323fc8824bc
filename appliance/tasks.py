"""Huey tasks. Thin by design: they take plain values or ids and call services."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from huey import Huey, crontab

from appliance.accounts import ratelimit
from appliance.storage import analytics

log = logging.getLogger(__name__)


def register_tasks(huey: Huey, app) -> SimpleNamespace:
    """Register the appliance's tasks on ``huey``; returns them by name for enqueueing."""

    @huey.task(retries=3, retry_delay=5)
    def record_event(kind: str, actor: str = "", project: str = "", detail: str = "") -> None:
        analytics.record_event(app.analytics, kind, actor=actor, project=project, detail=detail)

    @huey.periodic_task(crontab(minute="*/15"))
    def prune_login_attempts() -> None:
        with app.db.session() as session:
            removed = ratelimit.prune(session, ratelimit.LoginLimits.from_config(app.config))
        log.info("pruned expired sign-in failures", extra={"removed": removed})

    return SimpleNamespace(record_event=record_event, prune_login_attempts=prune_login_attempts)
