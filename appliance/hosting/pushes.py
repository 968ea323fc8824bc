"""What happens after refs change: a push over HTTP, or a mirror fetched for a webhook.

For each updated ref the pipeline engine's ``trigger`` is called with the event it is: a
branch update fires ``push`` triggers, a tag fires ``tag`` triggers, and a branch with an
open merge request also fires ``pull_request`` triggers (action ``synchronize``). Changed
paths are what the update changed: against the previous tip, or, for a new branch, against
its merge base with the default branch; where there is no base at all (the first push, a
new tag) they are unknown, and path filters let the run through, as GitLab does.

Refs have already moved when this runs, so nothing here may fail the push: a problem with
one ref is logged and the others go on. A broken pipeline file still makes a failed run
that explains it (``runs.trigger`` does that).
"""

from __future__ import annotations

import logging
import pathlib

import sqlalchemy as sa

from appliance import repos
from appliance.hosting.refupdates import ZERO, RefUpdate, parse_updates  # noqa: F401 (the hosting API)
from appliance.models import MergeRequest, PipelineRun, Project
from appliance.models.base import utcnow
from appliance.pipelines import runs

log = logging.getLogger(__name__)

# Beyond this many changed paths the list is "unknown": filters pass, as for a new branch.
MAX_CHANGED_PATHS = 10_000


def snapshot_refs(repo: pathlib.Path) -> dict[str, str]:
    """Full ref -> commit of every branch and tag (annotated tags peeled to their commit)."""
    out = repos.git(repo, "for-each-ref", "--format=%(refname)%00%(objectname)%00%(*objectname)",
                    "refs/heads/", "refs/tags/").decode()
    refs = {}
    for line in out.splitlines():
        name, sha, peeled = line.split("\0")
        refs[name] = peeled or sha
    return refs


def diff_snapshots(before: dict[str, str], after: dict[str, str]) -> list[RefUpdate]:
    updates = [RefUpdate(before.get(ref, ZERO), sha, ref) for ref, sha in sorted(after.items())
               if before.get(ref) != sha]
    updates += [RefUpdate(sha, ZERO, ref) for ref, sha in sorted(before.items()) if ref not in after]
    return updates


def _tip(repo: pathlib.Path, ref: str) -> str:
    return repos.git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False).decode().strip()


def _merge_base(repo: pathlib.Path, a: str, b: str) -> str:
    return repos.git(repo, "merge-base", a, b, check=False).decode().strip()


def _paths_between(repo: pathlib.Path, base: str, commit: str) -> list[str] | None:
    # --no-renames: a rename counts as its old and its new path, so filters on either fire.
    out = repos.git(repo, "diff", "--name-only", "-z", "--no-renames", base, commit, "--")
    paths = [p for p in out.decode("utf-8", errors="surrogateescape").split("\0") if p]
    return None if len(paths) > MAX_CHANGED_PATHS else paths


def changed_paths(repo: pathlib.Path, update: RefUpdate, default_branch: str) -> list[str] | None:
    """The paths ``update`` changed, or None when there is nothing to compare with."""
    if update.deleted or not update.branch:
        return None
    if not update.created:
        return _paths_between(repo, update.old, update.new)
    if update.branch == default_branch:
        return None
    default_tip = _tip(repo, f"refs/heads/{default_branch}")
    base = _merge_base(repo, default_tip, update.new) if default_tip else ""
    return _paths_between(repo, base, update.new) if base else None


def _safe_trigger(app, project_id: int, ref: str, commit: str, event: str, paths: list[str] | None,
                  actor_id: int | None, action: str = "") -> PipelineRun | None:
    try:
        return runs.trigger(app, project_id, ref, commit, event, paths, actor_id=actor_id,
                            pull_request_action=action)
    except Exception:  # one ref's failure must not stop the others: the push has landed
        log.exception("could not trigger %s pipelines of project %s for %s at %s", event, project_id, ref,
                      commit[:12])
        return None


def _open_merge_requests(app, project_id: int, **where) -> list[MergeRequest]:
    with app.db.session() as s:
        query = sa.select(MergeRequest).where(MergeRequest.project_id == project_id, MergeRequest.state == "open")
        for column, value in where.items():
            query = query.where(getattr(MergeRequest, column) == value)
        return list(s.scalars(query.order_by(MergeRequest.number)))


def pull_request_run(app, project_id: int, mr: MergeRequest, action: str, actor_id: int | None,
                     commit: str | None = None) -> PipelineRun | None:
    """Fire ``pull_request`` triggers for a merge request: the event's ref is the target
    branch (trigger ``branches`` filter on it), its commit the source branch's tip, and its
    changed paths those of the source branch since it left the target."""
    repo = repos.repository_path(app.config, project_id)
    commit = commit or _tip(repo, f"refs/heads/{mr.source_branch}")
    if not commit:
        return None
    target_tip = _tip(repo, f"refs/heads/{mr.target_branch}")
    base = _merge_base(repo, target_tip, commit) if target_tip else ""
    paths = _paths_between(repo, base, commit) if base else None
    return _safe_trigger(app, project_id, f"refs/heads/{mr.target_branch}", commit, "pull_request", paths,
                         actor_id, action)


def _mark_merged(app, project_id: int, target_branch: str, new_tip: str) -> None:
    """Open merge requests whose source tip the target branch now contains were merged
    outside the appliance (a push of the merge): record it."""
    repo = repos.repository_path(app.config, project_id)
    for mr in _open_merge_requests(app, project_id, target_branch=target_branch):
        source_tip = _tip(repo, f"refs/heads/{mr.source_branch}")
        if not source_tip:
            continue
        if repos.is_ancestor(repo, source_tip, new_tip):
            with app.db.session() as s:
                s.execute(sa.update(MergeRequest).where(MergeRequest.id == mr.id, MergeRequest.state == "open")
                          .values(state="merged", updated_at=utcnow()))


def process_push(app, project_id: int, updates: list[RefUpdate], actor_id: int | None) -> list[PipelineRun]:
    """Start the pipelines that ``updates`` (refs that have already moved) call for."""
    with app.db.session() as s:
        project = s.get(Project, project_id)
        if project is None:
            return []
        default_branch = project.default_branch
    repo = repos.repository_path(app.config, project_id)
    started: list[PipelineRun] = []
    for update in updates:
        if update.deleted or not (update.branch or update.tag):
            continue
        try:
            paths = changed_paths(repo, update, default_branch)
        except repos.RepositoryError:
            log.exception("could not compute the paths changed by %s", update)
            paths = None
        if update.tag:
            run = _safe_trigger(app, project_id, update.ref, update.new, "tag", None, actor_id)
            started += [run] if run else []
            continue
        run = _safe_trigger(app, project_id, update.ref, update.new, "push", paths, actor_id)
        started += [run] if run else []
        for mr in _open_merge_requests(app, project_id, source_branch=update.branch):
            run = pull_request_run(app, project_id, mr, "synchronize", actor_id, commit=update.new)
            started += [run] if run else []
        try:
            _mark_merged(app, project_id, update.branch, update.new)
        except repos.RepositoryError:
            log.exception("could not check the merge requests into %s", update.ref)
    return started
