"""A project's outbound webhooks: the list with the add form, and one webhook's page (its
events, on/off, a new secret, delete, and the delivery log with "Redeliver").

Every view needs ``webhooks.manage`` (Maintainers): 404 when the user may not see the
project, 403 when they may see it but not manage its webhooks. A webhook of another
project answers 404.

The signing secret is shown once, in the answer to the POST that made it (adding a
webhook or regenerating its secret): rendered there, never put in the session or a URL,
and the answer is marked ``no-store``. Every other change is Post/Redirect/Get.
"""

from __future__ import annotations

import logging

from flask import Blueprint, abort, flash, render_template, url_for
from flask_login import login_required
from flask_wtf import FlaskForm
from sqlalchemy import orm
from wtforms import BooleanField, StringField
from wtforms.validators import Length

from appliance import audit
from appliance.errors import ValidationError
from appliance.hosting import outbound
from appliance.models import Project, Webhook, WebhookDelivery
from appliance.models.webhook import WEBHOOK_EVENTS
from appliance.pipelines.secrets import SecretKeyError
from webapp import auditing
from webapp.extensions import htmx
from webapp.forms import add_service_error
from webapp.pipelines import done, load_project, project_args, prts, state_token, unchanged

log = logging.getLogger(__name__)

bp = Blueprint("webhooks", __name__)

ACTION = "webhooks.manage"
KEY_PROBLEM = ("The secret cannot be made: the appliance's secrets key is not usable. "
               "An administrator finds the reason in the server log.")
NO_STORE = {"Cache-Control": "no-store"}


class WebhookEventsForm(FlaskForm):
    """The events a webhook is sent (one check box per ``WEBHOOK_EVENTS``) and whether it is on."""

    active = BooleanField("Active", default=True)

    def chosen_events(self) -> list[str]:
        return [event for event in WEBHOOK_EVENTS if self[f"event_{event}"].data]

    def event_fields(self):
        return [self[f"event_{event}"] for event in WEBHOOK_EVENTS]


for _event in WEBHOOK_EVENTS:
    setattr(WebhookEventsForm, f"event_{_event}", BooleanField(outbound.EVENT_LABELS.get(_event, _event)))


class WebhookForm(WebhookEventsForm):
    url = StringField("Payload URL", validators=[Length(max=outbound.MAX_URL)],
                      render_kw={"autocomplete": "off", "spellcheck": "false", "autocapitalize": "off",
                                 "inputmode": "url", "placeholder": "https://ci.example.com/hooks/prts"})


def _add_error(form: WebhookEventsForm, exc: ValidationError) -> None:
    if exc.field == "events":
        form.form_errors.append(f"Events: {exc.message[0].upper()}{exc.message[1:]}.")
    else:
        add_service_error(form, exc)


def _load_webhook(session: orm.Session, project: Project, webhook_id: int) -> Webhook:
    webhook = outbound.find_webhook(session, project.id, webhook_id)
    if webhook is None:
        abort(404)
    return webhook


def _new_form() -> WebhookForm:
    return WebhookForm(formdata=None, data={f"event_{event}": True for event in WEBHOOK_EVENTS} | {"active": True})


def _edit_form(webhook: Webhook) -> WebhookEventsForm:
    chosen = outbound.events_of(webhook)
    return WebhookEventsForm(formdata=None, data={f"event_{e}": e in chosen for e in WEBHOOK_EVENTS}
                             | {"active": webhook.active})


# -- the list and the add form ------------------------------------------------------------


def _index(session: orm.Session, project: Project, form: WebhookForm | None = None, *, created: Webhook | None = None,
           secret: str | None = None, status: int = 200):
    hooks = outbound.list_webhooks(session, project.id)
    body = render_template("settings/webhooks.html", project=project, webhooks=hooks,
                           last=outbound.last_deliveries(session, [h.id for h in hooks]),
                           form=form or _new_form(), created=created, secret=secret,
                           event_labels=outbound.EVENT_LABELS)
    return body, status, NO_STORE if secret else {}


@bp.get("/<org>/<name>/-/settings/webhooks")
@login_required
def index(org: str, name: str):
    with prts().db.session() as s:
        project = load_project(s, org, name, ACTION)
        return _index(s, project)


@bp.post("/<org>/<name>/-/settings/webhooks")
@login_required
def add(org: str, name: str):
    app = prts()
    form = WebhookForm()
    with app.db.session() as s:
        project = load_project(s, org, name, ACTION)
    if form.validate_on_submit():
        try:
            # Checked outside any transaction first: a host that does not resolve may take
            # seconds to say so, and on SQLite an open write transaction holds every other
            # writer back meanwhile. create_webhook checks again (a resolved name is quick).
            outbound.check_webhook_url(form.url.data or "", app.config)
            outbound.check_events(form.chosen_events())
        except ValidationError as exc:
            _add_error(form, exc)
    with app.db.session() as s:
        project = load_project(s, org, name, ACTION)
        if form.errors or form.form_errors:
            return _index(s, project, form, status=422)
        try:
            with s.begin_nested():
                webhook, secret = outbound.create_webhook(s, project, form.url.data or "", form.chosen_events(),
                                                          app.config)
                webhook.active = bool(form.active.data)
        except ValidationError as exc:  # the host's address changed since the check above
            _add_error(form, exc)
            return _index(s, project, form, status=422)
        except SecretKeyError as exc:
            log.error("cannot make a webhook secret for %s: %s", project.path, exc)
            form.form_errors.append(KEY_PROBLEM)
            return _index(s, project, form, status=422)
        auditing.record(s, "webhook.created", target=f"{project.path} webhook {webhook.id}", project=project,
                        detail=f"{audit.url_without_secrets(webhook.url)} events={webhook.events}")
        # Rendered here, not redirected to: this answer is the only place the secret appears.
        return _index(s, project, created=webhook, secret=secret)


# -- one webhook --------------------------------------------------------------------------


def _deliveries_context(session: orm.Session, webhook: Webhook) -> dict:
    rows = outbound.recent_deliveries(session, webhook.id)
    pending = any(row.status == "pending" for row in rows)
    token = state_token(*[(row.id, row.status, row.attempts) for row in rows])
    return {"deliveries": rows, "polling": pending, "since": token}


def _show(session: orm.Session, project: Project, webhook: Webhook, form: WebhookEventsForm | None = None, *,
          secret: str | None = None, status: int = 200):
    body = render_template("settings/webhook.html", project=project, webhook=webhook, form=form or _edit_form(webhook),
                           secret=secret, event_labels=outbound.EVENT_LABELS,
                           **_deliveries_context(session, webhook))
    return body, status, NO_STORE if secret else {}


def _back(project: Project, webhook_id: int):
    return done(url_for("webhooks.show", webhook_id=webhook_id, **project_args(project)))


@bp.get("/<org>/<name>/-/settings/webhooks/<int:webhook_id>")
@login_required
def show(org: str, name: str, webhook_id: int):
    with prts().db.session() as s:
        project = load_project(s, org, name, ACTION)
        return _show(s, project, _load_webhook(s, project, webhook_id))


@bp.get("/<org>/<name>/-/settings/webhooks/<int:webhook_id>/deliveries")
@login_required
def deliveries(org: str, name: str, webhook_id: int):
    """The delivery log alone, for the widget that refreshes itself while a delivery is pending."""
    with prts().db.session() as s:
        project = load_project(s, org, name, ACTION)
        webhook = _load_webhook(s, project, webhook_id)
        context = _deliveries_context(s, webhook)
        if unchanged(context["since"]):
            return "", 204
        return render_template("partials/webhook_deliveries.html", project=project, webhook=webhook,
                               event_labels=outbound.EVENT_LABELS, **context)


@bp.post("/<org>/<name>/-/settings/webhooks/<int:webhook_id>")
@login_required
def update(org: str, name: str, webhook_id: int):
    app = prts()
    form = WebhookEventsForm()
    with app.db.session() as s:
        project = load_project(s, org, name, ACTION)
        webhook = _load_webhook(s, project, webhook_id)
        if form.validate_on_submit():
            try:
                with s.begin_nested():
                    outbound.update_webhook(s, webhook, events=form.chosen_events(), active=bool(form.active.data))
            except ValidationError as exc:
                _add_error(form, exc)
        if form.errors or form.form_errors:
            s.refresh(webhook)
            return _show(s, project, webhook, form, status=422)
        auditing.record(s, "webhook.changed", target=f"{project.path} webhook {webhook.id}", project=project,
                        detail=f"{audit.url_without_secrets(webhook.url)} events={webhook.events} "
                               f"active={webhook.active}")
    flash("The webhook was saved.", "success")
    return _back(project, webhook_id)


@bp.post("/<org>/<name>/-/settings/webhooks/<int:webhook_id>/secret")
@login_required
def regenerate_secret(org: str, name: str, webhook_id: int):
    app = prts()
    with app.db.session() as s:
        project = load_project(s, org, name, ACTION)
        webhook = _load_webhook(s, project, webhook_id)
        try:
            secret = outbound.regenerate_secret(s, webhook, app.config)
        except SecretKeyError as exc:
            log.error("cannot make a webhook secret for %s: %s", project.path, exc)
            flash(KEY_PROBLEM, "error")
            return _back(project, webhook_id)
        auditing.record(s, "webhook.secret_regenerated", target=f"{project.path} webhook {webhook.id}",
                        project=project, detail=audit.url_without_secrets(webhook.url))
        return _show(s, project, webhook, secret=secret)


@bp.post("/<org>/<name>/-/settings/webhooks/<int:webhook_id>/delete")
@login_required
def delete(org: str, name: str, webhook_id: int):
    app = prts()
    with app.db.session() as s:
        project = load_project(s, org, name, ACTION)
        webhook = _load_webhook(s, project, webhook_id)
        url = webhook.url
        auditing.record(s, "webhook.deleted", target=f"{project.path} webhook {webhook.id}", project=project,
                        detail=audit.url_without_secrets(url))
        outbound.delete_webhook(s, webhook)
    flash(f"The webhook to {url} was deleted.", "success")
    return done(url_for("webhooks.index", **project_args(project)))


@bp.post("/<org>/<name>/-/settings/webhooks/<int:webhook_id>/deliveries/<int:delivery_id>/redeliver")
@login_required
def redeliver(org: str, name: str, webhook_id: int, delivery_id: int):
    app = prts()
    with app.db.session() as s:
        project = load_project(s, org, name, ACTION)
        webhook = _load_webhook(s, project, webhook_id)
        row = s.get(WebhookDelivery, delivery_id)
        if row is None or row.webhook_id != webhook.id:
            abort(404)
        if not webhook.active:
            flash("The webhook is disabled: enable it to redeliver.", "error")
            return _back(project, webhook_id)
    outbound.redeliver(app, delivery_id)
    flash("The delivery was queued again; it appears at the top of the log.", "success")
    return _back(project, webhook_id)
