"""API v1 authentication and authorisation: Bearer tokens and their scopes, project
restrictions, expiry and revocation, the owner's role, browser sessions with CSRF, and
JSON errors for everything under /api/v1. On SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from apikit import bearer, config, token, world  # noqa: F401  (fixtures)
from appliance.models import ApiToken, PipelineRun
from conftest import csrf_token, sign_in


def runs_of(app, project_id: int) -> int:
    with app.db.session() as s:
        return s.scalar(sa.select(sa.func.count()).select_from(PipelineRun).where(PipelineRun.project_id == project_id))


def error_of(response) -> dict:
    assert response.mimetype == "application/json", response.get_data(as_text=True)[:200]
    return response.get_json()["error"]


def test_each_scope_allows_its_methods_and_no_more(appliance, client, world):
    read, write = token(appliance, "dev", "read"), token(appliance, "dev", "write")
    assert client.get("/api/v1/projects/acme/web", headers=bearer(read)).status_code == 200
    refused = client.post("/api/v1/projects/acme/web/runs", json={"ref": "main"}, headers=bearer(read))
    assert refused.status_code == 403 and error_of(refused)["field"] == "scope"
    assert 'error="insufficient_scope"' in refused.headers["WWW-Authenticate"]
    assert runs_of(appliance, world.project_id) == 1
    started = client.post("/api/v1/projects/acme/web/runs", json={"ref": "main"}, headers=bearer(write))
    assert started.status_code == 201, started.get_data(as_text=True)
    assert runs_of(appliance, world.project_id) == 2
    # admin scope: the user directory, for site administrators only
    assert client.get("/api/v1/users", headers=bearer(write)).status_code == 403
    assert client.get("/api/v1/users", headers=bearer(token(appliance, "root", "write"))).status_code == 403
    listing = client.get("/api/v1/users", headers=bearer(token(appliance, "root", "admin")))
    assert listing.status_code == 200
    assert {u["username"] for u in listing.get_json()["items"]} >= {"root", "dev", "viewer", "outsider"}


def test_missing_malformed_expired_and_revoked_tokens_get_401_in_json(appliance, client, world):
    assert client.get("/api/v1/projects").status_code == 401
    assert client.get("/api/v1/projects").headers["WWW-Authenticate"] == 'Bearer realm="prts"'
    expired, revoked = token(appliance, "dev", "read", days=1), token(appliance, "dev", "read")
    with appliance.db.session() as s:
        rows = {row.prefix: row for row in s.scalars(sa.select(ApiToken))}
        rows[expired[:9]].expires_at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
        rows[revoked[:9]].revoked_at = dt.datetime.now(dt.timezone.utc)
    for header in (bearer(expired), bearer(revoked), bearer("prts_" + "x" * 40), bearer("not-a-token"),
                   bearer(expired[:-1])):
        answer = client.get("/api/v1/projects", headers=header)
        assert answer.status_code == 401, header
        assert answer.headers["WWW-Authenticate"] == 'Bearer realm="prts", error="invalid_token"'
        assert error_of(answer)["field"] == "authorization"
    basic = client.get("/api/v1/projects", headers={"Authorization": "Basic ZGV2OnB3"})
    assert basic.status_code == 401 and 'error="invalid_request"' in basic.headers["WWW-Authenticate"]


def test_a_disabled_account_s_tokens_stop_working(appliance, client, world):
    text = token(appliance, "dev", "read")
    assert client.get("/api/v1/user", headers=bearer(text)).status_code == 200
    with appliance.db.session() as s:
        s.execute(sa.text("UPDATE users SET is_active = false WHERE username = 'dev'"))
    assert client.get("/api/v1/user", headers=bearer(text)).status_code == 401


def test_a_project_restricted_token_sees_that_project_alone(appliance, client, world):
    text = token(appliance, "root", "admin", project_id=world.project_id)
    projects = client.get("/api/v1/projects", headers=bearer(text)).get_json()
    assert [p["path"] for p in projects["items"]] == ["acme/web"] and projects["total"] == 1
    assert client.get("/api/v1/runs/%d" % world.run_id, headers=bearer(text)).status_code == 200
    # the site administrator's other project, its run and job are not there for this token
    for path in ("/api/v1/projects/globex/secret", f"/api/v1/runs/{world.other_run_id}",
                 f"/api/v1/jobs/{world.other_job_id}", f"/api/v1/jobs/{world.other_job_id}/log",
                 "/api/v1/projects/globex/secret/runs"):
        assert client.get(path, headers=bearer(text)).status_code == 404, path
    assert client.post("/api/v1/projects/globex/secret/runs", json={"ref": "main"},
                       headers=bearer(text)).status_code == 404
    assert runs_of(appliance, world.other_project_id) == 1
    for path in ("/api/v1/users", "/api/v1/users/dev", "/api/v1/orgs/acme/teams"):
        assert client.get(path, headers=bearer(text)).status_code == 403, path
    assert client.get("/api/v1/user", headers=bearer(text)).get_json()["token"]["project_id"] == world.project_id


def test_the_owner_s_role_still_decides(appliance, client, world):
    viewer, outsider = token(appliance, "viewer", "write"), token(appliance, "outsider", "write")
    refused = client.post("/api/v1/projects/acme/web/runs", json={"ref": "main"}, headers=bearer(viewer))
    assert refused.status_code == 403
    assert client.post(f"/api/v1/runs/{world.run_id}/cancel", headers=bearer(viewer)).status_code == 403
    assert client.get(f"/api/v1/runs/{world.run_id}", headers=bearer(viewer)).status_code == 200
    assert client.get("/api/v1/projects/acme/web/variables", headers=bearer(viewer)).status_code == 403
    # an outsider cannot tell a hidden project from a missing one
    hidden = client.get("/api/v1/projects/acme/web", headers=bearer(outsider))
    missing = client.get("/api/v1/projects/acme/nothing", headers=bearer(outsider))
    assert hidden.status_code == missing.status_code == 404
    assert client.post("/api/v1/projects/acme/web/runs", json={"ref": "main"},
                       headers=bearer(outsider)).status_code == 404
    assert client.get("/api/v1/projects", headers=bearer(outsider)).get_json()["items"] == []
    assert runs_of(appliance, world.project_id) == 1
    with appliance.db.session() as s:
        status = s.get(PipelineRun, world.run_id).status
    assert status in ("pending", "queued")


def test_last_used_is_noted_at_most_once_a_minute(appliance, client, world):
    text = token(appliance, "dev", "read")

    def last_used():
        with appliance.db.session() as s:
            return s.scalar(sa.select(ApiToken.last_used_at).where(ApiToken.prefix == text[:9]))

    assert last_used() is None
    client.get("/api/v1/user", headers=bearer(text))
    first = last_used()
    assert first is not None
    client.get("/api/v1/user", headers=bearer(text))
    assert last_used() == first
    with appliance.db.session() as s:
        s.execute(sa.update(ApiToken).where(ApiToken.prefix == text[:9])
                  .values(last_used_at=first - dt.timedelta(minutes=2)))
    client.get("/api/v1/user", headers=bearer(text))
    assert last_used() > first - dt.timedelta(minutes=2)


def test_a_browser_session_calls_the_api_but_posts_need_the_csrf_token(appliance, client, world):
    sign_in(client, "dev")
    assert client.get("/api/v1/user").get_json()["username"] == "dev"
    refused = client.post("/api/v1/projects/acme/web/runs", json={"ref": "main"})
    assert refused.status_code == 400 and error_of(refused)["field"] == "csrf_token"
    foreign = client.post("/api/v1/projects/acme/web/runs", json={"ref": "main"}, headers={"X-CSRFToken": "x" * 40})
    assert foreign.status_code == 400
    assert runs_of(appliance, world.project_id) == 1
    csrf = csrf_token(client.get("/").get_data(as_text=True))
    started = client.post("/api/v1/projects/acme/web/runs", json={"ref": "main"}, headers={"X-CSRFToken": csrf})
    assert started.status_code == 201
    assert runs_of(appliance, world.project_id) == 2
    # a Bearer request needs no CSRF token, and the session's cookie adds nothing to it
    read = token(appliance, "viewer", "read")
    assert client.get("/api/v1/user", headers=bearer(read)).get_json()["username"] == "viewer"
    assert client.post("/api/v1/projects/acme/web/runs", json={"ref": "main"},
                       headers=bearer(read)).status_code == 403


def test_errors_are_json_and_name_the_field(appliance, client, world):
    auth = bearer(token(appliance, "dev", "write"))
    cases = [
        (client.get("/api/v1/no/such/thing", headers=auth), 404, None),
        (client.delete("/api/v1/projects", headers=auth), 405, None),
        (client.get("/api/v1/runs/abc", headers=auth), 422, "run_id"),
        (client.get(f"/api/v1/runs/{2**64}", headers=auth), 422, "run_id"),
        (client.get("/api/v1/runs/0", headers=auth), 422, "run_id"),
        (client.get("/api/v1/runs/999999", headers=auth), 404, "run_id"),
        (client.get("/api/v1/projects?per_page=abc", headers=auth), 422, "per_page"),
        (client.get("/api/v1/projects?per_page=1000", headers=auth), 422, "per_page"),
        (client.get("/api/v1/projects/acme/web/runs?status=exploded", headers=auth), 422, "status"),
        (client.post("/api/v1/projects/acme/web/runs", data="{not json", headers=auth,
                     content_type="application/json"), 400, "body"),
        (client.post("/api/v1/projects/acme/web/runs", json=["main"], headers=auth), 422, "body"),
        (client.post("/api/v1/projects/acme/web/runs", json={}, headers=auth), 422, "ref"),
        (client.post("/api/v1/projects/acme/web/runs", json={"ref": 5}, headers=auth), 422, "ref"),
        (client.post("/api/v1/projects/acme/web/runs", json={"ref": "x" * 256}, headers=auth), 422, "ref"),
        (client.post("/api/v1/projects/acme/web/runs", json={"ref": "main", "refs": "x"}, headers=auth), 422,
         "refs"),
        (client.post("/api/v1/projects/acme/web/runs", json={"ref": "no-such-branch"}, headers=auth), 422, "ref"),
        (client.post("/api/v1/projects/acme/web/runs", json={"ref": "x" * 70_000}, headers=auth), 413, "body"),
    ]
    for answer, status, field in cases:
        assert answer.status_code == status, (answer.request.path, answer.get_data(as_text=True))
        body = error_of(answer)
        assert body["field"] == field and body["message"], body
    assert runs_of(appliance, world.project_id) == 1
    # unknown query parameters are ignored
    assert client.get("/api/v1/projects?colour=blue", headers=auth).status_code == 200
    # the rest of the site keeps its HTML pages
    assert client.get("/no/such/page").mimetype == "text/html"
