"""Protected branches: which updates a push may make, decided before any ref moves.

A branch matching a protection pattern (the glob syntax of pipeline files: ``main``,
``release/*``) takes pushes only from those allowed ``repository.push_protected``
(Maintainers), and from nobody a force-push (an update whose old tip is not an ancestor of
the new one) or a deletion. Every pushed ref must be a valid branch or tag name; other
namespaces (``refs/pipelines/...``, ``refs/notes/...``) are refused so that nothing the
appliance keeps for itself can be written from outside.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import orm

from appliance.errors import ValidationError
from appliance.hosting.refupdates import is_protected, refusal  # noqa: F401 (the hosting API)
from appliance.models import ProtectedBranch, Project
from appliance.repos import check_ref

MAX_PATTERNS = 100


def patterns(session: orm.Session, project: Project) -> tuple[str, ...]:
    return tuple(session.scalars(sa.select(ProtectedBranch.pattern).where(ProtectedBranch.project_id == project.id)
                                 .order_by(ProtectedBranch.pattern)))


def protect(session: orm.Session, project: Project, pattern: str) -> ProtectedBranch:
    pattern = (pattern or "").strip()
    if not pattern:
        raise ValidationError("pattern", "is required")
    # A glob is checked as a ref name with its wildcards stood in for by a letter.
    check_ref(pattern.replace("**", "x").replace("*", "x").replace("?", "x"), "pattern")
    existing = patterns(session, project)
    if pattern in existing:
        raise ValidationError("pattern", f"{pattern!r} is already protected")
    if len(existing) >= MAX_PATTERNS:
        raise ValidationError("pattern", f"a project may have at most {MAX_PATTERNS} protected branch patterns")
    row = ProtectedBranch(project_id=project.id, pattern=pattern)
    session.add(row)
    session.flush()
    return row


def unprotect(session: orm.Session, project: Project, pattern: str) -> None:
    deleted = session.execute(sa.delete(ProtectedBranch).where(ProtectedBranch.project_id == project.id,
                                                               ProtectedBranch.pattern == pattern)).rowcount
    if not deleted:
        raise ValidationError("pattern", f"{pattern!r} is not protected")
