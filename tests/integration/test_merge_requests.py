"""Merge requests through the pages: opening one runs `pull_request` triggers, closing and
reopening fire their actions, and a push that merges the branch marks it merged."""

from __future__ import annotations

import sqlalchemy as sa

from appliance.hosting import pushes
from appliance.models import MergeRequest, PipelineRun, Project, Role
from conftest import add_member, csrf_token, sign_in
from pipelinekit import commit, make_project

PASSWORD = "correct horse battery staple"
PIPELINE = """\
version: "1.0"
name: MR
triggers:
  - pull_request: { branches: [main], types: [opened, synchronize, reopened, closed] }
stages:
  - name: test
    jobs: [ { name: unit, steps: [ { run: "true" } ] } ]
"""


def pr_runs(app, project_id: int) -> list[tuple[str, str]]:
    with app.db.session() as s:
        return [(r.event, r.commit_sha) for r in s.scalars(sa.select(PipelineRun).where(
            PipelineRun.project_id == project_id, PipelineRun.event == "pull_request").order_by(PipelineRun.id))]


def open_form(client, data: dict):
    page = client.get("/acme/web/-/merge_requests/new")
    assert page.status_code == 200
    return client.post("/acme/web/-/merge_requests/new", data={**data, "csrf_token": csrf_token(page.get_data(True))})


def test_developer_opens_closes_and_reopens_and_a_merge_is_noticed(appliance, client):
    project_id = make_project(appliance)
    commit(appliance, project_id, {".prts/pipeline.yaml": PIPELINE, "a.txt": "a"})
    feature = commit(appliance, project_id, {"b.txt": "<b>b</b>"}, branch="feature")
    add_member(appliance, project_id, "dev", Role.DEVELOPER)
    sign_in(client, "dev")
    answer = open_form(client, {"source_branch": "feature", "target_branch": "main", "title": "Add <b>b</b>"})
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/acme/web/-/merge_requests/1")
    assert pr_runs(appliance, project_id) == [("pull_request", feature)]
    page = client.get("/acme/web/-/merge_requests/1").get_data(as_text=True)
    assert "Add &lt;b&gt;b&lt;/b&gt;" in page and "<b>b</b>" not in page and feature[:8] in page
    listing = client.get("/acme/web/-/merge_requests").get_data(as_text=True)
    assert "!1 Add &lt;b&gt;b&lt;/b&gt;" in listing

    token = csrf_token(page)
    assert client.post("/acme/web/-/merge_requests/1/close", data={"csrf_token": token}).status_code == 302
    assert client.post("/acme/web/-/merge_requests/1/reopen", data={"csrf_token": token}).status_code == 302
    assert len(pr_runs(appliance, project_id)) == 3  # opened, closed, reopened

    # The same proposal twice, a branch into itself, a branch that does not exist: refused.
    again = open_form(client, {"source_branch": "feature", "target_branch": "main", "title": "again"})
    assert again.status_code == 422 and "already proposes feature for main" in again.get_data(as_text=True)
    itself = open_form(client, {"source_branch": "main", "target_branch": "main", "title": "x"})
    assert itself.status_code == 422 and "must differ from the source branch" in itself.get_data(as_text=True)
    ghost = open_form(client, {"source_branch": "ghost", "target_branch": "main", "title": "x"})
    assert ghost.status_code == 422 and "no branch &#39;ghost&#39;" in ghost.get_data(as_text=True)

    # A push to main that contains the feature's tip (a fast-forward merge) marks it merged.
    with appliance.db.session() as s:
        from appliance import repos
        repo = repos.repository_path(appliance.config, project_id)
        old = repos.resolve(repo, "main")[1]
        repos.git(repo, "update-ref", "refs/heads/main", feature)
    pushes.process_push(appliance, project_id, [pushes.RefUpdate(old, feature, "refs/heads/main")], None)
    with appliance.db.session() as s:
        assert s.scalar(sa.select(MergeRequest.state).where(MergeRequest.number == 1)) == "merged"


def test_a_viewer_reads_but_cannot_open(appliance, client):
    project_id = make_project(appliance)
    commit(appliance, project_id, {"a.txt": "a"})
    add_member(appliance, project_id, "viewer", Role.VIEWER)
    sign_in(client, "viewer")
    assert client.get("/acme/web/-/merge_requests").status_code == 200
    assert client.get("/acme/web/-/merge_requests/new").status_code == 403
    assert client.get("/acme/web/-/merge_requests/7").status_code == 404
    assert client.get("/acme/web/-/merge_requests?state=bogus").status_code == 400
