from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy import orm

from appliance.models.base import Base, UTCDateTime, utcnow


class Project(Base):
    __tablename__ = "projects"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    organisation_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("organisations.id", ondelete="RESTRICT"))
    name: orm.Mapped[str] = orm.mapped_column(sa.String(100))
    description: orm.Mapped[str] = orm.mapped_column(sa.Text, default="")
    default_branch: orm.Mapped[str] = orm.mapped_column(sa.String(255), default="main")
    created_at: orm.Mapped[dt.datetime] = orm.mapped_column(UTCDateTime, default=utcnow)
    created_by_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    # Pipelines: runs are numbered per project from this counter (one row lock per trigger).
    run_counter: orm.Mapped[int] = orm.mapped_column(sa.Integer, default=0)
    # At most this many jobs of the project run at once; 0 means the appliance's default.
    job_concurrency: orm.Mapped[int] = orm.mapped_column(sa.Integer, default=0)
    # A new push run cancels the project's unfinished push runs of the same branch.
    cancel_superseded: orm.Mapped[bool] = orm.mapped_column(sa.Boolean, default=True)
    # The default branch commit whose `schedule:` triggers the schedule rows were synced from.
    schedules_synced_commit: orm.Mapped[str] = orm.mapped_column(sa.String(64), default="")
    # Git hosting: merge requests are numbered per project from this counter.
    merge_request_counter: orm.Mapped[int] = orm.mapped_column(sa.Integer, default=0)
    # An outside repository (GitHub, GitLab, Gitea, Forgejo) this project mirrors; its
    # webhooks make the appliance fetch it. Empty: the project is hosted here.
    mirror_url: orm.Mapped[str] = orm.mapped_column(sa.String(2000), default="")
    # The secret inbound webhooks are verified with, encrypted (SecretBox); None: not set.
    inbound_secret_ciphertext: orm.Mapped[bytes | None] = orm.mapped_column(sa.LargeBinary)

    organisation: orm.Mapped["Organisation"] = orm.relationship(back_populates="projects")  # noqa: F821

    __table_args__ = (sa.Index("uq_projects_org_name_lower", organisation_id, sa.func.lower(name), unique=True),)

    @property
    def path(self) -> str:
        return f"{self.organisation.name}/{self.name}"
