"""Validation of the names users choose: usernames, organisations, projects, teams."""

from __future__ import annotations

import re

from appliance.errors import ValidationError

# Letters, digits, '.', '_' and '-', starting and ending with a letter or digit: names
# appear in URLs and (later) repository paths, so nothing here may need escaping.
_SLUG = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?$")
# Names that would collide with the appliance's own URL space.
RESERVED = frozenset(
    {"admin", "api", "assets", "dashboard", "explore", "healthz", "hooks", "ide", "login",
     "logout", "metrics", "new", "readyz", "settings", "static", "user", "users"}
)
_RESERVED_SUFFIXES = (".git", ".atom", ".json", ".lock")


def check_slug(field: str, name: str, max_length: int = 100, *, top_level: bool = True) -> str:
    """``top_level`` names (organisations) sit at the root of the URL space and may not take
    the appliance's own route names; project names sit below their organisation, and
    usernames have no URL of their own."""
    name = name.strip()
    if not name:
        raise ValidationError(field, "is required")
    if len(name) > max_length:
        raise ValidationError(field, f"must be at most {max_length} characters")
    if not _SLUG.match(name) or ".." in name:
        raise ValidationError(
            field,
            "may contain only letters, digits, '.', '_' and '-', and must start and end with a letter or digit",
        )
    if top_level and name.lower() in RESERVED:
        raise ValidationError(field, f"{name!r} is reserved")
    if name.lower().endswith(_RESERVED_SUFFIXES):
        raise ValidationError(field, f"must not end with {', '.join(_RESERVED_SUFFIXES)}")
    return name


def check_username(name: str) -> str:
    return check_slug("username", name, max_length=64, top_level=False)


_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


def check_email(email: str | None) -> str | None:
    if email is None or not email.strip():
        return None
    email = email.strip()
    if len(email) > 254 or not _EMAIL.match(email):
        raise ValidationError("email", f"{email!r} is not an email address")
    return email
