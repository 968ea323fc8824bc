from __future__ import annotations

import datetime as dt
import json

import sqlalchemy as sa
from sqlalchemy import orm

from appliance.models.base import Base, UTCDateTime, utcnow
from appliance.models.pipeline_run import _STATUS_CHECK, Status


class PipelineJob(Base):
    """A job of a run. ``version`` is the fencing token: every write by a worker names the
    version it claimed, so a worker whose lease was taken away can no longer change the job."""

    __tablename__ = "pipeline_jobs"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    run_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("pipeline_runs.id", ondelete="CASCADE"))
    project_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"))
    key: orm.Mapped[str] = orm.mapped_column(sa.String(400))
    name: orm.Mapped[str] = orm.mapped_column(sa.String(300))
    stage: orm.Mapped[str] = orm.mapped_column(sa.String(100))
    stage_index: orm.Mapped[int] = orm.mapped_column(sa.Integer)
    status: orm.Mapped[str] = orm.mapped_column(sa.String(10), default=Status.PENDING.value)
    skip_reason: orm.Mapped[str] = orm.mapped_column(sa.Text, default="")
    # Skipped because its `when:` did not hold: such a job satisfies the jobs that need it,
    # unlike a job skipped because a job it needs failed.
    skipped_by_condition: orm.Mapped[bool] = orm.mapped_column(sa.Boolean, default=False)
    failure_reason: orm.Mapped[str] = orm.mapped_column(sa.Text, default="")
    spec: orm.Mapped[str] = orm.mapped_column(sa.Text)  # JSON: steps, env, matrix, executor
    environment: orm.Mapped[str] = orm.mapped_column(sa.String(100), default="")
    timeout_seconds: orm.Mapped[int] = orm.mapped_column(sa.Integer)
    allow_failure: orm.Mapped[bool] = orm.mapped_column(sa.Boolean, default=False)
    retries: orm.Mapped[int] = orm.mapped_column(sa.Integer, default=0)  # allowed by the pipeline
    attempt: orm.Mapped[int] = orm.mapped_column(sa.Integer, default=1)
    lost_count: orm.Mapped[int] = orm.mapped_column(sa.Integer, default=0)  # leases that expired
    unmet_needs: orm.Mapped[int] = orm.mapped_column(sa.Integer, default=0)
    version: orm.Mapped[int] = orm.mapped_column(sa.Integer, default=0)
    worker: orm.Mapped[str] = orm.mapped_column(sa.String(200), default="")  # host:pid of the lease holder
    lease_expires_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(UTCDateTime)
    exit_code: orm.Mapped[int | None] = orm.mapped_column(sa.Integer)
    created_at: orm.Mapped[dt.datetime] = orm.mapped_column(UTCDateTime, default=utcnow)
    queued_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(UTCDateTime)
    started_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(UTCDateTime)
    finished_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(UTCDateTime)
    log_bytes: orm.Mapped[int] = orm.mapped_column(sa.BigInteger, default=0)
    log_lines: orm.Mapped[int] = orm.mapped_column(sa.BigInteger, default=0)
    log_truncated: orm.Mapped[bool] = orm.mapped_column(sa.Boolean, default=False)

    run: orm.Mapped["PipelineRun"] = orm.relationship(back_populates="jobs")  # noqa: F821
    steps: orm.Mapped[list["PipelineStep"]] = orm.relationship(  # noqa: F821
        order_by="PipelineStep.index", cascade="all, delete-orphan", passive_deletes=True)

    __table_args__ = (
        sa.UniqueConstraint(run_id, key),
        sa.Index("ix_pipeline_jobs_status", "status", "project_id"),
        sa.CheckConstraint(_STATUS_CHECK, name="status"),
    )

    @property
    def spec_data(self) -> dict:
        return json.loads(self.spec)

    @property
    def duration(self) -> dt.timedelta | None:
        if self.started_at is None:
            return None
        return (self.finished_at or utcnow()) - self.started_at


class PipelineJobNeed(Base):
    """An edge of the run's DAG: ``job_id`` needs ``needs_id``."""

    __tablename__ = "pipeline_job_needs"

    job_id: orm.Mapped[int] = orm.mapped_column(
        sa.ForeignKey("pipeline_jobs.id", ondelete="CASCADE"), primary_key=True)
    needs_id: orm.Mapped[int] = orm.mapped_column(
        sa.ForeignKey("pipeline_jobs.id", ondelete="CASCADE"), primary_key=True, index=True)
