"""The repository browser's pages through the Flask test client: who may read, escaping
of names and messages, raw downloads that cannot become a page, bad revisions and paths
answered with 400 or 404 (never 500), and commits linked to their pipeline runs."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from appliance.accounts import organisations, users
from appliance.models import PipelineRun, Project, Role
from appliance.pipelines import runs
from conftest import csrf_token, make_config, web_app_for
from pipelinekit import commit, make_project

PASSWORD = "correct horse battery staple"
XSS_NAME = "<img src=x onerror=alert(1)>.txt"
HTML_MESSAGE = "Fix <script>alert(1)</script> & more"
PIPELINE = """\
version: "1.0"
name: Checks
triggers:
  - push: { branches: [main] }
stages:
  - name: Build
    jobs:
      - name: build
        steps: [ { run: "true" } ]
"""


def member(app, project_id: int, name: str, role: Role | None) -> None:
    with app.db.session() as s:
        user = users.create_user(s, name, PASSWORD)
        if role is not None:
            organisations.grant(s, user, s.get(Project, project_id), role)


def login(client, name: str, base_url: str = "http://localhost") -> None:
    token = csrf_token(client.get("/login", base_url=base_url).get_data(as_text=True))
    assert client.post("/login", data={"username": name, "password": PASSWORD, "csrf_token": token},
                       base_url=base_url, headers={"Referer": f"{base_url}/login"}).status_code == 302


@pytest.fixture
def project(appliance):
    """acme/web: a pipeline with a run on main, a branch with a slash, a file named like
    an HTML payload, an HTML page, a commit message with HTML and a binary file."""
    project_id = make_project(appliance)
    first = commit(appliance, project_id, {".prts/pipeline.yaml": PIPELINE, "README.md": "# Web <b>app</b>\n",
                                           "src/app.py": "def main():\n    return '<script>'\n"}, message="Initial")
    run = runs.trigger(appliance, project_id, "refs/heads/main", first, "push", None)
    assert run is not None
    html = commit(appliance, project_id, {XSS_NAME: "x\n", "page.html": "<script>alert(1)</script>\n",
                                          "blob.bin": "\x00\x01\x02binary"}, message=HTML_MESSAGE)
    release = commit(appliance, project_id, {"CHANGES": "1.0\n"}, branch="release/1.0", message="Release notes")
    return {"id": project_id, "first": first, "html": html, "release": release, "run": run.number}


@pytest.fixture
def viewer(appliance, client, project):
    member(appliance, project["id"], "vera", Role.VIEWER)
    login(client, "vera")
    return client


def text(answer) -> str:
    return answer.get_data(as_text=True)


def test_a_viewer_browses_files_history_and_branches(viewer, project):
    home = viewer.get("/acme/web/-/repository")
    assert home.status_code == 200, text(home)
    page = text(home)
    assert 'aria-current="page">Repository</a>' in page  # the project tab
    assert "# Web &lt;b&gt;app&lt;/b&gt;" in page  # the README, as escaped plain text
    assert 'value="http://localhost/acme/web.git"' in page and 'data-copy="#clone-url"' in page
    assert "/acme/web/-/tree/main/src" in page and "/acme/web/-/blob/main/README.md" in page

    code = text(viewer.get("/acme/web/-/blob/main/src/app.py"))
    assert '<span class="k">def</span>' in code  # highlighted by pygments
    assert "&lt;script&gt;" in code and "<script>" not in code.split("<body", 1)[1].replace(
        '<script src="', "")  # nothing from the file runs
    assert 'id="L2"' in code

    assert "CHANGES" in text(viewer.get("/acme/web/-/tree/release/1.0"))
    assert text(viewer.get("/acme/web/-/blob/release/1.0/CHANGES")).count("1.0") >= 1
    branches = text(viewer.get("/acme/web/-/branches"))
    assert branches.index('data-ref="main"') < branches.index('data-ref="release/1.0"')
    assert viewer.get("/acme/web/-/tags").status_code == 200
    history = text(viewer.get("/acme/web/-/commits/main"))
    assert history.index(project["html"]) < history.index(project["first"])
    # A directory asked for as a file, and a file as a directory, go where they belong.
    assert viewer.get("/acme/web/-/blob/main/src").headers["Location"].endswith("/acme/web/-/tree/main/src")
    assert viewer.get("/acme/web/-/tree/main/README.md").headers["Location"].endswith(
        "/acme/web/-/blob/main/README.md")


def test_without_a_grant_every_page_is_404(appliance, client, project):
    member(appliance, project["id"], "nobody", None)
    login(client, "nobody")
    for url in ("/acme/web/-/repository", "/acme/web/-/tree/main", "/acme/web/-/blob/main/README.md",
                "/acme/web/-/raw/main/README.md", "/acme/web/-/commits/main", f"/acme/web/-/commit/{project['first']}",
                "/acme/web/-/branches", "/acme/web/-/tags"):
        assert client.get(url).status_code == 404, url
    assert client.get("/acme/web/-/repository", follow_redirects=False).status_code == 404


def test_signed_out_visitors_are_sent_to_sign_in(client, project):
    answer = client.get("/acme/web/-/tree/main")
    assert answer.status_code == 302 and "/login" in answer.headers["Location"]


def test_names_and_messages_come_back_escaped(viewer, project):
    for url in ("/acme/web/-/repository", f"/acme/web/-/commit/{project['html']}", "/acme/web/-/commits/main",
                "/acme/web/-/branches"):
        page = text(viewer.get(url))
        assert "<img src=x" not in page and "<script>alert" not in page, url
    tree = text(viewer.get("/acme/web/-/tree/main"))
    assert "&lt;img src=x onerror=alert(1)&gt;.txt" in tree
    assert "/-/blob/main/%3Cimg%20src=x%20onerror=alert(1)%3E.txt" in tree
    commit_page = text(viewer.get(f"/acme/web/-/commit/{project['html']}"))
    assert "Fix &lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in commit_page
    assert "+&lt;script&gt;alert(1)&lt;/script&gt;" in re.sub(r"<span class=\"diff-line__sign\"[^>]*>\+</span>",
                                                              "+", commit_page)
    blob = viewer.get("/acme/web/-/blob/main/%3Cimg%20src=x%20onerror=alert(1)%3E.txt")
    assert blob.status_code == 200 and "<img src=x" not in text(blob)


def test_raw_files_are_plain_text_or_attachments_never_pages(viewer, project):
    page = viewer.get("/acme/web/-/raw/main/page.html")
    assert page.status_code == 200
    assert page.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Content-Security-Policy"] == "sandbox"
    assert page.data == b"<script>alert(1)</script>\n"
    binary = viewer.get("/acme/web/-/raw/main/blob.bin")
    assert binary.headers["Content-Type"] == "application/octet-stream"
    assert binary.headers["Content-Disposition"] == "attachment; filename*=UTF-8''blob.bin"
    assert binary.headers["X-Content-Type-Options"] == "nosniff" and binary.data == b"\x00\x01\x02binary"
    weird = viewer.get("/acme/web/-/raw/main/%3Cimg%20src=x%20onerror=alert(1)%3E.txt")
    assert weird.headers["Content-Type"] == "text/plain; charset=utf-8" and weird.data == b"x\n"
    assert viewer.get("/acme/web/-/raw/main/src").status_code == 404
    shown = text(viewer.get("/acme/web/-/blob/main/blob.bin"))
    assert "This is a binary file" in shown


def test_a_large_file_is_offered_raw_instead_of_shown(appliance, viewer, project):
    commit(appliance, project["id"], {"big.txt": "x" * (1024 * 1024 + 1)}, message="Big")
    page = text(viewer.get("/acme/web/-/blob/main/big.txt"))
    assert "too large to display" in page and "/acme/web/-/raw/main/big.txt" in page
    assert len(viewer.get("/acme/web/-/raw/main/big.txt").data) == 1024 * 1024 + 1


@pytest.mark.parametrize("url, code", [
    ("/acme/web/-/tree/main/../../etc", 400),
    ("/acme/web/-/tree/..", 400),
    ("/acme/web/-/blob/main/%00", 400),
    ("/acme/web/-/blob/main/a%00b", 400),
    ("/acme/web/-/tree/-rf", 400),
    ("/acme/web/-/blob/main/-x", 400),
    ("/acme/web/-/raw/main/..%2f..%2fsecret", 400),
    ("/acme/web/-/commits/--all", 400),
    ("/acme/web/-/tree/no-such-branch", 404),
    ("/acme/web/-/blob/main/missing.txt", 404),
    ("/acme/web/-/tree/main/missing", 404),
    ("/acme/web/-/commit/--help", 404),
    ("/acme/web/-/commit/HEAD", 404),
    ("/acme/web/-/commit/0000000", 404),
    ("/acme/web/-/commits/main?page=999", 404),
])
def test_bad_revisions_and_paths_are_400_or_404_never_500(viewer, project, url, code):
    assert viewer.get(url).status_code == code


def test_commits_link_to_their_pipeline_runs_with_status(appliance, viewer, project):
    number = project["run"]
    with appliance.db.session() as s:
        status = s.scalar(sa.select(PipelineRun.status).where(PipelineRun.number == number))
    run_url = f"/acme/web/-/pipelines/{number}"
    page = text(viewer.get(f"/acme/web/-/commit/{project['first'][:10]}"))
    assert f'href="{run_url}"' in page and f"Pipeline #{number}" in page
    assert f'data-state="{status}"' in page and 'class="status__label"' in page  # text and icon, not colour
    history = text(viewer.get("/acme/web/-/commits/main"))
    row = history[history.index(f'data-commit="{project["first"]}"'):]
    assert f'href="{run_url}"' in row.split("</li>", 1)[0]
    html_row = history[history.index(f'data-commit="{project["html"]}"'):].split("</li>", 1)[0]
    assert "/-/pipelines/" not in html_row  # no run for that commit
    # The root commit's page: a root commit, its whole tree added.
    assert "none (the first commit)" in page and "README.md" in page


def test_commit_history_pages_through(appliance, viewer, project):
    for i in range(35):
        commit(appliance, project["id"], {}, message=f"Step {i}")
    first = text(viewer.get("/acme/web/-/commits/main"))
    assert first.count('class="commit-row"') == 30 and "page=2" in first and "Step 34" in first
    second = text(viewer.get("/acme/web/-/commits/main?page=2"))
    assert second.count('class="commit-row"') == 7 and "Initial" in second and "page=3" not in second
    assert "page=1" in second
    assert "/acme/web/-/commits/main" in viewer.get("/acme/web/-/commits").headers["Location"]
    only_app = text(viewer.get("/acme/web/-/commits/main/src/app.py"))
    assert only_app.count('class="commit-row"') == 1


def test_an_empty_repository_says_how_to_push(appliance, client, auth, admin):
    make_project(appliance, "acme", "fresh")
    auth.login()
    page = text(client.get("/acme/fresh/-/repository"))
    assert "This repository is empty" in page
    assert "git remote add origin http://localhost/acme/fresh.git" in page
    assert "git push -u origin main" in page
    assert client.get("/acme/fresh/-/branches").status_code == 200
    assert client.get("/acme/fresh/-/tree/main").status_code == 404


def test_a_project_whose_repository_is_not_made_yet_reads_as_empty(appliance, client, auth, admin):
    # The web form makes no repository; git makes it on the first clone or push.
    with appliance.db.session() as s:
        organisations.create_project(s, organisations.create_organisation(s, "solo"), "new")
    auth.login()
    assert "This repository is empty" in text(client.get("/solo/new/-/repository"))
    for url in ("/solo/new/-/tree/main", "/solo/new/-/blob/main/README.md", "/solo/new/-/raw/main/README.md",
                "/solo/new/-/commits/main", "/solo/new/-/commit/abcdef1"):
        assert client.get(url).status_code == 404, url
    assert client.get("/solo/new/-/branches").status_code == 200
    assert client.get("/solo/new/-/commits").status_code == 302


def test_the_public_url_makes_the_clone_url(tmp_path):
    """The configured public address wins over the host the request came to."""
    from appliance import migrate
    from appliance.context import Appliance
    app = Appliance(make_config(tmp_path / "data", web__public_url="https://git.example.test/"))
    try:
        migrate.upgrade(app.db)
        make_project(app)
        member(app, 1, "vera", Role.VIEWER)
        flask_app = web_app_for(app)
        client = flask_app.test_client()
        # An https public URL makes the session cookie Secure: this client must speak https too.
        login(client, "vera", "https://internal:8000")
        overview = text(client.get("/acme/web", base_url="https://internal:8000"))
        assert 'value="https://git.example.test/acme/web.git"' in overview and "Browse the repository" in overview
        empty = text(client.get("/acme/web/-/repository", base_url="https://internal:8000"))
        assert "git remote add origin https://git.example.test/acme/web.git" in empty and "internal" not in empty
    finally:
        app.close()
