"""The JSON Schema of `.prts/pipeline.yaml`: the one description of the file's shape.

``dsl.parse()`` validates every file against ``PIPELINE_SCHEMA`` and then checks what a
schema cannot say (unique names, known ``needs``, cron syntax, executor features, limits).
The same document is served at ``/api/v1/schema/pipeline.json`` for editors: with the YAML
language server, ``# yaml-language-server: $schema=<url>`` on the file's first line gives
completion and inline errors. ``errorMessage`` (the keyword editors and ajv-errors know)
holds the message a person reads when a pattern or a choice fails.
"""

from __future__ import annotations

import json
from typing import Any

from appliance.pipelines.spec import EVENTS, EXECUTORS

VERSION = "1.0"

IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"
# Names are shown on pages and in logs and used in `needs`: one line of printable text.
# A stage name may not hold "/", which separates the stage from the job in `Stage/Job`.
JOB_NAME = r"^[^\x00-\x1f\x7f]+$"
STAGE_NAME = r"^[^\x00-\x1f\x7f/]+$"
ARTIFACT_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"  # the rule of appliance.pipelines.artifacts
DURATION = r"^(?=[0-9])([0-9]+h)?([0-9]+m)?([0-9]+s)?$"
MAX_TIMEOUT_SECONDS = 24 * 3600
MAX_RETRY = 10
MAX_NAME = 100

_SCALAR = {"type": ["string", "number", "boolean"]}
_DURATION_MESSAGE = "a duration such as 90s, 10m or 1h30m, or a whole number of seconds (at most 24h)"


def _globs(what: str) -> dict:
    return {
        "type": "array",
        "description": f"{what}: glob patterns (`*` within a path segment, `**` across segments); any one may match.",
        "items": {"type": "string", "minLength": 1, "maxLength": 500},
        "maxItems": 100,
    }


def _one_or_many(description: str, item: dict, message: str) -> dict:
    return {"description": description,
            "anyOf": [item, {"type": "array", "items": item, "minItems": 1, "maxItems": 100}],
            "errorMessage": message}


_CONDITION = {
    "type": "object",
    "description": "Run only when every given field matches (each field's list is a choice); otherwise the "
                   "job is recorded as skipped and its dependents still run.",
    "additionalProperties": False,
    "minProperties": 1,
    "properties": {
        "branch": _one_or_many("Branch glob(s) the run's branch must match.",
                               {"type": "string", "minLength": 1, "maxLength": 500},
                               "a branch pattern or a list of them"),
        "event": _one_or_many("Event(s) that started the run.", {"enum": list(EVENTS)},
                              f"an event or a list of events, each one of {', '.join(EVENTS)}"),
        "paths": _globs("Changed paths; one changed path must match (unknown changes, as in manual runs, pass)"),
    },
}

_VARIABLES = {
    "type": "object",
    "description": "Environment variables of every step. Values are text; the shell expands `$NAME` when a "
                   "step runs, the appliance never substitutes anything in the file.",
    "maxProperties": 200,
    "propertyNames": {"allOf": [
        {"pattern": IDENTIFIER, "maxLength": 100,
         "errorMessage": "a name of letters, digits and `_`, not starting with a digit"},
        {"not": {"pattern": "^PRTS_"},
         "errorMessage": "a name not starting with PRTS_ (reserved for the appliance)"},
    ]},
    "additionalProperties": {**_SCALAR, "maxLength": 65536,
                             "errorMessage": "a string, number or boolean"},
}

_PUSH = {
    "type": ["object", "null"],
    "description": "A push to a branch (or, with `tags`, of a tag).",
    "additionalProperties": False,
    "properties": {
        "branches": _globs("Branches"),
        "tags": _globs("Tags (a push trigger with only `tags` ignores branch pushes)"),
        "paths": _globs("Run only if a changed path matches"),
        "paths_ignore": _globs("Do not run if every changed path matches"),
    },
}

_PULL_REQUEST = {
    "type": ["object", "null"],
    "description": "A pull request opened, updated or reopened (the `types` by default).",
    "additionalProperties": False,
    "properties": {
        "branches": _globs("Target branches"),
        "types": {"type": "array", "minItems": 1, "uniqueItems": True,
                  "items": {"enum": ["opened", "synchronize", "reopened", "closed"],
                            "errorMessage": "one of opened, synchronize, reopened, closed"}},
        "paths": _globs("Run only if a changed path matches"),
        "paths_ignore": _globs("Do not run if every changed path matches"),
    },
}

_TRIGGER = {
    "type": "object",
    "description": "One event that starts the pipeline.",
    "minProperties": 1,
    "maxProperties": 1,
    "errorMessage": "one of push, pull_request, tag, schedule or manual, e.g. `- push: { branches: [main] }`",
    "additionalProperties": False,
    "properties": {
        "push": _PUSH,
        "pull_request": _PULL_REQUEST,
        "tag": {"type": ["object", "null"], "description": "A tag pushed.", "additionalProperties": False,
                "properties": {"tags": _globs("Tags")}},
        "schedule": {"type": "object", "description": "Times to run, in UTC.", "additionalProperties": False,
                     "required": ["cron"],
                     "properties": {"cron": {"type": "string", "maxLength": 200,
                                             "description": "Five cron fields: minute hour day-of-month month "
                                                            "day-of-week, e.g. \"0 2 * * *\"."}}},
        "manual": {"type": ["object", "null"], "description": "Started by a person (page, API or CLI).",
                   "additionalProperties": False, "properties": {}},
    },
}

_STEP = {
    "type": "object",
    "description": "A shell script (`run`) or the upload of an artifact (`artifact`).",
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": MAX_NAME, "pattern": JOB_NAME,
                 "errorMessage": "one line of text"},
        "run": {"type": "string", "minLength": 1, "maxLength": 65536,
                "description": "A script run with `sh -e` in the job's workspace."},
        "artifact": {
            "type": "object",
            "description": "Upload a file or directory of the workspace; later jobs of the run receive it.",
            "additionalProperties": False,
            "required": ["path", "name"],
            "properties": {
                "path": {"type": "string", "minLength": 1, "maxLength": 1000,
                         "description": "Relative to the workspace; a directory is archived whole."},
                "name": {"type": "string", "pattern": ARTIFACT_NAME,
                         "errorMessage": "1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit"},
            },
        },
    },
    "oneOf": [{"required": ["run"]}, {"required": ["artifact"]}],
    "errorMessage": "a mapping with either `run` or `artifact`, e.g. `- run: make test`",
}

_NEEDS = {
    "type": "array",
    "uniqueItems": True,
    "maxItems": 100,
    "items": {"type": "string", "minLength": 1, "maxLength": 2 * MAX_NAME + 1},
}

_JOB = {
    "type": "object",
    "description": "Steps run one after another in one workspace.",
    "additionalProperties": False,
    "required": ["name", "steps"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": MAX_NAME, "pattern": JOB_NAME,
                 "description": "Unique within its stage.", "errorMessage": "one line of text"},
        "steps": {"type": "array", "minItems": 1, "maxItems": 200, "items": _STEP},
        "matrix": {
            "type": "object",
            "description": "Run the job once per combination of values; each key is exported as a variable.",
            "minProperties": 1,
            "maxProperties": 16,
            "propertyNames": {"pattern": IDENTIFIER, "maxLength": 100,
                              "errorMessage": "a name of letters, digits and `_`, not starting with a digit"},
            "additionalProperties": {"type": "array", "minItems": 1, "maxItems": 256,
                                     "items": {**_SCALAR, "errorMessage": "a string, number or boolean"}},
        },
        "needs": {**_NEEDS, "description": "Jobs (`Stage/Job`, or a job name unique in the pipeline) or stages "
                                           "this job waits for, besides its stage's needs."},
        "timeout": {"type": ["string", "integer"], "pattern": DURATION, "minimum": 1,
                    "maximum": MAX_TIMEOUT_SECONDS, "errorMessage": _DURATION_MESSAGE,
                    "description": "How long the job may run: 90s, 10m, 1h30m or seconds; at most 24h."},
        "retry": {"type": "integer", "minimum": 0, "maximum": MAX_RETRY,
                  "description": "Run a failed job again, up to this many times."},
        "allow_failure": {"type": "boolean", "description": "A failure does not fail the run nor stop dependents."},
        "environment": {"type": "string", "minLength": 1, "maxLength": MAX_NAME,
                        "description": "The deployment environment this job deploys to."},
        "variables": _VARIABLES,
        "when": _CONDITION,
        "executor": {"enum": list(EXECUTORS), "description": "Where the job runs; the appliance's default when unset.",
                     "errorMessage": f"one of {', '.join(EXECUTORS)}"},
        "image": {"type": "string", "minLength": 1, "maxLength": 500,
                  "description": "Container image (docker and kubernetes executors)."},
        "services": {"type": "array", "maxItems": 20, "items": {"type": "string", "minLength": 1, "maxLength": 500},
                     "description": "Service container images started beside the job (docker and kubernetes)."},
    },
}

_STAGE = {
    "type": "object",
    "description": "A group of jobs; by default a stage waits for the stage before it.",
    "additionalProperties": False,
    "required": ["name", "jobs"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": MAX_NAME, "pattern": STAGE_NAME,
                 "description": "Unique in the pipeline.",
                 "errorMessage": "one line of text without `/`"},
        "needs": {**_NEEDS, "description": "Stages this stage waits for; `[]` for none. Unset: the previous stage."},
        "parallel": {"type": "boolean", "description": "false: the stage's jobs run one after another, in order."},
        "when": _CONDITION,
        "jobs": {"type": "array", "minItems": 1, "maxItems": 1000, "items": _JOB},
    },
}

PIPELINE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "PRTS pipeline (.prts/pipeline.yaml)",
    "description": "Stages of jobs of steps, the events that start them, and the conditions they run under. "
                   "No template language: text is taken literally; the shell expands $VARIABLES at run time.",
    "type": "object",
    "additionalProperties": False,
    "required": ["version", "name", "stages"],
    "properties": {
        "version": {"const": VERSION, "description": "The file format's version.",
                    "errorMessage": f"\"{VERSION}\" in quotes (unquoted, YAML reads 1.0 as a number)"},
        "name": {"type": "string", "minLength": 1, "maxLength": MAX_NAME, "pattern": JOB_NAME,
                 "errorMessage": "one line of text"},
        "triggers": {"type": "array", "maxItems": 100, "items": _TRIGGER,
                     "description": "Events that start the pipeline. Without this key: pushes and manual starts."},
        "variables": _VARIABLES,
        "stages": {"type": "array", "minItems": 1, "maxItems": 100, "items": _STAGE},
    },
}


def schema_json(schema_id: str | None = None) -> str:
    """The schema as served to editors, indented for people; ``schema_id`` (the URL it is
    served at) becomes its ``$id``."""
    document = {"$schema": PIPELINE_SCHEMA["$schema"], **({"$id": schema_id} if schema_id else {}), **PIPELINE_SCHEMA}
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
