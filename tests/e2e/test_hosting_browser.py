"""Git hosting through Chromium against a live ``prts up``: make an API token on its page,
push a branch over HTTP with it using the git CLI, open a merge request for it through the
form, and protect a branch pattern in the repository settings; the settings tabs
(repository, mirroring, webhooks, pipelines) all open. Screenshots at 375 px and 1440 px
go to test-artifacts/screenshots/."""

from __future__ import annotations

import tempfile
import urllib.parse
from pathlib import Path

import pytest
from playwright.sync_api import expect

from browsing import browser, shot  # noqa: F401 (browser is a fixture)
from live import LiveAppliance
from pipelinekit import git
from test_pipeline_browser import sign_in, signed_in  # noqa: F401 (signed_in is a fixture)

pytestmark = pytest.mark.e2e

PROJECT = "/demo/hello-prts"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    appliance = LiveAppliance(tmp_path_factory.mktemp("e2e-hosting") / "data").start()
    yield appliance
    appliance.stop()


def push_branch(live: LiveAppliance, token: str, branch: str) -> str:
    host = live.url.removeprefix("http://")
    url = f"http://admin:{urllib.parse.quote(token, safe='')}@{host}{PROJECT}.git"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "w"
        git("clone", "--quiet", url, str(work))
        git("checkout", "--quiet", "-b", branch, cwd=work)
        (work / "src").mkdir()
        (work / "src" / "login.py").write_text("def login():\n    return True\n")
        git("add", "--all", cwd=work)
        git("commit", "--quiet", "-m", "Add a login stub", cwd=work)
        git("push", "--quiet", "origin", branch, cwd=work)
        return git("rev-parse", "HEAD", cwd=work)


def test_token_push_merge_request_and_settings(live, browser, signed_in):
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    sign_in(page, live, signed_in)
    expect(page).to_have_url(live.url + "/")

    # An API token, shown once.
    page.get_by_role("link", name="API tokens").click()
    page.get_by_label("Name").fill("laptop")
    page.get_by_label("Scope").select_option("write")
    page.get_by_role("button", name="Create token").click()
    token = page.locator("#new-token-value").inner_text().strip()
    assert token.startswith("prts_")
    shot(page, "tokens")
    page.goto(live.url + "/user/tokens")
    expect(page.locator("#new-token-value")).to_have_count(0)

    # Push a branch with it, then propose the branch.
    sha = push_branch(live, token, "feature/login")
    page.goto(live.url + PROJECT + "/-/repository")
    page.get_by_role("navigation", name="Project").get_by_role("link", name="Merge requests").click()
    page.get_by_role("link", name="New merge request").click()
    page.get_by_label("Source branch").select_option("feature/login")
    page.get_by_label("Target branch").select_option("main")
    page.get_by_label("Title").fill("Log <b>in</b>")
    page.get_by_role("button", name="Open merge request").click()
    expect(page).to_have_url(live.url + PROJECT + "/-/merge_requests/1")
    expect(page.get_by_role("heading", level=1)).to_have_text("Log <b>in</b>")
    expect(page.locator(".commit-list")).to_contain_text(sha[:8])
    expect(page.locator(".commit-list")).to_contain_text("Add a login stub")
    shot(page, "merge-request")
    page.set_viewport_size({"width": 375, "height": 812})
    shot(page, "merge-request")
    page.set_viewport_size({"width": 1440, "height": 900})

    # Protect release branches; every settings tab opens.
    page.get_by_role("navigation", name="Project").get_by_role("link", name="Settings").click()
    page.get_by_role("navigation", name="Settings").get_by_role("link", name="Repository").click()
    expect(page.locator(".protected-list")).to_contain_text("main")
    page.get_by_label("Branch or pattern").fill("release/*")
    page.get_by_role("button", name="Protect", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("release/* are now protected")
    expect(page.locator(".protected-list")).to_contain_text("release/*")
    shot(page, "settings-repository")
    page.set_viewport_size({"width": 375, "height": 812})
    shot(page, "settings-repository")
    for tab, heading in (("Mirroring", "Mirror"), ("Webhooks", "Webhooks"), ("Pipelines", "Pipeline settings")):
        page.get_by_role("navigation", name="Settings").get_by_role("link", name=tab).click()
        expect(page.get_by_role("navigation", name="Settings").get_by_role("link", name=tab)) \
            .to_have_attribute("aria-current", "page")
        expect(page.get_by_role("heading", level=1)).to_contain_text(heading)
        shot(page, f"settings-{tab.lower()}")
    page.close()
