"""The repository browser in Chromium against a live ``prts up``, whose bootstrap seeds the
demo project with a commit and a pipeline run of it: from the project page to the files,
a highlighted file, the history, the commit with its diff, and through to its pipeline
run. A second commit, pushed with the git CLI, brings a file named like an HTML payload
and an HTML commit message, which must show as text. Screenshots at 375 px and 1440 px go
to test-artifacts/screenshots/."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
from playwright.sync_api import expect

from browsing import browser, shot  # noqa: F401 (browser is a fixture)
from live import LiveAppliance
from pipelinekit import git
# The admin's first sign-in (its one-time password replaced) is the pipeline pages' fixture.
from test_pipeline_browser import sign_in, signed_in  # noqa: F401 (signed_in is a fixture)

pytestmark = pytest.mark.e2e

PROJECT = "/demo/hello-prts"
XSS_NAME = "<img src=x onerror=alert(1)>.txt"
HTML_MESSAGE = "Add <b>notes</b> & an <img src=x onerror=alert(1)> file"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    appliance = LiveAppliance(tmp_path_factory.mktemp("e2e-repository") / "data").start()
    yield appliance
    appliance.stop()


def push_notes(live: LiveAppliance) -> str:
    """A second commit on main, on a branch with a slash too, made with the git CLI."""
    (repo,) = sorted((live.data_dir / "repositories").glob("*.git"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "w"
        git("clone", "--quiet", "--branch", "main", str(repo), str(work))
        (work / XSS_NAME).write_text("not an image\n")
        (work / "docs").mkdir()
        (work / "docs" / "notes.py").write_text("def greet(name):\n    return f'<b>{name}</b>'\n")
        git("add", "--all", cwd=work)
        git("commit", "--quiet", "-m", HTML_MESSAGE, cwd=work)
        git("push", "--quiet", "origin", "HEAD:refs/heads/main", "HEAD:refs/heads/release/1.0", cwd=work)
        return git("rev-parse", "HEAD", cwd=work)


@pytest.fixture(scope="module")
def notes(live, signed_in):
    return push_notes(live)


def test_browse_files_and_follow_a_commit_to_its_run(live, browser, signed_in, notes):
    context = browser.new_context(viewport={"width": 1440, "height": 900},
                                  permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    alerts = []
    page.on("dialog", lambda dialog: (alerts.append(dialog.message), dialog.dismiss()))
    sign_in(page, live, signed_in)
    expect(page).to_have_url(live.url + "/")

    # The project page shows the clone URL; its button copies it.
    page.goto(live.url + PROJECT)
    clone = f"{live.url}{PROJECT}.git"
    expect(page.get_by_label("Clone with HTTPS")).to_have_value(clone)
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == clone
    page.get_by_role("link", name="Browse the repository").click()

    # The default branch's files, directories first, and the README as text.
    expect(page).to_have_url(live.url + PROJECT + "/-/repository")
    expect(page.get_by_role("navigation", name="Project").get_by_role("link", name="Repository")) \
        .to_have_attribute("aria-current", "page")
    names = page.locator(".file-table__name").all_inner_texts()
    assert names[0].startswith(".prts/") and any(XSS_NAME in n for n in names), names
    expect(page.locator(".readme")).to_contain_text("A demo project seeded on first start.")
    assert page.locator("img").count() == 0  # the file named like an image tag is text
    shot(page, "repository-home")

    # Into a directory and a highlighted file.
    page.get_by_role("link", name=".prts/").click()
    expect(page).to_have_url(live.url + PROJECT + "/-/tree/main/.prts")
    page.get_by_role("link", name="pipeline.yaml").click()
    expect(page).to_have_url(live.url + PROJECT + "/-/blob/main/.prts/pipeline.yaml")
    expect(page.locator(".code-view")).to_contain_text("name: Hello PRTS")
    assert page.locator(".code-view .highlight span, .code-view__table.highlight span").count() > 10
    shot(page, "repository-file")

    # A file on a branch whose name holds a slash; then the history of main.
    page.goto(live.url + PROJECT + "/-/blob/release/1.0/docs/notes.py")
    expect(page.locator(".code-view")).to_contain_text("return f'<b>{name}</b>'")
    assert page.locator(".code-view b").count() == 0
    page.get_by_role("navigation", name="Repository").get_by_role("link", name="Commits").click()
    expect(page).to_have_url(live.url + PROJECT + "/-/commits/release/1.0")
    page.goto(live.url + PROJECT + "/-/commits/main")
    rows = page.locator(".commit-row")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text(HTML_MESSAGE)
    seed = rows.nth(1)
    expect(seed).to_contain_text("Seed the demo project")
    expect(seed.locator(".status")).to_be_visible()  # its run's status: icon and text
    shot(page, "repository-commits")

    # The seed commit, its diff, and through to the run it started.
    seed.get_by_role("link", name="Seed the demo project").click()
    expect(page).to_have_url(re.compile(re.escape(live.url + PROJECT) + r"/-/commit/[0-9a-f]{40}$"))
    expect(page.locator(".diff-file")).to_have_count(2)
    expect(page.locator(".diff-file").first).to_contain_text("added")
    expect(page.locator(".diff-line--add").first).to_be_visible()
    shot(page, "repository-commit")
    page.locator(".run-links").get_by_role("link", name=re.compile(r"^Pipeline #\d+$")).first.click()
    expect(page).to_have_url(re.compile(re.escape(live.url + PROJECT) + r"/-/pipelines/\d+$"))
    expect(page.locator("h1")).to_contain_text("Pipeline #")

    # The pushed commit: its HTML message and file name are text, nothing ran.
    page.goto(f"{live.url}{PROJECT}/-/commit/{notes}")
    expect(page.locator(".commit-card__subject")).to_have_text(HTML_MESSAGE)
    expect(page.locator(".diff-files")).to_contain_text(XSS_NAME)
    assert page.locator("img").count() == 0 and page.locator(".commit-card b").count() == 0
    assert alerts == []
    context.close()


def test_repository_pages_at_phone_width(live, browser, signed_in, notes):
    page = browser.new_page(viewport={"width": 375, "height": 812})
    sign_in(page, live, signed_in)
    expect(page).to_have_url(live.url + "/")
    page.goto(live.url + PROJECT + "/-/repository")
    expect(page.locator(".file-table")).to_be_visible()
    shot(page, "repository-home")
    page.goto(live.url + PROJECT + "/-/blob/main/.prts/pipeline.yaml")
    expect(page.locator(".code-view")).to_be_visible()
    shot(page, "repository-file")
    page.goto(live.url + PROJECT + "/-/commits/main")
    expect(page.locator(".commit-row")).to_have_count(2)
    shot(page, "repository-commits")
    page.locator(".commit-row").nth(1).get_by_role("link", name="Seed the demo project").click()
    expect(page.locator(".diff-file")).to_have_count(2)
    shot(page, "repository-commit")
    page.goto(live.url + PROJECT + "/-/branches")
    expect(page.locator(".ref-row")).to_have_count(2)
    shot(page, "repository-branches")
    page.goto(live.url + PROJECT)
    expect(page.get_by_label("Clone with HTTPS")).to_be_visible()
    shot(page, "project-overview")
    page.emulate_media(color_scheme="dark")
    page.goto(live.url + PROJECT + "/-/blob/main/.prts/pipeline.yaml")
    shot(page, "repository-file-dark")
    page.close()
