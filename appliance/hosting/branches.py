"""The branches of a project's repository, and its default branch."""

from __future__ import annotations

from sqlalchemy import orm

from appliance import repos
from appliance.errors import ValidationError
from appliance.models import Project


def list_branches(config, project_id: int) -> list[str]:
    repo = repos.repository_path(config, project_id)
    if not (repo / "HEAD").exists():
        return []
    out = repos.git(repo, "for-each-ref", "--format=%(refname:lstrip=2)", "--sort=refname", "refs/heads/")
    return [name for name in out.decode("utf-8", errors="replace").splitlines() if name]


def branch_exists(config, project_id: int, branch: str) -> bool:
    repo = repos.repository_path(config, project_id)
    return (repo / "HEAD").exists() and bool(
        repos.git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}", check=False).strip())


def set_default_branch(config, session: orm.Session, project: Project, branch: str) -> None:
    """Make ``branch`` the default: the one clones check out, pipelines' schedules read and
    new branches are compared with. It must exist unless the repository is still empty."""
    branch = repos.check_ref((branch or "").strip(), "default_branch")
    branches = list_branches(config, project.id)
    if branches and branch not in branches:
        raise ValidationError("default_branch", f"there is no branch {branch!r} in the repository")
    repo = repos.ensure_repository(config, project.id, project.default_branch)
    repos.git(repo, "symbolic-ref", "HEAD", f"refs/heads/{branch}")
    project.default_branch = branch
