"""A person's path through the appliance in headless Chromium (Debian's, driven by Playwright):
sign in with the printed one-time password, replace it, create a project through the htmx
form (first with a mistake), and find it listed. Screenshots at 375 px and 1440 px wide go
to test-artifacts/screenshots/."""


import pytest
from playwright.sync_api import expect

from browsing import browser, shot  # noqa: F401 (browser is a fixture)
from live import LiveAppliance

pytestmark = pytest.mark.e2e

NEW_PASSWORD = "a good long passphrase"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    appliance = LiveAppliance(tmp_path_factory.mktemp("e2e") / "data").start()
    yield appliance
    appliance.stop()


def test_sign_in_change_password_create_project(live, browser):
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.goto(live.url + "/")
    expect(page).to_have_url(live.url + "/login?next=%2F")
    shot(page, "login")

    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Invalid username or password.")

    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(live.admin_password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(live.url + "/user/password")
    shot(page, "change-password")
    page.get_by_label("Current password").fill(live.admin_password)
    page.get_by_label("New password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    expect(page).to_have_url(live.url + "/")
    expect(page.locator("#project-list")).to_contain_text("hello-prts")
    shot(page, "dashboard")

    page.get_by_role("link", name="New project").click()
    page.evaluate("window.__sameDocument = true")  # survives only if htmx swaps without a reload
    page.get_by_label("Project name").fill("bad name!")
    page.get_by_role("button", name="Create project").click()
    expect(page.locator("#name-error")).to_contain_text("Project name may contain only")
    expect(page.get_by_label("Project name")).to_have_attribute("aria-invalid", "true")
    assert page.evaluate("window.__sameDocument") is True
    shot(page, "new-project-error")

    page.get_by_label("Project name").fill("hello-prts")
    page.get_by_role("button", name="Create project").click()
    expect(page.locator("#name-error")).to_contain_text("demo/hello-prts already exists")

    page.get_by_label("Project name").fill("web-shop")
    page.get_by_label("Description").fill("Shop <script>alert(1)</script>")
    page.get_by_role("button", name="Create project").click()
    expect(page).to_have_url(live.url + "/demo/web-shop")
    expect(page.get_by_role("status")).to_contain_text("Project demo/web-shop was created.")
    shot(page, "project")

    page.get_by_role("link", name="Projects").first.click()
    expect(page.locator("#project-list")).to_contain_text("web-shop")
    expect(page.locator("#project-list")).to_contain_text("Shop <script>alert(1)</script>")  # shown as text
    page.close()


def test_pages_at_phone_width(live, browser):
    page = browser.new_page(viewport={"width": 375, "height": 812})
    page.goto(live.url + "/login")
    shot(page, "login")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#project-list")).to_contain_text("web-shop")
    shot(page, "dashboard")
    page.emulate_media(color_scheme="dark")
    page.goto(live.url + "/demo/web-shop")
    shot(page, "project-dark")
    page.goto(live.url + "/projects/new")
    page.get_by_label("Project name").fill("-bad")
    page.get_by_role("button", name="Create project").click()
    expect(page.locator("#name-error")).to_be_visible()
    shot(page, "new-project-error")
    page.close()
