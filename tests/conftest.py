"""Shared fixtures: configurations over every backend, a migrated app, signed-in clients.

Backends are parametrised fixtures: a test that asks for ``db_config`` runs once on SQLite
and once on a real PostgreSQL server, and so on for the queue, pub/sub, object store and
analytics. The servers come from ``server_fixtures`` (throw-away, on free loopback ports).
"""

from __future__ import annotations

import collections
import re
import secrets
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from appliance.config import Config, load  # noqa: E402

pytest_plugins = ["server_fixtures", "logcorpus_fixtures"]

ADMIN_PASSWORD = "correct horse battery staple"


def make_config(data_dir: Path, **values) -> Config:
    """A configuration isolated from the machine: no files, no environment, only ``values``.

    Keys are dotted names written with ``__`` (``database__url="..."``).
    """
    overrides = {"data_dir": str(data_dir), "log.format": "text"}
    overrides.update({k.replace("__", "."): v for k, v in values.items()})
    return load(env={}, files=[], overrides=overrides)


def _unique(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


# -- one fixture per backend concern, parametrised over embedded | server -------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def db_backend(request) -> str:
    return request.param


@pytest.fixture
def db_values(db_backend, request) -> dict:
    if db_backend == "postgresql":
        server = request.getfixturevalue("postgres_server")
        return {"database__url": server.create_database(_unique("prts"))}
    return {}


@pytest.fixture(params=["sqlite", "redis"])
def queue_backend(request) -> str:
    return request.param


@pytest.fixture
def queue_values(queue_backend, request) -> dict:
    if queue_backend == "redis":
        server = request.getfixturevalue("redis_server")
        _flush_redis(server.url)
        return {"queue__backend": "redis", "queue__url": server.url}
    return {}


@pytest.fixture(params=["memory", "redis"])
def pubsub_backend(request) -> str:
    return request.param


@pytest.fixture
def pubsub_values(pubsub_backend, request) -> dict:
    if pubsub_backend == "redis":
        server = request.getfixturevalue("redis_server")
        return {"pubsub__backend": "redis", "pubsub__url": server.url}
    return {}


@pytest.fixture(params=["directory", "s3"])
def objects_backend(request) -> str:
    return request.param


@pytest.fixture
def objects_values(objects_backend, request) -> dict:
    if objects_backend == "s3":
        server = request.getfixturevalue("s3_server")
        return {
            "objects__backend": "s3",
            "objects__endpoint": server.endpoint,
            "objects__access_key": server.access_key,
            "objects__secret_key": server.secret_key,
            "objects__bucket": _unique("prts").replace("_", "-"),
            "objects__secure": False,
        }
    return {}


@pytest.fixture(params=["chdb", "clickhouse"])
def analytics_backend(request) -> str:
    return request.param


@pytest.fixture
def analytics_values(analytics_backend, request) -> dict:
    if analytics_backend == "clickhouse":
        server = request.getfixturevalue("clickhouse_server")
        return {
            "analytics__backend": "clickhouse",
            "analytics__host": server.host,
            "analytics__port": server.tcp_port,
            "analytics__database": _unique("prts"),
        }
    return {}


def _flush_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushall()
    finally:
        client.close()


# -- a migrated appliance and the web app over it ------------------------------------------


@pytest.fixture
def config(tmp_path) -> Config:
    """Embedded defaults in a temp data directory."""
    return make_config(tmp_path / "data")


@pytest.fixture
def appliance(config):
    from appliance import migrate
    from appliance.context import Appliance

    app = Appliance(config)
    migrate.upgrade(app.db)
    yield app
    app.close()


@pytest.fixture
def admin(appliance):
    from appliance.accounts import users

    with appliance.db.session() as s:
        return users.create_user(s, "root", ADMIN_PASSWORD, is_admin=True)


def web_app_for(appliance, config=None):
    """The Flask app over ``appliance`` (or over ``config``, sharing the appliance's backends),
    in testing mode. The app makes its own Appliance from the config; ours replaces it so the
    test and the app see one database."""
    from webapp import create_app

    app = create_app(config or appliance.config)
    app.config.update(TESTING=True)
    app.extensions["prts"] = appliance
    return app


@pytest.fixture
def flask_app(appliance):
    return web_app_for(appliance)


@pytest.fixture
def client(flask_app):
    return flask_app.test_client()


_CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')


def csrf_token(html: str) -> str:
    match = _CSRF.search(html) or re.search(r'<meta name="csrf-token" content="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return next(g for g in match.groups() if g)


class AuthActions:
    """Sign in and out through the real forms, CSRF token included."""

    def __init__(self, client):
        self.client = client

    def login(self, username: str = "root", password: str = ADMIN_PASSWORD, **kw):
        token = csrf_token(self.client.get("/login").get_data(as_text=True))
        return self.client.post("/login", data={"username": username, "password": password, "csrf_token": token}, **kw)

    def logout(self):
        token = csrf_token(self.client.get("/").get_data(as_text=True))
        return self.client.post("/logout", data={"csrf_token": token})


def sign_in(client, username: str, password: str = ADMIN_PASSWORD) -> None:
    """Sign in through the form; fails the test when the sign-in is refused."""
    response = AuthActions(client).login(username, password)
    assert response.status_code == 302, response.get_data(as_text=True)


def add_member(app, project_id: int, username: str, role, password: str = ADMIN_PASSWORD) -> None:
    """A new local account with ``role`` on the project."""
    from appliance.accounts import organisations, users
    from appliance.models import Project

    with app.db.session() as s:
        user = users.create_user(s, username, password)
        organisations.grant(s, user, s.get(Project, project_id), role)


def audit_events(app, action: str) -> list:
    """The audit events of one action, oldest first."""
    import sqlalchemy as sa

    from appliance.models import AuditEvent

    with app.db.session() as s:
        return list(s.scalars(sa.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)))


def linked_identities(app) -> list[tuple[str, str, str]]:
    """(username, provider, subject) of every external identity, oldest link first."""
    import sqlalchemy as sa

    from appliance.models import ExternalIdentity, User

    with app.db.session() as s:
        rows = s.execute(sa.select(User.username, ExternalIdentity.provider, ExternalIdentity.subject)
                         .join(User, User.id == ExternalIdentity.user_id).order_by(ExternalIdentity.id))
        return [tuple(row) for row in rows]


@pytest.fixture
def auth(client) -> AuthActions:
    return AuthActions(client)


# -- a closing line saying which backends the run exercised ------------------------------

BACKEND_FIXTURES = ("db_backend", "queue_backend", "pubsub_backend", "objects_backend", "analytics_backend")
_backend_results: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)


def pytest_runtest_logreport(report):
    if report.when != "call" and not (report.when == "setup" and report.outcome != "passed"):
        return
    for key in getattr(report, "prts_backends", ()):
        _backend_results[key][report.outcome] += 1


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    params = getattr(getattr(item, "callspec", None), "params", {})
    report.prts_backends = [f"{name.removesuffix('_backend')}={params[name]}" for name in BACKEND_FIXTURES if name in params]


def pytest_terminal_summary(terminalreporter):
    if not _backend_results:
        return
    terminalreporter.section("backends exercised")
    for key in sorted(_backend_results):
        counts = _backend_results[key]
        terminalreporter.write_line(f"{key:<24} " + ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())))
