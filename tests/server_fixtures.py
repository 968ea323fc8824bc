"""Pytest plugin: session-wide real servers, each started when a test first asks for it.

Load it with `pytest_plugins = ["server_fixtures"]` in tests/conftest.py
(or `-p server_fixtures`).
A missing server program fails the test instead of skipping it: integration tests that
silently skip would hide a broken environment.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

import pytest

from servers import (
    ClickHouseServer,
    LdapServer,
    PostgresServer,
    RedisServer,
    SeaweedS3Server,
    ServerBinaryNotFoundError,
    ServerStartError,
)

_S = TypeVar(
    "_S", PostgresServer, RedisServer, SeaweedS3Server, ClickHouseServer, LdapServer
)


def _serve(server: _S) -> Iterator[_S]:
    # The messages already carry what matters (package to install, or command line
    # and log tail); failing outside the `except` keeps tracebacks from burying them.
    failure = None
    try:
        server.start()
    except ServerBinaryNotFoundError as exc:
        failure = f"cannot run {server.name}: {exc}"
    except ServerStartError as exc:
        failure = str(exc)
    if failure is not None:
        pytest.fail(failure, pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PostgresServer]:
    yield from _serve(PostgresServer(tmp_path_factory.mktemp("postgres")))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    yield from _serve(RedisServer(tmp_path_factory.mktemp("redis")))


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3Server]:
    yield from _serve(SeaweedS3Server(tmp_path_factory.mktemp("seaweedfs")))


@pytest.fixture(scope="session")
def clickhouse_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ClickHouseServer]:
    yield from _serve(ClickHouseServer(tmp_path_factory.mktemp("clickhouse")))


@pytest.fixture(scope="session")
def ldap_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LdapServer]:
    yield from _serve(LdapServer(tmp_path_factory.mktemp("slapd")))
