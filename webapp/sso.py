"""Single sign-on: OpenID Connect, GitHub and GitLab OAuth through authlib, and what the
sign-in page shows when the directory behind password sign-in is down.

``/login/sso/<provider>`` starts the authorization-code flow (PKCE S256 where the provider
takes it; state and, for OIDC, a nonce kept in the signed session cookie);
``/login/sso/<provider>/callback`` finishes it: authlib checks the state and, for OIDC,
the ID token's signature (JWKS), issuer, audience, expiry and nonce. Which account the
person gets is decided in ``appliance.accounts.external``. Every failure lands on the
sign-in page with a message and a ``login.failed`` audit event, never a 500.
"""

from __future__ import annotations

import logging

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.flask_client import OAuth
from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, session, url_for
from joserfc.errors import JoseError

from appliance import audit
from appliance.accounts import external, ldap
from webapp.auth import _safe_next, complete_login
from webapp.forms import LoginForm

bp = Blueprint("sso", __name__, url_prefix="/login")
log = logging.getLogger(__name__)

NEXT_KEY = "prts_sso_next"
TIMEOUT = 10  # seconds for each request to a provider
_SCOPES = {"oidc": "openid email profile", "github": "read:user user:email", "gitlab": "read_user"}


def _appliance():
    return current_app.extensions["prts"]


@bp.record_once
def _check_configuration(state) -> None:
    """A bad directory or provider setting stops the app at start, naming the key."""
    config = state.app.extensions["prts"].config
    ldap.LdapSettings.from_config(config)
    state.app.extensions["prts_sso"] = _register(state.app, external.sso_providers(config))


def _register(app, providers: dict[str, external.SsoProvider]) -> tuple[dict, OAuth]:
    oauth = OAuth(app)
    for key, provider in providers.items():
        common = dict(client_id=provider.client_id, client_secret=provider.client_secret)
        client_kwargs = {"scope": _SCOPES[key], "code_challenge_method": "S256", "default_timeout": TIMEOUT}
        if key == "oidc":
            oauth.register(key, server_metadata_url=f"{provider.base_url}/.well-known/openid-configuration",
                           client_kwargs=client_kwargs, **common)
        elif key == "github":
            oauth.register(key, authorize_url=f"{provider.base_url}/login/oauth/authorize",
                           access_token_url=f"{provider.base_url}/login/oauth/access_token",
                           api_base_url=f"{provider.api_url}/", client_kwargs=client_kwargs, **common)
        else:
            oauth.register(key, authorize_url=f"{provider.base_url}/oauth/authorize",
                           access_token_url=f"{provider.base_url}/oauth/token",
                           api_base_url=f"{provider.base_url}/api/v4/", client_kwargs=client_kwargs, **common)
    return providers, oauth


def _provider(key: str):
    providers, oauth = current_app.extensions["prts_sso"]
    if key not in providers:
        abort(404)
    return providers[key], oauth.create_client(key)


@bp.app_context_processor
def _sign_in_buttons() -> dict:
    providers, _ = current_app.extensions.get("prts_sso", ({}, None))
    return {"sso_providers": list(providers.values())}


@bp.route("/sso/<provider>")
def start(provider: str):
    settings, client = _provider(provider)
    target = _safe_next(request.args.get("next")) or ""
    session[NEXT_KEY] = target if target.isprintable() else ""  # no control characters into a Location header
    try:
        if provider == "oidc":
            _check_issuer(settings, client)
        return client.authorize_redirect(_callback_url(provider))
    except (AuthlibBaseError, JoseError, requests.RequestException, ValueError, RuntimeError) as exc:
        return _fail(settings, f"{settings.label} could not be reached. Try again later.", exc)


def _callback_url(provider: str) -> str:
    public = _appliance().config.web.public_url.rstrip("/")
    path = url_for("sso.callback", provider=provider)
    return f"{public}{path}" if public else url_for("sso.callback", provider=provider, _external=True)


def _check_issuer(settings: external.SsoProvider, client) -> str:
    """The discovery document must be the configured issuer's own (OIDC Discovery §4.3)."""
    issuer = client.load_server_metadata().get("issuer")
    if not isinstance(issuer, str) or issuer.rstrip("/") != settings.base_url:
        raise ValueError(f"discovery names issuer {issuer!r}, not {settings.base_url!r}")
    return issuer


@bp.route("/sso/<provider>/callback")
def callback(provider: str):
    settings, client = _provider(provider)
    if request.args.get("error"):
        error = _printable(request.args.get("error", ""))[:100]
        return _fail(settings, f"{settings.label} did not sign you in ({error}).",
                     f"provider answered {error}: {request.args.get('error_description', '')[:300]}")
    try:
        profile = _profile(provider, settings, client)
    except (AuthlibBaseError, JoseError) as exc:
        return _fail(settings, f"The answer from {settings.label} could not be verified. Try signing in again.", exc)
    except (requests.RequestException, ValueError, RuntimeError) as exc:
        return _fail(settings, f"{settings.label} could not be reached or sent an unusable answer. Try again later.", exc)
    address = request.remote_addr or ""
    try:
        with _appliance().db.session() as s:
            user = external.sign_in(s, profile, address=address)
    except external.SignInRefused as refused:
        return _fail(settings, "This account cannot sign in. Ask your administrator.", refused.reason)
    return complete_login(user, method=settings.identity, next_url=session.pop(NEXT_KEY, None))


def _profile(provider: str, settings: external.SsoProvider, client) -> external.ExternalProfile:
    if provider == "oidc":
        issuer = _check_issuer(settings, client)
        token = client.authorize_access_token(claims_options={"iss": {"essential": True, "value": issuer}})
        claims = token.get("userinfo")
        if not claims:  # authlib verifies an ID token only when there is one: there must be
            raise external.ProfileError("the token answer has no ID token")
        claims = dict(claims)
        if "email" not in claims and client.load_server_metadata().get("userinfo_endpoint"):
            info = dict(client.userinfo(token=token))
            if info.get("sub") != claims.get("sub"):
                raise external.ProfileError("userinfo is about another subject than the ID token")
            claims = info | claims
        return external.oidc_profile(settings, claims)
    token = client.authorize_access_token()
    if provider == "github":
        user = _get_json(client, "user", token)
        return external.github_profile(user, _get_json(client, "user/emails", token))
    return external.gitlab_profile(_get_json(client, "user", token))


def _get_json(client, path: str, token: dict):
    response = client.get(path, token=token, headers={"Accept": "application/json"})
    response.raise_for_status()
    return response.json()


def _fail(settings: external.SsoProvider, message: str, detail) -> object:
    """Back to the sign-in page with ``message``; the detail goes to the log and the audit trail."""
    detail = _printable(f"{type(detail).__name__}: {detail}" if isinstance(detail, Exception) else str(detail))
    log.warning("single sign-on failed: %s", detail, extra={"provider": settings.identity})
    with _appliance().db.session() as s:
        audit.record(s, "login.failed", actor=settings.identity, target=settings.identity,
                     address=request.remote_addr or "", outcome="failure", detail=detail[:1000])
    session.pop(NEXT_KEY, None)
    flash(message, "error")
    return redirect(url_for("auth.login"))


def _printable(text: str) -> str:
    """Text from the request or a provider, fit for the log and the audit trail: control
    characters (NUL, which PostgreSQL refuses in text, newlines that forge log lines) become '?'."""
    return "".join(c if c.isprintable() else "?" for c in text)


@bp.app_errorhandler(ldap.DirectoryError)
def directory_error(exc: ldap.DirectoryError):
    """The directory could not decide a password sign-in: say so, instead of "wrong password"."""
    username = _printable(request.form.get("username") or "")[:255]
    log.error("directory sign-in failed: %s", exc.detail, extra={"username": username})
    with _appliance().db.session() as s:
        audit.record(s, "login.failed", actor=username, target="ldap", address=request.remote_addr or "",
                     outcome="failure", detail=exc.detail[:1000])
    if request.endpoint == "auth.login":
        return render_template("auth/login.html", form=LoginForm(), error=exc.message), 503
    flash(exc.message, "error")
    return redirect(request.full_path if request.method == "GET" else request.path)
