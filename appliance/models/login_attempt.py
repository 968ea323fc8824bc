from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy import orm

from appliance.models.base import Base, UTCDateTime, utcnow


class LoginAttempt(Base):
    """A failed sign-in, kept in the database so a restart does not reset the rate limit."""

    __tablename__ = "login_attempts"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    # "account:<lowercased name>" or "address:<ip>": one row per limited key.
    key: orm.Mapped[str] = orm.mapped_column(sa.String(300))
    at: orm.Mapped[dt.datetime] = orm.mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (sa.Index("ix_login_attempts_key_at", key, at),)
