from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy import orm

from appliance.models.base import Base, UTCDateTime
from appliance.models.pipeline_run import _STATUS_CHECK, Status


class PipelineStep(Base):
    __tablename__ = "pipeline_steps"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    job_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("pipeline_jobs.id", ondelete="CASCADE"))
    index: orm.Mapped[int] = orm.mapped_column(sa.Integer)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(300))
    kind: orm.Mapped[str] = orm.mapped_column(sa.String(20))
    status: orm.Mapped[str] = orm.mapped_column(sa.String(10), default=Status.PENDING.value)
    exit_code: orm.Mapped[int | None] = orm.mapped_column(sa.Integer)
    started_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(UTCDateTime)
    finished_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(UTCDateTime)

    __table_args__ = (sa.UniqueConstraint(job_id, index), sa.CheckConstraint(_STATUS_CHECK, name="status"))
