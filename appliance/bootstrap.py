"""First-start work shared by ``prts up`` and ``prts migrate``: schema and seed data."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from appliance import migrate, repos
from appliance.accounts import organisations, passwords, users
from appliance.context import Appliance
from appliance.models import Project, User
from appliance.pipelines import runs
from appliance.storage.analytics import migrate_analytics

ADMIN_NAME = "admin"
DEMO_ORG = "demo"
DEMO_PROJECT = "hello-prts"
DEMO_PIPELINE = """\
# The demo project's pipeline: edit it, push, and watch it run.
version: "1.0"
name: Hello PRTS
triggers:
  - push: { branches: [main] }
  - manual: {}
variables: { GREETING: Hello }
stages:
  - name: Build
    jobs:
      - name: Test
        matrix: { python: ["3.11", "3.12"] }
        timeout: 5m
        steps:
          - run: echo "$GREETING from the python $python leg of run $PRTS_RUN_NUMBER"
          - run: mkdir -p dist && echo "built for $python" > "dist/build-$python.txt"
          - artifact: { path: dist/, name: build }
  - name: Deploy
    needs: [Build]
    when: { branch: main }
    jobs:
      - name: Release
        environment: production
        steps: [ { run: "cat dist/*.txt && echo released $PRTS_COMMIT_SHA" } ]
"""
DEMO_README = "# hello-prts\n\nA demo project seeded on first start. Its pipeline is in .prts/pipeline.yaml.\n"


@dataclass
class BootstrapResult:
    admin_password: str | None = None  # set only when the admin was created now
    demo_project: str | None = None


def migrate_all(app: Appliance) -> None:
    migrate.upgrade(app.db)
    migrate_analytics(app.analytics)


def ensure_admin_and_demo(app: Appliance) -> BootstrapResult:
    """On a database without users: create the admin with a one-time password and a demo
    project. On every later start: nothing, so deleted demo data stays deleted."""
    result = BootstrapResult()
    with app.db.session() as s:
        if s.scalar(sa.select(sa.func.count(User.id))):
            return result
        result.admin_password = passwords.generate_password()
        admin = users.create_user(s, ADMIN_NAME, result.admin_password, is_admin=True, one_time=True)
        if not s.scalar(sa.select(sa.func.count(Project.id))):
            org = organisations.find_organisation(s, DEMO_ORG) or organisations.create_organisation(
                s, DEMO_ORG, "Examples to look around with"
            )
            project = organisations.create_project(
                s, org, DEMO_PROJECT, description="A demo project seeded on first start", creator=admin
            )
            result.demo_project = project.path
            demo_id = project.id
    if result.demo_project:
        _seed_demo_repository(app, demo_id)
    return result


def _seed_demo_repository(app: Appliance, project_id: int) -> None:
    """Give the demo project a repository with a pipeline and start its first run, so a new
    appliance shows a pipeline at work within seconds."""
    repo = repos.ensure_repository(app.config, project_id)
    sha = repos.commit_files(repo, "main", {".prts/pipeline.yaml": DEMO_PIPELINE.encode(),
                                            "README.md": DEMO_README.encode()}, "Seed the demo project")
    runs.trigger(app, project_id, "refs/heads/main", sha, "push", [".prts/pipeline.yaml", "README.md"])
