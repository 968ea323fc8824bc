"""Huey tasks. Thin by design: they take plain values or ids and call services."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from huey import Huey, crontab

from appliance.accounts import ratelimit, sessions
from appliance.audit import shipping
from appliance.hosting import inbound, outbound
from appliance.models.base import utcnow
from appliance.pipelines import artifacts, runner, schedules
from appliance.storage import analytics

log = logging.getLogger(__name__)


def register_tasks(huey: Huey, app) -> SimpleNamespace:
    """Register the appliance's tasks on ``huey``; returns them by name for enqueueing."""

    @huey.periodic_task(crontab(minute="*/15"))
    def prune_login_attempts() -> None:
        # Sign-in state that can no longer matter: failures past the window, and sessions
        # that are revoked or timed out.
        with app.db.session() as session:
            removed = ratelimit.prune(session, ratelimit.LoginLimits.from_config(app.config))
            ended = sessions.prune(session, sessions.SessionLimits.from_config(app.config))
        log.info("pruned expired sign-in failures and sessions", extra={"removed": removed, "sessions": ended})

    @huey.task()
    def run_job(job_id: int) -> str:
        return runner.run_job(app, job_id)

    @huey.periodic_task(crontab(minute="*"))
    def reconcile_jobs() -> None:
        runner.reconcile(app)

    @huey.periodic_task(crontab(minute="*"))
    def run_schedules() -> None:
        started = schedules.run_due(app)
        if started:
            log.info("scheduled runs started", extra={"runs": started})

    @huey.periodic_task(crontab(minute="17"))
    def expire_artifacts() -> None:
        with app.db.session() as session:
            removed = artifacts.expire(app, session, utcnow())
        log.info("expired artifacts removed", extra={"removed": removed})

    @huey.periodic_task(crontab(minute="*"))
    def ship_audit_events() -> None:
        try:
            result = shipping.ship(app.db, app.analytics)
        except analytics.AnalyticsError as exc:
            # Nothing is lost: unstamped events stay in the outbox for the next run.
            log.warning("audit events not shipped, the analytics store is unreachable: %s", exc,
                        extra={"waiting": shipping.unshipped_count(app.db)})
            return
        if result.shipped:
            log.info("audit events shipped", extra={"shipped": result.shipped, "skipped": result.skipped})

    @huey.task()
    def fetch_mirror(project_id: int, delivery_row_id: int) -> None:
        inbound.run_fetch(app, project_id, delivery_row_id)

    @huey.task()
    def deliver_webhook(delivery_id: int) -> str | None:
        return outbound.deliver(app, delivery_id)

    @huey.periodic_task(crontab(minute="*"))
    def retry_webhooks() -> None:
        # Retries that came due, and first attempts whose queue message was lost.
        outbound.deliver_due(app)

    return SimpleNamespace(prune_login_attempts=prune_login_attempts, run_job=run_job,
                           reconcile_jobs=reconcile_jobs, run_schedules=run_schedules,
                           expire_artifacts=expire_artifacts, fetch_mirror=fetch_mirror,
                           deliver_webhook=deliver_webhook, retry_webhooks=retry_webhooks,
                           ship_audit_events=ship_audit_events)
