from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy import orm

from appliance.models.base import Base, UTCDateTime, utcnow


class ProtectedBranch(Base):
    """Branches matching ``pattern`` (a glob: ``main``, ``release/*``) take pushes from
    Maintainers only, and nobody may force-push to them or delete them."""

    __tablename__ = "protected_branches"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    project_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"))
    pattern: orm.Mapped[str] = orm.mapped_column(sa.String(255))
    created_at: orm.Mapped[dt.datetime] = orm.mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (sa.UniqueConstraint(project_id, pattern),)
