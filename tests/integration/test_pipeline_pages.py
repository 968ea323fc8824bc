"""The pipeline pages through Flask's test client: runs list and "Run pipeline" form, run
page with its job graph, job page, artifact downloads, schedules; permissions and CSRF.

Projects get a real bare repository with a `.prts/pipeline.yaml` pushed by the git CLI;
runs are started with the same service the form calls. Where a test needs finished jobs
it runs the queued tasks in this process (``drain``), through the real local executor.
"""

from __future__ import annotations

import gzip
import hashlib
import re

import pytest
import sqlalchemy as sa

from appliance.accounts import organisations, users
from appliance.models import Artifact, PipelineJob, PipelineRun, PipelineSchedule, Project, Role, User
from appliance.pipelines import runs, schedules
from conftest import ADMIN_PASSWORD, AuthActions, csrf_token
from tests.pipelinekit import commit, drain, make_project

PASSWORD = "a long enough password"
EVIL = "<script>alert(1)</script>"

PIPELINE = f"""
version: "1.0"
name: Pages
triggers:
  - push: {{ branches: [main] }}
  - manual: {{}}
stages:
  - name: Build
    jobs:
      - name: "{EVIL}"
        steps: [ {{ run: "echo evil" }} ]
      - name: compile
        steps:
          - run: mkdir -p out && echo built > out/app.txt
          - artifact: {{ path: out/, name: app }}
  - name: Test
    jobs:
      - name: unit
        steps: [ {{ run: "echo unit ok" }}, {{ run: "exit 0" }} ]
"""


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture
def project_id(appliance, admin):
    pid = make_project(appliance, "acme", "web")
    commit(appliance, pid, {".prts/pipeline.yaml": PIPELINE, "README.md": "hello\n"})
    return pid


@pytest.fixture
def people(appliance, project_id):
    """A viewer, a developer and a maintainer of acme/web, and someone outside it."""
    with appliance.db.session() as s:
        project = s.get(Project, project_id)
        for username, role in (("viewer", Role.VIEWER), ("dev", Role.DEVELOPER), ("maint", Role.MAINTAINER),
                               ("outsider", None)):
            user = users.create_user(s, username, PASSWORD)
            if role is not None:
                organisations.grant(s, user, project, role)


def login(client, username: str = "root"):
    response = AuthActions(client).login(username, ADMIN_PASSWORD if username == "root" else PASSWORD)
    assert response.status_code == 302, response.get_data(as_text=True)


def start_run(appliance, project_id: int, ref: str = "main") -> PipelineRun:
    with appliance.db.session() as s:
        project = s.get(Project, project_id)
        root = s.scalar(sa.select(User).where(User.username == "root"))
    return runs.start_manual(appliance, project, ref, root)


def token_of(client, path: str) -> str:
    return csrf_token(client.get(path).get_data(as_text=True))


def post(client, path: str, data: dict | None = None, *, token_from: str = "/acme/web/-/pipelines", htmx=False,
         **kw):
    token = token_of(client, token_from)
    headers = {"HX-Request": "true"} if htmx else {}
    return client.post(path, data={"csrf_token": token, **(data or {})}, headers=headers, **kw)


def jobs_of(appliance, run_id: int) -> dict[str, PipelineJob]:
    with appliance.db.session() as s:
        return {j.name: j for j in s.scalars(sa.select(PipelineJob).where(PipelineJob.run_id == run_id))}


def run_row(appliance, run_id: int) -> PipelineRun:
    with appliance.db.session() as s:
        return s.get(PipelineRun, run_id)


# -- runs list and the "Run pipeline" form ------------------------------------------------


def test_run_pipeline_form_starts_a_run_and_the_list_shows_it(client, appliance, project_id):
    login(client)
    page = client.get("/acme/web/-/pipelines")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "No pipelines yet" in html
    assert re.search(r'<input[^>]+id="ref"[^>]+value="main"', html), "the ref defaults to the default branch"

    response = post(client, "/acme/web/-/pipelines", {"ref": "main"})
    assert response.status_code == 302 and response.headers["Location"] == "/acme/web/-/pipelines/1"
    assert "Pipeline #1 was started for main." in client.get("/acme/web/-/pipelines/1").get_data(as_text=True)

    html = client.get("/acme/web/-/pipelines").get_data(as_text=True)
    row = re.search(r'<tr data-run="1">.*?</tr>', html, re.S).group(0)
    with appliance.db.session() as s:
        run = s.scalar(sa.select(PipelineRun))
    assert 'href="/acme/web/-/pipelines/1">#1</a>' in row and "Pages" in row
    assert "manual" in row and ">main</code>" in row and run.commit_sha[:8] in row and "root" in row
    assert re.search(r'class="status status--(queued|running|pending)"', row)
    assert "<time datetime=" in row
    # A run is active, so the list polls itself.
    assert 'hx-trigger="every 2s"' in html


def test_run_form_over_htmx_shows_errors_inline_or_redirects(client, appliance, project_id):
    login(client)
    bad = post(client, "/acme/web/-/pipelines", {"ref": "no-such-branch"}, htmx=True)
    html = bad.get_data(as_text=True)
    assert bad.status_code == 422 and html.lstrip().startswith("<form")
    assert re.search(r'id="ref-error"[^>]*>.*no branch, tag or commit named', html, re.S), html
    assert 'aria-invalid="true"' in html
    invalid = post(client, "/acme/web/-/pipelines", {"ref": "-rf"}, htmx=True)
    assert invalid.status_code == 422 and "is not a valid ref name" in invalid.get_data(as_text=True)
    # Without htmx, the whole page comes back with the error under the field.
    plain = post(client, "/acme/web/-/pipelines", {"ref": "no-such-branch"})
    assert plain.status_code == 422 and "<html" in plain.get_data(as_text=True)
    assert 'id="ref-error"' in plain.get_data(as_text=True)
    with appliance.db.session() as s:
        assert s.scalar(sa.select(sa.func.count(PipelineRun.id))) == 0

    good = post(client, "/acme/web/-/pipelines", {"ref": "main"}, htmx=True)
    assert good.status_code == 204 and good.headers["HX-Redirect"] == "/acme/web/-/pipelines/1"


def test_a_ref_without_a_pipeline_file_is_an_inline_error(client, appliance, project_id):
    commit(appliance, project_id, {"README.md": "other\n"}, branch="docs")
    commit(appliance, project_id, {".prts/pipeline.yaml": None}, branch="docs")
    login(client)
    response = post(client, "/acme/web/-/pipelines", {"ref": "docs"}, htmx=True)
    assert response.status_code == 422 and "has no .prts/pipeline.yaml" in response.get_data(as_text=True)


def test_list_is_newest_first_paginated_and_stops_polling_when_idle(client, appliance, project_id):
    with appliance.db.session() as s:
        for n in range(1, 26):
            s.add(PipelineRun(project_id=project_id, number=n, name=f"run {n}", event="push", ref="refs/heads/main",
                              commit_sha="a" * 40, status="success", error="", source=""))
    login(client)
    first = client.get("/acme/web/-/pipelines").get_data(as_text=True)
    numbers = [int(n) for n in re.findall(r'<tr data-run="(\d+)">', first)]
    assert numbers == list(range(25, 5, -1))
    assert "Page 1 of 2" in first and 'href="/acme/web/-/pipelines?page=2"' in first
    assert 'hx-trigger="every 2s"' not in first  # nothing active: no polling
    second = client.get("/acme/web/-/pipelines?page=2").get_data(as_text=True)
    assert [int(n) for n in re.findall(r'<tr data-run="(\d+)">', second)] == [5, 4, 3, 2, 1]
    beyond = client.get("/acme/web/-/pipelines?page=99").get_data(as_text=True)
    assert "Page 2 of 2" in beyond
    # The htmx poll returns the list partial alone.
    partial = client.get("/acme/web/-/pipelines", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert partial.lstrip().startswith('<div id="run-list"') and "<html" not in partial


def test_list_poll_answers_204_while_nothing_changed(client, appliance, project_id):
    run = start_run(appliance, project_id)
    login(client)
    html = client.get("/acme/web/-/pipelines").get_data(as_text=True)
    poll = re.search(r'<div id="run-list"[^>]*hx-get="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert client.get(poll, headers={"HX-Request": "true"}).status_code == 204
    runs.cancel_run(appliance, run.id)
    changed = client.get(poll, headers={"HX-Request": "true"})
    assert changed.status_code == 200
    text = changed.get_data(as_text=True)
    assert "status--canceled" in text and 'hx-trigger="every 2s"' not in text


# -- the run page -------------------------------------------------------------------------


def test_run_page_draws_one_graph_node_per_job_with_escaped_names(client, appliance, project_id):
    run = start_run(appliance, project_id)
    login(client)
    page = client.get(f"/acme/web/-/pipelines/{run.number}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    jobs = jobs_of(appliance, run.id)
    assert set(jobs) == {EVIL, "compile", "unit"}
    svg = re.search(r"<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"dag__svg.*?</svg>", html, re.S).group(0)
    links = re.findall(r'<a class="dag__link" href="([^"]+)"', svg)
    assert sorted(links) == sorted(f"/acme/web/-/jobs/{j.id}" for j in jobs.values())
    assert len(re.findall(r'<path class="dag__edge', svg)) == 2  # both Build jobs -> unit
    assert EVIL not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in svg
    assert "&lt;script&gt;alert(1)&lt;/script&gt;</a>" in html  # the job table, escaped too
    # The job table groups jobs by stage; every job shows status, duration and attempt.
    assert re.search(r'scope="rowgroup"[^>]*>Build<.*scope="rowgroup"[^>]*>Test<', html, re.S)
    assert html.count('<tr data-job="') == 3
    assert "Cancel pipeline" in html and "Run again" in html
    assert 'id="run-status"' in html and 'hx-trigger="every 2s"' in html


def test_run_status_widget_polls_while_active_and_cancel_stops_it(client, appliance, project_id):
    run = start_run(appliance, project_id)
    login(client)
    html = client.get(f"/acme/web/-/pipelines/{run.number}").get_data(as_text=True)
    poll = re.search(r'<div id="run-status"[^>]*hx-get="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert 'hx-target="this"' in re.search(r'<div id="run-status"[^>]*>', html).group(0)
    assert client.get(poll, headers={"HX-Request": "true"}).status_code == 204

    cancel = post(client, f"/acme/web/-/pipelines/{run.number}/cancel")
    assert cancel.status_code == 302 and cancel.headers["Location"] == f"/acme/web/-/pipelines/{run.number}"
    assert run_row(appliance, run.id).status == "canceled"
    widget = client.get(poll, headers={"HX-Request": "true"})
    text = widget.get_data(as_text=True)
    assert widget.status_code == 200 and text.lstrip().startswith('<div id="run-status"')
    assert "status--canceled" in text and "hx-trigger" not in text and "Cancel pipeline" not in text
    # Jobs canceled, or skipped because a job they need was canceled: none is left to run.
    assert {j.status for j in jobs_of(appliance, run.id).values()} <= {"canceled", "skipped"}


def test_rerun_starts_a_new_run_of_the_same_commit(client, appliance, project_id):
    run = start_run(appliance, project_id)
    login(client)
    response = post(client, f"/acme/web/-/pipelines/{run.number}/rerun")
    assert response.status_code == 302 and response.headers["Location"] == "/acme/web/-/pipelines/2"
    with appliance.db.session() as s:
        second = s.scalar(sa.select(PipelineRun).where(PipelineRun.number == 2))
        assert second.commit_sha == run.commit_sha


def test_a_pipeline_file_that_does_not_parse_shows_its_error(client, appliance, project_id):
    commit(appliance, project_id, {".prts/pipeline.yaml": "version: \"1.0\"\nstages: [ {{ nope\n"})
    run = start_run(appliance, project_id)
    assert run.status == "failed" and run.error
    login(client)
    html = client.get(f"/acme/web/-/pipelines/{run.number}").get_data(as_text=True)
    assert '<pre class="run-error__text">' in html and ".prts/pipeline.yaml:" in html
    assert "status--failed" in html and "dag__svg" not in html


def test_unknown_run_is_404(client, project_id):
    login(client)
    assert client.get("/acme/web/-/pipelines/99").status_code == 404
    assert client.get("/acme/nothing/-/pipelines").status_code == 404


# -- the job page -------------------------------------------------------------------------


def test_job_page_shows_status_steps_and_the_status_widget(client, appliance, project_id):
    run = start_run(appliance, project_id)
    unit = jobs_of(appliance, run.id)["unit"]
    login(client)
    html = client.get(f"/acme/web/-/jobs/{unit.id}").get_data(as_text=True)
    assert "<h1" in html and ">unit</h1>" in html
    assert html.count('class="steps__item"') == 2
    assert 'id="job-status"' in html and 'hx-trigger="every 2s"' in html
    assert "Cancel job" in html and "Run job again" not in html
    assert f'href="/acme/web/-/pipelines/{run.number}"' in html
    # needs are listed and linked
    assert "Needs" in html and "compile</a>" in html
    assert client.get(f"/acme/web/-/jobs/{unit.id}?attempt=2").status_code == 404
    assert client.get(f"/acme/web/-/jobs/{unit.id}", headers={"HX-Request": "true"}).get_data(
        as_text=True).lstrip().startswith('<div id="job-status"')

    cancel = post(client, f"/acme/web/-/jobs/{unit.id}/cancel")
    assert cancel.status_code == 302 and cancel.headers["Location"] == f"/acme/web/-/jobs/{unit.id}"
    html = client.get(f"/acme/web/-/jobs/{unit.id}").get_data(as_text=True)
    assert "status--canceled" in html and "Run job again" in html and 'hx-trigger="every 2s"' not in html
    rerun = post(client, f"/acme/web/-/jobs/{unit.id}/rerun")
    assert rerun.status_code == 302
    assert jobs_of(appliance, run.id)["unit"].attempt == 2
    html = client.get(f"/acme/web/-/jobs/{unit.id}").get_data(as_text=True)
    assert f'href="/acme/web/-/jobs/{unit.id}?attempt=1"' in html
    assert client.get(f"/acme/web/-/jobs/{unit.id}?attempt=1").status_code == 200


def test_job_of_another_project_is_404(client, appliance, project_id):
    other = make_project(appliance, "acme", "api")
    commit(appliance, other, {".prts/pipeline.yaml": PIPELINE})
    run = start_run(appliance, other)
    job = jobs_of(appliance, run.id)["unit"]
    login(client)
    assert client.get(f"/acme/api/-/jobs/{job.id}").status_code == 200
    assert client.get(f"/acme/web/-/jobs/{job.id}").status_code == 404
    assert client.get(f"/acme/web/-/pipelines/{run.number}").status_code == 404  # web has no runs


def test_finished_run_job_page_with_artifact_download(client, appliance, project_id):
    run = start_run(appliance, project_id)
    drain(appliance)
    assert run_row(appliance, run.id).status == "success"
    compile_job = jobs_of(appliance, run.id)["compile"]
    login(client)
    html = client.get(f"/acme/web/-/jobs/{compile_job.id}").get_data(as_text=True)
    assert "status--success" in html and 'hx-trigger="every 2s"' not in html
    assert re.findall(r"exit code (\d+)", html) == ["0", "0"] or "exit code 0" in html
    with appliance.db.session() as s:
        artifact = s.scalar(sa.select(Artifact).where(Artifact.job_id == compile_job.id))
    link = f"/acme/web/-/jobs/{compile_job.id}/artifacts/app"
    assert f'href="{link}"' in html and artifact.sha256 in html

    response = client.get(link)
    assert response.status_code == 200 and response.mimetype == "application/gzip"
    assert 'attachment; filename=app.tar.gz' in response.headers["Content-Disposition"]
    body = response.get_data()
    assert hashlib.sha256(body).hexdigest() == artifact.sha256 and gzip.decompress(body)
    assert client.get(f"/acme/web/-/jobs/{compile_job.id}/artifacts/nope").status_code == 404
    # A damaged archive is refused, not served.
    appliance.objects.put(artifact.object_key, gzip.compress(b"tampered"))
    damaged = client.get(link)
    assert damaged.status_code == 500 and "does not match its checksum" in damaged.get_data(as_text=True)
    assert "Content-Disposition" not in damaged.headers
    appliance.objects.delete(artifact.object_key)
    assert client.get(link).status_code == 410

    # The run page shows every job finished and stops polling.
    html = client.get(f"/acme/web/-/pipelines/{run.number}").get_data(as_text=True)
    assert html.count("dag__node--success") == 3 and 'hx-trigger="every 2s"' not in html


# -- permissions and CSRF -----------------------------------------------------------------


def test_viewer_sees_everything_but_may_not_act(client, appliance, project_id, people):
    run = start_run(appliance, project_id)
    job = jobs_of(appliance, run.id)["unit"]
    login(client, "viewer")
    for path in ("/acme/web/-/pipelines", f"/acme/web/-/pipelines/{run.number}", f"/acme/web/-/jobs/{job.id}",
                 "/acme/web/-/schedules", "/acme/web/-/pipelines/recent"):
        response = client.get(path)
        html = response.get_data(as_text=True)
        assert response.status_code == 200, path
        assert "Run pipeline" not in html and "Cancel" not in html and "Run again" not in html, path
    for path, data in (("/acme/web/-/pipelines", {"ref": "main"}),
                       (f"/acme/web/-/pipelines/{run.number}/cancel", {}),
                       (f"/acme/web/-/pipelines/{run.number}/rerun", {}),
                       (f"/acme/web/-/jobs/{job.id}/cancel", {}),
                       (f"/acme/web/-/jobs/{job.id}/rerun", {}),
                       ("/acme/web/-/schedules", {"cron": "0 2 * * *", "ref": "main"})):
        assert post(client, path, data).status_code == 403, path
    assert run_row(appliance, run.id).status != "canceled"


def test_developer_may_run_but_not_manage_schedules(client, appliance, project_id, people):
    login(client, "dev")
    assert post(client, "/acme/web/-/pipelines", {"ref": "main"}).status_code == 302
    html = client.get("/acme/web/-/schedules").get_data(as_text=True)
    assert "Add a schedule" not in html
    assert post(client, "/acme/web/-/schedules", {"cron": "0 2 * * *", "ref": "main"}).status_code == 403


def test_outsider_gets_404_everywhere(client, appliance, project_id, people):
    run = start_run(appliance, project_id)
    job = jobs_of(appliance, run.id)["unit"]
    login(client, "outsider")
    for path in ("/acme/web/-/pipelines", f"/acme/web/-/pipelines/{run.number}", f"/acme/web/-/jobs/{job.id}",
                 f"/acme/web/-/jobs/{job.id}/artifacts/app", "/acme/web/-/schedules", "/acme/web/-/pipelines/recent"):
        assert client.get(path).status_code == 404, path
    token = token_of(client, "/")
    for path in ("/acme/web/-/pipelines", f"/acme/web/-/pipelines/{run.number}/cancel",
                 f"/acme/web/-/jobs/{job.id}/cancel", "/acme/web/-/schedules"):
        assert client.post(path, data={"csrf_token": token, "ref": "main"}).status_code == 404, path


def test_pages_need_login(client, appliance, project_id):
    for path in ("/acme/web/-/pipelines", "/acme/web/-/pipelines/1", "/acme/web/-/jobs/1", "/acme/web/-/schedules"):
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"], path


def test_every_pipeline_form_needs_csrf(client, appliance, project_id):
    run = start_run(appliance, project_id)
    job = jobs_of(appliance, run.id)["unit"]
    login(client)
    for path, data in (("/acme/web/-/pipelines", {"ref": "main"}),
                       (f"/acme/web/-/pipelines/{run.number}/cancel", {}),
                       (f"/acme/web/-/pipelines/{run.number}/rerun", {}),
                       (f"/acme/web/-/jobs/{job.id}/cancel", {}),
                       ("/acme/web/-/schedules", {"cron": "0 2 * * *", "ref": "main"})):
        assert client.post(path, data=data).status_code == 400, path
        assert client.post(path, data={**data, "csrf_token": "forged"}).status_code == 400, path
    assert run_row(appliance, run.id).status != "canceled"
    with appliance.db.session() as s:
        assert s.scalar(sa.select(sa.func.count(PipelineRun.id))) == 1
        assert s.scalar(sa.select(sa.func.count(PipelineSchedule.id))) == 0


# -- schedules ----------------------------------------------------------------------------


def schedule_rows(appliance, project_id: int) -> list[PipelineSchedule]:
    with appliance.db.session() as s:
        return list(s.scalars(sa.select(PipelineSchedule).where(PipelineSchedule.project_id == project_id)
                              .order_by(PipelineSchedule.id)))


def test_schedules_add_with_inline_errors_then_disable_enable_delete(client, appliance, project_id, people):
    login(client, "maint")
    html = client.get("/acme/web/-/schedules").get_data(as_text=True)
    assert "No schedules" in html and "Add a schedule" in html

    bad = post(client, "/acme/web/-/schedules", {"cron": "every day", "ref": "main"}, htmx=True,
               token_from="/acme/web/-/schedules")
    text = bad.get_data(as_text=True)
    assert bad.status_code == 422 and text.lstrip().startswith("<form")
    assert re.search(r'id="cron-error"[^>]*>.*is not a cron expression', text, re.S), text
    assert re.search(r'<input[^>]+aria-invalid="true"[^>]+id="cron"|<input[^>]+id="cron"[^>]+aria-invalid="true"',
                     text)
    plain = post(client, "/acme/web/-/schedules", {"cron": "61 * * * *", "ref": "main"},
                 token_from="/acme/web/-/schedules")
    assert plain.status_code == 422 and 'id="cron-error"' in plain.get_data(as_text=True)
    bad_ref = post(client, "/acme/web/-/schedules", {"cron": "0 2 * * *", "ref": "a..b"}, htmx=True,
                   token_from="/acme/web/-/schedules")
    assert bad_ref.status_code == 422 and 'id="ref-error"' in bad_ref.get_data(as_text=True)
    assert schedule_rows(appliance, project_id) == []

    good = post(client, "/acme/web/-/schedules", {"cron": "0  2 * * *", "ref": "main", "description": "<b>nightly</b>"},
                htmx=True, token_from="/acme/web/-/schedules")
    assert good.status_code == 204 and good.headers["HX-Redirect"] == "/acme/web/-/schedules"
    (row,) = schedule_rows(appliance, project_id)
    assert row.cron == "0 2 * * *" and row.source == "user" and row.enabled
    html = client.get("/acme/web/-/schedules").get_data(as_text=True)
    assert "<code>0 2 * * *</code>" in html and "&lt;b&gt;nightly&lt;/b&gt;" in html and "<b>nightly" not in html
    assert "Enabled" in html and "never" in html and "<time datetime=" in html

    assert post(client, f"/acme/web/-/schedules/{row.id}/disable", token_from="/acme/web/-/schedules") \
        .status_code == 302
    assert not schedule_rows(appliance, project_id)[0].enabled
    assert "Disabled" in client.get("/acme/web/-/schedules").get_data(as_text=True)
    post(client, f"/acme/web/-/schedules/{row.id}/enable", token_from="/acme/web/-/schedules")
    assert schedule_rows(appliance, project_id)[0].enabled
    assert post(client, f"/acme/web/-/schedules/{row.id}/delete", token_from="/acme/web/-/schedules") \
        .status_code == 302
    assert schedule_rows(appliance, project_id) == []


def test_pipeline_schedules_are_read_only(client, appliance, project_id, people):
    with appliance.db.session() as s:
        project = s.get(Project, project_id)
        row = schedules.add_schedule(s, project, "*/5 * * * *", "refs/heads/main", "from the pipeline file",
                                     source="pipeline")
        row_id = row.id
    login(client, "maint")
    html = client.get("/acme/web/-/schedules").get_data(as_text=True)
    assert "pipeline file" in html and "Read-only" in html and "change that file" in html
    for action in ("disable", "enable", "delete"):
        assert post(client, f"/acme/web/-/schedules/{row_id}/{action}",
                    token_from="/acme/web/-/schedules").status_code == 403
    assert len(schedule_rows(appliance, project_id)) == 1


def test_schedule_last_run_links_to_the_run(client, appliance, project_id):
    run = start_run(appliance, project_id)
    with appliance.db.session() as s:
        project = s.get(Project, project_id)
        row = schedules.add_schedule(s, project, "0 2 * * *", "main")
        row.last_run_id = run.id
    login(client)
    html = client.get("/acme/web/-/schedules").get_data(as_text=True)
    assert f'href="/acme/web/-/pipelines/{run.number}">#{run.number}</a>' in html


# -- the project page ---------------------------------------------------------------------


def test_project_page_loads_recent_runs(client, appliance, project_id, people):
    run = start_run(appliance, project_id)
    login(client, "dev")
    html = client.get("/acme/web").get_data(as_text=True)
    assert 'hx-get="/acme/web/-/pipelines/recent"' in html and 'href="/acme/web/-/pipelines"' in html
    recent = client.get("/acme/web/-/pipelines/recent", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert f'href="/acme/web/-/pipelines/{run.number}">#{run.number} Pages</a>' in recent
    assert "Run pipeline on main" in recent and 'hx-trigger="every 2s"' in recent
