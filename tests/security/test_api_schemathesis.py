"""Schemathesis (property-based tests from the OpenAPI document) against the real app over
WSGI, with a site administrator's admin-scope token and a seeded world: for every
operation, generated requests — valid ones, invalid ones, and valid ones aimed at objects
that exist — never get a 5xx, and every answer matches the schema the document gives for
its status code. On SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from apikit import bearer, config, token, world  # noqa: F401  (fixtures)
from appliance.models import Team, TeamMember
from appliance.accounts import users

CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
EXAMPLES = 25  # per operation and mode: the whole run stays within a minute or two


def _seed_team(app) -> None:
    from appliance.accounts import organisations

    with app.db.session() as s:
        team = Team(organisation_id=organisations.get_organisation(s, "acme").id, name="builders")
        s.add(team)
        s.flush()
        s.add(TeamMember(team_id=team.id, user_id=users.get_user(s, "dev").id))


def _known(world, names: list[str]) -> dict:
    """Path parameters naming objects of the seeded world."""
    values = {"org": "acme", "project": "web", "run_id": world.run_id, "job_id": world.job_id, "artifact": "site",
              "username": "dev", "team": "builders"}
    return {name: values[name] for name in names if name in values}


def _run(operation, strategy, flask_app, headers) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def check(case):
        response = case.call(headers=headers)
        case.validate_response(response, checks=CHECKS, headers=headers)

    check()


def test_no_generated_request_gets_a_5xx_or_an_answer_off_its_schema(appliance, flask_app, world):
    _seed_team(appliance)
    headers = bearer(token(appliance, "root", "admin"))
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", flask_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    # Revoking runs last: a generated id may well be the id of the token the run uses.
    operations.sort(key=lambda op: op.method.upper() == "DELETE")
    assert len(operations) >= 20
    for operation in operations:
        names = [p.name for p in operation.path_parameters]
        strategies = [("valid", operation.as_strategy(schemathesis.GenerationMode.POSITIVE)),
                      ("invalid", operation.as_strategy(schemathesis.GenerationMode.NEGATIVE))]
        if names:
            strategies.append(("existing objects", operation.as_strategy(
                schemathesis.GenerationMode.POSITIVE, path_parameters=_known(world, names))))
        for kind, strategy in strategies:
            try:
                _run(operation, strategy, flask_app, headers)
            except Unsatisfiable:
                # An operation without parameters or body has no invalid request to make.
                assert kind == "invalid", f"{operation.method.upper()} {operation.path}: no {kind} request"
            except AssertionError as exc:  # schemathesis reports failed checks as AssertionError subclasses
                pytest.fail(f"{operation.method.upper()} {operation.path} ({kind} requests): {exc}")
