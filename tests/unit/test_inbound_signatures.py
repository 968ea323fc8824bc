"""Inbound webhook signatures, headers and payload shapes (``appliance.hosting.inbound``).

The signature is checked over the raw bytes before anything parses them; every header a
forge sends is looked up case-insensitively, as a WSGI server hands them over; a body of
the wrong shape is refused with a 400 naming the field, never an exception.
"""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from werkzeug.datastructures import Headers

from appliance.hosting import inbound
from appliance.hosting.inbound import DeliveryRefused

SECRET = "It's a Secret to Everybody"
BODY = b"Hello, World!"
# GitHub's documented example of X-Hub-Signature-256 for SECRET over BODY.
GITHUB_EXAMPLE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
SHA = "a" * 40


def hex_hmac(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def refused(status: int, fn, *args) -> str:
    with pytest.raises(DeliveryRefused) as info:
        fn(*args)
    assert info.value.status == status, info.value.message
    return info.value.message


def test_github_signature_matches_githubs_documented_example():
    assert inbound.expected_signature("github", SECRET, BODY) == GITHUB_EXAMPLE
    inbound.verify_signature("github", Headers({"x-hub-signature-256": GITHUB_EXAMPLE}), BODY, SECRET)


@pytest.mark.parametrize("header", ["X-Gitea-Signature", "X-Forgejo-Signature", "x-forgejo-signature"])
def test_gitea_and_forgejo_sign_with_a_bare_hex_digest(header):
    inbound.verify_signature("gitea", Headers({header: hex_hmac(SECRET, BODY)}), BODY, SECRET)
    # The GitHub form with its prefix is not what Gitea sends.
    message = refused(401, inbound.verify_signature, "gitea", Headers({header: f"sha256={hex_hmac(SECRET, BODY)}"}),
                      BODY, SECRET)
    assert "does not match" in message


def test_gitlab_sends_the_secret_itself():
    inbound.verify_signature("gitlab", Headers({"X-Gitlab-Token": SECRET}), BODY, SECRET)
    refused(401, inbound.verify_signature, "gitlab", Headers({"X-Gitlab-Token": SECRET.upper()}), BODY, SECRET)
    refused(401, inbound.verify_signature, "gitlab", Headers({"X-Gitlab-Token": SECRET[:-1]}), BODY, SECRET)
    # An HMAC of the body is not the token.
    refused(401, inbound.verify_signature, "gitlab", Headers({"X-Gitlab-Token": hex_hmac(SECRET, BODY)}), BODY, SECRET)


@pytest.mark.parametrize("forge,header,value", [
    ("github", "X-Hub-Signature-256", GITHUB_EXAMPLE),
    ("gitea", "X-Gitea-Signature", hex_hmac(SECRET, BODY)),
])
def test_any_change_to_body_secret_or_signature_is_refused(forge, header, value):
    inbound.verify_signature(forge, Headers({header: value}), BODY, SECRET)
    refused(401, inbound.verify_signature, forge, Headers({header: value}), BODY + b" ", SECRET)
    refused(401, inbound.verify_signature, forge, Headers({header: value}), BODY, SECRET + "x")
    flipped = value[:-1] + ("0" if value[-1] != "0" else "1")
    refused(401, inbound.verify_signature, forge, Headers({header: flipped}), BODY, SECRET)
    refused(401, inbound.verify_signature, forge, Headers({header: value[:-2]}), BODY, SECRET)


@pytest.mark.parametrize("forge,header", [("github", "X-Hub-Signature-256"), ("gitea", "X-Gitea-Signature"),
                                          ("gitlab", "X-Gitlab-Token")])
def test_a_missing_or_empty_signature_is_refused_naming_the_header(forge, header):
    assert header in refused(401, inbound.verify_signature, forge, Headers(), BODY, SECRET)
    refused(401, inbound.verify_signature, forge, Headers({header: ""}), BODY, SECRET)


def test_a_signature_header_with_non_ascii_bytes_is_refused_not_an_error():
    # WSGI gives headers as latin-1 text; such a value must compare (unequal), not raise.
    refused(401, inbound.verify_signature, "github", Headers({"X-Hub-Signature-256": "sha256=\xe9\xff"}), BODY,
            SECRET)
    refused(401, inbound.verify_signature, "gitlab", Headers({"X-Gitlab-Token": "\xe9" * 10}), BODY, SECRET)


def test_the_signature_covers_the_raw_bytes_not_their_json_meaning():
    raw = b'{"ref": "refs/heads/main",  "after": "' + SHA.encode() + b'"}'
    same_json = json.dumps(json.loads(raw)).encode()
    assert json.loads(raw) == json.loads(same_json) and raw != same_json
    headers = Headers({"X-Hub-Signature-256": inbound.expected_signature("github", SECRET, raw)})
    inbound.verify_signature("github", headers, raw, SECRET)
    refused(401, inbound.verify_signature, "github", headers, same_json, SECRET)


# -- delivery id and event headers --------------------------------------------------------


@pytest.mark.parametrize("forge,header", [("github", "X-GitHub-Delivery"), ("gitea", "X-Gitea-Delivery"),
                                          ("gitea", "X-Forgejo-Delivery"), ("gitlab", "X-Gitlab-Event-UUID"),
                                          ("gitlab", "Idempotency-Key")])
def test_delivery_ids_come_from_each_forges_header(forge, header):
    assert inbound.delivery_id_of(forge, Headers({header.lower(): " 72d3162e-cc78-11e3 "})) == "72d3162e-cc78-11e3"


@pytest.mark.parametrize("forge,names", [("github", ["X-GitHub-Delivery"]),
                                         ("gitea", ["X-Forgejo-Delivery", "X-Gitea-Delivery"]),
                                         ("gitlab", ["X-Gitlab-Event-UUID", "Idempotency-Key"])])
def test_a_missing_delivery_id_is_a_400_naming_the_header(forge, names):
    message = refused(400, inbound.delivery_id_of, forge, Headers({"X-Request-Id": "abc"}))
    assert all(name in message for name in names), message


@pytest.mark.parametrize("value", ["x" * 101, "has space", "tab\there", "\xe9t\xe9"])
def test_a_delivery_id_that_cannot_be_stored_is_a_400(value):
    assert "X-GitHub-Delivery" in refused(400, inbound.delivery_id_of, "github", Headers({"X-GitHub-Delivery": value}))


def test_forgejo_names_win_over_the_gitea_ones_it_also_sends():
    headers = Headers({"X-Forgejo-Event": "push", "X-Gitea-Event": "issues", "X-Forgejo-Delivery": "f",
                       "X-Gitea-Delivery": "g"})
    assert inbound.event_of("gitea", headers) == "push"
    assert inbound.delivery_id_of("gitea", headers) == "f"


def test_a_missing_event_header_is_a_400_naming_it():
    assert "X-GitHub-Event" in refused(400, inbound.event_of, "github", Headers())
    assert "X-Gitlab-Event" in refused(400, inbound.event_of, "gitlab", Headers({"X-Gitlab-Event": "  "}))


# -- payloads -------------------------------------------------------------------------------


def body(**fields) -> bytes:
    return json.dumps(fields).encode()


def test_pushes_of_each_forge_ask_for_a_fetch():
    push = body(ref="refs/heads/main", before="0" * 40, after=SHA, repository={"name": "web"}, commits=[],
                head_commit=None)
    for forge, event in (("github", "push"), ("gitlab", "Push Hook"), ("gitlab", "Tag Push Hook"),
                         ("gitea", "push")):
        signal = inbound.parse_signal(forge, event, push)
        assert (signal.kind, signal.ref, signal.event) == ("fetch", "refs/heads/main", event)
        assert SHA[:12] in signal.detail
    system = body(event_name="tag_push", ref="refs/tags/v1", after=SHA, project={"id": 1})
    assert inbound.parse_signal("gitlab", "System Hook", system).ref == "refs/tags/v1"


def test_gitea_create_names_a_short_ref_and_its_type():
    signal = inbound.parse_signal("gitea", "create", body(ref="v1.0", ref_type="tag", sha=SHA))
    assert (signal.kind, signal.ref) == ("fetch", "refs/tags/v1.0")
    assert inbound.parse_signal("gitea", "create", body(ref="feature", ref_type="branch")).ref == "refs/heads/feature"


def test_ping_and_unused_events_are_acknowledged():
    assert inbound.parse_signal("github", "ping", body(zen="Keep it logically awesome.", hook={})).kind == "ping"
    assert inbound.parse_signal("github", "issues", body(action="opened")).kind == "ignored"
    assert inbound.parse_signal("gitlab", "Merge Request Hook", body()).kind == "ignored"
    assert inbound.parse_signal("gitlab", "System Hook", body(event_name="project_create")).kind == "ignored"
    assert inbound.parse_signal("gitea", "pull_request", body()).kind == "ignored"


@pytest.mark.parametrize("forge,event,raw,field", [
    ("github", "push", b"[]", "JSON object"),
    ("github", "push", b'"refs/heads/main"', "JSON object"),
    ("github", "push", b"not json", "not JSON"),
    ("github", "push", b"\xff\xfe{}", "not JSON"),
    ("github", "push", b"[" * 100_000, "not JSON"),
    ("github", "push", body(after=SHA), "'ref'"),
    ("github", "push", body(ref=12, after=SHA), "'ref'"),
    ("github", "push", body(ref=True, after=SHA), "'ref'"),
    ("github", "push", body(ref=["refs/heads/main"], after=SHA), "'ref'"),
    ("github", "push", body(ref="", after=SHA), "'ref'"),
    ("github", "push", body(ref="refs/heads/main"), "'after'"),
    ("github", "push", body(ref="refs/heads/main", after="main"), "'after'"),
    ("github", "push", body(ref="refs/heads/main", after="A" * 40), "'after'"),
    ("github", "push", body(ref="refs/heads/main", after=int("1" * 40)), "'after'"),
    ("github", "push", body(ref="refs/heads/main", after=SHA, before={"sha": SHA}), "'before'"),
    ("github", "push", body(ref="refs/heads/main", after=SHA, repository=["web"]), "'repository'"),
    ("github", "push", body(ref="refs/heads/main", after=SHA, commits={"id": SHA}), "'commits'"),
    ("github", "push", body(ref="refs/heads/main", after=SHA, head_commit="abc"), "'head_commit'"),
    ("gitlab", "Push Hook", body(ref="refs/heads/main", after=SHA, project="web"), "'project'"),
    ("gitlab", "System Hook", body(event_name=5), "'event_name'"),
    ("gitea", "push", body(ref={"name": "main"}, after=SHA), "'ref'"),
    ("gitea", "create", body(ref="v1", ref_type="commit"), "'ref_type'"),
    ("gitea", "create", body(ref="v1", ref_type="tag", sha=42), "'sha'"),
    ("github", "ping", body(hook="yes"), "'hook'"),
])
def test_type_confused_bodies_are_a_400_naming_the_field(forge, event, raw, field):
    assert field in refused(400, inbound.parse_signal, forge, event, raw)


def test_a_deleted_branch_is_still_a_fetch():
    signal = inbound.parse_signal("github", "push", body(ref="refs/heads/old", before=SHA, after="0" * 40))
    assert signal.kind == "fetch" and "deleted" in signal.detail


def test_secret_places_differ_per_project():
    assert inbound.secret_place(1) != inbound.secret_place(2)
    assert inbound.secret_place(7) == "project:7:inbound-webhook"
