"""The admin pages (``webapp/admin.py``): users (invite with a one-time password shown
once, search, disable and enable, sign out everywhere, site admin on and off), organisations,
teams and grants; every change audited; site administrators only. Runs on SQLite and
PostgreSQL.
"""

from __future__ import annotations

import re

import pytest

from appliance.accounts import grants, organisations, policy, teams, users
from appliance.errors import ValidationError
from appliance.models import Role, User
from conftest import ADMIN_PASSWORD, AuthActions, audit_events, csrf_token, make_config, sign_in

PASSWORD = "a long enough password"


@pytest.fixture
def config(tmp_path, db_values):
    return make_config(tmp_path / "data", **db_values)


@pytest.fixture
def site(appliance, admin):
    """acme/web and beta/api, a plain user ``ann`` and a second admin ``ops``."""
    with appliance.db.session() as s:
        acme = organisations.create_organisation(s, "acme")
        organisations.create_project(s, acme, "web")
        beta = organisations.create_organisation(s, "beta")
        organisations.create_project(s, beta, "api")
        users.create_user(s, "ann", PASSWORD, email="ann@example.test")
        users.create_user(s, "ops", PASSWORD, is_admin=True)
    return appliance


def post(client, path: str, data: dict | None = None, page: str = "/admin/users"):
    token = csrf_token(client.get(page).get_data(as_text=True))
    return client.post(path, data={"csrf_token": token, **(data or {})})


def user(app, name: str) -> User:
    with app.db.session() as s:
        return users.get_user(s, name)


def test_only_site_admins_reach_the_admin_pages(client, flask_app, site):
    assert client.get("/admin/users").status_code == 302  # to the sign-in page
    sign_in(client, "ann", PASSWORD)
    for path in ("/admin/users", "/admin/organisations", "/admin/organisations/acme", "/admin/users/ann"):
        assert client.get(path).status_code == 403, path
    token = csrf_token(client.get("/").get_data(as_text=True))
    refused = client.post("/admin/users/ops/unmake-admin", data={"csrf_token": token})
    assert refused.status_code == 403 and user(site, "ops").is_admin
    other = flask_app.test_client()
    sign_in(other, "root")
    assert other.get("/admin/users").status_code == 200


def test_invite_shows_the_one_time_password_once_and_it_must_be_replaced(client, flask_app, site):
    sign_in(client, "root")
    answer = post(client, "/admin/users", {"username": "newbie", "email": "newbie@example.test"})
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    password = re.search(r'id="one-time-password"[^>]*>([^<]+)<', answer.get_data(as_text=True)).group(1)
    assert len(password) >= 16
    assert password not in client.get("/admin/users").get_data(as_text=True)
    assert password not in client.get("/admin/users/newbie").get_data(as_text=True)
    invited = user(site, "newbie")
    assert invited.must_change_password and invited.email == "newbie@example.test"
    assert password not in invited.password_hash
    (event,) = audit_events(site, "user.invited")
    assert (event.actor, event.target, event.outcome) == ("root", "user newbie", "success")
    assert password not in event.detail

    newbie = flask_app.test_client()
    signed = AuthActions(newbie).login("newbie", password)
    assert signed.status_code == 302 and signed.headers["Location"].endswith("/user/password")
    assert newbie.get("/").headers["Location"].endswith("/user/password")


@pytest.mark.parametrize("data, field, message", [
    ({"username": "ann", "email": "x@example.test"}, "username", "already taken"),
    ({"username": "fresh", "email": ""}, "email", "Email is required"),
    ({"username": "fresh", "email": "not an address"}, "email", "is not an email address"),
    ({"username": "no spaces", "email": "y@example.test"}, "username", "may contain only"),
])
def test_invite_errors_name_the_field(client, site, data, field, message):
    sign_in(client, "root")
    answer = post(client, "/admin/users", data)
    text = answer.get_data(as_text=True)
    assert answer.status_code == 422 and f'id="{field}-error"' in text and message in text
    assert audit_events(site, "user.invited") == []


def test_search_finds_by_name_or_email_and_takes_wildcards_literally(client, site):
    sign_in(client, "root")
    rows = lambda q: re.findall(r'data-user="([^"]+)"', client.get("/admin/users", query_string={"q": q}).get_data(as_text=True))  # noqa: E731
    assert rows("") == ["ann", "ops", "root"]
    assert rows("ANN@example") == ["ann"]
    assert rows("o") == ["ops", "root"]
    assert rows("%") == [] and rows("_") == []


def test_disable_signs_out_everywhere_and_enable_lets_them_back(client, flask_app, site):
    victim = flask_app.test_client()
    sign_in(victim, "ann", PASSWORD)
    assert victim.get("/").status_code == 200
    sign_in(client, "root")
    assert post(client, "/admin/users/ann/disable").status_code == 302
    assert victim.get("/").status_code == 302  # the session ended
    ann = user(site, "ann")
    assert not ann.is_active and ann.disabled_at is not None
    assert AuthActions(flask_app.test_client()).login("ann", PASSWORD).status_code == 401
    with site.db.session() as s:
        assert not policy.can(s, users.get_user(s, "ann"), "project.view", organisations.get_project(s, "acme/web"))

    assert post(client, "/admin/users/ann/enable").status_code == 302
    assert user(site, "ann").is_active and user(site, "ann").disabled_at is None
    sign_in(victim, "ann", PASSWORD)
    assert [e.target for e in audit_events(site, "user.disabled")] == ["user ann"]
    assert [e.target for e in audit_events(site, "user.enabled")] == ["user ann"]


def test_force_logout_ends_every_session_but_not_the_account(client, flask_app, site):
    sessions = [flask_app.test_client(), flask_app.test_client()]
    for c in sessions:
        sign_in(c, "ann", PASSWORD)
    sign_in(client, "root")
    assert post(client, "/admin/users/ann/logout").status_code == 302
    assert [c.get("/").status_code for c in sessions] == [302, 302]
    assert user(site, "ann").is_active
    sign_in(sessions[0], "ann", PASSWORD)
    assert [e.target for e in audit_events(site, "user.logged_out")] == ["user ann"]


def test_site_admin_role_on_and_off_but_never_on_yourself(client, site):
    sign_in(client, "root")
    assert post(client, "/admin/users/ann/make-admin").status_code == 302 and user(site, "ann").is_admin
    assert post(client, "/admin/users/ann/unmake-admin").status_code == 302 and not user(site, "ann").is_admin
    for path in ("/admin/users/root/unmake-admin", "/admin/users/root/disable", "/admin/users/root/logout"):
        refused = post(client, path)
        assert refused.status_code == 409 and "your own account" in refused.get_data(as_text=True), path
    root = user(site, "root")
    assert root.is_admin and root.is_active
    assert client.get("/admin/users").status_code == 200  # still signed in
    assert [e.detail for e in audit_events(site, "user.admin_granted")] == [""]
    assert len(audit_events(site, "user.admin_revoked")) == 1


def test_the_last_active_admin_stays_one(site):
    from appliance.accounts import admin_users

    with site.db.session() as s:
        ann, ops, root = (users.get_user(s, n) for n in ("ann", "ops", "root"))
        admin_users.disable(s, root, ops)
        # ``ann`` stands for a non-interactive caller (the CLI acts as no admin in particular).
        with pytest.raises(ValidationError, match="last active administrator"):
            admin_users.set_admin(s, ann, root, False)
        with pytest.raises(ValidationError, match="last active administrator"):
            admin_users.disable(s, ann, root)
        assert root.is_admin and root.is_active


def test_organisation_team_and_grant_through_the_pages(client, flask_app, site):
    sign_in(client, "root")
    page = "/admin/organisations"
    assert post(client, page, {"name": "gamma", "description": "the third"}, page=page).headers["Location"].endswith(
        "/admin/organisations/gamma")
    assert post(client, page, {"name": "Gamma"}, page=page).status_code == 422
    assert post(client, page, {"name": "admin"}, page=page).status_code == 422  # reserved

    org_page = "/admin/organisations/acme"
    assert post(client, f"{org_page}/teams", {"name": "devs"}, page=org_page).status_code == 302
    team_page = f"{org_page}/teams/devs"
    assert post(client, f"{team_page}/members", {"username": "ann"}, page=team_page).status_code == 302
    missing = post(client, f"{team_page}/members", {"username": "nobody"}, page=team_page)
    assert missing.status_code == 422 and "no user named" in missing.get_data(as_text=True)

    with site.db.session() as s:
        project_id = organisations.get_project(s, "acme/web").id
    granted = post(client, f"{org_page}/grants", {"principal_kind": "team", "principal": "devs",
                                                  "scope": f"project:{project_id}", "role": "developer"}, page=org_page)
    assert granted.status_code == 302
    with site.db.session() as s:
        ann, web = users.get_user(s, "ann"), organisations.get_project(s, "acme/web")
        assert policy.role_on_project(s, ann, web) is Role.DEVELOPER
        assert policy.can(s, ann, "pipeline.run", web) and not policy.can(s, ann, "variables.manage", web)
        membership = grants.find_grant(s, teams.find_team(s, web.organisation, "devs"), web)
        grant_id = membership.id
    assert "devs" in client.get(org_page).get_data(as_text=True)

    assert post(client, f"{org_page}/grants/{grant_id}", {"role": "maintainer"}, page=org_page).status_code == 302
    with site.db.session() as s:
        assert policy.role_on_project(s, users.get_user(s, "ann"), organisations.get_project(s, "acme/web")) is Role.MAINTAINER
    # A grant of another organisation is not reachable through this one's URL.
    assert post(client, f"/admin/organisations/beta/grants/{grant_id}", {"role": "viewer"}, page=org_page).status_code == 404
    assert post(client, f"/admin/organisations/beta/grants/{grant_id}/remove", page=org_page).status_code == 404

    assert post(client, f"{team_page}/members/ann/remove", page=team_page).status_code == 302
    with site.db.session() as s:
        assert policy.role_on_project(s, users.get_user(s, "ann"), organisations.get_project(s, "acme/web")) is None
    assert post(client, f"{team_page}/delete", page=team_page).status_code == 302
    with site.db.session() as s:
        assert s.get(type(membership), grant_id) is None  # the team's grants went with it

    actions = [e.action for e in audit_events(site, "organisation.created") + audit_events(site, "team.created")
               + audit_events(site, "team.member_added") + audit_events(site, "grant.added") + audit_events(site, "grant.changed")
               + audit_events(site, "team.member_removed") + audit_events(site, "team.deleted")]
    assert actions == ["organisation.created", "team.created", "team.member_added", "grant.added", "grant.changed",
                       "team.member_removed", "team.deleted"]
    (added,) = audit_events(site, "grant.added")
    assert (added.target, added.detail, added.project_id) == ("team devs on acme/web", "role=developer", project_id)


def test_grant_form_errors_name_the_field(client, site):
    sign_in(client, "root")
    org_page = "/admin/organisations/acme"
    with site.db.session() as s:
        beta_team = teams.create_team(s, organisations.get_organisation(s, "beta"), "ops")
        web = organisations.get_project(s, "acme/web")
        project_id = web.id
        with pytest.raises(ValidationError, match="another organisation"):
            grants.set_grant(s, beta_team, web, Role.VIEWER)
    cases = [
        ({"principal_kind": "team", "principal": "ops", "scope": "organisation", "role": "viewer"}, "principal",
         "acme has no team named"),
        ({"principal_kind": "user", "principal": "ghost", "scope": "organisation", "role": "viewer"}, "principal",
         "no user named"),
        ({"principal_kind": "user", "principal": "ann", "scope": "organisation", "environment": "prod",
          "role": "viewer"}, "environment", "only for a grant on a project"),
        ({"principal_kind": "user", "principal": "ann", "scope": f"project:{project_id}", "environment": "../x",
          "role": "viewer"}, "environment", "may contain only"),
        ({"principal_kind": "user", "principal": "ann", "scope": "project:999999", "role": "viewer"}, "scope",
         "Not a valid choice"),
        ({"principal_kind": "user", "principal": "ann", "scope": "organisation", "role": "owner"}, "role",
         "Not a valid choice"),
    ]
    for data, field, message in cases:
        answer = post(client, f"{org_page}/grants", data, page=org_page)
        text = answer.get_data(as_text=True)
        assert answer.status_code == 422 and f'id="{field}-error"' in text and message in text, (data, text[-3000:])
    assert audit_events(site, "grant.added") == []


def test_an_environment_grant_through_the_admin_page(client, site):
    sign_in(client, "root")
    org_page = "/admin/organisations/acme"
    with site.db.session() as s:
        project_id = organisations.get_project(s, "acme/web").id
    assert post(client, f"{org_page}/grants", {"principal_kind": "user", "principal": "ann",
                                               "scope": f"project:{project_id}", "environment": "Production",
                                               "role": "developer"}, page=org_page).status_code == 302
    with site.db.session() as s:
        ann, web = users.get_user(s, "ann"), organisations.get_project(s, "acme/web")
        assert policy.can(s, ann, "environment.deploy", policy.EnvironmentRef(web, "production"))
        assert not policy.can(s, ann, "environment.deploy", policy.EnvironmentRef(web, "staging"))
        assert policy.role_on_project(s, ann, web) is Role.VIEWER
    assert "acme/web@production" in client.get(org_page).get_data(as_text=True)


def test_a_stale_sign_in_must_confirm_before_an_admin_change(client, flask_app, site):
    from flask import url_for

    with flask_app.test_request_context():
        confirm = url_for("auth.reauthenticate")
    sign_in(client, "root")
    with client.session_transaction() as flask_session:
        flask_session["prts_authenticated_at"] = 0  # signed in long ago
    answer = post(client, "/admin/users/ann/disable")
    assert answer.status_code == 302 and answer.headers["Location"].startswith(confirm)
    assert user(site, "ann").is_active
    assert audit_events(site, "user.disabled") == []


# -- a project's Members tab --------------------------------------------------------------


def test_maintainers_manage_their_projects_members_but_never_above_their_own_role(client, site):
    members = "/acme/web/-/settings/members"
    with site.db.session() as s:
        web, beta_api = organisations.get_project(s, "acme/web"), organisations.get_project(s, "beta/api")
        for name, role in (("maint", Role.MAINTAINER), ("dev", Role.DEVELOPER), ("boss", Role.ADMIN)):
            organisations.grant(s, users.create_user(s, name, PASSWORD), web, role)
        foreign_id = organisations.grant(s, users.get_user(s, "ann"), beta_api, Role.VIEWER).id
        boss_id = grants.find_grant(s, users.get_user(s, "boss"), web).id
        teams.create_team(s, web.organisation, "devs")
    sign_in(client, "maint", PASSWORD)
    page = client.get(members)
    assert page.status_code == 200 and "boss" in page.get_data(as_text=True)
    assert 'value="admin"' not in page.get_data(as_text=True).split('id="grant-form"')[1]

    add = lambda data: post(client, members, {"principal_kind": "user", "scope": "project", **data}, page=members)  # noqa: E731
    assert add({"principal": "ann", "role": "developer"}).status_code == 302
    assert add({"principal_kind": "team", "principal": "devs", "environment": "production", "role": "viewer"}).status_code == 302
    assert add({"principal": "ann", "role": "admin"}).status_code == 422  # not among the offered roles
    with site.db.session() as s:
        ann, web = users.get_user(s, "ann"), organisations.get_project(s, "acme/web")
        assert policy.role_on_project(s, ann, web) is Role.DEVELOPER
        ann_id = grants.find_grant(s, ann, web).id
        devs_env = grants.find_grant(s, teams.find_team(s, web.organisation, "devs"), policy.EnvironmentRef(web, "production"))
        assert devs_env is not None and devs_env.role == Role.VIEWER

    assert post(client, f"{members}/{ann_id}", {"role": "maintainer"}, page=members).status_code == 302
    assert post(client, f"{members}/{boss_id}", {"role": "viewer"}, page=members).status_code == 403
    assert post(client, f"{members}/{boss_id}/remove", page=members).status_code == 403
    assert post(client, f"{members}/{foreign_id}", {"role": "maintainer"}, page=members).status_code == 404
    assert post(client, f"{members}/{foreign_id}/remove", page=members).status_code == 404
    assert post(client, f"{members}/{ann_id}/remove", page=members).status_code == 302
    with site.db.session() as s:
        assert grants.find_grant(s, users.get_user(s, "boss"), organisations.get_project(s, "acme/web")).role == Role.ADMIN
        assert s.get(type(devs_env), foreign_id).role == Role.VIEWER
        assert grants.find_grant(s, users.get_user(s, "ann"), organisations.get_project(s, "acme/web")) is None
    denied = [e for e in audit_events(site, "grant.changed") + audit_events(site, "grant.removed") if e.outcome == "denied"]
    assert [(e.action, e.target) for e in denied] == [("grant.changed", "user boss on acme/web"),
                                                     ("grant.removed", "user boss on acme/web")]
    assert [e.target for e in audit_events(site, "grant.added")] == ["user ann on acme/web", "team devs on acme/web@production"]


def test_the_members_tab_refuses_who_may_not_manage_it(client, flask_app, site):
    members = "/acme/web/-/settings/members"
    with site.db.session() as s:
        organisations.grant(s, users.create_user(s, "dev", PASSWORD), organisations.get_project(s, "acme/web"),
                            Role.DEVELOPER)
    sign_in(client, "dev", PASSWORD)
    assert client.get(members).status_code == 403
    token = csrf_token(client.get("/").get_data(as_text=True))
    data = {"csrf_token": token, "principal_kind": "user", "principal": "dev", "scope": "project", "role": "maintainer"}
    assert client.post(members, data=data).status_code == 403
    outsider = flask_app.test_client()
    sign_in(outsider, "ann", PASSWORD)
    assert outsider.get(members).status_code == 404
    assert flask_app.test_client().get(members).status_code == 302
    with site.db.session() as s:
        assert policy.role_on_project(s, users.get_user(s, "dev"), organisations.get_project(s, "acme/web")) is Role.DEVELOPER
