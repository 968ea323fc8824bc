from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy import orm

from appliance.models.base import Base, UTCDateTime, utcnow


class Organisation(Base):
    __tablename__ = "organisations"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(100))
    description: orm.Mapped[str] = orm.mapped_column(sa.Text, default="")
    created_at: orm.Mapped[dt.datetime] = orm.mapped_column(UTCDateTime, default=utcnow)

    projects: orm.Mapped[list["Project"]] = orm.relationship(back_populates="organisation")  # noqa: F821
    teams: orm.Mapped[list["Team"]] = orm.relationship(back_populates="organisation")  # noqa: F821

    __table_args__ = (sa.Index("uq_organisations_name_lower", sa.func.lower(name), unique=True),)

    def __repr__(self) -> str:
        return f"<Organisation {self.name}>"
