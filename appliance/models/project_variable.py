from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy import orm

from appliance.models.base import Base, UTCDateTime, utcnow


class ProjectVariable(Base):
    """A variable every job of the project gets in its environment. A secret keeps only
    ``ciphertext`` (AES-256-GCM, see appliance/pipelines/secrets.py) and is never shown again."""

    __tablename__ = "project_variables"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    project_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"))
    name: orm.Mapped[str] = orm.mapped_column(sa.String(100))
    is_secret: orm.Mapped[bool] = orm.mapped_column(sa.Boolean, default=False)
    value: orm.Mapped[str] = orm.mapped_column(sa.Text, default="")  # plain variables only
    ciphertext: orm.Mapped[bytes | None] = orm.mapped_column(sa.LargeBinary)  # secrets only
    created_at: orm.Mapped[dt.datetime] = orm.mapped_column(UTCDateTime, default=utcnow)
    updated_at: orm.Mapped[dt.datetime] = orm.mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        sa.UniqueConstraint(project_id, name),
        sa.CheckConstraint("(is_secret AND ciphertext IS NOT NULL AND value = '') "
                           "OR (NOT is_secret AND ciphertext IS NULL)", name="secret_has_no_plaintext"),
    )
