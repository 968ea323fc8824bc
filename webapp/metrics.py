"""Prometheus metrics for the web app; multi-process aware under gunicorn."""

from __future__ import annotations

import os
import time

from flask import Flask, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY

REQUESTS = Counter("prts_http_requests_total", "HTTP requests answered", ["method", "endpoint", "status"])
LATENCY = Histogram(
    "prts_http_request_duration_seconds", "Time to answer an HTTP request", ["method", "endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def init_app(app: Flask) -> None:
    @app.before_request
    def _start_timer():
        g._prts_started = time.perf_counter()

    @app.after_request
    def _observe(response):
        started = g.pop("_prts_started", None)
        # The endpoint name, never the raw path: paths carry ids and would explode cardinality.
        endpoint = request.endpoint or "unmatched"
        REQUESTS.labels(request.method, endpoint, str(response.status_code)).inc()
        if started is not None:
            LATENCY.labels(request.method, endpoint).observe(time.perf_counter() - started)
        return response


def exposition() -> tuple[bytes, str]:
    """The metrics text: merged across gunicorn workers when PROMETHEUS_MULTIPROC_DIR is set."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
