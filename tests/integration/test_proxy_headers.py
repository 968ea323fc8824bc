"""Which client address the appliance believes behind a reverse proxy (`web.proxy_hops`).

The per-address sign-in limit and the audit trail key on the client's address: with no
trusted proxy a forged X-Forwarded-For must change nothing, and behind one trusted proxy
(the NixOS module's nginx) only the entry that proxy appended counts."""

from __future__ import annotations

from conftest import AuthActions, audit_events, web_app_for


def _failed_sign_in_address(appliance, hops: int, forwarded_for: str) -> str:
    app = web_app_for(appliance, appliance.config.with_overrides(web__proxy_hops=hops))
    client = app.test_client()
    client.environ_base["HTTP_X_FORWARDED_FOR"] = forwarded_for
    AuthActions(client).login("root", "not the password at all")
    return audit_events(appliance, "login.failed")[-1].address


def test_without_a_trusted_proxy_a_forged_forwarded_header_is_ignored(appliance, admin):
    assert _failed_sign_in_address(appliance, 0, "203.0.113.9") == "127.0.0.1"


def test_behind_one_trusted_proxy_the_address_it_appended_is_the_client(appliance, admin):
    assert _failed_sign_in_address(appliance, 1, "203.0.113.9") == "203.0.113.9"


def test_a_client_cannot_prepend_an_address_past_the_trusted_proxy(appliance, admin):
    # The client sent "198.51.100.7"; the proxy appended the address it saw.
    assert _failed_sign_in_address(appliance, 1, "198.51.100.7, 203.0.113.9") == "203.0.113.9"
