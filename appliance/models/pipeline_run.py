from __future__ import annotations

import datetime as dt
import enum

import sqlalchemy as sa
from sqlalchemy import orm

from appliance.models.base import Base, UTCDateTime, utcnow


class Status(str, enum.Enum):
    """States of runs, jobs and steps. The database owns them; see appliance/pipelines/dispatch.py."""

    PENDING = "pending"  # waiting for the jobs it needs
    QUEUED = "queued"  # ready; a task to run it is (or will be) on the queue
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELED = "canceled"
    SKIPPED = "skipped"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({Status.SUCCESS, Status.FAILED, Status.CANCELED, Status.SKIPPED})
ACTIVE = frozenset({Status.PENDING, Status.QUEUED, Status.RUNNING})
STATUS_VALUES = tuple(s.value for s in Status)
_STATUS_CHECK = "status IN (" + ", ".join(f"'{s}'" for s in STATUS_VALUES) + ")"


class PipelineRun(Base):
    """One run of a project's pipeline for one commit; ``number`` counts per project."""

    __tablename__ = "pipeline_runs"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    project_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"))
    number: orm.Mapped[int] = orm.mapped_column(sa.Integer)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(200), default="")
    event: orm.Mapped[str] = orm.mapped_column(sa.String(20))
    ref: orm.Mapped[str] = orm.mapped_column(sa.String(255))
    commit_sha: orm.Mapped[str] = orm.mapped_column(sa.String(64))
    status: orm.Mapped[str] = orm.mapped_column(sa.String(10), default=Status.PENDING.value)
    # Why a run failed before any job could start (a pipeline file that does not parse).
    error: orm.Mapped[str] = orm.mapped_column(sa.Text, default="")
    source: orm.Mapped[str] = orm.mapped_column(sa.Text, default="")  # the pipeline file as run
    triggered_by_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    schedule_id: orm.Mapped[int | None] = orm.mapped_column(
        sa.ForeignKey("pipeline_schedules.id", ondelete="SET NULL"))
    created_at: orm.Mapped[dt.datetime] = orm.mapped_column(UTCDateTime, default=utcnow)
    started_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(UTCDateTime)
    finished_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(UTCDateTime)

    project: orm.Mapped["Project"] = orm.relationship()  # noqa: F821
    triggered_by: orm.Mapped["User | None"] = orm.relationship()  # noqa: F821
    jobs: orm.Mapped[list["PipelineJob"]] = orm.relationship(  # noqa: F821
        back_populates="run", order_by="PipelineJob.id", cascade="all, delete-orphan", passive_deletes=True)

    __table_args__ = (
        sa.UniqueConstraint(project_id, number),
        sa.Index("ix_pipeline_runs_project_ref", project_id, ref),
        sa.CheckConstraint(_STATUS_CHECK, name="status"),
    )

    @property
    def duration(self) -> dt.timedelta | None:
        if self.started_at is None:
            return None
        return (self.finished_at or utcnow()) - self.started_at
