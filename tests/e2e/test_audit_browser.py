"""The audit log through Chromium against a live ``prts up``: actions taken in the browser
(signing in, adding a secret variable, starting a pipeline) show on ``/audit``; the filter
form narrows the table in place (htmx) and keeps the filter in the URL; the project's own
log opens from its settings tabs. Screenshots at 375 px and 1440 px go to
test-artifacts/screenshots/."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from browsing import browser, shot  # noqa: F401 (browser is a fixture)
from live import LiveAppliance
from test_pipeline_browser import sign_in, signed_in  # noqa: F401 (signed_in is a fixture)

pytestmark = pytest.mark.e2e

PROJECT = "/demo/hello-prts"
SECRET_VALUE = "a-value-that-must-never-show-up"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    appliance = LiveAppliance(tmp_path_factory.mktemp("e2e-audit") / "data").start()
    yield appliance
    appliance.stop()


def test_actions_show_on_the_audit_log_and_filter_in_place(live, browser, signed_in):
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    sign_in(page, live, signed_in)
    expect(page).to_have_url(live.url + "/")

    page.goto(live.url + PROJECT + "/-/variables")
    page.get_by_label("Name").fill("DEPLOY_TOKEN")
    page.get_by_label("Value").fill(SECRET_VALUE)
    page.get_by_label("Secret").check()
    page.get_by_role("button", name="Add variable").click()
    expect(page.get_by_text("The secret DEPLOY_TOKEN was added.")).to_be_visible()

    page.goto(live.url + "/audit")
    table = page.locator("#audit-results table")
    expect(table).to_contain_text("variable.set")
    expect(table).to_contain_text("demo/hello-prts:DEPLOY_TOKEN")
    expect(table).to_contain_text("login")
    assert SECRET_VALUE not in page.content()

    page.get_by_label("Action starts with").fill("variable.")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(live.url + "/audit?actor=&action=variable.&target=&since=&until=&outcome=")
    rows = page.locator("#audit-results tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("admin")
    shot(page, "audit")

    page.set_viewport_size({"width": 375, "height": 800})
    page.reload()
    expect(rows).to_have_count(1)
    shot(page, "audit")

    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(live.url + PROJECT + "/-/settings/pipelines")
    page.get_by_role("navigation", name="Settings").get_by_role("link", name="Audit log").click()
    expect(page).to_have_url(live.url + PROJECT + "/-/audit")
    expect(page.locator("#audit-results table")).to_contain_text("DEPLOY_TOKEN")
    expect(page.locator("#audit-results table")).not_to_contain_text("login")  # site-wide events stay out
    shot(page, "project-audit")
    page.set_viewport_size({"width": 375, "height": 800})
    page.reload()
    shot(page, "project-audit")
    page.close()
