"""GitHub and GitLab OAuth sign-in (``webapp/sso.py``) against the GitHub-shaped and
GitLab-shaped endpoints of the test peer in tests/oidc_peer.py (a test peer on loopback,
not the real services; ``auth.github.web_url``/``api_url`` and ``auth.gitlab.url`` point at
it as they would at GitHub Enterprise or a self-managed GitLab). Both databases.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import requests
import sqlalchemy as sa

from appliance.accounts import users
from appliance.models import User
from conftest import audit_events, linked_identities, make_config
from oidc_peer import ProviderPeer


@pytest.fixture
def peer():
    with ProviderPeer() as p:
        yield p


@pytest.fixture
def config(tmp_path, db_values, peer):
    return make_config(
        tmp_path / "data",
        auth__github__client_id=peer.client_id, auth__github__client_secret=peer.client_secret,
        auth__github__web_url=peer.url, auth__github__api_url=peer.url,
        auth__gitlab__client_id=peer.client_id, auth__gitlab__client_secret=peer.client_secret,
        auth__gitlab__url=peer.url,
        **db_values,
    )


def sso(client, provider: str, tamper=None):
    start = client.get(f"/login/sso/{provider}")
    assert start.status_code == 302, start.get_data(as_text=True)
    at_peer = requests.get(start.headers["Location"], allow_redirects=False, timeout=10)
    assert at_peer.status_code == 302
    back = urlsplit(at_peer.headers["Location"])
    assert back.path == f"/login/sso/{provider}/callback"
    return client.get(f"{back.path}?{tamper(back.query) if tamper else back.query}")


def accounts(app) -> list[tuple[str, str | None]]:
    with app.db.session() as s:
        return [(u.username, u.email) for u in s.scalars(sa.select(User).order_by(User.id))]


def test_the_login_page_offers_both(client):
    page = client.get("/login").get_data(as_text=True)
    assert "Sign in with GitHub" in page and "Sign in with GitLab" in page


def test_github_sign_in_uses_the_primary_verified_email(appliance, client, peer):
    answer = sso(client, "github")
    assert answer.status_code == 302 and answer.headers["Location"] == "/"
    assert accounts(appliance) == [("octocat", "octo@example.test")]
    assert linked_identities(appliance) == [("octocat", "github", "583231")]
    (asked,) = peer.authorize_requests
    assert asked["redirect_uri"] == "http://localhost/login/sso/github/callback" and asked["state"]
    assert client.get("/").status_code == 200
    # The next sign-in finds the account by the numeric id, whatever the login became.
    peer.github_user["login"] = "renamed"
    assert sso(client.application.test_client(), "github").status_code == 302
    assert accounts(appliance) == [("octocat", "octo@example.test")]


def test_github_links_by_the_primary_verified_email_only(appliance, client, peer):
    with appliance.db.session() as s:
        users.create_user(s, "octo", "a long local password", email="octo@example.test")
        users.create_user(s, "other", "a long local password", email="other@example.test")
    assert sso(client, "github").status_code == 302
    assert linked_identities(appliance) == [("octo", "github", "583231")]  # not "other", verified but not primary
    (linked,) = audit_events(appliance, "identity.linked")
    assert linked.detail == "by verified e-mail octo@example.test"


def test_github_an_unverified_primary_email_never_links(appliance, client, peer):
    with appliance.db.session() as s:
        users.create_user(s, "octo", "a long local password", email="octo@example.test")
    peer.github_emails[0]["verified"] = False
    assert sso(client, "github").status_code == 302
    assert accounts(appliance) == [("octo", "octo@example.test"), ("octocat", None)]
    assert linked_identities(appliance) == [("octocat", "github", "583231")]


def test_gitlab_sign_in_with_pkce_and_a_confirmed_email(appliance, client, peer):
    with appliance.db.session() as s:
        users.create_user(s, "tanuki", "a long local password")  # the name is taken: a new one is made
    assert sso(client, "gitlab").status_code == 302
    assert accounts(appliance) == [("tanuki", None), ("tanuki-2", "tanuki@example.test")]
    assert linked_identities(appliance) == [("tanuki-2", "gitlab", "42")]
    (asked,) = peer.authorize_requests
    assert asked["code_challenge_method"] == "S256" and asked["scope"] == "read_user"
    assert peer.token_requests[0]["code_verifier"]


def test_gitlab_an_unconfirmed_email_never_links(appliance, client, peer):
    with appliance.db.session() as s:
        users.create_user(s, "someone", "a long local password", email="tanuki@example.test")
    peer.gitlab_user["confirmed_at"] = None
    assert sso(client, "gitlab").status_code == 302
    assert linked_identities(appliance) == [("tanuki", "gitlab", "42")]


@pytest.mark.parametrize("provider", ["github", "gitlab"])
def test_failures_land_on_the_login_page(appliance, client, peer, provider):
    answer = sso(client, provider, tamper=lambda query: query.replace("state=", "state=x"))
    assert answer.status_code == 302 and answer.headers["Location"] == "/login"
    peer.deny = True
    assert sso(client, provider).headers["Location"] == "/login"
    peer.deny = False
    peer.client_secret = "rotated at the provider"
    assert sso(client, provider).headers["Location"] == "/login"
    assert accounts(appliance) == []
    failed = audit_events(appliance, "login.failed")
    assert [(e.actor, e.outcome) for e in failed] == [(provider, "failure")] * 3
    assert "MismatchingStateError" in failed[0].detail and "access_denied" in failed[1].detail
    assert "invalid_client" in failed[2].detail
    label = {"github": "GitHub", "gitlab": "GitLab"}[provider]
    assert f"{label} did not sign you in (access_denied)" in client.get("/login").get_data(as_text=True)


def test_a_profile_without_an_id_is_refused(appliance, client, peer):
    del peer.github_user["id"]
    answer = sso(client, "github")
    assert answer.headers["Location"] == "/login"
    assert "no usable 'id'" in audit_events(appliance, "login.failed")[0].detail
    assert accounts(appliance) == []
