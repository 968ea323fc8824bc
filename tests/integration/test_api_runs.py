"""API v1 pipelines: start, list, read and cancel runs; jobs; raw logs with HTTP Range;
artifacts and their checked downloads; variable names; pagination. Each state change is
in the database and in the audit trail. On SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib

import sqlalchemy as sa

from apikit import LOG, bearer, config, token, world  # noqa: F401  (fixtures)
from appliance.models import Artifact, PipelineJob, PipelineRun, Project
from appliance.pipelines import variables
from appliance.pipelines.secrets import SecretBox
from conftest import audit_events


def test_start_list_read_and_cancel_a_run(appliance, client, world):
    text = token(appliance, "dev", "write")
    started = client.post("/api/v1/projects/acme/web/runs", json={"ref": "main"}, headers=bearer(text))
    assert started.status_code == 201
    run = started.get_json()
    assert started.headers["Location"].endswith(f"/api/v1/runs/{run['id']}")
    assert (run["project"], run["number"], run["event"], run["ref"]) == ("acme/web", 2, "manual", "refs/heads/main")
    assert {job["name"] for job in run["jobs"]} == {"compile", "lint"}
    with appliance.db.session() as s:
        row = s.get(PipelineRun, run["id"])
        assert (row.project_id, row.triggered_by.username, row.commit_sha) == (world.project_id, "dev", run["commit"])
    (event,) = [e for e in audit_events(appliance, "run.started") if e.actor == "dev"]
    assert event.target == "acme/web#2" and f"API token {text[:9]}" in event.detail

    listed = client.get("/api/v1/projects/acme/web/runs", headers=bearer(text)).get_json()
    assert [r["number"] for r in listed["items"]] == [2, 1] and listed["total"] == 2
    queued = client.get("/api/v1/projects/acme/web/runs?status=success", headers=bearer(text)).get_json()
    assert queued["items"] == [] and queued["total"] == 0

    canceled = client.post(f"/api/v1/runs/{run['id']}/cancel", headers=bearer(text))
    assert canceled.status_code == 200 and canceled.get_json()["status"] == "canceled"
    with appliance.db.session() as s:
        assert s.get(PipelineRun, run["id"]).status == "canceled"
        assert set(s.scalars(sa.select(PipelineJob.status).where(PipelineJob.run_id == run["id"]))) == {"canceled"}
    (event,) = audit_events(appliance, "run.canceled")
    assert (event.actor, event.target) == ("dev", "acme/web#2") and text[:9] in event.detail
    again = client.post(f"/api/v1/runs/{run['id']}/cancel", headers=bearer(text))
    assert again.status_code == 409 and again.get_json()["error"]["field"] == "run_id"
    assert len(audit_events(appliance, "run.canceled")) == 1

    detail = client.get(f"/api/v1/runs/{run['id']}", headers=bearer(text)).get_json()
    jobs = client.get(f"/api/v1/runs/{run['id']}/jobs", headers=bearer(text)).get_json()["items"]
    assert [j["id"] for j in jobs] == [j["id"] for j in detail["jobs"]]
    job = client.get(f"/api/v1/jobs/{jobs[0]['id']}", headers=bearer(text)).get_json()
    assert job["run_id"] == run["id"] and job["status"] == "canceled" and job["steps"][0]["name"]


def test_pages_carry_a_next_link_until_the_last(appliance, client, world):
    text = token(appliance, "dev", "write")
    for _ in range(2):
        assert client.post("/api/v1/projects/acme/web/runs", json={"ref": "main"},
                           headers=bearer(text)).status_code == 201
    seen, url = [], "/api/v1/projects/acme/web/runs?per_page=2"
    while url:
        answer = client.get(url, headers=bearer(text))
        page = answer.get_json()
        seen += [r["number"] for r in page["items"]]
        assert page["total"] == 3
        if page["next"]:
            assert answer.headers["Link"].startswith(f"<{page['next']}>; rel=\"next\"")
        url = page["next"]
    assert seen == [3, 2, 1]


def test_log_as_raw_text_and_by_byte_ranges(appliance, client, world):
    auth = bearer(token(appliance, "viewer", "read"))
    url = f"/api/v1/jobs/{world.job_id}/log"
    whole = client.get(url, headers=auth)
    assert whole.status_code == 200 and whole.data == LOG and whole.mimetype == "text/plain"
    assert whole.headers["Accept-Ranges"] == "bytes" and int(whole.headers["Content-Length"]) == len(LOG)
    total = len(LOG)
    for header, start, stop in (("bytes=0-9", 0, 10), ("bytes=995-1010", 995, 1011), ("bytes=2500-", 2500, total),
                                ("bytes=-17", total - 17, total), (f"bytes=10-{total + 50}", 10, total),
                                (f"bytes=-{total + 5}", 0, total)):
        part = client.get(url, headers={**auth, "Range": header})
        assert part.status_code == 206, header
        assert part.data == LOG[start:stop], header
        assert part.headers["Content-Range"] == f"bytes {start}-{stop - 1}/{total}", header
    for header in (f"bytes={total}-", f"bytes={total + 10}-{total + 20}"):
        refused = client.get(url, headers={**auth, "Range": header})
        assert refused.status_code == 416, header
        assert refused.headers["Content-Range"] == f"bytes */{total}"
        assert refused.get_json()["error"]["field"] == "range"
    # several ranges, or one that does not parse: the whole log, as RFC 9110 allows
    for header in ("bytes=0-1,5-6", "lines=1-2", "bytes=9-3"):
        answer = client.get(url, headers={**auth, "Range": header})
        assert answer.status_code == 200 and answer.data == LOG, header
    assert client.get(url + "?attempt=2", headers=auth).status_code == 404
    assert client.get(url + "?attempt=0", headers=auth).status_code == 422
    assert client.get(url, headers=bearer(token(appliance, "outsider", "read"))).status_code == 404


def test_artifacts_list_and_a_download_that_matches_its_checksum(appliance, client, world):
    auth = bearer(token(appliance, "viewer", "read"))
    (listed,) = client.get(f"/api/v1/jobs/{world.job_id}/artifacts", headers=auth).get_json()["items"]
    assert (listed["name"], listed["sha256"]) == ("site", world.artifact_sha256)
    by_name = client.get(listed["download_url"], headers=auth)
    assert by_name.status_code == 200 and by_name.mimetype == "application/gzip"
    assert hashlib.sha256(by_name.data).hexdigest() == world.artifact_sha256 and len(by_name.data) == listed["size"]
    by_id = client.get(f"/api/v1/jobs/{world.job_id}/artifacts/{listed['id']}", headers=auth)
    assert by_id.data == by_name.data
    assert client.get(f"/api/v1/jobs/{world.job_id}/artifacts/nothing", headers=auth).status_code == 404
    assert client.get(f"/api/v1/jobs/{world.other_job_id}/artifacts/{listed['id']}", headers=auth).status_code == 404
    # a damaged archive is refused, never served
    with appliance.db.session() as s:
        key = s.scalar(sa.select(Artifact.object_key).where(Artifact.id == listed["id"]))
    appliance.objects.put(key, by_name.data[:-1] + bytes([by_name.data[-1] ^ 1]))
    damaged = client.get(listed["download_url"], headers=auth)
    assert damaged.status_code == 500 and damaged.get_json()["error"]["field"] == "artifact"
    appliance.objects.delete(key)
    assert client.get(listed["download_url"], headers=auth).status_code == 410


def test_variables_show_names_never_values(appliance, client, world):
    with appliance.db.session() as s:
        project = s.get(Project, world.project_id)
        box = SecretBox.from_config(appliance.config)
        variables.set_variable(s, box, project, "DEPLOY_KEY", "hunter2-secret-value", secret=True)
        variables.set_variable(s, box, project, "REGION", "eu-plain-value", secret=False)
    answer = client.get("/api/v1/projects/acme/web/variables", headers=bearer(token(appliance, "dev", "read")))
    assert answer.status_code == 200
    assert [(v["name"], v["secret"]) for v in answer.get_json()["items"]] == [("DEPLOY_KEY", True), ("REGION", False)]
    assert b"hunter2" not in answer.data and b"eu-plain" not in answer.data
