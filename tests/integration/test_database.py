"""The main database on SQLite and on a real PostgreSQL: migrations, constraints, policy."""

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.exc import IntegrityError

from appliance import migrate
from appliance.accounts import organisations, policy, users
from appliance.context import Appliance
from appliance.errors import ValidationError
from appliance.models import Base, Membership, Role, Team, TeamMember
from conftest import make_config

PASSWORD = "a sufficiently long password"


@pytest.fixture
def app(tmp_path, db_values):
    app = Appliance(make_config(tmp_path, **db_values))
    migrate.upgrade(app.db)
    yield app
    app.close()


def test_migrations_reach_head_and_back(app, db_backend):
    assert migrate.is_current(app.db)
    tables = set(sa.inspect(app.db.engine).get_table_names())
    assert {"users", "organisations", "teams", "team_members", "memberships", "projects", "login_attempts"} <= tables
    migrate.downgrade(app.db, "base")
    assert set(sa.inspect(app.db.engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(app.db)
    assert migrate.current_revision(app.db) == migrate.head_revision()


@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based index")
def test_models_match_migrations(app):
    """A model changed without a migration shows up here as a difference."""
    with app.db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    # SQLAlchemy cannot reflect expression indexes (lower(name), coalesce(...)) on every
    # dialect and skips them with a warning; every other difference is a missing migration.
    assert diff == [], diff


def test_names_are_unique_case_insensitively(app):
    with app.db.session() as s:
        users.create_user(s, "Alice", PASSWORD)
        org = organisations.create_organisation(s, "Acme")
        organisations.create_project(s, org, "Web")
    with app.db.session() as s:
        with pytest.raises(ValidationError, match="already taken"):
            users.create_user(s, "alice", PASSWORD)
        with pytest.raises(ValidationError, match="already exists"):
            organisations.create_organisation(s, "ACME")
        with pytest.raises(ValidationError, match="already exists"):
            organisations.create_project(s, organisations.get_organisation(s, "acme"), "wEB")


def test_unique_index_holds_even_past_the_service(app):
    with app.db.session() as s:
        org = organisations.create_organisation(s, "acme")
        organisations.create_project(s, org, "web")
    with pytest.raises(IntegrityError):
        with app.db.session() as s:
            s.execute(sa.text(
                "INSERT INTO projects (organisation_id, name, description, default_branch, created_at) "
                "SELECT id, 'WEB', '', 'main', CURRENT_TIMESTAMP FROM organisations"))


def test_membership_check_constraints(app):
    with app.db.session() as s:
        user = users.create_user(s, "bob", PASSWORD)
        org = organisations.create_organisation(s, "acme")
        ids = (user.id, org.id)
    for bad in (
        dict(user_id=ids[0], role=20),  # no scope
        dict(user_id=ids[0], organisation_id=ids[1], role=25),  # not a role
        dict(organisation_id=ids[1], role=20),  # no principal
    ):
        with pytest.raises(IntegrityError):
            with app.db.session() as s:
                s.add(Membership(**bad))


def test_policy_most_specific_scope_wins_and_highest_grant_applies(app):
    with app.db.session() as s:
        dev = users.create_user(s, "dev", PASSWORD)
        outsider = users.create_user(s, "outsider", PASSWORD)
        org = organisations.create_organisation(s, "acme")
        other_org = organisations.create_organisation(s, "globex")
        web = organisations.create_project(s, org, "web")
        api = organisations.create_project(s, org, "api")
        secret = organisations.create_project(s, other_org, "secret")
        organisations.grant(s, dev, org, Role.MAINTAINER)
        organisations.grant(s, dev, api, Role.VIEWER)  # project grant overrides the org's
        team = Team(organisation=org, name="ops")
        s.add(team)
        s.flush()
        s.add(TeamMember(team_id=team.id, user_id=dev.id))
        s.add(Membership(team_id=team.id, project_id=api.id, role=int(Role.DEVELOPER)))
        s.flush()

        assert policy.role_on_project(s, dev, web) is Role.MAINTAINER
        assert policy.role_on_project(s, dev, api) is Role.DEVELOPER  # highest of user + team grants
        assert policy.role_on_project(s, dev, secret) is None
        assert policy.can(s, dev, "project.update", web)
        assert not policy.can(s, dev, "project.update", api)
        assert not policy.can(s, outsider, "project.view", web)
        assert [p.name for p in policy.visible_projects(s, dev)] == ["api", "web"]
        assert policy.visible_projects(s, outsider) == []
        assert [o.name for o in policy.organisations_for_new_project(s, dev)] == ["acme"]
        with pytest.raises(ValueError, match="unknown action"):
            policy.can(s, dev, "project.explode", web)


def test_authenticate(app):
    with app.db.session() as s:
        users.create_user(s, "carol", PASSWORD)
    with app.db.session() as s:
        assert users.authenticate(s, "CAROL", PASSWORD).username == "carol"
        assert users.authenticate(s, "carol", PASSWORD + "x") is None
        assert users.authenticate(s, "nobody", PASSWORD) is None
        users.get_user(s, "carol").is_active = False
    with app.db.session() as s:
        assert users.authenticate(s, "carol", PASSWORD) is None


def test_login_rate_limit_counts_in_the_database(app):
    import datetime as dt

    from appliance.accounts import ratelimit
    from appliance.models import LoginAttempt
    from appliance.models.base import utcnow

    limits = ratelimit.LoginLimits(per_account=3, per_address=5, window=dt.timedelta(minutes=15))
    with app.db.session() as s:
        for _ in range(2):
            ratelimit.record_failure(s, "Eve", "192.0.2.1")
        assert ratelimit.locked_until(s, limits, "eve", "192.0.2.9") is None
        ratelimit.record_failure(s, "EVE", "192.0.2.1")
    with app.db.session() as s:
        until = ratelimit.locked_until(s, limits, "eve", "192.0.2.9")
        assert until is not None and dt.timedelta(minutes=14) < until - utcnow() <= dt.timedelta(minutes=15)
        # Old failures fall out of the window and are pruned.
        for attempt in s.query(LoginAttempt):
            attempt.at = utcnow() - dt.timedelta(minutes=16)
    with app.db.session() as s:
        assert ratelimit.locked_until(s, limits, "eve", "192.0.2.1") is None
        assert ratelimit.prune(s, limits) == 6
