"""The webhook settings pages (``webapp/webhooks.py``): adding a webhook shows its secret
once, the delivery log lists attempts, Redeliver sends again, editing, regenerating and
deleting, and who may do it.

The receiver is a real HTTP server in a thread on 127.0.0.2 (``Receiver`` from
``test_outbound_webhooks``), which the appliance's config
allow-lists (``webhooks.allowed_hosts``), as an administrator would for a CI server on the
local network. Deliveries run in-process with ``drain``; a retry that is not yet due is
made due by passing ``deliver_due`` a later ``now`` (no test waits for the clock).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import html
import json
import re

import pytest
import sqlalchemy as sa

from appliance import repos
from appliance.accounts import organisations, users
from appliance.hosting import outbound
from appliance.models import Role, Webhook, WebhookDelivery
from appliance.models.base import utcnow
from conftest import ADMIN_PASSWORD, AuthActions, csrf_token, make_config, sign_in
from test_outbound_webhooks import RECEIVER_HOST, Receiver
from tests.pipelinekit import drain

PASSWORD = "a long enough password"
PAGE = "/acme/web/-/settings/webhooks"


@pytest.fixture
def config(tmp_path):
    return make_config(tmp_path / "data", webhooks__allowed_hosts=RECEIVER_HOST)


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


@pytest.fixture
def site(appliance, admin, flask_app):
    """acme/web with a Developer, a Maintainer and an outsider; the project's id."""
    from webapp import webhooks

    if webhooks.bp.name not in flask_app.blueprints:  # until the app factory registers it
        flask_app.register_blueprint(webhooks.bp)
    with appliance.db.session() as s:
        org = organisations.create_organisation(s, "acme")
        web = organisations.create_project(s, org, "web")
        organisations.create_project(s, org, "other")
        for username, role in (("dev", Role.DEVELOPER), ("maint", Role.MAINTAINER), ("outsider", None)):
            user = users.create_user(s, username, PASSWORD)
            if role is not None:
                organisations.grant(s, user, web, role)
        project_id = web.id
    repos.ensure_repository(appliance.config, project_id)
    return project_id


def login(client, username: str) -> None:
    sign_in(client, username, ADMIN_PASSWORD if username == "root" else PASSWORD)


def token(client, path: str = PAGE) -> str:
    return csrf_token(client.get(path).get_data(as_text=True))


def shown_secret(page: str) -> str | None:
    match = re.search(r'id="webhook-secret"[^>]*value="([^"]+)"', page)
    return html.unescape(match.group(1)) if match else None


def add_webhook(client, url: str, events=("run", "deployment")):
    data = {"csrf_token": token(client), "url": url, "active": "y"}
    data.update({f"event_{e}": "y" for e in events})
    return client.post(PAGE, data=data)


def only_webhook(appliance) -> Webhook:
    with appliance.db.session() as s:
        (hook,) = s.scalars(sa.select(Webhook)).all()
        return hook


def deliveries(appliance) -> list[WebhookDelivery]:
    with appliance.db.session() as s:
        return list(s.scalars(sa.select(WebhookDelivery).order_by(WebhookDelivery.id)))


def verifies(secret: str, request: dict) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), request["body"], hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, request["headers"]["X-PRTS-Signature-256"])


# -- adding -------------------------------------------------------------------------------


def test_adding_a_webhook_shows_its_secret_once_and_deliveries_verify_with_it(client, site, appliance, receiver):
    login(client, "maint")
    page = client.get(PAGE)
    assert page.status_code == 200 and "No webhooks" in page.get_data(as_text=True)

    added = add_webhook(client, receiver.url, events=("deployment",))
    assert added.status_code == 200 and added.headers["Cache-Control"] == "no-store"
    text = added.get_data(as_text=True)
    secret = shown_secret(text)
    assert secret and len(secret) >= 32 and "not shown again" in text

    hook = only_webhook(appliance)
    assert (hook.url, hook.events, hook.active) == (receiver.url, "deployment", True)
    for later in (client.get(PAGE), client.get(f"{PAGE}/{hook.id}")):
        body = later.get_data(as_text=True)
        assert later.status_code == 200 and receiver.url in body
        assert secret not in body and shown_secret(body) is None
    assert secret.encode() not in hook.secret_ciphertext

    outbound.enqueue_event(appliance, site, "deployment", {"event": "deployment", "environment": "prod"})
    drain(appliance)
    (request,) = receiver.requests
    assert verifies(secret, request)
    assert request["headers"]["X-PRTS-Event"] == "deployment"
    assert json.loads(request["body"]) == {"event": "deployment", "environment": "prod"}


@pytest.mark.parametrize("url,events,words", [
    ("http://127.0.0.1:9/hook", ("run",), "127.0.0.1 is a loopback address; an admin can allow it with webhooks.allowed_hosts"),
    ("http://169.254.169.254/latest/meta-data/", ("run",), "cloud metadata"),
    ("ftp://example.com/", ("run",), "must start with http://, https://"),
    ("", ("run",), "Payload URL is required."),
    (f"http://{RECEIVER_HOST}:9/hook", (), "Events: Choose at least one event."),
])
def test_a_refused_webhook_is_shown_with_the_reason(client, site, appliance, url, events, words):
    login(client, "maint")
    answer = add_webhook(client, url, events=events)
    assert answer.status_code == 422
    text = html.unescape(answer.get_data(as_text=True))
    assert words in text
    assert shown_secret(text) is None
    with appliance.db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Webhook)) == 0


def test_every_form_needs_a_csrf_token(client, site, appliance, receiver):
    login(client, "maint")
    assert client.post(PAGE, data={"url": receiver.url, "event_run": "y"}).status_code == 400
    add_webhook(client, receiver.url)
    hook = only_webhook(appliance)
    for path in (f"{PAGE}/{hook.id}", f"{PAGE}/{hook.id}/secret", f"{PAGE}/{hook.id}/delete"):
        assert client.post(path, data={"event_run": "y"}).status_code == 400
    assert only_webhook(appliance).secret_ciphertext == hook.secret_ciphertext


# -- who may ------------------------------------------------------------------------------


def test_a_developer_gets_403_and_an_outsider_404(client, site, appliance, receiver):
    with appliance.db.session() as s:
        hook, _ = outbound.create_webhook(s, s.get(outbound.Project, site), receiver.url, ["run"], appliance.config)
        hook_id = hook.id
    outbound.enqueue_event(appliance, site, "run", {"event": "run"})
    drain(appliance)
    (delivery,) = deliveries(appliance)
    any_token = csrf_token(client.get("/login").get_data(as_text=True))
    paths = [(PAGE, "get"), (f"{PAGE}/{hook_id}", "get"), (f"{PAGE}/{hook_id}/deliveries", "get"),
             (PAGE, "post"), (f"{PAGE}/{hook_id}", "post"), (f"{PAGE}/{hook_id}/secret", "post"),
             (f"{PAGE}/{hook_id}/delete", "post"), (f"{PAGE}/{hook_id}/deliveries/{delivery.id}/redeliver", "post")]
    for username, code in (("dev", 403), ("outsider", 404)):
        login(client, username)
        any_token = csrf_token(client.get("/").get_data(as_text=True))
        for path, method in paths:
            if method == "get":
                assert client.get(path).status_code == code, (username, path)
            else:
                answer = client.post(path, data={"csrf_token": any_token, "url": receiver.url, "event_run": "y"})
                assert answer.status_code == code, (username, path)
        AuthActions(client).logout()
    assert only_webhook(appliance).id == hook_id and len(deliveries(appliance)) == 1
    assert len(receiver.requests) == 1


def test_a_webhook_of_another_project_is_not_found(client, site, appliance, receiver):
    with appliance.db.session() as s:
        other = organisations.get_project(s, "acme/other")
        hook, _ = outbound.create_webhook(s, other, receiver.url, ["run"], appliance.config)
        hook_id = hook.id
    login(client, "root")
    assert client.get(f"{PAGE}/{hook_id}").status_code == 404
    answer = client.post(f"{PAGE}/{hook_id}/delete", data={"csrf_token": token(client)})
    assert answer.status_code == 404
    assert client.get(f"/acme/other/-/settings/webhooks/{hook_id}").status_code == 200


# -- the delivery log ---------------------------------------------------------------------


def test_the_delivery_log_lists_attempts_and_redeliver_sends_again(client, site, appliance):
    with Receiver(script=((500, {}, b"answer 1 with 500"), (200, {}, b"ok"))) as receiver:
        login(client, "maint")
        secret = shown_secret(add_webhook(client, receiver.url).get_data(as_text=True))
        hook = only_webhook(appliance)
        show = f"{PAGE}/{hook.id}"
        assert "No deliveries yet" in client.get(show).get_data(as_text=True)

        outbound.enqueue_event(appliance, site, "run", {"event": "run", "run": {"number": 7}})
        drain(appliance)
        (row,) = deliveries(appliance)
        assert (row.status, row.attempts, row.response_code) == ("pending", 1, 500)
        page = client.get(show).get_data(as_text=True)
        assert row.uuid in page and "pending" in page and "<code>500</code>" in page
        assert "the receiver answered 500" in page and "answer 1 with 500" in page
        # A pending delivery makes the log refresh itself; unchanged, the refresh is a 204.
        match = re.search(r'hx-get="([^"]+/deliveries\?since=[^"]+)"', page)
        assert match
        refresh = html.unescape(match.group(1))
        assert client.get(refresh, headers={"HX-Request": "true"}).status_code == 204

        assert outbound.deliver_due(appliance, now=row.next_attempt_at + dt.timedelta(seconds=1)) == [row.id]
        (row,) = deliveries(appliance)
        assert (row.status, row.attempts, row.response_code) == ("delivered", 2, 200)
        partial = client.get(refresh, headers={"HX-Request": "true"})
        assert partial.status_code == 200
        text = partial.get_data(as_text=True)
        assert "delivered" in text and "hx-trigger" not in text  # nothing pending: polling stops
        page = client.get(show).get_data(as_text=True)
        assert re.search(r"<td>2</td>", page) and " ms</td>" in page

        redeliver = f"{show}/deliveries/{row.id}/redeliver"
        answer = client.post(redeliver, data={"csrf_token": token(client, show)})
        assert answer.status_code == 302 and answer.headers["Location"].endswith(show)
        drain(appliance)
        first, again = deliveries(appliance)
        assert again.status == "delivered" and again.attempts == 1 and again.payload == first.payload
        assert again.uuid != first.uuid
        assert len(receiver.requests) == 3
        assert receiver.requests[1]["body"] == receiver.requests[2]["body"]
        assert receiver.requests[2]["headers"]["X-PRTS-Delivery"] == again.uuid
        assert all(verifies(secret, r) for r in receiver.requests)
        page = client.get(show).get_data(as_text=True)
        assert first.uuid in page and again.uuid in page
        assert page.index(again.uuid) < page.index(first.uuid)  # newest first


# -- editing ------------------------------------------------------------------------------


def test_editing_regenerating_and_deleting_a_webhook(client, site, appliance, receiver):
    login(client, "maint")
    old_secret = shown_secret(add_webhook(client, receiver.url, events=("run",)).get_data(as_text=True))
    hook = only_webhook(appliance)
    show = f"{PAGE}/{hook.id}"

    none_chosen = client.post(show, data={"csrf_token": token(client, show), "active": "y"})
    assert none_chosen.status_code == 422
    assert "Choose at least one event" in html.unescape(none_chosen.get_data(as_text=True))
    assert only_webhook(appliance).events == "run"

    saved = client.post(show, data={"csrf_token": token(client, show), "event_deployment": "y"})
    assert saved.status_code == 302 and saved.headers["Location"].endswith(show)
    hook = only_webhook(appliance)
    assert (hook.events, hook.active) == ("deployment", False)
    assert "inactive" in client.get(PAGE).get_data(as_text=True)
    outbound.enqueue_event(appliance, site, "deployment", {"event": "deployment"})
    assert deliveries(appliance) == []  # an inactive webhook is sent nothing

    client.post(show, data={"csrf_token": token(client, show), "event_deployment": "y", "active": "y"})
    regenerated = client.post(f"{show}/secret", data={"csrf_token": token(client, show)})
    assert regenerated.status_code == 200 and regenerated.headers["Cache-Control"] == "no-store"
    new_secret = shown_secret(regenerated.get_data(as_text=True))
    assert new_secret and new_secret != old_secret
    assert shown_secret(client.get(show).get_data(as_text=True)) is None
    outbound.enqueue_event(appliance, site, "deployment", {"event": "deployment"})
    drain(appliance)
    (request,) = receiver.requests
    assert verifies(new_secret, request) and not verifies(old_secret, request)

    deleted = client.post(f"{show}/delete", data={"csrf_token": token(client, show)})
    assert deleted.status_code == 302 and deleted.headers["Location"].endswith(PAGE)
    assert client.get(show).status_code == 404
    assert "No webhooks" in client.get(PAGE).get_data(as_text=True)
    assert deliveries(appliance) == []


def test_a_run_delivery_is_listed_with_its_event(client, site, appliance, receiver):
    with appliance.db.session() as s:
        outbound.create_webhook(s, s.get(outbound.Project, site), receiver.url, ["run"], appliance.config)
    with appliance.db.session() as s:
        run = outbound.PipelineRun(project_id=site, number=1, event="push", ref="refs/heads/main",
                                   commit_sha="a" * 40, status="success", started_at=utcnow(), finished_at=utcnow())
        s.add(run)
        s.flush()
        run_id = run.id
    assert len(outbound.run_finished(appliance, run_id)) == 1
    assert outbound.run_finished(appliance, run_id) == []  # the same finish is sent once
    drain(appliance)
    login(client, "maint")
    page = client.get(f"{PAGE}/{only_webhook(appliance).id}").get_data(as_text=True)
    assert "Pipeline run finished" in page and "delivered" in page
    assert json.loads(receiver.requests[0]["body"])["run"]["status"] == "success"
