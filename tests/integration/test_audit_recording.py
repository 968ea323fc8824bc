"""What the appliance's actions write to the audit trail, in the transaction of the action:
runs started from a page, by a push and by a schedule, cancels and reruns, and webhook
changes without the secrets a URL may carry. On SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
import sqlalchemy as sa

from appliance.accounts import organisations, users
from appliance.hosting import pushes
from appliance.hosting.refupdates import ZERO, RefUpdate
from appliance.models import AuditEvent, PipelineRun, Project, Role
from appliance.models.base import utcnow
from appliance.pipelines import schedules
from conftest import ADMIN_PASSWORD, csrf_token, make_config, sign_in
from tests.pipelinekit import commit, make_project

PIPELINE = """
version: "1.0"
name: Audited
triggers:
  - push: { branches: [main] }
  - manual: {}
  - schedule: { cron: "0 3 * * *" }
stages:
  - name: Build
    jobs:
      - name: build
        steps: [ { run: "sleep 30" } ]
"""


@pytest.fixture
def config(tmp_path, db_values):
    return make_config(tmp_path / "data", webhooks__allowed_hosts="127.0.0.2", **db_values)


@pytest.fixture
def project_id(appliance, admin):
    pid = make_project(appliance, "acme", "web")
    commit(appliance, pid, {".prts/pipeline.yaml": PIPELINE})
    return pid


def events(appliance, prefix: str = "") -> list[AuditEvent]:
    with appliance.db.session() as s:
        return list(s.scalars(sa.select(AuditEvent).where(AuditEvent.action.startswith(prefix))
                              .order_by(AuditEvent.seq)))


def post(client, path: str, data: dict | None = None, token_from: str = "/acme/web/-/pipelines"):
    token = csrf_token(client.get(token_from).get_data(as_text=True))
    return client.post(path, data={"csrf_token": token, **(data or {})})


def test_page_actions_on_runs_are_recorded_with_actor_and_address(client, appliance, project_id):
    sign_in(client, "root", ADMIN_PASSWORD)
    assert post(client, "/acme/web/-/pipelines", {"ref": "main"}).status_code == 302
    assert post(client, "/acme/web/-/pipelines/1/cancel").status_code == 302
    assert post(client, "/acme/web/-/pipelines/1/rerun").status_code == 302
    started, canceled, again = events(appliance, "run.")
    assert (started.action, started.actor, started.address, started.target, started.outcome) == \
        ("run.started", "root", "127.0.0.1", "acme/web#1", "success")
    assert started.detail.startswith("manual of refs/heads/main at ")
    assert (canceled.action, canceled.target, canceled.actor) == ("run.canceled", "acme/web#1", "root")
    assert (again.action, again.target) == ("run.started", "acme/web#2") and "rerun of #1" in again.detail
    assert {e.project_id for e in (started, canceled, again)} == {project_id}
    with appliance.db.session() as s:  # each event committed with its change
        assert s.scalar(sa.select(PipelineRun.status).where(PipelineRun.number == 1)) == "canceled"


def test_a_push_run_is_the_pushers_and_a_scheduled_run_is_the_systems(appliance, project_id):
    with appliance.db.session() as s:
        pusher = users.create_user(s, "pusher", "a long enough password")
    sha = commit(appliance, project_id, {"README.md": "more\n"})
    pushes.process_push(appliance, project_id, [RefUpdate(old=ZERO, new=sha, ref="refs/heads/main")], pusher.id)
    schedules.run_due(appliance, utcnow() + dt.timedelta(days=2))
    by_push, by_schedule = events(appliance, "run.started")
    assert (by_push.actor, by_push.actor_id) == ("pusher", pusher.id) and by_push.detail.startswith("push of")
    assert (by_schedule.actor, by_schedule.actor_id) == ("system", None)
    assert by_schedule.detail.startswith("schedule of refs/heads/main")


def test_webhook_changes_are_recorded_without_url_secrets(client, appliance, project_id):
    sign_in(client, "root", ADMIN_PASSWORD)
    page = "/acme/web/-/settings/webhooks"
    answer = post(client, page, {"url": "http://127.0.0.2:9/hook?token=s3cret", "event_run": "y",
                                 "active": "y"}, token_from=page)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    (created,) = events(appliance, "webhook.")
    assert created.action == "webhook.created" and created.actor == "root"
    assert "http://127.0.0.2:9/hook" in created.detail
    assert "s3cret" not in created.detail


def test_a_refused_push_is_recorded_as_denied(client, appliance, project_id):
    with appliance.db.session() as s:
        viewer = users.create_user(s, "stranger", "a long enough password")
        organisations.grant(s, viewer, s.get(Project, project_id), Role.VIEWER)
    auth = base64.b64encode(b"stranger:a long enough password").decode()
    answer = client.get("/acme/web.git/info/refs?service=git-receive-pack", headers={"Authorization": f"Basic {auth}"})
    assert answer.status_code == 403
    (denied,) = events(appliance, "git.push")
    assert (denied.actor, denied.outcome, denied.target) == ("stranger", "denied", "acme/web")
    assert "pushing needs the Developer role" in denied.detail


def test_a_run_started_from_the_shell_is_the_clis(appliance, project_id, db_values):
    from test_cli import prts

    env = {"PRTS_DATABASE_URL": db_values["database__url"]} if db_values else {}
    result = prts(appliance.config.data_path, "pipeline", "run", "acme/web", **env)
    assert result.returncode == 0, result.stderr
    (started,) = events(appliance, "run.started")
    assert (started.actor, started.target) == ("cli", "acme/web#1")
