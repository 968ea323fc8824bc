"""The SSRF guard (``appliance.hosting.netguard``): which addresses are refused and why,
the allow-list, and what ``check_url`` accepts.

Names are resolved for real with ``getaddrinfo``; the tests only use spellings the C
resolver turns into addresses without asking a DNS server (numeric forms, ``localhost``).
"""

from __future__ import annotations

import pytest

from appliance.hosting import netguard
from appliance.hosting.netguard import Allowlist, BlockedAddress
from conftest import make_config

NOBODY = Allowlist.parse("")


@pytest.mark.parametrize("ip,reason", [
    ("127.0.0.1", "loopback"),
    ("127.255.0.9", "loopback"),
    ("10.0.0.1", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "cloud metadata"),
    ("169.254.1.1", "link-local"),
    ("100.64.0.1", "shared"),
    ("100.127.255.254", "shared"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "this network"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "broadcast"),
    ("198.18.0.1", "benchmarking"),
    ("192.0.2.1", "documentation"),
    ("192.0.0.8", "reserved"),
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("fc00::1", "unique local"),
    ("fd12:3456:789a::1", "unique local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("2001:db8::1", "documentation"),
    ("2001:2::1", "benchmarking"),
    ("100::1", "discard"),
    ("64:ff9b:1::1", "NAT64"),
    # IPv6 forms that carry an IPv4 address: judged by the address inside.
    ("::ffff:127.0.0.1", "IPv4-mapped IPv6 address carrying 127.0.0.1, a loopback"),
    ("::ffff:169.254.169.254", "carrying 169.254.169.254, the cloud metadata"),
    ("::ffff:10.1.2.3", "carrying 10.1.2.3, a private"),
    ("64:ff9b::7f00:1", "NAT64 address carrying 127.0.0.1, a loopback"),
    ("64:ff9b::a9fe:a9fe", "carrying 169.254.169.254"),
    ("2002:7f00:1::1", "6to4 address carrying 127.0.0.1"),
    ("2002:c0a8:101::", "6to4 address carrying 192.168.1.1, a private"),
    # Teredo: server 65.54.227.120 (public), client 127.0.0.1 stored inverted.
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo address carrying 127.0.0.1"),
    ("::7f00:1", "IPv4-compatible"),
    ("::808:808", "IPv4-compatible"),
    ("4000::1", "reserved"),
])
def test_non_public_addresses_are_forbidden_with_their_reason(ip, reason):
    assert reason in netguard.is_forbidden(ip)


@pytest.mark.parametrize("ip", [
    "1.1.1.1", "8.8.8.8", "93.184.216.34", "172.32.0.1", "100.128.0.1", "169.255.0.1",
    "2606:4700:4700::1111", "2a00:1450:4001:82a::200e",
    "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1",
])
def test_public_addresses_are_not_forbidden(ip):
    assert netguard.is_forbidden(ip) == ""


@pytest.mark.parametrize("url,address,reason", [
    ("http://127.1/", "127.0.0.1", "loopback"),
    ("http://0x7f000001/", "127.0.0.1", "loopback"),
    ("http://2130706433/", "127.0.0.1", "loopback"),
    ("http://017700000001/", "127.0.0.1", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1", "loopback"),
    ("http://[::1]/", "::1", "loopback"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254", "cloud metadata"),
    ("http://10.0.0.1/", "10.0.0.1", "private"),
    ("http://0.0.0.0/", "0.0.0.0", "unspecified"),
    ("http://0/", "0.0.0.0", "unspecified"),
    ("http://localhost/", "127.0.0.1", "loopback"),
    ("http://LOCALHOST.:8080/x", "127.0.0.1", "loopback"),
    ("https://192.168.0.1:8443/hook", "192.168.0.1", "private"),
])
def test_check_url_refuses_every_spelling_of_a_non_public_address(url, address, reason):
    with pytest.raises(BlockedAddress) as info:
        netguard.check_url(url, NOBODY)
    blocked = info.value
    assert blocked.address == address
    assert reason in blocked.reason
    message = str(blocked)
    assert address in message and reason in message and "webhooks.allowed_hosts" in message


def test_the_message_names_the_host_the_address_and_why():
    with pytest.raises(BlockedAddress) as info:
        netguard.check_url("http://127.0.0.1/", NOBODY)
    assert str(info.value) == ("127.0.0.1 is a loopback address; an admin can allow it with "
                               "webhooks.allowed_hosts")
    with pytest.raises(BlockedAddress) as info:
        netguard.check_url("http://2130706433/", NOBODY)
    assert str(info.value).startswith("2130706433 resolves to 127.0.0.1, a loopback address;")
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("url,words", [
    ("ftp://example.com/", "must start with http://, https://"),
    ("file:///etc/passwd", "must start with"),
    ("gopher://127.0.0.1:70/", "must start with"),
    ("http:/example.com/", "must start with"),
    ("//example.com/", "must start with"),
    ("http://user:pw@1.1.1.1/", "user name or password"),
    ("http://1.1.1.1@127.0.0.1/", "user name or password"),
    ("http:///path", "names no host"),
    ("http://./", "names no host"),
    ("http://1.1.1.1:99999/", "not a host and optional port"),
    ("http://1.1.1.1:0/", "between 1 and 65535"),
    ("http://exa mple.com/", "spaces or control characters"),
    ("http://1.1.1.1/\n", "spaces or control characters"),
    ("", "empty"),
    ("http://[fe80::1%25eth0]/", "IPv6 zone"),
    ("http://no-such-host.invalid/", "does not resolve"),
])
def test_check_url_refuses_malformed_urls_naming_the_problem(url, words):
    with pytest.raises(ValueError) as info:
        netguard.check_url(url, NOBODY)
    assert not isinstance(info.value, BlockedAddress)
    assert words in str(info.value)


def test_public_url_becomes_a_target_to_connect_to():
    target = netguard.check_url("https://1.1.1.1:8443/hooks/in?x=1&y=2#frag", NOBODY)
    assert target == netguard.Target("https", "1.1.1.1", 8443, "/hooks/in?x=1&y=2", ("1.1.1.1",))
    assert target.address == "1.1.1.1"
    assert target.host_header == "1.1.1.1:8443"
    with pytest.raises(AttributeError):
        target.host = "127.0.0.1"  # frozen: nobody swaps the vetted address after the check
    plain = netguard.check_url("HTTP://1.1.1.1", NOBODY)
    assert (plain.scheme, plain.port, plain.path_and_query, plain.host_header) == ("http", 80, "/", "1.1.1.1")
    v6 = netguard.check_url("http://[2606:4700:4700::1111]:81/", NOBODY)
    assert v6.addresses == ("2606:4700:4700::1111",) and v6.host_header == "[2606:4700:4700::1111]:81"


def test_schemes_can_be_widened_by_the_caller():
    assert netguard.check_url("git://1.1.1.1/repo.git", NOBODY, schemes=("https", "http", "git")).port == 9418
    with pytest.raises(ValueError, match="must start with https://"):
        netguard.check_url("http://1.1.1.1/", NOBODY, schemes=("https",))


def test_allowlist_admits_listed_addresses_networks_and_host_names():
    allow = Allowlist.parse(" 127.0.0.2 , 10.0.0.0/8,fd00::/8, Git.Internal., localhost ")
    assert netguard.check_url("http://127.0.0.2:9000/", allow).addresses == ("127.0.0.2",)
    assert netguard.check_url("http://10.20.30.40/", allow).address == "10.20.30.40"
    assert netguard.check_url("http://[fd00::5]/", allow).address == "fd00::5"
    # An allow-listed IPv4 address is the same address in its IPv4-mapped form.
    assert netguard.check_url("http://[::ffff:127.0.0.2]/", allow).address == "::ffff:127.0.0.2"
    # The name is allowed, whatever it resolves to.
    assert netguard.check_url("http://localhost/", allow).host == "localhost"
    assert allow.allows_host("git.internal") and allow.allows_host("GIT.INTERNAL.")
    # Everything else is still refused.
    for url in ("http://127.0.0.1/", "http://192.168.1.1/", "http://169.254.169.254/", "http://[fc00::1]/"):
        with pytest.raises(BlockedAddress):
            netguard.check_url(url, allow)


def test_allowing_one_address_does_not_allow_its_neighbours():
    allow = Allowlist.parse("127.0.0.2")
    with pytest.raises(BlockedAddress, match="127.0.0.3 is a loopback address"):
        netguard.check_url("http://127.0.0.3/", allow)


@pytest.mark.parametrize("entry", ["http://10.0.0.1", "10.0.0.1:80", "host name", "10.0.0.0/33", "127.1",
                                   "bad_/x", "-dash.example", "a..b", "*.example.com"])
def test_allowlist_refuses_bad_entries_naming_them(entry):
    with pytest.raises(ValueError) as info:
        Allowlist.parse(f"10.0.0.5, {entry}")
    assert repr(entry) in str(info.value)


def test_allowlist_from_config(tmp_path):
    allow = Allowlist.from_config(make_config(tmp_path / "data", webhooks__allowed_hosts="127.0.0.2,git.lan"))
    assert allow.allows_address("127.0.0.2") and allow.allows_host("git.lan")
    assert not allow.allows_address("127.0.0.1")
    empty = Allowlist.from_config(make_config(tmp_path / "data"))
    assert empty == Allowlist.parse("") and not empty.allows_address("127.0.0.1")
