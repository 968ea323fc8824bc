"""Local accounts for people who prove who they are elsewhere: a directory (LDAP) or a
single sign-on provider (OIDC, GitHub, GitLab): which providers are configured, what
each one's answer says about the person, and the account it signs in to. No Flask: the
protocol runs in ``webapp/sso.py``.

An ``ExternalIdentity`` row links an account to ``(provider, subject)``, the provider's
stable id for the person. Linking rules:

- a known ``(provider, subject)`` signs in its account, whatever its e-mail has become;
- SSO: otherwise a *verified* e-mail that belongs to an account links that account
  (recorded as ``identity.linked``); an unverified one never links and is not stored;
- LDAP: otherwise the account of the same name must not exist: a local account is never
  taken over by a directory entry that happens to share its name;
- otherwise a new account without a local password is made.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import orm

from appliance import audit
from appliance.accounts import users
from appliance.config import Config, ConfigError
from appliance.errors import ValidationError
from appliance.models import ExternalIdentity, User
from appliance.models.base import utcnow
from appliance.names import check_email, check_username

log = logging.getLogger(__name__)


class SignInRefused(Exception):
    """The provider vouched for the person, but no account may be signed in for them;
    ``reason`` is for the log and the audit trail."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ExternalProfile:
    """What a provider says about the person who signed in there."""

    provider: str  # "ldap", "oidc:<name>", "github", "gitlab"
    subject: str
    username: str  # a hint: preferred_username, login, uid
    email: str | None = None
    email_verified: bool = False
    display_name: str = ""


@dataclass(frozen=True)
class SsoProvider:
    key: str  # in URLs: /login/sso/<key>
    label: str  # on the sign-in button
    identity: str  # ExternalIdentity.provider, and the sign-in method
    client_id: str
    client_secret: str
    base_url: str  # OIDC: the issuer; GitHub: the web URL; GitLab: the instance
    api_url: str = ""  # GitHub's API (api.github.com, or /api/v3 on Enterprise)


def sso_providers(config: Config) -> dict[str, SsoProvider]:
    """The configured single sign-on providers by key; ``ConfigError`` names a bad key."""
    auth = config.auth
    providers = {}
    if auth.oidc.issuer:
        name = auth.oidc.name.strip()
        if not 0 < len(name) <= 40 or not name.isprintable():
            raise ConfigError(f"auth.oidc.name: expected 1 to 40 printable characters, got {auth.oidc.name!r}")
        providers["oidc"] = SsoProvider("oidc", name, f"oidc:{name}", _client_id(auth.oidc, "auth.oidc"),
                                        auth.oidc.client_secret, _url(auth.oidc.issuer, "auth.oidc.issuer"))
    if auth.github.client_id:
        providers["github"] = SsoProvider("github", "GitHub", "github", auth.github.client_id, auth.github.client_secret,
                                          _url(auth.github.web_url, "auth.github.web_url"),
                                          _url(auth.github.api_url, "auth.github.api_url"))
    if auth.gitlab.client_id:
        providers["gitlab"] = SsoProvider("gitlab", "GitLab", "gitlab", auth.gitlab.client_id, auth.gitlab.client_secret,
                                          _url(auth.gitlab.url, "auth.gitlab.url"))
    return providers


def _client_id(section, prefix: str) -> str:
    if not section.client_id:
        raise ConfigError(f"{prefix}.client_id is required when {prefix}.issuer is set")
    return section.client_id


def _url(value: str, key: str) -> str:
    if not value.lower().startswith(("https://", "http://")) or len(value) < 10:
        raise ConfigError(f"{key}: expected an https:// (or http://) URL, got {value!r}")
    return value.rstrip("/")


def oidc_profile(provider: SsoProvider, claims: dict) -> ExternalProfile:
    """From verified ID token claims (merged with the userinfo answer)."""
    return ExternalProfile(
        provider=provider.identity,
        subject=_required(claims, "sub"),
        username=str(claims.get("preferred_username") or claims.get("nickname") or (claims.get("email") or "").split("@")[0]),
        email=_text(claims.get("email")),
        email_verified=claims.get("email_verified") is True,  # absent or "true"-ish strings do not count
        display_name=_text(claims.get("name")) or "",
    )


def github_profile(user: dict, emails: list) -> ExternalProfile:
    """From GitHub's /user and /user/emails: only the primary, verified address counts."""
    primary = next((e for e in emails if isinstance(e, dict) and e.get("primary") is True), None)
    verified = primary is not None and primary.get("verified") is True
    return ExternalProfile(
        provider="github",
        subject=_required(user, "id"),
        username=str(user.get("login") or ""),
        email=_text(primary.get("email")) if primary else None,
        email_verified=verified,
        display_name=_text(user.get("name")) or "",
    )


def gitlab_profile(user: dict) -> ExternalProfile:
    """From GitLab's /api/v4/user: its e-mail counts once the account is confirmed."""
    return ExternalProfile(
        provider="gitlab",
        subject=_required(user, "id"),
        username=str(user.get("username") or ""),
        email=_text(user.get("email")),
        email_verified=bool(user.get("confirmed_at")),
        display_name=_text(user.get("name")) or "",
    )


class ProfileError(ValueError):
    """A provider's answer lacks what identifies the person."""


def _required(data: dict, key: str) -> str:
    value = data.get(key) if isinstance(data, dict) else None
    if value is None or isinstance(value, bool) or str(value).strip() == "" or len(str(value)) > 255:
        raise ProfileError(f"the provider's answer has no usable {key!r}")
    return str(value)


def _text(value) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def sign_in(session: orm.Session, profile: ExternalProfile, *, address: str = "") -> User:
    """The account ``profile`` signs in to, linked or made as the module docstring says."""
    user = _linked_user(session, profile)
    if user is None:
        email = _usable_email(session, profile)
        owner = _find_by_email(session, email) if email else None
        if owner is not None:
            _check_active(owner, profile)
            _link(session, owner, profile, address, detail=f"by verified e-mail {email}")
            user = owner
        else:
            user = _create(session, _free_username(session, profile.username), email, profile, address)
    _refresh_email(session, user, profile)
    user.last_login_at = utcnow()
    return user


def sign_in_directory(session: orm.Session, profile: ExternalProfile, *, address: str = "") -> User:
    """The account a directory entry signs in to: the linked one, else a new one named as
    typed; ``SignInRefused`` when that name belongs to an account the directory does not own."""
    user = _linked_user(session, profile)
    if user is None:
        existing = users.find_user(session, profile.username)
        if existing is not None:
            raise SignInRefused(
                f"directory entry {profile.subject} matches the name of account {existing.username!r}, "
                "which is not linked to the directory"
            )
        email = profile.email if _email_free(session, profile.email) else None
        user = _create(session, check_username(profile.username), email, profile, address)
    _refresh_email(session, user, profile)
    user.last_login_at = utcnow()
    return user


def _linked_user(session: orm.Session, profile: ExternalProfile) -> User | None:
    identity = session.scalar(sa.select(ExternalIdentity).where(
        ExternalIdentity.provider == profile.provider, ExternalIdentity.subject == profile.subject))
    if identity is None:
        return None
    user = session.get(User, identity.user_id)
    _check_active(user, profile)
    identity.last_login_at = utcnow()
    if profile.email_verified or profile.provider == "ldap":
        identity.email = profile.email
    return user


def _find_by_email(session: orm.Session, email: str) -> User | None:
    return session.scalar(sa.select(User).where(sa.func.lower(User.email) == email.lower()))


def _check_active(user: User, profile: ExternalProfile) -> None:
    if not user.is_active or user.disabled_at is not None:
        raise SignInRefused(f"account {user.username!r} is disabled")


def _usable_email(session: orm.Session, profile: ExternalProfile) -> str | None:
    """The profile's e-mail when the provider verified it and it is well formed."""
    if not profile.email or not profile.email_verified:
        return None
    try:
        return check_email(profile.email)
    except ValidationError:
        return None


def _email_free(session: orm.Session, email: str | None) -> bool:
    try:
        email = check_email(email)
    except ValidationError:
        return False
    return email is not None and _find_by_email(session, email) is None


def _refresh_email(session: orm.Session, user: User, profile: ExternalProfile) -> None:
    """Follow the provider's e-mail when it is verified and no other account uses it."""
    email = profile.email if (profile.email_verified or profile.provider == "ldap") else None
    if email and (user.email or "").lower() != email.lower():
        if _email_free(session, email):
            user.email = email
        else:
            log.warning("not copying e-mail from %s: another account uses it", profile.provider,
                        extra={"username": user.username})


def _link(session: orm.Session, user: User, profile: ExternalProfile, address: str, detail: str) -> None:
    session.add(ExternalIdentity(user_id=user.id, provider=profile.provider, subject=profile.subject,
                                 email=profile.email if profile.email_verified else None, last_login_at=utcnow()))
    session.flush()
    audit.record(session, "identity.linked", actor=user, target=f"{profile.provider}:{profile.subject}",
                 address=address, detail=detail)


def _create(session: orm.Session, username: str, email: str | None, profile: ExternalProfile, address: str) -> User:
    user = User(username=username, email=email, password_hash=None, session_token=secrets.token_hex(16))
    session.add(user)
    session.flush()
    audit.record(session, "user.created", actor=user, target=user.username, address=address,
                 detail=f"first sign-in through {profile.provider}")
    _link(session, user, profile, address, detail="new account")
    return user


_NOT_IN_USERNAME = re.compile(r"[^A-Za-z0-9._-]+")


def _free_username(session: orm.Session, hint: str) -> str:
    """A valid username not taken yet, as close to ``hint`` as allowed: ``alice``, ``alice-2``, ..."""
    base = _NOT_IN_USERNAME.sub("-", hint or "").strip("._-")[:56].strip("._-")
    base = re.sub(r"\.{2,}", ".", base)
    try:
        base = check_username(base)
    except ValidationError:
        base = "user"
    for n in range(1, 1000):
        candidate = base if n == 1 else f"{base}-{n}"
        if users.find_user(session, candidate) is None:
            return candidate
    return f"{base}-{secrets.token_hex(4)}"
