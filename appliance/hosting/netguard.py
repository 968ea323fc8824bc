"""Which outside URLs the appliance may connect to on a user's behalf (the SSRF guard).

Outbound webhooks and mirrors make the appliance open connections to URLs that a
Maintainer typed. From inside its network it can reach what the user cannot: its own
admin ports on loopback, the LAN, the cloud metadata service at 169.254.169.254. So a
URL is only approved when every address its host resolves to is globally routable,
unless an administrator named the host or the address in ``webhooks.allowed_hosts``.

The host is resolved with ``socket.getaddrinfo`` exactly as the connection would resolve
it, so the spellings the C resolver accepts (``127.1``, ``0x7f000001``, ``2130706433``,
``017700000001``) end up as the address they really are. IPv6 forms that carry an IPv4
address (mapped, 6to4, Teredo, NAT64) are judged by the IPv4 address inside them too.

``check_url`` returns the vetted addresses: the caller connects to one of them and never
resolves the name again, so a DNS answer that changes between check and connect (DNS
rebinding) cannot swap the address.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import socket
import urllib.parse

DEFAULT_PORTS = {"http": 80, "https": 443, "git": 9418}
ALLOW_HINT = "an admin can allow it with webhooks.allowed_hosts"
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _nets(*pairs: tuple[str, str]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(net), reason) for net, reason in pairs)


# Most specific first: the first network that contains an address gives its reason.
_V4_FORBIDDEN = _nets(
    ("0.0.0.0/32", "an unspecified address"),
    ("0.0.0.0/8", "a 'this network' address"),
    ("127.0.0.0/8", "a loopback address"),
    ("10.0.0.0/8", "a private address"),
    ("172.16.0.0/12", "a private address"),
    ("192.168.0.0/16", "a private address"),
    ("169.254.169.254/32", "the cloud metadata address (link-local)"),
    ("169.254.0.0/16", "a link-local address"),
    ("100.64.0.0/10", "a shared (carrier-grade NAT) address"),
    ("192.0.0.0/24", "a reserved (IETF protocol assignment) address"),
    ("192.0.2.0/24", "a reserved (documentation) address"),
    ("198.51.100.0/24", "a reserved (documentation) address"),
    ("203.0.113.0/24", "a reserved (documentation) address"),
    ("192.88.99.0/24", "a reserved (6to4 relay anycast) address"),
    ("198.18.0.0/15", "a benchmarking address"),
    ("224.0.0.0/4", "a multicast address"),
    ("255.255.255.255/32", "the broadcast address"),
    ("240.0.0.0/4", "a reserved address"),
)
_V6_FORBIDDEN = _nets(
    ("::/128", "an unspecified address"),
    ("::1/128", "a loopback address"),
    ("64:ff9b:1::/48", "a local-use NAT64 address"),
    ("100::/64", "a discard-only address"),
    ("2001:db8::/32", "a reserved (documentation) address"),
    ("2001:2::/48", "a benchmarking address"),
    ("2001:10::/28", "a reserved (ORCHID) address"),
    ("2001:20::/28", "a reserved (ORCHIDv2) address"),
    ("fc00::/7", "a unique local (private) address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address"),
    ("ff00::/8", "a multicast address"),
)
_V4_COMPATIBLE = ipaddress.ip_network("::/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")


class BlockedAddress(ValueError):
    """A URL's host is, or resolves to, an address the appliance must not connect to."""

    def __init__(self, host: str, address: str, reason: str):
        self.host, self.address, self.reason = host, address, reason
        if host == address:
            text = f"{address} is {reason}; {ALLOW_HINT}"
        else:
            text = f"{host} resolves to {address}, {reason}; {ALLOW_HINT}"
        super().__init__(text)


def _parse_ip(ip: str) -> IPAddress:
    # getaddrinfo gives link-local IPv6 addresses with their zone ("fe80::1%eth0").
    return ipaddress.ip_address(ip.split("%", 1)[0])


def _embedded_v4(ip: ipaddress.IPv6Address) -> tuple[str, list[ipaddress.IPv4Address]]:
    """The kind of IPv4-carrying IPv6 form ``ip`` is and the IPv4 addresses inside it."""
    if ip.ipv4_mapped is not None:
        return "an IPv4-mapped IPv6 address", [ip.ipv4_mapped]
    if ip in _NAT64:
        return "a NAT64 address", [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    if ip.sixtofour is not None:
        return "a 6to4 address", [ip.sixtofour]
    if ip.teredo is not None:
        return "a Teredo address", list(ip.teredo)  # (server, client)
    return "", []


def _reason(ip: IPAddress) -> str:
    if ip.version == 4:
        for net, reason in _V4_FORBIDDEN:
            if ip in net:
                return reason
        return "" if ip.is_global else "an address that is not globally routable"
    for net, reason in _V6_FORBIDDEN:
        if ip in net:
            return reason
    kind, inner = _embedded_v4(ip)
    for v4 in inner:
        reason = _reason(v4)
        if reason:
            return f"{kind} carrying {v4}, {reason}"
    if kind:
        return ""
    if ip in _V4_COMPATIBLE:  # deprecated (RFC 4291); nothing legitimate is reached this way
        return "a deprecated IPv4-compatible IPv6 address"
    if ip not in _GLOBAL_UNICAST:
        return "a reserved address"
    return ""


def is_forbidden(ip: str) -> str:
    """Why the appliance must not connect to ``ip`` ("a loopback address"); "" when it is
    globally routable. ``ip`` is an address as ``getaddrinfo`` returns it."""
    return _reason(_parse_ip(ip))


@dataclasses.dataclass(frozen=True)
class Allowlist:
    """Hosts, addresses and networks an administrator lets the appliance reach although
    they are not public (``webhooks.allowed_hosts``)."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, text: str) -> "Allowlist":
        """From comma-separated entries: host names, IP addresses, CIDR networks."""
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in (text or "").split(","):
            entry = raw.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            name = entry.lower().rstrip(".")
            if "/" in entry or not _HOSTNAME.match(name) or name.replace(".", "").isdigit():
                raise ValueError(f"webhooks.allowed_hosts: {entry!r} is not a host name, IP address or CIDR "
                                 "network (give entries such as 'git.internal', '10.0.0.5' or '10.0.0.0/8', "
                                 "without a scheme or port)")
            hosts.add(name)
        return cls(frozenset(hosts), tuple(networks))

    @classmethod
    def from_config(cls, config) -> "Allowlist":
        return cls.parse(config.webhooks.allowed_hosts)

    def allows_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts

    def allows_address(self, ip: str) -> bool:
        address = _parse_ip(ip)
        candidates = [address]
        if address.version == 6 and address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)
        return any(a in net for a in candidates for net in self.networks if a.version == net.version)


@dataclasses.dataclass(frozen=True)
class Target:
    """A URL that passed ``check_url``: where to connect (one of ``addresses``, never the
    name again) and what to ask for."""

    scheme: str
    host: str
    port: int
    path_and_query: str
    addresses: tuple[str, ...]

    @property
    def address(self) -> str:
        """The vetted address to connect to."""
        return self.addresses[0]

    @property
    def host_header(self) -> str:
        """The ``Host`` header value: the host, with the port when it is not the default."""
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return shown if DEFAULT_PORTS.get(self.scheme) == self.port else f"{shown}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host_header}{self.path_and_query}"


def _resolve(host: str, port: int) -> tuple[str, ...]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ValueError(f"{host} does not resolve: {exc.strerror}") from None
    except UnicodeError:
        raise ValueError(f"{host!r} is not a valid host name") from None
    addresses = tuple(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise ValueError(f"{host} does not resolve to any address")
    return addresses


def check_url(url: str, allowlist: Allowlist, schemes=("http", "https")) -> Target:
    """The ``Target`` to connect to for ``url``; ``ValueError`` naming what is wrong with the
    URL, ``BlockedAddress`` when its host is or resolves to a non-public address that the
    allow-list does not name."""
    if not isinstance(url, str) or not url:
        raise ValueError("the URL is empty")
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise ValueError("the URL must not contain spaces or control characters")
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in schemes or not url.lower().startswith(f"{scheme}://"):
        allowed = ", ".join(f"{s}://" for s in schemes)
        raise ValueError(f"the URL must start with {allowed} (got {url[:20]!r})")
    if "@" in parts.netloc:
        raise ValueError("the URL must not carry a user name or password (userinfo before '@')")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise ValueError(f"{parts.netloc!r} is not a host and optional port") from None
    host = (host or "").rstrip(".")
    if not host:
        raise ValueError("the URL names no host")
    if "%" in host:
        raise ValueError(f"the host {host!r} carries an IPv6 zone or a percent-escape; give a plain host name or address")
    if port is None:
        if scheme not in DEFAULT_PORTS:
            raise ValueError(f"the URL needs a port: {scheme}:// has no default port")
        port = DEFAULT_PORTS[scheme]
    if port == 0:
        raise ValueError("the URL's port must be between 1 and 65535")
    addresses = _resolve(host, port)
    if not allowlist.allows_host(host):
        for ip in addresses:
            if allowlist.allows_address(ip):
                continue
            reason = is_forbidden(ip)
            if reason:
                raise BlockedAddress(host, ip.split("%", 1)[0], reason)
    path_and_query = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(scheme, host, port, path_and_query, addresses)
