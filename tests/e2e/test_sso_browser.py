"""Single sign-on in headless Chromium: the "Sign in with …" buttons under the password
form, a refusal at the provider shown on the sign-in page, and a whole OpenID Connect
sign-in. The provider is the test peer of tests/oidc_peer.py (a test peer on loopback, not
a real provider). Screenshots at 375 px and 1440 px go to test-artifacts/screenshots/."""

import pytest
from playwright.sync_api import expect

from browsing import browser, shot  # noqa: F401 (browser is a fixture)
from live import LiveAppliance
from oidc_peer import ProviderPeer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def peer():
    with ProviderPeer() as p:
        yield p


@pytest.fixture(scope="module")
def live(tmp_path_factory, peer):
    appliance = LiveAppliance(
        tmp_path_factory.mktemp("e2e-sso") / "data",
        PRTS_AUTH_OIDC_ISSUER=peer.url, PRTS_AUTH_OIDC_CLIENT_ID=peer.client_id,
        PRTS_AUTH_OIDC_CLIENT_SECRET=peer.client_secret, PRTS_AUTH_OIDC_NAME="Acme SSO",
        PRTS_AUTH_GITHUB_CLIENT_ID=peer.client_id, PRTS_AUTH_GITHUB_CLIENT_SECRET=peer.client_secret,
        PRTS_AUTH_GITHUB_WEB_URL=peer.url, PRTS_AUTH_GITHUB_API_URL=peer.url,
    ).start()
    yield appliance
    appliance.stop()


@pytest.mark.parametrize("width", [375, 1440])
def test_sign_in_with_the_provider(live, peer, browser, width):
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.goto(live.url + "/login")
    expect(page.get_by_role("link", name="Sign in with Acme SSO")).to_be_visible()
    expect(page.get_by_role("link", name="Sign in with GitHub")).to_be_visible()
    shot(page, "login-sso")

    peer.deny = True
    page.get_by_role("link", name="Sign in with Acme SSO").click()
    expect(page).to_have_url(live.url + "/login")
    expect(page.get_by_role("status")).to_contain_text("Acme SSO did not sign you in (access_denied)")
    shot(page, "login-sso-refused")

    peer.deny = False
    page.get_by_role("link", name="Sign in with Acme SSO").click()
    expect(page).to_have_url(live.url + "/")
    expect(page.get_by_text("alice").first).to_be_visible()
    page.context.clear_cookies()
    page.close()
