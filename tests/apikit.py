"""A world for the API tests: two organisations with a project each (a real repository and
a pipeline with a manual trigger), people with roles on the first, a run whose job has a
stored log and an artifact, and tokens made by the real token service."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import sqlalchemy as sa

from appliance.accounts import organisations, tokens, users
from appliance.models import PipelineJob, Project, Role, User
from appliance.pipelines import artifacts, runs
from appliance.pipelines.logs import LogPump
from conftest import ADMIN_PASSWORD, make_config
from pipelinekit import commit, make_project

PIPELINE = """
version: "1.0"
name: API
triggers:
  - manual: {}
stages:
  - name: Build
    jobs:
      - name: compile
        steps: [ { run: "echo compiled" } ]
      - name: lint
        steps: [ { run: "echo linted" } ]
"""

# Line lengths vary so that byte offsets and chunk borders fall mid-line.
LOG = b"".join(f"line {n} {'x' * (n % 37)}\n".encode() for n in range(1, 400))


@dataclasses.dataclass
class World:
    project_id: int  # acme/web
    other_project_id: int  # globex/secret
    run_id: int
    job_id: int
    other_run_id: int
    other_job_id: int
    artifact_sha256: str


def user(app, username: str) -> User:
    with app.db.session() as s:
        return s.scalar(sa.select(User).where(User.username == username))


def token(app, username: str, scope: str, *, project_id: int | None = None, days: int | None = None) -> str:
    with app.db.session() as s:
        owner = users.get_user(s, username)
        project = s.get(Project, project_id) if project_id else None
        return tokens.create_token(s, owner, f"{scope} test", scope, project=project, expires_in_days=days)[1]


def bearer(text: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {text}"}


def _started(app, project_id: int) -> tuple[int, int]:
    with app.db.session() as s:
        project = s.get(Project, project_id)
        _ = project.organisation
        root = users.get_user(s, "root")
    run = runs.start_manual(app, project, "main", root)
    with app.db.session() as s:
        job_id = s.scalar(sa.select(PipelineJob.id).where(PipelineJob.run_id == run.id).order_by(PipelineJob.id))
    return run.id, job_id


def build(app, tmp_path: Path) -> World:
    with app.db.session() as s:
        if users.find_user(s, "root") is None:
            users.create_user(s, "root", ADMIN_PASSWORD, is_admin=True)
    web = make_project(app, "acme", "web")
    secret = make_project(app, "globex", "secret")
    for project_id in (web, secret):
        commit(app, project_id, {".prts/pipeline.yaml": PIPELINE})
    with app.db.session() as s:
        project = s.get(Project, web)
        for username, role in (("viewer", Role.VIEWER), ("dev", Role.DEVELOPER), ("maint", Role.MAINTAINER),
                               ("outsider", None)):
            person = users.create_user(s, username, ADMIN_PASSWORD, email=f"{username}@example.test")
            if role is not None:
                organisations.grant(s, person, project, role)
    run_id, job_id = _started(app, web)
    other_run_id, other_job_id = _started(app, secret)

    spool = tmp_path / "job.log"
    spool.write_bytes(LOG)
    pump = LogPump(app, job_id, 1, spool, [])
    pump.chunk_bytes = 1000  # several chunks, so ranges cross chunk borders
    pump.stop()

    workspace = tmp_path / "ws"
    (workspace / "dist").mkdir(parents=True)
    (workspace / "dist" / "app.txt").write_text("built\n")
    collected = artifacts.collect(workspace, "dist/", "site", tmp_path / "site.tar.gz", max_bytes=1 << 20)
    with app.db.session() as s:
        artifacts.store(app, s, s.get(PipelineJob, job_id), collected, "site")
    return World(web, secret, run_id, job_id, other_run_id, other_job_id, collected.sha256)


@pytest.fixture
def config(tmp_path, db_values):
    """The API tests run on SQLite and on a real PostgreSQL server."""
    return make_config(tmp_path / "data", **db_values)


@pytest.fixture
def world(appliance, tmp_path) -> World:
    return build(appliance, tmp_path)
