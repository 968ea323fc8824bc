"""The TOTP second factor through the web pages: enrolment, sign-in with a code, a replayed
code refused, wrong codes counted toward the lockout (which survives a restart), the
pending marker opening nothing, and turning it off. On SQLite and PostgreSQL.

Codes are computed with pyotp from the secret the enrolment page shows, at chosen times
(``totp_at``), so no test waits for the clock.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import time

import pyotp
import pytest
import sqlalchemy as sa

from appliance import migrate
from appliance.accounts import totp, users
from appliance.context import Appliance
from appliance.models import LoginAttempt
from appliance.models.base import utcnow
from appliance.pipelines.secrets import SecretBox, SecretCorruptError
from conftest import AuthActions, audit_events, csrf_token, make_config, sign_in, web_app_for

PASSWORD = "a long enough password"
SECRET = re.compile(r'id="totp-secret"[^>]*>([A-Z2-7]{32})<')


@pytest.fixture
def site(tmp_path, db_values):
    app = Appliance(make_config(tmp_path / "data", **db_values))
    migrate.upgrade(app.db)
    with app.db.session() as s:
        users.create_user(s, "alice", PASSWORD)
        users.create_user(s, "bob", PASSWORD)
    yield app
    app.close()


@pytest.fixture
def web(site):
    return web_app_for(site)


def code_at(secret: str, offset_steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30 * offset_steps)


def wrong_code(secret: str) -> str:
    """A well-formed code that no step near now accepts."""
    near = {code_at(secret, offset) for offset in (-1, 0, 1, 2)}
    return next(code for code in ("000000", "111111", "222222", "333333", "444444") if code not in near)


def enrol(client, with_code: bool = False):
    """Turn the second factor on through the pages; returns the secret (and the code used)."""
    page = client.get("/user/security").get_data(as_text=True)
    answer = client.post("/user/totp/setup", data={"csrf_token": csrf_token(page)})
    assert answer.headers["Location"] == "/user/totp/setup"
    setup = client.get("/user/totp/setup")
    assert setup.headers["Cache-Control"] == "no-store"
    text = setup.get_data(as_text=True)
    secret = SECRET.search(text).group(1)
    assert f"otpauth://totp/PRTS:alice?secret={secret}" in text.replace("&amp;", "&")
    code = code_at(secret)
    confirmed = client.post("/user/totp/confirm", data={"csrf_token": csrf_token(text), "code": code})
    assert confirmed.status_code == 302, confirmed.get_data(as_text=True)
    return (secret, code) if with_code else secret


def password_step(client, username: str = "alice"):
    return AuthActions(client).login(username, PASSWORD)


def code_step(client, code: str):
    page = client.get("/login/code")
    return client.post("/login/code", data={"csrf_token": csrf_token(page.get_data(as_text=True)), "code": code})


def user_row(site, username: str = "alice"):
    with site.db.session() as s:
        return users.get_user(s, username)


def test_enrolment_stores_the_secret_encrypted_and_bound_to_the_account(site, web):
    client = web.test_client()
    sign_in(client, "alice", PASSWORD)
    secret = enrol(client)
    alice, bob = user_row(site), user_row(site, "bob")
    assert alice.totp_enabled_at is not None and secret not in alice.totp_secret_ciphertext
    box = SecretBox.from_config(site.config)
    assert box.decrypt(base64.b64decode(alice.totp_secret_ciphertext), totp.place(alice.id)) == secret
    with pytest.raises(SecretCorruptError):  # copied onto another account, it does not decrypt
        box.decrypt(base64.b64decode(alice.totp_secret_ciphertext), totp.place(bob.id))
    assert [e.action for e in audit_events(site, "totp.enabled")] == ["totp.enabled"]
    assert "On" in client.get("/user/security").get_data(as_text=True)


def test_a_wrong_or_malformed_code_does_not_finish_enrolment(site, web):
    client = web.test_client()
    sign_in(client, "alice", PASSWORD)
    page = client.get("/user/security").get_data(as_text=True)
    client.post("/user/totp/setup", data={"csrf_token": csrf_token(page)})
    text = client.get("/user/totp/setup").get_data(as_text=True)
    secret = SECRET.search(text).group(1)
    for code, message in ((wrong_code(secret), "Code is not the code your authenticator app shows now"),
                          ("12345", "Code must be the 6 digits"), ("<b>1</b>", "Code must be the 6 digits")):
        answer = client.post("/user/totp/confirm", data={"csrf_token": csrf_token(text), "code": code})
        body = answer.get_data(as_text=True)
        assert answer.status_code == 422 and message in body and "<b>1</b>" not in body
        assert SECRET.search(body).group(1) == secret  # the same secret, to try again
    assert user_row(site).totp_enabled_at is None
    client.post("/user/totp/cancel", data={"csrf_token": csrf_token(text)})
    assert user_row(site).totp_secret_ciphertext is None


def test_sign_in_with_the_second_factor_and_the_pending_marker_opens_nothing(site, web):
    owner = web.test_client()
    sign_in(owner, "alice", PASSWORD)
    secret = enrol(owner)
    client = web.test_client()
    answer = password_step(client)
    assert answer.status_code == 302 and answer.headers["Location"] == "/login/code"
    for path in ("/", "/user/security", "/user/tokens", "/user/totp/setup", "/user/password"):
        response = client.get(path)
        assert response.status_code == 302 and response.headers["Location"].startswith("/login"), path
    logins_before = len(audit_events(site, "login"))
    answer = code_step(client, code_at(secret, +1))  # one step ahead: a phone's clock a little fast
    assert answer.status_code == 302 and answer.headers["Location"] == "/"
    assert client.get("/").status_code == 200
    assert len(audit_events(site, "login")) == logins_before + 1


def test_next_survives_the_second_factor_but_not_as_an_open_redirect(site, web):
    owner = web.test_client()
    sign_in(owner, "alice", PASSWORD)
    secret = enrol(owner)
    for target, expected in (("/user/tokens", "/user/tokens"), ("https://evil.example/", "/")):
        client = web.test_client()
        token = csrf_token(client.get("/login").get_data(as_text=True))
        client.post(f"/login?next={target}", data={"username": "alice", "password": PASSWORD, "csrf_token": token})
        with site.db.session() as s:  # each sign-in needs an unused step: forget the last one
            users.get_user(s, "alice").totp_last_step = None
        assert code_step(client, code_at(secret)).headers["Location"] == expected


def test_a_code_is_accepted_once_only(site, web):
    owner = web.test_client()
    sign_in(owner, "alice", PASSWORD)
    secret, used = enrol(owner, with_code=True)
    client = web.test_client()
    password_step(client)
    replayed = code_step(client, used)
    assert replayed.status_code == 401 and "That code is not valid" in replayed.get_data(as_text=True)
    fresh = code_at(secret, +1)
    assert code_step(client, fresh).status_code == 302
    again = web.test_client()
    password_step(again)
    assert code_step(again, fresh).status_code == 401  # the step just used
    assert [e.detail for e in audit_events(site, "login.failed")] == ["wrong TOTP code"] * 2


def test_wrong_codes_count_toward_the_lockout_which_survives_a_restart(site, web):
    owner = web.test_client()
    sign_in(owner, "alice", PASSWORD)
    secret = enrol(owner)
    client = web.test_client()
    password_step(client)
    for _ in range(5):
        assert code_step(client, wrong_code(secret)).status_code == 401
    locked = code_step(client, code_at(secret, +1))
    assert locked.status_code == 429 and "Too many failed sign-in attempts" in locked.get_data(as_text=True)
    with site.db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(LoginAttempt)
                        .where(LoginAttempt.key == "account:alice")) == 5
    # A new app over the same database: still locked, at the password step too.
    restarted = web_app_for(site).test_client()
    assert password_step(restarted).status_code == 429
    # The password alone never clears the failures the codes left.
    with site.db.session() as s:
        s.execute(sa.delete(LoginAttempt).where(LoginAttempt.key.like("address:%")))
    assert password_step(restarted).status_code == 429


def test_the_pending_marker_expires(site, web):
    owner = web.test_client()
    sign_in(owner, "alice", PASSWORD)
    secret = enrol(owner)
    client = web.test_client()
    password_step(client)
    with client.session_transaction() as flask_session:
        flask_session["prts_second_factor"] = flask_session["prts_second_factor"] | {"at": time.time() - 301}
    page = client.get("/login/code")
    assert page.status_code == 302 and page.headers["Location"] == "/login"
    assert client.get("/").status_code == 302
    token = csrf_token(client.get("/login").get_data(as_text=True))
    late = client.post("/login/code", data={"csrf_token": token, "code": code_at(secret, +1)})
    assert late.headers["Location"] == "/login" and client.get("/").status_code == 302


def test_a_password_change_meanwhile_voids_the_pending_marker(site, web):
    owner = web.test_client()
    sign_in(owner, "alice", PASSWORD)
    secret = enrol(owner)
    client = web.test_client()
    password_step(client)
    with site.db.session() as s:
        users.change_password(s, users.get_user(s, "alice"), PASSWORD, "another long password 2")
    answer = code_step(client, code_at(secret, +1))
    assert answer.status_code == 302 and answer.headers["Location"] == "/login"
    assert client.get("/").status_code == 302


def test_turning_it_off_needs_a_fresh_sign_in_and_a_current_code(site, web):
    client = web.test_client()
    sign_in(client, "alice", PASSWORD)
    secret = enrol(client)
    page = client.get("/user/security").get_data(as_text=True)
    token = csrf_token(page)
    with client.session_transaction() as flask_session:
        flask_session["prts_authenticated_at"] = time.time() - 11 * 60
    stale = client.post("/user/totp/disable", data={"csrf_token": token, "code": code_at(secret, +1)},
                        headers={"Referer": "http://localhost/user/security"})
    assert stale.status_code == 302 and stale.headers["Location"].startswith("/login/confirm?next=/user/security")
    assert totp.is_enabled(user_row(site))
    with client.session_transaction() as flask_session:
        flask_session["prts_authenticated_at"] = time.time()
    wrong = client.post("/user/totp/disable", data={"csrf_token": token, "code": "12345"})
    assert wrong.status_code == 422 and "Code must be the 6 digits" in wrong.get_data(as_text=True)
    off = client.post("/user/totp/disable", data={"csrf_token": token, "code": code_at(secret, +1)})
    assert off.status_code == 302
    alice = user_row(site)
    assert not totp.is_enabled(alice) and alice.totp_secret_ciphertext is None
    assert [e.outcome for e in audit_events(site, "totp.disabled")] == ["failure", "success"]
    AuthActions(client).logout()
    assert password_step(client).headers["Location"] == "/"  # no code asked any more


def test_verify_takes_each_step_once_within_one_step_of_the_clock(site):
    box = SecretBox.from_config(site.config)
    with site.db.session() as s:
        alice = users.get_user(s, "alice")
        secret = totp.begin_enrolment(box, alice)
        now = utcnow()
        generator = pyotp.TOTP(secret)
        totp.confirm_enrolment(box, alice, generator.at(now), now=now)
        assert not totp.verify(box, alice, generator.at(now), now=now)  # used by the enrolment
        assert not totp.verify(box, alice, generator.at(now + dt.timedelta(seconds=60)), now=now)  # two ahead
        assert totp.verify(box, alice, generator.at(now + dt.timedelta(seconds=30)), now=now)
        later = now + dt.timedelta(minutes=5)
        assert not totp.verify(box, alice, generator.at(now + dt.timedelta(seconds=30)), now=later)
        assert totp.verify(box, alice, " ".join([generator.at(later)[:3], generator.at(later)[3:]]), now=later)
        assert not totp.verify(box, alice, "", now=later) and not totp.verify(box, alice, "١٢٣٤٥٦", now=later)
