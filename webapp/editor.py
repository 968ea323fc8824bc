"""The pipeline file's JSON Schema for editors, and a page that checks a file as you type.

``GET /api/v1/schema/pipeline.json`` is public (an editor fetches it without a session)
and is ``schema.PIPELINE_SCHEMA`` itself, so the editor and the appliance never disagree.
The editor page posts the text through htmx (``input changed delay:400ms``) and swaps in
``partials/pipeline_problems.html``: the problems at line:column, or a summary of the plan
a manual run on main would get. Without JavaScript the "Check" button does the same with
a full page.
"""

from __future__ import annotations

from flask import Blueprint, Response, render_template, request, url_for
from flask_login import login_required

from appliance.pipelines import schema
from appliance.pipelines.cli import check, summary
from appliance.pipelines.spec import PipelineError
from webapp.extensions import htmx

bp = Blueprint("editor", __name__)

FILE = ".prts/pipeline.yaml"
STARTER = """\
version: "1.0"
name: Build and Deploy
triggers:
  - push: { branches: [main, "release/*"] }
  - manual: {}
variables: { IMAGE_NAME: myapp }
stages:
  - name: Build
    jobs:
      - name: Test
        matrix: { python: ["3.11", "3.12"] }
        timeout: 10m
        steps:
          - run: make test
          - artifact: { path: dist/, name: build }
  - name: Deploy
    needs: [Build]
    when: { branch: main }
    jobs:
      - name: Release
        environment: production
        steps: [ { run: ./release.sh } ]
"""


@bp.route("/api/v1/schema/pipeline.json")
def pipeline_schema():
    body = schema.schema_json(url_for("editor.pipeline_schema", _external=True))
    return Response(body, mimetype="application/json", headers={"Cache-Control": "public, max-age=300"})


def _result(source: str) -> dict:
    """What the problems partial shows for ``source``."""
    if not source.strip():
        return {"empty": True, "problems": [], "plan": None}
    try:
        spec, plan = check(source, FILE)
    except PipelineError as exc:
        return {"empty": False, "problems": exc.problems, "plan": None}
    return {"empty": False, "problems": [], "plan": plan, "spec": spec, "summary": summary(spec, plan)}


@bp.route("/-/pipeline-editor")
@login_required
def page():
    return render_template("pipelines/editor.html", source=STARTER, **_result(STARTER))


@bp.route("/-/pipeline-editor/validate", methods=["POST"])
@login_required
def validate():
    # Browsers send a textarea's line breaks as CRLF; the file in git has LF.
    source = request.form.get("source", "").replace("\r\n", "\n")
    if htmx:
        return render_template("partials/pipeline_problems.html", **_result(source))
    return render_template("pipelines/editor.html", source=source, **_result(source))
