"""Outbound webhooks (``appliance.hosting.outbound``) sent to real HTTP receivers on
loopback: signatures, retries, claims and the "run" event.

The receivers listen on 127.0.0.2, which the test config allow-lists
(``webhooks.allowed_hosts``) as an administrator would for a receiver on the LAN.
Retries are driven by calling ``deliver_due`` with the time the next attempt is due,
never by waiting. ``tests/security/test_ssrf.py`` imports ``Receiver`` from here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from appliance.hosting import outbound
from appliance.models import Project, Webhook, WebhookDelivery
from conftest import make_config
from tests.pipelinekit import commit, drain, make_project

RECEIVER_HOST = "127.0.0.2"
PIPELINE = """
version: "1.0"
name: Hooked
triggers:
  - push: { branches: [main] }
stages:
  - name: Build
    jobs: [ { name: check, steps: [ { run: "true" } ] } ]
"""


class Receiver(ThreadingHTTPServer):
    """An HTTP server on a loopback address that records every request and answers from
    a script of (code, headers, body); the last entry answers every request after it."""

    daemon_threads = True

    def __init__(self, host: str = RECEIVER_HOST, script=((200, {}, b"ok"),)):
        self.requests: list[dict] = []
        self.script = list(script)
        super().__init__((host, 0), _Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.server_address[0]}:{self.server_address[1]}"

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (the http.server name)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        server: Receiver = self.server
        server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        code, headers, content = server.script[min(len(server.requests) - 1, len(server.script) - 1)]
        self.send_response(code)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    do_GET = do_POST  # noqa: N815

    def log_message(self, *args):
        pass


@pytest.fixture
def config(tmp_path, db_values):
    # Both databases: claims are conditional UPDATEs and run events rely on a unique key.
    return make_config(tmp_path / "data", webhooks__allowed_hosts=RECEIVER_HOST, webhooks__max_attempts=3,
                       webhooks__timeout_seconds=5, web__public_url="https://prts.example", **db_values)


def add_webhook(app, project_id: int, url: str, events=("run", "deployment")) -> tuple[int, str]:
    with app.db.session() as s:
        webhook, secret = outbound.create_webhook(s, s.get(Project, project_id), url, events, app.config)
        return webhook.id, secret


def deliveries(app, webhook_id: int) -> list[WebhookDelivery]:
    with app.db.session() as s:
        rows = outbound.recent_deliveries(s, webhook_id)
        s.expunge_all()
        return rows


def settle(app, webhook_id: int) -> WebhookDelivery:
    """Drain the queue, then make every retry at the time it comes due, until the one
    delivery is delivered or failed."""
    drain(app)
    for _ in range(20):
        (row,) = deliveries(app, webhook_id)
        if row.status != "pending":
            return row
        assert len(outbound.deliver_due(app, now=row.next_attempt_at)) == 1
    raise AssertionError("the delivery never settled")


def test_delivery_is_signed_with_the_secret_shown_once(appliance):
    project_id = make_project(appliance)
    with Receiver() as receiver:
        webhook_id, secret = add_webhook(appliance, project_id, receiver.url + "/hook?x=1")
        ids = outbound.enqueue_event(appliance, project_id, "deployment", {"event": "deployment", "n": 1})
        assert len(ids) == 1
        row = settle(appliance, webhook_id)
    assert (row.status, row.attempts, row.response_code, row.response_excerpt) == ("delivered", 1, 200, "ok")
    (request,) = receiver.requests
    assert request["path"] == "/hook?x=1"
    headers, body = request["headers"], request["body"]
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-PRTS-Signature-256"], expected)
    assert headers["X-PRTS-Event"] == "deployment"
    assert headers["X-PRTS-Delivery"] == row.uuid
    assert headers["User-Agent"] == "PRTS-Hookshot"
    assert headers["Content-Type"] == "application/json"
    assert headers["Host"] == receiver.url.removeprefix("http://")
    assert json.loads(body) == {"event": "deployment", "n": 1}
    # The secret is stored encrypted, not in plain text.
    with appliance.db.session() as s:
        assert secret.encode() not in s.get(Webhook, webhook_id).secret_ciphertext


def test_a_receiver_failing_twice_gets_three_attempts_with_one_delivery_id(appliance):
    project_id = make_project(appliance)
    script = [(500, {}, b"boom"), (502, {}, b"bad gateway"), (204, {}, b"")]
    with Receiver(script=script) as receiver:
        webhook_id, _ = add_webhook(appliance, project_id, receiver.url)
        outbound.enqueue_event(appliance, project_id, "deployment", {"event": "deployment"})
        drain(appliance)
        (first,) = deliveries(appliance, webhook_id)
        assert (first.status, first.attempts, first.response_code, first.response_excerpt) == \
            ("pending", 1, 500, "boom")
        # Not due yet: nothing is sent, the attempt count does not move.
        assert outbound.deliver(appliance, first.id) is None
        assert outbound.deliver_due(appliance) == []
        row = settle(appliance, webhook_id)
    assert (row.status, row.attempts, row.response_code) == ("delivered", 3, 204)
    assert row.finished_at is not None and row.next_attempt_at is None
    assert len(receiver.requests) == 3
    assert {r["headers"]["X-PRTS-Delivery"] for r in receiver.requests} == {row.uuid}
    assert len({r["body"] for r in receiver.requests}) == 1


def test_retries_back_off_one_two_four_minutes():
    assert [outbound.backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [60, 120, 240, 480]


def test_max_attempts_ends_failed(appliance):
    project_id = make_project(appliance)
    with Receiver(script=[(503, {}, b"down")]) as receiver:
        webhook_id, _ = add_webhook(appliance, project_id, receiver.url)
        outbound.enqueue_event(appliance, project_id, "deployment", {"event": "deployment"})
        row = settle(appliance, webhook_id)
        # Failed is final: a later sweep sends nothing more.
        assert outbound.deliver_due(appliance, now=row.finished_at + outbound.backoff(10)) == []
    assert (row.status, row.attempts, row.response_code, row.response_excerpt) == ("failed", 3, 503, "down")
    assert len(receiver.requests) == 3


def test_an_unreachable_receiver_is_recorded_as_an_error(appliance):
    project_id = make_project(appliance)
    receiver = Receiver()
    url = receiver.url
    receiver.server_close()  # nobody listens there any more
    webhook_id, _ = add_webhook(appliance, project_id, url)
    outbound.enqueue_event(appliance, project_id, "deployment", {"event": "deployment"})
    row = settle(appliance, webhook_id)
    assert row.status == "failed" and row.response_code is None
    assert "connection refused or unreachable" in row.error


def test_one_claim_per_attempt(appliance):
    project_id = make_project(appliance)
    with Receiver() as receiver:
        webhook_id, _ = add_webhook(appliance, project_id, receiver.url)
        with appliance.db.session() as s:
            s.add(WebhookDelivery(webhook_id=webhook_id, event="deployment", uuid="0" * 36, payload="{}",
                                  status="pending", attempts=0, next_attempt_at=outbound.utcnow()))
        (row,) = deliveries(appliance, webhook_id)
        claimed = outbound._claim(appliance, row.id, outbound.utcnow())
        assert claimed is not None and claimed.attempt == 1
        # A second worker (the sweep, or a duplicate queue message) finds it taken.
        assert outbound._claim(appliance, row.id, outbound.utcnow()) is None
        assert outbound.deliver_due(appliance) == []
    assert receiver.requests == []


def test_only_active_subscribed_webhooks_get_an_event(appliance):
    project_id = make_project(appliance)
    with Receiver() as receiver:
        runs_only, _ = add_webhook(appliance, project_id, receiver.url + "/runs", events=["run"])
        both, _ = add_webhook(appliance, project_id, receiver.url + "/both")
        disabled, _ = add_webhook(appliance, project_id, receiver.url + "/off")
        with appliance.db.session() as s:
            outbound.update_webhook(s, s.get(Webhook, disabled), events=["deployment"], active=False)
        outbound.enqueue_event(appliance, project_id, "deployment", {"event": "deployment"})
        drain(appliance)
    assert [r["path"] for r in receiver.requests] == ["/both"]
    assert deliveries(appliance, runs_only) == [] and deliveries(appliance, disabled) == []


def test_a_finished_run_sends_exactly_one_run_event(appliance):
    from appliance.pipelines import runs

    project_id = make_project(appliance)
    with Receiver() as receiver:
        webhook_id, secret = add_webhook(appliance, project_id, receiver.url, events=["run"])
        sha = commit(appliance, project_id, {".prts/pipeline.yaml": PIPELINE})
        run = runs.trigger(appliance, project_id, "refs/heads/main", sha, "push")
        drain(appliance)
        # Announcing the same finish again (a reconcile, a page) sends nothing more.
        assert outbound.run_finished(appliance, run.id) == []
        drain(appliance)
    (request,) = receiver.requests
    payload = json.loads(request["body"])
    assert request["headers"]["X-PRTS-Event"] == "run"
    assert payload["event"] == "run" and payload["project"] == "acme/web"
    body = payload["run"]
    assert (body["id"], body["number"], body["status"], body["event"], body["ref"], body["commit"]) == \
        (run.id, run.number, "success", "push", "refs/heads/main", sha)
    assert body["started_at"] and body["finished_at"]
    assert body["url"] == f"https://prts.example/acme/web/-/pipelines/{run.number}"
    (row,) = deliveries(appliance, webhook_id)
    assert row.status == "delivered"


def test_webhook_validation_names_the_problem(appliance):
    project_id = make_project(appliance)
    from appliance.errors import ValidationError

    with appliance.db.session() as s:
        project = s.get(Project, project_id)
        for url, events, field, words in [
            ("", ["run"], "url", "is required"),
            ("ftp://127.0.0.2/", ["run"], "url", "must start with http://, https://"),
            ("http://127.0.0.1/", ["run"], "url", "127.0.0.1 is a loopback address"),
            ("http://127.0.0.2/", [], "events", "at least one event"),
            ("http://127.0.0.2/", ["push"], "events", "unknown event 'push'"),
        ]:
            with pytest.raises(ValidationError) as info:
                outbound.create_webhook(s, project, url, events, appliance.config)
            assert (info.value.field, words in info.value.message) == (field, True), info.value.message


def test_a_rerun_that_finishes_again_sends_again(appliance):
    import sqlalchemy as sa

    from appliance.models import PipelineJob
    from appliance.pipelines import runs

    project_id = make_project(appliance)
    with Receiver() as receiver:
        webhook_id, _ = add_webhook(appliance, project_id, receiver.url, events=["run"])
        sha = commit(appliance, project_id, {".prts/pipeline.yaml": PIPELINE})
        run = runs.trigger(appliance, project_id, "refs/heads/main", sha, "push")
        drain(appliance)
        with appliance.db.session() as s:
            job_id = s.scalar(sa.select(PipelineJob.id).where(PipelineJob.run_id == run.id))
        runs.rerun_job(appliance, job_id)
        drain(appliance)
    first, second = (json.loads(r["body"])["run"] for r in receiver.requests)
    assert first["id"] == second["id"] == run.id
    assert first["status"] == second["status"] == "success"
    assert first["finished_at"] != second["finished_at"]
    rows = deliveries(appliance, webhook_id)
    assert len(rows) == 2 and len({r.uuid for r in rows}) == 2


def test_a_run_with_a_broken_pipeline_file_is_announced_as_failed(appliance):
    from appliance.pipelines import runs

    project_id = make_project(appliance)
    with Receiver() as receiver:
        add_webhook(appliance, project_id, receiver.url, events=["run"])
        sha = commit(appliance, project_id, {".prts/pipeline.yaml": "version: [unclosed\n"})
        run = runs.trigger(appliance, project_id, "refs/heads/main", sha, "push")
        drain(appliance)
    (request,) = receiver.requests
    assert json.loads(request["body"])["run"]["status"] == "failed" == run.status


def test_the_secret_and_signature_never_reach_the_log(appliance, caplog):
    import logging

    project_id = make_project(appliance)
    caplog.set_level(logging.DEBUG)
    with Receiver(script=[(500, {}, b"no"), (200, {}, b"ok")]) as receiver:
        webhook_id, secret = add_webhook(appliance, project_id, receiver.url)
        outbound.enqueue_event(appliance, project_id, "deployment", {"event": "deployment"})
        settle(appliance, webhook_id)
    signatures = {r["headers"]["X-PRTS-Signature-256"] for r in receiver.requests}
    assert len(receiver.requests) == 2 and caplog.records  # the attempts were logged
    logged = caplog.text + "".join(repr(getattr(r, "__dict__", {})) for r in caplog.records)
    for value in (secret, *signatures, *(s.removeprefix("sha256=") for s in signatures)):
        assert value not in logged


def test_announcing_one_finish_from_many_workers_at_once_makes_one_delivery(appliance):
    from appliance.pipelines import runs

    project_id = make_project(appliance)
    sha = commit(appliance, project_id, {".prts/pipeline.yaml": "version: [unclosed\n"})
    # A broken pipeline file makes a run that is failed from the start. The webhook comes
    # after it, so the workers below race to make the first delivery.
    run = runs.trigger(appliance, project_id, "refs/heads/main", sha, "push")
    assert run.status == "failed"
    webhook_id, _ = add_webhook(appliance, project_id, f"http://{RECEIVER_HOST}:9/", events=["run"])
    errors: list[BaseException] = []

    def announce_again():
        try:
            outbound.run_finished(appliance, run.id)
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=announce_again) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(deliveries(appliance, webhook_id)) == 1
