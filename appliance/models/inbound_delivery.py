from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy import orm

from appliance.models.base import Base, UTCDateTime, utcnow


class InboundDelivery(Base):
    """A webhook delivery from an outside forge whose signature was verified. The unique
    key makes a replayed delivery id a no-op: each delivery runs at most once."""

    __tablename__ = "inbound_deliveries"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    project_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"))
    forge: orm.Mapped[str] = orm.mapped_column(sa.String(10))  # github, gitlab, gitea
    delivery_id: orm.Mapped[str] = orm.mapped_column(sa.String(100))
    event: orm.Mapped[str] = orm.mapped_column(sa.String(50))
    outcome: orm.Mapped[str] = orm.mapped_column(sa.String(20), default="received")
    detail: orm.Mapped[str] = orm.mapped_column(sa.Text, default="")
    received_at: orm.Mapped[dt.datetime] = orm.mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (sa.UniqueConstraint(project_id, forge, delivery_id),)
