"""The OpenAPI 3.1 document: valid against the specification's own schema (the copy
Schemathesis bundles), and describing exactly the routes the app serves under /api/v1."""

from __future__ import annotations

import re

import jsonschema
from schemathesis.specs.openapi.definitions import OPENAPI_31

METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


def test_the_document_is_valid_openapi_3_1(client):
    answer = client.get("/api/v1/openapi.json")  # public: no token needed to discover the API
    assert answer.status_code == 200
    document = answer.get_json()
    assert document["openapi"].startswith("3.1")
    jsonschema.Draft202012Validator(OPENAPI_31).validate(document)
    # every schema it uses is there
    refs = set(re.findall(r'"\$ref": ?"#/components/schemas/([^"]+)"', answer.get_data(as_text=True)))
    assert refs and refs <= set(document["components"]["schemas"])


def test_every_route_under_api_v1_is_documented_and_every_documented_one_exists(flask_app, client):
    document = client.get("/api/v1/openapi.json").get_json()
    documented = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    served = set()
    for rule in flask_app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/"):
            continue
        path = re.sub(r"<(?:[a-z]+:)?(\w+)>", r"{\1}", rule.rule.removeprefix("/api/v1"))
        served |= {(method, path) for method in rule.methods & METHODS}
    assert served == documented


def test_declared_scopes_and_errors(client):
    document = client.get("/api/v1/openapi.json").get_json()
    operations = [op for item in document["paths"].values() for op in item.values()]
    for op in operations:
        if op["security"]:
            assert op["x-required-scope"] in ("read", "write", "admin"), op["operationId"]
            assert {"401", "403", "404"} <= set(op["responses"]), op["operationId"]
    scopes = {op["operationId"]: op.get("x-required-scope") for op in operations}
    assert scopes["start_run"] == scopes["cancel_run"] == scopes["create_token"] == "write"
    assert scopes["list_users"] == "admin" and scopes["get_run"] == "read"
    assert scopes["openapi_document"] is None
