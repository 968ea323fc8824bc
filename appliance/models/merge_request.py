from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy import orm

from appliance.models.base import Base, UTCDateTime, utcnow

MR_STATES = ("open", "merged", "closed")


class MergeRequest(Base):
    """A request to merge ``source_branch`` into ``target_branch`` of the same project.
    While it is open, pushes to the source branch fire the pipeline's `pull_request` triggers."""

    __tablename__ = "merge_requests"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    project_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"))
    number: orm.Mapped[int] = orm.mapped_column(sa.Integer)  # per project, from Project.merge_request_counter
    title: orm.Mapped[str] = orm.mapped_column(sa.String(255))
    description: orm.Mapped[str] = orm.mapped_column(sa.Text, default="")
    source_branch: orm.Mapped[str] = orm.mapped_column(sa.String(255))
    target_branch: orm.Mapped[str] = orm.mapped_column(sa.String(255))
    state: orm.Mapped[str] = orm.mapped_column(sa.String(10), default="open")
    author_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    created_at: orm.Mapped[dt.datetime] = orm.mapped_column(UTCDateTime, default=utcnow)
    updated_at: orm.Mapped[dt.datetime] = orm.mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        sa.UniqueConstraint(project_id, number),
        sa.Index("ix_merge_requests_source", project_id, source_branch, state),
        sa.CheckConstraint("state IN ('open', 'merged', 'closed')", name="known_state"),
    )
