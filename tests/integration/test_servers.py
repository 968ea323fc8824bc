"""The server fixtures give working servers; failed starts explain themselves."""

from __future__ import annotations

import io
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import ldap3
import ldap3.core.exceptions
import minio.error
import psycopg
import pytest
import redis
from clickhouse_driver import Client

from servers import (
    ClickHouseServer,
    LdapServer,
    PostgresServer,
    RedisServer,
    SeaweedS3Server,
    ServerBinaryNotFoundError,
    ServerStartError,
    free_port,
)


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port held by a listening socket for the duration of the test."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_postgres_database_takes_tables(postgres_server: PostgresServer) -> None:
    assert postgres_server.port not in (0, 5432)
    assert (
        postgres_server.url
        == f"postgresql+psycopg://app@127.0.0.1:{postgres_server.port}/postgres"
    )

    url = postgres_server.create_database("servers_check")

    assert url.endswith("/servers_check")
    with psycopg.connect(postgres_server.conninfo("servers_check")) as conn:
        conn.execute("CREATE TABLE item (id serial PRIMARY KEY, name text NOT NULL)")
        conn.execute("INSERT INTO item (name) VALUES (%s)", ("probe",))
        assert conn.execute("SELECT name FROM item").fetchall() == [("probe",)]
        assert conn.execute("SHOW fsync").fetchone() == ("off",)


def test_redis_set_get(redis_server: RedisServer) -> None:
    assert redis_server.port not in (0, 6379)
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.set("servers-check", "value")
        assert client.get("servers-check") == b"value"
    finally:
        client.close()


def test_s3_put_get_and_credentials_enforced(s3_server: SeaweedS3Server) -> None:
    client = s3_server.client()
    client.make_bucket("servers-check")
    client.put_object("servers-check", "a/b.txt", io.BytesIO(b"hello"), 5)

    response = client.get_object("servers-check", "a/b.txt")
    try:
        assert response.read() == b"hello"
    finally:
        response.close()
        response.release_conn()

    wrong = minio.Minio(
        s3_server.endpoint,
        access_key=s3_server.access_key,
        secret_key="not-" + s3_server.secret_key,
        secure=False,
        region=s3_server.region,
    )
    with pytest.raises(minio.error.S3Error) as refused:
        wrong.get_object("servers-check", "a/b.txt")
    assert refused.value.code == "SignatureDoesNotMatch"


def test_clickhouse_select_over_native_protocol(
    clickhouse_server: ClickHouseServer,
) -> None:
    clickhouse_server.create_database("servers_check")
    client = Client(
        host=clickhouse_server.host,
        port=clickhouse_server.tcp_port,
        user=clickhouse_server.user,
        password=clickhouse_server.password,
        database="servers_check",
    )
    try:
        assert client.execute("SELECT 1") == [(1,)]
        client.execute("CREATE TABLE t (id UInt32) ENGINE = MergeTree ORDER BY id")
        client.execute("INSERT INTO t (id) VALUES", [(1,), (2,)])
        assert client.execute("SELECT sum(id) FROM t") == [(3,)]
    finally:
        client.disconnect()

    by_url = Client.from_url(clickhouse_server.database_url("servers_check"))
    try:
        assert by_url.execute("SELECT count() FROM t") == [(2,)]
    finally:
        by_url.disconnect()


def test_ldap_search_after_add_ldif(ldap_server: LdapServer) -> None:
    ldap_server.add_ldif(
        f"""\
dn: ou=people,{ldap_server.base_dn}
objectClass: organizationalUnit
ou: people

dn: uid=amiya,ou=people,{ldap_server.base_dn}
objectClass: inetOrgPerson
uid: amiya
cn: Amiya
sn: Amiya
mail: amiya@prts.test
userPassword: leader
"""
    )
    server = ldap3.Server(ldap_server.url)
    with ldap3.Connection(
        server, ldap_server.admin_dn, ldap_server.admin_password, auto_bind=True
    ) as conn:
        conn.search(ldap_server.base_dn, "(uid=amiya)", attributes=["mail"])
        assert [str(e.mail) for e in conn.entries] == ["amiya@prts.test"]

    user_dn = f"uid=amiya,ou=people,{ldap_server.base_dn}"
    with ldap3.Connection(server, user_dn, "leader", auto_bind=True) as conn:
        assert conn.extend.standard.who_am_i() == f"dn:{user_dn}"
    with pytest.raises(ldap3.core.exceptions.LDAPBindError):
        ldap3.Connection(server, user_dn, "wrong", auto_bind=True)


def test_clickhouse_start_failure_reports_log_tail(
    tmp_path: Path, busy_port: int
) -> None:
    server = ClickHouseServer(tmp_path, http_port=busy_port)

    with pytest.raises(ServerStartError) as failed:
        server.start()

    message = str(failed.value)
    assert "clickhouse-server --config-file=" in message
    assert f"Address already in use: 127.0.0.1:{busy_port}" in message
    assert server.pid is None
    server.stop()  # idempotent after a failed start


def test_postgres_start_failure_reports_log_tail(
    tmp_path: Path, busy_port: int
) -> None:
    server = PostgresServer(tmp_path, port=busy_port)

    with pytest.raises(ServerStartError) as failed:
        server.start()

    message = str(failed.value)
    assert f"-p {busy_port}" in message
    assert "could not bind IPv4 address" in message
    assert server.pid is None


def test_stop_ends_the_process_and_is_idempotent(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start()
    pid = server.pid
    assert pid is not None and _is_running(pid)

    server.stop()
    server.stop()

    assert server.pid is None
    assert not _is_running(pid)


def test_missing_binary_names_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(ServerBinaryNotFoundError, match="Debian package redis-server"):
        RedisServer(tmp_path).start()


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))
