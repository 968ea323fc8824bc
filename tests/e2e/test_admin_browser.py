"""Administration through Chromium against a live ``prts up``: the admin invites a user
(the one-time password is shown once), makes a team in the demo organisation, adds the user
to it and grants the team Developer on the demo project; the user's page and the project's
Members tab show the result. Screenshots of every admin page at 375 px and 1440 px go to
test-artifacts/screenshots/."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from browsing import browser, shot  # noqa: F401 (browser is a fixture)
from live import LiveAppliance
from test_pipeline_browser import sign_in, signed_in  # noqa: F401 (signed_in is a fixture)

pytestmark = pytest.mark.e2e

ORG, PROJECT = "demo", "hello-prts"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    appliance = LiveAppliance(tmp_path_factory.mktemp("e2e-admin") / "data").start()
    yield appliance
    appliance.stop()


def test_an_admin_makes_a_team_adds_a_user_and_grants_it_developer(live, browser, signed_in):
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    sign_in(page, live, signed_in)
    expect(page).to_have_url(live.url + "/")

    page.get_by_role("link", name="Admin", exact=True).click()
    expect(page).to_have_url(live.url + "/admin/users")
    invite = page.locator("#invite-form")
    invite.get_by_label("Username").fill("dana")
    invite.get_by_label("Email", exact=True).fill("dana@example.test")
    invite.get_by_role("button", name="Invite").click()
    password = page.locator("#one-time-password").inner_text().strip()
    assert len(password) >= 16
    shot(page, "admin-users-invited")

    page.get_by_role("navigation", name="Administration").get_by_role("link", name="Organisations").click()
    page.locator(f'[data-organisation="{ORG}"]').get_by_role("link", name=ORG).click()
    expect(page).to_have_url(f"{live.url}/admin/organisations/{ORG}")
    page.get_by_label("Team name", exact=True).fill("devs")
    page.get_by_role("button", name="Create team").click()
    expect(page).to_have_url(f"{live.url}/admin/organisations/{ORG}/teams/devs")
    page.get_by_label("Username").fill("dana")
    page.get_by_role("button", name="Add member").click()
    expect(page.locator('[data-member="dana"]')).to_be_visible()
    shot(page, "admin-team")

    page.goto(f"{live.url}/admin/organisations/{ORG}")
    form = page.locator("#grant-form")
    form.get_by_label("Grant to").select_option("team")
    form.get_by_label("User or team name").fill("devs")
    form.get_by_label("On", exact=True).select_option(label=f"the project {PROJECT}")
    form.get_by_label("Role", exact=True).select_option("developer")
    form.get_by_role("button", name="Grant").click()
    expect(page.locator(".flash")).to_contain_text(f"Team devs is developer on {ORG}/{PROJECT}")
    row = page.locator("tr[data-grant]", has_text="devs")
    expect(row).to_contain_text(f"{ORG}/{PROJECT}")
    expect(row.get_by_label(f"Role of team devs on {ORG}/{PROJECT}")).to_have_value("developer")
    shot(page, "admin-organisation")

    page.goto(f"{live.url}/admin/users/dana")
    expect(page.locator("main")).to_contain_text(f"{ORG}/devs")
    shot(page, "admin-user")
    page.goto(f"{live.url}/{ORG}/{PROJECT}/-/settings/members")
    expect(page.locator("tr[data-grant]", has_text="devs")).to_be_visible()
    shot(page, "project-members")

    # The same pages at phone width.
    page.set_viewport_size({"width": 375, "height": 800})
    for path, name in (("/admin/users", "admin-users"), ("/admin/organisations", "admin-organisations"),
                       (f"/admin/organisations/{ORG}", "admin-organisation"),
                       (f"/admin/organisations/{ORG}/teams/devs", "admin-team"), ("/admin/users/dana", "admin-user"),
                       (f"/{ORG}/{PROJECT}/-/settings/members", "project-members")):
        page.goto(live.url + path)
        shot(page, name)
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(live.url + "/admin/organisations")
    shot(page, "admin-organisations")
    page.close()

    # dana signs in with the one-time password and must replace it first.
    other = browser.new_page(viewport={"width": 1440, "height": 900})
    other.goto(live.url + "/login")
    other.get_by_label("Username").fill("dana")
    other.get_by_label("Password").fill(password)
    other.get_by_role("button", name="Sign in").click()
    expect(other).to_have_url(live.url + "/user/password")
    other.close()
