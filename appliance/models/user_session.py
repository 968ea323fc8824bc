from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy import orm

from appliance.models.base import Base, UTCDateTime, utcnow


class UserSession(Base):
    """A signed-in browser session, kept server-side so it can be ended from the server:
    sign-out, an administrator's force logout, idle and absolute timeouts. The cookie holds
    only the random ``id``; a row that is revoked or expired no longer signs anyone in."""

    __tablename__ = "user_sessions"

    id: orm.Mapped[str] = orm.mapped_column(sa.String(64), primary_key=True)
    user_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # How the user proved who they are: "password", "ldap", "oidc:<provider>", ...
    method: orm.Mapped[str] = orm.mapped_column(sa.String(100), default="password")
    created_at: orm.Mapped[dt.datetime] = orm.mapped_column(UTCDateTime, default=utcnow)
    # The last time the user entered credentials in this session (fresh-login checks).
    authenticated_at: orm.Mapped[dt.datetime] = orm.mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: orm.Mapped[dt.datetime] = orm.mapped_column(UTCDateTime, default=utcnow)
    address: orm.Mapped[str] = orm.mapped_column(sa.String(64), default="")
    user_agent: orm.Mapped[str] = orm.mapped_column(sa.String(255), default="")
    revoked_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(UTCDateTime)
