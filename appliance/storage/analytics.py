"""Analytics (metrics, log index, audit, cost): chdb in-process (embedded) or a ClickHouse server.

Queries use ``%(name)s`` parameters, substituted by ``substitute`` for both backends alike. Every statement must run on chdb
and on ClickHouse server 18.16 (Debian's): DateTime + a milliseconds column, no
DateTime64, TTL, Map or window functions.

chdb allows one open session per data directory across all processes, and leaks threads
and descriptors each time a session opens and closes. The embedded backend therefore runs
its statements in a child process (``chdb_child``) that holds the directory's lock and one
session while it is busy and exits after ``CHDB_IDLE_SECONDS`` without a statement: the
web workers and the Huey consumer take turns, and what chdb leaks dies with the child.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import pathlib
import re
import subprocess
import sys
import threading
from typing import Any, Iterable, Mapping, Sequence

from appliance.config import Config
from appliance.storage import chdb_child

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PARAM = re.compile(r"%\((\w+)\)s")


class AnalyticsError(Exception):
    """The analytics backend refused a statement or could not be reached."""


def _ident(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"invalid identifier {name!r}")
    return name


def quote(value: Any) -> str:
    """A ClickHouse SQL literal for ``value``."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, decimal.Decimal)):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return {"nan": "nan", "inf": "inf", "-inf": "-inf"}[repr(value)]
        return repr(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return "'" + value.strftime("%Y-%m-%d %H:%M:%S") + "'"
    if isinstance(value, dt.date):
        return "'" + value.isoformat() + "'"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(quote(v) for v in value) + "]"
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace("'", "\\'")
        escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t").replace("\0", "\\0")
        return "'" + escaped + "'"
    raise TypeError(f"cannot use a {type(value).__name__} as a ClickHouse value")


def substitute(sql: str, params: Mapping[str, Any] | None) -> str:
    """Replace each ``%(name)s`` by the quoted value; both backends get the same text."""
    params = params or {}

    def repl(match: re.Match) -> str:
        name = match.group(1)
        if name not in params:
            raise KeyError(f"query parameter {name!r} was not given")
        return quote(params[name])

    return _PARAM.sub(repl, sql)


def _insert_sql(table: str, columns: Sequence[str]) -> str:
    return f"INSERT INTO {_ident(table)} ({', '.join(_ident(c) for c in columns)}) VALUES"


# -- result conversion for chdb (clickhouse-driver converts natively) --------------------

_NULLABLE = re.compile(r"^Nullable\((.*)\)$")
_WRAPPED = re.compile(r"^(?:LowCardinality)\((.*)\)$")


def _convert(value: Any, ch_type: str) -> Any:
    if value is None:
        return None
    if m := (_NULLABLE.match(ch_type) or _WRAPPED.match(ch_type)):
        return _convert(value, m.group(1))
    if ch_type.startswith("Array(") and isinstance(value, list):
        return [_convert(v, ch_type[6:-1]) for v in value]
    if ch_type.startswith(("Int", "UInt")):
        return int(value)
    if ch_type.startswith("Float"):
        return float(value)
    if ch_type.startswith("Decimal"):
        return decimal.Decimal(str(value))
    if ch_type.startswith("DateTime"):
        return dt.datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.timezone.utc)
    if ch_type == "Date":
        return dt.date.fromisoformat(value)
    return value


def _utc(value: Any) -> Any:
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value


# -- backends -----------------------------------------------------------------------------


CHDB_IDLE_SECONDS = 2.0


class ChdbAnalytics:
    def __init__(self, path: pathlib.Path, database: str, idle_seconds: float = CHDB_IDLE_SECONDS):
        self.path = pathlib.Path(path)
        self.database = _ident(database)
        self.address = f"chdb:{self.path}"
        self.idle_seconds = idle_seconds
        self._lock = threading.Lock()  # one statement at a time on the child's pipe
        self._child: subprocess.Popen | None = None
        self._idle_timer: threading.Timer | None = None

    def _start_child(self) -> subprocess.Popen:
        child = subprocess.Popen(
            [sys.executable, "-m", "appliance.storage.chdb_child", str(self.path), self.database],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True,
        )
        if child.stdout.read(1) != b"R":
            code = child.wait()
            raise AnalyticsError(f"{self.address}: the analytics engine did not start (exit status {code})")
        return child

    def _stop_child(self) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        child.stdin.close()  # the child closes its session and exits on end of input
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        child.stdout.close()

    def _stop_when_idle(self) -> None:
        with self._lock:
            self._stop_child()

    def _run(self, sql: str, fmt: str = "CSV") -> bytes:
        with self._lock:
            if self._idle_timer is not None:
                self._idle_timer.cancel()
            if self._child is None or self._child.poll() is not None:
                self._child = self._start_child()
            fmt_bytes, sql_bytes = fmt.encode(), sql.encode()
            try:
                self._child.stdin.write(chdb_child.REQUEST.pack(len(fmt_bytes), len(sql_bytes)) + fmt_bytes + sql_bytes)
                self._child.stdin.flush()
                header = chdb_child.read_exactly(self._child.stdout, chdb_child.ANSWER.size)
                status, size = chdb_child.ANSWER.unpack(header) if header else (None, 0)
                payload = chdb_child.read_exactly(self._child.stdout, size) if header else None
            except BrokenPipeError:
                payload = None
            if payload is None:
                code = self._child.poll()
                self._stop_child()
                raise AnalyticsError(f"{self.address}: the analytics engine exited (status {code}) [query: {sql[:200]}]")
            self._idle_timer = threading.Timer(self.idle_seconds, self._stop_when_idle)
            self._idle_timer.daemon = True
            self._idle_timer.start()
        if status != 0:
            raise AnalyticsError(f"{payload.decode(errors='replace')} [query: {sql[:200]}]")
        return payload

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self._run(substitute(sql, params))

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple]:
        raw = self._run(substitute(sql, params), "JSONCompact")
        if not raw.strip():
            return []
        doc = json.loads(raw)
        types = [col["type"] for col in doc["meta"]]
        return [tuple(_convert(v, t) for v, t in zip(row, types)) for row in doc["data"]]

    def insert(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        rows = list(rows)
        if not rows:
            return 0
        values = ", ".join("(" + ", ".join(quote(v) for v in row) + ")" for row in rows)
        self._run(f"{_insert_sql(table, columns)} {values}")
        return len(rows)

    def ping(self) -> None:
        self.query("SELECT 1")

    def close(self) -> None:
        with self._lock:
            if self._idle_timer is not None:
                self._idle_timer.cancel()
            self._stop_child()


class ClickHouseAnalytics:
    def __init__(self, host: str, port: int, database: str, user: str, password: str):
        from clickhouse_driver import Client

        self.database = _ident(database)
        self.address = f"clickhouse://{host}:{port}/{database}"
        self._bootstrap = Client(host=host, port=port, user=user, password=password, connect_timeout=5)
        self._client = Client(host=host, port=port, user=user, password=password, database=database, connect_timeout=5)
        self._database_ready = False
        self._lock = threading.Lock()  # a clickhouse-driver Client is not thread-safe

    def _call(self, sql: str, params=None, **kw):
        from clickhouse_driver import errors

        with self._lock:
            try:
                if not self._database_ready:
                    self._bootstrap.execute(f"CREATE DATABASE IF NOT EXISTS {self.database}")
                    self._bootstrap.disconnect()
                    self._database_ready = True
                return self._client.execute(sql, params, **kw)
            except (errors.Error, OSError, EOFError) as exc:
                self._client.disconnect()
                raise AnalyticsError(f"{self.address}: {exc}") from exc

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self._call(substitute(sql, params))

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple]:
        return [tuple(_utc(v) for v in row) for row in self._call(substitute(sql, params))]

    def insert(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        rows = [list(row) for row in rows]
        if not rows:
            return 0
        self._call(_insert_sql(table, columns), rows)
        return len(rows)

    def ping(self) -> None:
        self.query("SELECT 1")

    def close(self) -> None:
        self._client.disconnect()


Analytics = ChdbAnalytics | ClickHouseAnalytics


def make_analytics(config: Config) -> Analytics:
    if config.analytics.backend == "clickhouse":
        a = config.analytics
        return ClickHouseAnalytics(a.host, a.port, a.database, a.user, a.password)
    return ChdbAnalytics(config.analytics_path, config.analytics.database)


# -- schema ----------------------------------------------------------------------------------

# Append-only: each entry runs once, in order, recorded in schema_versions.
SCHEMA: tuple[tuple[int, str], ...] = (
    (
        1,
        """CREATE TABLE IF NOT EXISTS events (
            at DateTime('UTC'),
            at_ms UInt16,
            kind String,
            actor String,
            project String,
            detail String
        ) ENGINE = MergeTree() PARTITION BY toYYYYMM(at) ORDER BY (kind, at)""",
    ),
    (
        2,
        # Shipped copies of the main database's audit outbox (appliance.audit.shipping).
        # The shipper never inserts a seq that is already here; ReplacingMergeTree keyed by
        # seq is the second line against a duplicate.
        """CREATE TABLE IF NOT EXISTS audit_events (
            seq UInt64,
            at DateTime('UTC'),
            at_ms UInt16,
            actor String,
            actor_id Nullable(Int64),
            action String,
            target String,
            project_id Nullable(Int64),
            organisation_id Nullable(Int64),
            address String,
            outcome String,
            detail String,
            prev_hash String,
            hash String
        ) ENGINE = ReplacingMergeTree() PARTITION BY toYYYYMM(at) ORDER BY seq""",
    ),
)


def migrate_analytics(analytics: Analytics) -> list[int]:
    """Apply the schema entries not applied yet; returns their versions."""
    analytics.execute(
        "CREATE TABLE IF NOT EXISTS schema_versions (version UInt32, applied_at DateTime('UTC')) "
        "ENGINE = MergeTree() ORDER BY version"
    )
    done = {row[0] for row in analytics.query("SELECT version FROM schema_versions")}
    applied = []
    for version, ddl in SCHEMA:
        if version in done:
            continue
        analytics.execute(ddl)
        analytics.insert("schema_versions", ["version", "applied_at"], [(version, dt.datetime.now(dt.timezone.utc))])
        applied.append(version)
    return applied
