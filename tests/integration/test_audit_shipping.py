"""Shipping the audit outbox to the analytics store: in seq order, stamped only after the
insert, never duplicated by a re-ship, and nothing lost while ClickHouse is down. Runs on
SQLite and PostgreSQL, each with chdb and a real ClickHouse server."""

from __future__ import annotations

import logging
import time

import pytest
import sqlalchemy as sa

from appliance import audit, migrate
from appliance.audit import chain, shipping
from appliance.context import Appliance
from appliance.models import AuditEvent
from appliance.storage.analytics import AnalyticsError, migrate_analytics
from conftest import make_config
from servers import free_port


def make_app(path, **values) -> Appliance:
    app = Appliance(make_config(path, **values))
    migrate.upgrade(app.db)
    migrate_analytics(app.analytics)
    return app


@pytest.fixture
def app(tmp_path, db_values, analytics_values):
    app = make_app(tmp_path / "data", **db_values, **analytics_values)
    yield app
    app.close()


def write_events(app, count: int, first: int = 0) -> None:
    for i in range(first, first + count):
        with app.db.session() as s:
            audit.record(s, "run.started", actor="alice", target=f"acme/web#{i}", address="2001:db8::1",
                         detail="quote ' backslash \\ newline \n émoji ✓")


def store_seqs(app) -> list[int]:
    return [row[0] for row in app.analytics.query("SELECT seq FROM audit_events ORDER BY seq")]


def unshipped(app) -> int:
    return shipping.unshipped_count(app.db)


def test_ship_copies_every_event_once_in_batches(app):
    write_events(app, 12)
    result = shipping.ship(app.db, app.analytics, batch_size=5)
    assert (result.shipped, result.skipped, unshipped(app)) == (12, 0, 0)
    assert store_seqs(app) == list(range(1, 13))
    assert shipping.ship(app.db, app.analytics).shipped == 0  # nothing left: nothing sent again
    write_events(app, 3, first=12)
    assert shipping.ship(app.db, app.analytics).shipped == 3
    assert store_seqs(app) == list(range(1, 16))
    compared = chain.compare_shipped(app.db, app.analytics)
    assert (compared.compared, compared.problem) == (15, None)
    # The copy keeps the fields as they were written (text with quotes, newlines, non-ASCII).
    (row,) = app.analytics.query("SELECT detail, address, actor_id, project_id FROM audit_events WHERE seq = 3")
    assert row == ("quote ' backslash \\ newline \n émoji ✓", "2001:db8::1", None, None)


def test_a_crash_between_insert_and_stamp_does_not_duplicate(app):
    write_events(app, 7)
    with app.db.session() as s:  # the shipper inserted these, then died before stamping them
        shipping.insert_copies(app.analytics, list(s.scalars(sa.select(AuditEvent).where(AuditEvent.seq <= 4))))
    result = shipping.ship(app.db, app.analytics)
    assert (result.shipped, result.skipped, unshipped(app)) == (7, 4, 0)
    assert store_seqs(app) == list(range(1, 8))


def test_verify_notices_a_missing_or_different_shipped_copy(app):
    write_events(app, 6)
    shipping.ship(app.db, app.analytics)
    app.analytics.execute("ALTER TABLE audit_events DELETE WHERE seq = 4")
    problem = wait_for_problem(app)
    assert (problem.seq, problem.kind) == (4, "missing")
    with app.db.session() as s:
        shipping.insert_copies(app.analytics, [s.scalar(sa.select(AuditEvent).where(AuditEvent.seq == 4))])
    assert chain.compare_shipped(app.db, app.analytics).problem is None
    app.analytics.execute("ALTER TABLE audit_events UPDATE actor = 'mallory' WHERE seq = 2")
    problem = wait_for_problem(app)
    assert (problem.seq, problem.kind) == (2, "different") and "actor" in problem.message


def wait_for_problem(app):
    """ClickHouse applies ALTER ... DELETE/UPDATE as an asynchronous mutation (18.16 has no
    mutations_sync): poll until it shows. This waits for the store, it asserts no timing."""
    for _ in range(200):
        problem = chain.compare_shipped(app.db, app.analytics).problem
        if problem is not None:
            return problem
        time.sleep(0.05)
    raise AssertionError("the mutation never became visible")


@pytest.mark.parametrize("analytics_backend", ["clickhouse"], indirect=True)
def test_nothing_is_lost_while_clickhouse_is_down(tmp_path, db_values, analytics_values, caplog):
    up = make_app(tmp_path / "data", **db_values, **analytics_values)
    # The same appliance, but its ClickHouse answers nowhere: a closed port on loopback.
    down = Appliance(make_config(tmp_path / "data", **db_values, **analytics_values | {"analytics__port": free_port()}))
    try:
        write_events(down, 9)
        with pytest.raises(AnalyticsError):
            shipping.ship(down.db, down.analytics)
        assert unshipped(down) == 9
        # The periodic task logs a warning and leaves the rows for its next run.
        with caplog.at_level(logging.WARNING, logger="appliance.tasks"):
            down.tasks.ship_audit_events.call_local()
        assert "analytics store is unreachable" in caplog.text and unshipped(down) == 9
        write_events(down, 2, first=9)
        up.tasks.ship_audit_events.call_local()  # ClickHouse is back (the same data, the live port)
        assert unshipped(up) == 0
        assert store_seqs(up) == list(range(1, 12))
        assert chain.compare_shipped(up.db, up.analytics).compared == 11
    finally:
        down.close()
        up.close()


def test_only_one_shipper_runs_at_a_time(app):
    write_events(app, 3)
    with shipping._exclusive(app.db) as acquired:
        assert acquired
        assert shipping.ship(app.db, app.analytics).busy
        assert unshipped(app) == 3
    assert shipping.ship(app.db, app.analytics).shipped == 3
