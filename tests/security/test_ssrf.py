"""Server-side request forgery: outbound webhooks cannot be aimed at the appliance's own
network, neither when they are made nor when they are sent, nor through a redirect.

Real HTTP servers listen on 127.0.0.1 (the "internal service" an attacker wants to reach)
and on 127.0.0.2 (a receiver the administrator allow-listed). Every refused case checks
that the internal server received nothing.
"""

from __future__ import annotations

import pytest

from appliance.errors import ValidationError
from appliance.hosting import outbound
from appliance.models import Project, Webhook
from conftest import make_config
from tests.integration.test_outbound_webhooks import RECEIVER_HOST, Receiver, deliveries
from tests.pipelinekit import drain, make_project

SSRF_TARGETS = [
    ("http://127.1/", "127.0.0.1, a loopback address"),
    ("http://0x7f000001/", "127.0.0.1, a loopback address"),
    ("http://2130706433/", "127.0.0.1, a loopback address"),
    ("http://017700000001/", "127.0.0.1, a loopback address"),
    ("http://[::ffff:127.0.0.1]/", "carrying 127.0.0.1, a loopback address"),
    ("http://[::1]/", "::1 is a loopback address"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is the cloud metadata address"),
    ("http://[::ffff:169.254.169.254]/latest/meta-data/", "carrying 169.254.169.254"),
    ("http://10.0.0.1/", "10.0.0.1 is a private address"),
    ("http://192.168.1.1/", "192.168.1.1 is a private address"),
    ("http://100.64.0.1/", "100.64.0.1 is a shared"),
    ("http://0.0.0.0/", "0.0.0.0 is an unspecified address"),
    ("http://localhost/", "localhost resolves to 127.0.0.1, a loopback address"),
    ("http://[fe80::1]/", "fe80::1 is a link-local address"),
    ("http://[fd00::1]/", "fd00::1 is a unique local (private) address"),
]


@pytest.fixture
def config(tmp_path):
    return make_config(tmp_path / "data", webhooks__allowed_hosts=RECEIVER_HOST, webhooks__max_attempts=2,
                       webhooks__timeout_seconds=5)


@pytest.fixture
def project_id(appliance):
    return make_project(appliance)


@pytest.fixture
def internal():
    """The internal service an attacker aims at, really listening on loopback."""
    with Receiver(host="127.0.0.1", script=[(200, {}, b"secret internal data")]) as server:
        yield server


def planted_webhook(app, project_id: int, url: str) -> int:
    """A webhook whose URL was allowed when it was made (the allow-list or the name's
    address changed since): stored directly, past the check at creation."""
    with app.db.session() as s:
        webhook, _ = outbound.create_webhook(s, s.get(Project, project_id), f"http://{RECEIVER_HOST}/", ["deployment"],
                                             app.config)
        webhook.url = url
        return webhook.id


def send_one(app, project_id: int, webhook_id: int):
    outbound.enqueue_event(app, project_id, "deployment", {"event": "deployment"})
    drain(app)
    (row,) = deliveries(app, webhook_id)
    return row


@pytest.mark.parametrize("url,reason", SSRF_TARGETS)
def test_a_webhook_cannot_be_made_for_a_non_public_address(appliance, project_id, url, reason):
    with appliance.db.session() as s:
        with pytest.raises(ValidationError) as info:
            outbound.create_webhook(s, s.get(Project, project_id), url, ["run"], appliance.config)
    assert info.value.field == "url"
    assert reason in info.value.message and "webhooks.allowed_hosts" in info.value.message
    with appliance.db.session() as s:
        assert s.query(Webhook).count() == 0


@pytest.mark.parametrize("spelling", ["127.1", "0x7f000001", "2130706433", "017700000001", "[::ffff:127.0.0.1]",
                                      "localhost", "127.0.0.1"])
def test_sending_to_loopback_is_refused_and_nothing_arrives(appliance, project_id, internal, spelling):
    port = internal.server_address[1]
    webhook_id = planted_webhook(appliance, project_id, f"http://{spelling}:{port}/admin")
    row = send_one(appliance, project_id, webhook_id)
    # Refused is final: retrying cannot change the answer, so there is one attempt.
    assert (row.status, row.attempts, row.response_code) == ("failed", 1, None)
    assert "refused" in row.error and "loopback address" in row.error
    assert internal.requests == []


def test_a_redirect_to_loopback_is_refused_and_recorded(appliance, project_id, internal):
    target = f"http://127.0.0.1:{internal.server_address[1]}/admin"
    with Receiver(script=[(302, {"Location": target}, b"")]) as outside:
        with appliance.db.session() as s:
            webhook, _ = outbound.create_webhook(s, s.get(Project, project_id), outside.url + "/hook",
                                                 ["deployment"], appliance.config)
            webhook_id = webhook.id
        row = send_one(appliance, project_id, webhook_id)
    assert len(outside.requests) == 1
    assert internal.requests == []
    assert row.status == "failed"
    assert "127.0.0.1" in row.error and "loopback address" in row.error and "redirect" in row.error


def test_a_redirect_to_cloud_metadata_is_refused(appliance, project_id):
    metadata = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
    with Receiver(script=[(307, {"Location": metadata}, b"")]) as outside:
        with appliance.db.session() as s:
            webhook, _ = outbound.create_webhook(s, s.get(Project, project_id), outside.url, ["deployment"],
                                                 appliance.config)
            webhook_id = webhook.id
        row = send_one(appliance, project_id, webhook_id)
    assert row.status == "failed" and "cloud metadata" in row.error


def test_redirects_are_followed_at_most_three_times(appliance, project_id):
    with Receiver(script=[(302, {"Location": "/again"}, b"")]) as outside:
        with appliance.db.session() as s:
            webhook, _ = outbound.create_webhook(s, s.get(Project, project_id), outside.url, ["deployment"],
                                                 appliance.config)
            webhook_id = webhook.id
        row = send_one(appliance, project_id, webhook_id)
    assert len(outside.requests) == 4  # the first POST and three redirects
    assert "more than 3 redirects" in row.error and row.status != "delivered"


def test_an_allow_listed_redirect_is_followed_with_the_body(appliance, project_id):
    with Receiver(script=[(200, {}, b"landed")]) as final, \
            Receiver(script=[(308, {"Location": final.url + "/moved"}, b"")]) as outside:
        with appliance.db.session() as s:
            webhook, _ = outbound.create_webhook(s, s.get(Project, project_id), outside.url, ["deployment"],
                                                 appliance.config)
            webhook_id = webhook.id
        row = send_one(appliance, project_id, webhook_id)
    assert (row.status, row.response_code, row.response_excerpt) == ("delivered", 200, "landed")
    (request,) = final.requests
    assert request["path"] == "/moved" and request["body"] == outside.requests[0]["body"]


def test_an_allow_listed_address_is_reached(appliance, project_id):
    with Receiver() as receiver:
        with appliance.db.session() as s:
            webhook, _ = outbound.create_webhook(s, s.get(Project, project_id), receiver.url, ["deployment"],
                                                 appliance.config)
            webhook_id = webhook.id
        row = send_one(appliance, project_id, webhook_id)
    assert row.status == "delivered" and len(receiver.requests) == 1


def test_the_allow_list_is_read_again_at_every_attempt(tmp_path, project_id, appliance):
    """An address allowed when the webhook was made but no longer allowed is refused."""
    from appliance.context import Appliance

    with Receiver() as receiver:
        with appliance.db.session() as s:
            webhook, _ = outbound.create_webhook(s, s.get(Project, project_id), receiver.url, ["deployment"],
                                                 appliance.config)
            webhook_id = webhook.id
        stricter = Appliance(make_config(tmp_path / "data", webhooks__timeout_seconds=5))
        try:
            outbound.enqueue_event(stricter, project_id, "deployment", {"event": "deployment"})
            drain(stricter)
        finally:
            stricter.close()
        (row,) = deliveries(appliance, webhook_id)
    assert row.status == "failed" and "127.0.0.2 is a loopback address" in row.error
    assert receiver.requests == []
