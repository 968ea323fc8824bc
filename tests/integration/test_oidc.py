"""OpenID Connect sign-in (``webapp/sso.py``) against the test peer in tests/oidc_peer.py
(a small provider the tests run on loopback — a test peer, not a real provider): the whole
flow through the Flask test client and ``requests``, PKCE and nonce, the failures (state,
nonce, expiry, audience, issuer, signature, refusal at the provider), and account linking
by subject and by verified e-mail only. Both databases.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
import requests
import sqlalchemy as sa

from appliance.accounts import users
from appliance.models import User
from conftest import audit_events, linked_identities, make_config
from oidc_peer import ProviderPeer

PROVIDER = "oidc:Peer"


@pytest.fixture
def peer():
    with ProviderPeer() as p:
        yield p


@pytest.fixture
def config(tmp_path, db_values, peer):
    return make_config(tmp_path / "data", auth__oidc__issuer=peer.url, auth__oidc__client_id=peer.client_id,
                       auth__oidc__client_secret=peer.client_secret, auth__oidc__name="Peer", **db_values)


def sso(client, query: str = "", tamper=None):
    """Start at the appliance, let the peer consent, come back; the callback's response."""
    start = client.get(f"/login/sso/oidc{query}")
    assert start.status_code == 302, start.get_data(as_text=True)
    at_peer = requests.get(start.headers["Location"], allow_redirects=False, timeout=10)
    assert at_peer.status_code == 302
    back = urlsplit(at_peer.headers["Location"])
    assert back.path == "/login/sso/oidc/callback"
    return client.get(f"{back.path}?{tamper(back.query) if tamper else back.query}")


def signed_in_as(client) -> str | None:
    page = client.get("/")
    return page.get_data(as_text=True) if page.status_code == 200 else None


def accounts(app) -> list[tuple[str, str | None, bool]]:
    with app.db.session() as s:
        return [(u.username, u.email, u.password_hash is None) for u in s.scalars(sa.select(User).order_by(User.id))]


def test_the_login_page_offers_the_provider(client):
    page = client.get("/login").get_data(as_text=True)
    assert "Sign in with Peer" in page and 'href="/login/sso/oidc"' in page


def test_first_sign_in_makes_an_account_with_pkce_and_a_nonce(appliance, client, peer):
    answer = sso(client, "?next=/user/tokens")
    assert answer.status_code == 302 and answer.headers["Location"] == "/user/tokens"
    assert accounts(appliance) == [("alice", "alice@example.test", True)]
    assert linked_identities(appliance) == [("alice", PROVIDER, "oidc-subject-1")]
    assert [e.detail for e in audit_events(appliance, "identity.linked")] == ["new account"]
    (asked,) = peer.authorize_requests
    assert asked["code_challenge_method"] == "S256" and asked["nonce"] and asked["state"]
    assert set(asked["scope"].split()) == {"openid", "email", "profile"}
    (exchanged,) = peer.token_requests
    assert exchanged["code_verifier"]  # the peer checked it against the challenge
    assert "alice" in signed_in_as(client)


def test_second_sign_in_finds_the_account_by_subject_even_after_an_email_change(appliance, client, peer):
    assert sso(client).status_code == 302
    other = client.application.test_client()  # another browser
    peer.oidc_user |= {"email": "alice@new.example.test", "preferred_username": "someone-else"}
    assert sso(other).status_code == 302
    assert accounts(appliance) == [("alice", "alice@new.example.test", True)]
    assert len(linked_identities(appliance)) == 1


def test_a_verified_email_links_the_existing_account(appliance, client, peer):
    with appliance.db.session() as s:
        users.create_user(s, "liddell", "a long local password", email="Alice@Example.test")
    assert sso(client).status_code == 302
    assert [a[0] for a in accounts(appliance)] == ["liddell"]
    assert linked_identities(appliance) == [("liddell", PROVIDER, "oidc-subject-1")]
    (linked,) = audit_events(appliance, "identity.linked")
    assert linked.actor == "liddell" and linked.detail == "by verified e-mail alice@example.test"
    assert "liddell" in signed_in_as(client)


@pytest.mark.parametrize("verified", [False, "true", None])
def test_an_unverified_email_never_links(appliance, client, peer, verified):
    with appliance.db.session() as s:
        users.create_user(s, "alice", "a long local password", email="alice@example.test")
    peer.oidc_user["email_verified"] = verified
    assert sso(client).status_code == 302
    # A new account, named apart from the existing one, without the unverified address.
    assert accounts(appliance) == [("alice", "alice@example.test", False), ("alice-2", None, True)]
    assert linked_identities(appliance) == [("alice-2", PROVIDER, "oidc-subject-1")]


def _refused(appliance, client, answer, message: str) -> None:
    assert answer.status_code == 302 and answer.headers["Location"] == "/login"
    page = client.get("/login").get_data(as_text=True)
    assert message in page
    assert signed_in_as(client) is None
    assert accounts(appliance) == []
    (failed,) = audit_events(appliance, "login.failed")
    assert (failed.actor, failed.outcome) == (PROVIDER, "failure")


def test_a_state_that_does_not_match_is_refused(appliance, client, peer):
    answer = sso(client, tamper=lambda query: query.replace("state=", "state=x"))
    _refused(appliance, client, answer, "could not be verified")
    assert "MismatchingStateError" in audit_events(appliance, "login.failed")[0].detail


def test_a_callback_without_a_start_is_refused(appliance, client, peer):
    answer = client.get("/login/sso/oidc/callback?code=abc&state=def")
    _refused(appliance, client, answer, "could not be verified")


@pytest.mark.parametrize("claims, foreign_key, detail", [
    ({"nonce": "not-the-one-sent"}, False, ("nonce",)),
    ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}, False, ("expired",)),
    # Another client's token: authlib names the audience, or the authorised party it then requires.
    ({"aud": "another-client"}, False, ("aud", "azp")),
    ({"iss": "http://127.0.0.1:1"}, False, ("iss",)),
    ({}, True, ("signature",)),
], ids=["nonce", "expired", "audience", "issuer", "signature"])
def test_a_bad_id_token_is_refused(appliance, client, peer, claims, foreign_key, detail):
    peer.id_token_claims = claims
    peer.sign_with_foreign_key = foreign_key
    answer = sso(client)
    _refused(appliance, client, answer, "could not be verified")
    recorded = audit_events(appliance, "login.failed")[0].detail.lower()
    assert any(word in recorded for word in detail), recorded


def test_refusal_at_the_provider_is_shown(appliance, client, peer):
    peer.deny = True
    answer = sso(client)
    _refused(appliance, client, answer, "Peer did not sign you in (access_denied)")


def test_next_must_stay_on_the_site(appliance, client, peer):
    for target in ("//evil.example", "https://evil.example/", "/\\evil.example", "/%00", "/%0d%0aSet-Cookie:%20x=1",
                   "javascript:alert(1)", "%2F%2Fevil.example"):
        fresh = client.application.test_client()
        answer = sso(fresh, f"?next={target}")
        assert answer.status_code == 302 and answer.headers["Location"] == "/", target


def test_an_unknown_provider_is_not_found(client):
    assert client.get("/login/sso/saml").status_code == 404
    assert client.get("/login/sso/github").status_code == 404  # not configured here


def test_a_disabled_account_cannot_sign_in_through_the_provider(appliance, client, peer):
    assert sso(client).status_code == 302
    with appliance.db.session() as s:
        users.get_user(s, "alice").is_active = False
    answer = sso(client.application.test_client())
    assert answer.status_code == 302 and answer.headers["Location"] == "/login"
    assert "disabled" in audit_events(appliance, "login.failed")[0].detail


def test_the_provider_being_down_is_a_message_not_an_error(appliance):
    from webapp import create_app

    app = create_app(appliance.config.with_overrides(auth__oidc__issuer="http://127.0.0.1:1",
                                                      auth__oidc__client_id="x"))
    app.extensions["prts"] = appliance
    client = app.test_client()
    answer = client.get("/login/sso/oidc")
    assert answer.status_code == 302 and answer.headers["Location"] == "/login"
    assert "Peer could not be reached" in client.get("/login").get_data(as_text=True)


def test_hostile_callback_parameters_are_refused_without_an_error(appliance, client, peer):
    for query in ("error=%00bad%0a&error_description=%00", "code=%00&state=%00", "state=" + "x" * 5000, "code[]=1"):
        answer = client.get(f"/login/sso/oidc/callback?{query}")
        assert answer.status_code == 302 and answer.headers["Location"] == "/login", query
    assert all("\x00" not in e.detail for e in audit_events(appliance, "login.failed"))
    assert len(audit_events(appliance, "login.failed")) == 4
    assert "did not sign you in (?bad?)" in client.get("/login").get_data(as_text=True)
