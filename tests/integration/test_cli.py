"""The ``prts`` command line, run as a real subprocess against a data directory."""

import os
import subprocess
import sys

import pytest

from appliance.accounts import policy, users
from appliance.accounts.organisations import get_project
from appliance.context import Appliance
from appliance.models import Role
from conftest import make_config

PASSWORD = "a long enough password"


def prts_env(data_dir, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRTS_")}
    env.update(PRTS_DATA_DIR=str(data_dir), PRTS_LOG_FORMAT="text", PRTS_CONFIG="", **extra)
    return env


def prts(data_dir, *args, input=None, **extra):
    return subprocess.run([sys.executable, "-m", "appliance", *args], input=input, capture_output=True, text=True,
                          env=prts_env(data_dir, **extra), timeout=120)


@pytest.fixture
def data_dir(tmp_path, db_values):
    """A migrated data directory; with PostgreSQL the URL travels in the environment."""
    env = {"PRTS_DATABASE_URL": db_values["database__url"]} if db_values else {}
    result = prts(tmp_path, "migrate", **env)
    assert result.returncode == 0, result.stderr
    return tmp_path, env


def test_admin_commands_build_a_project_with_members(data_dir, db_values):
    path, env = data_dir
    assert prts(path, "user", "create", "alice", "--admin", "--email", "alice@example.test", input=PASSWORD + "\n", **env).returncode == 0
    assert prts(path, "user", "create", "bob", input=PASSWORD + "\n", **env).returncode == 0
    assert prts(path, "org", "create", "acme", **env).returncode == 0
    result = prts(path, "project", "create", "acme/web", "--member", "bob:developer", "--member", "alice:viewer", **env)
    assert result.returncode == 0, result.stderr
    assert "created project acme/web" in result.stdout

    app = Appliance(make_config(path, **db_values))
    with app.db.session() as s:
        bob = users.get_user(s, "bob")
        assert users.authenticate(s, "bob", PASSWORD) is not None  # the piped password was stored
        assert users.get_user(s, "alice").is_admin and users.get_user(s, "alice").email == "alice@example.test"
        assert policy.role_on_project(s, bob, get_project(s, "acme/web")) is Role.DEVELOPER
    app.close()


@pytest.mark.parametrize(
    "args, stdin, message",
    [
        (["user", "create", "bad name"], PASSWORD, "username: may contain only"),
        (["user", "create", "carl"], "short", "password: must be at least 12"),
        (["user", "create", "carl"], "", "no password on standard input"),
        (["user", "create", "carl", "--email", "nope"], PASSWORD, "email: 'nope' is not an email"),
        (["org", "create", "admin"], None, "name: 'admin' is reserved"),
        (["project", "create", "nosuchorg/web"], None, "no organisation named 'nosuchorg'"),
        (["project", "create", "justname"], None, "expected ORG/NAME"),
        (["project", "create", "acme/web", "--member", "ghost:developer"], None, "no user named 'ghost'"),
        (["project", "create", "acme/web", "--member", "bob:owner"], None, "unknown role 'owner'"),
        (["project", "create", "acme/web", "--member", "bob"], None, "expected USER:ROLE"),
    ],
)
def test_bad_input_fails_clearly_and_stores_nothing(tmp_path, args, stdin, message):
    prts(tmp_path, "migrate")
    prts(tmp_path, "org", "create", "acme")
    result = prts(tmp_path, *args, input=(stdin + "\n") if stdin is not None else None)
    assert result.returncode == 1, result
    assert message in result.stderr
    app = Appliance(make_config(tmp_path))
    with app.db.session() as s:
        from appliance.models import Project, User

        assert s.query(Project).count() == 0 and s.query(User).count() == 0
    app.close()


def test_config_check_redacts_secrets(tmp_path):
    secret_file = tmp_path / "s3secret"
    secret_file.write_text("very-secret-from-file\n")
    result = prts(tmp_path, "config", "check", PRTS_WEB_SECRET_KEY="super-secret-key-value",
                  PRTS_OBJECTS_SECRET_KEY_FILE=str(secret_file), PRTS_WEB_LISTEN="127.0.0.1:9999",
                  PRTS_TYPO_KEY="1")
    assert result.returncode == 0, result.stderr
    assert "super-secret-key-value" not in result.stdout + result.stderr
    assert "very-secret-from-file" not in result.stdout + result.stderr
    assert "web.secret_key" in result.stdout and "********" in result.stdout
    assert "'127.0.0.1:9999'" in result.stdout and "PRTS_WEB_LISTEN" in result.stdout
    assert "unknown configuration variable PRTS_TYPO_KEY" in result.stderr


def test_config_errors_exit_2_naming_key(tmp_path):
    result = prts(tmp_path, "config", "check", PRTS_WEB_WORKERS="lots")
    assert result.returncode == 2
    assert "web.workers (PRTS_WEB_WORKERS): expected integer, got 'lots'" in result.stderr


@pytest.mark.parametrize("command", [["web"], ["worker"], ["migrate"], ["up"]])
def test_unreachable_backend_exits_nonzero_naming_it(tmp_path, command):
    from servers import free_port

    port = free_port()  # nothing listens there
    result = prts(tmp_path, *command, PRTS_DATABASE_URL=f"postgresql://app@127.0.0.1:{port}/prts")
    assert result.returncode == 1
    assert f"cannot reach the database backend at postgresql://127.0.0.1:{port}/prts" in result.stderr


def test_unreachable_redis_queue_is_named(tmp_path):
    from servers import free_port

    port = free_port()
    result = prts(tmp_path, "migrate", PRTS_QUEUE_BACKEND="redis", PRTS_QUEUE_URL=f"redis://127.0.0.1:{port}/0")
    assert result.returncode == 1
    assert f"cannot reach the queue backend at redis://127.0.0.1:{port}" in result.stderr


def test_web_refuses_an_unmigrated_database(tmp_path):
    result = prts(tmp_path, "web")
    assert result.returncode == 1 and "run `prts migrate` first" in result.stderr
