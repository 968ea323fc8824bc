"""A project's mirroring settings: the outside repository it mirrors, the secret that
outside forge signs its webhooks with, "Fetch now", and the last inbound deliveries.

Every view needs ``repository.settings`` (Maintainers): 404 when the user may not see the
project, 403 when they may see it but not change its settings.

The inbound secret is shown once, in the answer to the POST that made it (never stored in
the session or a URL, and the answer is marked ``no-store``); afterwards the page only
says that a secret is set. Regenerating replaces it, and the forge must be given the new one.
"""

from __future__ import annotations

import logging

from flask import Blueprint, flash, render_template, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from sqlalchemy import orm
from wtforms import StringField
from wtforms.validators import Length

from appliance import audit
from appliance.errors import ValidationError
from appliance.hosting import inbound, mirror
from appliance.models import Project
from appliance.pipelines.secrets import SecretKeyError
from webapp import auditing
from webapp.forms import add_service_error
from webapp.pipelines import done, load_project, project_args, prts

log = logging.getLogger(__name__)

bp = Blueprint("mirroring", __name__)

ACTION = "repository.settings"
FORGE_NAMES = {"github": "GitHub", "gitlab": "GitLab", "gitea": "Gitea and Forgejo", inbound.MANUAL: "Fetch now"}
KEY_PROBLEM = ("The secret cannot be made: the appliance's secrets key is not usable. "
               "An administrator finds the reason in the server log.")


class MirrorForm(FlaskForm):
    mirror_url = StringField("Mirror URL", validators=[Length(max=mirror.MAX_URL)],
                             render_kw={"autocomplete": "off", "spellcheck": "false", "autocapitalize": "off",
                                        "inputmode": "url", "placeholder": "https://github.com/acme/web.git"})


def _page(session: orm.Session, project: Project, form: MirrorForm | None = None, *, secret: str | None = None,
          status: int = 200):
    if form is None:
        form = MirrorForm(formdata=None, data={"mirror_url": project.mirror_url})
    hook_urls = {forge: url_for("hooks.receive", forge=forge, _external=True, **project_args(project))
                 for forge in inbound.FORGES}
    body = render_template("settings/mirroring.html", project=project, form=form, secret=secret,
                           has_secret=project.inbound_secret_ciphertext is not None, hook_urls=hook_urls,
                           deliveries=inbound.recent_deliveries(session, project.id), forge_names=FORGE_NAMES)
    # A page carrying a secret must not linger in a cache or the back-button history.
    return body, status, {"Cache-Control": "no-store"}


def _back(project: Project):
    return done(url_for("mirroring.settings", **project_args(project)))


@bp.get("/<org>/<name>/-/settings/mirroring")
@login_required
def settings(org: str, name: str):
    with prts().db.session() as s:
        project = load_project(s, org, name, ACTION)
        return _page(s, project)


@bp.post("/<org>/<name>/-/settings/mirroring")
@login_required
def save_url(org: str, name: str):
    app = prts()
    form = MirrorForm()
    with app.db.session() as s:
        project = load_project(s, org, name, ACTION)
        if form.validate_on_submit():
            try:
                with s.begin_nested():
                    mirror.set_mirror_url(s, project, form.mirror_url.data or "", app.config)
            except ValidationError as exc:
                add_service_error(form, exc)
        if form.errors:
            return _page(s, project, form, status=422)
        url = project.mirror_url
        auditing.record(s, "mirror.url_changed", target=project.path, project=project,
                        detail=audit.url_without_secrets(url) if url else "mirroring turned off")
    flash(f"The project now mirrors {url}." if url else "The project no longer mirrors a repository.", "success")
    return _back(project)


@bp.post("/<org>/<name>/-/settings/mirroring/secret")
@login_required
def generate_secret(org: str, name: str):
    app = prts()
    with app.db.session() as s:
        project = load_project(s, org, name, ACTION)
        try:
            secret = inbound.generate_secret(s, project, app.config)
        except SecretKeyError as exc:
            log.error("cannot make the inbound webhook secret of %s: %s", project.path, exc)
            flash(KEY_PROBLEM, "error")
            return _back(project)
        auditing.record(s, "mirror.secret_generated", target=project.path, project=project)
        # Rendered here, not redirected to: this answer is the only place the secret appears.
        return _page(s, project, secret=secret)


@bp.post("/<org>/<name>/-/settings/mirroring/secret/delete")
@login_required
def delete_secret(org: str, name: str):
    app = prts()
    with app.db.session() as s:
        project = load_project(s, org, name, ACTION)
        inbound.remove_secret(s, project)
        auditing.record(s, "mirror.secret_removed", target=project.path, project=project)
    flash("The webhook secret was removed; deliveries to this project are refused.", "success")
    return _back(project)


@bp.post("/<org>/<name>/-/settings/mirroring/fetch")
@login_required
def fetch_now(org: str, name: str):
    app = prts()
    with app.db.session() as s:
        project = load_project(s, org, name, ACTION)
    if not project.mirror_url:
        flash("Set a mirror URL first: there is nothing to fetch.", "error")
    else:
        inbound.queue_manual_fetch(app, project.id, current_user.username)
        flash("The fetch was queued; its outcome appears under Recent deliveries.", "success")
    return _back(project)
