"""Merge requests: a source branch proposed for a target branch of the same project.

Kept simple on purpose: a merge request is opened, closed or reopened here, and is marked
merged when a push makes its target branch contain the source branch's tip (the merge
itself happens in git). Opening, reopening and every push to the source branch fire the
pipeline's ``pull_request`` triggers (actions ``opened``, ``reopened``, ``synchronize``);
closing fires ``closed``, which triggers only take when they list it in ``types``.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import orm

from appliance import audit, repos
from appliance.errors import NotFound, ValidationError
from appliance.hosting import branches, pushes
from appliance.models import MergeRequest, Project, User
from appliance.models.base import utcnow


def open_merge_request(app, project_id: int, *, source: str, target: str, title: str, description: str = "",
                       author: User | None, origin: audit.Origin | None = None) -> MergeRequest:
    """Open a merge request; audited as ``merge_request.opened`` by ``origin`` (default: the author)."""
    source, target, title = source.strip(), target.strip(), title.strip()
    repos.check_ref(source, "source_branch")
    repos.check_ref(target, "target_branch")
    if not title or len(title) > 255:
        raise ValidationError("title", "must be 1 to 255 characters")
    if len(description) > 20_000:
        raise ValidationError("description", "must be at most 20000 characters")
    if source == target:
        raise ValidationError("target_branch", "must differ from the source branch")
    with app.db.session() as s:
        project = s.get(Project, project_id)
        for field, branch in (("source_branch", source), ("target_branch", target)):
            if not branches.branch_exists(app.config, project.id, branch):
                raise ValidationError(field, f"there is no branch {branch!r} in the repository")
        duplicate = s.scalar(sa.select(MergeRequest.number).where(
            MergeRequest.project_id == project_id, MergeRequest.state == "open",
            MergeRequest.source_branch == source, MergeRequest.target_branch == target))
        if duplicate:
            raise ValidationError("source_branch", f"merge request !{duplicate} already proposes {source} for {target}")
        # The counter row stays locked until commit, so numbers never collide.
        number = s.execute(sa.update(Project).where(Project.id == project_id)
                           .values(merge_request_counter=Project.merge_request_counter + 1)
                           .returning(Project.merge_request_counter)).scalar_one()
        mr = MergeRequest(project_id=project_id, number=number, title=title, description=description,
                          source_branch=source, target_branch=target, state="open",
                          author_id=author.id if author else None)
        s.add(mr)
        s.flush()
        (origin or audit.Origin(author)).record(s, "merge_request.opened", target=f"{project.path}!{number}",
                                                project=project, detail=f"{source} into {target}")
        s.expunge(mr)
    pushes.pull_request_run(app, project_id, mr, "opened", author.id if author else None)
    return mr


def get_merge_request(session: orm.Session, project: Project, number: int) -> MergeRequest:
    mr = session.scalar(sa.select(MergeRequest).where(MergeRequest.project_id == project.id,
                                                      MergeRequest.number == number))
    if mr is None:
        raise NotFound(f"no merge request !{number} in {project.path}")
    return mr


def list_merge_requests(session: orm.Session, project: Project, state: str = "open") -> list[MergeRequest]:
    query = sa.select(MergeRequest).where(MergeRequest.project_id == project.id)
    if state != "all":
        query = query.where(MergeRequest.state == state)
    return list(session.scalars(query.order_by(MergeRequest.number.desc())))


def set_state(app, project_id: int, number: int, state: str, actor: User | None,
              origin: audit.Origin | None = None) -> MergeRequest:
    """Close an open merge request or reopen a closed one; audited by ``origin`` (default: the actor)."""
    if state not in ("open", "closed"):
        raise ValidationError("state", "a merge request can only be closed or reopened here")
    with app.db.session() as s:
        project = s.get(Project, project_id)
        mr = get_merge_request(s, project, number)
        if mr.state == "merged":
            raise ValidationError("state", f"!{number} is merged")
        if mr.state == state:
            raise ValidationError("state", f"!{number} is already {state}")
        mr.state, mr.updated_at = state, utcnow()
        s.flush()
        action = "reopened" if state == "open" else "closed"
        (origin or audit.Origin(actor)).record(s, f"merge_request.{action}", target=f"{project.path}!{number}",
                                               project=project)
        s.expunge(mr)
    pushes.pull_request_run(app, project_id, mr, action, actor.id if actor else None)
    return mr
