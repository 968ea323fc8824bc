"""The hostile-input suite's kit: one shared world of two organisations, a client that
remembers every status it saw, and the verdict of each attempt.

The world (``build_world``) is a migrated appliance on SQLite with real git repositories,
finished runs (logs and artifacts made by the local executor), active runs, variables,
webhooks with deliveries, schedules, merge requests and API tokens in two organisations:

- ``acme`` with projects ``web`` and ``lib``: alice is Maintainer of the organisation,
  vic a Viewer and dev a Developer of ``acme/web``;
- ``globex`` with project ``core``: bob is its Maintainer. Nobody in acme may see it.

Every hostile attempt is made against this one world, so an attempt that is wrongly
accepted changes only objects named after the attempt (markers), never what later
attempts rely on. The web app runs with ``TESTING`` off, as in production: a view that
raises answers 500 and is counted as a server error instead of aborting the case.
"""

from __future__ import annotations

import base64
import dataclasses
import re
import secrets
from pathlib import Path
from typing import Callable
from urllib.parse import urljoin, urlsplit

import sqlalchemy as sa
from flask.testing import FlaskClient

from appliance import migrate, repos
from appliance.accounts import organisations, tokens, users
from appliance.context import Appliance
from appliance.hosting import merge_requests, outbound
from appliance.models import (
    ApiToken, PipelineJob, PipelineRun, PipelineSchedule, Project, ProjectVariable, Role, User, Webhook,
    WebhookDelivery,
)
from appliance.pipelines import runs, schedules, variables
from appliance.pipelines.secrets import SecretBox
from conftest import ADMIN_PASSWORD, csrf_token, make_config
from pipelinekit import commit, drain

PASSWORD = "hostile suite password 1"
WEBHOOK_HOST = "127.0.0.2"  # allow-listed, so a webhook URL is valid and only the attack can stop it
SECRET_VALUE = "globex-core-secret-value-0123456789"

PIPELINE = """\
version: "1.0"
name: Hostile
triggers:
  - manual: {{}}
stages:
  - name: Build
    jobs:
      - name: build
        steps:
          - run: echo {marker} && mkdir -p out && echo {marker} > out/app.txt
          - artifact: {{ path: out/, name: app }}
"""


# -- the world ------------------------------------------------------------------------------


@dataclasses.dataclass
class ProjectObjects:
    """The ids of one project's objects that attempts aim at."""

    path: str
    id: int
    log_marker: str  # printed by its job, so a leaked log shows it
    finished_run: int = 0
    finished_run_number: int = 0
    finished_job: int = 0
    active_run: int = 0
    active_run_number: int = 0
    active_job: int = 0
    webhook: int = 0
    doomed_webhook: int = 0
    delivery: int = 0
    schedule: int = 0
    merge_request: int = 0

    @property
    def name(self) -> str:
        return self.path.split("/")[1]


@dataclasses.dataclass
class World:
    app: Appliance
    flask: object
    web: ProjectObjects
    lib: ProjectObjects
    core: ProjectObjects
    acme_org_id: int
    tokens: dict[str, str]  # name -> token text
    token_ids: dict[str, int]

    def password(self, username: str) -> str:
        return ADMIN_PASSWORD if username == "root" else PASSWORD


class TrackingClient(FlaskClient):
    """A test client that remembers the status of every response it received."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[str, str, int]] = []

    def open(self, *args, **kwargs):
        response = super().open(*args, **kwargs)
        request = response.request
        self.seen.append((request.method, request.path, response.status_code))
        return response


def _pipeline_project(app: Appliance, org: str, name: str) -> ProjectObjects:
    with app.db.session() as s:
        organisation = organisations.find_organisation(s, org) or organisations.create_organisation(s, org)
        project = organisations.create_project(s, organisation, name)
        objects = ProjectObjects(path=f"{org}/{name}", id=project.id, log_marker=f"log-of-{org}-{name}-{secrets.token_hex(4)}")
    repos.ensure_repository(app.config, objects.id)
    commit(app, objects.id, {".prts/pipeline.yaml": PIPELINE.format(marker=objects.log_marker), "README.md": f"{org} {name}\n"})
    commit(app, objects.id, {"feature.txt": "feature\n"}, branch="feature")
    return objects


def start_run(app: Appliance, project_id: int) -> tuple[int, int, int]:
    """A manual run of main, left queued; (run id, run number, first job id)."""
    with app.db.session() as s:
        project = s.get(Project, project_id)
        _ = project.organisation
        root = s.scalar(sa.select(User).where(User.username == "root"))
    run = runs.start_manual(app, project, "main", root)
    with app.db.session() as s:
        job = s.scalar(sa.select(PipelineJob.id).where(PipelineJob.run_id == run.id))
    return run.id, run.number, job


def _furnish(app: Appliance, objects: ProjectObjects) -> None:
    """Variables, webhooks with a delivery, a schedule and a merge request."""
    box = SecretBox.from_config(app.config)
    with app.db.session() as s:
        project = s.get(Project, objects.id)
        variables.set_variable(s, box, project, "TARGET", "kept-value", secret=False)
        variables.set_variable(s, box, project, "DOOMED", "kept-value", secret=False)
        variables.set_variable(s, box, project, "SECRET", SECRET_VALUE, secret=True)
        hook, _ = outbound.create_webhook(s, project, f"http://{WEBHOOK_HOST}:9/{objects.name}-hook", ["run"], app.config)
        doomed, _ = outbound.create_webhook(s, project, f"http://{WEBHOOK_HOST}:9/{objects.name}-doomed", ["run"],
                                            app.config)
        delivery = WebhookDelivery(webhook_id=hook.id, event="run", uuid=secrets.token_hex(16)[:36], payload="{}",
                                   status="failed", attempts=1)
        s.add(delivery)
        s.flush()
        objects.webhook, objects.doomed_webhook, objects.delivery = hook.id, doomed.id, delivery.id
        objects.schedule = schedules.add_schedule(s, project, "0 3 * * *", "main", "nightly").id
        root = s.scalar(sa.select(User).where(User.username == "root"))
        s.expunge(root)
    mr = merge_requests.open_merge_request(app, objects.id, source="feature", target="main",
                                           title=f"merge request of {objects.path}", author=root)
    objects.merge_request = mr.number


LDAP_PASSWORD = "lena's directory password"
LDAP_SERVICE_PASSWORD = "hostile suite reader password"


def ldap_directory(server) -> dict:
    """A subtree of the session's slapd with a service account and two people, lena and leo
    (names no local account has); the ``auth.ldap.*`` values that sign in against it."""
    base = f"ou=h{secrets.token_hex(4)},{server.base_dn}"
    people = f"ou=people,{base}"
    entries = [f"dn: {base}\nobjectClass: organizationalUnit\nou: {base.split(',')[0][3:]}",
               f"dn: {people}\nobjectClass: organizationalUnit\nou: people",
               f"dn: cn=reader,{base}\nobjectClass: person\ncn: reader\nsn: Reader\nuserPassword: {LDAP_SERVICE_PASSWORD}"]
    entries += [f"dn: uid={uid},{people}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\n"
                f"mail: {uid}@example.test\nuserPassword: {LDAP_PASSWORD}" for uid in ("lena", "leo")]
    server.add_ldif("\n\n".join(entries) + "\n")
    return {"auth__ldap__url": server.url, "auth__ldap__bind_dn": f"cn=reader,{base}",
            "auth__ldap__bind_password": LDAP_SERVICE_PASSWORD, "auth__ldap__user_base": people}


def build_world(data_dir: Path, flask_factory: Callable, **config_values) -> World:
    """The shared world; ``config_values`` add identity sources (LDAP, OIDC)."""
    config = make_config(
        data_dir,
        **config_values,
        # Hundreds of deliberately failed sign-ins come from one address; a lockout would
        # make every later attempt "refused" for the wrong reason.
        auth__max_failures_per_account=1_000_000,
        auth__max_failures_per_address=1_000_000,
        webhooks__allowed_hosts=WEBHOOK_HOST,
    )
    app = Appliance(config)
    migrate.upgrade(app.db)
    with app.db.session() as s:
        users.create_user(s, "root", ADMIN_PASSWORD, is_admin=True)
        for username in ("alice", "bob", "vic", "dev"):
            users.create_user(s, username, PASSWORD)
    web = _pipeline_project(app, "acme", "web")
    lib = _pipeline_project(app, "acme", "lib")
    core = _pipeline_project(app, "globex", "core")
    with app.db.session() as s:
        find = lambda name: users.find_user(s, name)  # noqa: E731
        acme = organisations.find_organisation(s, "acme")
        acme_org_id = acme.id
        organisations.grant(s, find("alice"), acme, Role.MAINTAINER)
        organisations.grant(s, find("bob"), s.get(Project, core.id), Role.MAINTAINER)
        organisations.grant(s, find("vic"), s.get(Project, web.id), Role.VIEWER)
        organisations.grant(s, find("dev"), s.get(Project, web.id), Role.DEVELOPER)
    for objects in (web, lib, core):
        objects.finished_run, objects.finished_run_number, objects.finished_job = start_run(app, objects.id)
    drain(app)
    for objects in (web, core):
        objects.active_run, objects.active_run_number, objects.active_job = start_run(app, objects.id)
        _furnish(app, objects)
    made: dict[str, str] = {}
    ids: dict[str, int] = {}
    with app.db.session() as s:
        alice, bob = users.find_user(s, "alice"), users.find_user(s, "bob")
        for label, owner, scope, project in (
            ("alice-read", alice, "read", None),
            ("alice-write-web", alice, "write", s.get(Project, web.id)),
            ("alice-write", alice, "write", None),
            ("bob-read", bob, "read", None),
        ):
            row, text = tokens.create_token(s, owner, label, scope, project=project)
            made[label], ids[label] = text, row.id
    flask = flask_factory(app)
    return World(app=app, flask=flask, web=web, lib=lib, core=core, acme_org_id=acme_org_id, tokens=made, token_ids=ids)


# -- state the attempts check ----------------------------------------------------------------


def variable_value(world: World, project_id: int, name: str) -> str | None:
    with world.app.db.session() as s:
        row = s.scalar(sa.select(ProjectVariable).where(ProjectVariable.project_id == project_id,
                                                         ProjectVariable.name == name))
        if row is None:
            return None
        return "<secret>" if row.is_secret else row.value


def webhook_state(world: World, webhook_id: int) -> tuple | None:
    with world.app.db.session() as s:
        row = s.get(Webhook, webhook_id)
        return None if row is None else (row.url, row.events, row.active, bytes(row.secret_ciphertext))


def webhook_count(world: World, project_id: int) -> int:
    with world.app.db.session() as s:
        return s.scalar(sa.select(sa.func.count()).select_from(Webhook).where(Webhook.project_id == project_id))


def delivery_count(world: World) -> int:
    with world.app.db.session() as s:
        return s.scalar(sa.select(sa.func.count()).select_from(WebhookDelivery))


def run_count(world: World, project_id: int) -> int:
    with world.app.db.session() as s:
        return s.scalar(sa.select(sa.func.count()).select_from(PipelineRun).where(PipelineRun.project_id == project_id))


def run_status(world: World, run_id: int) -> str:
    with world.app.db.session() as s:
        return s.get(PipelineRun, run_id).status


def job_state(world: World, job_id: int) -> tuple[str, int]:
    with world.app.db.session() as s:
        job = s.get(PipelineJob, job_id)
        return job.status, job.attempt


def schedule_state(world: World, schedule_id: int) -> tuple | None:
    with world.app.db.session() as s:
        row = s.get(PipelineSchedule, schedule_id)
        return None if row is None else (row.cron, row.ref, row.enabled)


def schedule_count(world: World, project_id: int) -> int:
    with world.app.db.session() as s:
        return s.scalar(sa.select(sa.func.count()).select_from(PipelineSchedule)
                        .where(PipelineSchedule.project_id == project_id))


def token_live(world: World, token_id: int) -> bool:
    with world.app.db.session() as s:
        row = s.get(ApiToken, token_id)
        return row is not None and row.revoked_at is None


def token_count(world: World, username: str) -> int:
    with world.app.db.session() as s:
        user = users.find_user(s, username)
        return s.scalar(sa.select(sa.func.count()).select_from(ApiToken).where(ApiToken.user_id == user.id))


def project_exists(world: World, path: str) -> bool:
    with world.app.db.session() as s:
        org, name = path.split("/")
        organisation = organisations.find_organisation(s, org)
        return organisation is not None and organisations.find_project(s, organisation, name) is not None


def password_works(world: World, username: str, password: str) -> bool:
    with world.app.db.session() as s:
        return users.authenticate(s, username, password) is not None


# -- one attempt -------------------------------------------------------------------------------

REFUSED, ACCEPTED, SERVER_ERROR, UNCLEAR = "refused", "ACCEPTED", "SERVER ERROR", "UNCLEAR"


@dataclasses.dataclass
class Verdict:
    case: str
    outcome: str
    reasons: list[str]


class Attempt:
    """One hostile input: the clients it used and what got through.

    ``accept(why)`` records that the input was accepted (state changed, or a 2xx where a
    refusal was required); ``unclear(why)`` that it was refused without saying which field
    was wrong. Any 5xx any client of the attempt saw is a server error."""

    def __init__(self, world: World, case: str):
        self.world = world
        self.case = case
        self.clients: list[TrackingClient] = []
        self.accepted: list[str] = []
        self.unclear_reasons: list[str] = []
        self.marker = "hostile" + secrets.token_hex(4)

    # clients
    def client(self) -> TrackingClient:
        client = self.world.flask.test_client()
        self.clients.append(client)
        return client

    def signed_in(self, username: str, password: str | None = None) -> TrackingClient:
        client = self.client()
        answer = sign_in(client, username, password or self.world.password(username))
        if answer.status_code != 302:
            raise AssertionError(f"the suite could not sign {username} in ({answer.status_code})")
        return client

    def fresh_user(self, *, is_admin: bool = False) -> str:
        """A throw-away account for an attempt that, if wrongly accepted, would spoil its actor."""
        username = "u" + self.marker
        with self.world.app.db.session() as s:
            users.create_user(s, username, PASSWORD, is_admin=is_admin)
        return username

    # verdicts
    def accept(self, why: str) -> None:
        self.accepted.append(why)

    def accept_if(self, condition: bool, why: str) -> None:
        if condition:
            self.accept(why)

    def unclear(self, why: str) -> None:
        self.unclear_reasons.append(why)

    def verdict(self) -> Verdict:
        errors = [f"{m} {p} answered {c}" for client in self.clients for m, p, c in client.seen if c >= 500]
        if errors:
            return Verdict(self.case, SERVER_ERROR, errors + self.accepted)
        if self.accepted:
            return Verdict(self.case, ACCEPTED, self.accepted)
        if self.unclear_reasons:
            return Verdict(self.case, UNCLEAR, self.unclear_reasons)
        return Verdict(self.case, REFUSED, [])


# -- request helpers ---------------------------------------------------------------------------


def sign_in(client: FlaskClient, username: str, password: str, *, next_url: str | None = None, headers=None):
    path = "/login" if next_url is None else "/login?" + _query("next", next_url)
    token = csrf_token(client.get(path).get_data(as_text=True))
    return client.post(path, data={"username": username, "password": password, "csrf_token": token},
                       headers=headers or {})


def _query(key: str, value: str) -> str:
    from urllib.parse import quote

    return f"{key}={quote(value, safe='')}"


def page_token(client: FlaskClient, path: str = "/") -> str:
    return csrf_token(client.get(path).get_data(as_text=True))


def basic(username: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{secret}".encode()).decode()}


def is_login_redirect(response) -> bool:
    return response.status_code in (301, 302, 303, 307, 308) and "/login" in response.headers.get("Location", "")


def is_refusal(response) -> bool:
    """4xx, or a redirect to the sign-in page."""
    return 400 <= response.status_code < 500 or is_login_redirect(response)


def signed_in_as(client: FlaskClient) -> bool:
    """Whether the client's cookie is a signed-in session (a page that needs one answers 200)."""
    return client.get("/user/tokens").status_code == 200


BROWSER_BASE = "http://localhost/login"


def redirect_target_host(location: str) -> tuple[str, str]:
    """(scheme, host) a browser would go to for this Location, after the clean-ups browsers
    make: tab and newline removed, leading/trailing controls and spaces stripped, and a
    backslash read as a slash in http(s) URLs."""
    cleaned = re.sub(r"[\t\n\r]", "", location).strip("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f"
                                                         "\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c"
                                                         "\x1d\x1e\x1f ")
    cleaned = cleaned.replace("\\", "/")
    target = urlsplit(urljoin(BROWSER_BASE, cleaned))
    return target.scheme.lower(), (target.hostname or "").lower()


def leaves_the_site(location: str) -> bool:
    scheme, host = redirect_target_host(location)
    return scheme not in ("http", "https") or host != "localhost"
