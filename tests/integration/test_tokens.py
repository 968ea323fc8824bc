"""The API tokens page: a token is shown once, needs a fresh sign-in (tested in
test_fresh_login.py), and can be revoked only by its owner."""

from __future__ import annotations

import re

import sqlalchemy as sa

from appliance.accounts import tokens, users
from appliance.models import ApiToken
from conftest import ADMIN_PASSWORD, csrf_token, sign_in
from pipelinekit import make_project

PASSWORD = "correct horse battery staple"
TOKEN = re.compile(r"prts_[A-Za-z0-9_-]{40}")


def create(client, **fields):
    page = client.get("/user/tokens")
    data = {"name": "laptop", "scope": "read", "project": "", "expires": "",
            "csrf_token": csrf_token(page.get_data(as_text=True))} | fields
    return client.post("/user/tokens", data=data)


def rows(app) -> list[ApiToken]:
    with app.db.session() as s:
        return list(s.scalars(sa.select(ApiToken).order_by(ApiToken.id)))


def test_a_token_is_shown_once_and_works_with_its_owner(appliance, client):
    with appliance.db.session() as s:
        users.create_user(s, "dev", PASSWORD)
    sign_in(client, "dev")
    answer = create(client, name="ci <b>", scope="write", expires="30")
    page = answer.get_data(as_text=True)
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    (text,) = set(TOKEN.findall(page))
    assert "Copy it now" in page and "ci &lt;b&gt;" in page and "ci <b>" not in page
    later = client.get("/user/tokens").get_data(as_text=True)
    assert text not in later and text[:9] in later  # the prefix only
    with appliance.db.session() as s:
        user, row = tokens.authenticate(s, "dev", text)
        assert (user.username, row.scope, row.expires_at is not None) == ("dev", "write", True)


def test_bad_input_creates_nothing_and_says_what_was_wrong(appliance, client):
    make_project(appliance, "acme", "secret")
    with appliance.db.session() as s:
        users.create_user(s, "dev", PASSWORD)
    sign_in(client, "dev")
    cases = [
        (dict(name=""), "Name is required"),
        (dict(name="x" * 101), "at most 100 characters"),
        (dict(scope="admin"), "Only site administrators"),
        (dict(scope="root"), "Scope must be one of"),
        (dict(expires="0"), "between 1 and 3650"),
        (dict(expires="soon"), "whole number of days"),
        (dict(project="acme/secret"), "not a project you can see"),  # exists, but dev has no grant
        (dict(project="nope"), "not of the form ORG/NAME"),
    ]
    for fields, message in cases:
        answer = create(client, **fields)
        assert answer.status_code == 422 and message in answer.get_data(as_text=True), (fields, message)
        assert not TOKEN.search(answer.get_data(as_text=True))
    assert rows(appliance) == []
    assert client.post("/user/tokens", data={"name": "x", "scope": "read"}).status_code == 400  # no CSRF token


def test_only_the_owner_revokes_and_a_revoked_token_stops_working(appliance, client):
    with appliance.db.session() as s:
        users.create_user(s, "dev", PASSWORD)
        other = users.create_user(s, "other", PASSWORD)
        _, others = tokens.create_token(s, other, "theirs", "read")
    sign_in(client, "dev")
    text = TOKEN.search(create(client).get_data(as_text=True)).group(0)
    theirs, mine = rows(appliance)  # theirs was made first
    page = client.get("/user/tokens").get_data(as_text=True)
    token = csrf_token(page)
    assert client.post(f"/user/tokens/{theirs.id}/revoke", data={"csrf_token": token}).status_code == 404
    assert client.post(f"/user/tokens/{mine.id}/revoke").status_code == 400  # no CSRF token
    assert client.post("/user/tokens/99999999999999999999/revoke", data={"csrf_token": token}).status_code == 404
    assert client.post(f"/user/tokens/{mine.id}/revoke", data={"csrf_token": token}).status_code == 302
    assert client.post(f"/user/tokens/{mine.id}/revoke", data={"csrf_token": token}).status_code == 404
    with appliance.db.session() as s:
        assert tokens.authenticate(s, "dev", text) is None
        assert tokens.authenticate(s, "other", others) is not None


def test_an_admin_may_create_an_admin_token(appliance, client, admin):
    sign_in(client, "root", ADMIN_PASSWORD)
    answer = create(client, scope="admin")
    assert answer.status_code == 200 and TOKEN.search(answer.get_data(as_text=True))
    assert [r.scope for r in rows(appliance)] == ["admin"]


def test_control_characters_in_a_token_name_are_refused(appliance):
    with appliance.db.session() as s:
        user = users.create_user(s, "dev", PASSWORD)
        for name in ("evil\x1b[2J", "two\nlines"):
            try:
                tokens.create_token(s, user, name, "read")
            except Exception as exc:  # noqa: BLE001 - the type is checked below
                assert type(exc).__name__ == "ValidationError" and "control characters" in str(exc)
            else:
                raise AssertionError(f"{name!r} was accepted")
