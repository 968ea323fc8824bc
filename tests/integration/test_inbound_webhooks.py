"""Inbound webhooks end to end: a forge's delivery -> signature -> delivery row -> queued
fetch of a real ``git daemon`` -> pipeline runs, on SQLite and on a real PostgreSQL server.

Deliveries are made as each forge makes them (its headers, a JSON body signed with the
project's secret). The queued fetch runs in this process (``drain``). Size limits are
tested against a live server over a raw socket, where "the body was not read" can be
seen: the answer comes while the announced body is still unsent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import uuid

import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server

from appliance.hosting import inbound
from appliance.models import InboundDelivery, Project
from conftest import make_config
from servers import free_port
from test_mirroring import (PIPELINE, deliveries_of, external, git_daemon, mirror_project,  # noqa: F401
                            refs_of, register_blueprints, runs_of)
from tests.pipelinekit import drain, make_project

# (forge in the URL, event header, event, delivery header, signature header)
FORGES = {
    "github": ("github", "X-GitHub-Event", "push", "X-GitHub-Delivery", "X-Hub-Signature-256"),
    "gitlab": ("gitlab", "X-Gitlab-Event", "Push Hook", "X-Gitlab-Event-UUID", "X-Gitlab-Token"),
    "gitea": ("gitea", "X-Gitea-Event", "push", "X-Gitea-Delivery", "X-Gitea-Signature"),
    "forgejo": ("gitea", "X-Forgejo-Event", "push", "X-Forgejo-Delivery", "X-Forgejo-Signature"),
}


@pytest.fixture
def config(tmp_path, db_values):
    return make_config(tmp_path / "data", webhooks__allowed_hosts="127.0.0.1", **db_values)


@pytest.fixture
def hooks_client(flask_app):
    register_blueprints(flask_app)
    return flask_app.test_client()


@pytest.fixture
def mirrored(appliance, external):
    """acme/web mirroring the external repository; (project id, secret)."""
    return mirror_project(appliance, external.url)


def sign(kind: str, secret: str, body: bytes) -> str:
    if kind == "gitlab":
        return secret
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}" if kind == "github" else digest


def headers_for(kind: str, secret: str, body: bytes, *, event: str | None = None,
                delivery: str | None = None) -> dict[str, str]:
    _, event_header, default_event, delivery_header, signature_header = FORGES[kind]
    return {event_header: event or default_event, delivery_header: delivery or str(uuid.uuid4()),
            signature_header: sign(kind, secret, body), "Content-Type": "application/json"}


def push_body(ref: str, after: str, before: str = "0" * 40) -> bytes:
    return json.dumps({"ref": ref, "before": before, "after": after, "repository": {"full_name": "acme/web"},
                       "commits": [], "head_commit": None}).encode()


def deliver(client, kind: str, secret: str, body: bytes, *, path: str = "acme/web", **kw):
    forge = FORGES[kind][0]
    return client.post(f"/hooks/{forge}/{path}", data=body, headers=headers_for(kind, secret, body, **kw))


def nothing_happened(appliance, project_id: int) -> None:
    assert deliveries_of(appliance, project_id) == []
    assert drain(appliance) == 0  # no fetch was queued
    assert refs_of(appliance, project_id) == {}
    assert runs_of(appliance, project_id) == []


@pytest.mark.parametrize("kind", list(FORGES))
def test_a_push_delivery_fetches_the_mirror_and_starts_a_run(hooks_client, appliance, external, mirrored, kind):
    project_id, secret = mirrored
    sha = external.commit({".prts/pipeline.yaml": PIPELINE, "src/app.py": "print(1)\n"})
    answer = deliver(hooks_client, kind, secret, push_body("refs/heads/main", sha))
    assert answer.status_code == 202, answer.get_data(as_text=True)
    assert refs_of(appliance, project_id) == {}  # the fetch is queued, not done in the request
    drain(appliance)
    assert refs_of(appliance, project_id) == {"refs/heads/main": sha}
    assert [(r.event, r.ref, r.commit_sha) for r in runs_of(appliance, project_id)] == [
        ("push", "refs/heads/main", sha)]
    row, = deliveries_of(appliance, project_id)
    assert (row.forge, row.event, row.outcome) == (FORGES[kind][0], FORGES[kind][2], "fetched")
    assert "1 pipeline(s) started" in row.detail


def test_the_body_is_only_a_signal_commits_come_from_the_fetch(hooks_client, appliance, external, mirrored):
    project_id, secret = mirrored
    sha = external.commit({".prts/pipeline.yaml": PIPELINE})
    # The body names a commit the outside repository does not have, on another branch.
    forged = push_body("refs/heads/evil", "f" * 40)
    assert deliver(hooks_client, "github", secret, forged).status_code == 202
    drain(appliance)
    assert refs_of(appliance, project_id) == {"refs/heads/main": sha}
    assert [(r.ref, r.commit_sha) for r in runs_of(appliance, project_id)] == [("refs/heads/main", sha)]


def test_a_tag_push_fires_tag_triggers(hooks_client, appliance, external, mirrored):
    project_id, secret = mirrored
    external.commit({".prts/pipeline.yaml": PIPELINE})
    assert deliver(hooks_client, "github", secret, push_body("refs/heads/main", external.commit({}))) \
        .status_code == 202
    drain(appliance)
    tagged = external.tag("v1.0")
    body = push_body("refs/tags/v1.0", tagged)
    assert deliver(hooks_client, "gitlab", secret, body, event="Tag Push Hook").status_code == 202
    drain(appliance)
    assert refs_of(appliance, project_id)["refs/tags/v1.0"] == tagged
    assert [(r.event, r.ref) for r in runs_of(appliance, project_id)] == [("push", "refs/heads/main"),
                                                                          ("tag", "refs/tags/v1.0")]


def test_a_gitea_create_event_fetches_a_new_branch(hooks_client, appliance, external, mirrored):
    project_id, secret = mirrored
    sha = external.commit({"README": "x"}, branch="feature")
    body = json.dumps({"ref": "feature", "ref_type": "branch", "sha": sha, "repository": {}}).encode()
    assert deliver(hooks_client, "gitea", secret, body, event="create").status_code == 202
    drain(appliance)
    assert refs_of(appliance, project_id) == {"refs/heads/feature": sha}


@pytest.mark.parametrize("kind", ["github", "gitlab", "gitea"])
def test_a_bad_or_missing_signature_is_401_and_leaves_nothing_behind(hooks_client, appliance, external, mirrored,
                                                                     kind):
    project_id, secret = mirrored
    body = push_body("refs/heads/main", external.commit({".prts/pipeline.yaml": PIPELINE}))
    wrong = deliver(hooks_client, kind, secret + "x", body)
    assert wrong.status_code == 401 and "does not match" in wrong.get_data(as_text=True)
    headers = headers_for(kind, secret, body)
    del headers[FORGES[kind][4]]
    missing = hooks_client.post(f"/hooks/{FORGES[kind][0]}/acme/web", data=body, headers=headers)
    assert missing.status_code == 401 and FORGES[kind][4] in missing.get_data(as_text=True)
    # Signed over other bytes than those sent (a body altered on the way).
    headers = headers_for(kind, secret, body)
    altered = hooks_client.post(f"/hooks/{FORGES[kind][0]}/acme/web", data=body + b" ", headers=headers)
    assert altered.status_code == (202 if kind == "gitlab" else 401)  # GitLab's token does not sign the body
    if kind != "gitlab":
        nothing_happened(appliance, project_id)


def test_a_replayed_delivery_runs_once(hooks_client, appliance, external, mirrored):
    project_id, secret = mirrored
    sha = external.commit({".prts/pipeline.yaml": PIPELINE})
    body = push_body("refs/heads/main", sha)
    first = deliver(hooks_client, "github", secret, body, delivery="d6f1b2c4")
    again = deliver(hooks_client, "github", secret, body, delivery="d6f1b2c4")
    assert (first.status_code, again.status_code) == (202, 200)
    assert "already received" in again.get_data(as_text=True)
    drain(appliance)
    # After the fetch too: a replay must not start the same work again.
    external.commit({"README": "later"})
    assert deliver(hooks_client, "github", secret, body, delivery="d6f1b2c4").status_code == 200
    assert drain(appliance) == 0
    assert len(runs_of(appliance, project_id)) == 1 and len(deliveries_of(appliance, project_id)) == 1
    # The same id from another forge is another delivery.
    assert deliver(hooks_client, "gitea", secret, body, delivery="d6f1b2c4").status_code == 202


def test_a_ping_is_answered(hooks_client, appliance, mirrored):
    project_id, secret = mirrored
    body = json.dumps({"zen": "Design for failure.", "hook_id": 1, "hook": {"type": "Repository"}}).encode()
    answer = deliver(hooks_client, "github", secret, body, event="ping")
    assert answer.status_code == 200 and "pong" in answer.get_data(as_text=True)
    assert [(r.event, r.outcome) for r in deliveries_of(appliance, project_id)] == [("ping", "ping")]
    assert drain(appliance) == 0


def test_other_events_are_acknowledged_and_ignored(hooks_client, appliance, mirrored):
    project_id, secret = mirrored
    answer = deliver(hooks_client, "github", secret, b'{"action": "opened"}', event="issues")
    assert answer.status_code == 200 and "not used" in answer.get_data(as_text=True)
    assert deliveries_of(appliance, project_id)[0].outcome == "ignored"
    assert drain(appliance) == 0


@pytest.mark.parametrize("body,field", [
    (b"[]", "JSON object"),
    (b"[1, 2]", "JSON object"),
    (b"{not json", "not JSON"),
    (json.dumps({"ref": 12, "after": "a" * 40}).encode(), "'ref'"),
    (json.dumps({"ref": "refs/heads/main", "after": "main"}).encode(), "'after'"),
    (json.dumps({"ref": "refs/heads/main", "after": 1234}).encode(), "'after'"),
    (json.dumps({"ref": "refs/heads/main", "after": "a" * 40, "repository": "acme/web"}).encode(), "'repository'"),
    (json.dumps({"ref": "refs/heads/main", "after": "a" * 40, "commits": {"0": {}}}).encode(), "'commits'"),
    (json.dumps({"ref": None, "after": "a" * 40}).encode(), "'ref'"),
])
def test_type_confused_json_is_a_400_naming_the_field(hooks_client, appliance, mirrored, body, field):
    project_id, secret = mirrored
    answer = deliver(hooks_client, "github", secret, body)
    assert answer.status_code == 400 and field in answer.get_data(as_text=True)
    row, = deliveries_of(appliance, project_id)
    assert row.outcome == "rejected" and field in row.detail
    assert drain(appliance) == 0 and refs_of(appliance, project_id) == {}


def test_a_missing_delivery_header_is_a_400_naming_it(hooks_client, appliance, mirrored):
    project_id, secret = mirrored
    body = push_body("refs/heads/main", "a" * 40)
    for kind, names in (("github", ["X-GitHub-Delivery"]), ("gitlab", ["X-Gitlab-Event-UUID", "Idempotency-Key"]),
                        ("forgejo", ["X-Forgejo-Delivery", "X-Gitea-Delivery"])):
        headers = headers_for(kind, secret, body)
        del headers[FORGES[kind][3]]
        answer = hooks_client.post(f"/hooks/{FORGES[kind][0]}/acme/web", data=body, headers=headers)
        assert answer.status_code == 400
        assert all(name in answer.get_data(as_text=True) for name in names)
    nothing_happened(appliance, project_id)


def test_gitlab_idempotency_key_identifies_a_delivery(hooks_client, appliance, mirrored, external):
    project_id, secret = mirrored
    body = push_body("refs/heads/main", external.commit({}))
    headers = headers_for("gitlab", secret, body)
    del headers["X-Gitlab-Event-UUID"]
    headers["Idempotency-Key"] = "key-1"
    assert hooks_client.post("/hooks/gitlab/acme/web", data=body, headers=headers).status_code == 202
    assert hooks_client.post("/hooks/gitlab/acme/web", data=body, headers=headers).status_code == 200
    assert [r.delivery_id for r in deliveries_of(appliance, project_id)] == ["key-1"]


def test_unknown_forge_project_or_a_project_without_secret_are_the_same_404(hooks_client, appliance, mirrored):
    project_id, secret = mirrored
    make_project(appliance, "acme", "nosecret")
    body = push_body("refs/heads/main", "a" * 40)
    answers = [hooks_client.post("/hooks/bitbucket/acme/web", data=body, headers=headers_for("github", secret, body)),
               deliver(hooks_client, "github", secret, body, path="acme/nothere"),
               deliver(hooks_client, "github", secret, body, path="nobody/web"),
               deliver(hooks_client, "github", secret, body, path="acme/nosecret")]
    assert {(a.status_code, a.get_data()) for a in answers} == {(404, answers[0].get_data())}
    assert answers[0].status_code == 404
    nothing_happened(appliance, project_id)


def test_a_push_to_a_project_without_mirror_url_is_refused_and_recorded(hooks_client, appliance):
    project_id = make_project(appliance)
    with appliance.db.session() as s:
        secret = inbound.generate_secret(s, s.get(Project, project_id), appliance.config)
    answer = deliver(hooks_client, "github", secret, push_body("refs/heads/main", "a" * 40))
    assert answer.status_code == 409 and "no mirror URL" in answer.get_data(as_text=True)
    assert deliveries_of(appliance, project_id)[0].outcome == "refused"
    assert drain(appliance) == 0


def test_no_session_or_csrf_token_is_needed_but_get_is_not_allowed(hooks_client, mirrored):
    assert hooks_client.get("/hooks/github/acme/web").status_code == 405


# -- size limits, against a live server -----------------------------------------------------


class LiveServer:
    def __init__(self, flask_app):
        self.port = free_port()
        self.server = make_server("127.0.0.1", self.port, flask_app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.thread.join(10)

    def exchange(self, head: bytes, body: bytes, *, close_write: bool = False) -> bytes:
        """Send ``head`` and ``body`` and read the answer while the socket stays open for
        writing: a server still waiting for the rest of the body would never answer."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
            sock.sendall(head + body)
            if close_write:
                sock.shutdown(socket.SHUT_WR)
            answer = b""
            while b"\r\n\r\n" not in answer or len(answer) < _expected_length(answer):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
            return answer


def _expected_length(answer: bytes) -> int:
    head, _, _ = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(head) + 4 + int(line.split(b":", 1)[1])
    return 1 << 62


def request_head(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(lines).encode()


def test_a_body_announced_too_large_is_refused_unread(flask_app, appliance, mirrored):
    register_blueprints(flask_app)
    project_id, secret = mirrored
    cap = appliance.config.webhooks.max_body_bytes
    body = b'{"ref": "refs/heads/main"}'
    headers = {**headers_for("github", secret, body), "Content-Length": str(cap + 1)}
    with LiveServer(flask_app) as live:
        answer = live.exchange(request_head("/hooks/github/acme/web", headers), body)
        # The size is checked only after the project: an unknown one is a 404 whatever the size.
        unknown = live.exchange(request_head("/hooks/github/acme/nothere", headers), body)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"webhooks.max_body_bytes" in answer
    assert unknown.startswith(b"HTTP/1.1 404"), unknown[:200]
    nothing_happened(appliance, project_id)


def test_a_chunked_body_over_the_cap_is_cut_off(tmp_path, external):
    from appliance import migrate
    from appliance.context import Appliance
    from webapp import create_app

    app = Appliance(make_config(tmp_path / "small", webhooks__allowed_hosts="127.0.0.1",
                                webhooks__max_body_bytes=4096))
    migrate.upgrade(app.db)
    flask_app = create_app(app.config)
    flask_app.extensions["prts"] = app
    register_blueprints(flask_app)
    try:
        project_id, secret = mirror_project(app, external.url)
        sha = external.commit({".prts/pipeline.yaml": PIPELINE})
        padded = json.dumps({"ref": "refs/heads/main", "after": sha, "commits": [{"message": "x" * 5000}]}).encode()
        fits = push_body("refs/heads/main", sha)

        def chunked(body: bytes) -> bytes:
            return b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 1000]), body[i:i + 1000])
                            for i in range(0, len(body), 1000)) + b"0\r\n\r\n"

        with LiveServer(flask_app) as live:
            over = live.exchange(request_head("/hooks/github/acme/web", {
                **headers_for("github", secret, padded), "Transfer-Encoding": "chunked"}), chunked(padded))
            under = live.exchange(request_head("/hooks/github/acme/web", {
                **headers_for("github", secret, fits), "Transfer-Encoding": "chunked"}), chunked(fits))
        assert over.startswith(b"HTTP/1.1 413"), over[:300]
        assert under.startswith(b"HTTP/1.1 202"), under[:300]
        assert [r.outcome for r in deliveries_of(app, project_id)] == ["queued"]
    finally:
        app.close()


def test_bodies_larger_than_flasks_global_limit_but_within_the_cap_are_accepted(hooks_client, appliance, mirrored,
                                                                                external):
    # MAX_CONTENT_LENGTH is 16 MB for the rest of the app; a forge's push payload may be larger.
    project_id, secret = mirrored
    sha = external.commit({})
    big = json.dumps({"ref": "refs/heads/main", "after": sha,
                      "commits": [{"message": "m" * 1000}] * 17_000}).encode()
    assert 16 * 1024 * 1024 < len(big) < appliance.config.webhooks.max_body_bytes
    assert deliver(hooks_client, "github", secret, big).status_code == 202
    with appliance.db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(InboundDelivery)) == 1
