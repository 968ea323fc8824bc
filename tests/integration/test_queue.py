"""The task queue with a real Huey consumer, on SQLite and on a real Redis."""

import threading
import time

import pytest
from huey.exceptions import TaskException

from appliance.context import Appliance
from appliance.storage.queue import make_huey, ping_queue
from conftest import make_config


@pytest.fixture
def huey(tmp_path, queue_values):
    return make_huey(make_config(tmp_path, **queue_values))


def _run_consumer(huey):
    consumer = huey.create_consumer(workers=2, worker_type="thread", initial_delay=0.05, backoff=1.1, max_delay=0.2)
    thread = threading.Thread(target=consumer.run, daemon=True)
    # Huey's consumer installs signal handlers, which only the main thread may do.
    consumer._set_signal_handlers = lambda: None
    thread.start()
    return consumer, thread


def test_a_consumer_runs_enqueued_tasks(huey):
    results = []

    @huey.task()
    def add(a, b):
        results.append(a + b)
        return a + b

    pending = [add(i, i) for i in range(20)]
    assert huey.pending_count() == 20
    consumer, thread = _run_consumer(huey)
    try:
        assert [r.get(blocking=True, timeout=20) for r in pending] == [2 * i for i in range(20)]
    finally:
        consumer.stop(graceful=True)
        thread.join(10)
    assert sorted(results) == [2 * i for i in range(20)]


def test_failed_task_is_retried(huey):
    attempts = []

    @huey.task(retries=2, retry_delay=0)
    def flaky():
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("not yet")
        return "done"

    result = flaky()
    consumer, thread = _run_consumer(huey)
    try:
        # Huey stores each failed attempt's error under the task id before the retry runs,
        # so a reader may see "not yet" first; read again until the retry's result lands.
        deadline = time.monotonic() + 20
        value = None
        while value != "done" and time.monotonic() < deadline:
            try:
                value = result.get(blocking=True, timeout=20)
            except TaskException:
                result.reset()
    finally:
        consumer.stop(graceful=True)
        thread.join(10)
    assert value == "done" and len(attempts) == 3


def test_audit_shipping_task_reaches_analytics(tmp_path, queue_values):
    """The real task chain of the appliance: database outbox -> enqueue -> consumer -> chdb."""
    from appliance import audit, migrate
    from appliance.storage.analytics import migrate_analytics

    app = Appliance(make_config(tmp_path, **queue_values))
    migrate.upgrade(app.db)
    migrate_analytics(app.analytics)
    with app.db.session() as s:
        audit.record(s, "project.created", actor="alice", target="acme/web")
    app.tasks.ship_audit_events()  # the periodic task, enqueued now rather than on the minute
    consumer, thread = _run_consumer(app.huey)
    try:
        deadline = time.monotonic() + 20
        rows = []
        while time.monotonic() < deadline and not rows:
            rows = app.analytics.query("SELECT seq, action, actor, target FROM audit_events")
            time.sleep(0.2)
    finally:
        consumer.stop(graceful=True)
        thread.join(10)
        app.close()
    assert rows == [(1, "project.created", "alice", "acme/web")]


def test_ping(huey):
    ping_queue(huey)
