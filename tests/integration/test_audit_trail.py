"""The audit outbox in the main database: concurrent writers make one unbroken chain, and
``verify_chain`` / ``prts audit verify`` name the first changed, removed or reordered event.
Every test runs on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from appliance import audit, migrate
from appliance.audit import chain
from appliance.context import Appliance
from appliance.models import AuditChainHead, AuditEvent
from conftest import make_config
from test_cli import prts

WRITERS = 4
EVENTS_EACH = 50


@pytest.fixture
def app(tmp_path, db_values):
    app = Appliance(make_config(tmp_path / "data", **db_values))
    migrate.upgrade(app.db)
    yield app
    app.close()


def write_events(app, count: int, actor: str = "alice") -> None:
    for i in range(count):
        with app.db.session() as s:
            audit.record(s, "variable.set", actor=actor, target=f"VAR_{i}", address="192.0.2.7", detail=f"n={i}")


def events(app) -> list[AuditEvent]:
    with app.db.session() as s:
        return list(s.scalars(sa.select(AuditEvent).order_by(AuditEvent.seq)))


def test_concurrent_writers_make_one_unbroken_chain(app):
    start = threading.Barrier(WRITERS)
    failures: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            start.wait()  # all four race for the very first event, which also creates the chain head
            write_events(app, EVENTS_EACH, actor=f"writer{n}")
        except BaseException as exc:  # reported to the test thread below
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    rows = events(app)
    assert [e.seq for e in rows] == list(range(1, WRITERS * EVENTS_EACH + 1))
    assert {e.actor for e in rows} == {f"writer{n}" for n in range(WRITERS)}
    assert all(later.prev_hash == earlier.hash for earlier, later in zip(rows, rows[1:]))
    result = chain.verify_chain(app.db)
    assert (result.verified, result.problem) == (WRITERS * EVENTS_EACH, None)
    with app.db.session() as s:
        head = s.get(AuditChainHead, 1)
        assert (head.last_seq, head.last_hash) == (rows[-1].seq, rows[-1].hash)


def test_an_event_rolls_back_with_its_action(app):
    write_events(app, 2)
    with pytest.raises(RuntimeError):
        with app.db.session() as s:
            audit.record(s, "variable.deleted", actor="alice", target="GONE")
            raise RuntimeError("the action failed after recording")
    write_events(app, 1)
    assert [e.seq for e in events(app)] == [1, 2, 3]
    assert "GONE" not in {e.target for e in events(app)}
    assert chain.verify_chain(app.db).problem is None


def test_bad_outcome_is_refused(app):
    with pytest.raises(ValueError, match="unknown audit outcome"):
        with app.db.session() as s:
            audit.record(s, "x", actor="a", outcome="maybe")


def tamper(app, sql: str, **params) -> None:
    with app.db.engine.begin() as conn:
        for statement in sql.split("; "):
            conn.execute(sa.text(statement), {k: v for k, v in params.items() if f":{k}" in statement})


@pytest.mark.parametrize("sql, params, seq, kind", [
    ("UPDATE audit_events SET actor = 'mallory' WHERE seq = :seq", {"seq": 5}, 5, "changed"),
    ("UPDATE audit_events SET outcome = 'failure' WHERE seq = :seq", {"seq": 1}, 1, "changed"),
    ("UPDATE audit_events SET detail = detail || ' ' WHERE seq = :seq", {"seq": 8}, 8, "changed"),
    ("DELETE FROM audit_events WHERE seq = :seq", {"seq": 4}, 4, "removed"),
    ("DELETE FROM audit_events WHERE seq IN (1, 2)", {}, 1, "removed"),
    ("DELETE FROM audit_events WHERE seq = :seq", {"seq": 8}, 8, "removed"),  # the last one
    ("UPDATE audit_events SET seq = seq + 100 WHERE seq > :seq; UPDATE audit_chain_head SET last_seq = 108",
     {"seq": 6}, 7, "gap"),
    ("UPDATE audit_events SET prev_hash = :h WHERE seq = :seq", {"seq": 3, "h": "f" * 64}, 3, "broken"),
    ("UPDATE audit_chain_head SET last_seq = 6", {}, 7, "head"),
])
def test_verify_names_the_first_bad_event(app, sql, params, seq, kind):
    write_events(app, 8)
    assert chain.verify_chain(app.db).verified == 8
    tamper(app, sql, **params)
    problem = chain.verify_chain(app.db).problem
    assert (problem.seq, problem.kind) == (seq, kind), str(problem)


def test_swapping_two_events_is_reported_as_reordered(app):
    write_events(app, 8)
    # seq is unique: move one out of the way first, as an attacker with SQL access would.
    tamper(app, "UPDATE audit_events SET seq = -1 WHERE seq = 5")
    tamper(app, "UPDATE audit_events SET seq = 5 WHERE seq = 6")
    tamper(app, "UPDATE audit_events SET seq = 6 WHERE seq = -1")
    result = chain.verify_chain(app.db)
    assert (result.verified, result.problem.seq, result.problem.kind) == (4, 5, "reordered")
    assert "seq 6" in result.problem.message


def test_changing_an_event_and_its_hash_breaks_the_next_link(app):
    write_events(app, 5)
    with app.db.session() as s:
        event = s.scalar(sa.select(AuditEvent).where(AuditEvent.seq == 2))
        event.actor = "mallory"
        event.hash = audit.event_hash(event)  # a careful forger recomputes the hash too
    problem = chain.verify_chain(app.db).problem
    assert (problem.seq, problem.kind) == (3, "broken")


def test_prts_audit_verify_exit_codes(tmp_path, db_values):
    env = {"PRTS_DATABASE_URL": db_values["database__url"]} if db_values else {}
    assert prts(tmp_path, "migrate", **env).returncode == 0
    app = Appliance(make_config(tmp_path, **db_values))
    try:
        write_events(app, 6)
        good = prts(tmp_path, "audit", "verify", **env)
        assert (good.returncode, good.stdout.strip()) == (0, "6 events verified; 0 shipped copies match"), good.stderr
        tamper(app, "DELETE FROM audit_events WHERE seq = 3")
        bad = prts(tmp_path, "audit", "verify", "--no-analytics", **env)
        assert bad.returncode == 1
        assert "seq 3: removed" in bad.stderr and "2 events verified before it" in bad.stderr
    finally:
        app.close()
