"""Analytics on chdb (in-process) and on a real ClickHouse server (Debian's 18.16)."""

import datetime as dt
import multiprocessing
import os

import pytest

from appliance.storage.analytics import SCHEMA, AnalyticsError, make_analytics, migrate_analytics, quote
from conftest import make_config

UTC = dt.timezone.utc


@pytest.fixture
def analytics(tmp_path, analytics_values):
    a = make_analytics(make_config(tmp_path, **analytics_values))
    yield a
    a.close()


def test_schema_migrates_once(analytics):
    assert migrate_analytics(analytics) == [version for version, _ in SCHEMA]
    assert migrate_analytics(analytics) == []
    assert analytics.query("SELECT count() FROM events") == [(0,)]


def record_event(analytics, kind: str, *, actor: str = "", project: str = "", detail: str = "",
                 at: dt.datetime | None = None) -> None:
    """A row of the schema's ``events`` table, DateTime plus milliseconds."""
    at = at or dt.datetime.now(UTC)
    analytics.insert("events", ["at", "at_ms", "kind", "actor", "project", "detail"],
                     [(at.replace(microsecond=0), at.microsecond // 1000, kind, actor, project, detail)])


def test_insert_and_query_with_params(analytics):
    migrate_analytics(analytics)
    at = dt.datetime(2026, 11, 22, 10, 30, 15, 250_000, tzinfo=UTC)
    record_event(analytics, "login", actor="o'brien \\ \n", project="acme/web", at=at)
    record_event(analytics, "login", actor="bob", at=at + dt.timedelta(hours=1))
    rows = analytics.query("SELECT at, at_ms, actor FROM events WHERE actor = %(who)s", {"who": "o'brien \\ \n"})
    assert rows == [(dt.datetime(2026, 11, 22, 10, 30, 15, tzinfo=UTC), 250, "o'brien \\ \n")]
    hourly = analytics.query(
        "SELECT toStartOfHour(at) AS h, count() FROM events GROUP BY h ORDER BY h")
    assert hourly == [(dt.datetime(2026, 11, 22, 10, tzinfo=UTC), 1), (dt.datetime(2026, 11, 22, 11, tzinfo=UTC), 1)]


def test_bulk_insert_and_aggregates(analytics):
    analytics.execute("CREATE TABLE samples (at DateTime('UTC'), v Float64, tags Array(String)) "
                      "ENGINE = MergeTree() ORDER BY at")
    base = dt.datetime(2026, 1, 1, tzinfo=UTC)
    rows = [(base + dt.timedelta(seconds=i), float(i), ["a", "b"] if i % 2 else []) for i in range(1000)]
    assert analytics.insert("samples", ["at", "v", "tags"], rows) == 1000
    [(count, total, maximum)] = analytics.query("SELECT count(), sum(v), max(v) FROM samples")
    assert (count, total, maximum) == (1000, 499500.0, 999.0)
    assert analytics.query("SELECT tags FROM samples WHERE v = 1") == [(["a", "b"],)]


def test_injection_through_params_is_inert(analytics):
    migrate_analytics(analytics)
    evil = "x'); DROP TABLE events; --"
    rows = analytics.query("SELECT count() FROM events WHERE actor = %(a)s", {"a": evil})
    assert rows == [(0,)]
    assert analytics.query("SELECT count() FROM events") == [(0,)]


def test_errors_are_named(analytics):
    with pytest.raises(AnalyticsError):
        analytics.query("SELECT * FROM no_such_table")
    with pytest.raises(KeyError, match="'missing'"):
        analytics.query("SELECT %(missing)s")
    with pytest.raises(ValueError, match="invalid identifier"):
        analytics.insert("events; DROP", ["a"], [(1,)])


def test_quote():
    assert quote("a'b\\c") == "'a\\'b\\\\c'"
    assert quote(None) == "NULL" and quote(True) == "1" and quote([1, "x"]) == "[1, 'x']"
    assert quote(dt.datetime(2026, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1)))) == "'2026-01-01 00:00:00'"
    with pytest.raises(TypeError):
        quote(object())


def _write_events(path: str, n: int) -> None:
    from appliance.storage.analytics import ChdbAnalytics

    a = ChdbAnalytics(path, "prts")
    for i in range(n):
        record_event(a, "proc", detail=str(i))


def test_chdb_is_shared_by_several_processes(tmp_path):
    """chdb locks its directory; the adapter serialises processes instead of failing them."""
    from appliance.storage.analytics import ChdbAnalytics

    path = str(tmp_path / "analytics")
    migrate_analytics(ChdbAnalytics(path, "prts"))
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_events, args=(path, 5)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert ChdbAnalytics(path, "prts").query("SELECT count() FROM events WHERE kind = 'proc'") == [(15,)]


def _threads_and_descriptors() -> tuple[int, int]:
    return len(os.listdir("/proc/self/task")), len(os.listdir("/proc/self/fd"))


def test_a_long_running_process_does_not_grow_with_each_engine_start(tmp_path):
    """chdb 4.4 leaks about five threads and seven descriptors per session opened over
    MergeTree tables; the sessions live in a child process, so the appliance's own
    processes stay flat however often the engine starts and stops."""
    from appliance.storage.analytics import ChdbAnalytics

    a = ChdbAnalytics(tmp_path / "analytics", "prts")
    migrate_analytics(a)
    record_event(a, "warm-up")
    a.close()
    before = _threads_and_descriptors()
    for i in range(15):
        record_event(a, "cycle", detail=str(i))
        assert a.query("SELECT count() FROM events") == [(i + 2,)]
        a.close()
    threads, descriptors = _threads_and_descriptors()
    assert threads - before[0] <= 2 and descriptors - before[1] <= 4, (before, (threads, descriptors))


def test_an_idle_engine_lets_another_process_in(tmp_path):
    from appliance.storage.analytics import ChdbAnalytics

    first = ChdbAnalytics(tmp_path / "analytics", "prts", idle_seconds=0.2)
    second = ChdbAnalytics(tmp_path / "analytics", "prts", idle_seconds=0.2)
    first.execute("CREATE TABLE t (x UInt8) ENGINE = MergeTree() ORDER BY x")
    # Without the idle release the second engine would wait for the directory forever.
    second.insert("t", ["x"], [(1,)])
    first.insert("t", ["x"], [(2,)])
    assert first.query("SELECT sum(x) FROM t") == [(3,)]
    first.close()
    second.close()


def test_an_engine_that_died_is_started_again(tmp_path):
    from appliance.storage.analytics import ChdbAnalytics

    a = ChdbAnalytics(tmp_path / "analytics", "prts")
    a.ping()
    a._child.kill()
    a._child.wait()
    a.ping()
    a.close()
