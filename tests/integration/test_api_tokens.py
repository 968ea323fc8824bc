"""API v1 tokens: list, create and revoke your own; a token never creates a wider one
(scope, project, expiry); a browser session needs a recent sign-in and the CSRF token;
``prts token create|revoke`` are audited too. On SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import sqlalchemy as sa

from apikit import bearer, config, token, world  # noqa: F401  (fixtures)
from appliance.accounts import tokens
from appliance.models import ApiToken, AuditEvent
from conftest import csrf_token, sign_in
from webapp.fresh import SESSION_KEY


def create(client, auth: dict, **body):
    return client.post("/api/v1/user/tokens", json={"name": "minted", "scope": "read"} | body, headers=auth)


def audit(app, action: str) -> list[AuditEvent]:
    with app.db.session() as s:
        return list(s.scalars(sa.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)))


def count_tokens(app) -> int:
    with app.db.session() as s:
        return s.scalar(sa.select(sa.func.count()).select_from(ApiToken))


def test_a_token_mints_a_narrower_one_shown_once_and_revokes_it(appliance, client, world):
    parent = token(appliance, "dev", "write")
    answer = create(client, bearer(parent), name="ci", scope="read", expires_in_days=7)
    assert answer.status_code == 201 and answer.headers["Cache-Control"] == "no-store"
    minted = answer.get_json()
    assert tokens.looks_like_token(minted["token"]) and minted["scope"] == "read"
    assert client.get("/api/v1/user", headers=bearer(minted["token"])).get_json()["token"]["id"] == minted["id"]
    (event,) = audit(appliance, "token.created")
    assert (event.actor, event.target) == ("dev", f"token {minted['id']}")
    assert f"via API token {parent[:9]}" in event.detail and minted["token"] not in event.detail
    listing = client.get("/api/v1/user/tokens", headers=bearer(parent))
    assert minted["id"] in [t["id"] for t in listing.get_json()["items"]]
    assert minted["token"].encode() not in listing.data and parent.encode() not in listing.data

    # the minted read token may not revoke (write scope); its parent may
    assert client.delete(f"/api/v1/user/tokens/{minted['id']}", headers=bearer(minted["token"])).status_code == 403
    assert client.delete(f"/api/v1/user/tokens/{minted['id']}", headers=bearer(parent)).status_code == 204
    assert client.get("/api/v1/user", headers=bearer(minted["token"])).status_code == 401
    (event,) = audit(appliance, "token.revoked")
    assert (event.actor, event.target) == ("dev", f"token {minted['id']}")
    assert client.delete(f"/api/v1/user/tokens/{minted['id']}", headers=bearer(parent)).status_code == 404
    # someone else's token is not found either, and stays working
    others = token(appliance, "viewer", "read")
    with appliance.db.session() as s:
        others_id = s.scalar(sa.select(ApiToken.id).where(ApiToken.prefix == others[:9]))
    assert client.delete(f"/api/v1/user/tokens/{others_id}", headers=bearer(parent)).status_code == 404
    assert client.get("/api/v1/user", headers=bearer(others)).status_code == 200


def test_a_token_never_creates_a_wider_token(appliance, client, world):
    before = count_tokens(appliance)
    read = bearer(token(appliance, "root", "read"))
    write = bearer(token(appliance, "root", "write"))
    bound = bearer(token(appliance, "root", "admin", project_id=world.project_id))
    expiring = bearer(token(appliance, "root", "admin", days=10))
    cases = [
        (read, {}, 403, "scope"),  # creating needs the write scope
        (write, {"scope": "admin"}, 422, "scope"),
        (bound, {}, 422, "project"),  # unrestricted
        (bound, {"project": "globex/secret"}, 422, "project"),
        (expiring, {}, 422, "expires_in_days"),  # never expires
        (expiring, {"expires_in_days": 11}, 422, "expires_in_days"),
        (write, {"scope": "owner"}, 422, "scope"),
        (write, {"name": ""}, 422, "name"),
        (write, {"name": "\x1b[2J"}, 422, "name"),
        (write, {"expires_in_days": 0}, 422, "expires_in_days"),
        (write, {"project": "nope/nothing"}, 422, "project"),
        (write, {"token": "prts_" + "a" * 40}, 422, "token"),
    ]
    for auth, body, status, field in cases:
        answer = create(client, auth, **body)
        assert answer.status_code == status, (body, answer.get_data(as_text=True))
        assert answer.get_json()["error"]["field"] == field, body
    assert count_tokens(appliance) == before + 4
    # the same limits, kept, are fine
    assert create(client, bound, project="acme/web", scope="admin").status_code == 201
    assert create(client, expiring, expires_in_days=9).status_code == 201  # 10 would end seconds later
    assert create(client, write, scope="write").status_code == 201
    # a developer cannot hold an admin token, whatever creates it
    assert create(client, bearer(token(appliance, "dev", "write")), scope="admin").status_code == 422


def test_a_browser_session_needs_a_recent_sign_in_and_the_csrf_token(appliance, client, world):
    sign_in(client, "dev")
    csrf = csrf_token(client.get("/").get_data(as_text=True))
    assert create(client, {}).status_code == 400  # no CSRF token
    answer = create(client, {"X-CSRFToken": csrf}, name="from the browser")
    assert answer.status_code == 201, answer.get_data(as_text=True)
    assert "signed-in session" in audit(appliance, "token.created")[-1].detail
    with client.session_transaction() as session:
        session[SESSION_KEY] = session[SESSION_KEY] - 24 * 3600
    stale = create(client, {"X-CSRFToken": csrf})
    assert stale.status_code == 403 and stale.get_json()["error"]["field"] == "session"
    assert len(audit(appliance, "token.created")) == 1


def test_prts_token_create_and_revoke_are_audited_as_the_cli(appliance, world, db_values):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRTS_")}
    env.update(PRTS_DATA_DIR=str(appliance.config.data_path), PRTS_LOG_FORMAT="text", PRTS_CONFIG="")
    if db_values:
        env["PRTS_DATABASE_URL"] = db_values["database__url"]

    def prts(*args):
        return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True, text=True, env=env,
                              timeout=120)

    made = prts("token", "create", "dev", "--scope", "write", "--project", "acme/web", "--expires", "30")
    assert made.returncode == 0, made.stderr
    text = made.stdout.strip()
    with appliance.db.session() as s:
        row = s.scalar(sa.select(ApiToken).where(ApiToken.prefix == text[:9]))
        assert (row.scope, row.project_id) == ("write", world.project_id)
        assert dt.timedelta(days=29) < row.expires_at - dt.datetime.now(dt.timezone.utc) <= dt.timedelta(days=30)
    (event,) = audit(appliance, "token.created")
    assert (event.actor, event.actor_id, event.target) == ("cli", None, f"token {row.id}")
    assert "dev" in event.detail and "acme/web" in event.detail and text not in event.detail
    assert prts("token", "revoke", "dev", str(row.id)).returncode == 0
    (event,) = audit(appliance, "token.revoked")
    assert (event.actor, event.target) == ("cli", f"token {row.id}")
    refused = prts("token", "create", "dev", "--scope", "admin")
    assert refused.returncode == 2 and "admin" in refused.stderr
    assert len(audit(appliance, "token.created")) == 1
