"""Readiness of every configured backend, for /readyz and for start-up checks."""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa

from appliance.context import Appliance
from appliance.storage.queue import ping_queue, queue_address


@dataclass(frozen=True)
class BackendStatus:
    name: str
    address: str
    ok: bool
    error: str = ""
    seconds: float = 0.0


def _check(name: str, address: str, probe) -> BackendStatus:
    start = time.monotonic()
    try:
        probe()
    except Exception as exc:  # any failure of any driver means "not ready": report it, never raise
        return BackendStatus(name, address, False, f"{type(exc).__name__}: {exc}"[:500], time.monotonic() - start)
    return BackendStatus(name, address, True, "", time.monotonic() - start)


def _ping_database(app: Appliance) -> None:
    with app.db.engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))


def check_backends(app: Appliance, *, include_analytics: bool = True) -> list[BackendStatus]:
    checks = [
        _check("database", app.db.address, lambda: _ping_database(app)),
        _check("queue", queue_address(app.config), lambda: ping_queue(app.huey)),
        _check("pubsub", app.pubsub.address, app.pubsub.ping),
        _check("objects", app.objects.address, app.objects.ping),
    ]
    if include_analytics:
        checks.append(_check("analytics", app.analytics.address, app.analytics.ping))
    return checks
