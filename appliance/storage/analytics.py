"""Analytics (metrics, log index, audit, cost): chdb in-process (embedded) or a ClickHouse server.

Queries use ``%(name)s`` parameters, substituted by ``substitute`` for both backends alike. Every statement must run on chdb
and on ClickHouse server 18.16 (Debian's): DateTime + a milliseconds column, no
DateTime64, TTL, Map or window functions.

chdb allows one open session per data directory across all processes, so the embedded
backend opens a session per call under an inter-process file lock (about 40 ms); the web
workers and the Huey consumer then take turns instead of failing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import fcntl
import json
import pathlib
import re
import threading
from typing import Any, Iterable, Iterator, Mapping, Sequence

from appliance.config import Config

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


class ChdbAnalytics:
    def __init__(self, path: pathlib.Path, database: str):
        self.path = pathlib.Path(path)
        self.database = _ident(database)
        self.address = f"chdb:{self.path}"
        self._thread_lock = threading.Lock()

    @contextlib.contextmanager
    def _session(self) -> Iterator[Any]:
        from chdb import session as chdb_session  # heavy (~0.4 s, hundreds of MB): load on first use

        self.path.mkdir(parents=True, exist_ok=True)
        with self._thread_lock, open(self.path.parent / f".{self.path.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            sess = chdb_session.Session(str(self.path))
            try:
                sess.query(f"CREATE DATABASE IF NOT EXISTS {self.database}")
                sess.query(f"USE {self.database}")
                yield sess
            finally:
                sess.close()

    def _run(self, sess: Any, sql: str, fmt: str = "CSV") -> Any:
        try:
            return sess.query(sql, fmt)
        except Exception as exc:  # chdb raises its own ChdbError / RuntimeError types
            raise AnalyticsError(f"{exc} [query: {sql[:200]}]") from exc

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        with self._session() as sess:
            self._run(sess, substitute(sql, params))

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple]:
        with self._session() as sess:
            result = self._run(sess, substitute(sql, params), "JSONCompact")
        raw = result.bytes()
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
        with self._session() as sess:
            self._run(sess, f"{_insert_sql(table, columns)} {values}")
        return len(rows)

    def ping(self) -> None:
        self.query("SELECT 1")

    def close(self) -> None:
        return None


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
