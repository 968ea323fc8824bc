"""Password sign-in across identity sources: the local account first, then the directory.

A name whose account has a local password is checked locally, and only locally: the
directory is never asked to vouch for a local account. Otherwise, when LDAP is configured
(``auth.ldap.url``), the directory decides (``appliance.accounts.ldap``); the local account
it maps to is made on the first sign-in, and its e-mail, teams and grants follow the
directory at each one (``appliance.accounts.external``, ``directory_groups``).

``DirectoryError`` (from ``appliance.accounts.ldap``) escapes when the directory cannot
decide, so the caller can say so instead of "wrong password".
"""

from __future__ import annotations

import logging

from sqlalchemy import orm

from appliance import audit
from appliance.accounts import directory_groups, external, ldap, users
from appliance.config import Config
from appliance.models import User

log = logging.getLogger(__name__)


def authenticate_password(
    config: Config, session: orm.Session, username: str, password: str, *, address: str = ""
) -> tuple[User | None, str]:
    """The active user these credentials prove, and the method that proved them
    ("password" for a local account, "ldap" for the directory), or ``(None, "")``."""
    settings = ldap.LdapSettings.from_config(config)
    account = users.find_user(session, username) if username and settings is not None else None
    if settings is None or (account is not None and account.password_hash):
        user = users.authenticate(session, username, password)
        return (user, "password") if user is not None else (None, "")
    entry = ldap.authenticate(settings, username, password)
    if entry is None:
        return None, ""
    profile = external.ExternalProfile(provider="ldap", subject=entry.subject, username=username,
                                       email=entry.email, email_verified=True, display_name=entry.display_name)
    try:
        user = external.sign_in_directory(session, profile, address=address)
    except external.SignInRefused as refused:
        log.warning("directory sign-in refused: %s", refused.reason, extra={"username": username})
        audit.record(session, "login.failed", actor=username, target=f"ldap:{entry.dn}", address=address,
                     outcome="failure", detail=refused.reason)
        return None, ""
    directory_groups.sync(session, user, entry.groups, settings.group_rules, address=address)
    return user, "ldap"
