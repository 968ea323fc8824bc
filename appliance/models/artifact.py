from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy import orm

from appliance.models.base import Base, UTCDateTime, utcnow


class Artifact(Base):
    """A named archive a job uploaded (a gzip'd tar in the object store)."""

    __tablename__ = "artifacts"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    job_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("pipeline_jobs.id", ondelete="CASCADE"))
    run_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("pipeline_runs.id", ondelete="CASCADE"), index=True)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(100))
    object_key: orm.Mapped[str] = orm.mapped_column(sa.String(300))
    size: orm.Mapped[int] = orm.mapped_column(sa.BigInteger)
    sha256: orm.Mapped[str] = orm.mapped_column(sa.String(64))
    file_count: orm.Mapped[int] = orm.mapped_column(sa.Integer)
    created_at: orm.Mapped[dt.datetime] = orm.mapped_column(UTCDateTime, default=utcnow)
    expires_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(UTCDateTime, index=True)

    __table_args__ = (sa.UniqueConstraint(job_id, name),)
