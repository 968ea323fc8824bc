"""Password sign-in against an LDAP directory (OpenLDAP, Active Directory, ...) with ldap3.

The classic three steps: bind as the service account, search for exactly one entry
matching the name typed, then bind as that entry's DN with the password typed. Only a
bind as the user proves the password; the service account merely finds the DN. The name
is validated as a username and escaped before it goes into a filter, and an empty
password is refused before any bind (many servers treat it as an anonymous bind that
"succeeds").
"""

from __future__ import annotations

import logging
import ssl
import uuid
from dataclasses import dataclass

import ldap3
from ldap3.core import exceptions as ldap_errors
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn

from appliance.accounts.directory_groups import GroupRule, normalise_dn, parse_group_mappings
from appliance.config import Config, ConfigError
from appliance.errors import ValidationError
from appliance.names import check_username

log = logging.getLogger(__name__)

# Attributes read from the user's entry; entryUUID is operational, so it must be asked for.
_USER_ATTRIBUTES = ["entryUUID", "objectGUID", "mail", "displayName", "cn", "memberOf"]


class DirectoryError(Exception):
    """The directory could not answer a sign-in; ``message`` is safe to show the user."""

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.message = message
        self.detail = detail  # for the log and the audit trail, not for the page


class DirectoryUnavailable(DirectoryError):
    """The directory did not answer (down, unreachable, TLS refused)."""


class DirectoryMisconfigured(DirectoryError):
    """The directory answered but refused the service account or the search."""


@dataclass(frozen=True)
class LdapSettings:
    url: str
    starttls: bool
    ca_file: str
    timeout: int
    bind_dn: str
    bind_password: str
    user_base: str
    user_filter: str
    group_base: str
    group_filter: str
    group_rules: tuple[GroupRule, ...]

    @classmethod
    def from_config(cls, config: Config) -> "LdapSettings | None":
        """The directory settings, or None when LDAP is off; ``ConfigError`` names a bad key."""
        section = config.auth.ldap
        if not section.url:
            return None
        if not section.url.lower().startswith(("ldap://", "ldaps://")):
            raise ConfigError(f"auth.ldap.url: expected an ldap:// or ldaps:// URL, got {section.url!r}")
        if section.starttls and section.url.lower().startswith("ldaps://"):
            raise ConfigError("auth.ldap.starttls: StartTLS upgrades ldap://; an ldaps:// URL is already encrypted")
        if not section.user_base:
            raise ConfigError("auth.ldap.user_base is required when auth.ldap.url is set (the DN under which users are searched)")
        for key, value in (("user_base", section.user_base), ("group_base", section.group_base), ("bind_dn", section.bind_dn)):
            if value:
                try:
                    parse_dn(value, strip=True)
                except ldap_errors.LDAPInvalidDnError:
                    raise ConfigError(f"auth.ldap.{key}: {value!r} is not a DN") from None
        if "{username}" not in section.user_filter or not section.user_filter.startswith("("):
            raise ConfigError(f"auth.ldap.user_filter: expected a filter in parentheses containing {{username}}, got {section.user_filter!r}")
        if section.group_base and not section.group_filter.startswith("("):
            raise ConfigError(f"auth.ldap.group_filter: expected a filter in parentheses, got {section.group_filter!r}")
        return cls(
            url=section.url,
            starttls=section.starttls,
            ca_file=section.ca_file,
            timeout=section.timeout,
            bind_dn=section.bind_dn,
            bind_password=section.bind_password,
            user_base=section.user_base,
            user_filter=section.user_filter,
            group_base=section.group_base,
            group_filter=section.group_filter,
            group_rules=parse_group_mappings(section.group_mappings),
        )


@dataclass(frozen=True)
class DirectoryEntry:
    """What the directory says about the person who just proved their password."""

    dn: str
    subject: str  # entryUUID (OpenLDAP) or objectGUID (AD), else the DN
    email: str | None
    display_name: str
    groups: frozenset[str]  # normalised DNs (``normalise_dn``)


def authenticate(settings: LdapSettings, username: str, password: str) -> DirectoryEntry | None:
    """The entry these credentials prove, or None (unknown name, ambiguous, wrong password).
    Raises ``DirectoryUnavailable`` / ``DirectoryMisconfigured`` when the directory cannot decide."""
    try:
        username = check_username(username)
    except ValidationError:
        return None  # nothing a username may not contain ever reaches a filter
    if not password:
        return None
    search = _connect(settings, settings.bind_dn or None, settings.bind_password or None, service=True)
    try:
        found = _search(search, settings.user_base, settings.user_filter.replace("{username}", escape_filter_chars(username)),
                        _USER_ATTRIBUTES, size_limit=2)
        if len(found) != 1:
            log.info("directory sign-in refused: %d entries match", len(found), extra={"username": username})
            return None
        dn, attributes = found[0]
        try:
            _close(_connect(settings, dn, password, service=False))
        except _WrongPassword:
            return None
        groups = {normalise_dn(g) for g in _values(attributes, "memberOf")}
        if settings.group_base:
            group_filter = (settings.group_filter.replace("{dn}", escape_filter_chars(dn))
                            .replace("{username}", escape_filter_chars(username)))
            groups |= {normalise_dn(group_dn) for group_dn, _ in _search(search, settings.group_base, group_filter, [])}
    finally:
        _close(search)
    return DirectoryEntry(
        dn=dn,
        subject=_subject(attributes, dn),
        email=_first(attributes, "mail"),
        display_name=_first(attributes, "displayName") or _first(attributes, "cn") or username,
        groups=frozenset(groups),
    )


class _WrongPassword(Exception):
    pass


def _server(settings: LdapSettings) -> ldap3.Server:
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=settings.ca_file or None, version=ssl.PROTOCOL_TLS_CLIENT)
    return ldap3.Server(settings.url, use_ssl=settings.url.lower().startswith("ldaps://"), tls=tls,
                        connect_timeout=settings.timeout, get_info=ldap3.NONE)


def _connect(settings: LdapSettings, dn: str | None, password: str | None, *, service: bool) -> ldap3.Connection:
    """A bound connection; a refused user bind raises ``_WrongPassword``, a refused service bind
    ``DirectoryMisconfigured``, no answer ``DirectoryUnavailable``."""
    connection = ldap3.Connection(_server(settings), user=dn, password=password, read_only=True,
                                  receive_timeout=settings.timeout, raise_exceptions=False)
    try:
        connection.open()
        if settings.starttls and not connection.start_tls():
            raise DirectoryUnavailable(_UNAVAILABLE, f"StartTLS refused: {connection.result}")
        bound = connection.bind()
    except ldap_errors.LDAPSASLPrepError as exc:
        # The password holds characters SASLprep forbids (NUL, other controls): no directory
        # would accept it, so it is a wrong password, not a directory that is down.
        _close(connection)
        if not service:
            raise _WrongPassword from exc
        raise DirectoryMisconfigured("Sign-in through the directory is not working: the appliance's service "
                                     "account was refused. Tell your administrator.",
                                     f"service bind as {dn or '(anonymous)'}: {exc}") from exc
    except ldap_errors.LDAPException as exc:
        _close(connection)
        raise DirectoryUnavailable(_UNAVAILABLE, f"{settings.url}: {type(exc).__name__}: {exc}") from exc
    if bound:
        return connection
    result = connection.result or {}
    _close(connection)
    if not service:
        raise _WrongPassword
    raise DirectoryMisconfigured(
        "Sign-in through the directory is not working: the appliance's service account was refused. "
        "Tell your administrator.",
        f"service bind as {dn or '(anonymous)'} refused: {result.get('description')} {result.get('message', '')}".strip(),
    )


def _close(connection: ldap3.Connection) -> None:
    try:
        connection.unbind()
    except ldap_errors.LDAPException:
        pass  # already gone: nothing left to release


_UNAVAILABLE = "The directory server could not be reached, so directory accounts cannot sign in right now. Try again later."


def _search(connection: ldap3.Connection, base: str, search_filter: str, attributes: list[str],
            size_limit: int = 0) -> list[tuple[str, dict]]:
    try:
        connection.search(base, search_filter, ldap3.SUBTREE, attributes=attributes, size_limit=size_limit)
    except ldap_errors.LDAPException as exc:
        raise DirectoryUnavailable(_UNAVAILABLE, f"search under {base}: {type(exc).__name__}: {exc}") from exc
    result = connection.result or {}
    # 0 success, 4 sizeLimitExceeded (more entries than asked for: the caller sees them), 32 noSuchObject
    if result.get("result") not in (0, 4, 32):
        raise DirectoryMisconfigured(
            "Sign-in through the directory is not working: the directory refused the search. Tell your administrator.",
            f"search under {base} with {search_filter}: {result.get('description')} {result.get('message', '')}".strip(),
        )
    return [(item["dn"], item.get("attributes", {})) for item in connection.response or [] if item.get("type") == "searchResEntry"]


def _subject(attributes: dict, dn: str) -> str:
    """A stable id that survives renames: entryUUID, else Active Directory's objectGUID, else the DN."""
    guid = attributes.get("objectGUID")
    if isinstance(guid, list):
        guid = guid[0] if guid else None
    if isinstance(guid, bytes) and len(guid) == 16:
        guid = str(uuid.UUID(bytes_le=guid))
    return _first(attributes, "entryUUID") or (str(guid) if guid else None) or dn


def _values(attributes: dict, name: str) -> list[str]:
    value = attributes.get(name)
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


def _first(attributes: dict, name: str) -> str | None:
    values = _values(attributes, name)
    return values[0] if values and values[0] else None
