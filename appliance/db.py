"""The main database: one SQLAlchemy engine per process, SQLite (WAL) or PostgreSQL."""

from __future__ import annotations

import contextlib
import pathlib
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy import event, orm

from appliance.config import Config


def make_engine(config: Config) -> sa.Engine:
    url = sa.engine.make_url(config.database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            pathlib.Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN and breaks SAVEPOINT; let
        # SQLAlchemy emit BEGIN so a transaction really starts where the code says.
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        return engine
    if url.get_backend_name() == "postgresql":
        return sa.create_engine(url, pool_size=config.database.pool_size, pool_pre_ping=True)
    raise ValueError(f"database.url: unsupported database {url.get_backend_name()!r} (use sqlite or postgresql)")


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    dbapi_conn.isolation_level = None  # see the "begin" listener above
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


class Database:
    """The engine plus a session factory; services take a ``Database`` and open sessions."""

    def __init__(self, config: Config):
        self.config = config
        self.engine = make_engine(config)
        self.sessionmaker = orm.sessionmaker(self.engine, expire_on_commit=False)

    @contextlib.contextmanager
    def session(self) -> Iterator[orm.Session]:
        """A session whose transaction commits when the block ends and rolls back on error."""
        with self.sessionmaker() as session, session.begin():
            yield session

    def close(self) -> None:
        self.engine.dispose()

    @property
    def address(self) -> str:
        url = self.engine.url
        if url.get_backend_name() == "sqlite":
            return f"sqlite:{url.database}"
        return f"postgresql://{url.host}:{url.port or 5432}/{url.database}"
