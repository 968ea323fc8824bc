"""The web app: Flask + htmx over the ``appliance`` core."""

from __future__ import annotations

import logging
import os
import pathlib
import secrets

from flask import Flask, render_template
from werkzeug.middleware.proxy_fix import ProxyFix

from appliance.config import Config, load
from appliance.context import Appliance
from webapp.extensions import csrf, htmx, login_manager


def _secret_key(config: Config) -> str:
    if config.web.secret_key:
        return config.web.secret_key
    # Embedded default: a random key kept in the data directory, made once. O_EXCL makes the
    # first of several workers starting together win; the others read what it wrote.
    path = config.data_path / "secret_key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    key = pathlib.Path(path).read_text().strip()
    if len(key) < 32:
        raise RuntimeError(f"{path} holds no usable key; delete it to have a new one made")
    return key


def create_app(config: Config | None = None) -> Flask:
    config = config or load()
    for warning in config.warnings:
        logging.getLogger("appliance.config").warning(warning)
    app = Flask(__name__)
    appliance = Appliance(config)
    app.extensions["prts"] = appliance
    app.config.update(
        SECRET_KEY=_secret_key(config),
        SESSION_COOKIE_NAME="prts_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.session_cookie_secure,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=config.session_cookie_secure,
        WTF_CSRF_TIME_LIMIT=None,  # tokens live as long as the session that holds them
        MAX_CONTENT_LENGTH=16 * 1024 * 1024,
    )

    if config.web.proxy_hops:
        # Only headers set by the proxies we were told about are believed; a client's own
        # X-Forwarded-For would otherwise dodge the per-address sign-in limit.
        hops = config.web.proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    csrf.init_app(app)
    htmx.init_app(app)
    login_manager.init_app(app)

    from webapp import (
        account, admin, api, audit, auth, dashboard, editor, git_http, hooks, logs, members, merge_requests, metrics,
        mirroring, ops, pipelines, projects, repository, repository_settings, sso, tokens, variables, webhooks,
    )

    metrics.init_app(app)
    blueprints = (
        account, admin, api, audit, auth, dashboard, editor, git_http, hooks, logs, members, merge_requests, mirroring,
        ops, pipelines, projects, repository, repository_settings, sso, tokens, variables, webhooks,
    )
    for module in blueprints:
        app.register_blueprint(module.bp)

    if app.debug:  # FLASK_DEBUG=1: a developer's page showing every UI component
        app.add_url_rule("/_styleguide", "styleguide", lambda: render_template("_styleguide.html"))

    @app.errorhandler(404)
    def not_found(_exc):
        return render_template("errors/error.html", code=404, title="Page not found",
                               text="There is nothing here, or you may not see it."), 404

    @app.errorhandler(403)
    def forbidden(_exc):
        return render_template("errors/error.html", code=403, title="Not allowed",
                               text="You do not have permission to do that."), 403

    @app.errorhandler(400)
    def bad_request(exc):
        return render_template("errors/error.html", code=400, title="Bad request",
                               text=getattr(exc, "description", "The request was not understood.")), 400

    # Last, so that it keeps each page above for the site and answers JSON under /api/.
    api.answer_api_errors_in_json(app)
    return app
