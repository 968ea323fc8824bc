"""Fresh sign-in (``fresh_login_required``) and ``/login/confirm``: tokens and secret
variables need credentials entered within ``auth.fresh_minutes``; confirming the password
opens them again, wrong passwords count toward the lockout, ``next`` is never an open
redirect, and an account without a local password is not offered a password form.
On SQLite and PostgreSQL.

The sign-in time is moved back in the session cookie (``session_transaction``), never by
sleeping.
"""

from __future__ import annotations

import re
import time

import pytest
import sqlalchemy as sa

from appliance import migrate
from appliance.accounts import organisations, users
from appliance.context import Appliance
from appliance.models import ApiToken, AuditEvent, ExternalIdentity, ProjectVariable, Role
from conftest import csrf_token, make_config, sign_in, web_app_for

PASSWORD = "a long enough password"
TOKEN = re.compile(r"prts_[A-Za-z0-9_-]{40}")


@pytest.fixture
def site(tmp_path, db_values):
    app = Appliance(make_config(tmp_path / "data", **db_values))
    migrate.upgrade(app.db)
    with app.db.session() as s:
        alice = users.create_user(s, "alice", PASSWORD)
        org = organisations.create_organisation(s, "acme")
        organisations.grant(s, alice, organisations.create_project(s, org, "web"), Role.MAINTAINER)
    yield app
    app.close()


@pytest.fixture
def web(site):
    return web_app_for(site)


def go_stale(client) -> None:
    """The password was entered 11 minutes ago (the window is 10)."""
    with client.session_transaction() as flask_session:
        flask_session["prts_authenticated_at"] = time.time() - 11 * 60


def count(site, model) -> int:
    with site.db.session() as s:
        return s.scalar(sa.select(sa.func.count()).select_from(model))


def create_token(client):
    page = client.get("/user/tokens").get_data(as_text=True)
    return client.post("/user/tokens", data={"name": "laptop", "scope": "read", "csrf_token": csrf_token(page)},
                       headers={"Referer": "http://localhost/user/tokens"})


def confirm(client, password: str, next_url: str = "/user/tokens"):
    page = client.get(f"/login/confirm?next={next_url}")
    assert page.status_code == 200
    return client.post(f"/login/confirm?next={next_url}",
                       data={"csrf_token": csrf_token(page.get_data(as_text=True)), "password": password})


def test_token_creation_asks_for_the_password_after_the_window_then_works(site, web):
    client = web.test_client()
    sign_in(client, "alice", PASSWORD)
    assert TOKEN.search(create_token(client).get_data(as_text=True))  # just signed in: fresh
    go_stale(client)
    assert "asks you to confirm your password" in client.get("/user/tokens").get_data(as_text=True)
    stale = create_token(client)
    assert stale.status_code == 302 and stale.headers["Location"] == "/login/confirm?next=/user/tokens"
    assert count(site, ApiToken) == 1
    wrong = confirm(client, "not my password")
    assert wrong.status_code == 401 and "That is not your password." in wrong.get_data(as_text=True)
    assert create_token(client).status_code == 302  # still stale
    right = confirm(client, PASSWORD)
    assert right.status_code == 302 and right.headers["Location"] == "/user/tokens"
    assert TOKEN.search(create_token(client).get_data(as_text=True))
    assert count(site, ApiToken) == 2
    with site.db.session() as s:
        actions = list(s.execute(sa.select(AuditEvent.action, AuditEvent.detail).order_by(AuditEvent.seq)))
    assert [a for a, _ in actions].count("token.created") == 2
    assert ("login.failed", "wrong password when confirming") in actions and ("login.confirmed", "") in actions


def test_wrong_passwords_when_confirming_count_toward_the_lockout(site, web):
    client = web.test_client()
    sign_in(client, "alice", PASSWORD)
    go_stale(client)
    for _ in range(5):
        assert confirm(client, "not my password").status_code == 401
    locked = confirm(client, PASSWORD)
    assert locked.status_code == 429 and "Too many failed sign-in attempts" in locked.get_data(as_text=True)
    assert create_token(client).status_code == 302
    with site.db.session() as s:
        details = list(s.scalars(sa.select(AuditEvent.detail).where(AuditEvent.action == "login.failed")
                                 .order_by(AuditEvent.seq)))
    assert details == ["wrong password when confirming"] * 5 + ["locked"]


def test_token_revocation_needs_a_fresh_sign_in_too(site, web):
    client = web.test_client()
    sign_in(client, "alice", PASSWORD)
    create_token(client)
    with site.db.session() as s:
        token_id = s.scalar(sa.select(ApiToken.id))
    go_stale(client)
    token = csrf_token(client.get("/user/tokens").get_data(as_text=True))
    answer = client.post(f"/user/tokens/{token_id}/revoke", data={"csrf_token": token})
    assert answer.status_code == 302 and answer.headers["Location"].startswith("/login/confirm")
    with site.db.session() as s:
        assert s.get(ApiToken, token_id).revoked_at is None


def test_htmx_requests_are_sent_to_confirm_with_a_full_navigation(site, web):
    client = web.test_client()
    sign_in(client, "alice", PASSWORD)
    go_stale(client)
    token = csrf_token(client.get("/acme/web/-/variables").get_data(as_text=True))
    answer = client.post("/acme/web/-/variables", data={"csrf_token": token, "name": "API_KEY",
                                                        "value": "s3cr3t-value-123", "secret": "y"},
                         headers={"HX-Request": "true", "Referer": "http://localhost/acme/web/-/variables"})
    assert answer.status_code == 204
    assert answer.headers["HX-Redirect"] == "/login/confirm?next=/acme/web/-/variables"
    assert count(site, ProjectVariable) == 0


def test_secret_variables_are_set_and_deleted_only_with_a_fresh_sign_in(site, web):
    client = web.test_client()
    sign_in(client, "alice", PASSWORD)
    token = csrf_token(client.get("/acme/web/-/variables").get_data(as_text=True))
    added = client.post("/acme/web/-/variables", data={"csrf_token": token, "name": "API_KEY",
                                                       "value": "s3cr3t-value-123", "secret": "y"})
    assert added.status_code == 302 and count(site, ProjectVariable) == 1
    go_stale(client)
    for path, data in (("/acme/web/-/variables/API_KEY/edit", {"value": "another-secret-456", "secret": "y"}),
                       ("/acme/web/-/variables/API_KEY/delete", {})):
        answer = client.post(path, data={"csrf_token": token} | data)
        assert answer.status_code == 302 and answer.headers["Location"].startswith("/login/confirm"), path
    assert count(site, ProjectVariable) == 1
    assert confirm(client, PASSWORD, "/acme/web/-/variables").headers["Location"] == "/acme/web/-/variables"
    assert client.post("/acme/web/-/variables/API_KEY/delete", data={"csrf_token": token}).status_code == 302
    assert count(site, ProjectVariable) == 0


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"])
def test_confirm_never_redirects_off_site(site, web, target):
    client = web.test_client()
    sign_in(client, "alice", PASSWORD)
    go_stale(client)
    answer = confirm(client, PASSWORD, target)
    assert answer.status_code == 302 and answer.headers["Location"] == "/"


def test_a_post_from_another_site_returns_to_the_dashboard_not_to_that_site(site, web):
    client = web.test_client()
    sign_in(client, "alice", PASSWORD)
    go_stale(client)
    page = client.get("/user/tokens").get_data(as_text=True)
    answer = client.post("/user/tokens", data={"name": "x", "scope": "read", "csrf_token": csrf_token(page)},
                         headers={"Referer": "https://evil.example/user/tokens"})
    assert answer.headers["Location"] == "/login/confirm"


def test_an_account_without_a_local_password_is_not_offered_a_password_form(site, web):
    with site.db.session() as s:
        carol = users.create_user(s, "carol", PASSWORD)
        s.add(ExternalIdentity(user_id=carol.id, provider="oidc:corp", subject="c-123"))
    client = web.test_client()
    sign_in(client, "carol", PASSWORD)
    with site.db.session() as s:  # from now on the account signs in only through its provider
        users.get_user(s, "carol").password_hash = None
    go_stale(client)
    page = client.get("/login/confirm?next=/user/tokens")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and 'type="password"' not in text
    assert "Confirm with corp" in text or "Sign out and sign in again" in text
    answer = client.post("/login/confirm?next=/user/tokens", data={"csrf_token": csrf_token(text),
                                                                  "password": PASSWORD})
    assert answer.status_code == 200 and create_token(client).status_code == 302
