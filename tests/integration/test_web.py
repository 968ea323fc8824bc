"""The web app through Flask's test client, over a migrated embedded appliance."""

import re

import pytest

from appliance.accounts import organisations, users
from appliance.models import Project, Role
from conftest import ADMIN_PASSWORD, AuthActions, csrf_token

OTHER_PASSWORD = "another long password"


def test_login_page_and_security_headers_on_cookie(client, admin):
    page = client.get("/login")
    assert page.status_code == 200 and "<h1 class=\"auth-card__title\">Sign in</h1>" in page.get_data(as_text=True)
    response = AuthActions(client).login()
    assert response.status_code == 302 and response.headers["Location"] == "/"
    cookie = response.headers["Set-Cookie"]
    assert "prts_session=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # served over plain HTTP here


def test_secure_cookie_when_public_url_is_https(appliance, admin):
    from webapp import create_app

    app = create_app(appliance.config.with_overrides(web__public_url="https://ci.example"))
    app.extensions["prts"] = appliance
    client = app.test_client()
    response = AuthActions(client).login()
    assert "Secure" in response.headers["Set-Cookie"]


def test_pages_need_login(client):
    response = client.get("/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login?next=")
    assert client.get("/projects/new").status_code == 302


@pytest.mark.parametrize("username, password", [("root", "wrong password!!"), ("nobody", ADMIN_PASSWORD), ("ROOT", "")])
def test_wrong_login_gives_one_generic_message(client, admin, username, password):
    response = AuthActions(client).login(username, password)
    text = response.get_data(as_text=True)
    assert response.status_code in (400, 401)
    assert "Invalid username or password." in text
    assert "Signed in as" not in text


def test_every_post_needs_csrf(client, admin):
    assert client.post("/login", data={"username": "root", "password": ADMIN_PASSWORD}).status_code == 400
    AuthActions(client).login()
    assert client.post("/projects/new", data={"name": "x"}).status_code == 400
    assert client.post("/logout").status_code == 400
    assert client.get("/").status_code == 200  # still signed in: the forged logout did nothing


def test_rate_limit_per_account_survives_restart(appliance, admin, flask_app):
    limit = appliance.config.auth.max_failures_per_account
    client = flask_app.test_client()
    for _ in range(limit):
        assert AuthActions(client).login("root", "wrong password!!").status_code == 401
    locked = AuthActions(client).login()  # even the right password is refused now
    assert locked.status_code == 429 and "Too many failed sign-in attempts" in locked.get_data(as_text=True)

    from webapp import create_app

    restarted = create_app(appliance.config)  # a new app: only the database remembers
    fresh_client = restarted.test_client()
    assert AuthActions(fresh_client).login().status_code == 429


def test_rate_limit_per_address(appliance, flask_app):
    with appliance.db.session() as s:
        users.create_user(s, "victim", OTHER_PASSWORD)
    limit = appliance.config.auth.max_failures_per_address
    client = flask_app.test_client()
    for i in range(limit):  # spread over many names, so no single account reaches its limit
        AuthActions(client).login(f"guess{i}", "wrong password!!")
    assert AuthActions(client).login("victim", OTHER_PASSWORD).status_code == 429
    other_address = flask_app.test_client()
    response = AuthActions(other_address).login("victim", OTHER_PASSWORD,
                                                environ_base={"REMOTE_ADDR": "10.9.8.7"})
    assert response.status_code == 302


def test_successful_login_clears_account_failures(client, admin, appliance):
    auth = AuthActions(client)
    for _ in range(appliance.config.auth.max_failures_per_account - 1):
        auth.login("root", "wrong password!!")
    assert auth.login().status_code == 302
    auth.logout()
    for _ in range(appliance.config.auth.max_failures_per_account - 1):
        auth.login("root", "wrong password!!")
    assert auth.login().status_code == 302


def test_open_redirect_refused(client, admin):
    token = csrf_token(client.get("/login").get_data(as_text=True))
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        response = client.post(f"/login?next={target}", data={"username": "root", "password": ADMIN_PASSWORD,
                                                                "csrf_token": token})
        assert response.headers["Location"] == "/"
        client.get("/")  # keep the session; sign out for the next round
        AuthActions(client).logout()
        token = csrf_token(client.get("/login").get_data(as_text=True))


def test_logout_ends_session(client, admin):
    auth = AuthActions(client)
    auth.login()
    assert client.get("/").status_code == 200
    auth.logout()
    assert client.get("/").status_code == 302


def _seed_projects(appliance):
    with appliance.db.session() as s:
        dev = users.create_user(s, "dev", OTHER_PASSWORD)
        acme = organisations.create_organisation(s, "acme")
        globex = organisations.create_organisation(s, "globex")
        organisations.create_project(s, acme, "web", description="The <b>web</b> shop")
        organisations.create_project(s, globex, "classified-x")
        organisations.grant(s, dev, acme, Role.MAINTAINER)


def test_dashboard_lists_only_visible_projects_escaped(client, appliance):
    _seed_projects(appliance)
    AuthActions(client).login("dev", OTHER_PASSWORD)
    html = client.get("/").get_data(as_text=True)
    assert "web" in html and "classified-x" not in html
    assert "The &lt;b&gt;web&lt;/b&gt; shop" in html and "<b>web</b>" not in html
    assert client.get("/acme/web").status_code == 200
    assert client.get("/globex/classified-x").status_code == 404  # not 403: existence is not confirmed


def test_dashboard_empty_state(client, appliance):
    with appliance.db.session() as s:
        users.create_user(s, "loner", OTHER_PASSWORD)
    AuthActions(client).login("loner", OTHER_PASSWORD)
    html = client.get("/").get_data(as_text=True)
    assert "No projects yet" in html and "Ask an administrator" in html
    assert client.get("/projects/new").status_code == 403


def _project_post(client, **data):
    token = csrf_token(client.get("/projects/new").get_data(as_text=True))
    return client.post("/projects/new", data={"csrf_token": token, **data}, headers={"HX-Request": "true"})


def test_create_project_via_htmx(client, appliance):
    _seed_projects(appliance)
    AuthActions(client).login("dev", OTHER_PASSWORD)
    with appliance.db.session() as s:
        acme_id = organisations.get_organisation(s, "acme").id
    response = _project_post(client, organisation=acme_id, name="api", description="REST")
    assert response.status_code == 204 and response.headers["HX-Redirect"] == "/acme/api"
    html = client.get("/").get_data(as_text=True)
    assert "api" in html and "Project acme/api was created." in html
    with appliance.db.session() as s:  # the creator became its maintainer
        from appliance.accounts import policy
        project = organisations.get_project(s, "acme/api")
        assert policy.role_on_project(s, users.get_user(s, "dev"), project) is Role.MAINTAINER


@pytest.mark.parametrize(
    "name, message",
    [
        ("", "Project name is required."),
        ("bad name!", "Project name may contain only"),
        ("WEB", "acme/WEB already exists."),
        ("x.git", "Project name must not end"),
    ],
)
def test_create_project_errors_inline_and_nothing_created(client, appliance, name, message):
    _seed_projects(appliance)
    AuthActions(client).login("dev", OTHER_PASSWORD)
    with appliance.db.session() as s:
        acme_id = organisations.get_organisation(s, "acme").id
        before = s.query(Project).count()
    response = _project_post(client, organisation=acme_id, name=name)
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert html.lstrip().startswith("<form")  # the partial alone, for htmx to swap in
    assert re.search(r'id="name-error"[^>]*>.*?' + re.escape(message), html, re.S), html
    assert 'aria-invalid="true"' in html
    with appliance.db.session() as s:
        assert s.query(Project).count() == before


def test_create_project_in_foreign_org_refused(client, appliance):
    _seed_projects(appliance)
    AuthActions(client).login("dev", OTHER_PASSWORD)
    with appliance.db.session() as s:
        globex_id = organisations.get_organisation(s, "globex").id
    response = _project_post(client, organisation=globex_id, name="sneaky")
    assert response.status_code == 422  # not among the choices offered to this user
    with appliance.db.session() as s:
        assert organisations.find_project(s, organisations.get_organisation(s, "globex"), "sneaky") is None


def test_one_time_password_must_be_changed(client, appliance):
    with appliance.db.session() as s:
        users.create_user(s, "boss", "Temp0raryPassw0rd", is_admin=True, one_time=True)
    auth = AuthActions(client)
    response = auth.login("boss", "Temp0raryPassw0rd")
    assert response.headers["Location"] == "/user/password"
    assert client.get("/").headers["Location"] == "/user/password"
    page = client.get("/user/password").get_data(as_text=True)
    bad = client.post("/user/password", data={"csrf_token": csrf_token(page), "current_password": "Temp0raryPassw0rd",
                                               "new_password": "short"})
    assert bad.status_code == 422 and "New password must be at least 12 characters" in bad.get_data(as_text=True)
    ok = client.post("/user/password", data={"csrf_token": csrf_token(page), "current_password": "Temp0raryPassw0rd",
                                              "new_password": "a brand new long password"})
    assert ok.status_code == 302 and ok.headers["Location"] == "/"
    assert client.get("/").status_code == 200
    auth.logout()
    assert auth.login("boss", "Temp0raryPassw0rd").status_code == 401
    assert auth.login("boss", "a brand new long password").headers["Location"] == "/"


def test_password_change_signs_out_other_sessions(flask_app, appliance, admin):
    first, second = flask_app.test_client(), flask_app.test_client()
    AuthActions(first).login()
    AuthActions(second).login()
    page = first.get("/user/password").get_data(as_text=True)
    first.post("/user/password", data={"csrf_token": csrf_token(page), "current_password": ADMIN_PASSWORD,
                                        "new_password": "a replacement long password"})
    assert first.get("/").status_code == 200
    assert second.get("/").status_code == 302


def test_healthz_readyz_metrics(client, admin):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    body = ready.get_json()
    assert ready.status_code == 200 and body["status"] == "ready"
    assert {b["name"] for b in body["backends"]} == {"database", "queue", "pubsub", "objects", "analytics"}
    assert all("address" not in b for b in body["backends"])  # anonymous probes get no addresses
    AuthActions(client).login()
    detailed = client.get("/readyz").get_json()
    assert all(b["address"] for b in detailed["backends"])
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'prts_http_requests_total{endpoint="ops.readyz",method="GET",status="200"}' in metrics


def test_readyz_reports_a_broken_backend(appliance, admin, tmp_path):
    from webapp import create_app

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    broken = appliance.config.with_overrides(objects__path=str(blocker / "objects"))
    app = create_app(broken)
    response = app.test_client().get("/readyz")
    body = response.get_json()
    assert response.status_code == 503 and body["status"] == "unavailable"
    assert [b["name"] for b in body["backends"] if not b["ok"]] == ["objects"]


def test_unknown_page_is_a_friendly_404(client, admin):
    AuthActions(client).login()
    response = client.get("/no/such/thing")
    assert response.status_code == 404 and "Page not found" in response.get_data(as_text=True)
