"""dsl.parse(): the shape of `.prts/pipeline.yaml`, and every problem at its line:column."""

from __future__ import annotations

import textwrap

import jsonschema
import pytest

from appliance.pipelines import dsl, schema
from appliance.pipelines.spec import Condition, PipelineError, Position, Trigger

EXAMPLE = """\
version: "1.0"
name: Build and Deploy
triggers:
  - push: { branches: [main, "release/*"], paths: ["src/**"] }
  - pull_request: { types: [opened, synchronize] }
  - schedule: { cron: "0 2 * * *" }
  - manual: {}
variables: { IMAGE_NAME: myapp }
stages:
  - name: Build
    parallel: true
    jobs:
      - name: Test
        matrix: { python: ["3.11", "3.12"] }
        timeout: 10m
        retry: 1
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

HEAD = 'version: "1.0"\nname: p\n'


@pytest.fixture(autouse=True, params=["libyaml", "pure"])
def loader(request, monkeypatch):
    """Every test runs with libyaml's parser (when PyYAML has it) and with the pure-Python
    one, which a PyYAML built without libyaml falls back to: both must agree."""
    if request.param == "pure":
        monkeypatch.setattr(dsl, "_LOADER", dsl._PureLoader)
    elif dsl._LOADER is dsl._PureLoader:
        pytest.fail("PyYAML was built without libyaml; the suite checks both parsers agree")
    return request.param


def pipeline(body: str) -> str:
    """A file of HEAD (two lines) followed by ``body``: body line 1 is file line 3."""
    return HEAD + textwrap.dedent(body).lstrip("\n")


def one_job(job_lines: str) -> str:
    """A pipeline of one stage with one job whose keys are ``job_lines`` (indented 8):
    the job's `name: J` is on line 6, its first key from ``job_lines`` on line 7."""
    return HEAD + "stages:\n  - name: A\n    jobs:\n      - name: J\n" + textwrap.indent(
        textwrap.dedent(job_lines).lstrip("\n"), " " * 8) + "        steps: [ { run: \"true\" } ]\n"


def problems(text: str | bytes) -> list[tuple[int, int, str, str]]:
    with pytest.raises(PipelineError) as info:
        dsl.parse(text)
    return [(p.position.line, p.position.column, p.message, p.hint) for p in info.value.problems]


def only(text: str | bytes) -> tuple[int, int, str, str]:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


# -- the shape that is accepted -------------------------------------------------------------


def test_the_example_parses_into_the_spec():
    spec = dsl.parse(EXAMPLE)
    assert (spec.version, spec.name, spec.file) == ("1.0", "Build and Deploy", ".prts/pipeline.yaml")
    push, pr, schedule, manual = spec.triggers
    assert push == Trigger("push", branches=("main", "release/*"), paths=("src/**",),
                           position=Position(".prts/pipeline.yaml", 4, 5))
    assert (pr.event, pr.types) == ("pull_request", ("opened", "synchronize"))
    assert (schedule.event, schedule.cron) == ("schedule", "0 2 * * *")
    assert manual.event == "manual"
    assert spec.variables == (("IMAGE_NAME", "myapp"),)
    build, deploy = spec.stages
    assert (build.name, build.needs, build.parallel, build.when) == ("Build", None, True, None)
    assert build.position == Position(".prts/pipeline.yaml", 10, 5)
    test = build.jobs[0]
    assert test.matrix == (("python", ("3.11", "3.12")),)
    assert (test.timeout_seconds, test.retry, test.executor) == (600, 1, "")
    assert [(s.kind, s.name, s.run, s.path, s.artifact) for s in test.steps] == [
        ("run", "make test", "make test", "", ""), ("artifact", "artifact build", "", "dist/", "build")]
    assert test.steps[1].position == Position(".prts/pipeline.yaml", 19, 13)
    assert (deploy.needs, deploy.when) == (("Build",), Condition(branches=("main",)))
    assert deploy.jobs[0].environment == "production"


def test_bytes_and_a_file_name_are_accepted():
    spec = dsl.parse(EXAMPLE.encode(), "ci/other.yaml")
    assert spec.file == "ci/other.yaml" and spec.stages[0].position.file == "ci/other.yaml"


def test_no_triggers_key_means_push_and_manual_but_an_empty_list_means_none():
    body = "stages: [ { name: A, jobs: [ { name: J, steps: [ { run: x } ] } ] } ]\n"
    assert [t.event for t in dsl.parse(HEAD + body).triggers] == ["push", "manual"]
    assert dsl.parse(HEAD + "triggers: []\n" + body).triggers == ()


def test_every_optional_key():
    spec = dsl.parse(pipeline("""
        triggers:
          - push: { branches: [main], tags: ["v*"], paths: [src/], paths_ignore: ["**/*.md"] }
          - pull_request: { branches: [main], paths: [a] }
          - tag: { tags: ["v*"] }
          - push:
          - manual:
        stages:
          - name: A
            needs: []
            parallel: false
            when: { branch: [main, "release/*"], event: push, paths: ["src/**"] }
            jobs:
              - name: J
                needs: [B, B/K]
                allow_failure: true
                variables: { X: "1" }
                when: { event: [push, manual] }
                executor: docker
                image: python:3.12
                services: [postgres:16]
                timeout: 1h30m
                steps:
                  - { name: Say, run: "echo ${{ not.a.template }} $X" }
          - name: B
            jobs: [ { name: K, timeout: 90, steps: [ { run: x } ] } ]
        """))
    push, pr, tag, bare_push, manual = spec.triggers
    assert (push.tags, push.paths, push.paths_ignore) == (("v*",), ("src/",), ("**/*.md",))
    assert (pr.branches, pr.paths) == (("main",), ("a",))
    assert (tag.event, tag.tags) == ("tag", ("v*",))
    assert (bare_push.event, bare_push.branches, manual.event) == ("push", (), "manual")
    a = spec.stages[0]
    assert (a.needs, a.parallel) == ((), False)
    assert a.when == Condition(branches=("main", "release/*"), events=("push",), paths=("src/**",))
    job = a.jobs[0]
    assert (job.needs, job.allow_failure, job.variables) == (("B", "B/K"), True, (("X", "1"),))
    assert job.when == Condition(events=("push", "manual"))
    assert (job.executor, job.image, job.services, job.timeout_seconds) == ("docker", "python:3.12", ("postgres:16",), 5400)
    # No template language: the text is kept as written.
    assert job.steps[0].name == "Say" and job.steps[0].run == "echo ${{ not.a.template }} $X"
    assert spec.stages[1].jobs[0].timeout_seconds == 90


@pytest.mark.parametrize("written, seconds", [("90s", 90), ("10m", 600), ("1h30m", 5400), ("2h", 7200),
                                              ("1h1m1s", 3661), ("24h", 86400), ("3600", None), (3600, 3600)])
def test_timeouts(written, seconds):
    text = one_job(f"timeout: {written!r}\n" if isinstance(written, str) and written.isdigit() else f"timeout: {written}\n")
    if seconds is None:  # a quoted number is text, and text must carry a unit
        assert only(text)[:2] == (7, 18)
    else:
        assert dsl.parse(text).stages[0].jobs[0].timeout_seconds == seconds


def test_values_are_typed_by_the_yaml_12_core_schema_and_kept_as_written():
    spec = dsl.parse(pipeline("""
        variables: { A: yes, B: on, C: 2024-01-01, D: True, E: false, F: 1.10, G: 0x1F, H: "007", I: 1e3, J: ~x }
        stages:
          - name: on
            jobs: [ { name: no, matrix: { v: [yes, 1.0, true] }, steps: [ { run: x } ] } ]
        """))
    assert dict(spec.variables) == {"A": "yes", "B": "on", "C": "2024-01-01", "D": "true", "E": "false",
                                    "F": "1.10", "G": "0x1F", "H": "007", "I": "1e3", "J": "~x"}
    assert spec.stages[0].name == "on" and spec.stages[0].jobs[0].name == "no"
    assert spec.stages[0].jobs[0].matrix == (("v", ("yes", "1.0", "true")),)


def test_core_tags_are_allowed_and_aliases_of_whole_values_work():
    spec = dsl.parse(pipeline("""
        variables: { N: !!str 12 }
        stages:
          - name: A
            jobs:
              - name: J
                steps: &steps [ { run: make } ]
              - name: K
                steps: *steps
        """))
    assert spec.variables == (("N", "12"),)
    assert spec.stages[0].jobs[1].steps[0].run == "make"


def test_step_names_default_to_the_first_line_of_the_script():
    spec = dsl.parse(one_job("") .replace('steps: [ { run: "true" } ]',
                                          'steps: [ { run: "\\n  echo one\\necho two\\n" } ]'))
    assert spec.stages[0].jobs[0].steps[0].name == "echo one"


# -- every kind of problem, at its line and column ------------------------------------------


def test_yaml_syntax_error_is_placed():
    line, column, message, hint = only(HEAD + "stages:\n  - name: A\n   jobs: []\n")
    assert (line, column) == (5, 4) and message.startswith("YAML: ")
    line, column, message, hint = only(HEAD + "stages: [ { name: A }\n")
    assert (line, column) == (4, 1) and "YAML" in message


def test_tabs_are_named():
    line, column, message, hint = only(HEAD + "stages:\n\t- name: A\n")
    assert (line, column) == (4, 1) and "tabs" in hint


def test_duplicate_keys_are_an_error_naming_the_first():
    assert only(HEAD + "name: again\nstages: []\n") == (
        3, 1, "duplicate key `name`", "it is already set at line 2, column 1")
    line, column, message, _ = only(one_job("retry: 1\nretry: 2\n"))
    assert (line, column, message) == (8, 9, "duplicate key `retry`")


def test_unknown_key_names_it_and_suggests():
    line, column, message, hint = only(HEAD + "stages:\n  - name: A\n    jobs: [ { name: J, steps: [ { run: x } ] } ]\n"
                                              "    jobz: []\n")
    assert (line, column) == (6, 5)
    assert message == 'unknown key `jobz` in stage "A"' and hint.startswith("did you mean `jobs`?")


def test_missing_required_key_points_at_the_mapping():
    found = problems(HEAD + "stages:\n  - name: A\n    jobz: []\n")
    assert (4, 5, 'stage "A" has no `jobs`', "expected the keys name, jobs") in found
    assert (5, 5) in [(line, column) for line, column, *_ in found]  # and the unknown key
    assert only(one_job("").replace('        steps: [ { run: "true" } ]\n', "")) == (
        6, 9, 'job "J" has no `steps`', "expected the keys name, steps")


def test_version_must_be_the_quoted_string():
    line, column, message, hint = only('version: 1.0\nname: p\nstages: [ { name: A, jobs: [ { name: J, steps: [ { run: x } ] } ] } ]\n')
    assert (line, column, message) == (1, 10, "`version` is 1.0")
    assert '"1.0" in quotes' in hint
    assert only(EXAMPLE.replace('version: "1.0"', 'version: "2.0"'))[:3] == (1, 10, '`version` is "2.0"')


def test_wrong_type_names_what_was_expected():
    assert only(one_job("timeout: [10m]\n")) == (7, 18, '`timeout` of job "J" is a list',
                                                  "expected " + schema._DURATION_MESSAGE)
    assert only(one_job("retry: yes\n")) == (7, 16, '`retry` of job "J" is "yes"', "expected an integer")
    assert only(one_job("allow_failure: 1\n")) == (7, 24, '`allow_failure` of job "J" is 1', "expected true or false")
    assert only(HEAD + "stages: { name: A }\n")[:3] == (3, 9, "`stages` is a mapping")
    assert only("- a\n- b\n") == (1, 1, "the pipeline file is a list", "expected a mapping (key: value)")


def test_enum_and_pattern_errors():
    assert only(one_job("executor: dokcer\n")) == (7, 19, '`executor` of job "J" is "dokcer"',
                                                    "expected one of local, docker, kubernetes")
    assert only(one_job("timeout: 10 minutes\n"))[:3] == (7, 18, '`timeout` of job "J" is "10 minutes"')
    line, column, message, hint = only(one_job("").replace('{ run: "true" }', "{ artifact: { path: d, name: a b } }"))
    assert (line, column, message) == (7, 47, '`artifact.name` of step 1 of job "J" is "a b"')
    assert "letters, digits" in hint
    assert only(HEAD + "stages: [ { name: A/B, jobs: [ { name: J, steps: [ { run: x } ] } ] } ]\n")[:3] == (
        3, 19, '`name` of stage "A/B" is "A/B"')


def test_names_are_one_line():
    found = only(one_job("").replace("name: J", "name: \"J\\nK\""))
    assert found[:2] == (6, 15) and "one line" in found[3]


def test_timeout_limits():
    assert only(one_job("timeout: 25h\n")) == (7, 18, "the timeout '25h' of job 'J' is longer than 24h",
                                                "expected a duration from 1s to 24h")
    assert only(one_job("timeout: 0s\n"))[:3] == (7, 18, "the timeout '0s' of job 'J' is zero")
    assert only(one_job("timeout: 86401\n"))[:2] == (7, 18)
    assert only(one_job("timeout: 0\n"))[:2] == (7, 18)


def test_variable_names_values_and_the_reserved_prefix():
    found = problems(pipeline("""
        variables: { PRTS_TOKEN: a, 1A: b, ok: [1], fine: x, nul: ~ }
        stages: [ { name: A, jobs: [ { name: J, steps: [ { run: x } ] } ] } ]
        """))
    assert [(line, column) for line, column, *_ in found] == [(3, 14), (3, 29), (3, 40), (3, 59)]
    assert found[0][2] == "the key `PRTS_TOKEN` in `variables` is not allowed" and "PRTS_" in found[0][3]
    assert found[1][2] == "the key `1A` in `variables` is not allowed"
    assert found[2][2] == "`variables.ok` is a list" and found[3][2] == "`variables.nul` is empty"


def test_matrix_problems():
    assert only(one_job("matrix: { 3x: [a] }\n"))[:3] == (7, 19, 'the key `3x` in `matrix` of job "J" is not allowed')
    assert only(one_job("matrix: { x: [] }\n")) == (7, 22, '`matrix.x` of job "J" is empty', "expected at least one item")
    assert only(one_job("matrix: { x: [1, \"1\"] }\n")) == (
        7, 26, "the matrix value '1' of `x` is listed twice", "expected each value once")
    values = "[" + ", ".join(str(i) for i in range(7)) + "]"
    assert only(one_job(f"matrix: {{ a: {values}, b: {values}, c: {values} }}\n")) == (
        7, 17, "the matrix makes 343 combinations", "expected at most 256 per job")
    assert dsl.parse(one_job("matrix: { a: [1, 2, 3, 4], b: [1, 2, 3, 4], c: [1, 2, 3, 4], d: [1, 2, 3, 4] }\n"))


def test_cron_is_checked():
    text = pipeline("""
        triggers:
          - schedule: { cron: "0 2 * *" }
          - schedule: { cron: "61 * * * *" }
          - schedule: { cron: " 0   2 * * * " }
        stages: [ { name: A, jobs: [ { name: J, steps: [ { run: x } ] } ] } ]
        """)
    found = problems(text)
    assert [(line, column, message) for line, column, message, _ in found] == [
        (4, 23, "'0 2 * *' is not a cron expression"), (5, 23, "'61 * * * *' is not a cron expression")]
    assert "five fields" in found[0][3]
    fixed = text.replace('"0 2 * *"', '"0 2 * * *"').replace("61", "59")
    assert dsl.parse(fixed).triggers[2].cron == "0 2 * * *"


def test_duplicate_stage_and_job_names():
    found = problems(pipeline("""
        stages:
          - name: A
            jobs:
              - { name: J, steps: [ { run: x } ] }
              - { name: J, steps: [ { run: x } ] }
          - name: A
            jobs: [ { name: J, steps: [ { run: x } ] } ]
        """))
    assert found == [
        (7, 17, "two jobs are named 'J'", "job names must be unique within a stage; the first is at line 6, column 17"),
        (8, 11, "two stages are named 'A'", "stage names must be unique; the first is at line 4, column 11"),
    ]


def test_image_and_services_need_an_executor_that_has_them():
    assert only(one_job("image: python:3.12\n")) == (
        7, 9, "`image` needs the docker or kubernetes executor; this job runs on the local executor",
        "set `executor: docker` on the job, or remove `image`")
    assert only(one_job("executor: local\nservices: [redis]\n"))[:3] == (
        8, 9, "`services` needs the docker or kubernetes executor; this job runs on the local executor")
    assert dsl.parse(one_job("executor: kubernetes\nimage: python:3.12\nservices: [redis]\n"))


def test_steps_are_either_run_or_artifact():
    body = one_job("").replace('steps: [ { run: "true" } ]', "steps:\n          - { run: a, artifact: { path: a, name: b } }\n"
                                                             "          - make test\n          - {}\n")
    found = problems(body)
    assert [(line, column) for line, column, *_ in found] == [(8, 13), (9, 13), (10, 13)]
    assert found[0][2] == 'step 1 of job "J" is a mapping' and "either `run` or `artifact`" in found[0][3]
    assert found[1][2] == 'step 2 of job "J" is "make test"'


def test_triggers_are_one_event_each():
    found = problems(pipeline("""
        triggers:
          - pusj: {}
          - { push: {}, manual: {} }
          - push: { branches: main }
          - pull_request: { types: [merged] }
          - schedule: {}
        stages: [ { name: A, jobs: [ { name: J, steps: [ { run: x } ] } ] } ]
        """))
    assert [(line, column, message) for line, column, message, _ in found] == [
        (4, 5, "unknown key `pusj` in trigger 1"),
        (5, 5, "trigger 2 has 2 keys"),
        (6, 23, "`push.branches` of trigger 3 is \"main\""),
        (7, 29, "item 1 of `pull_request.types` of trigger 4 is \"merged\""),
        (8, 15, "`schedule` of trigger 5 has no `cron`"),
    ]


def test_when_accepts_a_string_or_list_and_checks_events():
    found = problems(one_job("when: { event: pushed, branch: [], nope: 1 }\n"))
    assert [(line, column) for line, column, *_ in found] == [(7, 24), (7, 40), (7, 44)]
    assert "push, tag, pull_request, schedule, manual" in found[0][3]


def test_needs_must_be_a_list_of_names():
    assert only(one_job("needs: Build\n"))[:3] == (7, 16, '`needs` of job "J" is "Build"')
    assert only(one_job("needs: [A, A]\n"))[:3] == (7, 16, '`needs` of job "J" lists a value twice')


def test_empty_file_and_empty_lists():
    assert only("") == (1, 1, "the file is empty", 'expected `version: "1.0"`, `name:` and `stages:`')
    assert only("# only a comment\n")[2] == "the file is empty"
    assert only(HEAD + "stages: []\n") == (3, 9, "`stages` is empty", "expected at least one item")


def test_more_than_one_document():
    line, column, message, hint = only(EXAMPLE + "---\nname: again\n")
    assert (line, column, message) == (27, 1, "YAML: found another document (the first at line 1)") and "---" in hint


def test_not_utf8_is_placed():
    assert only(HEAD.encode() + b"stages:\n  - name: \xff\n") == (4, 11, "the file is not UTF-8 text", "save the file as UTF-8")
    assert only(HEAD + "stages:\n  - name: \ud800\n")[:3] == (4, 11, "the text holds a character that is not Unicode")


def test_control_characters_are_placed():
    assert only(HEAD + "stages: [ \x07 ]\n")[:2] == (3, 11)


def test_aliases_problems_are_placed():
    assert only(HEAD + "stages: *nothing\n") == (3, 9, "YAML: found undefined alias *nothing",
                                                  "define the anchor (&name) before the alias (*name) that refers to it")
    assert only(HEAD + "stages: &s [ *s ]\n")[:3] == (3, 14, "the alias *s is inside the value it refers to")
    assert only(HEAD + "x: &a 1\nstages: &a []\n")[:3] == (4, 9, "YAML: found duplicate anchor &a (the first at line 3)")
    assert only(HEAD + "stages: [ *nope ]\n")[:3] == (3, 11, "YAML: found undefined alias *nope")


def test_complex_keys_are_refused():
    assert only(HEAD + "? [a, b]\n: c\nstages: []\n")[:3] == (3, 3, "a key must be plain text, not a list or mapping")


def test_merge_keys_are_not_supported_and_say_so():
    found = problems(pipeline("""
        x: &d { retry: 1 }
        stages: [ { name: A, jobs: [ { <<: *d, name: J, steps: [ { run: x } ] } ] } ]
        """))
    assert (4, 32, 'unknown key `<<` in job "J"', "merge keys (<<) are not supported: write the keys out") in found


def test_every_problem_is_reported_at_once_in_file_order():
    found = problems(pipeline("""
        stages:
          - name: A
            jobs:
              - name: J
                retry: 99
                executor: dokcer
                steps: [ { run: "" } ]
          - name: B
            jobs: []
        """))
    assert [(line, column) for line, column, *_ in found] == [(7, 16), (8, 19), (9, 25), (11, 11)]
    assert str(PipelineError([])) == ""


def test_problem_strings_are_file_line_column_message_hint():
    with pytest.raises(PipelineError) as info:
        dsl.parse(one_job("retry: 99\n"), "ci.yaml")
    assert str(info.value) == 'ci.yaml:7:16: `retry` of job "J" is 99 (expected at most 10)'


def test_the_schema_is_valid_draft_2020_12_with_descriptions_and_closed_mappings():
    jsonschema.Draft202012Validator.check_schema(schema.PIPELINE_SCHEMA)
    assert schema.PIPELINE_SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema.PIPELINE_SCHEMA["additionalProperties"] is False
    stage = schema.PIPELINE_SCHEMA["properties"]["stages"]["items"]
    job = stage["properties"]["jobs"]["items"]
    for mapping in (stage, job, job["properties"]["steps"]["items"]):
        assert mapping["additionalProperties"] is False and mapping["description"]
    assert '"$id": "https://x.test/schema.json"' in schema.schema_json("https://x.test/schema.json")
