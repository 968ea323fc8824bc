"""The audit pages: the whole trail for site administrators (``/audit``) and one project's
events for its Maintainers (``/<org>/<name>/-/audit``), each with filters, keyset pages
("Older" follows ``before=<seq>``) and a streamed CSV export of the filtered events.

Both read the main database's ``audit_events`` table, the source of truth, which is always
current. The filter form is a GET form: htmx swaps in the results partial and pushes the
URL, so a filtered view can be bookmarked and reloaded.
"""

from __future__ import annotations

import csv
import io

from flask import Blueprint, Response, abort, render_template, request, stream_with_context, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length

from appliance.audit import search
from appliance.errors import ValidationError
from appliance.models import Project
from webapp.extensions import htmx
from webapp.pipelines import load_project, project_args, prts

bp = Blueprint("audit", __name__)

_TEXT_KW = {"autocomplete": "off", "spellcheck": "false", "autocapitalize": "off"}


class AuditFilterForm(FlaskForm):
    """Query arguments, not a change: no CSRF token (nothing is written by a GET)."""

    class Meta:
        csrf = False

    actor = StringField("Actor", validators=[Length(max=search.MAX_TEXT)], render_kw=_TEXT_KW)
    action = StringField("Action starts with", validators=[Length(max=search.MAX_TEXT)], render_kw=_TEXT_KW)
    target = StringField("Target contains", validators=[Length(max=search.MAX_TEXT)], render_kw=_TEXT_KW)
    since = StringField("From (UTC)", render_kw={"type": "date"})
    until = StringField("To (UTC)", render_kw={"type": "date"})
    outcome = SelectField("Outcome", choices=[SelectChoice("", "Any")] +
                          [SelectChoice(o, o.capitalize()) for o in search.OUTCOMES])


def _filter_from_request(project: Project | None) -> tuple[AuditFilterForm, search.AuditFilter | None]:
    form = AuditFilterForm(formdata=request.args)
    try:
        return form, search.AuditFilter.from_args(request.args, project.id if project else None)
    except ValidationError as exc:
        field = getattr(form, exc.field)
        field.errors = [f"{field.label.text} {exc.message}."]
        return form, None


def _before() -> int | None:
    value = request.args.get("before", "")
    if not value:
        return None
    if not value.isdigit() or len(value) > 19:
        abort(404)  # a page that cannot exist, like a too-high page number
    return int(value)


def _render(project: Project | None):
    form, audit_filter = _filter_from_request(project)
    # filter_args: the project's path arguments plus the filter, for the pager and export links.
    context = {"project": project, "form": form, "page": None, "filter_args": {},
               "endpoint": "audit.project_events" if project else "audit.events",
               "export_endpoint": "audit.project_export" if project else "audit.export",
               "args": project_args(project) if project else {}, "first_page": request.args.get("before") is None}
    status = 200
    if audit_filter is None:
        status = 422
    else:
        with prts().db.session() as s:
            context["page"] = search.page(s, audit_filter, _before())
        context["filter_args"] = context["args"] | audit_filter.query_args()
    if htmx:
        return render_template("audit/_results.html", **context), status
    return render_template("audit/index.html", **context), status


def _csv(project: Project | None, filename: str):
    form, audit_filter = _filter_from_request(project)
    if audit_filter is None:
        field = next(f for f in form if f.errors)
        return Response(f"{field.errors[0]}\n", status=422, mimetype="text/plain")
    rows = search.csv_rows(prts().db, audit_filter)

    def generate():
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        for row in rows:
            writer.writerow(row)
            if buffer.tell() > 64 * 1024:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    return Response(stream_with_context(generate()), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"',
                             "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})


def _site_admin() -> None:
    if not current_user.is_admin:
        abort(403)


@bp.get("/audit")
@login_required
def events():
    _site_admin()
    return _render(None)


@bp.get("/audit/export.csv")
@login_required
def export():
    _site_admin()
    return _csv(None, "prts-audit.csv")


def _project(org: str, name: str) -> Project:
    with prts().db.session() as s:
        return load_project(s, org, name, "audit.view")


@bp.get("/<org>/<name>/-/audit")
@login_required
def project_events(org: str, name: str):
    return _render(_project(org, name))


@bp.get("/<org>/<name>/-/audit/export.csv")
@login_required
def project_export(org: str, name: str):
    project = _project(org, name)
    return _csv(project, f"prts-audit-{project.organisation.name}-{project.name}.csv")

