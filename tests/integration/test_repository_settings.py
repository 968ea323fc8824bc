"""The repository settings page: default branch and protected branch patterns."""

from __future__ import annotations

from appliance import repos
from appliance.hosting import protection
from appliance.models import Project, Role
from conftest import add_member, csrf_token, sign_in
from pipelinekit import commit, make_project

PASSWORD = "correct horse battery staple"


def patterns(app, project_id):
    with app.db.session() as s:
        return protection.patterns(s, s.get(Project, project_id))


def test_maintainer_protects_patterns_and_moves_the_default_branch(appliance, client):
    project_id = make_project(appliance)
    commit(appliance, project_id, {"a": "a"})
    commit(appliance, project_id, {"b": "b"}, branch="trunk")
    add_member(appliance, project_id, "maint", Role.MAINTAINER)
    sign_in(client, "maint")
    page = client.get("/acme/web/-/settings/repository")
    assert page.status_code == 200
    token = csrf_token(page.get_data(as_text=True))
    assert patterns(appliance, project_id) == ("main",)  # the default branch starts protected

    url = "/acme/web/-/settings/repository/protected"
    assert client.post(url, data={"pattern": "release/*", "csrf_token": token}).status_code == 302
    assert patterns(appliance, project_id) == ("main", "release/*")
    for bad, message in (("../x", "not a valid ref name"), ("-rf", "not a valid ref name"), ("", "is required"),
                         ("main", "already protected")):
        answer = client.post(url, data={"pattern": bad, "csrf_token": token})
        assert answer.status_code == 422 and message in answer.get_data(as_text=True), bad
    assert patterns(appliance, project_id) == ("main", "release/*")
    assert client.post(url, data={"pattern": "x"}).status_code == 400  # no CSRF token

    answer = client.post("/acme/web/-/settings/repository/unprotect", data={"pattern": "main", "csrf_token": token})
    assert answer.status_code == 302 and patterns(appliance, project_id) == ("release/*",)

    url = "/acme/web/-/settings/repository/default-branch"
    assert client.post(url, data={"default_branch": "ghost", "csrf_token": token}).status_code == 422
    assert client.post(url, data={"default_branch": "trunk", "csrf_token": token}).status_code == 302
    repo = repos.repository_path(appliance.config, project_id)
    assert repos.git(repo, "symbolic-ref", "HEAD").decode().strip() == "refs/heads/trunk"
    with appliance.db.session() as s:
        assert s.get(Project, project_id).default_branch == "trunk"


def test_developer_reads_but_cannot_change(appliance, client):
    project_id = make_project(appliance)
    add_member(appliance, project_id, "dev", Role.DEVELOPER)
    sign_in(client, "dev")
    page = client.get("/acme/web/-/settings/repository")
    assert page.status_code == 200 and "Only Maintainers" in page.get_data(as_text=True)
    token = csrf_token(page.get_data(as_text=True))
    answer = client.post("/acme/web/-/settings/repository/protected", data={"pattern": "x", "csrf_token": token})
    assert answer.status_code == 403 and patterns(appliance, project_id) == ("main",)
