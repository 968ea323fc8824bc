"""``prts token create|list|revoke`` run as real subprocesses, and the tokens they mint used
by the real git client against a running ``prts up``.

The page at /user/tokens is tested in ``test_tokens.py``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
import sqlalchemy as sa

from appliance.accounts import organisations, tokens, users
from appliance.context import Appliance
from appliance.models import ApiToken, Role
from conftest import make_config
from live import LiveAppliance
from pipelinekit import commit

PASSWORD = "a long enough password"
TOKEN_LINE = re.compile(r"prts_[A-Za-z0-9_-]{40}\n")


def prts(data_dir: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PRTS_")}
    environ.update(PRTS_DATA_DIR=str(data_dir), PRTS_LOG_FORMAT="text", PRTS_CONFIG="", **(env or {}))
    return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True, text=True,
                          env=environ, timeout=120)


def run_git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent",
           "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def token_rows(app: Appliance) -> list[ApiToken]:
    with app.db.session() as s:
        return list(s.scalars(sa.select(ApiToken).order_by(ApiToken.id)))


def populated(path: Path, db_values: dict):
    """Migrate ``path`` and add alice (a Developer of acme/web) and root (a site admin)."""
    env = {"PRTS_DATABASE_URL": db_values["database__url"]} if db_values else {}
    result = prts(path, "migrate", env=env)
    assert result.returncode == 0, result.stderr
    app = Appliance(make_config(path, **db_values))
    with app.db.session() as s:
        alice = users.create_user(s, "alice", PASSWORD)
        users.create_user(s, "root", PASSWORD, is_admin=True)
        org = organisations.create_organisation(s, "acme")
        organisations.grant(s, alice, organisations.create_project(s, org, "web"), Role.DEVELOPER)
    return path, env, app


@pytest.fixture
def data_dir(tmp_path, db_values):
    """On both database backends: what is stored must be the same on each."""
    path, env, app = populated(tmp_path, db_values)
    yield path, env, app
    app.close()


@pytest.fixture(scope="module")
def shared_dir(tmp_path_factory):
    """One embedded data directory for the refusals: they store nothing, so they can share it
    (and each asserts that the token table is still empty)."""
    path, env, app = populated(tmp_path_factory.mktemp("token-cli"), {})
    yield path, env, app
    app.close()


def test_create_prints_the_token_alone_and_list_and_revoke_manage_it(data_dir):
    path, env, app = data_dir
    created = prts(path, "token", "create", "alice", "--scope", "write", "--project", "acme/web",
                   "--expires", "30", "--name", "laptop", env=env)
    assert created.returncode == 0, created.stderr
    # Only the token on stdout, so `TOKEN=$(prts token create ...)` captures exactly it.
    assert TOKEN_LINE.fullmatch(created.stdout), created.stdout
    text = created.stdout.strip()
    assert "shown only now" in created.stderr and text not in created.stderr
    (row,) = token_rows(app)
    assert (row.name, row.scope, row.prefix) == ("laptop", "write", text[:9])
    assert dt.timedelta(days=29) < row.expires_at - row.created_at <= dt.timedelta(days=30)
    with app.db.session() as s:
        owner, found = tokens.authenticate(s, "alice", text)
        assert (owner.username, found.id, found.project_id is not None) == ("alice", row.id, True)

    listed = prts(path, "token", "list", "alice", env=env)
    assert listed.returncode == 0, listed.stderr
    header, line = listed.stdout.splitlines()
    assert header.split("\t")[:4] == ["ID", "TOKEN", "SCOPE", "PROJECT"]
    fields = line.split("\t")
    assert fields[:4] == [str(row.id), text[:9] + "...", "write", "acme/web"] and fields[-1] == "laptop"
    assert text not in listed.stdout

    revoked = prts(path, "token", "revoke", "alice", str(row.id), env=env)
    assert revoked.returncode == 0, revoked.stderr
    assert f"revoked token {row.id} (laptop) of alice" in revoked.stdout
    assert prts(path, "token", "list", "alice", env=env).stdout.splitlines()[1:] == []
    with app.db.session() as s:
        assert tokens.authenticate(s, "alice", text) is None
    # Revoking twice is an error, not a silent success.
    again = prts(path, "token", "revoke", "alice", str(row.id), env=env)
    assert again.returncode == 2 and f"no token {row.id}" in again.stderr


def test_an_admin_gets_an_admin_token_that_never_expires(data_dir):
    path, env, app = data_dir
    created = prts(path, "token", "create", "root", "--scope", "admin", env=env)
    assert created.returncode == 0, created.stderr
    (row,) = token_rows(app)
    assert (row.scope, row.expires_at, row.project_id, row.name) == ("admin", None, None, "cli")
    assert "never expires" in created.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["token", "create", "ghost", "--scope", "read"], "no user named 'ghost'"),
        (["token", "create", "alice", "--scope", "root"], "scope: 'root' is not a scope (expected one of read, write, admin)"),
        (["token", "create", "alice", "--scope", "admin"], "scope: only site administrators may hold admin tokens"),
        (["token", "create", "alice", "--scope", "read", "--project", "acme/nope"], "no project named 'acme/nope'"),
        (["token", "create", "alice", "--scope", "read", "--project", "acmeweb"], "'acmeweb' is not of the form ORG/NAME"),
        (["token", "create", "alice", "--scope", "read", "--expires", "0"], "expires: must be between 1 and 3650 days"),
        (["token", "create", "alice", "--scope", "read", "--expires", "3651"], "expires: must be between 1 and 3650 days"),
        (["token", "create", "alice", "--scope", "read", "--expires", "soon"], "--expires 'soon': expected a whole number of days"),
        (["token", "create", "alice", "--scope", "read", "--name", "  "], "name: must be 1 to 100 characters"),
        (["token", "create", "alice", "--scope", "read", "--name", "ci\x1b[2J"], "name: must not contain control characters"),
        (["token", "create", "alice"], "Missing option '--scope'"),
        (["token", "list", "ghost"], "no user named 'ghost'"),
        (["token", "revoke", "ghost", "1"], "no user named 'ghost'"),
        (["token", "revoke", "alice", "1"], "no token 1"),
        (["token", "revoke", "alice", "one"], "'one' is not a valid integer range"),
        (["token", "revoke", "alice", "99999999999999999999"], "is not in the range"),
    ],
)
def test_bad_input_exits_2_naming_what_was_wrong_and_stores_nothing(shared_dir, args, message):
    path, env, app = shared_dir
    result = prts(path, *args, env=env)
    assert result.returncode == 2, result
    assert message in result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert token_rows(app) == []


def test_another_users_token_cannot_be_revoked_through_their_name(data_dir):
    path, env, app = data_dir
    assert prts(path, "token", "create", "root", "--scope", "read", env=env).returncode == 0
    (row,) = token_rows(app)
    refused = prts(path, "token", "revoke", "alice", str(row.id), env=env)
    assert refused.returncode == 2 and f"no token {row.id}" in refused.stderr
    assert token_rows(app)[0].revoked_at is None


# -- the real git client with CLI-minted tokens ---------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A running ``prts up`` with alice a Viewer of acme/web, which has one commit."""
    data = tmp_path_factory.mktemp("token-git") / "data"
    live = LiveAppliance(data).start()
    core = Appliance(make_config(data))
    with core.db.session() as s:
        alice = users.create_user(s, "alice", PASSWORD)
        org = organisations.create_organisation(s, "acme")
        project = organisations.create_project(s, org, "web")
        organisations.grant(s, alice, project, Role.VIEWER)
        project_id = project.id
    from appliance import repos

    repos.ensure_repository(core.config, project_id)
    commit(core, project_id, {"README.md": "hello from acme/web\n"})
    yield live, core
    live.stop()
    core.close()


def mint(live: LiveAppliance, *args: str) -> str:
    result = prts(live.data_dir, "token", "create", "alice", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def clone(live: LiveAppliance, token: str, into: Path) -> subprocess.CompletedProcess:
    host = live.url.removeprefix("http://")
    return run_git("clone", "--quiet", f"http://alice:{urllib.parse.quote(token, safe='')}@{host}/acme/web.git",
                   str(into))


def test_git_clones_with_a_cli_minted_token_and_stops_once_it_is_revoked(site, tmp_path):
    live, core = site
    token = mint(live, "--scope", "read", "--project", "acme/web", "--name", "ci")
    cloned = clone(live, token, tmp_path / "first")
    assert cloned.returncode == 0, cloned.stderr
    assert (tmp_path / "first" / "README.md").read_text() == "hello from acme/web\n"
    with core.db.session() as s:
        row = s.scalar(sa.select(ApiToken).where(ApiToken.prefix == token[:9]))
        assert row.last_used_at is not None  # git's request marked it used
        token_id = row.id

    revoked = prts(live.data_dir, "token", "revoke", "alice", str(token_id))
    assert revoked.returncode == 0, revoked.stderr
    refused = clone(live, token, tmp_path / "second")
    assert refused.returncode != 0 and "Authentication failed" in refused.stderr
    assert not (tmp_path / "second" / "README.md").exists()


def test_git_refuses_an_expired_token(site, tmp_path):
    live, core = site
    token = mint(live, "--scope", "read", "--expires", "1", "--name", "short-lived")
    assert clone(live, token, tmp_path / "before").returncode == 0
    # A day cannot pass in a test: move the expiry into the past, as time would.
    with core.db.session() as s:
        row = s.scalar(sa.select(ApiToken).where(ApiToken.prefix == token[:9]))
        row.expires_at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    refused = clone(live, token, tmp_path / "after")
    assert refused.returncode != 0 and "Authentication failed" in refused.stderr
    assert not (tmp_path / "after" / "README.md").exists()
