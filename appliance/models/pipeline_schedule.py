from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy import orm

from appliance.models.base import Base, UTCDateTime, utcnow


class PipelineSchedule(Base):
    """A cron schedule that starts runs of ``ref``. ``source`` is "pipeline" for a
    ``schedule:`` trigger of the default branch's pipeline file (kept in step with it) or
    "user" for one added on the schedules page. A tick is taken by moving ``next_run_at``
    with a compare-and-set, so each due tick starts one run however many workers look."""

    __tablename__ = "pipeline_schedules"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    project_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"))
    source: orm.Mapped[str] = orm.mapped_column(sa.String(10))
    cron: orm.Mapped[str] = orm.mapped_column(sa.String(100))
    ref: orm.Mapped[str] = orm.mapped_column(sa.String(255))
    description: orm.Mapped[str] = orm.mapped_column(sa.String(200), default="")
    enabled: orm.Mapped[bool] = orm.mapped_column(sa.Boolean, default=True)
    next_run_at: orm.Mapped[dt.datetime] = orm.mapped_column(UTCDateTime, index=True)
    last_run_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(UTCDateTime)
    last_run_id: orm.Mapped[int | None] = orm.mapped_column(sa.Integer)
    created_at: orm.Mapped[dt.datetime] = orm.mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (sa.CheckConstraint("source IN ('pipeline', 'user')", name="source"),)
