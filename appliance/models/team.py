from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy import orm

from appliance.models.base import Base, UTCDateTime, utcnow


class Team(Base):
    """A named group of users inside an organisation; roles can be granted to it."""

    __tablename__ = "teams"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    organisation_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("organisations.id", ondelete="CASCADE"))
    name: orm.Mapped[str] = orm.mapped_column(sa.String(100))
    created_at: orm.Mapped[dt.datetime] = orm.mapped_column(UTCDateTime, default=utcnow)

    organisation: orm.Mapped["Organisation"] = orm.relationship(back_populates="teams")  # noqa: F821

    __table_args__ = (sa.Index("uq_teams_org_name_lower", organisation_id, sa.func.lower(name), unique=True),)
