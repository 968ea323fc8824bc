"""Server-side sessions: a new session at sign-in (no fixation), sign-out that a replayed
cookie cannot undo, idle and absolute timeouts, force logout, the sessions list, password
changes, and the audit events of all of it. On SQLite and PostgreSQL.

Timeouts are tested by moving the row's timestamps back in the database, never by sleeping.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlalchemy as sa

from appliance import migrate
from appliance.accounts import sessions, users
from appliance.context import Appliance
from appliance.models import User, UserSession
from appliance.models.base import utcnow
from conftest import AuthActions, audit_events, csrf_token, make_config, sign_in, web_app_for

PASSWORD = "a long enough password"
COOKIE = "prts_session"


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


def cookie_of(client) -> str:
    cookie = client.get_cookie(COOKIE)
    return cookie.value if cookie else ""


def contents(web, value: str) -> dict:
    """What a session cookie holds (it is signed, not encrypted)."""
    return web.session_interface.get_signing_serializer(web).loads(value) if value else {}


def replay(web, value: str):
    """A new browser holding only the cookie ``value``."""
    other = web.test_client()
    other.set_cookie(COOKIE, value)
    return other


def rows(site, username: str = "alice") -> list[UserSession]:
    with site.db.session() as s:
        return list(s.scalars(sa.select(UserSession).join(User, User.id == UserSession.user_id)
                              .where(User.username == username).order_by(UserSession.created_at)))


def move_back(site, session_id: str, **deltas: dt.timedelta) -> None:
    with site.db.session() as s:
        row = s.get(UserSession, session_id)
        for column, delta in deltas.items():
            setattr(row, column, getattr(row, column) - delta)


def signed_in(client) -> bool:
    return client.get("/").status_code == 200


def test_sign_in_starts_a_new_session_the_pre_login_cookie_does_not_share(site, web):
    """Session fixation: a cookie planted before sign-in is not the signed-in one."""
    victim = web.test_client()
    victim.get("/login")
    planted = cookie_of(victim)
    assert planted and "prts_session_id" not in contents(web, planted)
    sign_in(victim, "alice", PASSWORD)
    after = cookie_of(victim)
    assert after != planted
    (row,) = rows(site)
    assert contents(web, after)["prts_session_id"] == row.id and len(row.id) >= 40
    assert signed_in(victim)
    assert not signed_in(replay(web, planted))  # the attacker's copy of the old cookie
    (event,) = audit_events(site, "login")
    assert (event.actor, event.outcome, event.detail) == ("alice", "success", "method=password")
    # Signing in again in another browser makes another session, never the same id.
    sign_in(web.test_client(), "alice", PASSWORD)
    assert len({r.id for r in rows(site)}) == 2


def test_sign_out_ends_the_session_on_the_server_and_a_replayed_cookie_is_refused(site, web):
    client = web.test_client()
    sign_in(client, "alice", PASSWORD)
    saved = cookie_of(client)
    assert signed_in(replay(web, saved))  # the copy works while the session lives
    AuthActions(client).logout()
    assert not signed_in(client)
    assert not signed_in(replay(web, saved))
    (row,) = rows(site)
    assert row.revoked_at is not None
    assert [e.actor for e in audit_events(site, "logout")] == ["alice"]


def test_idle_timeout_and_last_seen_written_at_most_once_a_minute(site, web):
    client = web.test_client()
    sign_in(client, "alice", PASSWORD)
    (row,) = rows(site)
    move_back(site, row.id, last_seen_at=dt.timedelta(seconds=30))
    before = rows(site)[0].last_seen_at
    assert signed_in(client)
    assert rows(site)[0].last_seen_at == before  # used 30 s ago: not written again
    move_back(site, row.id, last_seen_at=dt.timedelta(minutes=119))
    assert signed_in(client)  # idle for just under 120 minutes: still on, and now touched
    assert utcnow() - rows(site)[0].last_seen_at < dt.timedelta(minutes=1)
    move_back(site, row.id, last_seen_at=dt.timedelta(minutes=121))
    response = client.get("/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_absolute_timeout_ends_even_a_busy_session(site, web):
    client = web.test_client()
    sign_in(client, "alice", PASSWORD)
    (row,) = rows(site)
    move_back(site, row.id, created_at=dt.timedelta(hours=167))
    assert signed_in(client)
    move_back(site, row.id, created_at=dt.timedelta(hours=2))  # 169 hours old, used a moment ago
    assert not signed_in(client)


def test_timeouts_follow_the_configuration(tmp_path, db_values):
    from webapp import create_app

    app = Appliance(make_config(tmp_path / "data", auth__session_idle_minutes=5, **db_values))
    migrate.upgrade(app.db)
    try:
        with app.db.session() as s:
            users.create_user(s, "alice", PASSWORD)
        web = create_app(app.config)
        web.extensions["prts"] = app
        client = web.test_client()
        sign_in(client, "alice", PASSWORD)
        (row,) = rows(app)
        move_back(app, row.id, last_seen_at=dt.timedelta(minutes=6))
        assert not signed_in(client)
    finally:
        app.close()


def test_revoke_all_signs_out_every_browser(site, web):
    first, second, bobs = web.test_client(), web.test_client(), web.test_client()
    sign_in(first, "alice", PASSWORD)
    sign_in(second, "alice", PASSWORD)
    sign_in(bobs, "bob", PASSWORD)
    with site.db.session() as s:
        alice = users.get_user(s, "alice")
        token = alice.session_token
        assert sessions.revoke_all(s, alice) == 2
        assert alice.session_token != token
    assert not signed_in(first) and not signed_in(second)
    assert signed_in(bobs)
    assert all(r.revoked_at is not None for r in rows(site))
    sign_in(first, "alice", PASSWORD)  # and signing in again works
    assert signed_in(first)


def test_a_rotated_session_token_alone_signs_out_too(site, web):
    """Older code paths (and operators in a shell) rotate the token without touching rows."""
    client = web.test_client()
    sign_in(client, "alice", PASSWORD)
    with site.db.session() as s:
        users.get_user(s, "alice").session_token = sessions.new_session_token()
    assert not signed_in(client)


def handles(page: str) -> list[str]:
    return re.findall(r'data-session="([0-9a-f]{32})"', page)


def test_sessions_page_lists_mine_and_signs_out_one_or_all_others(site, web):
    mine, laptop, phone, bobs = (web.test_client() for _ in range(4))
    sign_in(mine, "alice", PASSWORD)
    laptop.environ_base["HTTP_USER_AGENT"] = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
    sign_in(laptop, "alice", PASSWORD)
    phone.environ_base["REMOTE_ADDR"] = "192.0.2.7"
    sign_in(phone, "alice", PASSWORD)
    sign_in(bobs, "bob", PASSWORD)
    page = mine.get("/user/security").get_data(as_text=True)
    assert len(handles(page)) == 3 and page.count(">this browser<") == 1
    assert "Firefox on Linux" in page and "192.0.2.7" in page
    for row in rows(site):
        assert row.id not in page  # the handle is shown, never the id that signs a browser in
    token = csrf_token(page)
    bobs_handle = handles(bobs.get("/user/security").get_data(as_text=True))[0]
    assert mine.post(f"/user/sessions/{bobs_handle}/revoke", data={"csrf_token": token}).status_code == 404
    assert mine.post("/user/sessions/%C3%A9t%C3%A9/revoke", data={"csrf_token": token}).status_code == 404
    assert signed_in(bobs)
    laptop_row = next(r for r in rows(site) if "Firefox" in r.user_agent)
    assert mine.post(f"/user/sessions/{sessions.handle(laptop_row)}/revoke").status_code == 400  # no CSRF token
    assert signed_in(laptop)
    answer = mine.post(f"/user/sessions/{sessions.handle(laptop_row)}/revoke", data={"csrf_token": token})
    assert answer.status_code == 302 and not signed_in(laptop) and signed_in(phone) and signed_in(mine)
    answer = mine.post("/user/sessions/revoke-others", data={"csrf_token": token})
    assert answer.status_code == 302 and not signed_in(phone) and signed_in(mine) and signed_in(bobs)
    assert len(handles(mine.get("/user/security").get_data(as_text=True))) == 1
    assert [e.target for e in audit_events(site, "session.revoked")] == [
        f"session {sessions.handle(laptop_row)}", "every other session"]


def test_signing_out_this_browser_from_the_list(site, web):
    client = web.test_client()
    sign_in(client, "alice", PASSWORD)
    page = client.get("/user/security").get_data(as_text=True)
    (handle,) = handles(page)
    answer = client.post(f"/user/sessions/{handle}/revoke", data={"csrf_token": csrf_token(page)})
    assert answer.headers["Location"] == "/login" and not signed_in(client)


def test_failed_sign_ins_are_audited_with_the_name_typed_and_the_reason(site, web):
    client = web.test_client()
    auth = AuthActions(client)
    assert auth.login("alice", "not the password").status_code == 401
    assert auth.login("nobody-here", PASSWORD).status_code == 401
    for _ in range(4):
        auth.login("alice", "not the password")
    assert auth.login("alice", PASSWORD).status_code == 429
    failed = audit_events(site, "login.failed")
    assert [(e.actor, e.outcome) for e in failed[:2]] == [("alice", "failure"), ("nobody-here", "failure")]
    assert [e.detail for e in failed] == ["wrong password"] * 6 + ["locked"]
    assert all(e.address == "127.0.0.1" for e in failed)
    assert audit_events(site, "login") == []


def test_password_change_signs_out_the_other_sessions_and_is_audited(site, web):
    mine, other = web.test_client(), web.test_client()
    sign_in(mine, "alice", PASSWORD)
    sign_in(other, "alice", PASSWORD)
    page = mine.get("/user/password").get_data(as_text=True)
    common = mine.post("/user/password", data={"csrf_token": csrf_token(page), "current_password": PASSWORD,
                                               "new_password": "Qwertyuiop123"})
    assert common.status_code == 422
    assert "New password is one of the 30,000 most common passwords." in common.get_data(as_text=True)
    ok = mine.post("/user/password", data={"csrf_token": csrf_token(page), "current_password": PASSWORD,
                                           "new_password": "a brand new long password"})
    assert ok.status_code == 302
    assert signed_in(mine) and not signed_in(other)
    assert [r.revoked_at is None for r in rows(site)] == [True, False]
    assert [e.actor for e in audit_events(site, "password.changed")] == ["alice"]
    AuthActions(mine).logout()
    sign_in(mine, "alice", "a brand new long password")


def test_prune_deletes_only_sessions_that_can_never_sign_in_again(site, web):
    clients = [web.test_client() for _ in range(4)]
    for client in clients:
        sign_in(client, "alice", PASSWORD)
    live, revoked, idle, old = rows(site)
    AuthActions(clients[1]).logout()
    move_back(site, idle.id, last_seen_at=dt.timedelta(hours=3))
    move_back(site, old.id, created_at=dt.timedelta(days=8))
    with site.db.session() as s:
        assert sessions.prune(s, sessions.SessionLimits.from_config(site.config)) == 3
    assert [r.id for r in rows(site)] == [live.id]
    assert signed_in(clients[0])


@pytest.mark.parametrize("username", ["alice\x00", "al\nice", "\x1b[2Jalice"])
def test_a_name_with_control_characters_is_a_wrong_name_not_a_server_error(site, web, username):
    answer = AuthActions(web.test_client()).login(username, PASSWORD)
    assert answer.status_code == 400 and "Invalid username or password." in answer.get_data(as_text=True)
