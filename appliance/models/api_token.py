from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy import orm

from appliance.models.base import Base, UTCDateTime, utcnow

SCOPES = ("read", "write", "admin")  # each includes the ones before it


class ApiToken(Base):
    """A personal access token: the secret itself is shown once and only its SHA-256 is kept
    (tokens are long random strings, so a fast hash is enough, unlike passwords)."""

    __tablename__ = "api_tokens"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    user_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(100))
    token_hash: orm.Mapped[str] = orm.mapped_column(sa.String(64), unique=True)
    # The first characters of the token, so a person can tell their tokens apart.
    prefix: orm.Mapped[str] = orm.mapped_column(sa.String(16))
    scope: orm.Mapped[str] = orm.mapped_column(sa.String(10))
    # When set, the token works on this project only.
    project_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"))
    created_at: orm.Mapped[dt.datetime] = orm.mapped_column(UTCDateTime, default=utcnow)
    expires_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(UTCDateTime)
    last_used_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(UTCDateTime)
    revoked_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(UTCDateTime)

    __table_args__ = (sa.CheckConstraint("scope IN ('read', 'write', 'admin')", name="known_scope"),)
