"""Helpers for pipeline tests: a project with a real git repository, and a queue drain.

``commit(app, project_id, files)`` writes files into the project's bare repository with
the real git client (a temporary clone, a commit, a push), as a developer would.
``drain(app)`` runs the queued Huey tasks in this process, one at a time, until the queue
is empty: the same task code the consumer runs, without a consumer's timing.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from appliance import repos
from appliance.accounts import organisations
from appliance.models import Project

GIT_ENV = {"GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@example.test", "GIT_COMMITTER_NAME": "Dev",
           "GIT_COMMITTER_EMAIL": "dev@example.test", "GIT_CONFIG_GLOBAL": "/dev/null", "HOME": "/nonexistent"}


def git(*args: str, cwd: Path | None = None) -> str:
    env = {**os.environ, **GIT_ENV}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def make_project(app, org: str = "acme", name: str = "web") -> int:
    with app.db.session() as s:
        organisation = organisations.find_organisation(s, org) or organisations.create_organisation(s, org)
        project = organisations.create_project(s, organisation, name)
        project_id = project.id
    repos.ensure_repository(app.config, project_id)
    return project_id


def commit(app, project_id: int, files: dict[str, str | None], *, branch: str = "main",
           message: str = "change") -> str:
    """Commit ``files`` (None deletes) on ``branch`` of the project's repository; returns the sha."""
    repo = repos.repository_path(app.config, project_id)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "w"
        git("clone", "--quiet", str(repo), str(work))
        if git("ls-remote", "--heads", str(repo), branch):
            git("checkout", "--quiet", branch, cwd=work)
        else:
            git("checkout", "--quiet", "--orphan", branch, cwd=work)
        for path, content in files.items():
            target = work / path
            if content is None:
                target.unlink()
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        git("add", "--all", cwd=work)
        git("commit", "--quiet", "--allow-empty", "-m", message, cwd=work)
        git("push", "--quiet", "origin", f"HEAD:refs/heads/{branch}", cwd=work)
        return git("rev-parse", "HEAD", cwd=work)


def drain(app, limit: int = 100_000) -> int:
    """Run queued tasks in this process until the queue is empty; returns how many ran."""
    huey = app.huey
    app.tasks  # registers the task classes so dequeued messages can be decoded
    ran = 0
    while ran < limit:
        task = huey.dequeue()
        if task is None:
            return ran
        huey.execute(task)
        ran += 1
    raise AssertionError(f"the queue did not drain after {limit} tasks")


def project(app, project_id: int) -> Project:
    with app.db.session() as s:
        return s.get(Project, project_id)


def job_row(app, *, status: str = "running", org: str = "acme", project: str = "web",
            name: str = "build") -> tuple[int, int]:
    """Bare organisation, project, run and job rows, for tests of what hangs off a job
    (logs, artifacts) without running one; returns (run id, job id)."""
    import sqlalchemy as sa

    from appliance.models import Organisation, PipelineJob, PipelineRun

    with app.db.session() as s:
        organisation = s.scalar(sa.select(Organisation).where(Organisation.name == org))
        if organisation is None:
            organisation = Organisation(name=org)
            s.add(organisation)
            s.flush()
        row = Project(organisation_id=organisation.id, name=project)
        s.add(row)
        s.flush()
        run = PipelineRun(project_id=row.id, number=1, event="push", ref="refs/heads/main", commit_sha="0" * 40,
                          status=status)
        s.add(run)
        s.flush()
        job = PipelineJob(run_id=run.id, project_id=row.id, key=name, name=name, stage="test", stage_index=0,
                          spec='{"steps": [], "env": []}', timeout_seconds=600, status=status)
        s.add(job)
        s.flush()
        return run.id, job.id
