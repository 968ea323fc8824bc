"""The resolution rules of ``policy.can`` on SQLite and PostgreSQL: user and team grants,
organisation, project and environment scopes, the most specific scope winning even when
lower, the highest of several grants on one scope, site admins and disabled accounts, and
``visible_projects`` agreeing with ``can(..., "project.view", ...)``.
"""

from __future__ import annotations

import itertools

import pytest

from appliance.accounts import grants, organisations, policy, teams, users
from appliance.accounts.policy import EnvironmentRef
from appliance.context import Appliance
from appliance.errors import PermissionDenied
from appliance.models import Role
from conftest import make_config

PASSWORD = "a long enough password"


@pytest.fixture
def app(tmp_path, db_values):
    from appliance import migrate

    app = Appliance(make_config(tmp_path, **db_values))
    migrate.upgrade(app.db)
    yield app
    app.close()


@pytest.fixture
def world(app):
    """acme/{web,api} and beta/site; a team ``devs`` in acme; returns nothing, look things up by name."""
    with app.db.session() as s:
        acme = organisations.create_organisation(s, "acme")
        beta = organisations.create_organisation(s, "beta")
        for org, name in ((acme, "web"), (acme, "api"), (beta, "site")):
            organisations.create_project(s, org, name)
        teams.create_team(s, acme, "devs")
        for name in ("ann", "bob", "cat", "dan"):
            users.create_user(s, name, PASSWORD)
        users.create_user(s, "root", PASSWORD, is_admin=True)
    return app


def _lookup(s):
    project = lambda path: organisations.get_project(s, path)  # noqa: E731
    user = lambda name: users.get_user(s, name)  # noqa: E731
    return project, user


def test_the_most_specific_scope_wins_even_when_lower(world):
    with world.db.session() as s:
        project, user = _lookup(s)
        acme, web, api = organisations.get_organisation(s, "acme"), project("acme/web"), project("acme/api")
        ann = user("ann")
        grants.set_grant(s, ann, acme, Role.MAINTAINER)
        grants.set_grant(s, ann, web, Role.VIEWER)
        grants.set_grant(s, ann, EnvironmentRef(api, "production"), Role.VIEWER)
        grants.set_grant(s, ann, EnvironmentRef(web, "staging"), Role.DEVELOPER)

        assert policy.role_on_organisation(s, ann, acme) is Role.MAINTAINER
        assert policy.role_on_project(s, ann, web) is Role.VIEWER  # org Maintainer + project Viewer
        assert policy.role_on_project(s, ann, api) is Role.MAINTAINER  # an environment grant does not lower it
        assert not policy.can(s, ann, "project.update", web) and policy.can(s, ann, "project.update", api)
        # Environments: their own grant, else the project's, else the organisation's.
        assert policy.role_on(s, ann, EnvironmentRef(api, "production")) is Role.VIEWER
        assert policy.role_on(s, ann, EnvironmentRef(api, "staging")) is Role.MAINTAINER
        assert policy.role_on(s, ann, EnvironmentRef(web, "staging")) is Role.DEVELOPER  # higher than the project's
        assert policy.role_on(s, ann, EnvironmentRef(web, "production")) is Role.VIEWER
        assert policy.can(s, ann, "environment.deploy", EnvironmentRef(web, "staging"))
        assert not policy.can(s, ann, "environment.deploy", EnvironmentRef(web, "production"))
        assert not policy.can(s, ann, "environment.deploy", EnvironmentRef(api, "production"))
        assert policy.can(s, ann, "environment.deploy", EnvironmentRef(api, "staging"))


def test_the_highest_of_the_users_and_its_teams_grants_on_one_scope(world):
    with world.db.session() as s:
        project, user = _lookup(s)
        web = project("acme/web")
        devs = teams.find_team(s, web.organisation, "devs")
        bob, cat = user("bob"), user("cat")
        teams.add_member(s, devs, bob)
        teams.add_member(s, devs, cat)
        grants.set_grant(s, devs, web, Role.DEVELOPER)
        grants.set_grant(s, bob, web, Role.VIEWER)
        grants.set_grant(s, cat, web, Role.MAINTAINER)
        assert policy.role_on_project(s, bob, web) is Role.DEVELOPER  # the team's, higher than his own
        assert policy.role_on_project(s, cat, web) is Role.MAINTAINER  # her own, higher than the team's

        # A team's environment grant is more specific than the user's project grant.
        grants.set_grant(s, devs, EnvironmentRef(web, "production"), Role.VIEWER)
        assert policy.role_on(s, cat, EnvironmentRef(web, "production")) is Role.VIEWER
        grants.set_grant(s, cat, EnvironmentRef(web, "production"), Role.ADMIN)
        assert policy.role_on(s, cat, EnvironmentRef(web, "production")) is Role.ADMIN

        teams.remove_member(s, devs, bob)
        assert policy.role_on_project(s, bob, web) is Role.VIEWER


def test_an_organisation_grant_reaches_its_projects_and_environments_only(world):
    with world.db.session() as s:
        project, user = _lookup(s)
        dan = user("dan")
        grants.set_grant(s, dan, organisations.get_organisation(s, "acme"), Role.DEVELOPER)
        for path in ("acme/web", "acme/api"):
            assert policy.can(s, dan, "pipeline.run", project(path))
            assert policy.can(s, dan, "environment.deploy", EnvironmentRef(project(path), "production"))
        site = project("beta/site")
        assert policy.role_on_project(s, dan, site) is None
        assert not policy.can(s, dan, "project.view", site)
        assert not policy.can(s, dan, "environment.deploy", EnvironmentRef(site, "production"))
        assert not policy.can(s, dan, "organisation.view", organisations.get_organisation(s, "beta"))


def test_an_environment_grant_alone_reads_the_project_as_a_viewer(world):
    with world.db.session() as s:
        project, user = _lookup(s)
        web, ann = project("acme/web"), user("ann")
        grants.set_grant(s, ann, EnvironmentRef(web, "production"), Role.MAINTAINER)
        assert policy.role_on_project(s, ann, web) is Role.VIEWER
        assert policy.can(s, ann, "project.view", web) and policy.can(s, ann, "repository.read", web)
        assert not policy.can(s, ann, "pipeline.run", web)
        assert policy.can(s, ann, "environment.deploy", EnvironmentRef(web, "production"))
        assert policy.role_on(s, ann, EnvironmentRef(web, "staging")) is None
        assert [p.path for p in policy.visible_projects(s, ann)] == ["acme/web"]
        assert not policy.can(s, ann, "organisation.view", web.organisation)


def test_site_admins_may_everything_and_disabled_accounts_nothing(world):
    with world.db.session() as s:
        project, user = _lookup(s)
        root, ann, web = user("root"), user("ann"), project("acme/web")
        grants.set_grant(s, ann, web, Role.ADMIN)
        resources = [web, web.organisation, EnvironmentRef(web, "production")]
        for action, resource in itertools.product(policy.ACTIONS, resources):
            assert policy.can(s, root, action, resource)
            assert policy.can(s, ann, action, resource) is (resource is not web.organisation)
            assert not policy.can(s, None, action, resource)
        for account in (root, ann):
            account.is_active = False
            assert not any(policy.can(s, account, a, r) for a, r in itertools.product(policy.ACTIONS, resources))
            assert policy.visible_projects(s, account) == []


def test_unknown_actions_and_resources_are_errors_not_refusals(world):
    with world.db.session() as s:
        project, user = _lookup(s)
        with pytest.raises(ValueError, match="unknown action"):
            policy.can(s, user("root"), "project.destroy", project("acme/web"))
        with pytest.raises(TypeError):
            policy.can(s, user("root"), "project.view", "acme/web")


def test_actions_other_rooms_rely_on(world):
    assert policy.ACTIONS["audit.view"] is Role.MAINTAINER
    assert policy.ACTIONS["environment.deploy"] is Role.DEVELOPER
    assert policy.ACTIONS["members.manage"] is Role.MAINTAINER
    with world.db.session() as s:
        project, user = _lookup(s)
        acme, ann = organisations.get_organisation(s, "acme"), user("ann")
        grants.set_grant(s, ann, acme, Role.MAINTAINER)
        assert policy.can(s, ann, "audit.view", acme) and policy.can(s, ann, "audit.view", project("acme/web"))
        grants.set_grant(s, ann, project("acme/web"), Role.DEVELOPER)
        assert not policy.can(s, ann, "audit.view", project("acme/web"))


def test_visible_projects_agrees_with_can_for_every_user_and_project(world):
    with world.db.session() as s:
        project, user = _lookup(s)
        acme, web, api, site = (organisations.get_organisation(s, "acme"), project("acme/web"), project("acme/api"),
                                project("beta/site"))
        devs = teams.find_team(s, acme, "devs")
        teams.add_member(s, devs, user("dan"))
        grants.set_grant(s, user("ann"), acme, Role.VIEWER)
        grants.set_grant(s, user("bob"), EnvironmentRef(site, "production"), Role.DEVELOPER)
        grants.set_grant(s, devs, api, Role.DEVELOPER)
        grants.set_grant(s, user("cat"), web, Role.VIEWER)
        for name in ("ann", "bob", "cat", "dan", "root"):
            account = user(name)
            visible = {p.path for p in policy.visible_projects(s, account)}
            allowed = {p.path for p in (web, api, site) if policy.can(s, account, "project.view", p)}
            assert visible == allowed, name
        assert {p.path for p in policy.visible_projects(s, user("dan"))} == {"acme/api"}


def test_granting_never_above_your_own_role(world):
    with world.db.session() as s:
        project, user = _lookup(s)
        web, ann, bob = project("acme/web"), user("ann"), user("bob")
        grants.set_grant(s, ann, web, Role.MAINTAINER)
        grants.check_within_own_role(s, ann, web, Role.MAINTAINER)
        with pytest.raises(PermissionDenied, match="above your own role"):
            grants.check_within_own_role(s, ann, web, Role.ADMIN)
        with pytest.raises(PermissionDenied, match="cannot change a admin grant"):
            grants.check_within_own_role(s, ann, web, Role.VIEWER, current=Role.ADMIN)
        # On an environment the ceiling is the granter's role there.
        grants.set_grant(s, ann, EnvironmentRef(web, "production"), Role.DEVELOPER)
        with pytest.raises(PermissionDenied):
            grants.check_within_own_role(s, ann, EnvironmentRef(web, "production"), Role.MAINTAINER)
        with pytest.raises(PermissionDenied):
            grants.check_within_own_role(s, bob, web, Role.VIEWER)  # no role at all
        grants.check_within_own_role(s, user("root"), web, Role.ADMIN)


def test_one_grant_per_principal_and_scope_changing_the_role(world):
    with world.db.session() as s:
        project, user = _lookup(s)
        web, ann = project("acme/web"), user("ann")
        first = grants.set_grant(s, ann, web, Role.VIEWER)
        again = grants.set_grant(s, ann, web, Role.DEVELOPER)
        env = grants.set_grant(s, ann, EnvironmentRef(web, "production"), Role.ADMIN)
        assert first.id == again.id != env.id
        assert [(g.scope_label, g.role) for g in grants.grants_on_project(s, web)] == [
            ("acme/web", Role.DEVELOPER), ("acme/web@production", Role.ADMIN)]
        # organisations.grant (used by the CLI) writes the same grant, not the environment one
        organisations.grant(s, ann, web, Role.MAINTAINER)
        assert policy.role_on_project(s, ann, web) is Role.MAINTAINER
        assert policy.role_on(s, ann, EnvironmentRef(web, "production")) is Role.ADMIN
