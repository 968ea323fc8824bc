"""A pipeline run through the browser against a live ``prts up`` (its Huey worker runs
the jobs): push a pipeline into the demo project's repository with the git CLI, click
"Run pipeline", open the run, click through to the job in the graph, and watch its log
lines arrive while it runs, until the job and the run succeed. Screenshots of the runs
list, the run page and the job page at 375 px and 1440 px go to
test-artifacts/screenshots/."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
from playwright.sync_api import expect

from browsing import browser, shot  # noqa: F401 (browser is a fixture)
from live import LiveAppliance
from pipelinekit import git

pytestmark = pytest.mark.e2e

NEW_PASSWORD = "a good long passphrase"
PROJECT = "/demo/hello-prts"
LINES = 25
PIPELINE = f"""\
version: "1.0"
name: Live log
triggers:
  - manual: {{}}
stages:
  - name: Build
    jobs:
      - name: count
        steps:
          - run: for i in $(seq 1 {LINES}); do echo line-$i; sleep 0.3; done
  - name: Check
    jobs:
      - name: "<b>verify</b>"
        steps: [ {{ run: "echo verified" }} ]
"""


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    appliance = LiveAppliance(tmp_path_factory.mktemp("e2e-pipelines") / "data").start()
    yield appliance
    appliance.stop()


def push_pipeline(live: LiveAppliance) -> str:
    """Commit the pipeline on the demo project's main branch with the git CLI, as a
    developer would; the bare repository lives at <data_dir>/repositories/<id>.git."""
    (repo,) = sorted((live.data_dir / "repositories").glob("*.git"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "w"
        git("clone", "--quiet", "--branch", "main", str(repo), str(work))
        (work / ".prts" / "pipeline.yaml").write_text(PIPELINE)
        git("commit", "--quiet", "--all", "-m", "A pipeline with a slow, chatty job", cwd=work)
        git("push", "--quiet", "origin", "HEAD:refs/heads/main", cwd=work)
        return git("rev-parse", "HEAD", cwd=work)


def sign_in(page, live: LiveAppliance, password: str) -> None:
    page.goto(live.url + "/login")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


@pytest.fixture(scope="module")
def signed_in(live, browser):
    """The admin's one-time password is replaced once; later pages sign in with the new one."""
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    sign_in(page, live, live.admin_password)
    expect(page).to_have_url(live.url + "/user/password")
    page.get_by_label("Current password").fill(live.admin_password)
    page.get_by_label("New password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    expect(page).to_have_url(live.url + "/")
    page.close()
    return NEW_PASSWORD


def test_run_a_pipeline_and_watch_its_log_live(live, browser, signed_in):
    sha = push_pipeline(live)
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    sign_in(page, live, signed_in)
    expect(page).to_have_url(live.url + "/")

    # The project page links to its pipelines.
    page.goto(live.url + PROJECT)
    expect(page.locator("#recent-runs")).to_contain_text("All pipelines")
    page.locator("#recent-runs").get_by_role("link", name="All pipelines").click()
    expect(page).to_have_url(live.url + PROJECT + "/-/pipelines")

    # A mistake first: the error shows under the field, in place (htmx, no reload).
    page.evaluate("window.__sameDocument = true")
    page.get_by_label("Branch, tag or commit").fill("no-such-branch")
    page.get_by_role("button", name="Run pipeline").click()
    expect(page.locator("#ref-error")).to_contain_text("no branch, tag or commit named")
    assert page.evaluate("window.__sameDocument") is True

    page.get_by_label("Branch, tag or commit").fill("main")
    page.get_by_role("button", name="Run pipeline").click()
    expect(page).to_have_url(re.compile(re.escape(live.url + PROJECT) + r"/-/pipelines/\d+$"))
    number = int(page.url.rsplit("/", 1)[1])
    expect(page.get_by_role("status")).to_contain_text(f"Pipeline #{number} was started for main.")
    expect(page.locator("h1")).to_contain_text(f"Pipeline #{number} · Live log")
    expect(page.locator("#run-status")).to_contain_text(sha[:8])

    # The graph: one linked node per job, names escaped.
    graph = page.locator(".dag svg")
    expect(graph.locator("a.dag__link")).to_have_count(2)
    expect(graph).to_contain_text("<b>verify</b>")
    assert page.locator(".dag b").count() == 0

    # Through the graph to the job, and its log arriving while it runs.
    graph.locator("a.dag__link", has_text="count").click()
    expect(page).to_have_url(re.compile(re.escape(live.url + PROJECT) + r"/-/jobs/\d+$"))
    expect(page.locator("h1")).to_have_text("count")
    page.evaluate("window.__sameDocument = true")
    log = page.locator("[data-log-lines]")
    expect(log).to_contain_text("line-1", timeout=60_000)
    seen_early = log.inner_text()
    assert f"line-{LINES}" not in seen_early, "the whole log came at once: lines did not arrive live"
    expect(page.locator("#job-status")).to_have_attribute("data-status", "running")
    shot(page, "pipeline-job-running")
    expect(log).to_contain_text(f"line-{LINES}", timeout=60_000)
    expect(page.locator("#job-status")).to_have_attribute("data-status", "success", timeout=30_000)
    expect(page.locator("#job-status")).to_contain_text("Success")
    expect(page.locator("#job-status .steps__item")).to_contain_text("exit code 0")
    assert page.evaluate("window.__sameDocument") is True  # the status refreshed in place
    assert [f"line-{i}" for i in range(1, LINES + 1)] == re.findall(r"line-\d+", log.inner_text())
    shot(page, "pipeline-job")

    # Back on the run page the whole run finishes by itself (the widget polls while active).
    page.get_by_role("navigation", name="Breadcrumb").get_by_role("link", name=f"#{number}").click()
    expect(page.locator("#run-status")).to_have_attribute("data-status", "success", timeout=60_000)
    expect(page.locator(".dag .dag__node--success")).to_have_count(2)
    expect(page.locator("#run-status")).not_to_have_attribute("hx-trigger", re.compile("every"))
    shot(page, "pipeline-run")

    page.get_by_role("link", name="Pipelines", exact=True).first.click()
    row = page.locator(f'tr[data-run="{number}"]')
    expect(row).to_contain_text("Success")
    expect(row).to_contain_text("manual")
    expect(row).to_contain_text("admin")
    shot(page, "pipelines")
    page.close()


def test_pipeline_pages_at_phone_width(live, browser, signed_in):
    page = browser.new_page(viewport={"width": 375, "height": 812})
    sign_in(page, live, signed_in)
    expect(page).to_have_url(live.url + "/")
    page.goto(live.url + PROJECT + "/-/pipelines")
    expect(page.locator("#run-list")).to_contain_text("Live log")
    shot(page, "pipelines")
    page.locator("#run-list").get_by_role("link", name=re.compile(r"^#\d+$")).first.click()
    expect(page.locator("#run-status")).to_have_attribute("data-status", "success")
    run_url = page.url
    shot(page, "pipeline-run")
    page.locator(".jobs-table").get_by_role("link", name="count").click()
    expect(page.locator("[data-log-lines]")).to_contain_text(f"line-{LINES}")
    shot(page, "pipeline-job")
    page.emulate_media(color_scheme="dark")
    page.goto(run_url)
    expect(page.locator("#run-status")).to_be_visible()
    shot(page, "pipeline-run-dark")
    page.goto(live.url + PROJECT + "/-/schedules")
    shot(page, "schedules")
    page.close()
