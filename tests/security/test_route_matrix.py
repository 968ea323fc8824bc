"""Every route of the app against a role matrix, across two projects in two organisations.

``NEEDS`` maps each endpoint to the least permission it needs: ``public``, ``signed_in``,
``site_admin``, ``nobody`` (a resource that belongs to another account: no actor may reach
it through this URL), or ``(scope, action)`` with a ``policy.ACTIONS`` action on the
project named by the URL (or owning the job, run or object in it), or on an organisation.
The test fails when a route has no entry, so a new route must be added here.

World: acme/web (project A) and beta/api (project B), each with a repository, a run with a
finished job, a log, an artifact, a variable, a webhook with a delivery, a schedule, a merge
request, a team and a grant. Actors: anonymous, an outsider (signed in, no grants), Viewer,
Developer, Maintainer and Admin of project A (nothing on B, nothing on either
organisation), and a site administrator. Browser routes are called with the actor's session
cookie (a POST with a valid CSRF token of that session, so it is the permission that refuses
it); ``/api/v1`` with the actor's Bearer token (scope write; admin for the site admin);
git over HTTP with the actor's token as the basic-auth password.

For every route, actor and combination of the project in the URL and the owner of each id
in it (A or B, so ids of B are tried under A's URL: IDOR): a request the actor may not make
never answers 2xx, and a redirect is only to the sign-in page; no request answers 5xx.
Allowed GETs must succeed (< 400), which proves the URLs name real objects. Allowed POSTs
are not sent (they would change the world under the other requests) except a final pass by
the site administrator on project A, which must not answer 404, 405 or 5xx.

SQLite for the whole matrix; a slice of it runs on PostgreSQL too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import itertools
import tarfile

import pytest
import sqlalchemy as sa

from appliance import repos
from appliance.accounts import grants, organisations, policy, teams, tokens, users
from appliance.context import Appliance
from appliance.hosting import merge_requests, outbound
from appliance.models import (Artifact, PipelineJob, PipelineRun, Role, UserSession, WebhookDelivery)
from appliance.pipelines import artifacts, schedules, variables
from appliance.pipelines.secrets import SecretBox
from conftest import ADMIN_PASSWORD, csrf_token, make_config, sign_in, web_app_for
from tests.pipelinekit import commit

A, B = "acme/web", "beta/api"
ROLES = {"viewer": Role.VIEWER, "developer": Role.DEVELOPER, "maintainer": Role.MAINTAINER, "admin": Role.ADMIN}
ACTORS = ("anonymous", "outsider", *ROLES, "root")
PASSWORD = "a long enough password"

PUBLIC, SIGNED_IN, SITE_ADMIN, NOBODY = "public", "signed_in", "site_admin", "nobody"


def project(action: str) -> tuple[str, str]:
    return ("project", action)


def organisation(action: str) -> tuple[str, str]:
    return ("organisation", action)


# The least permission of every endpoint (all its methods but HEAD and OPTIONS).
NEEDS: dict[str, object] = {
    # signing in and out, the account's own pages
    "auth.login": PUBLIC, "auth.logout": PUBLIC, "auth.second_factor": PUBLIC,
    "auth.reauthenticate": SIGNED_IN, "auth.change_password": SIGNED_IN,
    "sso.start": PUBLIC, "sso.callback": PUBLIC,
    "account.security": SIGNED_IN, "account.revoke_other_sessions": SIGNED_IN,
    "account.revoke_session": NOBODY,  # the victim's session: nobody else's handle works
    "account.totp_setup": SIGNED_IN, "account.start_totp": SIGNED_IN, "account.confirm_totp": SIGNED_IN,
    "account.cancel_totp": SIGNED_IN, "account.disable_totp": SIGNED_IN,
    "tokens.index": SIGNED_IN, "tokens.create": SIGNED_IN, "tokens.revoke": NOBODY,
    # the appliance itself
    "static": PUBLIC, "ops.healthz": PUBLIC, "ops.readyz": PUBLIC, "ops.metrics": PUBLIC,
    "dashboard.index": SIGNED_IN, "editor.page": SIGNED_IN, "editor.validate": SIGNED_IN,
    "editor.pipeline_schema": PUBLIC,
    "hooks.receive": PUBLIC,  # signed by the forge; refused without a valid signature
    "projects.new": organisation("organisation.create_project"),
    # administration and the site-wide audit trail
    **{endpoint: SITE_ADMIN for endpoint in (
        "admin.index", "admin.users_page", "admin.invite", "admin.user_page", "admin.disable_user",
        "admin.enable_user", "admin.logout_user", "admin.make_admin", "admin.unmake_admin",
        "admin.organisations_page", "admin.create_organisation", "admin.organisation_page", "admin.create_team",
        "admin.add_grant", "admin.change_grant_role", "admin.remove_grant_view", "admin.team_page",
        "admin.add_team_member", "admin.remove_team_member", "admin.delete_team", "audit.events", "audit.export")},
    # a project's pages
    "projects.show": project("project.view"),
    "audit.project_events": project("audit.view"), "audit.project_export": project("audit.view"),
    "members.index": project("members.manage"), "members.add": project("members.manage"),
    "members.change": project("members.manage"), "members.remove": project("members.manage"),
    "repository.home": project("repository.read"), "repository.tree": project("repository.read"),
    "repository.blob": project("repository.read"), "repository.raw": project("repository.read"),
    "repository.commits": project("repository.read"), "repository.commits_default": project("repository.read"),
    "repository.commit": project("repository.read"), "repository.branches": project("repository.read"),
    "repository.tags": project("repository.read"),
    "git_http.project_page": PUBLIC,  # redirects to the project page, whatever the name: it tells nothing
    "git_http.info_refs": project("repository.read"),
    "git_http.upload_pack": project("repository.read"), "git_http.receive_pack": project("repository.push"),
    "repository_settings.index": project("repository.read"),  # read-only below Maintainer
    "repository_settings.set_default_branch": project("repository.settings"),
    "repository_settings.protect": project("repository.settings"),
    "repository_settings.unprotect": project("repository.settings"),
    "mirroring.settings": project("repository.settings"), "mirroring.save_url": project("repository.settings"),
    "mirroring.fetch_now": project("repository.settings"), "mirroring.generate_secret": project("repository.settings"),
    "mirroring.delete_secret": project("repository.settings"),
    "merge_requests.index": project("repository.read"), "merge_requests.show": project("repository.read"),
    "merge_requests.new": project("repository.push"), "merge_requests.close": project("repository.push"),
    "merge_requests.reopen": project("repository.push"),
    "pipelines.index": project("pipeline.view"), "pipelines.recent": project("pipeline.view"),
    "pipelines.run_page": project("pipeline.view"), "pipelines.job_page": project("pipeline.view"),
    "pipelines.artifact_download": project("pipeline.view"),
    "pipelines.start": project("pipeline.run"), "pipelines.cancel_run": project("pipeline.run"),
    "pipelines.rerun_run": project("pipeline.run"), "pipelines.cancel_job": project("pipeline.run"),
    "pipelines.rerun_job": project("pipeline.run"),
    "pipelines.schedules_page": project("pipeline.view"), "pipelines.add_schedule": project("pipeline.settings"),
    "pipelines.delete_schedule": project("pipeline.settings"),
    "pipelines.disable_schedule": project("pipeline.settings"),
    "pipelines.enable_schedule": project("pipeline.settings"),
    "logs.download": project("pipeline.view"), "logs.lines": project("pipeline.view"),
    "logs.stream": project("pipeline.view"),
    "variables.index": project("variables.view"), "variables.add": project("variables.manage"),
    "variables.edit": project("variables.manage"), "variables.update": project("variables.manage"),
    "variables.confirm_delete": project("variables.manage"), "variables.delete": project("variables.manage"),
    "variables.pipeline_settings": project("pipeline.view"),
    "variables.save_pipeline_settings": project("pipeline.settings"),
    "webhooks.index": project("webhooks.manage"), "webhooks.add": project("webhooks.manage"),
    "webhooks.show": project("webhooks.manage"), "webhooks.update": project("webhooks.manage"),
    "webhooks.delete": project("webhooks.manage"), "webhooks.deliveries": project("webhooks.manage"),
    "webhooks.redeliver": project("webhooks.manage"), "webhooks.regenerate_secret": project("webhooks.manage"),
    # the JSON API v1 (Bearer tokens)
    "api.openapi_document": PUBLIC,
    "api.get_me": SIGNED_IN, "api.list_tokens": SIGNED_IN, "api.create_token": SIGNED_IN,
    "api.revoke_token": NOBODY, "api.list_projects": SIGNED_IN, "api.get_user": SIGNED_IN,
    "api.list_users": SITE_ADMIN,
    "api.list_teams": organisation("organisation.view"), "api.get_team": organisation("organisation.view"),
    "api.get_project": project("project.view"), "api.list_variables": project("variables.view"),
    "api.list_runs": project("pipeline.view"), "api.start_run": project("pipeline.run"),
    "api.get_run": project("pipeline.view"), "api.cancel_run": project("pipeline.run"),
    "api.list_jobs": project("pipeline.view"), "api.get_job": project("pipeline.view"),
    "api.get_job_log": project("pipeline.view"), "api.list_artifacts": project("pipeline.view"),
    "api.download_artifact": project("pipeline.view"),
}

# URL arguments holding a global id (or a commit, which differs between repositories): they
# name an object of one project, whatever project the URL names, so they are swapped across
# projects. Per-project numbers and names (a run's number, a variable's name) are not: they
# are looked up inside the project the URL names.
OWNED_ARGS = {"job_id", "run_id", "webhook_id", "delivery_id", "schedule_id", "grant_id", "sha"}
# In the site administrator's pass, POSTs that switch something off go late and those that
# delete go last (a team's members before the team), so no request finds its object gone.
LATER = (("disable", "logout", "unmake", "cancel"), ("remove", "revoke"), ("delete",))


@dataclasses.dataclass
class Objects:
    """The ids and names of one project's things."""

    org: str
    name: str
    project_id: int
    sha: str
    run_id: int
    run_number: int
    job_id: int
    artifact: str
    variable: str
    webhook_id: int
    delivery_id: int
    schedule_id: int
    merge_request: int
    team: str
    grant_id: int
    org_grant_id: int


@dataclasses.dataclass
class World:
    app: Appliance
    flask_app: object
    objects: dict[str, Objects]
    clients: dict[str, object]
    bearer: dict[str, str]
    victim_token_id: int
    victim_session: str


def _project_objects(app: Appliance, path: str) -> Objects:
    org_name, name = path.split("/")
    with app.db.session() as s:
        org = organisations.create_organisation(s, org_name)
        project_id = organisations.create_project(s, org, name).id
    repos.ensure_repository(app.config, project_id)
    sha = commit(app, project_id, {"README.md": f"# {name}\n"})
    commit(app, project_id, {"feature.txt": "more\n"}, branch="feature")
    request = merge_requests.open_merge_request(app, project_id, source="feature", target="main", title="a change",
                                                author=None)
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as tar:
        info = tarfile.TarInfo("out.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"ok"))
    archive = data.getvalue()
    with app.db.session() as s:
        project_row = organisations.get_project(s, path)
        project_row.run_counter += 1  # pushes may have started runs already
        run = PipelineRun(project_id=project_id, number=project_row.run_counter, event="push", ref="refs/heads/main", commit_sha=sha,
                          status="success")
        s.add(run)
        s.flush()
        job = PipelineJob(run_id=run.id, project_id=project_id, key="build", name="build", stage="test",
                          stage_index=0, spec='{"steps": [], "env": []}', timeout_seconds=600, status="success")
        s.add(job)
        s.flush()
        key = artifacts.object_key(run.id, job.id, "dist")
        app.objects.put(key, archive)
        s.add(Artifact(job_id=job.id, run_id=run.id, name="dist", object_key=key, size=len(archive),
                       sha256=hashlib.sha256(archive).hexdigest(), file_count=1))
        variables.set_variable(s, SecretBox.from_config(app.config), project_row, "DEPLOY_HOST", "example.test")
        webhook, _ = outbound.create_webhook(s, project_row, "http://127.0.0.2:9/hook", ["run"], app.config)
        delivery = WebhookDelivery(webhook_id=webhook.id, event="run", uuid=f"uuid-{project_id}", payload="{}",
                                   status="failed")
        s.add(delivery)
        schedule = schedules.add_schedule(s, project_row, "0 3 * * *", "main")
        team = teams.create_team(s, project_row.organisation, "crew")
        grant = grants.set_grant(s, team, project_row, Role.VIEWER)
        org_grant = grants.set_grant(s, team, project_row.organisation, Role.VIEWER)
        s.flush()
        return Objects(org_name, name, project_id, sha, run.id, run.number, job.id, "dist", "DEPLOY_HOST",
                       webhook.id, delivery.id, schedule.id, request.number, team.name, grant.id, org_grant.id)


def build_world(app: Appliance, flask_app) -> World:
    objects = {path: _project_objects(app, path) for path in (A, B)}
    with app.db.session() as s:
        web = organisations.get_project(s, A)
        accounts = {"outsider": users.create_user(s, "outsider", PASSWORD),
                    "root": users.create_user(s, "root", ADMIN_PASSWORD, is_admin=True)}
        for actor, role in ROLES.items():
            accounts[actor] = users.create_user(s, actor, PASSWORD)
            grants.set_grant(s, accounts[actor], web, role)
        victim = users.create_user(s, "victim", PASSWORD)
        teams.add_member(s, teams.find_team(s, web.organisation, "crew"), victim)
        bearer = {actor: tokens.create_token(s, user, "matrix", "admin" if actor == "root" else "write")[1]
                  for actor, user in accounts.items()}
        victim_token_id = tokens.create_token(s, victim, "victim's", "write")[0].id
    clients = {"anonymous": flask_app.test_client()}
    for actor in ACTORS[1:]:
        clients[actor] = flask_app.test_client()
        sign_in(clients[actor], actor, ADMIN_PASSWORD if actor == "root" else PASSWORD)
    sign_in(flask_app.test_client(), "victim", PASSWORD)
    with app.db.session() as s:
        from appliance.accounts import sessions

        row = s.scalar(sa.select(UserSession).where(UserSession.user_id == victim.id))
        victim_session = sessions.handle(row)
    return World(app, flask_app, objects, clients, bearer, victim_token_id, victim_session)


def url_args(rule, world: World, url_project: str, owner: str) -> dict:
    """Values for the rule's arguments: the project in the URL is ``url_project``; every id
    in it belongs to ``owner``."""
    here, theirs = world.objects[url_project], world.objects[owner]
    endpoint = rule.endpoint
    values = {
        "org": here.org, "name": here.name, "project": here.name,
        "job_id": theirs.job_id, "run_id": theirs.run_id,
        "number": here.merge_request if endpoint.startswith("merge_requests.") else here.run_number,
        "webhook_id": theirs.webhook_id, "delivery_id": theirs.delivery_id, "schedule_id": theirs.schedule_id,
        "var": here.variable, "sha": theirs.sha, "artifact_name": theirs.artifact, "artifact": theirs.artifact,
        "team": theirs.team,
        "grant_id": theirs.org_grant_id if endpoint.startswith("admin.") else theirs.grant_id,
        "rev_path": "main/README.md" if endpoint in ("repository.blob", "repository.raw") else "main",
        "username": "victim", "token_id": world.victim_token_id, "session_handle": world.victim_session,
        "forge": "github", "provider": "nosuch", "filename": "css/prts.css",
    }
    if endpoint.startswith("api.") and "org" in rule.arguments and "name" not in rule.arguments \
            and "project" not in rule.arguments:
        values["org"] = theirs.org  # /orgs/<org>/teams/<team>: the organisation owns the team
    missing = set(rule.arguments) - set(values)
    assert not missing, f"{endpoint}: no value for {missing}; teach url_args about it"
    return {arg: values[arg] for arg in rule.arguments}


def scope_of_url(rule, url_project: str, owner: str) -> str | None:
    """The project whose permission decides: the one in the URL, else the owner of its ids."""
    if {"name", "project"} & set(rule.arguments):
        return url_project
    if OWNED_ARGS & set(rule.arguments):
        return owner
    return None


def allowed(actor: str, need, target: str | None) -> bool:
    if need == PUBLIC:
        return True
    if actor == "anonymous" or need == NOBODY:
        return False
    if actor == "root" or need == SIGNED_IN:
        return True
    if need == SITE_ADMIN:
        return False
    scope, action = need
    if scope == "organisation":
        return False  # the actors hold roles on project A only, none on an organisation
    return target == A and actor in ROLES and ROLES[actor] >= policy.ACTIONS[action]


def combinations(rule) -> list[tuple[str, str]]:
    """(project in the URL, owner of the ids in it) pairs worth trying."""
    args = set(rule.arguments)
    has_project, has_owned = bool({"name", "project"} & args), bool(OWNED_ARGS & args)
    if has_project and has_owned:
        return list(itertools.product((A, B), (A, B)))
    if has_project or has_owned or "org" in args:
        return [(A, A), (B, B)]
    return [(A, A)]


def send(world: World, actor: str, method: str, rule, url: str):
    """The request, read to its end and closed: a streamed answer (SSE, CSV) otherwise keeps
    its request context, and with it the signed-in user, alive under the next request."""
    response = _open(world, actor, method, rule, url)
    response.get_data()
    response.close()
    return response


def _open(world: World, actor: str, method: str, rule, url: str):
    endpoint = rule.endpoint
    client = world.clients[actor]
    if url.startswith("/api/v1/") and endpoint.startswith("api."):
        headers = {} if actor == "anonymous" else {"Authorization": f"Bearer {world.bearer[actor]}"}
        bare = world.flask_app.test_client()  # a token request carries no cookies
        return bare.open(url, method=method, headers=headers, json={} if method == "POST" else None)
    if endpoint.startswith("git_http."):
        bare = world.flask_app.test_client()
        headers = {}
        if actor != "anonymous":
            import base64

            headers["Authorization"] = "Basic " + base64.b64encode(f"{actor}:{world.bearer[actor]}".encode()).decode()
        if endpoint == "git_http.info_refs":
            url += "?service=git-upload-pack"
        return bare.open(url, method=method, headers=headers, data=b"" if method == "POST" else None)
    if method == "GET":
        return client.get(url)
    token = csrf_token(client.get("/login").get_data(as_text=True)) if actor == "anonymous" else world.csrf[actor]
    return client.open(url, method=method, data={"csrf_token": token}, headers={"X-CSRFToken": token})


def refused(response) -> bool:
    if 200 <= response.status_code < 300:
        return False
    if 300 <= response.status_code < 400:
        location = response.headers.get("Location", "")
        return location.startswith("/login") and not location.startswith("/login/code")
    return True


def routes(flask_app):
    for rule in sorted(flask_app.url_map.iter_rules(), key=lambda r: r.rule):
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule, method


def check_matrix(world: World, only: set[str] | None = None) -> dict[str, int]:
    """Run the matrix; returns counts. Fails with the list of every violation found."""
    from flask import url_for

    world.csrf = {actor: csrf_token(world.clients[actor].get("/").get_data(as_text=True)) for actor in ACTORS[1:]}
    problems: list[str] = []
    counts = {"requests": 0, "refused": 0, "allowed_gets": 0}
    admin_posts = []
    for rule, method in routes(world.flask_app):
        if only is not None and rule.endpoint not in only:
            continue
        need = NEEDS[rule.endpoint]
        for url_project, owner in combinations(rule):
            with world.flask_app.test_request_context():
                url = url_for(rule.endpoint, **url_args(rule, world, url_project, owner))
            target = scope_of_url(rule, url_project, owner)
            matched = url_project == owner or not ({"name", "project"} & set(rule.arguments)
                                                   and OWNED_ARGS & set(rule.arguments))
            for actor in ACTORS:
                may = allowed(actor, need, target) and matched
                if may and method != "GET":
                    if actor == "root" and url_project == A and need not in (PUBLIC, SIGNED_IN, NOBODY):
                        admin_posts.append((rule, method, url))
                    continue
                response = send(world, actor, method, rule, url)
                counts["requests"] += 1
                where = f"{method} {url} ({rule.endpoint}) as {actor}: {response.status_code}"
                if response.status_code >= 500:
                    problems.append(f"5xx: {where}")
                elif not may and not refused(response):
                    problems.append(f"not refused: {where} {response.headers.get('Location', '')}")
                elif not may:
                    counts["refused"] += 1
                elif method == "GET" and need != PUBLIC and response.status_code >= 400:
                    problems.append(f"allowed but failed: {where}")
                elif method == "GET":
                    counts["allowed_gets"] += 1
    admin_posts.sort(key=lambda item: max([rank + 1 for rank, words in enumerate(LATER)
                                            if any(w in item[0].endpoint for w in words)], default=0))
    for rule, method, url in admin_posts:
        response = send(world, "root", method, rule, url)
        counts["requests"] += 1
        if response.status_code >= 500 or response.status_code in (404, 405):
            problems.append(f"site admin: {method} {url} ({rule.endpoint}): {response.status_code}")
    assert not problems, f"{len(problems)} violations:\n" + "\n".join(problems)
    return counts


# -- the tests ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sqlite_world(tmp_path_factory):
    from appliance import migrate
    config = make_config(tmp_path_factory.mktemp("matrix") / "data", webhooks__allowed_hosts="127.0.0.2")
    app = Appliance(config)
    migrate.upgrade(app.db)
    flask_app = web_app_for(app, config)
    yield build_world(app, flask_app)
    app.close()


def test_every_route_has_an_entry(sqlite_world):
    endpoints = {rule.endpoint for rule in sqlite_world.flask_app.url_map.iter_rules()}
    assert sorted(endpoints - set(NEEDS)) == [], "add these endpoints to NEEDS in test_route_matrix.py"
    assert sorted(set(NEEDS) - endpoints) == [], "these endpoints in NEEDS no longer exist"
    for need in NEEDS.values():
        if isinstance(need, tuple):
            assert need[1] in policy.ACTIONS, need


def test_no_route_answers_an_actor_without_the_permission(sqlite_world):
    counts = check_matrix(sqlite_world)
    # The matrix is not vacuous: most requests are refusals, and every allowed GET ran.
    assert counts["refused"] > 1000 and counts["allowed_gets"] > 300, counts


PG_SLICE = {"projects.show", "pipelines.job_page", "logs.download", "variables.index", "variables.delete",
            "members.index", "members.change", "webhooks.show", "admin.organisation_page", "admin.add_grant",
            "api.get_run", "api.get_job_log", "api.list_variables", "api.get_team", "repository.blob"}


def test_a_slice_of_the_matrix_on_postgresql(tmp_path, postgres_server):
    from appliance import migrate
    config = make_config(tmp_path / "data", database__url=postgres_server.create_database("prts_matrix"),
                         webhooks__allowed_hosts="127.0.0.2")
    app = Appliance(config)
    migrate.upgrade(app.db)
    try:
        flask_app = web_app_for(app, config)
        counts = check_matrix(build_world(app, flask_app), only=PG_SLICE)
        assert counts["refused"] > 100 and counts["allowed_gets"] > 20, counts
    finally:
        app.close()
