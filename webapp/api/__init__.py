"""JSON API v1 under ``/api/v1``: projects, runs, jobs, logs, artifacts, variables (names),
users, teams and your tokens, with its OpenAPI 3.1 document at ``/api/v1/openapi.json``.

Each module declares its operations with ``webapp.api.operations.operation``; importing
them registers their routes on ``bp``. See docs/api.md.
"""

from webapp.api import jobs, openapi, people, projects, runs, tokens  # noqa: F401  (registers the routes)
from webapp.api.errors import answer_api_errors_in_json
from webapp.api.operations import bp

__all__ = ["answer_api_errors_in_json", "bp"]
