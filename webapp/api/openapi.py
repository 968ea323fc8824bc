"""``/api/v1/openapi.json``: the OpenAPI 3.1 document, built from the operation declarations.

pydantic writes JSON Schema draft 2020-12, the dialect of OpenAPI 3.1, so the models that
validate requests and shape answers are the document's schemas as they are.
"""

from __future__ import annotations

import functools

from flask import current_app, jsonify, url_for
from pydantic.json_schema import models_json_schema

from webapp.api.operations import OPERATIONS, Operation, operation

REF = "#/components/schemas/{model}"
PIPELINE_SCHEMA_PATH = "/schema/pipeline.json"  # served by webapp/editor.py, described here


def _models(ops: list[Operation]) -> list[tuple[type, str]]:
    pairs = []
    for op in ops:
        pairs += [(m, "validation") for m in (op.path_model, op.query_model, op.body_model) if m is not None]
        pairs += [(a.model, "serialization") for a in op.answers if a.model is not None]
    return list(dict.fromkeys(pairs))


def _parameters(model, where: str, refs: dict, defs: dict) -> list[dict]:
    if model is None:
        return []
    schema = defs[refs[(model, "validation")]["$ref"].rsplit("/", 1)[1]]
    required = set(schema.get("required", ()))
    out = []
    for name, prop in schema["properties"].items():
        prop = dict(prop)
        description = prop.pop("description", None)
        prop.pop("title", None)
        param = {"name": name, "in": where, "required": where == "path" or name in required, "schema": prop}
        if description:
            param["description"] = description
        out.append(param)
    return out


def _operation(op: Operation, refs: dict, defs: dict) -> dict:
    out = {"operationId": op.endpoint, "summary": op.summary, "tags": [op.tag],
           "parameters": _parameters(op.path_model, "path", refs, defs)
           + _parameters(op.query_model, "query", refs, defs) + list(op.headers),
           "responses": {}}
    if op.description:
        out["description"] = op.description
    if op.scope is None:
        out["security"] = []
    else:
        out["security"] = [{"bearer": []}, {"session": []}]
        out["x-required-scope"] = op.scope
    if op.body_model is not None:
        out["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": refs[(op.body_model, "validation")]}}}
    for answer in op.answers:
        entry = {"description": answer.description}
        if answer.model is not None:
            entry["content"] = {answer.media_type: {"schema": refs[(answer.model, "serialization")]}}
        elif answer.status != 204:
            schema = {"type": "string", "contentMediaType": answer.media_type}
            if answer.media_type != "text/plain":
                schema["contentEncoding"] = "binary"
            entry["content"] = {answer.media_type: {"schema": schema}}
        out["responses"][str(answer.status)] = entry
    return out


@functools.cache
def _paths_and_schemas() -> tuple[dict, dict]:
    refs, top = models_json_schema(_models(OPERATIONS), ref_template=REF)
    defs = top.get("$defs", {})
    paths: dict[str, dict] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, refs, defs)
    paths[PIPELINE_SCHEMA_PATH] = {"get": {
        "operationId": "pipeline_schema", "summary": "The JSON Schema of .prts/pipeline.yaml", "tags": ["pipelines"],
        "security": [],
        "responses": {"200": {"description": "A JSON Schema (draft 2020-12)",
                              "content": {"application/json": {"schema": {"type": "object"}}}}}}}
    return paths, defs


def document() -> dict:
    paths, schemas = _paths_and_schemas()
    return {
        "openapi": "3.1.0",
        "info": {"title": "PRTS API", "version": "1",
                 "description": "The JSON API of the PRTS appliance. See docs/api.md for authentication, "
                                "scopes, pagination and errors."},
        "servers": [{"url": url_for("api.openapi_document", _external=True).rsplit("/openapi.json", 1)[0]}],
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "A personal API token (prts_...), made at /user/tokens or by "
                                          "`prts token create`. Its scope bounds what it may do."},
                "session": {"type": "apiKey", "in": "cookie", "name": current_app.config["SESSION_COOKIE_NAME"],
                            "description": "A signed-in browser session; requests that change something "
                                           "send the CSRF token in X-CSRFToken."},
            },
        },
    }


@operation("GET", "/openapi.json", summary="This document", tag="meta", scope=None)
def openapi_document(call):
    response = jsonify(document())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
