"""The pipeline schema endpoint, the editor page and its htmx validation, and
`prts pipeline validate` run as a real command."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from appliance.pipelines import schema
from conftest import csrf_token

VALID = """\
version: "1.0"
name: Build and Deploy
stages:
  - name: Build
    jobs:
      - name: Test
        matrix: { python: ["3.11", "3.12"] }
        steps: [ { run: make test } ]
  - name: Deploy
    needs: [Build]
    when: { branch: main }
    jobs:
      - name: Release
        steps: [ { run: ./release.sh } ]
"""

INVALID = """\
version: "1.0"
name: p
stages:
  - name: A
    jobz: []
"""


# -- the schema -----------------------------------------------------------------------------


def test_the_schema_is_public_json_and_the_one_the_parser_uses(client):
    response = client.get("/api/v1/schema/pipeline.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    document = response.get_json()
    jsonschema.Draft202012Validator.check_schema(document)
    assert document["$id"] == "http://localhost/api/v1/schema/pipeline.json"
    assert {k: v for k, v in document.items() if k != "$id"} == json.loads(json.dumps(schema.PIPELINE_SCHEMA))
    assert document["properties"]["stages"]["items"]["additionalProperties"] is False
    assert "description" in document["properties"]["triggers"]


def test_an_editor_can_validate_with_the_served_schema(client):
    import yaml

    validator = jsonschema.Draft202012Validator(client.get("/api/v1/schema/pipeline.json").get_json())
    assert not list(validator.iter_errors(yaml.safe_load(VALID)))
    errors = list(validator.iter_errors(yaml.safe_load(INVALID)))
    assert errors and any("jobz" in error.message for error in errors)


# -- the editor page ------------------------------------------------------------------------


def test_the_editor_needs_login(client):
    response = client.get("/-/pipeline-editor")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login?next=")
    assert client.post("/-/pipeline-editor/validate", data={"source": VALID}).status_code in (302, 400)


def test_the_editor_page_validates_as_you_type(client, auth, admin):
    auth.login()
    page = client.get("/-/pipeline-editor")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    textarea = re.search(r"<textarea[^>]*>", html).group(0)
    assert 'name="source"' in textarea and 'hx-post="/-/pipeline-editor/validate"' in textarea
    assert 'hx-trigger="input changed delay:400ms"' in textarea and 'hx-target="#pipeline-problems"' in textarea
    assert '<label class="field__label" for="source">' in html
    assert 'id="pipeline-problems"' in html and "Pipeline valid:" in html  # the starter file is valid
    assert "/api/v1/schema/pipeline.json" in html


def validate(client, source: str, *, htmx: bool = True):
    token = csrf_token(client.get("/-/pipeline-editor").get_data(as_text=True))
    headers = {"HX-Request": "true", "X-CSRFToken": token} if htmx else {}
    data = {"source": source} if htmx else {"source": source, "csrf_token": token}
    return client.post("/-/pipeline-editor/validate", data=data, headers=headers)


def test_validate_returns_the_problems_partial_with_line_and_column(client, auth, admin):
    auth.login()
    response = validate(client, INVALID)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="pipeline-problems"') and "<html" not in html
    assert 'data-valid="false"' in html and "2 problems" in html
    assert "line 4:5" in html and "stage &#34;A&#34; has no `jobs`" in html
    assert "line 5:5" in html and "unknown key `jobz`" in html and "did you mean `jobs`?" in html


def test_validate_summarises_a_valid_plan(client, auth, admin):
    auth.login()
    html = validate(client, VALID.replace("\n", "\r\n")).get_data(as_text=True)  # as a browser sends it
    assert 'data-valid="true"' in html
    assert "Pipeline valid: 3 jobs in 2 stages" in html
    assert "Test [python=3.11]" in html and "Build/Test [python=3.12]" in html  # names, and needs by key


def test_cycles_and_unknown_needs_are_shown(client, auth, admin):
    auth.login()
    cyclic = VALID.replace("  - name: Build\n", "  - name: Build\n    needs: [Deploy]\n")
    html = validate(client, cyclic).get_data(as_text=True)
    assert "the stages&#39; needs make a cycle: Build -&gt; Deploy -&gt; Build" in html


def test_empty_and_hostile_text_is_escaped(client, auth, admin):
    auth.login()
    assert "checked as you type" in validate(client, "").get_data(as_text=True)
    evil = VALID.replace("name: Release", 'name: "<script>alert(1)</script>"')
    html = validate(client, evil).get_data(as_text=True)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    html = validate(client, 'version: "1.0"\nname: p\n<img src=x onerror=alert(1)>: 1\nstages: []\n').get_data(as_text=True)
    assert "<img" not in html and "&lt;img src=x" in html and "hx-" not in html.split("pipeline-problems", 1)[1]


def test_validate_without_javascript_returns_the_page(client, auth, admin):
    auth.login()
    response = validate(client, INVALID, htmx=False)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" in html and "line 5:5" in html
    assert "    jobz: []\n</textarea>" in html  # the text is kept in the form


def test_validate_needs_the_csrf_token(client, auth, admin):
    auth.login()
    assert client.post("/-/pipeline-editor/validate", data={"source": VALID},
                       headers={"HX-Request": "true"}).status_code == 400


# -- the command line -----------------------------------------------------------------------


def prts_command() -> list[str]:
    script = Path(sys.executable).with_name("prts")
    return [str(script)] if script.exists() else [shutil.which("prts") or sys.executable, *(
        [] if shutil.which("prts") else ["-m", "appliance"])]


def run_prts(*args: str, input: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRTS_")}
    return subprocess.run([*prts_command(), *args], input=input, capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=120)


def test_cli_validates_a_file(tmp_path):
    (tmp_path / "pipeline.yaml").write_text(VALID)
    result = run_prts("pipeline", "validate", "pipeline.yaml", cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "pipeline.yaml: valid (3 jobs in 2 stages)\n", "")


def test_cli_prints_each_problem_at_file_line_column(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(INVALID)
    result = run_prts("pipeline", "validate", str(path))
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines == [f'{path}:4:5: stage "A" has no `jobs` (expected the keys name, jobs)',
                     f"{path}:5:5: unknown key `jobz` in stage \"A\" (did you mean `jobs`? expected one of: "
                     "name, needs, parallel, when, jobs)"]


def test_cli_reads_standard_input_and_reports_plan_problems():
    assert run_prts("pipeline", "validate", "-", input=VALID).stdout == "<stdin>: valid (3 jobs in 2 stages)\n"
    cyclic = VALID.replace("  - name: Build\n", "  - name: Build\n    needs: [Deploy]\n")
    result = run_prts("pipeline", "validate", "-", input=cyclic)
    assert result.returncode == 1
    assert result.stderr.startswith("<stdin>:4:5: the stages' needs make a cycle: Build -> Deploy -> Build")


@pytest.mark.parametrize("content, message", [
    (None, "cannot read"),
    ("x: !!python/object/apply:os.system [id]\n", "the tag !!python/object/apply:os.system is not allowed"),
])
def test_cli_refuses_missing_and_hostile_files(tmp_path, content, message):
    path = tmp_path / "p.yaml"
    if content is not None:
        path.write_text(content)
    result = run_prts("pipeline", "validate", str(path))
    assert result.returncode == 1 and message in result.stderr
