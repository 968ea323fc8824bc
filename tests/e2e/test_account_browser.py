"""The account security page through Chromium against a live ``prts up``: turn on
two-factor authentication (the code computed with pyotp from the key the page shows), sign
out, sign in with password and code, see a second browser in the sessions list and sign it
out. Screenshots at 375 px and 1440 px go to test-artifacts/screenshots/."""

from __future__ import annotations

import time

import pyotp
import pytest
from playwright.sync_api import expect

from browsing import browser, shot  # noqa: F401 (browser is a fixture)
from live import LiveAppliance
from test_pipeline_browser import sign_in, signed_in  # noqa: F401 (signed_in is a fixture)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    appliance = LiveAppliance(tmp_path_factory.mktemp("e2e-account") / "data").start()
    yield appliance
    appliance.stop()


def test_enrol_totp_sign_in_with_it_and_sign_out_another_browser(live, browser, signed_in):
    # A second browser, a phone, signs in first (each code is accepted once, so the test
    # needs no more codes than the 30-second steps around now can give).
    other = browser.new_context(user_agent="Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
                                viewport={"width": 375, "height": 800})
    phone = other.new_page()
    sign_in(phone, live, signed_in)
    expect(phone).to_have_url(live.url + "/")

    page = browser.new_page(viewport={"width": 1440, "height": 900})
    sign_in(page, live, signed_in)
    expect(page).to_have_url(live.url + "/")

    # The name in the top bar leads to the security page.
    page.get_by_role("link", name="Signed in as admin").click()
    expect(page).to_have_url(live.url + "/user/security")
    expect(page.get_by_role("heading", name="Two-factor authentication")).to_be_visible()
    page.get_by_role("button", name="Set up two-factor authentication").click()
    expect(page).to_have_url(live.url + "/user/totp/setup")
    secret = page.locator("#totp-secret").inner_text().strip()
    shot(page, "totp-setup")

    page.get_by_role("textbox", name="Code").fill("000000" if pyotp.TOTP(secret).now() != "000000" else "111111")
    page.get_by_role("button", name="Turn on two-factor authentication").click()
    expect(page.locator("#code-error")).to_contain_text("is not the code your authenticator app shows")
    page.get_by_role("textbox", name="Code").fill(pyotp.TOTP(secret).now())
    used = time.time()
    page.get_by_role("button", name="Turn on two-factor authentication").click()
    expect(page).to_have_url(live.url + "/user/security")
    expect(page.locator("#two-factor")).to_contain_text("On")

    # Sign out, then in: the password alone is not enough any more.
    page.get_by_role("button", name="Sign out").first.click()
    sign_in(page, live, signed_in)
    expect(page).to_have_url(live.url + "/login/code")
    shot(page, "login-code")
    page.get_by_role("textbox", name="Code").fill(pyotp.TOTP(secret).at(used + 30))  # the next step: each is used once
    page.get_by_role("button", name="Verify and sign in").click()
    expect(page).to_have_url(live.url + "/")

    # The first browser sees the second and signs it out.
    phone.goto(live.url + "/user/security")
    expect(phone.locator("#two-factor")).to_contain_text("On")
    shot(phone, "account-security")

    page.goto(live.url + "/user/security")
    rows = page.locator(".sessions-table tbody tr")
    expect(rows).to_have_count(3)  # this one, the phone, and the one that replaced the one-time password
    expect(page.locator(".sessions-table")).to_contain_text("Firefox on Linux")
    shot(page, "account-security")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Sign out everywhere else").click()
    expect(page.locator("#flashes")).to_contain_text("Signed out 2 other sessions.")
    expect(rows).to_have_count(1)
    phone.reload()
    expect(phone).to_have_url(live.url + "/login?next=%2Fuser%2Fsecurity")
    other.close()
    page.close()
